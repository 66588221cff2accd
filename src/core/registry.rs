//! The master's view of its workers as a pure state machine: registrations, heartbeats,
//! committed blocks and their locations, lost-worker detection. `now_ms` comes in with
//! every event; what the master must do comes back as return values.
//!
//! Worker state is not journaled: after a master restart (or failover) workers are told to
//! register again and report every block they hold, which rebuilds this state.
//!
//! Architecture Invariant: a block's location is listed only while the worker holding it is
//! live; a lost worker's blocks disappear from `locations` the moment it is declared lost.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::namespace::{file_of_block, BlockId, InodeId};
use crate::core::tiers::TierAlias;
use crate::proto::{TierUsage, WorkerNetAddress};

/// Identifies a worker registration with this master.
pub type WorkerId = u64;

/// Longest worker host name (DNS allows 253 bytes).
pub const MAX_WORKER_HOST_BYTES: usize = 253;

/// Checks the address a worker registers with: a host name or IP address (no characters
/// that could break a listing, a metrics label or a terminal) and real ports.
pub fn check_worker_address(a: &WorkerNetAddress) -> Result<(), crate::error::FsError> {
    let invalid = |reason: String| crate::error::FsError::InvalidArgument { reason };
    let host_ok = !a.host.is_empty()
        && a.host.len() <= MAX_WORKER_HOST_BYTES
        && a.host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if !host_ok {
        return Err(invalid(format!("worker host {:?} is not a host name or IP address", a.host.chars().take(64).collect::<String>())));
    }
    for (what, port) in [("RPC", a.rpc_port), ("data", a.data_port)] {
        if port == 0 || port > u32::from(u16::MAX) {
            return Err(invalid(format!("worker {what} port {port} is not a port")));
        }
    }
    if a.web_port > u32::from(u16::MAX) {
        return Err(invalid(format!("worker web port {} is not a port", a.web_port)));
    }
    Ok(())
}

/// What the registry knows of one worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerState {
    pub id: WorkerId,
    pub address: WorkerNetAddress,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub last_heartbeat_ms: i64,
    pub lost: bool,
    /// Blocks held, with their lengths.
    pub blocks: BTreeMap<BlockId, u64>,
    /// Blocks the worker must delete, sent with the next heartbeat answer.
    pub pending_deletes: BTreeSet<BlockId>,
    /// The worker's commit mark of each block it committed to this master.
    pub commit_marks: BTreeMap<BlockId, u64>,
    /// Capacity and use of each of its storage tiers, top first, as last reported.
    pub tiers: Vec<TierUsage>,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HeartbeatCommand {
    /// The worker is unknown (or was declared lost): it must register again.
    pub register: bool,
    /// Blocks to delete.
    pub delete_blocks: Vec<BlockId>,
}

/// A worker declared lost by [`Registry::tick`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostWorker {
    pub id: WorkerId,
    pub address: WorkerNetAddress,
    /// Blocks that had a location on it.
    pub blocks: Vec<BlockId>,
}

/// Registry errors; a worker that gets one re-registers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("worker {0} is not registered with this master (or was declared lost): register again")]
    UnknownWorker(WorkerId),
}

/// All workers and where every block lives.
#[derive(Clone, Debug)]
pub struct Registry {
    workers: BTreeMap<WorkerId, WorkerState>,
    by_address: BTreeMap<String, WorkerId>,
    locations: BTreeMap<BlockId, BTreeSet<WorkerId>>,
    next_worker_id: WorkerId,
    timeout_ms: i64,
}

fn address_key(a: &WorkerNetAddress) -> String {
    format!("{}:{}", a.host, a.rpc_port)
}

impl Registry {
    /// An empty registry. Worker ids start at `id_base` (distinct per master incarnation so a
    /// worker's stale id from a previous master is never mistaken for another worker's);
    /// a worker silent for `timeout_ms` is lost.
    pub fn new(id_base: WorkerId, timeout_ms: i64) -> Self {
        Registry { workers: BTreeMap::new(), by_address: BTreeMap::new(), locations: BTreeMap::new(), next_worker_id: id_base.max(1), timeout_ms }
    }

