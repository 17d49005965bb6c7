//! Recipes: the YAML files in `recipes/` that pin a source and a toolchain and say how to
//! build. One serde model with `deny_unknown_fields`; pins are checked while parsing so the
//! parser can point at the offending line, the rest right after.

mod error;
pub mod placeholder;
pub mod toolchain;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::base::Digest;
pub use error::{RecipeError, parse_yaml};
pub use placeholder::{Placeholder, ScriptKind};
pub use toolchain::ToolchainSpec;

/// Variables every recipe may use in its steps without declaring them.
pub const BUILTIN_VARS: [&str; 5] = ["jobs", "embed", "targets", "src", "trust"];

/// A recipe as written in YAML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Free text; not part of the action key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub source: Source,
    /// Patch files, relative to the recipe file, applied in order with `-p1`.
    #[serde(default)]
    pub patches: Vec<String>,
    /// Required when there are steps; a recipe without steps only unpacks its source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolchain: Option<ToolchainRef>,
    /// Directory inside the source tree where steps run and outputs are found.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Default script for `{embed}`, relative to the recipe file.
    #[serde(default)]
    pub embed: Option<String>,
    /// CA certificates (PEM), relative to the recipe file, that the build is to trust:
    /// `{trust}` names them, comma-separated, where the build sees them (iPXE's `TRUST=` and
    /// `CERT=`, so its HTTPS verifies servers against them). Their bytes are inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust: Vec<String>,
    /// Embed a fixed-capacity placeholder instead, for `bootforge embed`/`package` to patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<Placeholder>,
    /// Recipe variables and their defaults; `--set KEY=VALUE` overrides.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    pub steps: Vec<Step>,
    /// Paths in the build tree (relative to `workdir`), each becoming a named artifact.
    pub outputs: Vec<String>,
    /// SOURCE_DATE_EPOCH; defaults to the git commit time, required for other sources.
    #[serde(default)]
    pub epoch: Option<i64>,
    /// Seconds a single step may run before its process tree is killed.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// Where the source comes from: exactly one of `git`, `url` or `path`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawSource", into = "RawSource")]
pub enum Source {
    Git {
        url: String,
        rev: String,
    },
    Url {
        url: String,
        sha256: Digest,
        strip_components: u32,
    },
    Path {
        path: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    git: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rev: Option<GitRev>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strip_components: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

impl TryFrom<RawSource> for Source {
    type Error = String;
    fn try_from(r: RawSource) -> Result<Source, String> {
        let kinds = [r.git.is_some(), r.url.is_some(), r.path.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(
                "a source needs exactly one of `git` (with `rev`), `url` (with \
                        `sha256`) or `path`"
                    .into(),
            );
        }
        if let Some(url) = r.git {
            let rev = r
                .rev
                .ok_or("a `git` source needs `rev`, a full 40-hex commit id")?;
            if r.sha256.is_some() || r.strip_components.is_some() {
                return Err("`sha256` and `strip_components` belong to `url` sources".into());
            }
            return Ok(Source::Git { url, rev: rev.0 });
        }
        if r.rev.is_some() {
            return Err("`rev` belongs to `git` sources".into());
        }
        if let Some(url) = r.url {
            let sha256 = r
                .sha256
                .ok_or("a `url` source must be pinned with `sha256`")?;
            return Ok(Source::Url {
                url,
                sha256,
                strip_components: r.strip_components.unwrap_or(0),
            });
        }
        if r.sha256.is_some() || r.strip_components.is_some() {
            return Err("`sha256` and `strip_components` belong to `url` sources".into());
        }
        Ok(Source::Path {
            path: r.path.expect("one kind is set"),
        })
    }
}

impl From<Source> for RawSource {
    fn from(s: Source) -> RawSource {
        match s {
            Source::Git { url, rev } => RawSource {
                git: Some(url),
                rev: Some(GitRev(rev)),
                ..Default::default()
            },
            Source::Url {
                url,
                sha256,
                strip_components,
            } => RawSource {
                url: Some(url),
                sha256: Some(sha256),
                strip_components: Some(strip_components),
                ..Default::default()
            },
            Source::Path { path } => RawSource {
                path: Some(path),
                ..Default::default()
            },
        }
    }
}

/// A full 40-hex commit id; tags and branches move, so they are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
struct GitRev(String);

impl<'de> Deserialize<'de> for GitRev {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GitRev, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(GitRev(s.to_ascii_lowercase()))
        } else {
            Err(serde::de::Error::custom(format!(
                "`{s}` is not a full 40-hex commit id; a tag or branch can move, so pin the \
                 commit it names (`git rev-parse '{s}^{{commit}}'`)"
            )))
        }
    }
}

