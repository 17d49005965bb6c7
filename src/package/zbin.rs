//! iPXE's `util/zbin`, natively: the `.zinfo` records of [`zinfo`] applied to a linked `.bin`,
//! giving the compressed BIOS image (`.kpxe`, `.lkrn`, `.rom`) byte for byte as iPXE's own
//! `zbin` writes it, without starting its toolchain's container.
//!
//! What has to match `zbin.c` exactly, and why each piece is here:
//! - the output starts as `4 × input` bytes of `0xff`, so alignment gaps are `0xff`;
//! - `PACK` first runs zbin's own x86 BCJ filter over the input *in place* (a later record
//!   reading the same range sees the filtered bytes), then LZMA1 with liblzma's preset
//!   `6 | EXTREME` and `lc=2 lp=0 pb=0` (what iPXE's `unlzma.S` decodes), framed by a
//!   length word and a CRC-32 without the final inversion;
//! - `ADD*` records do zbin's signed, masked arithmetic, with its errors.
//!
//! `ZREL` (RISC-V relocations) is not done here: [`run`] says so and the caller runs the
//! build's own zbin. The LZMA comes from liblzma (through `xz2`), the same library zbin
//! links; whether the bytes match the build's zbin is checked by the caller on the build's
//! own output before this is trusted (see `embed`).

use std::fmt;

use xz2::stream::{Action, LzmaOptions, Status, Stream};

use super::zinfo::{self, Measure, Record};

/// `LZMA_PRESET_EXTREME` (liblzma's `lzma/container.h`).
const PRESET_EXTREME: u32 = 1 << 31;
/// zbin's `LZMA_PRESET`: the default level, extreme.
const PRESET: u32 = 6 | PRESET_EXTREME;
/// zbin's `LZMA_LC`, `LZMA_LP`, `LZMA_PB`: must match iPXE's decompressor.
const LC: u32 = 2;
const LP: u32 = 0;
const PB: u32 = 0;
/// The `.lzma` (LZMA_Alone) header xz2's encoder writes before the raw LZMA1 stream zbin
/// stores: properties (1), dictionary size (4), uncompressed size (8).
const ALONE_HEADER: usize = 13;

/// Why the native path cannot make this image.
#[derive(Debug)]
pub enum ZbinError {
    /// Records this implementation leaves to the build's zbin (an unknown type, `ZREL`).
    Unsupported(String),
    /// The records do not fit the input; iPXE's zbin fails the same way.
    Invalid(String),
}

impl fmt::Display for ZbinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZbinError::Unsupported(why) | ZbinError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ZbinError {}

/// The records of `zinfo` applied to `bin`: what `zbin file.bin file.zinfo` prints.
pub fn run(bin: &[u8], zinfo: &[u8]) -> Result<Vec<u8>, ZbinError> {
    let records = zinfo::parse(zinfo).map_err(|e| match e {
        zinfo::ZinfoError::Unknown { .. } => ZbinError::Unsupported(e.to_string()),
        e => ZbinError::Invalid(e.to_string()),
    })?;
    if let Some(n) = records
        .iter()
        .position(|r| matches!(r, Record::Zrel { .. }))
    {
        return Err(ZbinError::Unsupported(format!(
            "record {}: ZREL (RISC-V relocations) is left to the build's own zbin",
            n + 1
        )));
    }
    let mut z = Zbin {
        input: bin.to_vec(),
        max_len: bin.len() * 4,
        out: Vec::with_capacity(bin.len()),
        hdr_len: 0,
    };
    for (i, r) in records.iter().enumerate() {
        z.apply(r)
            .map_err(|why| ZbinError::Invalid(format!("record {}: {why}", i + 1)))?;
    }
    Ok(z.out)
}

/// zbin's `struct output_file` and its input, which `PACK` filters in place.
struct Zbin {
    input: Vec<u8>,
    out: Vec<u8>,
    max_len: usize,
    hdr_len: usize,
}

