//! `bootforge package --target pxe-bundle`: read back with the real tools (tar, sha256sum,
//! dnsmasq), booted from its unpacked contents under QEMU, and reproducible byte for byte.

use std::fs;

use std::process::Command;
use std::time::Duration;

use crate::common::boot::{ovmf_pxe, qemu, qemu_until, seabios_pxe};
use crate::common::http::HttpServer;
use crate::common::media::{
    grub_profile, grubpc_recipe, iso_profile, package, rpi_profile, run_tool, unpack_bundle,
    usb_profile, write_profile,
};
use crate::common::{Env, Run};

/// Packages `target` into `out/` and checks the file there is the one the report names.
fn packaged(env: &Env, target: &str, profile: &str, url: &str, file: &str) -> std::path::PathBuf {
    let report = package(env, target, profile, url);
    let path = env.path().join("out").join(file);
    assert_eq!(
        report["sha256"].as_str().unwrap(),
        format!(
            "sha256:{}",
            crate::common::sha256_hex(&fs::read(&path).unwrap())
        )
    );
    path
}

/// A server for media whose BIOS path is iPXE (asks with `platform=`, gets a script that
/// powers off) and UEFI path is GRUB (asks with only the MAC, gets a config that halts).
fn ipxe_and_grub_server() -> HttpServer {
    HttpServer::start_with(|path| {
        if path.contains("platform=") {
            "#!ipxe\necho bootforge-test: ipxe script served\npoweroff\n".into()
        } else {
            "echo bootforge-test: grub config served\nhalt\n".into()
        }
    })
}

/// Unpacks `out/pxe-bundle.tar.gz` with tar into `unpacked/`, a TFTP root.
#[test]
fn the_pxe_bundle_reads_back_and_boots_uefi_through_grub() {
    let env = Env::new();
    let profile = grub_profile(&env);
    let server = HttpServer::start("echo bootforge-test: bundle config served\nhalt\n");
    let url = server.guest_url("grub.cfg");
    let report = package(&env, "pxe-bundle", &profile, &url);
    let bundle = env.path().join("out/pxe-bundle.tar.gz");
    assert_eq!(
        report["sha256"].as_str().unwrap(),
        format!(
            "sha256:{}",
            crate::common::sha256_hex(&fs::read(&bundle).unwrap())
        )
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

    let unpacked = unpack_bundle(&env, "unpacked");
    run_tool(&unpacked, "sha256sum", &["-c", "SHA256SUMS"]).ok();
    let dnsmasq = run_tool(&unpacked, "dnsmasq", &["--test", "-C", "dhcp/dnsmasq.conf"]).ok();
    assert!(dnsmasq.stderr.contains("syntax check OK"), "{dnsmasq}");
    let conf = fs::read_to_string(unpacked.join("dhcp/dnsmasq.conf")).unwrap();
    assert!(conf.contains("dhcp-boot=tag:efi-x64,grubx64.efi"), "{conf}");
    assert!(
        !conf.contains("undionly.kpxe"),
        "no BIOS loader was asked for: {conf}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["vars"]["chain_url"], url.as_str());
    assert_eq!(manifest["inputs"][0]["recipe"], "grubnet");

    // The unpacked bundle is a TFTP root that UEFI clients boot from.
    let run = ovmf_pxe(&unpacked, "grubx64.efi", env.path());
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
    let again = package(&env, "pxe-bundle", &profile, &url);
    assert_eq!(again["cached"], true);
    assert_eq!(again["sha256"], report["sha256"]);
    env.assert_store_intact();
}

/// Packages `target` in two fresh directories, the second with the clock moved years
/// ahead (libfaketime) and another TZ, and requires the same bytes.
fn same_bytes_elsewhere(target: &str, make_profile: fn(&Env) -> String) {
    let url = "chain_url=http://boot.example/boot";
    let first = Env::new();
    let profile = make_profile(&first);
    let a = first
        .run(&[
            "--json",
            "package",
            "--target",
            target,
            "--profile",
            &profile,
            "--set",
            url,
        ])
        .ok()
        .json();

    let second = Env::new();
    let profile = make_profile(&second);
    // Builds run normally (podman under faketime is not the point); packaging does not.
    let mut recipes: Vec<String> = fs::read_dir(second.recipes_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    recipes.sort();
    let mut build = vec!["build"];
    build.extend(recipes.iter().map(String::as_str));
    second.run(&build).ok();
    let b: Run = Command::new("faketime")
        .arg("2031-07-01 12:00:00")
        .arg(env!("CARGO_BIN_EXE_bootforge"))
        .args([
            "--json",
            "package",
            "--target",
            target,
            "--profile",
            &profile,
            "--set",
            url,
        ])
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
        "{target} differs between directories or clocks"
    );
    assert_eq!(a["contents"], b["contents"]);
}

#[test]
fn the_same_bundle_comes_out_in_another_directory_under_another_clock() {
    same_bytes_elsewhere("pxe-bundle", grub_profile);
}

#[test]
fn the_same_iso_comes_out_in_another_directory_under_another_clock() {
    same_bytes_elsewhere("iso", iso_profile);
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
        "iso",
        "--profile",
        &profile,
        "--set",
        "chain_url=http://x/c",
    ])
    .fails()
    .says(&["loaders.bios: grub chains over the network, so it is for pxe-bundle"]);
    // In a pxe-bundle it needs a recipe with GRUB's PXE image, which grubnet is not.
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
    .says(&["recipe grubnet has no output `images/grub-pxe.0`"]);
    let text = fs::read_to_string(&profile)
        .unwrap()
        .replace("bios: grub", "bios: pxelinux");
    fs::write(&profile, text).unwrap();
    env.run(&["package", "--target", "pxe-bundle", "--profile", &profile])
        .fails()
        .says(&["grub.yaml:3:", "loaders.bios", "unknown variant `pxelinux`"]);
}

