//! Executors: where a step runs. `podman` and `docker` run it in the pinned image with the
//! network off; `host` is an explicit, non-hermetic opt-in.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

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
    /// Extra `run` flags the user gave (`BOOTFORGE_CONTAINER_ARGS`, bootforge.yaml's
    /// `container_args`): used as given, never changed.
    pub given_args: Option<Vec<String>>,
    /// Otherwise: flags this machine was found to need, and the file they are kept in.
    learned: Arc<Mutex<Learned>>,
}

#[derive(Debug, Default)]
struct Learned {
    file: Option<PathBuf>,
    loaded: bool,
    args: Vec<String>,
}

/// What to do after a container run failed: see [`Executor::learn`].
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    No,
    /// Run again: another run adopted the fix meanwhile.
    Again,
    /// Run again with the fix just adopted; print the notice.
    Learned(String),
}

/// What the engine kept in the store after a container would not start.
#[derive(Debug, Serialize, Deserialize)]
struct LearnedFile {
    run_args: Vec<String>,
}

/// A container start the engine refuses for a reason known `run` flags fix: what its error
/// says (all of the words, any case), why, and the flags.
struct Fix {
    seen: &'static [&'static str],
    why: &'static str,
    args: &'static [&'static str],
}

/// The hosts our users meet: crun on a hybrid cgroup host ("cgroups in hybrid mode not
/// supported"), and no CAP_SYS_RESOURCE to raise the engine's default ulimits (runc: "error
/// setting rlimit type 7: operation not permitted"; crun: "setrlimit `RLIMIT_NOFILE`:
/// Operation not permitted").
const FIXES: &[Fix] = &[
    Fix {
        seen: &["cgroups in hybrid mode not supported"],
        why: "crun cannot run containers on a hybrid cgroup host",
        args: &["--runtime", "runc"],
    },
    Fix {
        seen: &["rlimit", "operation not permitted"],
        why: "the engine's default ulimits cannot be raised here (no CAP_SYS_RESOURCE)",
        args: &[
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ],
    },
];

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
    /// An executor; `given_args` are the user's flags, `learn_in` where flags found to be
    /// needed here are kept when the user gave none (the local store's `engines/`).
    pub fn new(
        kind: ExecutorKind,
        given_args: Option<Vec<String>>,
        learn_in: Option<PathBuf>,
    ) -> Self {
        Executor {
            kind,
            given_args,
            learned: Arc::new(Mutex::new(Learned {
                file: learn_in,
                ..Learned::default()
            })),
        }
    }

    /// The extra `run` flags in use: the user's, or those learned on this machine.
    pub fn run_args(&self) -> Vec<String> {
        if let Some(given) = &self.given_args {
            return given.clone();
        }
        let mut learned = self.learned.lock().expect("not poisoned");
        if !learned.loaded {
            learned.loaded = true;
            if let Some(file) = &learned.file {
                // A damaged file is relearned, not an error: it holds nothing but a cache.
                learned.args = std::fs::read(file)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<LearnedFile>(&b).ok())
                    .map(|f| f.run_args)
                    .unwrap_or_default();
            }
        }
        learned.args.clone()
    }

    /// Where learned flags are kept, when they are.
    pub fn learned_file(&self) -> Option<PathBuf> {
        if self.given_args.is_some() {
            return None;
        }
        self.learned.lock().expect("not poisoned").file.clone()
    }

    /// After a container run with the flags `used` failed with `output` (the engine's
    /// error): whether to run it again. When a known fix applies that `used` lacked and the
    /// user gave no flags: adopted and kept for later runs if no other run has adopted it
    /// meanwhile ([`Retry::Learned`], with the notice to print once), or already in use
    /// ([`Retry::Again`]). [`Retry::No`]: the failure is the command's own, or nothing known
    /// fixes it.
    pub fn learn(&self, used: &[String], output: &str) -> Result<Retry> {
        if self.given_args.is_some() || !self.kind.is_container() {
            return Ok(Retry::No);
        }
        let text = output.to_lowercase();
        let applied = |args: &[String], f: &Fix| args.windows(f.args.len()).any(|w| w == f.args);
        let Some(fix) = FIXES
            .iter()
            .find(|f| f.seen.iter().all(|w| text.contains(w)) && !applied(used, f))
        else {
            return Ok(Retry::No);
        };
        self.run_args(); // loaded before it is extended
        let mut learned = self.learned.lock().expect("not poisoned");
        if applied(&learned.args, fix) {
            return Ok(Retry::Again);
        }
        learned
            .args
            .extend(fix.args.iter().map(|a| (*a).to_owned()));
        let kept = match &learned.file {
            Some(file) => {
                save_learned(file, &learned.args)?;
                format!(" (kept in {})", file.display())
            }
            None => String::new(),
        };
        Ok(Retry::Learned(format!(
            "note: {} could not start a container: {}. Retrying with `{}`, which bootforge \
             uses for {} on this machine from now on{kept}; BOOTFORGE_CONTAINER_ARGS overrides.",
            self.kind.name(),
            fix.why,
            fix.args.join(" "),
            self.kind.name(),
        )))
    }

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
        c.args(self.run_args());
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

    /// Runs `step` with its output captured (and `stdin` written to it), learning flags as
    /// a build step does: while the engine refuses to start the container for a reason a
    /// known flag fixes, the flag is adopted and the step run again (nothing ran, so that is
    /// safe). Returns the last run's output, successful or not, and the notices of what was
    /// learned.
    pub fn output_learning(
        &self,
        step: &StepCommand,
        stdin: Option<&[u8]>,
    ) -> Result<(std::process::Output, Vec<String>)> {
        use std::io::Write;
        let mut notices = Vec::new();
        loop {
            let used = self.run_args();
            let mut child = self
                .command(step)
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("running {}", step.argv.join(" ")))?;
            if let Some(bytes) = stdin {
                let mut pipe = child.stdin.take().expect("piped stdin");
                // A tool that exits early closes the pipe; its exit status says why.
                let _ = pipe.write_all(bytes);
            }
            let out = child
                .wait_with_output()
                .with_context(|| format!("running {}", step.argv.join(" ")))?;
            if out.status.success() {
                return Ok((out, notices));
            }
            match self.learn(&used, &String::from_utf8_lossy(&out.stderr))? {
                Retry::Learned(n) => notices.push(n),
                Retry::Again => {}
                Retry::No => return Ok((out, notices)),
            }
        }
    }

    /// Runs `true` as a step would (in `image`, or on a squashfs of it mounted at an empty
    /// directory), with an empty directory as its tree, learning flags as a step does;
    /// returns the notices of what was learned.
    pub fn run_true(
        &self,
        image: &str,
        squashfs: Option<(&Path, &Path)>,
        tree: &Path,
    ) -> Result<Vec<String>> {
        let argv = ["true".to_owned()];
        let name = format!("bootforge-doctor-{}", std::process::id());
        let step = StepCommand {
            tree,
            workdir: "",
            embed_dir: None,
            image: Some(image),
            argv: &argv,
            env: &[],
            name: &name,
            squashfs,
            stdin: false,
        };
        let (out, notices) = self.output_learning(&step, None)?;
        if !out.status.success() {
            bail!(
                "{} run: {}: {}",
                self.kind.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(notices)
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

/// Writes the learned flags beside their file and renames them over it: a reader never
/// sees half of them.
fn save_learned(file: &Path, args: &[String]) -> Result<()> {
    let dir = file
        .parent()
        .context("the learned-flags file has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(
        &mut tmp,
        &LearnedFile {
            run_args: args.to_vec(),
        },
    )?;
    tmp.persist(file)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The engines' own words, as seen on hosts like our CI machines.
    const RUNC_RLIMIT: &str = "Error: runc: runc create failed: unable to start container \
        process: error during container init: error setting rlimits for ready process: error \
        setting rlimit type 7: operation not permitted: OCI permission denied";
    const CRUN_RLIMIT: &str =
        "Error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied";
    const CRUN_HYBRID: &str = "Error: crun: cgroups in hybrid mode not supported, drop all the \
        cgroups mounted in \"/sys/fs/cgroup\": OCI runtime error";

    #[test]
    fn learns_each_known_fix_once_keeps_it_and_never_overrides_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engines/podman.json");
        let e = Executor::new(ExecutorKind::Podman, None, Some(file.clone()));
        assert!(e.run_args().is_empty());
        let learned = |r: Retry| matches!(r, Retry::Learned(_));
        assert_eq!(e.learn(&[], "make: *** [all] Error 2").unwrap(), Retry::No);
        let Retry::Learned(notice) = e.learn(&[], CRUN_HYBRID).unwrap() else {
            panic!("a fix")
        };
        assert!(notice.contains("--runtime runc"), "{notice}");
        // A run that started before the fix was adopted runs again, without a notice.
        assert_eq!(e.learn(&[], CRUN_HYBRID).unwrap(), Retry::Again);
        assert_eq!(e.learn(&e.run_args(), CRUN_HYBRID).unwrap(), Retry::No);
        assert!(learned(e.learn(&e.run_args(), CRUN_RLIMIT).unwrap()));
        assert_eq!(
            e.learn(&e.run_args(), RUNC_RLIMIT).unwrap(),
            Retry::No,
            "the same fix"
        );
        let want = [
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ];
        assert_eq!(e.run_args(), want);
        // Kept: a new process reads them back.
        let again = Executor::new(ExecutorKind::Podman, None, Some(file));
        assert_eq!(again.run_args(), want);

        let given = Executor::new(ExecutorKind::Podman, Some(vec![]), None);
        assert_eq!(given.learn(&[], RUNC_RLIMIT).unwrap(), Retry::No);
        assert!(given.run_args().is_empty());
        let host = Executor::new(ExecutorKind::Host, None, None);
        assert_eq!(host.learn(&[], RUNC_RLIMIT).unwrap(), Retry::No);
    }
}
