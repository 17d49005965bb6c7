//! Where each file of a medium comes from: a recipe output, built (cache hit as a rule) and,
//! when the recipe has a placeholder, with the rendered script written in.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::embed::embed;
use super::profile::LoadedProfile;
use crate::base::Digest;
use crate::build::{self, Request, Settings};
use crate::recipe::LoadedRecipe;

/// A role's default source: recipe (by its role in the profile's `recipes`) and output.
fn default_source(role: &str) -> Option<(&'static str, &'static str)> {
    Some(match role {
        "undionly.kpxe" => ("ipxe", "bin/undionly.kpxe"),
        "ipxe.lkrn" => ("ipxe", "bin/ipxe.lkrn"),
        "ipxe.efi" => ("ipxe", "bin-x86_64-efi/ipxe.efi"),
        "snponly.efi" => ("ipxe", "bin-x86_64-efi/snponly.efi"),
        "snp-arm64.efi" => ("ipxe", "bin-arm64-efi/snp.efi"),
        "grubx64.efi" => ("grub", "images/grubx64.efi"),
        "grub-boot.img" => ("grub", "build-i386-pc/grub-core/boot.img"),
        "grub-core-usb.img" => ("grub", "images/core-usb-i386-pc.img"),
        "grub-pxe.0" => ("grub", "images/grub-pxe.0"),
        "isolinux.bin" => ("syslinux", "bios/core/isolinux.bin"),
        "ldlinux.c32" => ("syslinux", "bios/com32/elflink/ldlinux/ldlinux.c32"),
        "isohdpfx.bin" => ("syslinux", "bios/mbr/isohdpfx.bin"),
        "lpxelinux.0" => ("syslinux", "bios/core/lpxelinux.0"),
        "shimx64.efi" => ("shim", "usr/lib/shim/shimx64.efi.signed"),
        "mmx64.efi" => ("shim-helpers", "usr/lib/shim/mmx64.efi.signed"),
        _ => return None,
    })
}

/// A file taken from a recipe.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub blob: Digest,
    pub size: u64,
    /// The script was written into it (so it needs none passed at boot).
    pub patched: bool,
}

/// An input of a medium, for its manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    pub recipe: String,
    pub build_action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embed_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<Digest>,
}

struct Resolved {
    input: Input,
    /// Output name → (blob, size, patched).
    outputs: BTreeMap<String, InputFile>,
    epoch: i64,
}

/// Resolves file roles to blobs, building and embedding each recipe once.
pub struct Inputs<'a> {
    settings: &'a Settings,
    recipes_dir: &'a Path,
    profile: &'a LoadedProfile,
    vars: &'a BTreeMap<String, String>,
    resolved: BTreeMap<String, Resolved>,
    /// Containers the builds and embeds started.
    pub containers_started: u32,
}

fn to_file((name, blob, size, patched): (String, Digest, u64, bool)) -> (String, InputFile) {
    (
        name,
        InputFile {
            blob,
            size,
            patched,
        },
    )
}

impl<'a> Inputs<'a> {
    pub fn new(
        settings: &'a Settings,
        recipes_dir: &'a Path,
        profile: &'a LoadedProfile,
        vars: &'a BTreeMap<String, String>,
    ) -> Self {
        Inputs {
            settings,
            recipes_dir,
            profile,
            vars,
            resolved: BTreeMap::new(),
            containers_started: 0,
        }
    }

