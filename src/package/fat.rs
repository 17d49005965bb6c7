//! Deterministic FAT12/16/32 images (EFI System Partitions, Raspberry Pi boot
//! partitions) built with `hadris-fat`, so no `mkfs.fat`/`mtools` is needed at build time.

use std::fs::File;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow};
use hadris_fat::sync::{FatFs, format};
use hadris_fat::{FatOptions, VolumeLabel};
use hadris_fs::sync::copy_tree;
use hadris_fs::{
    Clock, Content, DateTime, ErrorKind, MountOptions, Node, PathError, SetAttr, Tree,
};
use hadris_storage::Partition;
use hadris_storage::host::FileDevice;
use hadris_storage::sync::BlockDevice;

/// The FAT variant; the crate's own type, so callers can pass it straight through.
pub use hadris_fat::FatKind as FatType;

const MIB: u64 = 1 << 20;
/// FAT timestamps cannot express anything outside 1980-01-01..2107-12-31;
/// `SOURCE_DATE_EPOCH=0` is common, so clamp rather than fail.
const FAT_MIN_TIME: i64 = 315_532_800;
const FAT_MAX_TIME: i64 = 4_354_819_198;
/// Below these FAT16 cannot reach 4,085 clusters, nor FAT32 65,525, even
/// with 512-byte clusters; hadris-fat then reports a bare "no space".
const FAT16_MIN_SIZE: u64 = 3 * MIB;
const FAT32_MIN_SIZE: u64 = 34 * MIB;

fn min_size(kind: Option<FatType>) -> Option<(u64, &'static str)> {
    match kind {
        Some(FatType::Fat16) => Some((FAT16_MIN_SIZE, "FAT16 needs 4,085 clusters")),
        Some(FatType::Fat32) => Some((FAT32_MIN_SIZE, "FAT32 needs 65,525 clusters")),
        _ => None,
    }
}

/// One file to put in the volume.
#[derive(Debug, Clone)]
pub struct FatFile {
    /// Path inside the volume with `/` separators, e.g. `EFI/BOOT/BOOTX64.EFI`.
    /// Parent directories are created as needed.
    pub path: String,
    /// The file's contents.
    pub data: Vec<u8>,
}

/// How to lay out the volume.
#[derive(Debug, Clone)]
pub struct FatSpec {
    /// Volume label, at most 11 ASCII characters (stored uppercase); empty for none.
    pub label: String,
    /// Volume serial number ("volume ID").
    pub serial: u32,
    /// Timestamp of every entry, in Unix seconds (normally `SOURCE_DATE_EPOCH`).
    pub mtime: i64,
    /// FAT variant; `None` lets the size decide (FAT12 below 16 MiB, FAT16
    /// below 512 MiB, FAT32 above, as Microsoft's and hadris-fat's defaults do).
    pub fat_type: Option<FatType>,
    /// Volume size in bytes; `None` for the smallest sensible size that holds
    /// the files with some slack, rounded up to 1 MiB.
    pub size: Option<u64>,
}

/// Writes the volume into `out`, which is truncated first, and returns its size in bytes.
/// `out` must be open for reading as well as writing: hadris-fat reads back the FATs and
/// directories it writes.
pub fn write_fat(out: &File, files: &[FatFile], spec: &FatSpec) -> Result<u64> {
    // hadris-fat leaves the data region as it finds it, so start from zeros.
    out.set_len(0).context("truncating the FAT image")?;
    let dev = FileDevice::new(out.try_clone()?).context("opening the FAT image")?;
    build(dev, files, spec)?;
    Ok(out.metadata()?.len())
}

/// Writes the volume into `out` at byte `offset`, as a partition of a disk image being made:
/// the bytes before `offset` are left alone, the rest of the file is replaced (sparse zeros
/// first). `spec.size` is required; returns it.
pub fn write_fat_at(out: &File, offset: u64, files: &[FatFile], spec: &FatSpec) -> Result<u64> {
    let size = spec
        .size
        .context("a FAT volume inside a disk image needs a size")?;
    out.set_len(offset).context("truncating the disk image")?;
    out.set_len(offset + size)
        .context("sizing the disk image")?;
    let dev = FileDevice::new(out.try_clone()?).context("opening the disk image")?;
    build(Partition::new(dev, offset, size), files, spec)?;
    Ok(size)
}

/// Builds the volume in memory; meant for small volumes such as an EFI System Partition.
pub fn fat_image(files: &[FatFile], spec: &FatSpec) -> Result<Vec<u8>> {
    build(Vec::new(), files, spec)
}

