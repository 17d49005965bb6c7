//! `bootforge publish`: uploads what the last builds and packages produced to a store (a
//! bucket, or a directory a web server serves), as a content-addressed release with a
//! channel pointing at it, and regenerates the views.
//!
//! Order makes a publish atomic for readers: blobs, then the manifest, then the channel
//! pointer, then the views. Stopped anywhere, the channel still names a complete release;
//! run again, the blobs already there are skipped (HEAD first) and the rest goes up. Worth
//! copying: this ordering is what every writer of a shared store must keep.

mod compress;
mod upload;

use std::time::{Instant, SystemTime};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::base::Digest;
use crate::base::sign::Signer;
use crate::release::views::{self, ChannelState};
use crate::release::{self, Channel, Release, check_channel};
use crate::store::{Location, ObjectKind, Storage, Store, layout};

/// What to publish.
pub struct Request<'a> {
    pub channel: &'a str,
    /// Promote this existing manifest instead of publishing the latest results.
    pub manifest: Option<Digest>,
    pub signer: Option<&'a Signer>,
    /// Base URL anonymous readers use (for `os_list.json`); derived from the store if unset.
    pub public_url: Option<String>,
    /// Uploads at once (blobs; a store bounds its own requests, multipart parts included).
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

/// Publishes (or, with `req.manifest`, promotes) from the local `store` to `to`.
pub fn publish(store: &Store, to: &dyn Storage, req: &Request) -> Result<PublishReport> {
    let start = Instant::now();
    check_channel(req.channel)?;
    if let Location::Https { .. } = to.location() {
        bail!(
            "cannot publish to {}: HTTPS locations are read-only; publish to \
             s3://BUCKET/PREFIX or a directory",
            to.location()
        );
    }
    // Shared, like a build: `cache gc` must not remove a blob while it is being sent.
    let _lock = store.lock_shared()?;
    if req.signer.is_none() && to.head(&layout::signature(layout::SUMS))?.is_some() {
        bail!(
            "{}: its SHA256SUMS is signed; pass --sign KEY (or BOOTFORGE_SIGN_KEY) so the new \
             one is too (delete SHA256SUMS.minisig from the bucket to stop signing)",
            to.location()
        );
    }
    let (release, manifest_bytes, digest) = match req.manifest {
        None => {
            let mut r = Release::from_produced(&store.latest()?)?;
            compress::attach(store, &mut r)?;
            let (bytes, d) = r.encode()?;
            // Kept locally too, so this exact set can be promoted from this machine.
            store.put_bytes(&bytes)?;
            (r, bytes, d)
        }
        Some(d) => existing_manifest(store, to, &d)?,
    };
    let public_url = req
        .public_url
        .clone()
        .or_else(|| to.public_base())
        .unwrap_or_else(|| to.location().to_string());
    let mut report = PublishReport {
        to: to.location().to_string(),
        channel: req.channel.to_owned(),
        manifest: digest,
        artifacts: release.artifacts.clone(),
        uploaded: Count::default(),
        skipped: Count::default(),
        multipart_parts: 0,
        channel_changed: false,
        previous: None,
        metadata: Count::default(),
        public_url: public_url.trim_end_matches('/').to_owned(),
        duration_ms: 0,
    };
    upload::blobs(store, to, &release, req.parallel, &mut report)?;
    put_manifest(to, &digest, manifest_bytes, req.signer, &mut report)?;
    move_channel(to, req.channel, digest, &mut report)?;
    write_views(to, req.signer, &report.public_url, &mut report.metadata)?;
    report.duration_ms = start.elapsed().as_millis() as u64;
    Ok(report)
}

/// The manifest to promote: from the store published to, or from the local store.
fn existing_manifest(
    store: &Store,
    to: &dyn Storage,
    d: &Digest,
) -> Result<(Release, Vec<u8>, Digest)> {
    let key = layout::manifest(d);
    let at = to.location();
    let (bytes, what) = match to.get(&key)? {
        Some(bytes) => (bytes, format!("{at}/{key}")),
        None if store.has_blob(d) => (store.read_blob(d)?, format!("local store blob {d}")),
        None => bail!(
            "manifest {d} is neither in {at} (no {key}) nor in the local store; `bootforge ls \
             --from {at}` lists the manifests there"
        ),
    };
    let release = Release::decode(&bytes, d, &what)?;
    Ok((release, bytes, *d))
}

