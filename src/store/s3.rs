//! An S3 bucket prefix (AWS, Garage, MinIO, s3s ...) as a store, through the AWS SDK and the
//! standard configuration chain: environment, profiles, `AWS_ENDPOINT_URL`. The SDK is
//! asynchronous; [`S3Store`] runs it on its own runtime, so callers stay synchronous and
//! may call it from many threads, and bounds the requests in flight to `Remote::parallel`.

use std::fmt::Display;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::sync::Semaphore;

use super::{Location, MAX_DOCUMENT, Object, ObjectKind, Remote, Storage};
use crate::base::progress::Progress;

/// Parts of a multipart upload; S3 needs at least 5 MiB for all but the last.
pub const PART_SIZE: u64 = 8 << 20;
/// Blobs larger than this go up in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;

/// A bucket prefix opened as a store.
pub struct S3Store {
    rt: tokio::runtime::Runtime,
    bucket: Bucket,
    location: Location,
}

impl S3Store {
    /// Loads the AWS configuration chain and checks that the bucket exists and is reachable,
    /// so a wrong endpoint, credential or bucket name fails before anything is sent.
    pub fn connect(
        location: Location,
        bucket: &str,
        prefix: &str,
        remote: &Remote,
    ) -> Result<S3Store> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let bucket = rt.block_on(Bucket::connect(bucket, prefix, remote))?;
        Ok(S3Store {
            rt,
            bucket,
            location,
        })
    }
}

impl Storage for S3Store {
    fn location(&self) -> &Location {
        &self.location
    }

    fn public_base(&self) -> Option<String> {
        Some(self.bucket.public_base.clone())
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        self.rt.block_on(self.bucket.head(key))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.rt.block_on(self.bucket.get(key))
    }

    fn parallel_ranges(&self) -> bool {
        true
    }

    fn read_into(&self, key: &str, offset: u64, limit: u64, w: &mut dyn Write) -> Result<u64> {
        self.rt
            .block_on(self.bucket.download(key, offset, limit, w))
    }

    fn put(&self, key: &str, bytes: Vec<u8>, kind: ObjectKind, create_only: bool) -> Result<bool> {
        self.rt
            .block_on(self.bucket.put(key, bytes, kind, create_only))
    }

    fn put_file(
        &self,
        key: &str,
        file: Arc<std::fs::File>,
        size: u64,
        kind: ObjectKind,
        progress: Arc<Progress>,
    ) -> Result<usize> {
        self.rt
            .block_on(self.bucket.put_file(key, file, size, kind, progress))
    }

    fn list(&self, prefix: &str) -> Result<Option<Vec<Object>>> {
        self.rt.block_on(self.bucket.list(prefix)).map(Some)
    }
}

/// A connected bucket, with the prefix everything lives under.
#[derive(Clone)]
struct Bucket {
    client: Client,
    bucket: String,
    prefix: String,
    /// What errors call the server: the endpoint URL, or "AWS S3 (REGION)".
    server: String,
    /// Where anonymous HTTPS readers find the prefix (for `os_list.json` URLs).
    public_base: String,
    /// Requests in flight at once, whoever sends them.
    permits: Arc<Semaphore>,
}

