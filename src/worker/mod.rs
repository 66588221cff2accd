//! The worker: keeps blocks in its storage tiers ([`store`]: MEM first, then SSD and HDD
//! as configured), serves block reads and writes
//! (data port 29999) and short-circuit opens (RPC port 29998), registers with the leader
//! master and heartbeats. It never exits because a master is unreachable: it keeps
//! retrying, re-resolves the leader and re-registers with its full block report.

pub mod store;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::config::{self, Config};
use crate::coordinator::Coordinator;
use crate::core::tiers::{TierAlias, TierSpace};
use crate::error::FsError;
use crate::proto::block_data_service_server::{BlockDataService, BlockDataServiceServer};
use crate::proto::master_service_client::MasterServiceClient;
use crate::proto::worker_service_server::{WorkerService, WorkerServiceServer};
use crate::proto::*;
use crate::rpc::LeaderChannel;
use store::{BlockStore, TierDirs};

/// Settings of a worker, validated from [`Config`].
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub address: WorkerNetAddress,
    /// Hosts the RPC, data and web servers listen on (see [`config::derive_bind_host`]).
    pub bind_hosts: WorkerBindHosts,
    /// The storage tiers, fastest first: each a kind and folders with quotas.
    pub tiers: Vec<TierDirs>,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub chunk_bytes: usize,
    /// A block write silent this long is abandoned (its reservation released).
    pub write_idle_timeout: Duration,
    /// The cluster secret (proving to the master that this worker belongs to the
    /// cluster) and TLS.
    pub security: crate::security::SecurityOptions,
}

/// The hosts a worker's three servers listen on.
#[derive(Clone, Debug)]
pub struct WorkerBindHosts {
    pub rpc: String,
    pub data: String,
    pub web: String,
}

impl WorkerBindHosts {
    /// All three servers on one host.
    pub fn all(host: &str) -> Self {
        WorkerBindHosts { rpc: host.to_string(), data: host.to_string(), web: host.to_string() }
    }
}

impl WorkerOptions {
    /// Reads the worker's settings. Tier folders are per worker address so several
    /// workers can share one host.
    pub fn from_config(cfg: &Config) -> Result<Self, FsError> {
        let host = cfg.string(config::WORKER_HOSTNAME);
        let port = cfg.port(config::WORKER_PORT);
        let tiers = tiers_from_config(cfg, &format!("{host}_{port}"))?;
        Ok(WorkerOptions {
            address: WorkerNetAddress {
                host,
                rpc_port: port as u32,
                data_port: cfg.port(config::WORKER_DATA_PORT) as u32,
                web_port: cfg.port(config::WORKER_WEB_PORT) as u32,
            },
            bind_hosts: WorkerBindHosts {
                rpc: cfg.bind_host(config::WORKER_BIND_HOST, config::WORKER_HOSTNAME),
                data: cfg.bind_host(config::WORKER_DATA_BIND_HOST, config::WORKER_HOSTNAME),
                web: cfg.bind_host(config::WORKER_WEB_BIND_HOST, config::WORKER_HOSTNAME),
            },
            tiers,
            heartbeat_interval: Duration::from_millis(cfg.duration_ms(config::WORKER_HEARTBEAT_INTERVAL).max(10)),
            heartbeat_timeout: Duration::from_millis(cfg.duration_ms(config::WORKER_HEARTBEAT_TIMEOUT).max(100)),
            chunk_bytes: cfg.bytes(config::USER_CHUNK_SIZE).clamp(4096, 16 << 20) as usize,
            write_idle_timeout: Duration::from_millis(cfg.duration_ms(config::WORKER_WRITE_IDLE_TIMEOUT).max(100)),
            security: crate::security::SecurityOptions::from_config(cfg)?,
        })
    }
}

