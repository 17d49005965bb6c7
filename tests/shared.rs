//! Many machines sharing one store: builders push to a bucket prefix, a packager with an
//! empty store takes everything from it and starts no container, an independent rebuilder
//! checks it; on a real three-node Garage cluster, and on s3s-fs where a test must reach
//! behind the server (a corrupt blob, a forged entry).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::http::HttpServer;
use crate::common::media::{GRUB_PROFILE, grub_profile, iso_profile, write_profile};
use crate::common::s3::{S3Server, build_files};
use crate::common::{Env, Run, deb, noise, output, root, sha256_hex, toolchain_record_path};

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

    // 6. Every block on node 1's disk (the node that serves the S3 API) corrupted: Garage
    //    checks each block's hash and reads another replica, bootforge checks the blob's
    //    sha256; the corrupt copy is never used.
    let corrupted = garage.corrupt_node_blocks(1);
    assert!(corrupted >= 24, "only {corrupted} blocks on node 1");
    let h = machine(&f);
    let again = on_recipes(&garage, &h, &["build", "payload"]).ok().json();
    assert_eq!(again["builds"][0]["origin"], "remote", "{again}");
    assert_eq!(
        again["builds"][0]["outputs"], pulled["builds"][0]["outputs"],
        "{again}"
    );
    h.assert_store_intact();
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

/// The bootforge commands the scheduler templates in `ci/` run, as `ci/check-schedulers.py`
/// lists them once it has read each template with its engine's parser and schema.
fn template_commands() -> Vec<Value> {
    let out = Command::new("python3")
        .arg(root().join("ci/check-schedulers.py"))
        .arg("--json")
        .output()
        .expect("python3 (.ci/run installs it and the parsers)");
    let run = Run::from(out).ok();
    run.json()["commands"].as_array().unwrap().clone()
}

/// A template's command as its shell runs it, `bootforge` being the binary under test: each
/// word that expands a variable double-quoted, as the templates write them.
fn template_run(s3: &S3Server, on: &Env, argv: &Value, vars: &[(&str, String)]) -> Command {
    let words: Vec<String> = argv
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|w| {
            let w = w.as_str().unwrap();
            if w.contains('$') {
                format!("\"{w}\"")
            } else {
                shell_words::quote(w).into_owned()
            }
        })
        .collect();
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(format!("set -eu; \"$BOOTFORGE_BIN\" {}", words.join(" ")));
    s3.apply(&mut c)
        .current_dir(on.path())
        .env("BOOTFORGE_BIN", env!("CARGO_BIN_EXE_bootforge"))
        .env("BOOTFORGE_STORE", on.store())
        .env("BOOTFORGE_RECIPES", on.recipes_dir())
        .env_remove("BOOTFORGE_EXECUTOR")
        .env_remove("BOOTFORGE_CONFIG")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Recipes for a fleet: GRUB's network image (which the default profile packages) and three