impl Bucket {
    async fn connect(bucket: &str, prefix: &str, remote: &Remote) -> Result<Bucket> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(RegionProviderChain::default_provider().or_else("us-east-1"))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if !remote.sdk_retries {
            loader = loader.retry_config(
                RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(500)),
            );
        }
        let shared = loader.load().await;
        let endpoint = shared.endpoint_url().map(str::to_owned);
        let region = shared
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        // Self-hosted servers are addressed by path; virtual hosts need DNS they rarely have.
        let path_style = remote.path_style.unwrap_or(endpoint.is_some());
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            // Older and self-hosted servers reject the SDK's default aws-chunked trailers;
            // integrity is ours to check anyway (every fetch verifies sha256).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let server = endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({region})"));
        let key_base = if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        };
        let public_base = match &endpoint {
            Some(e) if path_style => format!("{}/{bucket}{key_base}", e.trim_end_matches('/')),
            Some(e) => {
                let (scheme, host) = e.split_once("://").unwrap_or(("https", e));
                format!(
                    "{scheme}://{bucket}.{}{key_base}",
                    host.trim_end_matches('/')
                )
            }
            None => format!("https://{bucket}.s3.{region}.amazonaws.com{key_base}"),
        };
        let b = Bucket {
            client: Client::from_conf(config),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            server,
            public_base,
            permits: Arc::new(Semaphore::new(remote.parallel.max(1))),
        };
        b.probe().await?;
        Ok(b)
    }

    fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    fn url(&self, rel: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(rel))
    }

    async fn probe(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Err(self.no_bucket()),
            Err(e) => Err(self.explain(e, &format!("s3://{}", self.bucket))),
        }
    }

    fn no_bucket(&self) -> anyhow::Error {
        anyhow!(
            "bucket `{}` does not exist on {} (create it first, e.g. `aws s3 mb s3://{}`)",
            self.bucket,
            self.server,
            self.bucket
        )
    }

    /// The object's size, or `None` when it does not exist.
    async fn head(&self, rel: &str) -> Result<Option<u64>> {
        let _permit = self.permits.acquire().await?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(rel))
            .send()
            .await
        {
            Ok(o) => Ok(Some(o.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.explain(e, &self.url(rel))),
        }
    }

    /// A whole document (at most [`MAX_DOCUMENT`] bytes), or `None` when it does not exist.
    async fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let _permit = self.permits.acquire().await?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(rel))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(self.explain(e, &self.url(rel))),
        };
        let too_big = || {
            anyhow!(
                "{}: larger than {MAX_DOCUMENT} bytes, too large for a bootforge document",
                self.url(rel)
            )
        };
        if out
            .content_length()
            .is_some_and(|n| n as u64 > MAX_DOCUMENT)
        {
            return Err(too_big());
        }
        let mut body = out.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("reading {}", self.url(rel)))?;
            if (bytes.len() + chunk.len()) as u64 > MAX_DOCUMENT {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes))
    }

    /// Streams the object from byte `offset` into `w`, at most `limit` bytes (a server that
    /// sends more is an error, so it cannot fill the disk); returns the bytes written.
    async fn download(&self, rel: &str, offset: u64, limit: u64, w: &mut dyn Write) -> Result<u64> {
        let _permit = self.permits.acquire().await?;
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(rel));
        if offset > 0 || limit < u64::MAX {
            let last = offset.saturating_add(limit).saturating_sub(1);
            req = req.range(format!("bytes={offset}-{last}"));
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.explain(e, &self.url(rel)))?;
        let mut body = out.body;
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("downloading {}", self.url(rel)))?;
            n += chunk.len() as u64;
            if n > limit {
                return Err(over_limit(&self.url(rel), limit));
            }
            w.write_all(&chunk)?;
        }
        Ok(n)
    }

    /// Every object under `rel_prefix`, with keys relative to the location.
    async fn list(&self, rel_prefix: &str) -> Result<Vec<Object>> {
        let full = self.key(rel_prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.explain(e, &self.url(rel_prefix)))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(Object {
                    key: key.get(strip..).unwrap_or(key).to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: o.last_modified().map(|t| t.secs()),
                });
            }
        }
        Ok(out)
    }

    /// Writes a small object. With `create_only`, an object already there is left alone
    /// (sent as `If-None-Match: *`; servers that ignore it overwrite identical bytes, which is
    /// harmless for content-addressed keys). Returns whether it was written.
    async fn put(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        kind: ObjectKind<'_>,
        create_only: bool,
    ) -> Result<bool> {
        let _permit = self.permits.acquire().await?;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(rel))
            .content_type(kind.content_type)
            .cache_control(kind.cache_control())
            .content_length(bytes.len() as i64)
            .body(ByteStream::from(bytes));
        if create_only {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if create_only && status(&e) == Some(412) => Ok(false),
            Err(e) => Err(self.explain(e, &self.url(rel))),
        }
    }

    /// Uploads a blob from a file: in parts when it is large, else in one request. Returns
    /// the number of parts (0: one request).
    async fn put_file(
        &self,
        rel: &str,
        file: Arc<std::fs::File>,
        size: u64,
        kind: ObjectKind<'_>,
        progress: Arc<Progress>,
    ) -> Result<usize> {
        if size > MULTIPART_THRESHOLD {
            return self.put_multipart(rel, file, size, kind, progress).await;
        }
        let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut buf = vec![0u8; size as usize];
            file.read_exact_at(&mut buf, 0)?;
            Ok(buf)
        })
        .await??;
        // Not create-only: the caller writes because the object is missing or wrong (a
        // blob found corrupt, a size that does not match), and a repeated write of a
        // content address puts the same bytes.
        self.put(rel, bytes, kind, false).await?;
        progress.add(size);
        Ok(0)
    }

    /// Uploads a file in parts, up to the semaphore's permits at once, adding to `progress`.
    /// A failed upload is aborted (best effort) so the server can free its parts.
    async fn put_multipart(
        &self,
        rel: &str,
        file: Arc<std::fs::File>,
        size: u64,
        kind: ObjectKind<'_>,
        progress: Arc<Progress>,
    ) -> Result<usize> {
        let key = self.key(rel);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(kind.content_type)
            .cache_control(kind.cache_control())
            .send()
            .await
            .map_err(|e| self.explain(e, &self.url(rel)))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| anyhow!("{}: the server gave no upload id", self.url(rel)))?
            .to_owned();
        let result = self
            .upload_parts(rel, &upload_id, file, size, self.permits.clone(), progress)
            .await;
        match result {
            Ok(parts) => {
                let n = parts.len();
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| self.explain(e, &self.url(rel)))?;
                Ok(n)
            }
            Err(e) => {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        rel: &str,
        upload_id: &str,
        file: Arc<std::fs::File>,
        size: u64,
        permits: Arc<Semaphore>,
        progress: Arc<Progress>,
    ) -> Result<Vec<CompletedPart>> {
        let count = size.div_ceil(PART_SIZE).max(1);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            // Taking the permit before reading bounds memory to permits × PART_SIZE.
            let permit = permits.clone().acquire_owned().await?;
            let (this, file, progress) = (self.clone(), file.clone(), progress.clone());
            let (key, upload_id, url) = (self.key(rel), upload_id.to_owned(), self.url(rel));
            tasks.spawn(async move {
                let _permit = permit;
                let offset = i * PART_SIZE;
                let len = PART_SIZE.min(size - offset) as usize;
                let data = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, offset).map(|_| buf)
                })
                .await??;
                let number = (i + 1) as i32;
                let out = this
                    .client
                    .upload_part()
                    .bucket(&this.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(len as i64)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(|e| this.explain(e, &format!("{url} part {number}")))?;
                progress.add(len as u64);
                Ok::<_, anyhow::Error>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .build(),
                )
            });
        }
        let mut parts = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done? {
                Ok(p) => parts.push(p),
                Err(e) => {
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    /// Turns an SDK error into one that says what to do about it.
    fn explain<E>(&self, e: SdkError<E, HttpResponse>, what: &str) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = e.code().map(str::to_owned);
        let status = status(&e);
        let detail = DisplayErrorContext(&e);
        match (code.as_deref(), status) {
            (Some("NoSuchBucket"), _) => anyhow!(
                "{what}: bucket `{}` does not exist on {}",
                self.bucket,
                self.server
            ),
            (Some(c @ ("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")), _) => {
                denied(what, &self.server, c)
            }
            (_, Some(403)) => denied(what, &self.server, "403 Forbidden"),
            _ if matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) => anyhow!(
                "{what}: cannot reach {} after retries ({detail}); run the same command again \
                 when it is back: finished work is skipped",
                self.server
            ),
            _ => anyhow!("{what}: {detail}"),
        }
    }
}

/// A server that sends more than it said it holds.
pub fn over_limit(url: &str, limit: u64) -> anyhow::Error {
    anyhow!("{url}: the server sent more than the {limit} bytes expected; nothing more is written")
}

fn denied(what: &str, server: &str, why: impl Display) -> anyhow::Error {
    anyhow!(
        "{what}: access denied by {server} ({why}): check the credentials \
         (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the bucket policy"
    )
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}
