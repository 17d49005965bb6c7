//! Many machines sharing one store: builders push to a bucket prefix, a packager with an
//! empty store takes everything from it and starts no container, an independent rebuilder
//! checks it; on a real three-node Garage cluster, and on s3s-fs where a test must reach
//! behind the server (a corrupt blob, a forged entry).

use std::fs;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::common::media::grub_profile;
use crate::common::s3::{S3Server, build_files};
use crate::common::{Env, Run, noise, sha256_hex};

const SHARED: &str = "shared";

/// Another machine: an empty store and the same checkout of the recipes as `like`.
fn machine(like: &Env) -> Env {
    let m = Env::bare();
    copy_dir(&like.recipes_dir(), &m.recipes_dir());
    m
}

fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from)
        .into_iter()
        .filter_map(Result::ok)
    {
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// `bootforge --json --remote s3://bootforge/shared ARGS` on `env`, against `s3`.
fn on(s3: &S3Server, env: &Env, args: &[&str]) -> Run {
    let remote = s3.url(SHARED);
    let mut all = vec!["--json", "--remote", &remote];
    all.extend_from_slice(args);
    s3.run(env, &all)
}

/// The same with the recipes of `env`'s own checkout (where `grub_profile` wrote them).
fn on_recipes(s3: &S3Server, env: &Env, args: &[&str]) -> Run {
    let remote = s3.url(SHARED);
    let mut c = env.cmd();
    s3.apply(&mut c)
        .env("BOOTFORGE_RECIPES", env.recipes_dir())
        .args(["--json", "--remote", &remote])
        .args(args);
    Run::from(c.output().unwrap())
}

fn package_args(profile: &str) -> Vec<String> {
    ["package", "--target", "pxe-bundle", "--profile", profile]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "--set".into(),
            "chain_url=http://10.0.2.2:8080/shared".into(),
        ])
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn builders_and_an_empty_packager_share_a_garage_cluster() {
    let a = Env::new();
    let mut garage = S3Server::start_garage_cluster(&a);
    let profile = grub_profile(&a);
    let package = package_args(&profile);

    // 1. Machine A builds, embeds and packages, pushing everything.
    let built = on(&garage, &a, &["build", "hello"]).ok().json();
    assert_eq!(built["builds"][0]["origin"], "built");
    on(
        &garage,
        &a,
        &["embed", "patchable", "--set", "message=shared"],
    )
    .ok();
    let medium_a = on_recipes(&garage, &a, &strs(&package)).ok().json();

    // 2. Machine B has an empty store: everything comes from the bucket, nothing runs.
    let b = machine(&a);
    let medium_b = on_recipes(&garage, &b, &strs(&package)).ok().json();
    assert_eq!(
        medium_b["sha256"], medium_a["sha256"],
        "another medium on B"
    );
    assert_eq!(medium_b["containers_started"], 0, "{medium_b}");
    let hello = on(&garage, &b, &["build", "hello"]).ok().json();
    assert_eq!(hello["builds"][0]["origin"], "remote");
    assert_eq!(hello["builds"][0]["containers_started"], 0);
    assert_eq!(hello["builds"][0]["outputs"], built["builds"][0]["outputs"]);
    let rootfs_here = fs::read_dir(b.store().join("blobs/sha256"))
        .unwrap()
        .any(|e| e.unwrap().metadata().unwrap().len() > 100 << 20);
    assert!(!rootfs_here, "B pulled a toolchain it did not need");
    b.assert_store_intact();
    let plan = on(&garage, &machine(&a), &["plan", "--all"]).ok().json();
    let found: Vec<&Value> = plan["plans"].as_array().unwrap().iter().collect();
    assert!(
        found
            .iter()
            .any(|p| p["recipe"] == "hello" && p["found"] == "remote"),
        "{plan}"
    );

    // 3. Machine C rebuilds and compares with what the shared store recorded.
    let c = machine(&a);
    on(&garage, &c, &["build", "hello", "--check"]).ok().json()["builds"][0]["checked_against"]
        .as_str()
        .filter(|a| *a == "the shared store's build")
        .expect("C compared with the shared store");

    // 4. Two machines build the same new action at the same moment: one result.
    let (d, e) = (machine(&a), machine(&a));
    let spawn = |env: &Env| {
        let remote = garage.url(SHARED);
        let mut cmd = env.cmd();
        garage.apply(&mut cmd).args([
            "--json",
            "--remote",
            &remote,
            "build",
            "hello",
            "--set",
            "GREETING=together",
        ]);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pd, pe) = (spawn(&d), spawn(&e));
    let rd = Run::from(pd.wait_with_output().unwrap()).ok().json();
    let re = Run::from(pe.wait_with_output().unwrap()).ok().json();
    assert_eq!(rd["builds"][0]["outputs"], re["builds"][0]["outputs"]);
    let key = rd["builds"][0]["action_key"].as_str().unwrap();
    let ls = garage
        .aws(
            a.path(),
            &["s3", "ls", &format!("{}/actions/", garage.url(SHARED))],
        )
        .ok();
    assert_eq!(ls.stdout.matches(&format!("{key}.json")).count(), 1, "{ls}");

    // 5. A node dies in the middle of a push; the push (or its rerun) completes, reads keep
    //    working, and the node rejoins.
    let f = machine(&a);
    build_files(&f, "payload", &[("payload.bin", &noise(24 << 20, 5))]);
    let remote = garage.url(SHARED);
    let mut cmd = f.cmd();
    garage
        .apply(&mut cmd)
        .env("BOOTFORGE_RECIPES", f.recipes_dir())
        .args(["--json", "--remote", &remote, "build", "payload"]);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    garage.kill_node(3);
    let first = Run::from(child.wait_with_output().unwrap());
    if first.code != Some(0) {
        on_recipes(&garage, &f, &["build", "payload"]).ok();
    }
    let g = machine(&f);
    let pulled = on_recipes(&garage, &g, &["build", "payload"]).ok().json();
    assert_eq!(pulled["builds"][0]["origin"], "remote", "{pulled}");
    assert!(
        garage.garage_status().contains("FAILED"),
        "{}",
        garage.garage_status()
    );
    garage.restart_node(3);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while garage.garage_status().contains("FAILED") {
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 did not rejoin"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn corrupt_blobs_forged_entries_and_a_remote_that_is_down() {
    let a = Env::new();
    let s3 = S3Server::start(&a);
    let built = on(&s3, &a, &["build", "hello"]).ok().json();
    let key = built["builds"][0]["action_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let hello = built["builds"][0]["outputs"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();

    // A blob corrupted in the bucket is caught as it streams, never used: B builds itself.
    let blob = s3.object_path(&format!("{SHARED}/blobs/sha256/{}", &hello[7..]));
    let good = fs::read(&blob).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 0xff;
    fs::write(&blob, &bad).unwrap();
    let b = Env::new();
    let run = on(&s3, &b, &["build", "hello"]).ok();
    assert!(run.stderr.contains("corrupt"), "{run}");
    assert_eq!(run.json()["builds"][0]["origin"], "built");
    // ... and the build that replaced it sent the good bytes back.
    assert_eq!(
        fs::read(&blob).unwrap(),
        good,
        "the corrupt blob was not repaired"
    );

    // A forged entry (other outputs under the same key) is refused at the next push...
    let entry_path = s3.object_path(&format!("{SHARED}/actions/{key}.json"));
    let real = fs::read_to_string(&entry_path).unwrap();
    let other = sha256_hex(b"forged");
    let forged = real.replacen(&hello[7..], &other, 1);
    fs::write(&entry_path, &forged).unwrap();
    let c = Env::new();
    c.run(&["build", "hello"]).ok();
    on(&s3, &c, &["build", "hello"]).fails().says(&[
        "records other outputs for the same inputs",
        "not reproducible",
    ]);
    // An unsigned entry is ignored by a machine that only trusts a key.
    fs::write(&entry_path, &real).unwrap();
    a.run(&["keygen", "--out", "builders"]).ok();
    let public = a.path().join("builders.pub");
    let d = Env::new();
    let run = on(
        &s3,
        &d,
        &[
            "--remote-verify-key",
            public.to_str().unwrap(),
            "build",
            "hello",
        ],
    )
    .ok();
    assert!(
        run.stderr.contains(&format!(
            "warning: ignoring {}/actions/{key}.json: not signed",
            s3.url(SHARED)
        )),
        "{run}"
    );
    assert_eq!(run.json()["builds"][0]["origin"], "built");
    // A signed push is taken by it.
    let key_file = a.path().join("builders.key");
    on(
        &s3,
        &a,
        &["--sign", key_file.to_str().unwrap(), "build", "hello"],
    )
    .ok();
    let e = Env::new();
    let run = on(
        &s3,
        &e,
        &[
            "--remote-verify-key",
            public.to_str().unwrap(),
            "build",
            "hello",
        ],
    )
    .ok();
    assert_eq!(run.json()["builds"][0]["origin"], "remote", "{run}");

    // A remote that is down is an error naming it, unless it is optional.
    drop(s3);
    let f = Env::new();
    let down = S3Server::start(&f);
    let url = down.url(SHARED);
    let port = down.port;
    drop(down);
    let mut cmd = f.cmd();
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1");
    let mut again = f.cmd();
    again
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1");
    Run::from(
        cmd.args(["--remote", &url, "build", "hello"])
            .output()
            .unwrap(),
    )
    .fails()
    .says(&["the shared store s3://bootforge/shared", "cannot reach"]);
    Run::from(
        again
            .args(["--remote", &url, "--remote-optional", "build", "hello"])
            .output()
            .unwrap(),
    )
    .ok()
    .says(&["cannot be reached", "--remote-optional"]);
}
