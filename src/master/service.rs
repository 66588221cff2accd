//! The master's gRPC service (port 19998) and the loop that runs a master process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tracing::{error, info};

use super::{file_info, Master, MasterOptions, StartError};
use crate::core::namespace::{file_of_block, InodeKind};
use crate::core::path::FsPath;
use crate::error::FsError;
use crate::proto::master_service_server::{MasterService, MasterServiceServer};
use crate::proto::*;

/// The gRPC face of a [`Master`].
#[derive(Clone)]
pub struct MasterRpc {
    master: Arc<Master>,
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

fn reply<T>(r: Result<T, FsError>) -> RpcResult<T> {
    r.map(Response::new).map_err(Status::from)
}

impl MasterRpc {
    /// Runs a mutation planned on one path and answers with that path's new status.
    async fn mutate_path(
        &self,
        raw_path: &str,
        plan: impl FnOnce(&super::State, &FsPath, i64) -> Result<Vec<crate::proto::journal_entry::Kind>, FsError>,
    ) -> Result<FileInfo, FsError> {
        let p = path(raw_path)?;
        self.master.mutate(|st, now| plan(st, &p, now), |st| Ok(file_info(st, st.ns.lookup(&p)?, &p))).await
    }
}

#[tonic::async_trait]
impl MasterService for MasterRpc {
    async fn create_file(&self, request: Request<CreateFileRequest>) -> RpcResult<FileInfo> {
        let req = request.into_inner();
        let own = ownership_or_default(req.ownership, 0o644);
        reply(self.mutate_path(&req.path, |st, p, now| st.ns.plan_create_file(p, req.block_size_bytes, req.recursive, &own, now)).await)
    }

    async fn complete_file(&self, request: Request<CompleteFileRequest>) -> RpcResult<FileInfo> {
        let req = request.into_inner();
        reply(
            self.mutate_path(&req.path, |st, p, now| {
                st.ns.plan_complete_file(p, req.length, |b| st.registry.committed_length(b), now)
            })
            .await,
        )
    }

    async fn get_status(&self, request: Request<PathRequest>) -> RpcResult<FileInfo> {
        let result = async {
            let p = path(&request.get_ref().path)?;
            self.master.read(|st| Ok(file_info(st, st.ns.lookup(&p)?, &p))).await
        }
        .await;
        reply(result)
    }

    async fn list_status(&self, request: Request<ListStatusRequest>) -> RpcResult<ListStatusResponse> {
        let req = request.into_inner();
        let result = async {
            let p = path(&req.path)?;
            self.master
                .read(|st| {
                    let inode = st.ns.lookup(&p)?;
                    if !inode.is_directory() {
                        return Ok(ListStatusResponse { files: vec![file_info(st, inode, &p)] });
                    }
                    let listed = if req.recursive { st.ns.descendants(inode) } else { st.ns.children(inode) };
                    let files = listed
                        .into_iter()
                        .filter_map(|i| st.ns.path_of(i.id).map(|ip| file_info(st, i, &ip)))
                        .collect();
                    Ok(ListStatusResponse { files })
                })
                .await
        }
        .await;
        reply(result)
    }

