//! Fault scenarios (`fault-scenarios/*.toml`), the workload that runs during them, and the
//! invariant checkers that judge the outcome. Checkers are separate from the workload and
//! named after the property they check.
//!
//! Format of a scenario file:
//! ```toml
//! name = "leader crash and restart"
//! masters = 3            # master nodes
//! workers = 2            # worker nodes
//! duration_ms = 15000    # virtual time the workload runs
//! seeds = 8              # seeds the default run tries (1..=seeds)
//! session_timeout_ms = 2000
//! [[step]]               # faults, in order of at_ms (virtual ms from the start)
//! at_ms = 4000
//! action = "kill_leader" # kill_leader | restart_all | pause_leader | kill_worker |
//!                        # store_write_errors (for_ms) | kill_each_new_leader (count)
//!                        # partition_leader_from_zookeeper (for_ms) | restart_zookeeper
//!                        # restart_store (for_ms) | lag_standby (for_ms) | random_faults (for_ms)
//!                        # store_drops_syncs (for_ms; only to prove the checkers bite)
//! for_ms = 0             # how long a pause or error window lasts
//! count = 0              # for kill_each_new_leader
//! pinned_client = false  # a second client that only talks to the first leader
//! pinned_reader = false  # a reader that only talks to the first leader and keeps reading
//!                        # the newest marker (/v/m<k>) the main client then creates
//! quiet_before_faults_ms = 0 # the main client starts nothing in this window before each
//!                        # step (so a paused leader has no write in flight)
//! session_notice_delay_ms = 0 # how late a master acts on the end of its ZooKeeper session
//! async_writes = true    # the main client also writes ASYNC_THROUGH files
//! max_failover_ms = 10000 # bound from a leader fault to the next acknowledged write
//! [[tier]]               # worker storage tiers, fastest first (default: MEM of 64 MiB)
//! alias = "MEM"          # MEM | SSD | HDD
//! quota_bytes = 262144
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use madsim::time::Instant;
use serde::Deserialize;
use tachyon::client::{CreateOptions, FileSystem, WriteType};
use tachyon::core::tiers::TierAlias;
use tachyon::error::FsError;
use tachyon::journal::{Journal, JournalLimits};
use tachyon::proto::FileInfo;

use crate::cluster::{SimCluster, Topology};
use crate::history::{History, MarkerRead, Place};

/// One scenario file.
#[derive(Clone, Debug, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub masters: usize,
    pub workers: usize,
    pub duration_ms: u64,
    pub seeds: u64,
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    #[serde(default)]
    pub step: Vec<Step>,
    /// Longest allowed time from a leader fault to the next acknowledged write.
    #[serde(default = "default_max_failover_ms")]
    pub max_failover_ms: u64,
    /// A second client pinned to the first leader (it keeps talking to a deposed one).
    #[serde(default)]
    pub pinned_client: bool,
    /// A reader pinned to the first leader, reading the markers the main client creates:
    /// what `reads_see_every_acknowledged_write` judges.
    #[serde(default)]
    pub pinned_reader: bool,
    /// The main client starts no operation in this window before each step.
    #[serde(default)]
    pub quiet_before_faults_ms: u64,
    /// How late a master acts on the end of its ZooKeeper session (its client learns it
    /// from a ping that was due, or its event handling lags).
    #[serde(default)]
    pub session_notice_delay_ms: u64,
    /// Whether the main client writes ASYNC_THROUGH files (whose background persistence
    /// keeps the leader journaling even while no client writes).
    #[serde(default = "switched_on")]
    pub async_writes: bool,
    /// Journal fencing on the masters; `false` only in the test proving the checkers bite.
    #[serde(default = "switched_on")]
    pub fencing: bool,
    /// The leader lease on the masters; `false` only in the test proving the stale-read
    /// checker bites.
    #[serde(default = "switched_on")]
    pub leader_lease: bool,
    /// Each worker's storage tiers, fastest first (default: one MEM tier of 64 MiB).
    #[serde(default = "default_tiers")]
    pub tier: Vec<Tier>,
}

