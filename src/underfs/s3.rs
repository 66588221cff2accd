//! Amazon S3 (and S3-compatible stores) as under-storage: `s3://bucket/prefix`.
//!
//! S3 has objects, not files: no append, no flush, no rename. The [`UnderFs`] contract is
//! met like this:
//! - `create(p)` puts an empty object `p` with `If-None-Match: *`, so two creators of the
//!   same path cannot both succeed (`AlreadyExists` for the second).
//! - Each `sync` of a writer uploads the bytes written since the last sync as the next
//!   *part* object `p.tachyon-parts/<n>`, again with `If-None-Match: *`: a group commit of
//!   the journal is one object, and two writers can never both write the same part.
//! - `read(p)` is object `p` followed by its parts in order. Parts become visible in the
//!   order they were synced (S3 is strongly read-after-write consistent), so a reader sees
//!   a prefix of what was synced, never a hole.
//! - `rename(a, b)` reads `a`, puts `b` in one object with `If-None-Match: *` (no clobber),
//!   then deletes `a` and its parts. Not atomic: after a crash between the two steps both
//!   names exist with the same bytes, which the journal tolerates (see ARCHITECTURE.md).
//! - Directories are implied by key prefixes; `mkdirs` leaves a `dir/` marker object so an
//!   empty directory lists, as Hadoop's S3A does.
//!
//! Credentials come from configuration and are never printed: [`UnderFs::describe`] shows
//! only the bucket and prefix.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::{UfsWriter, UnderFs, UnderStorageEntry};

/// Suffix of the folder that holds a file's synced parts.
const PARTS_SUFFIX: &str = ".tachyon-parts";
/// Most keys asked for in one list request (S3's own maximum).
const LIST_PAGE_KEYS: i32 = 1000;
/// Most list pages followed for one directory: 10 million keys.
const MAX_LIST_PAGES: usize = 10_000;
/// Most parts one file may have (one per sync); a journal segment of 10 MB written one
/// small batch at a time stays far below.
const MAX_PARTS: u64 = 99_999_999;
/// Longest one S3 request may take, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach S3: endpoint, region, addressing style and credentials.
#[derive(Clone, Default)]
pub struct S3Options {
    /// `http(s)://host:port` of an S3-compatible server; `None` for AWS itself.
    pub endpoint: Option<String>,
    /// Region name; S3-compatible servers accept any.
    pub region: String,
    /// `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key`.
    pub path_style: bool,
    /// Access key id.
    pub access_key: Option<String>,
    /// Secret key; never logged or printed.
    pub secret_key: Option<String>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key.as_ref().map(|_| "******"))
            .field("secret_key", &self.secret_key.as_ref().map(|_| "******"))
            .finish()
    }
}

/// Under-storage in an S3 bucket, below a key prefix.
pub struct S3UnderFs {
    client: Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
}

