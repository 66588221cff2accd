//! The client library: a [`FileSystem`] handle a program uses to talk to tachyon.
//!
//! Metadata calls go to the leader master with bounded retry ([`RetryPolicy`]); file data
//! goes straight to workers: written as block streams, read from a local worker's memory
//! tier by mmap (short-circuit) or streamed from a remote one. With an under-storage
//! (`tachyon.underfs.address`) the client also writes files through to it
//! ([`WriteType`]), reads blocks no worker holds from it and caches them ([`ReadType`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::config::{self, Config};
use crate::coordinator::Coordinator;
use crate::core::namespace::{block_id, Mount, MountPoint, UfsLocation, MAX_BLOCKS_PER_FILE};
use crate::core::path::FsPath;
use crate::error::FsError;
use crate::proto::block_data_service_client::BlockDataServiceClient;
use crate::proto::master_service_client::MasterServiceClient;
use crate::proto::worker_service_client::WorkerServiceClient;
use crate::proto::*;
use crate::rpc::{self, LeaderChannel, RetryPolicy};
use crate::underfs::mounts::UfsMounts;
use crate::underfs::{UfsOptions, UfsWriter, UnderFs};

/// Settings of a client, validated from [`Config`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    pub block_size: u64,
    pub short_circuit: bool,
    pub chunk_bytes: usize,
    pub write_type: WriteType,
    pub read_type: ReadType,
    /// Who this client is (its user, authentication type and umask).
    pub security: crate::security::SecurityOptions,
    pub request_timeout: Duration,
    /// Listings look at the under-storage again after this long (0 always, -1 only once).
    pub metadata_sync_interval_ms: i64,
}

impl ClientOptions {
    /// Reads the client's settings; the user is `tachyon.security.login.username` or this
    /// process's user.
    pub fn from_config(cfg: &Config) -> Result<Self, FsError> {
        Ok(ClientOptions {
            retry: RetryPolicy {
                base_sleep: Duration::from_millis(cfg.duration_ms(config::USER_RETRY_BASE_SLEEP).max(1)),
                max_sleep: Duration::from_millis(cfg.duration_ms(config::USER_RETRY_MAX_SLEEP).max(1)),
                max_duration: Duration::from_millis(cfg.duration_ms(config::USER_RETRY_MAX_DURATION)),
            },
            block_size: cfg.bytes(config::USER_BLOCK_SIZE).max(1),
            short_circuit: cfg.bool(config::USER_SHORT_CIRCUIT),
            chunk_bytes: cfg.bytes(config::USER_CHUNK_SIZE).clamp(4096, 16 << 20) as usize,
            // Validated against the same names when the configuration loads.
            write_type: WriteType::parse(&cfg.string(config::USER_WRITE_TYPE)).unwrap_or(WriteType::MustCache),
            read_type: ReadType::parse(&cfg.string(config::USER_READ_TYPE)).unwrap_or(ReadType::CachePromote),
            security: crate::security::SecurityOptions::from_config(cfg)?,
            request_timeout: Duration::from_secs(30),
            metadata_sync_interval_ms: cfg.duration_or_never_ms(config::USER_METADATA_SYNC_INTERVAL),
        })
    }
}

/// The name of the user running this process: `$USER`, `$LOGNAME`, or the passwd entry
/// of the process's uid.
pub fn current_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().next().unwrap_or("").to_string())));
    let Some(uid) = uid else { return "unknown".into() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
            })
        })
        .unwrap_or(uid)
}

/// Where a new file's data goes (`tachyon.user.file.writetype.default`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteType {
    /// Workers' memory only.
    MustCache,
    /// Workers' memory and, before the file completes, the under-storage.
    CacheThrough,
    /// The under-storage only; readers cache it on first read.
    Through,
    /// Workers' memory; the leader master copies it to the under-storage in the background.
    AsyncThrough,
}

impl WriteType {
    /// Parses a write type name (any case), as in [`config::WRITE_TYPES`].
    pub fn parse(name: &str) -> Result<Self, FsError> {
        match name.trim().to_ascii_uppercase().as_str() {
            "MUST_CACHE" => Ok(WriteType::MustCache),
            "CACHE_THROUGH" => Ok(WriteType::CacheThrough),
            "THROUGH" => Ok(WriteType::Through),
            "ASYNC_THROUGH" => Ok(WriteType::AsyncThrough),
            other => Err(FsError::InvalidArgument { reason: format!("unknown write type {other:?} (expected one of {})", config::WRITE_TYPES.join(", ")) }),
        }
    }

    /// The configuration name, e.g. `CACHE_THROUGH`.
    pub fn name(self) -> &'static str {
        match self {
            WriteType::MustCache => "MUST_CACHE",
            WriteType::CacheThrough => "CACHE_THROUGH",
            WriteType::Through => "THROUGH",
            WriteType::AsyncThrough => "ASYNC_THROUGH",
        }
    }

    fn caches(self) -> bool {
        self != WriteType::Through
    }

    fn writes_through(self) -> bool {
        matches!(self, WriteType::CacheThrough | WriteType::Through)
    }

    /// The persistence state the file completes with.
    fn persistence(self) -> PersistenceState {
        match self {
            WriteType::MustCache => PersistenceState::NotPersisted,
            WriteType::CacheThrough | WriteType::Through => PersistenceState::Persisted,
            WriteType::AsyncThrough => PersistenceState::ToBePersisted,
        }
    }
}

/// Whether a block read from the under-storage is cached in a worker
/// (`tachyon.user.file.readtype.default`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadType {
    /// Read, never cache.
    NoCache,
    /// Cache blocks read from the under-storage in a worker.
    Cache,
    /// As `Cache` (one memory tier: there is no faster tier to promote to).
    CachePromote,
}

