//! Assembling a medium's files: which loaders go where for each target, the scripts and
//! configs rendered for them, and what a disk needs besides its files.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use super::bundle::Entry;
use super::fat::FatFile;
use super::inputs::{InputFile, Inputs};
use super::media::Target;
use super::profile::{LoadedProfile, Loader, Shim};
use super::sign::{ToSign, has_sbat};
use super::template;
use crate::base::Digest;
use crate::store::Store;

fn entry(path: &str, f: &InputFile) -> Entry {
    Entry {
        path: path.to_owned(),
        blob: f.blob,
        size: f.size,
        mode: 0o644,
    }
}

/// Reads entries' blobs into files for a FAT image.
pub fn fat_files(store: &Store, entries: &[Entry]) -> Result<Vec<FatFile>> {
    entries
        .iter()
        .map(|e| {
            Ok(FatFile {
                path: e.path.clone(),
                data: store.read_blob(&e.blob)?,
            })
        })
        .collect()
}

/// A medium's files before assembly.
pub struct Layout {
    pub entries: Vec<Entry>,
}

impl Layout {
    pub fn add(&mut self, path: &str, f: &InputFile) {
        self.entries.push(entry(path, f));
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
        let mut files = fat_files(store, &self.entries)?;
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
    /// The ESP's own files (the UEFI loaders), beside the medium's.
    pub esp_files: Vec<Entry>,
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
    /// The EFI binaries placed, to be signed when the profile has `secure_boot`.
    pub to_sign: ToSign,
}

impl Assembly<'_, '_> {
    /// The file for an EFI role, noted for signing under Secure Boot.
    fn efi(&mut self, role: &str) -> Result<InputFile> {
        let f = self.inputs.file(role)?;
        if self.profile.profile.secure_boot.is_some() {
            self.to_sign.add(f.blob, format!("`{role}`"));
        }
        Ok(f)
    }

    /// The shim the profile chains through, if any.
    fn shim(&self) -> Shim {
        self.profile
            .profile
            .secure_boot
            .as_ref()
            .map_or(Shim::None, |sb| sb.shim)
    }

    /// For `shim: debian`: shim and MokManager, and the x86_64 loader (`grubx64.efi`, the
    /// name shim starts), which must carry the `.sbat` section shim demands.
    fn shim_files(&mut self, x64_role: &str, loader: &InputFile) -> Result<[InputFile; 2]> {
        if !has_sbat(&self.store.read_blob(&loader.blob)?) {
            bail!(
                "{}: secure_boot.shim: debian: `{x64_role}` has no .sbat section, and shim \
                 starts nothing without one (iPXE has one since v2.0.0; GRUB with \
                 `grub-mkimage --sbat`)",
                self.profile.path.display()
            );
        }
        Ok([
            self.inputs.file("shimx64.efi")?,
            self.inputs.file("mmx64.efi")?,
        ])
    }

