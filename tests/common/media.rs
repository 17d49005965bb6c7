//! Media helpers shared by the packaging and publishing tests.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{Env, Run, root};

/// Writes a media profile into the test's recipes directory, using the repository's
/// templates, and returns its path.
pub fn write_profile(env: &Env, name: &str, body: &str) -> String {
    let media = env.recipes_dir().join("media");
    fs::create_dir_all(&media).unwrap();
    let path = media.join(format!("{name}.yaml"));
    fs::write(
        &path,
        format!("{body}templates: {}/embed\n", root().display()),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// Runs `args` (an `embed` or `package` command) with `--set chain_url=URL -o out` and
/// `--json`; it must succeed.
pub fn chained(env: &Env, args: &[&str], url: &str) -> serde_json::Value {
    let set = format!("chain_url={url}");
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--set", &set, "-o", "out"]);
    env.run(&all).ok().json()
}

pub fn package(env: &Env, target: &str, profile: &str, url: &str) -> serde_json::Value {
    chained(
        env,
        &["package", "--target", target, "--profile", profile],
        url,
    )
}

/// `out/pxe-bundle.tar.gz` unpacked into `dir` (made if missing) under the test's directory.
pub fn unpack_bundle(env: &Env, dir: &str) -> std::path::PathBuf {
    let unpacked = env.path().join(dir);
    fs::create_dir_all(&unpacked).unwrap();
    let bundle = env.path().join("out/pxe-bundle.tar.gz");
    run_tool(&unpacked, "tar", &["-xzf", bundle.to_str().unwrap()]).ok();
    unpacked
}

pub fn run_tool(dir: &Path, program: &str, args: &[&str]) -> Run {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
        .into()
}

/// A profile for a Raspberry Pi image from stand-in firmware files (the real UEFI firmware
/// cannot be downloaded here) and a stand-in arm64 loader (no arm64 EFI binary exists among
/// the packages a CI machine can install).
pub fn rpi_profile(env: &Env) -> String {
    let stage = env.path().join("firmware-stage/RPi4_UEFI_Firmware");
    fs::create_dir_all(stage.join("overlays")).unwrap();
    for (name, body) in [
        ("RPI_EFI.fd", "stand-in UEFI firmware"),
        ("start4.elf", "stand-in VideoCore firmware"),
        ("fixup4.dat", "stand-in fixup"),
        ("bcm2711-rpi-4-b.dtb", "stand-in dtb 4b"),
        ("bcm2711-rpi-400.dtb", "stand-in dtb 400"),
        ("bcm2711-rpi-cm4.dtb", "stand-in dtb cm4"),
        ("overlays/upstream-pi4.dtbo", "stand-in overlay"),
        ("overlays/miniuart-bt.dtbo", "stand-in overlay"),
        (
            "config.txt",
            "# the firmware's own config.txt, replaced by bootforge's\n",
        ),
        ("BOOTAA64.EFI", "MZ stand-in arm64 loader"),
    ] {
        fs::write(stage.join(name), body).unwrap();
    }
    let tarball = env.path().join("firmware.tar.gz");
    run_tool(
        stage.parent().unwrap(),
        "tar",
        &[
            "--sort=name",
            "--mtime=@0",
            "-czf",
            tarball.to_str().unwrap(),
            "RPi4_UEFI_Firmware",
        ],
    )
    .ok();
    let sha = env.import(&tarball);
    env.write_recipe(
        "rpi-firmware",
        &format!(
            "source:\n  url: https://firmware.example.invalid/RPi4_UEFI_Firmware.tar.gz\n  sha256: {sha}\n  strip_components: 1\n\
             epoch: 1700000000\nsteps: []\n\
             outputs: [RPI_EFI.fd, start4.elf, fixup4.dat, bcm2711-rpi-4-b.dtb, bcm2711-rpi-400.dtb,\n\
             \x20 bcm2711-rpi-cm4.dtb, overlays/upstream-pi4.dtbo, overlays/miniuart-bt.dtbo, config.txt, BOOTAA64.EFI]\n"
        ),
    );
    write_profile(
        env,
        "rpi",
        "loaders:\n  bios: none\n  uefi-x64: none\n  uefi-arm64: ipxe\nrecipes:\n  rpi-firmware: ../rpi-firmware.yaml\n\
         files:\n  snp-arm64.efi: ../rpi-firmware.yaml:BOOTAA64.EFI\n",
    )
}

/// A profile booting x86_64 UEFI with the GRUB network image of `grubnet_recipe`.
pub fn grub_profile(env: &Env) -> String {
    env.grubnet_recipe();
    write_profile(env, "grub", GRUB_PROFILE)
}

/// The body of `grub_profile`'s profile.
pub const GRUB_PROFILE: &str = "description: x86_64 UEFI through GRUB\nloaders:\n  bios: none\n  \
    uefi-x64: grub\n  uefi-arm64: none\nrecipes:\n  grub: ../grubnet.yaml\n";

/// Recipes `deb-isolinux` (isolinux.bin, isohdpfx.bin) and `deb-syslinux-common`
/// (ldlinux.c32) from Debian's packages, for an ISO's BIOS path.
pub fn isolinux_recipes(env: &Env) {
    env.deb_recipe(
        "deb-isolinux",
        "isolinux",
        &[
            "usr/lib/ISOLINUX/isolinux.bin",
            "usr/lib/ISOLINUX/isohdpfx.bin",
        ],
    );
    env.deb_recipe(
        "deb-syslinux-common",
        "syslinux-common",
        &["usr/lib/syslinux/modules/bios/ldlinux.c32"],
    );
}

/// Unpacks the downloaded .deb of `package` into `dir` (under the test's directory).
pub fn unpack_deb(env: &Env, package: &str, dir: &str) -> std::path::PathBuf {
    let to = env.path().join(dir);
    run_tool(
        env.path(),
        "dpkg-deb",
        &[
            "-x",
            super::deb(package).to_str().unwrap(),
            to.to_str().unwrap(),
        ],
    )
    .ok();
    to
}

/// A profile for a hybrid ISO from Debian's ISOLINUX and iPXE (which gets the script as an
/// initrd) for BIOS, and the patched GRUB network image for x86_64 UEFI.
pub fn iso_profile(env: &Env) -> String {
    env.grubnet_recipe();
    isolinux_recipes(env);
    env.deb_recipe("deb-ipxe", "ipxe", &["boot/ipxe.lkrn"]);
    write_profile(
        env,
        "iso",
        "loaders:\n  bios: ipxe\n  uefi-x64: grub\n  uefi-arm64: none\nrecipes:\n  grub: ../grubnet.yaml\n\
         files:\n  isolinux.bin: ../deb-isolinux.yaml:usr/lib/ISOLINUX/isolinux.bin\n\
         \x20 isohdpfx.bin: ../deb-isolinux.yaml:usr/lib/ISOLINUX/isohdpfx.bin\n\
         \x20 ldlinux.c32: ../deb-syslinux-common.yaml:usr/lib/syslinux/modules/bios/ldlinux.c32\n\
         \x20 ipxe.lkrn: ../deb-ipxe.yaml:boot/ipxe.lkrn\n",
    )
}

/// GRUB's BIOS images from Debian's grub-pc-bin: a core image for the USB disk's BIOS boot
/// partition, a PXE image, and boot.img as it is.
pub fn grubpc_recipe(env: &Env) {
    let sha = env.import(&super::deb("grub-pc-bin"));
    let mkimage = |prefix: &str, out: &str, modules: &str| {
        format!(
            "  - run: [grub-mkimage, -d, usr/lib/grub/i386-pc, -O, i386-pc, -p, \"{prefix}\", -o, {out}, {modules}]\n"
        )
    };
    env.write_recipe(
        "grubpc",
        &format!(
            "source:\n  url: https://debian.example.invalid/grub-pc-bin.deb\n  sha256: {sha}\n\
             epoch: 1700000000\ntoolchain: test\nsteps:\n  - run: [mkdir, images]\n{}\
             \x20 - run: [grub-mkimage, -d, usr/lib/grub/i386-pc, -O, i386-pc-pxe, -p, \"(tftp)/boot/grub\",\n\
             \x20         -o, images/grub-pxe.0, pxe, tftp, http, net, normal, configfile, echo, test,\n\
             \x20         sleep, halt, reboot]\n\
             outputs: [images/core-usb-i386-pc.img, images/grub-pxe.0, usr/lib/grub/i386-pc/boot.img]\n",
            mkimage(
                "(hd0,gpt2)/boot/grub",
                "images/core-usb-i386-pc.img",
                "biosdisk, part_gpt, fat, normal, configfile, linux16, echo, test, serial, terminal"
            ),
        ),
    );
}

/// A profile for a USB disk from Debian's GRUB (i386-pc core for BIOS, the patched EFI network
/// image for UEFI) and iPXE (the script as an initrd).
pub fn usb_profile(env: &Env) -> String {
    env.grubnet_recipe();
    env.deb_recipe("deb-ipxe", "ipxe", &["boot/ipxe.lkrn"]);
    grubpc_recipe(env);
    write_profile(
        env,
        "usb",
        "loaders:\n  bios: ipxe\n  uefi-x64: grub\n  uefi-arm64: none\nrecipes:\n  grub: ../grubnet.yaml\n\
         files:\n  ipxe.lkrn: ../deb-ipxe.yaml:boot/ipxe.lkrn\n\
         \x20 grub-boot.img: ../grubpc.yaml:usr/lib/grub/i386-pc/boot.img\n\
         \x20 grub-core-usb.img: ../grubpc.yaml:images/core-usb-i386-pc.img\n",
    )
}