    /// Registers a worker with its full block report. A worker registering again from the
    /// same address keeps its id and its report replaces the old one.
    pub fn register(&mut self, address: WorkerNetAddress, capacity_bytes: u64, used_bytes: u64, blocks: &[(BlockId, u64)], now_ms: i64) -> WorkerId {
        let key = address_key(&address);
        let id = match self.by_address.get(&key) {
            Some(&id) => {
                self.drop_locations(id);
                id
            }
            None => {
                let id = self.next_worker_id;
                self.next_worker_id += 1;
                self.by_address.insert(key, id);
                id
            }
        };
        let blocks: BTreeMap<BlockId, u64> = blocks.iter().copied().collect();
        for b in blocks.keys() {
            self.locations.entry(*b).or_default().insert(id);
        }
        let pending_deletes = self.workers.get(&id).map(|w| w.pending_deletes.clone()).unwrap_or_default();
        self.workers.insert(
            id,
            WorkerState {
                id,
                address,
                capacity_bytes,
                used_bytes,
                last_heartbeat_ms: now_ms,
                lost: false,
                blocks,
                pending_deletes,
                commit_marks: BTreeMap::new(),
                tiers: Vec::new(),
            },
        );
        id
    }

    /// Records a heartbeat; the answer tells the worker what to do. `removed` lists the
    /// blocks the worker deleted, as of its commit mark `removed_as_of`: a block it committed
    /// with a later mark was stored again since, and keeps its location.
    pub fn heartbeat(&mut self, id: WorkerId, used_bytes: u64, removed: &[BlockId], removed_as_of: u64, now_ms: i64) -> HeartbeatCommand {
        let Some(w) = self.workers.get_mut(&id).filter(|w| !w.lost) else {
            return HeartbeatCommand { register: true, delete_blocks: Vec::new() };
        };
        w.used_bytes = used_bytes;
        w.last_heartbeat_ms = now_ms;
        for b in removed {
            if w.commit_marks.get(b).is_some_and(|mark| *mark > removed_as_of) {
                continue;
            }
            w.commit_marks.remove(b);
            w.blocks.remove(b);
            w.pending_deletes.remove(b);
            if let Some(set) = self.locations.get_mut(b) {
                set.remove(&id);
                if set.is_empty() {
                    self.locations.remove(b);
                }
            }
        }
        let delete_blocks = w.pending_deletes.iter().copied().collect();
        HeartbeatCommand { register: false, delete_blocks }
    }

    /// Records a block a worker has stored, with the worker's commit mark of it.
    pub fn commit_block(&mut self, id: WorkerId, block: BlockId, length: u64, used_bytes: u64, commit_mark: u64, now_ms: i64) -> Result<(), RegistryError> {
        let w = self.workers.get_mut(&id).filter(|w| !w.lost).ok_or(RegistryError::UnknownWorker(id))?;
        w.commit_marks.insert(block, commit_mark);
        // Stored again after a free (read back from under-storage): the new copy stays.
        w.pending_deletes.remove(&block);
        w.blocks.insert(block, length);
        w.used_bytes = used_bytes;
        w.last_heartbeat_ms = now_ms;
        self.locations.entry(block).or_default().insert(id);
        Ok(())
    }

    /// Forgets every block of these files and queues their deletion on the workers.
    pub fn remove_files(&mut self, files: &[InodeId]) {
        let files: BTreeSet<InodeId> = files.iter().copied().collect();
        let doomed: Vec<BlockId> = self.locations.keys().copied().filter(|b| files.contains(&file_of_block(*b))).collect();
        self.remove_blocks(&doomed);
    }

