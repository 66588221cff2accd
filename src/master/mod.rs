//! The master: drives the namespace and worker-registry state machines, journals every
//! change with group commit, and serves them over gRPC ([`service`]).
//!
//! Every mutation follows one path ([`Master::mutate`]): under the state lock, plan the
//! entries, apply them, queue them to the journal in sequence order; outside the lock,
//! wait until they are durable; only then answer. Reads wait until everything they saw is
//! durable too, so no client ever observes state a crash could take back.

pub mod auth;
pub mod node;
pub mod service;
pub mod ufs_intents;

use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::Mutex;
use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::coordinator::Leadership;
use crate::core::namespace::{block_count, block_length, Effect, Inode, InodeKind, Namespace, MAX_REQUEST_ID_BYTES};
use crate::core::path::FsPath;
use crate::core::registry::Registry;
use crate::core::role::{CheckpointStep, LeaderCheckpoints};
use crate::error::FsError;
use crate::journal::{Journal, JournalError, JournalLimits, JournalWriter};
use crate::proto::journal_entry::Kind;
use crate::proto::{BlockInfo, FileInfo, JournalEntry, PersistenceState};
use crate::runtime::Clock;

/// Settings of a master, validated from [`Config`].
#[derive(Clone, Debug)]
pub struct MasterOptions {
    /// `host:port` this master is known by (advertised to workers, clients and ZooKeeper).
    pub address: String,
    /// `host:port` this master listens on for RPC (see [`config::derive_bind_host`]).
    pub bind_address: String,
    pub journal_folder: String,
    pub journal_limits: JournalLimits,
    pub checkpoint_period_entries: u64,
    pub worker_timeout_ms: i64,
    /// How often a standby reads new journal entries.
    pub tailer_sleep_ms: u64,
    /// The journal writer's epoch check (always on; the simulator turns it off only to
    /// prove its checkers catch what fencing prevents).
    pub fencing: bool,
    /// Answer as leader only while the leader lease holds (always on; the simulator turns
    /// it off only to prove its checkers catch the stale reads the lease prevents).
    pub leader_lease: bool,
    /// Smallest block size a client may create a file with.
    pub min_block_size_bytes: u64,
    /// Block size of files found in the under-storage and loaded into the namespace.
    pub loaded_block_size: u64,
    /// How often the leader runs the actions of expired TTLs.
    pub ttl_check_interval_ms: u64,
    /// Who may call and what they may do.
    pub security: crate::security::SecurityOptions,
    /// Deepest path (components) the namespace may hold.
    pub max_path_depth: usize,
    /// An incomplete file silent this long is deleted (its writer died).
    pub abandoned_write_timeout_ms: i64,
}

impl MasterOptions {
    /// Reads the master's settings.
    pub fn from_config(cfg: &Config) -> Result<Self, FsError> {
        Ok(MasterOptions {
            address: cfg.master_address(),
            bind_address: format!("{}:{}", cfg.bind_host(config::MASTER_BIND_HOST, config::MASTER_HOSTNAME), cfg.port(config::MASTER_PORT)),
            journal_folder: cfg.string(config::JOURNAL_FOLDER),
            journal_limits: JournalLimits { segment_max_bytes: cfg.bytes(config::JOURNAL_SEGMENT_MAX).max(1024), ..JournalLimits::default() },
            checkpoint_period_entries: cfg.integer(config::JOURNAL_CHECKPOINT_PERIOD).max(1),
            worker_timeout_ms: cfg.duration_ms(config::MASTER_WORKER_TIMEOUT) as i64,
            tailer_sleep_ms: cfg.duration_ms(config::JOURNAL_TAILER_SLEEP).max(10),
            fencing: true,
            leader_lease: true,
            loaded_block_size: cfg.bytes(config::USER_BLOCK_SIZE).max(1),
            min_block_size_bytes: cfg.bytes(config::MASTER_MIN_BLOCK_SIZE).max(1),
            ttl_check_interval_ms: cfg.duration_ms(config::MASTER_TTL_CHECK_INTERVAL).max(10),
            security: crate::security::SecurityOptions::from_config(cfg)?,
            abandoned_write_timeout_ms: cfg.duration_ms(config::MASTER_ABANDONED_WRITE_TIMEOUT).max(1000) as i64,
            max_path_depth: cfg.integer(config::MASTER_MAX_PATH_DEPTH).clamp(1, crate::core::path::MAX_PATH_BYTES as u64 / 2) as usize,
        })
    }
}

