//! The release format, shared by `publish` (which writes it) and `fetch` (which reads it):
//! the release manifest (one publish's set of artifacts, content-addressed), channel
//! pointers and the views made from them ([`views`]); their signatures are `base::sign`'s.
//!
//! ```text
//! blobs/sha256/<hex>              artifacts and provenance documents, immutable
//! manifests/<hex>.json(.minisig)  release manifests, named by their own sha256
//! channels/<name>.json            the one mutable thing: channel → manifest
//! index.json SHA256SUMS(.minisig) os_list.json   views, regenerated on every publish
//! ```

mod read;
pub mod views;

pub use read::{channel_names, index_channels, read_channel, sums_lines};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::base::Digest;
use crate::store::{Kind, Produced};

/// Bumped when the release manifest or channel format changes.
pub const SCHEMA: u32 = 1;

/// The most artifacts a release may list.
pub const MAX_ARTIFACTS: usize = 10_000;

/// The largest size an artifact may claim: 2^53 - 1, the largest integer every JSON reader
/// (Raspberry Pi Imager's among them) represents exactly.
pub const MAX_SIZE: u64 = (1 << 53) - 1;

/// The longest artifact name, and the longest part of one.
const MAX_NAME: usize = 1024;
const MAX_NAME_PART: usize = 255;

/// One artifact of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// `bootforge.iso`, or `<recipe>/<output>` for build outputs.
    pub name: String,
    pub sha256: Digest,
    pub size: u64,
    pub media_type: String,
    /// `build` or `package`.
    pub kind: Kind,
    /// The recipe or package target that made it (`ipxe`, `rpi-img`).
    pub from: String,
    /// A JSON blob saying how it was made: the action entry or the package manifest.
    pub provenance: Digest,
    pub source_date_epoch: i64,
    /// The same bytes compressed for download (Raspberry Pi images, as `.img.xz`): what
    /// Raspberry Pi Imager and `fetch` download, decompressing as they go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed: Option<Compressed>,
}

/// An artifact's compressed form: a blob of its own, checked on download like the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compressed {
    /// `xz`: the only format written (and the one every Imager version reads).
    pub format: String,
    pub sha256: Digest,
    pub size: u64,
}

/// A release manifest. It holds no publish time, so the same artifacts always give the same
/// manifest bytes and digest, and republishing them changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub schema: u32,
    pub kind: String,
    pub artifacts: Vec<Artifact>,
}

impl Release {
    /// The release made of everything in `produced`, in name order.
    pub fn from_produced(produced: &[Produced]) -> Result<Release> {
        if produced.is_empty() {
            bail!(
                "nothing to publish: the store has no build or package results yet; run \
                 `bootforge package --target …` (or `build`) first, or promote an existing \
                 manifest with --manifest sha256:…"
            );
        }
        let mut artifacts: Vec<Artifact> = produced
            .iter()
            .flat_map(|p| {
                p.files.iter().map(|f| Artifact {
                    name: f.blob.name.clone(),
                    sha256: f.blob.sha256,
                    size: f.blob.size,
                    media_type: f.media_type.clone(),
                    kind: p.kind,
                    from: p.name.clone(),
                    provenance: p.provenance,
                    source_date_epoch: p.source_date_epoch,
                    compressed: None,
                })
            })
            .collect();
        artifacts.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = artifacts.windows(2).find(|w| w[0].name == w[1].name) {
            bail!(
                "two artifacts are both named `{}` ({} {} and {} {})",
                w[0].name,
                w[0].kind,
                w[0].from,
                w[1].kind,
                w[1].from
            );
        }
        Ok(Release {
            schema: SCHEMA,
            kind: "bootforge-release".into(),
            artifacts,
        })
    }

    /// The canonical bytes (pretty JSON, newline-terminated) and their digest.
    pub fn encode(&self) -> Result<(Vec<u8>, Digest)> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        let d = Digest::of(&bytes);
        Ok((bytes, d))
    }

    /// Parses a manifest fetched as `what`, checking it is the one asked for.
    pub fn decode(bytes: &[u8], expected: &Digest, what: &str) -> Result<Release> {
        let got = Digest::of(bytes);
        if &got != expected {
            bail!("{what}: content is {got}, not {expected}: the copy on the server is corrupt");
        }
        let r: Release = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("{what}: not a bootforge release manifest: {e}"))?;
        if r.schema != SCHEMA {
            bail!("{what}: manifest schema {} is not {SCHEMA}", r.schema);
        }
        r.check().map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        Ok(r)
    }

    /// Checks what a forged manifest could abuse: names that become file names and terminal
    /// output, sizes, and the number of artifacts.
    fn check(&self) -> Result<(), String> {
        if self.kind != "bootforge-release" {
            return Err(format!(
                "kind {} is not bootforge-release",
                shown(&self.kind)
            ));
        }
        if self.artifacts.len() > MAX_ARTIFACTS {
            return Err(format!(
                "lists {} artifacts, more than the {MAX_ARTIFACTS} a release may have",
                self.artifacts.len()
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, a) in self.artifacts.iter().enumerate() {
            let bad = |why: String| format!("artifact {} ({}): {why}", i + 1, shown(&a.name));
            check_artifact_name(&a.name).map_err(bad)?;
            if !names.insert(a.name.as_str()) {
                return Err(bad("listed twice".into()));
            }
            if a.kind == Kind::Embed {
                return Err(bad(format!("kind {} is neither build nor package", a.kind)));
            }
            check_label("from", &a.from).map_err(bad)?;
            check_label("media_type", &a.media_type).map_err(bad)?;
            if a.size > MAX_SIZE {
                return Err(bad(format!(
                    "size {} is larger than {MAX_SIZE} bytes",
                    a.size
                )));
            }
            if let Some(c) = &a.compressed {
                if c.format != "xz" {
                    return Err(bad(format!(
                        "compressed format {} is not xz",
                        shown(&c.format)
                    )));
                }
                if c.size > MAX_SIZE {
                    return Err(bad(format!(
                        "compressed size {} is larger than {MAX_SIZE} bytes",
                        c.size
                    )));
                }
            }
        }
        Ok(())
    }

    /// The artifact `what` names: its name, its file name, or the target that made it.
    pub fn find(&self, what: &str) -> Option<&Artifact> {
        self.artifacts
            .iter()
            .find(|a| a.name == what)
            .or_else(|| {
                self.artifacts
                    .iter()
                    .find(|a| a.kind == Kind::Package && a.from == what)
            })
            .or_else(|| {
                self.artifacts
                    .iter()
                    .find(|a| a.name.rsplit('/').next() == Some(what))
            })
    }
}

/// `channels/<name>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub schema: u32,
    pub channel: String,
    pub manifest: Digest,
    /// RFC 3339, UTC.
    pub updated: String,
    /// What the channel pointed to before, for a quick rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
}

