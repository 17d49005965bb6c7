//! Toolchain specs (`recipes/toolchains/NAME.yaml`): a Debian suite plus packages, which the
//! build stage turns into a container image whose identity is its rootfs tarball's sha256.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::parse_yaml;
use crate::base::Digest;

/// A toolchain spec as written in YAML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolchainSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Debian suite for debootstrap, e.g. `bookworm`. The mirror is debootstrap's default or
    /// `BOOTFORGE_DEBIAN_MIRROR`; none is written in the repository.
    pub suite: String,
    /// debootstrap variant.
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Packages installed on top, `name` or `name=version`.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Modification time given to every file in the packed rootfs.
    #[serde(default)]
    pub epoch: i64,
}

fn default_variant() -> String {
    "minbase".into()
}

/// A spec read from disk.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub name: String,
    pub path: PathBuf,
    pub spec: ToolchainSpec,
    /// The sha256 of the spec file's bytes: a changed spec means a new toolchain.
    pub digest: Digest,
}

impl LoadedSpec {
    /// Reads and validates a spec.
    pub fn load(path: &Path) -> Result<LoadedSpec> {
        let bytes =
            fs::read(path).with_context(|| format!("reading toolchain spec {}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let spec: ToolchainSpec = parse_yaml(path, &text)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (i, p) in spec.packages.iter().enumerate() {
            let ok = !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.:=~_".contains(&b));
            if !ok {
                return Err(super::RecipeError::at_needle(
                    path,
                    &text,
                    p,
                    &format!("packages[{i}]"),
                    format!("`{p}` is not a Debian package name (optionally `=version`)"),
                )
                .into());
            }
        }
        Ok(LoadedSpec {
            name,
            path: path.to_owned(),
            spec,
            digest: Digest::of(&bytes),
        })
    }

    /// Where the resolved package versions are recorded, beside the spec.
    pub fn lock_path(&self) -> PathBuf {
        self.path.with_extension("lock")
    }
}
