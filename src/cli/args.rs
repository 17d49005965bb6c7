//! The command line's arguments: clap types only, turned into a [`crate::config::Config`]
//! and one stage call by `cli`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::base::Digest;
use crate::base::executor::ExecutorKind;
use crate::config;
use crate::package;
use crate::store::Location;

/// Reproducible boot artifacts: pinned recipes, content-addressed store, hermetic builds.
#[derive(Debug, Parser)]
#[command(name = "bootforge", version, about, after_help = CLI_EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The local store [default: ./cache].
    #[arg(long, global = true, env = "BOOTFORGE_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Where steps run: in a pinned container, or (non-hermetic) on the host [default: podman].
    #[arg(long, global = true, env = "BOOTFORGE_EXECUTOR", value_enum)]
    pub executor: Option<ExecutorKind>,
    /// Fetch source URLs starting with FROM from TO instead (a local git directory, a path, or
    /// another URL). Repeatable.
    #[arg(long, global = true, value_name = "FROM=TO", value_parser = config::parse_mirror)]
    pub mirror: Vec<(String, String)>,
    /// Directory holding the recipes [default: ./recipes].
    #[arg(
        long = "recipes",
        global = true,
        env = "BOOTFORGE_RECIPES",
        value_name = "DIR"
    )]
    pub recipes_dir: Option<PathBuf>,
    /// Config file [default: ./bootforge.yaml when present].
    #[arg(long, global = true, env = "BOOTFORGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Value of `{jobs}` in steps [default: the number of CPUs].
    #[arg(long, short, global = true)]
    pub jobs: Option<usize>,
    /// Print machine-readable results on stdout (logs stay on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// A store other machines share (s3://BUCKET/PREFIX, https://HOST/PATH or a directory):
    /// looked in after the local store, and what is built here is pushed to it.
    #[arg(long, global = true, env = "BOOTFORGE_REMOTE", value_name = "URL", value_parser = Location::parse)]
    pub remote: Option<Location>,
    /// Take from the shared store, never push to it (always so for https://).
    #[arg(long, global = true)]
    pub remote_read_only: bool,
    /// When the shared store cannot be reached, carry on with this machine's store (with a
    /// warning) instead of failing.
    #[arg(long, global = true)]
    pub remote_optional: bool,
    /// Use only shared action entries signed with this minisign public key; treat others
    /// as misses.
    #[arg(long, global = true, value_name = "PUB")]
    pub remote_verify_key: Option<PathBuf>,
    /// Run nothing here (no toolchain, build step or repack): take every result from this
    /// machine's store or the shared one, and fail naming what neither holds. For packagers.
    #[arg(long, global = true)]
    pub no_build: bool,
    /// Sign with this minisign secret key: action entries pushed to the shared store, and a
    /// publish's manifest and SHA256SUMS.
    #[arg(long, global = true, env = "BOOTFORGE_SIGN_KEY", value_name = "KEY")]
    pub sign: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build recipes (independent ones in parallel), printing each output's name, sha256, size.
    #[command(after_help = BUILD_EXAMPLES)]
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
    #[command(after_help = PLAN_EXAMPLES)]
    Plan {
        #[command(flatten)]
        sel: Selection,
    },
    /// Write a chainload script rendered from the recipe's template into its built binaries'
    /// placeholder: a new URL without a rebuild.
    #[command(after_help = EMBED_EXAMPLES)]
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
    #[command(after_help = PACKAGE_EXAMPLES)]
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
    #[command(after_help = TOOLCHAIN_EXAMPLES)]
    Toolchain {
        #[command(subcommand)]
        command: ToolchainCommand,
    },
    /// The local store.
    #[command(after_help = CACHE_EXAMPLES)]
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Upload what the last builds and packages produced to a bucket and point a channel at
    /// it; or, with --manifest, point a channel at an existing manifest (promote).
    #[command(after_help = PUBLISH_EXAMPLES)]
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
        /// Base URL anonymous readers reach the prefix at (for os_list.json) [default: derived
        /// from the endpoint].
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
        /// Requests in flight at once (blobs and multipart parts).
        #[arg(long, default_value_t = 8, value_name = "N")]
        parallel: usize,
    },
    /// Download an artifact (by name, package target, or sha256:<hex>), verified, resumable.
    #[command(after_help = FETCH_EXAMPLES)]
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
    #[command(after_help = LS_EXAMPLES)]
    Ls {
        /// s3://BUCKET[/PREFIX] or https://HOST[/PATH] (HTTPS shows channels only).
        #[arg(long, value_name = "URL", value_parser = Location::parse)]
        from: Location,
    },
    /// Make a minisign key pair for signing publishes (BASE.key, secret, and BASE.pub), or
    /// with --secure-boot NAME a Secure Boot db key and what enrols it.
    #[command(after_help = KEYGEN_EXAMPLES)]
    Keygen {
        /// Path without extension.
        #[arg(long, default_value = "bootforge", value_name = "BASE")]
        out: PathBuf,
        /// Make NAME-db.key (0600), NAME-db.crt, NAME-db.esl and NAME-db.auth for firmware,
        /// and NAME-OVMF_VARS.fd (a VM variable store trusting the cert, Secure Boot on), in
        /// the `secure-boot` toolchain. NAME may start with a directory.
        #[arg(long, value_name = "NAME", conflicts_with = "out")]
        secure_boot: Option<PathBuf>,
    },
    /// Write an image to a USB stick or SD card (or a file), sync, read back and compare.
    #[command(after_help = FLASH_EXAMPLES)]
    Flash {
        /// The image file to write: raw, or xz-compressed (decompressed as it is written).
        image: PathBuf,
        /// The block device (e.g. /dev/sdX) or file to write to.
        #[arg(long, value_name = "PATH")]
        device: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Check what bootforge needs here (container engine and runtime, debootstrap, git,
    /// squashfs-tools, QEMU and firmware for boot tests, the store, the remote and its
    /// credentials) and print the fix for each problem. Exits non-zero when something the
    /// pipeline needs is missing.
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor,
    /// Print a completion script for a shell.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, or write a page per command into DIR.
    #[command(after_help = MAN_EXAMPLES)]
    Man {
        /// Write bootforge.1, bootforge-build.1, … into DIR instead.
        #[arg(long, short, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Which recipes, and what of them.
#[derive(Debug, Args)]
pub struct Selection {
    /// Recipe names (recipes/NAME.yaml) or paths to recipe files.
    #[arg(required_unless_present = "all", value_name = "RECIPE")]
    pub recipes: Vec<String>,
    /// Every recipe in the recipes directory.
    #[arg(long, conflicts_with = "recipes")]
    pub all: bool,
    /// Only shard I of N (1-based): a fixed share of the recipes, so N machines each
    /// running one shard build everything once.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Build only these outputs. Repeatable.
    #[arg(long = "target", value_name = "OUTPUT")]
    pub targets: Vec<String>,
    /// Use this file as the embedded script (`{embed}`) instead of the recipe's.
    #[arg(long, value_name = "FILE")]
    pub embed: Option<PathBuf>,
    /// Set a recipe variable. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = config::parse_set)]
    pub sets: Vec<(String, String)>,
}

/// `bootforge toolchain …`.
#[derive(Debug, Subcommand)]
pub enum ToolchainCommand {
    /// Build the image for recipes/toolchains/NAME.yaml (debootstrap; needs root and a mirror).
    #[command(after_help = TOOLCHAIN_BUILD_EXAMPLES)]
    Build {
        /// Spec name, or a path to a spec file.
        name: String,
    },
    /// Make NAME's image ready from a rootfs built before, here or in the shared store
    /// (--remote): no debootstrap. Fails when neither has one of this spec.
    #[command(after_help = TOOLCHAIN_PULL_EXAMPLES)]
    Pull {
        /// Spec name, or a path to a spec file.
        name: String,
    },
}

/// `bootforge cache …`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Add files to the store (sources for air-gapped machines) and print their sha256.
    #[command(after_help = CACHE_IMPORT_EXAMPLES)]
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List blobs with sizes and what refers to them.
    #[command(after_help = CACHE_LS_EXAMPLES)]
    Ls,
    /// Re-hash every blob and check every reference; non-zero exit if anything is wrong.
    #[command(after_help = CACHE_VERIFY_EXAMPLES)]
    Verify,
    /// Remove blobs nothing refers to (recipe pins in the recipes directory count).
    #[command(after_help = CACHE_GC_EXAMPLES)]
    Gc,
}

/// Parses `I/N` with 1 <= I <= N.
fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((i, n)) if (1..=n).contains(&i) => Ok((i, n)),
        _ => anyhow::bail!("--shard `{s}`: expected I/N with 1 <= I <= N, e.g. 2/3"),
    }
}

