//! `publish`, `fetch`, `ls` and signing against a real S3 server (s3s-fs, with SigV4
//! auth) on 127.0.0.1, read back with the real `aws` CLI and the real `minisign`.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::http::HttpServer;
use crate::common::media::{package, rpi_profile, run_tool};
use crate::common::noise;
use crate::common::s3::{BUCKET, S3Server, build_files};
use crate::common::{Env, Run, sha256_hex};
use serde_json::Value;

fn publish(s3: &S3Server, env: &Env, prefix: &str, channel: &str, extra: &[&str]) -> Value {
    let url = s3.url(prefix);
    let mut args = vec!["--json", "publish", "--to", &url, "--channel", channel];
    args.extend_from_slice(extra);
    s3.run(env, &args).ok().json()
}

fn hex(v: &Value) -> String {
    v.as_str().unwrap().trim_start_matches("sha256:").to_owned()
}

/// Modification times of every object the server stores, by path.
/// `fetch NAME` from the `nightly` channel of `prefix`, with `--json`.
fn fetch_nightly(s3: &S3Server, env: &Env, prefix: &str, name: &str, out: &str) -> Run {
    let from = s3.url(prefix);
    let args = [
        "--json",
        "fetch",
        name,
        "--from",
        &from,
        "--channel",
        "nightly",
    ];
    s3.run(env, &[&args[..], &["-o", out]].concat())
}

fn server_mtimes(s3: &S3Server) -> Vec<(String, std::time::SystemTime)> {
    let mut v: Vec<_> = walk(&s3.data.join(BUCKET))
        .into_iter()
        .map(|p| {
            let m = fs::metadata(&p).unwrap().modified().unwrap();
            (p.display().to_string(), m)
        })
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn publish_then_the_aws_cli_downloads_the_same_bytes_and_republish_sends_nothing() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    let a = noise(3 << 20, 1);
    let b = noise(100_000, 2);
    build_files(&env, "files", &[("a.bin", &a), ("b.bin", &b)]);

    let first = publish(&s3, &env, "lab", "nightly", &[]);
    assert_eq!(first["channel_changed"], true);
    // Two artifacts and the build's provenance document.
    assert_eq!(first["uploaded"]["objects"], 4, "{first:#}");
    let manifest = hex(&first["manifest"]);

    // What people do: the aws CLI, straight from the bucket.
    let a_hex = sha256_hex(&a);
    s3.aws(
        env.path(),
        &[
            "s3",
            "cp",
            &format!("s3://{BUCKET}/lab/blobs/sha256/{a_hex}"),
            "a-by-aws.bin",
        ],
    )
    .ok();
    assert_eq!(
        sha256_hex(&fs::read(env.path().join("a-by-aws.bin")).unwrap()),
        a_hex
    );
    s3.aws(
        env.path(),
        &[
            "s3",
            "cp",
            &format!("s3://{BUCKET}/lab/SHA256SUMS"),
            "SHA256SUMS",
        ],
    )
    .ok();
    let sums = fs::read_to_string(env.path().join("SHA256SUMS")).unwrap();
    assert!(
        sums.contains(&format!("{a_hex}  nightly/files/a.bin\n")),
        "{sums}"
    );
    // ...and `sha256sum -c` accepts a download checked against it.
    fs::create_dir_all(env.path().join("nightly/files")).unwrap();
    fs::copy(
        env.path().join("a-by-aws.bin"),
        env.path().join("nightly/files/a.bin"),
    )
    .unwrap();
    let check = Command::new("sha256sum")
        .args(["-c", "--ignore-missing", "SHA256SUMS"])
        .current_dir(env.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // Republishing the unchanged set sends no content and leaves every stored object alone.
    let before = server_mtimes(&s3);
    std::thread::sleep(Duration::from_millis(20));
    let again = publish(&s3, &env, "lab", "nightly", &[]);
    assert_eq!(again["uploaded"]["bytes"], 0, "{again:#}");
    assert_eq!(again["uploaded"]["objects"], 0);
    assert_eq!(again["skipped"]["objects"], 4, "3 blobs and the manifest");
    assert_eq!(again["channel_changed"], false);
    assert_eq!(
        hex(&again["manifest"]),
        manifest,
        "same inputs, same manifest"
    );
    let after = server_mtimes(&s3);
    let changed: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.0.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(before.len(), after.len());
    assert!(
        changed
            .iter()
            .all(|k| ["index.json", "SHA256SUMS", "os_list.json", "icon.png"].contains(&k.as_str())),
        "only the views may be rewritten, got {changed:?}"
    );

    // Promoting to a second channel moves only a pointer.
    let promoted = publish(
        &s3,
        &env,
        "lab",
        "stable",
        &["--manifest", &format!("sha256:{manifest}")],
    );
    assert_eq!(promoted["uploaded"]["objects"], 0, "{promoted:#}");
    assert_eq!(promoted["channel_changed"], true);
    assert_eq!(
        promoted["metadata"]["objects"], 5,
        "the pointer, three views and the icon"
    );
    let stable: Value =
        serde_json::from_slice(&fs::read(s3.object_path("lab/channels/stable.json")).unwrap())
            .unwrap();
    assert_eq!(hex(&stable["manifest"]), manifest);

    // `ls` shows both channels, the manifest they share, and the blobs with sizes.
    let ls = s3
        .run(&env, &["--json", "ls", "--from", &s3.url("lab")])
        .ok()
        .json();
    let names: Vec<&str> = ls["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nightly", "stable"]);
    assert_eq!(
        ls["manifests"][0]["used_by"],
        serde_json::json!(["nightly", "stable"])
    );
    let blob = ls["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| hex(&o["sha256"]) == a_hex)
        .unwrap();
    assert_eq!(blob["size"], a.len());
    assert!(blob["modified"].as_str().unwrap().starts_with("20"));

    // Like every listing, it ends quietly when its reader is gone (`true` reads nothing).
    let mut piped = Command::new("sh");
    s3.apply(&mut piped)
        .current_dir(env.path())
        .env("BF", env!("CARGO_BIN_EXE_bootforge"))
        .args(["-c", &format!("\"$BF\" ls --from {} | true", s3.url("lab"))]);
    let piped = piped.output().unwrap();
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains("panicked"), "ls | true: {err}");

    // And bootforge's own fetch, by name from a channel.
    let got = s3.fetch(&env, "a.bin", "stable", "got/a.bin").ok().json();
    assert_eq!(hex(&got["sha256"]), a_hex);
    assert_eq!(fs::read(env.path().join("got/a.bin")).unwrap(), a);
    // Into an existing directory, under the artifact's own name.
    s3.fetch(&env, "b.bin", "stable", "got").ok().json();
    assert_eq!(fs::read(env.path().join("got/b.bin")).unwrap(), b);
}

