//! `bootforge ls`: a store's channels with their artifacts, and (where it can be listed)
//! its manifests and blobs with sizes, dates and what uses them.

use anyhow::Result;
use serde::Serialize;

use crate::base::Digest;
use crate::release::{self, Artifact};
use crate::store::{Storage, layout};

/// One channel in a listing.
#[derive(Debug, Serialize)]
pub struct ChannelListing {
    pub name: String,
    pub manifest: Digest,
    pub updated: String,
    pub artifacts: Vec<Artifact>,
}

/// One stored object in a listing.
#[derive(Debug, Serialize)]
pub struct ObjectListing {
    pub sha256: Digest,
    pub size: u64,
    /// Last modified, RFC 3339.
    pub modified: Option<String>,
    /// Channels (for manifests) or artifact names (for blobs) that refer to it.
    pub used_by: Vec<String>,
}

/// What `ls` shows.
#[derive(Debug, Serialize)]
pub struct Listing {
    pub location: String,
    pub channels: Vec<ChannelListing>,
    /// Only a bucket can be listed; over HTTPS these are absent.
    pub manifests: Option<Vec<ObjectListing>>,
    pub blobs: Option<Vec<ObjectListing>>,
}

/// Lists channels, manifests and blobs at `from`.
pub fn ls(from: &dyn Storage) -> Result<Listing> {
    let mut channels = Vec::new();
    for name in release::channel_names(from)? {
        // One forged or broken channel must not hide the others.
        let (pointer, release, _) = match release::read_channel(from, &name) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("warning: left out channel {name}: {e:#}");
                continue;
            }
        };
        channels.push(ChannelListing {
            name,
            manifest: pointer.manifest,
            updated: pointer.updated,
            artifacts: release.artifacts,
        });
    }
    let listed = |prefix: &str,
                  digest: fn(&str) -> Option<Digest>,
                  used_by: &dyn Fn(&Digest) -> Vec<String>| {
        from.list(prefix).map(|objects| {
            objects.map(|objects| {
                objects
                    .iter()
                    .filter_map(|o| {
                        let d = digest(&o.key)?;
                        Some(ObjectListing {
                            sha256: d,
                            size: o.size,
                            modified: o.modified.map(rfc3339),
                            used_by: used_by(&d),
                        })
                    })
                    .collect()
            })
        })
    };
    let manifests = listed(layout::MANIFESTS, layout::manifest_digest, &|d| {
        channels
            .iter()
            .filter(|c| &c.manifest == d)
            .map(|c| c.name.clone())
            .collect()
    })?;
    let blobs = listed(layout::BLOBS, layout::blob_digest, &|d| {
        let mut v: Vec<String> = channels
            .iter()
            .flat_map(|c| c.artifacts.iter())
            .filter_map(|a| {
                if &a.sha256 == d {
                    Some(a.name.clone())
                } else if &a.provenance == d {
                    Some(format!("provenance of {} {}", a.kind, a.from))
                } else {
                    None
                }
            })
            .collect();
        v.sort();
        v.dedup();
        v
    })?;
    Ok(Listing {
        location: from.location().to_string(),
        channels,
        manifests,
        blobs,
    })
}

fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