/// One storage tier of every worker.
#[derive(Clone, Debug, Deserialize)]
pub struct Tier {
    pub alias: String,
    pub quota_bytes: u64,
}

fn default_tiers() -> Vec<Tier> {
    vec![Tier { alias: "MEM".into(), quota_bytes: 64 << 20 }]
}

fn default_max_failover_ms() -> u64 {
    10_000
}

fn switched_on() -> bool {
    true
}

fn default_session_timeout_ms() -> u64 {
    2000
}

/// A fault at a point in virtual time.
#[derive(Clone, Debug, Deserialize)]
pub struct Step {
    pub at_ms: u64,
    pub action: Action,
    #[serde(default)]
    pub for_ms: u64,
    #[serde(default)]
    pub count: u32,
}

/// What a step does.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    KillLeader,
    RestartAll,
    PauseLeader,
    KillWorker,
    StoreWriteErrors,
    KillEachNewLeader,
    /// The store acknowledges syncs without keeping the bytes (for the checker test).
    StoreDropsSyncs,
    /// Cut the leader off from ZooKeeper (both directions) for `for_ms`; clients and workers
    /// still reach it: the split-brain setting.
    PartitionLeaderFromZookeeper,
    /// Restart the ZooKeeper node; it comes back empty (every session and node gone).
    RestartZookeeper,
    /// The journal store node goes down for `for_ms` (its disk survives).
    RestartStore,
    /// A standby cannot reach the journal store for `for_ms` and falls behind (the run goes
    /// on meanwhile: combine with a later kill_leader).
    LagStandby,
    /// For `for_ms`, every 300-1000 ms a random fault from the seeded RNG: kill or restart a
    /// master, pause one for up to 4 s, clog a master's link to ZooKeeper for up to 3 s.
    /// Everything is healed at the end.
    RandomFaults,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let s: Scenario = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if s.masters == 0 || s.masters > 5 || s.workers == 0 || s.workers > 5 {
            return Err(format!("{}: 1..=5 masters and workers", path.display()));
        }
        if s.step.windows(2).any(|w| w[0].at_ms > w[1].at_ms) {
            return Err(format!("{}: steps must be in order of at_ms", path.display()));
        }
        let aliases: Vec<Option<TierAlias>> = s.tier.iter().map(|t| TierAlias::parse(&t.alias)).collect();
        if s.tier.is_empty()
            || s.tier.len() > 3
            || aliases.iter().any(Option::is_none)
            || aliases.windows(2).any(|w| w[0] >= w[1])
            || s.tier.iter().any(|t| t.quota_bytes == 0)
        {
            return Err(format!("{}: 1 to 3 tiers, fastest first, each of MEM, SSD or HDD once, with quotas", path.display()));
        }
        Ok(s)
    }

    /// The workers' tiers (validated by [`Scenario::load`]).
    fn worker_tiers(&self) -> Vec<(TierAlias, u64)> {
        self.tier.iter().filter_map(|t| Some((TierAlias::parse(&t.alias)?, t.quota_bytes))).collect()
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Acknowledged writes.
    pub acked: usize,
    /// Virtual ms from each leader fault to the next acknowledged write.
    pub failover_ms: Vec<u64>,
    /// A digest of everything observable: equal seeds give equal hashes.
    pub trace_hash: u32,
    /// Virtual time the run took, checks included.
    pub virtual_ms: u64,
}

/// The bytes the workload writes to file `n`, derived from the name alone so that any file
/// found later can be checked.
pub fn intended(n: u64) -> Vec<u8> {
    let len = (n as usize * 7919) % 3000 + if n.is_multiple_of(7) { 300_000 } else { 0 };
    tachyon::shell::test_bytes(len, n)
}

/// True for the files the workload writes through to the under-storage (CACHE_THROUGH).
pub fn written_through(n: u64) -> bool {
    n.is_multiple_of(3)
}

/// True for the files the workload writes ASYNC_THROUGH (the leader persists them in the
/// background); the rest live only in worker memory (MUST_CACHE).
pub fn written_async(n: u64) -> bool {
    n % 3 == 1
}

