//! The views regenerated on every publish from the channels: `index.json` (channels →
//! artifacts), `SHA256SUMS` (for `sha256sum -c`) and `os_list.json` (a Raspberry Pi Imager
//! repository, so `rpi-imager --repo URL` lists our images).

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Result;
use serde_json::{Value, json};

use super::{Channel, Release};
use crate::store::{Kind, layout};

/// A channel with the release it points to.
pub struct ChannelState {
    pub channel: Channel,
    pub release: Release,
}

/// `index.json`: every channel, its manifest and artifacts, with their keys and URLs.
pub fn index(channels: &[ChannelState], base_url: &str) -> Result<Vec<u8>> {
    let mut map = serde_json::Map::new();
    for c in channels {
        let artifacts: Vec<Value> = c
            .release
            .artifacts
            .iter()
            .map(|a| {
                json!({
                    "name": a.name,
                    "sha256": a.sha256,
                    "size": a.size,
                    "media_type": a.media_type,
                    "kind": a.kind,
                    "from": a.from,
                    "key": layout::blob(&a.sha256),
                    "url": format!("{base_url}/{}", layout::blob(&a.sha256)),
                })
            })
            .collect();
        map.insert(
            c.channel.channel.clone(),
            json!({
                "manifest": c.channel.manifest,
                "manifest_key": layout::manifest(&c.channel.manifest),
                "updated": c.channel.updated,
                "artifacts": artifacts,
            }),
        );
    }
    let mut bytes = serde_json::to_vec_pretty(&json!({
        "schema": super::SCHEMA,
        "base_url": base_url,
        "channels": map,
    }))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// `SHA256SUMS`: one `<hex>  <channel>/<name>` line per artifact, in `sha256sum` format, so
/// files downloaded into `<channel>/` check with `sha256sum -c --ignore-missing SHA256SUMS`.
pub fn sha256sums(channels: &[ChannelState]) -> Vec<u8> {
    let mut lines: Vec<String> = channels
        .iter()
        .flat_map(|c| {
            c.release
                .artifacts
                .iter()
                .map(move |a| format!("{}  {}/{}\n", a.sha256.hex(), c.channel.channel, a.name))
        })
        .collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines.concat().into_bytes()
}

/// The icon Raspberry Pi Imager shows beside our entries (64×64 PNG), published as
/// [`layout::ICON`].
pub const ICON_PNG: &[u8] = include_bytes!("icon.png");

/// `os_list.json` in Raspberry Pi Imager's repository format: one entry per channel that
/// holds a Raspberry Pi image, with every field Imager's schema requires
/// (`doc/json-schema/os-list-schema.json` in raspberrypi/rpi-imager). The download is the
/// `.img.xz` when the release has one (`image_download_*`), the raw image otherwise; the
/// `extract_*` fields are always the raw image's, which Imager checks after writing. No
/// `init_format`: the image has no OS for Imager to customise, and without the field Imager
/// offers no customisation.
pub fn os_list(channels: &[ChannelState], base_url: &str) -> Result<Vec<u8>> {
    let list: Vec<Value> = channels
        .iter()
        .flat_map(|c| {
            c.release
                .artifacts
                .iter()
                .filter(|a| a.kind == Kind::Package && a.from == "rpi-img")
                .map(move |a| {
                    let (download, download_size) = match &a.compressed {
                        Some(z) => (z.sha256, z.size),
                        None => (a.sha256, a.size),
                    };
                    json!({
                        "name": format!("bootforge network boot ({})", c.channel.channel),
                        "description": format!(
                            "UEFI firmware and iPXE for the Raspberry Pi 4: boots from the \
                             network. Channel {}, manifest {}.",
                            c.channel.channel,
                            c.channel.manifest.short(12)
                        ),
                        "icon": format!("{base_url}/{}", layout::ICON),
                        "url": format!("{base_url}/{}", layout::blob(&download)),
                        "extract_size": a.size,
                        "extract_sha256": a.sha256.hex(),
                        "image_download_size": download_size,
                        "image_download_sha256": download.hex(),
                        "release_date": date(a.source_date_epoch),
                        "devices": ["pi4-64bit"],
                    })
                })
        })
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&json!({ "os_list": list }))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// `YYYY-MM-DD` of a Unix time (UTC).
fn date(epoch: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(epoch.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_700_000_000), "2023-11-14");
    }
}
