//! Settings from the config file, environment and flags, merged once (flags win, then the
//! environment, then the file, then defaults).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::build::executor::ExecutorKind;
use crate::recipe::parse_yaml;

/// The config file name looked for in the current directory.
pub const CONFIG_FILE: &str = "bootforge.yaml";

/// `bootforge.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub store: Option<PathBuf>,
    pub executor: Option<ExecutorKind>,
    pub recipes: Option<PathBuf>,
    /// URL prefix → replacement, as `--mirror FROM=TO`.
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    /// Extra `podman run`/`docker run` arguments.
    #[serde(default)]
    pub container_args: Vec<String>,
}

impl ConfigFile {
    /// Reads `explicit`, or `./bootforge.yaml` when present, or nothing.
    pub fn load(explicit: Option<&Path>) -> Result<ConfigFile> {
        let path = match explicit {
            Some(p) => p.to_owned(),
            None if Path::new(CONFIG_FILE).is_file() => PathBuf::from(CONFIG_FILE),
            None => return Ok(ConfigFile::default()),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading config {}", path.display()))?;
        ConfigFile::parse(&path, &text)
    }

    /// Parses `text` as the config file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile> {
        Ok(parse_yaml(path, text)?)
    }
}

/// Parses `FROM=TO`.
pub fn parse_mirror(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => Ok((from.into(), to.into())),
        _ => bail!(
            "--mirror `{s}`: expected FROM=TO, e.g. https://github.com/ipxe/ipxe.git=/srv/ipxe.git"
        ),
    }
}

/// Parses `KEY=VALUE`.
pub fn parse_set(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => bail!("--set `{s}`: expected KEY=VALUE"),
    }
}

/// Container arguments from `BOOTFORGE_CONTAINER_ARGS` (shell words), else the file.
pub fn container_args(file: &ConfigFile) -> Result<Vec<String>> {
    match std::env::var("BOOTFORGE_CONTAINER_ARGS") {
        Ok(s) => {
            shell_words::split(&s).context("BOOTFORGE_CONTAINER_ARGS is not valid shell words")
        }
        Err(_) => Ok(file.container_args.clone()),
    }
}
