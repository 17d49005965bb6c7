//! bootforge: reproducible boot artifacts.
//!
//! The pipeline runs one way, each stage a module that uses only the ones before it:
//! [`recipe`] (parse and validate) → [`source`] (pinned sources) → [`build`] (action keys,
//! steps in pinned containers) → [`store`] (blobs by sha256, action cache) → [`package`]
//! (media, chainload scripts written into built binaries) → [`publish`] (a bucket: blobs,
//! release manifests, channels, views) → [`fetch`] and [`flash`] (verified downloads, and
//! writing them to a device). [`cli`] only
//! parses arguments and calls the stages; [`config`] merges flags, environment and file.
//! `fuzzing` holds the entry points of the fuzz targets in `tests/fuzz/`.

pub mod base;
pub mod build;
pub mod cli;
pub mod config;
pub mod fetch;
pub mod flash;
#[doc(hidden)]
pub mod fuzzing;
pub mod package;
pub mod publish;
pub mod recipe;
pub mod release;
pub mod source;
pub mod store;
