//! The build stage: from a loaded recipe to outputs in the store, reusing the action cache
//! whenever every input is unchanged.

mod key;
pub mod toolchain;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

use crate::base::Digest;
use crate::base::executor::{Executor, StepCommand};
use crate::base::process;
use crate::recipe::{LoadedRecipe, expand};
use crate::source::{self, Mirrors, SourceIdentity};
use crate::store::{Produced, ProducedFile, Store};
pub use key::{KeyInputs, SCHEMA};
use toolchain::{Toolchain, Unresolved};

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
    pub name: String,
    pub sha256: Digest,
    pub size: u64,
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

/// The result of building one recipe, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub recipe: String,
    pub action_key: String,
    /// True when the outputs came from the action cache and nothing ran.
    pub cached: bool,
    pub containers_started: u32,
    pub duration_ms: u64,
    pub outputs: Vec<Artifact>,
    pub log: Digest,
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
    Ok(Prepared {
        recipe,
        selected,
        vars,
        embed,
        source: source::identify(recipe)?,
        patches,
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
            vars: self.vars.clone(),
            targets: self.selected.clone(),
            epoch: r.epoch,
        }
    }
}

/// Reads a cached entry whose outputs are all still present.
fn cached_entry(store: &Store, key: &str) -> Result<Option<ActionEntry>> {
    let entry: Option<ActionEntry> = store.read_json(&format!("actions/{key}.json"))?;
    Ok(entry.filter(|e| e.outputs.iter().all(|o| store.has_blob(&o.sha256))))
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
    let toolchain = match toolchain::resolve(recipe, &settings.store, &settings.executor)? {
        Ok(t) => t,
        Err(Unresolved::NeedsBuild(spec, why)) => {
            return Ok(PlanReport {
                recipe: recipe.name.clone(),
                action_key: None,
                cached: false,
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
    let hit = cached_entry(&settings.store, &key)?.is_some();
    let reasons = if hit {
        vec![]
    } else {
        miss_reasons(&settings.store, &recipe.name, &inputs, &key)?
    };
    Ok(PlanReport {
        recipe: recipe.name.clone(),
        action_key: Some(key),
        cached: hit,
        reasons,
        inputs: Some(inputs),
    })
}

/// Builds one recipe, or takes its outputs from the action cache.
pub fn build(settings: &Settings, recipe: &LoadedRecipe, req: &Request) -> Result<BuildReport> {
    let start = Instant::now();
    let store = &settings.store;
    let prepared = prepare(recipe, req)?;
    let _store_lock = store.lock_shared()?;
    let toolchain = match toolchain::resolve(recipe, store, &settings.executor)? {
        Ok(t) => t,
        Err(Unresolved::NeedsBuild(spec, why)) => {
            eprintln!(
                "[{}] building toolchain `{}` ({why})",
                recipe.name, spec.name
            );
            Toolchain::Spec(toolchain::build(&spec, settings)?)
        }
    };
    let inputs = prepared.key_inputs(&toolchain);
    let key = inputs.key();

    if !req.check
        && let Some(entry) = cached_entry(store, &key)?
    {
        record_latest(store, &entry)?;
        return Ok(report(entry, true, 0, start, None));
    }
    let _action_lock = store.lock_named(&format!("action-{key}"))?;
    // Another process may have finished the same action while we waited for the lock.
    let existing = cached_entry(store, &key)?;
    if !req.check
        && let Some(entry) = existing
    {
        record_latest(store, &entry)?;
        return Ok(report(entry, true, 0, start, None));
    }

    if !matches!(toolchain, Toolchain::None) {
        settings.executor.check_available()?;
        toolchain::ensure_image(&toolchain, store, &settings.executor)?;
    }
    let fetched = source::fetch(recipe, store, &settings.mirrors)
        .with_context(|| format!("recipe {}: fetching its source", recipe.name))?;
    let run = Run {
        settings,
        prepared: &prepared,
        toolchain: &toolchain,
        key: &key,
        inputs: &inputs,
        fetched: &fetched,
    };
    let (entry, started) = run.execute()?;

    let checked_against = if req.check {
        let (reference, against) = match existing {
            Some(e) => (e, "the cached build"),
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
    store.write_json(&format!("actions/{key}.json"), &entry)?;
    store.write_json(
        &format!("history/{}.json", recipe.name),
        &serde_json::json!({ "key": key }),
    )?;
    record_latest(store, &entry)?;
    Ok(report(entry, false, started, start, checked_against))
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
                &o.sha256,
                &dir.join(&r.recipe).join(&o.name),
                Some(o.mode()),
            )?;
        }
    }
    Ok(())
}

/// Notes `entry` as what its recipe last produced, for `publish`; the entry itself becomes
/// a blob so the published manifest can point at its provenance.
fn record_latest(store: &Store, entry: &ActionEntry) -> Result<()> {
    let provenance = store.put_bytes(&serde_json::to_vec_pretty(entry)?)?.digest;
    store.record_latest(&Produced {
        kind: "build".into(),
        name: entry.recipe.clone(),
        files: entry
            .outputs
            .iter()
            .map(|o| ProducedFile {
                name: format!("{}/{}", entry.recipe, o.name),
                sha256: o.sha256,
                size: o.size,
                media_type: media_type(&o.name).into(),
            })
            .collect(),
        provenance,
        source_date_epoch: entry.provenance.source_date_epoch,
    })
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
    cached: bool,
    containers_started: u32,
    start: Instant,
    checked_against: Option<String>,
) -> BuildReport {
    BuildReport {
        recipe: entry.recipe,
        action_key: entry.key,
        cached,
        containers_started,
        duration_ms: start.elapsed().as_millis() as u64,
        outputs: entry.outputs,
        log: entry.log,
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
        match reference.iter().find(|o| o.name == new.name) {
            Some(old) if old.sha256 == new.sha256 => {}
            Some(old) => diffs.push(format!(
                "  {}: {} before, {} rebuilt",
                new.name, old.sha256, new.sha256
            )),
            None => diffs.push(format!("  {}: not in {against}", new.name)),
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

/// One execution of an action.
struct Run<'a> {
    settings: &'a Settings,
    prepared: &'a Prepared<'a>,
    toolchain: &'a Toolchain,
    key: &'a str,
    inputs: &'a KeyInputs,
    fetched: &'a source::Fetched,
}

impl Run<'_> {
    /// Runs the steps in a fresh tree and stores outputs and log; returns the entry (not yet
    /// written) and the number of containers started.
    fn execute(&self) -> Result<(ActionEntry, u32)> {
        let start = Instant::now();
        let store = &self.settings.store;
        let recipe = self.prepared.recipe;
        let name = &recipe.name;
        let work = store.temp_dir(&format!("build-{name}-"))?;
        let tree = work.path().join("src");
        fs::create_dir(&tree)?;
        eprintln!("[{name}] preparing source");
        self.fetched
            .materialize(store, &tree, &self.prepared.patches)
            .with_context(|| format!("recipe {name}: laying out the source"))?;
        let epoch = recipe
            .recipe
            .epoch
            .or(self.fetched.epoch)
            .context("no SOURCE_DATE_EPOCH: set `epoch` in the recipe")?;

        let embed_dir = match &self.prepared.embed {
            Some(e) => {
                let dir = work.path().join("embed");
                fs::create_dir(&dir)?;
                fs::write(dir.join(&e.name), &e.bytes)?;
                Some(dir)
            }
            None => None,
        };
        let embed_blob = match &self.prepared.embed {
            Some(e) => Some(store.put_bytes(&e.bytes)?.digest),
            None => None,
        };
        let executor = &self.settings.executor;
        let (src_view, embed_view) = executor.view_paths(&tree, embed_dir.as_deref());
        let env = vec![
            ("SOURCE_DATE_EPOCH".to_owned(), epoch.to_string()),
            ("TZ".to_owned(), "UTC".to_owned()),
            ("LC_ALL".to_owned(), "C".to_owned()),
        ];
        let workdir = recipe.recipe.workdir.clone().unwrap_or_default();
        let log_path = work.path().join("build.log");
        let mut log = fs::File::create(&log_path)?;
        let timeout = recipe
            .recipe
            .timeout
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_STEP_TIMEOUT);

        let steps = &recipe.recipe.steps;
        let mut commands = Vec::new();
        let mut started = 0;
        for (i, step) in steps.iter().enumerate() {
            let targets: Vec<&String> = match step.selected_targets(&self.prepared.selected) {
                Some(t) if t.is_empty() => continue,
                Some(t) => t,
                None => self.prepared.selected.iter().collect(),
            };
            let argv = expand_args(
                &step.run,
                |var| match var {
                    "jobs" => Some(self.settings.jobs.to_string()),
                    "src" => Some(src_view.clone()),
                    "embed" => embed_view
                        .as_ref()
                        .zip(self.prepared.embed.as_ref())
                        .map(|(dir, e)| format!("{dir}/{}", e.name)),
                    v => self.prepared.vars.get(v).cloned(),
                },
                &targets,
            )
            .with_context(|| format!("recipe {name}: step {}", i + 1))?;
            let progress = format!("[{name}] step {}/{} `{}`", i + 1, steps.len(), step.label());
            eprintln!("{progress}");
            use std::io::Write;
            writeln!(log, "$ {}", shell_words::join(&argv))?;
            let container = format!(
                "bootforge-{}-{}-{}",
                &self.key[..12],
                i + 1,
                std::process::id()
            );
            let cmd = executor.command(&StepCommand {
                tree: &tree,
                workdir: &workdir,
                embed_dir: embed_dir.as_deref(),
                image: self.toolchain.image(),
                argv: &argv,
                env: &env,
                name: &container,
            });
            if executor.kind.is_container() {
                started += 1;
            }
            let step_start = Instant::now();
            let outcome = process::run_logged(cmd, timeout, &mut log, &progress, || {
                executor.kill_container(&container)
            })?;
            let failure = match outcome {
                process::Outcome::Exited(s) if s.success() => None,
                process::Outcome::Exited(s) => Some(format!("exited with {s}")),
                process::Outcome::TimedOut(t) => Some(format!(
                    "ran longer than its timeout of {} and was killed with its whole process tree",
                    elapsed(t)
                )),
            };
            if let Some(why) = failure {
                let stored = store.put_file(&log_path)?;
                bail!(
                    "recipe {name}: step {}/{} `{}` {why}.\n--- last lines of the log ---\n{}\n--- full log: {} ---",
                    i + 1,
                    steps.len(),
                    step.label(),
                    process::tail(&log_path, 25),
                    store.blob_path(&stored.digest).display()
                );
            }
            eprintln!("{progress} done in {}", elapsed(step_start.elapsed()));
            commands.push(argv);
        }

        let outputs = self.collect_outputs(&tree, &workdir, &log_path)?;
        let log_blob = store.put_file(&log_path)?.digest;
        let entry = ActionEntry {
            schema: SCHEMA,
            key: self.key.to_owned(),
            recipe: name.clone(),
            inputs: self.inputs.clone(),
            outputs,
            log: log_blob,
            provenance: Provenance {
                recipe_file: recipe.path.display().to_string(),
                source: self.prepared.source.clone(),
                toolchain: self.toolchain.identity(),
                image: self.toolchain.image().map(str::to_owned),
                executor: executor.kind.name().into(),
                hermetic: executor.kind.is_container() || matches!(self.toolchain, Toolchain::None),
                commands,
                source_date_epoch: epoch,
                embed: embed_blob,
                bootforge_version: env!("CARGO_PKG_VERSION").into(),
                duration_ms: start.elapsed().as_millis() as u64,
            },
        };
        Ok((entry, started))
    }

    /// Stores the selected outputs, read through a handle on the build tree: a link the build
    /// made (or a .deb's absolute link) can never make a host file an output.
    fn collect_outputs(
        &self,
        tree: &Path,
        workdir: &str,
        log_path: &Path,
    ) -> Result<Vec<Artifact>> {
        let store = &self.settings.store;
        let name = &self.prepared.recipe.name;
        let missing = |o: &str| -> Result<anyhow::Error> {
            let log = store.put_file(log_path)?;
            Ok(anyhow::anyhow!(
                "recipe {name}: output `{o}` was not produced by the build (expected {} in the \
                 build tree); full log: {}",
                Path::new(workdir).join(o).display(),
                store.blob_path(&log.digest).display()
            ))
        };
        let root = Dir::open_ambient_dir(tree, ambient_authority())
            .with_context(|| format!("opening {}", tree.display()))?;
        let dir = if workdir.is_empty() {
            root
        } else {
            root.open_dir(workdir)
                .with_context(|| format!("recipe {name}: opening the workdir `{workdir}`"))?
        };
        let mut outputs = Vec::new();
        for o in &self.prepared.selected {
            match dir.symlink_metadata(o) {
                Ok(m) if m.is_symlink() => bail!(
                    "recipe {name}: output `{o}` is a symbolic link to {}; name the file it points to",
                    dir.read_link_contents(o)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default()
                ),
                Ok(m) if m.is_file() => {}
                Ok(_) => return Err(missing(o)?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing(o)?),
                Err(e) => bail!(
                    "recipe {name}: output `{o}` cannot be reached inside the build tree ({e}): \
                     a link the build made leads out of it"
                ),
            }
            let f = dir
                .open(o)
                .with_context(|| format!("recipe {name}: opening output `{o}`"))?
                .into_std();
            use std::os::unix::fs::PermissionsExt;
            let executable = f.metadata()?.permissions().mode() & 0o111 != 0;
            let stored = store
                .put_reader(std::io::BufReader::with_capacity(1 << 20, f))
                .with_context(|| format!("recipe {name}: storing output `{o}`"))?;
            outputs.push(Artifact {
                name: o.clone(),
                sha256: stored.digest,
                size: stored.size,
                executable,
            });
        }
        Ok(outputs)
    }
}

/// Expands a step's arguments; `{targets}` standing alone becomes one argument per target.
fn expand_args(
    run: &[String],
    lookup: impl Fn(&str) -> Option<String>,
    targets: &[&String],
) -> Result<Vec<String>> {
    let mut argv = Vec::new();
    for arg in run {
        if arg == "{targets}" {
            argv.extend(targets.iter().map(|t| (*t).clone()));
            continue;
        }
        argv.push(expand(arg, &lookup).map_err(anyhow::Error::msg)?);
    }
    Ok(argv)
}

/// A short human form of a duration: `12ms`, `3.4s`, `1m40s`.
pub fn elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
