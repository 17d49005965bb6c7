//! `bootforge package`: assembling media from build outputs and rendered scripts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::bundle::{self, Entry};
use super::fat::{FatFile, FatSpec, fat_image};
use super::inputs::{Input, InputFile, Inputs};
use super::iso::{IsoSpec, write_iso};
use super::profile::{LoadedProfile, Loader};
use super::rpi::write_rpi_img;
use super::template;
use super::usb::{UsbSpec, write_usb_img};
use crate::base::Digest;
use crate::build::Settings;
use crate::store::{Produced, ProducedFile, Store, Stored};

/// Bumped when the layout or encoding of a medium changes.
const PACKAGE_SCHEMA: u32 = 1;

/// The media `package` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// A hybrid BIOS+UEFI ISO, also dd-able to a USB stick.
    Iso,
    /// A Raspberry Pi 4 SD card image: UEFI firmware and arm64 iPXE.
    RpiImg,
    /// A GPT disk image for USB sticks and BMC virtual media: ESP for UEFI, GRUB for BIOS.
    UsbImg,
    /// A .tar.gz for a TFTP/HTTP boot server: loaders, script, DHCP snippets, checksums.
    PxeBundle,
}

impl Target {
    fn file_name(self) -> &'static str {
        match self {
            Target::Iso => "bootforge.iso",
            Target::RpiImg => "bootforge-rpi4.img",
            Target::UsbImg => "bootforge-usb.img",
            Target::PxeBundle => "pxe-bundle.tar.gz",
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            Target::Iso => "application/vnd.efi.iso",
            Target::RpiImg | Target::UsbImg => "application/vnd.efi.img",
            Target::PxeBundle => "application/gzip",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target::Iso => "iso",
            Target::RpiImg => "rpi-img",
            Target::UsbImg => "usb-img",
            Target::PxeBundle => "pxe-bundle",
        }
    }
}

/// A file inside a medium.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Content {
    pub path: String,
    pub sha256: Digest,
    pub size: u64,
}

/// The package manifest (stored as a blob; a medium that can hold files holds a copy).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub target: Target,
    pub profile: String,
    pub profile_sha256: String,
    pub vars: BTreeMap<String, String>,
    pub source_date_epoch: i64,
    pub inputs: Vec<Input>,
    pub contents: Vec<Content>,
    pub bootforge_version: String,
}

/// The result of `bootforge package`, also recorded as `actions/<key>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageReport {
    pub kind: String,
    pub key: String,
    pub target: Target,
    pub name: String,
    pub sha256: Digest,
    pub size: u64,
    pub media_type: String,
    /// The package manifest blob.
    pub manifest: Digest,
    pub contents: Vec<Content>,
    #[serde(skip_deserializing)]
    pub cached: bool,
    /// Containers the builds and embeds it needed started; 0 when all were cached.
    #[serde(skip_deserializing)]
    pub containers_started: u32,
}

/// A medium's files before assembly.
struct Layout {
    entries: Vec<Entry>,
}

impl Layout {
    fn add(&mut self, path: &str, f: &InputFile) {
        self.entries.push(Entry {
            path: path.to_owned(),
            blob: f.blob,
            size: f.size,
            mode: 0o644,
        });
    }

    fn add_bytes(&mut self, store: &Store, path: &str, bytes: &[u8]) -> Result<()> {
        let s = store.put_bytes(bytes)?;
        self.entries.push(Entry {
            path: path.to_owned(),
            blob: s.digest,
            size: s.size,
            mode: 0o644,
        });
        Ok(())
    }

    /// The files' bytes, plus the manifest, for media written in one go (ISO, FAT).
    fn files(&self, store: &Store, manifest: &[u8]) -> Result<Vec<FatFile>> {
        let mut files = Vec::new();
        for e in &self.entries {
            files.push(FatFile {
                path: e.path.clone(),
                data: store.read_blob(&e.blob)?,
            });
        }
        files.push(FatFile {
            path: "manifest.json".into(),
            data: manifest.to_vec(),
        });
        Ok(files)
    }

    fn has(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.path == path)
    }
}

