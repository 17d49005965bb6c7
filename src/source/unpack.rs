//! Writing archive entries into a build tree so that nothing can land outside it.
//!
//! Every path is opened relative to the tree's directory handle (cap-std: `openat` with the
//! resolution kept beneath the tree), so even a mistake in the checks below cannot write on
//! the host. The checks themselves give the clear refusals: a symbolic link must resolve
//! inside the tree (following the links already there, as the kernel would), a hard link
//! must name an earlier entry, and devices, FIFOs and unknown entry kinds are refused.
//! setuid, setgid and sticky bits are cleared. Once every entry is written, every link is
//! resolved again against the finished tree, since a later entry can change where an
//! earlier link leads.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};

/// Links followed while resolving one path, as Linux's `ELOOP` limit.
const MAX_LINK_HOPS: usize = 40;

/// Link targets longer than this are refused (PATH_MAX).
pub const MAX_LINK_TARGET: usize = 4096;

/// The most an archive may unpack to. No boot loader's source comes near it (GRUB 2.12 is
/// 70 MB); it stops a runaway or hostile archive (a sparse entry claiming a terabyte)
/// before it fills the store's disk.
pub const MAX_UNPACKED: u64 = 16 << 30;

/// An archive entry that bootforge will not unpack; the whole source is refused.
#[derive(Debug)]
pub struct Refused {
    /// The entry's name as the archive spells it.
    pub entry: String,
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry `{}` {}", self.entry, self.why)
    }
}

impl std::error::Error for Refused {}

/// Refuses `entry` for `why`.
pub fn refuse(entry: &Path, why: impl Into<String>) -> anyhow::Error {
    Refused {
        entry: entry.display().to_string(),
        why: why.into(),
    }
    .into()
}

/// What an absolute symbolic link target means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsoluteLinks {
    /// Refused: in a source tarball it names the host's files.
    Refuse,
    /// A path in the archive's own root (a `.deb` is a filesystem image rooted at `/`):
    /// rewritten as the relative link to the same place in the tree.
    PackageRoot,
}

/// A build tree being filled from an archive.
pub struct Tree {
    dir: Dir,
    strip: usize,
    absolute: AbsoluteLinks,
    /// Directories known to be real directories (created or seen), never replaced.
    dirs: HashSet<PathBuf>,
    /// Every link made, with the entry that made it, for the final check.
    links: Vec<(PathBuf, String)>,
    /// Directory modes, applied last so a read-only directory can still be filled.
    dir_modes: Vec<(PathBuf, u32)>,
    /// File content bytes written so far, and the most that may be.
    written: u64,
    limit: u64,
}

impl Tree {
    /// Opens the (existing, empty) directory `dest`; `strip` leading components are dropped
    /// from every entry name.
    pub fn open(dest: &Path, strip: u32, absolute: AbsoluteLinks) -> Result<Tree> {
        let dir = Dir::open_ambient_dir(dest, ambient_authority())
            .with_context(|| format!("opening {}", dest.display()))?;
        Ok(Tree {
            dir,
            strip: strip as usize,
            absolute,
            dirs: HashSet::from([PathBuf::new()]),
            links: Vec::new(),
            dir_modes: Vec::new(),
            written: 0,
            limit: MAX_UNPACKED,
        })
    }

    /// Lowers the limit on the bytes unpacked (from [`MAX_UNPACKED`]).
    pub fn limit(mut self, bytes: u64) -> Tree {
        self.limit = bytes;
        self
    }

    /// The tree path of an archive entry name: plain relative components only, `strip`
    /// of them dropped; `None` when nothing is left (the top directory itself).
    pub fn place(&self, name: &Path) -> Result<Option<PathBuf>> {
        let parts = plain_components(name)
            .ok_or_else(|| refuse(name, "has an absolute or `..` path, outside the build tree"))?;
        let rest: PathBuf = parts.into_iter().skip(self.strip).collect();
        Ok((!rest.as_os_str().is_empty()).then_some(rest))
    }

    /// A directory entry.
    pub fn dir(&mut self, name: &Path, mode: u32) -> Result<()> {
        let Some(rel) = self.place(name)? else {
            return Ok(());
        };
        self.ensure_dir(name, &rel)?;
        // Always the owner's to enter and clear, so the tree can be removed afterwards.
        self.dir_modes.push((rel, mode & 0o777 | 0o700));
        Ok(())
    }

