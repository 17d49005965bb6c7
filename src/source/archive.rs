//! `url` sources: archives pinned by sha256, kept in the store as blobs (so `cache import`
//! makes them available without any download) and unpacked into build trees.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::store::{Digest, Store};

/// Makes sure the archive pinned as `sha256` is in the store, downloading it from `fetch_from`
/// (a URL, `file://` URL or local path) when absent. A download that does not match the pin
/// is refused and nothing is stored.
pub fn ensure_blob(store: &Store, url: &str, fetch_from: &str, sha256: &Digest) -> Result<()> {
    if store.has_blob(sha256) {
        return Ok(());
    }
    let local = fetch_from
        .strip_prefix("file://")
        .or((!fetch_from.contains("://")).then_some(fetch_from));
    let result = match local {
        Some(path) => {
            let f = File::open(path).with_context(|| format!("opening {path}"))?;
            store.put_expected(BufReader::new(f), sha256)
        }
        None => {
            eprintln!("downloading {fetch_from}");
            let resp = ureq::get(fetch_from)
                .call()
                .with_context(|| format!("downloading {fetch_from}"))?;
            store.put_expected(resp.into_body().into_reader(), sha256)
        }
    };
    result.with_context(|| {
        format!(
            "source {url} (fetched from {fetch_from}) does not match its pin; to use a copy \
             you already have, run `bootforge cache import FILE`"
        )
    })?;
    Ok(())
}

/// How an archive is packed, from the name in its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Tar,
    TarGz,
    TarXz,
    TarBz2,
    Zip,
    Deb,
}

fn format_of(url: &str) -> Result<Format> {
    let name = url.rsplit('/').next().unwrap_or(url).to_ascii_lowercase();
    let name = name.split(['?', '#']).next().unwrap_or_default();
    let table = [
        (".tar.gz", Format::TarGz),
        (".tgz", Format::TarGz),
        (".tar.xz", Format::TarXz),
        (".txz", Format::TarXz),
        (".tar.bz2", Format::TarBz2),
        (".tbz2", Format::TarBz2),
        (".tar", Format::Tar),
        (".zip", Format::Zip),
        (".deb", Format::Deb),
    ];
    table
        .iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, f)| *f)
        .with_context(|| {
            format!("cannot tell how `{name}` is packed: expected .tar.gz, .tar.xz, .tar.bz2, .tar, .zip or .deb")
        })
}

/// Unpacks the archive blob into `dest`, dropping `strip` leading path components.
pub fn unpack(store: &Store, blob: &Digest, url: &str, strip: u32, dest: &Path) -> Result<()> {
    let format = format_of(url)?;
    let what = || format!("unpacking {url} ({blob})");
    match format {
        Format::Tar => unpack_tar(store.open_blob(blob)?, strip, dest),
        Format::TarGz => unpack_tar(
            flate2::read::GzDecoder::new(store.open_blob(blob)?),
            strip,
            dest,
        ),
        Format::TarXz => unpack_tar(
            xz2::read::XzDecoder::new(store.open_blob(blob)?),
            strip,
            dest,
        ),
        Format::TarBz2 => unpack_tar(
            bzip2::read::BzDecoder::new(store.open_blob(blob)?),
            strip,
            dest,
        ),
        Format::Zip => unpack_zip(store, blob, strip, dest),
        Format::Deb => unpack_deb(store.open_blob(blob)?, strip, dest),
    }
    .with_context(what)
}

/// Unpacks a tar stream safely: only plain relative paths, nothing outside `dest`.
pub fn unpack_tar(r: impl Read, strip: u32, dest: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(rel) = stripped(&path, strip)? else {
            continue;
        };
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("writing {}", rel.display()))?;
    }
    // Read to the real end so a verifying reader underneath gets to check the hash.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(())
}

fn unpack_zip(store: &Store, blob: &Digest, strip: u32, dest: &Path) -> Result<()> {
    // Zip needs seeking, so verify the whole blob first, then read it directly.
    io::copy(&mut store.open_blob(blob)?, &mut io::sink())?;
    let file = File::open(store.blob_path(blob))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let Some(name) = entry.enclosed_name() else {
            bail!("zip entry {:?} escapes the build tree", entry.name());
        };
        let Some(rel) = stripped(&name, strip)? else {
            continue;
        };
        let target = dest.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = File::create(&target)?;
        io::copy(&mut entry, &mut out)?;
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            out.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
        }
    }
    Ok(())
}

/// A `.deb` is an ar archive; its `data.tar.*` member holds the files.
fn unpack_deb(r: impl Read, strip: u32, dest: &Path) -> Result<()> {
    let mut ar = ar::Archive::new(r);
    while let Some(member) = ar.next_entry() {
        let member = member?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        let name = name.trim_end_matches('/');
        match name {
            "data.tar" => return unpack_tar(member, strip, dest),
            "data.tar.gz" => return unpack_tar(flate2::read::GzDecoder::new(member), strip, dest),
            "data.tar.xz" => return unpack_tar(xz2::read::XzDecoder::new(member), strip, dest),
            "data.tar.bz2" => return unpack_tar(bzip2::read::BzDecoder::new(member), strip, dest),
            n if n.starts_with("data.tar") => bail!("unsupported .deb payload `{n}`"),
            _ => {}
        }
    }
    bail!("no data.tar member: not a Debian package")
}

/// `path` with `strip` leading components removed; `None` when nothing is left. Refuses
/// absolute paths and `..`.
fn stripped(path: &Path, strip: u32) -> Result<Option<PathBuf>> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            _ => bail!("archive entry `{}` escapes the build tree", path.display()),
        }
    }
    let rest: PathBuf = parts.into_iter().skip(strip as usize).collect();
    Ok((!rest.as_os_str().is_empty()).then_some(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names() {
        assert_eq!(
            format_of("https://x/grub-2.12.tar.xz").unwrap(),
            Format::TarXz
        );
        assert_eq!(
            format_of("https://x/a.tgz?download=1").unwrap(),
            Format::TarGz
        );
        assert_eq!(
            format_of("https://x/ipxe_1.0_all.deb").unwrap(),
            Format::Deb
        );
        assert!(format_of("https://x/a.rar").is_err());
    }

    #[test]
    fn strip_and_traversal() {
        assert_eq!(
            stripped(Path::new("grub-2.12/configure"), 1).unwrap(),
            Some(PathBuf::from("configure"))
        );
        assert_eq!(stripped(Path::new("grub-2.12/"), 1).unwrap(), None);
        assert!(stripped(Path::new("../etc/passwd"), 0).is_err());
    }
}
