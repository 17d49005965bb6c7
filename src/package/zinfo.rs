//! iPXE's `.zinfo` files: the records iPXE's `util/zbin` follows to turn a linked `.bin` into
//! a compressed BIOS image (copy this range, LZMA-pack that one, patch a length field here).
//!
//! The format is `zbin.c`'s `union zinfo_record`: 16-byte little-endian records, a 4-byte
//! type tag and three 32-bit fields (a 64-bit one for `BASE`). Reading it checks what `zbin`
//! would trip over (a zero alignment or divisor, a short file), so a damaged `.zinfo` is an
//! error naming the record rather than a container that fails.

use std::fmt;

/// Bytes per record.
pub const RECORD: usize = 16;

/// One record, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// `COPY`: append input `[offset, offset+len)` at the next `align` boundary.
    Copy { offset: u32, len: u32, align: u32 },
    /// `PACK`: append input `[offset, offset+len)` LZMA-compressed.
    Pack { offset: u32, len: u32, align: u32 },
    /// `PAYL`: the payload starts here (at the next `align` boundary).
    Payload { align: u32 },
    /// `ADDB`/`ADDW`/`ADDL`, `ADH*`, `ADP*`, `APP*`: add a length, in units of `divisor`,
    /// to the `width`-byte field at `offset`.
    Add {
        measure: Measure,
        from_payload: bool,
        width: u8,
        offset: u32,
        divisor: u32,
    },
    /// `BASE`: the load address relocations are relative to.
    Base { base: u64 },
    /// `ZREL`: compress the relocation records at input `[offset, offset+len)`.
    Zrel { offset: u32, len: u32, machine: u32 },
}

/// Which length an `ADD` record adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// `ADD*`: the output so far.
    Output,
    /// `ADH*`: the header (the output before `PAYL`).
    Header,
    /// `ADP*` and `APP*`: the payload so far.
    Payload,
}

/// Why a `.zinfo` cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZinfoError {
    /// Not a whole number of records.
    Length(usize),
    /// A record type this reader does not know (a newer iPXE).
    Unknown { record: usize, tag: [u8; 4] },
    /// A field `zbin` cannot work with.
    Invalid { record: usize, why: &'static str },
}

impl fmt::Display for ZinfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZinfoError::Length(n) => {
                write!(
                    f,
                    "{n} bytes is not a whole number of {RECORD}-byte records"
                )
            }
            ZinfoError::Unknown { record, tag } => write!(
                f,
                "record {record}: unknown type {:?}",
                String::from_utf8_lossy(tag)
            ),
            ZinfoError::Invalid { record, why } => write!(f, "record {record}: {why}"),
        }
    }
}

impl std::error::Error for ZinfoError {}

/// Reads every record of a `.zinfo` file.
pub fn parse(bytes: &[u8]) -> Result<Vec<Record>, ZinfoError> {
    if !bytes.len().is_multiple_of(RECORD) {
        return Err(ZinfoError::Length(bytes.len()));
    }
    bytes
        .chunks_exact(RECORD)
        .enumerate()
        .map(|(i, r)| record(i + 1, r))
        .collect()
}

fn record(index: usize, r: &[u8]) -> Result<Record, ZinfoError> {
    let word = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().expect("4 bytes"));
    let tag: [u8; 4] = r[..4].try_into().expect("4 bytes");
    let invalid = |why| ZinfoError::Invalid { record: index, why };
    let aligned = |align: u32| {
        if align.is_power_of_two() {
            Ok(align)
        } else {
            Err(invalid("the alignment is not a power of two"))
        }
    };
    let add = |measure, from_payload, width: u8| {
        let divisor = word(8);
        if divisor == 0 {
            return Err(invalid("the divisor is zero"));
        }
        Ok(Record::Add {
            measure,
            from_payload,
            width,
            offset: word(4),
            divisor,
        })
    };
    let width = |c: u8| match c {
        b'B' => Some(1),
        b'W' => Some(2),
        b'L' => Some(4),
        _ => None,
    };
    Ok(match &tag {
        b"COPY" => Record::Copy {
            offset: word(4),
            len: word(8),
            align: aligned(word(12))?,
        },
        b"PACK" => Record::Pack {
            offset: word(4),
            len: word(8),
            align: aligned(word(12))?,
        },
        b"PAYL" => Record::Payload {
            align: aligned(word(12))?,
        },
        b"BASE" => Record::Base {
            base: u64::from_le_bytes(r[8..16].try_into().expect("8 bytes")),
        },
        b"ZREL" => Record::Zrel {
            offset: word(4),
            len: word(8),
            machine: word(12),
        },
        _ => match (&tag[..3], width(tag[3])) {
            (b"ADD", Some(w)) => add(Measure::Output, false, w)?,
            (b"ADH", Some(w)) => add(Measure::Header, false, w)?,
            (b"ADP", Some(w)) => add(Measure::Payload, false, w)?,
            (b"APP", Some(w)) => add(Measure::Payload, true, w)?,
            _ => return Err(ZinfoError::Unknown { record: index, tag }),
        },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One record's bytes (also for the native zbin's tests).
    pub(crate) fn rec(tag: &[u8; 4], a: u32, b: u32, c: u32) -> Vec<u8> {
        let mut v = tag.to_vec();
        for w in [a, b, c] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v
    }

    #[test]
    fn reads_the_records_of_an_ipxe_bios_image() {
        // The shape of iPXE v2.0.0's bin/undionly.kpxe.zinfo: copy the prefix, pack the
        // rest, then patch the length fields the prefix reads.
        let bytes = [
            rec(b"COPY", 0, 0x1c0, 16),
            rec(b"PACK", 0x1c0, 0x1f000, 16),
            rec(b"PAYL", 0, 0, 1),
            rec(b"ADDL", 0x10, 512, 0),
            rec(b"ADHW", 0x20, 16, 0),
            rec(b"APPB", 0x30, 1, 0),
        ]
        .concat();
        let records = parse(&bytes).unwrap();
        assert_eq!(records.len(), 6);
        assert_eq!(
            records[0],
            Record::Copy {
                offset: 0,
                len: 0x1c0,
                align: 16
            }
        );
        assert_eq!(
            records[5],
            Record::Add {
                measure: Measure::Payload,
                from_payload: true,
                width: 1,
                offset: 0x30,
                divisor: 1
            }
        );
    }

    #[test]
    fn damaged_files_name_the_record() {
        assert_eq!(parse(&[0; 17]), Err(ZinfoError::Length(17)));
        let unknown = parse(&rec(b"WHAT", 0, 0, 0)).unwrap_err();
        assert_eq!(unknown.to_string(), "record 1: unknown type \"WHAT\"");
        let zero = parse(&[rec(b"PAYL", 0, 0, 1), rec(b"ADDW", 0, 0, 0)].concat());
        assert_eq!(
            zero.unwrap_err().to_string(),
            "record 2: the divisor is zero"
        );
        assert!(parse(&rec(b"COPY", 0, 1, 3)).is_err());
        assert!(parse(&rec(b"ADDQ", 0, 1, 0)).is_err());
    }
}
