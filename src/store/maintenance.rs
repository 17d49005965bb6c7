//! Listing, verifying and garbage-collecting a store.
//!
//! References are found generically: any string `sha256:<hex>` inside a root document
//! (`actions/`, `toolchains/`, `channels/`, `latest/`) or inside a JSON blob reachable from one (a
//! manifest) keeps that blob alive. New document kinds therefore need no changes here.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::Store;
use crate::base::{Digest, hash_reader};

const ROOT_DIRS: [&str; 4] = ["actions", "toolchains", "channels", "latest"];

/// JSON blobs larger than this are not scanned for references (manifests are small).
const MAX_SCANNED_BLOB: u64 = 4 << 20;

/// One blob and what refers to it.
#[derive(Debug, Serialize)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    /// Labels of what refers to it, e.g. `ipxe: bin/undionly.kpxe`.
    pub referenced_by: Vec<String>,
}

/// The result of `cache verify`.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    /// Blobs whose content no longer matches their name.
    pub corrupt: Vec<String>,
    /// Documents that are unreadable, or that refer to a blob that is absent.
    pub broken_documents: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.corrupt.is_empty() && self.broken_documents.is_empty()
    }
}

/// The result of `cache gc`.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub blobs_kept: usize,
    pub blobs_removed: usize,
    pub bytes_removed: u64,
    pub temp_entries_removed: usize,
}

