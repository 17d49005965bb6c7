//! Progress on stderr: on a terminal, indicatif bars for transfers (bytes, rate, ETA) and
//! spinners for build steps (elapsed, the last line of output), all under one
//! `MultiProgress` so parallel work draws cleanly; anywhere else (a log, a pipe, `--json`),
//! a plain line every few seconds.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static PLAIN: AtomicBool = AtomicBool::new(false);

/// No bars or spinners even on a terminal (`--json`: whatever reads stdout may show
/// stderr too, and wants lines).
pub fn set_plain(plain: bool) {
    PLAIN.store(plain, Ordering::Relaxed);
}

/// Whether bars are drawn: stderr is a terminal and nobody asked for plain lines.
pub fn live() -> bool {
    !PLAIN.load(Ordering::Relaxed) && std::io::stderr().is_terminal()
}

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Prints a line on stderr above whatever bars are drawn.
pub fn say(line: &str) {
    if live() {
        multi().suspend(|| eprintln!("{line}"));
    } else {
        eprintln!("{line}");
    }
}

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

/// How often a plain line is printed for a transfer.
const PLAIN_EVERY_MS: u64 = 5000;

/// Bytes moved so far out of a known total: a bar on a terminal, a line every few seconds
/// elsewhere.
#[derive(Debug)]
pub struct Progress {
    what: String,
    total: u64,
    done: AtomicU64,
    start: Instant,
    last_print_ms: AtomicU64,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts counting towards `total` bytes; `what` names the transfer ("uploading").
    pub fn new(what: &str, total: u64) -> Progress {
        let bar = live().then(|| {
            let bar = multi().add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
                     {binary_bytes_per_sec}, ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(what.to_owned());
            bar
        });
        Progress {
            what: what.to_owned(),
            total,
            done: AtomicU64::new(0),
            start: Instant::now(),
            last_print_ms: AtomicU64::new(0),
            bar,
        }
    }

    /// Counts `n` more bytes and reports if it is time to.
    pub fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
            return;
        }
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last_print_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PLAIN_EVERY_MS
            && self
                .last_print_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            eprintln!("{}", self.line(done));
        }
    }

    /// Bytes counted so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Leaves the bar at its final state on a terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    fn line(&self, done: u64) -> String {
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
        format!(
            "{} {} of {} ({pct:.0}%, {}/s)",
            self.what,
            human_bytes(done),
            human_bytes(self.total),
            human_bytes((done as f64 / secs) as u64)
        )
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A transfer that failed part-way leaves its bar where it stopped.
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}

/// A build step running: on a terminal, a spinner with its label, elapsed time and the last
/// line it printed; elsewhere nothing (the caller prints heartbeat lines).
#[derive(Clone)]
pub struct Spinner {
    bar: Option<ProgressBar>,
}

impl Spinner {
    pub fn new(label: &str) -> Spinner {
        let bar = live().then(|| {
            let bar = multi().add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {elapsed} {wide_msg}")
                    .expect("a valid template"),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Spinner { bar }
    }

    /// Whether it is drawn (a terminal).
    pub fn is_live(&self) -> bool {
        self.bar.is_some()
    }

    /// Shows `line` as the step's latest output.
    pub fn set_line(&self, line: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(line.to_owned());
        }
    }

    /// Removes the spinner (the caller says how the step ended).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
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
