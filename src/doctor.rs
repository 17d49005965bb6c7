//! `bootforge doctor`: what this machine has of what each stage needs, with the fix for each
//! thing missing. It changes nothing but what the executor learns when a container will not
//! start (the same flags the first build would learn), and never creates the store.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::base::executor::{Executor, which};
use crate::config::Config;
use crate::store::{self, Access, layout};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Missing, but only some commands or the boot tests need it.
    Warn,
    /// Missing, and builds cannot work without it.
    Fail,
    /// Could not be checked yet (said why).
    Skip,
}

/// One check.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every check, in the order a build meets them.
#[derive(Debug, Serialize)]
pub struct Report {
    /// No check failed (warnings allowed).
    pub ok: bool,
    /// The extra `run` flags steps get here (the user's, or those learned), so scripts
    /// that run the engine by hand can use the same.
    pub container_args: Vec<String>,
    pub checks: Vec<Check>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn not(name: &'static str, status: Status, detail: impl Into<String>, fix: &str) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            fix: Some(fix.to_owned()),
        }
    }
}

/// Runs every check against `config`.
pub fn doctor(config: &Config) -> Report {
    let mut checks = Vec::new();
    let executor = &config.executor;
    if executor.kind.is_container() {
        checks.push(engine(executor));
        checks.push(runs_a_container(executor, &config.store));
    } else {
        checks.push(Check::not(
            "container engine",
            Status::Warn,
            "--executor host: steps run on this machine, not hermetic",
            "drop --executor host (or BOOTFORGE_EXECUTOR) once podman is installed",
        ));
    }
    checks.push(tool(
        "debootstrap",
        "debootstrap",
        Status::Fail,
        "makes toolchain images (`build`, `toolchain build`)",
        "apt-get install debootstrap",
    ));
    checks.push(tool(
        "git",
        "git",
        Status::Fail,
        "fetches recipes' git sources",
        "apt-get install git",
    ));
    checks.push(tool(
        "squashfs-tools",
        "mksquashfs",
        Status::Warn,
        "packs toolchains other machines mount instead of unpacking",
        "apt-get install squashfs-tools",
    ));
    checks.push(boot_tests());
    checks.push(local_store(&config.store));
    checks.push(remote(config));
    Report {
        ok: checks.iter().all(|c| c.status != Status::Fail),
        container_args: executor.run_args(),
        checks,
    }
}

fn tool(name: &'static str, bin: &str, missing: Status, what: &str, fix: &str) -> Check {
    if which(bin) {
        Check::ok(name, format!("`{bin}` found ({what})"))
    } else {
        Check::not(name, missing, format!("`{bin}` not on PATH ({what})"), fix)
    }
}

/// The stdout of a command that succeeded, trimmed.
fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn engine(executor: &Executor) -> Check {
    let bin = executor.kind.name();
    let info = match bin {
        "podman" => output(Command::new(bin).args([
            "info",
            "--format",
            "podman {{.Version.Version}}, runtime {{.Host.OCIRuntime.Name}}, cgroups {{.Host.CgroupsVersion}}",
        ])),
        _ => output(Command::new(bin).args([
            "version",
            "--format",
            "docker {{.Server.Version}}",
        ])),
    };
    let Some(info) = info else {
        let fix = match bin {
            "podman" => "apt-get install podman runc",
            _ => "apt-get install docker.io and start it (systemctl start docker), or use podman",
        };
        return Check::not(
            "container engine",
            Status::Fail,
            format!("`{bin}` is not installed or does not answer"),
            fix,
        );
    };
    // crun refuses hybrid cgroup hosts; the fix is runc, so it had better be there.
    if info.contains("runtime crun") && info.ends_with("cgroups v1") && !which("runc") {
        return Check::not(
            "container engine",
            Status::Fail,
            format!(
                "{info}: crun cannot run containers on this cgroup v1 host, and runc is missing"
            ),
            "apt-get install runc",
        );
    }
    Check::ok("container engine", info)
}

/// Runs `true` in a toolchain of this store the way a build would (its image, or its
/// squashfs mounted), learning flags as a build would.
fn runs_a_container(executor: &Executor, store: &Path) -> Check {
    let name = "container run";
    let flags = |e: &Executor| match (&e.given_args, e.run_args()) {
        (Some(_), a) => format!(
            "flags from BOOTFORGE_CONTAINER_ARGS or bootforge.yaml: `{}`",
            a.join(" ")
        ),
        (None, a) if a.is_empty() => "no flags learned".to_owned(),
        (None, a) => format!("learned flags `{}`", a.join(" ")),
    };
    let records = toolchains(store);
    let runnable = records.iter().find_map(|(image, squashfs)| {
        if executor.has_image(image) {
            Some((image, None))
        } else {
            squashfs
                .as_ref()
                .filter(|s| s.is_file() && executor.can_mount_rootfs())
                .map(|s| (image, Some(s)))
        }
    });
    let Some((image, squashfs)) = runnable else {
        return Check {
            name,
            status: Status::Skip,
            detail: format!(
                "no toolchain in this store yet, so no container was started; the first build \
                 checks (and learns any flags this host needs); {}",
                flags(executor)
            ),
            fix: None,
        };
    };
    let ran = tempfile::tempdir_in(store.join("tmp"))
        .map_err(anyhow::Error::from)
        .and_then(|work| {
            let (tree, mount) = (work.path().join("src"), work.path().join("rootfs"));
            std::fs::create_dir(&tree)?;
            std::fs::create_dir(&mount)?;
            executor.run_true(
                image,
                squashfs.map(|s| (s.as_path(), mount.as_path())),
                &tree,
            )
        });
    let how = if squashfs.is_some() {
        "mounted from its squashfs"
    } else {
        "its image"
    };
    match ran {
        Ok(notices) => {
            let learned = if notices.is_empty() {
                String::new()
            } else {
                format!(" (just learned: {})", notices.join(" "))
            };
            Check::ok(
                name,
                format!(
                    "`true` ran in {image} ({how}); {}{learned}",
                    flags(executor)
                ),
            )
        }
        Err(e) => Check::not(
            name,
            Status::Fail,
            format!("`true` did not run in {image} ({how}): {e:#}"),
            "see the engine's error; on hosts like ours, set BOOTFORGE_CONTAINER_ARGS=\"--runtime \
             runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096\"",
        ),
    }
}

