//! `tachyon proxy`: an S3-compatible gateway over the namespace (the `s3s` crate speaks the
//! protocol and checks SigV4 signatures; this module maps operations to the client
//! library). Buckets are the top-level directories, an object key is the path below its
//! bucket, and a key ending in `/` is a directory.
//!
//! Nothing half-written is ever visible: an upload (PUT, a copy, a completed multipart
//! upload) is written to a staging file under `/.tachyon-s3/` and renamed into place once
//! complete; multipart parts wait under `/.tachyon-s3/uploads/<upload id>/`. A sweeper
//! deletes what stopped gateways and crashed clients leave there: complete staging files
//! never renamed, and uploads that got no part for `tachyon.proxy.s3.multipart.upload.expiry`.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result, S3};

use crate::client::{CreateOptions, FileSystem};
use crate::error::FsError;
use crate::proto::FileInfo;

mod listing;
use listing::{DirectoryPages, ListRequest};

/// Where the gateway keeps its staging files and multipart uploads (not a bucket: bucket
/// names never start with a dot).
const WORK_DIR: &str = "/.tachyon-s3";
/// Most keys a listing page holds (S3's limit).
const MAX_KEYS: usize = 1000;
/// Longest object key, in bytes (S3's limit).
const MAX_KEY_BYTES: usize = 1024;
/// Blocks a GET reads ahead of the bytes being sent.
const GET_AHEAD_CHUNKS: usize = 2;
/// A complete staging file this old was left by a gateway that stopped between completing
/// it and renaming it into place (the rename follows the completion at once).
const ORPHAN_STAGING_AGE_MS: i64 = 10 * 60 * 1000;
/// How often a gateway looks for such files (and for expired uploads, at least twice per
/// expiry period).
const STAGING_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// The shortest time between two sweeps.
const MIN_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How the gateway is reached and who may use it.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    pub bind: SocketAddr,
    /// SigV4 credentials clients must sign with; `None` accepts unsigned requests.
    pub credentials: Option<(String, String)>,
    pub tls: Option<crate::tls::TlsConfig>,
    /// A multipart upload that got no part for this long is aborted (more than 0).
    pub multipart_expiry_ms: u64,
}

/// The S3 operations over a tachyon client.
#[derive(Clone)]
pub struct TachyonS3 {
    fs: FileSystem,
}

impl std::fmt::Debug for TachyonS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TachyonS3")
    }
}

/// The S3 error for a tachyon error; `missing` is the code for "not found" (NoSuchKey,
/// NoSuchBucket, NoSuchUpload). Retryable failures are 503s, which S3 clients retry.
fn s3_err(e: FsError, missing: S3ErrorCodeKind) -> S3Error {
    let message = e.to_string();
    let code = match &e {
        FsError::NotFound { .. } => match missing {
            S3ErrorCodeKind::Key => s3s::S3ErrorCode::NoSuchKey,
            S3ErrorCodeKind::Bucket => s3s::S3ErrorCode::NoSuchBucket,
            S3ErrorCodeKind::Upload => s3s::S3ErrorCode::NoSuchUpload,
        },
        FsError::PermissionDenied { .. } | FsError::Unauthenticated { .. } => s3s::S3ErrorCode::AccessDenied,
        FsError::InvalidPath { .. } | FsError::InvalidArgument { .. } | FsError::NotADirectory { .. } | FsError::IsADirectory { .. } => {
            s3s::S3ErrorCode::InvalidArgument
        }
        FsError::DirectoryNotEmpty { .. } => s3s::S3ErrorCode::BucketNotEmpty,
        FsError::Unsupported { .. } => s3s::S3ErrorCode::NotImplemented,
        FsError::AlreadyExists { .. } => s3s::S3ErrorCode::BucketAlreadyOwnedByYou,
        e if e.is_retryable() => s3s::S3ErrorCode::ServiceUnavailable,
        _ => s3s::S3ErrorCode::InternalError,
    };
    if code == s3s::S3ErrorCode::InternalError {
        tracing::warn!(error = %message, "S3 request failed");
    }
    S3Error::with_message(code, message)
}

