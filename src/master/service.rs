//! The master's gRPC service (port 19998). Requests that need the leader's state go through
//! [`MasterNode::leader`], so a standby answers them with `NotLeader` and a hint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::info;

use super::node::MasterNode;
use super::ufs_intents::{delete_mirrored, publish_upload, rename_mirrored};
use super::{file_info, status_at};
use crate::core::namespace::{file_of_block, InodeKind, Mount};
use crate::core::path::FsPath;
use crate::core::permission::{Caller, Checks};
use crate::core::requests;
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

type RpcResult<T> = Result<Response<T>, Status>;

/// Most requests one batched call (`CreateFiles`, `CompleteFiles`) may carry.
pub const MAX_REQUESTS_PER_CALL: usize = 1024;

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
    /// The verified caller of a client request.
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, FsError> {
        self.node.auth().caller(request.metadata())
    }

    /// Seals mount credentials for the journal (with the cluster secret, if any).
    fn sealer(&self) -> Option<crate::security::SecretSealer> {
        crate::security::SecretSealer::from_cluster_secret(&self.node.options().security.cluster_secret)
    }

    /// What a request of `caller` is planned with now.
    fn context<'a>(&self, caller: &'a Caller, now_ms: i64) -> requests::Context<'a> {
        requests::Context { caller, now_ms, max_depth: self.node.options().max_path_depth }
    }

    /// Serves `node`'s requests.
    pub fn new(node: Arc<MasterNode>) -> Self {
        MasterRpc { node, synced_at_ms: Arc::new(std::sync::Mutex::new(BTreeMap::new())) }
    }

    /// Brings what the under-storage holds in directory `dir` and tachyon does not know
    /// into the namespace (metadata loaded on demand, journaled like any change). An
    /// unreachable under-storage is logged and leaves the namespace as it is.
    async fn load_from_under_storage(&self, dir: &FsPath) -> Result<(), FsError> {
        let Some(mounts) = self.node.ufs_mounts() else { return Ok(()) };
        // Names below the depth limit are not loaded (nothing there could be created either).
        if dir.components().len() >= self.node.options().max_path_depth {
            return Ok(());
        }
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
        let own = self.node.auth().master_ownership(0o666);
        let block_size = self.node.options().loaded_block_size;
        // Planned under the state lock, so names created meanwhile are skipped, not clashed with.
        let mut loaded = 0;
        leader
            .mutate(
                "",
                |st, now| {
                    let kinds = st.ns.plan_load_from_under_storage(dir, &found, block_size, &own, MAX_LOADED_ENTRIES, now)?;
                    loaded = kinds.iter().filter(|k| !matches!(k, crate::proto::journal_entry::Kind::CompleteFile(_))).count();
                    Ok(kinds)
                },
                |_| Ok(()),
            )
            .await?;
        if loaded > 0 {
            info!(path = %dir, loaded, "loaded names found only in the under-storage");
        }
        Ok(())
    }

    /// What a create is checked for before the namespace: its owner, block size and path.
    fn check_create(&self, caller: &Caller, req: &CreateFileRequest) -> Result<(FsPath, InodeOwnership), FsError> {
        let own = self.node.auth().new_ownership(caller, req.ownership.clone(), 0o666)?;
        crate::core::namespace::check_block_size(req.block_size_bytes, self.node.options().min_block_size_bytes)?;
        Ok((path(&req.path)?, own))
    }

    /// A completion's persistence state, refused when unknown or when it asks for
    /// persistence this master has no under-storage for.
    fn completion_persistence(&self, req: &CompleteFileRequest) -> Result<PersistenceState, FsError> {
        let persistence = PersistenceState::try_from(req.persistence)
            .map_err(|_| FsError::InvalidArgument { reason: format!("unknown persistence state {}", req.persistence) })?;
        if persistence != PersistenceState::NotPersisted && self.node.ufs_mounts().is_none() {
            return Err(FsError::InvalidArgument { reason: format!("{}: this master has no under-storage to persist to", req.path) });
        }
        Ok(persistence)
    }

    /// Plans a completion of `p`: the caller may write it, and the file can complete at
    /// `length` with `persistence`.
    fn plan_completion(
        st: &super::State,
        caller: &Caller,
        p: &FsPath,
        length: u64,
        persistence: PersistenceState,
        now: i64,
    ) -> Result<Vec<crate::proto::journal_entry::Kind>, FsError> {
        st.ns.check_access(caller, p, Checks::WRITE_TARGET)?;
        st.ns.plan_complete_file(p, length, persistence, |b| st.registry.committed_length(b), now)
    }

    /// Runs the requests of a batched call (`CreateFiles`, `CompleteFiles`) as
    /// [`super::Master::mutate_each`] does: each is checked first by `check` (a failure
    /// answers that request alone; else it names the request's path), then planned under the
    /// one lock and answered with its path's new status, and counted as one `op`, as if it
    /// had come alone. Answers every request, in order.
    async fn mutate_batch<Q, C>(
        &self,
        op: &'static str,
        requests: &[Q],
        request_id: impl Fn(&Q) -> &str,
        check: impl Fn(&Q) -> Result<(FsPath, C), FsError>,
        plan: impl Fn(&Q, &FsPath, &C, &super::State, i64) -> Result<Vec<crate::proto::journal_entry::Kind>, FsError>,
    ) -> Result<FileResults, FsError> {
        if requests.len() > MAX_REQUESTS_PER_CALL {
            return Err(FsError::InvalidArgument { reason: format!("{} requests in one call; at most {MAX_REQUESTS_PER_CALL}", requests.len()) });
        }
        let checked: Vec<Result<(FsPath, C), FsError>> = requests.iter().map(&check).collect();
        let valid: Vec<(&Q, &FsPath, &C)> = requests
            .iter()
            .zip(&checked)
            .filter_map(|(req, checked)| {
                let (p, c) = checked.as_ref().ok()?;
                Some((req, p, c))
            })
            .collect();
        let request_ids: Vec<&str> = valid.iter().map(|(req, _, _)| request_id(req)).collect();
        let mut answered = self
            .node
            .leader()
            .await?
            .mutate_each(&request_ids, |k, st, now| plan(valid[k].0, valid[k].1, valid[k].2, st, now), |k, st| status_at(st, valid[k].1))
            .await?
            .into_iter();
        let results = checked
            .into_iter()
            .map(|check| {
                let outcome = match check {
                    Err(e) => Err(e),
                    Ok(_) => answered.next().unwrap_or_else(|| Err(FsError::Internal { reason: format!("a {op} got no answer") })),
                };
                crate::metrics::MASTER_OPERATIONS.with_label_values(&[op, if outcome.is_ok() { "ok" } else { "error" }]).inc();
                FileResult::from(outcome)
            })
            .collect();
        Ok(FileResults { results })
    }

    /// Runs a mutation planned on one path and answers with that path's new status.
    async fn mutate_path(
        &self,
        request_id: &str,
        raw_path: &str,
        plan: impl FnOnce(&super::State, &FsPath, i64) -> Result<Vec<crate::proto::journal_entry::Kind>, FsError>,
    ) -> Result<FileInfo, FsError> {
        let p = path(raw_path)?;
        self.node.leader().await?.mutate(request_id, |st, now| plan(st, &p, now), |st| status_at(st, &p)).await
    }
}

