//! The worker's storage tiers: block files in the folders of each tier (MEM on a
//! tmpfs/ramdisk, SSD, HDD), written and read through memory maps (memmap2).
//!
//! [`TieredIndex`] (in `core::tiers`) is the pure part: space, placement, which blocks move
//! down a tier or are evicted, promotion, LRU order. [`BlockStore`] does the file IO it
//! decides on: a move copies the file into the lower folder's `.tmp`, then, under the index
//! lock and only if the block was not removed meanwhile, renames the copy into place and
//! unlinks the original. Files are only ever deleted under the index lock, so a block
//! stored again under the same id is never hit by a late deletion.
//!
//! Architecture Invariant: a block is evicted only if it is marked evictable (its data is
//! also in under-storage); otherwise it moves down a tier, and a write nothing can make
//! room for fails with OutOfSpace.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use memmap2::{Mmap, MmapMut};

use crate::core::namespace::BlockId;
use crate::core::tiers::{Location, Step, TierAlias, TierSpace, TierSpec, TieredIndex};
use crate::error::FsError;

/// One tier as configured: its kind and its folders, each with a quota in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierDirs {
    pub alias: TierAlias,
    pub dirs: Vec<(PathBuf, u64)>,
}

/// Block files of one worker's tiers.
pub struct BlockStore {
    /// The folder of each folder index of each tier.
    dirs: Vec<Vec<PathBuf>>,
    index: Mutex<TieredIndex>,
    /// Blocks being written, so two writers never race on one block.
    writing: Mutex<BTreeSet<BlockId>>,
    /// Blocks removed since the last heartbeat (evicted or deleted), to tell the master.
    removed: Mutex<Vec<BlockId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> FsError {
    FsError::Internal { reason: format!("{what} {}: {e}", path.display()) }
}

/// Deletes a file that may already be gone.
fn remove_if_present(path: &Path, block: BlockId) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(block, path = %path.display(), error = %e, "could not delete block file");
        }
    }
}

