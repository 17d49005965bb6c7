//! The build stage: from a loaded recipe to outputs in the store, reusing the action cache
//! whenever every input is unchanged.

mod key;
mod run;
mod tool;
pub mod toolchain;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::base::executor::Executor;
use crate::base::process;
pub use crate::base::progress::elapsed;
use crate::base::{Digest, Named};
use crate::recipe::LoadedRecipe;
use crate::source::{self, Mirrors, SourceIdentity};
use crate::store::{Entry, Kind, Origin, Produced, ProducedFile, Shared, Store, layout};
pub use key::{KeyInputs, SCHEMA};
use run::Run;
pub use tool::{run_in, run_tool};
pub use toolchain::Toolchain;
use toolchain::Unresolved;

/// Default limit for one step.
const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// What every build shares: where results go and how steps run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store: Store,
    pub executor: Executor,
    pub mirrors: Mirrors,
    /// Value of `{jobs}`; not part of the action key (parallelism must not change output).
    pub jobs: usize,
    /// The Debian mirror toolchains are debootstrapped from (debootstrap's own when `None`).
    pub debian_mirror: Option<String>,
    /// The store other machines share, looked in after the local one and pushed to.
    pub shared: Option<Arc<Shared>>,
    /// `--no-build`: nothing runs here (no toolchain, no step, no repack); what neither
    /// store holds is an error, as on a packager that must only take the builders' work.
    pub no_build: bool,
}

/// What the user asked of one recipe.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `--target`: a subset of the recipe's outputs.
    pub targets: Vec<String>,
    /// `--embed`: replaces the recipe's `embed`.
    pub embed: Option<PathBuf>,
    /// `--set KEY=VALUE`.
    pub sets: Vec<(String, String)>,
    /// `--check`: rebuild ignoring the cache and compare.
    pub check: bool,
}

/// One stored output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    #[serde(flatten)]
    pub blob: Named,
    /// The build left it executable (a host tool such as iPXE's zbin); blobs carry no mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

impl Artifact {
    /// The file mode to give an exported copy.
    pub fn mode(&self) -> u32 {
        if self.executable { 0o755 } else { 0o644 }
    }
}

/// How an action's outputs were made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Provenance {
    pub recipe_file: String,
    pub source: SourceIdentity,
    pub toolchain: String,
    pub image: Option<String>,
    pub executor: String,
    /// False for `--executor host`: the host's tools and network were in reach.
    pub hermetic: bool,
    pub commands: Vec<Vec<String>>,
    pub source_date_epoch: i64,
    /// The embedded script's content, kept as a blob.
    pub embed: Option<Digest>,
    pub bootforge_version: String,
    pub duration_ms: u64,
}

/// `actions/<key>.json`: the recorded result of an action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionEntry {
    pub schema: u32,
    pub key: String,
    pub recipe: String,
    pub inputs: KeyInputs,
    pub outputs: Vec<Artifact>,
    /// The full build log.
    pub log: Digest,
    pub provenance: Provenance,
}

impl Entry for ActionEntry {
    fn blobs(&self) -> Vec<Digest> {
        let mut v: Vec<Digest> = self.outputs.iter().map(|o| o.blob.sha256).collect();
        v.push(self.log);
        v
    }

    fn companions(&self) -> Vec<Digest> {
        vec![provenance_blob(self).1]
    }
}

/// The result of building one recipe, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub recipe: String,
    pub action_key: String,
    /// True when the outputs came from the action cache and nothing ran.
    pub cached: bool,
    /// Where they came from: this machine's store, the shared one, or a build here.
    pub origin: Origin,
    pub containers_started: u32,
    pub duration_ms: u64,
    pub outputs: Vec<Artifact>,
    pub log: Digest,
    /// The SOURCE_DATE_EPOCH the outputs were built with.
    pub source_date_epoch: i64,
    /// With `--check`: what the rebuild was compared against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_against: Option<String>,
}