    /// The chain script as `autoexec.ipxe`, where an iPXE that carries no script of its
    /// own (Debian's, iPXE's upstream-signed build) looks for one: beside itself on the
    /// boot device (ESP root, TFTP directory).
    fn autoexec(&self, loader: &InputFile) -> Option<Entry> {
        if loader.patched {
            return None;
        }
        self.layout
            .entries
            .iter()
            .find(|e| e.path == "chain.ipxe")
            .map(|e| Entry {
                path: "autoexec.ipxe".into(),
                ..e.clone()
            })
    }

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
        let mut unpatched_ipxe = None;
        let mut x64 = match loaders.uefi_x64 {
            Loader::Ipxe => {
                let ipxe = self.efi("ipxe.efi")?;
                self.layout.add("ipxe.efi", &ipxe);
                let snponly = self.efi("snponly.efi")?;
                self.layout.add("snponly.efi", &snponly);
                unpatched_ipxe = Some(ipxe.clone());
                Some(("ipxe.efi", ipxe))
            }
            Loader::Grub => {
                let grub = self.efi("grubx64.efi")?;
                self.layout.add("grubx64.efi", &grub);
                Some(("grubx64.efi", grub))
            }
            Loader::None | Loader::Syslinux => None,
        };
        if loaders.uefi_arm64 == Loader::Ipxe {
            let snp = self.efi("snp-arm64.efi")?;
            self.layout.add("arm64/snp.efi", &snp);
            unpatched_ipxe.get_or_insert(snp);
        }
        if let Some(e) = unpatched_ipxe.and_then(|f| self.autoexec(&f)) {
            self.layout.entries.push(e);
        }
        if self.shim() == Shim::Debian
            && let Some((role, loader)) = &x64
        {
            let [shim, mm] = self.shim_files(role, loader)?;
            // Shim fetches `grubx64.efi` from the directory it came from.
            if *role != "grubx64.efi" {
                self.layout.add("grubx64.efi", loader);
            }
            self.layout.add("shimx64.efi", &shim);
            self.layout.add("mmx64.efi", &mm);
            x64 = Some(("shimx64.efi", shim));
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
        let x64 = x64.map_or("", |(role, _)| role);
        dhcp_vars.insert("uefi_x64_file".into(), shipped(x64));
        dhcp_vars.insert("uefi_arm64_file".into(), shipped("arm64/snp.efi"));
        let ipxe_loader =
            [loaders.bios, loaders.uefi_x64, loaders.uefi_arm64].contains(&Loader::Ipxe);
        dhcp_vars.insert(
            "ipxe_loader".into(),
            if ipxe_loader { "1" } else { "" }.into(),
        );
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
        let snp = self.efi("snp-arm64.efi")?;
        self.layout.add("EFI/BOOT/BOOTAA64.EFI", &snp);
        if let Some(e) = self.autoexec(&snp) {
            self.layout.entries.push(e);
        }
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

    /// `EFI/BOOT/BOOTX64.EFI` and `BOOTAA64.EFI` for the ESP, per the profile's loaders
    /// (through shim when the profile says so), and `autoexec.ipxe` for an iPXE that
    /// carries no script.
    fn uefi_loaders(&mut self, medium: &str) -> Result<Vec<Entry>> {
        let loaders = &self.profile.profile.loaders;
        let mut esp = Vec::new();
        let mut unpatched_ipxe = None;
        let x64 = match loaders.uefi_x64 {
            Loader::Ipxe => Some(("ipxe.efi", self.efi("ipxe.efi")?)),
            Loader::Grub => Some(("grubx64.efi", self.efi("grubx64.efi")?)),
            // Refused in `package` before assembly starts.
            Loader::None | Loader::Syslinux => None,
        };
        if let Some((role, f)) = x64 {
            if role == "ipxe.efi" {
                unpatched_ipxe = Some(f.clone());
            }
            if self.shim() == Shim::Debian {
                let [shim, mm] = self.shim_files(role, &f)?;
                esp.push(entry("EFI/BOOT/BOOTX64.EFI", &shim));
                esp.push(entry("EFI/BOOT/grubx64.efi", &f));
                esp.push(entry("EFI/BOOT/mmx64.efi", &mm));
            } else {
                esp.push(entry("EFI/BOOT/BOOTX64.EFI", &f));
            }
        }
        if loaders.uefi_arm64 == Loader::Ipxe {
            let f = self.efi("snp-arm64.efi")?;
            esp.push(entry("EFI/BOOT/BOOTAA64.EFI", &f));
            unpatched_ipxe.get_or_insert(f);
        }
        if esp.is_empty() {
            bail!(
                "{}: {medium} needs a UEFI loader (loaders.uefi-x64 or uefi-arm64)",
                self.profile.path.display()
            );
        }
        if let Some(e) = unpatched_ipxe.and_then(|f| self.autoexec(&f)) {
            esp.push(e);
        }
        Ok(esp)
    }

    /// Replaces every blob signed for Secure Boot by its signed form, in the medium's
    /// files and its ESP's.
    pub fn apply_signatures(
        layout: &mut Layout,
        medium: &mut Medium,
        signed: &BTreeMap<Digest, crate::store::Stored>,
    ) {
        let esp: &mut [Entry] = match medium {
            Medium::Iso(d) | Medium::UsbImg(d) => &mut d.esp_files,
            Medium::PxeBundle | Medium::RpiImg => &mut [],
        };
        for e in layout.entries.iter_mut().chain(esp.iter_mut()) {
            if let Some(s) = signed.get(&e.blob) {
                e.blob = s.digest;
                e.size = s.size;
            }
        }
    }
}
