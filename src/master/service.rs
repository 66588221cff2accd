//! The master's gRPC service (port 19998). Requests that need the leader's state go through
//! [`MasterNode::leader`], so a standby answers them with `NotLeader` and a hint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::info;

use super::file_info;
use super::node::MasterNode;
use crate::core::namespace::{file_of_block, AttributeChange, Inode, InodeKind, Mount, Ttl, UfsLocation};
use crate::underfs::mounts::UfsMounts;
use crate::underfs::UnderFs;
use crate::core::path::FsPath;
use crate::error::FsError;
use crate::proto::master_service_server::MasterService;
use crate::proto::*;

/// The gRPC face of a master process, in either role.
#[derive(Clone)]
pub struct MasterRpc {
    node: Arc<MasterNode>,
    /// When this process last looked at the under-storage for a directory (by path), so
    /// listings can skip it within the client's sync interval. Bounded; a forgotten
    /// directory is simply looked at again.
    synced_at_ms: Arc<std::sync::Mutex<BTreeMap<String, i64>>>,
}

/// Most directories whose last under-storage sync time is remembered.
const MAX_SYNC_RECORDS: usize = 100_000;

/// True if a listing must look at the under-storage: never looked (by this master), an
/// interval of 0 (always), or a positive interval that has passed; -1 means only once.
pub fn sync_due(last_synced_ms: Option<i64>, now_ms: i64, interval_ms: i64) -> bool {
    match last_synced_ms {
        None => true,
        Some(_) if interval_ms == 0 => true,
        Some(_) if interval_ms < 0 => false,
        Some(last) => now_ms.saturating_sub(last) >= interval_ms,
    }
}

fn path(raw: &str) -> Result<FsPath, FsError> {
    FsPath::parse(raw)
}

fn ownership_or_default(o: Option<InodeOwnership>, default_mode: u32) -> InodeOwnership {
    let mut o = o.unwrap_or_default();
    if o.mode == 0 {
        o.mode = default_mode;
    }
    o
}

type RpcResult<T> = Result<Response<T>, Status>;

/// Most under-storage names loaded into the namespace by one listing.
const MAX_LOADED_ENTRIES: usize = 10_000;

impl MasterRpc {
    /// Counts and times the operation and turns its result into a gRPC answer.
    fn reply<T>(&self, op: &'static str, started: tokio::time::Instant, r: Result<T, FsError>) -> RpcResult<T> {
        crate::metrics::MASTER_OPERATIONS.with_label_values(&[op, if r.is_ok() { "ok" } else { "error" }]).inc();
        crate::metrics::MASTER_RPC_SECONDS.with_label_values(&[op]).observe(started.elapsed().as_secs_f64());
        r.map(Response::new).map_err(Status::from)
    }
}

impl MasterRpc {
    /// Serves `node`'s requests.
    pub fn new(node: Arc<MasterNode>) -> Self {
        MasterRpc { node, synced_at_ms: Arc::new(std::sync::Mutex::new(BTreeMap::new())) }
    }

    /// Brings what the under-storage holds in directory `dir` and tachyon does not know
    /// into the namespace (metadata loaded on demand, journaled like any change). An
    /// unreachable under-storage is logged and leaves the namespace as it is.
    async fn load_from_under_storage(&self, dir: &FsPath) -> Result<(), FsError> {
        let Some(mounts) = self.node.ufs_mounts() else { return Ok(()) };
        let leader = self.node.leader().await?;
        let location = leader.read_unchecked(|st| st.ns.resolve_ufs(dir)).await;
        if location.mount.is_none() && mounts.root().is_none() {
            return Ok(());
        }
        let listed = match mounts.open(&location, "listing") {
            Ok((ufs, ufs_dir)) => ufs.list_status(&ufs_dir).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let found = match listed {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(path = %dir, error = %e, "cannot list the under-storage; showing what tachyon has");
                return Ok(());
            }
        };
        if found.is_empty() {
            return Ok(());
        }
        let own = ownership_or_default(None, 0o644);
        let block_size = self.node.options().loaded_block_size;
        // Planned under the state lock, so names created meanwhile are skipped, not clashed with.
        leader.mutate("", |st, now| st.ns.plan_load_from_under_storage(dir, &found, block_size, &own, MAX_LOADED_ENTRIES, now), |_| Ok(())).await
    }