    /// A regular file entry with its content.
    pub fn file(
        &mut self,
        name: &Path,
        mode: u32,
        mtime: Option<u64>,
        r: &mut dyn Read,
    ) -> Result<()> {
        let Some(rel) = self.place(name)? else {
            return Ok(());
        };
        self.clear_slot(name, &rel)?;
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        let f = self
            .dir
            .open_with(&rel, &opts)
            .with_context(|| format!("creating {}", rel.display()))?;
        let mut f = f.into_std();
        let room = self.limit - self.written;
        let n = io::copy(&mut r.take(room + 1), &mut f)
            .with_context(|| format!("writing {}", rel.display()))?;
        if n > room {
            return Err(refuse(
                name,
                format!("takes the archive past {} bytes unpacked", self.limit),
            ));
        }
        self.written += n;
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
        // Build systems compare mtimes (autotools tarballs ship generated files that must
        // stay newer than their inputs). A time past what the clock can hold is left out.
        if let Some(t) =
            mtime.and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        {
            f.set_modified(t)
                .with_context(|| format!("setting the time of {}", rel.display()))?;
        }
        Ok(())
    }

    /// A symbolic link entry.
    pub fn symlink(&mut self, name: &Path, target: &Path) -> Result<()> {
        let Some(rel) = self.place(name)? else {
            return Err(refuse(
                name,
                "is a symbolic link in place of the top directory",
            ));
        };
        if target.as_os_str().len() > MAX_LINK_TARGET || target.as_os_str().is_empty() {
            return Err(refuse(
                name,
                "is a symbolic link with an empty or over-long target",
            ));
        }
        let target = match (target.has_root(), self.absolute) {
            (false, _) => target.to_owned(),
            (true, AbsoluteLinks::Refuse) => {
                return Err(refuse(
                    name,
                    format!(
                        "is a symbolic link to the absolute path `{}`, outside the build tree",
                        target.display()
                    ),
                ));
            }
            (true, AbsoluteLinks::PackageRoot) => relative_to_root(name, target)
                .ok_or_else(|| refuse(name, "is a symbolic link with a malformed target"))?,
        };
        self.check_link(&rel, &target).map_err(|why| {
            refuse(
                name,
                format!("is a symbolic link to `{}`, which {why}", target.display()),
            )
        })?;
        self.clear_slot(name, &rel)?;
        self.dir
            .symlink(&target, &rel)
            .with_context(|| format!("creating the link {}", rel.display()))?;
        self.links.push((rel, name.display().to_string()));
        Ok(())
    }

    /// A hard link entry naming `target`, an earlier entry of the same archive.
    pub fn hard_link(&mut self, name: &Path, target: &Path) -> Result<()> {
        let Some(rel) = self.place(name)? else {
            return Err(refuse(name, "is a hard link in place of the top directory"));
        };
        let Some(to) = plain_components(target)
            .map(|p| p.into_iter().skip(self.strip).collect::<PathBuf>())
            .filter(|p| !p.as_os_str().is_empty())
        else {
            return Err(refuse(
                name,
                format!(
                    "is a hard link to `{}`, outside the build tree",
                    target.display()
                ),
            ));
        };
        match self.dir.symlink_metadata(&to) {
            Ok(m) if m.is_file() => {}
            _ => {
                return Err(refuse(
                    name,
                    format!(
                        "is a hard link to `{}`, which is no file unpacked before it",
                        target.display()
                    ),
                ));
            }
        }
        self.check_parents(name, &to)?;
        self.clear_slot(name, &rel)?;
        self.dir
            .hard_link(&to, &self.dir, &rel)
            .with_context(|| format!("linking {} to {}", rel.display(), to.display()))?;
        Ok(())
    }

    /// Checks the finished tree: every link still resolves inside it (a later entry can
    /// redirect a link made earlier); then applies directory modes.
    pub fn finish(self) -> Result<()> {
        for (rel, entry) in &self.links {
            let target = self
                .dir
                .read_link_contents(rel)
                .with_context(|| format!("reading the link {}", rel.display()))?;
            self.check_link(rel, &target).map_err(|why| {
                anyhow::Error::from(Refused {
                    entry: entry.clone(),
                    why: format!(
                        "is a symbolic link to `{}`, which {why} once the whole archive is unpacked",
                        target.display()
                    ),
                })
            })?;
        }
        use std::os::unix::fs::PermissionsExt;
        for (rel, mode) in self.dir_modes.iter().rev() {
            self.dir
                .set_permissions(
                    rel,
                    cap_std::fs::Permissions::from_std(std::fs::Permissions::from_mode(*mode)),
                )
                .with_context(|| format!("setting the mode of {}", rel.display()))?;
        }
        Ok(())
    }

