//! One execution of an action: the source laid out in a fresh tree, each step run in the
//! toolchain with its output in the build log, the outputs stored.

use std::fs;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::key::KeyInputs;
use super::toolchain::Toolchain;
use super::{
    ActionEntry, Artifact, DEFAULT_STEP_TIMEOUT, Prepared, Provenance, SCHEMA, Settings, elapsed,
};
use crate::base::Named;
use crate::base::executor::{Retry, StepCommand};
use crate::base::process;
use crate::base::progress::say;
use crate::recipe::{Step, expand};
use crate::source;

/// One execution of an action.
pub(super) struct Run<'a> {
    pub settings: &'a Settings,
    pub prepared: &'a Prepared<'a>,
    pub toolchain: &'a Toolchain,
    /// The toolchain's squashfs to run on mounted, if not on its image.
    pub squashfs: Option<&'a Path>,
    pub key: &'a str,
    pub inputs: &'a KeyInputs,
    pub fetched: &'a source::Fetched,
}

/// Where a run works: a temporary directory with the tree, the embed folder and the log.
struct Workspace {
    /// Removed when the run ends, however it ends.
    _work: tempfile::TempDir,
    tree: PathBuf,
    embed_dir: Option<PathBuf>,
    /// Where a step mounts the toolchain's squashfs, in a mount namespace of its own.
    mount: PathBuf,
    log_path: PathBuf,
    log: fs::File,
    epoch: i64,
}