#[test]
fn the_iso_reads_back_and_boots_as_cd_and_disk_under_seabios_and_ovmf() {
    let env = Env::new();
    let profile = iso_profile(&env);
    let server = ipxe_and_grub_server();
    let url = server.guest_url("boot");
    let iso = packaged(&env, "iso", &profile, &url, "bootforge.iso");
    let iso_s = iso.to_str().unwrap();

    // xorriso sees both El Torito entries; sfdisk sees the GPT with its ESP.
    let torito = run_tool(
        env.path(),
        "xorriso",
        &["-indev", iso_s, "-report_el_torito", "plain"],
    );
    let all = format!("{}{}", torito.stdout, torito.stderr);
    assert!(all.contains("El Torito boot img :   1  BIOS"), "{all}");
    assert!(all.contains("El Torito boot img :   2  UEFI"), "{all}");
    let files = run_tool(
        env.path(),
        "xorriso",
        &["-indev", iso_s, "-find", "/", "-type", "f"],
    )
    .ok();
    for f in [
        "/isolinux/isolinux.bin",
        "/isolinux/isolinux.cfg",
        "/ipxe.lkrn",
        "/chain.ipxe",
        "/manifest.json",
    ] {
        assert!(
            files.stdout.contains(&format!("'{f}'")),
            "{f} missing:\n{files}"
        );
    }
    let table = run_tool(env.path(), "sfdisk", &["-d", iso_s]).ok();
    assert!(table.stdout.contains("label: gpt"), "{table}");
    assert!(
        table
            .stdout
            .contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "no ESP: {table}"
    );
    // The ESP is a FAT volume that fsck.fat accepts and mtools reads.
    let esp_line = table
        .stdout
        .lines()
        .find(|l| l.contains("C12A7328"))
        .unwrap();
    let field = |name: &str| -> u64 {
        let v = esp_line.split(&format!("{name}=")).nth(1).unwrap();
        v.split(',').next().unwrap().trim().parse().unwrap()
    };
    let (start, size) = (field("start"), field("size"));
    let esp = env.path().join("iso-esp.vfat");
    run_tool(
        env.path(),
        "dd",
        &[
            &format!("if={iso_s}"),
            &format!("of={}", esp.display()),
            "bs=512",
            &format!("skip={start}"),
            &format!("count={size}"),
            "status=none",
        ],
    )
    .ok();
    run_tool(env.path(), "fsck.fat", &["-n", esp.to_str().unwrap()]).ok();
    let efi = run_tool(
        env.path(),
        "mdir",
        &["-/", "-b", "-i", esp.to_str().unwrap(), "::"],
    )
    .ok();
    assert!(efi.stdout.contains("::/EFI/BOOT/BOOTX64.EFI"), "{efi}");

    // iPXE asked for the script since request number `since`.
    let ipxe_asked = |s: &HttpServer, since: usize| {
        s.requests()[since..]
            .iter()
            .any(|r| r == "/boot?mac=52-54-00-12-34-56&platform=pcbios&arch=i386")
    };
    let net = [
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0,romfile=",
    ];
    let bios_net = ["-netdev", "user,id=n0", "-device", "e1000,netdev=n0"];
    for (how, media) in [
        ("cd", vec!["-cdrom", iso_s]),
        (
            "disk",
            vec![
                "-drive",
                &format!("file={iso_s},format=raw,if=ide,snapshot=on"),
            ],
        ),
    ] {
        let before = server.requests().len();
        let mut args = vec!["-m", "256"];
        args.extend(&media);
        args.extend(bios_net);
        let run = qemu_until(
            "x86_64",
            &args,
            env.path(),
            Duration::from_secs(120),
            || ipxe_asked(&server, before),
        );
        assert!(
            ipxe_asked(&server, before),
            "SeaBIOS {how}: iPXE did not chain; requests {:?}\nserial:\n{}",
            server.requests(),
            run.serial
        );
        assert!(
            run.serial.contains("ISOLINUX"),
            "SeaBIOS {how}: {}",
            run.serial
        );

        let before = server.requests().len();
        let mut args = vec!["-m", "256", "-bios", "/usr/share/ovmf/OVMF.fd"];
        args.extend(&media);
        args.extend(net);
        let run = qemu("x86_64", &args, env.path(), Duration::from_secs(120));
        let new: Vec<String> = server.requests()[before..].to_vec();
        assert!(
            new.iter().any(|r| r == "/boot?mac=52:54:00:12:34:56"),
            "OVMF {how}: GRUB did not chain; requests {new:?}\nserial:\n{}",
            run.serial
        );
        assert_eq!(
            run.code,
            Some(0),
            "OVMF {how}: the served halt should end the VM"
        );
    }
}

