//! `bootforge flash`: write an image to a block device or a file, sync, read it back and
//! compare digests.
//!
//! Writes follow coreos-installer's order: the first MiB of the target (partition tables, boot
//! sectors) is zeroed first and written last, each step synced before the next, so a flash cut
//! short leaves a device that firmware will not boot rather than a half-written one it might.

use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::store::{Digest, Hasher};

/// The part of the target held back until everything after it is written.
const HEAD: u64 = 1 << 20;

/// Large enough that syscalls cost nothing next to the I/O, small enough to stay in memory.
const CHUNK: usize = 4 << 20;

/// What a finished flash wrote and verified.
#[derive(Debug, Serialize)]
pub struct FlashReport {
    /// The image that was written.
    pub image: PathBuf,
    /// The block device or file written to.
    pub device: PathBuf,
    /// The image's length: the number of bytes written and read back.
    pub bytes: u64,
    /// The image's digest, which the bytes read back from the device matched.
    pub sha256: Digest,
    /// Wall time of the whole flash, checks and read-back included.
    pub duration_ms: u64,
}

/// Writes `image` to `device` (a block device, or a file that is created if missing) and
/// verifies it by reading it back. Refuses a target that is mounted, swapped on, holds the
/// running system or is the image itself; asks before overwriting an existing target unless
/// `yes`.
pub fn flash(image: &Path, device: &Path, yes: bool) -> Result<FlashReport> {
    let started = Instant::now();
    let (mut source, image_meta) = open_image(image)?;
    let len = image_meta.len();
    let target = Target::inspect(device)?;
    refuse_unsafe_target(image, &image_meta, device, &target)?;
    // Opened only once known unused: the refusal is the clearer message when both apply.
    let block = match target {
        Target::Block(dev) => Some(BlockInfo::read(device, dev)?),
        _ => None,
    };
    if let Some(info) = &block {
        refuse_too_small(image, len, device, info)?;
    }
    confirm(image, len, device, &target, block.as_ref(), yes)?;
    let out = open_target(device, &target)?;
    let written = write_and_verify(&mut source, len, &out, device, &target);
    if written.is_err() && matches!(target, Target::Missing) {
        // A file we created and could not verify is worth nothing, and may be mistaken for
        // a good image later.
        let _ = fs::remove_file(device);
    }
    Ok(FlashReport {
        image: image.to_owned(),
        device: device.to_owned(),
        bytes: len,
        sha256: written?,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

fn open_image(image: &Path) -> Result<(File, Metadata)> {
    let file = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", image.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", image.display());
    }
    Ok((file, meta))
}

// ---------------------------------------------------------------------------------------
// The target

/// What the `--device` path names.
enum Target {
    /// Nothing yet: a plain file is created.
    Missing,
    /// An existing regular file.
    File(FileId),
    /// A block device.
    Block(DevNum),
}

impl Target {
    fn inspect(device: &Path) -> Result<Target> {
        let meta = match fs::metadata(device) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Target::Missing),
            other => other.with_context(|| format!("reading {}", device.display()))?,
        };
        let kind = meta.file_type();
        if kind.is_block_device() {
            Ok(Target::Block(DevNum::from_dev_t(meta.rdev())))
        } else if kind.is_file() {
            Ok(Target::File(FileId::of(&meta)))
        } else if kind.is_dir() {
            bail!(
                "{} is a directory; pass a block device or a file",
                device.display()
            )
        } else if kind.is_char_device() {
            bail!(
                "{} is a character device; pass a block device or a file",
                device.display()
            )
        } else {
            bail!("{} is neither a block device nor a file", device.display())
        }
    }
}

/// Identifies a file however it is named: hard links and bind mounts give one file many paths.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A block device's size and, where the kernel knows it, model.
struct BlockInfo {
    size: u64,
    model: Option<String>,
}

