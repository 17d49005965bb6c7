//! Toolchains: turning a spec into a container image whose identity is the sha256 of a
//! normalised rootfs tarball kept in the store, and resolving a recipe's toolchain to an image.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::base::executor::Executor;
use crate::base::{Digest, host_arch};
use crate::recipe::toolchain::LoadedSpec;
use crate::recipe::{LoadedRecipe, ToolchainRef};
use crate::store::{Store, layout};

/// What the store records about a built toolchain (`toolchains/<name>.<arch>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolchainRecord {
    pub name: String,
    /// The Debian architecture it was built on and runs on. Records from before there was
    /// one were written on this machine, hence the default.
    #[serde(default = "this_arch")]
    pub arch: String,
    /// Hex sha256 of the spec file it was built from (not a blob, hence no prefix).
    pub spec_sha256: String,
    /// The rootfs tarball blob: the toolchain's identity.
    pub rootfs: Digest,
    pub size: u64,
    /// The same tree as a squashfs image, which podman runs on mounted, so a machine that
    /// pulls the toolchain need not unpack it (absent where `mksquashfs` was not installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub squashfs: Option<Digest>,
    pub image: String,
    pub suite: String,
    /// Resolved `package=version` for everything installed, sorted.
    pub packages: Vec<String>,
}

impl ToolchainRecord {
    /// The blobs the record names, each with what it is: what a store holding the record
    /// holds too.
    pub fn blobs(&self) -> impl Iterator<Item = (&'static str, Digest)> {
        std::iter::once(("rootfs", self.rootfs)).chain(self.squashfs.map(|d| ("squashfs", d)))
    }
}

fn this_arch() -> String {
    host_arch().to_owned()
}

/// A recipe's toolchain, resolved.
#[derive(Debug, Clone)]
pub enum Toolchain {
    /// Built from a spec; the image is imported from the rootfs blob when missing.
    Spec(ToolchainRecord),
    /// An image reference pinned by digest, used as is.
    Image { reference: String },
    /// `--executor host`: whatever the host has.
    Host,
    /// A recipe without steps runs nothing.
    None,
}

impl Toolchain {
    /// The identity that goes into action keys. A rootfs is one architecture's already; an
    /// image reference may name a multi-architecture index and the host is whatever it is,
    /// so those say which architecture ran them.
    pub fn identity(&self) -> String {
        match self {
            Toolchain::Spec(r) => r.rootfs.to_string(),
            Toolchain::Image { reference } => format!("{reference} on {}", host_arch()),
            Toolchain::Host => format!("host {}", host_arch()),
            Toolchain::None => "none".into(),
        }
    }

    /// The image to run, if any.
    pub fn image(&self) -> Option<&str> {
        match self {
            Toolchain::Spec(r) => Some(&r.image),
            Toolchain::Image { reference } => Some(reference),
            Toolchain::Host | Toolchain::None => None,
        }
    }
}

/// Why a recipe's toolchain cannot be used as it stands.
pub enum Unresolved {
    /// The spec has never been built, or was edited since: `build` builds it.
    NeedsBuild(LoadedSpec, &'static str),
}

/// Finds the toolchain a recipe uses without building anything.
pub fn resolve(
    recipe: &LoadedRecipe,
    store: &Store,
    executor: &Executor,
) -> Result<Result<Toolchain, Unresolved>> {
    if recipe.recipe.steps.is_empty() {
        return Ok(Ok(Toolchain::None));
    }
    if !executor.kind.is_container() {
        return Ok(Ok(Toolchain::Host));
    }
    match &recipe.recipe.toolchain {
        None => unreachable!("validated: a recipe with steps has a toolchain"),
        Some(ToolchainRef::Image { reference, .. }) => Ok(Ok(Toolchain::Image {
            reference: reference.clone(),
        })),
        Some(ToolchainRef::Spec(name)) => {
            let spec = LoadedSpec::load(&recipe.toolchain_spec_path(name))?;
            Ok(match recorded_here(store, &spec)? {
                Ok(r) => Ok(Toolchain::Spec(r)),
                Err(why) => Err(Unresolved::NeedsBuild(spec, why)),
            })
        }
    }
}

/// This store's record of `spec` for this architecture (or one from before records had
/// one) with its rootfs, or why there is none.
fn recorded_here(
    store: &Store,
    spec: &LoadedSpec,
) -> Result<Result<ToolchainRecord, &'static str>> {
    let record: Option<ToolchainRecord> =
        match store.read_json(&layout::toolchain(&spec.name, host_arch()))? {
            Some(r) => Some(r),
            None => store.read_json(&layout::toolchain_unqualified(&spec.name))?,
        };
    Ok(match record {
        None => Err("never built"),
        Some(r) if r.spec_sha256 != spec.digest.hex() => Err("spec changed since it was built"),
        Some(r) if !store.has_blob(&r.rootfs) => Err("rootfs missing from the store"),
        Some(r) => Ok(r),
    })
}

