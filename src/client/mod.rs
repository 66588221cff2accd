//! The client library: a [`FileSystem`] handle a program uses to talk to tachyon.
//!
//! Metadata calls (`metadata.rs`) go to the leader master with bounded retry
//! ([`RetryPolicy`]); file data goes straight to workers: written as block streams
//! (`writer.rs`, `upload.rs`), read (`reader.rs`) from a local worker's tiers by mmap
//! (short-circuit) or streamed from a remote one. With an under-storage
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

mod coalesce;
mod metadata;
mod options;
mod reader;
mod upload;
mod writer;

pub use coalesce::BATCHING_REFUSAL_MS;
use coalesce::{Coalescer, Queued};
pub use options::{current_user, ClientOptions, CreateOptions, ReadType, WriteType};
pub use reader::{BlockStream, FileReader};
use upload::{ufs_error, BlockUpload, UfsUpload};
pub use writer::FileWriter;

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
    /// Creates and completions waiting to go to the master together (`coalesce.rs`).
    creates: Coalescer<Pending<CreateFileRequest>>,
    completions: Coalescer<Pending<CompleteFileRequest>>,
}

/// A request waiting for its batch, and where its answer goes.
type Pending<B> = (B, tokio::sync::oneshot::Sender<Result<FileInfo, FsError>>);

/// A master response on its way.
type Answer<T> = futures::future::BoxFuture<'static, Result<tonic::Response<T>, tonic::Status>>;

/// A request the client sends together with others of its kind (`coalesce.rs`).
trait Batched: Clone + Send + Sync + 'static {
    /// The batched call's name (for retries and logs).
    const CALL: &'static str;
    /// The single call's name, for a request that goes alone.
    const CALL_ALONE: &'static str;
    /// The queue of this kind.
    fn queue(inner: &Inner) -> &Coalescer<Pending<Self>>;
    /// Sends several in one call.
    fn call(client: MasterServiceClient<Channel>, batch: tonic::Request<Vec<Self>>) -> Answer<FileResults>;
    /// Sends one alone.
    fn call_alone(client: MasterServiceClient<Channel>, request: tonic::Request<Self>) -> Answer<FileInfo>;
}

impl Batched for CreateFileRequest {
    const CALL: &'static str = "createFiles";
    const CALL_ALONE: &'static str = "createFile";
    fn queue(inner: &Inner) -> &Coalescer<Pending<Self>> {
        &inner.creates
    }
    fn call(mut client: MasterServiceClient<Channel>, batch: tonic::Request<Vec<Self>>) -> Answer<FileResults> {
        Box::pin(async move { client.create_files(batch.map(|files| CreateFilesRequest { files })).await })
    }
    fn call_alone(mut client: MasterServiceClient<Channel>, request: tonic::Request<Self>) -> Answer<FileInfo> {
        Box::pin(async move { client.create_file(request).await })
    }
}

impl Batched for CompleteFileRequest {
    const CALL: &'static str = "completeFiles";
    const CALL_ALONE: &'static str = "completeFile";
    fn queue(inner: &Inner) -> &Coalescer<Pending<Self>> {
        &inner.completions
    }
    fn call(mut client: MasterServiceClient<Channel>, batch: tonic::Request<Vec<Self>>) -> Answer<FileResults> {
        Box::pin(async move { client.complete_files(batch.map(|files| CompleteFilesRequest { files })).await })
    }
    fn call_alone(mut client: MasterServiceClient<Channel>, request: tonic::Request<Self>) -> Answer<FileInfo> {
        Box::pin(async move { client.complete_file(request).await })
    }
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
        FileSystem {
            inner: Arc::new(Inner {
                options,
                mounts,
                leader,
                client_id,
                next_request: AtomicU64::new(0),
                creates: Coalescer::new(),
                completions: Coalescer::new(),
            }),
        }
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

    /// Creates a file and returns a writer for its content.
    pub async fn create_file(&self, path: &str, opts: CreateOptions) -> Result<FileWriter, FsError> {
        let write_type = opts.write_type.unwrap_or(self.inner.options.write_type);
        let ufs = if write_type.writes_through() { Some(self.ufs_of(path, &format!("write type {write_type:?}")).await?) } else { None };
        let block_size = opts.block_size.unwrap_or(self.inner.options.block_size);
        let request_id = self.next_request_id();
        let req = CreateFileRequest {
            path: path.to_string(),
            block_size_bytes: block_size,
            recursive: opts.recursive,
            ownership: Some(self.ownership(0o666)),
            request_id: request_id.clone(),
        };
        let info = self.coalesced(req).await?;
        let through = match ufs {
            Some((ufs, target)) => Some(UfsUpload::start(ufs, target, &request_id).await?),
            None => None,
        };
        Ok(FileWriter { fs: self.clone(), info, worker: None, write_type, through, block_index: 0, in_block: 0, total: 0, current: None })
    }

