//! `bootforge publish`: uploads what the last builds and packages produced to a bucket, as a
//! content-addressed release with a channel pointing at it, and regenerates the views.
//!
//! Order makes a publish atomic for readers: blobs, then the manifest, then the channel
//! pointer. Stopped anywhere, the channel still names a complete release; run again, the
//! blobs already there are skipped (HEAD first) and the rest goes up.

pub mod location;
pub mod progress;
pub mod release;
pub mod remote;
pub mod s3;
pub mod sign;
pub mod views;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::File;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::store::{Digest, Store, hash_reader};
use location::Location;
use progress::{Progress, human_bytes};
use release::{Channel, Release, check_channel, keys, shown};
use s3::{Bucket, MULTIPART_THRESHOLD, ObjectKind};
use sign::Signer;
use views::ChannelState;

/// What to publish, and where.
pub struct Request<'a> {
    pub to: &'a Location,
    pub channel: &'a str,
    /// Promote this existing manifest instead of publishing the latest results.
    pub manifest: Option<Digest>,
    pub signer: Option<&'a Signer>,
    /// Base URL anonymous readers use (for `os_list.json`); derived from the endpoint if unset.
    pub public_url: Option<String>,
    /// Requests in flight at once.
    pub parallel: usize,
}

/// Objects and bytes.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Count {
    pub objects: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// What a publish did, for people and (`--json`) for CI.
#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub to: String,
    pub channel: String,
    pub manifest: Digest,
    pub artifacts: Vec<release::Artifact>,
    /// Blobs, manifests and signatures sent (content; pointers and views are counted apart).
    pub uploaded: Count,
    /// Blobs, manifests and signatures already on the server.
    pub skipped: Count,
    pub multipart_parts: u64,
    /// The channel moved (false when it already pointed at this manifest).
    pub channel_changed: bool,
    pub previous: Option<Digest>,
    /// Channel pointer and views rewritten.
    pub metadata: Count,
    pub public_url: String,
    pub duration_ms: u64,
}

/// A content object to make sure of on the server.
#[derive(Debug, Clone)]
struct Wanted {
    digest: Digest,
    size: u64,
    content_type: String,
    label: String,
}

/// Publishes (or, with `req.manifest`, promotes) to `req.to`.
pub fn publish(store: &Store, req: &Request) -> Result<PublishReport> {
    let start = Instant::now();
    let Location::S3 { bucket, prefix } = req.to else {
        bail!(
            "cannot publish to {}: publishing needs a bucket (s3://BUCKET/PREFIX); HTTPS \
             locations are read-only",
            req.to
        );
    };
    check_channel(req.channel)?;
    // Shared, like a build: `cache gc` must not remove a blob while it is being sent.
    let _lock = store.lock_shared()?;
    let rt = remote::runtime()?;
    rt.block_on(async {
        let b = Bucket::connect(bucket, prefix).await?;
        if req.signer.is_none() && b.head(&sig_key(keys::SUMS)).await?.is_some() {
            bail!(
                "{}: its SHA256SUMS is signed; pass --sign KEY (or BOOTFORGE_SIGN_KEY) so the \
                 new one is too (delete SHA256SUMS.minisig from the bucket to stop signing)",
                req.to
            );
        }
        let (release, manifest_bytes, digest) = match req.manifest {
            None => {
                let r = Release::from_produced(&store.latest()?)?;
                let (bytes, d) = r.encode()?;
                // Kept locally too, so this exact set can be promoted from this machine.
                store.put_bytes(&bytes)?;
                (r, bytes, d)
            }
            Some(d) => existing_manifest(store, &b, &d, req.to).await?,
        };

        let mut report = PublishReport {
            to: req.to.to_string(),
            channel: req.channel.to_owned(),
            manifest: digest,
            artifacts: release.artifacts.clone(),
            uploaded: Count::default(),
            skipped: Count::default(),
            multipart_parts: 0,
            channel_changed: false,
            previous: None,
            metadata: Count::default(),
            public_url: req
                .public_url
                .clone()
                .map(|u| u.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| b.public_base().to_owned()),
            duration_ms: 0,
        };

        // 1. Blobs: artifacts and their provenance documents.
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
            if let Entry::Vacant(slot) = wanted.entry(a.provenance) {
                let size = provenance_size(store, &b, &a.provenance).await?;
                slot.insert(Wanted {
                    digest: a.provenance,
                    size,
                    content_type: "application/json".into(),
                    label: format!("provenance of {}", a.name),
                });
            }
        }
        upload_blobs(
            store,
            &b,
            wanted.into_values().collect(),
            req.parallel,
            &mut report,
        )
        .await?;

        // 2. The manifest and its signature.
        let mkey = keys::manifest(&digest);
        let json = ObjectKind {
            content_type: "application/json",
            immutable: true,
        };
        put_once(&b, &mkey, manifest_bytes.clone(), json, &mut report).await?;
        if let Some(s) = req.signer {
            // Kept when it already verifies with this key; replaced when the key changed.
            let skey = sig_key(&mkey);
            match b.get(&skey).await? {
                Some(old) if s.signed(&manifest_bytes, &old) => {
                    report.skipped.add(old.len() as u64)
                }
                _ => {
                    let sig = s.sign(&manifest_bytes, &format!("bootforge manifest {digest}"))?;
                    report.uploaded.add(sig.len() as u64);
                    b.put(&skey, sig.into_bytes(), text(false), false).await?;
                }
            }
        }

        // 3. The channel pointer, last.
        let ckey = keys::channel(req.channel);
        let current = match b.get(&ckey).await? {
            Some(bytes) => Some(Channel::decode(
                &bytes,
                req.channel,
                &format!("{}/{ckey}", req.to),
            )?),
            None => None,
        };
        if current.as_ref().map(|c| c.manifest) != Some(digest) {
            report.previous = current.map(|c| c.manifest);
            let pointer = Channel {
                schema: release::SCHEMA,
                channel: req.channel.to_owned(),
                manifest: digest,
                updated: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                previous: report.previous,
            };
            let mut bytes = serde_json::to_vec_pretty(&pointer)?;
            bytes.push(b'\n');
            report.metadata.add(bytes.len() as u64);
            b.put(&ckey, bytes, mutable_json(), false).await?;
            report.channel_changed = true;
        }

        // 4. The views.
        write_views(&b, req.signer, &report.public_url, &mut report.metadata).await?;
        report.duration_ms = start.elapsed().as_millis() as u64;
        Ok(report)
    })
}

