//! Secure Boot: media signed after their scripts are written in, booted by OVMF enforcing
//! Secure Boot (Debian's snakeoil variables, variables `keygen --secure-boot` made, and
//! Microsoft's keys through Debian's shim), refused unsigned or tampered with, the same
//! bytes every time, with signatures `sbverify` accepts, and clear errors for bad keys.
//!
//! The iPXE here is Debian trixie's build (a CI machine cannot build iPXE): it carries no
//! placeholder, so it gets the chain script as `autoexec.ipxe`; the GRUB network image
//! carries one, so it is patched and then signed.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::boot::{
    AAVMF_VARS_SNAKEOIL, OVMF_VARS_MS, OVMF_VARS_SNAKEOIL, refusal, secure_boot, secure_boot_arm64,
};
use crate::common::http::HttpServer;
use crate::common::media::{isolinux_recipes, package, run_tool, unpack_deb, write_profile};
use crate::common::{Env, Run, sha256_hex};

/// The chain URL's query asks iPXE what the firmware says of Secure Boot (`efi/` settings
/// read EFI variables): the request then shows it.
const SB_QUERY: &str = "boot?sb=${efi/SecureBoot:uint8}";

/// Debian's snakeoil key (decrypted: sbsign takes no password) and cert, in `keys/`.
fn snakeoil(env: &Env) -> (PathBuf, PathBuf) {
    let keys = env.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    let (key, cert) = (keys.join("snakeoil.key"), keys.join("snakeoil.crt"));
    run_tool(
        env.path(),
        "openssl",
        &[
            "rsa",
            "-passin",
            "pass:snakeoil",
            "-in",
            "/usr/share/ovmf/PkKek-1-snakeoil.key",
            "-out",
            key.to_str().unwrap(),
        ],
    )
    .ok();
    fs::copy("/usr/share/ovmf/PkKek-1-snakeoil.pem", &cert).unwrap();
    (key, cert)
}

