//! A store shared by many machines: this machine's [`Store`] first, then a remote one (a
//! bucket prefix, a directory, or a read-only HTTPS copy) that builders fill and packagers
//! read. Local first, remote second; blobs go up before the entry naming them, so a reader
//! never sees an entry whose outputs are missing.
//!
//! Races are harmless by construction: two machines running the same action make the same
//! bytes (builds are reproducible) under the same key, so whichever entry lands is right. Two
//! *different* results for one key mean a recipe is not reproducible: that is an error, never
//! a silent overwrite.
//!
//! Trust: anyone who can write to the bucket can poison it. With a signing key a builder
//! signs each entry's *statement*, the action key and the blobs it names (its provenance is
//! informative and unsigned), and each toolchain record's bytes (a toolchain runs every
//! build: a forged one would poison them all); with a verify key a reader takes only entries
//! and records whose signature verifies, and treats any other as a miss.

use std::io::{self, Write};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CorruptBlob, Location, ObjectKind, Storage, Store, layout, read_blob_into};
use crate::base::progress::Progress;
use crate::base::sign::{Signer, Verifier};
use crate::base::{Digest, Hasher};

/// Where an action's result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// This machine's store had it.
    Local,
    /// The shared store had it: pulled, nothing run.
    Remote,
    /// Run here.
    Built,
}

/// An action cache entry: a JSON document that names the blobs a reader needs with it.
pub trait Entry: Serialize + DeserializeOwned {
    /// The blobs the entry's result is made of (not those of how it was made: a packager
    /// needs no builder's toolchain or source tarball).
    fn blobs(&self) -> Vec<Digest>;

    /// Blobs pushed beside the entry, when this store has them, but never pulled with it:
    /// what a `publish` to the shared prefix would otherwise send (a build's provenance).
    fn companions(&self) -> Vec<Digest> {
        Vec::new()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared({})", self.location())
    }
}

/// The remote half of a shared store, and how far it is trusted.
pub struct Shared {
    remote: Box<dyn Storage>,
    /// Never upload (`--remote-read-only`; always for HTTPS).
    read_only: bool,
    /// A remote that fails is worked around, with a warning (`--remote-optional`).
    optional: bool,
    /// Sign what is pushed.
    signer: Option<Signer>,
    /// Take only entries signed by this key.
    verifier: Option<Verifier>,
    /// Blobs found corrupt in the remote: a push sends them again whatever their size.
    corrupt: std::sync::Mutex<std::collections::HashSet<Digest>>,
}

/// The statement a signature covers: the action key and the blobs it names, in order.
fn statement(key: &str, blobs: &[Digest]) -> Vec<u8> {
    let mut s = format!("bootforge action {key}\n");
    for d in blobs {
        s.push_str(&format!("{d}\n"));
    }
    s.into_bytes()
}

impl Shared {
    pub fn new(
        remote: Box<dyn Storage>,
        read_only: bool,
        optional: bool,
        signer: Option<Signer>,
        verifier: Option<Verifier>,
    ) -> Shared {
        let read_only = read_only || matches!(remote.location(), Location::Https { .. });
        Shared {
            remote,
            read_only,
            optional,
            signer,
            verifier,
            corrupt: Default::default(),
        }
    }

    /// `result`, or (for an optional remote) a warning and `fallback`.
    pub fn tolerate<T>(&self, result: Result<T>, fallback: T) -> Result<T> {
        match result {
            Err(e) if self.optional => {
                eprintln!(
                    "warning: the shared store {} failed ({e:#}); carrying on with this machine's \
                     store (--remote-optional)",
                    self.location()
                );
                Ok(fallback)
            }
            other => other,
        }
    }

    /// Where the shared store is.
    pub fn location(&self) -> &Location {
        self.remote.location()
    }

    /// The storage itself (to publish to the same prefix, or read a toolchain record).
    pub fn storage(&self) -> &dyn Storage {
        self.remote.as_ref()
    }

