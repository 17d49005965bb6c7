//! Raspberry Pi images compressed for download, as `.img.xz`: Raspberry Pi Imager and
//! `fetch` download a few MiB instead of the whole raw image and decompress as they go.
//!
//! The compression is an action like a build: keyed by the raw image and the settings,
//! recorded in `actions/<key>.json`, so a republish of the same image compresses nothing.
//! Single-threaded liblzma at a fixed preset writes the same bytes on every machine (xz's
//! multi-threaded encoder splits blocks by thread count).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::base::Digest;
use crate::release::{Compressed, Release};
use crate::store::{Kind, Store, layout};

/// Bumped when how an image is compressed changes.
const XZ_SCHEMA: u32 = 1;

/// xz's own default preset: a 8 MiB dictionary, so decompressing takes about 9 MiB of
/// memory on the machine that flashes.
const XZ_PRESET: u32 = 6;

/// `actions/<key>.json` of one compression.
#[derive(Debug, Serialize, Deserialize)]
struct XzEntry {
    schema: u32,
    key: String,
    raw: Digest,
    compressed: Digest,
    size: u64,
}

/// Whether an artifact is published compressed: the Raspberry Pi images.
fn wants_xz(a: &crate::release::Artifact) -> bool {
    a.kind == Kind::Package && a.from == "rpi-img"
}

/// Gives each Raspberry Pi image of `release` its `.img.xz`, compressing only images not
/// compressed before in this store.
pub fn attach(store: &Store, release: &mut Release) -> Result<()> {
    for a in release.artifacts.iter_mut().filter(|a| wants_xz(a)) {
        let (sha256, size) = xz(store, &a.sha256)
            .with_context(|| format!("compressing {} ({})", a.name, a.sha256))?;
        a.compressed = Some(Compressed {
            format: "xz".into(),
            sha256,
            size,
        });
    }
    Ok(())
}

fn xz(store: &Store, raw: &Digest) -> Result<(Digest, u64)> {
    let canonical = serde_json::json!({
        "action": "xz",
        "schema": XZ_SCHEMA,
        "preset": XZ_PRESET,
        "check": "crc64",
        "raw": raw.hex(),
    });
    let key = Digest::of(canonical.to_string().as_bytes()).hex();
    if let Some(e) = store.read_json::<XzEntry>(&layout::action(&key))?
        && e.schema == XZ_SCHEMA
        && &e.raw == raw
        && store.has_blob(&e.compressed)
    {
        return Ok((e.compressed, e.size));
    }
    // The raw blob is verified as it is read: a corrupt one fails before anything is stored.
    let encoder = xz2::read::XzEncoder::new(store.open_blob(raw)?, XZ_PRESET);
    let stored = store.put_reader(encoder)?;
    store.write_json(
        &layout::action(&key),
        &XzEntry {
            schema: XZ_SCHEMA,
            key: key.clone(),
            raw: *raw,
            compressed: stored.digest,
            size: stored.size,
        },
    )?;
    Ok((stored.digest, stored.size))
}