/// The tiers `tachyon.worker.tieredstore.*` configure, each folder extended by
/// `tachyonworker/<worker>`. Every problem is one error naming the key and its value.
pub fn tiers_from_config(cfg: &Config, worker: &str) -> Result<Vec<TierDirs>, FsError> {
    let levels = cfg.integer(config::WORKER_TIER_LEVELS) as usize;
    let invalid = |key: &str, reason: String| FsError::InvalidArgument { reason: format!("{key} = {:?}: {reason}", cfg.string(key)) };
    if !(1..=config::MAX_WORKER_TIERS).contains(&levels) {
        return Err(invalid(config::WORKER_TIER_LEVELS, format!("a worker has 1 to {} storage tiers", config::MAX_WORKER_TIERS)));
    }
    let mut tiers: Vec<TierDirs> = Vec::new();
    for (alias_key, path_key, quota_key) in config::WORKER_TIER_KEYS.iter().take(levels) {
        let alias = TierAlias::parse(&cfg.string(alias_key)).ok_or_else(|| invalid(alias_key, "not MEM, SSD or HDD".into()))?;
        if tiers.last().is_some_and(|above| above.alias >= alias) {
            return Err(invalid(alias_key, "tiers are listed fastest first, each kind once (MEM, then SSD, then HDD)".into()));
        }
        let paths: Vec<String> = cfg.string(path_key).split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect();
        if paths.is_empty() {
            return Err(invalid(path_key, format!("the {alias} tier needs at least one folder")));
        }
        let quotas = cfg.bytes_list(quota_key);
        if quotas.is_empty() || quotas.len() > paths.len() || quotas.contains(&0) {
            return Err(invalid(quota_key, format!("give one quota above zero per folder of {path_key} (the last one applies to the folders after it)")));
        }
        let last_quota = quotas[quotas.len() - 1];
        let dirs = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (PathBuf::from(p).join("tachyonworker").join(worker), quotas.get(i).copied().unwrap_or(last_quota)))
            .collect();
        tiers.push(TierDirs { alias, dirs });
    }
    let mut folders: Vec<&PathBuf> = tiers.iter().flat_map(|t| t.dirs.iter().map(|d| &d.0)).collect();
    folders.sort();
    if let Some(twice) = folders.windows(2).find(|w| w[0] == w[1]) {
        return Err(FsError::InvalidArgument { reason: format!("worker tier folder {} is configured twice", twice[0].display()) });
    }
    Ok(tiers)
}

/// What a worker's web page shows.
pub struct WorkerSummary {
    pub address: String,
    pub worker_id: u64,
    pub used_bytes: u64,
    pub capacity_bytes: u64,
    /// Capacity and use of each tier, top first.
    pub tiers: Vec<TierSpace>,
    /// (block id, length, tier), in block order.
    pub blocks: Vec<(u64, u64, TierAlias)>,
}

/// Longest a worker waits for one answer from the master.
const MAX_MASTER_RPC_TIME: Duration = Duration::from_secs(5);

/// Longest a block write waits for a leader (checking or committing the block) through a
/// failover; a client's block stream waits this long and a little more for the answer.
pub const MAX_MASTER_WAIT: Duration = Duration::from_secs(20);

/// How a worker retries the leader while a block write waits on it.
fn master_retry() -> crate::rpc::RetryPolicy {
    crate::rpc::RetryPolicy { base_sleep: Duration::from_millis(50), max_sleep: Duration::from_secs(1), max_duration: MAX_MASTER_WAIT }
}

/// Worker ids are never 0; 0 means "not registered".
const UNREGISTERED: u64 = 0;

/// A worker's shared state.
pub struct Worker {
    options: WorkerOptions,
    store: Arc<BlockStore>,
    master: LeaderChannel,
    worker_id: AtomicU64,
}

impl Worker {
    /// A request to the master carrying this worker's proof of the cluster secret.
    fn signed<T>(&self, message: T) -> tonic::Request<T> {
        crate::security::sign_worker(&self.options.security.cluster_secret, message)
    }
}

fn master_client(channel: tonic::transport::Channel) -> MasterServiceClient<tonic::transport::Channel> {
    MasterServiceClient::new(channel)
}