/// What a "not found" means for an operation.
#[derive(Clone, Copy)]
enum S3ErrorCodeKind {
    Key,
    Bucket,
    Upload,
}

/// The tachyon path of `key` in `bucket`, if the key is one tachyon can hold: not empty, at
/// most 1024 bytes, no empty, `.` or `..` components (a trailing `/` marks a directory).
pub fn object_path(bucket: &str, key: &str) -> Result<String, S3Error> {
    let body = key.strip_suffix('/').unwrap_or(key);
    let bad = key.is_empty()
        || key.len() > MAX_KEY_BYTES
        || key.starts_with('/')
        || body.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        || bucket.starts_with('.');
    if bad {
        return Err(s3_error!(
            InvalidArgument,
            "object key {key:?} is not a valid tachyon path (empty, '.' or '..' components, or longer than {MAX_KEY_BYTES} bytes)"
        ));
    }
    let path = format!("/{bucket}/{body}");
    crate::core::path::FsPath::parse(&path).map_err(|e| s3_error!(InvalidArgument, "object key {key:?}: {e}"))?;
    Ok(path)
}

fn bucket_path(bucket: &str) -> String {
    format!("/{bucket}")
}

/// A quoted, stable tag of a file's content version: its inode id and length (tachyon
/// files never change, so a new version is a new inode).
fn etag_of(info: &FileInfo) -> ETag {
    ETag::Strong(format!("{:016x}{:016x}", info.id, info.length))
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
}

/// One page of a listing, in the S3 types both listing versions answer with.
struct ListingPage {
    contents: Vec<Object>,
    prefixes: Vec<CommonPrefix>,
    /// The last key listed, if more follow.
    next: Option<String>,
    max_keys: i32,
}