    /// Makes `rel` a real directory, creating missing parents; never through a link that
    /// leaves the tree.
    fn ensure_dir(&mut self, name: &Path, rel: &Path) -> Result<()> {
        if self.dirs.contains(rel) {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.ensure_dir(name, parent)?;
        }
        match self.dir.symlink_metadata(rel) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.is_symlink() => {
                let target = self.dir.read_link_contents(rel)?;
                self.check_link(rel, &target).map_err(|why| {
                    refuse(
                        name,
                        format!(
                            "would be written through `{}`, a link that {why}",
                            rel.display()
                        ),
                    )
                })?;
                // Inside the tree: the kernel follows it, and cap-std keeps it beneath.
                return Ok(());
            }
            Ok(_) => {
                return Err(refuse(
                    name,
                    format!(
                        "needs `{}` to be a directory, but an earlier entry made it a file",
                        rel.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.dir
                    .create_dir(rel)
                    .with_context(|| format!("creating {}", rel.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("inspecting {}", rel.display())),
        }
        self.dirs.insert(rel.to_owned());
        Ok(())
    }

    fn check_parents(&mut self, name: &Path, rel: &Path) -> Result<()> {
        match rel.parent() {
            Some(parent) => self.ensure_dir(name, parent),
            None => Ok(()),
        }
    }

    /// Makes way for a new file or link at `rel`: its parents exist, and an earlier file or
    /// link of the same name is removed (an archive's later entry wins, as with tar). A
    /// directory is never replaced.
    fn clear_slot(&mut self, name: &Path, rel: &Path) -> Result<()> {
        self.check_parents(name, rel)?;
        if self.dirs.contains(rel) {
            return Err(refuse(name, "would replace a directory unpacked before it"));
        }
        match self.dir.symlink_metadata(rel) {
            Ok(m) if m.is_dir() => {
                Err(refuse(name, "would replace a directory unpacked before it"))
            }
            Ok(_) => self
                .dir
                .remove_file(rel)
                .with_context(|| format!("replacing {}", rel.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("inspecting {}", rel.display())),
        }
    }

    /// Resolves a link at `rel` to (relative) `target` as the kernel would, through the
    /// links already in the tree; says why when that leaves the tree.
    fn check_link(&self, rel: &Path, target: &Path) -> Result<(), String> {
        let mut at: Vec<OsString> = rel
            .parent()
            .map(|p| p.iter().map(OsString::from).collect())
            .unwrap_or_default();
        let mut queue: VecDeque<OsString> = link_parts(target).ok_or("is absolute")?.into();
        let mut hops = 0;
        while let Some(part) = queue.pop_front() {
            if part == ".." {
                if at.pop().is_none() {
                    return Err("climbs out of the build tree".into());
                }
                continue;
            }
            at.push(part);
            let here: PathBuf = at.iter().collect();
            if !self
                .dir
                .symlink_metadata(&here)
                .is_ok_and(|m| m.is_symlink())
            {
                continue;
            }
            hops += 1;
            if hops > MAX_LINK_HOPS {
                return Err("goes through too many levels of symbolic links".into());
            }
            let next = self
                .dir
                .read_link_contents(&here)
                .map_err(|e| format!("cannot be followed through `{}`: {e}", here.display()))?;
            let spliced = link_parts(&next).ok_or_else(|| {
                format!(
                    "leads through `{}`, a link to an absolute path",
                    here.display()
                )
            })?;
            at.pop();
            for p in spliced.into_iter().rev() {
                queue.push_front(p);
            }
        }
        Ok(())
    }
}

/// A link target's components (`..` kept as such), or `None` when it is absolute.
fn link_parts(target: &Path) -> Option<Vec<OsString>> {
    let mut out = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(n) => out.push(n.to_owned()),
            Component::ParentDir => out.push(OsString::from("..")),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// The components of a relative path with no `..`, or `None`.
fn plain_components(path: &Path) -> Option<Vec<&std::ffi::OsStr>> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts)
}

/// The relative link from the entry `name` to `target`, an absolute path in the archive's
/// own root. `..` in the target is resolved lexically, as at `/` (where `/..` is `/`).
fn relative_to_root(name: &Path, target: &Path) -> Option<PathBuf> {
    let from: Vec<&std::ffi::OsStr> = plain_components(name)?;
    let from = &from[..from.len().saturating_sub(1)];
    let mut to: Vec<&std::ffi::OsStr> = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(p) => to.push(p),
            Component::ParentDir => {
                to.pop();
            }
            Component::CurDir | Component::RootDir => {}
            Component::Prefix(_) => return None,
        }
    }
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for p in &to[common..] {
        out.push(p);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Some(out)
}
