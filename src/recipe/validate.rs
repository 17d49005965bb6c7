//! The checks a recipe must pass after parsing, each error pointing at the offending line
//! and field (see [`super::error`]).

use std::collections::BTreeSet;

use anyhow::Result;

use super::{
    BUILTIN_VARS, LoadedRecipe, Source, ToolchainRef, is_plain_relative, placeholder, placeholders,
};

impl LoadedRecipe {
    /// Every check, in the order a reader of the file meets the fields.
    pub(super) fn validate(&self) -> Result<()> {
        self.check_source_and_toolchain()?;
        self.check_files()?;
        self.check_placeholder()?;
        self.check_outputs()?;
        self.check_steps()
    }

    /// `epoch` where the source has no time of its own; the path and the toolchain exist.
    fn check_source_and_toolchain(&self) -> Result<()> {
        let r = &self.recipe;
        if r.epoch.is_none() && !matches!(r.source, Source::Git { .. }) {
            return Err(self.error(
                "source:",
                "epoch",
                "`epoch` (SOURCE_DATE_EPOCH) is required unless the source is git, whose \
                 commit time is the default"
                    .into(),
            ));
        }
        if let Source::Path { path } = &r.source
            && !self.resolve(path).is_dir()
        {
            return Err(self.error(
                path,
                "source.path",
                format!("{} is not a directory", self.resolve(path).display()),
            ));
        }
        if r.toolchain.is_none() && !r.steps.is_empty() {
            return Err(self.error(
                "steps:",
                "toolchain",
                "a recipe with steps needs a `toolchain` (a spec name or an image pinned by digest)".into(),
            ));
        }
        if let Some(ToolchainRef::Spec(name)) = &r.toolchain {
            let spec = self.toolchain_spec_path(name);
            if !spec.is_file() {
                return Err(self.error(
                    "toolchain:",
                    "toolchain",
                    format!("no toolchain spec {}", spec.display()),
                ));
            }
        }
        Ok(())
    }

