//! Is a flash target in use? Mounted (directly, through a partition, or through a device
//! stacked on it), swapped on, holding the running system, or the backing file of a mounted
//! loop device: read from `/proc/self/mountinfo`, `/proc/swaps` and sysfs. Worth copying:
//! every way a device can be busy is refused, each with what holds it.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::FileId;

use anyhow::{Context, Result, bail};

/// A device number as `/proc/self/mountinfo` and sysfs write it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct DevNum {
    major: u32,
    minor: u32,
}

impl DevNum {
    pub(super) fn from_dev_t(dev: u64) -> DevNum {
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

    pub(super) fn sysfs(self) -> PathBuf {
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
pub(super) struct Mount {
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

pub(super) fn read_mounts() -> Result<Vec<Mount>> {
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
pub(super) fn read_swaps() -> Result<Vec<PathBuf>> {
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
pub(super) fn refuse_block_in_use(
    what: &str,
    dev: DevNum,
    mounts: &[Mount],
    swaps: &[PathBuf],
) -> Result<()> {
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
pub(super) fn refuse_file_in_use(
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