/// Makes `target` from the profile's loaders, building and embedding as needed.
pub fn package(
    settings: &Settings,
    recipes_dir: &Path,
    profile: &LoadedProfile,
    target: Target,
    sets: &[(String, String)],
) -> Result<PackageReport> {
    let mut vars = profile.profile.vars.clone();
    if matches!(target, Target::Iso | Target::UsbImg) {
        // GRUB booted from a disc has no default network interface: name the first card,
        // so its requests carry the MAC (embed/grub.cfg.j2).
        vars.insert("net_interface".into(), "efinet0".into());
    }
    vars.extend(sets.iter().cloned());
    let loaders = &profile.profile.loaders;
    let where_ = profile.path.display();
    if loaders.bios == Loader::Grub && target != Target::PxeBundle {
        bail!(
            "{where_}: loaders.bios: grub chains over the network, so it is for pxe-bundle; {} \
             boots BIOS through iPXE",
            target.name()
        );
    }
    if matches!(loaders.uefi_arm64, Loader::Grub | Loader::Syslinux) {
        bail!("{where_}: loaders.uefi-arm64: only ipxe or none");
    }
    if loaders.uefi_x64 == Loader::Syslinux {
        bail!("{where_}: loaders.uefi-x64: ipxe, grub or none (SYSLINUX is used for BIOS)");
    }
    if loaders.bios == Loader::Syslinux && target != Target::PxeBundle {
        bail!(
            "{where_}: loaders.bios: syslinux chains over the network, so it is for pxe-bundle;              {} boots BIOS through iPXE",
            target.name()
        );
    }
    if [loaders.bios, loaders.uefi_x64, loaders.uefi_arm64] == [Loader::None; 3] {
        bail!("{where_}: every loader is `none`: nothing to package");
    }
    let store = &settings.store;
    // Held until the entry naming the medium is written, so `cache gc` cannot take the
    // blobs stored on the way.
    let _store_lock = store.lock_shared()?;
    let mut inputs = Inputs::new(settings, recipes_dir, profile, &vars);
    let mut layout = Layout {
        entries: Vec::new(),
    };

    // The iPXE script, rendered from the template also when the loader cannot be patched
    // (then it is handed to iPXE at boot instead).
    let ipxe_wanted = [loaders.bios, loaders.uefi_x64, loaders.uefi_arm64].contains(&Loader::Ipxe);
    if ipxe_wanted {
        let script = template::render(&profile.template("chain.ipxe.j2"), &vars)?;
        layout.add_bytes(store, "chain.ipxe", script.as_bytes())?;
    }
    if loaders.uefi_x64 == Loader::Grub {
        let script = template::render(&profile.template("grub.cfg.j2"), &vars)?;
        layout.add_bytes(store, "grub-early.cfg", script.as_bytes())?;
    }

    let mut assembly = Assembly {
        inputs: &mut inputs,
        layout: &mut layout,
        profile,
        vars: &vars,
        store,
    };
    let medium = match target {
        Target::PxeBundle => assembly.pxe_bundle().map(|()| None)?,
        Target::Iso => Some(assembly.iso()?),
        Target::RpiImg => assembly.rpi().map(|()| None)?,
        Target::UsbImg => Some(assembly.usb()?),
    };

    let epoch = match profile.profile.epoch {
        Some(e) => e,
        None => inputs.epoch()?,
    };
    let mut contents: Vec<Content> = layout
        .entries
        .iter()
        .map(|e| Content {
            path: e.path.clone(),
            sha256: e.blob,
            size: e.size,
        })
        .collect();
    if let Some(iso) = &medium {
        // The ESP's files are inside the medium too, one level down.
        contents.extend(iso.esp_files.iter().map(|f| Content {
            path: format!("[esp]/{}", f.path),
            sha256: Digest::of(&f.data),
            size: f.data.len() as u64,
        }));
    }
    contents.sort_by(|a, b| a.path.cmp(&b.path));
    let profile_bytes = std::fs::read(&profile.path)?;
    let manifest = Manifest {
        schema: PACKAGE_SCHEMA,
        target,
        profile: profile
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        profile_sha256: Digest::of(&profile_bytes).hex(),
        vars: vars.clone(),
        source_date_epoch: epoch,
        inputs: inputs.used(),
        contents: contents.clone(),
        bootforge_version: env!("CARGO_PKG_VERSION").into(),
    };
    let key = Digest::of(serde_json::to_string(&manifest)?.as_bytes()).hex();
    let entry_path = format!("actions/{key}.json");
    let finished = || -> Result<Option<PackageReport>> {
        Ok(store
            .read_json::<PackageReport>(&entry_path)?
            .filter(|done| store.has_blob(&done.sha256) && store.has_blob(&done.manifest)))
    };
    let mut done = finished()?;
    let _action_lock;
    if done.is_none() {
        // One process assembles; the others wait here and take its result.
        _action_lock = store.lock_named(&format!("action-{key}"))?;
        done = finished()?;
    }
    if let Some(mut done) = done {
        done.cached = true;
        done.containers_started = inputs.containers_started;
        record_latest(store, &done, epoch)?;
        return Ok(done);
    }

    let mut manifest_json = serde_json::to_vec_pretty(&manifest)?;
    manifest_json.push(b'\n');
    let stored = match (target, medium) {
        (Target::PxeBundle, _) => {
            let mut sums = String::new();
            for c in &contents {
                sums.push_str(&format!("{}  {}\n", c.sha256.hex(), c.path));
            }
            layout.add_bytes(store, "SHA256SUMS", sums.as_bytes())?;
            layout.add_bytes(store, "manifest.json", &manifest_json)?;
            bundle::write_tar_gz(store, &layout.entries, epoch)?
        }
        (Target::Iso, Some(iso)) => {
            let files: Vec<(String, Vec<u8>)> = layout
                .files(store, &manifest_json)?
                .into_iter()
                .map(|f| (f.path, f.data))
                .collect();
            let esp = fat_image(
                &iso.esp_files,
                &FatSpec {
                    label: "BOOTFORGE".into(),
                    serial: u32::from_le_bytes(
                        Digest::of(&manifest_json).hex().as_bytes()[..4]
                            .try_into()
                            .expect("4 bytes"),
                    ),
                    mtime: epoch,
                    fat_type: None,
                    size: None,
                },
            )?;
            write_iso(
                store,
                &IsoSpec {
                    files: &files,
                    bios_image: "isolinux/isolinux.bin",
                    mbr_code: &iso.mbr_code,
                    esp,
                    volume_id: "BOOTFORGE",
                    mtime: epoch,
                },
            )?
        }
        (Target::Iso | Target::UsbImg, None) => unreachable!("iso and usb return their parts"),
        (Target::UsbImg, Some(usb)) => {
            let mut esp = layout.files(store, &manifest_json)?;
            esp.extend(usb.esp_files.iter().cloned());
            write_usb_img(
                store,
                &UsbSpec {
                    esp_files: &esp,
                    boot_img: &usb.mbr_code,
                    core_img: &usb.core_img,
                    mtime: epoch,
                },
            )?
        }
        (Target::RpiImg, _) => write_rpi_img(
            store,
            &layout.files(store, &manifest_json)?,
            "RPI-BOOT",
            epoch,
        )?,
    };
    let Stored { digest, size } = stored;
    let outer = serde_json::json!({
        "schema": PACKAGE_SCHEMA,
        "artifacts": [{
            "name": target.file_name(),
            "sha256": digest,
            "size": size,
            "media_type": target.media_type(),
        }],
        "manifest": serde_json::from_slice::<serde_json::Value>(&manifest_json)?,
    });
    let manifest_blob = store.put_bytes(&serde_json::to_vec_pretty(&outer)?)?.digest;
    let report = PackageReport {
        kind: "package".into(),
        key,
        target,
        name: target.file_name().into(),
        sha256: digest,
        size,
        media_type: target.media_type().into(),
        manifest: manifest_blob,
        contents,
        cached: false,
        containers_started: inputs.containers_started,
    };
    store.write_json(&entry_path, &report)?;
    record_latest(store, &report, epoch)?;
    Ok(report)
}

