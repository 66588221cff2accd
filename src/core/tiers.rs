//! A worker's storage tiers (MEM, SSD, HDD), sans IO: which folder a new block goes to,
//! which blocks move down a tier or are dropped to make room, and which move up when read.
//!
//! [`TieredIndex`] keeps the space of every folder of every tier and, per block, its
//! length, folder, last access (a logical counter, for LRU order) and whether it may be
//! dropped (its data is also in under-storage). Decisions come out as [`Step`]s the worker's
//! store carries out in order; a move stays pending until the store reports it finished
//! or failed, and meanwhile readers are sent to the copy being moved.
//!
//! Architecture Invariant: a block is dropped only if it is marked evictable; a block that
//! is not is moved down a tier instead, and when no tier can take it a write that does not
//! fit fails with OutOfSpace.

use std::collections::BTreeMap;
use std::fmt;

use crate::core::namespace::BlockId;
use crate::error::FsError;

/// The kind of storage of a tier, fastest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TierAlias {
    Mem,
    Ssd,
    Hdd,
}

impl TierAlias {
    /// The name used in configuration, reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TierAlias::Mem => "MEM",
            TierAlias::Ssd => "SSD",
            TierAlias::Hdd => "HDD",
        }
    }

    /// Parses `MEM`, `SSD` or `HDD` (any case).
    pub fn parse(name: &str) -> Option<TierAlias> {
        match name.trim().to_ascii_uppercase().as_str() {
            "MEM" => Some(TierAlias::Mem),
            "SSD" => Some(TierAlias::Ssd),
            "HDD" => Some(TierAlias::Hdd),
            _ => None,
        }
    }
}

impl fmt::Display for TierAlias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a block lives: a tier (0 is the top) and a folder of that tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub tier: usize,
    pub dir: usize,
}

/// One tier: its kind and the capacity of each of its folders, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierSpec {
    pub alias: TierAlias,
    pub dir_capacities_bytes: Vec<u64>,
}

/// Something the store must do, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Copy the block's file from one folder to another, then report the move finished
    /// ([`TieredIndex::complete_move`]) or failed ([`TieredIndex::abort_move`]).
    Move { block: BlockId, from: Location, to: Location },
    /// Delete the block's file: it was evicted (already gone from the index).
    Drop { block: BlockId, from: Location },
}

/// Room reserved for a new block, and what must happen first to make it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub location: Location,
    pub steps: Vec<Step>,
}

/// Capacity and use of one tier, summed over its folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierSpace {
    pub alias: TierAlias,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
}