/// The manifest (create-only: it is named by its content) and, with a key, its signature:
/// kept when it verifies with this key, replaced when the key changed.
fn put_manifest(
    to: &dyn Storage,
    digest: &Digest,
    bytes: Vec<u8>,
    signer: Option<&Signer>,
    report: &mut PublishReport,
) -> Result<()> {
    let key = layout::manifest(digest);
    let n = bytes.len() as u64;
    if to.head(&key)? == Some(n) || !to.put(&key, bytes.clone(), ObjectKind::json(true), true)? {
        report.skipped.add(n);
    } else {
        report.uploaded.add(n);
    }
    if let Some(s) = signer {
        let skey = layout::signature(&key);
        match to.get(&skey)? {
            Some(old) if s.signed(&bytes, &old) => report.skipped.add(old.len() as u64),
            _ => {
                let sig = s.sign(&bytes, &format!("bootforge manifest {digest}"))?;
                report.uploaded.add(sig.len() as u64);
                to.put(&skey, sig.into_bytes(), ObjectKind::text(false), false)?;
            }
        }
    }
    Ok(())
}

/// Points the channel at `digest`, keeping where it pointed before; left alone when it is
/// there already.
fn move_channel(
    to: &dyn Storage,
    channel: &str,
    digest: Digest,
    report: &mut PublishReport,
) -> Result<()> {
    let key = layout::channel(channel);
    let current = match to.get(&key)? {
        Some(bytes) => Some(Channel::decode(
            &bytes,
            channel,
            &format!("{}/{key}", to.location()),
        )?),
        None => None,
    };
    if current.as_ref().map(|c| c.manifest) == Some(digest) {
        return Ok(());
    }
    report.previous = current.map(|c| c.manifest);
    let pointer = Channel {
        schema: release::SCHEMA,
        channel: channel.to_owned(),
        manifest: digest,
        updated: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        previous: report.previous,
    };
    let mut bytes = serde_json::to_vec_pretty(&pointer)?;
    bytes.push(b'\n');
    report.metadata.add(bytes.len() as u64);
    to.put(&key, bytes, ObjectKind::json(false), false)?;
    report.channel_changed = true;
    Ok(())
}

/// Regenerates `index.json`, `SHA256SUMS` (+ signature) and `os_list.json` (+ the icon it
/// names) from the channels. Whatever else is in the store may be forged or broken: such a channel is left
/// out of the views (with a warning) and never lets its names into them.
fn write_views(
    to: &dyn Storage,
    signer: Option<&Signer>,
    base_url: &str,
    written: &mut Count,
) -> Result<()> {
    let mut states = Vec::new();
    for name in release::channel_names(to)? {
        match release::read_channel(to, &name) {
            Ok((channel, release, _)) => states.push(ChannelState { channel, release }),
            Err(e) => eprintln!("warning: channel {name} left out: {e:#}"),
        }
    }
    let sums = views::sha256sums(&states);
    let mut out = vec![(
        layout::SUMS.to_owned(),
        sums.clone(),
        ObjectKind::text(false),
    )];
    // SHA256SUMS before its signature: a reader between the two sees a mismatch and fails
    // closed, never a false pass.
    if let Some(s) = signer {
        let sig = s.sign(&sums, &format!("bootforge SHA256SUMS of {base_url}"))?;
        out.push((
            layout::signature(layout::SUMS),
            sig.into_bytes(),
            ObjectKind::text(false),
        ));
    }
    out.push((
        layout::INDEX.to_owned(),
        views::index(&states, base_url)?,
        ObjectKind::json(false),
    ));
    out.push((
        layout::OS_LIST.to_owned(),
        views::os_list(&states, base_url)?,
        ObjectKind::json(false),
    ));
    out.push((
        layout::ICON.to_owned(),
        views::ICON_PNG.to_vec(),
        ObjectKind {
            content_type: "image/png",
            immutable: false,
        },
    ));
    for (key, bytes, kind) in out {
        written.add(bytes.len() as u64);
        to.put(&key, bytes, kind, false)?;
    }
    Ok(())
}
