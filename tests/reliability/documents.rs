//! Manifests, channels and views come from buckets other people can write to: a forged one
//! gets a clear error (or is skipped with a warning), never writes outside `-o DIR`, and
//! never makes bootforge hold more than a bounded amount of memory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::noise;
use crate::common::s3::{S3Server, build_files};
use crate::common::{Env, Run, sha256_hex};

const PREFIX: &str = "lab";

/// One artifact entry of a manifest, valid unless the caller changes it.
fn artifact(name: &str, sha256: &str, size: u64) -> Value {
    json!({
        "name": name,
        "sha256": format!("sha256:{sha256}"),
        "size": size,
        "media_type": "application/octet-stream",
        "kind": "build",
        "from": "files",
        "provenance": format!("sha256:{}", sha256_hex(b"provenance")),
        "source_date_epoch": 1700000000,
    })
}

fn manifest(artifacts: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"schema": 1, "kind": "bootforge-release", "artifacts": artifacts}))
        .unwrap()
}

/// Writes a manifest (named by its sha256, as the layout wants) and a channel pointing at it
/// straight into the server's files, as anyone with write access to the bucket could.
fn plant(s3: &S3Server, channel: &str, manifest: &[u8]) -> String {
    let hex = sha256_hex(manifest);
    let mpath = s3.object_path(&format!("{PREFIX}/manifests/{hex}.json"));
    fs::create_dir_all(mpath.parent().unwrap()).unwrap();
    fs::write(&mpath, manifest).unwrap();
    plant_channel(
        s3,
        channel,
        &serde_json::to_vec(&json!({
            "schema": 1,
            "channel": channel,
            "manifest": format!("sha256:{hex}"),
            "updated": "2026-12-01T00:00:00Z",
        }))
        .unwrap(),
    );
    hex
}

