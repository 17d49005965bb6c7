//! The command line: parses arguments ([`args`]), resolves the configuration once
//! ([`crate::config`]), calls one stage, and prints its typed report ([`render`] for people,
//! serde for `--json`). Nothing here does a stage's work.

pub mod args;
mod docs;
mod render;

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Parser;
use serde::Serialize;

use crate::base::sign::{self, Signer, Verifier};
use crate::build::{self, Request, Settings};
use crate::config::{Config, ConfigFile, Flags};
use crate::doctor;
use crate::fetch;
use crate::flash;
use crate::package;
use crate::publish;
use crate::recipe::toolchain::LoadedSpec;
use crate::recipe::{self, LoadedRecipe};
use crate::store::{self, Access, Location, Shared, Store};
pub use args::Cli;
use args::{CacheCommand, Command, Global, Selection, ToolchainCommand};

/// Parses the command line, runs it and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How results are printed.
#[derive(Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    /// Prints `json` with serde or `human` with `render`. A reader that went away (`| head`)
    /// is not an error: the command did its work.
    fn show<J: Serialize, H>(
        self,
        json: &J,
        human: &H,
        render: fn(&mut dyn Write, &H) -> io::Result<()>,
    ) -> Result<()> {
        let mut out = io::stdout().lock();
        let written = if self.json {
            serde_json::to_writer_pretty(&mut out, json)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(out))
        } else {
            render(&mut out, human)
        };
        match written.and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }

    fn report<T: Serialize>(
        self,
        value: &T,
        render: fn(&mut dyn Write, &T) -> io::Result<()>,
    ) -> Result<()> {
        self.show(value, value, render)
    }
}