impl TachyonS3 {
    /// Keys of `bucket` below `prefix` after `after`, at most `max_keys` (S3's 1,000 if
    /// unset or more), rolled up at `delimiter`.
    async fn list_page(&self, bucket: &str, prefix: Option<&str>, delimiter: Option<&str>, after: &str, max_keys: Option<i32>) -> S3Result<ListingPage> {
        self.require_bucket(bucket).await?;
        let max_keys = max_keys.map_or(MAX_KEYS, |m| (m.max(0) as usize).min(MAX_KEYS));
        let request = ListRequest { root: &bucket_path(bucket), prefix: prefix.unwrap_or_default(), delimiter, after, max_keys };
        let (page, truncated) = listing::list_page(&self.fs, request).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Bucket))?;
        let next = if truncated { page.last().map(|l| l.key.clone()) } else { None };
        let (mut contents, mut prefixes) = (Vec::new(), Vec::new());
        for l in page {
            match l.info {
                Some(info) => contents.push(Object {
                    key: Some(l.key),
                    size: Some(info.length as i64),
                    last_modified: Some(timestamp(info.modification_time_ms)),
                    e_tag: Some(etag_of(&info)),
                    ..Object::default()
                }),
                None => prefixes.push(CommonPrefix { prefix: Some(l.key) }),
            }
        }
        Ok(ListingPage { contents, prefixes, next, max_keys: max_keys as i32 })
    }

    /// A gateway over `fs`.
    pub fn new(fs: FileSystem) -> Self {
        TachyonS3 { fs }
    }

    /// The path and status of an object that exists and is complete (a key ending in `/`
    /// names a directory).
    async fn object_status(&self, bucket: &str, key: &str) -> S3Result<(String, FileInfo)> {
        let path = object_path(bucket, key)?;
        let info = self.fs.get_status(&path).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Key))?;
        if info.is_directory != key.ends_with('/') || !info.complete {
            return Err(s3_error!(NoSuchKey));
        }
        Ok((path, info))
    }

    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        match self.fs.get_status(&bucket_path(bucket)).await {
            Ok(info) if info.is_directory => Ok(()),
            Ok(_) => Err(s3_error!(NoSuchBucket)),
            Err(e) => Err(s3_err(e, S3ErrorCodeKind::Bucket)),
        }
    }

    /// Writes `body` to a new staging file and returns its path and length.
    async fn stage(&self, mut body: impl futures::Stream<Item = Result<Bytes, String>> + Unpin) -> S3Result<(String, u64)> {
        let staging = format!("{WORK_DIR}/staging/{:016x}", crate::runtime::unique_id());
        let mut writer =
            self.fs.create_file(&staging, CreateOptions { recursive: true, ..CreateOptions::default() }).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Key))?;
        let mut length = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    writer.cancel().await;
                    return Err(s3_error!(IncompleteBody, "reading the request body failed: {e}"));
                }
            };
            if let Err(e) = writer.write(&chunk).await {
                writer.cancel().await;
                return Err(s3_err(e, S3ErrorCodeKind::Key));
            }
            length += chunk.len() as u64;
        }
        writer.close().await.map_err(|e| s3_err(e, S3ErrorCodeKind::Key))?;
        Ok((staging, length))
    }

    /// Moves a complete staging file to `path`, replacing what is there; the staging file
    /// is deleted if that fails.
    async fn publish(&self, staging: &str, path: &str) -> S3Result<FileInfo> {
        let result = async {
            if let Some((parent, _)) = path.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
                self.fs.create_directory(parent, true, true).await?;
            }
            match self.fs.get_status(path).await {
                Ok(existing) if existing.is_directory => {
                    return Err(FsError::IsADirectory { path: path.to_string() });
                }
                Ok(_) => self.fs.delete(path, false).await?,
                Err(FsError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            self.fs.rename(staging, path).await?;
            self.fs.get_status(path).await
        }
        .await;
        if result.is_err() {
            let _ = self.fs.delete(staging, false).await;
        }
        result.map_err(|e| s3_err(e, S3ErrorCodeKind::Key))
    }

    /// Copies a complete file into a new staging file.
    async fn stage_copy(&self, from: &[String]) -> S3Result<(String, u64)> {
        let fs = self.fs.clone();
        let blocks = futures::stream::iter(from.to_vec())
            .then(move |source| {
                let fs = fs.clone();
                async move { fs.open_file(&source).await }
            })
            .flat_map(|opened| match opened {
                Ok(reader) => reader.read_ahead(0..usize::MAX, GET_AHEAD_CHUNKS).map(|block| block.map_err(|e| e.to_string())).left_stream(),
                Err(e) => futures::stream::once(async move { Err(e.to_string()) }).right_stream(),
            });
        self.stage(Box::pin(blocks)).await
    }

    /// Deletes `path`'s parent directories up to (not including) the bucket while they are
    /// empty: S3 has no directories, so removing the last object below one removes it.
    async fn prune_empty_parents(&self, bucket: &str, path: &str) {
        let root = bucket_path(bucket);
        let mut current = path.to_string();
        while let Some((parent, _)) = current.rsplit_once('/') {
            if parent.len() <= root.len() {
                break;
            }
            match self.fs.get_status(parent).await {
                Ok(info) if info.is_directory && info.child_count == 0 => {
                    if self.fs.delete(parent, false).await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
            current = parent.to_string();
        }
    }
}

/// Directory pages from the master, a directory that is gone (or a file) listing empty.
#[async_trait::async_trait]
impl DirectoryPages for FileSystem {
    async fn page(&self, dir: &str, start_after: Option<&str>) -> Result<(Vec<FileInfo>, bool), FsError> {
        let after = start_after.map(|name| format!("{dir}/{name}")).unwrap_or_default();
        match self.list_status_page(dir, false, &after).await {
            Ok((files, _)) if files.len() == 1 && files[0].path == dir && !files[0].is_directory => Ok((Vec::new(), false)),
            Ok((files, next)) => Ok((files, !next.is_empty())),
            Err(FsError::NotFound { .. }) | Err(FsError::NotADirectory { .. }) => Ok((Vec::new(), false)),
            Err(e) => Err(e),
        }
    }

    async fn status(&self, path: &str) -> Result<FileInfo, FsError> {
        self.get_status(path).await
    }
}

/// A byte stream of the request body as the gateway reads it.
fn body_stream(body: Option<StreamingBlob>) -> impl futures::Stream<Item = Result<Bytes, String>> + Unpin {
    match body {
        Some(blob) => blob.map(|r| r.map_err(|e| e.to_string())).left_stream(),
        None => futures::stream::empty().right_stream(),
    }
}

/// An error of a GET's body stream (the response has started; the connection is cut).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BodyError(String);

#[async_trait::async_trait]
impl S3 for TachyonS3 {
    async fn list_buckets(&self, _req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let entries = self.fs.list_status("/", false).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Bucket))?;
        let buckets = entries
            .into_iter()
            .filter(|i| i.is_directory && !i.name.starts_with('.'))
            .map(|i| Bucket { name: Some(i.name.clone()), creation_date: Some(timestamp(i.creation_time_ms)), ..Bucket::default() })
            .collect();
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..ListBucketsOutput::default() }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        if bucket.starts_with('.') {
            return Err(s3_error!(InvalidBucketName));
        }
        self.fs.create_directory(&bucket_path(&bucket), false, false).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Bucket))?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(&self, req: S3Request<GetBucketLocationInput>) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        self.fs.delete(&bucket_path(&req.input.bucket), false).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Bucket))?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let after = input.continuation_token.clone().or_else(|| input.start_after.clone()).unwrap_or_default();
        let page = self.list_page(&input.bucket, input.prefix.as_deref(), input.delimiter.as_deref(), &after, input.max_keys).await?;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(page.max_keys),
            key_count: Some((page.contents.len() + page.prefixes.len()) as i32),
            is_truncated: Some(page.next.is_some()),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next,
            start_after: input.start_after,
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            ..ListObjectsV2Output::default()
        }))
    }

    /// The first version of the listing (older clients, and tools set to it): pages by
    /// `Marker`, the last key of the page before.
    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let after = input.marker.clone().unwrap_or_default();
        let page = self.list_page(&input.bucket, input.prefix.as_deref(), input.delimiter.as_deref(), &after, input.max_keys).await?;
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            marker: input.marker,
            max_keys: Some(page.max_keys),
            is_truncated: Some(page.next.is_some()),
            // S3 sends it only with a delimiter; clients take the last key otherwise, the same.
            next_marker: page.next,
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            ..ListObjectsOutput::default()
        }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        let path = object_path(&input.bucket, &input.key)?;
        if input.key.ends_with('/') {
            // A directory marker.
            self.fs.create_directory(&path, true, true).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Key))?;
            return Ok(S3Response::new(PutObjectOutput::default()));
        }
        let (staging, _) = self.stage(body_stream(input.body)).await?;
        let info = self.publish(&staging, &path).await?;
        Ok(S3Response::new(PutObjectOutput { e_tag: Some(etag_of(&info)), size: Some(info.length as i64), ..PutObjectOutput::default() }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (_, info) = self.object_status(&input.bucket, &input.key).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(info.length as i64),
            last_modified: Some(timestamp(info.modification_time_ms)),
            e_tag: Some(etag_of(&info)),
            accept_ranges: Some("bytes".into()),
            ..HeadObjectOutput::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (path, info) = self.object_status(&input.bucket, &input.key).await?;
        let (range, content_range) = match &input.range {
            None => (0..info.length, None),
            Some(r) => {
                let checked = r.check(info.length)?;
                let text = format!("bytes {}-{}/{}", checked.start, checked.end - 1, info.length);
                (checked, Some(text))
            }
        };
        let block_size = info.block_size_bytes.max(1);
        let wanted = range.clone();
        let body = if !info.is_directory && wanted.start < wanted.end {
            let reader = self.fs.open_file(&path).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Key))?;
            let first = wanted.start / block_size;
            let mut block_start = first * block_size;
            let blocks = first as usize..wanted.end.div_ceil(block_size) as usize;
            StreamingBlob::wrap(reader.read_ahead(blocks, GET_AHEAD_CHUNKS).map(move |block| {
                let block = block.map_err(|e| BodyError(e.to_string()))?;
                let from = wanted.start.saturating_sub(block_start).min(block.len() as u64) as usize;
                let to = wanted.end.saturating_sub(block_start).min(block.len() as u64) as usize;
                block_start += block.len() as u64;
                Ok::<_, BodyError>(block.slice(from..to.max(from)))
            }))
        } else {
            StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, BodyError>>())
        };
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            content_length: Some((range.end - range.start) as i64),
            content_range,
            last_modified: Some(timestamp(info.modification_time_ms)),
            e_tag: Some(etag_of(&info)),
            accept_ranges: Some("bytes".into()),
            ..GetObjectOutput::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        let path = object_path(&input.bucket, &input.key)?;
        match self.fs.delete(&path, false).await {
            // Deleting a key that is not there succeeds, as in S3.
            Ok(()) | Err(FsError::NotFound { .. }) => {}
            Err(e) => return Err(s3_err(e, S3ErrorCodeKind::Key)),
        }
        self.prune_empty_parents(&input.bucket, &path).await;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            let outcome = match object_path(&input.bucket, &object.key) {
                Ok(path) => match self.fs.delete(&path, false).await {
                    Ok(()) | Err(FsError::NotFound { .. }) => {
                        self.prune_empty_parents(&input.bucket, &path).await;
                        Ok(())
                    }
                    Err(e) => Err(s3_err(e, S3ErrorCodeKind::Key)),
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => deleted.push(DeletedObject { key: Some(object.key), ..DeletedObject::default() }),
                Err(e) => errors.push(Error {
                    key: Some(object.key),
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    ..Error::default()
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput { deleted: Some(deleted), errors: Some(errors), ..DeleteObjectsOutput::default() }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let CopySource::Bucket { bucket: source_bucket, key: source_key, .. } = &input.copy_source else {
            return Err(s3_error!(NotImplemented, "only copies from a bucket"));
        };
        let source = object_path(source_bucket, source_key)?;
        let info = self.fs.get_status(&source).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Key))?;
        if info.is_directory || !info.complete {
            return Err(s3_error!(NoSuchKey));
        }
        self.require_bucket(&input.bucket).await?;
        let target = object_path(&input.bucket, &input.key)?;
        let (staging, _) = self.stage_copy(&[source]).await?;
        let copied = self.publish(&staging, &target).await?;
        let result =
            CopyObjectResult { e_tag: Some(etag_of(&copied)), last_modified: Some(timestamp(copied.modification_time_ms)), ..CopyObjectResult::default() };
        Ok(S3Response::new(CopyObjectOutput { copy_object_result: Some(result), ..CopyObjectOutput::default() }))
    }

    async fn create_multipart_upload(&self, req: S3Request<CreateMultipartUploadInput>) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        object_path(&input.bucket, &input.key)?;
        let upload_id = format!("{:016x}", crate::runtime::unique_id());
        let dir = upload_dir(&upload_id);
        self.fs.create_directory(&dir, true, false).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Upload))?;
        // The upload's target, checked by every later call of the upload.
        let target = format!("{}\n{}", input.bucket, input.key);
        self.fs.write_file(&format!("{dir}/target"), target.as_bytes(), CreateOptions::default()).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Upload))?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..CreateMultipartUploadOutput::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        self.check_upload(&input.upload_id, &input.bucket, &input.key).await?;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "part numbers go from 1 to 10000"));
        }
        let (staging, _) = self.stage(body_stream(input.body)).await?;
        let info = self.publish(&staging, &part_path(&input.upload_id, input.part_number)).await?;
        Ok(S3Response::new(UploadPartOutput { e_tag: Some(etag_of(&info)), ..UploadPartOutput::default() }))
    }

    async fn complete_multipart_upload(&self, req: S3Request<CompleteMultipartUploadInput>) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        self.check_upload(&input.upload_id, &input.bucket, &input.key).await?;
        let target = object_path(&input.bucket, &input.key)?;
        let numbers: Vec<i32> = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default().iter().filter_map(|p| p.part_number).collect();
        if numbers.is_empty() || numbers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(s3_error!(InvalidPartOrder, "name the parts in ascending order, each once"));
        }
        let mut parts = Vec::with_capacity(numbers.len());
        for n in &numbers {
            let path = part_path(&input.upload_id, *n);
            if self.fs.get_status(&path).await.is_err() {
                return Err(s3_error!(InvalidPart, "part {n} was not uploaded"));
            }
            parts.push(path);
        }
        let (staging, _) = self.stage_copy(&parts).await?;
        let info = self.publish(&staging, &target).await?;
        let _ = self.fs.delete(&upload_dir(&input.upload_id), true).await;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(format!("{:016x}{:016x}-{}", info.id, info.length, numbers.len()))),
            ..CompleteMultipartUploadOutput::default()
        }))
    }

    async fn abort_multipart_upload(&self, req: S3Request<AbortMultipartUploadInput>) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.check_upload(&input.upload_id, &input.bucket, &input.key).await?;
        self.fs.delete(&upload_dir(&input.upload_id), true).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Upload))?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