impl Worker {
    /// Opens the storage tiers and prepares the master connection.
    pub fn new(options: WorkerOptions, coordinator: Arc<dyn Coordinator>) -> Result<Arc<Worker>, FsError> {
        let store = BlockStore::open(&options.tiers)?;
        for (tier, space) in options.tiers.iter().zip(store.tier_usage()) {
            let folders: Vec<String> = tier.dirs.iter().map(|d| d.0.display().to_string()).collect();
            info!(tier = %tier.alias, folders = %folders.join(","), used = space.used_bytes, capacity = space.capacity_bytes, "storage tier opened");
        }
        info!(blocks = store.report().len(), "blocks found in the tiers");
        // A paused master must not hold a heartbeat for long: the next one asks who leads.
        let master = LeaderChannel::new(coordinator, options.heartbeat_timeout.min(MAX_MASTER_RPC_TIME), options.security.tls.clone());
        Ok(Arc::new(Worker { options, store, master, worker_id: AtomicU64::new(UNREGISTERED) }))
    }

    /// Its address, id, usage and blocks, for the web UI.
    pub fn summary(&self) -> WorkerSummary {
        let (used_bytes, capacity_bytes) = self.store.usage();
        WorkerSummary {
            address: format!("{}:{}", self.options.address.host, self.options.address.rpc_port),
            worker_id: self.worker_id.load(Ordering::Acquire),
            used_bytes,
            capacity_bytes,
            tiers: self.store.tier_usage(),
            blocks: self.store.blocks_by_tier(),
        }
    }

    /// Capacity and use of each tier, as the master is told.
    fn tier_report(&self) -> Vec<TierUsage> {
        self.store.tier_usage().into_iter().map(TierSpace::to_proto).collect()
    }

    /// Registers with the leader, reporting every block held.
    async fn register(&self) -> Result<u64, FsError> {
        let (_, channel) = self.master.get().await?;
        let (used, capacity) = self.store.usage();
        let blocks = self.store.report().into_iter().map(|(block_id, length)| BlockReport { block_id, length }).collect();
        let req = RegisterWorkerRequest {
            address: Some(self.options.address.clone()),
            capacity_bytes: capacity,
            used_bytes: used,
            blocks,
            tiers: self.tier_report(),
        };
        let id = master_client(channel).register_worker(self.signed(req)).await.map_err(FsError::from)?.into_inner().worker_id;
        self.worker_id.store(id, Ordering::Release);
        info!(worker_id = id, "registered with the leader master");
        Ok(id)
    }