    /// The file for `role` (e.g. `ipxe.efi`): from the profile's `files` entry
    /// `RECIPE:OUTPUT`, or the role's default recipe and output.
    pub fn file(&mut self, role: &str) -> Result<InputFile> {
        let (recipe_ref, output) = match self.profile.profile.files.get(role) {
            Some(spec) => {
                let (r, o) = spec.split_once(':').with_context(|| {
                    format!(
                        "{}: files.{role}: `{spec}` should be RECIPE:OUTPUT",
                        self.profile.path.display()
                    )
                })?;
                (self.profile.recipe_ref(r), o.to_owned())
            }
            None => {
                let (loader, output) = default_source(role)
                    .with_context(|| format!("no default source for `{role}`"))?;
                // Signed media take iPXE's Secure Boot flavour: only the drivers iPXE
                // permits under Secure Boot (x86_64: see recipes/ipxe.yaml for arm64).
                let output = match (self.profile.profile.secure_boot.is_some(), output) {
                    (true, "bin-x86_64-efi/ipxe.efi") => "bin-x86_64-efi-sb/ipxe.efi",
                    (true, "bin-x86_64-efi/snponly.efi") => "bin-x86_64-efi-sb/snponly.efi",
                    (_, o) => o,
                };
                (self.profile.recipe_for(loader), output.to_owned())
            }
        };
        let profile = self.profile.path.display().to_string();
        let resolved = self.resolve(&recipe_ref)?;
        resolved.outputs.get(&output).cloned().with_context(|| {
            format!(
                "{profile}: recipe {} has no output `{output}` (for `{role}`); it has: {}",
                resolved.input.recipe,
                resolved
                    .outputs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// Every output of the recipe the profile names for `loader` (e.g. `rpi-firmware`).
    pub fn outputs_of(&mut self, loader: &str) -> Result<Vec<(String, InputFile)>> {
        let recipe_ref = self.profile.recipe_for(loader);
        let resolved = self.resolve(&recipe_ref)?;
        Ok(resolved
            .outputs
            .iter()
            .map(|(n, f)| (n.clone(), f.clone()))
            .collect())
    }

    fn resolve(&mut self, recipe_ref: &str) -> Result<&Resolved> {
        if !self.resolved.contains_key(recipe_ref) {
            let recipe = LoadedRecipe::find(self.recipes_dir, recipe_ref)
                .with_context(|| format!("{}: loading a recipe", self.profile.path.display()))?;
            // (build action, embed action and script if embedded, outputs, epoch)
            let (input, outputs, epoch): (Input, Vec<(String, InputFile)>, i64) =
                if recipe.recipe.placeholder.is_some() {
                    let r = embed(self.settings, &recipe, None, self.vars)?;
                    self.containers_started += r.containers_started;
                    let input = Input {
                        recipe: r.recipe.clone(),
                        build_action: r.build_action.clone(),
                        embed_action: Some(r.key.clone()),
                        script: Some(r.script),
                    };
                    let outputs = r
                        .outputs
                        .iter()
                        .map(|o| (o.blob.name.clone(), o.blob.sha256, o.blob.size, o.patched));
                    (input, outputs.map(to_file).collect(), r.source_date_epoch)
                } else {
                    let b = build::build(self.settings, &recipe, &Request::default())?;
                    self.containers_started += b.containers_started;
                    let input = Input {
                        recipe: b.recipe.clone(),
                        build_action: b.action_key.clone(),
                        embed_action: None,
                        script: None,
                    };
                    let outputs = b
                        .outputs
                        .iter()
                        .map(|o| (o.blob.name.clone(), o.blob.sha256, o.blob.size, false));
                    (input, outputs.map(to_file).collect(), b.source_date_epoch)
                };
            let resolved = Resolved {
                epoch,
                input,
                outputs: outputs.into_iter().collect(),
            };
            self.resolved.insert(recipe_ref.to_owned(), resolved);
        }
        Ok(&self.resolved[recipe_ref])
    }

    /// The inputs used so far, for the manifest, in a stable order.
    pub fn used(&self) -> Vec<Input> {
        self.resolved.values().map(|r| r.input.clone()).collect()
    }

    /// The newest SOURCE_DATE_EPOCH among the inputs used.
    pub fn epoch(&self) -> Result<i64> {
        match self.resolved.values().map(|r| r.epoch).max() {
            Some(e) => Ok(e),
            None => bail!("no inputs"),
        }
    }
}