/// The write type of file `n`.
fn write_type_of(n: u64) -> WriteType {
    if written_through(n) {
        WriteType::CacheThrough
    } else if written_async(n) {
        WriteType::AsyncThrough
    } else {
        WriteType::MustCache
    }
}

/// Runs a scenario on the current simulation and checks every invariant.
pub async fn run(s: &Scenario, seed: u64) -> Result<Outcome, String> {
    let topology = Topology {
        masters: s.masters,
        workers: s.workers,
        session_timeout: Duration::from_millis(s.session_timeout_ms),
        checkpoint_period_entries: 40,
        fencing: s.fencing,
        leader_lease: s.leader_lease,
        session_notice_delay: Duration::from_millis(s.session_notice_delay_ms),
        worker_tiers: s.worker_tiers(),
    };
    let cluster = SimCluster::start(topology, seed).await;
    let start = Instant::now();
    let Some(first_leader) = cluster.wait_for_leader(Duration::from_secs(20)).await else {
        return Err("no leader was elected".into());
    };
    // The workload: a client writing, renaming and deleting files continuously (and
    // optionally a second one that only ever talks to the first leader).
    let fs = cluster.client();
    let end = start + Duration::from_millis(s.duration_ms);
    // With a pinned reader, the main client also creates markers, which the reader keeps
    // reading from the first leader.
    let markers = s.pinned_reader.then(Markers::default);
    let quiet: Vec<(Instant, Instant)> = s
        .step
        .iter()
        .map(|st| (start + Duration::from_millis(st.at_ms.saturating_sub(s.quiet_before_faults_ms)), start + Duration::from_millis(st.at_ms)))
        .collect();
    let main = Workload { fs: fs.clone(), first: 0, end, markers: markers.clone(), quiet, async_writes: s.async_writes };
    let mut workloads = vec![tokio::spawn(main.run())];
    if s.pinned_client {
        let pinned =
            Workload { fs: cluster.client_of_master(first_leader), first: PINNED_FIRST_FILE, end, markers: None, quiet: Vec::new(), async_writes: true };
        workloads.push(tokio::spawn(pinned.run()));
    }
    if let Some(markers) = markers {
        workloads.push(tokio::spawn(read_markers_continuously(cluster.impatient_client_of_master(first_leader), markers, end)));
    }
    let mut fault_times = Vec::new();
    for step in &s.step {
        madsim::time::sleep_until(start + Duration::from_millis(step.at_ms)).await;
        apply_step(&cluster, step, &mut fault_times).await?;
        at_most_one_leader_per_epoch(&fs).await?;
    }
    let mut history = History::default();
    for w in workloads {
        history.merge(w.await.map_err(|e| format!("workload task: {e}"))?);
    }
    let Some(_leader) = cluster.wait_for_leader(Duration::from_secs(30)).await else {
        let named = cluster.coordinator().leader_address().await;
        let masters = cluster.client().masters().await;
        return Err(format!("no leader serves after the faults (ZooKeeper names {named:?}; masters say {masters:?})"));
    };
    let acked = history.acked_writes();
    if acked.is_empty() {
        return Err("the workload acknowledged nothing".into());
    }
    let worker_killed = s.step.iter().any(|st| st.action == Action::KillWorker);
    let listed = fs.list_status("/w", false).await.map_err(|e| format!("list /w: {e}"))?;
    metadata_history_is_linearizable(&history, &listed)?;
    reads_see_every_acknowledged_write(&history)?;
    no_acknowledged_write_lost(&fs, &history, worker_killed).await?;
    every_tier_within_its_quota(&fs).await?;
    if s.tier.len() > 1 {
        lower_tiers_took_the_overflow(&fs).await?;
    }
    if !worker_killed {
        async_writes_end_persisted(&fs, &history).await?;
    }
    if worker_killed {
        dead_worker_is_declared_lost(&fs).await?;
    }
    no_torn_or_phantom_file(&fs, &listed).await?;
    exactly_one_leader(&cluster).await?;
    at_most_one_leader_per_epoch(&fs).await?;
    standbys_converge(&fs, cluster.running_masters()).await?;
    let next_sequence = journal_replays_cleanly(&cluster, &history).await?;
    let failover_ms = failover_completes_within_bound(&fault_times, &acked, s.max_failover_ms)?;
    let mut trace = Vec::new();
    for (n, at) in &acked {
        trace.extend_from_slice(&n.to_le_bytes());
        trace.extend_from_slice(&(at.duration_since(start).as_micros() as u64).to_le_bytes());
    }
    trace.extend_from_slice(&next_sequence.to_le_bytes());
    let virtual_ms = start.elapsed().as_millis() as u64;
    Ok(Outcome { acked: acked.len(), failover_ms, trace_hash: crc32c::crc32c(&trace), virtual_ms })
}