/// Notes `report` as what its target last produced, for `publish`.
fn record_latest(store: &Store, report: &PackageReport, epoch: i64) -> Result<()> {
    store.record_latest(&Produced {
        kind: "package".into(),
        name: report.target.name().into(),
        files: vec![ProducedFile {
            name: report.name.clone(),
            sha256: report.sha256,
            size: report.size,
            media_type: report.media_type.clone(),
        }],
        provenance: report.manifest,
        source_date_epoch: epoch,
    })
}

/// What an ISO or USB disk needs besides its files.
struct DiskParts {
    esp_files: Vec<FatFile>,
    /// The isohdpfx MBR code for the ISO; GRUB's boot.img for the USB disk.
    mbr_code: Vec<u8>,
    /// GRUB's i386-pc core image (USB disk only).
    core_img: Vec<u8>,
}

/// What every medium's assembly works with.
struct Assembly<'a, 'i> {
    inputs: &'a mut Inputs<'i>,
    layout: &'a mut Layout,
    profile: &'a LoadedProfile,
    vars: &'a BTreeMap<String, String>,
    store: &'a Store,
}

impl Assembly<'_, '_> {
    /// Loaders for a TFTP root, and DHCP snippets naming them.
    fn pxe_bundle(&mut self) -> Result<()> {
        let loaders = &self.profile.profile.loaders;
        let bios_file = match loaders.bios {
            Loader::Ipxe => {
                self.layout
                    .add("undionly.kpxe", &self.inputs.file("undionly.kpxe")?);
                "undionly.kpxe"
            }
            Loader::Syslinux => {
                self.layout
                    .add("lpxelinux.0", &self.inputs.file("lpxelinux.0")?);
                self.layout
                    .add("ldlinux.c32", &self.inputs.file("ldlinux.c32")?);
                let cfg = template::render(&self.profile.template("pxelinux.cfg.j2"), self.vars)?;
                self.layout
                    .add_bytes(self.store, "pxelinux.cfg/default", cfg.as_bytes())?;
                "lpxelinux.0"
            }
            Loader::Grub => {
                // GRUB's i386-pc-pxe image reads its config from the TFTP server it came
                // from: the same rendered config the EFI image embeds.
                self.layout
                    .add("grub-pxe.0", &self.inputs.file("grub-pxe.0")?);
                let cfg = template::render(&self.profile.template("grub.cfg.j2"), self.vars)?;
                self.layout
                    .add_bytes(self.store, "boot/grub/grub.cfg", cfg.as_bytes())?;
                "grub-pxe.0"
            }
            Loader::None => "",
        };
        match loaders.uefi_x64 {
            Loader::Ipxe => {
                self.layout.add("ipxe.efi", &self.inputs.file("ipxe.efi")?);
                self.layout
                    .add("snponly.efi", &self.inputs.file("snponly.efi")?);
            }
            Loader::Grub => self
                .layout
                .add("grubx64.efi", &self.inputs.file("grubx64.efi")?),
            Loader::None | Loader::Syslinux => {}
        }
        if loaders.uefi_arm64 == Loader::Ipxe {
            self.layout
                .add("arm64/snp.efi", &self.inputs.file("snp-arm64.efi")?);
        }
        let shipped = |p: &str| {
            if self.layout.has(p) {
                p.to_owned()
            } else {
                String::new()
            }
        };
        let mut dhcp_vars = self.vars.clone();
        dhcp_vars.insert("bios_file".into(), shipped(bios_file));
        let x64 = if loaders.uefi_x64 == Loader::Grub {
            "grubx64.efi"
        } else {
            "ipxe.efi"
        };
        dhcp_vars.insert("uefi_x64_file".into(), shipped(x64));
        dhcp_vars.insert("uefi_arm64_file".into(), shipped("arm64/snp.efi"));
        for (name, tmpl) in [
            ("dhcp/dnsmasq.conf", "dnsmasq.conf.j2"),
            ("dhcp/dhcpd.conf", "dhcpd.conf.j2"),
        ] {
            let text = template::render(&self.profile.template(tmpl), &dhcp_vars)?;
            self.layout.add_bytes(self.store, name, text.as_bytes())?;
        }
        Ok(())
    }