    /// Runs a mutation planned on one path and answers with that path's new status.
    async fn mutate_path(
        &self,
        request_id: &str,
        raw_path: &str,
        plan: impl FnOnce(&super::State, &FsPath, i64) -> Result<Vec<crate::proto::journal_entry::Kind>, FsError>,
    ) -> Result<FileInfo, FsError> {
        let p = path(raw_path)?;
        self.node.leader().await?.mutate(request_id, |st, now| plan(st, &p, now), |st| Ok(file_info(st, st.ns.lookup(&p)?, &p))).await
    }
}

#[tonic::async_trait]
impl MasterService for MasterRpc {
    async fn create_file(&self, request: Request<CreateFileRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let own = ownership_or_default(req.ownership, 0o644);
        self.reply("createFile", started, self.mutate_path(&req.request_id, &req.path, |st, p, now| st.ns.plan_create_file(p, req.block_size_bytes, req.recursive, &own, now)).await)
    }

    async fn complete_file(&self, request: Request<CompleteFileRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = async {
            let persistence = PersistenceState::try_from(req.persistence)
                .map_err(|_| FsError::InvalidArgument { reason: format!("unknown persistence state {}", req.persistence) })?;
            if persistence != PersistenceState::NotPersisted && self.node.ufs_mounts().is_none() {
                return Err(FsError::InvalidArgument { reason: format!("{}: this master has no under-storage to persist to", req.path) });
            }
            self.mutate_path(&req.request_id, &req.path, |st, p, now| {
                st.ns.plan_complete_file(p, req.length, persistence, |b| st.registry.committed_length(b), now)
            })
            .await
        }
        .await;
        self.reply("completeFile", started, result)
    }

    async fn persist_file(&self, request: Request<PersistFileRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        self.reply("persistFile", started, self.mutate_path(&req.request_id, &req.path, |st, p, now| st.ns.plan_persist_file(p, now)).await)
    }

    async fn get_status(&self, request: Request<PathRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let result = async {
            let p = path(&request.get_ref().path)?;
            let leader = self.node.leader().await?;
            match leader.read(|st| Ok(file_info(st, st.ns.lookup(&p)?, &p))).await {
                // Not known to tachyon: maybe only in the under-storage.
                Err(FsError::NotFound { .. }) if !p.is_root() => {
                    self.load_from_under_storage(&p.parent().unwrap_or_else(FsPath::root)).await?;
                    leader.read(|st| Ok(file_info(st, st.ns.lookup(&p)?, &p))).await
                }
                other => other,
            }
        }
        .await;
        self.reply("getStatus", started, result)
    }

