//! This machine's store: blobs by sha256, small JSON documents (action entries, toolchain
//! records, channels), and the locks that make one store safe to share between processes.
//! Its layout is [`super::layout`]'s, plus `git/` (bare clones of git sources, a fetch
//! cache), `tmp/` (work in progress) and `locks/` (advisory locks).
//!
//! Every write goes to `tmp/` first, is fsynced and then renamed into place, so a reader (or
//! a process killed halfway) never sees a partial blob or document. Worth copying: the
//! commit (`commit`) and the verifying read (`open_blob`) are the only ways in and out.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tempfile::NamedTempFile;

use super::sparse::{clone_or_copy, copy_sparse, hash_sparse_file};
use super::{Location, MAX_DOCUMENT, Object, ObjectKind, Storage, layout};
use crate::base::progress::{Counted, Progress};
use crate::base::{Digest, HashingReader, VerifyingReader};

/// A blob just written to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub digest: Digest,
    pub size: u64,
}

/// A file added with `cache import`.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub file: String,
    pub sha256: Digest,
    pub size: u64,
}

/// A store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    location: Location,
    /// Blobs whose file this process wrote or read through whole and verified: copied out
    /// without being hashed again, so a new image is hashed once, as it is stored.
    verified: Arc<Mutex<HashSet<Digest>>>,
}

