//! `path` sources: a local directory, identified by the hash of its contents.

use std::fs;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use walkdir::WalkDir;

use crate::base::{Digest, Hasher, hash_reader};

/// Entries skipped in `path` sources: version-control metadata is not source.
fn skipped(name: &std::ffi::OsStr) -> bool {
    name == ".git"
}

fn walk(dir: &Path) -> impl Iterator<Item = walkdir::Result<walkdir::DirEntry>> {
    WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !skipped(e.file_name()))
}

/// A digest of a directory tree: each entry's relative path, kind, executable bit, and
/// content (or link target), in sorted order. Timestamps and owners do not count.
pub fn hash_tree(dir: &Path) -> Result<Digest> {
    let mut h = Hasher::new();
    for entry in walk(dir) {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let rel = entry.path().strip_prefix(dir).expect("below dir");
        let rel = rel.to_string_lossy();
        let ft = entry.file_type();
        let record = if ft.is_symlink() {
            let target = fs::read_link(entry.path())?;
            format!("link {rel} {}", target.display())
        } else if ft.is_dir() {
            format!("dir {rel}")
        } else {
            let meta = entry.metadata()?;
            let exec = meta.permissions().mode() & 0o111 != 0;
            let f = fs::File::open(entry.path())
                .with_context(|| format!("reading {}", entry.path().display()))?;
            let (d, n) = hash_reader(BufReader::new(f))?;
            format!("file {rel} {exec} {n} {}", d.hex())
        };
        // Length-prefixed so no two different trees produce the same byte stream.
        h.update(&(record.len() as u64).to_le_bytes());
        h.update(record.as_bytes());
    }
    Ok(h.finish().0)
}

/// Copies a directory tree (without `.git`) into `dest`.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    for entry in walk(src) {
        let entry = entry.with_context(|| format!("reading {}", src.display()))?;
        let rel = entry.path().strip_prefix(src).expect("below src");
        let target = dest.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            fs::create_dir_all(&target)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_content_and_names_not_times() {
        let a = tempfile::tempdir().unwrap();
        fs::create_dir(a.path().join("sub")).unwrap();
        fs::write(a.path().join("sub/f"), b"x").unwrap();
        let h1 = hash_tree(a.path()).unwrap();
        filetime_touch(&a.path().join("sub/f"));
        assert_eq!(hash_tree(a.path()).unwrap(), h1);
        fs::write(a.path().join("sub/f"), b"y").unwrap();
        assert_ne!(hash_tree(a.path()).unwrap(), h1);

        let b = tempfile::tempdir().unwrap();
        copy_tree(a.path(), b.path()).unwrap();
        assert_eq!(hash_tree(b.path()).unwrap(), hash_tree(a.path()).unwrap());
    }

    fn filetime_touch(p: &Path) {
        let f = fs::File::options().write(true).open(p).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    }
}