/// The state behind the master's lock.
pub struct State {
    pub ns: Namespace,
    pub registry: Registry,
    /// When a worker last stored a block of each file being written (this term only: not
    /// journaled; pruned as files complete).
    write_activity: std::collections::BTreeMap<u64, i64>,
    /// When this leader's term began: the last sign of life assumed for every write it
    /// has not seen a block of yet.
    term_start_ms: i64,
}

impl State {
    /// Records that a worker stored (or is about to store) a block of `file` at `now_ms`.
    pub fn note_write(&mut self, file: u64, now_ms: i64) {
        self.write_activity.insert(file, now_ms);
    }

    /// The last sign of life of the writer of `file` this leader knows of.
    pub fn last_write_ms(&self, file: u64) -> Option<i64> {
        Some(self.write_activity.get(&file).copied().unwrap_or(self.term_start_ms))
    }

    /// Forgets the activity of files no longer being written.
    fn prune_write_activity(&mut self) {
        let ns = &self.ns;
        self.write_activity.retain(|id, _| matches!(ns.inode(*id).map(|i| &i.kind), Some(InodeKind::File { complete: false, .. })));
    }
}

/// The leader's serving state: exists only while this master leads ([`node`] switches roles).
pub struct Master {
    state: Mutex<State>,
    journal: Journal,
    writer: JournalWriter,
    clock: Arc<dyn Clock>,
    options: MasterOptions,
    leadership: Leadership,
    start_time_ms: i64,
    /// When to checkpoint ([`LeaderCheckpoints`]); shared with the background tasks that
    /// look for and write checkpoints.
    checkpoints: Arc<StdMutex<LeaderCheckpoints>>,
}

/// Locks the checkpoint policy (its critical sections are pure and short).
fn policy(checkpoints: &StdMutex<LeaderCheckpoints>) -> std::sync::MutexGuard<'_, LeaderCheckpoints> {
    checkpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unavailable(e: JournalError) -> FsError {
    FsError::Unavailable { reason: format!("master cannot write its journal: {e}") }
}

impl Master {
    /// A leader serving `ns`, which the journal holds up to its next sequence, appending
    /// through `writer` under `leadership`'s epoch.
    pub fn new(ns: Namespace, journal: Journal, writer: JournalWriter, leadership: Leadership, clock: Arc<dyn Clock>, options: MasterOptions) -> Arc<Master> {
        let start_time_ms = clock.now_ms();
        // Worker ids differ between leader terms, so a stale id is never reused.
        let id_base = (start_time_ms.max(0) as u64) << 12;
        let registry = Registry::new(id_base, options.worker_timeout_ms);
        Arc::new(Master {
            state: Mutex::new(State { ns, registry, write_activity: std::collections::BTreeMap::new(), term_start_ms: start_time_ms }),
            journal,
            writer,
            clock,
            checkpoints: Arc::new(StdMutex::new(LeaderCheckpoints::new(options.checkpoint_period_entries))),
            options,
            leadership,
            start_time_ms,
        })
    }

    /// Fails once leadership is lost, or while the leader lease has run out (this master
    /// may have been frozen or cut off long enough for a successor to be elected, before its
    /// coordinator client noticed), so nothing is answered after a newer leader may serve.
    /// (With fencing off, a simulator-only switch, a master trusts its election forever.)
    pub(crate) fn check_leading(&self) -> Result<(), FsError> {
        if self.options.fencing && self.leadership.is_lost() {
            return Err(FsError::NotLeader { leader: String::new() });
        }
        if self.options.leader_lease && !self.leadership.lease_holds() {
            return Err(FsError::NotLeader { leader: String::new() });
        }
        Ok(())
    }