/// A held advisory lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Store {
    /// Opens (creating if needed) the store at `root` and checks that it is writable, so a
    /// read-only or missing volume is reported up front rather than as a cache miss later.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for dir in [
            "blobs/sha256",
            "actions",
            "toolchains",
            "history",
            "latest",
            "git",
            "tmp",
            "locks",
        ] {
            let p = root.join(dir);
            fs::create_dir_all(&p)
                .with_context(|| format!("creating store directory {}", p.display()))?;
        }
        let probe = tempfile::NamedTempFile::new_in(root.join("tmp"))
            .with_context(|| format!("store {} is not writable", root.display()))?;
        drop(probe);
        Ok(Store {
            location: Location::local(&root),
            root,
            verified: Arc::default(),
        })
    }

    /// The store at `root` as it is, to read from: nothing is created or written.
    pub fn existing(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        if !root.join("blobs").is_dir() {
            bail!("{}: no store here (no blobs/ directory)", root.display());
        }
        Ok(Store {
            location: Location::local(&root),
            root,
            verified: Arc::default(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join(layout::blob(d))
    }

    /// Whether a blob is present (not verified; reads verify).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Removes a blob (a refused source archive); absent is fine.
    pub fn remove_blob(&self, d: &Digest) -> Result<()> {
        match fs::remove_file(self.blob_path(d)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing blob {d}"))
            }
            _ => Ok(()),
        }
    }

    /// Streams `r` into the store and returns its digest.
    pub fn put_reader(&self, r: impl Read) -> Result<Stored> {
        self.put_checked(r, None)
    }

    /// Streams `r` into the store only if it hashes to `expected`; otherwise nothing is stored.
    pub fn put_expected(&self, r: impl Read, expected: &Digest) -> Result<Stored> {
        self.put_checked(r, Some(expected))
    }

    /// Adds files to the store (sources for air-gapped machines), holding it shared so `gc`
    /// cannot take them before a recipe refers to them.
    pub fn import(&self, files: &[PathBuf]) -> Result<Vec<Imported>> {
        let _lock = self.lock_shared()?;
        files
            .iter()
            .map(|f| {
                let stored = self.put_file(f)?;
                Ok(Imported {
                    file: f.display().to_string(),
                    sha256: stored.digest,
                    size: stored.size,
                })
            })
            .collect()
    }

    /// Copies a file into the store.
    pub fn put_file(&self, path: &Path) -> Result<Stored> {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        self.put_reader(BufReader::with_capacity(1 << 20, f))
            .with_context(|| format!("storing {}", path.display()))
    }

    /// Moves a finished temporary file (from [`Store::temp_file`]) into the store.
    pub fn put_temp(&self, tmp: NamedTempFile) -> Result<Stored> {
        let f = File::open(tmp.path()).context("reopening a temporary file")?;
        let (digest, size) = hash_sparse_file(&f).context("hashing a temporary file")?;
        self.commit_blob(tmp, &digest)?;
        Ok(Stored { digest, size })
    }

    /// Stores bytes held in memory (small documents, logs).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Stored> {
        self.put_reader(bytes)
    }

    fn put_checked(&self, r: impl Read, expected: Option<&Digest>) -> Result<Stored> {
        let mut tmp = self.temp_file()?;
        // Zero blocks become holes, so a blob can be copied out sparse without reading it.
        let mut hashing = HashingReader::new(r);
        copy_sparse(&mut hashing, tmp.as_file_mut()).context("writing blob")?;
        let (digest, size) = hashing.finish();
        if let Some(expected) = expected
            && *expected != digest
        {
            bail!(
                "sha256 mismatch: expected {expected}, got {digest} ({size} bytes); nothing was stored"
            );
        }
        self.commit_blob(tmp, &digest)?;
        Ok(Stored { digest, size })
    }

    /// Puts a temporary file just hashed to `digest` in place as that blob. An existing copy
    /// is replaced by these bytes (the same ones, unless it was damaged), so the file there
    /// is known to be right and can be copied out without hashing it again.
    fn commit_blob(&self, tmp: NamedTempFile, digest: &Digest) -> Result<()> {
        self.commit(tmp, &self.blob_path(digest))?;
        self.mark_verified(digest);
        Ok(())
    }

    fn mark_verified(&self, d: &Digest) {
        self.verified.lock().expect("not poisoned").insert(*d);
    }

    fn is_verified(&self, d: &Digest) -> bool {
        self.verified.lock().expect("not poisoned").contains(d)
    }

    /// Opens a blob for reading; the reader fails at the end if the bytes do not match.
    pub fn open_blob(&self, d: &Digest) -> Result<VerifyingReader<BufReader<File>>> {
        let path = self.blob_path(d);
        let f = File::open(&path).with_context(|| format!("blob {d} is not in the store"))?;
        Ok(VerifyingReader::new(
            BufReader::with_capacity(1 << 20, f),
            *d,
            format!("blob {}", path.display()),
        ))
    }

    /// Opens a blob for a second reader (an upload that reads it in parts): checked whole
    /// against its name and `size` first, then rewound.
    pub fn verified_file(&self, d: &Digest, size: u64) -> Result<File> {
        let path = self.blob_path(d);
        let mut f = File::open(&path)
            .with_context(|| format!("{d} is not in the local store ({})", path.display()))?;
        let mut check = VerifyingReader::new(
            BufReader::with_capacity(1 << 20, &mut f),
            *d,
            format!("local store blob {}", path.display()),
        );
        let len = io::copy(&mut check, &mut io::sink())
            .with_context(|| format!("run `bootforge cache verify` on {}", self.root.display()))?;
        if len != size {
            bail!(
                "local store blob {} is {len} bytes, not the {size} the manifest lists",
                path.display()
            );
        }
        f.rewind()?;
        Ok(f)
    }

    /// Reads a whole (small) blob into memory, verified.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_blob(d)?.read_to_end(&mut out)?;
        self.mark_verified(d);
        Ok(out)
    }

    /// Copies a blob to `dest`, verified: the bytes go to a temporary file in the
    /// destination folder and are renamed into place only once the hash checks out. A blob
    /// this process stored or verified is not hashed again: it is cloned where the
    /// filesystem shares extents, else copied in the kernel, holes kept either way.
    pub fn export_blob(&self, d: &Digest, dest: &Path, mode: Option<u32>) -> Result<()> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut tmp = NamedTempFile::new_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let copied = if self.is_verified(d) {
            let src = File::open(self.blob_path(d))
                .with_context(|| format!("blob {d} is not in the store"))?;
            clone_or_copy(&src, tmp.as_file()).or_else(|_| {
                // Filesystems that copy_file_range cannot cross: through this process.
                let f = tmp.as_file_mut();
                f.set_len(0)?;
                f.rewind()?;
                let mut from = &src;
                from.rewind()?;
                copy_sparse(&mut BufReader::with_capacity(1 << 20, from), f).map(|_| ())
            })
        } else {
            copy_sparse(&mut self.open_blob(d)?, tmp.as_file_mut()).map(|_| ())
        };
        copied.with_context(|| format!("copying {d} to {}", dest.display()))?;
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(mode))?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(dest)
            .with_context(|| format!("renaming into {}", dest.display()))?;
        Ok(())
    }

    /// Reads a JSON document at a path relative to the root; `None` when absent.
    pub fn read_json<T: DeserializeOwned>(&self, rel: &str) -> Result<Option<T>> {
        let path = self.root.join(rel);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid document", path.display()))
                .map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Atomically writes a JSON document at a path relative to the root.
    pub fn write_json<T: Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(value)?;
        bytes.push(b'\n');
        let mut tmp = self.temp_file()?;
        tmp.write_all(&bytes)?;
        let dest = self.root.join(rel);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        self.commit(tmp, &dest)
    }

    /// A temporary file in the store's own `tmp/`, on the same filesystem as its destination;
    /// deleted on drop unless committed.
    pub fn temp_file(&self) -> Result<NamedTempFile> {
        NamedTempFile::new_in(self.root.join("tmp"))
            .context("creating a temporary file in the store")
    }

    /// A temporary directory in the store's `tmp/`, removed on drop.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.root.join("tmp"))
            .context("creating a temporary directory in the store")
    }

    /// fsyncs `tmp` and renames it to `dest`, then fsyncs the directory.
    fn commit(&self, tmp: NamedTempFile, dest: &Path) -> Result<()> {
        tmp.as_file()
            .sync_all()
            .context("syncing a temporary file")?;
        tmp.persist(dest)
            .with_context(|| format!("renaming into {}", dest.display()))?;
        if let Some(dir) = dest.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Takes a shared lock on the whole store: held by everything that adds to it, so `gc`
    /// (which takes it exclusively) never deletes what a running build is about to reference.
    pub fn lock_shared(&self) -> Result<Lock> {
        let f = self.lock_file("store")?;
        f.lock_shared().context("locking the store")?;
        Ok(Lock { _file: f })
    }

    /// Takes the store lock exclusively (for `gc`).
    pub fn lock_exclusive(&self) -> Result<Lock> {
        let f = self.lock_file("store")?;
        f.lock().context("locking the store exclusively")?;
        Ok(Lock { _file: f })
    }

    /// Takes a named exclusive lock (one action key, one git mirror), waiting for it.
    pub fn lock_named(&self, name: &str) -> Result<Lock> {
        let f = self.lock_file(name)?;
        f.lock()
            .with_context(|| format!("taking the lock {name}"))?;
        Ok(Lock { _file: f })
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let path = self.root.join("locks").join(format!("{name}.lock"));
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock {}", path.display()))
    }
}

