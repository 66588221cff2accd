//! A master process: one RPC server whose role switches between standby and leader.
//!
//! The life of a master ([`run_master`]) is a loop:
//! 1. **Standby.** Recover the namespace from the journal (checkpoint + logs), register with
//!    the coordinator, campaign, and while the campaign waits, apply new journal entries
//!    every `tachyon.master.journal.tailer.sleep.time` (tailing). RPCs that need the leader
//!    answer `NotLeader` with a hint of who leads.
//! 2. **Promotion.** Once elected with epoch `e`: claim `e` in the journal (from then on no
//!    older leader acknowledges anything), catch up on everything left (including the old
//!    leader's unfinished segment), open a writer for epoch `e`, settle the under-storage
//!    intents a predecessor left, serve, and only then announce the address for discovery.
//! 3. **Leader.** Serve until asked to stop (complete the segment, resign at once so a
//!    standby takes over), until leadership is lost (abort the writer without another
//!    byte), or until the journal cannot be written (abort, resign). The last two go back
//!    to 1 with a fresh recovery: memory that may have run ahead of the journal is dropped.
//!
//! The order of these steps is decided by the pure [`RoleEngine`] (`core/role.rs`, tested
//! command by command); this module carries its commands out.
//!
//! Architecture Invariant: a master answers a client request from leader state only while it
//! holds a leadership that is not lost and a writer whose epoch check passed.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use crate::watch;
use tracing::{debug, error, info, warn};

use super::service::{resolve, MasterRpc};
use super::{Master, MasterOptions};
use crate::coordinator::{Coordinator, Leadership};
use crate::core::namespace::Namespace;
use crate::core::role::{Command, Event, Phase, RoleEngine};
use crate::error::FsError;
use crate::journal::{Journal, JournalError};
use crate::proto::master_service_server::MasterServiceServer;
use crate::proto::{MasterStatus, StateDigest, TtlAction};
use crate::runtime::Clock;
use crate::underfs::UnderFs;

/// How often a master renews its listing with the coordinator.
const REGISTRATION_CHECK: Duration = Duration::from_secs(1);

/// What a master currently is.
#[derive(Clone)]
enum Role {
    /// Following the journal; `applied` is the next sequence it would apply.
    Standby {
        applied: u64,
        last_epoch: u64,
    },
    Leader(Arc<Master>),
}

/// A master process's shared state: its role and what it needs to change roles.
pub struct MasterNode {
    options: MasterOptions,
    clock: Arc<dyn Clock>,
    coordinator: Arc<dyn Coordinator>,
    journal: Journal,
    role: StdMutex<Role>,
    start_time_ms: i64,
    /// A standby's namespace, kept here while it follows the journal (taken at promotion).
    standby_ns: tokio::sync::Mutex<Option<Namespace>>,
    /// A client with the under-storage for file data: persists ASYNC_THROUGH files while
    /// leading. `None` where no under-storage is configured (the simulator).
    persister: Option<crate::client::FileSystem>,
    /// Verifies callers against `options.security`.
    auth: super::auth::Authenticator,
}

impl MasterNode {
    /// A standby master over the journal stored on `journal_ufs` (rooted at the folder).
    pub fn new(options: MasterOptions, clock: Arc<dyn Clock>, coordinator: Arc<dyn Coordinator>, journal_ufs: Arc<dyn UnderFs>) -> Self {
        let journal = Journal::new(journal_ufs, options.journal_limits.clone()).with_fencing(options.fencing);
        let start_time_ms = clock.now_ms();
        let auth = super::auth::Authenticator::new(options.security.clone(), clock.clone());
        MasterNode {
            auth,
            options,
            clock,
            coordinator,
            journal,
            role: StdMutex::new(Role::Standby { applied: 0, last_epoch: 0 }),
            start_time_ms,
            standby_ns: tokio::sync::Mutex::new(None),
            persister: None,
        }
    }