fn build<D>(dev: D, files: &[FatFile], spec: &FatSpec) -> Result<D>
where
    D: BlockDevice,
    D::Error: std::error::Error + Send + Sync + 'static,
{
    let mut options = FatOptions::new().with_serial(spec.serial);
    if !spec.label.is_empty() {
        let label = VolumeLabel::new(&spec.label).map_err(|kind| {
            anyhow!("invalid FAT volume label {:?} ({kind}): at most 11 ASCII characters, none of \"*+,./:;<=>?[\\]|", spec.label)
        })?;
        options = options.with_label(label);
    }
    if let Some(kind) = spec.fat_type {
        options = options.with_kind(kind);
    }
    let size = match spec.size {
        Some(size) => size,
        None => auto_size(files, spec.fat_type),
    };
    let time = DateTime::from_unix_seconds(spec.mtime.clamp(FAT_MIN_TIME, FAT_MAX_TIME))
        .map_err(|err| anyhow!("FAT timestamp {}: {err}", spec.mtime))?;
    let options = options.with_size(size).with_time(time);

    let attrs = SetAttr::new()
        .with_created(time)
        .with_modified(time)
        .with_accessed(time);
    let mut tree = Tree::new();
    for file in files {
        let node = Node::file(Content::bytes(file.data.clone())).with_attrs(attrs);
        tree.insert(file.path.trim_start_matches('/'), node)
            .with_context(|| format!("adding {:?} to the FAT volume", file.path))?;
    }
    let total: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    let no_space = |err: PathError| {
        if err.kind() != ErrorKind::NoSpace {
            return anyhow!(err);
        }
        let mut msg = format!(
            "{} file(s), {total} bytes, do not fit in a {size}-byte {} FAT volume",
            files.len(),
            spec.fat_type.map_or("auto".into(), |k| format!("{k:?}")),
        );
        if let Some((min, why)) = min_size(spec.fat_type) {
            msg += &format!(" ({why}: at least {} MiB)", min / MIB);
        }
        anyhow!(err).context(msg)
    };
    write_tree(dev, &tree, &options, time).map_err(no_space)
}

/// `hadris_fat::sync::write` mounts without a clock, which dates `.`/`..`
/// 1980-01-01; mounting ourselves with a fixed clock dates them `mtime` too.
fn write_tree<D>(
    mut dev: D,
    tree: &Tree,
    options: &FatOptions,
    time: DateTime,
) -> Result<D, PathError>
where
    D: BlockDevice,
    D::Error: std::error::Error + Send + Sync + 'static,
{
    format(&mut dev, options)?;
    let mut fs = FatFs::mount(dev, MountOptions::new().with_clock(fixed_clock(time)))?;
    let root = fs.root();
    copy_tree(tree, &mut fs, root)?;
    Ok(fs.unmount()?)
}

/// Estimates as if clusters were 8 KiB (the most Microsoft's table picks up
/// to 8 GiB), so the volume always holds the files whatever cluster size
/// the layout ends up with.
fn auto_size(files: &[FatFile], kind: Option<FatType>) -> u64 {
    const CLUSTER: u64 = 8 << 10;
    let mut dirs = std::collections::BTreeSet::new();
    for file in files {
        let mut parts: Vec<_> = file.path.trim_matches('/').split('/').collect();
        parts.pop();
        for i in 1..=parts.len() {
            dirs.insert(parts[..i].join("/"));
        }
    }
    let data = files
        .iter()
        .map(|f| (f.data.len() as u64).div_ceil(CLUSTER) * CLUSTER)
        .sum::<u64>()
        + dirs.len() as u64 * CLUSTER;
    // A quarter spare leaves room to replace a kernel or add a file later;
    // the extra MiB covers FATs, root directory and reserved sectors.
    let size = (data + data / 4 + MIB).div_ceil(MIB) * MIB;
    size.max(min_size(kind).map_or(0, |(min, _)| min))
}

struct FixedClock(DateTime);

impl Clock for FixedClock {
    fn now(&self) -> DateTime {
        self.0
    }
}

/// `MountOptions` only takes a `'static` clock; leaking one per distinct
/// time keeps memory bounded by the number of different `mtime`s used.
fn fixed_clock(time: DateTime) -> &'static FixedClock {
    static CLOCKS: Mutex<Vec<&'static FixedClock>> = Mutex::new(Vec::new());
    let mut clocks = CLOCKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(clock) = clocks.iter().find(|clock| clock.0 == time) {
        return clock;
    }
    let clock = Box::leak(Box::new(FixedClock(time)));
    clocks.push(clock);
    clock
}

