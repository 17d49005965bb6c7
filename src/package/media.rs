//! `bootforge package`: assembling media from build outputs and rendered scripts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::bundle::{self, Entry};
use super::embed::{EmbedReport, embed};
use super::profile::{LoadedProfile, Loader};
use super::template;
use crate::build::{ActionEntry, Settings};
use crate::recipe::LoadedRecipe;
use crate::store::Digest;

/// Bumped when the layout or encoding of a medium changes.
const PACKAGE_SCHEMA: u32 = 1;

/// The media `package` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// A .tar.gz for a TFTP/HTTP boot server: loaders, script, DHCP snippets, checksums.
    PxeBundle,
}

impl Target {
    fn file_name(self) -> &'static str {
        match self {
            Target::PxeBundle => "pxe-bundle.tar.gz",
        }
    }

    fn media_type(self) -> &'static str {
        match self {
            Target::PxeBundle => "application/gzip",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target::PxeBundle => "pxe-bundle",
        }
    }
}

/// A file inside a medium.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Content {
    pub path: String,
    pub sha256: Digest,
    pub size: u64,
}

/// An input of a medium: a recipe's build and the embed written into it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    pub recipe: String,
    pub build_action: String,
    pub embed_action: String,
    pub script: Digest,
}

/// The package manifest (stored as a blob; the medium holds a copy without its own digest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub target: Target,
    pub profile: String,
    pub profile_sha256: String,
    pub vars: BTreeMap<String, String>,
    pub source_date_epoch: i64,
    pub inputs: Vec<Input>,
    pub contents: Vec<Content>,
    pub bootforge_version: String,
}

/// The result of `bootforge package`, also recorded as `actions/<key>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageReport {
    pub kind: String,
    pub key: String,
    pub target: Target,
    pub name: String,
    pub sha256: Digest,
    pub size: u64,
    pub media_type: String,
    /// The package manifest blob.
    pub manifest: Digest,
    pub contents: Vec<Content>,
    #[serde(skip_deserializing)]
    pub cached: bool,
}

/// What a loader contributes: files (bundle path ← output name) and the boot file names.
struct Part {
    report: EmbedReport,
    files: Vec<(&'static str, &'static str)>,
    script_name: &'static str,
}