impl S3UnderFs {
    /// Opens `s3://bucket/prefix` (the bucket must exist).
    pub fn new(uri: &str, options: &S3Options) -> io::Result<Self> {
        let rest = uri.strip_prefix("s3://").or_else(|| uri.strip_prefix("s3a://")).ok_or_else(|| invalid(format!("{uri:?} is not an s3:// address")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid(format!("{uri:?} names no bucket (expected s3://bucket/prefix)")));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let (Some(access_key), Some(secret_key)) = (&options.access_key, &options.secret_key) else {
            return Err(invalid(format!("{uri}: no S3 credentials: set s3a.accessKeyId and s3a.secretKey (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")));
        };
        let http = match &options.endpoint {
            Some(e) if e.starts_with("http://") => aws_smithy_http_client::Builder::new().build_http(),
            _ => aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring))
                .build_https(),
        };
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder().operation_timeout(OPERATION_TIMEOUT).build();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(if options.region.is_empty() { "us-east-1".to_string() } else { options.region.clone() }))
            .force_path_style(options.path_style)
            .credentials_provider(Credentials::new(access_key, secret_key, None, None, "tachyon-configuration"))
            .timeout_config(timeouts)
            .http_client(http);
        if let Some(endpoint) = &options.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(S3UnderFs { client: Client::from_conf(config.build()), bucket: bucket.to_string(), prefix })
    }

    fn key(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path.trim_matches('/'))
    }

    /// Puts `data` at `key`; with `exclusive`, only if no object is there yet.
    async fn put(&self, key: &str, data: Vec<u8>, exclusive: bool) -> io::Result<()> {
        let mut req = self.client.put_object().bucket(&self.bucket).key(key).body(ByteStream::from(data));
        if exclusive {
            req = req.if_none_match("*");
        }
        req.send().await.map_err(|e| s3_error("put", &self.bucket, key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        let out = self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(|e| s3_error("get", &self.bucket, key, e))?;
        let body = out.body.collect().await.map_err(|e| io::Error::other(format!("s3 get {}/{key}: reading the body: {e}", self.bucket)))?;
        Ok(body.into_bytes().to_vec())
    }

    /// Keys (with sizes) and sub-prefixes directly below `prefix` (which ends with `/`),
    /// every page.
    async fn list_prefix(&self, prefix: &str) -> io::Result<(Vec<(String, u64)>, Vec<String>)> {
        let (mut keys, mut dirs) = (Vec::new(), Vec::new());
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter("/")
                .max_keys(LIST_PAGE_KEYS)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_error("list", &self.bucket, prefix, e))?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(|k| (k.to_string(), o.size().unwrap_or(0).max(0) as u64))));
            dirs.extend(out.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_string)));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok((keys, dirs)),
            }
        }
        Err(io::Error::other(format!("s3 list {}/{prefix}: more than {MAX_LIST_PAGES} pages", self.bucket)))
    }

    /// The part keys of a file, in order.
    async fn parts(&self, key: &str) -> io::Result<Vec<String>> {
        let (parts, _) = self.list_prefix(&format!("{key}{PARTS_SUFFIX}/")).await?;
        let mut parts: Vec<String> = parts.into_iter().map(|(k, _)| k).collect();
        parts.sort();
        Ok(parts)
    }

    async fn delete_key(&self, key: &str) -> io::Result<()> {
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(|e| s3_error("delete", &self.bucket, key, e))?;
        Ok(())
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn part_key(key: &str, n: u64) -> String {
    format!("{key}{PARTS_SUFFIX}/{n:08}")
}

/// Maps an S3 error to an `io::Error` whose kind callers branch on: `AlreadyExists` for a
/// failed `If-None-Match`, `NotFound` for a missing key. Never includes credentials.
fn s3_error<E>(op: &str, bucket: &str, key: &str, err: SdkError<E, HttpResponse>) -> io::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let kind = match (err.code(), status) {
        (Some("PreconditionFailed" | "ConditionalRequestConflict"), _) | (_, Some(412)) => io::ErrorKind::AlreadyExists,
        (Some("NoSuchBucket"), _) => io::ErrorKind::Other,
        (Some("NoSuchKey" | "NotFound"), _) | (_, Some(404)) => io::ErrorKind::NotFound,
        (Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"), _) | (_, Some(403)) => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("s3 {op} s3://{bucket}/{key}: {}", DisplayErrorContext(&err)))
}

/// A file being written: bytes since the last sync, and the next part number.
struct S3Writer {
    client: Client,
    bucket: String,
    key: String,
    pending: Vec<u8>,
    next_part: u64,
}

#[async_trait]
impl UfsWriter for S3Writer {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(data);
        Ok(())
    }

    async fn sync(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.next_part > MAX_PARTS {
            return Err(io::Error::other(format!("s3://{}/{}: more than {MAX_PARTS} syncs of one file", self.bucket, self.key)));
        }
        let key = part_key(&self.key, self.next_part);
        let body = ByteStream::from(std::mem::take(&mut self.pending));
        let sent = self.client.put_object().bucket(&self.bucket).key(&key).body(body).if_none_match("*").send().await;
        sent.map_err(|e| s3_error("put part", &self.bucket, &key, e))?;
        self.next_part += 1;
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> io::Result<()> {
        self.sync().await
    }
}

#[async_trait]
impl UnderFs for S3UnderFs {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
    }

    async fn create(&self, path: &str) -> io::Result<Box<dyn UfsWriter>> {
        let key = self.key(path);
        self.put(&key, Vec::new(), true).await?;
        Ok(Box::new(S3Writer { client: self.client.clone(), bucket: self.bucket.clone(), key, pending: Vec::new(), next_part: 0 }))
    }

    async fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let key = self.key(path);
        let mut data = self.get(&key).await?;
        for part in self.parts(&key).await? {
            data.extend_from_slice(&self.get(&part).await?);
        }
        Ok(data)
    }

    async fn read_range(&self, path: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let key = self.key(path);
        if len == 0 || !self.parts(&key).await?.is_empty() {
            // Still being written in parts (rare for a range read): read it whole.
            return Ok(super::slice_range(&self.read(path).await?, offset, len).to_vec());
        }
        let range = format!("bytes={}-{}", offset, offset.saturating_add(len) - 1);
        let out = self.client.get_object().bucket(&self.bucket).key(&key).range(range).send().await;
        let out = match out {
            Ok(o) => o,
            // Asking past the end of an object: nothing there.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => return Ok(Vec::new()),
            Err(e) => return Err(s3_error("get range", &self.bucket, &key, e)),
        };
        let body = out.body.collect().await.map_err(|e| io::Error::other(format!("s3 get {}/{key}: reading the body: {e}", self.bucket)))?;
        Ok(body.into_bytes().to_vec())
    }

    async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        Ok(self.list_status(dir).await?.into_iter().map(|e| e.name).collect())
    }

    async fn list_status(&self, dir: &str) -> io::Result<Vec<UnderStorageEntry>> {
        let dir = dir.trim_matches('/');
        let prefix = if dir.is_empty() { self.prefix.clone() } else { format!("{}/", self.key(dir)) };
        let (mut keys, dirs) = self.list_prefix(&prefix).await?;
        // A file written in several syncs is its object plus its parts: its length is the sum.
        for parts_dir in dirs.iter().filter(|d| d.trim_end_matches('/').ends_with(PARTS_SUFFIX)) {
            let file_key = parts_dir.trim_end_matches('/').trim_end_matches(PARTS_SUFFIX);
            let (parts, _) = self.list_prefix(parts_dir).await?;
            if let Some((_, size)) = keys.iter_mut().find(|(k, _)| k == file_key) {
                *size += parts.iter().map(|(_, part_size)| part_size).sum::<u64>();
            }
        }
        let files = keys.into_iter().map(|(k, size)| (k, false, size));
        let dirs = dirs.into_iter().map(|k| (k, true, 0));
        let mut entries: Vec<UnderStorageEntry> = files
            .chain(dirs)
            .filter_map(|(key, is_directory, length)| {
                let name = key.strip_prefix(prefix.as_str())?.trim_end_matches('/');
                // A directory marker lists itself with an empty name; part folders are not files.
                (!name.is_empty() && !name.ends_with(PARTS_SUFFIX)).then(|| UnderStorageEntry { name: name.to_string(), is_directory, length })
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        // A name can be both an object and a prefix (a file `a` and a folder `a/`): keep one.
        entries.dedup_by(|a, b| a.name == b.name);
        Ok(entries)
    }

    async fn file_length(&self, path: &str) -> io::Result<Option<u64>> {
        // The file's own key as the prefix: the object, its parts folder, and any longer
        // names that start the same; never the whole directory.
        let key = self.key(path);
        let (keys, dirs) = self.list_prefix(&key).await?;
        let Some(size) = keys.iter().find(|(k, _)| *k == key).map(|(_, size)| *size) else { return Ok(None) };
        let parts_dir = format!("{key}{PARTS_SUFFIX}/");
        let parts: u64 = match dirs.contains(&parts_dir) {
            true => self.list_prefix(&parts_dir).await?.0.iter().map(|(_, size)| size).sum(),
            false => 0,
        };
        Ok(Some(size + parts))
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let data = self.read(from).await?;
        self.put(&self.key(to), data, true).await?;
        self.delete(from).await
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        let key = self.key(path);
        // Parts first: a file never has parts without its object.
        for part in self.parts(&key).await? {
            self.delete_key(&part).await?;
        }
        self.delete_key(&key).await
    }

    async fn mkdirs(&self, path: &str) -> io::Result<()> {
        if path.trim_matches('/').is_empty() {
            return Ok(());
        }
        self.put(&format!("{}/", self.key(path)), Vec::new(), false).await
    }

    async fn delete_empty_dir(&self, path: &str) -> io::Result<()> {
        if path.trim_matches('/').is_empty() {
            return Ok(());
        }
        let key = self.key(path);
        // Only the marker goes: a directory is implied by its keys, so an empty one is just
        // its marker, and a non-empty one is refused like elsewhere.
        if !self.list(path).await?.is_empty() {
            return Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, format!("s3://{}/{key}: directory not empty", self.bucket)));
        }
        self.delete_key(&format!("{key}/")).await
    }
}