fn upload_dir(upload_id: &str) -> String {
    format!("{WORK_DIR}/uploads/{upload_id}")
}

fn part_path(upload_id: &str, part: i32) -> String {
    format!("{}/part-{part:05}", upload_dir(upload_id))
}

impl TachyonS3 {
    /// Fails unless `upload_id` is an upload of `bucket`/`key` in progress.
    async fn check_upload(&self, upload_id: &str, bucket: &str, key: &str) -> S3Result<()> {
        if upload_id.is_empty() || !upload_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(s3_error!(NoSuchUpload));
        }
        let target = self.fs.read_file(&format!("{}/target", upload_dir(upload_id))).await.map_err(|e| s3_err(e, S3ErrorCodeKind::Upload))?;
        if target != format!("{bucket}\n{key}").as_bytes() {
            return Err(s3_error!(NoSuchUpload, "upload {upload_id} is not an upload of {bucket}/{key}"));
        }
        Ok(())
    }
}

/// The complete staging files in `entries` older than [`ORPHAN_STAGING_AGE_MS`] at `now_ms`:
/// uploads whose gateway stopped before renaming them into place. Incomplete ones are the
/// master's (it deletes files whose writer went silent).
pub fn orphaned_staging(entries: &[FileInfo], now_ms: i64) -> Vec<String> {
    entries.iter().filter(|e| !e.is_directory && e.complete && e.modification_time_ms + ORPHAN_STAGING_AGE_MS < now_ms).map(|e| e.path.clone()).collect()
}

