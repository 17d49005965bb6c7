//! `bootforge package`: assembling media from build outputs and rendered scripts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::assembly::{Assembly, DiskParts, Layout, Medium, fat_files};
use super::bundle;
use super::fat::{FatSpec, fat_image};
use super::inputs::{Input, Inputs};
use super::iso::{IsoSpec, write_iso};
use super::profile::LoadedProfile;
use super::rpi::write_rpi_img;
use super::sign::{SecureBootInfo, Signer, ToSign};
use super::usb::{UsbSpec, write_usb_img};
use crate::base::{Digest, Named};
use crate::build::Settings;
use crate::store::{Entry, Kind, Origin, Produced, ProducedFile, Store, Stored, layout};

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
    pub fn file_name(self) -> &'static str {
        match self {
            Target::Iso => "bootforge.iso",
            Target::RpiImg => "bootforge-rpi4.img",
            Target::UsbImg => "bootforge-usb.img",
            Target::PxeBundle => "pxe-bundle.tar.gz",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Target::Iso => "application/vnd.efi.iso",
            Target::RpiImg | Target::UsbImg => "application/vnd.efi.img",
            Target::PxeBundle => "application/gzip",
        }
    }

    pub fn name(self) -> &'static str {
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
    /// How its EFI binaries were signed, for a profile with `secure_boot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<SecureBootInfo>,
}

/// The result of `bootforge package`, also recorded as `actions/<key>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageReport {
    pub kind: Kind,
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

impl Entry for PackageReport {
    fn blobs(&self) -> Vec<Digest> {
        vec![self.sha256, self.manifest]
    }
}

/// What the outer package manifest blob says: the medium, and the manifest inside it.
/// (Fields in name order, the inner manifest as a sorted map: the bytes, and so the digest
/// of this provenance document, are those of every earlier version.)
#[derive(Debug, Serialize)]
struct OuterManifest<'a> {
    artifacts: [OuterArtifact<'a>; 1],
    manifest: serde_json::Value,
    schema: u32,
}

#[derive(Debug, Serialize)]
struct OuterArtifact<'a> {
    media_type: &'a str,
    name: &'a str,
    sha256: Digest,
    size: u64,
}

/// Makes `target` from the profile's loaders, building and embedding as needed.
pub fn package(
    settings: &Settings,
    recipes_dir: &Path,
    profile: &LoadedProfile,
    target: Target,
    sets: &[(String, String)],
) -> Result<PackageReport> {
    profile.check_target(target)?;
    let vars = vars_for(profile, target, sets);
    let store = &settings.store;
    // Held until the entry naming the medium is written, so `cache gc` cannot take the
    // blobs stored on the way.
    let _store_lock = store.lock_shared()?;
    // The key and cert are checked before anything is built.
    let signer = Signer::load(settings, recipes_dir, profile)?;
    let mut inputs = Inputs::new(settings, recipes_dir, profile, &vars);
    let mut layout = Layout {
        entries: Vec::new(),
    };
    let mut assembly = Assembly {
        inputs: &mut inputs,
        layout: &mut layout,
        profile,
        vars: &vars,
        store,
        to_sign: ToSign::default(),
    };
    let mut medium = assembly.assemble(target)?;
    let to_sign = std::mem::take(&mut assembly.to_sign);
    let epoch = match profile.profile.epoch {
        Some(e) => e,
        None => inputs.epoch()?,
    };
    if let Some(signer) = &signer {
        let signed = signer.sign(settings, &to_sign.blobs, epoch)?;
        Assembly::apply_signatures(&mut layout, &mut medium, &signed);
    }
    let manifest = Manifest {
        schema: PACKAGE_SCHEMA,
        target,
        profile: profile
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        profile_sha256: Digest::of(&std::fs::read(&profile.path)?).hex(),
        vars: vars.clone(),
        source_date_epoch: epoch,
        inputs: inputs.used(),
        contents: contents(&layout, &medium),
        bootforge_version: env!("CARGO_PKG_VERSION").into(),
        secure_boot: signer.map(|s| s.info),
    };
    let key = Digest::of(serde_json::to_string(&manifest)?.as_bytes()).hex();
    let _action_lock;
    let mut done = settings.recorded::<PackageReport>(&key)?;
    if done.is_none() {
        // One process assembles; the others wait here and take its result.
        _action_lock = store.lock_named(&format!("action-{key}"))?;
        done = settings.recorded::<PackageReport>(&key)?;
    }
    let report = match done {
        Some((mut done, origin)) => {
            if origin == Origin::Local {
                settings.share(&key, &done)?;
            }
            done.cached = true;
            done
        }
        None => {
            let report = write_medium(store, &key, &manifest, medium, &mut layout)?;
            store.write_json(&layout::action(&key), &report)?;
            settings.share(&key, &report)?;
            report
        }
    };
    let report = PackageReport {
        containers_started: inputs.containers_started,
        ..report
    };
    record_latest(store, &report, epoch)?;
    Ok(report)
}