#[test]
fn the_rpi_image_has_an_mbr_and_a_fat32_boot_partition_with_the_firmware() {
    let env = Env::new();
    let profile = rpi_profile(&env);
    let report = package(&env, "rpi-img", &profile, "http://boot.example/boot.ipxe");
    let img = env.path().join("out/bootforge-rpi4.img");
    let img_s = img.to_str().unwrap();
    assert_eq!(
        report["sha256"].as_str().unwrap(),
        format!(
            "sha256:{}",
            crate::common::sha256_hex(&fs::read(&img).unwrap())
        )
    );

    // sfdisk: an MBR ("dos") table with one FAT32 (LBA) partition at 1 MiB.
    let table = run_tool(env.path(), "sfdisk", &["-d", img_s]).ok();
    assert!(table.stdout.contains("label: dos"), "{table}");
    let part: Vec<&str> = table
        .stdout
        .lines()
        .filter(|l| l.contains(" : start="))
        .collect();
    assert_eq!(part.len(), 1, "{table}");
    assert!(
        part[0].contains("start=        2048") && part[0].contains("type=c"),
        "{table}"
    );

    // fsck.fat on the partition itself.
    let boot = env.path().join("boot.vfat");
    run_tool(
        env.path(),
        "dd",
        &[
            &format!("if={img_s}"),
            &format!("of={}", boot.display()),
            "bs=1M",
            "skip=1",
            "status=none",
        ],
    )
    .ok();
    let fsck = run_tool(
        env.path(),
        "fsck.fat",
        &["-n", "-v", boot.to_str().unwrap()],
    )
    .ok();
    assert!(fsck.stdout.contains("32 bit entries"), "not FAT32: {fsck}");

    // mtools reads the files through the partition offset.
    let at = format!("{img_s}@@1M");
    let dir = run_tool(env.path(), "mdir", &["-/", "-b", "-i", &at, "::"]).ok();
    for f in [
        "RPI_EFI.fd",
        "start4.elf",
        "fixup4.dat",
        "bcm2711-rpi-4-b.dtb",
        "config.txt",
        "manifest.json",
        "upstream-pi4.dtbo",
        "BOOTAA64.EFI",
    ] {
        assert!(dir.stdout.contains(f), "{f} missing:\n{dir}");
    }
    let config = run_tool(env.path(), "mtype", &["-i", &at, "::config.txt"])
        .ok()
        .stdout;
    for line in [
        "arm_64bit=1",
        "armstub=RPI_EFI.fd",
        "enable_uart=1",
        "enable_gic=1",
        "device_tree_address=0x1f0000",
        "dtoverlay=upstream-pi4",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "config.txt lacks {line}:\n{config}"
        );
    }
    let loader = run_tool(env.path(), "mtype", &["-i", &at, "::EFI/BOOT/BOOTAA64.EFI"])
        .ok()
        .stdout;
    assert_eq!(loader, "MZ stand-in arm64 loader");
}