/// `keygen --secure-boot keys/lab`, checked: the files, the key's mode.
fn keygen_lab(env: &Env) -> PathBuf {
    let run = env
        .run(&["--json", "keygen", "--secure-boot", "keys/lab"])
        .ok();
    let v = run.json();
    let keys = env.path().join("keys");
    for f in [
        "lab-db.key",
        "lab-db.crt",
        "lab-db.esl",
        "lab-db.auth",
        "lab-OVMF_VARS.fd",
    ] {
        assert!(keys.join(f).is_file(), "{f} missing:\n{run}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(keys.join("lab-db.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key must be private");
    assert_eq!(
        v["cert_sha256"].as_str().unwrap(),
        sha256_hex(&cert_der(env, &keys.join("lab-db.crt"))),
        "{run}"
    );
    keys
}

/// The `secure_boot` block of a profile in `recipes/media/`, for keys in `keys/`.
fn sb_block(key: &str, cert: &str, shim: &str) -> String {
    format!("secure_boot:\n  key: ../../keys/{key}\n  cert: ../../keys/{cert}\n  shim: {shim}\n")
}

/// Recipes taking trixie's iPXE (every loader) and bookworm's ISOLINUX from their .debs;
/// returns the profile lines that name them.
fn debian_loaders(env: &Env) -> String {
    env.deb_recipe(
        "deb-ipxe-efi",
        "ipxe-trixie",
        &[
            "usr/lib/ipxe/ipxe-amd64.efi",
            "usr/lib/ipxe/snponly.efi",
            "usr/lib/ipxe/ipxe-arm64.efi",
            "usr/lib/ipxe/ipxe.lkrn",
            "usr/lib/ipxe/undionly.kpxe",
        ],
    );
    isolinux_recipes(env);
    "files:\n  ipxe.efi: ../deb-ipxe-efi.yaml:usr/lib/ipxe/ipxe-amd64.efi\n\
     \x20 snponly.efi: ../deb-ipxe-efi.yaml:usr/lib/ipxe/snponly.efi\n\
     \x20 snp-arm64.efi: ../deb-ipxe-efi.yaml:usr/lib/ipxe/ipxe-arm64.efi\n\
     \x20 ipxe.lkrn: ../deb-ipxe-efi.yaml:usr/lib/ipxe/ipxe.lkrn\n\
     \x20 undionly.kpxe: ../deb-ipxe-efi.yaml:usr/lib/ipxe/undionly.kpxe\n\
     \x20 isolinux.bin: ../deb-isolinux.yaml:usr/lib/ISOLINUX/isolinux.bin\n\
     \x20 isohdpfx.bin: ../deb-isolinux.yaml:usr/lib/ISOLINUX/isohdpfx.bin\n\
     \x20 ldlinux.c32: ../deb-syslinux-common.yaml:usr/lib/syslinux/modules/bios/ldlinux.c32\n"
        .to_owned()
}

/// A profile: BIOS, x86_64 and arm64 UEFI through iPXE, with `extra` (a `secure_boot`
/// block or nothing).
fn ipxe_profile(env: &Env, name: &str, extra: &str) -> String {
    let files = debian_loaders(env);
    write_profile(
        env,
        name,
        &format!("loaders:\n  bios: ipxe\n  uefi-x64: ipxe\n  uefi-arm64: ipxe\n{files}{extra}"),
    )
}

/// Debian's shim and MokManager, as recipes from their .debs; the profile lines naming them.
fn shim_recipes(env: &Env) -> String {
    env.deb_recipe("shim", "shim-signed", &["usr/lib/shim/shimx64.efi.signed"]);
    env.deb_recipe(
        "shim-helpers",
        "shim-helpers-amd64-signed",
        &["usr/lib/shim/mmx64.efi.signed"],
    );
    "\x20 shimx64.efi: ../shim.yaml:usr/lib/shim/shimx64.efi.signed\n\
     \x20 mmx64.efi: ../shim-helpers.yaml:usr/lib/shim/mmx64.efi.signed\n"
        .to_owned()
}

/// Whether the firmware said Secure Boot is on (iPXE renders the byte as `1` or `0x1`).
fn says_secure_boot(request: &str) -> bool {
    request.starts_with("/boot?sb=1&mac=") || request.starts_with("/boot?sb=0x1&mac=")
}

/// Whether a request to the chain URL came since `since`, from a guest under Secure Boot.
fn chained_under_secure_boot(server: &HttpServer, since: usize) -> bool {
    server.requests()[since..]
        .iter()
        .any(|r| says_secure_boot(r))
}

/// QEMU arguments: a network with the test's server at 10.0.2.2, and `drive` if any.
fn net(tftp: Option<(&Path, &str)>) -> Vec<String> {
    let mut netdev = "user,id=n0".to_owned();
    if let Some((root, file)) = tftp {
        netdev.push_str(&format!(",tftp={},bootfile={file}", root.display()));
    }
    vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        "virtio-net-pci,netdev=n0,romfile=".into(),
    ]
}

fn boot_sb(env: &Env, vars: &Path, args: &[String], server: &HttpServer) -> (bool, String) {
    let before = server.requests().len();
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let run = secure_boot(vars, &args, env.path(), || {
        chained_under_secure_boot(server, before)
    });
    (chained_under_secure_boot(server, before), run.serial)
}

fn cd(iso: &Path) -> Vec<String> {
    vec!["-cdrom".into(), iso.display().to_string()]
}

fn disk(image: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},format=raw,if=virtio,snapshot=on", image.display()),
    ]
}

/// `sbverify --cert` accepts `file`.
fn sbverify(env: &Env, cert: &Path, file: &Path) {
    run_tool(
        env.path(),
        "sbverify",
        &["--cert", cert.to_str().unwrap(), file.to_str().unwrap()],
    )
    .ok();
}

/// The ESP of a GPT disk or hybrid ISO, copied out with dd at sfdisk's offsets.
fn esp_of(env: &Env, image: &Path) -> PathBuf {
    let table = run_tool(env.path(), "sfdisk", &["-d", image.to_str().unwrap()]).ok();
    let line = table
        .stdout
        .lines()
        .find(|l| l.contains("C12A7328"))
        .unwrap_or_else(|| panic!("no ESP: {table}"));
    let field = |name: &str| -> u64 {
        let v = line.split(&format!("{name}=")).nth(1).unwrap();
        v.split(',').next().unwrap().trim().parse().unwrap()
    };
    let esp = env.path().join(format!(
        "{}.esp",
        image.file_name().unwrap().to_string_lossy()
    ));
    run_tool(
        env.path(),
        "dd",
        &[
            &format!("if={}", image.display()),
            &format!("of={}", esp.display()),
            "bs=512",
            &format!("skip={}", field("start")),
            &format!("count={}", field("size")),
            "status=none",
        ],
    )
    .ok();
    esp
}