/// The shared store's record of the same `spec` for this architecture (signed, when a
/// verify key is set). Its rootfs stays there until something must run.
fn recorded_shared(
    spec: &LoadedSpec,
    settings: &super::Settings,
) -> Result<Option<ToolchainRecord>> {
    let Some(shared) = &settings.shared else {
        return Ok(None);
    };
    let key = layout::toolchain(&spec.name, host_arch());
    let found = shared.tolerate(shared.get_document(&key), None)?;
    Ok(found
        .and_then(|b| serde_json::from_slice::<ToolchainRecord>(&b).ok())
        .filter(|r| r.spec_sha256 == spec.digest.hex() && r.arch == host_arch()))
}

/// `toolchain pull`: makes `spec`'s toolchain ready on this machine (record, rootfs and
/// image) from a rootfs built before, in this store or the shared one; never debootstrap.
/// For warming a builder up.
pub fn pull(spec: &LoadedSpec, settings: &super::Settings) -> Result<ToolchainRecord> {
    let _lock = settings.store.lock_shared()?;
    let record = match recorded_here(&settings.store, spec)? {
        Ok(r) => r,
        Err(why) => {
            let r = recorded_shared(spec, settings)?.with_context(|| {
                let shared = match &settings.shared {
                    Some(s) => format!(" nor in {}", s.location()),
                    None => String::new(),
                };
                format!(
                    "toolchain {}: no rootfs built from this spec for {} here ({why}){shared}; \
                     `bootforge toolchain build {}` makes one",
                    spec.name,
                    host_arch(),
                    spec.name
                )
            })?;
            pull_blobs(&r, settings)?;
            r
        }
    };
    ensure_image(&Toolchain::Spec(record.clone()), settings)?;
    share_record(&record, settings)?;
    Ok(record)
}

/// The recipe's toolchain: this machine's record, else the shared store's record of the
/// same spec (its rootfs is pulled only when something must run), else built here (and then
/// shared).
pub fn resolve_or_build(recipe: &LoadedRecipe, settings: &super::Settings) -> Result<Toolchain> {
    match resolve_shared(recipe, settings)? {
        Ok(t) => {
            share(&t, settings)?;
            Ok(t)
        }
        Err(Unresolved::NeedsBuild(spec, why)) => {
            build_for(&spec, why, &format!("recipe {}", recipe.name), settings)
        }
    }
}

/// The toolchain of `spec` for a tool run outside any recipe (`user` says for what, in
/// messages): found here, in the shared store, or built here; the host under `--executor
/// host`.
pub fn for_tool(spec: &LoadedSpec, user: &str, settings: &super::Settings) -> Result<Toolchain> {
    if !settings.executor.kind.is_container() {
        return Ok(Toolchain::Host);
    }
    let why = match recorded_here(&settings.store, spec)? {
        Ok(r) => return Ok(Toolchain::Spec(r)),
        Err(why) => why,
    };
    if let Some(r) = recorded_shared(spec, settings)? {
        return Ok(Toolchain::Spec(r));
    }
    build_for(spec, why, user, settings)
}

/// Builds `spec` (never built, or edited: `why`) for `user`, and shares it.
fn build_for(
    spec: &LoadedSpec,
    why: &str,
    user: &str,
    settings: &super::Settings,
) -> Result<Toolchain> {
    settings.may_run(&format!("{user}: toolchain `{}` ({why})", spec.name))?;
    eprintln!("[{user}] building toolchain `{}` ({why})", spec.name);
    let toolchain = Toolchain::Spec(build(spec, settings)?);
    share(&toolchain, settings)?;
    Ok(toolchain)
}