/// The multipart uploads in `entries` (the upload folders) that got no part for longer than
/// `expiry_ms` at `now_ms`: adding a part renames it into the folder, which moves the
/// folder's modification time.
pub fn expired_uploads(entries: &[FileInfo], now_ms: i64, expiry_ms: u64) -> Vec<String> {
    let expiry_ms = i64::try_from(expiry_ms).unwrap_or(i64::MAX);
    entries.iter().filter(|e| e.is_directory && e.modification_time_ms.saturating_add(expiry_ms) < now_ms).map(|e| e.path.clone()).collect()
}

/// Deletes every path `pick` chooses among the entries of `dir` (`what` names them in logs).
async fn sweep_folder(fs: &FileSystem, dir: &str, what: &str, pick: impl FnOnce(&[FileInfo]) -> Vec<String>) {
    match fs.list_status(dir, false).await {
        Ok(entries) => {
            for path in pick(&entries) {
                match fs.delete(&path, true).await {
                    Ok(()) => tracing::info!(path, "deleted {what}"),
                    Err(e) => tracing::warn!(path, error = %e, "could not delete {what}"),
                }
            }
        }
        Err(FsError::NotFound { .. }) => {}
        Err(e) => tracing::warn!(dir, error = %e, "could not list the folder of {what}"),
    }
}

