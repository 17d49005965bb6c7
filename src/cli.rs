//! The command line: parses arguments into one validated command and calls the stages.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::build::executor::{Executor, ExecutorKind};
use crate::build::{self, BuildReport, Request, Settings, elapsed};
use crate::config::{self, ConfigFile};
use crate::fetch;
use crate::flash;
use crate::package;
use crate::publish;
use crate::publish::location::Location;
use crate::publish::progress::human_bytes;
use crate::publish::sign::{self, Signer};
use crate::recipe::toolchain::LoadedSpec;
use crate::recipe::{self, LoadedRecipe, Source};
use crate::source::Mirrors;
use crate::store::{Digest, Store};

/// Reproducible boot artifacts: pinned recipes, content-addressed store, hermetic builds.
#[derive(Debug, Parser)]
#[command(name = "bootforge", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// The local store [default: ./cache].
    #[arg(long, global = true, env = "BOOTFORGE_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    /// Where steps run: in a pinned container, or (non-hermetic) on the host [default: podman].
    #[arg(long, global = true, env = "BOOTFORGE_EXECUTOR", value_enum)]
    executor: Option<ExecutorKind>,
    /// Fetch source URLs starting with FROM from TO instead (a local git directory, a path, or
    /// another URL). Repeatable.
    #[arg(long, global = true, value_name = "FROM=TO", value_parser = config::parse_mirror)]
    mirror: Vec<(String, String)>,
    /// Directory holding the recipes [default: ./recipes].
    #[arg(
        long = "recipes",
        global = true,
        env = "BOOTFORGE_RECIPES",
        value_name = "DIR"
    )]
    recipes_dir: Option<PathBuf>,
    /// Config file [default: ./bootforge.yaml when present].
    #[arg(long, global = true, env = "BOOTFORGE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Value of `{jobs}` in steps [default: the number of CPUs].
    #[arg(long, short, global = true)]
    jobs: Option<usize>,
    /// Print machine-readable results on stdout (logs stay on stderr).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build recipes (independent ones in parallel), printing each output's name, sha256, size.
    Build {
        #[command(flatten)]
        sel: Selection,
        /// Rebuild ignoring the cache and fail if any output differs.
        #[arg(long)]
        check: bool,
        /// Also copy the outputs to DIR/<recipe>/<output>.
        #[arg(long, short, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Show action keys and whether each build is a cache hit, and why not; runs nothing.
    Plan {
        #[command(flatten)]
        sel: Selection,
    },
    /// Write a chainload script rendered from the recipe's template into its built binaries'
    /// placeholder: a new URL without a rebuild.
    Embed {
        /// Recipe name or path; it must have a `placeholder:` section.
        recipe: String,
        /// Template variable, e.g. chain_url=http://boot.example/boot.ipxe. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = config::parse_set)]
        sets: Vec<(String, String)>,
        /// Render this template instead of the recipe's.
        #[arg(long, value_name = "FILE")]
        template: Option<PathBuf>,
        /// Also copy the patched outputs to DIR/<recipe>/<output>.
        #[arg(long, short, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Assemble a medium from the profile's loaders (building and embedding as needed),
    /// store it with its manifest and print its sha256.
    Package {
        /// The medium to make.
        #[arg(long, value_enum)]
        target: package::Target,
        /// Media profile [default: <recipes>/media/default.yaml].
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        /// Template variable, e.g. chain_url=http://boot.example/boot.ipxe. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = config::parse_set)]
        sets: Vec<(String, String)>,
        /// Also copy the medium to DIR.
        #[arg(long, short, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Toolchain images.
    Toolchain {
        #[command(subcommand)]
        command: ToolchainCommand,
    },
    /// The local store.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Upload what the last builds and packages produced to a bucket and point a channel at
    /// it; or, with --manifest, point a channel at an existing manifest (promote).
    Publish {
        /// The bucket and prefix, s3://BUCKET[/PREFIX]. Credentials, region and endpoint come
        /// from the AWS chain (AWS_* environment, profiles, AWS_ENDPOINT_URL).
        #[arg(long, value_name = "S3_URL", value_parser = Location::parse)]
        to: Location,
        /// The channel to point at the release, e.g. nightly or stable.
        #[arg(long)]
        channel: String,
        /// Promote this manifest (sha256:<hex>, as `ls` shows) instead of publishing.
        #[arg(long, value_name = "DIGEST", value_parser = Digest::parse)]
        manifest: Option<Digest>,
        /// Sign the manifest and SHA256SUMS with this minisign secret key.
        #[arg(long, env = "BOOTFORGE_SIGN_KEY", value_name = "KEY")]
        sign: Option<PathBuf>,
        /// Base URL anonymous readers reach the prefix at (for os_list.json) [default: derived
        /// from the endpoint].
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
        /// Requests in flight at once (blobs and multipart parts).
        #[arg(long, default_value_t = 8, value_name = "N")]
        parallel: usize,
    },
    /// Download an artifact (by name, package target, or sha256:<hex>), verified, resumable.
    Fetch {
        /// An artifact name (bootforge.iso, ipxe/ipxe.efi), a package target (rpi-img) or
        /// sha256:<hex>.
        what: String,
        /// s3://BUCKET[/PREFIX] or https://HOST[/PATH].
        #[arg(long, value_name = "URL", value_parser = Location::parse)]
        from: Location,
        /// The channel to look the name up in.
        #[arg(long)]
        channel: Option<String>,
        /// Where to write it [default: the artifact's file name, here].
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Check the manifest's (or SHA256SUMS's) minisign signature with this public key.
        #[arg(long, value_name = "PUB")]
        verify_key: Option<PathBuf>,
    },
    /// List a published store's channels, manifests and blobs with sizes and dates.
    Ls {
        /// s3://BUCKET[/PREFIX] or https://HOST[/PATH] (HTTPS shows channels only).
        #[arg(long, value_name = "URL", value_parser = Location::parse)]
        from: Location,
    },
    /// Make a minisign key pair for signing publishes: BASE.key (secret) and BASE.pub.
    Keygen {
        /// Path without extension.
        #[arg(long, default_value = "bootforge", value_name = "BASE")]
        out: PathBuf,
    },
    /// Write an image to a USB stick or SD card (or a file), sync, read back and compare.
    Flash {
        /// The image file to write.
        image: PathBuf,
        /// The block device (e.g. /dev/sdX) or file to write to.
        #[arg(long, value_name = "PATH")]
        device: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
struct Selection {
    /// Recipe names (recipes/NAME.yaml) or paths to recipe files.
    #[arg(required = true, value_name = "RECIPE")]
    recipes: Vec<String>,
    /// Build only these outputs. Repeatable.
    #[arg(long = "target", value_name = "OUTPUT")]
    targets: Vec<String>,
    /// Use this file as the embedded script (`{embed}`) instead of the recipe's.
    #[arg(long, value_name = "FILE")]
    embed: Option<PathBuf>,
    /// Set a recipe variable. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = config::parse_set)]
    sets: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
enum ToolchainCommand {
    /// Build the image for recipes/toolchains/NAME.yaml (debootstrap; needs root and a mirror).
    Build {
        /// Spec name, or a path to a spec file.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Add files to the store (sources for air-gapped machines) and print their sha256.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List blobs with sizes and what refers to them.
    Ls,
    /// Re-hash every blob and check every reference; non-zero exit if anything is wrong.
    Verify,
    /// Remove blobs nothing refers to (recipe pins in the recipes directory count).
    Gc,
}

/// Everything resolved from flags, environment and config file.
struct Ctx {
    settings: Settings,
    recipes_dir: PathBuf,
    json: bool,
}

impl Ctx {
    fn new(g: &Global) -> Result<Ctx> {
        let file = ConfigFile::load(g.config.as_deref())?;
        let store_dir = g
            .store
            .clone()
            .or(file.store.clone())
            .unwrap_or_else(|| PathBuf::from("cache"));
        let mut mirrors: Vec<(String, String)> = file.mirrors.clone().into_iter().collect();
        mirrors.extend(g.mirror.iter().cloned());
        let executor = Executor {
            kind: g.executor.or(file.executor).unwrap_or(ExecutorKind::Podman),
            run_args: config::container_args(&file)?,
        };
        let jobs = g.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        Ok(Ctx {
            settings: Settings {
                store: Store::open(&store_dir)?,
                executor,
                mirrors: Mirrors::new(mirrors),
                jobs,
            },
            recipes_dir: g
                .recipes_dir
                .clone()
                .or(file.recipes.clone())
                .unwrap_or_else(|| PathBuf::from("recipes")),
            json: g.json,
        })
    }

    fn print<T: Serialize>(&self, value: &T, human: impl FnOnce()) -> Result<()> {
        Out { json: self.json }.print(value, human)
    }
}

/// How results are printed; all that the commands without a store (fetch, ls, keygen,
/// flash) need, so they never create `./cache` in a stranger's directory.
#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn print<T: Serialize>(self, value: &T, human: impl FnOnce()) -> Result<()> {
        // Network commands ignore SIGPIPE while they talk to servers (see `run`); their
        // output, like every command's, must end quietly in `| head`.
        // SAFETY: setting a signal disposition; no handler runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            human();
        }
        Ok(())
    }
}

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

fn run(cli: Cli) -> Result<ExitCode> {
    let out = Out {
        json: cli.global.json,
    };
    if matches!(
        cli.command,
        Command::Publish { .. } | Command::Fetch { .. } | Command::Ls { .. }
    ) {
        // main() restores SIGPIPE's default for `| head`; but a server that resets a
        // connection mid-upload must give an error to retry, not kill the process.
        // SAFETY: setting a signal disposition; no handler runs.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    match cli.command {
        Command::Fetch {
            what,
            from,
            channel,
            out: dest,
            verify_key,
        } => cmd_fetch(
            out,
            &fetch::Request {
                what: &what,
                from: &from,
                channel: channel.as_deref(),
                out: dest.as_deref(),
                verify_key: verify_key.as_deref(),
            },
        ),
        Command::Ls { from } => cmd_remote_ls(out, &from),
        Command::Keygen { out: base } => cmd_keygen(out, &base),
        Command::Flash { image, device, yes } => cmd_flash(out, &image, &device, yes),
        command => {
            let ctx = Ctx::new(&cli.global)?;
            run_with_store(&ctx, command)
        }
    }
}

fn run_with_store(ctx: &Ctx, command: Command) -> Result<ExitCode> {
    match command {
        Command::Build { sel, check, out } => cmd_build(ctx, &sel, check, out.as_deref()),
        Command::Plan { sel } => cmd_plan(ctx, &sel),
        Command::Package {
            target,
            profile,
            sets,
            out,
        } => cmd_package(ctx, target, profile.as_deref(), &sets, out.as_deref()),
        Command::Embed {
            recipe,
            sets,
            template,
            out,
        } => cmd_embed(ctx, &recipe, &sets, template.as_deref(), out.as_deref()),
        Command::Toolchain {
            command: ToolchainCommand::Build { name },
        } => cmd_toolchain_build(ctx, &name),
        Command::Cache { command } => match command {
            CacheCommand::Import { files } => cmd_import(ctx, &files),
            CacheCommand::Ls => cmd_ls(ctx),
            CacheCommand::Verify => cmd_verify(ctx),
            CacheCommand::Gc => cmd_gc(ctx),
        },
        Command::Publish {
            to,
            channel,
            manifest,
            sign,
            public_url,
            parallel,
        } => {
            let signer = sign.as_deref().map(Signer::load).transpose()?;
            cmd_publish(
                ctx,
                &publish::Request {
                    to: &to,
                    channel: &channel,
                    manifest,
                    signer: signer.as_ref(),
                    public_url,
                    parallel,
                },
            )
        }
        Command::Fetch { .. }
        | Command::Ls { .. }
        | Command::Keygen { .. }
        | Command::Flash { .. } => {
            unreachable!("handled before the store is opened")
        }
    }
}

fn load_selection(ctx: &Ctx, sel: &Selection, check: bool) -> Result<(Vec<LoadedRecipe>, Request)> {
    let per_recipe = !sel.targets.is_empty() || sel.embed.is_some() || !sel.sets.is_empty();
    if per_recipe && sel.recipes.len() > 1 {
        bail!("--target, --embed and --set apply to one recipe at a time; name a single recipe");
    }
    let recipes = sel
        .recipes
        .iter()
        .map(|r| LoadedRecipe::find(&ctx.recipes_dir, r))
        .collect::<Result<Vec<_>>>()?;
    let req = Request {
        targets: sel.targets.clone(),
        embed: sel.embed.clone(),
        sets: sel.sets.clone(),
        check,
    };
    Ok((recipes, req))
}

fn cmd_build(ctx: &Ctx, sel: &Selection, check: bool, out: Option<&Path>) -> Result<ExitCode> {
    let (recipes, req) = load_selection(ctx, sel, check)?;
    // Recipes are independent: each gets its own thread, results are reported in order.
    let results: Vec<Result<BuildReport>> = std::thread::scope(|s| {
        let handles: Vec<_> = recipes
            .iter()
            .map(|r| s.spawn(|| build::build(&ctx.settings, r, &req)))
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
    if let Some(dir) = out {
        for r in &reports {
            for o in &r.outputs {
                let dest = dir.join(&r.recipe).join(&o.name);
                ctx.settings
                    .store
                    .export_blob(&o.sha256, &dest, Some(o.mode()))?;
            }
        }
    }
    ctx.print(&serde_json::json!({ "builds": reports }), || {
        for r in &reports {
            let how = if r.cached {
                "cached".to_owned()
            } else {
                format!(
                    "built in {}",
                    elapsed(std::time::Duration::from_millis(r.duration_ms))
                )
            };
            let check = r
                .checked_against
                .as_ref()
                .map(|a| format!(", reproducible: identical to {a}"))
                .unwrap_or_default();
            println!(
                "{} ({how}{check}; action {})",
                r.recipe,
                &r.action_key[..16]
            );
            for o in &r.outputs {
                println!("  {:<40} {}  {} bytes", o.name, o.sha256, o.size);
            }
        }
    })?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn cmd_plan(ctx: &Ctx, sel: &Selection) -> Result<ExitCode> {
    let (recipes, req) = load_selection(ctx, sel, false)?;
    let plans = recipes
        .iter()
        .map(|r| build::plan(&ctx.settings, r, &req))
        .collect::<Result<Vec<_>>>()?;
    ctx.print(&serde_json::json!({ "plans": plans }), || {
        for p in &plans {
            let key = p
                .action_key
                .as_deref()
                .unwrap_or("(unknown until the toolchain is built)");
            let state = if p.cached { "hit" } else { "miss" };
            println!("{}: {state}, action {key}", p.recipe);
            for reason in &p.reasons {
                println!("  {reason}");
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_embed(
    ctx: &Ctx,
    recipe: &str,
    sets: &[(String, String)],
    template: Option<&Path>,
    out: Option<&Path>,
) -> Result<ExitCode> {
    let recipe = LoadedRecipe::find(&ctx.recipes_dir, recipe)?;
    let vars = sets.iter().cloned().collect();
    let report = package::embed(&ctx.settings, &recipe, template, &vars)?;
    if let Some(dir) = out {
        for o in &report.outputs {
            let dest = dir.join(&report.recipe).join(&o.name);
            let mode = if o.executable { 0o755 } else { 0o644 };
            ctx.settings
                .store
                .export_blob(&o.sha256, &dest, Some(mode))?;
        }
    }
    ctx.print(&report, || {
        println!(
            "{}: script {} ({} of {} bytes){}",
            report.recipe,
            report.script,
            report.script_size,
            report.capacity,
            if report.cached { ", cached" } else { "" }
        );
        for o in &report.outputs {
            let how = if o.patched { "patched" } else { "unchanged" };
            println!("  {:<40} {}  {} bytes  {how}", o.name, o.sha256, o.size);
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_package(
    ctx: &Ctx,
    target: package::Target,
    profile: Option<&Path>,
    sets: &[(String, String)],
    out: Option<&Path>,
) -> Result<ExitCode> {
    let path = profile
        .map(Path::to_owned)
        .unwrap_or_else(|| ctx.recipes_dir.join(package::profile::DEFAULT_PROFILE));
    let profile = package::profile::LoadedProfile::load(&path)?;
    let report = package::package(&ctx.settings, &ctx.recipes_dir, &profile, target, sets)?;
    if let Some(dir) = out {
        ctx.settings
            .store
            .export_blob(&report.sha256, &dir.join(&report.name), Some(0o644))?;
    }
    ctx.print(&report, || {
        println!(
            "{} {}  {} bytes{} (manifest {})",
            report.name,
            report.sha256,
            report.size,
            if report.cached { ", cached" } else { "" },
            report.manifest
        );
        for c in &report.contents {
            println!("  {:<24} {}  {} bytes", c.path, c.sha256, c.size);
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_toolchain_build(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    let path = if name.ends_with(".yaml") {
        PathBuf::from(name)
    } else {
        ctx.recipes_dir
            .join("toolchains")
            .join(format!("{name}.yaml"))
    };
    let spec = LoadedSpec::load(&path)?;
    let _lock = ctx.settings.store.lock_shared()?;
    let record = build::toolchain::build(&spec, &ctx.settings.store, &ctx.settings.executor)?;
    ctx.print(&record, || {
        println!(
            "{}: image {} from rootfs {} ({} bytes, {} packages, recorded in {})",
            record.name,
            record.image,
            record.rootfs,
            record.size,
            record.packages.len(),
            spec.lock_path().display()
        );
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_import(ctx: &Ctx, files: &[PathBuf]) -> Result<ExitCode> {
    #[derive(Serialize)]
    struct Imported {
        file: String,
        sha256: Digest,
        size: u64,
    }
    let _lock = ctx.settings.store.lock_shared()?;
    let mut out = Vec::new();
    for f in files {
        let stored = ctx.settings.store.put_file(f)?;
        out.push(Imported {
            file: f.display().to_string(),
            sha256: stored.digest,
            size: stored.size,
        });
    }
    ctx.print(&out, || {
        for i in &out {
            println!("{}  {}", i.sha256, i.file);
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_ls(ctx: &Ctx) -> Result<ExitCode> {
    let blobs = ctx.settings.store.list_blobs()?;
    ctx.print(&blobs, || {
        for b in &blobs {
            let refs = if b.referenced_by.is_empty() {
                "(unreferenced)".to_owned()
            } else {
                b.referenced_by.join(", ")
            };
            println!("{}  {:>12}  {refs}", b.digest, b.size);
        }
        let total: u64 = blobs.iter().map(|b| b.size).sum();
        println!("{} blobs, {total} bytes", blobs.len());
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_verify(ctx: &Ctx) -> Result<ExitCode> {
    let report = ctx.settings.store.verify()?;
    ctx.print(&report, || {
        for c in &report.corrupt {
            println!("corrupt: {c}");
        }
        for d in &report.broken_documents {
            println!("broken: {d}");
        }
        println!(
            "{} blobs ({} bytes) checked: {}",
            report.blobs_checked,
            report.bytes_checked,
            if report.is_ok() {
                "ok"
            } else {
                "PROBLEMS FOUND"
            }
        );
    })?;
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cmd_gc(ctx: &Ctx) -> Result<ExitCode> {
    let mut roots = BTreeSet::new();
    if ctx.recipes_dir.is_dir() {
        for name in recipe::list_recipes(&ctx.recipes_dir)? {
            let path = ctx.recipes_dir.join(format!("{name}.yaml"));
            let r = LoadedRecipe::load(&path)
                .with_context(|| format!("reading {} for its pins", path.display()))?;
            if let Source::Url { sha256, .. } = r.recipe.source {
                roots.insert(sha256);
            }
        }
    }
    let report = ctx.settings.store.gc(&roots)?;
    ctx.print(&report, || {
        println!(
            "removed {} blobs ({} bytes) and {} temporary entries; kept {} blobs",
            report.blobs_removed,
            report.bytes_removed,
            report.temp_entries_removed,
            report.blobs_kept
        );
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_publish(ctx: &Ctx, req: &publish::Request) -> Result<ExitCode> {
    let r = publish::publish(&ctx.settings.store, req)?;
    ctx.print(&r, || {
        println!(
            "{} → {}/{} (manifest {}){}",
            r.channel,
            r.to,
            publish::release::keys::manifest(&r.manifest),
            r.manifest,
            match (r.channel_changed, r.previous) {
                (false, _) => ", unchanged".to_owned(),
                (true, Some(p)) => format!(", was {}", p.short(12)),
                (true, None) => ", new channel".to_owned(),
            }
        );
        for a in &r.artifacts {
            println!("  {:<40} {}  {} bytes", a.name, a.sha256, a.size);
        }
        println!(
            "uploaded {} objects ({}), {} already there ({}); {} multipart parts; {}",
            r.uploaded.objects,
            human_bytes(r.uploaded.bytes),
            r.skipped.objects,
            human_bytes(r.skipped.bytes),
            r.multipart_parts,
            elapsed(std::time::Duration::from_millis(r.duration_ms))
        );
        println!("public URL: {}/index.json", r.public_url);
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_fetch(out: Out, req: &fetch::Request) -> Result<ExitCode> {
    let r = fetch::fetch(req)?;
    out.print(&r, || {
        let how = if r.up_to_date {
            "already up to date".to_owned()
        } else if r.resumed_from > 0 {
            format!("resumed at byte {}", r.resumed_from)
        } else {
            "downloaded".to_owned()
        };
        let signed = if r.signature_verified {
            ", signature good"
        } else {
            ""
        };
        println!(
            "{}  {} ({} bytes, {how}, sha256 verified{signed})",
            r.sha256,
            r.path.display(),
            r.size
        );
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_remote_ls(out: Out, from: &Location) -> Result<ExitCode> {
    let l = fetch::ls(from)?;
    out.print(&l, || {
        println!("{}", l.location);
        if l.channels.is_empty() {
            println!("no channels");
        }
        for c in &l.channels {
            println!(
                "channel {} → {} (updated {})",
                c.name, c.manifest, c.updated
            );
            for a in &c.artifacts {
                println!("  {:<40} {}  {:>10}", a.name, a.sha256, human_bytes(a.size));
            }
        }
        let rows = |title: &str, items: &Option<Vec<fetch::ObjectListing>>| {
            if let Some(items) = items {
                let total: u64 = items.iter().map(|o| o.size).sum();
                println!("{title}: {} ({})", items.len(), human_bytes(total));
                for o in items {
                    println!(
                        "  {}  {:>10}  {}  {}",
                        o.sha256,
                        human_bytes(o.size),
                        o.modified.as_deref().unwrap_or("-"),
                        o.used_by.join(", ")
                    );
                }
            }
        };
        rows("manifests", &l.manifests);
        rows("blobs", &l.blobs);
    })?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_keygen(out: Out, base: &Path) -> Result<ExitCode> {
    let (key, public, pk) = sign::keygen(base)?;
    out.print(
        &serde_json::json!({ "secret_key": key, "public_key": public, "public_key_base64": pk }),
        || {
            println!("secret key: {} (keep it secret; mode 0600)", key.display());
            println!("public key: {}", public.display());
            println!("verify with: minisign -Vm SHA256SUMS -P {pk}");
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn cmd_flash(out: Out, image: &Path, device: &Path, yes: bool) -> Result<ExitCode> {
    let report = flash::flash(image, device, yes)?;
    out.print(&report, || {
        println!(
            "wrote {} bytes to {}; read back and verified: {}",
            report.bytes,
            report.device.display(),
            report.sha256
        );
    })?;
    Ok(ExitCode::SUCCESS)
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