impl BlockStore {
    /// Opens (creating) every tier folder and indexes the blocks already in them, so a
    /// worker restart keeps its data. A block found in two tiers (a move interrupted after
    /// its copy was in place) is kept in the higher one.
    pub fn open(tiers: &[TierDirs]) -> Result<Arc<BlockStore>, FsError> {
        if tiers.is_empty() || tiers.iter().any(|t| t.dirs.is_empty()) {
            return Err(FsError::InvalidArgument { reason: "a worker needs at least one tier, each with at least one folder".into() });
        }
        let specs: Vec<TierSpec> = tiers.iter().map(|t| TierSpec { alias: t.alias, dir_capacities_bytes: t.dirs.iter().map(|d| d.1).collect() }).collect();
        let mut index = TieredIndex::new(&specs);
        for (tier, t) in tiers.iter().enumerate() {
            for (dir_index, (dir, _)) in t.dirs.iter().enumerate() {
                let tmp_dir = dir.join(".tmp");
                if tmp_dir.exists() {
                    fs::remove_dir_all(&tmp_dir).map_err(|e| io_err("clean", &tmp_dir, e))?;
                }
                fs::create_dir_all(&tmp_dir).map_err(|e| io_err("create", &tmp_dir, e))?;
                // Blocks are the users' data: only the worker's user reads the tier folders.
                for private in [dir.as_path(), tmp_dir.as_path()] {
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(private, fs::Permissions::from_mode(0o700)).map_err(|e| io_err("restrict", private, e))?;
                }
                for entry in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
                    let entry = entry.map_err(|e| io_err("list", dir, e))?;
                    let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<BlockId>().ok()) else { continue };
                    let len = entry.metadata().map_err(|e| io_err("stat", &entry.path(), e))?.len();
                    if !index.add_found(id, Location { tier, dir: dir_index }, len) {
                        tracing::info!(block = id, path = %entry.path().display(), "deleting the second copy of a block an interrupted move left");
                        remove_if_present(&entry.path(), id);
                    }
                }
            }
        }
        Ok(Arc::new(BlockStore {
            dirs: tiers.iter().map(|t| t.dirs.iter().map(|d| d.0.clone()).collect()).collect(),
            index: Mutex::new(index),
            writing: Mutex::new(BTreeSet::new()),
            removed: Mutex::new(Vec::new()),
        }))
    }

    /// A single memory tier of one folder (tests and benches).
    pub fn open_memory(dir: &Path, capacity_bytes: u64) -> Result<Arc<BlockStore>, FsError> {
        Self::open(&[TierDirs { alias: TierAlias::Mem, dirs: vec![(dir.to_path_buf(), capacity_bytes)] }])
    }

    fn path_at(&self, at: Location, block: BlockId) -> PathBuf {
        self.dirs[at.tier][at.dir].join(block.to_string())
    }

    fn tmp_path_at(&self, at: Location, name: &str) -> PathBuf {
        self.dirs[at.tier][at.dir].join(".tmp").join(name)
    }

    /// Bytes used and capacity, over every tier.
    pub fn usage(&self) -> (u64, u64) {
        let idx = lock(&self.index);
        (idx.used(), idx.capacity())
    }

    /// Capacity and use of each tier, top first.
    pub fn tier_usage(&self) -> Vec<TierSpace> {
        lock(&self.index).tier_usage()
    }

    /// Every block held, with its length.
    pub fn report(&self) -> Vec<(BlockId, u64)> {
        lock(&self.index).report().into_iter().map(|(id, len, _)| (id, len)).collect()
    }

    /// Every block held, with its length and the kind of tier it is in.
    pub fn blocks_by_tier(&self) -> Vec<(BlockId, u64, TierAlias)> {
        let idx = lock(&self.index);
        idx.report().into_iter().map(|(id, len, tier)| (id, len, idx.alias(tier))).collect()
    }

    /// Blocks removed since the last call.
    pub fn take_removed(&self) -> Vec<BlockId> {
        std::mem::take(&mut *lock(&self.removed))
    }

    /// Puts back removals a failed heartbeat did not deliver.
    pub fn restore_removed(&self, blocks: Vec<BlockId>) {
        lock(&self.removed).extend(blocks);
    }

    /// Length of a committed block held here.
    pub fn block_length(&self, block: BlockId) -> Option<u64> {
        lock(&self.index).length(block)
    }

    /// Starts writing a block, reserving `reserve` bytes in the highest tier with room
    /// (moving blocks down, or evicting ones allowed to go, to make it). Moving copies
    /// files: call it where blocking is fine.
    pub fn begin_write(self: &Arc<Self>, block: BlockId, reserve: u64) -> Result<TempBlock, FsError> {
        if reserve == 0 {
            return Err(FsError::InvalidArgument { reason: "a block write must reserve at least one byte".into() });
        }
        if lock(&self.index).length(block).is_some() {
            return Err(FsError::AlreadyExists { path: format!("block {block}") });
        }
        if !lock(&self.writing).insert(block) {
            return Err(FsError::AlreadyExists { path: format!("block {block} (being written)") });
        }
        let allocation = {
            let mut idx = lock(&self.index);
            match idx.reserve(reserve) {
                Ok(a) => {
                    self.drop_evicted(&a.steps);
                    a
                }
                Err(e) => {
                    drop(idx);
                    lock(&self.writing).remove(&block);
                    return Err(e);
                }
            }
        };
        self.run_moves(&allocation.steps);
        let at = allocation.location;
        let mut temp =
            TempBlock { store: self.clone(), block, at, reserve, written: 0, map: None, path: self.tmp_path_at(at, &block.to_string()), done: false };
        let file = std::os::unix::fs::OpenOptionsExt::mode(fs::OpenOptions::new().read(true).write(true).create_new(true), 0o600)
            .open(&temp.path)
            .map_err(|e| io_err("create", &temp.path, e))?;
        file.set_len(reserve).map_err(|e| io_err("size", &temp.path, e))?;
        // SAFETY: the file is private to this worker (in its .tmp folder, created just now
        // with create_new) and nothing else maps or truncates it while the map lives.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io_err("map", &temp.path, e))?;
        temp.map = Some(map);
        Ok(temp)
    }

    /// Deletes the files of the blocks a plan evicted; called with the index locked.
    fn drop_evicted(&self, steps: &[Step]) {
        for step in steps {
            if let Step::Drop { block, from } = step {
                remove_if_present(&self.path_at(*from, *block), *block);
                lock(&self.removed).push(*block);
            }
        }
    }

    /// Carries out the moves of a plan, in order. A move that fails leaves its block where
    /// it was (logged; the folder it should have left is over its quota until the block
    /// goes).
    fn run_moves(&self, steps: &[Step]) {
        for step in steps {
            let Step::Move { block, from, to } = *step else { continue };
            let source = self.path_at(from, block);
            let copy = self.tmp_path_at(to, &format!("{block}.move"));
            let copied = fs::copy(&source, &copy);
            let mut idx = lock(&self.index);
            let placed = match copied {
                Err(e) => Err(io_err("copy", &source, e)),
                Ok(_) if !idx.is_moving(block, from, to) => Ok(false),
                Ok(_) => fs::rename(&copy, self.path_at(to, block)).map(|()| true).map_err(|e| io_err("place", &copy, e)),
            };
            match placed {
                Ok(true) => {
                    idx.complete_move(block);
                    remove_if_present(&source, block);
                    crate::metrics::WORKER_TIER_MOVES.with_label_values(&[idx.alias(from.tier).as_str(), idx.alias(to.tier).as_str()]).inc();
                }
                // Removed while it was copied: the copy is not wanted.
                Ok(false) => remove_if_present(&copy, block),
                Err(e) => {
                    tracing::warn!(block, from = %idx.alias(from.tier), to = %idx.alias(to.tier), error = %e, "could not move a block between tiers; it stays");
                    idx.abort_move(block);
                    remove_if_present(&copy, block);
                }
            }
        }
    }

    /// True if the block is held below the top tier (a read that promotes would move it).
    pub fn is_below_top(&self, block: BlockId) -> bool {
        lock(&self.index).readable_at(block).is_some_and(|(at, _)| at.tier > 0)
    }

    /// Moves a block read from a lower tier up to the top tier (CACHE_PROMOTE), if room
    /// can be made there; best effort. It copies files: call it where blocking is fine.
    pub fn promote(&self, block: BlockId) {
        let steps = lock(&self.index).promote(block);
        if let Some(steps) = steps {
            self.run_moves(&steps);
        }
    }

    /// Maps a committed block for reading; returns the map (None for an empty block) and
    /// the kind of tier it is read from. The map stays valid even if the block is evicted
    /// or moved meanwhile (files are unlinked, never truncated).
    pub fn read(&self, block: BlockId) -> Result<(Option<Mmap>, TierAlias), FsError> {
        let (file, path, tier) = {
            let mut idx = lock(&self.index);
            if !idx.touch(block) {
                return Err(FsError::NotFound { path: format!("block {block}") });
            }
            let Some((at, length)) = idx.readable_at(block) else { return Err(FsError::NotFound { path: format!("block {block}") }) };
            if length == 0 {
                return Ok((None, idx.alias(at.tier)));
            }
            // Opened under the lock: the file cannot be unlinked by a move in between.
            let path = self.path_at(at, block);
            (fs::File::open(&path).map_err(|e| io_err("open", &path, e))?, path, idx.alias(at.tier))
        };
        // SAFETY: committed block files are never written or truncated again, only unlinked.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_err("map", &path, e))?;
        Ok((Some(map), tier))
    }

    /// The file of a committed block and its length, for a short-circuit read by a client
    /// on this host. The access is recorded.
    pub fn open_local(&self, block: BlockId) -> Option<(PathBuf, u64)> {
        let mut idx = lock(&self.index);
        if !idx.touch(block) {
            return None;
        }
        idx.readable_at(block).map(|(at, length)| (self.path_at(at, block), length))
    }

    /// Up to `max` blocks, bottom tier and least recently used first (the candidates to
    /// ask the master about).
    pub fn eviction_candidates(&self, max: usize) -> Vec<BlockId> {
        lock(&self.index).eviction_order(max)
    }

    /// Marks each of `candidates` evictable exactly if it is in `evictable` (the master's
    /// answer: the data is in under-storage and the file is not pinned).
    pub fn set_evictable(&self, candidates: &[BlockId], evictable: &BTreeSet<BlockId>) {
        let mut idx = lock(&self.index);
        for b in candidates {
            idx.set_evictable(*b, evictable.contains(b));
        }
    }

    /// Deletes a block (its file was deleted or freed).
    pub fn remove(&self, block: BlockId) {
        let mut idx = lock(&self.index);
        if let Some((_, at)) = idx.remove(block) {
            self.delete_files(block, &at);
        }
    }

    /// The index's current mark, taken before asking the master what to delete.
    pub fn commit_mark(&self) -> u64 {
        lock(&self.index).mark()
    }

    /// Removes a block the master asked to delete, unless it was committed again after
    /// `mark` (a cache fill of the same block raced the deletion order).
    pub fn remove_unless_recommitted(&self, block: BlockId, mark: u64) {
        let mut idx = lock(&self.index);
        if let Some((_, at)) = idx.remove_committed_by(block, mark) {
            self.delete_files(block, &at);
        }
    }

    /// The commit mark of a block held here.
    pub fn committed_mark(&self, block: BlockId) -> Option<u64> {
        lock(&self.index).committed_at(block)
    }

    /// Records that a block held here is committed again; false if it is not here.
    pub fn recommit(&self, block: BlockId) -> bool {
        lock(&self.index).recommit(block)
    }

    /// Deletes a removed block's files; called with the index locked.
    fn delete_files(&self, block: BlockId, at: &[Location]) {
        for location in at {
            remove_if_present(&self.path_at(*location, block), block);
        }
        lock(&self.removed).push(block);
    }

    /// Checks the index's accounting (tests and the simulator).
    pub fn check_accounting(&self) -> Result<(), String> {
        lock(&self.index).check_accounting()
    }
}

