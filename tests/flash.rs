//! `bootforge flash` end to end: onto files and loop devices, and the refusals that keep it
//! from destroying a device in use.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::common::{Env, Run, noise, sha256_hex};

const MIB: usize = 1 << 20;

fn write_image(env: &Env, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let bytes = noise(len, seed);
    let path = env.path().join("image.img");
    fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn flash(env: &Env, image: &Path, device: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "--json",
        "flash",
        image.to_str().unwrap(),
        "--device",
        device.to_str().unwrap(),
    ];
    args.extend(extra);
    env.run(&args)
}

/// The report must name the image's digest and length.
fn assert_report(run: &Run, image: &[u8]) {
    let report = run.json();
    assert_eq!(
        report["sha256"],
        format!("sha256:{}", sha256_hex(image)),
        "{run}"
    );
    assert_eq!(report["bytes"], image.len() as u64, "{run}");
}

/// Flashes a `len`-byte image onto a file that does not exist yet: no question asked.
fn flashes_a_new_file(len: usize, seed: u64) {
    let env = Env::bare();
    let (image, bytes) = write_image(&env, len, seed);
    let target = env.path().join("new.raw");
    let run = flash(&env, &image, &target, &[]).ok();
    assert_report(&run, &bytes);
    assert!(
        fs::read(&target).unwrap() == bytes,
        "target differs from the image"
    );
}

#[test]
fn flashes_onto_a_new_file_without_asking() {
    // Not a multiple of the 4 MiB chunk, so the last chunk is a short one.
    flashes_a_new_file(5 * MIB + 4097, 1);
}

#[test]
fn flashes_an_image_smaller_than_the_held_back_mib() {
    flashes_a_new_file(1000, 2);
}

#[test]
fn flashes_an_xz_image_decompressing_it_as_it_writes() {
    let env = Env::bare();
    // Two xz streams back to back with padding, as `xz` and `cat` make them: 6 MiB of
    // image, partly zeros so it compresses.
    let mut bytes = noise(3 * MIB + 17, 3);
    bytes.extend(vec![0; 3 * MIB]);
    let (a, b) = bytes.split_at(2 * MIB);
    let mut xz = Vec::new();
    for (i, part) in [a, b].iter().enumerate() {
        let path = env.path().join(format!("part{i}"));
        fs::write(&path, part).unwrap();
        let out = Command::new("xz")
            .args(["-T1", "-c"])
            .arg(&path)
            .output()
            .expect("running xz (xz-utils)");
        assert!(out.status.success(), "{out:?}");
        xz.extend(out.stdout);
        xz.extend([0; 4]);
    }
    let image = env.path().join("image.img.xz");
    fs::write(&image, &xz).unwrap();
    let target = env.path().join("sd.raw");
    let run = flash(&env, &image, &target, &[]).ok();
    assert_report(&run, &bytes);
    assert_eq!(run.json()["decompressed"], true, "{run}");
    assert!(fs::read(&target).unwrap() == bytes, "target differs");

    // Cut short, or with a damaged block: refused naming the file, no target left.
    for (name, bad) in [
        ("cut.img.xz", xz[..xz.len() - 9].to_vec()),
        ("damaged.img.xz", {
            let mut d = xz.clone();
            d[100] ^= 0x40;
            d
        }),
    ] {
        let image = env.path().join(name);
        fs::write(&image, &bad).unwrap();
        let target = env.path().join(format!("{name}.raw"));
        flash(&env, &image, &target, &[]).fails().says(&[name]);
        assert!(!target.exists(), "{name}: a target was left");
    }
}

#[test]
fn flashes_onto_an_existing_larger_file_with_yes() {
    let env = Env::bare();
    let (image, bytes) = write_image(&env, 5 * MIB, 3);
    let target = env.path().join("disk.raw");
    fs::write(&target, vec![0xAA; 8 * MIB]).unwrap();
    let run = flash(&env, &image, &target, &["--yes"]).ok();
    assert_report(&run, &bytes);
    let after = fs::read(&target).unwrap();
    assert_eq!(
        after.len(),
        8 * MIB,
        "a device-like target is not truncated"
    );
    assert!(
        after[..bytes.len()] == bytes[..],
        "target differs from the image"
    );
    assert!(
        after[bytes.len()..].iter().all(|&b| b == 0xAA),
        "wrote past the image"
    );
}

#[test]
fn refuses_an_existing_target_without_yes_when_stdin_is_not_a_terminal() {
    let env = Env::bare();
    let (image, _) = write_image(&env, MIB, 4);
    let target = env.path().join("disk.raw");
    fs::write(&target, vec![0x55; 2 * MIB]).unwrap();
    // `Command::output` gives the child no stdin, so it is not a terminal.
    flash(&env, &image, &target, &[]).fails().says(&[
        "disk.raw exists",
        "not a terminal",
        "pass --yes",
    ]);
    assert!(
        fs::read(&target).unwrap().iter().all(|&b| b == 0x55),
        "target was written"
    );
}

#[test]
fn refuses_the_image_itself_by_any_name() {
    let env = Env::bare();
    let (image, bytes) = write_image(&env, MIB, 5);
    let link = env.path().join("another-name.img");
    fs::hard_link(&image, &link).unwrap();
    for target in [&image, &link] {
        flash(&env, &image, target, &["--yes"])
            .fails()
            .says(&["onto itself", "is the image"]);
    }
    assert!(fs::read(&image).unwrap() == bytes, "the image was changed");
}