/// Copies `path` out of a FAT image with mtools.
fn mcopy_out(env: &Env, fat: &Path, path: &str, to: &Path) {
    run_tool(
        env.path(),
        "mcopy",
        &[
            "-n",
            "-i",
            fat.to_str().unwrap(),
            &format!("::{path}"),
            to.to_str().unwrap(),
        ],
    )
    .ok();
}

#[test]
fn a_signed_iso_boots_as_cd_and_disk_under_secure_boot_and_the_unsigned_one_is_refused() {
    let env = Env::secure_boot();
    let (_, cert) = snakeoil(&env);
    let signed = ipxe_profile(
        &env,
        "sb",
        &sb_block("snakeoil.key", "snakeoil.crt", "none"),
    );
    let unsigned = ipxe_profile(&env, "plain", "");
    let server = HttpServer::start("#!ipxe\necho bootforge-test: script served\npoweroff\n");
    let url = server.guest_url(SB_QUERY);

    let report = package(&env, "iso", &signed, &url);
    let iso = env.path().join("out/bootforge.iso");
    let sb = &report_manifest(&env, &report)["secure_boot"];
    assert_eq!(
        sb["cert_sha256"].as_str().unwrap(),
        sha256_hex(&cert_der(&env, &cert)),
        "the manifest names the cert"
    );
    // The ESP: a signed BOOTX64.EFI sbverify accepts, and the script beside it.
    let esp = esp_of(&env, &iso);
    let loader = env.path().join("BOOTX64.EFI");
    mcopy_out(&env, &esp, "/EFI/BOOT/BOOTX64.EFI", &loader);
    sbverify(&env, &cert, &loader);
    let autoexec = env.path().join("autoexec.ipxe");
    mcopy_out(&env, &esp, "/autoexec.ipxe", &autoexec);
    assert!(
        fs::read_to_string(&autoexec).unwrap().contains(&url),
        "autoexec.ipxe is the chain script"
    );

    let vars = Path::new(OVMF_VARS_SNAKEOIL);
    for (how, media) in [("cd", cd(&iso)), ("disk", disk(&iso))] {
        let mut args = media;
        args.extend(net(None));
        let (chained, serial) = boot_sb(&env, vars, &args, &server);
        assert!(
            chained,
            "signed ISO as {how}: no request with sb=1; requests {:?}\nserial:\n{serial}",
            server.requests()
        );
        assert!(refusal(&serial).is_none(), "{serial}");
    }
    // arm64: the ESP's signed BOOTAA64.EFI under AAVMF enforcing Secure Boot.
    let before = server.requests().len();
    let mut args = disk(&iso);
    args.extend(net(None));
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let run = secure_boot_arm64(Path::new(AAVMF_VARS_SNAKEOIL), &a, env.path(), || {
        chained_under_secure_boot(&server, before)
    });
    assert!(
        server.requests()[before..]
            .iter()
            .any(|r| says_secure_boot(r) && r.ends_with("arch=arm64")),
        "signed arm64 iPXE: no request; requests {:?}\nserial:\n{}",
        server.requests(),
        run.serial
    );

    package(&env, "iso", &unsigned, &url);
    let mut args = cd(&iso);
    args.extend(net(None));
    let (chained, serial) = boot_sb(&env, vars, &args, &server);
    assert!(
        !chained,
        "the unsigned ISO ran under Secure Boot:\n{serial}"
    );
    assert!(
        refusal(&serial).is_some(),
        "no refusal on the serial log:\n{serial}"
    );
}

fn report_manifest(env: &Env, report: &serde_json::Value) -> serde_json::Value {
    let outer: serde_json::Value =
        serde_json::from_slice(&env.blob(report["manifest"].as_str().unwrap())).unwrap();
    outer["manifest"].clone()
}