/// The toolchains recorded in the store: image name, and the squashfs blob when there is
/// one (nothing if there is no store yet).
fn toolchains(store: &Path) -> Vec<(String, Option<PathBuf>)> {
    #[derive(serde::Deserialize)]
    struct Record {
        image: String,
        squashfs: Option<crate::base::Digest>,
        arch: Option<String>,
    }
    let Ok(entries) = std::fs::read_dir(store.join("toolchains")) else {
        return Vec::new();
    };
    let mut found: Vec<(String, Option<PathBuf>)> = entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<Record>(&b).ok())
        // Another architecture's toolchain does not run here.
        .filter(|r| {
            r.arch
                .as_deref()
                .is_none_or(|a| a == crate::base::host_arch())
        })
        .map(|r| (r.image, r.squashfs.map(|d| store.join(layout::blob(&d)))))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// QEMU and the firmware the boot tests (and `ci/boot-smoke.sh`) start guests with.
fn boot_tests() -> Check {
    // Programs are looked for on PATH, firmware where Debian's packages put it.
    let programs = ["qemu-system-x86_64", "qemu-system-aarch64", "dnsmasq"];
    let firmware = [
        ("OVMF (x86_64 UEFI)", "/usr/share/ovmf/OVMF.fd"),
        (
            "OVMF with Secure Boot",
            "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
        ),
        ("AAVMF (arm64 UEFI)", "/usr/share/AAVMF/AAVMF_CODE.fd"),
    ];
    let missing: Vec<&str> = programs
        .into_iter()
        .filter(|p| !which(p))
        .chain(
            firmware
                .into_iter()
                .filter(|(_, path)| !Path::new(path).exists())
                .map(|(n, _)| n),
        )
        .collect();
    if missing.is_empty() {
        Check::ok(
            "boot tests",
            "QEMU (x86_64, aarch64), OVMF (with Secure Boot), AAVMF and dnsmasq found",
        )
    } else {
        Check::not(
            "boot tests",
            Status::Warn,
            format!(
                "missing {} (only the boot tests need them)",
                missing.join(", ")
            ),
            "apt-get install qemu-system-x86 qemu-system-arm ovmf qemu-efi-aarch64 dnsmasq-base",
        )
    }
}

fn local_store(path: &Path) -> Check {
    let name = "store";
    if !path.exists() {
        return Check::ok(
            name,
            format!(
                "{} does not exist yet; the first build creates it",
                path.display()
            ),
        );
    }
    let writable = tempfile::tempfile_in(path.join("tmp"))
        .or_else(|_| tempfile::tempfile_in(path))
        .is_ok();
    if !writable {
        return Check::not(
            name,
            Status::Fail,
            format!("{} is not writable", path.display()),
            "fix its permissions, or point --store (BOOTFORGE_STORE) elsewhere",
        );
    }
    let free = free_bytes(path);
    match free {
        Some(f) if f < 4 << 30 => Check::not(
            name,
            Status::Warn,
            format!("{}: {} MiB free", path.display(), f >> 20),
            "a toolchain image and iPXE's build need about 4 GiB: free space, or `bootforge cache gc`",
        ),
        Some(f) => Check::ok(
            name,
            format!("{}: writable, {} GiB free", path.display(), f >> 30),
        ),
        None => Check::ok(name, format!("{}: writable", path.display())),
    }
}

fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

fn remote(config: &Config) -> Check {
    let name = "remote";
    let Some(location) = &config.shared else {
        return Check::ok(
            name,
            "none configured (--remote, BOOTFORGE_REMOTE or bootforge.yaml's `remote`)",
        );
    };
    let listed = store::open(location, &config.remote, Access::Read)
        .and_then(|s| s.list(layout::CHANNELS).map(|l| l.map(|v| v.len())));
    match listed {
        Ok(Some(n)) => Check::ok(name, format!("{location}: reachable, {n} channel(s)")),
        Ok(None) => Check::ok(name, format!("{location}: reachable (read-only HTTPS)")),
        Err(e) => {
            let text = format!("{e:#}");
            let fix = if matches!(location, store::Location::S3 { .. }) {
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), AWS_REGION, \
                 and AWS_ENDPOINT_URL for Garage or MinIO; check the bucket exists and the key \
                 may read it"
            } else {
                "check the URL or path, and that this machine reaches it"
            };
            Check::not(name, Status::Fail, format!("{location}: {text}"), fix)
        }
    }
}