/// Puts a toolchain built here (its record and rootfs) where other machines find it, so
/// they import the image instead of running debootstrap.
fn share(t: &Toolchain, settings: &super::Settings) -> Result<()> {
    match t {
        Toolchain::Spec(r) => share_record(r, settings),
        _ => Ok(()),
    }
}

fn share_record(r: &ToolchainRecord, settings: &super::Settings) -> Result<()> {
    if let Some(shared) = &settings.shared
        && settings.store.has_blob(&r.rootfs)
    {
        let blobs: Vec<Digest> = r
            .blobs()
            .map(|(_, d)| d)
            .filter(|d| settings.store.has_blob(d))
            .collect();
        let pushed = shared.push_document(
            &settings.store,
            &layout::toolchain(&r.name, &r.arch),
            &blobs,
        );
        shared.tolerate(pushed, ())?;
    }
    Ok(())
}

/// Like [`resolve`], but a spec never built here is also found in the shared store (its
/// record, of the same spec; the rootfs stays there until something must run).
pub fn resolve_shared(
    recipe: &LoadedRecipe,
    settings: &super::Settings,
) -> Result<Result<Toolchain, Unresolved>> {
    let (spec, why) = match resolve(recipe, &settings.store, &settings.executor)? {
        Ok(t) => return Ok(Ok(t)),
        Err(Unresolved::NeedsBuild(spec, why)) => (spec, why),
    };
    Ok(match recorded_shared(&spec, settings)? {
        // Recorded here only once its rootfs is (in `ensure_image`): a record is a promise
        // that its blob is in the store.
        Some(record) => Ok(Toolchain::Spec(record)),
        None => Err(Unresolved::NeedsBuild(spec, why)),
    })
}

/// Makes a resolved toolchain ready to run (its rootfs pulled from the shared store when
/// this one lacks it: much faster than debootstrap) and says how: `Some(squashfs)` to run
/// steps on that image mounted, `None` on the engine's image (imported when missing, where
/// mounting is not possible or the record has no squashfs).
pub fn ensure_image(t: &Toolchain, settings: &super::Settings) -> Result<Option<PathBuf>> {
    let store = &settings.store;
    let Toolchain::Spec(r) = t else {
        return Ok(None);
    };
    if settings.executor.has_image(&r.image) {
        return Ok(None);
    }
    // Only now is it worth asking whether the engine runs at all, to say so plainly.
    settings.executor.check_available()?;
    if r.blobs().any(|(_, d)| !store.has_blob(&d)) {
        pull_blobs(r, settings)?;
    }
    if let Some(sq) = r.squashfs
        && settings.executor.can_mount_rootfs()
    {
        return Ok(Some(store.blob_path(&sq)));
    }
    settings
        .executor
        .ensure_image(&r.image, &store.blob_path(&r.rootfs))?;
    Ok(None)
}

/// Copies the blobs of a shared record that this store lacks (its rootfs, its squashfs),
/// each verified as it streams, then records the toolchain here: a record is a promise
/// that its blobs are in the store.
fn pull_blobs(r: &ToolchainRecord, settings: &super::Settings) -> Result<()> {
    let store = &settings.store;
    for (what, d) in r.blobs().filter(|(_, d)| !store.has_blob(d)) {
        let Some(shared) = &settings.shared else {
            bail!(
                "toolchain {}: its {what} {d} is not in the store (and there is no --remote)",
                r.name
            );
        };
        let from = shared.storage();
        let size = from.head(&layout::blob(&d))?.with_context(|| {
            format!(
                "toolchain {}: its {what} {d} is neither here nor in {}",
                r.name,
                shared.location()
            )
        })?;
        eprintln!(
            "[toolchain {}] pulling {what} {d} from {}",
            r.name,
            shared.location()
        );
        store.pull_blob(from, &d, size)?;
    }
    store.write_json(&layout::toolchain(&r.name, &r.arch), r)
}

/// Files whose content depends on when or where debootstrap ran, not on what it installed.
const VOLATILE: [&str; 12] = [
    "etc/resolv.conf",
    "etc/hostname",
    "etc/machine-id",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/available-old",
    "var/log",
    "var/cache/apt",
    "var/lib/apt/lists",
];