    /// One heartbeat; carries out the master's command.
    async fn heartbeat(&self) -> Result<(), FsError> {
        let id = self.worker_id.load(Ordering::Acquire);
        if id == UNREGISTERED {
            self.register().await?;
            return Ok(());
        }
        let (_, channel) = self.master.get().await?;
        let removed = self.store.take_removed();
        // The removals were assembled, and the deletions in the answer will be decided,
        // before any commit after this mark.
        let mark = self.store.commit_mark();
        let req = HeartbeatRequest {
            worker_id: id,
            used_bytes: self.store.usage().0,
            removed_block_ids: removed.clone(),
            removed_as_of: mark,
            tiers: self.tier_report(),
        };
        let resp = match master_client(channel).heartbeat(self.signed(req)).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                self.store.restore_removed(removed);
                return Err(status.into());
            }
        };
        for block in resp.delete_block_ids {
            self.store.remove_unless_recommitted(block, mark);
        }
        if resp.register {
            info!(worker_id = id, "master does not know this worker (restart or failover): registering again");
            self.register().await?;
        }
        Ok(())
    }

    /// Heartbeats forever. After `heartbeat_timeout` without success the leader is looked
    /// up again and the worker re-registers; it never gives up.
    pub async fn heartbeat_loop(self: Arc<Self>) {
        let mut last_ok = tokio::time::Instant::now();
        let mut failing = false;
        loop {
            // Watch the coordinator: a new leader gets the full block report at once.
            match self.master.follow_leader().await {
                Ok(true) if self.worker_id.load(Ordering::Acquire) != UNREGISTERED => {
                    info!("the leader master changed: registering with the new one");
                    self.worker_id.store(UNREGISTERED, Ordering::Release);
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "cannot ask the coordinator who leads"),
            }
            match self.heartbeat().await {
                Ok(()) => {
                    if failing {
                        info!("heartbeats to the master succeed again");
                    }
                    failing = false;
                    last_ok = tokio::time::Instant::now();
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "heartbeat failed; retrying");
                    }
                    failing = true;
                    self.master.reset().await;
                    if last_ok.elapsed() >= self.options.heartbeat_timeout {
                        warn!(
                            timeout_ms = self.options.heartbeat_timeout.as_millis() as u64,
                            "no successful heartbeat within the timeout: will re-register with whichever master leads"
                        );
                        self.worker_id.store(UNREGISTERED, Ordering::Release);
                        last_ok = tokio::time::Instant::now();
                    }
                }
            }
            tokio::time::sleep(self.options.heartbeat_interval).await;
        }
    }

    /// Asks the master which of the least recently used blocks may be evicted (their data is
    /// in under-storage and their file is not pinned) and marks exactly those evictable.
    /// Evicted blocks reach the master as removals with the next heartbeat; until then a
    /// reader that finds one gone falls back to the under-storage copy.
    async fn refresh_evictable(&self) -> Result<(), FsError> {
        let candidates = self.store.eviction_candidates(crate::master::service::MAX_EVICTION_CANDIDATES);
        if candidates.is_empty() {
            return Ok(());
        }
        let id = self.worker_id.load(Ordering::Acquire);
        let (_, channel) = self.master.get().await?;
        let req = EvictableRequest { worker_id: id, block_ids: candidates.clone() };
        let allowed = master_client(channel).filter_evictable(self.signed(req)).await.map_err(FsError::from)?.into_inner().block_ids;
        debug!(candidates = candidates.len(), evictable = allowed.len(), "asked the master which blocks may be evicted");
        self.store.set_evictable(&candidates, &allowed.into_iter().collect());
        Ok(())
    }

    /// Starts writing a block on a thread that may block: making room can copy blocks
    /// down a tier.
    async fn begin_write(&self, block: u64, length: u64) -> Result<store::TempBlock, FsError> {
        let store = self.store.clone();
        crate::runtime::spawn_compute(move || store.begin_write(block, length))
            .await
            .map_err(|e| FsError::Internal { reason: format!("block {block}: reserving room failed: {e}") })?
    }

    /// Moves a block held below the top tier up to it (CACHE_PROMOTE) on a thread that may
    /// block (it copies files); best effort.
    async fn promote(&self, block: u64) {
        if !self.store.is_below_top(block) {
            return;
        }
        let store = self.store.clone();
        if let Err(e) = crate::runtime::spawn_compute(move || store.promote(block)).await {
            warn!(block, error = %e, "promoting a block failed");
        }
    }

    /// Asks the leader whether `length` bytes of `block` may be stored here (a block of a
    /// file being written, or a cache fill of a persisted one) before reserving them.
    /// Retried through a failover (the leader looked up again each time) for at most
    /// [`MAX_MASTER_WAIT`].
    async fn check_write_with_master(&self, block: u64, length: u64) -> Result<(), FsError> {
        master_retry()
            .run(&self.master, "checkBlockWrite", |channel| async move {
                master_client(channel).check_block_write(self.signed(BlockWriteCheck { block_id: block, length })).await.map(|_| ()).map_err(FsError::from)
            })
            .await
    }

    /// Tells the master a block is stored; registers first if needed (again after a
    /// failover). Retried as [`Worker::check_write_with_master`] is.
    async fn commit_to_master(&self, block: u64, length: u64) -> Result<(), FsError> {
        master_retry()
            .run(&self.master, "commitBlock", |channel| async move {
                let mut id = self.worker_id.load(Ordering::Acquire);
                if id == UNREGISTERED {
                    id = self.register().await?;
                }
                let commit_mark = self.store.committed_mark(block).unwrap_or(0);
                let req = CommitBlockRequest { worker_id: id, block_id: block, length, used_bytes: self.store.usage().0, commit_mark };
                let committed = master_client(channel).commit_block(self.signed(req)).await.map(|_| ()).map_err(FsError::from);
                if committed.as_ref().is_err_and(FsError::is_retryable) {
                    // The leader changed or forgot this worker: register with whoever leads.
                    self.worker_id.store(UNREGISTERED, Ordering::Release);
                }
                committed
            })
            .await
    }
}