impl Run<'_> {
    /// Runs the steps in a fresh tree and stores outputs and log; returns the entry (not yet
    /// written) and the number of containers started.
    pub fn execute(&self) -> Result<(ActionEntry, u32)> {
        let start = Instant::now();
        let store = &self.settings.store;
        let mut ws = self.lay_out()?;
        let embed_blob = match &self.prepared.embed {
            Some(e) => Some(store.put_bytes(&e.bytes)?.digest),
            None => None,
        };
        let (commands, started) = self.run_steps(&mut ws)?;
        let outputs = self.collect_outputs(&ws.tree, &self.workdir(), &ws.log_path)?;
        let log = store.put_file(&ws.log_path)?.digest;
        let recipe = self.prepared.recipe;
        let executor = &self.settings.executor;
        let entry = ActionEntry {
            schema: SCHEMA,
            key: self.key.to_owned(),
            recipe: recipe.name.clone(),
            inputs: self.inputs.clone(),
            outputs,
            log,
            provenance: Provenance {
                recipe_file: recipe.path.display().to_string(),
                source: self.prepared.source.clone(),
                toolchain: self.toolchain.identity(),
                image: self.toolchain.image().map(str::to_owned),
                executor: executor.kind.name().into(),
                hermetic: executor.kind.is_container() || matches!(self.toolchain, Toolchain::None),
                commands,
                source_date_epoch: ws.epoch,
                embed: embed_blob,
                bootforge_version: env!("CARGO_PKG_VERSION").into(),
                duration_ms: start.elapsed().as_millis() as u64,
            },
        };
        Ok((entry, started))
    }

    fn workdir(&self) -> String {
        self.prepared
            .recipe
            .recipe
            .workdir
            .clone()
            .unwrap_or_default()
    }

    /// The source (with its patches) in a fresh tree, the embedded script beside it.
    fn lay_out(&self) -> Result<Workspace> {
        let store = &self.settings.store;
        let recipe = self.prepared.recipe;
        let name = &recipe.name;
        let work = store.temp_dir(&format!("build-{name}-"))?;
        let tree = work.path().join("src");
        fs::create_dir(&tree)?;
        say(&format!("[{name}] preparing source"));
        self.fetched
            .materialize(store, &tree, &self.prepared.patches)
            .with_context(|| format!("recipe {name}: laying out the source"))?;
        let epoch = recipe
            .recipe
            .epoch
            .or(self.fetched.epoch)
            .context("no SOURCE_DATE_EPOCH: set `epoch` in the recipe")?;
        // The embedded script and the trusted certificates: what the build reads beside
        // its tree (mounted read-only in a container).
        let trust = &self.prepared.trust;
        let embed_dir = if self.prepared.embed.is_some() || !trust.is_empty() {
            let dir = work.path().join("embed");
            fs::create_dir(&dir)?;
            if let Some(e) = &self.prepared.embed {
                fs::write(dir.join(&e.name), &e.bytes)?;
            }
            if !trust.is_empty() {
                fs::create_dir(dir.join("trust"))?;
                for (name, bytes) in trust {
                    fs::write(dir.join("trust").join(name), bytes)?;
                }
            }
            Some(dir)
        } else {
            None
        };
        let log_path = work.path().join("build.log");
        let mount = work.path().join("rootfs");
        fs::create_dir(&mount)?;
        Ok(Workspace {
            mount,
            log: fs::File::create(&log_path)?,
            log_path,
            tree,
            embed_dir,
            epoch,
            _work: work,
        })
    }

    /// Every step whose targets are selected, in order; returns the commands run and the
    /// containers started.
    fn run_steps(&self, ws: &mut Workspace) -> Result<(Vec<Vec<String>>, u32)> {
        let steps = &self.prepared.recipe.recipe.steps;
        let mut commands = Vec::new();
        let mut started = 0;
        for (i, step) in steps.iter().enumerate() {
            let targets: Vec<&String> = match step.selected_targets(&self.prepared.selected) {
                Some(t) if t.is_empty() => continue,
                Some(t) => t,
                None => self.prepared.selected.iter().collect(),
            };
            commands.push(self.run_step(ws, i, step, &targets)?);
            started += u32::from(self.settings.executor.kind.is_container());
        }
        Ok((commands, started))
    }

    /// Runs step `i` to its end or its timeout; a failure names the step and shows the log.
    fn run_step(
        &self,
        ws: &mut Workspace,
        i: usize,
        step: &Step,
        targets: &[&String],
    ) -> Result<Vec<String>> {
        let name = &self.prepared.recipe.name;
        let steps = self.prepared.recipe.recipe.steps.len();
        let executor = &self.settings.executor;
        let (src_view, embed_view) = executor.view_paths(&ws.tree, ws.embed_dir.as_deref());
        let argv = expand_args(
            &step.run,
            |var| match var {
                "jobs" => Some(self.settings.jobs.to_string()),
                "src" => Some(src_view.clone()),
                "embed" => embed_view
                    .as_ref()
                    .zip(self.prepared.embed.as_ref())
                    .map(|(dir, e)| format!("{dir}/{}", e.name)),
                // Comma-separated, as iPXE's TRUST= and CERT= take them; empty without any.
                "trust" => Some(
                    self.prepared
                        .trust
                        .iter()
                        .filter_map(|(n, _)| Some(format!("{}/trust/{n}", embed_view.as_ref()?)))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                v => self.prepared.vars.get(v).cloned(),
            },
            targets,
        )
        .with_context(|| format!("recipe {name}: step {}", i + 1))?;
        let progress = format!("[{name}] step {}/{steps} `{}`", i + 1, step.label());
        say(&progress);
        writeln!(ws.log, "$ {}", shell_words::join(&argv))?;
        let container = format!(
            "bootforge-{}-{}-{}",
            &self.key[..12],
            i + 1,
            std::process::id()
        );
        let env = [
            ("SOURCE_DATE_EPOCH".to_owned(), ws.epoch.to_string()),
            ("TZ".to_owned(), "UTC".to_owned()),
            ("LC_ALL".to_owned(), "C".to_owned()),
        ];
        let timeout = self
            .prepared
            .recipe
            .recipe
            .timeout
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_STEP_TIMEOUT);
        let step_start = Instant::now();
        let outcome = loop {
            let used = executor.run_args();
            let cmd = executor.command(&StepCommand {
                tree: &ws.tree,
                workdir: &self.workdir(),
                embed_dir: ws.embed_dir.as_deref(),
                image: self.toolchain.image(),
                argv: &argv,
                env: &env,
                name: &container,
                squashfs: self.squashfs.map(|sq| (sq, ws.mount.as_path())),
                stdin: false,
            });
            let before = ws.log.stream_position()?;
            let outcome = process::run_logged(cmd, timeout, &mut ws.log, &progress, || {
                executor.kill_container(&container)
            })?;
            // A container the engine would not start ran nothing, so the tree is as it was.
            if let process::Outcome::Exited(s) = &outcome
                && !s.success()
            {
                let retry = executor.learn(&used, &process::read_from(&ws.log_path, before))?;
                if retry != Retry::No {
                    // The log is an output: what this host's engine needed stays out of it,
                    // or the same build on another host would record other bytes.
                    ws.log.set_len(before)?;
                    ws.log.seek(std::io::SeekFrom::Start(before))?;
                    if let Retry::Learned(notice) = retry {
                        say(&notice);
                    }
                    continue;
                }
            }
            break outcome;
        };
        let failure = match outcome {
            process::Outcome::Exited(s) if s.success() => None,
            process::Outcome::Exited(s) => Some(format!("exited with {s}")),
            process::Outcome::TimedOut(t) => Some(format!(
                "ran longer than its timeout of {} and was killed with its whole process tree",
                elapsed(t)
            )),
        };
        if let Some(why) = failure {
            let store = &self.settings.store;
            let stored = store.put_file(&ws.log_path)?;
            bail!(
                "recipe {name}: step {}/{steps} `{}` {why}.\n--- last lines of the log ---\n{}\n--- full log: {} ---",
                i + 1,
                step.label(),
                process::tail(&ws.log_path, 25),
                store.blob_path(&stored.digest).display()
            );
        }
        say(&format!(
            "{progress} done in {}",
            elapsed(step_start.elapsed())
        ));
        Ok(argv)
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
                blob: Named {
                    name: o.clone(),
                    sha256: stored.digest,
                    size: stored.size,
                },
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
