//! End-to-end tests of `bootforge build`, `plan` and the store, in real podman containers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{Env, Run, contains, fixtures, only_build, output, toolchain_record_path};

#[test]
fn builds_in_a_container_without_network_and_embeds_the_script() {
    let env = Env::new();
    let run = env.run(&["--json", "build", "hello"]).ok();
    let b = only_build(&run);
    assert_eq!(b["cached"], false);
    assert_eq!(b["containers_started"], 1);

    let binary = env.blob(&output(&b, "hello"));
    let script = fs::read(fixtures().join("hello/default.script")).unwrap();
    assert!(
        contains(&binary, &script),
        "embedded script not found in the binary"
    );
    assert_eq!(&binary[..4], b"\x7fELF");

    // The build saw no network interface but loopback.
    let net = env.blob(&output(&b, "netinfo.txt"));
    assert_eq!(
        String::from_utf8_lossy(&net)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["lo"]
    );

    // Provenance records the pinned toolchain, the epoch and the container.
    let key = b["action_key"].as_str().unwrap();
    let entry: serde_json::Value =
        serde_json::from_slice(&fs::read(env.store().join(format!("actions/{key}.json"))).unwrap())
            .unwrap();
    let prov = &entry["provenance"];
    assert_eq!(prov["hermetic"], true);
    assert_eq!(prov["source_date_epoch"], 1700000000);
    assert_eq!(prov["source"]["kind"], "path");
    assert_eq!(prov["source"]["local"], true);
    assert!(prov["toolchain"].as_str().unwrap().starts_with("sha256:"));
    let log = env.blob(entry["log"].as_str().unwrap());
    assert!(String::from_utf8_lossy(&log).contains("$ make"));

    // -o copies the outputs out, verified.
    env.run(&["build", "hello", "-o", "out"]).ok();
    assert_eq!(
        fs::read(env.path().join("out/hello/hello")).unwrap(),
        binary
    );
    env.assert_store_intact();
}

#[test]
fn unchanged_inputs_hit_the_cache_and_any_change_rebuilds() {
    let env = Env::new();
    let first = only_build(&env.run(&["--json", "build", "hello"]).ok());

    let again = only_build(&env.run(&["--json", "build", "hello"]).ok());
    assert_eq!(again["cached"], true);
    assert_eq!(
        again["containers_started"], 0,
        "a cache hit must start no container"
    );
    assert_eq!(again["action_key"], first["action_key"]);
    assert_eq!(again["outputs"], first["outputs"]);

    let plan = env.run(&["--json", "plan", "hello"]).ok().json();
    assert_eq!(plan["plans"][0]["cached"], true);
    assert_eq!(plan["plans"][0]["action_key"], first["action_key"]);

    // One byte of the embedded script changes the key and the binary.
    let mut script = fs::read(fixtures().join("hello/default.script")).unwrap();
    *script.last_mut().unwrap() = b'!';
    fs::write(env.path().join("default.script"), &script).unwrap();
    let plan = env
        .run(&["--json", "plan", "hello", "--embed", "default.script"])
        .ok()
        .json();
    let p = &plan["plans"][0];
    assert_eq!(p["cached"], false);
    assert_ne!(p["action_key"], first["action_key"]);
    let reasons = p["reasons"].to_string();
    assert!(
        reasons.contains("embed"),
        "plan should name the changed input: {reasons}"
    );

    let changed = only_build(
        &env.run(&["--json", "build", "hello", "--embed", "default.script"])
            .ok(),
    );
    assert_eq!(changed["cached"], false);
    assert_ne!(changed["action_key"], first["action_key"]);
    assert_ne!(output(&changed, "hello"), output(&first, "hello"));
    assert!(contains(&env.blob(&output(&changed, "hello")), &script));

    // So does a variable, and selecting a single target.
    let var = only_build(
        &env.run(&["--json", "build", "hello", "--set", "GREETING=hi"])
            .ok(),
    );
    assert_ne!(var["action_key"], first["action_key"]);
    assert_ne!(output(&var, "hello"), output(&first, "hello"));
    let one = only_build(
        &env.run(&["--json", "build", "hello", "--target", "netinfo.txt"])
            .ok(),
    );
    assert_eq!(one["outputs"].as_array().unwrap().len(), 1);
    assert_ne!(one["action_key"], first["action_key"]);
    env.assert_store_intact();
}