fn sig_key(key: &str) -> String {
    format!("{key}.minisig")
}

fn text(immutable: bool) -> ObjectKind<'static> {
    ObjectKind {
        content_type: "text/plain; charset=utf-8",
        immutable,
    }
}

fn mutable_json() -> ObjectKind<'static> {
    ObjectKind {
        content_type: "application/json",
        immutable: false,
    }
}

/// Puts a content-addressed object unless it is there.
async fn put_once(
    b: &Bucket,
    key: &str,
    bytes: Vec<u8>,
    kind: ObjectKind<'_>,
    report: &mut PublishReport,
) -> Result<()> {
    let n = bytes.len() as u64;
    if b.head(key).await? == Some(n) || !b.put(key, bytes, kind, true).await? {
        report.skipped.add(n);
    } else {
        report.uploaded.add(n);
    }
    Ok(())
}

/// The manifest to promote: from the bucket, or from the local store (then uploaded).
async fn existing_manifest(
    store: &Store,
    b: &Bucket,
    d: &Digest,
    to: &Location,
) -> Result<(Release, Vec<u8>, Digest)> {
    let key = keys::manifest(d);
    let (bytes, what) = match b.get(&key).await? {
        Some(bytes) => (bytes, format!("{to}/{key}")),
        None if store.has_blob(d) => (store.read_blob(d)?, format!("local store blob {d}")),
        None => bail!(
            "manifest {d} is neither in {to} (no {key}) nor in the local store; `bootforge ls \
             --from {to}` lists the manifests there"
        ),
    };
    let release = Release::decode(&bytes, d, &what)?;
    Ok((release, bytes, *d))
}

/// A provenance blob's size, from the local store or else the bucket.
async fn provenance_size(store: &Store, b: &Bucket, d: &Digest) -> Result<u64> {
    let path = store.blob_path(d);
    if let Ok(m) = std::fs::metadata(&path) {
        return Ok(m.len());
    }
    b.head(&keys::blob(d)).await?.ok_or_else(|| {
        anyhow!("provenance document {d} is neither in the local store nor in the bucket")
    })
}

