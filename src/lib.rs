//! bootforge: reproducible boot artifacts.
//!
//! Data flows one way through the stages, each a module that uses only the layers below it
//! (checked by reading the `use crate::` lines; none reaches sideways or up):
//!
//! ```text
//! cli ─ config                                      parse, resolve settings once, render
//!   doctor                                          what this machine lacks, and the fix
//!   recipe → source → build → package               build side: recipes to media
//!                          release → publish, fetch release side: manifests to buckets and back
//!                                              flash  images to devices
//!   store                                           one Storage interface: local, S3, HTTPS;
//!                                                   a shared store behind the local one
//!   base                                            digests and verifying I/O, progress,
//!                                                   processes, container executors, signatures
//! ```
//!
//! - [`base`] uses nothing of bootforge; every other module may use it.
//! - [`store`] is the content-addressed layout and the one [`store::Storage`] interface
//!   over a local directory, an S3 bucket prefix and a read-only HTTPS copy, and
//!   [`store::Shared`], a remote store other machines fill, consulted after the local one
//!   (`build` looks results up through it and pushes them); it uses only `base`.
//! - [`recipe`] parses and validates recipes (uses `base`); [`source`] turns their pinned
//!   sources into build trees (uses `recipe`, `store`); [`build`] computes action keys and
//!   runs steps in pinned toolchains (uses `recipe`, `source`, `store`); [`package`] writes
//!   chainload scripts into built binaries (remaking iPXE's compressed images with its own
//!   native zbin), signs EFI binaries for Secure Boot and assembles
//!   media, asking `build` only for outputs and tool runs (`build::build`, `build::run_tool`,
//!   `build::run_in`).
//! - [`release`] is the release format (manifests, channels, views) and its
//!   readers, over `store`; [`publish`] writes releases (compressing Raspberry Pi images
//!   to `.img.xz` for download) and [`fetch`] reads them (decompressing as it streams),
//!   neither using the other. [`flash`] writes an image, raw or xz, to a device.
//! - [`config`] resolves flags, environment and file into settings; [`cli`] parses,
//!   dispatches to one stage and prints its report (and describes itself: completions and
//!   manual pages). [`doctor`] checks what the stages need of this machine (uses `base`,
//!   `config`, `store`). `fuzzing` holds the entry points of the
//!   fuzz targets in `tests/fuzz/`.

pub mod base;
pub mod build;
pub mod cli;
pub mod config;
pub mod doctor;
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