/// The worker's control RPC (port 29998).
#[derive(Clone)]
pub struct WorkerRpc(pub Arc<Worker>);

#[tonic::async_trait]
impl WorkerService for WorkerRpc {
    async fn open_local_block(&self, request: Request<BlockRequest>) -> Result<Response<LocalBlockResponse>, Status> {
        let BlockRequest { block_id: block, promote } = *request.get_ref();
        if promote {
            self.0.promote(block).await;
        }
        let (path, length) = self.0.store.open_local(block).ok_or_else(|| Status::from(FsError::NotFound { path: format!("block {block}") }))?;
        Ok(Response::new(LocalBlockResponse { path: path.display().to_string(), length }))
    }
}

/// The worker's data service (port 29999).
#[derive(Clone)]
pub struct BlockDataRpc(pub Arc<Worker>);

type ChunkStream = Pin<Box<dyn Stream<Item = Result<DataChunk, Status>> + Send>>;

#[tonic::async_trait]
impl BlockDataService for BlockDataRpc {
    type ReadBlockStream = ChunkStream;

    async fn read_block(&self, request: Request<ReadBlockRequest>) -> Result<Response<ChunkStream>, Status> {
        let req = request.into_inner();
        if req.promote {
            self.0.promote(req.block_id).await;
        }
        let (map, tier) = self.0.store.read(req.block_id).map_err(Status::from)?;
        let total = map.as_ref().map(|m| m.len() as u64).unwrap_or(0);
        if req.offset > total {
            return Err(FsError::InvalidArgument { reason: format!("offset {} past block end {total}", req.offset) }.into());
        }
        let end = if req.length == 0 { total } else { total.min(req.offset.saturating_add(req.length)) };
        crate::metrics::WORKER_BYTES.with_label_values(&[tier.as_str(), "read"]).inc_by(end.saturating_sub(req.offset));
        let chunk = self.0.options.chunk_bytes as u64;
        // The chunks are views of the mapping (the block file stays mapped until the last
        // one is sent): the only copy is the message encoding's.
        let block = map.map(Bytes::from_owner).unwrap_or_default();
        let stream = futures::stream::unfold(req.offset, move |pos| {
            let next = (pos + chunk).min(end);
            let data = (pos < end).then(|| block.slice(pos as usize..next as usize));
            async move { Some((Ok(DataChunk { data: data? }), next)) }
        });
        Ok(Response::new(Box::pin(stream) as ChunkStream))
    }

