//! Deterministic `.tar.gz`: sorted entries, fixed mtime, uid/gid 0 without names, fixed
//! modes, and a gzip header without time or file name.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Result;
use flate2::{Compression, GzBuilder};

use crate::base::Digest;
use crate::store::{Store, Stored};

/// One file of an archive, its bytes in the store.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub blob: Digest,
    pub size: u64,
    pub mode: u32,
}

/// Writes `entries` (plus their parent directories) as a tar.gz into the store.
pub fn write_tar_gz(store: &Store, entries: &[Entry], mtime: i64) -> Result<Stored> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let dirs: BTreeSet<String> = sorted
        .iter()
        .flat_map(|e| {
            let parts: Vec<&str> = e.path.split('/').collect();
            (1..parts.len()).map(move |n| parts[..n].join("/"))
        })
        .collect();

    let tmp = store.temp_file()?;
    let gz = GzBuilder::new().mtime(0).write(tmp, Compression::best());
    let mut tar = tar::Builder::new(gz);
    let mtime = mtime.max(0) as u64;
    for dir in &dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
        tar.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    for e in sorted {
        let mut h = header(tar::EntryType::Regular, e.mode, e.size, mtime);
        tar.append_data(&mut h, &e.path, store.open_blob(&e.blob)?)?;
    }
    let gz = tar.into_inner()?;
    let mut tmp = gz.finish()?;
    tmp.flush()?;
    store.put_temp(tmp)
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
    h
}