impl ReadType {
    /// Parses a read type name (any case), as in [`config::READ_TYPES`].
    pub fn parse(name: &str) -> Result<Self, FsError> {
        match name.trim().to_ascii_uppercase().as_str() {
            "NO_CACHE" => Ok(ReadType::NoCache),
            "CACHE" => Ok(ReadType::Cache),
            "CACHE_PROMOTE" => Ok(ReadType::CachePromote),
            other => Err(FsError::InvalidArgument { reason: format!("unknown read type {other:?} (expected one of {})", config::READ_TYPES.join(", ")) }),
        }
    }
}

/// Options of one file creation.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Block size; `None` for the configured default.
    pub block_size: Option<u64>,
    /// Create missing parent directories.
    pub recursive: bool,
    /// Write type; `None` for the configured default.
    pub write_type: Option<WriteType>,
}

/// Bytes a through-writer buffers before it syncs them to the under-storage (bounds the
/// memory an S3 upload holds).
const UFS_SYNC_BYTES: u64 = 8 << 20;

struct Inner {
    options: ClientOptions,
    /// The root under-storage for file data (if configured) and the mounted ones.
    mounts: UfsMounts,
    leader: LeaderChannel,
    /// Random per client; with `next_request` it names each mutation so that retries of it
    /// are recognised by the master (also across a failover).
    client_id: u64,
    next_request: AtomicU64,
}

/// A connection to a tachyon cluster. Cheap to clone.
#[derive(Clone)]
pub struct FileSystem {
    inner: Arc<Inner>,
}

fn status(e: tonic::Status) -> FsError {
    FsError::from(e)
}

impl FileSystem {
    /// A client that finds the leader through `coordinator`; it reaches only mounted
    /// under-storages, with default settings.
    pub fn new(options: ClientOptions, coordinator: Arc<dyn Coordinator>) -> Self {
        Self::build(options, coordinator, UfsMounts::new(None, UfsOptions::default()))
    }

    /// A client that also writes through to, and reads from, `ufs` (the under-storage root).
    pub fn with_under_fs(options: ClientOptions, coordinator: Arc<dyn Coordinator>, ufs: Arc<dyn UnderFs>) -> Self {
        Self::build(options, coordinator, UfsMounts::new(Some(ufs), UfsOptions::default()))
    }

    fn build(options: ClientOptions, coordinator: Arc<dyn Coordinator>, mounts: UfsMounts) -> Self {
        let leader = LeaderChannel::new(coordinator, options.request_timeout, options.security.tls.clone());
        // Randomly keyed hashing gives 64 random bits without another dependency.
        let client_id = crate::runtime::unique_id();
        FileSystem { inner: Arc::new(Inner { options, mounts, leader, client_id, next_request: AtomicU64::new(0) }) }
    }

    /// The root under-storage for file data, if this client has one.
    pub fn under_fs(&self) -> Option<&Arc<dyn UnderFs>> {
        self.inner.mounts.root()
    }

    /// The under-storages this client opened: the root and the mounted ones.
    pub fn mounts(&self) -> &UfsMounts {
        &self.inner.mounts
    }

    /// Where `path` lives in under-storage, by the leader's mount table: the under-storage
    /// and the path there. `why` names the operation for the error when there is none.
    pub async fn ufs_of(&self, path: &str, why: &str) -> Result<(Arc<dyn UnderFs>, String), FsError> {
        let points = self.mount_points().await?;
        self.inner.mounts.open(&UfsLocation::resolve(&points, &FsPath::parse(path)?), why)
    }

    /// Every mount point the leader knows, in path order (options included: this client
    /// needs them to reach the mounted under-storage).
    pub async fn mount_points(&self) -> Result<Vec<MountPoint>, FsError> {
        let table = self
            .call("getMountTable", |mut c| {
                let req = self.signed(Empty {});
                async move { c.get_mount_table(req).await }
            })
            .await?;
        table.mounts.into_iter().map(|m| Ok(MountPoint { path: FsPath::parse(&m.path)?, mount: Mount { ufs_uri: m.ufs_uri, options: m.options } })).collect()
    }

    /// Mounts the under-storage at `ufs_uri` on `path` (which must not exist), with its own
    /// settings in `options` (S3 endpoint, credentials, ...). The leader checks that it can
    /// list the under-storage first.
    pub async fn mount(&self, path: &str, ufs_uri: &str, options: BTreeMap<String, String>) -> Result<FileInfo, FsError> {
        let req = MountRequest { path: path.to_string(), ufs_uri: ufs_uri.to_string(), options, request_id: self.next_request_id() };
        self.call("mount", |mut c| {
            let req = self.signed(req.clone());
            async move { c.mount(req).await }
        })
        .await
    }

    /// Unmounts the mount point `path`: it leaves tachyon, its files stay in the under-storage.
    pub async fn unmount(&self, path: &str) -> Result<(), FsError> {
        let req = UnmountRequest { path: path.to_string(), request_id: self.next_request_id() };
        self.call("unmount", |mut c| {
            let req = self.signed(req.clone());
            async move { c.unmount(req).await }
        })
        .await
        .map(|_| ())
    }

    /// A new request id: the same for every retry of one call, unique across clients.
    fn next_request_id(&self) -> String {
        format!("{:016x}-{}", self.inner.client_id, self.inner.next_request.fetch_add(1, Ordering::Relaxed))
    }

