//! The package stage: turns build outputs into what machines boot: chainload scripts
//! rendered from `embed/` and written into built binaries (`bootforge embed`; iPXE's
//! compressed BIOS images remade by the native `zbin`), and media assembled from them
//! (`bootforge package`).

mod assembly;
mod bundle;
mod embed;
pub mod fat;
mod inputs;
mod iso;
mod media;
pub(crate) mod patch;
pub mod profile;
mod rpi;
pub mod sign;
pub mod template;
mod usb;
pub mod zbin;
pub mod zinfo;

pub use embed::{EmbedReport, EmbeddedArtifact, embed, export_embedded};
pub use media::{Manifest, PackageReport, Target, package};

/// The seed a medium's GUIDs, serials and disk signatures derive from: a hash of every
/// file's path and content and of each `extra` part (an ESP image, a core image), so the
/// same inputs give the same ids and different media different ones.
fn content_seed<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    extra: &[&[u8]],
) -> crate::base::Digest {
    use crate::base::Digest;
    let mut all = Vec::new();
    for (path, data) in files {
        all.extend_from_slice(path.as_bytes());
        all.extend_from_slice(Digest::of(data).hex().as_bytes());
    }
    for part in extra {
        all.extend_from_slice(Digest::of(part).hex().as_bytes());
    }
    Digest::of(&all)
}