    /// Gives the master the under-storage for file data, through a client of the cluster
    /// that has it: the leader then mirrors deletes and renames of persisted files there and
    /// persists ASYNC_THROUGH files in the background.
    pub fn with_under_storage(mut self, client: crate::client::FileSystem) -> Self {
        self.persister = Some(client);
        self
    }

    /// Verifies callers (identity, worker membership, ownership of what they create).
    pub fn auth(&self) -> &super::auth::Authenticator {
        &self.auth
    }

    /// This master's settings.
    pub fn options(&self) -> &MasterOptions {
        &self.options
    }

    /// The under-storages for file data (the root one and the mounted ones), if configured.
    pub fn ufs_mounts(&self) -> Option<&crate::underfs::mounts::UfsMounts> {
        self.persister.as_ref().map(|fs| fs.mounts())
    }

    fn role(&self) -> Role {
        self.role.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_role(&self, role: Role) {
        *self.role.lock().unwrap_or_else(|p| p.into_inner()) = role;
    }

    /// The leader state, or `NotLeader` naming who leads (as far as the coordinator knows).
    pub async fn leader(&self) -> Result<Arc<Master>, FsError> {
        if let Role::Leader(m) = self.role() {
            if !m.leadership().is_lost() {
                return Ok(m);
            }
        }
        let leader = self.coordinator.leader_address().await.ok().flatten().unwrap_or_default();
        let leader = if leader == self.options.address { String::new() } else { leader };
        Err(FsError::NotLeader { leader })
    }

    /// This master's address.
    pub fn address(&self) -> &str {
        &self.options.address
    }

    /// When this process started.
    pub fn start_time_ms(&self) -> i64 {
        self.start_time_ms
    }

    /// The registry and namespace figures of the leader state, if this master leads.
    pub async fn leader_state<R>(&self, f: impl FnOnce(&super::State) -> R) -> Option<R> {
        match self.role() {
            Role::Leader(m) if !m.leadership().is_lost() => Some(m.read_unchecked(f).await),
            _ => None,
        }
    }

    /// The coordinator this master campaigns through.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coordinator
    }

    /// This master's namespace digest and position (a pass over the whole namespace).
    pub async fn state_digest(&self) -> StateDigest {
        let address = self.options.address.clone();
        if let Role::Leader(m) = self.role() {
            let (applied_sequence, digest) = m.read_unchecked(|st| (st.ns.next_sequence(), st.ns.digest())).await;
            return StateDigest { address, role: "leader".into(), applied_sequence, digest };
        }
        let guard = self.standby_ns.lock().await;
        let (applied_sequence, digest) = guard.as_ref().map(|ns| (ns.next_sequence(), ns.digest())).unwrap_or_default();
        StateDigest { address, role: "standby".into(), applied_sequence, digest }
    }

    /// This master's role, epoch and applied journal position.
    pub async fn status(&self) -> MasterStatus {
        let address = self.options.address.clone();
        match self.role() {
            Role::Standby { applied, last_epoch } => MasterStatus { address, role: "standby".into(), epoch: last_epoch, applied_sequence: applied },
            Role::Leader(m) => {
                let applied = m.read_unchecked(|st| st.ns.next_sequence()).await;
                MasterStatus { address, role: "leader".into(), epoch: m.epoch(), applied_sequence: applied }
            }
        }
    }
}

/// Why a master process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot bind the master address: {0}")]
    Bind(FsError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("serving RPC failed: {0}")]
    Serve(String),
}

/// Runs a master process until `shutdown` completes: serves RPC in either role and
/// switches roles as elections go. The journal lives on `journal_ufs` (the folder named by
/// `options.journal_folder`, opened by the caller: real under-storage or a simulated one).
pub async fn run_master(
    options: MasterOptions,
    clock: Arc<dyn Clock>,
    coordinator: Arc<dyn Coordinator>,
    journal_ufs: Arc<dyn UnderFs>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let node = Arc::new(MasterNode::new(options, clock, coordinator, journal_ufs));
    run_node(node, shutdown).await
}

