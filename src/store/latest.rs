//! `latest/<kind>-<name>.json`: what the most recent `build` of each recipe and `package` of
//! each target produced. `publish` uploads exactly this set, so a CI job can run its builds
//! and packages and then publish "everything just made" without naming digests.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::base::{Digest, Named};

/// One file a build or package produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedFile {
    #[serde(flatten)]
    pub blob: Named,
    pub media_type: String,
}

/// The outputs of the latest `build` of a recipe or `package` of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Produced {
    /// `build` or `package`.
    pub kind: super::Kind,
    /// The recipe or the target.
    pub name: String,
    pub files: Vec<ProducedFile>,
    /// A JSON blob saying how the files were made (action entry or package manifest).
    pub provenance: Digest,
    pub source_date_epoch: i64,
}

impl Store {
    /// Records `p` as the latest result of its kind and name (replacing the previous one).
    pub fn record_latest(&self, p: &Produced) -> Result<()> {
        let rel = super::layout::latest(p.kind.as_str(), &p.name);
        if self.read_json::<Produced>(&rel).ok().flatten().as_ref() == Some(p) {
            return Ok(());
        }
        self.write_json(&rel, p)
    }

    /// Every latest record, sorted by kind and name.
    pub fn latest(&self) -> Result<Vec<Produced>> {
        let dir = self.root().join("latest");
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(p) = name.strip_suffix(".json").and_then(|_| {
                self.read_json::<Produced>(&format!("latest/{name}"))
                    .transpose()
            }) {
                out.push(p?);
            }
        }
        out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(out)
    }
}
