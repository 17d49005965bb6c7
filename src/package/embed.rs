//! `bootforge embed`: a rendered chainload script written into a recipe's built binaries.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::zbin::{self, ZbinError};
use super::{patch, template, zinfo};
use crate::base::{Digest, Named};
use crate::build::{self, Artifact, Request, Settings};
use crate::recipe::placeholder::Repack;
use crate::recipe::{LoadedRecipe, Placeholder, ScriptKind};
use crate::store::{Entry, Kind, Origin, Store, layout};

/// Outputs larger than this are not scanned for a placeholder: boot loaders are small.
const MAX_PATCHABLE: u64 = 64 << 20;

/// Bumped when the way outputs are patched changes.
const EMBED_SCHEMA: u32 = 1;

/// Bumped when the native zbin changes, so what was seen of the last one is not trusted.
const ZBIN_CHECK_SCHEMA: u32 = 1;

/// `actions/<key>.json` (this machine's only): whether the native zbin wrote the same bytes
/// as a build's own zbin, on that build's own image. Checked once per build, because the
/// native LZMA is only known to equal the toolchain's liblzma by trying.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ZbinCheck {
    schema: u32,
    key: String,
    output: String,
    /// Why the native zbin is not used for this build; none when it matched.
    differs: Option<String>,
}

/// An output's bytes before and after its placeholder was written over.
struct Patched {
    built: Vec<u8>,
    patched: Vec<u8>,
}

/// What the native zbin made of one image.
type Zbinned = Result<Vec<u8>, ZbinError>;

/// A native repack to do, and the check to do beside it the first time.
struct NativeJob<'r> {
    rp: &'r Repack,
    patched_bin: Vec<u8>,
    zinfo: Vec<u8>,
    check: Option<Check>,
}

struct Check {
    key: String,
    built_bin: Vec<u8>,
    built_output: Digest,
}

/// The `.bin` and `.zinfo` of a repack that is iPXE's `util/zbin[32|64] X.bin X.zinfo`.
fn zbin_command(rp: &Repack) -> Option<(&str, &str)> {
    let [tool, bin, zinfo] = rp.run.as_slice() else {
        return None;
    };
    let name = tool.rsplit('/').next().unwrap_or(tool);
    let is_zbin = matches!(name, "zbin" | "zbin32" | "zbin64");
    (is_zbin && *bin == rp.patch && zinfo.ends_with(".zinfo")).then_some((bin, zinfo))
}

fn unchanged(a: &Artifact) -> EmbeddedArtifact {
    EmbeddedArtifact {
        blob: a.blob.clone(),
        patched: false,
        executable: a.executable,
    }
}

fn set_output(outputs: &mut [EmbeddedArtifact], name: &str, stored: crate::store::Stored) {
    let slot = outputs
        .iter_mut()
        .find(|o| o.blob.name == name)
        .expect("validated: repack output is an output");
    (slot.blob.sha256, slot.blob.size, slot.patched) = (stored.digest, stored.size, true);
}

/// One output after `embed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddedArtifact {
    #[serde(flatten)]
    pub blob: Named,
    /// False when the output held no placeholder and is passed on unchanged.
    pub patched: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

/// The result of `bootforge embed`; also what `actions/<key>.json` records for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedReport {
    pub schema: u32,
    pub kind: Kind,
    pub key: String,
    pub recipe: String,
    /// The build whose outputs were patched.
    pub build_action: String,
    /// The rendered script, kept as a blob.
    pub script: Digest,
    pub script_size: usize,
    pub capacity: usize,
    pub outputs: Vec<EmbeddedArtifact>,
    /// True when this exact embed was done before and its results were reused.
    #[serde(skip_deserializing)]
    pub cached: bool,
    /// Containers started: the build's, if it was not cached, and those repacking compressed
    /// images; 0 when nothing ran.
    #[serde(skip_deserializing)]
    pub containers_started: u32,
    /// Compressed images remade by the native zbin, without a container.
    #[serde(default)]
    pub native_repacks: u32,
    /// True when the recipe's build came from the cache (the usual case: no rebuild).
    #[serde(skip_deserializing)]
    pub build_cached: bool,
    /// The SOURCE_DATE_EPOCH of the build patched.
    #[serde(skip_deserializing)]
    pub source_date_epoch: i64,
}