#[tonic::async_trait]
impl MasterService for MasterRpc {
    async fn create_file(&self, request: Request<CreateFileRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            let (p, own) = self.check_create(&caller, &req)?;
            self.node
                .leader()
                .await?
                .mutate(
                    &req.request_id,
                    |st, now| requests::create_file(&st.ns, &self.context(&caller, now), &p, req.block_size_bytes, req.recursive, &own),
                    |st| status_at(st, &p),
                )
                .await
        }
        .await;
        self.reply("createFile", started, result)
    }

    async fn create_files(&self, request: Request<CreateFilesRequest>) -> RpcResult<FileResults> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let files = request.into_inner().files;
        let result = async {
            let caller = caller?;
            self.mutate_batch(
                "createFile",
                &files,
                |req| &req.request_id,
                |req| self.check_create(&caller, req),
                |req, p, own, st, now| requests::create_file(&st.ns, &self.context(&caller, now), p, req.block_size_bytes, req.recursive, own),
            )
            .await
        }
        .await;
        self.reply("createFiles", started, result)
    }

    async fn complete_files(&self, request: Request<CompleteFilesRequest>) -> RpcResult<FileResults> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let files = request.into_inner().files;
        let result = async {
            let caller = caller?;
            self.mutate_batch(
                "completeFile",
                &files,
                |req| &req.request_id,
                |req| match self.completion_persistence(req)? {
                    PersistenceState::Persisted => Err(FsError::InvalidArgument {
                        reason: format!("{}: a PERSISTED completion publishes its upload: send it alone (CompleteFile)", req.path),
                    }),
                    persistence => Ok((path(&req.path)?, persistence)),
                },
                |req, p, persistence, st, now| Self::plan_completion(st, &caller, p, req.length, *persistence, now),
            )
            .await
        }
        .await;
        self.reply("completeFiles", started, result)
    }

    async fn complete_file(&self, request: Request<CompleteFileRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            let persistence = self.completion_persistence(&req)?;
            let plan = |st: &super::State, p: &FsPath, now| Self::plan_completion(st, &caller, p, req.length, persistence, now);
            if persistence != PersistenceState::Persisted {
                return self.mutate_path(&req.request_id, &req.path, plan).await;
            }
            // PERSISTED means "my data is the upload I name": without one it would be a
            // file of any claimed length backed by nothing.
            if req.ufs_temp_name.is_empty() {
                return Err(FsError::InvalidArgument { reason: format!("{}: a PERSISTED completion must name its under-storage upload", req.path) });
            }
            let p = path(&req.path)?;
            let leader = self.node.leader().await?;
            let finish = |st: &super::State, now| plan(st, &p, now);
            publish_upload(&self.node, &leader, &req.request_id, &p, &req.ufs_temp_name, req.length, UfsIntentKind::UfsComplete, finish).await?;
            leader.read(|st| status_at(st, &p)).await
        }
        .await;
        self.reply("completeFile", started, result)
    }

    async fn persist_file(&self, request: Request<PersistFileRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            if req.ufs_temp_name.is_empty() {
                // Only a file persisted already needs no upload.
                let plan = |st: &super::State, p: &FsPath, now| match st
                    .ns
                    .check_access(&caller, p, Checks::WRITE_TARGET)
                    .and_then(|()| st.ns.plan_persist_file(p, now))?
                {
                    kinds if kinds.is_empty() => Ok(kinds),
                    _ => Err(FsError::InvalidArgument { reason: format!("{p}: persisting needs its under-storage upload") }),
                };
                return self.mutate_path(&req.request_id, &req.path, plan).await;
            }
            let p = path(&req.path)?;
            let leader = self.node.leader().await?;
            let length = leader
                .read(|st| {
                    st.ns.check_access(&caller, &p, Checks::WRITE_TARGET)?;
                    st.ns.lookup(&p).map(|i| match i.kind {
                        InodeKind::File { length, .. } => length,
                        InodeKind::Directory { .. } => 0,
                    })
                })
                .await?;
            let finish = |st: &super::State, now| {
                st.ns.check_access(&caller, &p, Checks::WRITE_TARGET)?;
                st.ns.plan_persist_file(&p, now)
            };
            publish_upload(&self.node, &leader, &req.request_id, &p, &req.ufs_temp_name, length, UfsIntentKind::UfsPersist, finish).await?;
            leader.read(|st| status_at(st, &p)).await
        }
        .await;
        self.reply("persistFile", started, result)
    }

    async fn get_status(&self, request: Request<PathRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let result = async {
            let caller = self.caller(&request)?;
            let p = path(&request.get_ref().path)?;
            let leader = self.node.leader().await?;
            let status = |st: &super::State| {
                requests::check_read(&st.ns, &caller, &p, false, false)?;
                status_at(st, &p)
            };
            match leader.read(status).await {
                // Not known to tachyon: maybe only in the under-storage.
                Err(FsError::NotFound { .. }) if !p.is_root() => {
                    self.load_from_under_storage(&p.parent().unwrap_or_else(FsPath::root)).await?;
                    leader.read(status).await
                }
                other => other,
            }
        }
        .await;
        self.reply("getStatus", started, result)
    }

    async fn list_status(&self, request: Request<ListStatusRequest>) -> RpcResult<ListStatusResponse> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            let p = path(&req.path)?;
            let checks = |st: &super::State| requests::check_read(&st.ns, &caller, &p, true, req.recursive);
            // Checked before the under-storage is looked at for this caller, and again with the answer.
            self.node.leader().await?.read(checks).await?;
            let now = self.node.leader().await?.now_ms();
            let key = p.to_string();
            let last = self.synced_at_ms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).copied();
            // The under-storage is looked at for the first page only.
            if req.start_after.is_empty() && sync_due(last, now, req.sync_interval_ms) {
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
                    checks(st)?;
                    let inode = st.ns.lookup(&p)?;
                    if !inode.is_directory() {
                        return Ok(ListStatusResponse { files: vec![file_info(st, inode, &p)], next_start_after: String::new() });
                    }
                    let after = (!req.start_after.is_empty()).then(|| path(&req.start_after)).transpose()?;
                    let (files, next) = super::list_page_infos(st, inode, &p, req.recursive, after.as_ref(), req.limit as usize)?;
                    Ok(ListStatusResponse { files, next_start_after: next.unwrap_or_default() })
                })
                .await
        }
        .await;
        self.reply("listStatus", started, result)
    }

    async fn create_directory(&self, request: Request<CreateDirectoryRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            let own = self.node.auth().new_ownership(&caller, req.ownership, 0o777)?;
            self.mutate_path(&req.request_id, &req.path, |st, p, now| {
                requests::create_directory(&st.ns, &self.context(&caller, now), p, req.recursive, req.allow_exists, &own)
            })
            .await
        }
        .await;
        self.reply("createDirectory", started, result)
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            let p = path(&req.path)?;
            let leader = self.node.leader().await?;
            let plan = |st: &super::State, now| requests::delete(&st.ns, &self.context(&caller, now), &p, req.recursive);
            delete_mirrored(&self.node, &leader, &req.request_id, &p, plan).await?;
            Ok(Empty {})
        }
        .await;
        self.reply("delete", started, result)
    }

    async fn rename(&self, request: Request<RenameRequest>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            let (src, dst) = (path(&req.src)?, path(&req.dst)?);
            let leader = self.node.leader().await?;
            rename_mirrored(&self.node, &leader, &caller, &req.request_id, &src, &dst).await
        }
        .await;
        self.reply("rename", started, result)
    }

    async fn free(&self, request: Request<FreeRequest>) -> RpcResult<FreeResponse> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            let p = path(&req.path)?;
            let leader = self.node.leader().await?;
            let blocks_freed = leader
                .with_registry(|st, _now| {
                    st.ns.check_access(&caller, &p, Checks::READ_TARGET)?;
                    free_cached(st, &p, req.recursive)
                })
                .await?;
            Ok(FreeResponse { blocks_freed })
        }
        .await;
        self.reply("free", started, result)
    }

    async fn set_attribute(&self, request: Request<SetAttributeRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            let (change, ownership) = requests::attribute_changes(&req)?;
            self.mutate_path(&req.request_id, &req.path, |st, p, now| requests::set_attribute(&st.ns, &self.context(&caller, now), p, change, &ownership)).await
        }
        .await;
        self.reply("setAttribute", started, result)
    }

    async fn mount(&self, request: Request<MountRequest>) -> RpcResult<FileInfo> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            let caller = caller?;
            require_superuser(&caller, "mount", &req.path)?;
            let allowed = &self.node.options().security.mount_allowed_uris;
            if !crate::underfs::mount_uri_allowed(&req.ufs_uri, allowed) {
                return Err(FsError::PermissionDenied {
                    path: req.path.clone(),
                    reason: format!("{} is not below any of {} ({})", req.ufs_uri.trim(), crate::config::MOUNT_ALLOWED_URIS, allowed.join(",")),
                });
            }
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
                // The backend's own words may hold what its server chose to say: logged here,
                // never sent back to the caller.
                ufs.list("").await.map_err(|e| {
                    tracing::warn!(uri = %mount.ufs_uri, error = %e, "cannot list an under-storage to be mounted");
                    FsError::InvalidArgument { reason: format!("cannot list {}: {} (details in the leader's log)", ufs.describe(), e.kind()) }
                })?;
            }
            let own = self.node.auth().new_ownership(&caller, None, 0o777)?;
            // Credentials are journaled sealed when the cluster has a secret to seal them with.
            let stored = match self.sealer() {
                Some(sealer) => sealer.seal_options(&req.options),
                None => {
                    if req.options.keys().any(|k| crate::config::is_secret_key(k)) {
                        tracing::warn!(path = %p, "mount credentials are journaled readable: set {} to seal them", crate::config::CLUSTER_SECRET);
                    }
                    req.options.clone()
                }
            };
            leader.mutate(&req.request_id, |st, now| st.ns.plan_mount(&p, &req.ufs_uri, &stored, &own, now), |st| status_at(st, &p)).await
        }
        .await;
        self.reply("mount", started, result)
    }

    async fn unmount(&self, request: Request<UnmountRequest>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let caller = self.caller(&request);
        let req = request.into_inner();
        let result = async {
            require_superuser(&caller?, "unmount", &req.path)?;
            let p = path(&req.path)?;
            self.node.leader().await?.mutate(&req.request_id, |st, now| st.ns.plan_unmount(&p, now), |_| Ok(Empty {})).await
        }
        .await;
        self.reply("unmount", started, result)
    }

    async fn get_mount_table(&self, request: Request<Empty>) -> RpcResult<MountTableResponse> {
        let started = tokio::time::Instant::now();
        let result = async {
            // Mount credentials go to superusers only; other users reach mounted storage
            // with credentials of their own.
            let superuser = self.caller(&request)?.superuser;
            let sealer = self.sealer();
            let leader = self.node.leader().await?;
            leader
                .read(|st| {
                    let mounts = st
                        .ns
                        .mount_points()
                        .into_iter()
                        .map(|m| {
                            let mut options = m.mount.options;
                            options.retain(|key, _| superuser || !crate::config::is_secret_key(key));
                            if superuser {
                                match crate::security::open_options(sealer.as_ref(), &options) {
                                    Ok(open) => options = open,
                                    Err(e) => tracing::warn!(path = %m.path, error = %e, "cannot open a mount's sealed credentials"),
                                }
                            }
                            MountPointInfo { path: m.path.to_string(), ufs_uri: m.mount.ufs_uri, options }
                        })
                        .collect();
                    Ok(MountTableResponse { mounts })
                })
                .await
        }
        .await;
        self.reply("getMountTable", started, result)
    }

    async fn get_workers(&self, request: Request<Empty>) -> RpcResult<WorkersResponse> {
        let started = tokio::time::Instant::now();
        let result = async {
            self.caller(&request)?;
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
                            tiers: w.tiers.clone(),
                        })
                        .collect()
                })
                .await;
            Ok(WorkersResponse { workers })
        }
        .await;
        self.reply("getWorkers", started, result)
    }

    async fn get_master_info(&self, request: Request<Empty>) -> RpcResult<MasterInfoResponse> {
        let started = tokio::time::Instant::now();
        let result = async {
            self.caller(&request)?;
            Ok(self.master_info().await)
        }
        .await;
        self.reply("getMasterInfo", started, result)
    }

    async fn ping(&self, request: Request<Empty>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let result = self.caller(&request).map(|_| Empty {});
        self.reply("ping", started, result)
    }

    async fn get_state_digest(&self, request: Request<Empty>) -> RpcResult<StateDigest> {
        let started = tokio::time::Instant::now();
        let result = async {
            self.caller(&request)?;
            Ok(self.node.state_digest().await)
        }
        .await;
        self.reply("getStateDigest", started, result)
    }

    async fn register_worker(&self, request: Request<RegisterWorkerRequest>) -> RpcResult<RegisterWorkerResponse> {
        let started = tokio::time::Instant::now();
        let result = async {
            self.node.auth().check_worker(request.metadata())?;
            let req = request.into_inner();
            let address = req.address.ok_or_else(|| FsError::InvalidArgument { reason: "worker address missing".into() })?;
            crate::core::registry::check_worker_address(&address)?;
            let blocks: Vec<(u64, u64)> = req.blocks.iter().map(|b| (b.block_id, b.length)).collect();
            let (id, orphans) = self
                .node
                .leader()
                .await?
                .with_registry(|st, now| {
                    let id = st.registry.register(address.clone(), req.capacity_bytes, req.used_bytes, &blocks, now);
                    st.registry.set_tiers(id, &req.tiers);
                    // Blocks of files deleted while the worker was away are deleted now.
                    let orphans: Vec<u64> =
                        blocks.iter().map(|(b, _)| *b).filter(|b| st.ns.inode(file_of_block(*b)).is_none_or(|i| i.is_directory())).collect();
                    st.registry.remove_blocks(&orphans);
                    (id, orphans.len())
                })
                .await;
            info!(worker_id = id, host = %address.host, port = address.rpc_port, blocks = blocks.len(), orphans, "worker registered");
            Ok(RegisterWorkerResponse { worker_id: id })
        }
        .await;
        self.reply("registerWorker", started, result)
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> RpcResult<HeartbeatResponse> {
        let started = tokio::time::Instant::now();
        let result = async {
            self.node.auth().check_worker(request.metadata())?;
            let req = request.into_inner();
            let cmd = self
                .node
                .leader()
                .await?
                .with_registry(|st, now| {
                    let cmd = st.registry.heartbeat(req.worker_id, req.used_bytes, &req.removed_block_ids, req.removed_as_of, now);
                    st.registry.set_tiers(req.worker_id, &req.tiers);
                    cmd
                })
                .await;
            Ok(HeartbeatResponse { register: cmd.register, delete_block_ids: cmd.delete_blocks })
        }
        .await;
        self.reply("heartbeat", started, result)
    }
    async fn commit_block(&self, request: Request<CommitBlockRequest>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let result = async {
            self.node.auth().check_worker(request.metadata())?;
            let req = request.into_inner();
            self.node
                .leader()
                .await?
                .with_registry(|st, now| {
                    st.ns.check_block_write(req.block_id, req.length)?;
                    st.note_write(file_of_block(req.block_id), now);
                    st.registry
                        .commit_block(req.worker_id, req.block_id, req.length, req.used_bytes, req.commit_mark, now)
                        .map_err(|e| FsError::Unavailable { reason: e.to_string() })
                })
                .await
        }
        .await;
        self.reply("commitBlock", started, result.map(|()| Empty {}))
    }

    async fn check_block_write(&self, request: Request<BlockWriteCheck>) -> RpcResult<Empty> {
        let started = tokio::time::Instant::now();
        let result = async {
            self.node.auth().check_worker(request.metadata())?;
            let req = request.into_inner();
            let leader = self.node.leader().await?;
            leader.check_leading()?;
            leader
                .with_registry(|st, now| {
                    st.ns.check_block_write(req.block_id, req.length)?;
                    st.note_write(file_of_block(req.block_id), now);
                    Ok(())
                })
                .await
        }
        .await;
        self.reply("checkBlockWrite", started, result.map(|()| Empty {}))
    }

    async fn filter_evictable(&self, request: Request<EvictableRequest>) -> RpcResult<EvictableResponse> {
        let started = tokio::time::Instant::now();
        let result = async {
            self.node.auth().check_worker(request.metadata())?;
            let req = request.into_inner();
            if req.block_ids.len() > MAX_EVICTION_CANDIDATES {
                return Err(FsError::InvalidArgument {
                    reason: format!("{} eviction candidates, at most {MAX_EVICTION_CANDIDATES} per request", req.block_ids.len()),
                });
            }
            let leader = self.node.leader().await?;
            // Answered as any read: only while leading, and after what it saw is durable (a
            // deposed leader must not tell a worker a block it no longer knows is safe to drop).
            let block_ids = leader.read(|st| Ok(req.block_ids.iter().copied().filter(|b| st.ns.may_evict(*b)).collect())).await?;
            Ok(EvictableResponse { block_ids })
        }
        .await;
        self.reply("filterEvictable", started, result)
    }
}

impl MasterRpc {
    /// This master's status, the leader it knows, and (on the leader) cluster figures.
    async fn master_info(&self) -> MasterInfoResponse {
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
                info.tiers = st.registry.tier_totals();
            })
            .await;
        }
        info
    }
}

/// Fails unless `caller` is a superuser: mounting decides what the master reads and
/// deletes on its own host and credentials.
fn require_superuser(caller: &Caller, what: &str, path: &str) -> Result<(), FsError> {
    if caller.superuser {
        Ok(())
    } else {
        Err(FsError::PermissionDenied { path: path.to_string(), reason: format!("user={}: only a superuser may {what}", caller.user) })
    }
}

/// Most blocks a worker may ask about in one [`EvictableRequest`].
pub const MAX_EVICTION_CANDIDATES: usize = 4096;

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

/// Resolves `host:port` to the socket address to bind, preferring IPv4.
pub async fn resolve(address: &str) -> Result<SocketAddr, FsError> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host(address).await.map_err(|e| FsError::InvalidArgument { reason: format!("cannot resolve {address}: {e}") })?.collect();
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