/// File numbers of the pinned client start here.
const PINNED_FIRST_FILE: u64 = 1_000_000;

/// Markers `/v/m<k>` (directories) the main client created, with when each was
/// acknowledged, in order.
type Markers = Arc<std::sync::Mutex<Vec<(u64, Instant)>>>;

/// Reads the newest acknowledged marker again and again until `end` (a new read every few
/// milliseconds, each given up after a few tens: while its master is frozen, a fresh read
/// is always on its way, as with a busy application), recording what each read saw.
async fn read_markers_continuously(fs: FileSystem, markers: Markers, end: Instant) -> History {
    let mut history = History::default();
    while Instant::now() < end {
        let newest = markers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).last().copied();
        if let Some((marker, acked_at)) = newest {
            let started_at = Instant::now();
            let found = match fs.get_status(&format!("/v/m{marker}")).await {
                Ok(_) => Some(true),
                Err(FsError::NotFound { .. }) => Some(false),
                Err(_) => None,
            };
            history.reads.push(MarkerRead { marker, acked_at, started_at, found });
        }
        madsim::time::sleep(Duration::from_millis(3)).await;
    }
    history
}

/// One client's part of the workload.
struct Workload {
    fs: FileSystem,
    /// Its first file number (clients never share files).
    first: u64,
    end: Instant,
    /// Create marker `/v/m<k>` after each file and record it once acknowledged.
    markers: Option<Markers>,
    /// Windows in which it starts nothing (it waits for their end).
    quiet: Vec<(Instant, Instant)>,
    /// Whether it writes the ASYNC_THROUGH files (else it skips their numbers).
    async_writes: bool,
}

impl Workload {
    /// Writes `/w/f<n>`, `n` counting up from `first`, until `end`; renames about one in
    /// five acknowledged files to `/w/r<n>` and deletes one in ten (choices from the seeded
    /// RNG); creates markers if asked. Returns what it did and saw.
    async fn run(self) -> History {
        let Workload { fs, first, end, markers, quiet, async_writes } = self;
        let mut history = History::default();
        let mut n = first;
        while Instant::now() < end {
            if let Some((_, until)) = quiet.iter().find(|(from, until)| (*from..*until).contains(&Instant::now())) {
                madsim::time::sleep_until(*until).await;
            }
            if !async_writes && written_async(n) {
                n += 1;
                continue;
            }
            history.merge(one_round(&fs, n, first, markers.as_ref()).await);
            n += 1;
        }
        history
    }
}

/// One round of a workload: file `n` (and marker `n - first`).
async fn one_round(fs: &FileSystem, n: u64, first: u64, markers: Option<&Markers>) -> History {
    let mut history = History::default();
    if let Some(log) = markers {
        let k = n - first;
        if fs.create_directory(&format!("/v/m{k}"), true, false).await.is_ok() {
            log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((k, Instant::now()));
        }
    }
    let opts = CreateOptions { block_size: None, recursive: true, write_type: Some(write_type_of(n)) };
    let original = format!("/w/f{n}");
    let acked = fs.write_file(&original, &intended(n), opts).await.is_ok();
    history.write(n, acked, Instant::now());
    if acked {
        match madsim::rand::random::<u32>() % 10 {
            0 | 1 => {
                let ok = fs.rename(&original, &format!("/w/r{n}")).await.is_ok();
                history.move_to(n, Place::Renamed, ok);
            }
            2 => {
                let ok = fs.delete(&original, false).await.is_ok();
                history.move_to(n, Place::Gone, ok);
            }
            _ => {}
        }
    }
    history
}

