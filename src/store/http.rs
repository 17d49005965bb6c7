//! A store read over plain HTTP(S): a public bucket, a CDN, any web server holding a copy of
//! the layout. Read only, and not listable.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::s3::over_limit;
use super::{Location, MAX_DOCUMENT, Object, ObjectKind, Storage};
use crate::base::progress::Progress;

/// Transient failures are retried this many times, with doubling waits.
const ATTEMPTS: u32 = 4;

/// An HTTPS base URL opened as a store.
pub struct HttpStore {
    location: Location,
    base: String,
    agent: ureq::Agent,
}

impl HttpStore {
    pub fn new(location: Location, base: &str) -> HttpStore {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        HttpStore {
            location,
            base: base.to_owned(),
            agent,
        }
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    /// GET from `offset`; `None` on 404. A server that ignores the range is an error, since
    /// appending its whole body would corrupt the file.
    fn fetch(&self, key: &str, offset: u64, limit: u64, w: &mut dyn Write) -> Result<Option<u64>> {
        let url = self.url(key);
        let resp = retry(&url, || {
            let mut req = self.agent.get(&url);
            if offset > 0 {
                req = req.header("Range", format!("bytes={offset}-"));
            }
            req.call()
        })?;
        match resp.status().as_u16() {
            200 if offset == 0 => {}
            206 => {}
            200 => bail!("{url}: the server ignored the Range request; delete the .part file"),
            404 => return Ok(None),
            s => return Err(http_error(&url, s)),
        }
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = body
                .read(&mut buf)
                .with_context(|| format!("downloading {url}"))?;
            if k == 0 {
                break;
            }
            n += k as u64;
            if n > limit {
                return Err(over_limit(&url, limit));
            }
            w.write_all(&buf[..k])?;
        }
        Ok(Some(n))
    }

    fn read_only(&self) -> anyhow::Error {
        anyhow!(
            "{} is read-only: HTTPS locations serve a store, they cannot be written; write to \
             s3://BUCKET/PREFIX or a directory",
            self.location
        )
    }
}

impl Storage for HttpStore {
    fn location(&self) -> &Location {
        &self.location
    }

    fn public_base(&self) -> Option<String> {
        Some(self.base.clone())
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let url = self.url(key);
        let resp = retry(&url, || self.agent.head(&url).call())?;
        match resp.status().as_u16() {
            200 => Ok(resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            404 => Ok(None),
            s => Err(http_error(&url, s)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        Ok(self.fetch(key, 0, MAX_DOCUMENT, &mut out)?.map(|_| out))
    }

    fn read_into(&self, key: &str, offset: u64, limit: u64, w: &mut dyn Write) -> Result<u64> {
        self.fetch(key, offset, limit, w)?
            .ok_or_else(|| anyhow!("{}: not found (HTTP 404)", self.url(key)))
    }

    fn put(&self, _: &str, _: Vec<u8>, _: ObjectKind, _: bool) -> Result<bool> {
        Err(self.read_only())
    }

    fn put_file(
        &self,
        _: &str,
        _: Arc<std::fs::File>,
        _: u64,
        _: ObjectKind,
        _: Arc<Progress>,
    ) -> Result<usize> {
        Err(self.read_only())
    }

    fn list(&self, _: &str) -> Result<Option<Vec<Object>>> {
        Ok(None)
    }
}

fn http_error(url: &str, status: u16) -> anyhow::Error {
    if status == 403 {
        anyhow!(
            "{url}: HTTP 403 Forbidden: the bucket is not readable anonymously; make it public \
             or use s3://BUCKET/PREFIX with credentials"
        )
    } else {
        anyhow!("{url}: HTTP {status}")
    }
}

fn retry<T>(url: &str, mut f: impl FnMut() -> Result<T, ureq::Error>) -> Result<T> {
    let mut wait = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS => {
                eprintln!("{url}: {e}; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait *= 2;
                attempt += 1;
            }
            Err(e) => return Err(anyhow!("{url}: {e} (after {attempt} attempts)")),
        }
    }
}
