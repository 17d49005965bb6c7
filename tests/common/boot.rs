//! Boot-test helpers: QEMU runs with a time limit and a serial log (the guests' server is
//! `super::http`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a QEMU run ended.
pub struct QemuRun {
    /// The exit code, or `None` when it was stopped at the time limit.
    pub code: Option<i32>,
    pub serial: String,
}

/// Runs qemu-system-`arch` with `args` (plus headless flags and a serial log) for at most
/// `limit`.
pub fn qemu(arch: &str, args: &[&str], dir: &Path, limit: Duration) -> QemuRun {
    qemu_until(arch, args, dir, limit, || false)
}

/// Like [`qemu`], but stops the VM as soon as `done` says so (for guests that cannot power
/// themselves off); `code` is then `None`.
pub fn qemu_until(
    arch: &str,
    args: &[&str],
    dir: &Path,
    limit: Duration,
    done: impl Fn() -> bool,
) -> QemuRun {
    qemu_watch(arch, args, dir, limit, |_| done())
}

/// Like [`qemu_until`], with `done` shown the serial log so far.
pub fn qemu_watch(
    arch: &str,
    args: &[&str],
    dir: &Path,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> QemuRun {
    qemu_watch_in(None, arch, args, dir, limit, done)
}

/// Like [`qemu_watch`], run inside the network namespace `netns` when given (for guests on
/// a tap device there).
pub fn qemu_watch_in(
    netns: Option<&str>,
    arch: &str,
    args: &[&str],
    dir: &Path,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> QemuRun {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let serial = dir.join(format!("serial-{n}.log"));
    let start = Instant::now();
    let program = format!("qemu-system-{arch}");
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, &program]);
            c
        }
        None => Command::new(&program),
    };
    let mut child = command
        .args(["-display", "none", "-no-reboot", "-serial"])
        .arg(format!("file:{}", serial.display()))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting qemu-system-{arch}: {e}"));
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        let so_far = std::fs::read(&serial).unwrap_or_default();
        if start.elapsed() > limit || done(&String::from_utf8_lossy(&so_far)) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = std::fs::read(&serial).unwrap_or_default();
    // QEMU's own complaints (a bad option) belong in failure messages too.
    if let Some(mut err) = child.stderr.take() {
        let mut e = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut e);
        if !e.is_empty() {
            text.extend_from_slice(b"\n--- qemu stderr ---\n");
            text.extend_from_slice(&e);
        }
    }
    QemuRun {
        code,
        serial: String::from_utf8_lossy(&text).into_owned(),
    }
}

/// PXE-boots an x86_64 UEFI client (OVMF, virtio-net) with `tftp_root` as QEMU's TFTP root.
pub fn ovmf_pxe(tftp_root: &Path, bootfile: &str, dir: &Path) -> QemuRun {
    let netdev = format!(
        "user,id=n0,tftp={},bootfile={bootfile}",
        tftp_root.display()
    );
    qemu(
        "x86_64",
        &[
            "-m",
            "256",
            "-bios",
            "/usr/share/ovmf/OVMF.fd",
            "-netdev",
            &netdev,
            "-device",
            "virtio-net-pci,netdev=n0,romfile=",
        ],
        dir,
        Duration::from_secs(120),
    )
}

/// PXE-boots a BIOS client (SeaBIOS, e1000) with `tftp_root` as QEMU's TFTP root until `done`.
pub fn seabios_pxe(
    tftp_root: &Path,
    bootfile: &str,
    dir: &Path,
    done: impl Fn() -> bool,
) -> QemuRun {
    let netdev = format!(
        "user,id=n0,tftp={},bootfile={bootfile}",
        tftp_root.display()
    );
    qemu_until(
        "x86_64",
        &[
            "-m",
            "256",
            "-boot",
            "n",
            "-netdev",
            &netdev,
            "-device",
            "e1000,netdev=n0",
        ],
        dir,
        Duration::from_secs(120),
        done,
    )
}

/// OVMF's Secure Boot build (SMM-protected variables): its code, read-only.
pub const OVMF_SECBOOT_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// Variables enrolling Debian's snakeoil cert (PK, KEK, db), Secure Boot on.
pub const OVMF_VARS_SNAKEOIL: &str = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd";
/// Variables holding Microsoft's keys (KEK, db: Windows PCA and UEFI CA 2011), Secure Boot on.
pub const OVMF_VARS_MS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// What the firmware or shim prints when it refuses an image.
pub const REFUSALS: [&str; 3] = ["Access Denied", "Security Violation", "Verification failed"];

/// The refusal line in a serial log, if any.
pub fn refusal(serial: &str) -> Option<&str> {
    serial
        .lines()
        .find(|l| REFUSALS.iter().any(|r| l.contains(r)))
}

/// AAVMF (arm64), Secure Boot capable without SMM; its snakeoil variables enrol Debian's
/// snakeoil cert with Secure Boot on.
pub const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
pub const AAVMF_VARS_SNAKEOIL: &str = "/usr/share/AAVMF/AAVMF_VARS.snakeoil.fd";

/// Boots x86_64 OVMF enforcing Secure Boot with a copy of `vars` and `media` (QEMU
/// arguments: drives, network), until `done` says so or the serial log shows a refusal.
pub fn secure_boot(vars: &Path, media: &[&str], dir: &Path, done: impl Fn() -> bool) -> QemuRun {
    let machine = [
        "-machine",
        "q35,smm=on",
        "-global",
        "driver=cfi.pflash01,property=secure,value=on",
    ];
    enforcing(
        "x86_64",
        &machine,
        OVMF_SECBOOT_CODE,
        vars,
        media,
        dir,
        done,
    )
}

/// Like [`secure_boot`], for arm64 under AAVMF.
pub fn secure_boot_arm64(
    vars: &Path,
    media: &[&str],
    dir: &Path,
    done: impl Fn() -> bool,
) -> QemuRun {
    let machine = ["-machine", "virt", "-cpu", "cortex-a57"];
    enforcing("aarch64", &machine, AAVMF_CODE, vars, media, dir, done)
}

fn enforcing(
    arch: &str,
    machine: &[&str],
    code: &str,
    vars: &Path,
    media: &[&str],
    dir: &Path,
    done: impl Fn() -> bool,
) -> QemuRun {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let copy = dir.join(format!("vars-{n}.fd"));
    std::fs::copy(vars, &copy).unwrap();
    let code = format!("if=pflash,format=raw,unit=0,readonly=on,file={code}");
    let varsdrive = format!("if=pflash,format=raw,unit=1,file={}", copy.display());
    let mut args = machine.to_vec();
    args.extend(["-drive", &code, "-drive", &varsdrive, "-m", "512"]);
    args.extend_from_slice(media);
    let run = qemu_watch(arch, &args, dir, Duration::from_secs(150), |serial| {
        done() || refusal(serial).is_some()
    });
    let _ = std::fs::remove_file(&copy);
    run
}
