//! `bootforge fetch` and `bootforge ls`: reading a published store (S3 or HTTPS).
//!
//! A download goes to a `.part` file beside the destination, resumes from it when run again,
//! and is renamed into place only once its sha256 (and, with a key, the signature over the
//! manifest or SHA256SUMS naming it) checks out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use crate::publish::location::Location;
use crate::publish::progress::Progress;
use crate::publish::release::{
    Artifact, Channel, Release, check_artifact_name, check_channel, keys, shown,
};
use crate::publish::remote::Remote;
use crate::publish::sign::Verifier;
use crate::store::{Digest, Hasher, hash_reader};

/// What to fetch.
pub struct Request<'a> {
    /// An artifact name, a package target (`rpi-img`), or `sha256:<hex>`.
    pub what: &'a str,
    pub from: &'a Location,
    pub channel: Option<&'a str>,
    pub out: Option<&'a Path>,
    pub verify_key: Option<&'a Path>,
}

/// What a fetch wrote.
#[derive(Debug, Serialize)]
pub struct FetchReport {
    pub name: String,
    pub sha256: Digest,
    pub size: u64,
    pub path: PathBuf,
    /// Bytes taken from an earlier interrupted download.
    pub resumed_from: u64,
    pub downloaded: u64,
    /// The destination already held these bytes.
    pub up_to_date: bool,
    pub signature_verified: bool,
    pub manifest: Option<Digest>,
}

/// Downloads one artifact, verified, to its destination.
pub fn fetch(req: &Request) -> Result<FetchReport> {
    let remote = Remote::open(req.from)?;
    let verifier = req.verify_key.map(Verifier::load).transpose()?;
    let (artifact_name, digest, manifest, listed_size) = match req.what.strip_prefix("sha256:") {
        Some(_) => {
            let d = Digest::parse(req.what)?;
            if let Some(v) = &verifier {
                check_signed_sums(&remote, req.from, v, &d)?;
            }
            (d.hex(), d, None, None)
        }
        None => {
            let channel = req.channel.ok_or_else(|| {
                anyhow!(
                    "fetching `{}` by name needs --channel (or fetch sha256:<hex>)",
                    req.what
                )
            })?;
            let (pointer, release, manifest_bytes) = resolve_channel(&remote, req.from, channel)?;
            if let Some(v) = &verifier {
                let mkey = keys::manifest(&pointer.manifest);
                let sig = remote.get(&format!("{mkey}.minisig"))?.ok_or_else(|| {
                    anyhow!(
                        "{}/{mkey}: not signed (no .minisig), and --verify-key was given",
                        req.from
                    )
                })?;
                v.verify(
                    &manifest_bytes,
                    &String::from_utf8_lossy(&sig),
                    &format!("{}/{mkey}", req.from),
                )?;
            }
            let a = release.find(req.what).ok_or_else(|| {
                anyhow!(
                    "channel {channel} (manifest {}) has no artifact `{}`; it has: {}",
                    pointer.manifest,
                    req.what,
                    names(&release.artifacts)
                )
            })?;
            (
                a.name.clone(),
                a.sha256,
                Some(pointer.manifest),
                Some(a.size),
            )
        }
    };
    let size = remote
        .head(&keys::blob(&digest))?
        .ok_or_else(|| anyhow!("{}/{} does not exist", req.from, keys::blob(&digest)))?;
    if let Some(listed) = listed_size
        && listed != size
    {
        bail!(
            "{}/{}: the server holds {size} bytes, but the manifest lists {listed}; nothing \
             was written",
            req.from,
            keys::blob(&digest)
        );
    }
    let file_name = artifact_name.rsplit('/').next().unwrap_or(&artifact_name);
    let dest = match req.out {
        // Like `cp` and `aws s3 cp`: into an existing directory, under the artifact's name.
        Some(p) if p.is_dir() => p.join(file_name),
        Some(p) => p.to_owned(),
        None => PathBuf::from(file_name),
    };
    let mut report = FetchReport {
        name: artifact_name,
        sha256: digest,
        size,
        path: dest.clone(),
        resumed_from: 0,
        downloaded: 0,
        up_to_date: false,
        signature_verified: verifier.is_some(),
        manifest,
    };
    if let Ok(f) = File::open(&dest)
        && f.metadata()?.len() == size
        && hash_reader(&f)?.0 == digest
    {
        report.up_to_date = true;
        return Ok(report);
    }
    download_verified(&remote, req.from, &digest, size, &dest, &mut report)?;
    Ok(report)
}