/// A toolchain `bootforge toolchain build` made, and where its package versions went.
#[derive(Debug)]
pub struct Built {
    pub record: ToolchainRecord,
    pub lock_file: std::path::PathBuf,
}

/// `bootforge toolchain build`: builds the spec's image, holding the store shared, and
/// shares it.
pub fn build_spec(spec: &LoadedSpec, settings: &super::Settings) -> Result<Built> {
    let _lock = settings.store.lock_shared()?;
    let record = build(spec, settings)?;
    share_record(&record, settings)?;
    Ok(Built {
        record,
        lock_file: spec.lock_path(),
    })
}

/// Builds a toolchain from its spec: debootstrap, install packages, record versions, pack a
/// normalised tarball into the store and import it as an image.
pub fn build(spec: &LoadedSpec, settings: &super::Settings) -> Result<ToolchainRecord> {
    let (store, executor) = (&settings.store, &settings.executor);
    if !executor.kind.is_container() {
        bail!("toolchains are container images; `--executor host` does not use them");
    }
    executor.check_available()?;
    let _lock = store.lock_named(&format!("toolchain-{}", spec.name))?;
    let work = store.temp_dir("toolchain-")?;
    let rootfs = work.path().join("rootfs");
    bootstrap(
        spec,
        &rootfs,
        work.path(),
        settings.debian_mirror.as_deref(),
    )?;
    let packages = installed_packages(&rootfs)?;
    normalise(&rootfs)?;
    eprintln!("[toolchain {}] packing rootfs", spec.name);
    let tarball = work.path().join("rootfs.tar");
    let mut tar = Command::new("tar");
    tar.args([
        "--sort=name",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--format=gnu",
    ])
    .arg(format!("--mtime=@{}", spec.spec.epoch))
    .arg("-C")
    .arg(&rootfs)
    .arg("-cf")
    .arg(&tarball)
    .arg(".");
    run_quiet(tar, "tar", work.path())?;
    let stored = store.put_file(&tarball)?;
    let squashfs = squashfs(spec, &rootfs, work.path(), settings)?;
    let image = format!(
        "localhost/bootforge-{}:{}",
        spec.name,
        stored.digest.short(16)
    );
    executor.ensure_image(&image, &store.blob_path(&stored.digest))?;
    let record = ToolchainRecord {
        name: spec.name.clone(),
        arch: host_arch().to_owned(),
        spec_sha256: spec.digest.hex(),
        rootfs: stored.digest,
        size: stored.size,
        squashfs,
        image,
        suite: spec.spec.suite.clone(),
        packages,
    };
    store.write_json(&layout::toolchain(&spec.name, &record.arch), &record)?;
    // An older record of the same name would keep its rootfs alive through every `cache gc`.
    let unqualified = store.root().join(layout::toolchain_unqualified(&spec.name));
    if unqualified.exists() {
        fs::remove_file(&unqualified)
            .with_context(|| format!("removing {}", unqualified.display()))?;
    }
    write_lock_file(spec, &record)?;
    Ok(record)
}

/// The rootfs as a squashfs image in the store, made as reproducibly as the tarball (every
/// file root's, every time the spec's epoch, no xattrs, sorted), if `mksquashfs` is here.
fn squashfs(
    spec: &LoadedSpec,
    rootfs: &Path,
    work: &Path,
    settings: &super::Settings,
) -> Result<Option<Digest>> {
    if !crate::base::executor::which("mksquashfs") {
        eprintln!(
            "[toolchain {}] no mksquashfs (Debian: squashfs-tools): other machines will unpack \
             the rootfs instead of mounting it",
            spec.name
        );
        return Ok(None);
    }
    eprintln!("[toolchain {}] making its squashfs", spec.name);
    let image = work.join("rootfs.sqfs");
    let epoch = spec.spec.epoch.to_string();
    let mut mk = Command::new("mksquashfs");
    mk.arg(rootfs).arg(&image).args([
        "-noappend",
        "-no-progress",
        "-quiet",
        "-all-root",
        "-no-xattrs",
        "-comp",
        "zstd",
        "-Xcompression-level",
        "3",
        "-mkfs-time",
        &epoch,
        "-all-time",
        &epoch,
    ]);
    run_quiet(mk, "mksquashfs", work)?;
    Ok(Some(settings.store.put_file(&image)?.digest))
}