async fn apply_step(cluster: &SimCluster, step: &Step, fault_times: &mut Vec<Instant>) -> Result<(), String> {
    tracing::info!(?step, "scenario step");
    match step.action {
        Action::KillLeader | Action::PauseLeader | Action::KillEachNewLeader => {
            let rounds = if step.action == Action::KillEachNewLeader { step.count.max(1) } else { 1 };
            for _ in 0..rounds {
                let leader = cluster.wait_for_leader(Duration::from_secs(30)).await.ok_or("no leader to fault")?;
                fault_times.push(Instant::now());
                let node = &cluster.masters[leader];
                if step.action == Action::PauseLeader {
                    cluster.pause(node);
                    madsim::time::sleep(Duration::from_millis(step.for_ms)).await;
                    cluster.resume(node);
                } else {
                    cluster.kill(node);
                    if step.action == Action::KillEachNewLeader {
                        // Kill the next leader as soon as it serves, then bring this one back.
                        cluster.wait_for_leader(Duration::from_secs(30)).await.ok_or("no new leader")?;
                        cluster.restart(node).await;
                    }
                }
            }
        }
        Action::RestartAll => {
            for node in cluster.masters.iter().chain(&cluster.workers) {
                cluster.restart(node).await;
            }
        }
        Action::KillWorker => cluster.kill(&cluster.workers[0]),
        Action::PartitionLeaderFromZookeeper => {
            let leader = cluster.wait_for_leader(Duration::from_secs(30)).await.ok_or("no leader to cut off")?;
            fault_times.push(Instant::now());
            let (m, z) = (cluster.masters[leader].id(), cluster.zookeeper.id());
            let net = madsim::net::NetSim::current();
            net.clog_link(m, z);
            net.clog_link(z, m);
            madsim::time::sleep(Duration::from_millis(step.for_ms)).await;
            net.unclog_link(m, z);
            net.unclog_link(z, m);
        }
        Action::RestartZookeeper => {
            fault_times.push(Instant::now());
            cluster.restart(&cluster.zookeeper).await;
        }
        Action::RestartStore => {
            fault_times.push(Instant::now());
            cluster.kill(&cluster.store_node);
            madsim::time::sleep(Duration::from_millis(step.for_ms)).await;
            cluster.restart(&cluster.store_node).await;
        }
        Action::LagStandby => {
            let leader = cluster.wait_for_leader(Duration::from_secs(30)).await.ok_or("no leader")?;
            let standby = (leader + 1) % cluster.masters.len();
            let (m, st) = (cluster.masters[standby].id(), cluster.store_node.id());
            let net = madsim::net::NetSim::current();
            net.clog_link(m, st);
            net.clog_link(st, m);
            let heal_after = Duration::from_millis(step.for_ms);
            tokio::spawn(async move {
                madsim::time::sleep(heal_after).await;
                let net = madsim::net::NetSim::current();
                net.unclog_link(m, st);
                net.unclog_link(st, m);
            });
        }
        Action::RandomFaults => random_faults(cluster, Duration::from_millis(step.for_ms), fault_times).await,
        Action::StoreWriteErrors => {
            fault_times.push(Instant::now());
            cluster.store.set_fail_writes(true);
            madsim::time::sleep(Duration::from_millis(step.for_ms)).await;
            cluster.store.set_fail_writes(false);
        }
        Action::StoreDropsSyncs => {
            cluster.store.set_drop_syncs(true);
            madsim::time::sleep(Duration::from_millis(step.for_ms)).await;
            cluster.store.set_drop_syncs(false);
        }
    }
    Ok(())
}