#[test]
fn the_same_rpi_image_comes_out_in_another_directory_under_another_clock() {
    same_bytes_elsewhere("rpi-img", rpi_profile);
}

#[test]
fn the_usb_image_is_a_gpt_disk_that_boots_under_seabios_and_ovmf() {
    let env = Env::new();
    let profile = usb_profile(&env);
    let server = ipxe_and_grub_server();
    let url = server.guest_url("boot");
    let img = packaged(&env, "usb-img", &profile, &url, "bootforge-usb.img");
    let img_s = img.to_str().unwrap();

    let table = run_tool(env.path(), "sfdisk", &["-d", img_s]).ok();
    assert!(table.stdout.contains("label: gpt"), "{table}");
    assert!(
        table.stdout.contains(
            "start=        2048, size=        2048, type=21686148-6449-6E6F-744E-656564454649"
        ),
        "{table}"
    );
    assert!(
        table.stdout.contains("start=        4096")
            && table
                .stdout
                .contains("type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "{table}"
    );
    let esp = env.path().join("esp.vfat");
    run_tool(
        env.path(),
        "dd",
        &[
            &format!("if={img_s}"),
            &format!("of={}", esp.display()),
            "bs=1M",
            "skip=2",
            "status=none",
        ],
    )
    .ok();
    // The ESP ends where the backup GPT's 1 MiB begins; fsck.fat reads only its own length.
    run_tool(env.path(), "fsck.fat", &["-n", esp.to_str().unwrap()]).ok();
    let dir = run_tool(
        env.path(),
        "mdir",
        &["-/", "-b", "-i", &format!("{img_s}@@2M"), "::"],
    )
    .ok();
    for f in [
        "BOOTX64.EFI",
        "ipxe.lkrn",
        "chain.ipxe",
        "grub.cfg",
        "manifest.json",
    ] {
        assert!(dir.stdout.contains(f), "{f} missing:\n{dir}");
    }

    let drive = format!("file={img_s},format=raw,if=ide,snapshot=on");
    let before = server.requests().len();
    let run = qemu_until(
        "x86_64",
        &[
            "-m",
            "256",
            "-drive",
            &drive,
            "-netdev",
            "user,id=n0",
            "-device",
            "e1000,netdev=n0",
        ],
        env.path(),
        Duration::from_secs(120),
        || {
            server.requests()[before..]
                .iter()
                .any(|r| r.contains("platform=pcbios"))
        },
    );
    let new = server.requests()[before..].to_vec();
    assert!(
        new.iter()
            .any(|r| r == "/boot?mac=52-54-00-12-34-56&platform=pcbios&arch=i386"),
        "SeaBIOS: requests {new:?}\nserial:\n{}",
        run.serial
    );
    assert!(
        run.serial.contains("bootforge: GRUB (BIOS) starting iPXE"),
        "{}",
        run.serial
    );

    let before = server.requests().len();
    let run = qemu(
        "x86_64",
        &[
            "-m",
            "256",
            "-bios",
            "/usr/share/ovmf/OVMF.fd",
            "-drive",
            &drive,
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0,romfile=",
        ],
        env.path(),
        Duration::from_secs(120),
    );
    let new = server.requests()[before..].to_vec();
    assert!(
        new.iter().any(|r| r == "/boot?mac=52:54:00:12:34:56"),
        "OVMF: requests {new:?}\nserial:\n{}",
        run.serial
    );
    assert_eq!(run.code, Some(0), "OVMF: the served halt should end the VM");
}

#[test]
fn the_same_usb_image_comes_out_in_another_directory_under_another_clock() {
    same_bytes_elsewhere("usb-img", usb_profile);
}

#[test]
fn a_syslinux_pxe_bundle_boots_bios_clients_to_the_chain_url() {
    let env = Env::new();
    env.deb_recipe(
        "deb-pxelinux",
        "pxelinux",
        &["usr/lib/PXELINUX/lpxelinux.0"],
    );
    env.deb_recipe(
        "deb-syslinux-common",
        "syslinux-common",
        &["usr/lib/syslinux/modules/bios/ldlinux.c32"],
    );
    let profile = write_profile(
        &env,
        "syslinux",
        "loaders:\n  bios: syslinux\n  uefi-x64: none\n  uefi-arm64: none\n\
         files:\n  lpxelinux.0: ../deb-pxelinux.yaml:usr/lib/PXELINUX/lpxelinux.0\n\
         \x20 ldlinux.c32: ../deb-syslinux-common.yaml:usr/lib/syslinux/modules/bios/ldlinux.c32\n",
    );
    let server = HttpServer::start("DEFAULT bootforge-test-served\n");
    package(
        &env,
        "pxe-bundle",
        &profile,
        &server.guest_url("pxelinux/fleet.cfg"),
    );
    let unpacked = unpack_bundle(&env, "unpacked");
    let conf = fs::read_to_string(unpacked.join("dhcp/dnsmasq.conf")).unwrap();
    assert!(conf.contains("dhcp-boot=tag:bios,lpxelinux.0"), "{conf}");
    let cfg = fs::read_to_string(unpacked.join("pxelinux.cfg/default")).unwrap();
    assert!(cfg.contains("CONFIG http://10.0.2.2:"), "{cfg}");

    let run = seabios_pxe(&unpacked, "lpxelinux.0", env.path(), || {
        server.requests().iter().any(|r| r == "/pxelinux/fleet.cfg")
    });
    assert!(
        server.requests().iter().any(|r| r == "/pxelinux/fleet.cfg"),
        "lpxelinux did not fetch the chain URL; requests {:?}\nserial:\n{}",
        server.requests(),
        run.serial
    );
}

#[test]
fn a_grub_pxe_bundle_boots_bios_clients_to_the_chain_url() {
    let env = Env::new();
    grubpc_recipe(&env);
    let profile = write_profile(
        &env,
        "grubpc",
        "loaders:\n  bios: grub\n  uefi-x64: none\n  uefi-arm64: none\n\
         files:\n  grub-pxe.0: ../grubpc.yaml:images/grub-pxe.0\n",
    );
    let server = HttpServer::start("echo bootforge-test: grub config served\nhalt\n");
    package(&env, "pxe-bundle", &profile, &server.guest_url("grub.cfg"));
    let unpacked = unpack_bundle(&env, "unpacked");
    let conf = fs::read_to_string(unpacked.join("dhcp/dnsmasq.conf")).unwrap();
    assert!(conf.contains("dhcp-boot=tag:bios,grub-pxe.0"), "{conf}");

    let asked = || {
        server
            .requests()
            .iter()
            .any(|r| r == "/grub.cfg?mac=52:54:00:12:34:56")
    };
    let run = seabios_pxe(&unpacked, "grub-pxe.0", env.path(), asked);
    assert!(
        asked(),
        "GRUB did not chain; requests {:?}\nserial:\n{}",
        server.requests(),
        run.serial
    );
}
