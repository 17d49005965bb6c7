//! The package stage: turns build outputs into what machines boot. So far: rendering the
//! chainload script templates in `embed/` and writing the rendered script into the
//! placeholder of already-built binaries (`bootforge embed`), without a rebuild.

mod embed;
mod patch;
pub mod template;

pub use embed::{EmbedReport, EmbeddedArtifact, embed};