/// Buggify-style chaos among the masters for `length`, then heals everything.
async fn random_faults(cluster: &SimCluster, length: Duration, fault_times: &mut Vec<Instant>) {
    let end = Instant::now() + length;
    let masters = cluster.masters.len() as u64;
    let net = madsim::net::NetSim::current();
    let mut killed = vec![false; cluster.masters.len()];
    while Instant::now() < end {
        madsim::time::sleep(Duration::from_millis(300 + madsim::rand::random::<u64>() % 700)).await;
        let i = (madsim::rand::random::<u64>() % masters) as usize;
        let node = &cluster.masters[i];
        fault_times.push(Instant::now());
        let fault = madsim::rand::random::<u32>() % 4;
        tracing::info!(master = i, fault, killed = killed[i], "random fault");
        match fault {
            0 if !killed[i] && killed.iter().filter(|k| !**k).count() > 1 => {
                cluster.kill(node);
                killed[i] = true;
            }
            1 if killed[i] => {
                cluster.restart(node).await;
                killed[i] = false;
            }
            2 if !killed[i] => {
                cluster.pause(node);
                madsim::time::sleep(Duration::from_millis(madsim::rand::random::<u64>() % 4000)).await;
                cluster.resume(node);
            }
            3 if !killed[i] => {
                let (m, z) = (node.id(), cluster.zookeeper.id());
                net.clog_link(m, z);
                net.clog_link(z, m);
                madsim::time::sleep(Duration::from_millis(madsim::rand::random::<u64>() % 3000)).await;
                net.unclog_link(m, z);
                net.unclog_link(z, m);
            }
            _ => {
                fault_times.pop();
            }
        }
    }
    for (i, k) in killed.iter().enumerate() {
        if *k {
            cluster.restart(&cluster.masters[i]).await;
        }
    }
}

/// Every file ends in a place its history allows, and no file is in two places. Each file
/// has one client operating on it in sequence, so this is linearizability of the whole
/// metadata history (see [`crate::history`]).
/// Reads are operations of the history too: a read that started after a marker's creation
/// was acknowledged must find it, whichever master answers (a deposed leader answering
/// from its stale memory would not).
pub fn reads_see_every_acknowledged_write(history: &History) -> Result<(), String> {
    let stale: Vec<&MarkerRead> = history.reads.iter().filter(|r| r.found == Some(false) && r.started_at >= r.acked_at).collect();
    match stale.first() {
        None => Ok(()),
        Some(r) => Err(format!(
            "stale read: /v/m{} was acknowledged, and a read that started {} ms later did not find it ({} stale reads of {})",
            r.marker,
            r.started_at.duration_since(r.acked_at).as_millis(),
            stale.len(),
            history.reads.len()
        )),
    }
}

pub fn metadata_history_is_linearizable(history: &History, listed: &[FileInfo]) -> Result<(), String> {
    let mut observed: BTreeMap<u64, Place> = BTreeMap::new();
    for f in listed.iter().filter(|f| !f.is_directory) {
        let (n, place) = Place::parse(&f.path).ok_or_else(|| format!("phantom file {}", f.path))?;
        if let Some(other) = observed.insert(n, place) {
            return Err(format!("file {n} is in two places: {other:?} and {place:?}"));
        }
    }
    for (n, f) in &history.files {
        let place = observed.remove(n).unwrap_or(Place::Gone);
        if !f.allowed.contains(&place) {
            return Err(format!("file {n} ended {place:?}, but its history allows only {:?}", f.allowed));
        }
    }
    if let Some((n, place)) = observed.into_iter().next() {
        return Err(format!("phantom file {n} ({place:?}): no client ever wrote it"));
    }
    Ok(())
}