/// The profile's variables, what the target adds, then the command line's.
fn vars_for(
    profile: &LoadedProfile,
    target: Target,
    sets: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut vars = profile.profile.vars.clone();
    if matches!(target, Target::Iso | Target::UsbImg) {
        // GRUB booted from a disc has no default network interface: name the first card,
        // so its requests carry the MAC (embed/grub.cfg.j2).
        vars.insert("net_interface".into(), "efinet0".into());
    }
    vars.extend(sets.iter().cloned());
    vars
}

/// Every file of the medium, sorted, the ESP's one level down.
fn contents(layout: &Layout, medium: &Medium) -> Vec<Content> {
    let mut contents: Vec<Content> = layout
        .entries
        .iter()
        .map(|e| Content {
            path: e.path.clone(),
            sha256: e.blob,
            size: e.size,
        })
        .collect();
    if let Medium::Iso(disk) | Medium::UsbImg(disk) = medium {
        contents.extend(disk.esp_files.iter().map(|f| Content {
            path: format!("[esp]/{}", f.path),
            sha256: f.blob,
            size: f.size,
        }));
    }
    contents.sort_by(|a, b| a.path.cmp(&b.path));
    contents
}

/// Writes the medium (with its manifest inside where it holds files) and the outer
/// manifest blob into the store.
fn write_medium(
    store: &Store,
    key: &str,
    manifest: &Manifest,
    medium: Medium,
    layout: &mut Layout,
) -> Result<PackageReport> {
    let target = manifest.target;
    let epoch = manifest.source_date_epoch;
    let mut manifest_json = serde_json::to_vec_pretty(manifest)?;
    manifest_json.push(b'\n');
    let Stored { digest, size } = match medium {
        Medium::PxeBundle => {
            let mut sums = String::new();
            for c in &manifest.contents {
                sums.push_str(&format!("{}  {}\n", c.sha256.hex(), c.path));
            }
            layout.add_bytes(store, "SHA256SUMS", sums.as_bytes())?;
            layout.add_bytes(store, "manifest.json", &manifest_json)?;
            bundle::write_tar_gz(store, &layout.entries, epoch)?
        }
        Medium::Iso(disk) => write_iso_medium(store, layout, &manifest_json, disk, epoch)?,
        Medium::UsbImg(disk) => {
            let mut esp = layout.files(store, &manifest_json)?;
            esp.extend(fat_files(store, &disk.esp_files)?);
            write_usb_img(
                store,
                &UsbSpec {
                    esp_files: &esp,
                    boot_img: &disk.mbr_code,
                    core_img: &disk.core_img,
                    mtime: epoch,
                },
            )?
        }
        Medium::RpiImg => write_rpi_img(
            store,
            &layout.files(store, &manifest_json)?,
            "RPI-BOOT",
            epoch,
        )?,
    };
    let outer = OuterManifest {
        artifacts: [OuterArtifact {
            media_type: target.media_type(),
            name: target.file_name(),
            sha256: digest,
            size,
        }],
        manifest: serde_json::to_value(manifest)?,
        schema: PACKAGE_SCHEMA,
    };
    let manifest_blob = store.put_bytes(&serde_json::to_vec_pretty(&outer)?)?.digest;
    Ok(PackageReport {
        kind: Kind::Package,
        key: key.to_owned(),
        target,
        name: target.file_name().into(),
        sha256: digest,
        size,
        media_type: target.media_type().into(),
        manifest: manifest_blob,
        contents: manifest.contents.clone(),
        cached: false,
        containers_started: 0,
    })
}

/// The ISO: its files, and an ESP made from the UEFI loaders, serialised from the manifest.
fn write_iso_medium(
    store: &Store,
    layout: &Layout,
    manifest_json: &[u8],
    disk: DiskParts,
    epoch: i64,
) -> Result<Stored> {
    let files: Vec<(String, Vec<u8>)> = layout
        .files(store, manifest_json)?
        .into_iter()
        .map(|f| (f.path, f.data))
        .collect();
    let esp = fat_image(
        &fat_files(store, &disk.esp_files)?,
        &FatSpec {
            label: "BOOTFORGE".into(),
            serial: u32::from_le_bytes(
                Digest::of(manifest_json).hex().as_bytes()[..4]
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
            mbr_code: &disk.mbr_code,
            esp,
            volume_id: "BOOTFORGE",
            mtime: epoch,
        },
    )
}

/// Notes `report` as what its target last produced, for `publish`.
fn record_latest(store: &Store, report: &PackageReport, epoch: i64) -> Result<()> {
    store.record_latest(&Produced {
        kind: Kind::Package,
        name: report.target.name().into(),
        files: vec![ProducedFile {
            blob: Named {
                name: report.name.clone(),
                sha256: report.sha256,
                size: report.size,
            },
            media_type: report.media_type.clone(),
        }],
        provenance: report.manifest,
        source_date_epoch: epoch,
    })
}
