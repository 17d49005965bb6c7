//! `url` sources: archives pinned by sha256, kept in the store as blobs (so `cache import`
//! makes them available without any download) and unpacked into build trees.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bzip2::read::BzDecoder;
use flate2::read::GzDecoder;
use xz2::read::XzDecoder;

use super::unpack::{AbsoluteLinks, MAX_LINK_TARGET, Refused, Tree, refuse};
use crate::base::Digest;
use crate::store::Store;

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
pub enum Format {
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

/// Unpacks the archive blob into `dest`, dropping `strip` leading path components. An archive
/// with an entry that could write outside `dest` (see [`super::unpack`]) is refused whole and
/// removed from the store, so no later build picks it up again.
pub fn unpack(store: &Store, blob: &Digest, url: &str, strip: u32, dest: &Path) -> Result<()> {
    let format = format_of(url)?;
    // Verified whole first: zip needs to seek, and nothing is unpacked from bytes that are
    // not the pinned ones.
    io::copy(&mut store.open_blob(blob)?, &mut io::sink())
        .with_context(|| format!("reading {url} ({blob})"))?;
    let file = File::open(store.blob_path(blob))?;
    let unpacked = Tree::open(dest, strip, absolute_links(format))
        .and_then(|tree| write_archive(format, BufReader::with_capacity(1 << 20, file), tree));
    match unpacked {
        Err(e) if e.downcast_ref::<Refused>().is_some() => {
            store.remove_blob(blob)?;
            Err(e.context(format!(
                "source archive {url} ({blob}) is refused and was removed from the store"
            )))
        }
        other => other.with_context(|| format!("unpacking {url} ({blob})")),
    }
}

/// Unpacks archive bytes of `format` into `dest`, writing at most `limit` bytes of content
/// (the fuzz targets' way in).
pub fn unpack_bytes(
    format: Format,
    bytes: &[u8],
    strip: u32,
    dest: &Path,
    limit: u64,
) -> Result<()> {
    let tree = Tree::open(dest, strip, absolute_links(format))?.limit(limit);
    write_archive(format, io::Cursor::new(bytes), tree)
}

/// Unpacks a tar stream into `dest` (absolute link targets refused).
pub fn unpack_tar(r: impl Read, strip: u32, dest: &Path) -> Result<()> {
    let mut tree = Tree::open(dest, strip, AbsoluteLinks::Refuse)?;
    tar_into(r, &mut tree)?;
    tree.finish()
}

/// What an absolute link means in an archive of `format`.
fn absolute_links(format: Format) -> AbsoluteLinks {
    match format {
        // A .deb's data.tar is a filesystem rooted at `/`.
        Format::Deb => AbsoluteLinks::PackageRoot,
        _ => AbsoluteLinks::Refuse,
    }
}

/// Writes every entry of an archive of `format` into `tree`, then checks the whole tree.
fn write_archive(format: Format, r: impl Read + io::Seek, mut tree: Tree) -> Result<()> {
    match format {
        Format::Tar => tar_into(r, &mut tree)?,
        Format::TarGz => tar_into(GzDecoder::new(r), &mut tree)?,
        Format::TarXz => tar_into(XzDecoder::new(r), &mut tree)?,
        Format::TarBz2 => tar_into(BzDecoder::new(r), &mut tree)?,
        Format::Zip => zip_into(r, &mut tree)?,
        Format::Deb => deb_into(r, &mut tree)?,
    }
    tree.finish()
}

/// Writes every entry of a tar stream into `tree`.
fn tar_into(r: impl Read, tree: &mut Tree) -> Result<()> {
    use tar::EntryType as T;
    let mut archive = tar::Archive::new(r);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644);
        let mtime = header.mtime().ok();
        let link = || -> Result<PathBuf> {
            entry
                .link_name()?
                .map(|l| l.into_owned())
                .ok_or_else(|| refuse(&name, "is a link without a target"))
        };
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                tree.file(&name, mode, mtime, &mut entry)?
            }
            T::Directory => tree.dir(&name, mode)?,
            T::Symlink => tree.symlink(&name, &link()?)?,
            T::Link => tree.hard_link(&name, &link()?)?,
            // Metadata for the entries that follow, already applied by the reader.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            T::Char => return Err(refuse(&name, "is a character device node")),
            T::Block => return Err(refuse(&name, "is a block device node")),
            T::Fifo => return Err(refuse(&name, "is a FIFO (named pipe)")),
            other => {
                return Err(refuse(
                    &name,
                    format!(
                        "has the unknown tar entry type {:?}",
                        other.as_byte() as char
                    ),
                ));
            }
        }
    }
    // Read to the real end so a verifying reader underneath gets to check the hash.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(())
}

