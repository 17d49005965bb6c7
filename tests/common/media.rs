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

pub fn package(env: &Env, target: &str, profile: &str, url: &str) -> serde_json::Value {
    env.run(&[
        "--json",
        "package",
        "--target",
        target,
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
