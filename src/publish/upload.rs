//! Sending a release's blobs: HEAD every one, then upload the missing ones, several at once.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};

use super::PublishReport;
use crate::base::Digest;
use crate::base::progress::{Progress, human_bytes};
use crate::release::Release;
use crate::store::{ObjectKind, Storage, Store, layout};

/// A content object to make sure of on the server.
#[derive(Debug, Clone)]
struct Wanted {
    digest: Digest,
    size: u64,
    content_type: String,
    label: String,
}

/// Makes sure every artifact of `release` and every provenance document is in `to`.
pub fn blobs(
    store: &Store,
    to: &dyn Storage,
    release: &Release,
    parallel: usize,
    report: &mut PublishReport,
) -> Result<()> {
    let mut wanted: BTreeMap<Digest, Wanted> = BTreeMap::new();
    for a in &release.artifacts {
        wanted.entry(a.sha256).or_insert_with(|| Wanted {
            digest: a.sha256,
            size: a.size,
            content_type: a.media_type.clone(),
            label: a.name.clone(),
        });
    }
    for a in &release.artifacts {
        if let Some(c) = &a.compressed {
            wanted.entry(c.sha256).or_insert_with(|| Wanted {
                digest: c.sha256,
                size: c.size,
                content_type: "application/x-xz".into(),
                label: format!("{}.xz", a.name),
            });
        }
        if let Entry::Vacant(slot) = wanted.entry(a.provenance) {
            slot.insert(Wanted {
                digest: a.provenance,
                size: provenance_size(store, to, &a.provenance)?,
                content_type: "application/json".into(),
                label: format!("provenance of {}", a.name),
            });
        }
    }
    let missing = missing(to, wanted.into_values().collect(), parallel, report)?;
    if missing.is_empty() {
        return Ok(());
    }
    let total: u64 = missing.iter().map(|w| w.size).sum();
    eprintln!(
        "uploading {} blobs ({}); {} already there",
        missing.len(),
        human_bytes(total),
        report.skipped.objects
    );
    let progress = Arc::new(Progress::new("uploaded", total));
    let results = in_parallel(missing, parallel, |w| {
        let parts = upload(store, to, &w, progress.clone())?;
        Ok((w, parts))
    });
    progress.finish();
    // Every upload ran to its end: the next run has less to do even when one failed.
    let mut failure = None;
    for r in results {
        match r {
            Ok((w, parts)) => {
                report.uploaded.add(w.size);
                report.multipart_parts += parts as u64;
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// HEADs every wanted blob; returns those not there whole, counting the rest as skipped.
fn missing(
    to: &dyn Storage,
    wanted: Vec<Wanted>,
    parallel: usize,
    report: &mut PublishReport,
) -> Result<Vec<Wanted>> {
    let heads = in_parallel(wanted, parallel, |w| {
        let there = to.head(&layout::blob(&w.digest))?;
        Ok((w, there))
    });
    let mut missing = Vec::new();
    for r in heads {
        let (w, there) = r?;
        match there {
            Some(size) if size == w.size => report.skipped.add(w.size),
            Some(size) => {
                eprintln!(
                    "{}: the server holds {size} bytes for {} ({} expected); replacing it",
                    layout::blob(&w.digest),
                    w.label,
                    w.size
                );
                missing.push(w);
            }
            None => missing.push(w),
        }
    }
    Ok(missing)
}

/// Verifies the local copy, then uploads it; returns the number of parts (0: one request).
fn upload(store: &Store, to: &dyn Storage, w: &Wanted, progress: Arc<Progress>) -> Result<usize> {
    // A corrupt local blob must not reach the bucket under the name of good content.
    let file = store.verified_file(&w.digest, w.size)?;
    let kind = ObjectKind {
        content_type: &w.content_type,
        immutable: true,
    };
    to.put_file(
        &layout::blob(&w.digest),
        Arc::new(file),
        w.size,
        kind,
        progress,
    )
}

/// A provenance blob's size, from the local store or else the store published to.
fn provenance_size(store: &Store, to: &dyn Storage, d: &Digest) -> Result<u64> {
    if let Ok(m) = std::fs::metadata(store.blob_path(d)) {
        return Ok(m.len());
    }
    to.head(&layout::blob(d))?.ok_or_else(|| {
        anyhow!(
            "provenance document {d} is neither in the local store nor in {}",
            to.location()
        )
    })
}

/// Runs `f` on every item with up to `workers` threads at once; results in item order.
fn in_parallel<T: Send, R: Send>(
    items: Vec<T>,
    workers: usize,
    f: impl Fn(T) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let n = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let results: Mutex<Vec<Option<Result<R>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, n.max(1)) {
            s.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue").next();
                    let Some((i, item)) = next else { break };
                    let r = f(item);
                    results.lock().expect("results")[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}