    /// Checks with the journal itself that no newer leader has claimed it: what guards a
    /// change outside the journal (under-storage copies), which no storage fences. A deposed
    /// leader gets `NotLeader`.
    pub async fn verify_still_leading(&self) -> Result<(), FsError> {
        self.check_leading()?;
        if !self.options.fencing {
            return Ok(());
        }
        match self.journal.verify_epoch(self.epoch()).await {
            Ok(()) => Ok(()),
            Err(JournalError::Fenced { .. }) => Err(FsError::NotLeader { leader: String::new() }),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Current time from the injected clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// This master's leadership epoch.
    pub fn epoch(&self) -> u64 {
        self.leadership.epoch
    }

    /// Whether this master fences itself (always, outside the simulator's checker tests).
    pub fn fencing(&self) -> bool {
        self.options.fencing
    }

    /// The leadership this master serves under.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// This master's address.
    pub fn address(&self) -> &str {
        &self.options.address
    }

    /// When this master started serving.
    pub fn start_time_ms(&self) -> i64 {
        self.start_time_ms
    }

    /// The journal writer (to watch for failure).
    pub fn writer(&self) -> &JournalWriter {
        &self.writer
    }

    /// Plans, applies and journals a change; answers with `respond` once it is durable.
    /// `request_id` (may be empty) names the client request: a retry of one already applied,
    /// here or by an earlier leader, is answered without applying it again.
    pub async fn mutate<R>(
        &self,
        request_id: &str,
        plan: impl FnOnce(&State, i64) -> Result<Vec<Kind>, FsError>,
        respond: impl FnOnce(&State) -> Result<R, FsError>,
    ) -> Result<R, FsError> {
        self.check_leading()?;
        check_request_id(request_id)?;
        let now = self.clock.now_ms();
        let (journaled, response) = {
            let mut st = self.state.lock().await;
            let (entries, response) = self.apply_planned(&mut st, request_id, now, plan, respond)?;
            (self.journal_applied(&st, &entries).await?, response)
        };
        self.finish_durable(journaled).await?;
        response
    }

    /// [`Master::mutate`] for several independent requests at once (`request_ids[i]` names
    /// the `i`th, planned by `plan(i, ..)` and answered by `respond(i, ..)`): one lock, one
    /// journal submission, one wait for durability. Each request succeeds or fails alone;
    /// the call fails as a whole only when this master cannot answer at all (not leading,
    /// journal failed). Every answer waits until what it saw is durable.
    pub async fn mutate_each<R>(
        &self,
        request_ids: &[&str],
        mut plan: impl FnMut(usize, &State, i64) -> Result<Vec<Kind>, FsError>,
        mut respond: impl FnMut(usize, &State) -> Result<R, FsError>,
    ) -> Result<Vec<Result<R, FsError>>, FsError> {
        self.check_leading()?;
        let now = self.clock.now_ms();
        let (journaled, responses) = {
            let mut st = self.state.lock().await;
            let mut entries = Vec::with_capacity(request_ids.len());
            let mut responses = Vec::with_capacity(request_ids.len());
            for (i, request_id) in request_ids.iter().enumerate() {
                let applied =
                    check_request_id(request_id).and_then(|()| self.apply_planned(&mut st, request_id, now, |st, now| plan(i, st, now), |st| respond(i, st)));
                responses.push(match applied {
                    Ok((applied_entries, response)) => {
                        entries.extend(applied_entries);
                        response
                    }
                    Err(e) => Err(e),
                });
            }
            (self.journal_applied(&st, &entries).await?, responses)
        };
        self.finish_durable(journaled).await?;
        Ok(responses)
    }

    /// Under the state lock: answers a retry of an applied request from the state, or plans
    /// the request, applies its entries and answers it. Returns the entries to journal (none
    /// for a retry) and the answer; fails, applying nothing, when planning fails.
    fn apply_planned<R>(
        &self,
        st: &mut State,
        request_id: &str,
        now: i64,
        plan: impl FnOnce(&State, i64) -> Result<Vec<Kind>, FsError>,
        respond: impl FnOnce(&State) -> Result<R, FsError>,
    ) -> Result<(Vec<JournalEntry>, Result<R, FsError>), FsError> {
        if st.ns.request_applied(request_id) {
            info!(request_id, "retry of an applied request: answering without applying it again");
            return Ok((Vec::new(), respond(st)));
        }
        let kinds = plan(st, now)?;
        check_entry_sizes(&kinds, request_id)?;
        let applied = st.ns.apply_request(kinds, self.epoch(), request_id);
        for effect in applied.effects {
            match effect {
                Effect::FilesRemoved(files) => st.registry.remove_files(&files),
            }
        }
        // A planned entry that does not apply is a bug; what did apply is journaled so
        // memory and journal stay equal, and the request fails.
        let response = match applied.error {
            Some(e) => {
                error!(request_id, error = %e, "planned journal entry did not apply");
                Err(FsError::Internal { reason: e.to_string() })
            }
            None => respond(st),
        };
        Ok((applied.entries, response))
    }

    /// Still under the state lock: submits `entries` (applied to `st`) to the journal and
    /// decides on a checkpoint. The position returned is where everything `st` holds is
    /// durable (a retry's answer saw all of it, so with no entries it is the state's next
    /// sequence).
    async fn journal_applied(&self, st: &State, entries: &[JournalEntry]) -> Result<Journaled, FsError> {
        // A snapshot is taken under this lock, so it is exactly the state `entries` end.
        let step = if entries.is_empty() { CheckpointStep::Nothing } else { policy(&self.checkpoints).applied(entries.len() as u64) };
        let snapshot = (step == CheckpointStep::Snapshot).then(|| st.ns.to_checkpoint());
        let end = if entries.is_empty() { st.ns.next_sequence() } else { self.writer.submit(entries).await.map_err(unavailable)? };
        let checkpoint = snapshot.map(Ok).or_else(|| (step == CheckpointStep::LookForRecent).then_some(Err(end)));
        Ok(Journaled { end, checkpoint })
    }

    /// After the lock: waits until everything below `end` is durable, checks this master
    /// still leads, and starts the checkpoint work [`Master::journal_applied`] decided on.
    async fn finish_durable(&self, journaled: Journaled) -> Result<(), FsError> {
        self.writer.wait_durable(journaled.end).await.map_err(unavailable)?;
        self.check_leading()?;
        match journaled.checkpoint {
            Some(Ok(cp)) => self.spawn_checkpoint(cp),
            Some(Err(position)) => self.spawn_checkpoint_check(position),
            None => {}
        }
        Ok(())
    }

    /// Asks for a leader checkpoint at the next mutation unless one (a standby's) covers all
    /// but the last period before `position`.
    fn spawn_checkpoint_check(&self, position: u64) {
        let journal = self.journal.clone();
        let checkpoints = self.checkpoints.clone();
        tokio::spawn(async move {
            match journal.newest_checkpoint().await {
                Ok(newest) => {
                    if policy(&checkpoints).found(newest, position) {
                        info!(position, "no standby checkpointed lately: the leader will write one");
                    }
                }
                Err(e) => warn!(error = %e, "cannot list checkpoints"),
            }
        });
    }

    /// Reads state; answers once everything the read saw is durable.
    pub async fn read<R>(&self, f: impl FnOnce(&State) -> Result<R, FsError>) -> Result<R, FsError> {
        let (seen, result) = {
            let st = self.state.lock().await;
            (st.ns.next_sequence(), f(&st))
        };
        self.answer_when_durable(seen, result).await
    }

    /// Returns `answer` once every entry below `seen` is durable and this master still leads.
    async fn answer_when_durable<R>(&self, seen: u64, answer: Result<R, FsError>) -> Result<R, FsError> {
        self.writer.wait_durable(seen).await.map_err(unavailable)?;
        self.check_leading()?;
        answer
    }

    /// Reads state without waiting for durability or checking leadership: for status
    /// pages, for work the leader does before it serves (settling intents), and for
    /// choices it re-checks under the lock before acting (a retry's request id, where a
    /// path lives). Anything answered to a worker or client uses [`Master::read`].
    pub async fn read_unchecked<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&*self.state.lock().await)
    }

