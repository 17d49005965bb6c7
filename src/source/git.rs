//! Git sources: a bare clone per URL in the store's `git/`, fetched only when the pinned
//! commit is missing, exported with `git archive` (so no `.git` reaches the build tree and
//! version strings cannot depend on checkout state).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::base::Digest;
use crate::store::Store;

fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("--git-dir").arg(repo);
    c.env("GIT_TERMINAL_PROMPT", "0");
    c
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: running git (is git installed?)"))?;
    if !out.status.success() {
        bail!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn has_commit(repo: &Path, rev: &str) -> bool {
    let mut c = git(repo);
    c.args(["cat-file", "-e", &format!("{rev}^{{commit}}")]);
    c.stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Makes sure the bare cache for `url` holds `rev`, fetching from `fetch_from` (the URL after
/// mirrors) if not. Returns the repository path.
pub fn ensure_commit(store: &Store, url: &str, fetch_from: &str, rev: &str) -> Result<PathBuf> {
    let id = Digest::of(url.as_bytes()).short(16);
    let repo = store.root().join("git").join(format!("{id}.git"));
    let _lock = store.lock_named(&format!("git-{id}"))?;
    if !repo.join("HEAD").exists() {
        let tmp = store.temp_dir("git-init-")?;
        let mut init = Command::new("git");
        init.args(["init", "--bare", "--quiet"]).arg(tmp.path());
        run(init, "creating the git cache")?;
        std::fs::rename(tmp.keep(), &repo)
            .with_context(|| format!("creating {}", repo.display()))?;
    }
    if has_commit(&repo, rev) {
        return Ok(repo);
    }
    eprintln!("fetching {rev} from {fetch_from}");
    // Asking for the commit itself is cheapest where the server allows it; otherwise fetch
    // every branch and tag and look again.
    let mut by_rev = git(&repo);
    by_rev.args(["fetch", "--quiet", "--no-tags", fetch_from, rev]);
    let direct = run(by_rev, "git fetch");
    if !has_commit(&repo, rev) {
        let mut all = git(&repo);
        all.args([
            "fetch",
            "--quiet",
            fetch_from,
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        ]);
        let fetched = run(all, "git fetch");
        if !has_commit(&repo, rev) {
            let why = fetched.err().or(direct.err()).map(|e| format!(": {e:#}"));
            bail!(
                "commit {rev} is not in {fetch_from}{} (for air-gapped use, point --mirror {url}=DIR at a local clone)",
                why.unwrap_or_default()
            );
        }
    }
    Ok(repo)
}

/// The commit time of `rev`, the default SOURCE_DATE_EPOCH.
pub fn commit_time(repo: &Path, rev: &str) -> Result<i64> {
    let mut c = git(repo);
    c.args(["show", "-s", "--format=%ct", rev]);
    let out = run(c, "reading the commit time")?;
    out.parse()
        .with_context(|| format!("unexpected commit time `{out}` for {rev}"))
}

/// Writes the tree of `rev` into `dest`.
pub fn export(repo: &Path, rev: &str, dest: &Path) -> Result<()> {
    let mut c = git(repo);
    c.args(["archive", "--format=tar", rev])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().context("running git archive")?;
    let stdout = child.stdout.take().expect("piped");
    let unpacked = super::archive::unpack_tar(stdout, 0, dest);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "git archive {rev}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    unpacked.context("unpacking git archive")
}