/// HEADs every blob, then uploads the missing ones: several at once, large ones in parts.
async fn upload_blobs(
    store: &Store,
    b: &Bucket,
    wanted: Vec<Wanted>,
    parallel: usize,
    report: &mut PublishReport,
) -> Result<()> {
    let permits = Arc::new(Semaphore::new(parallel.max(1)));
    let mut heads = JoinSet::new();
    for w in wanted {
        let (b, permits) = (b.clone(), permits.clone());
        heads.spawn(async move {
            let _p = permits.acquire_owned().await?;
            let there = b.head(&keys::blob(&w.digest)).await?;
            Ok::<_, anyhow::Error>((w, there))
        });
    }
    let mut missing = Vec::new();
    while let Some(r) = heads.join_next().await {
        let (w, there) = r??;
        match there {
            Some(size) if size == w.size => report.skipped.add(w.size),
            Some(size) => {
                eprintln!(
                    "{}: the server holds {size} bytes for {} ({} expected); replacing it",
                    keys::blob(&w.digest),
                    w.label,
                    w.size
                );
                missing.push(w);
            }
            None => missing.push(w),
        }
    }
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
    let mut uploads = JoinSet::new();
    for w in missing {
        let (b, store, permits, progress) =
            (b.clone(), store.clone(), permits.clone(), progress.clone());
        uploads.spawn(async move {
            let parts = upload_blob(&store, &b, &w, permits, progress).await?;
            Ok::<_, anyhow::Error>((w, parts))
        });
    }
    let mut failure = None;
    while let Some(r) = uploads.join_next().await {
        match r? {
            Ok((w, parts)) => {
                report.uploaded.add(w.size);
                report.multipart_parts += parts as u64;
            }
            Err(e) => {
                // Let the other uploads finish: the next run then has less to do.
                failure.get_or_insert(e);
            }
        }
    }
    progress.finish();
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Verifies the local copy, then uploads it; returns the number of parts (0: single put).
async fn upload_blob(
    store: &Store,
    b: &Bucket,
    w: &Wanted,
    permits: Arc<Semaphore>,
    progress: Arc<Progress>,
) -> Result<usize> {
    let path = store.blob_path(&w.digest);
    let (d, size) = (w.digest, w.size);
    // A corrupt local blob must not reach the bucket under the name of good content.
    let file = tokio::task::spawn_blocking(move || -> Result<File> {
        let f = File::open(&path)
            .with_context(|| format!("{d} is not in the local store ({})", path.display()))?;
        let (got, len) = hash_reader(&f)?;
        if got != d || len != size {
            bail!(
                "local store blob {} is corrupt or not the {size} bytes the manifest lists \
                 (content is {got}, {len} bytes); run `bootforge cache verify`",
                path.display()
            );
        }
        Ok(f)
    })
    .await??;
    let key = keys::blob(&w.digest);
    let kind = ObjectKind {
        content_type: &w.content_type,
        immutable: true,
    };
    if w.size > MULTIPART_THRESHOLD {
        b.put_multipart(&key, Arc::new(file), w.size, kind, permits, progress)
            .await
    } else {
        let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Seek};
            let mut f = file;
            f.rewind()?;
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(v)
        })
        .await??;
        let _p = permits.acquire_owned().await?;
        b.put(&key, bytes, kind, true).await?;
        progress.add(w.size);
        Ok(0)
    }
}

/// Regenerates `index.json`, `SHA256SUMS` (+ signature) and `os_list.json` from the channels.
async fn write_views(
    b: &Bucket,
    signer: Option<&Signer>,
    base_url: &str,
    written: &mut Count,
) -> Result<()> {
    let mut states = Vec::new();
    let mut releases: BTreeMap<Digest, Release> = BTreeMap::new();
    for o in b.list("channels/").await? {
        // Whatever else is in the bucket may be forged or broken: such a channel is left out
        // of the views, never lets its names into them.
        let Some(name) = o
            .rel
            .strip_prefix("channels/")
            .and_then(|n| n.strip_suffix(".json"))
            .filter(|n| check_channel(n).is_ok())
        else {
            eprintln!("warning: {}: not a channel; left out", shown(&o.rel));
            continue;
        };
        let Some(bytes) = b.get(&o.rel).await? else {
            continue;
        };
        let channel = match Channel::decode(&bytes, name, &o.rel) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("warning: {e:#}; left out");
                continue;
            }
        };
        if let Entry::Vacant(slot) = releases.entry(channel.manifest) {
            let mkey = keys::manifest(&channel.manifest);
            let Some(m) = b.get(&mkey).await? else {
                eprintln!(
                    "warning: channel {} points at {}, which is missing; left out",
                    channel.channel, mkey
                );
                continue;
            };
            match Release::decode(&m, &channel.manifest, &mkey) {
                Ok(r) => slot.insert(r),
                Err(e) => {
                    eprintln!("warning: channel {} left out: {e:#}", channel.channel);
                    continue;
                }
            };
        }
        let release = releases[&channel.manifest].clone();
        states.push(ChannelState { channel, release });
    }
    states.sort_by(|a, c| a.channel.channel.cmp(&c.channel.channel));

    let sums = views::sha256sums(&states);
    let mut out = vec![
        (
            keys::INDEX.to_owned(),
            views::index(&states, base_url)?,
            mutable_json(),
        ),
        (
            keys::OS_LIST.to_owned(),
            views::os_list(&states, base_url)?,
            mutable_json(),
        ),
    ];
    if let Some(s) = signer {
        let sig = s.sign(&sums, &format!("bootforge SHA256SUMS of {base_url}"))?;
        out.push((sig_key(keys::SUMS), sig.into_bytes(), text(false)));
    }
    // SHA256SUMS before its signature: a reader between the two sees a mismatch and fails
    // closed, never a false pass.
    out.insert(0, (keys::SUMS.to_owned(), sums, text(false)));
    for (key, bytes, kind) in out {
        written.add(bytes.len() as u64);
        b.put(&key, bytes, kind, false).await?;
    }
    Ok(())
}