    /// Sends `req` together with the requests of its kind this client's other tasks make at
    /// the same time: one batched call for all of them (`coalesce.rs`).
    async fn coalesced<B: Batched>(&self, req: B) -> Result<FileInfo, FsError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        match B::queue(&self.inner).push((req, reply), tokio::time::Instant::now()) {
            Queued::StartFlusher => {
                tokio::spawn(self.clone().flush::<B>());
            }
            Queued::Taken => {}
            Queued::Alone((req, _)) => return self.alone(req).await,
        }
        answer.await.unwrap_or_else(|_| Err(FsError::Unavailable { reason: "the request was dropped unsent (the client's runtime is shutting down)".into() }))
    }

    /// Sends `req` in a call of its own.
    async fn alone<B: Batched>(&self, req: B) -> Result<FileInfo, FsError> {
        self.call(B::CALL_ALONE, |c| B::call_alone(c, self.signed(req.clone()))).await
    }

    /// Sends the queued requests of kind `B` in batches until none wait; each gets its own
    /// answer, or the error that failed its whole batch (after the usual retries). A master
    /// that does not know the batched call gets them (and the later ones, for a while) one
    /// call each.
    async fn flush<B: Batched>(self) {
        let queue = B::queue(&self.inner);
        while let Some(batch) = queue.next_batch() {
            let (requests, replies): (Vec<B>, Vec<_>) = batch.into_iter().unzip();
            let count = requests.len();
            let answered = if queue.batching_refused(tokio::time::Instant::now()) {
                Err(FsError::Unsupported { reason: format!("{} refused earlier", B::CALL) })
            } else {
                self.call(B::CALL, |c| B::call(c, self.signed(requests.clone()))).await
            };
            let results: Vec<Result<FileInfo, FsError>> = match answered {
                Err(FsError::Unsupported { reason }) => {
                    if queue.refuse_batching(tokio::time::Instant::now()) {
                        tracing::warn!(call = B::CALL, %reason, "the master does not take batched calls (an older version?): sending each request alone");
                    }
                    futures::future::join_all(requests.into_iter().map(|req| self.alone(req))).await
                }
                Ok(answer) if answer.results.len() == count => answer.results.into_iter().map(Into::into).collect(),
                Ok(answer) => {
                    let e = FsError::Internal { reason: format!("the master answered {} of {count} requests", answer.results.len()) };
                    tracing::error!(call = B::CALL, error = %e, "batched call");
                    vec![Err(e); count]
                }
                Err(e) => vec![Err(e); count],
            };
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that gave up no longer listens.
                let _ = reply.send(result);
            }
            // The callers just answered often send again at once: let them queue before
            // taking the next batch, or it leaves with a few and the rest wait a round trip.
            tokio::task::yield_now().await;
        }
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
        while r.append_next_block(&mut out).await? {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, capacity_bytes: u64, used_bytes: u64) -> WorkerReport {
        WorkerReport {
            address: Some(WorkerNetAddress { host: host.into(), rpc_port: 1, data_port: 2, web_port: 3 }),
            capacity_bytes,
            used_bytes,
            ..WorkerReport::default()
        }
    }

    #[test]
    fn writes_go_to_a_local_worker_else_the_one_with_the_most_room() {
        let remote_roomy = report("10.0.0.9", 100, 0);
        let local_full = report("127.0.0.1", 100, 90);
        assert_eq!(pick_worker(&[remote_roomy.clone(), local_full.clone()]).unwrap().host, "127.0.0.1", "local first");
        let remote_tight = report("10.0.0.8", 100, 80);
        assert_eq!(pick_worker(&[remote_tight, remote_roomy]).unwrap().host, "10.0.0.9", "then the most free space");
        assert_eq!(pick_worker(&[]), None);
        assert!(is_local_host("localhost") && is_local_host("127.0.0.5") && is_local_host("::1"));
        assert!(!is_local_host("10.0.0.9"));
    }
}