    async fn list_status(&self, request: Request<ListStatusRequest>) -> RpcResult<ListStatusResponse> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = async {
            let p = path(&req.path)?;
            let now = self.node.leader().await?.now_ms();
            let key = p.to_string();
            let last = self.synced_at_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).copied();
            if sync_due(last, now, req.sync_interval_ms) {
                self.load_from_under_storage(&p).await?;
                let mut synced = self.synced_at_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if synced.len() >= MAX_SYNC_RECORDS {
                    synced.pop_first();
                }
                synced.insert(key, now);
            }
            self.node
                .leader()
                .await?
                .read(|st| {
                    let inode = st.ns.lookup(&p)?;
                    if !inode.is_directory() {
                        return Ok(ListStatusResponse { files: vec![file_info(st, inode, &p)] });
                    }
                    Ok(ListStatusResponse { files: super::list_infos(st, inode, req.recursive) })
                })
                .await
        }
        .await;
        self.reply("listStatus", started, result)
    }

    async fn create_directory(&self, request: Request<CreateDirectoryRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let own = ownership_or_default(req.ownership, 0o755);
        self.reply("createDirectory", started, 
            self.mutate_path(&req.request_id, &req.path, |st, p, now| st.ns.plan_create_directory(p, req.recursive, req.allow_exists, &own, now))
                .await,
        )
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = async {
            let p = path(&req.path)?;
            let leader = self.node.leader().await?;
            delete_mirrored(&self.node, &leader, &req.request_id, &p, |st, now| st.ns.plan_delete(&p, req.recursive, now)).await?;
            Ok(Empty {})
        }
        .await;
        self.reply("delete", started, result)
    }

    async fn rename(&self, request: Request<RenameRequest>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = async {
            let (src, dst) = (path(&req.src)?, path(&req.dst)?);
            let leader = self.node.leader().await?;
            // Persisted files keep their under-storage copy at their path: move the copies
            // first (only if the rename is valid now), then journal the rename.
            // A retry of an applied rename is answered by `mutate` from the request id.
            let mut emptied = Vec::new();
            let moves = match self.node.ufs_mounts() {
                Some(_) => {
                    leader
                        .read(|st| {
                            if st.ns.request_applied(&req.request_id) {
                                return Ok(Vec::new());
                            }
                            st.ns.plan_rename(&src, &dst, 0)?;
                            emptied = directories_under(st, &src);
                            Ok(persisted_files_under(st, &src)
                                .into_iter()
                                .map(|(file, from)| {
                                    let moved = FsPath::parse(&format!("{dst}{}", &file[src.to_string().len()..]));
                                    let to = moved.map(|p| st.ns.resolve_ufs(&p));
                                    (file, from, to)
                                })
                                .collect::<Vec<_>>())
                        })
                        .await?
                }
                None => Vec::new(),
            };
            let moved = move_under_storage_copies(self.node.ufs_mounts(), moves).await?;
            let renamed = leader.mutate(&req.request_id, |st, now| st.ns.plan_rename(&src, &dst, now), |_| Ok(Empty {})).await;
            if let (Ok(_), Some(mounts)) = (&renamed, self.node.ufs_mounts()) {
                remove_emptied_dirs(mounts, &emptied).await;
            }
            if renamed.is_err() {
                for (ufs, from, to) in moved.iter().rev() {
                    if let Err(e) = ufs.rename(to, from).await {
                        tracing::warn!(from = %to, to = %from, error = %e, "could not move an under-storage copy back after a failed rename");
                    }
                }
            }
            renamed
        }
        .await;
        self.reply("rename", started, result)
    }

    async fn free(&self, request: Request<FreeRequest>) -> RpcResult<FreeResponse> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = async {
            let p = path(&req.path)?;
            let leader = self.node.leader().await?;
            let blocks_freed = leader.with_registry(|st, _now| free_cached(st, &p, req.recursive)).await?;
            Ok(FreeResponse { blocks_freed })
        }
        .await;
        self.reply("free", started, result)
    }

    async fn set_attribute(&self, request: Request<SetAttributeRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = async {
            let ttl = match req.ttl_ms {
                None => None,
                Some(ms) if ms < 0 => Some(None),
                Some(ttl_ms) => {
                    let action = TtlAction::try_from(req.ttl_action)
                        .map_err(|_| FsError::InvalidArgument { reason: format!("unknown TTL action {}", req.ttl_action) })?;
                    Some(Some(Ttl { ttl_ms, action }))
                }
            };
            let change = AttributeChange { pinned: req.pinned, ttl };
            self.mutate_path(&req.request_id, &req.path, |st, p, now| st.ns.plan_set_attribute(p, change, now)).await
        }
        .await;
        self.reply("setAttribute", started, result)
    }

    async fn mount(&self, request: Request<MountRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = async {
            let p = path(&req.path)?;
            let leader = self.node.leader().await?;
            let Some(mounts) = self.node.ufs_mounts() else {
                return Err(FsError::InvalidArgument { reason: "this master has no under-storage support".into() });
            };
            // Only a mount the leader can reach is journaled (a retry of one already
            // applied is answered from its request id, whatever the under-storage says).
            if !leader.read_unchecked(|st| st.ns.request_applied(&req.request_id)).await {
                let mount = Mount { ufs_uri: req.ufs_uri.trim().to_string(), options: req.options.clone() };
                let ufs = mounts.open_mount(&mount)?;
                ufs.list("").await.map_err(|e| FsError::InvalidArgument { reason: format!("cannot list {}: {e}", ufs.describe()) })?;
            }
            let own = ownership_or_default(None, 0o755);
            leader
                .mutate(&req.request_id, |st, now| st.ns.plan_mount(&p, &req.ufs_uri, &req.options, &own, now), |st| {
                    Ok(file_info(st, st.ns.lookup(&p)?, &p))
                })
                .await
        }
        .await;
        self.reply("mount", started, result)
    }

    async fn unmount(&self, request: Request<UnmountRequest>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = async {
            let p = path(&req.path)?;
            self.node.leader().await?.mutate(&req.request_id, |st, now| st.ns.plan_unmount(&p, now), |_| Ok(Empty {})).await
        }
        .await;
        self.reply("unmount", started, result)
    }

    async fn get_mount_table(&self, _request: Request<Empty>) -> RpcResult<MountTableResponse> {
        let started = tokio::time::Instant::now();
        let result = async {
            let leader = self.node.leader().await?;
            leader
                .read(|st| {
                    let mounts = st
                        .ns
                        .mount_points()
                        .into_iter()
                        .map(|m| MountPointInfo { path: m.path.to_string(), ufs_uri: m.mount.ufs_uri, options: m.mount.options })
                        .collect();
                    Ok(MountTableResponse { mounts })
                })
                .await
        }
        .await;
        self.reply("getMountTable", started, result)
    }

    async fn get_workers(&self, _request: Request<Empty>) -> RpcResult<WorkersResponse> {
        let workers = self
            .node
            .leader()
            .await?
            .with_registry(|st, _| {
                st.registry
                    .workers()
                    .map(|w| WorkerReport {
                        worker_id: w.id,
                        address: Some(w.address.clone()),
                        capacity_bytes: w.capacity_bytes,
                        used_bytes: w.used_bytes,
                        block_count: w.blocks.len() as u64,
                        last_heartbeat_ms: w.last_heartbeat_ms,
                        lost: w.lost,
                    })
                    .collect()
            })
            .await;
        Ok(Response::new(WorkersResponse { workers }))
    }

    async fn get_master_info(&self, _request: Request<Empty>) -> RpcResult<MasterInfoResponse> {
        let node = &self.node;
        let leader = node.coordinator().leader_address().await.ok().flatten().unwrap_or_default();
        let mut info = MasterInfoResponse {
            leader_address: leader,
            masters: vec![node.status().await],
            start_time_ms: node.start_time_ms(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..MasterInfoResponse::default()
        };
        // Cluster figures come from the leader's registry; a standby has none.
        if let Ok(m) = node.leader().await {
            m.with_registry(|st, _| {
                for w in st.registry.workers() {
                    if w.lost {
                        info.lost_workers += 1;
                    } else {
                        info.live_workers += 1;
                        info.capacity_bytes += w.capacity_bytes;
                        info.used_bytes += w.used_bytes;
                    }
                }
            })
            .await;
        }
        Ok(Response::new(info))
    }

    async fn get_state_digest(&self, _request: Request<Empty>) -> RpcResult<StateDigest> {
        Ok(Response::new(self.node.state_digest().await))
    }

    async fn register_worker(&self, request: Request<RegisterWorkerRequest>) -> RpcResult<RegisterWorkerResponse> {
        let req = request.into_inner();
        let Some(address) = req.address else {
            return Err(FsError::InvalidArgument { reason: "worker address missing".into() }.into());
        };
        let blocks: Vec<(u64, u64)> = req.blocks.iter().map(|b| (b.block_id, b.length)).collect();
        let (id, orphans) = self
            .node
            .leader()
            .await?
            .with_registry(|st, now| {
                let id = st.registry.register(address.clone(), req.capacity_bytes, req.used_bytes, &blocks, now);
                // Blocks of files deleted while the worker was away are deleted now.
                let orphans: Vec<u64> = blocks
                    .iter()
                    .map(|(b, _)| *b)
                    .filter(|b| st.ns.inode(file_of_block(*b)).is_none_or(|i| i.is_directory()))
                    .collect();
                st.registry.remove_blocks(&orphans);
                (id, orphans.len())
            })
            .await;
        info!(worker_id = id, host = %address.host, port = address.rpc_port, blocks = blocks.len(), orphans,
            "worker registered");
        Ok(Response::new(RegisterWorkerResponse { worker_id: id }))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> RpcResult<HeartbeatResponse> {
        let req = request.into_inner();
        let cmd = self
            .node
            .leader()
            .await?
            .with_registry(|st, now| st.registry.heartbeat(req.worker_id, req.used_bytes, &req.removed_block_ids, now))
            .await;
        Ok(Response::new(HeartbeatResponse { register: cmd.register, delete_block_ids: cmd.delete_blocks }))
    }

    async fn commit_block(&self, request: Request<CommitBlockRequest>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = self
            .node
            .leader()
            .await?
            .with_registry(|st, now| {
                let file = file_of_block(req.block_id);
                let inode = st.ns.inode(file);
                match inode.map(|i| &i.kind) {
                    Some(InodeKind::File { complete: false, .. }) => {}
                    // A block read back from under-storage and cached again: exactly that block.
                    Some(InodeKind::File { complete: true, persistence: PersistenceState::Persisted, .. })
                        if inode.and_then(|i| i.expected_block_length(req.block_id)) == Some(req.length) => {}
                    Some(InodeKind::File { complete: true, .. }) => {
                        return Err(FsError::FileAlreadyComplete { path: format!("inode {file}") })
                    }
                    _ => return Err(FsError::NotFound { path: format!("file of block {} (inode {file})", req.block_id) }),
                }
                st.registry
                    .commit_block(req.worker_id, req.block_id, req.length, req.used_bytes, now)
                    .map_err(|e| FsError::Unavailable { reason: e.to_string() })
            })
            .await;
        self.reply("commitBlock", started, result.map(|()| Empty {}))
    }

    async fn filter_evictable(&self, request: Request<EvictableRequest>) -> RpcResult<EvictableResponse> {
        let started = tokio::time::Instant::now();
        let req = request.into_inner();
        let result = async {
            if req.block_ids.len() > MAX_EVICTION_CANDIDATES {
                return Err(FsError::InvalidArgument {
                    reason: format!("{} eviction candidates, at most {MAX_EVICTION_CANDIDATES} per request", req.block_ids.len()),
                });
            }
            let leader = self.node.leader().await?;
            let block_ids = leader.read_unchecked(|st| req.block_ids.iter().copied().filter(|b| st.ns.may_evict(*b)).collect()).await;
            Ok(EvictableResponse { block_ids })
        }
        .await;
        self.reply("filterEvictable", started, result)
    }
}

/// Most blocks a worker may ask about in one [`EvictableRequest`].
pub const MAX_EVICTION_CANDIDATES: usize = 4096;

/// Deletes what `plan` selects (at or below `target`) and, once that is durable, the
/// under-storage copies of the persisted files it took along. A crash in between leaves
/// an orphan copy in under-storage, never a tachyon file without its data.
pub(super) async fn delete_mirrored(
    node: &MasterNode,
    leader: &super::Master,
    request_id: &str,
    target: &FsPath,
    plan: impl FnOnce(&super::State, i64) -> Result<Vec<crate::proto::journal_entry::Kind>, FsError>,
) -> Result<(), FsError> {
    let mut persisted: Vec<(String, UfsLocation)> = Vec::new();
    let mut dirs = Vec::new();
    let plan = |st: &super::State, now| {
        let kinds = plan(st, now)?;
        if !kinds.is_empty() {
            persisted = persisted_files_under(st, target);
            dirs = directories_under(st, target);
        }
        Ok(kinds)
    };
    leader.mutate(request_id, plan, |_| Ok(())).await?;
    if let Some(mounts) = node.ufs_mounts() {
        for (file, location) in persisted {
            let deleted = match mounts.open(&location, "deleting") {
                Ok((ufs, at)) => ufs.delete(&at).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = deleted {
                tracing::warn!(path = %file, error = %e, "could not delete the under-storage copy of a deleted file");
            }
        }
        remove_emptied_dirs(mounts, &dirs).await;
    }
    Ok(())
}

/// Drops the cached blocks of the files at or below `p` from the workers; returns how many.
/// Only data that also lives in under-storage may leave memory, and pinned files stay.
pub(super) fn free_cached(st: &mut super::State, p: &FsPath, recursive: bool) -> Result<u64, FsError> {
    let inode = st.ns.lookup(p)?;
    if inode.is_directory() && !recursive && !st.ns.children(inode).is_empty() {
        return Err(FsError::InvalidArgument { reason: format!("{p} is a directory: use -R") });
    }
    let mut blocks = Vec::new();
    for f in std::iter::once(inode).chain(st.ns.descendants(inode)) {
        if let InodeKind::File { length, persistence, .. } = f.kind {
            let fp = || st.ns.path_of(f.id).unwrap_or_else(FsPath::root).to_string();
            if length > 0 && persistence != PersistenceState::Persisted {
                return Err(FsError::NotPersisted { path: fp() });
            }
            if f.pinned {
                return Err(FsError::InvalidArgument { reason: format!("{} is pinned: unpin it before freeing it", fp()) });
            }
            blocks.extend(f.block_ids().into_iter().filter(|b| !st.registry.locations(*b).is_empty()));
        }
    }
    st.registry.remove_blocks(&blocks);
    Ok(blocks.len() as u64)
}

/// The persisted files at or below `p` (its whole subtree), each with where its copy is.
fn persisted_files_under(st: &super::State, p: &FsPath) -> Vec<(String, UfsLocation)> {
    let Ok(top) = st.ns.lookup(p) else { return Vec::new() };
    let persisted = |i: &&Inode| matches!(i.kind, InodeKind::File { persistence: PersistenceState::Persisted, .. });
    std::iter::once(top)
        .chain(st.ns.descendants(top))
        .filter(persisted)
        .filter_map(|i| st.ns.path_of(i.id))
        .map(|path| (path.to_string(), st.ns.resolve_ufs(&path)))
        .collect()
}

/// Where the directories at or below `p` are in under-storage, deepest first.
fn directories_under(st: &super::State, p: &FsPath) -> Vec<UfsLocation> {
    let Ok(top) = st.ns.lookup(p) else { return Vec::new() };
    let mut dirs: Vec<UfsLocation> = std::iter::once(top)
        .chain(st.ns.descendants(top))
        .filter(|i| i.is_directory())
        .filter_map(|i| st.ns.path_of(i.id))
        .map(|path| st.ns.resolve_ufs(&path))
        .collect();
    // `descendants` lists each directory before what is below it.
    dirs.reverse();
    dirs
}

/// Removes the under-storage directories of a deleted (or renamed-away) tachyon directory,
/// deepest first, where they are empty: one still holding files tachyon does not know
/// keeps them, and itself.
async fn remove_emptied_dirs(mounts: &UfsMounts, dirs: &[UfsLocation]) {
    for dir in dirs.iter().filter(|d| !d.relative.is_empty()) {
        let removed = match mounts.open(dir, "removing a directory") {
            Ok((ufs, at)) => ufs.delete_empty_dir(&at).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = removed {
            tracing::debug!(dir = %dir.relative, error = %e, "under-storage directory kept");
        }
    }
}

/// A copy moved by a rename: the under-storage, from, to.
type MovedCopy = (Arc<dyn UnderFs>, String, String);

/// Renames the under-storage copy of each renamed persisted file (`(file, from, to)`) to
/// its new place; on a failure moves back what it moved and fails. Returns the moves made.
async fn move_under_storage_copies(
    mounts: Option<&UfsMounts>,
    moves: Vec<(String, UfsLocation, Result<UfsLocation, FsError>)>,
) -> Result<Vec<MovedCopy>, FsError> {
    let mut moved: Vec<MovedCopy> = Vec::new();
    let Some(mounts) = mounts else { return Ok(moved) };
    for (file, from, to) in moves {
        let result = async {
            let to = to?;
            let (ufs, from) = mounts.open(&from, "renaming")?;
            let (_, to) = mounts.open(&to, "renaming")?;
            let parent = to.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let io = async {
                if !parent.is_empty() {
                    ufs.mkdirs(parent).await?;
                }
                ufs.rename(&from, &to).await
            }
            .await;
            io.map_err(|e| FsError::Unavailable { reason: format!("under-storage {}: moving {from} to {to}: {e}", ufs.describe()) })?;
            Ok::<MovedCopy, FsError>((ufs, from, to))
        }
        .await;
        match result {
            Ok(m) => moved.push(m),
            Err(e) => {
                for (ufs, f, t) in moved.iter().rev() {
                    let _ = ufs.rename(t, f).await;
                }
                tracing::warn!(path = %file, error = %e, "could not move the under-storage copy of a renamed file");
                return Err(e);
            }
        }
    }
    Ok(moved)
}

/// Resolves `host:port` to the socket address to bind, preferring IPv4.
pub async fn resolve(address: &str) -> Result<SocketAddr, FsError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| FsError::InvalidArgument { reason: format!("cannot resolve {address}: {e}") })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| FsError::InvalidArgument { reason: format!("{address} resolves to no address") })
}

#[cfg(test)]
mod tests {
    use super::sync_due;

    #[test]
    fn listings_look_at_the_under_storage_as_the_sync_interval_says() {
        assert!(sync_due(None, 0, -1), "a directory never looked at is looked at once");
        assert!(sync_due(Some(100), 100, 0), "0: every time");
        assert!(!sync_due(Some(100), 1_000_000, -1), "-1: only the first time");
        assert!(!sync_due(Some(100), 1099, 1000));
        assert!(sync_due(Some(100), 1100, 1000));
    }
}