/// Runs an already built master process (so a caller can also hand the node to, say, the
/// web UI) until `shutdown` completes.
pub async fn run_node(node: Arc<MasterNode>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), RunError> {
    let bind = resolve(&node.options.bind_address).await.map_err(RunError::Bind)?;
    // A master on an unformatted journal is a set-up mistake: say so at once.
    if !node.journal.is_formatted().await? {
        return Err(JournalError::NotFormatted { folder: node.journal.folder() }.into());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });
    let server = {
        let mut stop = stop_rx.clone();
        let svc = MasterServiceServer::new(MasterRpc::new(node.clone())).max_decoding_message_size(crate::rpc::MAX_MASTER_REQUEST_BYTES);
        info!(%bind, "master RPC listening");
        crate::rpc::server_builder(node.options.security.tls.as_ref()).map_err(|e| RunError::Serve(e.to_string()))?.add_service(svc).serve_with_shutdown(
            bind,
            async move {
                wait_stopped(&mut stop).await;
            },
        )
    };
    let registration = tokio::spawn(keep_registered(node.clone()));
    // The role loop finishes its own shutdown (complete the segment, resign) after the
    // server stops accepting requests; it is only cut short if serving fails.
    let mut roles = tokio::spawn(switch_roles(node.clone(), stop_rx));
    let result = tokio::select! {
        biased; // polled in a fixed order: tokio's random start is seeded per process, not per simulated run
        served = server => match served {
            Ok(()) => join_roles(&mut roles).await,
            Err(e) => {
                roles.abort();
                Err(RunError::Serve(e.to_string()))
            }
        },
        ended = &mut roles => ended.unwrap_or_else(|e| Err(RunError::Serve(format!("role loop: {e}")))),
    };
    registration.abort();
    match &result {
        Ok(()) => info!("master stopped"),
        Err(e) => error!(error = %e, "master stopped"),
    }
    result
}

/// Waits for the role loop to finish its shutdown.
async fn join_roles(roles: &mut tokio::task::JoinHandle<Result<(), RunError>>) -> Result<(), RunError> {
    roles.await.unwrap_or_else(|e| Err(RunError::Serve(format!("role loop: {e}"))))
}

/// Keeps the master listed with the coordinator for the life of the process: the listing
/// dies with a coordinator session (a long pause, a ZooKeeper outage), so it is renewed
/// every [`REGISTRATION_CHECK`].
async fn keep_registered(node: Arc<MasterNode>) {
    let mut failing = false;
    loop {
        match node.coordinator.register_master(node.address()).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                warn!(error = %e, "cannot register this master with the coordinator; retrying");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(REGISTRATION_CHECK).await;
    }
}

/// How a leader term ended.
enum TermEnd {
    Stop,
    Lost,
    JournalFailed(String),
}

/// A running campaign for leadership.
type Campaign = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Leadership, FsError>> + Send>>;

/// What the role driver holds between commands: the term being taken over or served.
#[derive(Default)]
struct Term {
    /// The namespace while it is taken over (from the standby's, until the master owns it).
    ns: Option<Namespace>,
    leadership: Option<Leadership>,
    epoch: u64,
    writer: Option<crate::journal::JournalWriter>,
    master: Option<Arc<Master>>,
    /// Entries the final catch-up applied, and where the new term's entries start.
    caught_up_entries: u64,
    next_sequence: u64,
    /// Intents settling left to the background (retried while serving).
    unsettled: BTreeSet<u64>,
}

