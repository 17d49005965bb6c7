//! Reading a published store, wherever it is: an S3 bucket (with credentials) or plain
//! HTTPS (a public bucket, a CDN, any web server holding a copy).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::runtime::Runtime;

use super::location::Location;
use super::release::MAX_DOCUMENT;
use super::s3::{Bucket, Object, over_limit};

/// A published store opened for reading.
pub enum Remote {
    S3 { rt: Runtime, bucket: Bucket },
    Https { base: String, agent: ureq::Agent },
}

/// Transient HTTPS failures are retried this many times, with doubling waits.
const HTTPS_ATTEMPTS: u32 = 4;

impl Remote {
    /// Opens `loc`; for S3 this checks the bucket is reachable.
    pub fn open(loc: &Location) -> Result<Remote> {
        match loc {
            Location::S3 { bucket, prefix } => {
                let rt = runtime()?;
                let bucket = rt.block_on(Bucket::connect(bucket, prefix))?;
                Ok(Remote::S3 { rt, bucket })
            }
            Location::Https { base } => {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_connect(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                Ok(Remote::Https {
                    base: base.clone(),
                    agent,
                })
            }
        }
    }

    /// The document at `rel` (at most [`MAX_DOCUMENT`] bytes), or `None` when it does not
    /// exist.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Remote::S3 { rt, bucket } => rt.block_on(bucket.get(rel)),
            Remote::Https { .. } => {
                let mut out = Vec::new();
                match self.https_get(rel, 0, MAX_DOCUMENT, &mut out)? {
                    Some(_) => Ok(Some(out)),
                    None => Ok(None),
                }
            }
        }
    }

    /// The object's size, or `None` when it does not exist.
    pub fn head(&self, rel: &str) -> Result<Option<u64>> {
        match self {
            Remote::S3 { rt, bucket } => rt.block_on(bucket.head(rel)),
            Remote::Https { base, agent } => {
                let url = format!("{base}/{rel}");
                let resp = retry(&url, || agent.head(&url).call())?;
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
        }
    }

    /// Streams the object from byte `offset` into `w`, at most `limit` bytes; returns the
    /// bytes written.
    pub fn download(&self, rel: &str, offset: u64, limit: u64, w: &mut dyn Write) -> Result<u64> {
        match self {
            Remote::S3 { rt, bucket } => rt.block_on(bucket.download(rel, offset, limit, w)),
            Remote::Https { base, .. } => self
                .https_get(rel, offset, limit, w)?
                .ok_or_else(|| anyhow!("{base}/{rel}: not found (HTTP 404)")),
        }
    }

    /// Objects under `rel_prefix`; only a bucket can be listed.
    pub fn list(&self, rel_prefix: &str) -> Result<Option<Vec<Object>>> {
        match self {
            Remote::S3 { rt, bucket } => rt.block_on(bucket.list(rel_prefix)).map(Some),
            Remote::Https { .. } => Ok(None),
        }
    }

    /// GET from `offset`; `None` on 404. A server that ignores the range is an error, since
    /// appending its whole body would corrupt the file.
    fn https_get(
        &self,
        rel: &str,
        offset: u64,
        limit: u64,
        w: &mut dyn Write,
    ) -> Result<Option<u64>> {
        let Remote::Https { base, agent } = self else {
            unreachable!("https_get on a bucket")
        };
        let url = format!("{base}/{rel}");
        let resp = retry(&url, || {
            let mut req = agent.get(&url);
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
    for attempt in 1.. {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if attempt < HTTPS_ATTEMPTS => {
                eprintln!("{url}: {e}; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait *= 2;
            }
            Err(e) => return Err(anyhow!("{url}: {e} (after {attempt} attempts)")),
        }
    }
    unreachable!()
}

/// The runtime the S3 client runs on.
pub fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