impl Storage for Store {
    fn location(&self) -> &Location {
        &self.location
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        match fs::metadata(self.root.join(key)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}/{key}", self.root.display())),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.root.join(key);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut bytes = Vec::new();
        f.take(MAX_DOCUMENT + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            bail!(
                "{}: larger than {MAX_DOCUMENT} bytes, too large for a bootforge document",
                path.display()
            );
        }
        Ok(Some(bytes))
    }

    fn read_into(&self, key: &str, offset: u64, limit: u64, w: &mut dyn Write) -> Result<u64> {
        let path = self.root.join(key);
        let mut f =
            File::open(&path).with_context(|| format!("{} does not exist", path.display()))?;
        f.seek(io::SeekFrom::Start(offset))?;
        let n = io::copy(&mut f.take(limit), w)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(n)
    }

    fn put(&self, key: &str, bytes: Vec<u8>, _: ObjectKind, create_only: bool) -> Result<bool> {
        let dest = self.root.join(key);
        if create_only && dest.is_file() {
            return Ok(false);
        }
        let mut tmp = self.temp_file()?;
        tmp.write_all(&bytes)?;
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        self.commit(tmp, &dest)?;
        Ok(true)
    }

    fn put_file(
        &self,
        key: &str,
        file: Arc<File>,
        size: u64,
        _: ObjectKind,
        progress: Arc<Progress>,
    ) -> Result<usize> {
        let dest = self.root.join(key);
        let mut tmp = self.temp_file()?;
        let mut from = file.try_clone()?;
        from.rewind()?;
        let copied = io::copy(
            &mut from.take(size),
            &mut Counted::new(tmp.as_file_mut(), &progress),
        )?;
        if copied != size {
            bail!("{}: {copied} bytes to copy, not {size}", dest.display());
        }
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        self.commit(tmp, &dest)?;
        Ok(0)
    }

    fn list(&self, prefix: &str) -> Result<Option<Vec<Object>>> {
        // Walk the folder the prefix names (or is in), and keep the keys it starts.
        let dir = match prefix.rsplit_once('/') {
            Some((dir, _)) => self.root.join(dir),
            None => self.root.clone(),
        };
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) => {
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(&self.root)
                .expect("below the root");
            let key = rel.to_string_lossy().into_owned();
            if !key.starts_with(prefix) {
                continue;
            }
            let meta = entry.metadata()?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            out.push(Object {
                key,
                size: meta.len(),
                modified,
            });
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = store.put_bytes(b"hello").unwrap();
        assert_eq!(s.digest, Digest::of(b"hello"));
        assert_eq!(s.size, 5);
        assert_eq!(store.read_blob(&s.digest).unwrap(), b"hello");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn put_expected_refuses_mismatch_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store
            .put_expected(&b"tampered"[..], &Digest::of(b"original"))
            .unwrap_err();
        assert!(err.to_string().contains("mismatch"), "{err}");
        assert!(!store.has_blob(&Digest::of(b"tampered")));
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn exports_keep_zero_blocks_as_holes_and_bytes_exact() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let mut data = vec![0u8; 8 << 20];
        data[3 << 20] = 1;
        data.extend_from_slice(b"tail");
        let s = store.put_bytes(&data).unwrap();
        let dest = dir.path().join("x.img");
        store.export_blob(&s.digest, &dest, None).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), data);
        let allocated = fs::metadata(&dest).unwrap().blocks() * 512;
        assert!(
            allocated < (4 << 20),
            "{allocated} bytes allocated for an 8 MiB mostly-zero file"
        );
    }

    #[test]
    fn corrupt_blob_is_detected_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = store.put_bytes(b"hello").unwrap();
        fs::write(store.blob_path(&s.digest), b"jello").unwrap();
        // What this handle stored it trusts for its lifetime (one command); the store as
        // the next command opens it checks again.
        let store = Store::open(dir.path()).unwrap();
        assert!(store.read_blob(&s.digest).is_err());
        let dest = dir.path().join("out/x");
        assert!(store.export_blob(&s.digest, &dest, None).is_err());
        assert!(!dest.exists());
    }
}