fn zip_into(r: impl Read + io::Seek, tree: &mut Tree) -> Result<()> {
    let mut zip = zip::ZipArchive::new(r)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let name = PathBuf::from(entry.name()?.into_owned());
        let mode = entry.unix_mode();
        if entry.is_symlink() {
            // A link's target is its content.
            let mut target = Vec::new();
            (&mut entry)
                .take(MAX_LINK_TARGET as u64 + 1)
                .read_to_end(&mut target)?;
            let target = PathBuf::from(std::ffi::OsString::from_vec(target));
            tree.symlink(&name, &target)?;
        } else if entry.is_dir() {
            tree.dir(&name, mode.unwrap_or(0o755))?;
        } else {
            match mode.map(|m| m & S_IFMT) {
                None | Some(0) | Some(S_IFREG) => {}
                Some(_) => return Err(refuse(&name, "is a device node, FIFO or socket")),
            }
            tree.file(&name, mode.unwrap_or(0o644), None, &mut entry)?;
        }
    }
    Ok(())
}

/// File type bits of a Unix mode, as zip's external attributes carry them.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// A `.deb` is an ar archive; its `data.tar.*` member holds the files, rooted at `/`.
fn deb_into(r: impl Read, tree: &mut Tree) -> Result<()> {
    let mut ar = ar::Archive::new(r);
    while let Some(member) = ar.next_entry() {
        let member = member?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        match name.trim_end_matches('/') {
            "data.tar" => return tar_into(member, tree),
            "data.tar.gz" => return tar_into(GzDecoder::new(member), tree),
            "data.tar.xz" => return tar_into(XzDecoder::new(member), tree),
            "data.tar.bz2" => return tar_into(BzDecoder::new(member), tree),
            n if n.starts_with("data.tar") => bail!("unsupported .deb payload `{n}`"),
            _ => {}
        }
    }
    bail!("no data.tar member: not a Debian package")
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
}

