//! Settings, resolved once: command-line flags win, then environment variables, then
//! `bootforge.yaml`, then defaults. Stages receive the result and read no environment of
//! their own (the AWS SDK's standard chain, `AWS_*`, is the one exception, and it is the
//! SDK's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::base::executor::{Executor, ExecutorKind};
use crate::recipe::parse_yaml;
use crate::source::Mirrors;
use crate::store::{Location, Remote, layout};

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
    /// Extra `podman run`/`docker run` arguments; when set (even to `[]`), bootforge never
    /// adds flags of its own.
    pub container_args: Option<Vec<String>>,
    /// The shared store, as `--remote` takes it.
    pub remote: Option<String>,
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

/// What the command line said (clap has already applied the variables that stand for
/// flags, such as `BOOTFORGE_STORE` for `--store`).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub store: Option<PathBuf>,
    pub executor: Option<ExecutorKind>,
    pub mirrors: Vec<(String, String)>,
    pub recipes: Option<PathBuf>,
    pub jobs: Option<usize>,
    /// Requests in flight at once against a bucket (`publish --parallel`).
    pub parallel: Option<usize>,
    /// `--remote` (or `BOOTFORGE_REMOTE`).
    pub shared: Option<Location>,
    /// `--no-build`.
    pub no_build: bool,
}

/// Everything a stage may be told, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub store: PathBuf,
    pub executor: Executor,
    pub mirrors: Mirrors,
    pub recipes: PathBuf,
    /// Value of `{jobs}`; not part of any action key.
    pub jobs: usize,
    /// How buckets are reached.
    pub remote: Remote,
    /// The store other machines share, if any.
    pub shared: Option<Location>,
    /// Run nothing here: every result comes from a store.
    pub no_build: bool,
    /// The password of an encrypted signing key (`BOOTFORGE_KEY_PASSWORD`).
    pub key_password: Option<String>,
    /// The Debian mirror debootstrap uses for toolchains (`BOOTFORGE_DEBIAN_MIRROR`).
    pub debian_mirror: Option<String>,
}

/// The environment variables bootforge reads, each in one place: here.
pub mod env {
    pub const CONTAINER_ARGS: &str = "BOOTFORGE_CONTAINER_ARGS";
    pub const S3_PATH_STYLE: &str = "BOOTFORGE_S3_PATH_STYLE";
    pub const KEY_PASSWORD: &str = "BOOTFORGE_KEY_PASSWORD";
    pub const DEBIAN_MIRROR: &str = "BOOTFORGE_DEBIAN_MIRROR";
    /// The AWS SDK's own retry setting: when set, bootforge keeps the SDK's retries.
    pub const AWS_MAX_ATTEMPTS: &str = "AWS_MAX_ATTEMPTS";
}