impl TierSpace {
    /// As reported to the master.
    pub fn to_proto(self) -> crate::proto::TierUsage {
        crate::proto::TierUsage { alias: self.alias.as_str().into(), capacity_bytes: self.capacity_bytes, used_bytes: self.used_bytes }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct DirSpace {
    capacity: u64,
    used: u64,
    reserved: u64,
}

impl DirSpace {
    fn free(&self) -> u64 {
        self.capacity.saturating_sub(self.used + self.reserved)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct BlockMeta {
    length: u64,
    last_access: u64,
    evictable: bool,
    /// The access counter when the block was last committed (see [`TieredIndex::mark`]).
    committed_at: u64,
    location: Location,
    /// Set while the block's file is being moved to `location`: the file is still here.
    moving_from: Option<Location>,
}

/// A planned change, kept so a plan that cannot make room is undone exactly.
enum Planned {
    Move { block: BlockId, from: Location, to: Location },
    Drop { block: BlockId, meta: BlockMeta },
}

/// Space accounting, placement and eviction order of a worker's tiers; no IO.
#[derive(Clone, Debug)]
pub struct TieredIndex {
    aliases: Vec<TierAlias>,
    dirs: Vec<Vec<DirSpace>>,
    access_counter: u64,
    blocks: BTreeMap<BlockId, BlockMeta>,
}

impl TieredIndex {
    /// Empty tiers, top first. Every tier has at least one folder.
    pub fn new(tiers: &[TierSpec]) -> Self {
        assert!(!tiers.is_empty() && tiers.iter().all(|t| !t.dir_capacities_bytes.is_empty()), "every tier has a folder");
        TieredIndex {
            aliases: tiers.iter().map(|t| t.alias).collect(),
            dirs: tiers.iter().map(|t| t.dir_capacities_bytes.iter().map(|&capacity| DirSpace { capacity, used: 0, reserved: 0 }).collect()).collect(),
            access_counter: 0,
            blocks: BTreeMap::new(),
        }
    }

    /// One tier of one folder: a memory tier of `capacity` bytes.
    pub fn single(capacity: u64) -> Self {
        Self::new(&[TierSpec { alias: TierAlias::Mem, dir_capacities_bytes: vec![capacity] }])
    }

    fn space(&mut self, at: Location) -> &mut DirSpace {
        &mut self.dirs[at.tier][at.dir]
    }

    /// Bytes held by committed blocks, over every tier.
    pub fn used(&self) -> u64 {
        self.dirs.iter().flatten().map(|d| d.used).sum()
    }

    /// Capacity in bytes, over every tier.
    pub fn capacity(&self) -> u64 {
        self.dirs.iter().flatten().map(|d| d.capacity).sum()
    }

    /// Capacity and use of each tier, top first.
    pub fn tier_usage(&self) -> Vec<TierSpace> {
        self.aliases
            .iter()
            .zip(&self.dirs)
            .map(|(alias, dirs)| TierSpace {
                alias: *alias,
                capacity_bytes: dirs.iter().map(|d| d.capacity).sum(),
                used_bytes: dirs.iter().map(|d| d.used).sum(),
            })
            .collect()
    }

    /// The kind of tier `tier`.
    pub fn alias(&self, tier: usize) -> TierAlias {
        self.aliases[tier]
    }

    /// Reserves room for a new block of `bytes`: in the folder with the most free space of
    /// the highest tier that has room; if none has, room is made in the highest tier where
    /// it can be, moving its least recently used blocks down a tier (making room there the
    /// same way) and dropping only evictable ones from the bottom (or where nothing below
    /// can take them). Nothing changes if it fails.
    pub fn reserve(&mut self, bytes: u64) -> Result<Allocation, FsError> {
        for tier in 0..self.dirs.len() {
            if let Some(dir) = self.roomiest_dir(tier, bytes) {
                self.dirs[tier][dir].reserved += bytes;
                return Ok(Allocation { location: Location { tier, dir }, steps: Vec::new() });
            }
        }
        for tier in 0..self.dirs.len() {
            let mut plan = Vec::new();
            if let Some(dir) = self.make_room(tier, bytes, None, &mut plan) {
                self.dirs[tier][dir].reserved += bytes;
                return Ok(Allocation { location: Location { tier, dir }, steps: steps_of(plan) });
            }
            self.undo(&mut plan, 0);
        }
        let tiers: Vec<String> = self.tier_usage().iter().map(|t| format!("{} {} of {} bytes used", t.alias, t.used_bytes, t.capacity_bytes)).collect();
        Err(FsError::OutOfSpace {
            reason: format!(
                "a block of {bytes} bytes fits in no tier ({}) and too little can be moved down or evicted \
                 (only blocks persisted to under-storage may be evicted)",
                tiers.join(", ")
            ),
        })
    }

    /// The folder of `tier` with the most free space, if it has `bytes` free.
    fn roomiest_dir(&self, tier: usize, bytes: u64) -> Option<usize> {
        let (dir, space) = self.dirs[tier].iter().enumerate().max_by_key(|(i, d)| (d.free(), std::cmp::Reverse(*i)))?;
        (space.free() >= bytes).then_some(dir)
    }

    /// Frees `bytes` in one folder of `tier` by moving its least recently used blocks down
    /// (or dropping evictable ones), never touching `keep`; appends what it did to `plan`.
    /// Returns the folder, or None (with `plan` possibly longer: the caller undoes it).
    fn make_room(&mut self, tier: usize, bytes: u64, keep: Option<BlockId>, plan: &mut Vec<Planned>) -> Option<usize> {
        // The folder that can hold the block and has the most free space already.
        let (dir, _) =
            self.dirs[tier].iter().enumerate().filter(|(_, d)| d.capacity >= bytes + d.reserved).max_by_key(|(i, d)| (d.free(), std::cmp::Reverse(*i)))?;
        let here = Location { tier, dir };
        let mut victims: Vec<(u64, BlockId)> = self
            .blocks
            .iter()
            .filter(|(id, m)| m.location == here && m.moving_from.is_none() && Some(**id) != keep)
            .map(|(id, m)| (m.last_access, *id))
            .collect();
        victims.sort_unstable();
        for (_, victim) in victims {
            if self.dirs[tier][dir].free() >= bytes {
                break;
            }
            let (length, evictable) = self.blocks.get(&victim).map(|m| (m.length, m.evictable))?;
            let below = tier + 1;
            if below < self.dirs.len() {
                let mark = plan.len();
                let target = match self.roomiest_dir(below, length) {
                    Some(d) => Some(d),
                    None => self.make_room(below, length, keep, plan),
                };
                if let Some(d) = target {
                    self.plan_move(victim, Location { tier: below, dir: d }, plan);
                    continue;
                }
                self.undo(plan, mark);
            }
            if evictable {
                if let Some(meta) = self.blocks.remove(&victim) {
                    self.space(here).used -= meta.length;
                    plan.push(Planned::Drop { block: victim, meta });
                }
            }
        }
        (self.dirs[tier][dir].free() >= bytes).then_some(dir)
    }

    fn plan_move(&mut self, block: BlockId, to: Location, plan: &mut Vec<Planned>) {
        let Some(meta) = self.blocks.get_mut(&block) else { return };
        let (from, length) = (meta.location, meta.length);
        meta.location = to;
        meta.moving_from = Some(from);
        self.space(from).used -= length;
        self.space(to).used += length;
        plan.push(Planned::Move { block, from, to });
    }

    /// Undoes `plan` back to its first `mark` entries, newest first.
    fn undo(&mut self, plan: &mut Vec<Planned>, mark: usize) {
        while plan.len() > mark {
            match plan.pop() {
                Some(Planned::Move { block, from, to }) => self.revert_move(block, from, to),
                Some(Planned::Drop { block, meta }) => {
                    self.space(meta.location).used += meta.length;
                    self.blocks.insert(block, meta);
                }
                None => break,
            }
        }
    }

    fn revert_move(&mut self, block: BlockId, from: Location, to: Location) {
        let Some(meta) = self.blocks.get_mut(&block) else { return };
        let length = meta.length;
        meta.location = from;
        meta.moving_from = None;
        self.space(to).used -= length;
        self.space(from).used += length;
    }

    /// Plans moving a block read from a lower tier up to the top one (CACHE_PROMOTE),
    /// moving the top tier's least recently used blocks down to make room (into the room
    /// the promoted block leaves, too: the moves down come first, so that folder holds both
    /// for the time of one copy). None if the block is already on top, being moved, not
    /// here, or room cannot be made (it is then simply read where it is).
    pub fn promote(&mut self, block: BlockId) -> Option<Vec<Step>> {
        let meta = self.blocks.get(&block)?;
        if meta.location.tier == 0 || meta.moving_from.is_some() {
            return None;
        }
        let (from, length) = (meta.location, meta.length);
        let mut plan = Vec::new();
        // Plan as if the block had left already; `plan_move` below makes it so.
        self.space(from).used -= length;
        let dir = self.roomiest_dir(0, length).or_else(|| self.make_room(0, length, Some(block), &mut plan));
        self.space(from).used += length;
        let Some(dir) = dir else {
            self.undo(&mut plan, 0);
            return None;
        };
        self.plan_move(block, Location { tier: 0, dir }, &mut plan);
        Some(steps_of(plan))
    }

    /// True if `block` is still being moved from `from` to `to` (it was not removed
    /// meanwhile): the store may put the copy in place.
    pub fn is_moving(&self, block: BlockId, from: Location, to: Location) -> bool {
        self.blocks.get(&block).is_some_and(|m| m.location == to && m.moving_from == Some(from))
    }

    /// The copy of a moving block is in place: readers go to it from now on.
    pub fn complete_move(&mut self, block: BlockId) {
        if let Some(m) = self.blocks.get_mut(&block) {
            m.moving_from = None;
        }
    }

    /// A move failed: the block stays where it was.
    pub fn abort_move(&mut self, block: BlockId) {
        if let Some((from, to)) = self.blocks.get(&block).and_then(|m| Some((m.moving_from?, m.location))) {
            self.revert_move(block, from, to);
        }
    }

    /// Returns a reservation unused.
    pub fn release(&mut self, at: Location, bytes: u64) {
        let space = self.space(at);
        space.reserved = space.reserved.saturating_sub(bytes);
    }

    /// Turns a reservation at `at` into a committed block of `length` bytes.
    pub fn commit(&mut self, block: BlockId, at: Location, length: u64, reserved: u64) {
        self.release(at, reserved);
        self.access_counter += 1;
        let meta = BlockMeta { length, last_access: self.access_counter, evictable: false, committed_at: self.access_counter, location: at, moving_from: None };
        if let Some(old) = self.blocks.insert(block, meta) {
            self.space(old.location).used -= old.length;
        }
        self.space(at).used += length;
    }

    /// Indexes a block found in folder `at` when the store opens; false (nothing changes)
    /// if the block is already indexed (found in a higher tier: a move was interrupted
    /// after its copy was in place, so the copy here is a duplicate to delete).
    pub fn add_found(&mut self, block: BlockId, at: Location, length: u64) -> bool {
        if self.blocks.contains_key(&block) {
            return false;
        }
        self.commit(block, at, length, 0);
        true
    }

    /// Records an access (for LRU order); false if the block is not here.
    pub fn touch(&mut self, block: BlockId) -> bool {
        self.access_counter += 1;
        match self.blocks.get_mut(&block) {
            Some(m) => {
                m.last_access = self.access_counter;
                true
            }
            None => false,
        }
    }

    /// Marks a block as safe (or not) to evict.
    pub fn set_evictable(&mut self, block: BlockId, evictable: bool) {
        if let Some(m) = self.blocks.get_mut(&block) {
            m.evictable = evictable;
        }
    }

    /// Up to `max` committed blocks, bottom tier first and least recently used first
    /// within a tier: the blocks eviction would drop first.
    pub fn eviction_order(&self, max: usize) -> Vec<BlockId> {
        let mut order: Vec<(std::cmp::Reverse<usize>, u64, BlockId)> =
            self.blocks.iter().map(|(id, m)| (std::cmp::Reverse(m.location.tier), m.last_access, *id)).collect();
        order.sort_unstable();
        order.into_iter().take(max).map(|(_, _, id)| id).collect()
    }

    /// Forgets a block; returns its length and the folders its file may be in (two while
    /// it is being moved).
    pub fn remove(&mut self, block: BlockId) -> Option<(u64, Vec<Location>)> {
        let m = self.blocks.remove(&block)?;
        self.space(m.location).used -= m.length;
        Some((m.length, std::iter::once(m.location).chain(m.moving_from).collect()))
    }

    /// A point in this index's history: a block committed after it has a later mark.
    pub fn mark(&self) -> u64 {
        self.access_counter
    }

    /// Records that a block held here was committed again (to a master that had asked for
    /// its deletion); false if it is not here.
    pub fn recommit(&mut self, block: BlockId) -> bool {
        self.access_counter += 1;
        let counter = self.access_counter;
        self.blocks.get_mut(&block).map(|m| m.committed_at = counter).is_some()
    }

    /// Removes a block unless it was committed after `mark`: a deletion the master ordered
    /// before a newer commit of the same block is stale. Returns what [`Self::remove`] does.
    pub fn remove_committed_by(&mut self, block: BlockId, mark: u64) -> Option<(u64, Vec<Location>)> {
        match self.blocks.get(&block) {
            Some(m) if m.committed_at <= mark => self.remove(block),
            _ => None,
        }
    }

    /// The mark at which a block held here was last committed.
    pub fn committed_at(&self, block: BlockId) -> Option<u64> {
        self.blocks.get(&block).map(|m| m.committed_at)
    }

    /// Length of a block held here.
    pub fn length(&self, block: BlockId) -> Option<u64> {
        self.blocks.get(&block).map(|m| m.length)
    }

    /// Where a block's file can be read now (the original while it is being moved), and
    /// the block's length.
    pub fn readable_at(&self, block: BlockId) -> Option<(Location, u64)> {
        self.blocks.get(&block).map(|m| (m.moving_from.unwrap_or(m.location), m.length))
    }

    /// Every block with its length and tier, in id order.
    pub fn report(&self) -> Vec<(BlockId, u64, usize)> {
        self.blocks.iter().map(|(id, m)| (*id, m.length, m.location.tier)).collect()
    }

    /// Checks the accounting: every folder's use is the sum of its blocks and within what
    /// was ever committed there. For tests and the simulator.
    pub fn check_accounting(&self) -> Result<(), String> {
        let mut sums: BTreeMap<Location, u64> = BTreeMap::new();
        for m in self.blocks.values() {
            *sums.entry(m.location).or_default() += m.length;
        }
        for (tier, dirs) in self.dirs.iter().enumerate() {
            for (dir, space) in dirs.iter().enumerate() {
                let sum = sums.get(&Location { tier, dir }).copied().unwrap_or(0);
                if sum != space.used {
                    return Err(format!("{} folder {dir}: blocks hold {sum} bytes but {} are accounted", self.aliases[tier], space.used));
                }
            }
        }
        Ok(())
    }
}

fn steps_of(plan: Vec<Planned>) -> Vec<Step> {
    plan.into_iter()
        .map(|p| match p {
            Planned::Move { block, from, to } => Step::Move { block, from, to },
            Planned::Drop { block, meta } => Step::Drop { block, from: meta.location },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tier: usize, dir: usize) -> Location {
        Location { tier, dir }
    }

    /// A memory tier over an SSD tier, one folder each.
    fn mem_over_ssd(mem: u64, ssd: u64) -> TieredIndex {
        TieredIndex::new(&[
            TierSpec { alias: TierAlias::Mem, dir_capacities_bytes: vec![mem] },
            TierSpec { alias: TierAlias::Ssd, dir_capacities_bytes: vec![ssd] },
        ])
    }

    fn three_tiers() -> TieredIndex {
        TieredIndex::new(&[
            TierSpec { alias: TierAlias::Mem, dir_capacities_bytes: vec![100] },
            TierSpec { alias: TierAlias::Ssd, dir_capacities_bytes: vec![100, 150] },
            TierSpec { alias: TierAlias::Hdd, dir_capacities_bytes: vec![100] },
        ])
    }

    fn store(idx: &mut TieredIndex, block: BlockId, length: u64) -> Allocation {
        let a = idx.reserve(length).unwrap();
        idx.commit(block, a.location, length, length);
        a
    }

    /// Carries out moves the way the store does once their copies are in place.
    fn finish(idx: &mut TieredIndex, steps: &[Step]) {
        for s in steps {
            if let Step::Move { block, from, to } = s {
                assert!(idx.is_moving(*block, *from, *to));
                idx.complete_move(*block);
            }
        }
    }

    #[test]
    fn a_single_tier_evicts_least_recently_used_evictable_blocks_only() {
        let mut idx = TieredIndex::single(100);
        store(&mut idx, 1, 40);
        store(&mut idx, 2, 40);
        assert!(matches!(idx.reserve(30), Err(FsError::OutOfSpace { .. })));
        idx.check_accounting().unwrap();
        idx.set_evictable(1, true);
        idx.set_evictable(2, true);
        idx.touch(1);
        assert_eq!(idx.reserve(30), Ok(Allocation { location: at(0, 0), steps: vec![Step::Drop { block: 2, from: at(0, 0) }] }));
        assert_eq!(idx.used(), 40);
        idx.commit(3, at(0, 0), 25, 30);
        assert_eq!(idx.report(), vec![(1, 40, 0), (3, 25, 0)]);
        assert_eq!(idx.used(), 65);
        assert_eq!(idx.eviction_order(10), vec![1, 3]);
        idx.touch(1);
        assert_eq!(idx.eviction_order(1), vec![3]);
    }

    #[test]
    fn new_blocks_go_to_the_roomiest_folder_of_the_highest_tier_with_room() {
        let mut idx = three_tiers();
        assert_eq!(store(&mut idx, 1, 60).location, at(0, 0));
        assert_eq!(store(&mut idx, 2, 60).location, at(1, 1), "MEM is full; the SSD folder with more room");
        assert_eq!(store(&mut idx, 3, 60).location, at(1, 0));
        assert_eq!(store(&mut idx, 4, 30).location, at(0, 0), "a smaller block still fits on top");
        let usage = idx.tier_usage();
        assert_eq!(
            usage.iter().map(|t| (t.alias, t.used_bytes, t.capacity_bytes)).collect::<Vec<_>>(),
            vec![(TierAlias::Mem, 90, 100), (TierAlias::Ssd, 120, 250), (TierAlias::Hdd, 0, 100)]
        );
        idx.check_accounting().unwrap();
    }

    #[test]
    fn when_no_tier_has_room_blocks_move_down_before_any_is_dropped() {
        let mut idx = mem_over_ssd(100, 100);
        store(&mut idx, 1, 50);
        store(&mut idx, 2, 50);
        store(&mut idx, 3, 50);
        store(&mut idx, 4, 50);
        assert_eq!(idx.report(), vec![(1, 50, 0), (2, 50, 0), (3, 50, 1), (4, 50, 1)]);
        // Nothing is persisted: nothing may be dropped, so nothing can move down.
        let before = idx.clone();
        assert!(matches!(idx.reserve(50), Err(FsError::OutOfSpace { .. })));
        assert_eq!(idx.report(), before.report(), "a failed reservation changes nothing");
        idx.check_accounting().unwrap();
        // Block 3 (least recently used on SSD) is persisted: it is dropped from the bottom
        // and block 1 (least recently used on top) moves down into its room.
        idx.set_evictable(3, true);
        idx.touch(2);
        let a = idx.reserve(50).unwrap();
        assert_eq!(a.location, at(0, 0));
        assert_eq!(a.steps, vec![Step::Drop { block: 3, from: at(1, 0) }, Step::Move { block: 1, from: at(0, 0), to: at(1, 0) }]);
        assert_eq!(idx.readable_at(1), Some((at(0, 0), 50)), "read from where it is until the copy is in place");
        finish(&mut idx, &a.steps);
        assert_eq!(idx.readable_at(1), Some((at(1, 0), 50)));
        idx.commit(5, a.location, 50, 50);
        assert_eq!(idx.report(), vec![(1, 50, 1), (2, 50, 0), (4, 50, 1), (5, 50, 0)]);
        idx.check_accounting().unwrap();
    }

    #[test]
    fn an_evictable_block_on_top_is_dropped_when_nothing_below_can_take_it() {
        let mut idx = mem_over_ssd(100, 100);
        for b in 1..=4 {
            store(&mut idx, b, 50);
        }
        idx.set_evictable(2, true);
        let a = idx.reserve(50).unwrap();
        assert_eq!(a.steps, vec![Step::Drop { block: 2, from: at(0, 0) }]);
        assert_eq!(idx.report().len(), 3);
        idx.check_accounting().unwrap();
    }

    #[test]
    fn moves_cascade_down_three_tiers() {
        let mut idx = TieredIndex::new(&[
            TierSpec { alias: TierAlias::Mem, dir_capacities_bytes: vec![10] },
            TierSpec { alias: TierAlias::Ssd, dir_capacities_bytes: vec![10] },
            TierSpec { alias: TierAlias::Hdd, dir_capacities_bytes: vec![10] },
        ]);
        store(&mut idx, 1, 10);
        store(&mut idx, 2, 10);
        store(&mut idx, 3, 10);
        idx.set_evictable(3, true);
        let a = idx.reserve(10).unwrap();
        assert_eq!(
            a.steps,
            vec![
                Step::Drop { block: 3, from: at(2, 0) },
                Step::Move { block: 2, from: at(1, 0), to: at(2, 0) },
                Step::Move { block: 1, from: at(0, 0), to: at(1, 0) },
            ]
        );
        assert_eq!(a.location, at(0, 0));
    }

    #[test]
    fn a_read_block_is_promoted_to_the_top_tier_and_the_top_tiers_coldest_moves_down() {
        let mut idx = mem_over_ssd(100, 100);
        store(&mut idx, 1, 50);
        store(&mut idx, 2, 50);
        store(&mut idx, 3, 50);
        assert_eq!(idx.promote(1), None, "already on top");
        idx.touch(1);
        let steps = idx.promote(3).unwrap();
        assert_eq!(steps, vec![Step::Move { block: 2, from: at(0, 0), to: at(1, 0) }, Step::Move { block: 3, from: at(1, 0), to: at(0, 0) }]);
        assert_eq!(idx.promote(3), None, "being moved");
        finish(&mut idx, &steps);
        assert_eq!(idx.report(), vec![(1, 50, 0), (2, 50, 1), (3, 50, 0)]);
        idx.check_accounting().unwrap();
        // Both tiers full of unpersisted blocks: the coldest on top swaps places with the
        // read block.
        store(&mut idx, 4, 50);
        idx.touch(3);
        idx.touch(1);
        let steps = idx.promote(4).unwrap();
        assert_eq!(steps, vec![Step::Move { block: 3, from: at(0, 0), to: at(1, 0) }, Step::Move { block: 4, from: at(1, 0), to: at(0, 0) }]);
        finish(&mut idx, &steps);
        assert_eq!(idx.report(), vec![(1, 50, 0), (2, 50, 1), (3, 50, 1), (4, 50, 0)]);
        idx.check_accounting().unwrap();
        // A block bigger than the top tier stays where it is.
        let mut idx = mem_over_ssd(10, 100);
        store(&mut idx, 1, 50);
        assert_eq!(idx.promote(1), None);
        assert_eq!(idx.report(), vec![(1, 50, 1)]);
    }

    #[test]
    fn a_failed_move_leaves_the_block_where_it_was_and_a_removed_one_is_not_put_back() {
        let mut idx = mem_over_ssd(100, 100);
        store(&mut idx, 1, 60);
        store(&mut idx, 2, 60);
        idx.touch(2);
        let steps = idx.promote(2).unwrap();
        assert_eq!(steps, vec![Step::Move { block: 1, from: at(0, 0), to: at(1, 0) }, Step::Move { block: 2, from: at(1, 0), to: at(0, 0) }]);
        // Block 1's copy fails: it stays on top, over-committing the folder until it leaves.
        idx.abort_move(1);
        assert_eq!(idx.readable_at(1), Some((at(0, 0), 60)));
        assert!(!idx.is_moving(1, at(0, 0), at(1, 0)));
        // Block 2 is deleted while its copy is made: both files are the store's to delete,
        // and the finished copy must not be put in place.
        assert_eq!(idx.remove(2), Some((60, vec![at(0, 0), at(1, 0)])));
        assert!(!idx.is_moving(2, at(1, 0), at(0, 0)));
        idx.check_accounting().unwrap();
        assert_eq!(idx.tier_usage()[0].used_bytes, 60);
        assert_eq!(idx.tier_usage()[1].used_bytes, 0);
    }

    #[test]
    fn eviction_order_lists_the_bottom_tier_first() {
        let mut idx = three_tiers();
        store(&mut idx, 1, 100);
        store(&mut idx, 2, 150);
        store(&mut idx, 3, 100);
        store(&mut idx, 4, 100);
        assert_eq!(idx.report().iter().map(|b| b.2).collect::<Vec<_>>(), vec![0, 1, 1, 2]);
        assert_eq!(idx.eviction_order(10), vec![4, 2, 3, 1]);
    }

    #[test]
    fn a_block_found_twice_on_opening_is_kept_in_the_higher_tier() {
        let mut idx = three_tiers();
        assert!(idx.add_found(7, at(0, 0), 10));
        assert!(!idx.add_found(7, at(1, 0), 10));
        assert_eq!(idx.report(), vec![(7, 10, 0)]);
        assert_eq!(idx.used(), 10);
    }

    #[test]
    fn a_deletion_ordered_before_a_newer_commit_of_the_block_is_stale() {
        let mut idx = TieredIndex::single(100);
        store(&mut idx, 1, 10);
        store(&mut idx, 2, 10);
        let mark = idx.mark();
        // A cache fill of block 1 commits it again after the master's order was asked for.
        assert!(idx.recommit(1));
        assert!(!idx.recommit(9), "only a block held here");
        assert_eq!(idx.remove_committed_by(1, mark), None, "the newer commit stays");
        assert_eq!(idx.remove_committed_by(2, mark), Some((10, vec![at(0, 0)])), "an older one goes");
        assert_eq!(idx.remove_committed_by(2, mark), None);
        assert_eq!(idx.report(), vec![(1, 10, 0)]);
        assert_eq!(idx.remove_committed_by(1, idx.mark()), Some((10, vec![at(0, 0)])), "a later order removes it");
    }

    /// One step of the random workload below.
    #[derive(Clone, Debug)]
    enum Op {
        Write { length: u64, keep: bool },
        Read { pick: usize, promote: bool, fail_moves: bool },
        Persist { pick: usize },
        Delete { pick: usize },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (1u64..60, proptest::bool::weighted(0.9)).prop_map(|(length, keep)| Op::Write { length, keep }),
            (any::<usize>(), any::<bool>(), proptest::bool::weighted(0.1)).prop_map(|(pick, promote, fail_moves)| Op::Read { pick, promote, fail_moves }),
            any::<usize>().prop_map(|pick| Op::Persist { pick }),
            any::<usize>().prop_map(|pick| Op::Delete { pick }),
        ]
    }

    proptest::proptest! {
        /// Under any mix of writes, reads (promoting or not, moves finishing or failing),
        /// persists and deletes: the accounting matches the blocks, a failed reservation
        /// changes nothing, only blocks marked evictable are ever dropped, every block the
        /// workload did not delete or see dropped is still held, and, unless a move failed,
        /// no tier holds more than its quota.
        #[test]
        fn tiers_keep_their_accounting_and_drop_only_evictable_blocks(ops in proptest::collection::vec(op(), 1..120)) {
            let mut idx = three_tiers();
            let capacities: Vec<u64> = idx.tier_usage().iter().map(|t| t.capacity_bytes).collect();
            let mut held: BTreeMap<BlockId, bool> = BTreeMap::new(); // block -> evictable
            let (mut next, mut a_move_failed) = (1, false);
            for op in ops {
                let mut moves_fail = false;
                let steps = match op {
                    Op::Write { length, keep } => {
                        let before = idx.report();
                        match idx.reserve(length) {
                            Err(_) => {
                                proptest::prop_assert_eq!(idx.report(), before);
                                Vec::new()
                            }
                            Ok(a) if keep => {
                                idx.commit(next, a.location, length, length);
                                held.insert(next, false);
                                next += 1;
                                a.steps
                            }
                            Ok(a) => {
                                idx.release(a.location, length);
                                a.steps
                            }
                        }
                    }
                    Op::Read { pick, promote, fail_moves } => {
                        let Some(&block) = held.keys().nth(pick % held.len().max(1)) else { continue };
                        proptest::prop_assert!(idx.touch(block));
                        let steps = if promote { idx.promote(block).unwrap_or_default() } else { Vec::new() };
                        // The store fails every copy of this plan (its drops still happen).
                        moves_fail = fail_moves && steps.iter().any(|s| matches!(s, Step::Move { .. }));
                        steps
                    }
                    Op::Persist { pick } => {
                        let Some(&block) = held.keys().nth(pick % held.len().max(1)) else { continue };
                        idx.set_evictable(block, true);
                        held.insert(block, true);
                        Vec::new()
                    }
                    Op::Delete { pick } => {
                        let Some(&block) = held.keys().nth(pick % held.len().max(1)) else { continue };
                        proptest::prop_assert!(idx.remove(block).is_some());
                        held.remove(&block);
                        Vec::new()
                    }
                };
                for s in &steps {
                    match s {
                        Step::Drop { block, .. } => {
                            proptest::prop_assert_eq!(held.remove(block), Some(true), "dropped block {} was not evictable", block);
                        }
                        Step::Move { block, from, to } => {
                            proptest::prop_assert!(idx.is_moving(*block, *from, *to));
                            if moves_fail {
                                idx.abort_move(*block);
                            } else {
                                idx.complete_move(*block);
                            }
                        }
                    }
                }
                a_move_failed |= moves_fail;
                idx.check_accounting().map_err(proptest::test_runner::TestCaseError::fail)?;
                let report: Vec<BlockId> = idx.report().iter().map(|b| b.0).collect();
                proptest::prop_assert_eq!(report, held.keys().copied().collect::<Vec<_>>());
                if !a_move_failed {
                    for (t, cap) in idx.tier_usage().iter().zip(&capacities) {
                        proptest::prop_assert!(t.used_bytes <= *cap, "{} holds {} of {}", t.alias, t.used_bytes, cap);
                    }
                }
            }
        }
    }
}
