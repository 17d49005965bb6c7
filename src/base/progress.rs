//! Upload and download progress on stderr: a live line on a terminal, a line every few
//! seconds in a log.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A writer that counts what goes through it into a [`Progress`].
pub struct Counted<'a, W> {
    inner: W,
    progress: &'a Progress,
}

impl<'a, W: std::io::Write> Counted<'a, W> {
    pub fn new(inner: W, progress: &'a Progress) -> Self {
        Counted { inner, progress }
    }
}

impl<W: std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes moved so far out of a known total.
#[derive(Debug)]
pub struct Progress {
    what: String,
    total: u64,
    done: AtomicU64,
    start: Instant,
    last_print_ms: AtomicU64,
    tty: bool,
}

impl Progress {
    /// Starts counting towards `total` bytes; `what` names the transfer ("uploading").
    pub fn new(what: &str, total: u64) -> Progress {
        Progress {
            what: what.to_owned(),
            total,
            done: AtomicU64::new(0),
            start: Instant::now(),
            last_print_ms: AtomicU64::new(0),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Counts `n` more bytes and reports if it is time to.
    pub fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let now = self.start.elapsed().as_millis() as u64;
        let every = if self.tty { 200 } else { 5000 };
        let last = self.last_print_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= every
            && self
                .last_print_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.print(done, false);
        }
    }

    /// Bytes counted so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Ends a live line on a terminal.
    pub fn finish(&self) {
        if self.tty && self.done() > 0 {
            self.print(self.done(), true);
        }
    }

    fn print(&self, done: u64, last: bool) {
        let secs = self
            .start
            .elapsed()
            .max(Duration::from_millis(1))
            .as_secs_f64();
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let line = format!(
            "{} {} of {} ({pct:.0}%, {}/s)",
            self.what,
            human_bytes(done),
            human_bytes(self.total),
            human_bytes((done as f64 / secs) as u64)
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}{}", if last { "\n" } else { "" });
        } else {
            eprintln!("{line}");
        }
    }
}

/// `1.5 MiB`-style sizes for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A short human form of a duration: `12ms`, `3.4s`, `1m40s`.
pub fn elapsed(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(200 << 20), "200.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
