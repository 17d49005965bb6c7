//! Entry points for the cargo-fuzz targets in `tests/fuzz/`: each feeds arbitrary bytes to
//! one reader of untrusted input. An `Err` is the right answer to garbage; a panic, a hang or
//! a broken invariant (checked here with `assert!`) is a bug.

use std::path::Path;

use crate::base::Digest;
use crate::config::ConfigFile;
use crate::package::profile::LoadedProfile;
use crate::package::{patch, zinfo};
use crate::recipe::{LoadedRecipe, ScriptKind, placeholder::placeholder_bytes};
use crate::release::{Channel, Release, check_artifact_name};
use crate::release::{index_channels, sums_lines};
use crate::source::archive::{Format, unpack_bytes};

/// Where fuzzed documents claim to live: nothing is ever read there.
const NOWHERE: &str = "/nonexistent/bootforge-fuzz";

/// A recipe: parsing and validation.
pub fn recipe(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LoadedRecipe::parse(&Path::new(NOWHERE).join("fuzz.yaml"), text.to_owned());
    }
}

/// A media profile.
pub fn profile(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LoadedProfile::parse(&Path::new(NOWHERE).join("profile.yaml"), text);
    }
}

/// `bootforge.yaml`.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ConfigFile::parse(&Path::new(NOWHERE).join("bootforge.yaml"), text);
    }
}

/// What a bucket serves: a release manifest, a channel pointer, `index.json`, `SHA256SUMS`.
pub fn documents(data: &[u8]) {
    if let Ok(release) = Release::decode(data, &Digest::of(data), "fuzz") {
        for a in &release.artifacts {
            assert!(check_artifact_name(&a.name).is_ok(), "{:?} passed", a.name);
        }
        let (bytes, _) = release.encode().expect("a decoded release encodes");
        let again = Release::decode(&bytes, &Digest::of(&bytes), "fuzz").expect("round trip");
        assert_eq!(again, release);
    }
    let _ = Channel::decode(data, "nightly", "fuzz");
    let _ = index_channels(data);
    for (_, name) in sums_lines(data, "fuzz") {
        let (_, artifact) = name.split_once('/').expect("a channel/name");
        assert!(check_artifact_name(artifact).is_ok(), "{name:?} passed");
    }
}

/// Archive bytes unpacked into a fresh tree beside an empty directory: nothing may appear
/// outside the tree, and no link left in it may lead out of it.
pub fn unpack(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let formats = [
        Format::Tar,
        Format::TarGz,
        Format::TarXz,
        Format::TarBz2,
        Format::Zip,
        Format::Deb,
    ];
    let format = formats[usize::from(selector & 7) % formats.len()];
    let strip = u32::from(selector >> 6);
    let root = tempfile::tempdir().expect("a temporary directory");
    let (tree, outside) = (root.path().join("tree"), root.path().join("outside"));
    std::fs::create_dir(&tree).expect("tree");
    std::fs::create_dir(&outside).expect("outside");
    let _ = unpack_bytes(format, bytes, strip, &tree, 16 << 20);
    let beside: Vec<_> = std::fs::read_dir(root.path())
        .expect("root")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside.len(), 2, "written beside the tree: {beside:?}");
    assert_eq!(
        std::fs::read_dir(&outside).expect("outside").count(),
        0,
        "written outside the tree"
    );
    let tree = tree.canonicalize().expect("tree");
    for entry in walkdir::WalkDir::new(&tree).follow_links(false) {
        let Ok(entry) = entry else { continue };
        if entry.path_is_symlink()
            && let Ok(to) = entry.path().canonicalize()
        {
            assert!(to.starts_with(&tree), "{:?} leads to {to:?}", entry.path());
        }
    }
}

/// A placeholder in a binary: the first byte picks the script length, the rest is the binary.
pub fn patch(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let placeholder = placeholder_bytes(ScriptKind::Ipxe, 1024);
    let script = rest
        .get(..usize::from(n).min(rest.len()))
        .unwrap_or_default();
    let binary: Vec<u8> = [rest, &placeholder, rest].concat();
    let patched = patch::patch(&binary, &placeholder, script).expect("a placeholder is there");
    let patched = patched.expect("a placeholder is there");
    assert_eq!(patched.len(), binary.len());
}

/// An iPXE `.zinfo` file.
pub fn zinfo(data: &[u8]) {
    if let Ok(records) = zinfo::parse(data) {
        assert_eq!(records.len() * zinfo::RECORD, data.len());
    }
}

/// An `.xz` image's stream footers and indexes, as `flash` reads them before writing: a
/// size is only ever read from a whole stream (header, index and footer).
pub fn xz_index(data: &[u8]) {
    if crate::flash::xz::uncompressed_size(data, data.len() as u64).is_ok() {
        assert!(data.len() >= 24);
    }
}
