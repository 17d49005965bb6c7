//! The package stage: turns build outputs into what machines boot: chainload scripts
//! rendered from `embed/` and written into built binaries (`bootforge embed`), and media
//! assembled from them (`bootforge package`).

mod bundle;
mod embed;
pub mod fat;
mod inputs;
mod iso;
mod media;
pub(crate) mod patch;
pub mod profile;
mod rpi;
pub mod template;
mod usb;
pub mod zinfo;

pub use embed::{EmbedReport, EmbeddedArtifact, embed, export_embedded};
pub use media::{Manifest, PackageReport, Target, package};