fn plant_channel(s3: &S3Server, channel: &str, bytes: &[u8]) {
    let path = s3.object_path(&format!("{PREFIX}/channels/{channel}.json"));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Every path under `dir`, sorted, leaving out the store and the server's files.
fn files_outside_store(env: &Env) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.clone());
            if p.is_dir() && !p.is_symlink() {
                walk(&p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(env.path(), &mut out);
    out.retain(|p| !p.starts_with(env.store()) && !p.starts_with(env.path().join("s3-data")));
    out.sort();
    out
}

#[test]
fn forged_names_sizes_and_shapes_are_refused_and_nothing_lands_outside_the_output() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    let data = noise(10_000, 3);
    build_files(&env, "files", &[("good.bin", &data)]);
    let to = s3.url(PREFIX);
    s3.run(&env, &["publish", "--to", &to, "--channel", "good"])
        .ok();
    let real = sha256_hex(&data);
    let size = data.len() as u64;
    fs::create_dir(env.path().join("out")).unwrap();
    let before = files_outside_store(&env);

    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "dotdot",
            artifact("../../escape", &real, size),
            "../../escape",
            "none `.` or `..`",
        ),
        (
            "dotdot-last",
            artifact("x/..", &real, size),
            "x/..",
            "none `.` or `..`",
        ),
        (
            "slash",
            artifact("/etc/passwd", &real, size),
            "/etc/passwd",
            "none `.` or `..`",
        ),
        (
            "nul",
            artifact("a\u{0}b", &real, size),
            "ab",
            "no control characters",
        ),
        (
            "escape",
            artifact("\u{1b}[2Jx", &real, size),
            "\u{1b}[2Jx",
            "no control characters",
        ),
        (
            "huge-name",
            artifact(&"n".repeat(4096), &real, size),
            "good.bin",
            "1 to 1024 bytes",
        ),
        (
            "huge-size",
            artifact("big.bin", &real, 1 << 63),
            "big.bin",
            "larger than",
        ),
    ];
    for (channel, a, what, says) in &cases {
        plant(&s3, channel, &manifest(vec![a.clone()]));
        let run = s3.fetch(&env, what, channel, "out").fails().says(&[says]);
        assert!(
            !run.stderr.contains('\u{1b}'),
            "a control character reached the terminal: {run}"
        );
    }

    // A size that is plausible but not the blob's: caught before anything is written.
    plant(
        &s3,
        "lying",
        &manifest(vec![artifact("small.bin", &real, 10)]),
    );
    s3.fetch(&env, "small.bin", "lying", "out")
        .fails()
        .says(&["holds 10000 bytes, but the manifest lists 10"]);
    fs::remove_file(s3.object_path(&format!("{PREFIX}/channels/lying.json"))).unwrap();

    // A release of more artifacts than any release has.
    let many: Vec<Value> = (0..10_001)
        .map(|i| artifact(&format!("a{i}"), &real, size))
        .collect();
    plant(&s3, "many", &manifest(many));
    s3.fetch(&env, "a1", "many", "out")
        .fails()
        .says(&["10001 artifacts, more than the 10000"]);

    // Nested 100 000 deep: as a whole manifest, and inside a field a reader must skip.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    plant(&s3, "deep", deep.as_bytes());
    s3.fetch(&env, "x", "deep", "out")
        .fails()
        .says(&["not a bootforge release manifest"]);
    let deep_field = format!(r#"{{"schema":1,"channel":"deep-field","extra":{deep}}}"#);
    plant_channel(&s3, "deep-field", deep_field.as_bytes());
    s3.fetch(&env, "x", "deep-field", "out")
        .fails()
        .says(&["is not a channel pointer"]);

    // A channel whose manifest is a channel (pointing back at itself), and one claiming to
    // be another channel.
    let looped = serde_json::to_vec(&json!({
        "schema": 1, "channel": "loop", "manifest": format!("sha256:{}", "0".repeat(64)),
        "updated": "2026-12-01T00:00:00Z",
    }))
    .unwrap();
    let looped_hex = plant(&s3, "loop", &looped);
    let pointer = json!({
        "schema": 1, "channel": "loop", "manifest": format!("sha256:{looped_hex}"),
        "updated": "2026-12-01T00:00:00Z", "previous": format!("sha256:{looped_hex}"),
    });
    plant_channel(&s3, "loop", &serde_json::to_vec(&pointer).unwrap());
    s3.fetch(&env, "x", "loop", "out")
        .fails()
        .says(&["not a bootforge release manifest"]);
    plant_channel(&s3, "alias", &serde_json::to_vec(&pointer).unwrap());
    s3.fetch(&env, "x", "alias", "out")
        .fails()
        .says(&["says it is channel \"loop\", not alias"]);
    let mut shouting = pointer.clone();
    shouting["channel"] = json!("shout");
    shouting["updated"] = json!(format!("\u{1b}]0;owned\u{7}{}", "!".repeat(300)));
    plant_channel(&s3, "shout", &serde_json::to_vec(&shouting).unwrap());
    s3.fetch(&env, "x", "shout", "out")
        .fails()
        .says(&["updated", "1 to 255 printable characters"]);

    // `ls` still lists the good channel, says which ones it left out, and prints nothing a
    // terminal would act on.
    let ls = s3.run(&env, &["ls", "--from", &to]).ok();
    assert!(ls.stdout.contains("channel good"), "{ls}");
    for (channel, ..) in &cases {
        assert!(
            ls.stderr.contains(&format!("left out channel {channel}:")),
            "{ls}"
        );
    }
    assert!(!ls.stdout.contains("channel dotdot"), "{ls}");
    assert!(
        !ls.stdout.contains('\u{1b}') && !ls.stderr.contains('\u{1b}'),
        "{ls}"
    );

    // A publish beside them keeps them out of the views.
    s3.run(&env, &["publish", "--to", &to, "--channel", "good"])
        .ok()
        .says(&["warning: channel dotdot left out"]);
    let index = fs::read_to_string(s3.object_path(&format!("{PREFIX}/index.json"))).unwrap();
    assert!(
        !index.contains("escape") && index.contains("good.bin"),
        "{index}"
    );
    let sums = fs::read_to_string(s3.object_path(&format!("{PREFIX}/SHA256SUMS"))).unwrap();
    assert_eq!(sums, format!("{real}  good/files/good.bin\n"));

    // The good artifact still comes down, and nothing else was written anywhere.
    s3.fetch(&env, "good.bin", "good", "out").ok();
    let mut expected = before.clone();
    expected.push(env.path().join("out/good.bin"));
    expected.sort();
    assert_eq!(files_outside_store(&env), expected);
}

