//! What `flash` needs of an `.xz` image before decompressing it: its uncompressed size,
//! from the index every xz stream ends with (the xz file format, sections 2.1.2 and 4), so
//! the target is checked for room and the first MiB held back as for a raw image.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use anyhow::{Result, bail};

/// An xz stream's header magic; a file starting with it is decompressed as it is written.
pub const MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// The stream header and footer are 12 bytes each.
const HEADER: u64 = 12;
const FOOTER: u64 = 12;

/// The largest index read: 16 MiB holds over a million blocks.
const MAX_INDEX: u64 = 16 << 20;

/// The uncompressed size of every stream of `f` (concatenated streams and stream padding
/// allowed), read from their indexes, each checked against its CRC32.
pub fn uncompressed_size(f: &(impl ReadAt + ?Sized), len: u64) -> Result<u64> {
    let mut pos = len;
    let mut total: u64 = 0;
    let mut streams = 0;
    while pos > 0 || streams == 0 {
        // Stream padding: zero bytes in multiples of four, between or after streams.
        while pos >= 4 && read_at(f, pos - 4, 4)? == [0; 4] {
            pos -= 4;
        }
        if pos < HEADER + FOOTER {
            bail!("not a whole xz file: {pos} bytes are too few for a stream");
        }
        let footer = read_at(f, pos - FOOTER, FOOTER as usize)?;
        if &footer[10..12] != b"YZ" {
            bail!(
                "not a whole xz file: no stream footer at byte {}",
                pos - FOOTER
            );
        }
        if crc32fast::hash(&footer[4..10]) != u32::from_le_bytes(footer[0..4].try_into()?) {
            bail!("the xz stream footer at byte {} is corrupt", pos - FOOTER);
        }
        let index_size = (u64::from(u32::from_le_bytes(footer[4..8].try_into()?)) + 1) * 4;
        if index_size > MAX_INDEX || index_size + FOOTER + HEADER > pos {
            bail!("the xz index size {index_size} does not fit the file");
        }
        let index_at = pos - FOOTER - index_size;
        let index = read_at(f, index_at, index_size as usize)?;
        let (blocks, uncompressed) = read_index(&index)
            .map_err(|why| anyhow::anyhow!("the xz index at byte {index_at} {why}"))?;
        let stream_at = index_at
            .checked_sub(blocks + HEADER)
            .filter(|&at| read_at(f, at, MAGIC.len()).is_ok_and(|m| m == MAGIC))
            .ok_or_else(|| {
                anyhow::anyhow!("the xz index at byte {index_at} does not match its blocks")
            })?;
        total = total
            .checked_add(uncompressed)
            .ok_or_else(|| anyhow::anyhow!("the xz streams add up to more than 2^64 bytes"))?;
        pos = stream_at;
        streams += 1;
    }
    Ok(total)
}

/// The blocks' total size on disk (each padded to four bytes) and their uncompressed size.
fn read_index(index: &[u8]) -> Result<(u64, u64), String> {
    let (body, crc) = index.split_at(index.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("is corrupt (CRC32)".into());
    }
    if body.first() != Some(&0) {
        return Err("does not start with the index indicator".into());
    }
    let mut at = 1;
    let records = varint(body, &mut at)?;
    let (mut blocks, mut uncompressed) = (0u64, 0u64);
    for _ in 0..records {
        let unpadded = varint(body, &mut at)?;
        let size = varint(body, &mut at)?;
        blocks = unpadded
            .checked_add(3)
            .map(|u| u & !3)
            .and_then(|u| blocks.checked_add(u))
            .ok_or("lists blocks larger than 2^64 bytes")?;
        uncompressed = uncompressed
            .checked_add(size)
            .ok_or("lists more than 2^64 uncompressed bytes")?;
    }
    if body[at..].iter().any(|&b| b != 0) || body.len() - at >= 4 {
        return Err("has bytes after its records".into());
    }
    Ok((blocks, uncompressed))
}

/// A multibyte integer: seven bits a byte, least significant first, at most nine bytes.
fn varint(b: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..9 {
        let byte = *b.get(*at).ok_or("ends inside a record")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("holds an integer longer than nine bytes".into())
}

/// What the index reader reads from: a file, or bytes in memory (the fuzz target's).
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, at)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        let bytes = usize::try_from(at)
            .ok()
            .and_then(|at| self.get(at..at.checked_add(buf.len())?))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

fn read_at(f: &(impl ReadAt + ?Sized), at: u64, n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0; n];
    f.read_exact_at(&mut buf, at)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn xz_file(parts: &[&[u8]], padding: usize) -> (tempfile::NamedTempFile, u64) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        for p in parts {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(p).unwrap();
            tmp.write_all(&e.finish().unwrap()).unwrap();
            tmp.write_all(&vec![0; padding]).unwrap();
        }
        let len = tmp.as_file().metadata().unwrap().len();
        (tmp, len)
    }

    #[test]
    fn sizes_come_from_every_streams_index() {
        let big = vec![7u8; 3 << 20];
        let (f, len) = xz_file(&[&big], 0);
        assert_eq!(uncompressed_size(f.as_file(), len).unwrap(), 3 << 20);
        let (f, len) = xz_file(&[b"hello", &big, b""], 8);
        assert_eq!(uncompressed_size(f.as_file(), len).unwrap(), 5 + (3 << 20));
    }

    #[test]
    fn truncated_or_damaged_files_are_refused() {
        let (f, len) = xz_file(&[b"some image bytes"], 0);
        assert!(uncompressed_size(f.as_file(), len - 1).is_err());
        let mut bytes = std::fs::read(f.path()).unwrap();
        let n = bytes.len();
        bytes[n - 20] ^= 0x55; // inside the index
        let mut g = tempfile::NamedTempFile::new().unwrap();
        g.write_all(&bytes).unwrap();
        assert!(uncompressed_size(g.as_file(), n as u64).is_err());
    }
}