/// The standby → leader → standby loop, driving the pure [`RoleEngine`]: carries out each
/// command it gives and reports what happened; returns when stopped.
async fn switch_roles(node: Arc<MasterNode>, mut stop: watch::Receiver<bool>) -> Result<(), RunError> {
    let tail_every = Duration::from_millis(node.options.tailer_sleep_ms);
    let mut engine = RoleEngine::new(node.options.checkpoint_period_entries, tail_every * 10);
    let mut pending: VecDeque<Command> = engine.handle(Event::Started).into();
    let mut term = Term::default();
    let mut campaign: Option<Campaign> = None;
    loop {
        while let Some(command) = pending.pop_front() {
            debug!(?command, "role");
            let event = match command {
                Command::Exit => return Ok(()),
                Command::Backoff(pause) => stopped_during(pause, &stop).await.then_some(Event::Stop),
                Command::Recover => Some(recover(&node).await?),
                Command::Campaign => {
                    let last_epoch = match node.role() {
                        Role::Standby { last_epoch, .. } => last_epoch,
                        Role::Leader(_) => 0,
                    };
                    let (coordinator, address) = (node.coordinator.clone(), node.address().to_string());
                    campaign = Some(Box::pin(async move { coordinator.campaign(&address, last_epoch).await }));
                    None
                }
                Command::WriteCheckpoint => {
                    if let Some(ns) = node.standby_ns.lock().await.as_ref() {
                        checkpoint_as_standby(&node.journal, ns).await;
                    }
                    None
                }
                Command::ClaimEpoch { epoch } => {
                    Some(take_over_step(epoch, "claim the epoch", node.journal.claim_epoch(epoch).await.map(|()| Event::EpochClaimed)))
                }
                Command::CatchUp => {
                    let ns = term.ns.get_or_insert_with(Namespace::new);
                    let caught_up = node.journal.catch_up(ns, true).await.map(|applied| term.caught_up_entries = applied);
                    Some(take_over_step(term.epoch, "catch up", caught_up.map(|()| Event::CaughtUp)))
                }
                Command::StartWriter { epoch } => {
                    let ns = term.ns.get_or_insert_with(Namespace::new);
                    let started = node.journal.start_writer(ns, epoch).await.map(|w| term.writer = Some(w));
                    Some(take_over_step(epoch, "start the writer", started.map(|()| Event::WriterStarted)))
                }
                Command::Settle => {
                    let (Some(ns), Some(writer), Some(leadership)) = (term.ns.take(), term.writer.clone(), term.leadership.clone()) else {
                        return Err(RunError::Serve("role: settle before the take-over's namespace, writer and leadership".into()));
                    };
                    term.next_sequence = ns.next_sequence();
                    let master = Master::new(ns, node.journal.clone(), writer, leadership, node.clock.clone(), node.options.clone());
                    // Under-storage work a previous leader left half done is settled before serving.
                    term.unsettled = super::ufs_intents::settle_ufs_intents(&node, &master, None).await;
                    term.master = Some(master);
                    Some(Event::Settled)
                }
                Command::Serve => {
                    if let Some(master) = &term.master {
                        node.set_role(Role::Leader(master.clone()));
                    }
                    None
                }
                Command::Announce => {
                    let announced = match &term.leadership {
                        Some(leadership) => leadership.announce(node.address()).await.map_err(|e| e.to_string()),
                        None => Err("no leadership to announce".to_string()),
                    };
                    match announced {
                        Ok(()) => {
                            info!(address = %node.address(), epoch = term.epoch, next_sequence = term.next_sequence, caught_up_entries = term.caught_up_entries, "master is the leader and serving");
                            crate::metrics::LEADER_TERMS.inc();
                            Some(Event::Announced)
                        }
                        Err(error) => {
                            warn!(epoch = term.epoch, %error, "could not announce leadership; stepping down");
                            Some(Event::TakeOverFailed)
                        }
                    }
                }
                Command::AbortWriter => {
                    if let Some(writer) = term.writer.take() {
                        writer.abort().await;
                    }
                    None
                }
                Command::StopServing => {
                    if let Some(master) = &term.master {
                        node.set_role(Role::Standby { applied: master.read_unchecked(|st| st.ns.next_sequence()).await, last_epoch: term.epoch });
                    }
                    None
                }
                Command::CloseWriter => {
                    if let Some(master) = &term.master {
                        master.shutdown().await;
                    }
                    term.writer = None;
                    None
                }
                Command::Resign => {
                    if let Some(leadership) = term.leadership.take() {
                        leadership.resign().await;
                    }
                    term = Term::default();
                    None
                }
            };
            if let Some(event) = event {
                pending.extend(engine.handle(event));
            }
        }
        // Nothing left to do: wait for what happens next in this phase.
        let event = match engine.phase() {
            Phase::Following => follow(&node, &mut campaign, &mut term, &stop, tail_every).await,
            Phase::Leading { .. } => match &term.master {
                Some(master) => match serve_term(&node, master, std::mem::take(&mut term.unsettled), &mut stop).await {
                    TermEnd::Stop => Event::Stop,
                    TermEnd::Lost => {
                        warn!(epoch = term.epoch, "leadership lost: stopping the journal writer; rejoining as a standby");
                        Event::Lost
                    }
                    TermEnd::JournalFailed(reason) => {
                        error!(epoch = term.epoch, %reason, "journal write failed: giving up leadership; rejoining as a standby");
                        Event::JournalFailed
                    }
                },
                None => return Err(RunError::Serve("role: leading without a master".into())),
            },
            Phase::Stopped => return Ok(()),
            phase @ (Phase::Recovering | Phase::TakingOver { .. }) => return Err(RunError::Serve(format!("role: no command to carry out in {phase:?}"))),
        };
        pending.extend(engine.handle(event));
    }
}

