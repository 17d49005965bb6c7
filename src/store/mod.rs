//! Stores: the content-addressed layout ([`layout`]) wherever it lives, behind one interface.
//!
//! - [`Store`] is this machine's store: a directory with blobs verified on every read,
//!   documents written by fsync-then-rename, and the locks that let processes share it.
//! - An S3 bucket prefix ([`s3`]: AWS, Garage, MinIO, s3s …) and a read-only HTTPS copy
//!   ([`http`]) hold the same layout.
//!
//! - [`Shared`] puts one of them behind this machine's store, for fleets: pulls verified as
//!   they stream, pushes blobs first, signatures on what is pushed.
//!
//! All three implement [`Storage`], and [`open`] turns a [`Location`] (`./cache`,
//! `s3://bucket/prefix`, `https://host/prefix`) into one. A blob read through
//! [`read_blob_into`] is checked against its sha256 as it streams, whatever the backend; an
//! error names the location and the key, and is never turned into a miss.

pub mod http;
mod latest;
pub mod layout;
mod local;
mod location;
mod maintenance;
pub mod s3;
mod shared;
mod sparse;

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::base::progress::Progress;
use crate::base::{Digest, Hasher, HashingWriter};
pub use latest::{Produced, ProducedFile};
pub use local::{Imported, Lock, Store, Stored};
pub use location::Location;
pub use maintenance::{BlobInfo, GcReport, VerifyReport};
pub use shared::{Entry, Origin, Shared};

/// The largest document (manifest, channel, signature, view, action entry) read from a
/// store. Anyone who can write to a bucket can forge these, so a reader never holds more
/// than this in memory.
pub const MAX_DOCUMENT: u64 = 16 << 20;

/// What made an entry or an artifact: the three actions whose results the store records.
/// (Serialised lowercase: `build`, `embed`, `package`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Build,
    Embed,
    Package,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Build => "build",
            Kind::Embed => "embed",
            Kind::Package => "package",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object as listed.
#[derive(Debug, Clone)]
pub struct Object {
    /// The key relative to the store's root.
    pub key: String,
    pub size: u64,
    /// Last modified, seconds since the epoch.
    pub modified: Option<i64>,
}

/// How an object is stored: what HTTP clients and caches are told about it.
#[derive(Debug, Clone, Copy)]
pub struct ObjectKind<'a> {
    pub content_type: &'a str,
    /// Blobs and manifests never change; pointers and views must be revalidated.
    pub immutable: bool,
}

impl ObjectKind<'_> {
    /// A JSON document: immutable (a manifest) or a pointer or view that changes.
    pub fn json(immutable: bool) -> ObjectKind<'static> {
        ObjectKind {
            content_type: "application/json",
            immutable,
        }
    }

    /// Text: sums and signatures.
    pub fn text(immutable: bool) -> ObjectKind<'static> {
        ObjectKind {
            content_type: "text/plain; charset=utf-8",
            immutable,
        }
    }

    /// The `Cache-Control` a public server should send.
    pub fn cache_control(&self) -> &'static str {
        if self.immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }
    }
}

/// A store, wherever it is. Keys are [`layout`] keys, relative to the store's root.
pub trait Storage: Send + Sync {
    /// Where it is, for messages.
    fn location(&self) -> &Location;

    /// The URL anonymous readers reach the store's root at, when there is one to derive.
    fn public_base(&self) -> Option<String> {
        None
    }

    /// The object's size, or `None` when there is no object at `key`.
    fn head(&self, key: &str) -> Result<Option<u64>>;

    /// A whole document of at most [`MAX_DOCUMENT`] bytes, or `None` when absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Streams the object's bytes `[offset, offset + limit)` into `w` (a store that sends
    /// more is an error, so it cannot fill a disk); returns the bytes written.
    fn read_into(&self, key: &str, offset: u64, limit: u64, w: &mut dyn Write) -> Result<u64>;

    /// Whether large reads are faster as ranges fetched side by side (a bucket: yes; a
    /// local disk, or an HTTPS server that may not honour ranges: no).
    fn parallel_ranges(&self) -> bool {
        false
    }

    /// Writes a small object whole. With `create_only`, an object already there is left
    /// alone; returns whether it was written. Correctness never depends on it: keys written
    /// create-only are content addresses, so a second write puts the same bytes.
    fn put(&self, key: &str, bytes: Vec<u8>, kind: ObjectKind, create_only: bool) -> Result<bool>;

    /// Writes `size` bytes of `file` (already verified by the caller) at `key`, replacing
    /// what is there, counting them into `progress`; returns the number of parts it went up
    /// in (0: one request).
    fn put_file(
        &self,
        key: &str,
        file: Arc<File>,
        size: u64,
        kind: ObjectKind,
        progress: Arc<Progress>,
    ) -> Result<usize>;

    /// Every object under `prefix`, or `None` where the store cannot be listed (HTTPS).
    fn list(&self, prefix: &str) -> Result<Option<Vec<Object>>>;
}

/// How remote stores are reached: what the configuration says beyond the location.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// Path-style S3 addressing; `None`: when the endpoint is not AWS's.
    pub path_style: Option<bool>,
    /// Keep the AWS SDK's own retry settings (`AWS_MAX_ATTEMPTS` is set) instead of ours.
    pub sdk_retries: bool,
    /// Requests in flight at once (blobs and multipart parts together).
    pub parallel: usize,
}

/// What a store is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only read: a local directory must exist, and nothing is created in it.
    Read,
    /// Written to: a local directory is created as a store if missing.
    Write,
}