const CLI_EXAMPLES: &str = "Examples:
  bootforge build ipxe                    # build iPXE from recipes/ipxe.yaml
  bootforge embed ipxe --set chain_url=http://boot.example/boot.ipxe -o out/
  bootforge package --target iso --set chain_url=http://boot.example/boot.ipxe -o out/
  bootforge publish --to s3://boot/fleet --channel stable
  bootforge fetch rpi-img --from https://boot.example/fleet --channel stable
  bootforge doctor                        # what this machine is missing, and the fix

Run `bootforge COMMAND --help` for a command's examples, `bootforge man` for the manual.";

const BUILD_EXAMPLES: &str = "Examples:
  bootforge build ipxe                            # outputs' names, sha256s and sizes
  bootforge build ipxe grub syslinux              # several recipes, in parallel
  bootforge build ipxe --target bin/undionly.kpxe # only some outputs
  bootforge build ipxe --embed my-script.ipxe -o out/
  bootforge build ipxe --check                    # rebuild; fail if any byte differs
  bootforge build --all --shard 2/3 --remote s3://boot/shared";

const PLAN_EXAMPLES: &str = "Examples:
  bootforge plan ipxe                 # action key; cache hit, or what changed
  bootforge plan --all --json";

const EMBED_EXAMPLES: &str = "Examples:
  bootforge embed ipxe --set chain_url=http://boot.example/boot.ipxe -o out/
  bootforge embed ipxe --template my-chain.ipxe.j2 --set chain_url=https://boot.example/";