    /// A client configured from `cfg`, with the root's file data in `tachyon.data.folder`
    /// (by default `tachyon.underfs.address`).
    pub fn from_config(cfg: &Config) -> Result<Self, FsError> {
        let address = cfg.string(config::DATA_FOLDER);
        let options = UfsOptions::from_config(cfg);
        let ufs =
            crate::underfs::open(&address, &options).map_err(|e| FsError::InvalidArgument { reason: format!("{}={address}: {e}", config::DATA_FOLDER) })?;
        let sealer = crate::security::SecretSealer::from_cluster_secret(&cfg.string(config::CLUSTER_SECRET));
        Ok(Self::build(ClientOptions::from_config(cfg)?, crate::coordinator::from_config(cfg)?, UfsMounts::new(Some(ufs), options).with_sealer(sealer)))
    }

    /// The client's settings.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// What a new inode asks for: owned by this client's user (the master decides unless it
    /// runs NOSASL), with `full_mode` less the client's umask.
    fn ownership(&self, full_mode: u32) -> InodeOwnership {
        let security = &self.inner.options.security;
        let user = security.login_user.clone();
        InodeOwnership { group: user.clone(), owner: user, mode: crate::core::permission::apply_umask(full_mode, security.umask) }
    }

    /// A request carrying this client's identity.
    fn signed<T>(&self, message: T) -> tonic::Request<T> {
        self.inner.options.security.sign_client(message)
    }

    /// Calls the leader master, retrying through unavailability and failover.
    async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, FsError>
    where
        F: Fn(MasterServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.inner
            .options
            .retry
            .run(&self.inner.leader, what, |channel| {
                let fut = op(MasterServiceClient::new(channel));
                async move { fut.await.map(|r| r.into_inner()).map_err(status) }
            })
            .await
    }

    /// Status of a file or directory.
    pub async fn get_status(&self, path: &str) -> Result<FileInfo, FsError> {
        let req = PathRequest { path: path.to_string() };
        self.call("getStatus", |mut c| {
            let req = self.signed(req.clone());
            async move { c.get_status(req).await }
        })
        .await
    }