/// Opens the store at `location`: a local directory, a bucket prefix (checked to be
/// reachable), or an HTTPS base URL.
pub fn open(location: &Location, remote: &Remote, access: Access) -> Result<Box<dyn Storage>> {
    Ok(match location {
        Location::Local { path } if access == Access::Read => Box::new(Store::existing(path)?),
        Location::Local { path } => Box::new(Store::open(path)?),
        Location::S3 { bucket, prefix } => Box::new(s3::S3Store::connect(
            location.clone(),
            bucket,
            prefix,
            remote,
        )?),
        Location::Https { base } => Box::new(http::HttpStore::new(location.clone(), base)),
    })
}

/// A blob whose bytes are not the ones its name says: the copy in the store is corrupt.
#[derive(Debug)]
pub struct CorruptBlob {
    pub at: String,
    pub got: Digest,
    pub got_size: u64,
    pub expected: Digest,
    pub size: u64,
}

impl std::fmt::Display for CorruptBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: got {} bytes with sha256 {}, expected {} ({} bytes): the store's copy is corrupt",
            self.at, self.got_size, self.got, self.expected, self.size
        )
    }
}

impl std::error::Error for CorruptBlob {}

/// Streams blob `d` (of `size` bytes) from `storage` into `w`, resuming after `offset`
/// bytes whose hash `prefix` already holds, and checks the whole against `d` (a mismatch
/// is a [`CorruptBlob`]). The one verifying path for blobs read from any store, as
/// [`Store::open_blob`]'s reader is for the local one.
pub fn read_blob_into(
    storage: &dyn Storage,
    d: &Digest,
    size: u64,
    offset: u64,
    prefix: Hasher,
    w: &mut dyn Write,
) -> Result<u64> {
    let key = layout::blob(d);
    let mut hashing = HashingWriter::resume(w, prefix);
    // A download killed after its last byte but before its rename has nothing left to
    // read: an empty range past the end is an error to S3 (416), so none is asked for.
    let sent = if offset < size {
        read_ranges(storage, &key, offset, size - offset, &mut hashing)?
    } else {
        0
    };
    let (_, got, got_size) = hashing.finish();
    if got != *d || got_size != size {
        return Err(CorruptBlob {
            at: format!("{}/{key}", storage.location()),
            got,
            got_size,
            expected: *d,
            size,
        }
        .into());
    }
    Ok(sent)
}

/// The size of the ranges a large blob is fetched in, and how many are in flight at once
/// (the aws CLI's 8 MiB parts; it runs 10). One stream is limited by one connection's
/// round trips and by how fast the server feeds one request; measured against s3s-fs on
/// this 2-core machine, 8 in flight beat 4 (`ci/bench.sh`).
const RANGE: u64 = 8 << 20;
const CONNECTIONS: u64 = 8;
/// Ranges held ahead of the one being written: memory stays under this many ranges
/// (96 MiB) however slow the first one is.
const WINDOW: u64 = CONNECTIONS + 4;

/// Reads `len` bytes of `key` from `offset` into `w`, in order. Small reads are one
/// request; from two ranges up, [`CONNECTIONS`] threads fetch [`RANGE`]-sized ranges while
/// this one writes them in order (so `w` still sees one stream: hashing, resuming and
/// progress work as for one request), never more than [`WINDOW`] ahead.
fn read_ranges(
    storage: &dyn Storage,
    key: &str,
    offset: u64,
    len: u64,
    w: &mut dyn Write,
) -> Result<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Condvar, Mutex, mpsc};

    let ranges = len.div_ceil(RANGE);
    if ranges < 2 || !storage.parallel_ranges() {
        return storage.read_into(key, offset, len, w);
    }
    let next = AtomicU64::new(0);
    // (ranges written so far, stop): the workers wait on it to stay within the window.
    let state = (Mutex::new((0u64, false)), Condvar::new());
    let (tx, rx) = mpsc::channel::<(u64, Result<Vec<u8>>)>();
    std::thread::scope(|s| {
        for _ in 0..CONNECTIONS.min(ranges) {
            let (tx, next, state) = (tx.clone(), &next, &state);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ranges {
                        return;
                    }
                    {
                        let (lock, cv) = state;
                        let mut st = lock.lock().expect("not poisoned");
                        while i >= st.0 + WINDOW && !st.1 {
                            st = cv.wait(st).expect("not poisoned");
                        }
                        if st.1 {
                            return;
                        }
                    }
                    let start = offset + i * RANGE;
                    let n = RANGE.min(offset + len - start);
                    let mut buf = Vec::with_capacity(n as usize);
                    let got = storage.read_into(key, start, n, &mut buf).map(|_| buf);
                    if tx.send((i, got)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut in_order = || -> Result<u64> {
            let mut pending = std::collections::BTreeMap::new();
            let (mut done, mut sent) = (0u64, 0u64);
            for (i, got) in &rx {
                pending.insert(i, got);
                while let Some(got) = pending.remove(&done) {
                    let buf = got?;
                    w.write_all(&buf)?;
                    sent += buf.len() as u64;
                    done += 1;
                    let (lock, cv) = &state;
                    lock.lock().expect("not poisoned").0 = done;
                    cv.notify_all();
                }
            }
            Ok(sent)
        };
        let result = in_order();
        if result.is_err() {
            let (lock, cv) = &state;
            lock.lock().expect("not poisoned").1 = true;
            cv.notify_all();
        }
        result
    })
}

/// A sink that only hashes, for resuming a download from what is already on disk.
pub fn hash_file_prefix(f: &mut File) -> io::Result<Hasher> {
    let mut h = HashingWriter::new(io::sink());
    io::copy(f, &mut h)?;
    let (_, hasher) = h.into_parts();
    Ok(hasher)
}
