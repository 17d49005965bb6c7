//! Boot-test helpers: an HTTP server on 127.0.0.1 that records what guests ask for, and
//! QEMU runs with a time limit and a serial log.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serves `body` for every GET and records each request path.
pub struct HttpServer {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    pub fn start(body: &str) -> HttpServer {
        let body = body.to_owned();
        HttpServer::start_with(move |_| body.clone())
    }

    /// Serves what `respond` returns for each request path.
    pub fn start_with(respond: impl Fn(&str) -> String + Send + 'static) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Drain the headers.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                seen.lock().unwrap().push(path.clone());
                let body = respond(&path);
                let _ = write!(
                    stream,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{}",
                    body.len(),
                    body
                );
            }
        });
        HttpServer { port, requests }
    }

    /// The guest's view of this server (QEMU user networking maps 10.0.2.2 to the host).
    pub fn guest_url(&self, path: &str) -> String {
        format!("http://10.0.2.2:{}/{path}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// How a QEMU run ended.
pub struct QemuRun {
    /// The exit code, or `None` when it was stopped at the time limit.
    pub code: Option<i32>,
    pub serial: String,
    pub elapsed: Duration,
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
        elapsed: start.elapsed(),
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