/// zbin's `align()`: a power-of-two round up, in `unsigned long` arithmetic.
fn align(value: u64, align: u64) -> u64 {
    value.wrapping_add(align).wrapping_sub(1) & !align.wrapping_sub(1)
}

impl Zbin {
    fn apply(&mut self, r: &Record) -> Result<(), String> {
        match *r {
            Record::Copy { offset, len, align } => {
                let range = self.input_range(offset, len, "copy")?;
                self.pad_to(align)?;
                if self.out.len() + range.len() > self.max_len {
                    return Err("output buffer overrun on copy".into());
                }
                let bytes = &self.input[range];
                self.out.extend_from_slice(bytes);
            }
            Record::Pack { offset, len, align } => {
                let range = self.input_range(offset, len, "pack")?;
                self.pad_to(align)?;
                if self.out.len() + 4 > self.max_len {
                    return Err("output buffer overrun on pack".into());
                }
                bcj_filter(&mut self.input[range.clone()]);
                let packed = lzma1(&self.input[range])?;
                if self.out.len() + 4 + packed.len() + 4 > self.max_len {
                    return Err("compression failure: output buffer too small".into());
                }
                let framed = u32::try_from(packed.len() + 4).map_err(|_| "packed too large")?;
                self.out.extend_from_slice(&framed.to_le_bytes());
                self.out.extend_from_slice(&packed);
                // zbin's crc32_le(0xffffffff, …) leaves out the final inversion.
                let crc = !crc32fast::hash(&packed);
                self.out.extend_from_slice(&crc.to_le_bytes());
            }
            Record::Payload { align } => {
                self.pad_to(align)?;
                self.hdr_len = self.out.len();
            }
            Record::Add {
                measure,
                from_payload,
                width,
                offset,
                divisor,
            } => {
                let len = match measure {
                    Measure::Output => self.out.len(),
                    Measure::Header => self.hdr_len,
                    Measure::Payload => self.out.len() - self.hdr_len,
                };
                let base = if from_payload { self.hdr_len } else { 0 };
                self.add(len, base + offset as usize, width.into(), divisor)?;
            }
            Record::Base { .. } => {
                // Only ZREL reads the base, and ZREL is refused before any record runs.
            }
            Record::Zrel { .. } => unreachable!("refused in run()"),
        }
        Ok(())
    }

    fn input_range(
        &self,
        offset: u32,
        len: u32,
        what: &str,
    ) -> Result<std::ops::Range<usize>, String> {
        let (start, end) = (offset as usize, offset as usize + len as usize);
        if end > self.input.len() {
            return Err(format!("input buffer overrun on {what}"));
        }
        Ok(start..end)
    }

    /// Moves the end of the output to the next `align` boundary; the gap keeps the `0xff`
    /// zbin's buffer was filled with.
    fn pad_to(&mut self, alignment: u32) -> Result<(), String> {
        let to = align(self.out.len() as u64, alignment.into()) as usize;
        if to > self.max_len {
            return Err("output buffer overrun".into());
        }
        self.out.resize(to, 0xff);
        Ok(())
    }

    /// zbin's `process_zinfo_add`: the field at `offset` (`width` bytes, signed) plus `len`
    /// in units of `divisor`, refused if it goes negative or does not fit.
    fn add(&mut self, len: usize, offset: usize, width: usize, divisor: u32) -> Result<(), String> {
        if offset + width > self.out.len() {
            return Err(format!("add at {offset:#x} outside output buffer"));
        }
        let field = &mut self.out[offset..offset + width];
        let size = align(len as u64, divisor.into()) / u64::from(divisor);
        let addend: i64 = match width {
            1 => i8::from_le_bytes([field[0]]).into(),
            2 => i16::from_le_bytes([field[0], field[1]]).into(),
            _ => i32::from_le_bytes(field.try_into().expect("4 bytes")).into(),
        };
        let val = size.wrapping_add(addend as u64) as i64;
        let sign = if addend < 0 { "-" } else { "" };
        if val < 0 {
            let flow = if addend < 0 { "under" } else { "over" };
            return Err(format!(
                "add {sign}{:#x}+{size:#x} at {offset:#x} {flow}flows field",
                addend.unsigned_abs()
            ));
        }
        let mask = (1u64 << (8 * width)) - 1;
        if val as u64 & !mask != 0 {
            return Err(format!(
                "add {sign}{:#x}+{size:#x} at {offset:#x} overflows {width}-byte field",
                addend.unsigned_abs()
            ));
        }
        field.copy_from_slice(&(val as u64).to_le_bytes()[..width]);
        Ok(())
    }
}