#[test]
fn a_200_mib_artifact_goes_up_in_parts_and_comes_back_identical() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    let big = noise(200 << 20, 7);
    let big_hex = sha256_hex(&big);
    build_files(&env, "big", &[("big.img", &big)]);
    drop(big);
    let r = publish(&s3, &env, "lab", "nightly", &["--parallel", "4"]);
    assert_eq!(r["multipart_parts"], 25, "200 MiB in 8 MiB parts: {r:#}");
    assert!(
        r["uploaded"]["bytes"].as_u64().unwrap() > 200 << 20,
        "{r:#}"
    );
    s3.aws(
        env.path(),
        &[
            "s3",
            "cp",
            &format!("s3://{BUCKET}/lab/blobs/sha256/{big_hex}"),
            "by-aws.img",
        ],
    )
    .ok();
    let f = fs::File::open(env.path().join("by-aws.img")).unwrap();
    assert_eq!(crate::common::sha256_reader(f), big_hex);
    let got = s3
        .run(
            &env,
            &[
                "--json",
                "fetch",
                "big.img",
                "--from",
                &s3.url("lab"),
                "--channel",
                "nightly",
            ],
        )
        .ok()
        .json();
    assert_eq!(hex(&got["sha256"]), big_hex);
    assert_eq!(got["size"], 200 << 20);
}

