//! Races: several bootforge processes on one store, several publishers on one bucket prefix,
//! and `cache gc` beside work in progress.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::common::media::grub_profile;
use crate::common::noise;
use crate::common::s3::{S3Server, build_files};
use crate::common::{Env, Run};

/// Starts every command, then waits for all of them.
fn at_once(cmds: Vec<Command>) -> Vec<Run> {
    let children: Vec<_> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().unwrap()))
        .collect()
}

/// Four copies of `args` run at once against `env`'s store; each must succeed.
fn four(env: &Env, args: &[&str]) -> Vec<Value> {
    let cmds = (0..4)
        .map(|_| {
            let mut c = env.cmd();
            c.arg("--json").args(args);
            c
        })
        .collect();
    at_once(cmds).into_iter().map(|r| r.ok().json()).collect()
}

fn containers(reports: &[Value], field: impl Fn(&Value) -> &Value) -> u64 {
    reports
        .iter()
        .map(|r| field(r)["containers_started"].as_u64().unwrap())
        .sum()
}

#[test]
fn four_processes_on_one_store_run_each_action_once_and_agree() {
    let env = Env::new();
    let profile = grub_profile(&env);

    let builds = four(&env, &["build", "hello", "--set", "GREETING=race"]);
    let outputs: BTreeSet<String> = builds
        .iter()
        .map(|b| b["builds"][0]["outputs"].to_string())
        .collect();
    assert_eq!(outputs.len(), 1, "the builds disagree: {builds:?}");
    assert_eq!(containers(&builds, |b| &b["builds"][0]), 1, "{builds:?}");

    // The embed's build and its repack (gzip in the toolchain) are one container each.
    let embeds = four(&env, &["embed", "patchable", "--set", "message=race"]);
    let outputs: BTreeSet<String> = embeds.iter().map(|e| e["outputs"].to_string()).collect();
    assert_eq!(outputs.len(), 1, "the embeds disagree: {embeds:?}");
    assert_eq!(containers(&embeds, |e| e), 2, "{embeds:?}");

    // A package: GRUB's network image built (two steps, a container each), embedded and
    // bundled once.
    let packages = four(
        &env,
        &[
            "package",
            "--target",
            "pxe-bundle",
            "--profile",
            &profile,
            "--set",
            "chain_url=http://10.0.2.2:8080/race",
        ],
    );
    let media: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(media.len(), 1, "the packages disagree: {packages:?}");
    assert_eq!(containers(&packages, |p| p), 2, "{packages:?}");
    let assembled = packages.iter().filter(|p| p["cached"] == false).count();
    assert_eq!(assembled, 1, "the medium was assembled more than once");

    env.assert_store_intact();
    for entry in std::fs::read_dir(env.store().join("actions")).unwrap() {
        let text = std::fs::read(entry.unwrap().path()).unwrap();
        serde_json::from_slice::<Value>(&text).expect("a torn action entry");
    }
}

/// What a bucket prefix holds, read with the aws CLI: the keys, and the text of some.
struct Bucket<'a> {
    s3: &'a S3Server,
    dir: std::path::PathBuf,
}

impl Bucket<'_> {
    fn keys(&self) -> BTreeSet<String> {
        let url = self.s3.url("lab/");
        let ls = self
            .s3
            .aws(&self.dir, &["s3", "ls", "--recursive", &url])
            .ok();
        ls.stdout
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .map(|k| k.trim_start_matches("lab/").to_owned())
            .collect()
    }

    fn text(&self, key: &str) -> String {
        let url = format!("{}{key}", self.s3.url("lab/"));
        self.s3.aws(&self.dir, &["s3", "cp", &url, "-"]).ok().stdout
    }
}

