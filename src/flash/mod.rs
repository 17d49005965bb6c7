//! `bootforge flash`: write an image to a block device or a file, sync, read it back and
//! compare digests. An `.xz` image (as Raspberry Pi images are published) is decompressed as
//! it is written; its size comes from its index, and xz's own checks guard the stream.
//!
//! Writes follow coreos-installer's order: the first MiB of the target (partition tables, boot
//! sectors) is zeroed first and written last, each step synced before the next, so a flash cut
//! short leaves a device that firmware will not boot rather than a half-written one it might.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::base::progress::Progress;
use crate::base::{Digest, Hasher};
use in_use::{DevNum, read_mounts, read_swaps, refuse_block_in_use, refuse_file_in_use};

mod in_use;
pub(crate) mod xz;

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
    /// The image's length: the number of bytes written and read back (decompressed).
    pub bytes: u64,
    /// The image file was xz-compressed and decompressed as it was written.
    pub decompressed: bool,
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
    let (mut source, image_meta, len, decompressed) = open_image(image)?;
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
        decompressed,
        sha256: written?,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The image as a stream of its bytes, with its metadata, its (decompressed) length and
/// whether it is xz-compressed.
fn open_image(image: &Path) -> Result<(Box<dyn Read>, Metadata, u64, bool)> {
    let file = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", image.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", image.display());
    }
    let mut magic = [0; xz::MAGIC.len()];
    let is_xz = file.read_exact_at(&mut magic, 0).is_ok() && magic == xz::MAGIC;
    if !is_xz {
        let len = meta.len();
        return Ok((Box::new(file), meta, len, false));
    }
    let len = xz::uncompressed_size(&file, meta.len())
        .with_context(|| format!("reading the xz image {}", image.display()))?;
    let reader = io::BufReader::with_capacity(1 << 20, file);
    let decoder = xz2::read::XzDecoder::new_multi_decoder(reader);
    let named = Named {
        inner: decoder,
        path: image.to_owned(),
    };
    Ok((Box::new(named), meta, len, true))
}

/// A decompressing reader whose errors name the file (liblzma's say only "data error").
struct Named<R> {
    inner: R,
    path: PathBuf,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{} is damaged or cut short: {e}", self.path.display()),
            )
        })
    }
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
    source: &mut dyn Read,
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
fn write_image(source: &mut dyn Read, len: u64, out: &File, label: &str) -> Result<Digest> {
    let progress = Progress::new(&format!("writing {label}"), len);
    let head = read_head(source, len)?;
    let mut hasher = Hasher::new();
    hasher.update(&head);
    zero_head(out, len).with_context(|| format!("writing {label}"))?;
    write_tail(source, out, &mut hasher, &progress, label)?;
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

fn read_head(source: &mut dyn Read, len: u64) -> Result<Vec<u8>> {
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
    source: &mut dyn Read,
    out: &File,
    hasher: &mut Hasher,
    progress: &Progress,
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
fn read_full(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
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
    let progress = Progress::new(&format!("verifying {label}"), len);
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