/// The container a recipe builds in: a toolchain spec name (`recipes/toolchains/NAME.yaml`)
/// or an image reference pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum ToolchainRef {
    Spec(String),
    Image { reference: String, digest: Digest },
}

impl From<ToolchainRef> for String {
    fn from(t: ToolchainRef) -> String {
        t.to_string()
    }
}

impl fmt::Display for ToolchainRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolchainRef::Spec(name) => f.write_str(name),
            ToolchainRef::Image { reference, .. } => f.write_str(reference),
        }
    }
}

impl<'de> Deserialize<'de> for ToolchainRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ToolchainRef, D::Error> {
        let s = String::deserialize(d)?;
        ToolchainRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl ToolchainRef {
    fn parse(s: &str) -> Result<ToolchainRef, String> {
        if let Some((_, digest)) = s.split_once('@') {
            let digest = Digest::parse(digest).map_err(|e| format!("image `{s}`: {e}"))?;
            return Ok(ToolchainRef::Image {
                reference: s.to_owned(),
                digest,
            });
        }
        let is_spec_name = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if is_spec_name {
            Ok(ToolchainRef::Spec(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is an unpinned image: a tag can change under you, so pin it by digest \
                 (`{s}@sha256:<hex>`), or name a toolchain spec in recipes/toolchains/"
            ))
        }
    }
}

/// One build step: an argument list run without a shell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Shown in progress and errors; defaults to the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub run: Vec<String>,
    /// Globs over `outputs`: `{targets}` expands to the selected outputs matching them, and
    /// the step is skipped when none is selected. Without it, `{targets}` is every selected
    /// output and the step always runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
}

impl Step {
    /// A short label for progress lines.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.run.join(" "))
    }

    /// The outputs among `selected` this step builds, or `None` if it is not filtered.
    pub fn selected_targets<'a>(&self, selected: &'a [String]) -> Option<Vec<&'a String>> {
        let globs = self.targets.as_ref()?;
        let patterns: Vec<glob::Pattern> = globs
            .iter()
            .filter_map(|g| glob::Pattern::new(g).ok())
            .collect();
        Some(
            selected
                .iter()
                .filter(|o| patterns.iter().any(|p| p.matches(o)))
                .collect(),
        )
    }
}

/// A recipe read from disk, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedRecipe {
    /// The file stem: `recipes/ipxe.yaml` is `ipxe`.
    pub name: String,
    pub path: PathBuf,
    pub text: String,
    pub recipe: Recipe,
}