/// What `plan` says about one recipe.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub recipe: String,
    /// Absent when it cannot be known yet (the toolchain must be built first).
    pub action_key: Option<String>,
    pub cached: bool,
    /// Where the hit is: this machine's store or the shared one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<Origin>,
    pub reasons: Vec<String>,
    pub inputs: Option<KeyInputs>,
}

/// An embedded script as the build sees it.
#[derive(Debug, Clone)]
struct Embed {
    name: String,
    /// Read once, so the bytes built are the bytes hashed even if the file changes meanwhile.
    bytes: Vec<u8>,
    digest: Digest,
}

/// Inputs resolved from recipe + request, before the toolchain is known.
struct Prepared<'a> {
    recipe: &'a LoadedRecipe,
    selected: Vec<String>,
    vars: BTreeMap<String, String>,
    embed: Option<Embed>,
    source: SourceIdentity,
    /// Patch name and bytes, read once like the embed.
    patches: Vec<(String, Vec<u8>)>,
    /// Trusted CA certificates: file name and bytes, read once like the embed.
    trust: Vec<(String, Vec<u8>)>,
}

fn prepare<'a>(recipe: &'a LoadedRecipe, req: &Request) -> Result<Prepared<'a>> {
    let selected = recipe.select_outputs(&req.targets)?;
    let vars = recipe.resolve_vars(&req.sets)?;
    let embed = match (&req.embed, &recipe.recipe.embed, &recipe.recipe.placeholder) {
        (Some(p), _, _) => {
            if !recipe.uses_embed() {
                bail!(
                    "recipe {}: --embed given, but no step uses `{{embed}}`",
                    recipe.name
                );
            }
            Some(read_embed(p)?)
        }
        (None, Some(rel), _) => Some(read_embed(&recipe.resolve(rel))?),
        (None, None, Some(placeholder)) => {
            let bytes = placeholder.bytes();
            Some(Embed {
                name: placeholder.kind.file_name().to_owned(),
                digest: Digest::of(&bytes),
                bytes,
            })
        }
        (None, None, None) if recipe.uses_embed() => bail!(
            "recipe {}: a step uses `{{embed}}` but the recipe has no `embed` and no --embed was given",
            recipe.name
        ),
        (None, None, None) => None,
    };
    let patches = recipe
        .recipe
        .patches
        .iter()
        .map(|p| -> Result<(String, Vec<u8>)> {
            let bytes = fs::read(recipe.resolve(p))
                .with_context(|| format!("reading patch {}", recipe.resolve(p).display()))?;
            Ok((p.clone(), bytes))
        })
        .collect::<Result<_>>()?;
    let trust = recipe
        .recipe
        .trust
        .iter()
        .map(|t| -> Result<(String, Vec<u8>)> {
            let path = recipe.resolve(t);
            let bytes = fs::read(&path)
                .with_context(|| format!("reading CA certificate {}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .context("a trusted certificate's path has no file name")?;
            Ok((name, bytes))
        })
        .collect::<Result<_>>()?;
    Ok(Prepared {
        recipe,
        selected,
        vars,
        embed,
        source: source::identify(recipe)?,
        patches,
        trust,
    })
}

fn read_embed(path: &Path) -> Result<Embed> {
    let bytes =
        fs::read(path).with_context(|| format!("reading embedded script {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the embedded script path has no file name")?;
    Ok(Embed {
        name,
        digest: Digest::of(&bytes),
        bytes,
    })
}

impl Prepared<'_> {
    fn key_inputs(&self, toolchain: &Toolchain) -> KeyInputs {
        let r = &self.recipe.recipe;
        KeyInputs {
            schema: SCHEMA,
            recipe: self.recipe.name.clone(),
            build: serde_json::json!({ "workdir": r.workdir, "steps": r.steps }),
            source: serde_json::to_value(&self.source).expect("serialises"),
            patches: self
                .patches
                .iter()
                .map(|(n, bytes)| (n.clone(), Digest::of(bytes).hex()))
                .collect(),
            toolchain: toolchain.identity(),
            executor: if matches!(toolchain, Toolchain::Host) {
                "host"
            } else {
                "container"
            }
            .into(),
            embed: self
                .embed
                .as_ref()
                .map(|e| (e.name.clone(), e.digest.hex())),
            trust: self
                .trust
                .iter()
                .map(|(n, bytes)| (n.clone(), Digest::of(bytes).hex()))
                .collect(),
            vars: self.vars.clone(),
            targets: self.selected.clone(),
            epoch: r.epoch,
        }
    }
}

/// Reads a cached entry whose outputs are all still present.
fn cached_entry(store: &Store, key: &str) -> Result<Option<ActionEntry>> {
    let entry: Option<ActionEntry> = store.read_json(&layout::action(key))?;
    Ok(entry.filter(|e| e.outputs.iter().all(|o| store.has_blob(&o.blob.sha256))))
}

/// Explains a miss by comparing with the last build of the same recipe.
fn miss_reasons(store: &Store, recipe: &str, inputs: &KeyInputs, key: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct History {
        key: String,
    }
    let entry: Option<ActionEntry> = store.read_json(&format!("actions/{key}.json"))?;
    if entry.is_some() {
        return Ok(vec![
            "outputs recorded for this key are missing from the store".into(),
        ]);
    }
    let last: Option<History> = store.read_json(&format!("history/{recipe}.json"))?;
    let previous = match last {
        Some(h) => store.read_json::<ActionEntry>(&format!("actions/{}.json", h.key))?,
        None => None,
    };
    Ok(match previous {
        None => vec!["never built".into()],
        Some(prev) => {
            let diff = inputs.diff(&prev.inputs);
            if diff.is_empty() {
                vec!["no entry for this key".into()]
            } else {
                diff.into_iter()
                    .map(|d| format!("changed since the last build: {d}"))
                    .collect()
            }
        }
    })
}

/// Says what `build` would do, running nothing.
pub fn plan(settings: &Settings, recipe: &LoadedRecipe, req: &Request) -> Result<PlanReport> {
    let prepared = prepare(recipe, req)?;
    let toolchain = match toolchain::resolve_shared(recipe, settings)? {
        Ok(t) => t,
        Err(Unresolved::NeedsBuild(spec, why)) => {
            return Ok(PlanReport {
                recipe: recipe.name.clone(),
                action_key: None,
                cached: false,
                found: None,
                reasons: vec![format!(
                    "toolchain `{}` must be built first ({why})",
                    spec.name
                )],
                inputs: None,
            });
        }
    };
    let inputs = prepared.key_inputs(&toolchain);
    let key = inputs.key();
    let found = if cached_entry(&settings.store, &key)?.is_some() {
        Some(Origin::Local)
    } else {
        match &settings.shared {
            Some(shared) => {
                let there = shared.storage().head(&layout::action(&key));
                shared.tolerate(there, None)?.map(|_| Origin::Remote)
            }
            None => None,
        }
    };
    let reasons = if found.is_some() {
        vec![]
    } else {
        miss_reasons(&settings.store, &recipe.name, &inputs, &key)?
    };
    Ok(PlanReport {
        recipe: recipe.name.clone(),
        action_key: Some(key),
        cached: found.is_some(),
        found,
        reasons,
        inputs: Some(inputs),
    })
}

impl Settings {
    /// Refuses, under `--no-build`, to run `what`, which neither store holds.
    pub fn may_run(&self, what: &str) -> Result<()> {
        if !self.no_build {
            return Ok(());
        }
        let looked = match &self.shared {
            Some(s) => format!("the local store nor in {}", s.location()),
            None => "the local store (no --remote given)".to_owned(),
        };
        bail!("{what} is neither in {looked}, and --no-build forbids making it here")
    }

    /// The entry recorded for action `key` (`actions/<key>.json`: a build's, an embed's or a
    /// package's): this machine's when every blob it names is here, else the shared store's,
    /// pulled with its blobs (and then recorded here too).
    pub fn recorded<T: Entry>(&self, key: &str) -> Result<Option<(T, Origin)>> {
        let path = layout::action(key);
        if let Some(e) = self.store.read_json::<T>(&path)?
            && e.blobs().iter().all(|d| self.store.has_blob(d))
        {
            return Ok(Some((e, Origin::Local)));
        }
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let pulled = shared.pull::<T>(&self.store, &path, key);
        Ok(shared.tolerate(pulled, None)?.map(|e| (e, Origin::Remote)))
    }

    /// Makes the entry recorded here for `key` available to other machines: its blobs,
    /// then the entry. Also for one this store had before it had a remote, so such a store
    /// can seed one.
    pub fn share<T: Entry>(&self, key: &str, entry: &T) -> Result<()> {
        if let Some(shared) = &self.shared {
            let pushed = shared.push(&self.store, &layout::action(key), key, entry);
            shared.tolerate(pushed, ())?;
        }
        Ok(())
    }
}

/// Builds one recipe, or takes its outputs from the action cache (local, then shared).
pub fn build(settings: &Settings, recipe: &LoadedRecipe, req: &Request) -> Result<BuildReport> {
    let start = Instant::now();
    let store = &settings.store;
    let prepared = prepare(recipe, req)?;
    let _store_lock = store.lock_shared()?;
    let toolchain = toolchain::resolve_or_build(recipe, settings)?;
    let inputs = prepared.key_inputs(&toolchain);
    let key = inputs.key();

    if !req.check
        && let Some((entry, origin)) = settings.recorded(&key)?
    {
        return reuse(settings, entry, origin, start);
    }
    let _action_lock = store.lock_named(&format!("action-{key}"))?;
    // Another process may have finished the same action while we waited for the lock.
    let existing = settings.recorded(&key)?;
    if !req.check
        && let Some((entry, origin)) = existing
    {
        return reuse(settings, entry, origin, start);
    }

    settings.may_run(&format!("recipe {}: action {key}", recipe.name))?;
    // The engine is asked for the image while the source is fetched: each question to
    // podman costs a process start of its own.
    let (squashfs, fetched) = std::thread::scope(|s| {
        let image = s.spawn(|| match toolchain {
            Toolchain::None => Ok(None),
            _ => toolchain::ensure_image(&toolchain, settings),
        });
        let fetched = source::fetch(recipe, store, &settings.mirrors)
            .with_context(|| format!("recipe {}: fetching its source", recipe.name));
        (image.join().expect("ensure_image does not panic"), fetched)
    });
    let (squashfs, fetched) = (squashfs?, fetched?);
    let run = Run {
        settings,
        prepared: &prepared,
        toolchain: &toolchain,
        squashfs: squashfs.as_deref(),
        key: &key,
        inputs: &inputs,
        fetched: &fetched,
    };
    let (entry, started) = run.execute()?;

    let checked_against = if req.check {
        let (reference, against) = match existing {
            Some((e, Origin::Remote)) => (e, "the shared store's build"),
            Some((e, _)) => (e, "the cached build"),
            None => {
                eprintln!(
                    "[{}] --check: building a second time to compare",
                    recipe.name
                );
                let (second, _) = run.execute()?;
                (second, "a second build")
            }
        };
        compare(&recipe.name, &reference.outputs, &entry.outputs, against)?;
        Some(against.to_owned())
    } else {
        None
    };
    store.write_json(&layout::action(&key), &entry)?;
    store.write_json(
        &layout::history(&recipe.name),
        &serde_json::json!({ "key": key }),
    )?;
    record_latest(store, &entry)?;
    settings.share(&key, &entry)?;
    Ok(report(
        entry,
        Origin::Built,
        started,
        start,
        checked_against,
    ))
}

/// A recorded result, used as it is: noted as the recipe's latest, and shared if it was
/// found here.
fn reuse(
    settings: &Settings,
    entry: ActionEntry,
    origin: Origin,
    start: Instant,
) -> Result<BuildReport> {
    record_latest(&settings.store, &entry)?;
    if origin == Origin::Local {
        settings.share(&entry.key, &entry)?;
    }
    Ok(report(entry, origin, 0, start, None))
}

/// Builds independent recipes side by side, a thread each; reports come back in order, and
/// a failure is reported (on stderr) without stopping the others. Returns whether any failed.
pub fn build_all(
    settings: &Settings,
    recipes: &[LoadedRecipe],
    req: &Request,
) -> (Vec<BuildReport>, bool) {
    let results: Vec<Result<BuildReport>> = std::thread::scope(|s| {
        let handles: Vec<_> = recipes
            .iter()
            .map(|r| s.spawn(|| build(settings, r, req)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("build thread panicked"))
            .collect()
    });
    let mut reports = Vec::new();
    let mut failed = false;
    for res in results {
        match res {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    }
    (reports, failed)
}

/// Copies each report's outputs to `dir/<recipe>/<output>`, verified, with their modes.
pub fn export(store: &Store, reports: &[BuildReport], dir: &Path) -> Result<()> {
    for r in reports {
        for o in &r.outputs {
            store.export_blob(
                &o.blob.sha256,
                &dir.join(&r.recipe).join(&o.blob.name),
                Some(o.mode()),
            )?;
        }
    }
    Ok(())
}

/// Notes `entry` as what its recipe last produced, for `publish`; the entry itself becomes
/// a blob so the published manifest can point at its provenance.
fn record_latest(store: &Store, entry: &ActionEntry) -> Result<()> {
    let provenance = store.put_bytes(&provenance_blob(entry).0)?.digest;
    store.record_latest(&Produced {
        kind: Kind::Build,
        name: entry.recipe.clone(),
        files: entry
            .outputs
            .iter()
            .map(|o| ProducedFile {
                blob: Named {
                    name: format!("{}/{}", entry.recipe, o.blob.name),
                    sha256: o.blob.sha256,
                    size: o.blob.size,
                },
                media_type: media_type(&o.blob.name).into(),
            })
            .collect(),
        provenance,
        source_date_epoch: entry.provenance.source_date_epoch,
    })
}

/// The blob a release points at as a build's provenance: the entry itself, and its digest.
fn provenance_blob(entry: &ActionEntry) -> (Vec<u8>, Digest) {
    let bytes = serde_json::to_vec_pretty(entry).expect("an entry serialises");
    let d = Digest::of(&bytes);
    (bytes, d)
}

/// A media type for a build output, from its extension (EFI images have their own).
fn media_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("efi") => "application/efi",
        Some("iso") => "application/vnd.efi.iso",
        Some("img") => "application/vnd.efi.img",
        Some("gz") => "application/gzip",
        _ => "application/octet-stream",
    }
}

fn report(
    entry: ActionEntry,
    origin: Origin,
    containers_started: u32,
    start: Instant,
    checked_against: Option<String>,
) -> BuildReport {
    BuildReport {
        recipe: entry.recipe,
        action_key: entry.key,
        cached: origin != Origin::Built,
        origin,
        containers_started,
        duration_ms: start.elapsed().as_millis() as u64,
        outputs: entry.outputs,
        log: entry.log,
        source_date_epoch: entry.provenance.source_date_epoch,
        checked_against,
    }
}

fn compare(
    recipe: &str,
    reference: &[Artifact],
    rebuilt: &[Artifact],
    against: &str,
) -> Result<()> {
    let mut diffs = Vec::new();
    for new in rebuilt {
        match reference.iter().find(|o| o.blob.name == new.blob.name) {
            Some(old) if old.blob.sha256 == new.blob.sha256 => {}
            Some(old) => diffs.push(format!(
                "  {}: {} before, {} rebuilt",
                new.blob.name, old.blob.sha256, new.blob.sha256
            )),
            None => diffs.push(format!("  {}: not in {against}", new.blob.name)),
        }
    }
    if !diffs.is_empty() {
        bail!(
            "recipe {recipe} is not reproducible: the rebuild differs from {against}:\n{}\n\
             Look for timestamps, build paths or randomness in these outputs \
             (diffoscope shows where two files differ).",
            diffs.join("\n")
        );
    }
    Ok(())
}
