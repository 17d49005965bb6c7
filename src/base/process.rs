//! Running one step: its own process group, stdout and stderr merged into the build log,
//! a spinner with its last line on a terminal (a heartbeat line elsewhere) while it runs, and the whole tree killed on timeout. Worth copying:
//! a child that can spawn children gets its own process group, so a kill reaches them all.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How a step ended.
#[derive(Debug)]
pub enum Outcome {
    Exited(ExitStatus),
    TimedOut(Duration),
}

/// How often a running step reports that it is still alive.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// Runs `cmd` to completion or until `timeout`, appending its output to `log`.
/// `on_timeout` runs after the process group is killed, for things outside the group (a
/// container that outlives its client).
pub fn run_logged(
    mut cmd: Command,
    timeout: Duration,
    log: &mut File,
    progress: &str,
    on_timeout: impl FnOnce(),
) -> Result<Outcome> {
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    // The Command still holds the pipe's write ends; drop them so EOF arrives when the
    // child's tree exits.
    drop(cmd);
    let pgid = child.id() as libc::pid_t;

    let last_line = Arc::new(Mutex::new(String::new()));
    let mut log_copy = log.try_clone()?;
    let last = Arc::clone(&last_line);
    let spinner = super::progress::Spinner::new(progress);
    let shown = spinner.clone();
    // Both the pump and the waiter report on channels, so the step's end is seen the moment
    // it happens: polling here once cost a build 25–45 ms on every step.
    let (pumped, pump_done) = mpsc::channel();
    std::thread::spawn(move || {
        let result = (|| -> std::io::Result<()> {
            let mut lines = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if lines.read_until(b'\n', &mut buf)? == 0 {
                    return Ok(());
                }
                log_copy.write_all(&buf)?;
                let text = String::from_utf8_lossy(&buf);
                let trimmed = text.trim_end();
                if !trimmed.is_empty() {
                    shown.set_line(trimmed);
                    *last.lock().expect("not poisoned") = trimmed.to_owned();
                }
            }
        })();
        let _ = pumped.send(result);
    });
    let (exited, exit) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait());
    });

    let start = Instant::now();
    let mut next_beat = start + HEARTBEAT;
    let outcome = loop {
        let now = Instant::now();
        let wake = next_beat.min(start + timeout);
        match exit.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(status) => break Outcome::Exited(status.context("waiting for the step")?),
            Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("the waiter always sends"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        if now.duration_since(start) >= timeout {
            // SAFETY: killpg has no memory-safety preconditions; the group is our child's.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
            let _ = exit.recv();
            on_timeout();
            break Outcome::TimedOut(timeout);
        }
        if now >= next_beat && !spinner.is_live() {
            let line = last_line.lock().expect("not poisoned").clone();
            eprintln!(
                "{progress} still running ({}): {}",
                super::progress::elapsed(now.duration_since(start)),
                truncate(&line, 100)
            );
            next_beat = now + HEARTBEAT;
        }
    };
    spinner.finish();
    // A daemonised grandchild may keep the pipe open; do not wait for it forever.
    if let Ok(result) = pump_done.recv_timeout(Duration::from_secs(5)) {
        result.context("writing the build log")?;
    }
    Ok(outcome)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

/// What a log file holds from byte `offset` on (lossily decoded), for reading what one run
/// appended.
pub fn read_from(path: &std::path::Path, offset: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    String::from_utf8_lossy(&text[from..]).into_owned()
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = File::create(&path).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let outcome = run_logged(cmd, Duration::from_secs(10), &mut log, "t", || {}).unwrap();
        assert!(matches!(outcome, Outcome::Exited(s) if s.code() == Some(3)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("out") && text.contains("err"), "{text}");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = File::create(dir.path().join("log")).unwrap();
        let marker = dir.path().join("survived");
        let mut cmd = Command::new("sh");
        // The grandchild would write the marker after 2 s unless the group is killed.
        cmd.arg("-c")
            .arg(format!("(sleep 2; touch {}) & sleep 30", marker.display()));
        let mut cleaned = false;
        let outcome = run_logged(cmd, Duration::from_millis(300), &mut log, "t", || {
            cleaned = true
        })
        .unwrap();
        assert!(matches!(outcome, Outcome::TimedOut(_)));
        assert!(cleaned);
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "grandchild outlived the timeout");
    }
}
