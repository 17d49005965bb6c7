//! Assembling a medium's files: which loaders go where for each target, the scripts and
//! configs rendered for them, and what a disk needs besides its files.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use super::bundle::Entry;
use super::fat::FatFile;
use super::inputs::{InputFile, Inputs};
use super::media::Target;
use super::profile::{LoadedProfile, Loader};
use super::template;
use crate::store::Store;

/// A medium's files before assembly.
pub struct Layout {
    pub entries: Vec<Entry>,
}

impl Layout {
    pub fn add(&mut self, path: &str, f: &InputFile) {
        self.entries.push(Entry {
            path: path.to_owned(),
            blob: f.blob,
            size: f.size,
            mode: 0o644,
        });
    }

    pub fn add_bytes(&mut self, store: &Store, path: &str, bytes: &[u8]) -> Result<()> {
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
    pub fn files(&self, store: &Store, manifest: &[u8]) -> Result<Vec<FatFile>> {
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

    pub fn has(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.path == path)
    }
}

/// A medium assembled, with what writing it needs beyond its files.
pub enum Medium {
    PxeBundle,
    Iso(DiskParts),
    UsbImg(DiskParts),
    RpiImg,
}

/// What an ISO or USB disk needs besides its files.
pub struct DiskParts {
    pub esp_files: Vec<FatFile>,
    /// The isohdpfx MBR code for the ISO; GRUB's boot.img for the USB disk.
    pub mbr_code: Vec<u8>,
    /// GRUB's i386-pc core image (USB disk only).
    pub core_img: Vec<u8>,
}

/// What every medium's assembly works with.
pub struct Assembly<'a, 'i> {
    pub inputs: &'a mut Inputs<'i>,
    pub layout: &'a mut Layout,
    pub profile: &'a LoadedProfile,
    pub vars: &'a BTreeMap<String, String>,
    pub store: &'a Store,
}

impl Assembly<'_, '_> {
    /// The scripts every medium carries, then the target's own files.
    pub fn assemble(&mut self, target: Target) -> Result<Medium> {
        self.scripts()?;
        Ok(match target {
            Target::PxeBundle => self.pxe_bundle().map(|()| Medium::PxeBundle)?,
            Target::Iso => Medium::Iso(self.iso()?),
            Target::UsbImg => Medium::UsbImg(self.usb()?),
            Target::RpiImg => self.rpi().map(|()| Medium::RpiImg)?,
        })
    }

    /// The iPXE script (rendered also when the loader cannot be patched: it is then handed
    /// to iPXE at boot instead) and GRUB's early config.
    fn scripts(&mut self) -> Result<()> {
        let loaders = &self.profile.profile.loaders;
        if [loaders.bios, loaders.uefi_x64, loaders.uefi_arm64].contains(&Loader::Ipxe) {
            let script = template::render(&self.profile.template("chain.ipxe.j2"), self.vars)?;
            self.layout
                .add_bytes(self.store, "chain.ipxe", script.as_bytes())?;
        }
        if loaders.uefi_x64 == Loader::Grub {
            let script = template::render(&self.profile.template("grub.cfg.j2"), self.vars)?;
            self.layout
                .add_bytes(self.store, "grub-early.cfg", script.as_bytes())?;
        }
        Ok(())
    }

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