    /// The remote's entry at `key` (a layout key), pulled into `local` with every blob it
    /// names (each verified as it streams), and then recorded there too. `None` on a miss;
    /// an entry that fails its signature, does not parse, or names a corrupt blob is a miss
    /// with a warning, never used. An unreachable remote is an error.
    pub fn pull<T: Entry>(&self, local: &Store, key: &str, action: &str) -> Result<Option<T>> {
        let Some(bytes) = self.remote.get(key)? else {
            return Ok(None);
        };
        let at = format!("{}/{key}", self.location());
        let entry: T = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("warning: {at} is not an action entry ({e}); ignoring it");
                return Ok(None);
            }
        };
        if let Some(v) = &self.verifier {
            let sig = self.remote.get(&layout::signature(key))?;
            let checked = match &sig {
                None => Err(anyhow::anyhow!("not signed")),
                Some(sig) => v.verify(
                    &statement(action, &entry.blobs()),
                    &String::from_utf8_lossy(sig),
                    "its signature",
                ),
            };
            if let Err(e) = checked {
                eprintln!("warning: ignoring {at}: {e:#}");
                return Ok(None);
            }
        }
        for d in entry.blobs() {
            let Some(size) = self.remote.head(&layout::blob(&d))? else {
                eprintln!("warning: {at} names {d}, which is not there; not using it");
                return Ok(None);
            };
            match local.pull_blob(self.remote.as_ref(), &d, size) {
                Ok(()) => {}
                Err(e) if e.downcast_ref::<CorruptBlob>().is_some() => {
                    eprintln!("warning: {e:#}; not using {at}");
                    self.corrupt.lock().expect("corrupt").insert(d);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        local.write_json(key, &entry)?;
        Ok(Some(entry))
    }

    /// Makes `entry` (recorded locally at `key`) available to other machines: its blobs
    /// first, then the entry and its signature. An entry already there naming the same
    /// blobs is left as it is (re-signed when it does not verify with this key); one naming
    /// other blobs is a reproducibility failure.
    pub fn push<T: Entry>(&self, local: &Store, key: &str, action: &str, entry: &T) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let blobs = entry.blobs();
        let there: Option<T> = match self.remote.get(key)? {
            Some(bytes) => serde_json::from_slice(&bytes).ok(),
            None => None,
        };
        if let Some(there) = &there
            && there.blobs() != blobs
        {
            bail!(
                "{}/{key} records other outputs for the same inputs: the action is not \
                 reproducible (there: {}; here: {}). Fix the recipe, then delete the entry",
                self.location(),
                describe(&there.blobs()),
                describe(&blobs)
            );
        }
        for d in &blobs {
            self.push_blob(local, d)?;
        }
        for d in entry.companions().iter().filter(|d| local.has_blob(d)) {
            self.push_blob(local, d)?;
        }
        let stmt = statement(action, &blobs);
        let signature = match &self.signer {
            Some(s) => Some(s.sign(&stmt, &format!("bootforge action {action}"))?),
            None => None,
        };
        if there.is_none() {
            let mut bytes = serde_json::to_vec_pretty(entry)?;
            bytes.push(b'\n');
            self.remote.put(key, bytes, ObjectKind::json(true), true)?;
        }
        if let (Some(sig), Some(signer)) = (signature, &self.signer) {
            let skey = layout::signature(key);
            let current = self.remote.get(&skey)?;
            if !current.is_some_and(|c| signer.signed(&stmt, &c)) {
                self.remote
                    .put(&skey, sig.into_bytes(), ObjectKind::text(false), false)?;
            }
        }
        Ok(())
    }

    /// Uploads one local blob unless the remote has it whole.
    fn push_blob(&self, local: &Store, d: &Digest) -> Result<()> {
        let key = layout::blob(d);
        let size = std::fs::metadata(local.blob_path(d))
            .with_context(|| format!("{d} is not in the local store"))?
            .len();
        let repair = self.corrupt.lock().expect("corrupt").contains(d);
        if !repair && self.remote.head(&key)? == Some(size) {
            return Ok(());
        }
        let file = local.verified_file(d, size)?;
        let progress = Arc::new(Progress::new("pushed", size));
        let kind = ObjectKind {
            content_type: "application/octet-stream",
            immutable: true,
        };
        self.remote
            .put_file(&key, Arc::new(file), size, kind, progress.clone())
            .with_context(|| format!("pushing {d} to {}", self.location()))?;
        progress.finish();
        Ok(())
    }

    /// Pushes a local document as it is (a toolchain record), after its blobs, signed (its
    /// bytes) when there is a key. One already there is kept: signed only if it is this one.
    pub fn push_document(&self, local: &Store, key: &str, blobs: &[Digest]) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let Some(bytes) = local.get(key)? else {
            return Ok(());
        };
        for d in blobs {
            self.push_blob(local, d)?;
        }
        let there = self.remote.get(key)?;
        if there.is_none() {
            self.remote
                .put(key, bytes.clone(), ObjectKind::json(false), false)?;
        }
        if let Some(signer) = &self.signer
            && there.as_ref().is_none_or(|t| *t == bytes)
        {
            let skey = layout::signature(key);
            let current = self.remote.get(&skey)?;
            if !current.is_some_and(|c| signer.signed(&bytes, &c)) {
                let sig = signer.sign(&bytes, &format!("bootforge document {key}"))?;
                self.remote
                    .put(&skey, sig.into_bytes(), ObjectKind::text(false), false)?;
            }
        }
        Ok(())
    }

    /// The remote's document at `key` (a toolchain record), as it is: with a verify key only
    /// when its bytes are signed by it (any other is a miss, with a warning naming it).
    pub fn get_document(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = self.remote.get(key)? else {
            return Ok(None);
        };
        if let Some(v) = &self.verifier {
            let checked = match self.remote.get(&layout::signature(key))? {
                None => Err(anyhow::anyhow!("not signed")),
                Some(sig) => v.verify(&bytes, &String::from_utf8_lossy(&sig), "its signature"),
            };
            if let Err(e) = checked {
                eprintln!("warning: ignoring {}/{key}: {e:#}", self.location());
                return Ok(None);
            }
        }
        Ok(Some(bytes))
    }
}

fn describe(blobs: &[Digest]) -> String {
    blobs
        .iter()
        .map(|d| d.short(12))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Copies blob `d` (of `size` bytes) from `from` into this store, verified as it
    /// streams; a blob already here is left alone.
    pub fn pull_blob(&self, from: &dyn Storage, d: &Digest, size: u64) -> Result<()> {
        if self.has_blob(d) {
            return Ok(());
        }
        let mut tmp = self.temp_file()?;
        {
            let mut w = io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            read_blob_into(from, d, size, 0, Hasher::new(), &mut w)?;
            w.flush()?;
        }
        self.put_temp(tmp)?;
        Ok(())
    }
}