/// The event a take-over step's outcome is: its own, or a failed take-over.
fn take_over_step(epoch: u64, step: &str, outcome: Result<Event, JournalError>) -> Event {
    match outcome {
        Ok(event) => event,
        Err(e) => {
            warn!(epoch, error = %e, "could not {step} to take the journal over; back to standby");
            Event::TakeOverFailed
        }
    }
}

/// Recovers the namespace and makes it the standby's. `NotFormatted` ends the process.
async fn recover(node: &MasterNode) -> Result<Event, RunError> {
    match node.journal.recover().await {
        Ok(recovered) => {
            let (first, last_epoch) = (recovered.namespace.next_sequence(), recovered.last_epoch);
            *node.standby_ns.lock().await = Some(recovered.namespace);
            node.set_role(Role::Standby { applied: first, last_epoch });
            info!(address = %node.address(), next_sequence = first, last_epoch, "standby: following the journal");
            Ok(Event::Recovered { next_sequence: first })
        }
        Err(e @ JournalError::NotFormatted { .. }) => Err(e.into()),
        Err(e) => {
            warn!(error = %e, "cannot recover the journal; retrying");
            Ok(Event::RecoveryFailed)
        }
    }
}

/// A standby's wait: tails the journal every `tail_every` until the campaign ends or the
/// process is asked to stop.
async fn follow(node: &MasterNode, campaign: &mut Option<Campaign>, term: &mut Term, stop: &watch::Receiver<bool>, tail_every: Duration) -> Event {
    let mut stopping = stop.clone();
    loop {
        let Some(running) = campaign.as_mut() else { return Event::CampaignFailed };
        tokio::select! {
            biased; // polled in a fixed order: tokio's random start is seeded per process, not per simulated run
            elected = running => {
                *campaign = None;
                return match elected {
                    Ok(leadership) => {
                        term.epoch = leadership.epoch;
                        term.ns = node.standby_ns.lock().await.take();
                        term.leadership = Some(leadership);
                        Event::Elected { epoch: term.epoch }
                    }
                    Err(e) => {
                        warn!(error = %e, "campaign failed; retrying");
                        Event::CampaignFailed
                    }
                };
            }
            _ = tokio::time::sleep(tail_every) => {
                let mut guard = node.standby_ns.lock().await;
                let Some(ns) = guard.as_mut() else { continue };
                match node.journal.catch_up(ns, false).await {
                    Ok(_) => {
                        let last_epoch = match node.role() {
                            Role::Standby { last_epoch, .. } => last_epoch.max(ns.epoch()),
                            Role::Leader(_) => ns.epoch(),
                        };
                        node.set_role(Role::Standby { applied: ns.next_sequence(), last_epoch });
                        return Event::TailedTo { next_sequence: ns.next_sequence() };
                    }
                    Err(e) => warn!(error = %e, next_sequence = ns.next_sequence(), "standby could not read the journal; retrying"),
                }
            }
            _ = wait_stopped(&mut stopping) => return Event::Stop,
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn wait_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps for `duration`; true if `stop` turned true meanwhile (the sleep ends early then).
async fn stopped_during(duration: Duration, stop: &watch::Receiver<bool>) -> bool {
    let mut rx = stop.clone();
    tokio::select! {
        biased; // polled in a fixed order: tokio's random start is seeded per process, not per simulated run
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        _ = wait_stopped(&mut rx) => true,
    }
}

/// Writes a checkpoint of a caught-up standby's namespace, so the leader never stops for
/// one and the next take-over replays little. Another standby may have written the same
/// one: same sequence, same bytes (replay is deterministic), so it is skipped.
async fn checkpoint_as_standby(journal: &Journal, ns: &Namespace) {
    let next = ns.next_sequence();
    match journal.has_checkpoint(next).await {
        Ok(true) => {}
        Ok(false) => match journal.write_checkpoint(&ns.to_checkpoint()).await {
            Ok(()) => info!(next_sequence = next, "standby wrote a checkpoint"),
            Err(e) => warn!(next_sequence = next, error = %e, "standby checkpoint failed; will try again after more entries"),
        },
        Err(e) => warn!(error = %e, "cannot list checkpoints"),
    }
}

/// How often the leader looks for ASYNC_THROUGH files to persist.
const PERSIST_INTERVAL: Duration = Duration::from_millis(500);
/// Most files persisted per pass (one at a time); the rest wait for the next pass.
const PERSIST_BATCH_FILES: usize = 16;

/// Copies files waiting for background persistence to the under-storage, one at a time.
/// The waiting state is journaled, so a new leader picks up where a failed one stopped;
/// a file that fails (a worker restarting, under-storage down) is tried again next pass.
async fn persist_pending(master: Arc<Master>, client: crate::client::FileSystem) {
    loop {
        tokio::time::sleep(PERSIST_INTERVAL).await;
        let pending: Vec<String> = master
            .read_unchecked(|st| {
                st.ns.files_to_persist().into_iter().take(PERSIST_BATCH_FILES).filter_map(|id| st.ns.path_of(id)).map(|p| p.to_string()).collect()
            })
            .await;
        for path in pending {
            match client.persist(&path).await {
                Ok(_) => info!(%path, "persisted to the under-storage"),
                // Deleted or renamed meanwhile: the next pass sees the new state.
                Err(FsError::NotFound { .. }) => {}
                Err(e) => warn!(%path, error = %e, "background persistence failed; will retry"),
            }
        }
    }
}

/// How often a leader retries under-storage work it could not settle at promotion.
const SETTLE_RETRY: Duration = Duration::from_secs(5);

/// Retries settling the under-storage intents `ids` until none is left.
async fn settle_remaining(node: Arc<MasterNode>, master: Arc<Master>, mut ids: BTreeSet<u64>) {
    while !ids.is_empty() {
        tokio::time::sleep(SETTLE_RETRY).await;
        ids = super::ufs_intents::settle_ufs_intents(&node, &master, Some(&ids)).await;
    }
}

/// Most expired TTLs acted on per pass; the rest wait for the next pass.
const TTL_BATCH: usize = 1000;

/// Runs the actions of TTLs that ran out, every `ttl_check_interval_ms`: DELETE deletes
/// the inode like `fs rm -R` (under-storage copies too), FREE frees the cached blocks of a
/// persisted file (and clears the TTL). Each action is re-planned against the current
/// state (`plan_expire`), so a rename, a new TTL or a delete in between is respected.
async fn expire_ttls(node: Arc<MasterNode>, master: Arc<Master>) {
    let interval = Duration::from_millis(node.options.ttl_check_interval_ms);
    loop {
        tokio::time::sleep(interval).await;
        let now = master.now_ms();
        let expired = master.read_unchecked(|st| st.ns.expired(now).into_iter().take(TTL_BATCH).collect::<Vec<_>>()).await;
        for e in expired {
            let id = e.id;
            let acted = async {
                match e.action {
                    TtlAction::TtlDelete => super::ufs_intents::delete_mirrored(&node, &master, "", &e.path, |st, now| st.ns.plan_expire(id, now)).await,
                    TtlAction::TtlFree => {
                        let freed = master.with_registry(|st, _| super::service::free_cached(st, &e.path, true)).await?;
                        master.mutate("", |st, now| st.ns.plan_expire(id, now), |_| Ok(())).await?;
                        debug!(path = %e.path, blocks = freed, "freed by TTL");
                        Ok(())
                    }
                }
            }
            .await;
            match acted {
                Ok(()) => info!(path = %e.path, action = crate::master::ttl_action_name(e.action), "TTL ran out"),
                Err(err) => warn!(path = %e.path, action = crate::master::ttl_action_name(e.action), error = %err, "TTL action failed; will retry"),
            }
        }
    }
}

/// Most abandoned writes removed per pass; the rest wait for the next pass.
const REAP_BATCH: usize = 1000;

/// Deletes the incomplete files of writers that died (no block stored for
/// `abandoned_write_timeout_ms`, counted from this term's start for writes it has not seen)
/// and the uploads they left in the under-storage, checking every tenth of the timeout
/// (between once a second and once a minute). Each deletion is re-planned under the lock,
/// so a block stored meanwhile keeps the file.
async fn reap_abandoned_writes(node: Arc<MasterNode>, master: Arc<Master>) {
    let timeout = node.options.abandoned_write_timeout_ms;
    let interval = Duration::from_millis((timeout / 10).clamp(1000, 60_000) as u64);
    loop {
        tokio::time::sleep(interval).await;
        for (id, path) in master.abandoned_writes(REAP_BATCH).await {
            let plan = |st: &super::State, now| Ok(st.ns.plan_reap_abandoned(id, now, timeout, st.last_write_ms(id)));
            match super::ufs_intents::delete_mirrored(&node, &master, "", &path, plan).await {
                Ok(()) if master.read_unchecked(|st| st.ns.inode(id).is_none()).await => {
                    info!(%path, timeout_ms = timeout, "removed the incomplete file of a writer that went silent");
                    super::ufs_intents::remove_uploads_beside(&node, &master, &path).await;
                }
                Ok(()) => {}
                Err(e) => warn!(%path, error = %e, "could not remove an abandoned write; will retry"),
            }
        }
    }
}

/// Serves as leader until stopped, deposed, or the journal fails.
async fn serve_term(node: &Arc<MasterNode>, master: &Arc<Master>, unsettled: BTreeSet<u64>, stop: &mut watch::Receiver<bool>) -> TermEnd {
    let lost_check = {
        let m = master.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                m.detect_lost_workers().await;
            }
        })
    };
    let persisting = node.persister.clone().map(|client| tokio::spawn(persist_pending(master.clone(), client)));
    let expiring = tokio::spawn(expire_ttls(node.clone(), master.clone()));
    let reaping = tokio::spawn(reap_abandoned_writes(node.clone(), master.clone()));
    let settling = (!unsettled.is_empty()).then(|| tokio::spawn(settle_remaining(node.clone(), master.clone(), unsettled)));
    let fencing = master.fencing();
    let end = tokio::select! {
        biased; // polled in a fixed order: tokio's random start is seeded per process, not per simulated run
        _ = wait_stopped(stop) => TermEnd::Stop,
        _ = master.leadership().lost(), if fencing => TermEnd::Lost,
        reason = master.writer().stopped() => TermEnd::JournalFailed(reason),
    };
    lost_check.abort();
    expiring.abort();
    reaping.abort();
    if let Some(s) = settling {
        s.abort();
    }
    if let Some(p) = persisting {
        p.abort();
    }
    end
}
