//! Raspberry Pi SD card images: an MBR (the Pi's boot ROM reads no GPT) with one FAT32
//! partition holding the firmware, config.txt and the UEFI loader.

use std::io::Write;

use anyhow::{Context, Result};

use super::fat::{FatFile, FatSpec, FatType, write_fat_at};
use crate::store::{Store, Stored};

/// Where the boot partition starts: 1 MiB, the alignment SD cards and the Pi's own images use.
const PART_START: u64 = 1 << 20;
/// FAT32 type for LBA-addressed partitions, what Raspberry Pi OS images use.
const FAT32_LBA: u8 = 0x0c;
/// The smallest boot partition: FAT32 needs 65,525 clusters; 64 MiB leaves room for more.
const MIN_PART_SIZE: u64 = 64 << 20;

/// Writes the image into the store; the disk signature derives from the contents.
pub fn write_rpi_img(store: &Store, files: &[FatFile], label: &str, mtime: i64) -> Result<Stored> {
    let content_hash = super::content_seed(
        files.iter().map(|f| (f.path.as_str(), f.data.as_slice())),
        &[],
    )
    .hex();
    let word = |i: usize| u32::from_str_radix(&content_hash[i..i + 8], 16).expect("hex digest");
    let files_size: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    let part_size = MIN_PART_SIZE.max((files_size * 2).div_ceil(1 << 20) << 20);

    // The FAT volume first, in place at 1 MiB (the file stays sparse where nothing is
    // written), then the MBR in front of it.
    let tmp = store.temp_file()?;
    let mut disk = tmp.reopen()?;
    let fat_len = write_fat_at(
        &disk,
        PART_START,
        files,
        &FatSpec {
            label: label.into(),
            serial: word(0),
            mtime,
            fat_type: Some(FatType::Fat32),
            size: Some(part_size),
        },
    )
    .context("writing the boot partition")?;
    let mut mbr =
        mbrman::MBR::new_from(&mut disk, 512, word(8).to_le_bytes()).context("creating the MBR")?;
    mbr[1] = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_INACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys: FAT32_LBA,
        last_chs: mbrman::CHS::empty(),
        starting_lba: (PART_START / 512) as u32,
        sectors: (fat_len / 512) as u32,
    };
    mbr.write_into(&mut disk).context("writing the MBR")?;
    disk.flush()?;
    drop(disk);
    store.put_temp(tmp)
}
