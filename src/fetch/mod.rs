//! `bootforge fetch` and `bootforge ls`: reading a store someone published to (a bucket, an
//! HTTPS copy, or a directory).
//!
//! A download goes to a `.part` file beside the destination, resumes from it when run again,
//! and is renamed into place only once its sha256 (and, with a key, the signature over the
//! manifest or SHA256SUMS naming it) checks out. An artifact published compressed (a
//! Raspberry Pi image's `.img.xz`) is downloaded compressed and decompressed as it streams:
//! the compressed bytes are checked against their digest, the image against its own.

mod ls;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use crate::base::progress::{Counted, Progress};
use crate::base::sign::Verifier;
use crate::base::{Digest, hash_reader};
use crate::release::{self, Artifact, Compressed};
use crate::store::{self, Storage, layout};
pub use ls::{ChannelListing, Listing, ObjectListing, ls};

/// What to fetch.
pub struct Request<'a> {
    /// An artifact name, a package target (`rpi-img`), or `sha256:<hex>`.
    pub what: &'a str,
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
    /// The compressed form that was downloaded (and checked) instead of the raw bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compressed: Option<Compressed>,
}

/// The artifact a request names, found and (with a key) its listing's signature checked.
struct Wanted {
    name: String,
    digest: Digest,
    manifest: Option<Digest>,
    /// The size the manifest lists (by name only).
    listed_size: Option<u64>,
    /// Its compressed form, downloaded instead when there is one.
    compressed: Option<Compressed>,
}

/// Downloads one artifact, verified, to its destination.
pub fn fetch(from: &dyn Storage, req: &Request) -> Result<FetchReport> {
    let verifier = req.verify_key.map(Verifier::load).transpose()?;
    let wanted = match req.what.strip_prefix("sha256:") {
        Some(_) => by_digest(from, req.what, verifier.as_ref())?,
        None => by_name(from, req, verifier.as_ref())?,
    };
    // What is downloaded: the compressed form when there is one.
    let (download, listed) = match &wanted.compressed {
        Some(c) => (c.sha256, Some(c.size)),
        None => (wanted.digest, wanted.listed_size),
    };
    let key = layout::blob(&download);
    let at = from.location();
    let download_size = from
        .head(&key)?
        .ok_or_else(|| anyhow!("{at}/{key} does not exist"))?;
    if let Some(listed) = listed
        && listed != download_size
    {
        bail!(
            "{at}/{key}: the server holds {download_size} bytes, but the manifest lists \
             {listed}; nothing was written"
        );
    }
    let dest = destination(&wanted.name, req.out);
    let mut report = FetchReport {
        name: wanted.name,
        sha256: wanted.digest,
        size: wanted.listed_size.unwrap_or(download_size),
        path: dest.clone(),
        resumed_from: 0,
        downloaded: 0,
        up_to_date: false,
        signature_verified: verifier.is_some(),
        manifest: wanted.manifest,
        compressed: wanted.compressed,
    };
    let size = report.size;
    if let Ok(f) = File::open(&dest)
        && f.metadata()?.len() == size
        && hash_reader(&f)?.0 == wanted.digest
    {
        report.up_to_date = true;
        return Ok(report);
    }
    let unpack = report.compressed.is_some().then_some((wanted.digest, size));
    download_verified(from, &download, download_size, unpack, &dest, &mut report)?;
    Ok(report)
}

/// A blob by digest; with a key, the signed SHA256SUMS must list it.
fn by_digest(from: &dyn Storage, what: &str, verifier: Option<&Verifier>) -> Result<Wanted> {
    let d = Digest::parse(what)?;
    if let Some(v) = verifier {
        let at = from.location();
        let sums = from
            .get(layout::SUMS)?
            .ok_or_else(|| anyhow!("{at}/{}: missing", layout::SUMS))?;
        let skey = layout::signature(layout::SUMS);
        let sig = from
            .get(&skey)?
            .ok_or_else(|| anyhow!("{at}/{skey}: missing, and --verify-key was given"))?;
        let what = format!("{at}/{}", layout::SUMS);
        v.verify(&sums, &String::from_utf8_lossy(&sig), &what)?;
        if !release::sums_lines(&sums, &what).any(|(listed, _)| listed == d) {
            bail!("{d} is not listed in the signed {what}");
        }
    }
    Ok(Wanted {
        name: d.hex(),
        digest: d,
        manifest: None,
        listed_size: None,
        compressed: None,
    })
}

