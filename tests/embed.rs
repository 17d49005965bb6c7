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
