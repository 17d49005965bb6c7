//! Running one tool in a toolchain, outside any recipe's steps: how `embed` remakes
//! compressed images with a build's own tool and `package` signs for Secure Boot.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::Settings;
use super::toolchain::{self, Toolchain};
use crate::base::executor::Retry;
use crate::recipe::LoadedRecipe;

/// Runs `argv` in `recipe`'s toolchain (its image, the host for `--executor host`) on the
/// files in `tree`, with no network, and returns what it wrote to stdout: how `embed`
/// remakes compressed images with a build's own tool, without knowing about containers.
pub fn run_tool(
    settings: &Settings,
    recipe: &LoadedRecipe,
    tree: &Path,
    argv: &[String],
) -> Result<Vec<u8>> {
    let toolchain = match toolchain::resolve(recipe, &settings.store, &settings.executor)? {
        Ok(t) => t,
        Err(_) => bail!("recipe {}: its toolchain is not built", recipe.name),
    };
    run_in(settings, &toolchain, tree, None, argv)
}

/// Runs `argv` in `toolchain` on the files in `tree` (the working directory, writable),
/// with `stdin` as its standard input (for what must not be written to any disk, such as
/// a signing key). No network; returns stdout, and stderr in the error when it fails.
pub fn run_in(
    settings: &Settings,
    toolchain: &Toolchain,
    tree: &Path,
    stdin: Option<&[u8]>,
    argv: &[String],
) -> Result<Vec<u8>> {
    use std::io::Write;
    use std::process::Stdio;
    let (store, executor) = (&settings.store, &settings.executor);
    let squashfs = toolchain::ensure_image(toolchain, settings)?;
    let mount = match squashfs {
        Some(_) => Some(store.temp_dir("rootfs-")?),
        None => None,
    };
    let env = [
        ("TZ".to_owned(), "UTC".to_owned()),
        ("LC_ALL".to_owned(), "C".to_owned()),
    ];
    let name = format!("bootforge-tool-{}", std::process::id());
    let image = match toolchain {
        Toolchain::Host => None,
        t => t.image(),
    };
    loop {
        let used = executor.run_args();
        let mut command = executor.command(&crate::base::executor::StepCommand {
            tree,
            workdir: "",
            embed_dir: None,
            image,
            argv,
            env: &env,
            name: &name,
            squashfs: squashfs.as_deref().zip(mount.as_ref().map(|m| m.path())),
            stdin: stdin.is_some(),
        });
        let mut child = command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", argv.join(" ")))?;
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            // A tool that exits early closes the pipe; its exit status says why.
            let _ = pipe.write_all(bytes);
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("running {}", argv.join(" ")))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The engine would not start the container: nothing ran, so a retry is safe.
        match executor.learn(&used, &stderr)? {
            Retry::No => {}
            Retry::Again => continue,
            Retry::Learned(notice) => {
                crate::base::progress::say(&notice);
                continue;
            }
        }
        bail!("`{}` {}: {}", argv.join(" "), out.status, stderr.trim());
    }
}