    /// True if `path` exists.
    pub async fn exists(&self, path: &str) -> Result<bool, FsError> {
        match self.get_status(path).await {
            Ok(_) => Ok(true),
            Err(FsError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The entries of a directory (everything below it with `recursive`); a file lists itself.
    /// Listed entries carry no block lists.
    pub async fn list_status(&self, path: &str, recursive: bool) -> Result<Vec<FileInfo>, FsError> {
        let mut all = Vec::new();
        self.list_status_pages(path, recursive, |page| {
            all.extend(page);
            Ok(())
        })
        .await?;
        Ok(all)
    }

    /// [`Self::list_status`] a page at a time (the master bounds each page), handing each
    /// page to `each` as it arrives: a listing of millions of entries never has to fit in
    /// memory or in one message.
    pub async fn list_status_pages(&self, path: &str, recursive: bool, mut each: impl FnMut(Vec<FileInfo>) -> Result<(), FsError>) -> Result<(), FsError> {
        let mut start_after = String::new();
        loop {
            let req = ListStatusRequest {
                path: path.to_string(),
                recursive,
                sync_interval_ms: self.inner.options.metadata_sync_interval_ms,
                start_after: start_after.clone(),
                limit: 0,
            };
            let page = self
                .call("listStatus", |mut c| {
                    let req = self.signed(req.clone());
                    async move { c.list_status(req).await }
                })
                .await?;
            each(page.files)?;
            if page.next_start_after.is_empty() {
                return Ok(());
            }
            start_after = page.next_start_after;
        }
    }

    /// Creates a directory.
    pub async fn create_directory(&self, path: &str, recursive: bool, allow_exists: bool) -> Result<FileInfo, FsError> {
        let req = CreateDirectoryRequest {
            path: path.to_string(),
            recursive,
            allow_exists,
            ownership: Some(self.ownership(0o777)),
            request_id: self.next_request_id(),
        };
        self.call("createDirectory", |mut c| {
            let req = self.signed(req.clone());
            async move { c.create_directory(req).await }
        })
        .await
    }

    /// Deletes a file or directory.
    pub async fn delete(&self, path: &str, recursive: bool) -> Result<(), FsError> {
        let req = DeleteRequest { path: path.to_string(), recursive, request_id: self.next_request_id() };
        self.call("delete", |mut c| {
            let req = self.signed(req.clone());
            async move { c.delete(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Renames `src` to `dst` (which must not exist).
    pub async fn rename(&self, src: &str, dst: &str) -> Result<(), FsError> {
        let req = RenameRequest { src: src.to_string(), dst: dst.to_string(), request_id: self.next_request_id() };
        self.call("rename", |mut c| {
            let req = self.signed(req.clone());
            async move { c.rename(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Frees a file's (or directory's) blocks from memory; only persisted data may be freed.
    pub async fn free(&self, path: &str, recursive: bool) -> Result<u64, FsError> {
        let req = FreeRequest { path: path.to_string(), recursive };
        self.call("free", |mut c| {
            let req = self.signed(req.clone());
            async move { c.free(req).await }
        })
        .await
        .map(|r| r.blocks_freed)
    }

    /// Pins (or unpins) a file, or a directory with everything below it: pinned blocks are
    /// never evicted from workers and `free` refuses them.
    pub async fn set_pinned(&self, path: &str, pinned: bool) -> Result<FileInfo, FsError> {
        self.set_attribute(path, Some(pinned), None).await
    }

    /// Sets a time to live: `action` runs once `ttl_ms` have passed since the creation of
    /// the file or directory. `None` removes the TTL.
    pub async fn set_ttl(&self, path: &str, ttl: Option<(i64, TtlAction)>) -> Result<FileInfo, FsError> {
        if let Some((ttl_ms, _)) = ttl.filter(|(ms, _)| *ms <= 0) {
            return Err(FsError::InvalidArgument { reason: format!("TTL must be a positive number of milliseconds, not {ttl_ms}") });
        }
        let (ttl_ms, action) = ttl.unwrap_or((-1, TtlAction::TtlDelete));
        self.set_attribute(path, None, Some((ttl_ms, action))).await
    }

    async fn set_attribute(&self, path: &str, pinned: Option<bool>, ttl: Option<(i64, TtlAction)>) -> Result<FileInfo, FsError> {
        let req = SetAttributeRequest {
            path: path.to_string(),
            pinned,
            ttl_ms: ttl.map(|(ms, _)| ms),
            ttl_action: ttl.map_or(TtlAction::TtlDelete, |(_, a)| a) as i32,
            request_id: self.next_request_id(),
            ..SetAttributeRequest::default()
        };
        self.send_set_attribute(req).await
    }

    /// Changes owner (superusers only), group (superusers, or the owner into a group it is
    /// in) and/or mode (the owner or a superuser) of `path`, and with `recursive` of
    /// everything below it.
    pub async fn set_ownership(&self, path: &str, change: crate::core::namespace::OwnershipChange) -> Result<FileInfo, FsError> {
        let req = SetAttributeRequest {
            path: path.to_string(),
            owner: change.owner,
            group: change.group,
            mode: change.mode,
            recursive: change.recursive,
            request_id: self.next_request_id(),
            ..SetAttributeRequest::default()
        };
        self.send_set_attribute(req).await
    }

    async fn send_set_attribute(&self, req: SetAttributeRequest) -> Result<FileInfo, FsError> {
        self.call("setAttribute", |mut c| {
            let req = self.signed(req.clone());
            async move { c.set_attribute(req).await }
        })
        .await
    }

    /// Every worker the leader knows.
    pub async fn workers(&self) -> Result<Vec<WorkerReport>, FsError> {
        self.call("getWorkers", |mut c| {
            let req = self.signed(Empty {});
            async move { c.get_workers(req).await }
        })
        .await
        .map(|r| r.workers)
    }

    /// The leader's view of the masters and the cluster.
    pub async fn master_info(&self) -> Result<MasterInfoResponse, FsError> {
        self.call("getMasterInfo", |mut c| {
            let req = self.signed(Empty {});
            async move { c.get_master_info(req).await }
        })
        .await
    }

    /// Every running master the coordinator lists, each as it describes itself (role, epoch,
    /// applied journal sequence); a master that does not answer is listed as unreachable.
    pub async fn masters(&self) -> Result<Vec<MasterStatus>, FsError> {
        let answers = self
            .ask_each_master(|mut c| {
                let req = self.signed(Empty {});
                async move { c.get_master_info(req).await }
            })
            .await?;
        let mut statuses = Vec::with_capacity(answers.len());
        for (address, answer) in answers {
            match answer {
                Ok(info) => statuses.extend(info.masters),
                Err(e) => {
                    tracing::debug!(%address, error = %e, "master did not answer");
                    statuses.push(MasterStatus { address, role: "unreachable".into(), ..MasterStatus::default() });
                }
            }
        }
        Ok(statuses)
    }

    /// Sends one request to every master the coordinator lists (not only the leader);
    /// returns each address with its answer.
    async fn ask_each_master<T, F, Fut>(&self, ask: F) -> Result<Vec<(String, Result<T, FsError>)>, FsError>
    where
        F: Fn(MasterServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut answers = Vec::new();
        for address in self.inner.leader.coordinator().masters().await? {
            let answer = match rpc::connect(&address, self.inner.options.request_timeout, self.inner.options.security.tls.as_ref()).await {
                Ok(channel) => ask(MasterServiceClient::new(channel)).await.map(tonic::Response::into_inner).map_err(status),
                Err(e) => Err(e),
            };
            answers.push((address, answer));
        }
        Ok(answers)
    }

    /// Every running master's namespace digest and position (a full pass over each
    /// master's namespace: for consistency checks). Masters that do not answer are left out.
    pub async fn state_digests(&self) -> Result<Vec<StateDigest>, FsError> {
        let answers = self
            .ask_each_master(|mut c| {
                let req = self.signed(Empty {});
                async move { c.get_state_digest(req).await }
            })
            .await?;
        Ok(answers.into_iter().filter_map(|(_, answer)| answer.ok()).collect())
    }

    /// Creates a file and returns a writer for its content.
    pub async fn create_file(&self, path: &str, opts: CreateOptions) -> Result<FileWriter, FsError> {
        let write_type = opts.write_type.unwrap_or(self.inner.options.write_type);
        let ufs = if write_type.writes_through() { Some(self.ufs_of(path, &format!("write type {write_type:?}")).await?) } else { None };
        let block_size = opts.block_size.unwrap_or(self.inner.options.block_size);
        let worker = if write_type.caches() { Some(self.writable_worker().await?) } else { None };
        let request_id = self.next_request_id();
        let req = CreateFileRequest {
            path: path.to_string(),
            block_size_bytes: block_size,
            recursive: opts.recursive,
            ownership: Some(self.ownership(0o666)),
            request_id: request_id.clone(),
        };
        let info = self
            .call("createFile", |mut c| {
                let req = self.signed(req.clone());
                async move { c.create_file(req).await }
            })
            .await?;
        let through = match ufs {
            Some((ufs, target)) => Some(UfsUpload::start(ufs, target, &request_id).await?),
            None => None,
        };
        Ok(FileWriter { fs: self.clone(), info, worker, write_type, through, block_index: 0, in_block: 0, total: 0, current: None })
    }

    /// A live worker to write to, waiting (within the retry bounds) for workers still
    /// re-registering after a failover.
    async fn writable_worker(&self) -> Result<WorkerNetAddress, FsError> {
        let workers: Vec<WorkerReport> = self
            .inner
            .options
            .retry
            .run(&self.inner.leader, "getWorkers", |channel| async move {
                let all = MasterServiceClient::new(channel).get_workers(self.signed(Empty {})).await.map_err(status)?.into_inner().workers;
                let live: Vec<WorkerReport> = all.into_iter().filter(|w| !w.lost).collect();
                if live.is_empty() {
                    return Err(FsError::Unavailable { reason: "no live worker to write to".into() });
                }
                Ok(live)
            })
            .await?;
        pick_worker(&workers).ok_or_else(|| FsError::Unavailable { reason: "no live worker to write to".into() })
    }

    /// Copies a complete file to the under-storage at its path and records it persisted
    /// (`fs persist`; also what the leader runs for ASYNC_THROUGH files). Returns the
    /// file's new status; a file already persisted is left alone.
    pub async fn persist(&self, path: &str) -> Result<FileInfo, FsError> {
        let mut reader = self.open_file(path).await?;
        if reader.info.persistence_state == PersistenceState::Persisted.as_str_name() {
            return Ok(reader.info.clone());
        }
        let (ufs, target) = self.ufs_of(&reader.info.path, "persisting").await?;
        let request_id = self.next_request_id();
        let mut upload = UfsUpload::start(ufs, target, &request_id).await?;
        let copied = async {
            while let Some(block) = reader.next_block().await? {
                upload.write(&block).await?;
            }
            upload.seal().await
        }
        .await;
        let ufs_temp_name = match copied {
            Ok(tmp) => tmp,
            Err(e) => {
                upload.abandon().await;
                return Err(e);
            }
        };
        let req = PersistFileRequest { path: reader.info.path.clone(), request_id, ufs_temp_name };
        self.call("persistFile", |mut c| {
            let req = self.signed(req.clone());
            async move { c.persist_file(req).await }
        })
        .await
    }

    /// Compares every persisted file at or below `path` with its under-storage copy and
    /// returns the ones that differ, each with the reason: the copy is missing or its length
    /// changed (`fs checkConsistency`). Such files are never served wrong: a read of a
    /// block not in memory fails with an error naming the change.
    pub async fn check_consistency(&self, path: &str) -> Result<Vec<(String, String)>, FsError> {
        let points = self.mount_points().await?;
        let files = self.list_status(path, true).await?;
        let mut by_dir: std::collections::BTreeMap<String, Vec<&FileInfo>> = std::collections::BTreeMap::new();
        for f in files.iter().filter(|f| !f.is_directory && f.complete && f.persistence_state == PersistenceState::Persisted.as_str_name()) {
            let dir = f.path.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
            by_dir.entry(dir).or_default().push(f);
        }
        let mut inconsistent = Vec::new();
        for (dir, files) in by_dir {
            let (ufs, ufs_dir) = self.inner.mounts.open(&UfsLocation::resolve(&points, &FsPath::parse(&dir)?), "checking consistency")?;
            let listed = ufs.list_status(&ufs_dir).await.map_err(|e| ufs_error(&ufs, &ufs_dir, e))?;
            for f in files {
                let reason = match listed.iter().find(|e| e.name == f.name) {
                    None => Some("missing in the under-storage".to_string()),
                    Some(e) if e.is_directory => Some("a directory in the under-storage".to_string()),
                    Some(e) if e.length != f.length => Some(format!("{} bytes in the under-storage, {} in tachyon", e.length, f.length)),
                    Some(_) => None,
                };
                if let Some(reason) = reason {
                    inconsistent.push((f.path.clone(), reason));
                }
            }
        }
        Ok(inconsistent)
    }

    /// Reads a file so that every block of it is in some worker's memory (`fs load`).
    /// Returns how many bytes were brought in from the under-storage.
    pub async fn load(&self, path: &str) -> Result<u64, FsError> {
        let mut reader = self.open_file(path).await?;
        reader.read_type = ReadType::Cache;
        let mut loaded = 0;
        while let Some(block) = reader.next_block().await? {
            if reader.last_from_under_fs {
                loaded += block.len() as u64;
            }
        }
        Ok(loaded)
    }

    /// Writes a whole file in one call.
    pub async fn write_file(&self, path: &str, data: &[u8], opts: CreateOptions) -> Result<FileInfo, FsError> {
        let mut w = self.create_file(path, opts).await?;
        match w.write(data).await {
            Ok(()) => w.close().await,
            Err(e) => {
                w.cancel().await;
                Err(e)
            }
        }
    }

    /// Opens a complete file for reading.
    pub async fn open_file(&self, path: &str) -> Result<FileReader, FsError> {
        let info = self.get_status(path).await?;
        if info.is_directory {
            return Err(FsError::IsADirectory { path: info.path });
        }
        if !info.complete {
            return Err(FsError::FileIncomplete { path: info.path });
        }
        let read_type = self.inner.options.read_type;
        Ok(FileReader { fs: self.clone(), info, next_block: 0, read_type, last_from_under_fs: false, ufs: None })
    }

    /// Reads a whole file into memory.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let mut r = self.open_file(path).await?;
        let mut out = Vec::with_capacity(r.info().length as usize);
        while let Some(chunk) = r.next_block().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// Where to write: a worker on this host if any, else the one with the most free space.
fn pick_worker(workers: &[WorkerReport]) -> Option<WorkerNetAddress> {
    let free = |w: &WorkerReport| w.capacity_bytes.saturating_sub(w.used_bytes);
    let local = workers.iter().filter(|w| w.address.as_ref().is_some_and(|a| is_local_host(&a.host))).max_by_key(|w| free(w));
    local.or_else(|| workers.iter().max_by_key(|w| free(w))).and_then(|w| w.address.clone())
}

/// True if `host` names this machine (a loopback address or this host's name).
pub fn is_local_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname").is_ok_and(|h| h.trim() == host)
}

fn data_address(a: &WorkerNetAddress) -> String {
    format!("{}:{}", a.host, a.data_port)
}

/// How many times a reader looks up a block's locations again before calling it lost.
const LOST_BLOCK_RETRIES: u32 = 4;

/// A block being streamed to a worker; the worker commits it to the master before it
/// answers.
struct BlockUpload {
    tx: mpsc::Sender<WriteBlockChunk>,
    call: tokio::task::JoinHandle<Result<WriteBlockResponse, FsError>>,
}

impl BlockUpload {
    /// Opens the stream of block `id`, reserving `reserve` bytes on the worker.
    async fn start(fs: &FileSystem, worker: &WorkerNetAddress, id: u64, reserve: u64) -> Result<Self, FsError> {
        let channel = rpc::connect(&data_address(worker), fs.inner.options.request_timeout, fs.inner.options.security.tls.as_ref()).await?;
        let (tx, rx) = mpsc::channel::<WriteBlockChunk>(4);
        tx.send(WriteBlockChunk { block_id: id, length: reserve, data: Bytes::new() })
            .await
            .map_err(|_| FsError::Internal { reason: "block stream closed".into() })?;
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let call = tokio::spawn(async move {
            let mut client = BlockDataServiceClient::new(channel);
            client.write_block(stream).await.map(|r| r.into_inner()).map_err(status)
        });
        Ok(BlockUpload { tx, call })
    }

    /// Sends one piece; if the worker ended the stream early, its answer says why.
    async fn send(self, piece: Bytes, worker: &WorkerNetAddress) -> Result<Self, FsError> {
        if self.tx.send(WriteBlockChunk { block_id: 0, length: 0, data: piece }).await.is_ok() {
            return Ok(self);
        }
        Err(match self.call.await {
            Ok(Err(e)) => e,
            _ => FsError::Unavailable { reason: format!("worker {} closed the block stream", worker.host) },
        })
    }

    /// Ends the stream; returns the length the worker stored and committed.
    async fn finish(self) -> Result<u64, FsError> {
        drop(self.tx);
        let resp = self.call.await.map_err(|e| FsError::Internal { reason: format!("block upload task: {e}") })??;
        Ok(resp.length)
    }
}

/// A file being written to the under-storage under a temporary name beside its path; the
/// leader moves it into place (never over another file) when it records the file persisted.
struct UfsUpload {
    ufs: Arc<dyn UnderFs>,
    writer: Option<Box<dyn UfsWriter>>,
    tmp: String,
    unsynced: u64,
}

impl UfsUpload {
    /// Starts writing the copy that becomes `target` (a path in `ufs`).
    async fn start(ufs: Arc<dyn UnderFs>, target: String, request_id: &str) -> Result<Self, FsError> {
        let (dir, name) = target.rsplit_once('/').unwrap_or(("", target.as_str()));
        let tmp = if dir.is_empty() { format!(".{name}.tachyon-{request_id}.tmp") } else { format!("{dir}/.{name}.tachyon-{request_id}.tmp") };
        let writer = ufs.create(&tmp).await.map_err(|e| ufs_error(&ufs, &tmp, e))?;
        Ok(UfsUpload { ufs, writer: Some(writer), tmp, unsynced: 0 })
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        let Some(w) = self.writer.as_mut() else { return Err(FsError::Internal { reason: "under-storage upload already finished".into() }) };
        w.write(data).await.map_err(|e| ufs_error(&self.ufs, &self.tmp, e))?;
        self.unsynced += data.len() as u64;
        if self.unsynced >= UFS_SYNC_BYTES {
            w.sync().await.map_err(|e| ufs_error(&self.ufs, &self.tmp, e))?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Makes the data durable under its temporary name and returns that name; the leader
    /// moves it into place when it records the file persisted (under a journaled intent, so
    /// a crash never leaves a copy at the final name that tachyon does not know).
    async fn seal(&mut self) -> Result<String, FsError> {
        if let Some(w) = self.writer.take() {
            w.close().await.map_err(|e| ufs_error(&self.ufs, &self.tmp, e))?;
        }
        Ok(self.tmp.clone())
    }

    /// Deletes the temporary file (best effort).
    async fn abandon(mut self) {
        self.writer = None;
        if let Err(e) = self.ufs.delete(&self.tmp).await {
            tracing::warn!(file = %self.tmp, error = %e, "could not delete an abandoned under-storage upload");
        }
    }
}

/// An under-storage failure as a client error: retryable, since under-storage outages pass.
fn ufs_error(ufs: &Arc<dyn UnderFs>, path: &str, e: std::io::Error) -> FsError {
    FsError::Unavailable { reason: format!("under-storage {} {path}: {e}", ufs.describe()) }
}

/// Writes a file's content block by block; [`FileWriter::close`] completes the file.
pub struct FileWriter {
    fs: FileSystem,
    info: FileInfo,
    /// The worker that caches the blocks (`None` for THROUGH).
    worker: Option<WorkerNetAddress>,
    write_type: WriteType,
    /// The under-storage copy (CACHE_THROUGH, THROUGH).
    through: Option<UfsUpload>,
    block_index: u64,
    in_block: u64,
    total: u64,
    current: Option<BlockUpload>,
}

impl FileWriter {
    /// The file being written.
    pub fn path(&self) -> &str {
        &self.info.path
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.total
    }

    async fn start_block(&mut self, worker: &WorkerNetAddress) -> Result<(), FsError> {
        if self.block_index >= MAX_BLOCKS_PER_FILE {
            return Err(FsError::InvalidArgument { reason: format!("{}: too many blocks", self.info.path) });
        }
        let id = block_id(self.info.id, self.block_index);
        self.current = Some(BlockUpload::start(&self.fs, worker, id, self.info.block_size_bytes).await?);
        self.in_block = 0;
        Ok(())
    }

    async fn finish_block(&mut self) -> Result<(), FsError> {
        if let Some(upload) = self.current.take() {
            let stored = upload.finish().await?;
            if stored != self.in_block {
                return Err(FsError::Internal { reason: format!("worker stored {stored} bytes of block {}, sent {}", self.block_index, self.in_block) });
            }
            self.block_index += 1;
            self.in_block = 0;
        }
        Ok(())
    }

    /// Appends data to the file.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        if let Some(through) = self.through.as_mut() {
            through.write(data).await?;
        }
        match self.worker.clone() {
            Some(worker) => self.write_blocks(&worker, data).await,
            None => {
                self.total += data.len() as u64;
                Ok(())
            }
        }
    }

    async fn write_blocks(&mut self, worker: &WorkerNetAddress, mut data: &[u8]) -> Result<(), FsError> {
        let block_size = self.info.block_size_bytes;
        let chunk = self.fs.inner.options.chunk_bytes as u64;
        while !data.is_empty() {
            if self.current.is_none() {
                self.start_block(worker).await?;
            }
            let room = (block_size - self.in_block).min(chunk) as usize;
            let n = room.min(data.len());
            let upload = self.current.take().ok_or_else(|| FsError::Internal { reason: "no block stream".into() })?;
            self.current = Some(upload.send(Bytes::copy_from_slice(&data[..n]), worker).await?);
            self.in_block += n as u64;
            self.total += n as u64;
            data = &data[n..];
            if self.in_block == block_size {
                self.finish_block().await?;
            }
        }
        Ok(())
    }

    /// Finishes the last block (and the under-storage copy) and completes the file; the
    /// file is readable after this. A definitive failure (not a lost master: whether the
    /// completion was applied would be unknown) cancels the write, so neither the
    /// incomplete file nor an under-storage upload is left behind.
    pub async fn close(mut self) -> Result<FileInfo, FsError> {
        match self.finish_and_complete().await {
            Err(e) if !e.is_retryable() => {
                tracing::warn!(path = %self.info.path, error = %e, "could not complete the file; removing what the write left");
                self.cancel().await;
                Err(e)
            }
            done => done,
        }
    }

    async fn finish_and_complete(&mut self) -> Result<FileInfo, FsError> {
        self.finish_block().await?;
        let ufs_temp_name = match self.through.as_mut() {
            Some(through) => through.seal().await?,
            None => String::new(),
        };
        let req = CompleteFileRequest {
            path: self.info.path.clone(),
            length: self.total,
            request_id: self.fs.next_request_id(),
            persistence: self.write_type.persistence() as i32,
            ufs_temp_name,
        };
        self.fs
            .call("completeFile", |mut c| {
                let req = self.fs.signed(req.clone());
                async move { c.complete_file(req).await }
            })
            .await
    }

    /// Abandons the write and deletes the incomplete file (best effort).
    pub async fn cancel(mut self) {
        if let Some(up) = self.current.take() {
            up.call.abort();
        }
        if let Some(through) = self.through.take() {
            through.abandon().await;
        }
        if let Err(e) = self.fs.delete(&self.info.path, false).await {
            tracing::warn!(path = %self.info.path, error = %e, "could not delete the incomplete file");
        }
    }
}

/// Reads a file block by block.
pub struct FileReader {
    fs: FileSystem,
    info: FileInfo,
    next_block: usize,
    read_type: ReadType,
    /// True if the last block came from the under-storage.
    last_from_under_fs: bool,
    /// The file's under-storage and its path there, looked up on the first block read there.
    ufs: Option<(Arc<dyn UnderFs>, String)>,
}

impl FileReader {
    /// The file's status as of opening.
    pub fn info(&self) -> &FileInfo {
        &self.info
    }

    fn persisted(&self) -> bool {
        self.info.persistence_state == PersistenceState::Persisted.as_str_name()
    }

    /// The next block's bytes, or `None` at the end of the file. A block no worker can serve
    /// is read from the under-storage if the file is persisted (and cached there as the read
    /// type says); otherwise locations are looked up again a few times (a restarting worker
    /// re-registers within a heartbeat or two) before the block is reported lost.
    pub async fn next_block(&mut self) -> Result<Option<Bytes>, FsError> {
        let Some(mut block) = self.info.blocks.get(self.next_block).cloned() else { return Ok(None) };
        let index = self.next_block as u64;
        self.last_from_under_fs = false;
        let mut backoff = self.fs.inner.options.retry.base_sleep.max(Duration::from_millis(100));
        for attempt in 0..=LOST_BLOCK_RETRIES {
            let cached = if block.locations.is_empty() && self.persisted() {
                Err(FsError::BlockLost { path: self.info.path.clone(), block_id: block.block_id })
            } else {
                self.read_from_any(&block).await
            };
            match cached {
                Ok(bytes) => {
                    self.next_block += 1;
                    return Ok(Some(bytes));
                }
                Err(_) if self.persisted() => {
                    let bytes = self.read_from_under_fs(&block, index).await?;
                    self.next_block += 1;
                    self.last_from_under_fs = true;
                    return Ok(Some(bytes));
                }
                Err(e) if attempt == LOST_BLOCK_RETRIES => {
                    tracing::warn!(path = %self.info.path, block = block.block_id, error = %e, "no location could serve the block");
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    let fresh = self.fs.get_status(&self.info.path).await?;
                    if let Some(b) = fresh.blocks.iter().find(|b| b.block_id == block.block_id) {
                        block = b.clone();
                    }
                }
            }
        }
        Err(FsError::BlockLost { path: self.info.path.clone(), block_id: block.block_id })
    }

    /// Reads block `index` from the file's under-storage copy and, unless the read type is
    /// NO_CACHE, caches it in a worker (best effort: a failed cache fill is only logged).
    async fn read_from_under_fs(&mut self, block: &BlockInfo, index: u64) -> Result<Bytes, FsError> {
        if self.ufs.is_none() {
            self.ufs = Some(self.fs.ufs_of(&self.info.path, "reading a block no worker holds").await?);
        }
        let Some((ufs, path)) = self.ufs.clone() else { return Err(FsError::Internal { reason: "under-storage not resolved".into() }) };
        let offset = index * self.info.block_size_bytes;
        let data = ufs.read_range(&path, offset, block.length).await.map_err(|e| ufs_error(&ufs, &path, e))?;
        if data.len() as u64 != block.length {
            return Err(FsError::Internal {
                reason: format!(
                    "{}: the under-storage copy {path} has {} bytes at offset {offset}, expected {}: it changed behind tachyon's back",
                    self.info.path,
                    data.len(),
                    block.length
                ),
            });
        }
        let data = Bytes::from(data);
        if self.read_type != ReadType::NoCache {
            if let Err(e) = self.cache_block(block, &data).await {
                tracing::warn!(path = %self.info.path, block = block.block_id, error = %e, "could not cache a block read from the under-storage");
            }
        }
        Ok(data)
    }

    async fn cache_block(&self, block: &BlockInfo, data: &Bytes) -> Result<(), FsError> {
        // Best effort: with no live worker right now, the block simply stays uncached
        // (writers wait for workers; a cache fill never does).
        let workers = self.fs.workers().await?;
        let live: Vec<WorkerReport> = workers.into_iter().filter(|w| !w.lost).collect();
        let Some(worker) = pick_worker(&live) else { return Ok(()) };
        let mut upload = BlockUpload::start(&self.fs, &worker, block.block_id, block.length).await?;
        let chunk = self.fs.inner.options.chunk_bytes;
        let mut sent = 0;
        while sent < data.len() {
            let n = chunk.min(data.len() - sent);
            upload = upload.send(data.slice(sent..sent + n), &worker).await?;
            sent += n;
        }
        let stored = upload.finish().await?;
        if stored != block.length {
            return Err(FsError::Internal { reason: format!("worker stored {stored} bytes of block {}, sent {}", block.block_id, block.length) });
        }
        Ok(())
    }

    async fn read_from_any(&self, block: &BlockInfo) -> Result<Bytes, FsError> {
        let mut locations = block.locations.clone();
        // Local workers first, so short-circuit reads are tried before the network.
        locations.sort_by_key(|a| !is_local_host(&a.host));
        let mut last_error = FsError::BlockLost { path: self.info.path.clone(), block_id: block.block_id };
        for loc in &locations {
            let result = if self.fs.inner.options.short_circuit && is_local_host(&loc.host) {
                match self.read_local(loc, block).await {
                    Ok(b) => Ok(b),
                    Err(_) => self.read_remote(loc, block).await,
                }
            } else {
                self.read_remote(loc, block).await
            };
            match result {
                Ok(bytes) if bytes.len() as u64 == block.length => return Ok(bytes),
                Ok(bytes) => {
                    last_error = FsError::Internal {
                        reason: format!("worker {} returned {} bytes of block {}, expected {}", loc.host, bytes.len(), block.block_id, block.length),
                    }
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Short-circuit: map the block file of a worker on this host.
    async fn read_local(&self, loc: &WorkerNetAddress, block: &BlockInfo) -> Result<Bytes, FsError> {
        let channel =
            rpc::connect(&format!("{}:{}", loc.host, loc.rpc_port), self.fs.inner.options.request_timeout, self.fs.inner.options.security.tls.as_ref()).await?;
        let resp = WorkerServiceClient::new(channel).open_local_block(BlockRequest { block_id: block.block_id }).await.map_err(status)?.into_inner();
        let file = std::fs::File::open(&resp.path).map_err(|e| FsError::Unavailable { reason: format!("short-circuit open {}: {e}", resp.path) })?;
        if resp.length == 0 {
            return Ok(Bytes::new());
        }
        // SAFETY: committed block files are immutable; eviction unlinks, never truncates,
        // so the mapping stays valid for its whole life.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FsError::Unavailable { reason: format!("short-circuit map {}: {e}", resp.path) })?;
        Ok(Bytes::copy_from_slice(&map[..]))
    }

    /// Streams the block from a worker's data port.
    async fn read_remote(&self, loc: &WorkerNetAddress, block: &BlockInfo) -> Result<Bytes, FsError> {
        let channel = rpc::connect(&data_address(loc), self.fs.inner.options.request_timeout, self.fs.inner.options.security.tls.as_ref()).await?;
        let mut stream = BlockDataServiceClient::new(channel)
            .read_block(ReadBlockRequest { block_id: block.block_id, offset: 0, length: 0 })
            .await
            .map_err(status)?
            .into_inner();
        let mut buf = Vec::with_capacity(block.length as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(status)?.data);
        }
        Ok(Bytes::from(buf))
    }
}