/// Deletes orphaned staging files and expired multipart uploads now and then periodically:
/// every [`STAGING_SWEEP_INTERVAL`], or twice per expiry period if that is shorter.
async fn sweep(fs: FileSystem, multipart_expiry_ms: u64) {
    let clock = crate::runtime::system_clock();
    let interval = std::time::Duration::from_millis(multipart_expiry_ms / 2).clamp(MIN_SWEEP_INTERVAL, STAGING_SWEEP_INTERVAL);
    loop {
        let now_ms = clock.now_ms();
        sweep_folder(&fs, &format!("{WORK_DIR}/staging"), "a staging file a stopped gateway left", |e| orphaned_staging(e, now_ms)).await;
        sweep_folder(&fs, &format!("{WORK_DIR}/uploads"), "an abandoned multipart upload", |e| expired_uploads(e, now_ms, multipart_expiry_ms)).await;
        tokio::time::sleep(interval).await;
    }
}

/// Serves the S3 API on `options.bind` until the process ends.
pub async fn serve(options: ProxyOptions, fs: FileSystem) {
    let sweeper = tokio::spawn(sweep(fs.clone(), options.multipart_expiry_ms));
    let mut builder = s3s::service::S3ServiceBuilder::new(TachyonS3::new(fs));
    if let Some((access_key, secret_key)) = options.credentials {
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
    } else {
        tracing::warn!("no S3 credentials configured: the gateway accepts unsigned requests");
    }
    let service = builder.build();
    let router = axum::Router::new().fallback_service(axum::error_handling::HandleError::new(service, |e: s3s::HttpError| async move {
        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}"))
    }));
    crate::web::serve(options.bind, router, "S3 gateway", options.tls).await;
    sweeper.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_map_to_paths_below_their_bucket_or_are_refused() {
        assert_eq!(object_path("b", "a/b.txt").unwrap(), "/b/a/b.txt");
        assert_eq!(object_path("b", "dir/").unwrap(), "/b/dir");
        for bad in ["", "/abs", "a//b", "a/./b", "../up", "a/..", &"k".repeat(MAX_KEY_BYTES + 1)] {
            assert!(object_path("b", bad).is_err(), "{bad:?}");
        }
        assert!(object_path(".tachyon-s3", "x").is_err(), "the gateway's own folder is not a bucket");
    }

    #[test]
    fn only_complete_staging_files_past_the_age_are_orphans() {
        let file = |path: &str, complete: bool, modified: i64| FileInfo { path: path.into(), complete, modification_time_ms: modified, ..FileInfo::default() };
        let now = 100 * ORPHAN_STAGING_AGE_MS;
        let entries = [
            file("/s/old", true, now - ORPHAN_STAGING_AGE_MS - 1),
            file("/s/recent", true, now - ORPHAN_STAGING_AGE_MS + 1),
            file("/s/being-written", false, 0),
            FileInfo { is_directory: true, ..file("/s/dir", true, 0) },
        ];
        assert_eq!(orphaned_staging(&entries, now), vec!["/s/old".to_string()]);
    }

    #[test]
    fn only_uploads_without_a_part_for_longer_than_the_expiry_are_expired() {
        let upload = |path: &str, modified: i64| FileInfo { path: path.into(), is_directory: true, modification_time_ms: modified, ..FileInfo::default() };
        let (now, expiry) = (1_000_000, 5_000);
        let entries = [
            upload("/u/idle", now - 5_001),
            upload("/u/just-within", now - 5_000),
            upload("/u/active", now - 10),
            FileInfo { is_directory: false, ..upload("/u/stray-file", 0) },
        ];
        assert_eq!(expired_uploads(&entries, now, expiry), vec!["/u/idle".to_string()]);
        assert!(expired_uploads(&entries, now, u64::MAX).is_empty(), "an expiry past the clock's range expires nothing");
    }

    #[test]
    fn tachyon_errors_become_the_s3_codes_clients_branch_on() {
        let code = |e: FsError, k| s3_err(e, k).code().clone();
        assert_eq!(code(FsError::NotFound { path: "/b/k".into() }, S3ErrorCodeKind::Key), s3s::S3ErrorCode::NoSuchKey);
        assert_eq!(code(FsError::NotFound { path: "/b".into() }, S3ErrorCodeKind::Bucket), s3s::S3ErrorCode::NoSuchBucket);
        assert_eq!(code(FsError::DirectoryNotEmpty { path: "/b".into() }, S3ErrorCodeKind::Bucket), s3s::S3ErrorCode::BucketNotEmpty);
        assert_eq!(code(FsError::Unavailable { reason: String::new() }, S3ErrorCodeKind::Key), s3s::S3ErrorCode::ServiceUnavailable);
        assert_eq!(code(FsError::PermissionDenied { path: "/b".into(), reason: String::new() }, S3ErrorCodeKind::Key), s3s::S3ErrorCode::AccessDenied);
    }
}