impl BlockInfo {
    fn read(device: &Path, dev: DevNum) -> Result<BlockInfo> {
        let file = File::open(device).with_context(|| format!("opening {}", device.display()))?;
        Ok(BlockInfo {
            size: block_size(&file, device)?,
            model: block_model(dev),
        })
    }

    /// "model, size" for the confirmation prompt.
    fn describe(&self) -> String {
        let size = format!("{:.1} GiB", self.size as f64 / (1u64 << 30) as f64);
        match &self.model {
            Some(model) => format!("{model}, {size}"),
            None => size,
        }
    }
}

fn block_size(file: &File, device: &Path) -> Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 stores one u64 through the pointer, which points at `size`.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::_IOR::<u64>(0x12, 114),
            &mut size as *mut u64,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("reading the size of {}", device.display()));
    }
    Ok(size)
}

fn block_model(dev: DevNum) -> Option<String> {
    let model = fs::read_to_string(dev.sysfs().join("device/model")).ok()?;
    Some(model.trim().to_owned()).filter(|m| !m.is_empty())
}

/// Runs every refusal before anything is asked or written.
fn refuse_unsafe_target(
    image: &Path,
    image_meta: &Metadata,
    device: &Path,
    target: &Target,
) -> Result<()> {
    match target {
        Target::Missing => Ok(()),
        Target::File(id) => {
            if *id == FileId::of(image_meta) {
                bail!(
                    "refusing to write {} onto itself: {} is the image",
                    image.display(),
                    device.display()
                );
            }
            refuse_file_in_use(device, *id, &read_mounts()?, &read_swaps()?)
        }
        Target::Block(dev) => {
            let what = device.display().to_string();
            refuse_block_in_use(&what, *dev, &read_mounts()?, &read_swaps()?)
        }
    }
}

fn refuse_too_small(image: &Path, len: u64, device: &Path, info: &BlockInfo) -> Result<()> {
    if len > info.size {
        bail!(
            "{} ({len} bytes) is larger than {} ({} bytes)",
            image.display(),
            device.display(),
            info.size
        );
    }
    Ok(())
}

/// Asks on the terminal before destroying an existing target.
fn confirm(
    image: &Path,
    len: u64,
    device: &Path,
    target: &Target,
    block: Option<&BlockInfo>,
    yes: bool,
) -> Result<()> {
    if yes || matches!(target, Target::Missing) {
        return Ok(());
    }
    let detail = block.map_or_else(String::new, |info| format!(" ({})", info.describe()));
    if !io::stdin().is_terminal() {
        bail!(
            "{} exists and would be overwritten, but stdin is not a terminal to confirm on; \
             pass --yes to write anyway",
            device.display()
        );
    }
    eprint!(
        "Write {} ({len} bytes) to {}{detail}? All data on it will be lost. [y/N] ",
        image.display(),
        device.display()
    );
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer from stdin")?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("not confirmed; nothing was written to {}", device.display());
    }
    Ok(())
}

