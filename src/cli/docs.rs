//! The CLI describing itself: shell completions (clap_complete) and manual pages
//! (clap_mangen), both made from the same clap definition as `--help`, so they cannot drift.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

use super::Cli;

/// Writes the completion script for `shell` to `w`.
pub fn completions(shell: clap_complete::Shell, w: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "bootforge", w);
}

/// Writes bootforge(1) to `w`.
pub fn man_page(w: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    render(&cmd, w)
}

/// Writes one page per command (bootforge.1, bootforge-build.1, bootforge-cache-gc.1, …)
/// into `dir`, which is created; returns the files written, in order.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, dir, &mut written)?;
    Ok(written)
}

fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let path = dir.join(Man::new(cmd.clone()).get_filename());
    let mut page = Vec::new();
    render(cmd, &mut page)?;
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

/// clap_mangen's page, with the `--help` examples as an EXAMPLES section before VERSION
/// (clap_mangen would title them EXTRA and reflow them, which breaks the command lines).
fn render(cmd: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
    let Some(after) = cmd.get_after_help().map(|a| a.to_string()) else {
        return Man::new(cmd.clone()).render(w);
    };
    let mut page = Vec::new();
    Man::new(cmd.clone().after_help(None::<&str>)).render(&mut page)?;
    let page = String::from_utf8(page).expect("clap_mangen writes UTF-8");
    let body = after.strip_prefix("Examples:\n").unwrap_or(&after);
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]).control("nf", []);
    for line in body.lines() {
        roff.text([roman(line.strip_prefix("  ").unwrap_or(line))]);
    }
    roff.control("fi", []);
    // The apostrophe preamble is already at the top of the page.
    let examples = roff.render();
    let examples = examples.splitn(3, '\n').nth(2).unwrap_or_default();
    let at = page.find("\n.SH VERSION").map_or(page.len(), |i| i + 1);
    write!(w, "{}{examples}{}", &page[..at], &page[at..])
}