/// zbin's `bcj_filter`: the rel32 targets of `call`/`jmp` made absolute, with its remapping
/// of the values that would otherwise collide.
fn bcj_filter(data: &mut [u8]) {
    let limit = data.len() as i64 - 5;
    let mut offset: i64 = 0;
    while offset <= limit {
        let at = offset as usize;
        if data[at] == 0xe8 || data[at] == 0xe9 {
            let target = i32::from_le_bytes(data[at + 1..at + 5].try_into().expect("4 bytes"));
            let t = i64::from(target);
            let new = if t >= -offset && t < limit - offset {
                Some(t + offset)
            } else if t >= limit - offset && t < limit {
                Some(t - limit)
            } else {
                None
            };
            if let Some(new) = new {
                data[at + 1..at + 5].copy_from_slice(&(new as i32).to_le_bytes());
            }
            offset += 4;
        }
        offset += 1;
    }
}

/// Raw LZMA1 with zbin's options (end-of-payload marker, as liblzma's raw encoder writes).
fn lzma1(data: &[u8]) -> Result<Vec<u8>, String> {
    let lzma = |e: xz2::stream::Error| format!("liblzma: {e}");
    let mut opts = LzmaOptions::new_preset(PRESET).map_err(lzma)?;
    opts.literal_context_bits(LC)
        .literal_position_bits(LP)
        .position_bits(PB);
    let mut stream = Stream::new_lzma_encoder(&opts).map_err(lzma)?;
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    let mut input = data;
    loop {
        let before = stream.total_in();
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity());
        }
        let status = stream
            .process_vec(input, &mut out, Action::Finish)
            .map_err(lzma)?;
        input = &input[(stream.total_in() - before) as usize..];
        if status == Status::StreamEnd {
            break;
        }
    }
    if out.len() < ALONE_HEADER {
        return Err("liblzma wrote no header".into());
    }
    out.drain(..ALONE_HEADER);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::zinfo::tests::rec;
    use super::*;

    /// The shape of iPXE's BIOS images: a prefix copied, the rest packed, length fields
    /// in the prefix patched.
    #[test]
    fn copies_packs_and_patches_lengths_like_zbin() {
        let mut bin = vec![0u8; 0x40];
        bin[0x10..0x14].copy_from_slice(&3u32.to_le_bytes()); // an addend already there
        bin.extend((0..4000u32).map(|i| (i % 251) as u8));
        let zinfo = [
            rec(b"COPY", 0, 0x3c, 16),
            rec(b"PAYL", 0, 0, 16),
            rec(b"PACK", 0x40, 4000, 16),
            rec(b"ADDL", 0x10, 512, 0),
            rec(b"ADHW", 0x20, 16, 0),
            rec(b"ADPL", 0x30, 1, 0),
        ]
        .concat();
        let out = run(&bin, &zinfo).unwrap();
        // The 0x3c-byte copy is padded to 0x40 with 0xff before the packed block.
        assert_eq!(&out[..0x10], &bin[..0x10]);
        assert_eq!(&out[0x3c..0x40], &[0xff; 4]);
        let framed = u32::from_le_bytes(out[0x40..0x44].try_into().unwrap()) as usize;
        assert_eq!(out.len(), 0x44 + framed);
        let packed = &out[0x44..0x44 + framed - 4];
        let crc = u32::from_le_bytes(out[out.len() - 4..].try_into().unwrap());
        assert_eq!(crc, !crc32fast::hash(packed));
        // ADDL: 3 + the whole output in 512-byte sectors, rounded up.
        let sectors = out.len().div_ceil(512) as u32 + 3;
        assert_eq!(out[0x10..0x14], sectors.to_le_bytes());
        // ADHW: the header (0x40 bytes) in 16-byte units.
        assert_eq!(u16::from_le_bytes([out[0x20], out[0x21]]), 4);
        // ADPL: the payload, everything after the header, in bytes.
        let payload = (out.len() - 0x40) as u32;
        assert_eq!(out[0x30..0x34], payload.to_le_bytes());
    }

    #[test]
    fn the_packed_block_decodes_to_the_filtered_input() {
        let mut data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
        data[100] = 0xe8; // a call whose target falls inside the block
        data[101..105].copy_from_slice(&200i32.to_le_bytes());
        let out = run(&data, &rec(b"PACK", 0, 10_000, 1)).unwrap();
        let packed = &out[4..out.len() - 4];
        // Decode as .lzma: the header the encoder wrote, then the stored stream.
        let mut alone = vec![((PB * 5 + LP) * 9 + LC) as u8];
        alone.extend_from_slice(&(8u32 << 20).to_le_bytes());
        alone.extend_from_slice(&[0xff; 8]);
        alone.extend_from_slice(packed);
        let mut decoded = Vec::new();
        let mut d = Stream::new_lzma_decoder(u64::MAX).unwrap();
        decoded.reserve(20_000);
        d.process_vec(&alone, &mut decoded, Action::Finish).unwrap();
        let mut filtered = data.clone();
        bcj_filter(&mut filtered);
        assert_eq!(decoded, filtered);
        // The call at 100 now holds its absolute target, 100 + 200.
        assert_eq!(&decoded[101..105], &300i32.to_le_bytes());
    }

    #[test]
    fn bcj_remaps_targets_that_would_collide() {
        // limit = 20 - 5 = 15; at offset 0 a target in [15, 15) is empty, so use offset 2:
        // a target of 14 is in [limit - offset, limit) = [13, 15) and becomes 14 - 15 = -1.
        let mut d = vec![0u8; 20];
        d[2] = 0xe9;
        d[3..7].copy_from_slice(&14i32.to_le_bytes());
        bcj_filter(&mut d);
        assert_eq!(&d[3..7], &(-1i32).to_le_bytes());
        // Too short for a rel32: untouched.
        let mut short = vec![0xe8, 1, 2, 3];
        bcj_filter(&mut short);
        assert_eq!(short, [0xe8, 1, 2, 3]);
    }

    #[test]
    fn refuses_what_zbin_refuses_and_leaves_zrel_to_it() {
        let bin = vec![0u8; 64];
        let overrun = run(&bin, &rec(b"COPY", 32, 64, 1)).unwrap_err();
        assert_eq!(
            overrun.to_string(),
            "record 1: input buffer overrun on copy"
        );
        // A 1-byte field holding 0x7f plus 200 units overflows it.
        let mut b = vec![0u8; 200];
        b[0] = 0x7f;
        let zinfo = [rec(b"COPY", 0, 200, 1), rec(b"ADDB", 0, 1, 0)].concat();
        let over = run(&b, &zinfo).unwrap_err().to_string();
        assert!(over.contains("overflows 1-byte field"), "{over}");
        let zrel = [rec(b"COPY", 0, 8, 1), rec(b"ZREL", 0, 0, 243)].concat();
        assert!(matches!(run(&bin, &zrel), Err(ZbinError::Unsupported(_))));
        assert!(matches!(
            run(&bin, &rec(b"NEWR", 0, 0, 0)),
            Err(ZbinError::Unsupported(_))
        ));
    }
}