/// Makes `target` from the profile's loaders, building and embedding as needed.
pub fn package(
    settings: &Settings,
    recipes_dir: &Path,
    profile: &LoadedProfile,
    target: Target,
    sets: &[(String, String)],
) -> Result<PackageReport> {
    let mut vars = profile.profile.vars.clone();
    vars.extend(sets.iter().cloned());
    let loaders = &profile.profile.loaders;
    if loaders.bios == Loader::Grub {
        bail!(
            "{}: loaders.bios: grub is not supported for {} (GRUB's i386-pc image keeps its \
             config compressed); use ipxe or none",
            profile.path.display(),
            target.name()
        );
    }
    if loaders.uefi_arm64 == Loader::Grub {
        bail!(
            "{}: loaders.uefi-arm64: only ipxe or none",
            profile.path.display()
        );
    }

    let mut parts = Vec::new();
    let wants_ipxe = [loaders.bios, loaders.uefi_x64, loaders.uefi_arm64].contains(&Loader::Ipxe);
    if wants_ipxe {
        let mut files = Vec::new();
        if loaders.bios == Loader::Ipxe {
            files.push(("undionly.kpxe", "bin/undionly.kpxe"));
        }
        if loaders.uefi_x64 == Loader::Ipxe {
            files.push(("ipxe.efi", "bin-x86_64-efi/ipxe.efi"));
            files.push(("snponly.efi", "bin-x86_64-efi/snponly.efi"));
        }
        if loaders.uefi_arm64 == Loader::Ipxe {
            files.push(("arm64/snp.efi", "bin-arm64-efi/snp.efi"));
        }
        parts.push(part(
            settings,
            recipes_dir,
            profile,
            "ipxe",
            &vars,
            files,
            "chain.ipxe",
        )?);
    }
    if loaders.uefi_x64 == Loader::Grub {
        let files = vec![("grubx64.efi", "images/grubx64.efi")];
        parts.push(part(
            settings,
            recipes_dir,
            profile,
            "grub",
            &vars,
            files,
            "grub-early.cfg",
        )?);
    }
    if parts.is_empty() {
        bail!(
            "{}: every loader is `none`: nothing to package",
            profile.path.display()
        );
    }

    let store = &settings.store;
    let mut entries = Vec::new();
    let mut inputs = Vec::new();
    let mut epoch = profile.profile.epoch;
    for p in &parts {
        for (path, output) in &p.files {
            let o = p
                .report
                .outputs
                .iter()
                .find(|o| o.name == *output)
                .with_context(|| format!("recipe {} has no output {output}", p.report.recipe))?;
            entries.push(Entry {
                path: (*path).to_owned(),
                blob: o.sha256,
                size: o.size,
                mode: 0o644,
            });
        }
        entries.push(Entry {
            path: p.script_name.to_owned(),
            blob: p.report.script,
            size: p.report.script_size as u64,
            mode: 0o644,
        });
        inputs.push(Input {
            recipe: p.report.recipe.clone(),
            build_action: p.report.build_action.clone(),
            embed_action: p.report.key.clone(),
            script: p.report.script,
        });
        if profile.profile.epoch.is_none() {
            let build: ActionEntry = store
                .read_json(&format!("actions/{}.json", p.report.build_action))?
                .context("the build entry vanished")?;
            epoch = epoch.max(Some(build.provenance.source_date_epoch));
        }
    }
    let epoch = epoch.expect("at least one part");

    // DHCP snippets name the boot files actually shipped.
    let boot_file = |want: &str| {
        entries
            .iter()
            .find(|e| e.path == want)
            .map(|e| e.path.clone())
            .unwrap_or_default()
    };
    let mut dhcp_vars = vars.clone();
    dhcp_vars.insert("bios_file".into(), boot_file("undionly.kpxe"));
    let x64 = if loaders.uefi_x64 == Loader::Grub {
        "grubx64.efi"
    } else {
        "ipxe.efi"
    };
    dhcp_vars.insert("uefi_x64_file".into(), boot_file(x64));
    dhcp_vars.insert("uefi_arm64_file".into(), boot_file("arm64/snp.efi"));
    for (name, tmpl) in [
        ("dhcp/dnsmasq.conf", "dnsmasq.conf.j2"),
        ("dhcp/dhcpd.conf", "dhcpd.conf.j2"),
    ] {
        let text = template::render(&profile.template(tmpl), &dhcp_vars)?;
        let s = store.put_bytes(text.as_bytes())?;
        entries.push(Entry {
            path: name.to_owned(),
            blob: s.digest,
            size: s.size,
            mode: 0o644,
        });
    }

    let profile_bytes = std::fs::read(&profile.path)?;
    let mut contents: Vec<Content> = entries
        .iter()
        .map(|e| Content {
            path: e.path.clone(),
            sha256: e.blob,
            size: e.size,
        })
        .collect();
    contents.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        schema: PACKAGE_SCHEMA,
        target,
        profile: profile
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        profile_sha256: Digest::of(&profile_bytes).hex(),
        vars: vars.clone(),
        source_date_epoch: epoch,
        inputs,
        contents: contents.clone(),
        bootforge_version: env!("CARGO_PKG_VERSION").into(),
    };
    let key = Digest::of(serde_json::to_string(&manifest)?.as_bytes()).hex();
    let entry_path = format!("actions/{key}.json");
    if let Some(mut done) = store.read_json::<PackageReport>(&entry_path)?
        && store.has_blob(&done.sha256)
        && store.has_blob(&done.manifest)
    {
        done.cached = true;
        return Ok(done);
    }

    let mut sums = String::new();
    for c in &contents {
        sums.push_str(&format!("{}  {}\n", c.sha256.hex(), c.path));
    }
    let mut manifest_json = serde_json::to_vec_pretty(&manifest)?;
    manifest_json.push(b'\n');
    for (name, bytes) in [
        ("SHA256SUMS", sums.into_bytes()),
        ("manifest.json", manifest_json.clone()),
    ] {
        let s = store.put_bytes(&bytes)?;
        entries.push(Entry {
            path: name.to_owned(),
            blob: s.digest,
            size: s.size,
            mode: 0o644,
        });
    }
    let medium = bundle::write_tar_gz(store, &entries, epoch)?;
    let outer = serde_json::json!({
        "schema": PACKAGE_SCHEMA,
        "artifacts": [{
            "name": target.file_name(),
            "sha256": medium.digest,
            "size": medium.size,
            "media_type": target.media_type(),
        }],
        "manifest": serde_json::from_slice::<serde_json::Value>(&manifest_json)?,
    });
    let manifest_blob = store.put_bytes(&serde_json::to_vec_pretty(&outer)?)?.digest;
    let report = PackageReport {
        kind: "package".into(),
        key,
        target,
        name: target.file_name().into(),
        sha256: medium.digest,
        size: medium.size,
        media_type: target.media_type().into(),
        manifest: manifest_blob,
        contents,
        cached: false,
    };
    store.write_json(&entry_path, &report)?;
    Ok(report)
}

fn part(
    settings: &Settings,
    recipes_dir: &Path,
    profile: &LoadedProfile,
    loader: &str,
    vars: &BTreeMap<String, String>,
    files: Vec<(&'static str, &'static str)>,
    script_name: &'static str,
) -> Result<Part> {
    let recipe = LoadedRecipe::find(recipes_dir, &profile.recipe_for(loader))
        .with_context(|| format!("{}: the {loader} recipe", profile.path.display()))?;
    let report = embed(settings, &recipe, None, vars)?;
    Ok(Part {
        report,
        files,
        script_name,
    })
}
