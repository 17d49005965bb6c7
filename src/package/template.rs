//! Chainload script templates (`embed/*.j2`), rendered with minijinja. Undefined variables
//! are errors that name the variable, the template and what to pass.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

/// Renders the template at `path` with `vars`.
pub fn render(path: &Path, vars: &BTreeMap<String, String>) -> Result<String> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("reading template {}", path.display()))?;
    let name = path.display().to_string();
    let mut env = Environment::new();
    // Printing an undefined variable fails; `{% if x %}` on one is allowed, so templates
    // can have optional settings.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    // Block tags on their own lines leave no blank lines behind: scripts stay readable.
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("valid syntax config");
    env.set_syntax(syntax);
    env.add_filter("grub_url", grub_url);
    env.add_filter("ipxe_query", ipxe_query);
    env.add_template(&name, &source)
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    let tmpl = env.get_template(&name).expect("just added");
    match tmpl.render(vars) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == ErrorKind::UndefinedError => {
            let missing = required_missing(&tmpl, vars);
            bail!(
                "{}: {} not set; pass --set {}=... (set: {})",
                describe(&e),
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                missing.first().map(String::as_str).unwrap_or("NAME"),
                if vars.is_empty() {
                    "nothing".to_owned()
                } else {
                    vars.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )
        }
        Err(e) => bail!("{}", describe(&e)),
    }
}

/// The unset variables the template cannot do without: those whose absence still fails the
/// render when every other unset variable is given a value. Optional ones (only tested with
/// `if`, or given a `default`) are left out.
fn required_missing(
    tmpl: &minijinja::Template<'_, '_>,
    vars: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut unset: Vec<String> = tmpl
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !vars.contains_key(v))
        .collect();
    unset.sort();
    unset
        .iter()
        .filter(|candidate| {
            let mut probe = vars.clone();
            for other in unset.iter().filter(|o| o != candidate) {
                // URL-shaped, so filters such as grub_url accept it.
                probe.insert(other.clone(), "http://bootforge.invalid/x".into());
            }
            matches!(tmpl.render(&probe), Err(e) if e.kind() == ErrorKind::UndefinedError)
        })
        .cloned()
        .collect()
}

fn describe(e: &minijinja::Error) -> String {
    match (e.name(), e.line()) {
        (Some(name), Some(line)) => format!("{name}:{line}: {}", e.kind()),
        _ => e.to_string(),
    }
}

/// `http://host:port/path` → `(http,host:port)/path`, GRUB's device syntax for a URL.
fn grub_url(url: String) -> Result<String, minijinja::Error> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("grub_url: `{url}` is not an http:// or tftp:// URL"),
        )
    })?;
    if scheme != "http" && scheme != "tftp" {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("grub_url: GRUB fetches over http or tftp, not {scheme}"),
        ));
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok(format!("({scheme},{host})/{path}"))
}

/// What iPXE tells the chain URL about the machine, in iPXE's setting syntax: expanded by
/// iPXE in a script's `chain` line and in a DHCP boot file name alike, so the chain script
/// and the DHCP snippets (for an iPXE that is not ours, such as a NIC ROM) ask with the
/// same query.
pub const IPXE_QUERY: &str = "mac=${net0/mac:hexhyp}&platform=${platform}&arch=${buildarch}";

/// `url` with [`IPXE_QUERY`] appended (`?` or `&`, as `url` already has a query or not).
fn ipxe_query(url: String) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{IPXE_QUERY}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_str(src: &str, vars: &[(&str, &str)]) -> Result<String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.j2");
        std::fs::write(&p, src).unwrap();
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        render(&p, &vars)
    }

    #[test]
    fn renders_and_keeps_the_trailing_newline() {
        let out = render_str("chain {{ chain_url }}\n", &[("chain_url", "http://x/")]).unwrap();
        assert_eq!(out, "chain http://x/\n");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = render_str("a\nchain {{ chain_url }}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.j2:2"), "{err}");
        assert!(err.contains(": `chain_url` not set"), "{err}");
        assert!(err.contains("--set chain_url="), "{err}");
    }

    #[test]
    fn only_required_variables_are_reported() {
        let src = "{% if fallback_url %}{{ fallback_url }}{% endif %}{{ chain_url }}";
        let err = render_str(src, &[]).unwrap_err().to_string();
        assert!(err.contains(": `chain_url` not set"), "{err}");
        assert!(!err.contains("fallback_url"), "{err}");
    }

    #[test]
    fn optional_variables_can_be_tested() {
        let src = "{% if fallback_url %}fb {{ fallback_url }}{% endif %}ok";
        assert_eq!(render_str(src, &[]).unwrap(), "ok");
    }

    #[test]
    fn shipped_templates_render_within_capacity() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut vars = BTreeMap::new();
        vars.insert(
            "chain_url".to_owned(),
            "http://boot.example/boot.ipxe".to_owned(),
        );
        let ipxe = render(&root.join("embed/chain.ipxe.j2"), &vars).unwrap();
        assert!(ipxe.starts_with("#!ipxe\n"), "{ipxe}");
        assert!(
            ipxe.contains("chain --autofree http://boot.example/boot.ipxe?mac=${net0/mac:hexhyp}&platform=${platform}&arch=${buildarch} && exit ||"),
            "{ipxe}"
        );
        assert!(
            !ipxe.contains("failed, trying"),
            "no fallback unless set: {ipxe}"
        );
        assert!(ipxe.len() < 2048, "{} bytes", ipxe.len());
        vars.insert(
            "chain_url".to_owned(),
            "http://10.0.2.2:8080/grub.cfg".to_owned(),
        );
        let grub = render(&root.join("embed/grub.cfg.j2"), &vars).unwrap();
        assert!(
            grub.contains("configfile (http,10.0.2.2:8080)/grub.cfg?mac=${net_default_mac}"),
            "{grub}"
        );
        assert!(grub.len() < 2048);
    }

    #[test]
    fn grub_url_filter() {
        let out = render_str(
            "{{ u | grub_url }}",
            &[("u", "http://10.0.2.2:8080/boot/grub.cfg")],
        );
        assert_eq!(out.unwrap(), "(http,10.0.2.2:8080)/boot/grub.cfg");
        assert!(render_str("{{ u | grub_url }}", &[("u", "ftp://x/")]).is_err());
    }

    #[test]
    fn ipxe_query_filter() {
        let out = render_str("{{ u | ipxe_query }}", &[("u", "http://h/boot")]).unwrap();
        assert_eq!(out, format!("http://h/boot?{IPXE_QUERY}"));
        let out = render_str("{{ u | ipxe_query }}", &[("u", "http://h/b?sb=1")]).unwrap();
        assert_eq!(out, format!("http://h/b?sb=1&{IPXE_QUERY}"));
    }
}