/// A block being written; dropped without [`TempBlock::commit`] it is discarded.
pub struct TempBlock {
    store: Arc<BlockStore>,
    block: BlockId,
    /// The folder the block's room is reserved in.
    at: Location,
    reserve: u64,
    written: u64,
    map: Option<MmapMut>,
    path: PathBuf,
    done: bool,
}

impl TempBlock {
    /// Appends data; fails past the reserved length.
    pub fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        let end = self.written + data.len() as u64;
        if end > self.reserve {
            return Err(FsError::InvalidArgument { reason: format!("block {} is longer than the {} bytes announced", self.block, self.reserve) });
        }
        if let Some(map) = self.map.as_mut() {
            map[self.written as usize..end as usize].copy_from_slice(data);
        }
        self.written = end;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The block id.
    pub fn block(&self) -> BlockId {
        self.block
    }

    /// The kind of tier the block is written to.
    pub fn tier(&self) -> TierAlias {
        lock(&self.store.index).alias(self.at.tier)
    }

    /// Trims the file to what was written, moves it into place and indexes it.
    pub fn commit(mut self) -> Result<u64, FsError> {
        self.map = None;
        let file = fs::OpenOptions::new().write(true).open(&self.path).map_err(|e| io_err("open", &self.path, e))?;
        file.set_len(self.written).map_err(|e| io_err("trim", &self.path, e))?;
        let dest = self.store.path_at(self.at, self.block);
        fs::rename(&self.path, &dest).map_err(|e| io_err("commit", &dest, e))?;
        self.done = true;
        lock(&self.store.index).commit(self.block, self.at, self.written, self.reserve);
        lock(&self.store.writing).remove(&self.block);
        // Stored again after an earlier copy was deleted: that deletion is no news any more
        // (reporting it would make the master forget the new copy).
        lock(&self.store.removed).retain(|b| *b != self.block);
        Ok(self.written)
    }
}

