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

/// The scheme of a source in the Debian archive: `debian:pool/main/…` names a file by its
/// path in the archive, and is fetched from the mirror this machine's apt uses (or from
/// `--mirror debian:=URL/`), so a recipe names no host and its pin is what makes it safe.
pub const DEBIAN: &str = "debian:";

impl Mirrors {
    /// Where a `url:` source is fetched from: [`Mirrors::apply`], then a `debian:` URL
    /// against apt's mirror.
    pub fn resolve(&self, url: &str) -> Result<String> {
        let to = self.apply(url);
        let Some(path) = to.strip_prefix(DEBIAN) else {
            return Ok(to);
        };
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let deb822: String = glob::glob("/etc/apt/sources.list.d/*.sources")
            .into_iter()
            .flatten()
            .flatten()
            .map(|p| read(&p.to_string_lossy()))
            .collect();
        let base = apt_mirror(&deb822, &read("/etc/apt/sources.list")).with_context(|| {
            format!(
                "{url}: no Debian mirror in apt's sources (/etc/apt/sources.list.d/*.sources, \
                 /etc/apt/sources.list); name one with --mirror {DEBIAN}=http://MIRROR/debian/"
            )
        })?;
        Ok(format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        ))
    }
}

/// The first Debian archive (not the security archive, which has no `pool/` of its own
/// packages) in apt's deb822 sources, else in its one-line `sources.list`.
fn apt_mirror(deb822: &str, list: &str) -> Option<String> {
    let not_security = |u: &&str| !u.contains("security");
    let from_deb822 = deb822
        .lines()
        .filter_map(|l| l.trim().strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(not_security);
    let from_list = || {
        list.lines()
            .map(str::split_whitespace)
            .filter_map(|mut w| {
                (w.next() == Some("deb"))
                    .then(|| w.find(|t| !t.starts_with('[') && !t.ends_with(']')))
                    .flatten()
            })
            .find(not_security)
    };
    from_deb822.or_else(from_list).map(str::to_owned)
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
            archive::ensure_blob(store, url, &mirrors.resolve(url)?, sha256)?;
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

    #[test]
    fn debian_sources_come_from_apts_mirror() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\n";
        assert_eq!(
            apt_mirror(deb822, "").as_deref(),
            Some("http://mirror.example/debian")
        );
        let list = "# a comment\ndeb http://security.example/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://old.example/debian bookworm main\n";
        assert_eq!(
            apt_mirror("", list).as_deref(),
            Some("http://old.example/debian")
        );
        assert_eq!(
            apt_mirror("", "deb-src http://x/debian bookworm main\n"),
            None
        );
        // --mirror wins over apt's sources.
        let m = Mirrors::new(vec![("debian:".into(), "/srv/debian/".into())]);
        assert_eq!(
            m.resolve("debian:pool/main/x.deb").unwrap(),
            "/srv/debian/pool/main/x.deb"
        );
    }
}