impl LoadedRecipe {
    /// Reads and validates a recipe file.
    pub fn load(path: &Path) -> Result<LoadedRecipe> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading recipe {}", path.display()))?;
        LoadedRecipe::parse(path, text)
    }

    /// Parses and validates `text` as the recipe file at `path` (whose directory the
    /// recipe's relative paths are resolved against).
    pub fn parse(path: &Path, text: String) -> Result<LoadedRecipe> {
        let recipe: Recipe = parse_yaml(path, &text)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let loaded = LoadedRecipe {
            name,
            path: path.to_owned(),
            text,
            recipe,
        };
        loaded.validate()?;
        Ok(loaded)
    }

    /// Finds a recipe by name in `dir` (`ipxe` → `dir/ipxe.yaml`), or takes a path to a file.
    pub fn find(dir: &Path, name_or_path: &str) -> Result<LoadedRecipe> {
        let as_path = Path::new(name_or_path);
        if name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml") {
            return LoadedRecipe::load(as_path);
        }
        let path = dir.join(format!("{name_or_path}.yaml"));
        if !path.is_file() {
            let known = list_recipes(dir).unwrap_or_default();
            let hint = known
                .iter()
                .min_by_key(|k| strsim::damerau_levenshtein(k, name_or_path))
                .filter(|k| strsim::damerau_levenshtein(k, name_or_path) <= 2)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            anyhow::bail!(
                "no recipe `{name_or_path}`: {} does not exist{hint}; recipes in {}: {}",
                path.display(),
                dir.display(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            );
        }
        LoadedRecipe::load(&path)
    }

    /// A path written in the recipe, resolved against the recipe's own directory.
    pub fn resolve(&self, rel: &str) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(rel)
    }

    /// Where the toolchain spec `name` lives for this recipe.
    pub fn toolchain_spec_path(&self, name: &str) -> PathBuf {
        self.resolve(&format!("toolchains/{name}.yaml"))
    }

    pub(crate) fn error(&self, needle: &str, field: &str, message: String) -> anyhow::Error {
        RecipeError::at_needle(&self.path, &self.text, needle, field, message).into()
    }

    /// Checks `--target` selections against the outputs and returns the selected outputs in
    /// recipe order (all of them when nothing is selected).
    pub fn select_outputs(&self, targets: &[String]) -> Result<Vec<String>> {
        if targets.is_empty() {
            return Ok(self.recipe.outputs.clone());
        }
        for t in targets {
            if !self.recipe.outputs.contains(t) {
                anyhow::bail!(
                    "recipe {}: `{t}` is not one of its outputs ({})",
                    self.name,
                    self.recipe.outputs.join(", ")
                );
            }
        }
        Ok(self
            .recipe
            .outputs
            .iter()
            .filter(|o| targets.contains(o))
            .cloned()
            .collect())
    }

    /// Checks `--set` keys against the declared variables and returns the resolved set.
    pub fn resolve_vars(&self, sets: &[(String, String)]) -> Result<BTreeMap<String, String>> {
        let mut vars = self.recipe.vars.clone();
        for (k, v) in sets {
            if !vars.contains_key(k) {
                let declared: Vec<&str> = vars.keys().map(String::as_str).collect();
                anyhow::bail!(
                    "recipe {}: `--set {k}=...` names no variable of {} (declared under `vars:`: {})",
                    self.name,
                    self.path.display(),
                    if declared.is_empty() {
                        "none".into()
                    } else {
                        declared.join(", ")
                    }
                );
            }
            vars.insert(k.clone(), v.clone());
        }
        Ok(vars)
    }

    /// Whether any step uses `{trust}`.
    pub fn uses_trust(&self) -> bool {
        self.uses_var("trust")
    }

    /// Whether any step uses `{embed}`.
    pub fn uses_embed(&self) -> bool {
        self.uses_var("embed")
    }

    /// Whether any step's arguments name `{var}`.
    fn uses_var(&self, var: &str) -> bool {
        let needle = format!("{{{var}}}");
        self.recipe
            .steps
            .iter()
            .flat_map(|s| &s.run)
            .any(|a| a.contains(&needle))
    }
}

/// The archives the recipes in `dir` pin by sha256: kept by `cache gc` even before they are
/// built.
pub fn pinned_sources(dir: &Path) -> Result<BTreeSet<Digest>> {
    let mut pins = BTreeSet::new();
    if !dir.is_dir() {
        return Ok(pins);
    }
    for name in list_recipes(dir)? {
        let path = dir.join(format!("{name}.yaml"));
        let r = LoadedRecipe::load(&path)
            .with_context(|| format!("reading {} for its pins", path.display()))?;
        if let Source::Url { sha256, .. } = r.recipe.source {
            pins.insert(sha256);
        }
    }
    Ok(pins)
}

