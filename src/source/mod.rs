//! Sources: getting a recipe's pinned source into the store and laying it out as a build tree.
//!
//! Identity never needs the network: a git source is its commit id, a `url` source its sha256,
//! a `path` source the hash of its contents. Fetching happens only when a build must run.

pub(crate) mod archive;
mod git;
mod tree;
mod unpack;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::base::Digest;
use crate::recipe::{LoadedRecipe, Source};
use crate::store::Store;

pub use tree::hash_tree;

/// URL prefix rewrites (`--mirror FROM=TO`): the longest matching `FROM` wins.
#[derive(Debug, Clone, Default)]
pub struct Mirrors(Vec<(String, String)>);

impl Mirrors {
    pub fn new(mut pairs: Vec<(String, String)>) -> Mirrors {
        pairs.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Mirrors(pairs)
    }

    /// Where `url` is actually fetched from.
    pub fn apply(&self, url: &str) -> String {
        for (from, to) in &self.0 {
            if let Some(rest) = url.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        url.to_owned()
    }
}

/// What identifies a source in an action key and in provenance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceIdentity {
    Git {
        url: String,
        rev: String,
    },
    Url {
        url: String,
        sha256: Digest,
    },
    /// Local development only: not reproducible elsewhere, and flagged so in provenance.
    Path {
        path: String,
        /// Hex digest of the tree (not a blob, so no `sha256:` prefix).
        tree_sha256: String,
        local: bool,
    },
}

/// Identifies a recipe's source without fetching anything.
pub fn identify(recipe: &LoadedRecipe) -> Result<SourceIdentity> {
    Ok(match &recipe.recipe.source {
        Source::Git { url, rev } => SourceIdentity::Git {
            url: url.clone(),
            rev: rev.clone(),
        },
        Source::Url { url, sha256, .. } => SourceIdentity::Url {
            url: url.clone(),
            sha256: *sha256,
        },
        Source::Path { path } => SourceIdentity::Path {
            path: path.clone(),
            tree_sha256: hash_tree(&recipe.resolve(path))?.hex(),
            local: true,
        },
    })
}

/// A source made available locally, ready to be laid out.
#[derive(Debug)]
pub struct Fetched {
    kind: FetchedKind,
    /// SOURCE_DATE_EPOCH the source itself suggests (a git commit's time).
    pub epoch: Option<i64>,
}

#[derive(Debug)]
enum FetchedKind {
    Git {
        repo: PathBuf,
        rev: String,
    },
    Archive {
        blob: Digest,
        url: String,
        strip: u32,
    },
    Dir(PathBuf),
}

/// Makes the source available locally: clones or updates the git cache, or downloads the
/// pinned archive into the store (verified before it is stored).
pub fn fetch(recipe: &LoadedRecipe, store: &Store, mirrors: &Mirrors) -> Result<Fetched> {
    Ok(match &recipe.recipe.source {
        Source::Git { url, rev } => {
            let repo = git::ensure_commit(store, url, &mirrors.apply(url), rev)?;
            let epoch = git::commit_time(&repo, rev)?;
            Fetched {
                kind: FetchedKind::Git {
                    repo,
                    rev: rev.clone(),
                },
                epoch: Some(epoch),
            }
        }
        Source::Url {
            url,
            sha256,
            strip_components,
        } => {
            archive::ensure_blob(store, url, &mirrors.apply(url), sha256)?;
            Fetched {
                kind: FetchedKind::Archive {
                    blob: *sha256,
                    url: url.clone(),
                    strip: *strip_components,
                },
                epoch: None,
            }
        }
        Source::Path { path } => Fetched {
            kind: FetchedKind::Dir(recipe.resolve(path)),
            epoch: None,
        },
    })
}

impl Fetched {
    /// Lays the source out in `dest` (an empty directory) and applies `patches` (name and
    /// contents) in order.
    pub fn materialize(
        &self,
        store: &Store,
        dest: &Path,
        patches: &[(String, Vec<u8>)],
    ) -> Result<()> {
        match &self.kind {
            FetchedKind::Git { repo, rev } => git::export(repo, rev, dest)?,
            FetchedKind::Archive { blob, url, strip } => {
                archive::unpack(store, blob, url, *strip, dest)?
            }
            FetchedKind::Dir(dir) => tree::copy_tree(dir, dest)?,
        }
        for (name, bytes) in patches {
            apply_patch(bytes, dest).with_context(|| format!("applying patch {name}"))?;
        }
        Ok(())
    }
}

fn apply_patch(patch: &[u8], dest: &Path) -> Result<()> {
    use std::io::Write;
    // The store often lives inside a git checkout; stop git from treating that checkout as
    // the repository the patch applies to.
    let ceiling = dest.parent().unwrap_or(dest);
    let mut child = Command::new("git")
        .args(["apply", "-p1", "--whitespace=nowarn", "-"])
        .current_dir(dest)
        .env("GIT_CEILING_DIRECTORIES", ceiling)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running git apply (is git installed?)")?;
    child.stdin.take().expect("piped").write_all(patch)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "it does not apply: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_mirror_prefix_wins() {
        let m = Mirrors::new(vec![
            ("https://github.com/".into(), "/srv/gh/".into()),
            ("https://github.com/ipxe/".into(), "/srv/ipxe/".into()),
        ]);
        assert_eq!(
            m.apply("https://github.com/ipxe/ipxe.git"),
            "/srv/ipxe/ipxe.git"
        );
        assert_eq!(m.apply("https://github.com/x/y"), "/srv/gh/x/y");
        assert_eq!(m.apply("https://example.org/z"), "https://example.org/z");
    }
}