/// more from Debian packages, so shards have something to split.
fn fleet_recipes(env: &Env) -> Vec<String> {
    iso_profile(env);
    write_profile(env, "default", GRUB_PROFILE);
    let mut names: Vec<String> = fs::read_dir(env.recipes_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// A builder: the test toolchain, the same recipes as `like`, and their sources (the
/// Debian packages they pin, which a builder would download).
fn builder(like: &Env) -> Env {
    let m = Env::new();
    copy_dir(&like.recipes_dir(), &m.recipes_dir());
    for package in ["grub-efi-amd64-bin", "isolinux", "syslinux-common", "ipxe"] {
        m.import(&deb(package));
    }
    m
}

/// The recipes whose build this machine recorded as its latest (built or pulled).
fn latest_builds(m: &Env) -> Vec<String> {
    fs::read_dir(m.store().join("latest"))
        .map(|d| {
            d.filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                let recipe = name.strip_prefix("build-")?.strip_suffix(".json")?;
                Some(recipe.to_owned())
            })
            .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_scheduler_templates_commands_build_once_and_package_from_the_bucket() {
    let commands = template_commands();
    let origin = Env::new();
    let recipes = fleet_recipes(&origin);
    let s3 = S3Server::start(&origin);
    origin.run(&["keygen", "--out", "builders"]).ok();
    origin.run(&["keygen", "--out", "release"]).ok();
    let key = |name: &str| origin.path().join(name).to_str().unwrap().to_owned();
    let mut bundles = Vec::new();
    for engine in ["nomad", "kubernetes", "github"] {
        let of_engine: Vec<&Value> = commands
            .iter()
            .filter(|c| {
                c["file"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("ci/{engine}/"))
            })
            .collect();
        let remote = s3.url(engine);

        // Every builder of the template at once, each on a machine of its own: one per
        // recipe for a dispatched job, one per shard for a sharded one.
        let builds: Vec<&&Value> = of_engine
            .iter()
            .filter(|c| c["role"] == "builder")
            .collect();
        assert_eq!(builds.len(), 1, "{engine}: one build command, {builds:?}");
        let b = builds[0];
        let machines: Vec<Vec<(&str, String)>> = match b["shards"].as_u64() {
            Some(n) => (1..=n)
                .map(|i| {
                    vec![
                        ("SHARD", i.to_string()),
                        ("SHARDS", n.to_string()),
                        ("JOB_COMPLETION_INDEX", (i - 1).to_string()),
                    ]
                })
                .collect(),
            None => recipes
                .iter()
                .map(|r| vec![("NOMAD_META_recipe", r.clone())])
                .collect(),
        };
        let running: Vec<(Env, std::process::Child)> = machines
            .into_iter()
            .map(|mut vars| {
                vars.push(("BOOTFORGE_REMOTE", remote.clone()));
                vars.push(("BOOTFORGE_SIGN_KEY", key("builders.key")));
                let m = builder(&origin);
                let child = template_run(&s3, &m, &b["argv"], &vars).spawn().unwrap();
                (m, child)
            })
            .collect();
        let mut built = Vec::new();
        for (m, child) in running {
            Run::from(child.wait_with_output().unwrap()).ok();
            built.extend(latest_builds(&m));
        }
        built.sort();
        assert_eq!(built, recipes, "{engine}: every recipe built, each once");

        // A packager with an empty store runs the packaging commands in order: nothing is
        // built (`--no-build` would fail), and the publish to the same prefix sends only
        // the manifest and its signature.
        let p = machine(&origin);
        let vars = [
            ("BOOTFORGE_REMOTE", remote.clone()),
            ("BOOTFORGE_SIGN_KEY", key("release.key")),
            ("BUILDERS_PUB_FILE", key("builders.pub")),
            ("CHAIN_URL", "http://10.0.2.2:8080/fleet".to_owned()),
            ("target", "pxe-bundle".to_owned()),
            ("BOOTFORGE_OUT", "out".to_owned()),
        ];
        let mut published = None;
        for c in of_engine.iter().filter(|c| c["role"] == "packager") {
            let run = Run::from(template_run(&s3, &p, &c["argv"], &vars).output().unwrap()).ok();
            if c["argv"].as_array().unwrap().iter().any(|w| w == "publish") {
                published = Some(run.json());
            }
        }
        let report = published.unwrap_or_else(|| panic!("{engine}: no publish command"));
        assert_eq!(report["uploaded"]["objects"], 2, "{engine}: {report}");
        let bundle = report["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "pxe-bundle.tar.gz")
            .unwrap_or_else(|| panic!("{engine}: no bundle in {report}"));
        bundles.push(bundle["sha256"].clone());
        p.assert_store_intact();
    }
    assert!(
        bundles.windows(2).all(|w| w[0] == w[1]),
        "three fleets, one recipe set, other bytes: {bundles:?}"
    );
}

#[test]
fn no_build_takes_from_the_stores_or_names_what_they_lack() {
    let a = Env::new();
    let s3 = S3Server::start(&a);
    on(&s3, &a, &["--no-build", "build", "hello"])
        .fails()
        .says(&[
            "recipe hello: action",
            "is neither in the local store nor in s3://bootforge/shared",
            "--no-build forbids making it here",
        ]);
    a.run(&["--no-build", "build", "hello"])
        .fails()
        .says(&["neither in the local store (no --remote given)"]);
    // Without the toolchain anywhere, that is what is missing.
    Env::bare()
        .run(&["--no-build", "build", "hello"])
        .fails()
        .says(&["recipe hello: toolchain `test` (never built) is neither in the local store"]);
    // Once a builder pushed it, the same command takes it and runs nothing.
    on(&s3, &a, &["build", "hello"]).ok();
    let taken = on(&s3, &machine(&a), &["--no-build", "build", "hello"])
        .ok()
        .json();
    assert_eq!(taken["builds"][0]["origin"], "remote", "{taken}");
    assert_eq!(taken["builds"][0]["containers_started"], 0, "{taken}");
}

#[test]
fn a_second_machine_mounts_a_toolchain_from_the_bucket_instead_of_debootstrapping() {
    let a = Env::new();
    let s3 = S3Server::start(&a);
    on(&s3, &a, &["build", "hello"]).ok();
    let b = Env::bare();
    b.run(&["toolchain", "pull", "test"]).fails().says(&[
        "toolchain test: no rootfs built from this spec",
        "toolchain build test",
    ]);

    // The same spec under a name of its own, so its image is one this machine's engine
    // lacks: the record a builder would have pushed for it.
    let spec = b.recipes_dir().join("toolchains/pulled.yaml");
    fs::copy(b.recipes_dir().join("toolchains/test.yaml"), &spec).unwrap();
    let pushed = toolchain_record_path();
    let mut record: Value =
        serde_json::from_slice(&fs::read(s3.object_path(&format!("{SHARED}/{pushed}"))).unwrap())
            .unwrap();
    let image = format!("localhost/bootforge-pulled:{}", std::process::id());
    record["name"] = "pulled".into();
    record["image"] = image.clone().into();
    fs::write(
        s3.object_path(&format!(
            "{SHARED}/{}",
            pushed.replace("/test.", "/pulled.")
        )),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();

    let pulled = on_recipes(&s3, &b, &["toolchain", "pull", "pulled"])
        .ok()
        .says(&["pulling rootfs"]);
    assert_eq!(pulled.json()["image"], image.as_str(), "{pulled}");
    let squashfs = record["squashfs"]
        .as_str()
        .expect("the record names a squashfs");
    let hex = squashfs.trim_start_matches("sha256:");
    assert!(b.store().join("blobs/sha256").join(hex).is_file());
    assert!(
        b.store()
            .join(pushed.replace("/test.", "/pulled."))
            .is_file()
    );
    // Steps run on the squashfs mounted, in a mount namespace of their own: nothing is
    // unpacked, and nothing stays mounted.
    let recipe = b.make_project(
        "onpulled",
        "all:\n\tgcc --version | head -1 > version.txt\n",
        "steps:\n  - name: make\n    run: [make]\noutputs: [version.txt]\n",
    );
    fs::write(
        &recipe,
        fs::read_to_string(&recipe)
            .unwrap()
            .replace("toolchain: test", "toolchain: pulled"),
    )
    .unwrap();
    let built = on_recipes(&s3, &b, &["build", "onpulled"]).ok();
    assert!(!built.stderr.contains("importing"), "{built}");
    assert_eq!(
        built.json()["builds"][0]["containers_started"],
        1,
        "{built}"
    );
    let version = b.blob(&output(&built.json()["builds"][0], "version.txt"));
    assert!(version.starts_with(b"gcc (Debian"), "{built}");
    let exists = Command::new("podman")
        .args(["image", "exists", &image])
        .status()
        .unwrap();
    assert!(!exists.success(), "{image} was imported, not mounted");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&b.path().display().to_string()),
        "{mounts}"
    );
    // The same tree imported as an image, as the machine that built it runs it: a rebuild
    // there is byte-identical.
    let rootfs = record["rootfs"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let imported = Command::new("podman")
        .arg("import")
        .arg(b.store().join("blobs/sha256").join(rootfs))
        .arg(&image)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{imported:?}");
    let checked = on_recipes(&s3, &b, &["build", "onpulled", "--check"]);
    Command::new("podman")
        .args(["rmi", "-f", &image])
        .output()
        .unwrap();
    let checked = checked.ok().json();
    assert_eq!(
        checked["builds"][0]["checked_against"], "the cached build",
        "{checked}"
    );
    b.assert_store_intact();
}

#[test]
fn a_read_only_consumer_takes_builds_and_media_over_plain_http() {
    let a = Env::new();
    let s3 = S3Server::start(&a);
    let profile = grub_profile(&a);
    let package = package_args(&profile);
    on_recipes(&s3, &a, &strs(&package)).ok();
    // Any web server in front of the prefix: here, the bucket's own files.
    let web = HttpServer::serve_dir(s3.data.join(crate::common::s3::BUCKET), None);
    let url = web.url(SHARED);

    let b = machine(&a);
    let mut cmd = b.cmd();
    cmd.env("BOOTFORGE_RECIPES", b.recipes_dir())
        .args(["--json", "--remote", &url, "--no-build"])
        .args(&package);
    let medium = Run::from(cmd.output().unwrap()).ok().json();
    assert_eq!(medium["containers_started"], 0, "{medium}");
    let asked = web.requests();
    assert!(
        asked.iter().any(|p| p.starts_with("/shared/actions/")),
        "the entries did not come over HTTP: {asked:?}"
    );
    b.assert_store_intact();
}