/// Opens the target for writing, and checks it is still what was inspected and confirmed.
fn open_target(device: &Path, target: &Target) -> Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    match target {
        Target::Missing => options.create_new(true),
        Target::File(_) => &mut options,
        // On a block device O_EXCL makes the open fail if the kernel has it claimed (mounted,
        // held by device-mapper or RAID), a last guard against a mount made after our checks.
        Target::Block(_) => options.custom_flags(libc::O_EXCL),
    };
    let file = options
        .open(device)
        .with_context(|| format!("opening {}", device.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", device.display()))?;
    let same = match target {
        Target::Missing => true,
        Target::File(id) => FileId::of(&meta) == *id,
        Target::Block(dev) => DevNum::from_dev_t(meta.rdev()) == *dev,
    };
    if !same {
        bail!("{} changed while it was being checked", device.display());
    }
    Ok(file)
}

// ---------------------------------------------------------------------------------------
// Writing and verifying

/// Writes the image, reads it back and returns its digest if the two match.
fn write_and_verify(
    source: &mut File,
    len: u64,
    out: &File,
    device: &Path,
    target: &Target,
) -> Result<Digest> {
    let label = device.display().to_string();
    let written = write_image(source, len, out, &label)?;
    drop_cached_pages(out, device, matches!(target, Target::Block(_)))?;
    let read_back = read_back(out, len, &label)?;
    if read_back != written {
        // Best effort: the device is known bad, so make sure it at least does not boot.
        let _ = zero_head(out, len);
        bail!(
            "verifying {}: wrote {written} but read back {read_back}; its first MiB was zeroed \
             so it will not boot a corrupt image",
            device.display()
        );
    }
    Ok(written)
}

/// Writes the image everything-but-the-first-MiB first and returns the digest of what it
/// wrote, hashed in image order.
fn write_image(source: &mut File, len: u64, out: &File, label: &str) -> Result<Digest> {
    let mut progress = Progress::new(format!("writing {label}"), len);
    let head = read_head(source, len)?;
    let mut hasher = Hasher::new();
    hasher.update(&head);
    zero_head(out, len).with_context(|| format!("writing {label}"))?;
    write_tail(source, out, &mut hasher, &mut progress, label)?;
    sync(out, label)?;
    out.write_all_at(&head, 0)
        .with_context(|| format!("writing {label}"))?;
    sync(out, label)?;
    progress.add(head.len() as u64);
    progress.finish();
    let (digest, hashed) = hasher.finish();
    if hashed != len {
        bail!("the image changed size while it was being written ({len} → {hashed} bytes)");
    }
    Ok(digest)
}

fn read_head(source: &mut File, len: u64) -> Result<Vec<u8>> {
    let mut head = vec![0; len.min(HEAD) as usize];
    source
        .read_exact(&mut head)
        .context("reading the image's first MiB")?;
    Ok(head)
}

/// Zeroes the held-back region and makes that durable before the rest is written.
fn zero_head(out: &File, len: u64) -> io::Result<()> {
    out.write_all_at(&vec![0; len.min(HEAD) as usize], 0)?;
    out.sync_all()
}

/// Streams the image from its current position (just past the head) to the same offset of
/// the target.
fn write_tail(
    source: &mut File,
    out: &File,
    hasher: &mut Hasher,
    progress: &mut Progress,
    label: &str,
) -> Result<()> {
    let mut buf = vec![0; CHUNK];
    let mut offset = HEAD;
    loop {
        let n = read_full(source, &mut buf).context("reading the image")?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
        out.write_all_at(&buf[..n], offset)
            .with_context(|| format!("writing {label} at byte {offset}"))?;
        offset += n as u64;
        progress.add(n as u64);
    }
}

/// Fills `buf` unless the stream ends first; returns the bytes read (0 at the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn sync(out: &File, label: &str) -> Result<()> {
    out.sync_all().with_context(|| format!("syncing {label}"))
}

/// Evicts the target's cached pages, so the read-back comes from the device rather than from
/// the memory that was just written.
fn drop_cached_pages(out: &File, device: &Path, block: bool) -> Result<()> {
    // BLKFLSBUF needs CAP_SYS_ADMIN; without it fadvise still drops the clean pages.
    // SAFETY: BLKFLSBUF takes no argument and touches no memory of ours.
    if block && unsafe { libc::ioctl(out.as_raw_fd(), libc::_IO(0x12, 97), 0) } == 0 {
        return Ok(());
    }
    // SAFETY: plain syscall on a descriptor we own.
    let rc = unsafe { libc::posix_fadvise(out.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc))
            .with_context(|| format!("dropping cached pages of {}", device.display()));
    }
    Ok(())
}