#[test]
fn check_passes_for_a_reproducible_build_and_fails_for_one_that_is_not() {
    let env = Env::new();
    let ok = env.run(&["build", "hello", "--check"]).ok();
    assert!(ok.stdout.contains("reproducible"), "{ok}");
    // With a cached entry, --check compares the rebuild against it.
    let again = only_build(&env.run(&["--json", "build", "hello", "--check"]).ok());
    assert_eq!(again["checked_against"], "the cached build");
    assert_eq!(again["cached"], false);

    env.run(&["build", "clock", "--check"])
        .fails()
        .says(&["recipe clock is not reproducible", "stamp.txt"]);
    assert!(
        !fs::read_dir(env.store().join("actions"))
            .unwrap()
            .any(|e| fs::read_to_string(e.unwrap().path())
                .unwrap()
                .contains("\"clock\"")),
        "a failed check must not record an action"
    );
    env.assert_store_intact();
}

/// Packs the hello fixture as a tarball with a top-level directory, as releases are.
fn hello_tarball(env: &Env, name: &str) -> std::path::PathBuf {
    let staging = env.path().join("staging");
    fs::create_dir_all(staging.join("hello-1.0")).unwrap();
    for f in ["hello.c", "Makefile", "default.script"] {
        fs::copy(
            fixtures().join("hello").join(f),
            staging.join("hello-1.0").join(f),
        )
        .unwrap();
    }
    let tarball = env.path().join(name);
    let st = Command::new("tar")
        .arg("-C")
        .arg(&staging)
        .args(["--sort=name", "--mtime=@0", "-czf"])
        .arg(&tarball)
        .arg("hello-1.0")
        .status()
        .unwrap();
    assert!(st.success());
    tarball
}

fn url_recipe(sha: &str) -> String {
    format!(
        "source:\n  url: https://downloads.example.invalid/hello-1.0.tar.gz\n  sha256: {sha}\n  strip_components: 1\n\
         epoch: 1700000000\ntoolchain: test\nembed: ../{}\nsteps:\n  - run: [make, \"EMBED={{embed}}\", \"{{targets}}\"]\noutputs: [hello]\n",
        "embed.script"
    )
}

#[test]
fn url_sources_come_from_the_store_and_tampered_copies_are_refused() {
    let env = Env::new();
    fs::write(
        env.path().join("embed.script"),
        b"#!ipxe\necho from-tarball\n",
    )
    .unwrap();
    let tarball = hello_tarball(&env, "hello-1.0.tar.gz");
    let imported = env
        .run(&["--json", "cache", "import", tarball.to_str().unwrap()])
        .ok()
        .json();
    let sha = imported[0]["sha256"].as_str().unwrap().to_owned();
    assert_eq!(
        sha,
        format!(
            "sha256:{}",
            crate::common::sha256_hex(&fs::read(&tarball).unwrap())
        )
    );

    let recipe = env.write_recipe("fromurl", &url_recipe(&sha));
    // The URL does not resolve: the build can only succeed from the imported blob.
    let b = only_build(&env.run(&["--json", "build", recipe.to_str().unwrap()]).ok());
    assert!(contains(&env.blob(&output(&b, "hello")), b"from-tarball"));
    assert!(!b.to_string().contains("downloading"));

    // A different tarball served for the same pin is refused, and nothing is stored.
    let env = Env::new();
    fs::write(
        env.path().join("embed.script"),
        b"#!ipxe\necho from-tarball\n",
    )
    .unwrap();
    let tarball = hello_tarball(&env, "hello-1.0.tar.gz");
    let good = crate::common::sha256_hex(&fs::read(&tarball).unwrap());
    let tampered = env.path().join("tampered.tar.gz");
    let mut bytes = fs::read(&tarball).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&tampered, &bytes).unwrap();
    let recipe = env.write_recipe("fromurl", &url_recipe(&good));
    let blobs_before = env.blob_count();
    env.cmd()
        .args(["build", recipe.to_str().unwrap(), "--mirror"])
        .arg(format!(
            "https://downloads.example.invalid/hello-1.0.tar.gz={}",
            tampered.display()
        ))
        .output()
        .map(crate::common::Run::from)
        .unwrap()
        .fails()
        .says(&["sha256 mismatch", "nothing was stored", &good]);
    assert_eq!(
        env.blob_count(),
        blobs_before,
        "a refused download must store nothing"
    );
    assert_eq!(env.action_count(), 0);
    env.assert_store_intact();
}