    /// Incomplete files whose writers went silent longer than the configured timeout, with
    /// their paths (at most `limit`); forgets the activity of finished writes on the way.
    pub async fn abandoned_writes(&self, limit: usize) -> Vec<(u64, FsPath)> {
        let now = self.clock.now_ms();
        let timeout = self.options.abandoned_write_timeout_ms;
        let mut st = self.state.lock().await;
        st.prune_write_activity();
        st.ns.abandoned_writes(now, timeout, |id| st.last_write_ms(id), limit)
    }

    /// Changes worker state (not journaled).
    pub async fn with_registry<R>(&self, f: impl FnOnce(&mut State, i64) -> R) -> R {
        let now = self.clock.now_ms();
        let mut st = self.state.lock().await;
        f(&mut st, now)
    }

    fn spawn_checkpoint(&self, cp: crate::proto::Checkpoint) {
        let journal = self.journal.clone();
        let checkpoints = self.checkpoints.clone();
        let next = cp.next_sequence;
        tokio::spawn(async move {
            match journal.write_checkpoint(&cp).await {
                Ok(()) => info!(next_sequence = next, "checkpoint complete"),
                Err(e) => warn!(next_sequence = next, error = %e, "checkpoint failed; will retry after more entries"),
            }
            policy(&checkpoints).written();
        });
    }

