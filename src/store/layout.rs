//! Where everything lives in a store: the one place that knows the layout, which is the same
//! in a local directory, under a bucket prefix and behind an HTTPS URL.
//!
//! ```text
//! blobs/sha256/<hex>                 immutable content (artifacts, sources, logs, provenance)
//! actions/<key>.json                 build, embed and package results by action key
//! toolchains/<name>.<arch>.json      built toolchain images, per Debian architecture
//! history/<recipe>.json              the last action key per recipe, to explain cache misses
//! latest/<kind>-<name>.json          what the last build or package produced
//! manifests/<hex>.json (+ .minisig)  release manifests, named by their own sha256
//! channels/<name>.json               channel → manifest: the one mutable pointer
//! index.json  SHA256SUMS (+ .minisig)  os_list.json      views, rewritten on every publish
//! ```
//!
//! Only the local store also has `git/` (bare clones, a fetch cache), `tmp/`, `locks/` and
//! `engines/<engine>.json` (the `run` flags this machine's container engine was found to
//! need; never pushed).

use crate::base::Digest;

/// The folder of blobs, with its trailing slash (a listing prefix).
pub const BLOBS: &str = "blobs/sha256/";
/// The folder of release manifests.
pub const MANIFESTS: &str = "manifests/";
/// The folder of channel pointers.
pub const CHANNELS: &str = "channels/";
pub const INDEX: &str = "index.json";
pub const SUMS: &str = "SHA256SUMS";
pub const OS_LIST: &str = "os_list.json";
/// The icon `os_list.json` names, beside it.
pub const ICON: &str = "icon.png";

pub fn blob(d: &Digest) -> String {
    format!("{BLOBS}{}", d.hex())
}

pub fn action(key: &str) -> String {
    format!("actions/{key}.json")
}

/// A toolchain's record for one architecture: builders of several architectures share a
/// store, and an image runs only where it was built.
pub fn toolchain(name: &str, arch: &str) -> String {
    format!("toolchains/{name}.{arch}.json")
}

/// Where bootforge before per-architecture records kept one (built on this machine).
pub fn toolchain_unqualified(name: &str) -> String {
    format!("toolchains/{name}.json")
}

/// The `run` flags learned for a container engine on this machine (local store only).
pub fn engine_flags(engine: &str) -> String {
    format!("engines/{engine}.json")
}

pub fn history(recipe: &str) -> String {
    format!("history/{recipe}.json")
}

pub fn latest(kind: &str, name: &str) -> String {
    format!("latest/{kind}-{name}.json")
}

pub fn manifest(d: &Digest) -> String {
    format!("{MANIFESTS}{}.json", d.hex())
}

pub fn channel(name: &str) -> String {
    format!("{CHANNELS}{name}.json")
}

/// The minisign signature beside `key`.
pub fn signature(key: &str) -> String {
    format!("{key}.minisig")
}

/// The channel a `channels/<name>.json` key names.
pub fn channel_name(key: &str) -> Option<&str> {
    key.strip_prefix(CHANNELS)?.strip_suffix(".json")
}

/// The blob a `blobs/sha256/<hex>` key names.
pub fn blob_digest(key: &str) -> Option<Digest> {
    Digest::parse(key.strip_prefix(BLOBS)?).ok()
}

/// The manifest a `manifests/<hex>.json` key names.
pub fn manifest_digest(key: &str) -> Option<Digest> {
    Digest::parse(key.strip_prefix(MANIFESTS)?.strip_suffix(".json")?).ok()
}