    /// Forgets these blocks and queues their deletion on the workers holding them.
    pub fn remove_blocks(&mut self, blocks: &[BlockId]) {
        for b in blocks {
            for id in self.locations.remove(b).unwrap_or_default() {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.blocks.remove(b);
                    w.commit_marks.remove(b);
                    w.pending_deletes.insert(*b);
                }
            }
        }
    }

    /// Declares lost every live worker silent for longer than the timeout.
    pub fn tick(&mut self, now_ms: i64) -> Vec<LostWorker> {
        let timed_out: Vec<WorkerId> = self.workers.values().filter(|w| !w.lost && now_ms - w.last_heartbeat_ms > self.timeout_ms).map(|w| w.id).collect();
        let mut lost = Vec::new();
        for id in timed_out {
            let blocks = self.drop_locations(id);
            if let Some(w) = self.workers.get_mut(&id) {
                w.lost = true;
                w.blocks.clear();
                w.used_bytes = 0;
                lost.push(LostWorker { id, address: w.address.clone(), blocks });
            }
        }
        lost
    }

    fn drop_locations(&mut self, id: WorkerId) -> Vec<BlockId> {
        let Some(w) = self.workers.get(&id) else { return Vec::new() };
        let blocks: Vec<BlockId> = w.blocks.keys().copied().collect();
        for b in &blocks {
            if let Some(set) = self.locations.get_mut(b) {
                set.remove(&id);
                if set.is_empty() {
                    self.locations.remove(b);
                }
            }
        }
        blocks
    }

    /// Live workers holding a block, in id order.
    pub fn locations(&self, block: BlockId) -> Vec<&WorkerState> {
        self.locations.get(&block).into_iter().flatten().filter_map(|id| self.workers.get(id)).collect()
    }

    /// The length a live worker committed for a block.
    pub fn committed_length(&self, block: BlockId) -> Option<u64> {
        self.locations(block).first().and_then(|w| w.blocks.get(&block).copied())
    }

    /// Every worker ever registered with this master, live and lost, in id order.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerState> {
        self.workers.values()
    }

    /// Records the capacity and use of a live worker's tiers, as its registration or
    /// heartbeat reported them: tiers of a known kind only, each kind once, at most
    /// [`crate::config::MAX_WORKER_TIERS`].
    pub fn set_tiers(&mut self, id: WorkerId, tiers: &[TierUsage]) {
        let Some(w) = self.workers.get_mut(&id).filter(|w| !w.lost) else { return };
        let mut seen = BTreeSet::new();
        w.tiers = tiers
            .iter()
            .filter(|t| TierAlias::parse(&t.alias).is_some_and(|a| seen.insert(a)))
            .take(crate::config::MAX_WORKER_TIERS)
            .map(|t| TierUsage { alias: t.alias.trim().to_ascii_uppercase(), ..t.clone() })
            .collect();
    }

    /// Capacity and use of each kind of tier summed over the live workers, fastest first.
    pub fn tier_totals(&self) -> Vec<TierUsage> {
        let mut totals: BTreeMap<TierAlias, TierUsage> = BTreeMap::new();
        for t in self.workers.values().filter(|w| !w.lost).flat_map(|w| &w.tiers) {
            let Some(alias) = TierAlias::parse(&t.alias) else { continue };
            let total = totals.entry(alias).or_insert_with(|| TierUsage { alias: alias.as_str().into(), ..TierUsage::default() });
            total.capacity_bytes += t.capacity_bytes;
            total.used_bytes += t.used_bytes;
        }
        totals.into_values().collect()
    }

    /// The worker with this id, if live.
    pub fn live_worker(&self, id: WorkerId) -> Option<&WorkerState> {
        self.workers.get(&id).filter(|w| !w.lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::namespace::block_id;

    fn addr(port: u32) -> WorkerNetAddress {
        WorkerNetAddress { host: "h".into(), rpc_port: port, data_port: port + 1, web_port: port + 2 }
    }

    #[test]
    fn worker_addresses_are_host_names_and_ports() {
        for host in ["h", "worker-7.example.com", "10.0.0.4", "[::1]", "fe80::1"] {
            assert_eq!(check_worker_address(&WorkerNetAddress { host: host.into(), ..addr(10) }), Ok(()), "{host}");
        }
        let too_long = "a".repeat(MAX_WORKER_HOST_BYTES + 1);
        for host in ["", "evil\ntachyon_master_is_leader 1", "h\u{1b}[2J", "a b", "h/x", too_long.as_str()] {
            assert!(check_worker_address(&WorkerNetAddress { host: host.into(), ..addr(10) }).is_err(), "{host:?}");
        }
        assert!(check_worker_address(&WorkerNetAddress { rpc_port: 0, ..addr(10) }).is_err());
        assert!(check_worker_address(&WorkerNetAddress { data_port: 70000, ..addr(10) }).is_err());
        assert!(check_worker_address(&WorkerNetAddress { web_port: 70000, ..addr(10) }).is_err());
    }

    #[test]
    fn register_heartbeat_and_reregister_keeps_id() {
        let mut r = Registry::new(100, 1000);
        let a = r.register(addr(1), 10, 0, &[], 0);
        let b = r.register(addr(5), 10, 0, &[], 0);
        assert_eq!((a, b), (100, 101));
        assert_eq!(r.heartbeat(a, 3, &[], 0, 10), HeartbeatCommand::default());
        assert_eq!(r.heartbeat(999, 3, &[], 0, 10), HeartbeatCommand { register: true, delete_blocks: vec![] });
        let b0 = block_id(7, 0);
        assert_eq!(r.register(addr(1), 10, 4, &[(b0, 4)], 20), a);
        assert_eq!(r.locations(b0).iter().map(|w| w.id).collect::<Vec<_>>(), vec![a]);
        assert_eq!(r.committed_length(b0), Some(4));
    }

    #[test]
    fn tiers_are_kept_per_worker_and_summed_over_live_ones_by_kind() {
        let mut r = Registry::new(1, 1000);
        let a = r.register(addr(1), 30, 0, &[], 0);
        let b = r.register(addr(5), 10, 0, &[], 0);
        let tier = |alias: &str, capacity_bytes, used_bytes| TierUsage { alias: alias.into(), capacity_bytes, used_bytes };
        r.set_tiers(a, &[tier("MEM", 10, 4), tier("ssd", 20, 5), tier("MEM", 1, 1), tier("tape", 9, 9), tier("HDD", 0, 0), tier("SSD", 1, 1)]);
        r.set_tiers(b, &[tier("MEM", 10, 2)]);
        assert_eq!(r.live_worker(a).unwrap().tiers, vec![tier("MEM", 10, 4), tier("SSD", 20, 5), tier("HDD", 0, 0)], "known kinds, each once");
        assert_eq!(r.tier_totals(), vec![tier("MEM", 20, 6), tier("SSD", 20, 5), tier("HDD", 0, 0)]);
        // A lost worker's tiers no longer count.
        r.tick(5000);
        assert_eq!(r.tier_totals(), vec![]);
    }

    #[test]
    fn a_block_stored_again_after_a_free_is_not_deleted() {
        let mut r = Registry::new(1, 1000);
        let w = r.register(addr(1), 10, 0, &[], 0);
        let b = block_id(3, 0);
        r.commit_block(w, b, 5, 5, 0, 1).unwrap();
        r.remove_blocks(&[b]);
        assert!(r.locations(b).is_empty());
        r.commit_block(w, b, 5, 5, 0, 2).unwrap();
        assert_eq!(r.heartbeat(w, 5, &[], 0, 3), HeartbeatCommand::default(), "no delete of the new copy");
        assert_eq!(r.locations(b).len(), 1);
        // A removal the worker reported as of mark 7 does not drop a copy it committed at
        // mark 8 (stored again after the removal); one reported as of mark 8 does.
        r.commit_block(w, b, 5, 5, 8, 4).unwrap();
        r.heartbeat(w, 5, &[b], 7, 5);
        assert_eq!(r.locations(b).len(), 1, "the newer copy stays");
        r.heartbeat(w, 5, &[b], 8, 6);
        assert!(r.locations(b).is_empty(), "a removal after the commit drops it");
    }

    #[test]
    fn deleted_files_turn_into_delete_commands() {
        let mut r = Registry::new(1, 1000);
        let w = r.register(addr(1), 10, 0, &[], 0);
        r.commit_block(w, block_id(3, 0), 5, 5, 0, 1).unwrap();
        r.commit_block(w, block_id(3, 1), 2, 7, 0, 1).unwrap();
        r.commit_block(w, block_id(4, 0), 1, 8, 0, 1).unwrap();
        r.remove_files(&[3]);
        assert_eq!(r.locations(block_id(3, 0)).len(), 0);
        let cmd = r.heartbeat(w, 8, &[], 0, 2);
        assert_eq!(cmd.delete_blocks, vec![block_id(3, 0), block_id(3, 1)]);
        // Once the worker reports them removed, they are no longer sent.
        let cmd = r.heartbeat(w, 1, &[block_id(3, 0), block_id(3, 1)], 0, 3);
        assert_eq!(cmd, HeartbeatCommand::default());
        assert_eq!(r.committed_length(block_id(4, 0)), Some(1));
    }

    #[test]
    fn silent_worker_is_lost_with_its_blocks_and_must_reregister() {
        let mut r = Registry::new(1, 1000);
        let w1 = r.register(addr(1), 10, 0, &[(block_id(2, 0), 3)], 0);
        let w2 = r.register(addr(5), 10, 0, &[(block_id(2, 0), 3)], 0);
        assert_eq!(r.tick(1000), vec![]);
        r.heartbeat(w2, 0, &[], 0, 900);
        let lost = r.tick(1001);
        assert_eq!(lost, vec![LostWorker { id: w1, address: addr(1), blocks: vec![block_id(2, 0)] }]);
        assert_eq!(r.locations(block_id(2, 0)).iter().map(|w| w.id).collect::<Vec<_>>(), vec![w2]);
        assert!(r.heartbeat(w1, 0, &[], 0, 1002).register);
        assert_eq!(r.commit_block(w1, 9, 1, 1, 0, 1002), Err(RegistryError::UnknownWorker(w1)));
        assert_eq!(r.register(addr(1), 10, 0, &[], 1003), w1);
        assert!(r.live_worker(w1).is_some());
    }
}