    /// Declares silent workers lost; called periodically.
    pub async fn detect_lost_workers(&self) {
        let lost = self.with_registry(|st, now| st.registry.tick(now)).await;
        for w in lost {
            warn!(worker_id = w.id, host = %w.address.host, port = w.address.rpc_port, blocks = w.blocks.len(),
                "worker lost: no heartbeat within the timeout; its blocks are no longer listed");
        }
    }

    /// Graceful stop: writes what is queued and completes the open journal segment.
    pub async fn shutdown(&self) {
        self.writer.clone().close().await;
    }
}

/// The client-facing descriptions of a directory's children (all descendants with
/// `recursive`), in name order.
/// Entries of a listing page when the client does not ask for a number.
pub const DEFAULT_LIST_PAGE_ENTRIES: usize = 1000;
/// Most entries of a listing page, whatever the client asks.
pub const MAX_LIST_PAGE_ENTRIES: usize = 10_000;
/// A listing page stops growing past this many encoded bytes (gRPC refuses messages over
/// 4 MiB by default; a path may take 4 KiB).
pub const MAX_LIST_PAGE_BYTES: usize = 2 << 20;

/// One page of the listing of `dir` (at `dir_path`): entries without block lists, and the
/// path the next page starts after (`None` on the last page). See [`Namespace::list_page`].
pub fn list_page_infos(
    st: &State,
    dir: &Inode,
    dir_path: &FsPath,
    recursive: bool,
    after: Option<&FsPath>,
    limit: usize,
) -> Result<(Vec<FileInfo>, Option<String>), FsError> {
    use prost::Message as _;
    let limit = match limit {
        0 => DEFAULT_LIST_PAGE_ENTRIES,
        n => n.min(MAX_LIST_PAGE_ENTRIES),
    };
    let (inodes, mut more) = st.ns.list_page(dir, dir_path, recursive, after, limit)?;
    let mut infos = Vec::with_capacity(inodes.len());
    let mut bytes = 0;
    for inode in inodes {
        let Some(path) = st.ns.path_of(inode.id) else { continue };
        let info = file_info_with_blocks(st, inode, &path, 0);
        bytes += info.encoded_len() + 8;
        if bytes > MAX_LIST_PAGE_BYTES && !infos.is_empty() {
            more = true;
            break;
        }
        infos.push(info);
    }
    let next = if more { infos.last().map(|i| i.path.clone()) } else { None };
    Ok((infos, next))
}

/// The client-facing description of what is at `path` now (fails if nothing is).
pub fn status_at(st: &State, path: &FsPath) -> Result<FileInfo, FsError> {
    Ok(file_info(st, st.ns.lookup(path)?, path))
}

