//! Kill points: bootforge is SIGKILLed at random moments of `build`, `embed`, `package` (each
//! target), `publish` and `fetch`. After each kill the store must verify, no file under a
//! final `-o` name may be partial, every channel in the bucket must resolve to a complete
//! release, and the same command run again must finish.
//!
//! `BOOTFORGE_KILL_POINTS` sets how many (default 16; `ci/test.sh` runs 100) and
//! `BOOTFORGE_KILL_SEED` replays a run: the seed is printed first.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use serde_json::Value;

use crate::common::media::{grub_profile, iso_profile, rpi_profile, usb_profile};
use crate::common::s3::{BUCKET, S3Server, build_files};
use crate::common::{Env, Rng, Run, noise, sha256_hex};

/// The seed: `BOOTFORGE_KILL_SEED`, else the clock.
pub fn seed() -> u64 {
    std::env::var("BOOTFORGE_KILL_SEED")
        .ok()
        .map(|s| s.parse().expect("BOOTFORGE_KILL_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Build,
    Embed,
    Package(&'static str),
    Publish,
    Fetch,
}

const OPS: [Op; 8] = [
    Op::Build,
    Op::Embed,
    Op::Package("pxe-bundle"),
    Op::Package("iso"),
    Op::Package("usb-img"),
    Op::Package("rpi-img"),
    Op::Publish,
    Op::Fetch,
];

const PREFIX: &str = "lab";

struct Rig {
    env: Env,
    s3: S3Server,
    profiles: BTreeMap<&'static str, String>,
}

impl Rig {
    fn new() -> Rig {
        let env = Env::new();
        let s3 = S3Server::start(&env);
        let mut profiles = BTreeMap::new();
        profiles.insert("pxe-bundle", grub_profile(&env));
        profiles.insert("iso", iso_profile(&env));
        profiles.insert("usb-img", usb_profile(&env));
        profiles.insert("rpi-img", rpi_profile(&env));
        // A larger artifact, so publishing and fetching take long enough to be cut.
        build_files(&env, "payload", &[("payload.bin", &noise(48 << 20, 1))]);
        Rig { env, s3, profiles }
    }

    /// The command line of `op` at point `i`: new inputs each time, so there is work to cut,
    /// and an output directory of its own.
    fn args(&self, op: Op, i: usize) -> Vec<String> {
        let out = format!("out-{i}");
        let v: Vec<&str> = match op {
            Op::Build => vec!["build", "hello", "--set", "GREETING=k{i}", "-o", &out],
            Op::Embed => vec!["embed", "patchable", "--set", "message=k{i}", "-o", &out],
            Op::Package(target) => vec![
                "package",
                "--target",
                target,
                "--profile",
                &self.profiles[target],
                "--set",
                "chain_url=http://10.0.2.2:8080/k{i}",
                "-o",
                &out,
            ],
            Op::Publish => vec!["publish", "--to", "s3://bootforge/lab", "--channel", "kill"],
            Op::Fetch => vec![
                "fetch",
                "payload.bin",
                "--from",
                "s3://bootforge/lab",
                "--channel",
                "kill",
                "-o",
                &out,
            ],
        };
        std::iter::once("--json".to_owned())
            .chain(v.iter().map(|a| a.replace("{i}", &i.to_string())))
            .collect()
    }

    fn command(&self, op: Op, i: usize) -> std::process::Command {
        let mut cmd = self.env.cmd();
        self.s3.apply(&mut cmd);
        cmd.args(self.args(op, i));
        cmd
    }

    fn run(&self, op: Op, i: usize) -> Run {
        self.command(op, i).output().unwrap().into()
    }

    /// What must be in place before `op` can run: a new package for a publish to send (made
    /// into a directory of its own).
    fn prepare(&self, op: Op, i: usize) {
        if op == Op::Publish {
            self.run(Op::Package("pxe-bundle"), 1_000_000 + i).ok();
        }
    }

    fn out_dir(&self, i: usize) -> PathBuf {
        self.env.path().join(format!("out-{i}"))
    }

    /// Each complete file the report of `op` says it wrote, with its sha256.
    fn reported(&self, op: Op, i: usize, report: &Value) -> BTreeMap<PathBuf, String> {
        let out = self.out_dir(i);
        let hex = |v: &Value| v.as_str().unwrap().trim_start_matches("sha256:").to_owned();
        let mut files = BTreeMap::new();
        match op {
            Op::Build => {
                for o in report["builds"][0]["outputs"].as_array().unwrap() {
                    let name = o["name"].as_str().unwrap();
                    files.insert(out.join("hello").join(name), hex(&o["sha256"]));
                }
            }
            Op::Embed => {
                for o in report["outputs"].as_array().unwrap() {
                    let name = o["name"].as_str().unwrap();
                    files.insert(out.join("patchable").join(name), hex(&o["sha256"]));
                }
            }
            Op::Package(_) => {
                let name = report["name"].as_str().unwrap();
                files.insert(out.join(name), hex(&report["sha256"]));
            }
            Op::Fetch => {
                let path = self.env.path().join(report["path"].as_str().unwrap());
                files.insert(path, hex(&report["sha256"]));
            }
            Op::Publish => {}
        }
        files
    }

    /// Every channel of the bucket names a manifest whose blobs are all there, whole; the
    /// sums list only blobs that are there.
    fn assert_bucket_complete(&self, after: &str) {
        let prefix = self.s3.data.join(BUCKET).join(PREFIX);
        let Ok(channels) = fs::read_dir(prefix.join("channels")) else {
            return;
        };
        for c in channels {
            let c = c.unwrap().path();
            let pointer: Value = serde_json::from_slice(&fs::read(&c).unwrap())
                .unwrap_or_else(|e| panic!("{after}: torn channel {}: {e}", c.display()));
            let m = pointer["manifest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:");
            let bytes = fs::read(prefix.join(format!("manifests/{m}.json"))).unwrap_or_else(|e| {
                panic!("{after}: {} names a missing manifest: {e}", c.display())
            });
            assert_eq!(sha256_hex(&bytes), m, "{after}: torn manifest {m}");
            let release: Value = serde_json::from_slice(&bytes).unwrap();
            for a in release["artifacts"].as_array().unwrap() {
                for d in [&a["sha256"], &a["provenance"]] {
                    let hex = d.as_str().unwrap().trim_start_matches("sha256:");
                    let blob = prefix.join("blobs/sha256").join(hex);
                    let f = fs::File::open(&blob).unwrap_or_else(|e| {
                        panic!(
                            "{after}: channel {} lacks blob {hex} of {}: {e}",
                            c.display(),
                            a["name"]
                        )
                    });
                    assert_eq!(
                        crate::common::sha256_reader(f),
                        hex,
                        "{after}: torn blob {hex}"
                    );
                }
            }
        }
        if let Ok(sums) = fs::read_to_string(prefix.join("SHA256SUMS")) {
            for line in sums.lines() {
                let hex = &line[..64];
                assert!(
                    prefix.join("blobs/sha256").join(hex).is_file(),
                    "{after}: SHA256SUMS lists {hex}, which is missing"
                );
            }
        }
    }
}

/// Complete files under `dir` (not the dot-named work files of an unfinished download), with
/// their sha256.
fn finished_files(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if e.file_type().is_file() && !hidden {
            let f = fs::File::open(e.path()).unwrap();
            out.insert(e.path().to_owned(), crate::common::sha256_reader(f));
        }
    }
    out
}

#[test]
fn killed_at_random_moments_everything_stays_whole_and_a_rerun_finishes() {
    let points: usize = std::env::var("BOOTFORGE_KILL_POINTS")
        .map(|s| s.parse().expect("BOOTFORGE_KILL_POINTS is a number"))
        .unwrap_or(16);
    let seed = seed();
    eprintln!("kill points: {points}, seed {seed} (BOOTFORGE_KILL_SEED={seed} replays them)");
    let mut rng = Rng::new(seed);
    let rig = Rig::new();

    // How long each command takes when left alone (the faster of two runs; the second starts
    // from cached builds): kills are spread over that span.
    let mut span: BTreeMap<Op, std::time::Duration> = BTreeMap::new();
    for round in 0..2 {
        for (n, op) in OPS.iter().enumerate() {
            let i = round * OPS.len() + n;
            rig.prepare(*op, i);
            let start = Instant::now();
            rig.run(*op, i).ok();
            let took = start.elapsed();
            span.entry(*op)
                .and_modify(|s| *s = (*s).min(took))
                .or_insert(took);
        }
    }
    eprintln!("uncut durations: {span:?}");

    let mut killed: BTreeMap<Op, (usize, usize)> = BTreeMap::new();
    for p in 0..points {
        let i = 2 * OPS.len() + p;
        let op = OPS[rng.below(OPS.len())];
        let delay = span[&op].mul_f64(rng.fraction() * 1.1);
        rig.prepare(op, i);
        let mut child = rig
            .command(op, i)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let cut = child.try_wait().unwrap().is_none();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let tally = killed.entry(op).or_default();
        tally.0 += 1;
        tally.1 += usize::from(cut);
        if !cut {
            // It finished sooner than that (a quieter machine than when it was timed): aim
            // the next kills of this command within the time it actually takes.
            let s = span.get_mut(&op).unwrap();
            *s = (*s).min(delay);
        }
        let after = format!("point {p} ({op:?} killed after {delay:?}, seed {seed})");

        rig.env.assert_store_intact();
        rig.assert_bucket_complete(&after);
        let left = finished_files(&rig.out_dir(i));
        let again = rig.run(op, i);
        assert_eq!(again.code, Some(0), "{after}: the rerun failed:\n{again}");
        let wanted = rig.reported(op, i, &again.json());
        for (path, sha) in &left {
            assert_eq!(
                wanted.get(path),
                Some(sha),
                "{after}: {} was left partial or stray",
                path.display()
            );
        }
        rig.assert_bucket_complete(&format!("{after}, rerun"));
        fs::remove_dir_all(rig.out_dir(i)).ok();
    }
    rig.env.run(&["cache", "gc"]).ok();
    rig.env.assert_store_intact();
    eprintln!("kill points by command (run, killed mid-run): {killed:?}");
    let cut: usize = killed.values().map(|(_, c)| c).sum();
    assert!(
        cut * 2 >= points,
        "only {cut} of {points} kills landed while the command ran"
    );
}