#[test]
fn a_server_killed_mid_publish_leaves_the_old_channel_whole_and_a_rerun_finishes() {
    let env = Env::new();
    let mut s3 = S3Server::start(&env);
    let old = noise(1 << 20, 11);
    build_files(&env, "files", &[("payload.bin", &old)]);
    let first = publish(&s3, &env, "lab", "nightly", &[]);
    let old_manifest = hex(&first["manifest"]);

    let new = noise(160 << 20, 12);
    let new_hex = sha256_hex(&new);
    build_files(&env, "files", &[("payload.bin", &new)]);
    drop(new);
    let stored_before: u64 = walk(&s3.data)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    let mut child = s3
        .apply(&mut env.cmd())
        .args([
            "publish",
            "--to",
            &s3.url("lab"),
            "--channel",
            "nightly",
            "--parallel",
            "2",
        ])
        .env("AWS_MAX_ATTEMPTS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once some of the new blob's parts are on it, but not all.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored: u64 = walk(&s3.data)
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        if stored > stored_before + (16 << 20) {
            break;
        }
        assert!(Instant::now() < deadline, "the upload never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "publish ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    s3.kill();
    let out = child.wait_with_output().unwrap();
    let run = Run::from(out);
    let run = run
        .fails()
        .says(&["cannot reach", "run the same command again"]);
    drop(run);

    // A server that stays down: a clear error, a non-zero exit.
    s3.run_with(
        &env,
        &[("AWS_MAX_ATTEMPTS", "2")],
        &["publish", "--to", &s3.url("lab"), "--channel", "nightly"],
    )
    .fails()
    .says(&["cannot reach"]);

    // Back up: the channel still names the complete old release.
    s3.restart();
    let channel: Value =
        serde_json::from_slice(&fs::read(s3.object_path("lab/channels/nightly.json")).unwrap())
            .unwrap();
    assert_eq!(hex(&channel["manifest"]), old_manifest);
    let got = s3
        .fetch(&env, "payload.bin", "nightly", "old.bin")
        .ok()
        .json();
    assert_eq!(got["size"], 1 << 20);
    assert_eq!(fs::read(env.path().join("old.bin")).unwrap(), old);

    // The same command finishes the job.
    let done = publish(&s3, &env, "lab", "nightly", &[]);
    assert_eq!(done["channel_changed"], true);
    assert_eq!(hex(&done["previous"]), old_manifest);
    let got = s3
        .fetch(&env, "payload.bin", "nightly", "new.bin")
        .ok()
        .json();
    assert_eq!(hex(&got["sha256"]), new_hex);
}

#[test]
fn a_blob_corrupted_on_the_server_is_caught_and_never_written_under_the_final_name() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    let data = noise(2 << 20, 3);
    build_files(&env, "files", &[("disk.img", &data)]);
    publish(&s3, &env, "lab", "nightly", &[]);
    let obj = s3.object_path(&format!("lab/blobs/sha256/{}", sha256_hex(&data)));
    let mut bad = fs::read(&obj).unwrap();
    bad[1 << 20] ^= 0x40;
    fs::write(&obj, &bad).unwrap();

    fetch_nightly(&s3, &env, "lab", "disk.img", "out/disk.img")
        .fails()
        .says(&["corrupt", "nothing was written to out/disk.img"]);
    let left: Vec<_> = fs::read_dir(env.path().join("out")).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn fetch_over_https_resumes_an_interrupted_download() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    let data = noise(6 << 20, 5);
    let data_hex = sha256_hex(&data);
    build_files(&env, "files", &[("usb.img", &data)]);
    publish(&s3, &env, "lab", "nightly", &[]);
    // A public mirror of the prefix that drops the first transfer after 2 MiB.
    let web = HttpServer::serve_dir(s3.data.join(BUCKET).join("lab"), Some(2 << 20));
    let base = web.url("");
    let base = base.trim_end_matches('/');
    let fetch_usb = || {
        let args = [
            "--json",
            "fetch",
            "usb.img",
            "--from",
            base,
            "--channel",
            "nightly",
        ];
        env.run(&[&args[..], &["-o", "usb.img"]].concat())
    };
    fetch_usb().fails();
    assert!(!env.path().join("usb.img").exists());
    let got = fetch_usb().ok().json();
    assert!(got["resumed_from"].as_u64().unwrap() >= 1 << 20, "{got:#}");
    assert_eq!(
        got["downloaded"].as_u64().unwrap() + got["resumed_from"].as_u64().unwrap(),
        6 << 20
    );
    assert_eq!(
        sha256_hex(&fs::read(env.path().join("usb.img")).unwrap()),
        data_hex
    );
    // By digest too, and a second fetch finds it already in place. Fetching needs no store:
    // none is created in the directory it runs in.
    let digest = format!("sha256:{data_hex}");
    let mut cmd = env.cmd();
    cmd.env_remove("BOOTFORGE_STORE")
        .args(["--json", "fetch", &digest, "--from", base, "-o", "usb.img"]);
    let again = Run::from(cmd.output().unwrap()).ok().json();
    assert_eq!(again["up_to_date"], true);
    assert!(!env.path().join("cache").exists(), "fetch created a store");

    // Killed after the last byte but before the rename: the whole file is the `.part`. The
    // rerun from S3 asks for no empty range past the end (S3 answers that with 416).
    fs::remove_file(env.path().join("usb.img")).unwrap();
    fs::write(
        env.path()
            .join(format!(".whole.img.{}.part", &data_hex[..16])),
        &data,
    )
    .unwrap();
    let out = s3.run(
        &env,
        &[
            "--json",
            "fetch",
            "usb.img",
            "--from",
            &s3.url("lab"),
            "--channel",
            "nightly",
            "-o",
            "whole.img",
        ],
    );
    let whole = out.ok().json();
    assert_eq!(whole["downloaded"], 0, "{whole:#}");
    assert_eq!(
        sha256_hex(&fs::read(env.path().join("whole.img")).unwrap()),
        data_hex
    );
}

#[test]
fn bad_credentials_bucket_location_and_channel_get_clear_errors() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    build_files(&env, "files", &[("x.bin", b"x")]);
    let to = s3.url("lab");

    let wrong = s3.run_with(
        &env,
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        &["publish", "--to", &to, "--channel", "nightly"],
    );
    let wrong = wrong
        .fails()
        .says(&["access denied", "AWS_SECRET_ACCESS_KEY"]);
    assert!(
        !wrong.stderr.contains("not-the-secret"),
        "a secret was printed"
    );
    assert!(
        !s3.data.join(BUCKET).join("lab").exists(),
        "nothing may be written"
    );

    s3.run(
        &env,
        &[
            "publish",
            "--to",
            "s3://no-such-bucket/lab",
            "--channel",
            "nightly",
        ],
    )
    .fails()
    .says(&["bucket `no-such-bucket` does not exist"]);
    s3.run(
        &env,
        &["publish", "--to", "bootforge/lab", "--channel", "nightly"],
    )
    .fails()
    .says(&["bad location `bootforge/lab`", "s3://BUCKET"]);
    s3.run(&env, &["publish", "--to", &to, "--channel", "Night/ly"])
        .fails()
        .says(&["bad channel name"]);
    s3.run(
        &env,
        &[
            "publish",
            "--to",
            &to,
            "--channel",
            "stable",
            "--manifest",
            &format!("sha256:{}", "ab".repeat(32)),
        ],
    )
    .fails()
    .says(&["neither in", "bootforge ls"]);

    let manifest = publish(&s3, &env, "lab", "nightly", &[])["manifest"].clone();
    s3.run(
        &env,
        &["fetch", "x.bin", "--from", &to, "--channel", "nope"],
    )
    .fails()
    .error_is(
        "unknown channel `nope` at s3://bootforge/lab (no channels/nope.json); channels there: \
         nightly",
    );
    s3.run(
        &env,
        &["fetch", "y.bin", "--from", &to, "--channel", "nightly"],
    )
    .fails()
    .error_is(&format!(
        "channel nightly (manifest {}) has no artifact `y.bin`; it has: files/x.bin",
        manifest.as_str().unwrap()
    ));
    s3.run(&env, &["fetch", "x.bin", "--from", &to])
        .fails()
        .error_is("fetching `x.bin` by name needs --channel (or fetch sha256:<hex>)");
}