impl Store {
    /// Every blob with its size and what refers to it, sorted by digest.
    pub fn list_blobs(&self) -> Result<Vec<BlobInfo>> {
        let labels = self.reference_labels()?;
        let mut out = Vec::new();
        for (digest, size) in self.blob_files()? {
            out.push(BlobInfo {
                digest,
                size,
                referenced_by: labels.get(&digest).cloned().unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Re-hashes every blob and checks every document's references.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for (digest, size) in self.blob_files()? {
            let f = fs::File::open(self.blob_path(&digest))?;
            let (actual, _) = hash_reader(io::BufReader::with_capacity(1 << 20, f))?;
            report.blobs_checked += 1;
            report.bytes_checked += size;
            if actual != digest {
                report
                    .corrupt
                    .push(format!("{digest} (content hashes to {actual})"));
            }
        }
        for (label, doc) in self.root_documents()? {
            match doc {
                Err(e) => report.broken_documents.push(format!("{label}: {e:#}")),
                Ok(value) => {
                    let mut refs = Vec::new();
                    collect_refs(&without_provenance(&value), None, &mut refs);
                    for (d, _) in refs {
                        if !self.has_blob(&d) {
                            report
                                .broken_documents
                                .push(format!("{label}: refers to missing blob {d}"));
                        }
                    }
                }
            }
        }
        Ok(report)
    }

    /// Removes every blob that nothing refers to, plus leftovers in `tmp/`. `extra_roots` are
    /// kept too (e.g. source tarballs pinned by recipes but not yet built).
    pub fn gc(&self, extra_roots: &BTreeSet<Digest>) -> Result<GcReport> {
        let _lock = self.lock_exclusive()?;
        let mut report = GcReport::default();
        let mut live: BTreeSet<Digest> = self.reference_labels()?.into_keys().collect();
        live.extend(extra_roots.iter().copied());
        for (digest, size) in self.blob_files()? {
            if live.contains(&digest) {
                report.blobs_kept += 1;
            } else {
                fs::remove_file(self.blob_path(&digest))
                    .with_context(|| format!("removing blob {digest}"))?;
                report.blobs_removed += 1;
                report.bytes_removed += size;
            }
        }
        // With the exclusive lock held no writer is active, so everything in tmp/ is an orphan
        // of a killed process, or the writability probe of a process opening the store just
        // now (which removes its own, so one may vanish under us).
        let tmp = self.root().join("tmp");
        for entry in fs::read_dir(&tmp).with_context(|| format!("reading {}", tmp.display()))? {
            let path = entry?.path();
            let res = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match res {
                Ok(()) => report.temp_entries_removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        Ok(report)
    }

    fn blob_files(&self) -> Result<Vec<(Digest, u64)>> {
        let dir = self.root().join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            let Ok(digest) = Digest::parse(&name.to_string_lossy()) else {
                continue;
            };
            out.push((digest, entry.metadata()?.len()));
        }
        out.sort();
        Ok(out)
    }

    /// Root documents by label (`actions/<key>.json`), parsed or with their parse error.
    fn root_documents(&self) -> Result<Vec<(String, Result<Value>)>> {
        let mut docs = Vec::new();
        for dir in ROOT_DIRS {
            let path = self.root().join(dir);
            if !path.is_dir() {
                continue;
            }
            let mut names: Vec<_> = fs::read_dir(&path)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            names.sort();
            for p in names {
                let label = format!("{dir}/{}", file_name(&p));
                let parsed = fs::read(&p)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| serde_json::from_slice(&b).map_err(Into::into));
                docs.push((label, parsed));
            }
        }
        Ok(docs)
    }

    /// Every live digest with labels naming what refers to it.
    fn reference_labels(&self) -> Result<BTreeMap<Digest, Vec<String>>> {
        let mut labels: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        let mut queue: Vec<(String, Value)> = Vec::new();
        for (label, doc) in self.root_documents()? {
            // An unreadable document protects nothing, but must not stop gc from reporting it.
            if let Ok(value) = doc {
                let owner = value
                    .get("recipe")
                    .or_else(|| value.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or(label);
                queue.push((owner, value));
            }
        }
        let mut scanned = BTreeSet::new();
        while let Some((owner, value)) = queue.pop() {
            let mut refs = Vec::new();
            collect_refs(&value, None, &mut refs);
            for (d, name) in refs {
                let label = match name {
                    Some(n) => format!("{owner}: {n}"),
                    None => owner.clone(),
                };
                labels.entry(d).or_default().push(label);
                if scanned.insert(d)
                    && let Some(child) = self.json_blob(&d)
                {
                    queue.push((format!("{owner}: {d}"), child));
                }
            }
        }
        for v in labels.values_mut() {
            v.sort();
            v.dedup();
        }
        Ok(labels)
    }

    fn json_blob(&self, d: &Digest) -> Option<Value> {
        let path = self.blob_path(d);
        let len = fs::metadata(&path).ok()?.len();
        if len > MAX_SCANNED_BLOB {
            return None;
        }
        let bytes = fs::read(&path).ok()?;
        if bytes.first() != Some(&b'{') {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    }
}

/// What a document needs of the store: itself without the parts that say how its result was
/// made (`inputs`, `provenance`) or what is inside a medium (`contents`). Those name blobs
/// only the machine that made it may have (a toolchain rootfs, a source tarball), and an
/// entry pulled from a shared store rightly comes without them.
fn without_provenance(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "inputs" | "provenance" | "contents"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Collects `sha256:` strings, each with the `name` of the object that holds it, if any.
fn collect_refs(v: &Value, name: Option<&str>, out: &mut Vec<(Digest, Option<String>)>) {
    match v {
        Value::String(s) if s.starts_with("sha256:") => {
            if let Ok(d) = Digest::parse(s) {
                out.push((d, name.map(str::to_owned)));
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, name, out)),
        Value::Object(map) => {
            let inner = map.get("name").and_then(Value::as_str).or(name);
            map.values().for_each(|i| collect_refs(i, inner, out));
        }
        _ => {}
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gc_keeps_referenced_blobs_and_manifest_children() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = store.put_bytes(b"kept").unwrap().digest;
        let child = store.put_bytes(b"child").unwrap().digest;
        let manifest = serde_json::to_vec(&json!({"artifacts": [{"name": "c", "sha256": child}]}));
        let manifest = store.put_bytes(&manifest.unwrap()).unwrap().digest;
        let dropped = store.put_bytes(b"dropped").unwrap().digest;
        store
            .write_json(
                "actions/k.json",
                &json!({"recipe": "r", "outputs": [{"name": "o", "sha256": kept}], "m": manifest}),
            )
            .unwrap();
        let listed = store.list_blobs().unwrap();
        let kept_info = listed.iter().find(|b| b.digest == kept).unwrap();
        assert_eq!(kept_info.referenced_by, vec!["r: o".to_string()]);

        let report = store.gc(&BTreeSet::new()).unwrap();
        assert_eq!(report.blobs_removed, 1);
        assert!(store.has_blob(&kept) && store.has_blob(&child) && store.has_blob(&manifest));
        assert!(!store.has_blob(&dropped));
        assert!(store.verify().unwrap().is_ok());
    }

    #[test]
    fn verify_reports_corruption_and_dangling_references() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put_bytes(b"x").unwrap().digest;
        fs::write(store.blob_path(&d), b"y").unwrap();
        let missing = Digest::of(b"never stored");
        store
            .write_json("actions/k.json", &json!({"outputs": [missing]}))
            .unwrap();
        let report = store.verify().unwrap();
        assert_eq!(report.corrupt.len(), 1);
        assert_eq!(report.broken_documents.len(), 1);
        assert!(!report.is_ok());
    }
}
