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
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let serial = dir.join(format!("serial-{n}.log"));
    let start = Instant::now();
    let mut child = Command::new(format!("qemu-system-{arch}"))
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
        if start.elapsed() > limit || done() {
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