/// Builds the client-facing description of an inode, with its blocks and their locations.
pub fn file_info(st: &State, inode: &Inode, path: &FsPath) -> FileInfo {
    file_info_with_blocks(st, inode, path, usize::MAX)
}

/// [`file_info`] listing at most the first `max_blocks` blocks (listings list none, the web
/// UI a page: a file may have millions).
pub fn file_info_with_blocks(st: &State, inode: &Inode, path: &FsPath, max_blocks: usize) -> FileInfo {
    let (is_directory, length, block_size, complete, persistence) = match inode.kind {
        InodeKind::Directory { .. } => (true, 0, 0, false, PersistenceState::Persisted),
        InodeKind::File { block_size, length, complete, persistence } => (false, length, block_size, complete, persistence),
    };
    let mut blocks = Vec::new();
    let mut in_memory_bytes = 0;
    if complete {
        for (index, id) in inode.block_ids().into_iter().enumerate() {
            let len = block_length(length, block_size, index as u64);
            let locations: Vec<_> = st.registry.locations(id).into_iter().map(|w| w.address.clone()).collect();
            if !locations.is_empty() {
                in_memory_bytes += len;
            }
            if blocks.len() < max_blocks {
                blocks.push(BlockInfo { block_id: id, length: len, locations });
            }
        }
    }
    let in_memory_percentage = (in_memory_bytes * 100).checked_div(length).unwrap_or(100) as u32;
    let child_count = match &inode.kind {
        InodeKind::Directory { children } => children.len() as u64,
        InodeKind::File { .. } => 0,
    };
    debug_assert!(max_blocks != usize::MAX || !complete || blocks.len() as u64 == block_count(length, block_size));
    FileInfo {
        id: inode.id,
        path: path.to_string(),
        name: inode.name.to_string(),
        is_directory,
        length,
        block_size_bytes: block_size,
        complete,
        ownership: Some(inode.ownership.to_proto()),
        creation_time_ms: inode.creation_time_ms,
        modification_time_ms: inode.modification_time_ms,
        persistence_state: persistence.as_str_name().to_string(),
        blocks,
        in_memory_percentage: if is_directory { 0 } else { in_memory_percentage },
        child_count,
        pinned: inode.pinned,
        ttl_ms: inode.ttl.map(|t| t.ttl_ms),
        ttl_action: inode.ttl.map(|t| ttl_action_name(t.action).to_string()).unwrap_or_default(),
    }
}

/// How a TTL action is written in the shell and in file status: `DELETE` or `FREE`.
pub fn ttl_action_name(action: crate::proto::TtlAction) -> &'static str {
    match action {
        crate::proto::TtlAction::TtlDelete => "DELETE",
        crate::proto::TtlAction::TtlFree => "FREE",
    }
}

/// Where a submission ends and the checkpoint work it calls for.
struct Journaled {
    /// Everything below this position must be durable before the answers go out.
    end: u64,
    /// A snapshot to write, or the position to look for a recent standby checkpoint at.
    checkpoint: Option<Result<crate::proto::Checkpoint, u64>>,
}

/// Refuses a request id too long to keep for recognising retries.
fn check_request_id(request_id: &str) -> Result<(), FsError> {
    if request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(FsError::InvalidArgument { reason: format!("request id longer than {MAX_REQUEST_ID_BYTES} bytes") });
    }
    Ok(())
}

/// Refuses an operation whose journal entry replay could not read back: checked at
/// planning time, before anything is applied, so the request fails and nothing changes.
fn check_entry_sizes(kinds: &[Kind], request_id: &str) -> Result<(), FsError> {
    let max = crate::journal::format::MAX_ENTRY_BYTES;
    match kinds.iter().map(|k| crate::journal::format::entry_bytes_bound(k, request_id)).find(|bytes| *bytes > max) {
        None => Ok(()),
        Some(bytes) => Err(FsError::InvalidArgument {
            reason: format!(
                "this operation needs a journal entry of {bytes} bytes, more than the {max} one entry may hold \
                 (a rename or delete of a directory with very many persisted files below it: rename or delete its subdirectories one by one)"
            ),
        }),
    }
}