fn config(g: &Global, parallel: Option<usize>) -> Result<Config> {
    let flags = Flags {
        store: g.store.clone(),
        executor: g.executor,
        mirrors: g.mirror.clone(),
        recipes: g.recipes_dir.clone(),
        jobs: g.jobs,
        parallel,
        shared: g.remote.clone(),
        no_build: g.no_build,
    };
    let file = ConfigFile::load(g.config.as_deref())?;
    Config::resolve(&flags, |k| std::env::var(k).ok(), &file)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let out = Output {
        json: cli.global.json,
    };
    crate::base::progress::set_plain(cli.global.json);
    // These describe the CLI itself: no configuration is read, nothing is opened.
    match &cli.command {
        Command::Completions { shell } => {
            docs::completions(*shell, &mut io::stdout().lock());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { out: None } => {
            docs::man_page(&mut io::stdout().lock())?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { out: Some(dir) } => {
            let pages = docs::man_pages(dir)?;
            out.report(&pages, render::man_pages)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let parallel = match &cli.command {
        Command::Publish { parallel, .. } => Some(*parallel),
        _ => None,
    };
    let config = config(&cli.global, parallel)?;
    let keys = Keys {
        sign: cli.global.sign.clone(),
        verify: cli.global.remote_verify_key.clone(),
        read_only: cli.global.remote_read_only,
        optional: cli.global.remote_optional,
    };
    // These open no local store, so they never create `./cache` in a stranger's directory.
    match cli.command {
        Command::Fetch {
            what,
            from,
            channel,
            out: dest,
            verify_key,
        } => {
            let from = store::open(&from, &config.remote, Access::Read)?;
            let req = fetch::Request {
                what: &what,
                channel: channel.as_deref(),
                out: dest.as_deref(),
                verify_key: verify_key.as_deref(),
            };
            out.report(&fetch::fetch(from.as_ref(), &req)?, render::fetch)?;
        }
        Command::Ls { from } => {
            let from = store::open(&from, &config.remote, Access::Read)?;
            out.report(&fetch::ls(from.as_ref())?, render::listing)?;
        }
        Command::Keygen {
            out: base,
            secure_boot: None,
        } => {
            let pair = sign::keygen(&base, config.key_password.as_deref())?;
            out.report(&pair, render::keygen)?;
        }
        Command::Flash { image, device, yes } => {
            out.report(&flash::flash(&image, &device, yes)?, render::flash)?;
        }
        Command::Doctor => {
            let report = doctor::doctor(&config);
            out.report(&report, render::doctor)?;
            if !report.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        command => return with_store(out, &config, &keys, command),
    }
    Ok(ExitCode::SUCCESS)
}

/// The shared-store and signing flags.
struct Keys {
    sign: Option<std::path::PathBuf>,
    verify: Option<std::path::PathBuf>,
    read_only: bool,
    optional: bool,
}

/// The shared store, opened and checked reachable; an optional one that is not is left out
/// with a warning.
fn open_shared(config: &Config, keys: &Keys) -> Result<Option<Arc<Shared>>> {
    let Some(location) = &config.shared else {
        return Ok(None);
    };
    let access = if keys.read_only {
        Access::Read
    } else {
        Access::Write
    };
    let remote = match store::open(location, &config.remote, access) {
        Ok(r) => r,
        Err(e) if keys.optional => {
            eprintln!(
                "warning: the shared store {location} cannot be reached ({e:#}); building with \
                 this machine's store only (--remote-optional)"
            );
            return Ok(None);
        }
        Err(e) => return Err(e.context(format!("the shared store {location}"))),
    };
    let signer = keys
        .sign
        .as_deref()
        .map(|k| Signer::load(k, config.key_password.as_deref()))
        .transpose()?;
    let verifier = keys.verify.as_deref().map(Verifier::load).transpose()?;
    Ok(Some(Arc::new(Shared::new(
        remote,
        keys.read_only,
        keys.optional,
        signer,
        verifier,
    ))))
}

fn with_store(out: Output, config: &Config, keys: &Keys, command: Command) -> Result<ExitCode> {
    let settings = Settings {
        store: Store::open(&config.store)?,
        executor: config.executor.clone(),
        mirrors: config.mirrors.clone(),
        jobs: config.jobs,
        debian_mirror: config.debian_mirror.clone(),
        shared: open_shared(config, keys)?,
        no_build: config.no_build,
    };
    let recipes = config.recipes.as_path();
    match command {
        Command::Build {
            sel,
            check,
            out: dir,
        } => {
            return cmd_build(out, &settings, recipes, &sel, check, dir.as_deref());
        }
        Command::Plan { sel } => {
            let (list, req) = selection(recipes, &sel, false)?;
            let plans = list
                .iter()
                .map(|r| build::plan(&settings, r, &req))
                .collect::<Result<Vec<_>>>()?;
            out.show(
                &serde_json::json!({ "plans": plans }),
                &plans,
                render::plans,
            )?;
        }
        Command::Embed {
            recipe,
            sets,
            template,
            out: dir,
        } => {
            let recipe = LoadedRecipe::find(recipes, &recipe)?;
            let vars = sets.into_iter().collect();
            let report = package::embed(&settings, &recipe, template.as_deref(), &vars)?;
            if let Some(dir) = dir {
                package::export_embedded(&settings.store, &report, &dir)?;
            }
            out.report(&report, render::embed)?;
        }
        Command::Package {
            target,
            profile,
            sets,
            out: dir,
        } => {
            let path = profile.unwrap_or_else(|| recipes.join(package::profile::DEFAULT_PROFILE));
            let profile = package::profile::LoadedProfile::load(&path)?;
            let report = package::package(&settings, recipes, &profile, target, &sets)?;
            if let Some(dir) = dir {
                settings
                    .store
                    .export_blob(&report.sha256, &dir.join(&report.name), Some(0o644))?;
            }
            out.report(&report, render::package)?;
        }
        Command::Toolchain {
            command: ToolchainCommand::Build { name },
        } => {
            let spec = LoadedSpec::load(&spec_path(recipes, &name))?;
            let built = build::toolchain::build_spec(&spec, &settings)?;
            out.show(&built.record, &built, render::toolchain)?;
        }
        Command::Toolchain {
            command: ToolchainCommand::Pull { name },
        } => {
            let spec = LoadedSpec::load(&spec_path(recipes, &name))?;
            let record = build::toolchain::pull(&spec, &settings)?;
            out.show(&record, &record, render::toolchain_record)?;
        }
        Command::Keygen {
            secure_boot: Some(name),
            ..
        } => {
            let keys = package::sign::keygen(&settings, recipes, &name)?;
            out.report(&keys, render::secure_boot_keys)?;
        }
        Command::Cache { command } => return cache(out, &settings.store, recipes, command),
        publish @ Command::Publish { .. } => {
            cmd_publish(out, &settings, config, keys.sign.as_deref(), publish)?
        }
        Command::Fetch { .. }
        | Command::Ls { .. }
        | Command::Keygen {
            secure_boot: None, ..
        }
        | Command::Flash { .. }
        | Command::Doctor
        | Command::Completions { .. }
        | Command::Man { .. } => {
            unreachable!("run() handles the commands without a store")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_build(
    out: Output,
    settings: &Settings,
    recipes: &Path,
    sel: &Selection,
    check: bool,
    dir: Option<&Path>,
) -> Result<ExitCode> {
    let (list, req) = selection(recipes, sel, check)?;
    let (reports, failed) = build::build_all(settings, &list, &req);
    if let Some(dir) = dir {
        build::export(&settings.store, &reports, dir)?;
    }
    out.show(
        &serde_json::json!({ "builds": reports }),
        &reports,
        render::builds,
    )?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_publish(
    out: Output,
    settings: &Settings,
    config: &Config,
    sign: Option<&Path>,
    command: Command,
) -> Result<()> {
    let Command::Publish {
        to,
        channel,
        manifest,
        public_url,
        parallel,
    } = command
    else {
        unreachable!("called for publish only")
    };
    let signer = sign
        .map(|k| Signer::load(k, config.key_password.as_deref()))
        .transpose()?;
    let to = open_for_publish(&to, config)?;
    let req = publish::Request {
        channel: &channel,
        manifest,
        signer: signer.as_ref(),
        public_url,
        parallel,
    };
    out.report(
        &publish::publish(&settings.store, to.as_ref(), &req)?,
        render::publish,
    )
}

/// The store a publish writes to; refused up front when it is read-only.
fn open_for_publish(to: &Location, config: &Config) -> Result<Box<dyn store::Storage>> {
    if let Location::Https { .. } = to {
        bail!(
            "cannot publish to {to}: HTTPS locations are read-only; publish to \
             s3://BUCKET/PREFIX or a directory"
        );
    }
    store::open(to, &config.remote, Access::Write)
}

fn cache(out: Output, store: &Store, recipes: &Path, command: CacheCommand) -> Result<ExitCode> {
    match command {
        CacheCommand::Import { files } => out.report(&store.import(&files)?, render::imported)?,
        CacheCommand::Ls => out.report(&store.list_blobs()?, render::blobs)?,
        CacheCommand::Verify => {
            let report = store.verify()?;
            out.report(&report, render::verify)?;
            if !report.is_ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
        CacheCommand::Gc => {
            let roots = recipe::pinned_sources(recipes)?;
            out.report(&store.gc(&roots)?, render::gc)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn spec_path(recipes: &Path, name: &str) -> std::path::PathBuf {
    if name.ends_with(".yaml") {
        name.into()
    } else {
        recipes.join("toolchains").join(format!("{name}.yaml"))
    }
}

fn selection(recipes: &Path, sel: &Selection, check: bool) -> Result<(Vec<LoadedRecipe>, Request)> {
    let per_recipe = !sel.targets.is_empty() || sel.embed.is_some() || !sel.sets.is_empty();
    if per_recipe && (sel.all || sel.recipes.len() > 1) {
        bail!("--target, --embed and --set apply to one recipe at a time; name a single recipe");
    }
    let names = if sel.all {
        recipe::list_recipes(recipes)?
    } else {
        sel.recipes.clone()
    };
    let names = match sel.shard {
        Some(shard) => recipe::shard(names, shard),
        None => names,
    };
    let list = names
        .iter()
        .map(|r| LoadedRecipe::find(recipes, r))
        .collect::<Result<Vec<_>>>()?;
    let req = Request {
        targets: sel.targets.clone(),
        embed: sel.embed.clone(),
        sets: sel.sets.clone(),
        check,
    };
    Ok((list, req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
