//! Reading releases back from a store, wherever it is: channel names, a channel's pointer
//! and manifest, and the lines of `SHA256SUMS`. Everything read is treated as forged until
//! checked (see [`super::Release::decode`] and [`super::Channel::decode`]).

use anyhow::{Result, anyhow, bail};

use super::{Channel, Release, check_artifact_name, check_channel, shown};
use crate::base::Digest;
use crate::store::{Storage, layout};

/// The channel's pointer, release and the release's exact bytes, with clear errors for a
/// missing channel.
pub fn read_channel(from: &dyn Storage, channel: &str) -> Result<(Channel, Release, Vec<u8>)> {
    check_channel(channel)?;
    let at = from.location();
    let ckey = layout::channel(channel);
    let Some(bytes) = from.get(&ckey)? else {
        let known = channel_names(from)?;
        bail!(
            "unknown channel `{channel}` at {at} (no {ckey}); channels there: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    let pointer = Channel::decode(&bytes, channel, &format!("{at}/{ckey}"))?;
    let mkey = layout::manifest(&pointer.manifest);
    let m = from
        .get(&mkey)?
        .ok_or_else(|| anyhow!("{at}/{mkey}: channel {channel} points at a missing manifest"))?;
    let release = Release::decode(&m, &pointer.manifest, &format!("{at}/{mkey}"))?;
    Ok((pointer, release, m))
}

/// The channels a store holds, sorted, from its listing (or, where it cannot be listed, its
/// `index.json`); a name no channel may have is left out with a warning.
pub fn channel_names(from: &dyn Storage) -> Result<Vec<String>> {
    let mut names: Vec<String> = match from.list(layout::CHANNELS)? {
        Some(objects) => objects
            .iter()
            .filter_map(|o| layout::channel_name(&o.key).map(str::to_owned))
            .collect(),
        None => match from.get(layout::INDEX)? {
            Some(bytes) => index_channels(&bytes),
            None => Vec::new(),
        },
    };
    names.retain(|n| match check_channel(n) {
        Ok(()) => true,
        Err(_) => {
            eprintln!("warning: left out channel {}: not a channel name", shown(n));
            false
        }
    });
    names.sort();
    Ok(names)
}

/// The channel names an `index.json` lists (none when it is not one).
pub fn index_channels(bytes: &[u8]) -> Vec<String> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("channels")?
                .as_object()
                .map(|m| m.keys().cloned().collect())
        })
        .unwrap_or_default()
}

/// The well-formed lines of a `SHA256SUMS` (`<hex>  <channel>/<name>`, as `sha256sum`
/// writes); any other line is skipped with a warning. Only digests are used: a name there
/// never becomes a path.
pub fn sums_lines<'a>(sums: &'a [u8], what: &'a str) -> impl Iterator<Item = (Digest, &'a str)> {
    let text = std::str::from_utf8(sums).unwrap_or_else(|e| {
        eprintln!("warning: {what} is not UTF-8 past byte {}", e.valid_up_to());
        std::str::from_utf8(&sums[..e.valid_up_to()]).expect("valid up to here")
    });
    text.lines().enumerate().filter_map(move |(i, line)| {
        let parsed = line.split_once("  ").and_then(|(hex, name)| {
            let d = Digest::parse(hex).ok()?;
            let (channel, artifact) = name.split_once('/')?;
            (check_channel(channel).is_ok() && check_artifact_name(artifact).is_ok())
                .then_some((d, name))
        });
        if parsed.is_none() {
            eprintln!("warning: {what} line {}: skipped: {}", i + 1, shown(line));
        }
        parsed
    })
}