impl Entry for EmbedReport {
    fn blobs(&self) -> Vec<Digest> {
        let mut v: Vec<Digest> = self.outputs.iter().map(|o| o.blob.sha256).collect();
        v.push(self.script);
        v
    }
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
    let store = &settings.store;
    // Held until the entry naming the patched blobs is written, so `cache gc` cannot take
    // them in between.
    let _store_lock = store.lock_shared()?;
    let built = build::build(settings, recipe, &Request::default())?;
    let template: PathBuf = template
        .map(Path::to_owned)
        .unwrap_or_else(|| recipe.resolve(&placeholder.template));
    let script = template::render(&template, vars)?;
    check_script(placeholder.kind, &script)
        .with_context(|| format!("the script rendered from {}", template.display()))?;
    let script_blob = store.put_bytes(script.as_bytes())?.digest;

    let key_input = serde_json::json!({
        "schema": EMBED_SCHEMA,
        "build": built.action_key,
        "script": script_blob,
        "placeholder": placeholder,
    });
    let key = Digest::of(key_input.to_string().as_bytes()).hex();
    let finished = || -> Result<Option<EmbedReport>> {
        let found = settings.recorded::<EmbedReport>(&key)?;
        if let Some((done, Origin::Local)) = &found {
            settings.share(&key, done)?;
        }
        Ok(found.map(|(mut done, _)| {
            done.cached = true;
            done.build_cached = built.cached;
            done.containers_started = built.containers_started;
            done.source_date_epoch = built.source_date_epoch;
            done
        }))
    };
    if let Some(done) = finished()? {
        return Ok(done);
    }
    // One process patches; the others wait here and take its result.
    let _action_lock = store.lock_named(&format!("action-{key}"))?;
    if let Some(done) = finished()? {
        return Ok(done);
    }

    let patcher = Patcher {
        settings,
        recipe,
        placeholder,
        script: script.as_bytes(),
        built: &built.outputs,
    };
    let (outputs, repacks, native_repacks) = patcher.run()?;
    let report = EmbedReport {
        schema: EMBED_SCHEMA,
        kind: Kind::Embed,
        key,
        recipe: recipe.name.clone(),
        build_action: built.action_key,
        script: script_blob,
        script_size: script.len(),
        capacity: placeholder.capacity,
        outputs,
        cached: false,
        containers_started: built.containers_started + repacks,
        native_repacks,
        build_cached: built.cached,
        source_date_epoch: built.source_date_epoch,
    };
    store.write_json(&layout::action(&report.key), &report)?;
    settings.share(&report.key, &report)?;
    Ok(report)
}

/// Copies the patched outputs to `dir/<recipe>/<output>`, verified, with their modes.
pub fn export_embedded(store: &Store, report: &EmbedReport, dir: &Path) -> Result<()> {
    for o in &report.outputs {
        let mode = if o.executable { 0o755 } else { 0o644 };
        store.export_blob(
            &o.blob.sha256,
            &dir.join(&report.recipe).join(&o.blob.name),
            Some(mode),
        )?;
    }
    Ok(())
}

/// Refuses scripts the loader would silently stop reading.
fn check_script(kind: ScriptKind, script: &str) -> Result<()> {
    if kind == ScriptKind::Grub {
        // Seen with GRUB 2.06: its embedded config has no comments. A `#` line is an
        // "Unknown command", and one holding an apostrophe ends the config altogether.
        if let Some((n, line)) = script
            .lines()
            .enumerate()
            .find(|(_, l)| l.trim_start().starts_with('#'))
        {
            bail!(
                "line {}: GRUB's embedded config takes no comments (keep them in {{# Jinja comments #}}): {line:?}",
                n + 1
            );
        }
    }
    Ok(())
}