/// Four stores with a release each (one file shared by all, one their own) publish at once
/// to their own channel and to one shared channel, three rounds over.
fn four_publishers(s3: &S3Server) {
    let shared = noise(3 << 20, 77);
    let envs: Vec<Env> = (0..4).map(|_| Env::new()).collect();
    let mut manifests = BTreeSet::new();
    for round in 0..3u64 {
        for (k, env) in envs.iter().enumerate() {
            let own = noise(1 << 20, 100 * round + k as u64);
            build_files(env, "files", &[("shared.bin", &shared), ("own.bin", &own)]);
        }
        let mut cmds = Vec::new();
        for (k, env) in envs.iter().enumerate() {
            for channel in [format!("c{k}"), "race".to_owned()] {
                let mut c = env.cmd();
                s3.apply(&mut c).args([
                    "--json",
                    "publish",
                    "--to",
                    &s3.url("lab"),
                    "--channel",
                    &channel,
                ]);
                cmds.push(c);
            }
        }
        for r in at_once(cmds) {
            manifests.insert(r.ok().json()["manifest"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        manifests.len(),
        12,
        "each round of each store is its own release"
    );

    // Every channel resolves to a complete release: each artifact downloads and verifies.
    let env = &envs[0];
    for channel in ["c0", "c1", "c2", "c3", "race"] {
        let out = format!("got-{channel}");
        std::fs::create_dir(env.path().join(&out)).unwrap();
        for name in ["shared.bin", "own.bin"] {
            s3.fetch(env, name, channel, &out).ok();
        }
    }
    // The views agree with some state the channels were in, and name no missing blob.
    let bucket = Bucket {
        s3,
        dir: env.path().to_owned(),
    };
    let keys = bucket.keys();
    for line in bucket.text("SHA256SUMS").lines() {
        let blob = format!("blobs/sha256/{}", &line[..64]);
        assert!(
            keys.contains(&blob),
            "SHA256SUMS lists {blob}, which is missing"
        );
    }
    let index: Value = serde_json::from_str(&bucket.text("index.json")).unwrap();
    for (channel, state) in index["channels"].as_object().unwrap() {
        let m = state["manifest"].as_str().unwrap();
        assert!(
            manifests.contains(m),
            "index.json has {channel} at {m}, never published"
        );
        for a in state["artifacts"].as_array().unwrap() {
            assert!(
                keys.contains(a["key"].as_str().unwrap()),
                "{channel}: {a} is missing"
            );
        }
    }
}

#[test]
fn four_publishers_to_one_s3s_fs_prefix_leave_every_channel_whole() {
    let env = Env::new();
    four_publishers(&S3Server::start(&env));
}

#[test]
fn four_publishers_to_one_garage_prefix_leave_every_channel_whole() {
    let env = Env::new();
    four_publishers(&S3Server::start_garage(&env));
}

#[test]
fn gc_beside_builds_embeds_packages_and_publishes_removes_nothing_in_use() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    let profile = grub_profile(&env);
    let stop = AtomicBool::new(false);
    /// Stops the sweeping thread however the work ends, a failed assertion included.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let sweeps = std::thread::scope(|scope| {
        let gc = scope.spawn(|| {
            let mut sweeps = 0;
            // With the recipes that pin the imported .debs, as a user's gc would be.
            let recipes = env.recipes_dir();
            let recipes = recipes.to_str().unwrap();
            while !stop.load(Ordering::Relaxed) {
                env.run(&["--recipes", recipes, "cache", "gc"]).ok();
                sweeps += 1;
            }
            sweeps
        });
        let _stop = Stop(&stop);
        for n in 0..3 {
            let work = vec![
                vec![
                    "build".to_owned(),
                    "hello".into(),
                    "--set".into(),
                    format!("GREETING=gc{n}"),
                ],
                vec![
                    "embed".into(),
                    "patchable".into(),
                    "--set".into(),
                    format!("message=gc{n}"),
                ],
                vec![
                    "package".into(),
                    "--target".into(),
                    "pxe-bundle".into(),
                    "--profile".into(),
                    profile.clone(),
                    "--set".into(),
                    format!("chain_url=http://10.0.2.2:8080/gc{n}"),
                ],
                vec![
                    "publish".into(),
                    "--to".into(),
                    s3.url("lab"),
                    "--channel".into(),
                    "gc".into(),
                ],
            ];
            for args in work {
                let mut c = env.cmd();
                s3.apply(&mut c).args(&args);
                let run = Run::from(c.output().unwrap());
                assert_eq!(run.code, Some(0), "{args:?} beside gc:\n{run}");
            }
        }
        drop(_stop);
        gc.join().unwrap()
    });
    assert!(sweeps >= 3, "gc ran only {sweeps} times beside the work");
    env.assert_store_intact();
    std::fs::create_dir(env.path().join("got")).unwrap();
    s3.fetch(&env, "pxe-bundle.tar.gz", "gc", "got").ok();
    // What the last build and embed made is still whole in the store.
    env.run(&["build", "hello", "--set", "GREETING=gc2"])
        .ok()
        .stdout
        .contains("cached")
        .then_some(())
        .expect("the last build was kept");
}
