//! Hybrid ISO images: ISO 9660 with Joliet and Rock Ridge, El Torito entries for BIOS
//! (ISOLINUX) and UEFI (a FAT EFI system partition), and an MBR+GPT so the same file can be
//! written to a USB stick.

use anyhow::{Context, Result};
use hadris_fs::{Content, DateTime, Node, Tree};
use hadris_iso::{
    AppendedPartition, BootEntry, BootInfo, ElTorito, Hybrid, IsoId, IsoLevel, IsoOptions,
};

use crate::store::{Store, Stored};

/// What goes on the disc.
pub struct IsoSpec<'a> {
    /// Files of the ISO 9660 tree: path and bytes.
    pub files: &'a [(String, Vec<u8>)],
    /// Path of the El Torito BIOS image in the tree (ISOLINUX's `isolinux.bin`).
    pub bios_image: &'a str,
    /// isohybrid MBR boot code (SYSLINUX's `isohdpfx.bin`), for BIOS boot from a disk.
    pub mbr_code: &'a [u8],
    /// The EFI system partition image, appended after the files.
    pub esp: Vec<u8>,
    /// Volume identifier.
    pub volume_id: &'a str,
    /// SOURCE_DATE_EPOCH: the date of the volume and of every entry.
    pub mtime: i64,
}

/// Writes the image into the store.
pub fn write_iso(store: &Store, spec: &IsoSpec<'_>) -> Result<Stored> {
    let time = DateTime::new(spec.mtime, 0)
        .map_err(|e| anyhow::anyhow!("SOURCE_DATE_EPOCH {}: {e:?}", spec.mtime))?;
    let mut tree = Tree::new();
    for (path, data) in spec.files {
        tree.insert(path, Node::file(Content::bytes(data.clone())))
            .map_err(|e| anyhow::anyhow!("adding {path} to the ISO: {e}"))?;
    }
    // GPT GUIDs derive from this seed: a hash of the content, so the same inputs give the
    // same GUIDs and different media different ones.
    let seed = super::content_seed(
        spec.files.iter().map(|(p, d)| (p.as_str(), d.as_slice())),
        &[&spec.esp],
    );
    let seed = u64::from_le_bytes(
        hex::decode(&seed.hex()[..16])
            .expect("hex")
            .try_into()
            .expect("8 bytes"),
    );
    let options = IsoOptions::default()
        .with_id(IsoId::Volume, spec.volume_id)
        .with_id(IsoId::Publisher, "bootforge")
        .with_id(IsoId::Application, "bootforge")
        .with_level(IsoLevel::L3)
        .with_joliet()
        .with_rock_ridge()
        .with_time(time)
        .with_seed(seed)
        .with_el_torito(
            ElTorito::new()
                .with_entry(
                    BootEntry::bios(spec.bios_image)
                        .with_load_size(4)
                        .with_boot_info(BootInfo::Table),
                )
                .with_entry(BootEntry::uefi_appended(0))
                .with_catalog_path("isolinux/boot.cat"),
        )
        .with_hybrid(
            Hybrid::gpt_hybrid_mbr()
                .with_bootstrap(spec.mbr_code)
                .with_appended(AppendedPartition::esp(Content::bytes(spec.esp.clone()))),
        );
    let tmp = store.temp_file()?;
    let file = tmp.reopen().context("reopening a temporary file")?;
    let device = hadris_storage::host::FileDevice::new(file)
        .map_err(|e| anyhow::anyhow!("opening the image for writing: {e}"))?;
    let report = hadris_iso::sync::write(device, &tree, &options)
        .map_err(|e| anyhow::anyhow!("writing the ISO image: {e}"))?;
    for w in report.warnings() {
        eprintln!("iso: warning: {w}");
    }
    store.put_temp(tmp)
}