/// Runs `cmd` and returns its peak resident memory (KiB), from the kernel's accounting.
/// A small Python parent starts it: a child forked from this (large, many-threaded) test
/// process would be charged the test's own pages until it execs.
fn peak_rss_kib(cmd: &Command) -> (Run, i64) {
    let peak = tempfile::NamedTempFile::new().unwrap();
    let script = "import resource, subprocess, sys\n\
                  code = subprocess.run(sys.argv[2:]).returncode\n\
                  peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n\
                  open(sys.argv[1], 'w').write(str(peak))\n\
                  sys.exit(code)\n";
    let mut wrapped = Command::new("python3");
    wrapped
        .arg("-c")
        .arg(script)
        .arg(peak.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let run = Run::from(wrapped.output().expect("python3 (.ci/run installs it)"));
    let kib = fs::read_to_string(peak.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (run, kib)
}

#[test]
fn a_manifest_of_a_million_artifacts_is_refused_in_bounded_memory() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    // About 240 MB of manifest, written as a stream and named by its sha256.
    let path = s3.object_path(&format!("{PREFIX}/manifests/big.json"));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    {
        let mut f = std::io::BufWriter::new(fs::File::create(&path).unwrap());
        let mut put = |b: &[u8]| {
            sha2::Digest::update(&mut hasher, b);
            f.write_all(b).unwrap();
        };
        put(br#"{"schema":1,"kind":"bootforge-release","artifacts":["#);
        let hex = "ab".repeat(32);
        for i in 0..1_000_000 {
            if i > 0 {
                put(b",");
            }
            put(serde_json::to_string(&artifact(&format!("a{i}"), &hex, 1))
                .unwrap()
                .as_bytes());
        }
        put(b"]}");
    }
    let hex = hex::encode(sha2::Digest::finalize(hasher));
    fs::rename(&path, path.with_file_name(format!("{hex}.json"))).unwrap();
    plant_channel(
        &s3,
        "million",
        &serde_json::to_vec(&json!({
            "schema": 1, "channel": "million", "manifest": format!("sha256:{hex}"),
            "updated": "2026-12-01T00:00:00Z",
        }))
        .unwrap(),
    );
    let mut cmd = env.cmd();
    s3.apply(&mut cmd).args([
        "fetch",
        "a1",
        "--from",
        &s3.url(PREFIX),
        "--channel",
        "million",
    ]);
    let (run, peak) = peak_rss_kib(&cmd);
    run.fails().says(&["larger than 16777216 bytes"]);
    assert!(
        peak < 64 * 1024,
        "fetch peaked at {peak} KiB for a refused manifest"
    );
}

#[test]
fn sums_lines_naming_paths_are_skipped_and_never_become_paths() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    let data = noise(5_000, 4);
    build_files(&env, "files", &[("a.bin", &data)]);
    env.run(&["keygen", "--out", "k"]).ok();
    let to = s3.url(PREFIX);
    s3.run(
        &env,
        &[
            "publish",
            "--to",
            &to,
            "--channel",
            "good",
            "--sign",
            "k.key",
        ],
    )
    .ok();
    // A re-signed SHA256SUMS listing a second blob only under path-like names.
    let other = noise(6_000, 5);
    let other_hex = sha256_hex(&other);
    let blob = s3.object_path(&format!("{PREFIX}/blobs/sha256/{other_hex}"));
    fs::write(&blob, &other).unwrap();
    let sums_path = s3.object_path(&format!("{PREFIX}/SHA256SUMS"));
    let mut sums = fs::read_to_string(&sums_path).unwrap();
    for name in [
        "../../../etc/evil",
        "/etc/evil",
        "good/../../evil",
        "good/\u{1b}[2J",
    ] {
        sums.push_str(&format!("{other_hex}  {name}\n"));
    }
    fs::write(&sums_path, &sums).unwrap();
    let signed = Command::new("minisign")
        .args(["-S", "-s", "k.key", "-m"])
        .arg(&sums_path)
        .current_dir(env.path())
        .stdin(Stdio::null())
        .output()
        .expect("minisign (.ci/run installs it)");
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    fs::create_dir(env.path().join("out")).unwrap();
    let by_digest = |hex: &str| {
        s3.run(
            &env,
            &[
                "fetch",
                &format!("sha256:{hex}"),
                "--from",
                &to,
                "--verify-key",
                "k.pub",
                "-o",
                "out",
            ],
        )
    };
    let run = by_digest(&other_hex).fails().says(&[
        "is not listed in the signed",
        "line 2: skipped",
        "line 5: skipped",
    ]);
    assert!(!run.stderr.contains('\u{1b}'), "{run}");
    by_digest(&sha256_hex(&data)).ok();
    let names: Vec<_> = fs::read_dir(env.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![sha256_hex(&data)]);
    assert!(!Path::new("/etc/evil").exists() && !env.path().join("evil").exists());
}