/// Every acknowledged write whose file's place is certain reads back with its exact bytes.
/// Where a worker died, data that lived only on it (in memory, never persisted) may be gone,
/// but then reading says `BlockLost`, never returns other bytes; a file written through to
/// the under-storage reads back whatever happened to the workers.
pub async fn no_acknowledged_write_lost(fs: &FileSystem, history: &History, worker_died: bool) -> Result<(), String> {
    for (n, f) in &history.files {
        let (Some(_), Some(path)) = (f.write_acked_at, f.certain().and_then(|p| p.path(*n))) else { continue };
        match fs.read_file(&path).await {
            Ok(data) if data == intended(*n) => {}
            Err(tachyon::error::FsError::BlockLost { .. }) if worker_died && !written_through(*n) => {}
            Ok(data) => return Err(format!("{path}: acknowledged with {} bytes, reads {} different bytes", intended(*n).len(), data.len())),
            Err(e) => return Err(format!("{path}: acknowledged but lost: {e}")),
        }
    }
    Ok(())
}

/// Every acknowledged ASYNC_THROUGH file still in place ends PERSISTED, across whatever
/// leader changes happened (the waiting state is journaled, so a new leader carries on).
/// Checked where no worker died: data only in a dead worker's memory cannot be persisted.
pub async fn async_writes_end_persisted(fs: &FileSystem, history: &History) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for (n, f) in history.files.iter().filter(|(n, _)| written_async(**n)) {
        let (Some(_), Some(path)) = (f.write_acked_at, f.certain().and_then(|p| p.path(*n))) else { continue };
        loop {
            let state = fs.get_status(&path).await.map(|i| i.persistence_state).map_err(|e| format!("{path}: {e}"))?;
            if state == "PERSISTED" {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{path}: acknowledged ASYNC_THROUGH but still {state} 30 s after the run"));
            }
            madsim::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// A complete file has exactly the bytes its writer sent: no torn or invented data.
/// (A file whose blocks sat only on a killed worker may be lost; it must say so.)
pub async fn no_torn_or_phantom_file(fs: &FileSystem, listed: &[FileInfo]) -> Result<(), String> {
    for f in listed.iter().filter(|f| f.complete) {
        let (n, _) = Place::parse(&f.path).ok_or_else(|| format!("phantom file {}", f.path))?;
        match fs.read_file(&f.path).await {
            Ok(data) if data == intended(n) => {}
            Ok(_) => return Err(format!("{}: complete but with the wrong bytes", f.path)),
            Err(tachyon::error::FsError::BlockLost { .. }) if !written_through(n) => {}
            Err(e) => return Err(format!("{}: {e}", f.path)),
        }
    }
    Ok(())
}

/// After each leader fault, an acknowledged write follows within `bound_ms` (ZooKeeper and
/// a quorum of the cluster are reachable in every scenario). Returns the times.
pub fn failover_completes_within_bound(faults: &[Instant], acked: &[(u64, Instant)], bound_ms: u64) -> Result<Vec<u64>, String> {
    let mut times = Vec::new();
    for t in faults {
        let Some((_, at)) = acked.iter().find(|(_, at)| at > t) else { continue };
        let ms = at.duration_since(*t).as_millis() as u64;
        if ms > bound_ms {
            return Err(format!("failover took {ms} ms, more than the scenario's bound of {bound_ms} ms"));
        }
        times.push(ms);
    }
    Ok(times)
}

/// Every live worker's tiers, as its last heartbeat reported them, hold no more than
/// their quotas (checked after the reads of `no_acknowledged_write_lost`, which promote).
pub async fn every_tier_within_its_quota(fs: &FileSystem) -> Result<(), String> {
    // A heartbeat after the last promotion.
    madsim::time::sleep(Duration::from_millis(300)).await;
    let workers = fs.workers().await.map_err(|e| e.to_string())?;
    for w in workers.iter().filter(|w| !w.lost) {
        if w.tiers.is_empty() {
            return Err(format!("worker {} reports no tiers", w.worker_id));
        }
        if let Some(t) = w.tiers.iter().find(|t| t.used_bytes > t.capacity_bytes) {
            return Err(format!("worker {}: the {} tier holds {} bytes, over its quota of {}", w.worker_id, t.alias, t.used_bytes, t.capacity_bytes));
        }
    }
    Ok(())
}

/// With more than one tier, blocks reached a lower tier (the scenario exercised moving
/// down, not only the top tier).
pub async fn lower_tiers_took_the_overflow(fs: &FileSystem) -> Result<(), String> {
    let workers = fs.workers().await.map_err(|e| e.to_string())?;
    if workers.iter().any(|w| w.tiers.iter().skip(1).any(|t| t.used_bytes > 0)) {
        return Ok(());
    }
    Err(format!("no worker holds a block below its top tier: {:?}", workers.iter().map(|w| &w.tiers).collect::<Vec<_>>()))
}

/// A worker that stopped heartbeating is reported lost (and the live one is not).
pub async fn dead_worker_is_declared_lost(fs: &FileSystem) -> Result<(), String> {
    for _ in 0..100 {
        let workers = fs.workers().await.map_err(|e| e.to_string())?;
        if workers.iter().any(|w| w.lost) && workers.iter().any(|w| !w.lost) {
            return Ok(());
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the dead worker was not declared lost: {:?}", fs.workers().await))
}

/// No two masters serve as leader of the same epoch (checked after every step; a deposed
/// leader of an older epoch may linger until it notices, but it cannot acknowledge).
pub async fn at_most_one_leader_per_epoch(fs: &FileSystem) -> Result<(), String> {
    let Ok(masters) = fs.masters().await else { return Ok(()) };
    let mut epochs = BTreeMap::new();
    for m in masters.iter().filter(|m| m.role == "leader") {
        if let Some(other) = epochs.insert(m.epoch, m.address.clone()) {
            return Err(format!("{other} and {} both lead epoch {}", m.address, m.epoch));
        }
    }
    Ok(())
}

/// Exactly one master serves as leader once the faults are over.
pub async fn exactly_one_leader(cluster: &SimCluster) -> Result<(), String> {
    let mut leaders = 0;
    for i in 0..cluster.masters.len() {
        let mut quick = cluster.client().options().clone();
        quick.retry.max_duration = Duration::from_millis(500);
        let fs = FileSystem::new(quick, Arc::new(tachyon::coordinator::StaticCoordinator::new(crate::cluster::master_address(i))));
        if let Ok(info) = fs.master_info().await {
            leaders += info.masters.iter().filter(|m| m.role == "leader").count();
        }
    }
    if leaders != 1 {
        return Err(format!("{leaders} masters claim to lead"));
    }
    Ok(())
}

/// Every running standby catches up to the leader's applied sequence, and then holds the
/// same namespace: equal state digests.
pub async fn standbys_converge(fs: &FileSystem, masters: usize) -> Result<(), String> {
    let mut last = Vec::new();
    for _ in 0..100 {
        last = fs.state_digests().await.map_err(|e| e.to_string())?;
        if last.len() == masters && last.iter().all(|d| d.applied_sequence == last[0].applied_sequence) {
            if last.iter().any(|d| d.digest != last[0].digest) {
                return Err(format!("masters at the same journal position hold different namespaces: {last:?}"));
            }
            return Ok(());
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("standbys did not converge: {last:?}"))
}

/// The shared journal replays from scratch (sequences contiguous, epochs never going back)
/// and agrees with every file whose place is certain. Returns the journal's next sequence.
pub async fn journal_replays_cleanly(cluster: &SimCluster, history: &History) -> Result<u64, String> {
    let journal = Journal::new(Arc::new(cluster.store.clone()), JournalLimits::default());
    let recovered = journal.recover().await.map_err(|e| format!("journal replay: {e}"))?;
    recovered.namespace.check_invariants()?;
    let exists = |p: &str| tachyon::core::path::FsPath::parse(p).is_ok_and(|p| recovered.namespace.lookup(&p).is_ok());
    for (n, f) in &history.files {
        let Some(place) = f.certain() else { continue };
        for other in [Place::Original, Place::Renamed] {
            let path = other.path(*n).expect("a path");
            if exists(&path) != (other == place) {
                return Err(format!("the journal disagrees about {path}: the history says file {n} is {place:?}"));
            }
        }
    }
    Ok(recovered.namespace.next_sequence())
}