#[test]
fn mirror_redirects_a_git_source_to_a_local_repository() {
    let env = Env::new();
    let repo = env.path().join("upstream");
    fs::create_dir(&repo).unwrap();
    for f in ["hello.c", "Makefile", "default.script"] {
        fs::copy(fixtures().join("hello").join(f), repo.join(f)).unwrap();
    }
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .env("GIT_COMMITTER_DATE", "@1700000123 +0000")
            .env("GIT_AUTHOR_DATE", "@1700000123 +0000")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "fixture"]);
    let rev = git(&["rev-parse", "HEAD"]);
    let recipe = env.write_recipe(
        "fromgit",
        &format!(
            "source:\n  git: https://git.example.invalid/hello.git\n  rev: {rev}\ntoolchain: test\n\
             steps:\n  - run: [make, \"EMBED=default.script\", \"{{targets}}\"]\noutputs: [hello]\n"
        ),
    );
    let recipe = recipe.to_str().unwrap();

    // Without the mirror the made-up host cannot be reached.
    env.run(&["build", recipe])
        .fails()
        .says(&["is not in https://git.example.invalid/hello.git"]);

    let b = only_build(
        &env.cmd()
            .args(["--json", "build", recipe, "--mirror"])
            .arg(format!(
                "https://git.example.invalid/hello.git={}",
                repo.display()
            ))
            .output()
            .map(crate::common::Run::from)
            .unwrap()
            .ok(),
    );
    assert!(contains(
        &env.blob(&output(&b, "hello")),
        b"fixture-default-embed"
    ));
    let key = b["action_key"].as_str().unwrap();
    let entry = fs::read_to_string(env.store().join(format!("actions/{key}.json"))).unwrap();
    // The commit time is the default SOURCE_DATE_EPOCH.
    assert!(
        entry.contains("\"source_date_epoch\": 1700000123"),
        "{entry}"
    );
    assert!(entry.contains(&rev));
}

