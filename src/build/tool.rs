//! Running one tool in a toolchain, outside any recipe's steps: how `embed` remakes
//! compressed images with a build's own tool and `package` signs for Secure Boot.

use std::path::Path;

use anyhow::{Result, bail};

use super::Settings;
use super::toolchain::{self, Toolchain};
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
    let step = crate::base::executor::StepCommand {
        tree,
        workdir: "",
        embed_dir: None,
        image,
        argv,
        env: &env,
        name: &name,
        squashfs: squashfs.as_deref().zip(mount.as_ref().map(|m| m.path())),
        stdin: stdin.is_some(),
    };
    let (out, notices) = executor.output_learning(&step, stdin)?;
    for n in &notices {
        crate::base::progress::say(n);
    }
    if !out.status.success() {
        bail!(
            "`{}` {}: {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}
