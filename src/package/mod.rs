//! The package stage: turns build outputs into what machines boot. So far: rendering the
//! chainload script templates in `embed/` and writing the rendered script into the
//! placeholder of already-built binaries (`bootforge embed`), without a rebuild.

mod patch;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::build::{self, Request, Settings};
use crate::recipe::{LoadedRecipe, ScriptKind};
use crate::store::Digest;

/// Outputs larger than this are not scanned for a placeholder: boot loaders are small.
const MAX_PATCHABLE: u64 = 64 << 20;

/// One output after `embed`.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddedArtifact {
    pub name: String,
    pub sha256: Digest,
    pub size: u64,
    /// False when the output held no placeholder and is passed on unchanged.
    pub patched: bool,
}

/// The result of `bootforge embed`.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedReport {
    pub recipe: String,
    /// The build whose outputs were patched.
    pub build_action: String,
    /// True when that build came from the cache (the usual case: no rebuild).
    pub build_cached: bool,
    pub template: String,
    /// The rendered script, kept as a blob.
    pub script: Digest,
    pub script_size: usize,
    pub capacity: usize,
    pub outputs: Vec<EmbeddedArtifact>,
}

/// Refuses scripts the loader would silently stop reading.
fn check_script(kind: ScriptKind, script: &str) -> Result<()> {
    if kind == ScriptKind::Grub {
        // Seen with GRUB 2.06: an apostrophe in a `#` comment line of the embedded config
        // makes GRUB drop the rest of it and fall to its prompt.
        if let Some((n, line)) = script
            .lines()
            .enumerate()
            .find(|(_, l)| l.trim_start().starts_with('#') && l.contains('\''))
        {
            bail!(
                "line {}: GRUB stops reading an embedded config at a comment with an apostrophe: {line:?}",
                n + 1
            );
        }
    }
    Ok(())
}

/// Builds `recipe` (normally a cache hit), renders its placeholder template (or `template`)
/// with `vars`, and stores copies of its outputs with the script written in.
pub fn embed(
    settings: &Settings,
    recipe: &LoadedRecipe,
    template: Option<&Path>,
    vars: &BTreeMap<String, String>,
) -> Result<EmbedReport> {
    let placeholder = recipe.recipe.placeholder.as_ref().with_context(|| {
        format!(
            "recipe {} has no `placeholder:` section, so its binaries have nothing to patch \
             (see recipes/README.md); rebuild with `bootforge build {} --embed FILE` instead",
            recipe.name, recipe.name
        )
    })?;
    let built = build::build(settings, recipe, &Request::default())?;
    let template: PathBuf = template
        .map(Path::to_owned)
        .unwrap_or_else(|| recipe.resolve(&placeholder.template));
    let script = template::render(&template, vars)?;
    check_script(placeholder.kind, &script)
        .with_context(|| format!("the script rendered from {}", template.display()))?;
    let store = &settings.store;
    let script_blob = store.put_bytes(script.as_bytes())?.digest;
    let ph = placeholder.bytes();

    let mut outputs = Vec::new();
    for o in &built.outputs {
        let unchanged = EmbeddedArtifact {
            name: o.name.clone(),
            sha256: o.sha256,
            size: o.size,
            patched: false,
        };
        if o.size > MAX_PATCHABLE {
            outputs.push(unchanged);
            continue;
        }
        let data = store.read_blob(&o.sha256)?;
        let patched = patch::patch(&data, &ph, script.as_bytes())
            .with_context(|| format!("recipe {}: patching {}", recipe.name, o.name))?;
        match patched {
            Some(bytes) => {
                let s = store.put_bytes(&bytes)?;
                outputs.push(EmbeddedArtifact {
                    name: o.name.clone(),
                    sha256: s.digest,
                    size: s.size,
                    patched: true,
                });
            }
            None => outputs.push(unchanged),
        }
    }
    if !outputs.iter().any(|o| o.patched) {
        bail!(
            "recipe {}: none of its outputs contains the placeholder (was it built with `--embed`?)",
            recipe.name
        );
    }
    Ok(EmbedReport {
        recipe: recipe.name.clone(),
        build_action: built.action_key,
        build_cached: built.cached,
        template: template.display().to_string(),
        script: script_blob,
        script_size: script.len(),
        capacity: placeholder.capacity,
        outputs,
    })
}