#[test]
fn independent_recipes_build_in_parallel_and_concurrent_builds_share_one_result() {
    let env = Env::new();
    let clock_and_hello = env.run(&["--json", "build", "hello", "clock"]).ok().json();
    assert_eq!(clock_and_hello["builds"].as_array().unwrap().len(), 2);

    // Two processes building the same new action: one builds, the other waits and reuses it.
    fs::write(env.path().join("e.script"), b"#!ipxe\necho concurrent\n").unwrap();
    let spawn = || {
        env.cmd()
            .args(["--json", "build", "hello", "--embed", "e.script"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let a = only_build(&crate::common::Run::from(a.wait_with_output().unwrap()).ok());
    let b = only_build(&crate::common::Run::from(b.wait_with_output().unwrap()).ok());
    assert_eq!(a["outputs"], b["outputs"]);
    let started =
        a["containers_started"].as_u64().unwrap() + b["containers_started"].as_u64().unwrap();
    assert_eq!(started, 1, "the action ran more than once: {a} {b}");
    env.assert_store_intact();
}

#[test]
fn killed_builds_leave_no_partial_blob_or_action() {
    let env = Env::new();
    // A host-executor build whose output takes a moment to hash and store, killed at
    // several points during and after its step.
    let recipe = env.make_project(
        "big",
        "big.bin:\n\tsleep 0.5\n\thead -c 400000000 /dev/urandom > $@\n",
        "steps:\n  - run: [make]\noutputs: [big.bin]\n",
    );
    for delay_ms in [300, 1500, 2500, 3500] {
        let mut child = env
            .cmd()
            .args(["--executor", "host", "build", &recipe])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        env.assert_store_intact();
        for entry in fs::read_dir(env.store().join("actions")).unwrap() {
            let text = fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(
                serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                "torn action entry"
            );
        }
    }
    // gc clears what the killed processes left in tmp/.
    let gc = env.run(&["--json", "cache", "gc"]).ok().json();
    assert!(gc["temp_entries_removed"].as_u64().unwrap() <= 8);
    assert_eq!(fs::read_dir(env.store().join("tmp")).unwrap().count(), 0);
    env.assert_store_intact();
}

#[test]
fn a_step_past_its_timeout_is_killed_and_reported() {
    let env = Env::new();
    let recipe = env.make_project(
        "slow",
        "out:\n\tsleep 60\n",
        "timeout: 2\nsteps:\n  - name: wait\n    run: [make]\noutputs: [out]\n",
    );
    let start = std::time::Instant::now();
    env.run(&["build", &recipe])
        .fails()
        .says(&["step 1/1 `wait`", "timeout of 2.0s", "killed"]);
    assert!(
        start.elapsed() < Duration::from_secs(50),
        "the step was not stopped"
    );
    assert_eq!(env.action_count(), 0);
    env.assert_store_intact();
}

#[test]
fn gc_drops_only_unreferenced_blobs() {
    let env = Env::new();
    let b = only_build(&env.run(&["--json", "build", "hello"]).ok());
    fs::write(env.path().join("loose"), b"nobody refers to me").unwrap();
    env.run(&["cache", "import", "loose"]).ok();
    let ls = env.run(&["cache", "ls"]).ok();
    assert!(ls.stdout.contains("(unreferenced)"), "{ls}");
    assert!(ls.stdout.contains("hello: hello"), "{ls}");
    let gc = env.run(&["--json", "cache", "gc"]).ok().json();
    assert_eq!(gc["blobs_removed"], 1);
    assert!(
        !env.store()
            .join("blobs/sha256")
            .join(crate::common::sha256_hex(b"nobody refers to me"))
            .exists()
    );
    assert_eq!(
        env.blob(&output(&b, "hello")).len() as u64,
        b["outputs"][0]["size"].as_u64().unwrap()
    );
    let again = only_build(&env.run(&["--json", "build", "hello"]).ok());
    assert_eq!(again["cached"], true);

    // A corrupted blob is found by verify.
    let hex = output(&b, "netinfo.txt");
    let path = env
        .store()
        .join("blobs/sha256")
        .join(hex.trim_start_matches("sha256:"));
    fs::write(&path, b"eth0\n").unwrap();
    env.run(&["cache", "verify"]).fails();
    let v = env.run(&["cache", "verify"]);
    assert!(v.stdout.contains("corrupt"), "{v}");
}

#[test]
fn an_edited_toolchain_spec_means_a_new_toolchain() {
    let env = Env::new();
    let recipe = env.make_project(
        "proj",
        "out:\n\techo x > out\n",
        "steps:\n  - run: [make]\noutputs: [out]\n",
    );
    let recipe = recipe.as_str();
    let plan = env.run(&["--json", "plan", recipe]).ok().json();
    assert!(plan["plans"][0]["action_key"].is_string(), "{plan}");

    // Any edit to the spec, even a comment, is a different toolchain.
    let spec = env.recipes_dir().join("toolchains/test.yaml");
    let mut text = fs::read_to_string(&spec).unwrap();
    text.push_str("# edited\n");
    fs::write(&spec, text).unwrap();
    let plan = env.run(&["plan", recipe]).ok();
    assert!(
        plan.stdout
            .contains("toolchain `test` must be built first (spec changed since it was built)"),
        "{plan}"
    );
}

#[test]
fn a_debian_source_is_fetched_from_the_mirror_it_is_given() {
    // The repository's own recipe for Debian's MokManager names its .deb by archive path
    // only; here the mirror is a directory laid out like the archive.
    let env = Env::new();
    let deb = crate::common::deb("shim-helpers-amd64-signed");
    let pool = env
        .path()
        .join("debian/pool/main/s/shim-helpers-amd64-signed");
    fs::create_dir_all(&pool).unwrap();
    fs::copy(&deb, pool.join(deb.file_name().unwrap())).unwrap();
    let recipe = crate::common::root().join("recipes/shim-helpers.yaml");
    let run = env
        .cmd()
        .args(["--json", "build", recipe.to_str().unwrap(), "--mirror"])
        .arg(format!("debian:={}/", env.path().join("debian").display()))
        .output()
        .map(crate::common::Run::from)
        .unwrap()
        .ok();
    let built = crate::common::only_build(&run);
    let efi = crate::common::output(&built, "usr/lib/shim/mmx64.efi.signed");
    assert!(env.blob(&efi).starts_with(b"MZ"));
    env.assert_store_intact();
}

#[test]
fn container_flags_this_host_needs_are_learned_once_and_kept() {
    let env = Env::new();
    let learned = env.store().join("engines/podman.json");
    let build_in = |env: &Env, set: &str, given: Option<&str>| -> Run {
        let mut c = env.cmd();
        match given {
            Some(g) => c.env("BOOTFORGE_CONTAINER_ARGS", g),
            None => c.env_remove("BOOTFORGE_CONTAINER_ARGS"),
        };
        c.args([
            "--json",
            "build",
            "hello",
            "--set",
            &format!("GREETING={set}"),
        ])
        .output()
        .unwrap()
        .into()
    };
    let build = |set: &str, given: Option<&str>| build_in(&env, set, given);
    let first = build("first", None).ok();
    // The engine's own answer, as the reference: does `true` start with podman's defaults
    // here? In an image of the test toolchain of this test's own.
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(env.store().join(toolchain_record_path())).unwrap())
            .unwrap();
    let rootfs = record["rootfs"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let image = format!("localhost/bootforge-flagtest:{}", std::process::id());
    let imported = Command::new("podman")
        .arg("import")
        .arg(env.store().join("blobs/sha256").join(rootfs))
        .arg(&image)
        .output()
        .unwrap();
    assert!(imported.status.success(), "{imported:?}");
    let starts = |args: &[String]| {
        Command::new("podman")
            .args(["run", "--rm", "--network=none", "--pull=never"])
            .args(args)
            .args([&image, "true"])
            .output()
            .unwrap()
            .status
            .success()
    };
    let defaults_start = starts(&[]);
    let outcome = std::panic::catch_unwind(|| {
        if defaults_start {
            assert!(!learned.exists(), "nothing to learn on this host:\n{first}");
            assert!(
                !first.stderr.contains("could not start a container"),
                "{first}"
            );
            return;
        }
        assert!(
            first.stderr.contains("could not start a container"),
            "{first}"
        );
        assert!(
            first.stderr.contains("BOOTFORGE_CONTAINER_ARGS overrides"),
            "{first}"
        );
        let kept: serde_json::Value = serde_json::from_slice(&fs::read(&learned).unwrap()).unwrap();
        let args: Vec<String> = serde_json::from_value(kept["run_args"].clone()).unwrap();
        assert!(
            starts(&args),
            "the learned flags {args:?} do not start a container"
        );
        // The failed start is not part of the build: its log and outputs are those of a
        // store that was given the flags from the start.
        let other = Env::new();
        let given = build_in(&other, "first", Some(&args.join(" "))).ok();
        assert_eq!(
            first.json()["builds"][0]["outputs"],
            given.json()["builds"][0]["outputs"],
            "{first}\n{given}"
        );
        // Said once: the next build uses what was kept, silently.
        let second = build("second", None).ok();
        assert!(!second.stderr.contains("could not start"), "{second}");
        // The user's flags win, even empty ones: the engine's own error, nothing learned.
        let before = fs::read(&learned).unwrap();
        let given = build("given", Some("")).fails();
        assert!(given.stderr.contains("exited with"), "{given}");
        assert!(
            !given.stderr.contains("could not start a container"),
            "{given}"
        );
        assert_eq!(fs::read(&learned).unwrap(), before);
    });
    Command::new("podman")
        .args(["rmi", "-f", &image])
        .output()
        .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

/// A self-signed CA certificate made by openssl, `name.pem` in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (key, pem) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pem")),
    );
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .output()
        .expect("running openssl");
    assert!(out.status.success(), "{out:?}");
    pem
}

#[test]
fn trusted_certificates_reach_the_build_as_inputs_and_bad_ones_are_refused() {
    let env = Env::new();
    let certs = env.recipes_dir().join("certs");
    fs::create_dir_all(&certs).unwrap();
    let ca = make_ca(&certs, "fleet-ca");
    let other = make_ca(&certs, "other-ca");
    // What iPXE's make would be handed: TRUST= and CERT= name the files as the build
    // sees them; the build copies their bytes out to prove it read them.
    let recipe = env.make_project(
        "trusting",
        "all:\n\techo \"$(TRUST)\" > trust.txt\n\tcat $(subst $(comma), ,$(TRUST)) > certs.pem\n\
         comma := ,\n",
        "trust: [certs/fleet-ca.pem, certs/other-ca.pem]\n\
         steps:\n  - run: [make, \"TRUST={trust}\", \"CERT={trust}\"]\n\
         outputs: [trust.txt, certs.pem]\n",
    );
    let built = env.run(&["--json", "build", &recipe, "-o", "out"]).ok();
    let listed = fs::read_to_string(env.path().join("out/trusting/trust.txt")).unwrap();
    assert_eq!(
        listed.trim(),
        "/bootforge/embed/trust/fleet-ca.pem,/bootforge/embed/trust/other-ca.pem",
        "{built}"
    );
    let mut both = fs::read(&ca).unwrap();
    both.extend(fs::read(&other).unwrap());
    assert_eq!(
        fs::read(env.path().join("out/trusting/certs.pem")).unwrap(),
        both
    );
    let key = built.json()["builds"][0]["action_key"].clone();

    // The certificates are inputs: the same ones hit the cache, another CA's bytes miss and
    // say why.
    let again = env.run(&["--json", "build", &recipe]).ok().json();
    assert_eq!(again["builds"][0]["action_key"], key);
    assert_eq!(again["builds"][0]["cached"], true, "{again}");
    make_ca(&certs, "other-ca");
    let plan = env.run(&["plan", &recipe]).ok();
    assert!(plan.stdout.contains("trust"), "{plan}");
    let rebuilt = env.run(&["--json", "build", &recipe]).ok().json();
    assert_ne!(rebuilt["builds"][0]["action_key"], key);

    // A key where a certificate belongs, a file that is not there, and certificates no step
    // uses: refused naming the recipe file and field.
    fs::copy(certs.join("fleet-ca.key"), certs.join("not-a-cert.pem")).unwrap();
    for (trust, steps, says) in [
        (
            "[certs/not-a-cert.pem]",
            "[make, \"TRUST={trust}\"]",
            "not a `CERTIFICATE`",
        ),
        (
            "[certs/missing.pem]",
            "[make, \"TRUST={trust}\"]",
            "missing.pem",
        ),
        ("[certs/fleet-ca.pem]", "[make]", "no step uses `{trust}`"),
    ] {
        let bad = env.make_project(
            "badtrust",
            "all:\n\ttrue\n",
            &format!("trust: {trust}\nsteps:\n  - run: {steps}\noutputs: [x]\n"),
        );
        env.run(&["build", &bad])
            .fails()
            .says(&["badtrust.yaml", "trust", says]);
    }
}
