//! Executors: where a step runs. `podman` and `docker` run it in the pinned image with the
//! network off; `host` is an explicit, non-hermetic opt-in.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Where the build tree is mounted inside a container: fixed, so paths baked into binaries
/// do not depend on the machine.
pub const CONTAINER_SRC: &str = "/src";
/// Where the embedded-script directory is mounted inside a container.
pub const CONTAINER_EMBED: &str = "/bootforge/embed";

/// The kinds of executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    Podman,
    Docker,
    Host,
}

impl ExecutorKind {
    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::Podman => "podman",
            ExecutorKind::Docker => "docker",
            ExecutorKind::Host => "host",
        }
    }

    pub fn is_container(self) -> bool {
        self != ExecutorKind::Host
    }
}

/// An executor with its configuration.
#[derive(Debug, Clone)]
pub struct Executor {
    pub kind: ExecutorKind,
    /// Extra arguments for `podman run`/`docker run` (e.g. `--runtime runc` where crun
    /// cannot run, lower `--ulimit`s where raising them is not allowed).
    pub run_args: Vec<String>,
}

/// Everything one step needs to run.
pub struct StepCommand<'a> {
    /// The build tree on the host.
    pub tree: &'a Path,
    /// Working directory relative to the tree.
    pub workdir: &'a str,
    pub embed_dir: Option<&'a Path>,
    pub image: Option<&'a str>,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    /// Container name, so a timed-out container can be killed by name.
    pub name: &'a str,
    /// Run on this squashfs image of `image`'s rootfs instead of the engine's image, mounted
    /// at the mount point (an empty directory) in a mount namespace of the step's own, so
    /// nothing of it outlives the step, however it ends (podman as root; see
    /// [`Executor::can_mount_rootfs`]).
    pub squashfs: Option<(&'a Path, &'a Path)>,
    /// The step reads the caller's stdin (a container is otherwise given none).
    pub stdin: bool,
}

/// Mounts `$1` (a squashfs) read-only on `$2`, then becomes the rest of its arguments: run
/// by `unshare --mount` so the mount is the step's alone.
const MOUNT_THEN_EXEC: &str = r#"mount -t squashfs -o loop,ro "$1" "$2" && shift 2 && exec "$@""#;

impl Executor {
    /// Checks that the engine is installed and answers, with the fix in the error.
    pub fn check_available(&self) -> Result<()> {
        if !self.kind.is_container() {
            return Ok(());
        }
        let bin = self.kind.name();
        // `version` (not `--version`) talks to the engine, so a docker CLI without a daemon
        // counts as unavailable.
        let ok = Command::new(bin)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!(
                "executor `{bin}` is not available: `{bin}` was not found on PATH or does not \
                 run. Install it (Debian: `apt-get install {}`), pick another with `--executor \
                 podman|docker`, or build on this machine with the non-hermetic `--executor host`",
                if bin == "podman" {
                    "podman runc"
                } else {
                    "docker.io"
                }
            );
        }
        Ok(())
    }

    /// The tree and embed paths as the step sees them.
    pub fn view_paths(&self, tree: &Path, embed_dir: Option<&Path>) -> (String, Option<String>) {
        if self.kind.is_container() {
            (
                CONTAINER_SRC.to_owned(),
                embed_dir.map(|_| CONTAINER_EMBED.to_owned()),
            )
        } else {
            (
                tree.display().to_string(),
                embed_dir.map(|p| p.display().to_string()),
            )
        }
    }

    /// The command that runs one step.
    pub fn command(&self, step: &StepCommand<'_>) -> Command {
        if !self.kind.is_container() {
            let mut c = Command::new(&step.argv[0]);
            c.args(&step.argv[1..])
                .current_dir(step.tree.join(step.workdir))
                .envs(step.env.iter().map(|(k, v)| (k, v)));
            return c;
        }
        let mut c = match step.squashfs {
            Some((image, mount)) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .args([MOUNT_THEN_EXEC, "sh"])
                    .arg(image)
                    .arg(mount)
                    .arg(self.kind.name());
                c
            }
            None => Command::new(self.kind.name()),
        };
        c.args([
            "run",
            "--rm",
            "--network=none",
            "--pull=never",
            "--name",
            step.name,
        ]);
        if step.stdin {
            c.arg("--interactive");
        }
        c.args(&self.run_args);
        c.arg("-v")
            .arg(format!("{}:{CONTAINER_SRC}", step.tree.display()));
        if let Some(e) = step.embed_dir {
            c.arg("-v")
                .arg(format!("{}:{CONTAINER_EMBED}:ro", e.display()));
        }
        let workdir: PathBuf = Path::new(CONTAINER_SRC).join(step.workdir);
        c.arg("-w").arg(workdir);
        for (k, v) in step.env {
            c.arg("-e").arg(format!("{k}={v}"));
        }
        match step.squashfs {
            // `:O`: an overlay over the read-only mount takes the step's writes.
            Some((_, mount)) => c.arg("--rootfs").arg(format!("{}:O", mount.display())),
            None => c.arg(step.image.expect("container steps have an image")),
        };
        c.args(step.argv);
        c
    }

    /// Stops a container left running after its client was killed.
    pub fn kill_container(&self, name: &str) {
        if self.kind.is_container() {
            let _ = Command::new(self.kind.name())
                .args(["rm", "-f", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Whether steps can run on a mounted squashfs rootfs instead of an imported image:
    /// podman (docker has no `--rootfs`), as root (mounting needs it), with `unshare` and
    /// `mount` from util-linux.
    pub fn can_mount_rootfs(&self) -> bool {
        self.kind == ExecutorKind::Podman
            // SAFETY: geteuid has no preconditions and cannot fail.
            && unsafe { libc::geteuid() } == 0
            && ["unshare", "mount", self.kind.name()].iter().all(|t| which(t))
    }

    /// Whether the engine has `image` already. For root's podman with the default storage,
    /// the engine's own image list is read first: asking podman costs a process start
    /// (about 50 ms here, a fifth of a small build), and a name listed there is an image
    /// podman runs. Anything else, and an image not listed, is asked of the engine.
    pub fn has_image(&self, image: &str) -> bool {
        if self.kind == ExecutorKind::Podman && which("podman") && listed_in_podman_storage(image) {
            return true;
        }
        Command::new(self.kind.name())
            .args(["image", "inspect", image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Makes sure `image` exists locally, importing `rootfs` (a tarball) under that name if not.
    pub fn ensure_image(&self, image: &str, rootfs: &Path) -> Result<()> {
        let bin = self.kind.name();
        if self.has_image(image) {
            return Ok(());
        }
        eprintln!("importing toolchain image {image}");
        let out = Command::new(bin)
            .arg("import")
            .arg(rootfs)
            .arg(image)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {bin} import"))?;
        if !out.status.success() {
            bail!(
                "{bin} import {} {image} failed: {}",
                rootfs.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Whether root podman's default image store (`overlay-images/images.json`) names `image`.
fn listed_in_podman_storage(image: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Listed {
        #[serde(default)]
        names: Vec<String>,
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 || std::env::var_os("CONTAINERS_STORAGE_CONF").is_some() {
        return false;
    }
    let path = "/var/lib/containers/storage/overlay-images/images.json";
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<Listed>>(&b).ok())
        .is_some_and(|images| images.iter().any(|i| i.names.iter().any(|n| n == image)))
}

/// Whether `tool` is on PATH.
pub fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}