#[cfg(test)]
mod unpack_tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// A tar entry written byte by byte, so hostile names and links get in unchanged.
    fn raw(name: &str, kind: u8, link: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000_000);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = entries.concat();
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        raw(name, b'0', "", 0o644, data)
    }

    fn link(name: &str, to: &str) -> Vec<u8> {
        raw(name, b'2', to, 0o777, b"")
    }

    /// Unpacks into `<tmp>/tree` with strip 1; `<tmp>/outside` is a directory beside it.
    fn unpack(entries: &[Vec<u8>]) -> (tempfile::TempDir, Result<()>) {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("tree")).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        let r = unpack_tar(&archive(entries)[..], 1, &tmp.path().join("tree"));
        (tmp, r)
    }

    fn refused(r: Result<()>) -> String {
        let e = r.unwrap_err();
        assert!(
            e.downcast_ref::<Refused>().is_some(),
            "not a refusal: {e:#}"
        );
        format!("{e:#}")
    }

    #[test]
    fn a_link_out_then_a_file_through_it_writes_nothing_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::create_dir(tmp.path().join("tree")).unwrap();
        let r = unpack_tar(
            &archive(&[
                link("pkg/esc", outside.to_str().unwrap()),
                file("pkg/esc/pwned", b"x"),
            ])[..],
            1,
            &tmp.path().join("tree"),
        );
        let e = refused(r);
        assert!(
            e.contains("entry `pkg/esc`") && e.contains("absolute"),
            "{e}"
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn links_that_climb_out_are_refused_directly_or_through_other_links() {
        let (_t, r) = unpack(&[link("pkg/up", "../../outside")]);
        assert!(refused(r).contains("climbs out"));
        // Through a link already there.
        let (_t, r) = unpack(&[link("pkg/x", "."), link("pkg/l", "x/..")]);
        assert!(refused(r).contains("entry `pkg/l`"));
        // Made harmless-looking first, redirected by a later entry: caught at the end.
        let (t, r) = unpack(&[link("pkg/l", "x/.."), link("pkg/x", ".")]);
        let e = refused(r);
        assert!(e.contains("once the whole archive is unpacked"), "{e}");
        assert_eq!(fs::read_dir(t.path().join("outside")).unwrap().count(), 0);
        // A loop is not followed forever.
        let (_t, r) = unpack(&[
            link("pkg/a", "b"),
            link("pkg/b", "a"),
            link("pkg/c", "a/.."),
        ]);
        assert!(refused(r).contains("too many levels"));
    }

    #[test]
    fn links_and_files_that_stay_inside_are_kept() {
        let (t, r) = unpack(&[
            raw("pkg/sub/", b'5', "", 0o755, b""),
            file("pkg/sub/real", b"data"),
            link("pkg/alias", "sub/real"),
            link("pkg/dir", "sub"),
            file("pkg/dir/through", b"via link"),
            link("pkg/sub/dangling", "../generated/later"),
            raw("pkg/hard", b'1', "pkg/sub/real", 0o644, b""),
        ]);
        r.unwrap();
        let tree = t.path().join("tree");
        assert_eq!(fs::read(tree.join("alias")).unwrap(), b"data");
        assert_eq!(fs::read(tree.join("sub/through")).unwrap(), b"via link");
        assert_eq!(fs::read(tree.join("hard")).unwrap(), b"data");
        assert!(
            fs::symlink_metadata(tree.join("sub/dangling"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn hard_links_out_devices_and_fifos_are_refused() {
        for (entry, says) in [
            (
                raw("pkg/h", b'1', "/etc/passwd", 0o644, b""),
                "outside the build tree",
            ),
            (
                raw("pkg/h", b'1', "pkg/../../etc/passwd", 0o644, b""),
                "outside",
            ),
            (
                raw("pkg/h", b'1', "pkg/missing", 0o644, b""),
                "no file unpacked before",
            ),
            (raw("pkg/tty", b'3', "", 0o644, b""), "character device"),
            (raw("pkg/sda", b'4', "", 0o644, b""), "block device"),
            (raw("pkg/pipe", b'6', "", 0o644, b""), "FIFO"),
            (
                raw("pkg/v", b'V', "", 0o644, b""),
                "unknown tar entry type 'V'",
            ),
            (file("/etc/cron.d/x", b""), "absolute or `..`"),
            (file("pkg/../../x", b""), "absolute or `..`"),
        ] {
            let (_t, r) = unpack(&[entry]);
            let e = refused(r);
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn setuid_setgid_and_sticky_bits_are_cleared() {
        let (t, r) = unpack(&[
            raw("pkg/d/", b'5', "", 0o3775, b""),
            raw("pkg/d/su", b'0', "", 0o4755, b"#!/bin/sh\n"),
        ]);
        r.unwrap();
        let mode = |p: &str| {
            fs::metadata(t.path().join("tree").join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("d/su"), 0o755);
        assert_eq!(mode("d"), 0o775);
    }

    #[test]
    fn a_deb_s_absolute_links_point_into_the_package_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let data = archive(&[
            raw("./boot/", b'5', "", 0o755, b""),
            file("./boot/ipxe.efi", b"efi"),
            link("./usr/lib/ipxe/ipxe.efi", "/boot/ipxe.efi"),
        ]);
        let mut deb = Vec::new();
        {
            let mut ar = ar::Builder::new(&mut deb);
            for (name, body) in [("debian-binary", &b"2.0\n"[..]), ("data.tar", &data[..])] {
                ar.append(
                    &ar::Header::new(name.as_bytes().to_vec(), body.len() as u64),
                    body,
                )
                .unwrap();
            }
        }
        unpack_bytes(Format::Deb, &deb, 0, tmp.path(), 1 << 20).unwrap();
        let l = tmp.path().join("usr/lib/ipxe/ipxe.efi");
        assert_eq!(
            fs::read_link(&l).unwrap(),
            Path::new("../../../boot/ipxe.efi")
        );
        assert_eq!(fs::read(&l).unwrap(), b"efi");
    }

    #[test]
    fn a_time_past_the_clock_is_left_out() {
        let mut e = raw("pkg/f", b'0', "", 0o644, b"x");
        // u64::MAX seconds in the base-256 form GNU tar writes for times octal cannot hold.
        e[136..148].copy_from_slice(&[
            0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        assert_eq!(
            tar::Header::from_byte_slice(&e[..512]).mtime().unwrap(),
            u64::MAX
        );
        let mut h = tar::Header::from_byte_slice(&e[..512]).clone();
        h.set_cksum();
        e[..512].copy_from_slice(h.as_bytes());
        let (t, r) = unpack(&[e]);
        r.unwrap();
        assert_eq!(fs::read(t.path().join("tree/f")).unwrap(), b"x");
    }

    #[test]
    fn an_archive_unpacking_past_the_limit_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let big = archive(&[file("pkg/a", &[1; 600]), file("pkg/b", &[2; 600])]);
        let e = unpack_bytes(Format::Tar, &big, 1, tmp.path(), 1000).unwrap_err();
        assert!(e.downcast_ref::<Refused>().is_some(), "{e:#}");
        assert!(format!("{e:#}").contains("entry `pkg/b` takes the archive past 1000 bytes"));
    }

    #[test]
    fn zip_links_are_links_and_held_to_the_same_rules() {
        use std::io::Write;
        let zip_of = |link_to: &str| {
            let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default();
            w.start_file("pkg/real", opts).unwrap();
            w.write_all(b"data").unwrap();
            w.add_symlink("pkg/alias", link_to, opts).unwrap();
            w.start_file("pkg/alias/pwned", opts).unwrap();
            w.finish().unwrap().into_inner()
        };
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let evil = store
            .put_bytes(&zip_of(outside.to_str().unwrap()))
            .unwrap()
            .digest;
        let tree = tmp.path().join("tree");
        fs::create_dir(&tree).unwrap();
        let e = super::unpack(&store, &evil, "https://x.invalid/evil.zip", 1, &tree).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("https://x.invalid/evil.zip") && e.contains("entry `pkg/alias`"),
            "{e}"
        );
        assert!(
            !store.has_blob(&evil),
            "a refused archive stays in the store"
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

        // A link that stays inside is made as a link, not as a file holding its target.
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("pkg/real", opts).unwrap();
        w.write_all(b"data").unwrap();
        w.add_symlink("pkg/alias", "real", opts).unwrap();
        let good = store
            .put_bytes(&w.finish().unwrap().into_inner())
            .unwrap()
            .digest;
        let tree = tmp.path().join("tree2");
        fs::create_dir(&tree).unwrap();
        super::unpack(&store, &good, "https://x.invalid/good.zip", 1, &tree).unwrap();
        assert!(
            fs::symlink_metadata(tree.join("alias"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(fs::read(tree.join("alias")).unwrap(), b"data");
    }
}