/// The channel's pointer, release and the release's exact bytes, with clear errors for a
/// missing channel.
pub fn resolve_channel(
    remote: &Remote,
    from: &Location,
    channel: &str,
) -> Result<(Channel, Release, Vec<u8>)> {
    check_channel(channel)?;
    let ckey = keys::channel(channel);
    let Some(bytes) = remote.get(&ckey)? else {
        let known = channel_names(remote)?;
        bail!(
            "unknown channel `{channel}` at {from} (no {ckey}); channels there: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    };
    let pointer = Channel::decode(&bytes, channel, &format!("{from}/{ckey}"))?;
    let mkey = keys::manifest(&pointer.manifest);
    let m = remote
        .get(&mkey)?
        .ok_or_else(|| anyhow!("{from}/{mkey}: channel {channel} points at a missing manifest"))?;
    let release = Release::decode(&m, &pointer.manifest, &format!("{from}/{mkey}"))?;
    Ok((pointer, release, m))
}

/// The channels a store holds, from its listing (or, over HTTPS, its `index.json`); a name no
/// channel may have is left out with a warning.
fn channel_names(remote: &Remote) -> Result<Vec<String>> {
    let names: Vec<String> = match remote.list("channels/")? {
        Some(objects) => objects
            .iter()
            .filter_map(|o| {
                o.rel
                    .strip_prefix("channels/")
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_owned)
            })
            .collect(),
        None => match remote.get(keys::INDEX)? {
            Some(bytes) => index_channels(&bytes),
            None => Vec::new(),
        },
    };
    Ok(names
        .into_iter()
        .filter(|n| match check_channel(n) {
            Ok(()) => true,
            Err(_) => {
                eprintln!("warning: left out channel {}: not a channel name", shown(n));
                false
            }
        })
        .collect())
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

fn names(artifacts: &[Artifact]) -> String {
    artifacts
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A blob fetched by digest with a key: the signed SHA256SUMS must list it.
fn check_signed_sums(remote: &Remote, from: &Location, v: &Verifier, d: &Digest) -> Result<()> {
    let sums = remote
        .get(keys::SUMS)?
        .ok_or_else(|| anyhow!("{from}/{}: missing", keys::SUMS))?;
    let sig = remote
        .get(&format!("{}.minisig", keys::SUMS))?
        .ok_or_else(|| {
            anyhow!(
                "{from}/{}.minisig: missing, and --verify-key was given",
                keys::SUMS
            )
        })?;
    v.verify(
        &sums,
        &String::from_utf8_lossy(&sig),
        &format!("{from}/{}", keys::SUMS),
    )?;
    if !sums_lines(&sums, &format!("{from}/{}", keys::SUMS)).any(|(listed, _)| listed == *d) {
        bail!("{d} is not listed in the signed {from}/{}", keys::SUMS);
    }
    Ok(())
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

/// Downloads into `.<name>.<hex>.part` (resuming it), verifies, renames into place.
fn download_verified(
    remote: &Remote,
    from: &Location,
    d: &Digest,
    size: u64,
    dest: &Path,
    report: &mut FetchReport,
) -> Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = dest
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", dest.display()))?
        .to_string_lossy();
    let part = dir.join(format!(".{file_name}.{}.part", d.short(16)));
    let key = keys::blob(d);
    for attempt in 0..2 {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&part)
            .with_context(|| format!("opening {}", part.display()))?;
        let mut have = f.metadata()?.len();
        if have > size {
            f.set_len(0)?;
            have = 0;
        }
        report.resumed_from = have;
        // Hashed as it streams in; only a resumed prefix is read back.
        let mut hasher = Hasher::new();
        if have > 0 {
            eprintln!("resuming {} at byte {have} of {size}", part.display());
            let mut prefix = File::open(&part)?;
            io::copy(&mut prefix, &mut HashInto(&mut hasher))?;
        }
        if have < size {
            let progress = Progress::new("downloaded", size - have);
            let mut w = Counting {
                inner: io::BufWriter::with_capacity(1 << 20, &mut f),
                hasher: &mut hasher,
                progress: &progress,
            };
            report.downloaded += remote.download(&key, have, size - have, &mut w)?;
            w.inner.flush()?;
            drop(w);
            progress.finish();
        }
        f.sync_all()?;
        let (got, got_size) = hasher.finish();
        if got == *d && got_size == size {
            fs::rename(&part, dest)
                .with_context(|| format!("renaming {} to {}", part.display(), dest.display()))?;
            File::open(&dir)?.sync_all()?;
            return Ok(());
        }
        fs::remove_file(&part)?;
        if attempt == 0 && have > 0 {
            eprintln!("the resumed download does not check out; downloading it whole");
            continue;
        }
        bail!(
            "{from}/{key}: downloaded {got_size} bytes with sha256 {got}, expected {d} ({size} \
             bytes): the server's copy is corrupt; nothing was written to {}",
            dest.display()
        );
    }
    unreachable!("the second attempt returns")
}

/// Hashes and counts what is written through it.
struct Counting<'a, W> {
    inner: W,
    hasher: &'a mut Hasher,
    progress: &'a Progress,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.progress.add(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A sink feeding a hasher, to hash a reader with `io::copy`.
struct HashInto<'a>(&'a mut Hasher);

impl Write for HashInto<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

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
pub fn ls(from: &Location) -> Result<Listing> {
    let remote = Remote::open(from)?;
    let mut channels = Vec::new();
    for name in channel_names(&remote)? {
        // One forged or broken channel must not hide the others.
        let (pointer, release, _) = match resolve_channel(&remote, from, &name) {
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
    let listed = |prefix: &str, suffix: &str, used_by: &dyn Fn(&Digest) -> Vec<String>| {
        remote.list(prefix).map(|objects| {
            objects.map(|objects| {
                objects
                    .iter()
                    .filter_map(|o| {
                        let hex = o.rel.strip_prefix(prefix)?.strip_suffix(suffix)?;
                        let d = Digest::parse(&format!("sha256:{hex}")).ok()?;
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
    let manifests = listed("manifests/", ".json", &|d| {
        channels
            .iter()
            .filter(|c| &c.manifest == d)
            .map(|c| c.name.clone())
            .collect()
    })?;
    let blobs = listed("blobs/sha256/", "", &|d| {
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
        location: from.to_string(),
        channels,
        manifests,
        blobs,
    })
}

fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