impl Channel {
    /// Parses the pointer read from `key` for channel `name`, refusing one that names
    /// another channel or holds text no terminal should be sent.
    pub fn decode(bytes: &[u8], name: &str, what: &str) -> Result<Channel> {
        let c: Channel = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("{what} is not a channel pointer: {e}"))?;
        if c.schema != SCHEMA {
            bail!("{what}: channel schema {} is not {SCHEMA}", c.schema);
        }
        if c.channel != name {
            bail!(
                "{what} says it is channel {}, not {name}",
                shown(&c.channel)
            );
        }
        check_label("updated", &c.updated).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        Ok(c)
    }
}

/// Checks an artifact name: relative, `/`-separated, plain parts (its last part becomes the
/// file name `fetch` writes), printable, and of bounded length.
pub fn check_artifact_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "a name must be 1 to {MAX_NAME} bytes long, not {}",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err("a name may hold no control characters or backslashes".into());
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.len() > MAX_NAME_PART {
            return Err(format!(
                "a name is `/`-separated parts of 1 to {MAX_NAME_PART} bytes, none `.` or `..`"
            ));
        }
    }
    Ok(())
}

/// Checks a short label (a recipe, target, media type or time): 1 to 255 printable
/// characters.
fn check_label(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) {
        return Err(format!(
            "{field} {} must be 1 to 255 printable characters",
            shown(value)
        ));
    }
    Ok(())
}

/// A value from a document, fit for an error message: escaped, and cut short when long.
pub fn shown(value: &str) -> String {
    const SHOWN: usize = 64;
    if value.chars().count() <= SHOWN {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(SHOWN).collect();
    format!("{head:?}… ({} bytes)", value.len())
}

/// Checks a channel name: it becomes a key and a file name.
pub fn check_channel(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c));
    if !ok {
        bail!(
            "bad channel name `{name}`: use 1-64 characters of a-z, 0-9, '.', '_', '-', \
             starting with a letter or digit"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Named;
    use crate::store::ProducedFile;

    fn produced(kind: Kind, name: &str, file: &str) -> Produced {
        Produced {
            kind,
            name: name.into(),
            files: vec![ProducedFile {
                blob: Named {
                    name: file.into(),
                    sha256: Digest::of(file.as_bytes()),
                    size: 1,
                },
                media_type: "application/octet-stream".into(),
            }],
            provenance: Digest::of(b"p"),
            source_date_epoch: 1,
        }
    }

    #[test]
    fn same_inputs_same_manifest_and_lookup_by_target() {
        let a = [
            produced(Kind::Package, "rpi-img", "bootforge-rpi4.img"),
            produced(Kind::Build, "ipxe", "ipxe/ipxe.efi"),
        ];
        let mut b = a.clone();
        b.reverse();
        let (ra, rb) = (
            Release::from_produced(&a).unwrap(),
            Release::from_produced(&b).unwrap(),
        );
        assert_eq!(ra.encode().unwrap(), rb.encode().unwrap());
        assert_eq!(ra.find("rpi-img").unwrap().name, "bootforge-rpi4.img");
        assert_eq!(ra.find("ipxe.efi").unwrap().name, "ipxe/ipxe.efi");
        assert!(ra.find("nope").is_none());
        let (bytes, d) = ra.encode().unwrap();
        assert_eq!(Release::decode(&bytes, &d, "m").unwrap(), ra);
        let e = Release::decode(b"{}", &d, "m").unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
    }

    #[test]
    fn channel_names() {
        check_channel("nightly").unwrap();
        check_channel("v1.2-rc_1").unwrap();
        for bad in ["", "Nightly", "../x", "a/b", "-x"] {
            assert!(check_channel(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_names_are_plain_relative_paths() {
        for good in ["bootforge.iso", "ipxe/bin-x86_64-efi/ipxe.efi", "a b+c~1"] {
            check_artifact_name(good).unwrap();
        }
        let long = "x".repeat(1025);
        let part = format!("{}/y", "x".repeat(256));
        for bad in [
            "",
            "/abs",
            "a/",
            "a//b",
            ".",
            "..",
            "a/../b",
            "a/.",
            "a\\b",
            "a\u{0}b",
            "\u{1b}[0m",
            &long,
            &part,
        ] {
            assert!(check_artifact_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(shown("a\u{1b}"), "\"a\\u{1b}\"");
        assert!(shown(&long).ends_with("… (1025 bytes)"));
    }
}
