//! Where a store lives: a local directory (`./cache`, `/srv/bootforge`), `s3://BUCKET[/PREFIX]`
//! (read and write) or `https://HOST/PATH` (a public bucket or any web server mirroring one;
//! read only).

use std::fmt;
use std::path::PathBuf;

use anyhow::{Result, bail};

/// A parsed store location (`--store`, `--to`, `--from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local { path: PathBuf },
    S3 { bucket: String, prefix: String },
    Https { base: String },
}

impl Location {
    /// Parses a location, naming what is wrong with a bad one. A local directory is written
    /// as a path that says so (`/…`, `./…`, `../…` or `file://…`), so that `bucket/prefix`
    /// without its `s3://` is an error rather than a directory of that name.
    pub fn parse(s: &str) -> Result<Location> {
        let expected = "expected s3://BUCKET[/PREFIX], https://HOST[/PATH] or a directory \
                        (/PATH, ./PATH)";
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Location::local(path));
        }
        if s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || s == "." {
            return Ok(Location::local(s));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !valid_bucket(bucket) {
                bail!(
                    "bad location `{s}`: `{bucket}` is not a bucket name (3-63 characters of \
                     a-z, 0-9, '.', '-'); {expected}"
                );
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..")
                || prefix.contains("//")
                || prefix.chars().any(|c| c.is_control())
            {
                bail!("bad location `{s}`: the prefix `{prefix}` has an empty, `.` or `..` part");
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            let url = ureq::http::Uri::try_from(s)
                .map_err(|e| anyhow::anyhow!("bad location `{s}`: {e}; {expected}"))?;
            if url.host().is_none_or(str::is_empty) {
                bail!("bad location `{s}`: no host; {expected}");
            }
            if url.query().is_some() {
                bail!("bad location `{s}`: a query string cannot be a base URL; {expected}");
            }
            return Ok(Location::Https {
                base: s.trim_end_matches('/').to_owned(),
            });
        }
        bail!("bad location `{s}`: {expected}")
    }

    /// A local directory.
    pub fn local(path: impl Into<PathBuf>) -> Location {
        Location::Local { path: path.into() }
    }

    /// The key (or URL path) of `rel` under this location.
    pub fn key(&self, rel: &str) -> String {
        match self {
            Location::Local { path } => path.join(rel).display().to_string(),
            Location::S3 { prefix, .. } if prefix.is_empty() => rel.to_owned(),
            Location::S3 { prefix, .. } => format!("{prefix}/{rel}"),
            Location::Https { base } => format!("{base}/{rel}"),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local { path } => write!(f, "{}", path.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Location::Https { base } => f.write_str(base),
        }
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_and_https() {
        assert_eq!(
            Location::parse("s3://bootforge/lab/").unwrap(),
            Location::S3 {
                bucket: "bootforge".into(),
                prefix: "lab".into()
            }
        );
        let l = Location::parse("s3://bootforge").unwrap();
        assert_eq!(l.key("index.json"), "index.json");
        assert_eq!(l.to_string(), "s3://bootforge");
        assert_eq!(
            Location::parse("./cache").unwrap(),
            Location::local("./cache")
        );
        assert_eq!(
            Location::parse("file:///srv/store").unwrap(),
            Location::local("/srv/store")
        );
        let h = Location::parse("https://boot.example/lab/").unwrap();
        assert_eq!(h.key("index.json"), "https://boot.example/lab/index.json");
    }

    #[test]
    fn refuses_bad_locations() {
        for (bad, says) in [
            ("bootforge/lab", "expected s3://"),
            ("cache", "or a directory (/PATH, ./PATH)"),
            ("s3://Boot_Forge/x", "not a bucket name"),
            ("s3://ab", "not a bucket name"),
            ("s3://bucket/a/../b", "`..`"),
            ("https:///x", "bad location"),
            ("ftp://x/y", "expected s3://"),
        ] {
            let e = Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