impl Config {
    /// Resolves flags over `var` (the environment) over `file` over defaults.
    pub fn resolve(
        flags: &Flags,
        var: impl Fn(&str) -> Option<String>,
        file: &ConfigFile,
    ) -> Result<Config> {
        // Flags first: for the same prefix, the first one wins.
        let mut mirrors = flags.mirrors.clone();
        mirrors.extend(file.mirrors.clone());
        let given_args = match var(env::CONTAINER_ARGS) {
            Some(s) => Some(
                shell_words::split(&s)
                    .with_context(|| format!("{} is not valid shell words", env::CONTAINER_ARGS))?,
            ),
            None => file.container_args.clone(),
        };
        let path_style = match var(env::S3_PATH_STYLE).as_deref() {
            None | Some("") => None,
            Some("1" | "true") => Some(true),
            Some("0" | "false") => Some(false),
            Some(other) => bail!(
                "{}=`{other}`: expected 1, true, 0 or false",
                env::S3_PATH_STYLE
            ),
        };
        let jobs = flags.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let store = flags
            .store
            .clone()
            .or(file.store.clone())
            .unwrap_or_else(|| PathBuf::from("cache"));
        let kind = flags
            .executor
            .or(file.executor)
            .unwrap_or(ExecutorKind::Podman);
        let learn_in = store.join(layout::engine_flags(kind.name()));
        Ok(Config {
            executor: Executor::new(kind, given_args, Some(learn_in)),
            store,
            mirrors: Mirrors::new(mirrors),
            recipes: flags
                .recipes
                .clone()
                .or(file.recipes.clone())
                .unwrap_or_else(|| PathBuf::from("recipes")),
            jobs,
            remote: Remote {
                path_style,
                sdk_retries: var(env::AWS_MAX_ATTEMPTS).is_some(),
                parallel: flags.parallel.unwrap_or(8),
            },
            shared: match (&flags.shared, &file.remote) {
                (Some(l), _) => Some(l.clone()),
                (None, Some(s)) => Some(Location::parse(s).context("bootforge.yaml: remote")?),
                (None, None) => None,
            },
            no_build: flags.no_build,
            key_password: var(env::KEY_PASSWORD),
            debian_mirror: var(env::DEBIAN_MIRROR),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> ConfigFile {
        ConfigFile::parse(
            Path::new("bootforge.yaml"),
            "store: /from/file\nexecutor: docker\nrecipes: file-recipes\n\
             mirrors:\n  https://a/: /file/a/\ncontainer_args: [--from-file]\nremote: /file/shared\n",
        )
        .unwrap()
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn flags_win_over_the_environment_over_the_file_over_defaults() {
        let none = Config::resolve(&Flags::default(), vars(&[]), &ConfigFile::default()).unwrap();
        assert_eq!(none.store, PathBuf::from("cache"));
        assert_eq!(none.recipes, PathBuf::from("recipes"));
        assert_eq!(none.executor.kind, ExecutorKind::Podman);
        assert!(none.executor.given_args.is_none());
        assert_eq!(
            none.executor.learned_file(),
            Some(PathBuf::from("cache/engines/podman.json"))
        );
        assert_eq!(none.remote.path_style, None);
        assert!(!none.remote.sdk_retries);

        let from_file = Config::resolve(&Flags::default(), vars(&[]), &file()).unwrap();
        assert_eq!(from_file.store, PathBuf::from("/from/file"));
        assert_eq!(from_file.executor.kind, ExecutorKind::Docker);
        assert_eq!(from_file.executor.run_args(), ["--from-file"]);
        assert_eq!(from_file.mirrors.apply("https://a/x"), "/file/a/x");

        let env = vars(&[
            (env::CONTAINER_ARGS, "--runtime runc"),
            (env::S3_PATH_STYLE, "0"),
            (env::AWS_MAX_ATTEMPTS, "2"),
            (env::KEY_PASSWORD, "pw"),
        ]);
        let from_env = Config::resolve(&Flags::default(), env, &file()).unwrap();
        assert_eq!(from_env.executor.run_args(), ["--runtime", "runc"]);
        assert_eq!(from_env.remote.path_style, Some(false));
        assert!(from_env.remote.sdk_retries);
        assert_eq!(from_env.key_password.as_deref(), Some("pw"));

        let flags = Flags {
            store: Some("/from/flag".into()),
            executor: Some(ExecutorKind::Host),
            mirrors: vec![("https://a/".into(), "/flag/a/".into())],
            recipes: Some("flag-recipes".into()),
            jobs: Some(3),
            parallel: Some(2),
            shared: Some(Location::local("/flag/shared")),
            no_build: true,
        };
        let from_flags = Config::resolve(&flags, vars(&[]), &file()).unwrap();
        assert_eq!(from_flags.store, PathBuf::from("/from/flag"));
        assert_eq!(from_flags.executor.kind, ExecutorKind::Host);
        assert_eq!(from_flags.recipes, PathBuf::from("flag-recipes"));
        assert_eq!(from_flags.jobs, 3);
        assert!(from_flags.no_build);
        assert_eq!(from_flags.mirrors.apply("https://a/x"), "/flag/a/x");
        assert_eq!(from_flags.remote.parallel, 2);
        assert_eq!(from_flags.shared, Some(Location::local("/flag/shared")));
        assert_eq!(from_file.shared, Some(Location::local("/file/shared")));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = Config::resolve(
            &Flags::default(),
            vars(&[(env::S3_PATH_STYLE, "maybe")]),
            &ConfigFile::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "BOOTFORGE_S3_PATH_STYLE=`maybe`: expected 1, true, 0 or false"
        );
    }
}