// Worth copying: these tests check what we write with the tools people use to read it
// (`fsck.fat`, mtools), never with our own reader.
#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// 2023-11-14 22:13:20 UTC.
    const MTIME: i64 = 1_700_000_000;
    const MDIR_STAMP: &str = "2023-11-14  22:13";

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn file(path: &str, data: Vec<u8>) -> FatFile {
        FatFile {
            path: path.into(),
            data,
        }
    }

    fn spec(fat_type: Option<FatType>, size: Option<u64>) -> FatSpec {
        FatSpec {
            label: "BOOTFORGE".into(),
            serial: 0x1234_abcd,
            mtime: MTIME,
            fat_type,
            size,
        }
    }

    fn esp_files() -> Vec<FatFile> {
        vec![
            file("EFI/BOOT/BOOTX64.EFI", noise(3 << 20, 1)),
            file("EFI/BOOT/grub.cfg", b"set timeout=0\n".to_vec()),
            file("loader/entries/bootforge-linux.conf", noise(700, 2)),
            file("empty.txt", Vec::new()),
        ]
    }

    fn pi_files() -> Vec<FatFile> {
        vec![
            file("bcm2711-rpi-4-b.dtb", noise(54_321, 3)),
            file("overlays/upstream-pi4.dtbo", noise(2_345, 4)),
            file("kernel8.img", noise(9 << 20, 5)),
            file("config.txt", b"arm_64bit=1\n".to_vec()),
        ]
    }

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{cmd:?} failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// Runs `fsck.fat` and mtools on the image and checks every file, the
    /// label, serial and every entry's date; returns the FAT type mtools reports.
    fn verify(img: &Path, files: &[FatFile]) -> String {
        let fsck = run(Command::new("fsck.fat").arg("-n").arg("-v").arg(img));
        assert!(!fsck.contains("Dirty"), "{fsck}");
        for f in files {
            let mut cmd = Command::new("mcopy");
            cmd.env("MTOOLS_SKIP_CHECK", "1")
                .arg("-n")
                .arg("-i")
                .arg(img);
            let out = cmd.arg(format!("::/{}", f.path)).arg("-").output().unwrap();
            assert!(
                out.status.success(),
                "mcopy {}: {}",
                f.path,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.stdout == f.data, "{} differs after mcopy", f.path);
        }
        let listing = run(Command::new("mdir")
            .args(["-/", "-a", "-i"])
            .arg(img)
            .arg("::/"));
        let dated: Vec<_> = listing
            .lines()
            .filter(|l| l.contains(':') && l.contains('-') && !l.contains("::"))
            .collect();
        assert!(dated.len() >= files.len(), "{listing}");
        for line in dated {
            assert!(
                line.contains(MDIR_STAMP),
                "entry not dated mtime: {line:?}\n{listing}"
            );
        }
        assert!(
            listing.contains("Volume in drive : is BOOTFORGE"),
            "{listing}"
        );
        assert!(listing.contains("Serial Number is 1234-ABCD"), "{listing}");
        let info = run(Command::new("minfo").arg("-i").arg(img));
        let kind = info
            .lines()
            .find_map(|l| l.strip_prefix("disk type=\""))
            .expect("disk type");
        kind.trim_end_matches('"').trim().to_string()
    }

    /// The label's own directory entry is invisible to mtools: find it raw and check its date.
    fn label_entry_dated(img: &[u8]) {
        let date = ((2023 - 1980) << 9 | 11 << 5 | 14) as u16;
        let found = img.chunks_exact(32).any(|e| {
            &e[..11] == b"BOOTFORGE  "
                && e[11] == 0x08
                && u16::from_le_bytes([e[24], e[25]]) == date
        });
        assert!(found, "no volume label entry dated mtime");
    }

    fn rw(path: &Path) -> File {
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap()
    }

    fn save(dir: &Path, img: &[u8]) -> std::path::PathBuf {
        let path = dir.join("fat.img");
        std::fs::write(&path, img).unwrap();
        path
    }

    #[test]
    fn esp_auto_size_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let files = esp_files();
        let img = fat_image(&files, &spec(None, None)).unwrap();
        assert_eq!(img.len() as u64 % MIB, 0);
        assert!(
            img.len() as u64 <= 8 * MIB,
            "{} bytes is not small",
            img.len()
        );
        label_entry_dated(&img);
        let kind = verify(&save(dir.path(), &img), &files);
        assert!(kind == "FAT12" || kind == "FAT16", "{kind}");
    }

    #[test]
    fn pi_fat32_file_matches_memory() {
        let dir = tempfile::tempdir().unwrap();
        let files = pi_files();
        let spec = spec(Some(FatType::Fat32), Some(64 * MIB));
        let path = dir.path().join("boot.img");
        let out = rw(&path);
        assert_eq!(write_fat(&out, &files, &spec).unwrap(), 64 * MIB);
        assert_eq!(verify(&path, &files), "FAT32");
        let img = std::fs::read(&path).unwrap();
        label_entry_dated(&img);
        assert!(
            img == fat_image(&files, &spec).unwrap(),
            "file and memory builds differ"
        );
        // Rewriting over a dirty, larger file must not leave old bytes behind.
        std::fs::write(&path, vec![0xa5; 70 << 20]).unwrap();
        let out = File::options().read(true).write(true).open(&path).unwrap();
        write_fat(&out, &files, &spec).unwrap();
        assert!(std::fs::read(&path).unwrap() == img, "stale bytes survived");
    }

    #[test]
    fn auto_type_follows_size() {
        let dir = tempfile::tempdir().unwrap();
        let files = esp_files();
        let expect = [
            (4 * MIB, "FAT12"),
            (8 * MIB, "FAT12"),
            (64 * MIB, "FAT16"),
            (600 * MIB, "FAT32"),
        ];
        for (size, want) in expect {
            let path = dir.path().join(format!("{size}.img"));
            let out = rw(&path);
            write_fat(&out, &files, &spec(None, Some(size))).unwrap();
            assert_eq!(verify(&path, &files), want, "{size} bytes");
        }
        let img = fat_image(&files, &spec(Some(FatType::Fat32), None)).unwrap();
        assert_eq!(verify(&save(dir.path(), &img), &files), "FAT32");
    }

    #[test]
    fn deterministic_across_time_and_tz() {
        let files = esp_files();
        let first = fat_image(&files, &spec(None, None)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(
            first == fat_image(&files, &spec(None, None)).unwrap(),
            "wall clock leaked in"
        );
        // TZ is read at process start, so build in child processes rather than set_var.
        let dir = tempfile::tempdir().unwrap();
        let test = format!(
            "{}::emit_for_tz",
            module_path!().split_once("::").unwrap().1
        );
        for tz in ["UTC", "Pacific/Kiritimati", "America/St_Johns"] {
            let path = dir.path().join(format!("{}.img", tz.replace('/', "_")));
            let exe = std::env::current_exe().unwrap();
            run(Command::new(exe)
                .args(["--exact", &test, "--ignored", "--quiet"])
                .env("TZ", tz)
                .env("FAT_EMIT", &path));
            assert!(
                std::fs::read(&path).unwrap() == first,
                "TZ={tz} changed the image"
            );
        }
    }

    #[test]
    #[ignore = "helper run by deterministic_across_time_and_tz"]
    fn emit_for_tz() {
        let path = std::env::var("FAT_EMIT").expect("FAT_EMIT");
        std::fs::write(path, fat_image(&esp_files(), &spec(None, None)).unwrap()).unwrap();
    }

    #[test]
    fn clear_errors() {
        let files = esp_files();
        let err = fat_image(&files, &spec(None, Some(2 * MIB))).unwrap_err();
        assert!(
            format!("{err:#}").contains("do not fit in a 2097152-byte"),
            "{err:#}"
        );
        let err = fat_image(&files, &spec(Some(FatType::Fat32), Some(16 * MIB))).unwrap_err();
        assert!(
            format!("{err:#}").contains("FAT32 needs 65,525 clusters"),
            "{err:#}"
        );
        let long = FatSpec {
            label: "TWELVE_CHARS".into(),
            ..spec(None, None)
        };
        let err = fat_image(&files, &long).unwrap_err();
        assert!(format!("{err:#}").contains("at most 11"), "{err:#}");
        let dup = [file("a/b", vec![1]), file("a/b", vec![2])];
        let err = fat_image(&dup, &spec(None, None)).unwrap_err();
        assert!(format!("{err:#}").contains("\"a/b\""), "{err:#}");
    }

    #[test]
    fn forced_types_and_extreme_mtimes() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = [file("a.txt", b"a".to_vec())];
        for kind in [FatType::Fat12, FatType::Fat16, FatType::Fat32] {
            let img = fat_image(&tiny, &spec(Some(kind), None)).unwrap();
            assert_eq!(
                verify(&save(dir.path(), &img), &tiny),
                format!("{kind:?}").to_uppercase()
            );
        }
        for mtime in [0, i64::MAX] {
            let img = fat_image(
                &tiny,
                &FatSpec {
                    mtime,
                    ..spec(None, None)
                },
            )
            .unwrap();
            run(Command::new("fsck.fat")
                .arg("-n")
                .arg(save(dir.path(), &img)));
        }
    }

    /// `cargo test --release --lib package::fat -- --ignored --nocapture time_256m`
    #[test]
    #[ignore = "timing only"]
    fn time_256m_fat32() {
        let dir = tempfile::tempdir().unwrap();
        let files = [file("rootfs.img", noise(200 << 20, 6))];
        let path = dir.path().join("big.img");
        let out = rw(&path);
        let start = std::time::Instant::now();
        write_fat(&out, &files, &spec(Some(FatType::Fat32), Some(256 * MIB))).unwrap();
        eprintln!("256 MiB FAT32, one 200 MiB file: {:?}", start.elapsed());
        verify(&path, &files);
    }
}