/// An artifact by name, file name or package target in a channel's release; with a key,
/// the manifest's signature must verify.
fn by_name(from: &dyn Storage, req: &Request, verifier: Option<&Verifier>) -> Result<Wanted> {
    let channel = req.channel.ok_or_else(|| {
        anyhow!(
            "fetching `{}` by name needs --channel (or fetch sha256:<hex>)",
            req.what
        )
    })?;
    let (pointer, release, manifest_bytes) = release::read_channel(from, channel)?;
    if let Some(v) = verifier {
        let at = from.location();
        let mkey = layout::manifest(&pointer.manifest);
        let sig = from.get(&layout::signature(&mkey))?.ok_or_else(|| {
            anyhow!("{at}/{mkey}: not signed (no .minisig), and --verify-key was given")
        })?;
        v.verify(
            &manifest_bytes,
            &String::from_utf8_lossy(&sig),
            &format!("{at}/{mkey}"),
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
    Ok(Wanted {
        name: a.name.clone(),
        digest: a.sha256,
        manifest: Some(pointer.manifest),
        listed_size: Some(a.size),
        compressed: a.compressed.clone(),
    })
}

fn names(artifacts: &[Artifact]) -> String {
    artifacts
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the artifact goes: like `cp` and `aws s3 cp`, into an existing directory under its
/// own (last) name. The name was checked to be a plain relative path when its manifest was
/// read, so its last part is a plain file name.
fn destination(name: &str, out: Option<&Path>) -> PathBuf {
    let file_name = name.rsplit('/').next().unwrap_or(name);
    match out {
        Some(p) if p.is_dir() => p.join(file_name),
        Some(p) => p.to_owned(),
        None => PathBuf::from(file_name),
    }
}

/// Downloads into `.<name>.<hex>.part` (resuming it), verifies, renames into place. With
/// `unpack` (the raw digest and size of an xz download), the verified compressed stream is
/// decompressed as it arrives into a second part file, which is what is renamed into place
/// once both digests check out; the compressed part stays until then, so a cut download
/// resumes where it stopped.
fn download_verified(
    from: &dyn Storage,
    d: &Digest,
    size: u64,
    unpack: Option<(Digest, u64)>,
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
        if have > 0 {
            eprintln!("resuming {} at byte {have} of {size}", part.display());
        }
        // Only a resumed prefix is read back; the rest is hashed as it streams in.
        let prefix = store::hash_file_prefix(&mut File::open(&part)?)?;
        let mut raw = match unpack {
            Some(_) => Some(Unpacking::start(&dir, &file_name, &part, have)?),
            None => None,
        };
        let progress = Progress::new("downloaded", size - have);
        let mut w = Tee {
            part: Counted::new(io::BufWriter::with_capacity(1 << 20, &mut f), &progress),
            raw: raw.as_mut(),
        };
        let verified = store::read_blob_into(from, d, size, have, prefix, &mut w);
        w.flush()?;
        drop(w);
        progress.finish();
        match verified {
            Ok(n) => {
                report.downloaded += n;
                let done = match (raw, unpack) {
                    (Some(u), Some((digest, len))) => {
                        let raw_part = u.finish(&digest, len)?;
                        fs::remove_file(&part)?;
                        raw_part
                    }
                    _ => {
                        f.sync_all()?;
                        part.clone()
                    }
                };
                fs::rename(&done, dest).with_context(|| {
                    format!("renaming {} to {}", done.display(), dest.display())
                })?;
                File::open(&dir)?.sync_all()?;
                return Ok(());
            }
            Err(e) if e.downcast_ref::<store::CorruptBlob>().is_some() => {
                fs::remove_file(&part)?;
                if let Some(u) = raw {
                    u.discard();
                }
                if attempt == 0 && have > 0 {
                    eprintln!("the resumed download does not check out; downloading it whole");
                    continue;
                }
                return Err(e.context(format!("nothing was written to {}", dest.display())));
            }
            Err(e) => {
                if let Some(u) = raw {
                    u.discard();
                }
                return Err(e);
            }
        }
    }
    unreachable!("the second attempt returns")
}

/// Writes what is downloaded to its part file and, when unpacking, to the decompressor.
/// A stream the decompressor rejects is not an error here: the download goes on, so that
/// its digest names the corruption; the decompressor's error stays in the [`Unpacking`].
struct Tee<'a, P: Write> {
    part: P,
    raw: Option<&'a mut Unpacking>,
}

impl<P: Write> Write for Tee<'_, P> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.part.write(buf)?;
        if let Some(u) = self.raw.as_mut()
            && u.error.is_none()
            && let Err(e) = u.decoder.write_all(&buf[..n])
        {
            u.error = Some(e);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.part.flush()
    }
}

/// The raw image being decompressed beside a compressed download.
struct Unpacking {
    path: PathBuf,
    decoder: xz2::write::XzDecoder<crate::base::HashingWriter<io::BufWriter<File>>>,
    /// The decompressor's first error, if the stream was bad.
    error: Option<io::Error>,
}

impl Unpacking {
    /// Starts `.<name>.raw.part` afresh, decompressing the compressed bytes a resumed
    /// download already holds.
    fn start(dir: &Path, file_name: &str, compressed_part: &Path, have: u64) -> Result<Unpacking> {
        let path = dir.join(format!(".{file_name}.raw.part"));
        let out = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut decoder = xz2::write::XzDecoder::new(crate::base::HashingWriter::new(
            io::BufWriter::with_capacity(1 << 20, out),
        ));
        let mut error = None;
        if have > 0 {
            let mut prefix = File::open(compressed_part)?.take(have);
            // Like the rest of the stream: a bad prefix shows as a digest mismatch.
            if let Err(e) = io::copy(&mut prefix, &mut decoder) {
                error = Some(e);
            }
        }
        Ok(Unpacking {
            path,
            decoder,
            error,
        })
    }

    /// Ends the stream and checks the image against its own digest and size; returns the
    /// part file to rename into place.
    fn finish(mut self, digest: &Digest, len: u64) -> Result<PathBuf> {
        let finished = match self.error.take() {
            Some(e) => Err(e),
            None => self.decoder.finish(),
        };
        let checked = finished
            .map_err(|e| anyhow!("it does not decompress: {e}"))
            .and_then(|hashing| {
                let (out, got, n) = hashing.finish();
                if &got != digest || n != len {
                    bail!(
                        "it decompressed to {n} bytes with {got}, but the manifest lists {len} \
                         bytes with {digest}"
                    );
                }
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                Ok(())
            });
        if let Err(e) = checked {
            let _ = fs::remove_file(&self.path);
            return Err(e.context(
                "the compressed download checked out but its image does not; nothing was written",
            ));
        }
        Ok(self.path)
    }

    fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}