/// debootstrap, then the spec's packages.
fn bootstrap(spec: &LoadedSpec, rootfs: &Path, logdir: &Path, mirror: Option<&str>) -> Result<()> {
    let s = &spec.spec;
    eprintln!(
        "[toolchain {}] debootstrap --variant={} {} (this takes a minute or more)",
        spec.name, s.variant, s.suite
    );
    let mut boot = Command::new("debootstrap");
    boot.arg(format!("--variant={}", s.variant))
        .arg(&s.suite)
        .arg(rootfs);
    if let Some(mirror) = mirror {
        boot.arg(mirror);
    }
    run_quiet(boot, "debootstrap", logdir)
        .context("debootstrap failed (is it installed? `apt-get install debootstrap`; it needs root and a Debian mirror)")?;
    if s.packages.is_empty() {
        return Ok(());
    }
    eprintln!(
        "[toolchain {}] installing {} packages",
        spec.name,
        s.packages.len()
    );
    fs::copy("/etc/resolv.conf", rootfs.join("etc/resolv.conf"))
        .context("copying /etc/resolv.conf into the rootfs")?;
    chroot(rootfs, &["apt-get", "update", "-qq"], logdir)?;
    let mut install = vec!["apt-get", "install", "-y", "-qq", "--no-install-recommends"];
    install.extend(s.packages.iter().map(String::as_str));
    chroot(rootfs, &install, logdir)?;
    chroot(rootfs, &["apt-get", "clean"], logdir)
}

/// `package=version` for everything installed, sorted.
fn installed_packages(rootfs: &Path) -> Result<Vec<String>> {
    let listing = Command::new("chroot")
        .arg(rootfs)
        .args(["dpkg-query", "-W", "-f", "${Package}=${Version}\n"])
        .output()
        .context("listing installed packages")?;
    let mut packages: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    packages.sort();
    Ok(packages)
}

/// Removes what differs from one debootstrap run to the next (logs, caches, ids).
fn normalise(rootfs: &Path) -> Result<()> {
    for rel in VOLATILE {
        let p = rootfs.join(rel);
        if p.is_dir() {
            for entry in fs::read_dir(&p)? {
                let e = entry?.path();
                if e.is_dir() {
                    fs::remove_dir_all(&e)?;
                } else {
                    fs::remove_file(&e)?;
                }
            }
        } else if p.exists() {
            fs::remove_file(&p)?;
        }
    }
    // An empty machine-id tells systemd-aware tools "not yet set" instead of a random one.
    fs::write(rootfs.join("etc/machine-id"), b"")?;
    Ok(())
}

/// `recipes/toolchains/<name>.lock`: the resolved package versions, for review. It names
/// no rootfs digest (that is in the store's record): a debootstrap of the same versions on
/// another machine is other bytes, and the file should change only when a version does.
/// Left untouched when it already says this, so a build of the same versions writes nothing
/// into the recipes.
fn write_lock_file(spec: &LoadedSpec, record: &ToolchainRecord) -> Result<()> {
    let mut lock = format!(
        "# Resolved by `bootforge toolchain build {}`: the Debian packages its rootfs holds.\n",
        spec.name
    );
    for p in &record.packages {
        lock.push_str(p);
        lock.push('\n');
    }
    let path = spec.lock_path();
    if fs::read_to_string(&path).is_ok_and(|old| old == lock) {
        return Ok(());
    }
    fs::write(&path, lock).with_context(|| format!("writing {}", path.display()))
}

fn chroot(rootfs: &Path, argv: &[&str], logdir: &Path) -> Result<()> {
    let mut c = Command::new("chroot");
    c.arg(rootfs)
        .args(argv)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C");
    run_quiet(c, &format!("chroot {}", argv.join(" ")), logdir)
}

/// Runs a command with its output kept in a log file, shown (tail) only on failure.
fn run_quiet(mut cmd: Command, what: &str, logdir: &Path) -> Result<()> {
    let log_path = logdir.join("toolchain.log");
    let log = fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!(
            "{what} failed ({status}); last lines of its log:\n{}",
            super::process::tail(&log_path, 20)
        );
    }
    Ok(())
}