#[test]
fn signatures_verify_with_the_minisign_cli_and_tampering_is_caught() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    let data = noise(50_000, 9);
    build_files(&env, "files", &[("efi.bin", &data)]);
    env.run(&["keygen", "--out", "release"]).ok();
    let key = env.path().join("release.key");
    let public = env.path().join("release.pub");
    let mode = fs::metadata(&key).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    env.run(&["keygen", "--out", "release"])
        .fails()
        .says(&["already exists"]);

    let r = publish(
        &s3,
        &env,
        "lab",
        "nightly",
        &["--sign", key.to_str().unwrap()],
    );
    let manifest = hex(&r["manifest"]);
    let dir = env.path();
    for key in ["SHA256SUMS", "SHA256SUMS.minisig"] {
        s3.aws(dir, &["s3", "cp", &format!("s3://{BUCKET}/lab/{key}"), key])
            .ok();
    }
    let mkey = format!("manifests/{manifest}.json");
    for key in [mkey.clone(), format!("{mkey}.minisig")] {
        let name = key.rsplit('/').next().unwrap().to_owned();
        s3.aws(
            dir,
            &["s3", "cp", &format!("s3://{BUCKET}/lab/{key}"), &name],
        )
        .ok();
    }
    let minisign_with = |public: &Path, file: &str| {
        Command::new("minisign")
            .args(["-V", "-p", public.to_str().unwrap(), "-m", file])
            .current_dir(dir)
            .output()
            .expect("minisign (.ci/run installs it)")
    };
    let minisign = |file: &str| minisign_with(&public, file);
    let ok = minisign("SHA256SUMS");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(minisign(&format!("{manifest}.json")).status.success());
    let mut sums = fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    sums = sums.replacen(&sha256_hex(&data)[..8], "00000000", 1);
    fs::write(dir.join("SHA256SUMS"), &sums).unwrap();
    assert!(
        !minisign("SHA256SUMS").status.success(),
        "a tampered SHA256SUMS verified"
    );

    // fetch checks the signature when given the key, and refuses tampered sums.
    let pubs = public.to_str().unwrap();
    s3.run(
        &env,
        &[
            "fetch",
            "efi.bin",
            "--from",
            &s3.url("lab"),
            "--channel",
            "nightly",
            "--verify-key",
            pubs,
        ],
    )
    .ok()
    .stdout
    .contains("signature good")
    .then_some(())
    .expect("fetch reports the signature");
    let d = format!("sha256:{}", sha256_hex(&data));
    let from = s3.url("lab");
    let by_digest = |out: &str| {
        let args = [
            "fetch",
            &d,
            "--from",
            &from,
            "--verify-key",
            pubs,
            "-o",
            out,
        ];
        s3.run(&env, &args)
    };
    by_digest("by-digest.bin").ok();
    fs::write(s3.object_path("lab/SHA256SUMS"), &sums).unwrap();
    by_digest("again.bin")
        .fails()
        .says(&["signature check", "FAILED"]);
    assert!(!env.path().join("again.bin").exists());
    // An unsigned publish must not leave a stale signature beside new sums.
    publish_refused_unsigned(&s3, &env);

    // A new key re-signs the manifest it did not sign, instead of keeping the old signature.
    env.run(&["keygen", "--out", "next"]).ok();
    publish(&s3, &env, "lab", "nightly", &["--sign", "next.key"]);
    let sig = format!("{mkey}.minisig");
    let name = sig.rsplit('/').next().unwrap();
    s3.aws(
        dir,
        &["s3", "cp", &format!("s3://{BUCKET}/lab/{sig}"), name],
    )
    .ok();
    let next = minisign_with(&env.path().join("next.pub"), &format!("{manifest}.json"));
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
}