    async fn create_directory(&self, request: Request<CreateDirectoryRequest>) -> RpcResult<FileInfo> {
        let req = request.into_inner();
        let own = ownership_or_default(req.ownership, 0o755);
        reply(
            self.mutate_path(&req.path, |st, p, now| st.ns.plan_create_directory(p, req.recursive, req.allow_exists, &own, now))
                .await,
        )
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> RpcResult<Empty> {
        let req = request.into_inner();
        let result = async {
            let p = path(&req.path)?;
            self.master.mutate(|st, now| st.ns.plan_delete(&p, req.recursive, now), |_| Ok(Empty {})).await
        }
        .await;
        reply(result)
    }

    async fn rename(&self, request: Request<RenameRequest>) -> RpcResult<Empty> {
        let req = request.into_inner();
        let result = async {
            let (src, dst) = (path(&req.src)?, path(&req.dst)?);
            self.master.mutate(|st, now| st.ns.plan_rename(&src, &dst, now), |_| Ok(Empty {})).await
        }
        .await;
        reply(result)
    }

    async fn free(&self, request: Request<FreeRequest>) -> RpcResult<FreeResponse> {
        let req = request.into_inner();
        let result = async {
            let p = path(&req.path)?;
            self.master
                .read(|st| {
                    let inode = st.ns.lookup(&p)?;
                    if inode.is_directory() && !req.recursive && !st.ns.children(inode).is_empty() {
                        return Err(FsError::InvalidArgument { reason: format!("{p} is a directory: use -R") });
                    }
                    // Only data that also lives in under-storage may leave memory. Nothing is
                    // persisted in this build, so any file holding data refuses to be freed.
                    for f in std::iter::once(inode).chain(st.ns.descendants(inode)) {
                        if let InodeKind::File { length, .. } = f.kind {
                            if length > 0 {
                                let fp = st.ns.path_of(f.id).unwrap_or_else(FsPath::root);
                                return Err(FsError::NotPersisted { path: fp.to_string() });
                            }
                        }
                    }
                    Ok(FreeResponse { blocks_freed: 0 })
                })
                .await
        }
        .await;
        reply(result)
    }

    async fn get_workers(&self, _request: Request<Empty>) -> RpcResult<WorkersResponse> {
        let workers = self
            .master
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
        let m = &self.master;
        let leader = m.coordinator().leader_address().await.ok().flatten().unwrap_or_default();
        let info = m
            .with_registry(|st, _| {
                let (mut cap, mut used, mut live, mut lost) = (0, 0, 0, 0);
                for w in st.registry.workers() {
                    if w.lost {
                        lost += 1;
                    } else {
                        live += 1;
                        cap += w.capacity_bytes;
                        used += w.used_bytes;
                    }
                }
                MasterInfoResponse {
                    leader_address: leader,
                    masters: vec![MasterStatus {
                        address: m.address().to_string(),
                        role: "leader".into(),
                        epoch: m.epoch(),
                        applied_sequence: st.ns.next_sequence(),
                    }],
                    capacity_bytes: cap,
                    used_bytes: used,
                    live_workers: live,
                    lost_workers: lost,
                    start_time_ms: m.start_time_ms(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }
            })
            .await;
        Ok(Response::new(info))
    }

    async fn register_worker(&self, request: Request<RegisterWorkerRequest>) -> RpcResult<RegisterWorkerResponse> {
        let req = request.into_inner();
        let Some(address) = req.address else {
            return Err(FsError::InvalidArgument { reason: "worker address missing".into() }.into());
        };
        let blocks: Vec<(u64, u64)> = req.blocks.iter().map(|b| (b.block_id, b.length)).collect();
        let (id, orphans) = self
            .master
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
            .master
            .with_registry(|st, now| st.registry.heartbeat(req.worker_id, req.used_bytes, &req.removed_block_ids, now))
            .await;
        Ok(Response::new(HeartbeatResponse { register: cmd.register, delete_block_ids: cmd.delete_blocks }))
    }

    async fn commit_block(&self, request: Request<CommitBlockRequest>) -> RpcResult<Empty> {
        let req = request.into_inner();
        let result = self
            .master
            .with_registry(|st, now| {
                let file = file_of_block(req.block_id);
                match st.ns.inode(file).map(|i| &i.kind) {
                    Some(InodeKind::File { complete: false, .. }) => {}
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
        reply(result.map(|()| Empty {}))
    }
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

/// Runs a master process until `shutdown` completes or the journal fails.
pub async fn run_master(
    options: MasterOptions,
    clock: Arc<dyn crate::runtime::Clock>,
    coordinator: Arc<dyn crate::coordinator::Coordinator>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let bind = resolve(&options.address).await.map_err(RunError::Bind)?;
    let master = Master::start(options, clock, coordinator).await?;
    let lost_check = {
        let m = master.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                m.detect_lost_workers().await;
            }
        })
    };
    // Stop serving when asked to, or when the journal can no longer be written (fail-stop).
    let mut durability = master.writer().subscribe();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Option<String>>();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => { let _ = stop_tx.send(None); }
            r = durability.wait_for(|d| d.failed.is_some()) => {
                let reason = r.ok().and_then(|d| d.failed.clone()).unwrap_or_else(|| "journal writer gone".into());
                let _ = stop_tx.send(Some(reason));
            }
        }
    });
    let (failure_tx, failure_rx) = tokio::sync::oneshot::channel();
    let signal = async move {
        let failure = stop_rx.await.ok().flatten();
        let _ = failure_tx.send(failure);
    };
    info!(%bind, "master RPC listening");
    let served = tonic::transport::Server::builder()
        .add_service(MasterServiceServer::new(MasterRpc { master: master.clone() }))
        .serve_with_shutdown(bind, signal)
        .await;
    lost_check.abort();
    let failure = failure_rx.await.ok().flatten();
    master.shutdown().await;
    if let Err(e) = served {
        return Err(RunError::Serve(e.to_string()));
    }
    if let Some(reason) = failure {
        error!(%reason, "master stopped: its journal cannot be written; a restart replays the journal");
        return Err(RunError::JournalFailed(reason));
    }
    info!("master stopped");
    Ok(())
}

/// Why a master process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot bind the master address: {0}")]
    Bind(FsError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("serving RPC failed: {0}")]
    Serve(String),
    #[error("journal write failed: {0}")]
    JournalFailed(String),
}