fn cert_der(env: &Env, cert: &Path) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(cert)
        .current_dir(env.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn keygen_keys_sign_a_usb_image_and_a_pxe_bundle_that_boot_with_its_ovmf_vars() {
    let env = Env::secure_boot();
    let keys = keygen_lab(&env);
    let cert = keys.join("lab-db.crt");
    let vars = keys.join("lab-OVMF_VARS.fd");
    // keygen never overwrites.
    env.run(&["keygen", "--secure-boot", "keys/lab"])
        .fails()
        .says(&["lab-db.key exists", "never overwrites"]);

    // USB disk: GRUB's network image, patched with the chain config, then signed.
    env.grubnet_recipe();
    crate::common::media::grubpc_recipe(&env);
    env.deb_recipe("deb-ipxe", "ipxe", &["boot/ipxe.lkrn"]);
    let usb = write_profile(
        &env,
        "usb-sb",
        &format!(
            "loaders:\n  bios: ipxe\n  uefi-x64: grub\n  uefi-arm64: none\nrecipes:\n  grub: ../grubnet.yaml\n\
             files:\n  ipxe.lkrn: ../deb-ipxe.yaml:boot/ipxe.lkrn\n\
             \x20 grub-boot.img: ../grubpc.yaml:usr/lib/grub/i386-pc/boot.img\n\
             \x20 grub-core-usb.img: ../grubpc.yaml:images/core-usb-i386-pc.img\n{}",
            sb_block("lab-db.key", "lab-db.crt", "none")
        ),
    );
    let server = HttpServer::start_with(|path| {
        if path.starts_with("/grub.cfg") {
            "echo bootforge-test: grub config served\nhalt\n".into()
        } else {
            "#!ipxe\necho bootforge-test: script served\npoweroff\n".into()
        }
    });
    let grub_url = server.guest_url("grub.cfg");
    package(&env, "usb-img", &usb, &grub_url);
    let img = env.path().join("out/bootforge-usb.img");
    let grub_asked = |since: usize| {
        server.requests()[since..]
            .iter()
            .any(|r| r.starts_with("/grub.cfg?mac=52:54:00:12:34:56"))
    };
    let before = server.requests().len();
    let mut args: Vec<String> = disk(&img);
    args.extend(net(None));
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let run = secure_boot(&vars, &a, env.path(), || grub_asked(before));
    assert!(
        grub_asked(before),
        "signed GRUB did not chain under Secure Boot; requests {:?}\nserial:\n{}",
        server.requests(),
        run.serial
    );

    // A new chain URL: embed, package; the newly signed medium asks for the new one, and
    // nothing was built.
    let embedded = env
        .run(&[
            "--json",
            "embed",
            env.recipes_dir().join("grubnet.yaml").to_str().unwrap(),
            "--set",
            &format!("chain_url={}", server.guest_url("grub.cfg/v2")),
        ])
        .ok()
        .json();
    assert_eq!(embedded["containers_started"], 0, "{embedded}");
    let second = package(&env, "usb-img", &usb, &server.guest_url("grub.cfg/v2"));
    assert_eq!(second["containers_started"], 0, "{second}");
    let before = server.requests().len();
    let asked_v2 = || {
        server.requests()[before..]
            .iter()
            .any(|r| r.starts_with("/grub.cfg/v2?mac="))
    };
    let run = secure_boot(&vars, &a, env.path(), asked_v2);
    assert!(asked_v2(), "new URL not requested:\n{}", run.serial);

    // PXE bundle: trixie's iPXE, signed; its script as autoexec.ipxe in the TFTP root.
    let pxe = ipxe_profile(
        &env,
        "pxe-sb",
        &sb_block("lab-db.key", "lab-db.crt", "none"),
    );
    package(&env, "pxe-bundle", &pxe, &server.guest_url(SB_QUERY));
    let root = env.path().join("tftp");
    fs::create_dir(&root).unwrap();
    run_tool(
        &root,
        "tar",
        &[
            "-xzf",
            env.path().join("out/pxe-bundle.tar.gz").to_str().unwrap(),
        ],
    )
    .ok();
    for f in ["ipxe.efi", "snponly.efi"] {
        sbverify(&env, &cert, &root.join(f));
    }
    assert!(root.join("autoexec.ipxe").is_file());
    let (chained, serial) = boot_sb(&env, &vars, &net(Some((&root, "ipxe.efi"))), &server);
    assert!(
        chained,
        "signed PXE iPXE: no request with sb=1; requests {:?}\nserial:\n{serial}",
        server.requests()
    );

    // One byte changed after signing: refused, nothing requested.
    let efi = root.join("ipxe.efi");
    let mut bytes = fs::read(&efi).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    fs::write(&efi, bytes).unwrap();
    let (chained, serial) = boot_sb(&env, &vars, &net(Some((&root, "ipxe.efi"))), &server);
    assert!(!chained, "a tampered iPXE ran:\n{serial}");
    assert!(refusal(&serial).is_some(), "no refusal:\n{serial}");
}

#[test]
fn shim_chains_to_our_ipxe_once_the_cert_is_in_mok() {
    let env = Env::secure_boot();
    let (_, cert) = snakeoil(&env);
    let shim_files = shim_recipes(&env);
    let files = debian_loaders(&env);
    let profile = write_profile(
        &env,
        "shim",
        &format!(
            "loaders:\n  bios: ipxe\n  uefi-x64: ipxe\n  uefi-arm64: none\n{files}{shim_files}{}",
            sb_block("snakeoil.key", "snakeoil.crt", "debian")
        ),
    );
    let server = HttpServer::start("#!ipxe\necho bootforge-test: script served\npoweroff\n");
    package(&env, "iso", &profile, &server.guest_url(SB_QUERY));
    let iso = env.path().join("out/bootforge.iso");
    let esp = esp_of(&env, &iso);
    let listing = run_tool(
        env.path(),
        "mdir",
        &["-/", "-b", "-i", esp.to_str().unwrap(), "::"],
    )
    .ok();
    for f in ["BOOTX64.EFI", "grubx64.efi", "mmx64.efi"] {
        assert!(
            listing.stdout.contains(&format!("::/EFI/BOOT/{f}")),
            "{f} missing:\n{listing}"
        );
    }
    let shim = env.path().join("shim.efi");
    mcopy_out(&env, &esp, "/EFI/BOOT/BOOTX64.EFI", &shim);
    let debian_shim = env.path().join("shimx64.efi.signed");
    let extracted = unpack_deb(&env, "shim-signed", "shim-deb");
    fs::copy(
        extracted.join("usr/lib/shim/shimx64.efi.signed"),
        &debian_shim,
    )
    .unwrap();
    assert_eq!(
        fs::read(&shim).unwrap(),
        fs::read(&debian_shim).unwrap(),
        "shim goes in as Debian signed it"
    );

    let mut args = cd(&iso);
    args.extend(net(None));
    // Microsoft's keys only: shim starts (Microsoft signed it) and refuses our iPXE.
    let (chained, serial) = boot_sb(&env, Path::new(OVMF_VARS_MS), &args, &server);
    assert!(!chained, "our iPXE ran without being trusted:\n{serial}");
    assert!(
        refusal(&serial).is_some(),
        "shim did not refuse our iPXE:\n{serial}"
    );

    // Our cert in shim's MOK list, as `mokutil --import` leaves it: it chains.
    let mok = env.path().join("ms-mok.fd");
    run_tool(
        env.path(),
        "virt-fw-vars",
        &[
            "--input",
            OVMF_VARS_MS,
            "--output",
            mok.to_str().unwrap(),
            "--add-mok",
            "605dab50-e046-4300-abb6-3dd810dd8b23",
            cert.to_str().unwrap(),
        ],
    )
    .ok();
    let (chained, serial) = boot_sb(&env, &mok, &args, &server);
    assert!(
        chained,
        "shim did not chain to our iPXE with the cert in MOK; requests {:?}\nserial:\n{serial}",
        server.requests()
    );
}

/// `package --target TARGET` with the key in `BOOTFORGE_SB_KEY` when `env_key` is given;
/// returns the medium's digest.
fn package_sha(env: &Env, profile: &str, target: &str, env_key: Option<&str>) -> String {
    let mut cmd = env.cmd();
    if let Some(k) = env_key {
        cmd.env("BOOTFORGE_SB_KEY", k);
    }
    let run: Run = cmd
        .args([
            "--json",
            "package",
            "--target",
            target,
            "--profile",
            profile,
        ])
        .args(["--set", "chain_url=http://boot.example/boot.ipxe"])
        .output()
        .unwrap()
        .into();
    run.ok().json()["sha256"].as_str().unwrap().to_owned()
}

#[test]
fn signed_media_are_the_same_bytes_every_time_and_the_key_stays_out_of_the_store() {
    let make = |with_env_key: bool| -> (Vec<String>, Env) {
        let env = Env::secure_boot();
        let (key, _) = snakeoil(&env);
        let key_text = fs::read_to_string(&key).unwrap();
        // The same profile in both; in one store the key file is gone and BOOTFORGE_SB_KEY
        // holds the key, as a CI secret would.
        let profile = ipxe_profile(
            &env,
            "sb",
            &sb_block("snakeoil.key", "snakeoil.crt", "none"),
        );
        // A USB disk (GRUB's BIOS images from Debian) and a Raspberry Pi image (stand-in
        // firmware) with the same signed loaders.
        crate::common::media::grubpc_recipe(&env);
        let usb = ipxe_profile(
            &env,
            "usb-sb",
            &format!(
                "\x20 grub-boot.img: ../grubpc.yaml:usr/lib/grub/i386-pc/boot.img\n\
                 \x20 grub-core-usb.img: ../grubpc.yaml:images/core-usb-i386-pc.img\n{}",
                sb_block("snakeoil.key", "snakeoil.crt", "none")
            ),
        );
        crate::common::media::rpi_profile(&env);
        let rpi = write_profile(
            &env,
            "rpi-sb",
            &format!(
                "loaders:\n  bios: none\n  uefi-x64: none\n  uefi-arm64: ipxe\n\
                 recipes:\n  rpi-firmware: ../rpi-firmware.yaml\n\
                 files:\n  snp-arm64.efi: ../deb-ipxe-efi.yaml:usr/lib/ipxe/ipxe-arm64.efi\n{}",
                sb_block("snakeoil.key", "snakeoil.crt", "none")
            ),
        );
        if with_env_key {
            fs::remove_file(&key).unwrap();
        }
        let env_key = with_env_key.then_some(key_text.as_str());
        let shas = [
            (&profile, "pxe-bundle"),
            (&profile, "iso"),
            (&usb, "usb-img"),
            (&rpi, "rpi-img"),
        ]
        .iter()
        .map(|(p, t)| package_sha(&env, p, t, env_key))
        .collect();
        (shas, env)
    };
    let (a, env_a) = make(false);
    let (b, env_b) = make(true);
    assert_eq!(
        a, b,
        "signed media differ between two stores (pxe-bundle, iso, usb-img, rpi-img)"
    );

    // The key's body appears nowhere in either store (blobs, entries, logs).
    let key = fs::read_to_string(env_a.path().join("keys/snakeoil.key")).unwrap();
    // sbverify accepts the signed loaders of the bundle.
    let bundle = env_a.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    let blob = env_a
        .store()
        .join("blobs/sha256")
        .join(a[0].trim_start_matches("sha256:"));
    run_tool(&bundle, "tar", &["-xzf", blob.to_str().unwrap()]).ok();
    for f in ["ipxe.efi", "snponly.efi", "arm64/snp.efi"] {
        sbverify(
            &env_a,
            &env_a.path().join("keys/snakeoil.crt"),
            &bundle.join(f),
        );
    }
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let probe = &body[40..100];
    for env in [&env_a, &env_b] {
        let grep = std::process::Command::new("grep")
            .args(["-rlF", probe])
            .arg(env.store())
            .output()
            .unwrap();
        assert!(
            grep.stdout.is_empty(),
            "the key is in the store: {}",
            String::from_utf8_lossy(&grep.stdout)
        );
        env.assert_store_intact();
    }
}

#[test]
fn bad_secure_boot_keys_and_certs_are_refused_naming_the_file() {
    let env = Env::secure_boot();
    let (key, _) = snakeoil(&env);
    let keys = env.path().join("keys");
    let openssl = |args: &[&str]| run_tool(&keys, "openssl", args).ok();
    // Another key (its cert does not match the snakeoil key), an expired cert, a TLS
    // server cert.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
        "-days",
        "30",
        "-subj",
        "/CN=other",
    ]);
    run_tool(
        &keys,
        "faketime",
        &[
            "2020-01-01 00:00:00",
            "openssl",
            "req",
            "-x509",
            "-key",
            "other.key",
            "-out",
            "expired.crt",
            "-days",
            "10",
            "-subj",
            "/CN=expired",
        ],
    )
    .ok();
    openssl(&[
        "req",
        "-x509",
        "-key",
        "other.key",
        "-out",
        "server.crt",
        "-days",
        "30",
        "-subj",
        "/CN=server",
        "-addext",
        "extendedKeyUsage=serverAuth",
    ]);
    let files = debian_loaders(&env);
    // A pxe-bundle of x86_64 UEFI iPXE from `files` and `block`: it must fail.
    let try_profile = |name: &str, files: &str, block: &str| -> Run {
        let p = write_profile(
            &env,
            name,
            &format!(
                "loaders:\n  bios: none\n  uefi-x64: ipxe\n  uefi-arm64: none\n{files}{block}"
            ),
        );
        env.run(&[
            "package",
            "--target",
            "pxe-bundle",
            "--profile",
            &p,
            "--set",
            "chain_url=http://x/",
        ])
        .fails()
    };
    let blobs_before = env.blob_count();
    try_profile(
        "mismatch",
        &files,
        &sb_block("snakeoil.key", "other.crt", "none"),
    )
    .says(&["keys/snakeoil.key is not the key of", "keys/other.crt"]);
    try_profile(
        "expired",
        &files,
        &sb_block("other.key", "expired.crt", "none"),
    )
    .says(&["keys/expired.crt", "expired on"]);
    try_profile(
        "server",
        &files,
        &sb_block("other.key", "server.crt", "none"),
    )
    .says(&["keys/server.crt", "does not include code signing"]);
    try_profile(
        "missing",
        &files,
        &sb_block("absent.key", "other.crt", "none"),
    )
    .says(&["media/missing.yaml:", "secure_boot.key", "keys/absent.key"]);
    try_profile(
        "nokey",
        &files,
        "secure_boot:\n  cert: ../../keys/other.crt\n",
    )
    .says(&["secure_boot.key", "BOOTFORGE_SB_KEY"]);
    assert_eq!(env.blob_count(), blobs_before, "nothing stored on the way");

    // A binary someone else signed already: refused, named.
    let signed_elsewhere = env.path().join("signed-elsewhere.efi");
    let extracted = unpack_deb(&env, "ipxe-trixie", "ipxe-deb");
    run_tool(
        env.path(),
        "sbsign",
        &[
            "--key",
            key.to_str().unwrap(),
            "--cert",
            "/usr/share/ovmf/PkKek-1-snakeoil.pem",
            "--output",
            signed_elsewhere.to_str().unwrap(),
            extracted
                .join("usr/lib/ipxe/ipxe-amd64.efi")
                .to_str()
                .unwrap(),
        ],
    )
    .ok();
    let tarball = env.path().join("signed.tar.gz");
    run_tool(
        env.path(),
        "tar",
        &[
            "--mtime=@0",
            "-czf",
            tarball.to_str().unwrap(),
            "signed-elsewhere.efi",
        ],
    )
    .ok();
    let sha = env.import(&tarball);
    env.write_recipe(
        "signed-elsewhere",
        &format!(
            "source:\n  url: https://example.invalid/signed.tar.gz\n  sha256: {sha}\n\
             epoch: 1700000000\nsteps: []\noutputs: [signed-elsewhere.efi]\n"
        ),
    );
    try_profile(
        "theirs",
        "files:\n  ipxe.efi: ../signed-elsewhere.yaml:signed-elsewhere.efi\n\
         \x20 snponly.efi: ../deb-ipxe-efi.yaml:usr/lib/ipxe/snponly.efi\n",
        &sb_block("other.key", "other.crt", "none"),
    )
    .says(&["`ipxe.efi` is already signed, by another key"]);
}