/// Shard `i` of `n` (1-based) of `names`: every n-th name in sorted order, starting at the
/// i-th, so n machines running one shard each cover every name once and share the work
/// evenly.
pub fn shard(mut names: Vec<String>, (i, n): (usize, usize)) -> Vec<String> {
    names.sort();
    names.dedup();
    names
        .into_iter()
        .enumerate()
        .filter(|(k, _)| k % n == i - 1)
        .map(|(_, name)| name)
        .collect()
}

/// Names of the `.yaml` recipes in a directory, sorted.
pub fn list_recipes(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

/// The `{name}` placeholders in an argument; `{{` and `}}` are literal braces.
pub fn placeholders(arg: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand(arg, |name| {
        out.push(name.to_owned());
        Some(String::new())
    })?;
    Ok(out)
}

/// Replaces `{name}` placeholders through `lookup`; `{{`/`}}` become literal braces.
pub fn expand(arg: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "unmatched `}}` in `{arg}` (write `}}}}` for a literal brace)"
            ));
        }
        let end = tail.find('}').ok_or_else(|| {
            format!("unclosed `{{` in `{arg}` (write `{{{{` for a literal brace)")
        })?;
        let name = &tail[1..end];
        let value = lookup(name).ok_or_else(|| format!("unknown variable `{{{name}}}`"))?;
        out.push_str(&value);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_plain_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_recipe_once_and_evenly() {
        let names: Vec<String> = ["ipxe", "grub", "syslinux", "rpi-firmware", "hello"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let shards: Vec<Vec<String>> = (1..=3).map(|i| shard(names.clone(), (i, 3))).collect();
        let mut all: Vec<String> = shards.concat();
        all.sort();
        let mut want = names.clone();
        want.sort();
        assert_eq!(all, want);
        assert!(
            shards.iter().all(|s| (1..=2).contains(&s.len())),
            "{shards:?}"
        );
        assert_eq!(shard(names.clone(), (1, 1)).len(), 5);
    }

    fn parse(text: &str) -> Result<Recipe, RecipeError> {
        parse_yaml(Path::new("t.yaml"), text)
    }

    const GOOD: &str = "source:\n  git: https://example.org/x.git\n  rev: 12798ec29aa8a64d8675c4378b99f5fe28447afb\ntoolchain: tc\nsteps:\n  - run: [make]\noutputs: [a]\n";

    #[test]
    fn parses_a_git_recipe() {
        let r = parse(GOOD).unwrap();
        assert!(matches!(r.source, Source::Git { .. }));
        assert_eq!(r.toolchain, Some(ToolchainRef::Spec("tc".into())));
    }

    #[test]
    fn tag_instead_of_commit_is_located() {
        let err =
            parse(&GOOD.replace("12798ec29aa8a64d8675c4378b99f5fe28447afb", "v2.0.0")).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert_eq!(err.field, "source.rev");
        assert!(err.message.contains("not a full 40-hex commit"), "{err}");
    }

    #[test]
    fn unpinned_image_is_refused() {
        let err = parse(&GOOD.replace("toolchain: tc", "toolchain: debian:bookworm")).unwrap_err();
        assert_eq!(err.field, "toolchain");
        assert!(err.message.contains("unpinned"), "{err}");
        let pinned = GOOD.replace(
            "toolchain: tc",
            &format!(
                "toolchain: docker.io/library/debian@sha256:{}",
                "a".repeat(64)
            ),
        );
        assert!(matches!(
            parse(&pinned).unwrap().toolchain,
            Some(ToolchainRef::Image { .. })
        ));
    }

    #[test]
    fn url_source_needs_sha256() {
        let text = GOOD.replace(
            "  git: https://example.org/x.git\n  rev: 12798ec29aa8a64d8675c4378b99f5fe28447afb\n",
            "  url: https://example.org/x.tar.gz\n",
        );
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("pinned with `sha256`"), "{err}");
    }

    #[test]
    fn expand_handles_braces() {
        let got = expand("EMBED={embed},{{x}}", |n| {
            (n == "embed").then(|| "/e".to_owned())
        });
        assert_eq!(got.unwrap(), "EMBED=/e,{x}");
        assert!(expand("{nope}", |_| None).is_err());
        assert!(expand("{open", |_| Some(String::new())).is_err());
    }
}