    /// Patches, trusted certificates and the embedded script exist.
    fn check_files(&self) -> Result<()> {
        let r = &self.recipe;
        for (i, p) in r.patches.iter().enumerate() {
            if !self.resolve(p).is_file() {
                return Err(self.error(
                    p,
                    &format!("patches[{i}]"),
                    format!("patch {} does not exist", self.resolve(p).display()),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in r.trust.iter().enumerate() {
            let field = format!("trust[{i}]");
            let path = self.resolve(t);
            let checked = std::fs::read(&path)
                .map_err(|e| format!("CA certificate {}: {e}", path.display()))
                .and_then(|pem| {
                    check_ca_pem(&pem).map_err(|why| format!("{}: {why}", path.display()))
                });
            if let Err(why) = checked {
                return Err(self.error(t, &field, why));
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if !name.as_ref().is_some_and(|n| names.insert(n.clone())) {
                return Err(self.error(
                    t,
                    &field,
                    format!(
                        "two trusted certificates are named {}",
                        name.unwrap_or_default()
                    ),
                ));
            }
        }
        if !r.trust.is_empty() && !self.uses_trust() {
            return Err(self.error(
                "trust:",
                "trust",
                "certificates are given but no step uses `{trust}` (iPXE: \
                 `TRUST={trust}` and `CERT={trust}` in its make command)"
                    .into(),
            ));
        }
        if let Some(e) = &r.embed
            && !self.resolve(e).is_file()
        {
            return Err(self.error(
                e,
                "embed",
                format!(
                    "embedded script {} does not exist",
                    self.resolve(e).display()
                ),
            ));
        }
        Ok(())
    }

    /// A placeholder of useful capacity, repacking outputs the recipe has, a template.
    fn check_placeholder(&self) -> Result<()> {
        let r = &self.recipe;
        if let Some(p) = &r.placeholder {
            if r.embed.is_some() {
                return Err(self.error(
                    "placeholder:",
                    "placeholder",
                    "give either `embed` or `placeholder`, not both".into(),
                ));
            }
            if p.capacity < placeholder::MIN_CAPACITY {
                return Err(self.error(
                    "capacity:",
                    "placeholder.capacity",
                    format!("must be at least {} bytes", placeholder::MIN_CAPACITY),
                ));
            }
            for (i, rp) in p.repack.iter().enumerate() {
                for (field, name) in [("output", &rp.output), ("patch", &rp.patch)] {
                    if !r.outputs.contains(name) {
                        return Err(self.error(
                            name,
                            &format!("placeholder.repack[{i}].{field}"),
                            format!("`{name}` is not one of the recipe's outputs"),
                        ));
                    }
                }
                if rp.run.is_empty() {
                    return Err(self.error(
                        "run:",
                        &format!("placeholder.repack[{i}].run"),
                        "is empty".into(),
                    ));
                }
            }
            if !self.resolve(&p.template).is_file() {
                return Err(self.error(
                    &p.template,
                    "placeholder.template",
                    format!(
                        "template {} does not exist",
                        self.resolve(&p.template).display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A plain workdir, and at least one output, each a plain relative path, none twice.
    fn check_outputs(&self) -> Result<()> {
        let r = &self.recipe;
        if let Some(w) = &r.workdir
            && !is_plain_relative(w)
        {
            return Err(self.error(
                w,
                "workdir",
                "must be a relative path inside the source tree".into(),
            ));
        }
        if r.outputs.is_empty() {
            return Err(self.error(
                "outputs:",
                "outputs",
                "a recipe needs at least one output".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, o) in r.outputs.iter().enumerate() {
            let field = format!("outputs[{i}]");
            if !is_plain_relative(o) {
                return Err(self.error(
                    o,
                    &field,
                    format!("`{o}` must be a relative path inside the build tree"),
                ));
            }
            if !seen.insert(o) {
                return Err(self.error(o, &field, format!("`{o}` is listed twice")));
            }
        }
        Ok(())
    }

    /// Steps with arguments, known variables only, `{targets}` alone, good globs.
    fn check_steps(&self) -> Result<()> {
        let r = &self.recipe;
        for (i, step) in r.steps.iter().enumerate() {
            if step.run.is_empty() {
                return Err(self.error("run:", &format!("steps[{i}].run"), "is empty".into()));
            }
            for (j, arg) in step.run.iter().enumerate() {
                let field = format!("steps[{i}].run[{j}]");
                let vars = placeholders(arg).map_err(|m| self.error(arg, &field, m))?;
                for v in vars {
                    if !BUILTIN_VARS.contains(&v.as_str()) && !r.vars.contains_key(&v) {
                        let mut known: Vec<&str> = BUILTIN_VARS.to_vec();
                        known.extend(r.vars.keys().map(String::as_str));
                        return Err(self.error(
                            &format!("{{{v}}}"),
                            &field,
                            format!(
                                "unknown variable `{{{v}}}`; declare it under `vars:` (known: {})",
                                known.join(", ")
                            ),
                        ));
                    }
                    if v == "targets" && arg != "{targets}" {
                        return Err(self.error(
                            arg,
                            &field,
                            "`{targets}` expands to several arguments, so it must stand alone"
                                .into(),
                        ));
                    }
                }
            }
            for (j, g) in step.targets.iter().flatten().enumerate() {
                if let Err(e) = glob::Pattern::new(g) {
                    return Err(self.error(
                        g,
                        &format!("steps[{i}].targets[{j}]"),
                        format!("bad glob: {e}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A PEM file holding one or more X.509 certificates (iPXE's TRUST= takes each file's
/// fingerprint with `openssl x509`, so the first must be the CA).
fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    let (_, first) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|_| "not a PEM certificate".to_owned())?;
    if first.label != "CERTIFICATE" {
        return Err(format!(
            "holds a PEM `{}`, not a `CERTIFICATE` (give the CA's certificate, never a key)",
            first.label
        ));
    }
    first
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(())
}