fn publish_refused_unsigned(s3: &S3Server, env: &Env) {
    s3.run(
        env,
        &["publish", "--to", &s3.url("lab"), "--channel", "nightly"],
    )
    .fails()
    .says(&["SHA256SUMS is signed", "--sign"]);
}

#[test]
fn os_list_json_is_valid_for_rpi_imager_and_serves_the_image_as_xz() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    let profile = rpi_profile(&env);
    let img = package(&env, "rpi-img", &profile, "http://boot.example/boot.ipxe");
    let img_hex = hex(&img["sha256"]);
    let published = publish(
        &s3,
        &env,
        "lab",
        "nightly",
        &["--public-url", "https://boot.example/lab/"],
    );
    let get = |key: &str, to: &str| {
        s3.aws(
            env.path(),
            &["s3", "cp", &format!("s3://{BUCKET}/lab/{key}"), to],
        )
        .ok();
        fs::read(env.path().join(to)).unwrap()
    };
    get("os_list.json", "os_list.json");
    // Imager's own schema's required fields and types (tests/fixtures cites the file),
    // checked by the jsonschema package.
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rpi-imager-os-list.schema.json");
    run_tool(
        env.path(),
        "check-jsonschema",
        &["--schemafile", schema.to_str().unwrap(), "os_list.json"],
    )
    .ok();
    let list: Value =
        serde_json::from_slice(&fs::read(env.path().join("os_list.json")).unwrap()).unwrap();
    let os = list["os_list"].as_array().unwrap();
    assert_eq!(os.len(), 1, "{list:#}");
    let e = &os[0];
    // No OS for Imager to customise: without init_format it offers none.
    assert!(e.get("init_format").is_none(), "{e:#}");
    assert_eq!(e["devices"], serde_json::json!(["pi4-64bit"]));
    let date = e["release_date"].as_str().unwrap();
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{date}"
    );

    // The icon is published beside the views, a PNG.
    assert_eq!(e["icon"], "https://boot.example/lab/icon.png");
    let icon = get("icon.png", "icon.png");
    assert!(icon.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

    // The download is the .img.xz; the extract fields are the raw image's.
    let xz_hex = e["image_download_sha256"].as_str().unwrap().to_owned();
    assert_ne!(xz_hex, img_hex);
    assert_eq!(
        e["url"],
        format!("https://boot.example/lab/blobs/sha256/{xz_hex}")
    );
    assert_eq!(e["extract_sha256"], img_hex);
    assert_eq!(e["extract_size"], img["size"]);
    let xz = get(&format!("blobs/sha256/{xz_hex}"), "pi.img.xz");
    assert_eq!(sha256_hex(&xz), xz_hex);
    assert_eq!(e["image_download_size"], xz.len() as u64);
    assert!(
        (xz.len() as u64) * 4 < img["size"].as_u64().unwrap(),
        "the .img.xz is {} bytes of a {} byte image",
        xz.len(),
        img["size"]
    );
    // xz itself reads it: one stream with a CRC64 check, and the raw image inside.
    let listed = run_tool(env.path(), "xz", &["--robot", "--list", "pi.img.xz"]).ok();
    let totals = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("totals"))
        .unwrap_or_else(|| panic!("{listed}"));
    let fields: Vec<&str> = totals.split('\t').collect();
    assert_eq!(fields[1], "1", "streams: {totals}");
    assert_eq!(fields[6], "CRC64", "check: {totals}");
    run_tool(env.path(), "xz", &["-dk", "pi.img.xz"]).ok();
    assert_eq!(
        sha256_hex(&fs::read(env.path().join("pi.img")).unwrap()),
        img_hex
    );
    // The manifest lists it, and a republish compresses and uploads nothing again.
    let artifact = published["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["from"] == "rpi-img")
        .unwrap();
    assert_eq!(artifact["compressed"]["format"], "xz");
    assert_eq!(artifact["compressed"]["sha256"], format!("sha256:{xz_hex}"));
    let again = publish(&s3, &env, "lab", "nightly", &[]);
    assert_eq!(again["uploaded"]["objects"], 0, "{again:#}");

    // The same image compresses to the same bytes in another store.
    let other = Env::new();
    let s3_other = S3Server::start(&other);
    let profile = rpi_profile(&other);
    package(&other, "rpi-img", &profile, "http://boot.example/boot.ipxe");
    let elsewhere = publish(&s3_other, &other, "lab", "nightly", &[]);
    let theirs = elsewhere["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["from"] == "rpi-img")
        .unwrap();
    assert_eq!(theirs["compressed"], artifact["compressed"]);

    // fetch downloads the .xz and writes the image, checking both digests.
    let lab = s3.url("lab");
    let fetch_pi = |to: &str| {
        s3.run(
            &env,
            &[
                "--json",
                "fetch",
                "rpi-img",
                "--from",
                &lab,
                "--channel",
                "nightly",
                "-o",
                to,
            ],
        )
    };
    let fetched = fetch_pi("fetched.img").ok().json();
    assert_eq!(fetched["downloaded"], xz.len() as u64, "{fetched:#}");
    assert_eq!(fetched["sha256"], img["sha256"]);
    assert_eq!(
        sha256_hex(&fs::read(env.path().join("fetched.img")).unwrap()),
        img_hex
    );
    let leftovers: Vec<_> = fs::read_dir(env.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A server whose .xz is other bytes: refused, nothing written.
    let blob = s3.object_path(&format!("lab/blobs/sha256/{xz_hex}"));
    let mut bad = xz.clone();
    let n = bad.len();
    bad[n / 2] ^= 0x01;
    fs::write(&blob, &bad).unwrap();
    fetch_pi("refused.img")
        .fails()
        .says(&[&xz_hex[..12], "nothing was written"]);
    assert!(!env.path().join("refused.img").exists());
}

#[test]
fn a_directory_is_a_store_to_publish_to_fetch_from_and_serve() {
    let env = Env::new();
    let data = noise(300_000, 21);
    build_files(&env, "files", &[("dir.bin", &data)]);
    env.run(&[
        "publish",
        "--to",
        "./www",
        "--channel",
        "nightly",
        "--public-url",
        "https://boot.example/www",
    ])
    .ok();
    let index = fs::read_to_string(env.path().join("www/index.json")).unwrap();
    assert!(
        index.contains("https://boot.example/www/blobs/sha256/"),
        "{index}"
    );
    // Read back from the directory, and from a web server serving it.
    let got = env
        .run(&[
            "--json",
            "fetch",
            "dir.bin",
            "--from",
            "./www",
            "--channel",
            "nightly",
            "-o",
            "a.bin",
        ])
        .ok()
        .json();
    assert_eq!(got["sha256"], format!("sha256:{}", sha256_hex(&data)));
    let web = HttpServer::serve_dir(env.path().join("www"), None);
    let base = web.url("");
    env.run(&[
        "fetch",
        "dir.bin",
        "--from",
        base.trim_end_matches('/'),
        "--channel",
        "nightly",
        "-o",
        "b.bin",
    ])
    .ok();
    assert_eq!(fs::read(env.path().join("b.bin")).unwrap(), data);
    let ls = env.run(&["ls", "--from", "./www"]).ok();
    assert!(ls.stdout.contains("channel nightly"), "{ls}");
    // Reading creates nothing; a missing directory is no store.
    env.run(&["ls", "--from", "./nothing-here"])
        .fails()
        .error_is("./nothing-here: no store here (no blobs/ directory)");
    assert!(!env.path().join("nothing-here").exists());
}

#[test]
fn a_large_fetch_from_a_bucket_comes_in_parallel_ranges_and_still_resumes_and_verifies() {
    let env = Env::new();
    let s3 = S3Server::start(&env);
    // Five 8 MiB ranges, the last one short.
    let data = noise((36 << 20) + 12345, 11);
    let data_hex = sha256_hex(&data);
    build_files(&env, "files", &[("disk.img", &data)]);
    publish(&s3, &env, "lab", "nightly", &[]);
    let fetch = |out: &str| fetch_nightly(&s3, &env, "lab", "disk.img", out);
    let got = fetch("a/disk.img").ok().json();
    assert_eq!(got["downloaded"], data.len() as u64, "{got:#}");
    assert_eq!(fs::read(env.path().join("a/disk.img")).unwrap(), data);

    // An interrupted download left its first 10 MiB: the rest is fetched in ranges from there.
    fs::create_dir_all(env.path().join("b")).unwrap();
    let part = env
        .path()
        .join(format!("b/.disk.img.{}.part", &data_hex[..16]));
    fs::write(&part, &data[..10 << 20]).unwrap();
    let got = fetch("b/disk.img").ok().json();
    assert_eq!(got["resumed_from"], 10u64 << 20, "{got:#}");
    assert_eq!(got["downloaded"], (data.len() - (10 << 20)) as u64);
    assert_eq!(fs::read(env.path().join("b/disk.img")).unwrap(), data);
    assert!(!part.exists());

    // A byte changed on the server in the fourth range is caught; nothing is left behind.
    let obj = s3.object_path(&format!("lab/blobs/sha256/{data_hex}"));
    let mut bad = fs::read(&obj).unwrap();
    bad[(26 << 20) + 7] ^= 0x01;
    fs::write(&obj, &bad).unwrap();
    fetch("c/disk.img")
        .fails()
        .says(&["corrupt", "nothing was written to c/disk.img"]);
    let left: Vec<_> = fs::read_dir(env.path().join("c")).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
