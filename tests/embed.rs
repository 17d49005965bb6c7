//! `bootforge embed`: a new chainload script written into built binaries without a rebuild,
//! proven by booting the patched binary under QEMU and watching what it requests.

use std::fs;

use crate::common::Env;
use crate::common::boot::ovmf_pxe;
use crate::common::http::HttpServer;
use crate::common::media::chained;

fn embed(env: &Env, recipe: &str, url: &str) -> serde_json::Value {
    chained(env, &["embed", recipe], url)
}

#[test]
fn a_patched_grub_efi_image_boots_and_chains_to_the_new_url() {
    let env = Env::new();
    let recipe = env.grubnet_recipe();
    let server = HttpServer::start("echo bootforge-test: served config\nhalt\n");
    let report = embed(&env, &recipe, &server.guest_url("grub.cfg"));
    let out = &report["outputs"][0];
    assert_eq!(out["patched"], true, "{report}");

    let tftp = env.path().join("tftp");
    fs::create_dir(&tftp).unwrap();
    fs::copy(
        env.path().join("out/grubnet/images/grubx64.efi"),
        tftp.join("grubx64.efi"),
    )
    .unwrap();
    let run = ovmf_pxe(&tftp, "grubx64.efi", env.path());
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == "/grub.cfg?mac=52:54:00:12:34:56"),
        "the guest did not request the new URL; requests: {requests:?}\nserial:\n{}",
        run.serial
    );
    assert!(
        run.serial.contains("bootforge: GRUB efi got a lease"),
        "{}",
        run.serial
    );
    assert!(
        run.serial.contains("bootforge-test: served config"),
        "{}",
        run.serial
    );
    assert_eq!(run.code, Some(0), "the served `halt` should end the VM");
}

#[test]
fn embedding_is_deterministic_and_never_rebuilds() {
    let env = Env::new();
    let recipe = env.grubnet_recipe();
    let first = embed(&env, &recipe, "http://boot.example/a.cfg");
    let again = embed(&env, &recipe, "http://boot.example/a.cfg");
    assert_eq!(again["build_cached"], true, "{again}");
    assert_eq!(first["outputs"][0]["sha256"], again["outputs"][0]["sha256"]);
    let other = embed(&env, &recipe, "http://boot.example/b.cfg");
    assert_eq!(other["build_cached"], true);
    assert_eq!(other["build_action"], first["build_action"]);
    assert_ne!(other["outputs"][0]["sha256"], first["outputs"][0]["sha256"]);
    // The patched binary differs from the built one only inside the placeholder.
    let built = crate::common::only_build(&env.run(&["--json", "build", &recipe]).ok());
    assert_eq!(built["cached"], true);
    let built = env.blob(&crate::common::output(&built, "images/grubx64.efi"));
    let patched = fs::read(env.path().join("out/grubnet/images/grubx64.efi")).unwrap();
    assert_eq!(built.len(), patched.len());
    let differing: Vec<usize> = (0..built.len())
        .filter(|&i| built[i] != patched[i])
        .collect();
    assert!(!differing.is_empty());
    assert!(differing.last().unwrap() - differing.first().unwrap() < 4096);
    assert!(crate::common::contains(
        &patched,
        b"(http,boot.example)/b.cfg?mac="
    ));
    env.assert_store_intact();
}

#[test]
fn a_script_longer_than_the_placeholder_is_refused() {
    let env = Env::new();
    let recipe = env.grubnet_recipe();
    let long = format!("http://boot.example/{}", "a".repeat(5000));
    env.run(&["embed", &recipe, "--set", &format!("chain_url={long}")])
        .fails()
        .says(&[
            "patching images/grubx64.efi",
            "more than the placeholder's capacity of 4096 bytes",
        ]);
}

#[test]
fn missing_template_variables_and_recipes_without_a_placeholder_are_errors() {
    let env = Env::new();
    let recipe = env.grubnet_recipe();
    env.run(&["embed", &recipe]).fails().says(&[
        "grub.cfg.j2:",
        "`chain_url` not set",
        "--set chain_url=",
    ]);
    let bad = env.path().join("bad.cfg.j2");
    fs::write(
        &bad,
        "# the fleet's config\nconfigfile {{ chain_url | grub_url }}\n",
    )
    .unwrap();
    env.run(&[
        "embed",
        &recipe,
        "--template",
        bad.to_str().unwrap(),
        "--set",
        "chain_url=http://x/c",
    ])
    .fails()
    .says(&["line 1: GRUB's embedded config takes no comments"]);
    env.run(&["embed", "hello", "--set", "chain_url=http://x/"])
        .fails()
        .says(&["recipe hello has no `placeholder:` section"]);
}