    async fn write_block(&self, request: Request<Streaming<WriteBlockChunk>>) -> Result<Response<WriteBlockResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream.message().await?.ok_or_else(|| Status::from(FsError::InvalidArgument { reason: "empty block write".into() }))?;
        // Block ids are never reused and blocks never change, so a block this worker still
        // holds (freed, its deletion not yet carried out) is the data being sent: keep it and
        // commit it again instead of failing a cache fill.
        if let Some(length) = self.0.store.block_length(first.block_id).filter(|_| self.0.store.recommit(first.block_id)) {
            while stream.message().await?.is_some() {}
            self.0.commit_to_master(first.block_id, length).await?;
            return Ok(Response::new(WriteBlockResponse { length }));
        }
        self.0.check_write_with_master(first.block_id, first.length).await.map_err(Status::from)?;
        let mut temp = match self.0.begin_write(first.block_id, first.length).await {
            Err(FsError::OutOfSpace { .. }) => {
                // Full: learn which blocks are safe to drop (persisted, unpinned) and try once more.
                self.0.refresh_evictable().await.map_err(Status::from)?;
                self.0.begin_write(first.block_id, first.length).await
            }
            other => other,
        }
        .map_err(Status::from)?;
        temp.write(&first.data).map_err(Status::from)?;
        // A writer that goes silent gives its reservation back (dropping `temp` releases it).
        let idle = self.0.options.write_idle_timeout;
        loop {
            let next = tokio::time::timeout(idle, stream.message()).await.map_err(|_| {
                warn!(block = first.block_id, idle_ms = idle.as_millis() as u64, "abandoning a silent block write");
                Status::from(FsError::Unavailable {
                    reason: format!("block {}: nothing received for {} ms; write abandoned", first.block_id, idle.as_millis()),
                })
            })?;
            match next? {
                Some(chunk) => temp.write(&chunk.data).map_err(Status::from)?,
                None => break,
            }
        }
        let (block, tier) = (temp.block(), temp.tier());
        let length = temp.commit().map_err(Status::from)?;
        crate::metrics::WORKER_BYTES.with_label_values(&[tier.as_str(), "written"]).inc_by(length);
        if let Err(e) = self.0.commit_to_master(block, length).await {
            warn!(block, error = %e, "master refused the block; discarding it");
            self.0.store.remove(block);
            return Err(e.into());
        }
        Ok(Response::new(WriteBlockResponse { length }))
    }
}

