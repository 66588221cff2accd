//! The worker's memory tier: block files in a tmpfs/ramdisk folder, written and read
//! through memory maps (memmap2).
//!
//! [`BlockIndex`] is the pure part (capacity, reservations, LRU order by a logical access
//! counter, which blocks may be evicted); [`BlockStore`] does the file IO around it.
//!
//! Architecture Invariant: a block is evicted only if it is marked evictable (its data is
//! also in under-storage); otherwise a write that does not fit fails with OutOfSpace.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use memmap2::{Mmap, MmapMut};

use crate::core::namespace::BlockId;
use crate::error::FsError;

#[derive(Clone, Debug, PartialEq, Eq)]
struct BlockMeta {
    length: u64,
    last_access: u64,
    evictable: bool,
    /// The access counter when the block was last committed (see [`BlockIndex::mark`]).
    committed_at: u64,
}

/// Space accounting and eviction order of a tier; no IO.
#[derive(Clone, Debug)]
pub struct BlockIndex {
    capacity: u64,
    used: u64,
    reserved: u64,
    access_counter: u64,
    blocks: BTreeMap<BlockId, BlockMeta>,
}

impl BlockIndex {
    /// An empty tier of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        BlockIndex { capacity, used: 0, reserved: 0, access_counter: 0, blocks: BTreeMap::new() }
    }

    /// Bytes held by committed blocks.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Reserves room for a block being written. Returns the blocks to evict first (least
    /// recently used evictable ones), already removed from the index.
    pub fn reserve(&mut self, bytes: u64) -> Result<Vec<BlockId>, FsError> {
        let free = self.capacity.saturating_sub(self.used + self.reserved);
        if bytes <= free {
            self.reserved += bytes;
            return Ok(Vec::new());
        }
        let mut candidates: Vec<(u64, BlockId, u64)> = self.blocks.iter().filter(|(_, m)| m.evictable).map(|(id, m)| (m.last_access, *id, m.length)).collect();
        candidates.sort_unstable();
        let mut gained = 0;
        let mut victims = Vec::new();
        for (_, id, len) in candidates {
            if free + gained >= bytes {
                break;
            }
            gained += len;
            victims.push(id);
        }
        if free + gained < bytes {
            return Err(FsError::OutOfSpace {
                reason: format!(
                    "memory tier needs {bytes} bytes but has {free} free of {} and only {gained} evictable \
                     (only blocks persisted to under-storage may be evicted)",
                    self.capacity
                ),
            });
        }
        for id in &victims {
            self.remove(*id);
        }
        self.reserved += bytes;
        Ok(victims)
    }

    /// Returns a reservation unused.
    pub fn release(&mut self, bytes: u64) {
        self.reserved = self.reserved.saturating_sub(bytes);
    }

    /// Turns a reservation into a committed block of `length` bytes.
    pub fn commit(&mut self, block: BlockId, length: u64, reserved: u64) {
        self.release(reserved);
        self.access_counter += 1;
        let meta = BlockMeta { length, last_access: self.access_counter, evictable: false, committed_at: self.access_counter };
        if let Some(old) = self.blocks.insert(block, meta) {
            self.used -= old.length;
        }
        self.used += length;
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

    /// Up to `max` committed blocks, least recently used first: what eviction would take.
    pub fn least_recently_used(&self, max: usize) -> Vec<BlockId> {
        let mut order: Vec<(u64, BlockId)> = self.blocks.iter().map(|(id, m)| (m.last_access, *id)).collect();
        order.sort_unstable();
        order.into_iter().take(max).map(|(_, id)| id).collect()
    }

    /// Forgets a block; returns its length.
    pub fn remove(&mut self, block: BlockId) -> Option<u64> {
        let m = self.blocks.remove(&block)?;
        self.used -= m.length;
        Some(m.length)
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
    /// before a newer commit of the same block is stale. Returns its length if removed.
    pub fn remove_committed_by(&mut self, block: BlockId, mark: u64) -> Option<u64> {
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

    /// Every block with its length, in id order.
    pub fn report(&self) -> Vec<(BlockId, u64)> {
        self.blocks.iter().map(|(id, m)| (*id, m.length)).collect()
    }
}

/// Block files of one worker's memory tier.
pub struct BlockStore {
    dir: PathBuf,
    tmp_dir: PathBuf,
    index: Mutex<BlockIndex>,
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

impl BlockStore {
    /// Opens (creating) the tier folder and indexes the blocks already in it, so a worker
    /// restart keeps its in-memory data.
    pub fn open(dir: &Path, capacity: u64) -> Result<Arc<BlockStore>, FsError> {
        let tmp_dir = dir.join(".tmp");
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(|e| io_err("clean", &tmp_dir, e))?;
        }
        fs::create_dir_all(&tmp_dir).map_err(|e| io_err("create", &tmp_dir, e))?;
        // Blocks are the users' data: only the worker's user reads the tier folder.
        for private in [dir, tmp_dir.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(private, fs::Permissions::from_mode(0o700)).map_err(|e| io_err("restrict", private, e))?;
        }
        let mut index = BlockIndex::new(capacity);
        for entry in fs::read_dir(dir).map_err(|e| io_err("list", dir, e))? {
            let entry = entry.map_err(|e| io_err("list", dir, e))?;
            let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<BlockId>().ok()) else { continue };
            let len = entry.metadata().map_err(|e| io_err("stat", &entry.path(), e))?.len();
            index.commit(id, len, 0);
        }
        Ok(Arc::new(BlockStore {
            dir: dir.to_path_buf(),
            tmp_dir,
            index: Mutex::new(index),
            writing: Mutex::new(BTreeSet::new()),
            removed: Mutex::new(Vec::new()),
        }))
    }

    /// Path of a committed block's file.
    pub fn block_path(&self, block: BlockId) -> PathBuf {
        self.dir.join(block.to_string())
    }

    /// Bytes used and capacity.
    pub fn usage(&self) -> (u64, u64) {
        let idx = lock(&self.index);
        (idx.used(), idx.capacity())
    }

    /// Every block held, with its length.
    pub fn report(&self) -> Vec<(BlockId, u64)> {
        lock(&self.index).report()
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

    /// Starts writing a block, reserving `reserve` bytes (evicting if allowed).
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
        let victims = match lock(&self.index).reserve(reserve) {
            Ok(v) => v,
            Err(e) => {
                lock(&self.writing).remove(&block);
                return Err(e);
            }
        };
        for v in victims {
            self.delete_file(v);
        }
        let mut temp = TempBlock { store: self.clone(), block, reserve, written: 0, map: None, path: self.tmp_dir.join(block.to_string()), done: false };
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

    /// Maps a committed block for reading; the map stays valid even if the block is
    /// evicted meanwhile (the file is unlinked, not truncated).
    pub fn read(&self, block: BlockId) -> Result<Option<Mmap>, FsError> {
        let length = {
            let mut idx = lock(&self.index);
            if !idx.touch(block) {
                return Err(FsError::NotFound { path: format!("block {block}") });
            }
            idx.length(block).unwrap_or(0)
        };
        if length == 0 {
            return Ok(None);
        }
        let path = self.block_path(block);
        let file = fs::File::open(&path).map_err(|e| io_err("open", &path, e))?;
        // SAFETY: committed block files are never written or truncated again, only unlinked.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_err("map", &path, e))?;
        Ok(Some(map))
    }

    /// Length of a committed block, recording the access.
    pub fn touch(&self, block: BlockId) -> Option<u64> {
        let mut idx = lock(&self.index);
        idx.touch(block).then(|| idx.length(block)).flatten()
    }

    /// Up to `max` blocks, least recently used first (the candidates to ask the master about).
    pub fn eviction_candidates(&self, max: usize) -> Vec<BlockId> {
        lock(&self.index).least_recently_used(max)
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
        if lock(&self.index).remove(block).is_some() {
            self.delete_file(block);
        }
    }

    /// The index's current mark, taken before asking the master what to delete.
    pub fn commit_mark(&self) -> u64 {
        lock(&self.index).mark()
    }

    /// Removes a block the master asked to delete, unless it was committed again after
    /// `mark` (a cache fill of the same block raced the deletion order).
    pub fn remove_unless_recommitted(&self, block: BlockId, mark: u64) {
        if lock(&self.index).remove_committed_by(block, mark).is_some() {
            self.delete_file(block);
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

    fn delete_file(&self, block: BlockId) {
        let path = self.block_path(block);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(block, path = %path.display(), error = %e, "could not delete block file");
            }
        }
        lock(&self.removed).push(block);
    }
}

/// A block being written; dropped without [`TempBlock::commit`] it is discarded.
pub struct TempBlock {
    store: Arc<BlockStore>,
    block: BlockId,
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

    /// Trims the file to what was written, moves it into place and indexes it.
    pub fn commit(mut self) -> Result<u64, FsError> {
        self.map = None;
        let file = fs::OpenOptions::new().write(true).open(&self.path).map_err(|e| io_err("open", &self.path, e))?;
        file.set_len(self.written).map_err(|e| io_err("trim", &self.path, e))?;
        let dest = self.store.block_path(self.block);
        fs::rename(&self.path, &dest).map_err(|e| io_err("commit", &dest, e))?;
        self.done = true;
        lock(&self.store.index).commit(self.block, self.written, self.reserve);
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
        lock(&self.store.index).release(self.reserve);
        lock(&self.store.writing).remove(&self.block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_evicts_least_recently_used_evictable_blocks_only() {
        let mut idx = BlockIndex::new(100);
        idx.commit(1, 40, 0);
        idx.commit(2, 40, 0);
        assert!(matches!(idx.reserve(30), Err(FsError::OutOfSpace { .. })));
        idx.set_evictable(1, true);
        idx.set_evictable(2, true);
        idx.touch(1);
        assert_eq!(idx.reserve(30), Ok(vec![2]));
        assert_eq!(idx.used(), 40);
        idx.commit(3, 25, 30);
        assert_eq!(idx.report(), vec![(1, 40), (3, 25)]);
        assert_eq!(idx.used(), 65);
        assert_eq!(idx.least_recently_used(10), vec![1, 3]);
        idx.touch(1);
        assert_eq!(idx.least_recently_used(1), vec![3]);
    }

    #[test]
    fn a_deletion_ordered_before_a_newer_commit_of_the_block_is_stale() {
        let mut idx = BlockIndex::new(100);
        idx.commit(1, 10, 0);
        idx.commit(2, 10, 0);
        let mark = idx.mark();
        // A cache fill of block 1 commits it again after the master's order was asked for.
        assert!(idx.recommit(1));
        assert!(!idx.recommit(9), "only a block held here");
        assert_eq!(idx.remove_committed_by(1, mark), None, "the newer commit stays");
        assert_eq!(idx.remove_committed_by(2, mark), Some(10), "an older one goes");
        assert_eq!(idx.remove_committed_by(2, mark), None);
        assert_eq!(idx.report(), vec![(1, 10)]);
        assert_eq!(idx.remove_committed_by(1, idx.mark()), Some(10), "a later order removes it");
    }

    #[test]
    fn store_writes_reads_survives_reopen_and_discards_abandoned_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path(), 1 << 20).unwrap();
        let mut t = store.begin_write(7, 1000).unwrap();
        t.write(b"hello ").unwrap();
        t.write(b"block").unwrap();
        assert!(store.begin_write(7, 10).is_err(), "a second writer of one block is refused");
        assert_eq!(t.commit().unwrap(), 11);
        assert_eq!(&store.read(7).unwrap().unwrap()[..], b"hello block");
        assert_eq!(store.usage(), (11, 1 << 20));
        // An abandoned write leaves nothing behind.
        let mut t = store.begin_write(8, 100).unwrap();
        t.write(b"partial").unwrap();
        drop(t);
        assert_eq!(store.usage().0, 11);
        assert!(store.read(8).is_err());
        let reopened = BlockStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(reopened.report(), vec![(7, 11)]);
        reopened.remove(7);
        assert_eq!(reopened.take_removed(), vec![7]);
        assert!(!dir.path().join("7").exists());
        // Deleted, then stored again before the next report: the deletion is not reported.
        reopened.remove(7);
        let mut t = reopened.begin_write(7, 11).unwrap();
        t.write(b"hello block").unwrap();
        t.commit().unwrap();
        assert_eq!(reopened.take_removed(), Vec::<BlockId>::new());
        assert_eq!(reopened.report(), vec![(7, 11)]);
    }

    #[test]
    fn writes_beyond_the_announced_length_or_capacity_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path(), 10).unwrap();
        assert!(matches!(store.begin_write(1, 11), Err(FsError::OutOfSpace { .. })));
        let mut t = store.begin_write(1, 4).unwrap();
        assert!(t.write(b"12345").is_err());
        drop(t);
        assert_eq!(store.usage().0, 0);
        assert!(store.begin_write(1, 10).is_ok());
    }
}