const PACKAGE_EXAMPLES: &str = "Examples:
  bootforge package --target iso --set chain_url=http://boot.example/boot.ipxe -o out/
  bootforge package --target usb-img --set chain_url=http://boot.example/boot.ipxe
  bootforge package --target rpi-img --profile recipes/media/lab.yaml -o out/
  bootforge package --target pxe-bundle --no-build --remote s3://boot/shared";

const TOOLCHAIN_EXAMPLES: &str = "Examples:
  bootforge toolchain build ipxe
  bootforge toolchain pull ipxe --remote s3://boot/shared";

const CACHE_EXAMPLES: &str = "Examples:
  bootforge cache import grub-2.12.tar.xz
  bootforge cache ls
  bootforge cache verify && bootforge cache gc";

const PUBLISH_EXAMPLES: &str = "Examples:
  AWS_ENDPOINT_URL=http://127.0.0.1:3900 bootforge publish --to s3://boot/fleet --channel nightly
  bootforge publish --to s3://boot/fleet --channel stable --manifest sha256:…   # promote
  bootforge publish --to /srv/www/boot --channel stable --sign bootforge.key";

const FETCH_EXAMPLES: &str = "Examples:
  bootforge fetch bootforge.iso --from s3://boot/fleet --channel stable
  bootforge fetch rpi-img --from https://boot.example/fleet --channel stable -o pi.img   # downloads the .img.xz
  bootforge fetch ipxe/ipxe.efi --from https://boot.example/fleet --channel stable --verify-key bootforge.pub
  bootforge fetch sha256:… --from s3://boot/fleet -o ipxe.efi";

const LS_EXAMPLES: &str = "Examples:
  bootforge ls --from s3://boot/fleet
  bootforge ls --from https://boot.example/fleet --json";

const KEYGEN_EXAMPLES: &str = "Examples:
  bootforge keygen --out keys/bootforge        # keys/bootforge.key and keys/bootforge.pub
  bootforge keygen --secure-boot keys/fleet    # keys/fleet-db.{key,crt,esl,auth}, OVMF vars";

const FLASH_EXAMPLES: &str = "Examples:
  bootforge flash out/bootforge-rpi.img --device /dev/sdX
  bootforge flash out/bootforge.img --device /dev/sdX --yes
  bootforge flash pi.img.xz --device /dev/mmcblk0              # decompressed as it is written";

const TOOLCHAIN_BUILD_EXAMPLES: &str = "Examples:
  bootforge toolchain build ipxe                  # recipes/toolchains/ipxe.yaml
  bootforge toolchain build ./my-toolchain.yaml";

const TOOLCHAIN_PULL_EXAMPLES: &str = "Examples:
  bootforge toolchain pull ipxe --remote s3://boot/shared
  bootforge toolchain pull ipxe --remote https://boot.example/shared";

const CACHE_IMPORT_EXAMPLES: &str = "Examples:
  bootforge cache import grub-2.12.tar.xz syslinux-6.03.tar.xz";

const CACHE_LS_EXAMPLES: &str = "Examples:
  bootforge cache ls
  bootforge cache ls --json --store /srv/bootforge";

const CACHE_VERIFY_EXAMPLES: &str = "Examples:
  bootforge cache verify || echo 'the store is damaged: see above'";

const CACHE_GC_EXAMPLES: &str = "Examples:
  bootforge cache gc
  bootforge cache gc --recipes /srv/recipes    # keeps what those recipes pin";

const DOCTOR_EXAMPLES: &str = "Examples:
  bootforge doctor
  bootforge doctor --json | jq '.checks[] | select(.ok | not)'
  bootforge doctor --remote s3://boot/shared      # also the shared store and credentials";

const COMPLETIONS_EXAMPLES: &str = "Examples:
  bootforge completions bash > /etc/bash_completion.d/bootforge
  bootforge completions zsh > \"${fpath[1]}/_bootforge\"
  bootforge completions fish > ~/.config/fish/completions/bootforge.fish";

const MAN_EXAMPLES: &str = "Examples:
  bootforge man | man -l -
  bootforge man -o /usr/local/share/man/man1 && mandb -q";