/// Runs a worker process until `shutdown` completes.
pub async fn run_worker(
    options: WorkerOptions,
    coordinator: Arc<dyn Coordinator>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), FsError> {
    let binds = options.bind_hosts.clone();
    let rpc_addr = crate::master::service::resolve(&format!("{}:{}", binds.rpc, options.address.rpc_port)).await?;
    let data_addr = crate::master::service::resolve(&format!("{}:{}", binds.data, options.address.data_port)).await?;
    let web_port = options.address.web_port;
    #[cfg(not(madsim))]
    let web_addr = crate::master::service::resolve(&format!("{}:{web_port}", binds.web)).await?;
    let worker = Worker::new(options, coordinator)?;
    let heartbeats = tokio::spawn(worker.clone().heartbeat_loop());
    #[cfg(not(madsim))]
    let web = (web_port != 0)
        .then(|| tokio::spawn(crate::web::serve(web_addr, crate::web::worker_router(worker.clone()), "worker", worker.options.security.tls.clone())));
    #[cfg(madsim)]
    let _ = (web_port, &binds.web);
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stop_rpc = {
        let mut rx = stop_tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let stop_data = {
        let mut rx = stop_tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });
    info!(%rpc_addr, %data_addr, "worker listening");
    let tls = worker.options.security.tls.as_ref();
    let rpc = crate::rpc::server_builder(tls)?
        .add_service(WorkerServiceServer::new(WorkerRpc(worker.clone())).max_decoding_message_size(crate::rpc::MAX_WORKER_REQUEST_BYTES))
        .serve_with_shutdown(rpc_addr, stop_rpc);
    let data = crate::rpc::server_builder(tls)?
        .add_service(BlockDataServiceServer::new(BlockDataRpc(worker.clone())).max_decoding_message_size(crate::rpc::MAX_WORKER_REQUEST_BYTES))
        .serve_with_shutdown(data_addr, stop_data);
    let (r1, r2) = tokio::join!(rpc, data);
    heartbeats.abort();
    #[cfg(not(madsim))]
    if let Some(web) = web {
        web.abort();
    }
    r1.and(r2).map_err(|e| FsError::Unavailable { reason: format!("worker server failed: {e}") })?;
    info!("worker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigInputs, Role};

    fn tiers_of(overrides: &[&str], env: &[(&str, &str)]) -> Result<Vec<TierDirs>, String> {
        let inputs = ConfigInputs {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
            role: Some(Role::Worker),
            ..ConfigInputs::default()
        };
        let cfg = Config::load(&inputs).map_err(|e| e.to_string())?;
        tiers_from_config(&cfg, "w_1").map_err(|e| e.to_string())
    }

    #[test]
    fn tiers_come_from_the_tieredstore_keys_and_the_memory_size() {
        let dirs = |alias, list: &[(&str, u64)]| TierDirs { alias, dirs: list.iter().map(|(p, q)| (PathBuf::from(p).join("tachyonworker/w_1"), *q)).collect() };
        // The defaults: one memory tier of tachyon.worker.memory.size in TACHYON_RAM_FOLDER.
        assert_eq!(
            tiers_of(&[], &[("TACHYON_RAM_FOLDER", "/mnt/ramdisk"), ("TACHYON_WORKER_MEMORY_SIZE", "2GB")]),
            Ok(vec![dirs(TierAlias::Mem, &[("/mnt/ramdisk", 2 << 30)])])
        );
        let three = tiers_of(
            &[
                "tachyon.worker.tieredstore.levels=3",
                "alluxio.worker.tieredstore.level1.dirs.path=/ssd0, /ssd1,/ssd2",
                "tachyon.worker.tieredstore.level1.dirs.quota=10GB,20GB",
                "tachyon.worker.tieredstore.level2.dirs.path=/hdd",
                "tachyon.worker.tieredstore.level2.dirs.quota=1TB",
                "tachyon.worker.memory.size=1GB",
            ],
            &[],
        );
        assert_eq!(
            three,
            Ok(vec![
                dirs(TierAlias::Mem, &[("/dev/shm", 1 << 30)]),
                dirs(TierAlias::Ssd, &[("/ssd0", 10 << 30), ("/ssd1", 20 << 30), ("/ssd2", 20 << 30)]),
                dirs(TierAlias::Hdd, &[("/hdd", 1 << 40)]),
            ])
        );
    }

    #[test]
    fn a_bad_tier_setting_is_one_error_naming_its_key() {
        for (overrides, key) in [
            (&["tachyon.worker.tieredstore.levels=4"][..], "tachyon.worker.tieredstore.levels"),
            (&["tachyon.worker.tieredstore.levels=0"][..], "tachyon.worker.tieredstore.levels"),
            (&["tachyon.worker.tieredstore.levels=2"][..], "tachyon.worker.tieredstore.level1.dirs.path"),
            (&["tachyon.worker.tieredstore.levels=2", "tachyon.worker.tieredstore.level1.dirs.path=/s"][..], "tachyon.worker.tieredstore.level1.dirs.quota"),
            (
                &[
                    "tachyon.worker.tieredstore.levels=2",
                    "tachyon.worker.tieredstore.level1.dirs.path=/s",
                    "tachyon.worker.tieredstore.level1.dirs.quota=1GB,2GB",
                ][..],
                "tachyon.worker.tieredstore.level1.dirs.quota",
            ),
            (
                &[
                    "tachyon.worker.tieredstore.levels=2",
                    "tachyon.worker.tieredstore.level1.alias=MEM",
                    "tachyon.worker.tieredstore.level1.dirs.path=/s",
                    "tachyon.worker.tieredstore.level1.dirs.quota=1GB",
                ][..],
                "tachyon.worker.tieredstore.level1.alias",
            ),
            (&["tachyon.worker.tieredstore.level0.alias=TAPE"][..], "tachyon.worker.tieredstore.level0.alias"),
            (&["tachyon.worker.tieredstore.level0.dirs.quota=lots"][..], "tachyon.worker.tieredstore.level0.dirs.quota"),
            (&["tachyon.worker.tieredstore.level0.dirs.quota=0"][..], "tachyon.worker.tieredstore.level0.dirs.quota"),
        ] {
            let error = tiers_of(overrides, &[]).expect_err(&format!("{overrides:?}"));
            assert!(error.contains(key), "{overrides:?}: {error}");
        }
        let twice = tiers_of(
            &[
                "tachyon.worker.tieredstore.levels=2",
                "tachyon.worker.tieredstore.level1.dirs.path=/dev/shm",
                "tachyon.worker.tieredstore.level1.dirs.quota=1GB",
            ],
            &[],
        );
        assert!(twice.is_err_and(|e| e.contains("/dev/shm/tachyonworker/w_1") && e.contains("twice")));
    }
}