struct Patcher<'a> {
    settings: &'a Settings,
    recipe: &'a LoadedRecipe,
    placeholder: &'a Placeholder,
    script: &'a [u8],
    built: &'a [Artifact],
}

impl Patcher<'_> {
    fn store(&self) -> &Store {
        &self.settings.store
    }

    fn run(&self) -> Result<(Vec<EmbeddedArtifact>, u32, u32)> {
        let ph = self.placeholder.bytes();
        let repack = &self.placeholder.repack;
        let mut outputs: Vec<EmbeddedArtifact> = self.built.iter().map(unchanged).collect();
        // The uncompressed forms first, so their compression starts at once; the images
        // remade from them are not worth scanning.
        let (sources, rest): (Vec<usize>, Vec<usize>) = (0..outputs.len())
            .filter(|&i| !repack.iter().any(|rp| rp.output == outputs[i].blob.name))
            .partition(|&i| repack.iter().any(|rp| rp.patch == outputs[i].blob.name));
        // Patched in memory only: storing them waits until their compression has started.
        let mut patched_sources = HashMap::new();
        for &i in &sources {
            if let Some(p) = self.patch_bytes(&outputs[i], &ph)? {
                patched_sources.insert(outputs[i].blob.name.clone(), p);
            }
        }
        let mut native = Vec::new();
        let mut in_toolchain = Vec::new();
        for rp in repack {
            match self.native_job(rp, &mut patched_sources)? {
                Some(job) => native.push(job),
                None => in_toolchain.push(rp),
            }
        }
        // What a toolchain repack reads from the store must be there before it runs.
        for (name, p) in &patched_sources {
            let i = sources
                .iter()
                .copied()
                .find(|&i| &outputs[i].blob.name == name);
            self.record(&mut outputs[i.expect("a source")], &p.patched)?;
        }
        // The LZMA work is what costs: each image (and each first-time check) on its own
        // thread. The other outputs are patched once all but the largest image are done, so
        // on two cores the largest is never shared with anything and sets the time.
        let largest = (0..native.len()).max_by_key(|&i| native[i].patched_bin.len());
        let (results, patched_rest) = std::thread::scope(|s| {
            let handles: Vec<_> = native
                .iter()
                .map(|job| {
                    let check = job
                        .check
                        .as_ref()
                        .map(|c| s.spawn(|| zbin::run(&c.built_bin, &job.zinfo)));
                    let patched = s.spawn(|| zbin::run(&job.patched_bin, &job.zinfo));
                    (patched, check)
                })
                .collect();
            let joined = |h: std::thread::ScopedJoinHandle<'_, Zbinned>| {
                h.join().expect("the native zbin does not panic")
            };
            let mut results: Vec<Option<(Zbinned, Option<Zbinned>)>> = Vec::new();
            let mut last = None;
            for (i, (p, c)) in handles.into_iter().enumerate() {
                if Some(i) == largest {
                    last = Some((p, c));
                    results.push(None);
                } else {
                    results.push(Some((joined(p), c.map(joined))));
                }
            }
            let stored_sources: Result<Vec<(usize, EmbeddedArtifact)>> = native
                .iter()
                .map(|job| {
                    let i = sources
                        .iter()
                        .copied()
                        .find(|&i| outputs[i].blob.name == job.rp.patch)
                        .expect("a native job patches one of the sources");
                    let mut out = outputs[i].clone();
                    self.record(&mut out, &job.patched_bin).map(|()| (i, out))
                })
                .collect();
            let patched_rest: Result<Vec<(usize, EmbeddedArtifact)>> =
                stored_sources.and_then(|mut done| {
                    for &i in &rest {
                        let mut out = outputs[i].clone();
                        self.patch_one(&mut out, &ph)?;
                        done.push((i, out));
                    }
                    Ok(done)
                });
            if let (Some(i), Some((p, c))) = (largest, last) {
                results[i] = Some((joined(p), c.map(joined)));
            }
            let results: Vec<(Zbinned, Option<Zbinned>)> =
                results.into_iter().map(|r| r.expect("joined")).collect();
            (results, patched_rest)
        });
        for (i, out) in patched_rest? {
            outputs[i] = out;
        }
        let (started, native) = self.repack_all(&mut outputs, native, results, in_toolchain)?;
        if !outputs.iter().any(|o| o.patched) {
            bail!(
                "recipe {}: none of its outputs contains the placeholder (was it built with `--embed`?)",
                self.recipe.name
            );
        }
        Ok((outputs, started, native))
    }

    /// Writes the script over the placeholder in `out`, if it holds one.
    /// Returns the bytes as built and as patched, for a native repack to take without
    /// reading them again.
    fn patch_one(&self, out: &mut EmbeddedArtifact, ph: &[u8]) -> Result<Option<Patched>> {
        let Some(p) = self.patch_bytes(out, ph)? else {
            return Ok(None);
        };
        self.record(out, &p.patched)?;
        Ok(Some(p))
    }

    /// The script written over the placeholder in `out`'s bytes, in memory, if it holds one.
    fn patch_bytes(&self, out: &EmbeddedArtifact, ph: &[u8]) -> Result<Option<Patched>> {
        if out.blob.size > MAX_PATCHABLE {
            return Ok(None);
        }
        let built = self.store().read_blob(&out.blob.sha256)?;
        let patched = patch::patch(&built, ph, self.script)
            .with_context(|| format!("recipe {}: patching {}", self.recipe.name, out.blob.name))?;
        Ok(patched.map(|patched| Patched { built, patched }))
    }

    /// Stores `patched` as `out`'s new bytes.
    fn record(&self, out: &mut EmbeddedArtifact, patched: &[u8]) -> Result<()> {
        let s = self.store().put_bytes(patched)?;
        (out.blob.sha256, out.blob.size, out.patched) = (s.digest, s.size, true);
        Ok(())
    }

    /// Stores what the native zbin made, records the first-time checks, and remakes in the
    /// toolchain what it could not. Returns the containers started and the native repacks.
    fn repack_all<'r>(
        &self,
        outputs: &mut [EmbeddedArtifact],
        native: Vec<NativeJob<'r>>,
        results: Vec<(Zbinned, Option<Zbinned>)>,
        mut in_toolchain: Vec<&'r Repack>,
    ) -> Result<(u32, u32)> {
        let mut native_done = 0;
        for (job, (patched, check)) in native.iter().zip(results) {
            let rp = job.rp;
            if let (Some(c), Some(result)) = (&job.check, check) {
                let verdict = match result {
                    Ok(bytes) if Digest::of(&bytes) == c.built_output => None,
                    Ok(_) => Some("its bytes differ from the build's own zbin".to_owned()),
                    Err(e) => Some(e.to_string()),
                };
                let entry = ZbinCheck {
                    schema: ZBIN_CHECK_SCHEMA,
                    key: c.key.clone(),
                    output: rp.output.clone(),
                    differs: verdict.clone(),
                };
                self.store().write_json(&layout::action(&c.key), &entry)?;
                if let Some(why) = verdict {
                    self.notice_toolchain(rp, &why);
                    in_toolchain.push(rp);
                    continue;
                }
            }
            let bytes = patched.map_err(|e| {
                anyhow::anyhow!(
                    "recipe {}: remaking {} after patching {}: {e}",
                    self.recipe.name,
                    rp.output,
                    rp.patch
                )
            })?;
            let stored = self.store().put_bytes(&bytes)?;
            set_output(outputs, &rp.output, stored);
            native_done += 1;
        }
        let mut started = 0;
        for rp in in_toolchain {
            self.settings.may_run(&format!(
                "recipe {}: {} remade with this script",
                self.recipe.name, rp.output
            ))?;
            let repacked = self.repack(rp, outputs).with_context(|| {
                format!(
                    "recipe {}: remaking {} after patching {}",
                    self.recipe.name, rp.output, rp.patch
                )
            })?;
            started += u32::from(self.settings.executor.kind.is_container());
            set_output(outputs, &rp.output, repacked);
        }
        Ok((started, native_done))
    }

    fn notice_toolchain(&self, rp: &Repack, why: &str) {
        eprintln!(
            "[{}] {}: remade by the build's own zbin in its toolchain (the native zbin cannot: {why})",
            self.recipe.name, rp.output
        );
    }

    /// The native zbin's work for `rp`, if `rp` runs iPXE's zbin on outputs of this build
    /// and the native one has not been seen to differ from it on this build's own image.
    fn native_job<'r>(
        &self,
        rp: &'r Repack,
        patched_sources: &mut HashMap<String, Patched>,
    ) -> Result<Option<NativeJob<'r>>> {
        let Some((bin, zinfo)) = zbin_command(rp) else {
            return Ok(None);
        };
        let built = |name: &str| self.built.iter().find(|a| a.blob.name == name);
        let (Some(built_bin), Some(built_zinfo), Some(built_output)) =
            (built(bin), built(zinfo), built(&rp.output))
        else {
            return Ok(None);
        };
        let Some(source) = patched_sources.remove(&rp.patch) else {
            bail!(
                "recipe {}: remaking {} after patching {}: {} holds no placeholder to patch",
                self.recipe.name,
                rp.output,
                rp.patch,
                rp.patch
            );
        };
        let key = Digest::of(
            serde_json::json!({
                "schema": ZBIN_CHECK_SCHEMA,
                "run": rp.run,
                "bin": built_bin.blob.sha256,
                "zinfo": built_zinfo.blob.sha256,
                "output": built_output.blob.sha256,
            })
            .to_string()
            .as_bytes(),
        )
        .hex();
        let check = match self.store().read_json::<ZbinCheck>(&layout::action(&key))? {
            Some(c) => {
                if let Some(why) = &c.differs {
                    self.notice_toolchain(rp, why);
                    // The toolchain remakes it from the stored patched source.
                    patched_sources.insert(rp.patch.clone(), source);
                    return Ok(None);
                }
                None
            }
            None => Some(Check {
                key,
                built_bin: source.built,
                built_output: built_output.blob.sha256,
            }),
        };
        Ok(Some(NativeJob {
            rp,
            patched_bin: source.patched,
            zinfo: self.store().read_blob(&built_zinfo.blob.sha256)?,
            check,
        }))
    }

    /// Runs the repack command on the outputs (with the patched one) in the toolchain.
    fn repack(&self, rp: &Repack, outputs: &[EmbeddedArtifact]) -> Result<crate::store::Stored> {
        let source = outputs
            .iter()
            .find(|o| o.blob.name == rp.patch)
            .expect("validated: patch is an output");
        if !source.patched {
            bail!("{} holds no placeholder to patch", rp.patch);
        }
        let store = self.store();
        // A damaged iPXE .zinfo is named here, not in the output of a failing container. (A
        // record type this reader does not know is left to the build's own zbin.)
        for o in outputs
            .iter()
            .filter(|o| o.blob.name.ends_with(".zinfo") && rp.run.contains(&o.blob.name))
        {
            match zinfo::parse(&store.read_blob(&o.blob.sha256)?) {
                Ok(_) | Err(zinfo::ZinfoError::Unknown { .. }) => {}
                Err(e) => bail!("{}: {e}", o.blob.name),
            }
        }
        let work = store.temp_dir("repack-")?;
        let tree = work.path().join("tree");
        for o in outputs
            .iter()
            .filter(|o| o.blob.name == rp.patch || rp.run.contains(&o.blob.name))
        {
            let mode = if rp.run.first() == Some(&o.blob.name) {
                0o755
            } else {
                0o644
            };
            store.export_blob(&o.blob.sha256, &tree.join(&o.blob.name), Some(mode))?;
        }
        let stdout = build::run_tool(self.settings, self.recipe, &tree, &rp.run)?;
        if stdout.is_empty() {
            bail!(
                "`{}` wrote nothing to its standard output",
                rp.run.join(" ")
            );
        }
        store.put_bytes(&stdout)
    }
}