/// The digest of the target's first `len` bytes.
fn read_back(out: &File, len: u64, label: &str) -> Result<Digest> {
    let mut progress = Progress::new(format!("verifying {label}"), len);
    let mut buf = vec![0; CHUNK];
    let mut hasher = Hasher::new();
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(CHUNK as u64) as usize;
        out.read_exact_at(&mut buf[..n], offset)
            .with_context(|| format!("reading back {label} at byte {offset}"))?;
        hasher.update(&buf[..n]);
        offset += n as u64;
        progress.add(n as u64);
    }
    progress.finish();
    Ok(hasher.finish().0)
}

/// Progress on stderr: a live line on a terminal, otherwise a line per tenth so logs stay
/// short.
struct Progress {
    label: String,
    total: u64,
    done: u64,
    tty: bool,
    tenths_shown: u64,
}

impl Progress {
    fn new(label: String, total: u64) -> Progress {
        Progress {
            label,
            total,
            done: 0,
            tty: io::stderr().is_terminal(),
            tenths_shown: 0,
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.total == 0 {
            return;
        }
        let percent = self.done * 100 / self.total;
        if self.tty {
            eprint!(
                "\r{}: {percent:3}% ({} of {} MiB)",
                self.label,
                self.done >> 20,
                self.total >> 20
            );
        } else if percent / 10 > self.tenths_shown {
            self.tenths_shown = percent / 10;
            eprintln!("{}: {percent}%", self.label);
        }
    }

    fn finish(&self) {
        if self.tty && self.total > 0 {
            eprintln!();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Is the target in use?

/// A device number as `/proc/self/mountinfo` and sysfs write it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct DevNum {
    major: u32,
    minor: u32,
}

impl DevNum {
    fn from_dev_t(dev: u64) -> DevNum {
        DevNum {
            major: libc::major(dev),
            minor: libc::minor(dev),
        }
    }

    /// Parses "MAJOR:MINOR".
    fn parse(s: &str) -> Option<DevNum> {
        let (major, minor) = s.trim().split_once(':')?;
        Some(DevNum {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    fn sysfs(self) -> PathBuf {
        PathBuf::from(format!("/sys/dev/block/{self}"))
    }
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One line of `/proc/self/mountinfo`, the fields that say what is mounted where.
#[derive(Debug)]
struct Mount {
    dev: DevNum,
    mount_point: PathBuf,
    source: String,
}

impl Mount {
    /// Whether the mount's filesystem lives on `dev`. The mountinfo number alone misses
    /// filesystems like btrfs that report an anonymous device, so the source is checked too.
    fn is_on(&self, dev: DevNum) -> bool {
        self.dev == dev
            || (self.source.starts_with('/') && block_dev_of(Path::new(&self.source)) == Some(dev))
    }
}

fn read_mounts() -> Result<Vec<Mount>> {
    let path = "/proc/self/mountinfo";
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse_mountinfo(&text).with_context(|| format!("parsing {path}"))
}

fn parse_mountinfo(text: &str) -> Result<Vec<Mount>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| parse_mountinfo_line(line).with_context(|| format!("bad line `{line}`")))
        .collect()
}

/// Parses `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`.
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let dev = DevNum::parse(fields.nth(2)?)?;
    let mount_point = PathBuf::from(unescape(fields.nth(1)?));
    // Optional fields vary in number; the separator ends them.
    let mut after_separator = fields.skip_while(|f| *f != "-").skip(1);
    let _fstype = after_separator.next()?;
    let source = unescape(after_separator.next()?);
    Some(Mount {
        dev,
        mount_point,
        source,
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space) in mountinfo and /proc/swaps.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The paths in `/proc/swaps`.
fn read_swaps() -> Result<Vec<PathBuf>> {
    let path = "/proc/swaps";
    let text = match fs::read_to_string(path) {
        // Kernels built without swap have no such file, and nothing in use as swap.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.with_context(|| format!("reading {path}"))?,
    };
    Ok(parse_swaps(&text))
}

fn parse_swaps(text: &str) -> Vec<PathBuf> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(|name| PathBuf::from(unescape(name)))
        .collect()
}

fn block_dev_of(path: &Path) -> Option<DevNum> {
    let meta = fs::metadata(path).ok()?;
    meta.file_type()
        .is_block_device()
        .then(|| DevNum::from_dev_t(meta.rdev()))
}

/// A block device the target's contents reach: the target, a partition of it, or a device
/// stacked on either (device-mapper, RAID).
#[derive(Debug)]
struct BlockDev {
    dev: DevNum,
    name: String,
    holder: bool,
}

impl BlockDev {
    fn new(dev: DevNum, holder: bool) -> BlockDev {
        let name = fs::canonicalize(dev.sysfs())
            .ok()
            .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
            .map_or_else(|| dev.to_string(), |n| format!("/dev/{n}"));
        BlockDev { dev, name, holder }
    }
}

/// `dev`, its partitions, and whatever holds any of them, transitively.
fn related_devices(dev: DevNum) -> Result<Vec<BlockDev>> {
    let mut found = vec![BlockDev::new(dev, false)];
    let mut next = 0;
    while next < found.len() {
        let current = found[next].dev;
        next += 1;
        let stacked = partitions(current)?
            .into_iter()
            .map(|d| (d, false))
            .chain(holders(current)?.into_iter().map(|d| (d, true)));
        for (d, holder) in stacked {
            if !found.iter().any(|b| b.dev == d) {
                found.push(BlockDev::new(d, holder));
            }
        }
    }
    Ok(found)
}

/// Partitions appear in sysfs as subdirectories of the disk holding a `partition` file.
fn partitions(dev: DevNum) -> Result<Vec<DevNum>> {
    let dir = dev.sysfs();
    sysfs_children(&dir, |entry| entry.join("partition").exists())
}

fn holders(dev: DevNum) -> Result<Vec<DevNum>> {
    let dir = dev.sysfs().join("holders");
    sysfs_children(&dir, |_| true)
}

/// The device numbers of the subdirectories of `dir` that `keep` accepts.
fn sysfs_children(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<DevNum>> {
    let entries = match fs::read_dir(dir) {
        // No sysfs entry (or no sysfs): nothing is known to be stacked on the device.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.with_context(|| format!("reading {}", dir.display()))?,
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if !keep(&path) {
            continue;
        }
        let Ok(text) = fs::read_to_string(path.join("dev")) else {
            continue;
        };
        found.extend(DevNum::parse(&text));
    }
    Ok(found)
}

/// Refuses block device `dev` (called `what` in messages) if anything on it is mounted or
/// swapped on, or another device is stacked on it.
fn refuse_block_in_use(what: &str, dev: DevNum, mounts: &[Mount], swaps: &[PathBuf]) -> Result<()> {
    let related = related_devices(dev)?;
    let mounted: Vec<(&BlockDev, &Mount)> = related
        .iter()
        .flat_map(|b| {
            mounts
                .iter()
                .filter(|m| m.is_on(b.dev))
                .map(move |m| (b, m))
        })
        .collect();
    if let Some((b, _)) = mounted
        .iter()
        .find(|(_, m)| m.mount_point == Path::new("/"))
    {
        bail!(
            "refusing to write to {what}: it holds the running system ({} is mounted on /)",
            b.name
        );
    }
    if !mounted.is_empty() {
        let list: Vec<String> = mounted
            .iter()
            .map(|(b, m)| format!("{} is mounted on {}", b.name, m.mount_point.display()))
            .collect();
        bail!("refusing to write to {what}: {}", list.join(", "));
    }
    let swapped = related
        .iter()
        .find(|b| swaps.iter().any(|s| block_dev_of(s) == Some(b.dev)));
    if let Some(b) = swapped {
        bail!("refusing to write to {what}: {} is in use as swap", b.name);
    }
    if let Some(b) = related.iter().find(|b| b.holder) {
        bail!(
            "refusing to write to {what}: it is in use by {} (device-mapper, RAID or similar)",
            b.name
        );
    }
    Ok(())
}

/// Refuses a regular file in use as swap or as the backing file of a loop device in use.
fn refuse_file_in_use(
    device: &Path,
    id: FileId,
    mounts: &[Mount],
    swaps: &[PathBuf],
) -> Result<()> {
    let is_target = |p: &Path| fs::metadata(p).is_ok_and(|m| FileId::of(&m) == id);
    if swaps.iter().any(|s| is_target(s)) {
        bail!(
            "refusing to write to {}: it is in use as a swap file",
            device.display()
        );
    }
    for (loop_dev, name) in loops_backed_by(&is_target)? {
        let what = format!("{} (the backing file of {name})", device.display());
        refuse_block_in_use(&what, loop_dev, mounts, swaps)?;
    }
    Ok(())
}

/// The loop devices whose backing file `is_target` accepts, with their names.
fn loops_backed_by(is_target: &impl Fn(&Path) -> bool) -> Result<Vec<(DevNum, String)>> {
    let dir = Path::new("/sys/block");
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.with_context(|| format!("reading {}", dir.display()))?,
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        // Only configured loop devices have a backing file.
        let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        let backing = backing.trim_end_matches('\n');
        let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
        // Compared by device and inode: the path the loop was set up with may be another
        // hard link, or relative to another mount, than the one we were given.
        if !is_target(Path::new(backing)) {
            continue;
        }
        let dev = fs::read_to_string(entry.path().join("dev"))
            .ok()
            .and_then(|t| DevNum::parse(&t));
        found.extend(dev.map(|d| (d, format!("/dev/{name}"))));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_mount(mounts: &[Mount]) -> &Mount {
        mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == Path::new("/"))
            .expect("a mount on /")
    }

    #[test]
    fn real_mountinfo_has_root() {
        let mounts = read_mounts().unwrap();
        let root = root_mount(&mounts);
        assert!(!root.source.is_empty(), "{root:?}");
        let proc = mounts
            .iter()
            .find(|m| m.mount_point == Path::new("/proc"))
            .expect("a mount on /proc");
        assert_eq!(proc.source, "proc", "{proc:?}");
    }

    #[test]
    fn parses_optional_fields_and_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
                    22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        let mounts = parse_mountinfo(text).unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(
            mounts[0].dev,
            DevNum {
                major: 98,
                minor: 0
            }
        );
        assert_eq!(mounts[0].mount_point, Path::new("/mnt/my disk"));
        assert_eq!(mounts[0].source, "/dev/root");
        assert_eq!(
            mounts[1].dev,
            DevNum {
                major: 0,
                minor: 21
            }
        );
        assert_eq!(mounts[1].source, "proc");
        assert!(parse_mountinfo("36 35 98 / /mnt rw - ext3 /dev/x rw").is_err());
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\040b\\011c"), "a b\tc");
        assert_eq!(unescape("a\\09b\\"), "a\\09b\\");
    }

    #[test]
    fn parses_swaps() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/sda2                               partition\t1000\t0\t-2\n\
                    /swap\\040file file 10 0 -3\n";
        assert_eq!(
            parse_swaps(text),
            [PathBuf::from("/dev/sda2"), PathBuf::from("/swap file")]
        );
    }

    /// Reads only: the refusal must name the running system for the device holding `/`.
    #[test]
    fn refuses_the_device_holding_root() {
        let mounts = read_mounts().unwrap();
        let root = root_mount(&mounts);
        let dev = block_dev_of(Path::new(&root.source)).or_else(|| {
            Path::new(&format!("/sys/dev/block/{}", root.dev))
                .exists()
                .then_some(root.dev)
        });
        let Some(dev) = dev else {
            eprintln!("/ is not on a block device ({root:?}); nothing to check");
            return;
        };
        let err = refuse_block_in_use("root", dev, &mounts, &read_swaps().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("holds the running system"),
            "{err:#}"
        );
    }
}
