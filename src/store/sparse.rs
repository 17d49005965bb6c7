//! Sparse files: disk images are mostly holes, and a hole is neither written, read nor
//! copied when it can be left alone; it is hashed as the zeros it stands for.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use crate::base::{Digest, Hasher};

/// The data regions of `f` as `(start, end)` (`SEEK_DATA`/`SEEK_HOLE`): what is not in
/// one is a hole, zeros never written. A filesystem without holes reports one region.
fn data_regions(f: &File) -> io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let len = f.metadata()?.len();
    let mut regions = Vec::new();
    let mut at: i64 = 0;
    while (at as u64) < len {
        // SAFETY: lseek on an open descriptor; `copy_file_range` and `pread` take
        // explicit offsets, so moving this one disturbs no reader.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        regions.push((data as u64, hole as u64));
        at = hole;
    }
    Ok(regions)
}

/// The sha256 and size of a (sparse) file, without reading its holes: they hash as the
/// zeros they are, from memory, so an image that is mostly holes costs one hash pass.
pub(super) fn hash_sparse_file(f: &File) -> io::Result<(Digest, u64)> {
    use std::os::unix::fs::FileExt;
    static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
    let len = f.metadata()?.len();
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let zeros = |hasher: &mut Hasher, mut n: u64| {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            hasher.update(&ZEROS[..k as usize]);
            n -= k;
        }
    };
    let mut at = 0u64;
    for (start, end) in data_regions(f)? {
        zeros(&mut hasher, start - at);
        let mut pos = start;
        while pos < end {
            let want = (end - pos).min(buf.len() as u64) as usize;
            let n = f.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                return Err(io::Error::other("the file shrank while it was hashed"));
            }
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        at = end;
    }
    zeros(&mut hasher, len - at);
    Ok(hasher.finish())
}

/// `src` copied to the empty `dst` without passing through this process: a reflink
/// (`FICLONE`) where the filesystem can share extents (btrfs, XFS), else `copy_file_range`
/// over the data regions only, so a sparse image stays sparse.
pub(super) fn clone_or_copy(src: &File, dst: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (s, d) = (src.as_raw_fd(), dst.as_raw_fd());
    // SAFETY: both descriptors are open for the duration of the call.
    if unsafe { libc::ioctl(d, libc::FICLONE, s) } == 0 {
        return Ok(());
    }
    for (start, end) in data_regions(src)? {
        let (mut from, mut to) = (start as i64, start as i64);
        while (from as u64) < end {
            // SAFETY: the offsets are ours; the kernel copies between the open files.
            let n = unsafe {
                libc::copy_file_range(s, &mut from, d, &mut to, (end - from as u64) as usize, 0)
            };
            match n {
                n if n > 0 => {}
                0 => return Err(io::Error::other("the blob ended while it was copied")),
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }
    dst.set_len(src.metadata()?.len())
}

/// Copies `r` into `f`, seeking over all-zero MiB blocks instead of writing them, so disk
/// images keep their holes (a 64 MiB boot partition is mostly empty). Returns the length.
pub(super) fn copy_sparse(r: &mut impl Read, f: &mut File) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..])? {
                0 => break,
                m => n += m,
            }
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            f.seek(io::SeekFrom::Current(n as i64))?;
        } else {
            f.write_all(&buf[..n])?;
        }
        len += n as u64;
    }
    // A trailing hole needs the length set explicitly.
    f.set_len(len)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_sparse_file_hashes_as_its_bytes_without_reading_its_holes() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.img");
        let f = File::create(&path).unwrap();
        f.set_len(5 << 20).unwrap(); // a hole at both ends
        f.write_at(b"in the middle", 3 << 20).unwrap();
        f.sync_all().unwrap();
        let bytes = fs::read(&path).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(hash_sparse_file(&f).unwrap(), (Digest::of(&bytes), 5 << 20));
    }
}
