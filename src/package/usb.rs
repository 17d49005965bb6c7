//! USB disk images: a GPT disk with a BIOS boot partition holding GRUB's i386-pc core image
//! (started by GRUB's boot.img in the protective MBR) and a FAT EFI system partition holding
//! the UEFI loaders and the files the BIOS path boots. For sticks and for BMC virtual media
//! that want a disk rather than a CD.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};

use anyhow::{Context, Result, bail};
use gpt::partition::Partition;
use gpt::partition_types::{BIOS, EFI};

use super::fat::{FatFile, FatSpec, write_fat_at};
use crate::base::Digest;
use crate::store::{Store, Stored};

const SECTOR: u64 = 512;
/// The BIOS boot partition: LBA 2048 (1 MiB), 1 MiB long, room for any core.img.
const BIOS_START: u64 = 2048;
const BIOS_SECTORS: u64 = 2048;
/// The ESP follows it, 1 MiB aligned.
const ESP_START: u64 = BIOS_START + BIOS_SECTORS;
/// Room after the last partition for the backup GPT (33 sectors), rounded to 1 MiB.
const TAIL: u64 = 1 << 20;

// Offsets in GRUB's boot.img and diskboot.img (include/grub/i386/pc/boot.h), as
// grub-bios-setup patches them.
const KERNEL_SECTOR: usize = 0x5c;
const DRIVE_CHECK: usize = 0x66;
const BLOCKLIST: usize = 0x200 - 12;

/// What goes on the disk.
pub struct UsbSpec<'a> {
    pub esp_files: &'a [FatFile],
    /// GRUB's boot.img (MBR code) and its i386-pc core image.
    pub boot_img: &'a [u8],
    pub core_img: &'a [u8],
    pub mtime: i64,
}

/// Writes the image into the store. GUIDs and the FAT serial derive from the contents.
pub fn write_usb_img(store: &Store, spec: &UsbSpec<'_>) -> Result<Stored> {
    if spec.boot_img.len() != 512 {
        bail!(
            "boot.img is {} bytes; GRUB's is one 512-byte sector",
            spec.boot_img.len()
        );
    }
    let core_sectors = (spec.core_img.len() as u64).div_ceil(SECTOR);
    if core_sectors > BIOS_SECTORS || spec.core_img.len() < 512 {
        bail!(
            "core.img is {} bytes; it must fit the 1 MiB BIOS boot partition",
            spec.core_img.len()
        );
    }
    let seed = super::content_seed(
        spec.esp_files
            .iter()
            .map(|f| (f.path.as_str(), f.data.as_slice())),
        &[spec.core_img],
    )
    .hex();
    let uuid = |n: u8| {
        let d = Digest::of(format!("{seed}-{n}").as_bytes()).hex();
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(&d[..32], &mut bytes).expect("hex");
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    };

    let files_size: u64 = spec.esp_files.iter().map(|f| f.data.len() as u64).sum();
    let esp_size = (32 << 20u64).max((files_size * 2).div_ceil(1 << 20) << 20);
    let total = ESP_START * SECTOR + esp_size + TAIL;

    let tmp = store.temp_file()?;
    let mut disk = tmp.reopen()?;
    // The ESP first: writing it resets everything behind its start.
    write_fat_at(
        &disk,
        ESP_START * SECTOR,
        spec.esp_files,
        &FatSpec {
            label: "BOOTFORGE".into(),
            serial: u32::from_str_radix(&seed[..8], 16).expect("hex"),
            mtime: spec.mtime,
            fat_type: None,
            size: Some(esp_size),
        },
    )
    .context("writing the EFI system partition")?;
    disk.set_len(total)?;

    write_gpt(&mut disk, esp_size, &uuid)?;
    write_boot_code(&mut disk, spec, core_sectors, total)?;
    disk.flush()?;
    drop(disk);
    store.put_temp(tmp)
}

/// The GPT: a BIOS boot partition for GRUB's core image, then the ESP.
fn write_gpt(
    disk: &mut std::fs::File,
    esp_size: u64,
    uuid: &dyn Fn(u8) -> uuid::Uuid,
) -> Result<()> {
    let mut gpt = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(disk, Some(uuid(0)))
        .context("creating the GPT")?;
    let esp_sectors = esp_size / SECTOR;
    let mut parts = BTreeMap::new();
    parts.insert(
        1,
        Partition {
            part_type_guid: BIOS,
            part_guid: uuid(1),
            first_lba: BIOS_START,
            last_lba: BIOS_START + BIOS_SECTORS - 1,
            flags: 0,
            name: "BIOS boot".into(),
        },
    );
    parts.insert(
        2,
        Partition {
            part_type_guid: EFI,
            part_guid: uuid(2),
            first_lba: ESP_START,
            last_lba: ESP_START + esp_sectors - 1,
            flags: 0,
            name: "EFI system".into(),
        },
    );
    gpt.update_partitions(parts).context("adding partitions")?;
    gpt.write().context("writing the GPT")?;

    Ok(())
}

/// GRUB's core image in the BIOS boot partition and boot.img in the protective MBR, each
/// told where the next stage is.
fn write_boot_code(
    disk: &mut std::fs::File,
    spec: &UsbSpec<'_>,
    core_sectors: u64,
    total: u64,
) -> Result<()> {
    // GRUB's core image in the BIOS boot partition, its first sector told where the rest is.
    let mut core = spec.core_img.to_vec();
    let rest_len = u16::from_le_bytes([core[BLOCKLIST + 8], core[BLOCKLIST + 9]]);
    if u64::from(rest_len) + 1 != core_sectors {
        bail!("core.img's blocklist does not describe a contiguous {core_sectors}-sector image");
    }
    core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(BIOS_START + 1).to_le_bytes());
    disk.seek(SeekFrom::Start(BIOS_START * SECTOR))?;
    disk.write_all(&core)?;

    // The protective MBR, with boot.img's code pointed at core.img. The nops replace a jump
    // over the workaround for BIOSes that pass a wrong boot drive, as grub-bios-setup does
    // for hard disks.
    let mut code = [0u8; 440];
    code.copy_from_slice(&spec.boot_img[..440]);
    code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&BIOS_START.to_le_bytes());
    code[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    let mut mbr = gpt::mbr::ProtectiveMBR::with_lb_size((total / SECTOR - 1) as u32);
    mbr.set_bootcode(code);
    mbr.overwrite_lba0(disk)
        .context("writing the protective MBR")?;
    Ok(())
}
