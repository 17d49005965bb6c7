//! `bootforge package --target pxe-bundle`: read back with the real tools (tar, sha256sum,
//! dnsmasq), booted from its unpacked contents under QEMU, and reproducible byte for byte.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::boot::{HttpServer, qemu};
use common::{Env, Run, root};

/// A profile booting x86_64 UEFI with the GRUB network image of `grubnet_recipe`.
fn grub_profile(env: &Env) -> String {
    env.grubnet_recipe();
    let media = env.recipes_dir().join("media");
    fs::create_dir_all(&media).unwrap();
    let path = media.join("grub.yaml");
    let text = format!(
        "description: x86_64 UEFI through GRUB\nloaders:\n  bios: none\n  uefi-x64: grub\n  uefi-arm64: none\n\
         recipes:\n  grub: ../grubnet.yaml\ntemplates: {}/embed\n",
        root().display()
    );
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn package(env: &Env, profile: &str, url: &str) -> serde_json::Value {
    env.run(&[
        "--json",
        "package",
        "--target",
        "pxe-bundle",
        "--profile",
        profile,
        "--set",
        &format!("chain_url={url}"),
        "-o",
        "out",
    ])
    .ok()
    .json()
}

fn run_tool(dir: &Path, program: &str, args: &[&str]) -> Run {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
        .into()
}

#[test]
fn the_pxe_bundle_reads_back_and_boots_uefi_through_grub() {
    let env = Env::new();
    let profile = grub_profile(&env);
    let server = HttpServer::start("echo bootforge-test: bundle config served\nhalt\n");
    let url = server.guest_url("grub.cfg");
    let report = package(&env, &profile, &url);
    let bundle = env.path().join("out/pxe-bundle.tar.gz");
    assert_eq!(
        report["sha256"].as_str().unwrap(),
        format!("sha256:{}", common::sha256_hex(&fs::read(&bundle).unwrap()))
    );

    // tar lists sorted entries owned by root with the recipe's SOURCE_DATE_EPOCH.
    let listing = run_tool(
        env.path(),
        "tar",
        &["--utc", "-tzvf", bundle.to_str().unwrap()],
    )
    .ok();
    let names: Vec<&str> = listing
        .stdout
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "dhcp/",
            "SHA256SUMS",
            "dhcp/dhcpd.conf",
            "dhcp/dnsmasq.conf",
            "grub-early.cfg",
            "grubx64.efi",
            "manifest.json"
        ],
        "{listing}"
    );
    for line in listing.stdout.lines() {
        assert!(line.contains("root/root"), "{line}");
        assert!(
            line.contains("2023-11-14 22:13"),
            "mtime should be the epoch 1700000000: {line}"
        );
    }

    let unpacked = env.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    run_tool(&unpacked, "tar", &["-xzf", bundle.to_str().unwrap()]).ok();
    run_tool(&unpacked, "sha256sum", &["-c", "SHA256SUMS"]).ok();
    let dnsmasq = run_tool(&unpacked, "dnsmasq", &["--test", "-C", "dhcp/dnsmasq.conf"]).ok();
    assert!(dnsmasq.stderr.contains("syntax check OK"), "{dnsmasq}");
    let conf = fs::read_to_string(unpacked.join("dhcp/dnsmasq.conf")).unwrap();
    assert!(
        conf.contains("dhcp-boot=tag:!ipxe,tag:efi-x64,grubx64.efi"),
        "{conf}"
    );
    assert!(
        !conf.contains("undionly.kpxe"),
        "no BIOS loader was asked for: {conf}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["vars"]["chain_url"], url.as_str());
    assert_eq!(manifest["inputs"][0]["recipe"], "grubnet");

    // The unpacked bundle is a TFTP root that UEFI clients boot from.
    let netdev = format!(
        "user,id=n0,tftp={},bootfile=grubx64.efi",
        unpacked.display()
    );
    let run = qemu(
        "x86_64",
        &[
            "-m",
            "256",
            "-bios",
            "/usr/share/ovmf/OVMF.fd",
            "-netdev",
            &netdev,
            "-device",
            "virtio-net-pci,netdev=n0,romfile=",
        ],
        env.path(),
        Duration::from_secs(120),
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == "/grub.cfg?mac=52:54:00:12:34:56"),
        "requests: {requests:?}\nserial:\n{}",
        run.serial
    );
    assert_eq!(run.code, Some(0), "the served `halt` should end the VM");

    // Packaging again reuses the stored result.
    let again = package(&env, &profile, &url);
    assert_eq!(again["cached"], true);
    assert_eq!(again["sha256"], report["sha256"]);
    env.assert_store_intact();
}

#[test]
fn the_same_bundle_comes_out_in_another_directory_under_another_clock() {
    let first = Env::new();
    let a = package(
        &first,
        &grub_profile(&first),
        "http://boot.example/grub.cfg",
    );

    let second = Env::new();
    let profile = grub_profile(&second);
    // Build normally, then package with the clock moved years ahead (libfaketime).
    second.run(&["build", "recipes/grubnet.yaml"]).ok();
    let b: Run = Command::new("faketime")
        .arg("2031-07-01 12:00:00")
        .arg(env!("CARGO_BIN_EXE_bootforge"))
        .args([
            "--json",
            "package",
            "--target",
            "pxe-bundle",
            "--profile",
            &profile,
        ])
        .args(["--set", "chain_url=http://boot.example/grub.cfg"])
        .current_dir(second.path())
        .env("BOOTFORGE_STORE", second.store())
        .env("BOOTFORGE_RECIPES", second.recipes_dir())
        .env("TZ", "Pacific/Kiritimati")
        .output()
        .expect("running faketime (apt-get install faketime)")
        .into();
    let b = b.ok().json();
    assert_ne!(first.path(), second.path());
    assert_eq!(b["cached"], false);
    assert_eq!(
        a["sha256"], b["sha256"],
        "the bundle differs between directories or clocks"
    );
    assert_eq!(a["contents"], b["contents"]);
}

#[test]
fn profile_errors_are_clear() {
    let env = Env::new();
    let profile = grub_profile(&env);
    let text = fs::read_to_string(&profile)
        .unwrap()
        .replace("bios: none", "bios: grub");
    fs::write(&profile, text).unwrap();
    env.run(&[
        "package",
        "--target",
        "pxe-bundle",
        "--profile",
        &profile,
        "--set",
        "chain_url=http://x/c",
    ])
    .fails()
    .says(&["loaders.bios: grub is not supported for pxe-bundle"]);
    let text = fs::read_to_string(&profile)
        .unwrap()
        .replace("bios: grub", "bios: pxelinux");
    fs::write(&profile, text).unwrap();
    env.run(&["package", "--target", "pxe-bundle", "--profile", &profile])
        .fails()
        .says(&["grub.yaml:3:", "loaders.bios", "unknown variant `pxelinux`"]);
}