    /// The Raspberry Pi 4 UEFI firmware, config.txt and arm64 iPXE as the boot loader.
    fn rpi(&mut self) -> Result<()> {
        if self.profile.profile.loaders.uefi_arm64 != Loader::Ipxe {
            bail!(
                "{}: a Raspberry Pi image boots arm64 iPXE: loaders.uefi-arm64 must be ipxe",
                self.profile.path.display()
            );
        }
        let firmware = self.inputs.outputs_of("rpi-firmware")?;
        for (name, f) in &firmware {
            // Our config.txt replaces the firmware's.
            if name != "config.txt" {
                self.layout.add(name, f);
            }
        }
        for required in [
            "RPI_EFI.fd",
            "start4.elf",
            "fixup4.dat",
            "bcm2711-rpi-4-b.dtb",
        ] {
            if !self.layout.has(required) {
                bail!(
                    "{}: the rpi-firmware recipe has no output `{required}` (it has: {})",
                    self.profile.path.display(),
                    firmware
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let config = template::render(&self.profile.template("config.txt.j2"), self.vars)?;
        self.layout
            .add_bytes(self.store, "config.txt", config.as_bytes())?;
        self.layout
            .add("EFI/BOOT/BOOTAA64.EFI", &self.inputs.file("snp-arm64.efi")?);
        Ok(())
    }

    /// ISOLINUX and iPXE for BIOS; the ESP's loaders for UEFI.
    fn iso(&mut self) -> Result<DiskParts> {
        let loaders = &self.profile.profile.loaders;
        if loaders.bios != Loader::Ipxe {
            bail!(
                "{}: an ISO boots BIOS through ISOLINUX and iPXE: loaders.bios must be ipxe",
                self.profile.path.display()
            );
        }
        self.layout
            .add("isolinux/isolinux.bin", &self.inputs.file("isolinux.bin")?);
        self.layout
            .add("isolinux/ldlinux.c32", &self.inputs.file("ldlinux.c32")?);
        let cfg_vars = self.ipxe_lkrn()?;
        let cfg = template::render(&self.profile.template("isolinux.cfg.j2"), &cfg_vars)?;
        self.layout
            .add_bytes(self.store, "isolinux/isolinux.cfg", cfg.as_bytes())?;
        let mbr_code = self
            .store
            .read_blob(&self.inputs.file("isohdpfx.bin")?.blob)?;

        let esp_files = self.uefi_loaders("an ISO")?;
        Ok(DiskParts {
            esp_files,
            mbr_code,
            core_img: Vec::new(),
        })
    }

    /// GRUB (i386-pc, in the BIOS boot partition) and iPXE for BIOS; the loaders for UEFI;
    /// everything else on the ESP.
    fn usb(&mut self) -> Result<DiskParts> {
        if self.profile.profile.loaders.bios != Loader::Ipxe {
            bail!(
                "{}: a USB image boots BIOS through GRUB and iPXE: loaders.bios must be ipxe",
                self.profile.path.display()
            );
        }
        let cfg_vars = self.ipxe_lkrn()?;
        let cfg = template::render(&self.profile.template("usb-grub.cfg.j2"), &cfg_vars)?;
        self.layout
            .add_bytes(self.store, "boot/grub/grub.cfg", cfg.as_bytes())?;
        let boot_img = self
            .store
            .read_blob(&self.inputs.file("grub-boot.img")?.blob)?;
        let core_img = self
            .store
            .read_blob(&self.inputs.file("grub-core-usb.img")?.blob)?;
        Ok(DiskParts {
            esp_files: self.uefi_loaders("a USB image")?,
            mbr_code: boot_img,
            core_img,
        })
    }

    /// Adds `ipxe.lkrn`; returns the variables for a config that starts it, with the script
    /// as an initrd when this iPXE was not built with our placeholder.
    fn ipxe_lkrn(&mut self) -> Result<BTreeMap<String, String>> {
        let lkrn = self.inputs.file("ipxe.lkrn")?;
        self.layout.add("ipxe.lkrn", &lkrn);
        let mut vars = self.vars.clone();
        vars.insert(
            "ipxe_initrd".into(),
            if lkrn.patched { "" } else { "/chain.ipxe" }.into(),
        );
        Ok(vars)
    }

    /// `EFI/BOOT/BOOTX64.EFI` and `BOOTAA64.EFI` for the ESP, per the profile's loaders.
    fn uefi_loaders(&mut self, medium: &str) -> Result<Vec<FatFile>> {
        let loaders = &self.profile.profile.loaders;
        let mut esp_files = Vec::new();
        let x64 = match loaders.uefi_x64 {
            Loader::Ipxe => Some(self.inputs.file("ipxe.efi")?),
            Loader::Grub => Some(self.inputs.file("grubx64.efi")?),
            // Refused in `package` before assembly starts.
            Loader::None | Loader::Syslinux => None,
        };
        if let Some(f) = x64 {
            esp_files.push(FatFile {
                path: "EFI/BOOT/BOOTX64.EFI".into(),
                data: self.store.read_blob(&f.blob)?,
            });
        }
        if loaders.uefi_arm64 == Loader::Ipxe {
            let f = self.inputs.file("snp-arm64.efi")?;
            esp_files.push(FatFile {
                path: "EFI/BOOT/BOOTAA64.EFI".into(),
                data: self.store.read_blob(&f.blob)?,
            });
        }
        if esp_files.is_empty() {
            bail!(
                "{}: {medium} needs a UEFI loader (loaders.uefi-x64 or uefi-arm64)",
                self.profile.path.display()
            );
        }
        Ok(esp_files)
    }
}