#[test]
fn refuses_directories_and_character_devices() {
    let env = Env::bare();
    let (image, _) = write_image(&env, MIB, 6);
    flash(&env, &image, env.path(), &["--yes"])
        .fails()
        .says(&["is a directory"]);
    flash(&env, &image, Path::new("/dev/null"), &["--yes"])
        .fails()
        .says(&["/dev/null is a character device"]);
}

#[test]
fn refuses_a_mounted_target() {
    let env = Env::bare();
    let (image, _) = write_image(&env, MIB, 7);
    let backing = env.path().join("disk.raw");
    fs::write(&backing, vec![0; 4 * MIB]).unwrap();
    let mount_point = env.path().join("mnt");
    fs::create_dir(&mount_point).unwrap();
    let _serial = LOOPS.lock().unwrap_or_else(|e| e.into_inner());
    let lo = LoopDevice::attach(&backing).mount_on(&mount_point);
    let shown = fs::canonicalize(&mount_point).unwrap();
    let shown = shown.to_str().unwrap();
    let before = fs::read(&backing).unwrap();
    flash(&env, &image, &backing, &["--yes"]).fails().says(&[
        "backing file of",
        &lo.dev,
        "is mounted on",
        shown,
    ]);
    flash(&env, &image, Path::new(&lo.dev), &["--yes"])
        .fails()
        .says(&["refusing to write to", "is mounted on", shown]);
    assert!(
        fs::read(&backing).unwrap() == before,
        "the mounted file was written"
    );
}

/// Without --yes and without a terminal, so that a broken refusal stops at the confirmation
/// instead of writing over the running system.
#[test]
fn refuses_the_device_holding_root() {
    let env = Env::bare();
    let (image, _) = write_image(&env, MIB, 10);
    let device = root_block_device().expect("/ is on no block device: this check cannot run");
    flash(&env, &image, &device, &[])
        .fails()
        .says(&["holds the running system"]);
}

/// The block device mounted on `/`, read from the last mount there in mountinfo.
fn root_block_device() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some("/"))?;
    let dev = line.split(' ').nth(2)?;
    let sysfs = fs::canonicalize(format!("/sys/dev/block/{dev}")).ok()?;
    let node = Path::new("/dev").join(sysfs.file_name()?);
    node.exists().then_some(node)
}

#[test]
fn refuses_an_image_larger_than_a_loop_device() {
    let env = Env::bare();
    let (image, _) = write_image(&env, 2 * MIB, 8);
    let backing = env.path().join("small.raw");
    fs::write(&backing, vec![0; MIB]).unwrap();
    let _serial = LOOPS.lock().unwrap_or_else(|e| e.into_inner());
    let lo = LoopDevice::attach(&backing);
    flash(&env, &image, Path::new(&lo.dev), &["--yes"])
        .fails()
        .says(&["is larger than", &lo.dev]);
}

#[test]
fn flashes_onto_a_loop_device() {
    let env = Env::bare();
    let (image, bytes) = write_image(&env, 3 * MIB + 1000, 9);
    let backing = env.path().join("disk.raw");
    fs::write(&backing, vec![0xAA; 4 * MIB]).unwrap();
    let _serial = LOOPS.lock().unwrap_or_else(|e| e.into_inner());
    let lo = LoopDevice::attach(&backing);
    let run = flash(&env, &image, Path::new(&lo.dev), &["--yes"]).ok();
    assert_report(&run, &bytes);
    let after = fs::read(&lo.dev).unwrap();
    assert!(
        after[..bytes.len()] == bytes[..],
        "device differs from the image"
    );
    assert!(
        after[bytes.len()..].iter().all(|&b| b == 0xAA),
        "wrote past the image"
    );
}

/// One test at a time sets up loop devices, so two `losetup --find` never race for one.
static LOOPS: Mutex<()> = Mutex::new(());

/// A loop device over a file, detached (and unmounted) when dropped, even by a failing test.
struct LoopDevice {
    dev: String,
    mounted_on: Option<PathBuf>,
}

impl LoopDevice {
    /// Panics where loop devices are not available: these tests need root and
    /// /dev/loop-control (as `.ci/run` has), and must not pass by checking nothing.
    fn attach(file: &Path) -> LoopDevice {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("running losetup (util-linux)");
        assert!(
            out.status.success(),
            "losetup --find --show failed: {}; these tests need root and loop devices",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        LoopDevice {
            dev: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            mounted_on: None,
        }
    }

    /// Makes a filesystem the kernel can mount here (ext2, else FAT) and mounts it.
    fn mount_on(mut self, dir: &Path) -> LoopDevice {
        for mkfs in [&["mkfs.ext2", "-F", "-q"][..], &["mkfs.fat"]] {
            let made = Command::new(mkfs[0])
                .args(&mkfs[1..])
                .arg(&self.dev)
                .output()
                .is_ok_and(|o| o.status.success());
            if made && succeeds(Command::new("mount").arg(&self.dev).arg(dir)) {
                self.mounted_on = Some(dir.to_owned());
                return self;
            }
        }
        panic!("could not make and mount a filesystem on {}", self.dev);
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(dir) = &self.mounted_on {
            succeeds(Command::new("umount").arg(dir));
        }
        succeeds(Command::new("losetup").arg("-d").arg(&self.dev));
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}