#[test]
fn compressed_outputs_are_remade_from_their_patched_uncompressed_form() {
    let env = Env::new();
    let run = |msg: &str| {
        env.run(&[
            "--json",
            "embed",
            "patchable",
            "--set",
            &format!("message={msg}"),
            "-o",
            "out",
        ])
        .ok()
        .json()
    };
    let first = run("hello-from-embed");
    assert_eq!(first["cached"], false);
    // The build of the one-step recipe, then gzip remaking the archive.
    assert_eq!(first["containers_started"], 2, "{first}");
    for o in first["outputs"].as_array().unwrap() {
        assert_eq!(o["patched"], true, "{o}");
    }
    // The patched program runs the new script (it prints what is embedded).
    let out = std::process::Command::new(env.path().join("out/patchable/hello")).output();
    let out = String::from_utf8_lossy(&out.unwrap().stdout).into_owned();
    assert!(out.contains("echo fixture says hello-from-embed"), "{out}");
    // The remade archive holds exactly the patched program.
    let gz = fs::File::open(env.path().join("out/patchable/hello.gz")).unwrap();
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut unpacked).unwrap();
    assert_eq!(
        unpacked,
        fs::read(env.path().join("out/patchable/hello")).unwrap()
    );

    // The same embed again is reused without starting anything.
    let again = run("hello-from-embed");
    assert_eq!(again["cached"], true);
    assert_eq!(again["containers_started"], 0);
    assert_eq!(again["outputs"], first["outputs"]);
    env.assert_store_intact();
}

/// The fixture's zbin (tests/fixtures/hello/zbin.c, built in the toolchain) run on the
/// exported `.bin` and `.zinfo`: what the image would be if remade in the container.
fn zbin_by_the_build(env: &Env, recipe: &str) -> Vec<u8> {
    let dir = env.path().join("out").join(recipe);
    let out = std::process::Command::new(dir.join("util/zbin"))
        .arg(dir.join("hello.bin"))
        .arg(dir.join("hello.zinfo"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

fn embed_zbin(env: &Env, recipe: &str, msg: &str) -> crate::common::Run {
    let args = [
        "--json",
        "embed",
        recipe,
        "--set",
        &format!("message={msg}"),
    ];
    env.run(&[&args[..], &["-o", "out"]].concat()).ok()
}

#[test]
fn zbin_images_are_remade_natively_with_the_bytes_of_the_builds_own_zbin() {
    let env = Env::new();
    let first = embed_zbin(&env, "zbin", "one").json();
    // The build ran; the image was remade without a container, and checked first against
    // the build's own image.
    assert_eq!(first["containers_started"], 1, "{first}");
    assert_eq!(first["native_repacks"], 1, "{first}");
    let image = fs::read(env.path().join("out/zbin/hello.zbin")).unwrap();
    assert_eq!(image, zbin_by_the_build(&env, "zbin"));
    assert!(crate::common::contains(
        &fs::read(env.path().join("out/zbin/hello.bin")).unwrap(),
        b"echo fixture says one"
    ));
    // A new script: still no container, still the bytes the build's zbin writes.
    let second = embed_zbin(&env, "zbin", "two").json();
    assert_eq!(second["containers_started"], 0, "{second}");
    assert_eq!(second["native_repacks"], 1, "{second}");
    let image2 = fs::read(env.path().join("out/zbin/hello.zbin")).unwrap();
    assert_ne!(image, image2);
    assert_eq!(image2, zbin_by_the_build(&env, "zbin"));
    env.assert_store_intact();
}

#[test]
fn a_zbin_the_native_one_does_not_match_is_run_in_the_toolchain_with_a_notice() {
    let env = Env::new();
    for (recipe, why) in [
        ("zbin-differs", "its bytes differ from the build's own zbin"),
        ("zbin-newer", "record 5: unknown type \"XTRA\""),
    ] {
        let notice = format!(
            "[{recipe}] hello.zbin: remade by the build's own zbin in its toolchain \
             (the native zbin cannot: {why})"
        );
        let run = embed_zbin(&env, recipe, "one").says(&[&notice]);
        let report = run.json();
        // The build, then the image remade in the container.
        assert_eq!(report["containers_started"], 2, "{report}");
        assert_eq!(report["native_repacks"], 0, "{report}");
        let image = fs::read(env.path().join(format!("out/{recipe}/hello.zbin"))).unwrap();
        assert_eq!(image, zbin_by_the_build(&env, recipe));
        // What was seen is remembered: the next script goes straight to the toolchain.
        let again = embed_zbin(&env, recipe, "two").says(&[&notice]).json();
        assert_eq!(again["containers_started"], 1, "{again}");
        assert_eq!(again["native_repacks"], 0, "{again}");
    }
    env.assert_store_intact();
}