impl Drop for TempBlock {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.map = None;
        let _ = fs::remove_file(&self.path);
        lock(&self.store.index).release(self.at, self.reserve);
        lock(&self.store.writing).remove(&self.block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &Arc<BlockStore>, block: BlockId, data: &[u8]) -> TierAlias {
        let mut t = store.begin_write(block, data.len() as u64).unwrap();
        t.write(data).unwrap();
        let tier = t.tier();
        t.commit().unwrap();
        tier
    }

    fn read(store: &BlockStore, block: BlockId, promote: bool) -> (Vec<u8>, TierAlias) {
        if promote {
            store.promote(block);
        }
        let (map, tier) = store.read(block).unwrap();
        (map.map(|m| m.to_vec()).unwrap_or_default(), tier)
    }

    #[test]
    fn store_writes_reads_survives_reopen_and_discards_abandoned_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open_memory(dir.path(), 1 << 20).unwrap();
        let mut t = store.begin_write(7, 1000).unwrap();
        t.write(b"hello ").unwrap();
        t.write(b"block").unwrap();
        assert!(store.begin_write(7, 10).is_err(), "a second writer of one block is refused");
        assert_eq!(t.commit().unwrap(), 11);
        assert_eq!(read(&store, 7, true), (b"hello block".to_vec(), TierAlias::Mem));
        assert_eq!(store.usage(), (11, 1 << 20));
        // An abandoned write leaves nothing behind.
        let mut t = store.begin_write(8, 100).unwrap();
        t.write(b"partial").unwrap();
        drop(t);
        assert_eq!(store.usage().0, 11);
        assert!(store.read(8).is_err());
        let reopened = BlockStore::open_memory(dir.path(), 1 << 20).unwrap();
        assert_eq!(reopened.report(), vec![(7, 11)]);
        reopened.remove(7);
        assert_eq!(reopened.take_removed(), vec![7]);
        assert!(!dir.path().join("7").exists());
        // Deleted, then stored again before the next report: the deletion is not reported.
        reopened.remove(7);
        put(&reopened, 7, b"hello block");
        assert_eq!(reopened.take_removed(), Vec::<BlockId>::new());
        assert_eq!(reopened.report(), vec![(7, 11)]);
    }

    #[test]
    fn writes_beyond_the_announced_length_or_capacity_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open_memory(dir.path(), 10).unwrap();
        assert!(matches!(store.begin_write(1, 11), Err(FsError::OutOfSpace { .. })));
        let mut t = store.begin_write(1, 4).unwrap();
        assert!(t.write(b"12345").is_err());
        drop(t);
        assert_eq!(store.usage().0, 0);
        assert!(store.begin_write(1, 10).is_ok());
    }

    fn two_tiers(root: &Path) -> Vec<TierDirs> {
        vec![
            TierDirs { alias: TierAlias::Mem, dirs: vec![(root.join("mem"), 100)] },
            TierDirs { alias: TierAlias::Ssd, dirs: vec![(root.join("ssd0"), 100), (root.join("ssd1"), 100)] },
        ]
    }

    #[test]
    fn blocks_move_down_when_the_top_tier_is_full_and_up_when_read() {
        let root = tempfile::tempdir().unwrap();
        let store = BlockStore::open(&two_tiers(root.path())).unwrap();
        let data = |b: u8| vec![b; 60];
        assert_eq!(put(&store, 1, &data(1)), TierAlias::Mem);
        assert_eq!(put(&store, 2, &data(2)), TierAlias::Ssd, "the top tier has no room left");
        assert_eq!(put(&store, 3, &data(3)), TierAlias::Ssd);
        assert!(root.path().join("mem/1").exists() && root.path().join("ssd0/2").exists() && root.path().join("ssd1/3").exists());
        // A promoting read of block 2 moves block 1 (coldest on top) down and 2 up.
        assert_eq!(read(&store, 2, true), (data(2), TierAlias::Mem));
        assert!(root.path().join("mem/2").exists() && !root.path().join("ssd0/2").exists());
        assert_eq!(read(&store, 1, false), (data(1), TierAlias::Ssd));
        assert!(store.is_below_top(1) && !store.is_below_top(2) && !store.is_below_top(9));
        let (path, length) = store.open_local(1).unwrap();
        assert_eq!((fs::read(&path).unwrap(), length), (data(1), 60), "short-circuit reads find a block in any tier");
        assert!(path.starts_with(root.path().join("ssd0")));
        store.promote(1);
        assert_eq!(store.open_local(1).unwrap().0, root.path().join("mem/1"), "a promoted block is opened on top");
        assert_eq!(store.tier_usage().iter().map(|t| t.used_bytes).collect::<Vec<_>>(), vec![60, 120]);
        store.check_accounting().unwrap();
        assert_eq!(store.take_removed(), Vec::<BlockId>::new(), "moves are not removals");
        // Every tier full of unpersisted blocks: a new block has nowhere to go.
        assert!(matches!(store.begin_write(4, 60), Err(FsError::OutOfSpace { .. })));
        // Blocks 2 and 3 are persisted: block 2 (the coldest in the fuller SSD folder) is
        // evicted, and block 1 (coldest on top) moves down into its room.
        store.set_evictable(&[2, 3], &BTreeSet::from([2, 3]));
        assert_eq!(put(&store, 4, &data(4)), TierAlias::Mem);
        let held: Vec<(BlockId, TierAlias)> = store.blocks_by_tier().into_iter().map(|(b, _, t)| (b, t)).collect();
        assert_eq!(held.len(), 3);
        assert_eq!(held, vec![(1, TierAlias::Ssd), (3, TierAlias::Ssd), (4, TierAlias::Mem)]);
        assert_eq!(store.take_removed().len(), 1, "one block was evicted to make room");
        store.check_accounting().unwrap();
        for (block, _) in held {
            assert_eq!(read(&store, block, false).0, data(block as u8));
        }
    }

    #[test]
    fn reopening_keeps_every_tier_and_drops_a_duplicate_an_interrupted_move_left() {
        let root = tempfile::tempdir().unwrap();
        let store = BlockStore::open(&two_tiers(root.path())).unwrap();
        put(&store, 1, &[1; 60]);
        put(&store, 2, &[2; 60]);
        drop(store);
        // A crash after block 2's copy reached the top tier, before the original was unlinked.
        fs::remove_file(root.path().join("mem/1")).unwrap();
        fs::copy(root.path().join("ssd0/2"), root.path().join("mem/2")).unwrap();
        fs::write(root.path().join("ssd1/.tmp/3.move"), b"half a copy").unwrap();
        let store = BlockStore::open(&two_tiers(root.path())).unwrap();
        assert_eq!(store.blocks_by_tier(), vec![(2, 60, TierAlias::Mem)]);
        assert!(!root.path().join("ssd0/2").exists(), "the lower copy is deleted");
        assert!(!root.path().join("ssd1/.tmp/3.move").exists());
        store.check_accounting().unwrap();
    }
}
