//! The inode tree as a pure state machine.
//!
//! Two halves, both free of IO, clocks and randomness:
//! - `plan_*` validate an operation against the current state and return the journal
//!   entry kinds that would perform it (ids are allocated here, times come in as `now_ms`);
//! - [`Namespace::apply`] applies one sequenced journal entry and returns its [`Effect`]s.
//!
//! The master plans, applies, journals and only then acknowledges; a standby or a
//! restarting master rebuilds the same state by applying the journal (checkpoint + logs).
//!
//! Architecture Invariant: applying the same entries to the same checkpoint gives the
//! same state, bit for bit ([`Namespace::digest`]); every map is ordered.

use std::collections::BTreeMap;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use prost::Message;

use crate::core::path::FsPath;
use crate::core::permission::{self, Caller, Checks, Ownership};
use crate::error::FsError;
use crate::proto::journal_entry::Kind;
use crate::proto::{
    Checkpoint, CompleteFileEntry, CreateDirectoryEntry, CreateFileEntry, DeleteEntry, InodeOwnership, InodeRecord, JournalEntry, MountEntry, MountRecord,
    PersistFileEntry, PersistenceState, RenameEntry, SetAttributeEntry, SetOwnershipEntry, TtlAction, UfsCopy, UfsIntentDoneEntry, UfsIntentEntry,
    UfsIntentKind, UnmountEntry,
};

mod inode;
mod name;
#[cfg(test)]
mod tests;

pub use inode::*;
use name::Interner;
pub use name::{Name, NameKey};

/// What applying an entry asks the rest of the master to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// These files are gone: every block of theirs on any worker can be deleted.
    FilesRemoved(Vec<InodeId>),
}

/// The result of [`Namespace::apply_operation`].
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedOperation {
    /// The entries applied, to be journaled.
    pub entries: Vec<JournalEntry>,
    pub effects: Vec<Effect>,
    pub error: Option<ApplyError>,
}

/// Applying a journal entry failed: the journal does not fit this state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("journal sequence gap: expected entry {expected}, got {got}")]
    SequenceGap { expected: u64, got: u64 },
    #[error("journal entry {sequence} has epoch {epoch}, older than epoch {current} already applied")]
    StaleEpoch { sequence: u64, epoch: u64, current: u64 },
    #[error("journal entry {sequence} does not fit the namespace: {reason}")]
    Inconsistent { sequence: u64, reason: String },
}

/// How many applied client request ids the namespace remembers (a retry older than this
/// many operations is not recognised).
pub const MAX_RECENT_REQUESTS: usize = 1 << 16;
/// Most options one mount may carry.
pub const MAX_MOUNT_OPTIONS: usize = 32;
/// Longest mount address, option key or option value, in bytes.
pub const MAX_MOUNT_TEXT_BYTES: usize = 4096;
/// Longest request id a client may send.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// The ids of the most recent applied client requests, in order; journaled with the
/// operations, so a new leader recognises retries of requests its predecessor applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RecentRequests {
    order: VecDeque<String>,
    ids: BTreeSet<String>,
}

impl RecentRequests {
    fn insert(&mut self, id: &str) {
        if id.is_empty() || !self.ids.insert(id.to_string()) {
            return;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > MAX_RECENT_REQUESTS {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

/// The namespace: inodes plus the journal position they reflect.
#[derive(Clone, Debug, PartialEq)]
pub struct Namespace {
    /// Boxed: a B-tree node of small values stays small when half full, as nodes filled
    /// in id order are.
    inodes: BTreeMap<InodeId, Box<Inode>>,
    next_inode_id: InodeId,
    next_sequence: u64,
    epoch: u64,
    recent_requests: RecentRequests,
    /// Mount points by directory inode id.
    mounts: BTreeMap<InodeId, Mount>,
    /// Under-storage work journaled and not yet finished, by intent id.
    ufs_intents: BTreeMap<u64, UfsIntentEntry>,
    /// (when the TTL runs out, inode) of every inode with a TTL: what `expired` looks at,
    /// instead of the whole tree. Derived: rebuilt from inodes, kept by `apply`.
    ttl_deadlines: BTreeSet<(i64, InodeId)>,
    /// Files still being written: what `abandoned_writes` looks at. Derived, like
    /// `ttl_deadlines`.
    incomplete_files: BTreeSet<InodeId>,
    /// Owner and group names in use. Derived, like `ttl_deadlines`.
    names: Interner,
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Namespace {
    /// An empty namespace holding only `/`, before journal entry 0.
    pub fn new() -> Self {
        let root = Inode {
            id: ROOT_ID,
            parent_id: ROOT_ID,
            name: Name::new(""),
            ownership: Ownership { owner: Arc::from(""), group: Arc::from(""), mode: 0o755 },
            creation_time_ms: 0,
            modification_time_ms: 0,
            kind: InodeKind::Directory { children: BTreeMap::new() },
            pinned: false,
            ttl: None,
        };
        Namespace {
            inodes: BTreeMap::from([(ROOT_ID, Box::new(root))]),
            next_inode_id: ROOT_ID + 1,
            next_sequence: 0,
            epoch: 0,
            recent_requests: RecentRequests::default(),
            mounts: BTreeMap::new(),
            ufs_intents: BTreeMap::new(),
            ttl_deadlines: BTreeSet::new(),
            incomplete_files: BTreeSet::new(),
            names: Interner::default(),
        }
    }

    /// The inode with id `id`.
    fn node(&self, id: &InodeId) -> Option<&Inode> {
        self.inodes.get(id).map(|b| &**b)
    }

    /// Sets the TTL of inode `id`, keeping the deadline index.
    fn set_ttl(&mut self, id: InodeId, ttl: Option<Ttl>) {
        let Some(inode) = self.inodes.get_mut(&id) else { return };
        if let Some(old) = inode.ttl {
            self.ttl_deadlines.remove(&(inode.creation_time_ms.saturating_add(old.ttl_ms), id));
        }
        if let Some(new) = ttl {
            self.ttl_deadlines.insert((inode.creation_time_ms.saturating_add(new.ttl_ms), id));
        }
        inode.ttl = ttl;
    }

    /// Under-storage work journaled and not yet finished, oldest first.
    pub fn ufs_intents(&self) -> Vec<&UfsIntentEntry> {
        self.ufs_intents.values().collect()
    }

    /// Plans journaling, before touching them, the under-storage `copies` a rename or
    /// delete of inode `inode_id` is about to move or remove; returns the intent's id (its
    /// sequence: the one place that rule lives) with the entries.
    pub fn plan_ufs_intent(&self, kind: UfsIntentKind, inode_id: InodeId, request_id: &str, renamed_path: &str, copies: Vec<UfsCopy>) -> (u64, Vec<Kind>) {
        let id = self.next_sequence;
        let entry = UfsIntentEntry { id, kind: kind as i32, inode_id, request_id: request_id.to_string(), renamed_path: renamed_path.to_string(), copies };
        (id, vec![Kind::UfsIntent(entry)])
    }

    /// Plans recording that the work of intent `id` is finished (or undone).
    pub fn plan_ufs_intent_done(&self, id: u64) -> Result<Vec<Kind>, FsError> {
        if !self.ufs_intents.contains_key(&id) {
            return Err(FsError::Internal { reason: format!("no pending under-storage intent {id}") });
        }
        Ok(vec![Kind::UfsIntentDone(UfsIntentDoneEntry { id })])
    }

    /// Names in the under-storage directory `dir` that pending intents are moving or
    /// removing: a listing must not load them as new files.
    pub fn ufs_names_in_flux(&self, dir: &UfsLocation) -> BTreeSet<String> {
        let mount_path = dir.mount_path();
        let mut names = BTreeSet::new();
        for copy in self.ufs_intents.values().flat_map(|i| &i.copies).filter(|c| c.mount_path == mount_path) {
            for path in [&copy.from, &copy.to].into_iter().filter(|p| !p.is_empty()) {
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
                if parent == dir.relative {
                    names.insert(name.to_string());
                }
            }
        }
        names
    }

    /// Every mount point, in path order.
    pub fn mount_points(&self) -> Vec<MountPoint> {
        let mut points: Vec<MountPoint> =
            self.mounts.iter().filter_map(|(id, mount)| self.path_of(*id).map(|path| MountPoint { path, mount: mount.clone() })).collect();
        points.sort_by(|a, b| a.path.components().cmp(b.path.components()));
        points
    }

    /// Where `path` (existing or not) lives in under-storage.
    pub fn resolve_ufs(&self, path: &FsPath) -> UfsLocation {
        UfsLocation::resolve(&self.mount_points(), path)
    }

    /// A mount point at or below `inode`, if any.
    fn mount_at_or_below(&self, inode: &Inode) -> Option<InodeId> {
        self.mounts.keys().copied().find(|&m| {
            let mut cursor = m;
            loop {
                if cursor == inode.id {
                    return true;
                }
                match self.node(&cursor) {
                    Some(i) if cursor != ROOT_ID => cursor = i.parent_id,
                    _ => return false,
                }
            }
        })
    }

    /// Sequence number the next applied entry must carry.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Highest epoch among applied entries.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// True if an operation carrying this client request id was applied (recently).
    pub fn request_applied(&self, request_id: &str) -> bool {
        !request_id.is_empty() && self.recent_requests.ids.contains(request_id)
    }

    /// Number of inodes, the root included.
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// The inode with this id.
    pub fn inode(&self, id: InodeId) -> Option<&Inode> {
        self.node(&id)
    }

    /// Resolves a path to its inode.
    pub fn lookup(&self, path: &FsPath) -> Result<&Inode, FsError> {
        let mut current = &*self.inodes[&ROOT_ID];
        for (depth, name) in path.components().iter().enumerate() {
            let children = match &current.kind {
                InodeKind::Directory { children } => children,
                InodeKind::File { .. } => {
                    let prefix = components_path(&path.components()[..depth]);
                    return Err(FsError::NotADirectory { path: prefix });
                }
            };
            let child = children.get(NameKey::new(name)).ok_or_else(|| FsError::NotFound { path: path.to_string() })?;
            current = self.node(child).ok_or_else(|| FsError::Internal { reason: format!("dangling child {child} under inode {}", current.id) })?;
        }
        Ok(current)
    }

    /// Whether a worker may store `length` bytes as block `block`: a block of a file still
    /// being written (at most the file's block size), or exactly a block of a complete,
    /// persisted file (read back from under-storage and cached again). Asked before a
    /// worker reserves space and again when it commits.
    pub fn check_block_write(&self, block: BlockId, length: u64) -> Result<(), FsError> {
        let file = file_of_block(block);
        let inode = self.inode(file);
        match inode.map(|i| &i.kind) {
            Some(InodeKind::File { complete: false, block_size, .. }) if length <= *block_size => Ok(()),
            Some(InodeKind::File { complete: false, block_size, .. }) => {
                Err(FsError::InvalidArgument { reason: format!("block {block} of {length} bytes is larger than its file's block size {block_size}") })
            }
            Some(InodeKind::File { complete: true, persistence: PersistenceState::Persisted, .. })
                if inode.and_then(|i| i.expected_block_length(block)) == Some(length) =>
            {
                Ok(())
            }
            Some(InodeKind::File { complete: true, .. }) => Err(FsError::FileAlreadyComplete { path: format!("inode {file}") }),
            _ => Err(FsError::NotFound { path: format!("file of block {block} (inode {file})") }),
        }
    }

    /// Checks that `caller` may do what `checks` asks on `path`, on the tree as it is now
    /// (HDFS's rules; see [`permission`]). Parts of the path that do not exist are not
    /// checked: the plan that follows reports them. A superuser passes everything.
    pub fn check_access(&self, caller: &Caller, path: &FsPath, checks: Checks) -> Result<(), FsError> {
        if caller.superuser {
            return Ok(());
        }
        let components = path.components();
        let mut chain: Vec<&Inode> = Vec::with_capacity(components.len() + 1);
        let mut current = &*self.inodes[&ROOT_ID];
        chain.push(current);
        for name in components {
            let InodeKind::Directory { children } = &current.kind else { break };
            let Some(child) = children.get(NameKey::new(name)).and_then(|id| self.node(id)) else { break };
            chain.push(child);
            current = child;
        }
        let target = (chain.len() == components.len() + 1).then_some(current);
        let above = &chain[..chain.len() - usize::from(target.is_some())];
        let require = |depth: usize, inode: &Inode, want: u32| {
            if permission::permits(&inode.ownership, caller, want) {
                Ok(())
            } else {
                Err(permission::denied(caller, &permission::bits_string(want), &components_path(&components[..depth]), &inode.ownership, inode.is_directory()))
            }
        };
        for (depth, dir) in above.iter().enumerate().filter(|(_, d)| d.is_directory()) {
            require(depth, dir, permission::EXECUTE)?;
        }
        if let (Some(want), Some(deepest)) = (checks.ancestor, above.last().filter(|d| d.is_directory())) {
            require(above.len() - 1, deepest, want)?;
        }
        let parent = (!components.is_empty()).then(|| chain.get(components.len() - 1)).flatten().copied();
        if let (Some(want), Some(parent)) = (checks.parent, parent) {
            require(components.len() - 1, parent, want)?;
        }
        let Some(target) = target else { return Ok(()) };
        if let Some(want) = checks.target {
            require(components.len(), target, want)?;
        }
        if checks.sticky {
            if let Some(parent) = parent.filter(|p| p.ownership.mode & permission::STICKY_BIT != 0) {
                if *caller.user != *parent.ownership.owner && *caller.user != *target.ownership.owner {
                    return Err(FsError::PermissionDenied {
                        path: path.to_string(),
                        reason: format!(
                            "user={}: the sticky bit of {} lets only {} or the owner of the directory remove or rename it",
                            caller.user,
                            components_path(&components[..components.len() - 1]),
                            target.ownership.owner
                        ),
                    });
                }
            }
        }
        if checks.owner && *caller.user != *target.ownership.owner {
            return Err(FsError::PermissionDenied {
                path: path.to_string(),
                reason: format!("user={} is not the owner ({}) and not a superuser", caller.user, target.ownership.owner),
            });
        }
        if let (Some(want), true) = (checks.subtree, target.is_directory()) {
            let dirs = std::iter::once(target).chain(self.descendants(target));
            for dir in dirs.filter(|d| matches!(&d.kind, InodeKind::Directory { children } if !children.is_empty())) {
                if !permission::permits(&dir.ownership, caller, want) {
                    let at = self.path_of(dir.id).map(|p| p.to_string()).unwrap_or_default();
                    return Err(permission::denied(caller, &permission::bits_string(want), &at, &dir.ownership, true));
                }
            }
        }
        Ok(())
    }

    /// The absolute path of an inode.
    pub fn path_of(&self, id: InodeId) -> Option<FsPath> {
        let mut names = Vec::new();
        let mut current = self.node(&id)?;
        while current.id != ROOT_ID {
            names.push(current.name.clone());
            current = self.node(&current.parent_id)?;
        }
        Some(names.iter().rev().fold(FsPath::root(), |p, n| p.join(n)))
    }

    /// The children of a directory, in name order (empty for a file).
    pub fn children(&self, dir: &Inode) -> Vec<&Inode> {
        match &dir.kind {
            InodeKind::Directory { children } => children.values().filter_map(|id| self.node(id)).collect(),
            InodeKind::File { .. } => Vec::new(),
        }
    }

    /// Levels below `inode`: 0 for a file or an empty directory.
    pub fn subtree_height(&self, inode: &Inode) -> usize {
        let mut height = 0;
        let mut level = vec![inode];
        loop {
            let next: Vec<&Inode> = level.iter().flat_map(|i| self.children(i)).collect();
            if next.is_empty() {
                return height;
            }
            height += 1;
            level = next;
        }
    }

    /// One page of `dir`'s listing, in the order of [`Self::children`] or, with `recursive`,
    /// [`Self::descendants`]: at most `limit` inodes after the path `after` (the last entry
    /// of the previous page; `None` from the start), and whether more follow. `after` is a
    /// position in name order, so a page resumes right even if that entry was deleted or
    /// renamed meanwhile. The work is bounded by the page size and the depth, never by the
    /// size of a directory.
    pub fn list_page<'a>(
        &'a self,
        dir: &'a Inode,
        dir_path: &FsPath,
        recursive: bool,
        after: Option<&FsPath>,
        limit: usize,
    ) -> Result<(Vec<&'a Inode>, bool), FsError> {
        use std::ops::Bound::{Excluded, Unbounded};
        type Siblings<'a> = std::collections::btree_map::Range<'a, Name, InodeId>;
        let InodeKind::Directory { children } = &dir.kind else { return Ok((vec![dir], false)) };
        let mut stack: Vec<Siblings<'_>> = Vec::new();
        match after {
            None => stack.push(children.range::<NameKey, _>(..)),
            Some(after) => {
                let rel = after.components().strip_prefix(dir_path.components()).filter(|r| !r.is_empty() && (recursive || r.len() == 1));
                let Some(rel) = rel else {
                    return Err(FsError::InvalidArgument { reason: format!("listing {dir_path}: cannot resume after {after}, not an entry of this listing") });
                };
                let mut level = Some(children);
                for (depth, name) in rel.iter().enumerate() {
                    let Some(siblings) = level else { break };
                    stack.push(siblings.range::<NameKey, _>((Excluded(NameKey::new(name)), Unbounded)));
                    let entry = siblings.get(NameKey::new(name)).and_then(|id| self.node(id));
                    level = match entry.map(|i| &i.kind) {
                        Some(InodeKind::Directory { children }) => Some(children),
                        _ => None,
                    };
                    if depth + 1 == rel.len() {
                        // `after` itself was listed; with `recursive` what is below it comes next.
                        if let (true, Some(below)) = (recursive, level) {
                            stack.push(below.range::<NameKey, _>(..));
                        }
                    }
                }
            }
        }
        let mut page = Vec::new();
        while page.len() < limit {
            let Some(top) = stack.last_mut() else { break };
            let Some((_, id)) = top.next() else {
                stack.pop();
                continue;
            };
            let inode = self.node(id).ok_or_else(|| FsError::Internal { reason: format!("dangling child {id}") })?;
            page.push(inode);
            if let (true, InodeKind::Directory { children }) = (recursive, &inode.kind) {
                stack.push(children.range::<NameKey, _>(..));
            }
        }
        let more = stack.iter().any(|s| s.clone().next().is_some());
        Ok((page, more))
    }

    /// Every inode below `dir` (not `dir` itself), depth first, each directory before its children.
    pub fn descendants(&self, dir: &Inode) -> Vec<&Inode> {
        let mut out = Vec::new();
        let mut stack: Vec<&Inode> = self.children(dir).into_iter().rev().collect();
        while let Some(inode) = stack.pop() {
            out.push(inode);
            stack.extend(self.children(inode).into_iter().rev());
        }
        out
    }

    // ─────────────────────────── planning ───────────────────────────

    /// Plans `mkdir`: the entries that create `path` (and its missing parents when `recursive`).
    /// An existing directory is fine only with `allow_exists`, and then plans nothing.
    pub fn plan_create_directory(
        &self,
        path: &FsPath,
        recursive: bool,
        allow_exists: bool,
        ownership: &InodeOwnership,
        now_ms: i64,
    ) -> Result<Vec<Kind>, FsError> {
        match self.lookup(path) {
            Ok(inode) if inode.is_directory() && (allow_exists || path.is_root()) => return Ok(Vec::new()),
            Ok(_) => return Err(FsError::AlreadyExists { path: path.to_string() }),
            Err(FsError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let (mut entries, parent_id, mut next_id) = self.plan_parents(path, recursive, ownership, now_ms)?;
        let name = path.name().unwrap_or_default().to_string();
        entries.push(Kind::CreateDirectory(CreateDirectoryEntry {
            id: take_id(&mut next_id)?,
            parent_id,
            name,
            ownership: Some(ownership.clone()),
            time_ms: now_ms,
        }));
        Ok(entries)
    }

    /// Plans creating an empty, incomplete file at `path`.
    pub fn plan_create_file(&self, path: &FsPath, block_size: u64, recursive: bool, ownership: &InodeOwnership, now_ms: i64) -> Result<Vec<Kind>, FsError> {
        if block_size == 0 {
            return Err(FsError::InvalidArgument { reason: "block size must be positive".into() });
        }
        if path.is_root() {
            return Err(FsError::AlreadyExists { path: "/".into() });
        }
        match self.lookup(path) {
            Ok(_) => return Err(FsError::AlreadyExists { path: path.to_string() }),
            Err(FsError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let (mut entries, parent_id, mut next_id) = self.plan_parents(path, recursive, ownership, now_ms)?;
        entries.push(Kind::CreateFile(CreateFileEntry {
            id: take_id(&mut next_id)?,
            parent_id,
            name: path.name().unwrap_or_default().to_string(),
            ownership: Some(ownership.clone()),
            time_ms: now_ms,
            block_size_bytes: block_size,
        }));
        Ok(entries)
    }

    /// Plans completing a file at `length` bytes. `committed_length` tells the length a
    /// worker committed for a block, so a file is complete only when all its data is stored:
    /// every block on a worker, or (`persistence` PERSISTED) the whole file in under-storage,
    /// where a block a worker did commit must still have the right length.
    pub fn plan_complete_file(
        &self,
        path: &FsPath,
        length: u64,
        persistence: PersistenceState,
        committed_length: impl Fn(BlockId) -> Option<u64>,
        now_ms: i64,
    ) -> Result<Vec<Kind>, FsError> {
        let inode = self.lookup(path)?;
        let InodeKind::File { block_size, complete, .. } = inode.kind else {
            return Err(FsError::IsADirectory { path: path.to_string() });
        };
        if complete {
            return Err(FsError::FileAlreadyComplete { path: path.to_string() });
        }
        let blocks = block_count(length, block_size);
        if blocks > MAX_BLOCKS_PER_FILE {
            return Err(FsError::InvalidArgument { reason: format!("{path}: more than {MAX_BLOCKS_PER_FILE} blocks") });
        }
        for index in 0..blocks {
            let id = block_id(inode.id, index);
            let expected = block_length(length, block_size, index);
            match committed_length(id) {
                Some(got) if got == expected => {}
                Some(got) => {
                    return Err(FsError::InvalidArgument { reason: format!("{path}: block {index} (id {id}) holds {got} bytes, expected {expected}") })
                }
                None if persistence == PersistenceState::Persisted => {}
                None => return Err(FsError::InvalidArgument { reason: format!("{path}: block {index} (id {id}) was never committed by a worker") }),
            }
        }
        Ok(vec![Kind::CompleteFile(CompleteFileEntry { id: inode.id, length, time_ms: now_ms, persistence: persistence as i32 })])
    }

    /// Plans recording that a complete file's data is now in under-storage at its path.
    /// Nothing to do if it already is.
    pub fn plan_persist_file(&self, path: &FsPath, now_ms: i64) -> Result<Vec<Kind>, FsError> {
        let inode = self.lookup(path)?;
        match inode.kind {
            InodeKind::Directory { .. } => Err(FsError::IsADirectory { path: path.to_string() }),
            InodeKind::File { complete: false, .. } => Err(FsError::FileIncomplete { path: path.to_string() }),
            InodeKind::File { persistence: PersistenceState::Persisted, .. } => Ok(Vec::new()),
            InodeKind::File { .. } => Ok(vec![Kind::PersistFile(PersistFileEntry { id: inode.id, time_ms: now_ms })]),
        }
    }

    /// Plans bringing the under-storage listing `found` of directory `dir` into the
    /// namespace: `dir` and its missing ancestors become directories, and each name tachyon
    /// does not know yet becomes a directory or a complete, PERSISTED file of the listed
    /// length (its data is read from the under-storage on first use). Names tachyon already
    /// has are left alone, as are names that are not valid tachyon names and the client's
    /// temporary upload files. At most `max_entries` names are loaded per call. Plans
    /// nothing if `dir` is a file.
    pub fn plan_load_from_under_storage(
        &self,
        dir: &FsPath,
        found: &[UnderStorageEntry],
        block_size: u64,
        ownership: &InodeOwnership,
        max_entries: usize,
        now_ms: i64,
    ) -> Result<Vec<Kind>, FsError> {
        if block_size == 0 {
            return Err(FsError::InvalidArgument { reason: "block size must be positive".into() });
        }
        let (mut entries, dir_id, mut next_id) = match self.lookup(dir) {
            Ok(inode) if inode.is_directory() => (Vec::new(), inode.id, self.next_inode_id),
            Ok(_) => return Ok(Vec::new()),
            Err(FsError::NotFound { .. }) => self.plan_parents(&dir.join("-"), true, ownership, now_ms)?,
            Err(e) => return Err(e),
        };
        let in_flux = self.ufs_names_in_flux(&self.resolve_ufs(dir));
        let known = |name: &str| self.lookup(&dir.join(name)).is_ok() || in_flux.contains(name);
        let mut loaded = 0;
        for e in found {
            if loaded == max_entries {
                break;
            }
            let valid = FsPath::parse(&format!("/{}", e.name)).is_ok_and(|p| p.components().len() == 1);
            if !valid || is_upload_temp_name(&e.name) || known(&e.name) {
                continue;
            }
            let id = take_id(&mut next_id)?;
            let ownership = Some(if e.is_directory { directory_ownership(ownership) } else { ownership.clone() });
            if e.is_directory {
                entries.push(Kind::CreateDirectory(CreateDirectoryEntry { id, parent_id: dir_id, name: e.name.clone(), ownership, time_ms: now_ms }));
            } else {
                if block_count(e.length, block_size) > MAX_BLOCKS_PER_FILE {
                    continue;
                }
                entries.push(Kind::CreateFile(CreateFileEntry {
                    id,
                    parent_id: dir_id,
                    name: e.name.clone(),
                    ownership,
                    time_ms: now_ms,
                    block_size_bytes: block_size,
                }));
                let persistence = PersistenceState::Persisted as i32;
                entries.push(Kind::CompleteFile(CompleteFileEntry { id, length: e.length, time_ms: now_ms, persistence }));
            }
            loaded += 1;
        }
        Ok(entries)
    }

    /// Complete files waiting for background persistence (ASYNC_THROUGH), in id order.
    pub fn files_to_persist(&self) -> Vec<InodeId> {
        self.inodes
            .values()
            .filter(|i| matches!(i.kind, InodeKind::File { complete: true, persistence: PersistenceState::ToBePersisted, .. }))
            .map(|i| i.id)
            .collect()
    }

    /// Plans changing attributes of `path`; plans nothing if nothing would change. A TTL
    /// must be positive.
    pub fn plan_set_attribute(&self, path: &FsPath, change: AttributeChange, now_ms: i64) -> Result<Vec<Kind>, FsError> {
        if let Some(Some(ttl)) = change.ttl {
            if ttl.ttl_ms <= 0 {
                return Err(FsError::InvalidArgument { reason: format!("TTL must be a positive number of milliseconds, not {}", ttl.ttl_ms) });
            }
        }
        let inode = self.lookup(path)?;
        let below_differs = |pinned: bool| self.descendants(inode).iter().any(|i| i.pinned != pinned);
        let pinned = change.pinned.filter(|&p| inode.pinned != p || below_differs(p));
        let ttl = change.ttl.filter(|&t| inode.ttl != t);
        if pinned.is_none() && ttl.is_none() {
            return Ok(Vec::new());
        }
        let (ttl_ms, ttl_action) = match ttl {
            None => (None, TtlAction::TtlDelete),
            Some(None) => (Some(-1), TtlAction::TtlDelete),
            Some(Some(t)) => (Some(t.ttl_ms), t.action),
        };
        Ok(vec![Kind::SetAttribute(SetAttributeEntry { id: inode.id, time_ms: now_ms, pinned, ttl_ms, ttl_action: ttl_action as i32 })])
    }

    /// Plans changing owner, group and/or mode of `path` (and with `recursive` of
    /// everything below it) for `caller`: chown is for superusers, chgrp for superusers and
    /// owners in the new group, chmod for superusers and owners (of every inode changed).
    /// Plans nothing if nothing would change.
    pub fn plan_set_ownership(&self, caller: &Caller, path: &FsPath, change: &OwnershipChange, now_ms: i64) -> Result<Vec<Kind>, FsError> {
        let probe =
            InodeOwnership { owner: change.owner.clone().unwrap_or_default(), group: change.group.clone().unwrap_or_default(), mode: change.mode.unwrap_or(0) };
        check_ownership(&probe)?;
        if change.owner.as_deref() == Some("") {
            return Err(FsError::InvalidArgument { reason: "the new owner is empty".into() });
        }
        let inode = self.lookup(path)?;
        let affected: Vec<&Inode> = if change.recursive { std::iter::once(inode).chain(self.descendants(inode)).collect() } else { vec![inode] };
        if !caller.superuser {
            if change.owner.is_some() {
                return Err(FsError::PermissionDenied {
                    path: path.to_string(),
                    reason: format!("user={}: only a superuser may change the owner", caller.user),
                });
            }
            if let Some(group) = change.group.as_deref().filter(|g| !caller.in_group(g)) {
                return Err(FsError::PermissionDenied { path: path.to_string(), reason: format!("user={} is not in group {group}", caller.user) });
            }
            if let Some(other) = affected.iter().find(|i| *i.ownership.owner != *caller.user) {
                let at = self.path_of(other.id).map(|p| p.to_string()).unwrap_or_default();
                return Err(FsError::PermissionDenied {
                    path: at,
                    reason: format!("user={} is not the owner ({}) and not a superuser", caller.user, other.ownership.owner),
                });
            }
        }
        let differs = |i: &&Inode| {
            change.owner.as_ref().is_some_and(|o| **o != *i.ownership.owner)
                || change.group.as_ref().is_some_and(|g| **g != *i.ownership.group)
                || change.mode.is_some_and(|m| m != i.ownership.mode)
        };
        if !affected.iter().any(differs) {
            return Ok(Vec::new());
        }
        Ok(vec![Kind::SetOwnership(SetOwnershipEntry {
            id: inode.id,
            time_ms: now_ms,
            owner: change.owner.clone(),
            group: change.group.clone(),
            mode: change.mode,
            recursive: change.recursive,
        })])
    }

    /// Plans mounting the under-storage `ufs_uri` at `path`, which must not exist (its parent
    /// must be a directory); the mount point becomes a new directory.
    pub fn plan_mount(
        &self,
        path: &FsPath,
        ufs_uri: &str,
        options: &BTreeMap<String, String>,
        ownership: &InodeOwnership,
        now_ms: i64,
    ) -> Result<Vec<Kind>, FsError> {
        if path.is_root() {
            return Err(FsError::InvalidArgument { reason: "the root is mounted from tachyon.underfs.address, not with mount".into() });
        }
        if ufs_uri.trim().is_empty() {
            return Err(FsError::InvalidArgument { reason: "mount needs an under-storage address".into() });
        }
        let too_long = |text: &str| text.len() > MAX_MOUNT_TEXT_BYTES;
        if options.len() > MAX_MOUNT_OPTIONS || too_long(ufs_uri) || options.iter().any(|(k, v)| too_long(k) || too_long(v)) {
            return Err(FsError::InvalidArgument {
                reason: format!("a mount takes at most {MAX_MOUNT_OPTIONS} options and {MAX_MOUNT_TEXT_BYTES} bytes per address, key or value"),
            });
        }
        match self.lookup(path) {
            Ok(_) => return Err(FsError::AlreadyExists { path: path.to_string() }),
            Err(FsError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let (parents, parent_id, mut next_id) = self.plan_parents(path, false, ownership, now_ms)?;
        debug_assert!(parents.is_empty());
        let id = take_id(&mut next_id)?;
        Ok(vec![Kind::Mount(MountEntry {
            id,
            parent_id,
            name: path.name().unwrap_or_default().to_string(),
            ownership: Some(ownership.clone()),
            time_ms: now_ms,
            ufs_uri: ufs_uri.trim().to_string(),
            options: options.clone(),
        })])
    }

    /// Plans unmounting the mount point `path`: it and everything below it leave tachyon
    /// (the under-storage keeps its files). Mount points below it must be unmounted first.
    pub fn plan_unmount(&self, path: &FsPath, now_ms: i64) -> Result<Vec<Kind>, FsError> {
        let inode = self.lookup(path)?;
        if !self.mounts.contains_key(&inode.id) {
            return Err(FsError::InvalidArgument { reason: format!("{path} is not a mount point") });
        }
        if let Some(nested) = self.descendants(inode).iter().find(|i| self.mounts.contains_key(&i.id)) {
            let nested = self.path_of(nested.id).unwrap_or_else(FsPath::root);
            return Err(FsError::InvalidArgument { reason: format!("{nested} is mounted below {path}: unmount it first") });
        }
        // Unmounting forgets everything below: data that is only in memory would be lost.
        let only_in_memory =
            |i: &&Inode| matches!(i.kind, InodeKind::File { length, persistence, .. } if length > 0 && persistence != PersistenceState::Persisted);
        if let Some(file) = self.descendants(inode).into_iter().find(only_in_memory) {
            let file = self.path_of(file.id).unwrap_or_else(FsPath::root);
            return Err(FsError::InvalidArgument {
                reason: format!("{file} is not in the mounted under-storage yet: persist or delete it before unmounting {path}"),
            });
        }
        Ok(vec![Kind::Unmount(UnmountEntry { id: inode.id, time_ms: now_ms })])
    }

    /// Inodes whose TTL has run out at `now_ms`, parents before children; nothing below an
    /// inode that expires with DELETE is listed (the delete takes it along).
    /// The work is bounded by what is due (the deadline index), not the size of the tree.
    pub fn expired(&self, now_ms: i64) -> Vec<Expired> {
        let due: BTreeMap<InodeId, TtlAction> =
            self.ttl_deadlines.range(..=(now_ms, InodeId::MAX)).filter_map(|(_, id)| self.node(id).and_then(|i| i.ttl).map(|t| (*id, t.action))).collect();
        let deleted_above = |mut id: InodeId| {
            while let Some(inode) = self.node(&id).filter(|i| i.id != ROOT_ID) {
                id = inode.parent_id;
                if due.get(&id) == Some(&TtlAction::TtlDelete) {
                    return true;
                }
            }
            false
        };
        let mut out: Vec<Expired> = due
            .iter()
            .filter(|(id, _)| !deleted_above(**id))
            .filter_map(|(id, action)| self.path_of(*id).map(|path| Expired { id: *id, path, action: *action }))
            .collect();
        // Parents before children, siblings by name: the order of a walk of the tree.
        out.sort_by(|a, b| a.path.components().cmp(b.path.components()));
        out
    }

    /// Incomplete files whose writer has shown no sign of life for `timeout_ms` at `now_ms`
    /// (the later of the file's creation and `last_write_ms`, the last block a worker
    /// stored for it), with their paths; at most `limit`, in inode order.
    pub fn abandoned_writes(&self, now_ms: i64, timeout_ms: i64, last_write_ms: impl Fn(InodeId) -> Option<i64>, limit: usize) -> Vec<(InodeId, FsPath)> {
        self.incomplete_files
            .iter()
            .filter_map(|id| self.node(id))
            .filter(|i| self.is_abandoned(i, now_ms, timeout_ms, last_write_ms(i.id)))
            .filter_map(|i| self.path_of(i.id).map(|p| (i.id, p)))
            .take(limit)
            .collect()
    }

    fn is_abandoned(&self, inode: &Inode, now_ms: i64, timeout_ms: i64, last_write_ms: Option<i64>) -> bool {
        let alive_ms = inode.modification_time_ms.max(last_write_ms.unwrap_or(i64::MIN));
        matches!(inode.kind, InodeKind::File { complete: false, .. }) && alive_ms.saturating_add(timeout_ms) <= now_ms
    }

    /// Plans deleting the incomplete file `id` if it is still abandoned (see
    /// [`Self::abandoned_writes`]); nothing if it completed, went away or was written since.
    pub fn plan_reap_abandoned(&self, id: InodeId, now_ms: i64, timeout_ms: i64, last_write_ms: Option<i64>) -> Vec<Kind> {
        match self.node(&id) {
            Some(inode) if self.is_abandoned(inode, now_ms, timeout_ms, last_write_ms) => vec![Kind::Delete(DeleteEntry { id, time_ms: now_ms })],
            _ => Vec::new(),
        }
    }

    /// Plans what the TTL of inode `id` does once it ran out: DELETE deletes the inode (and
    /// everything below it, unless that holds a mount point: refused like `rm`); FREE clears
    /// the TTL (the master then frees the cached blocks). Plans nothing if the inode is gone
    /// or its TTL was changed and has not run out.
    pub fn plan_expire(&self, id: InodeId, now_ms: i64) -> Result<Vec<Kind>, FsError> {
        let Some(inode) = self.node(&id).filter(|i| i.id != ROOT_ID) else { return Ok(Vec::new()) };
        match inode.ttl {
            Some(t) if inode.creation_time_ms.saturating_add(t.ttl_ms) <= now_ms => match t.action {
                TtlAction::TtlDelete => {
                    self.refuse_mount_points(inode, &self.path_of(id).unwrap_or_else(FsPath::root), "delete (TTL)")?;
                    Ok(vec![Kind::Delete(DeleteEntry { id, time_ms: now_ms })])
                }
                TtlAction::TtlFree => Ok(vec![Kind::SetAttribute(SetAttributeEntry {
                    id,
                    time_ms: now_ms,
                    pinned: None,
                    ttl_ms: Some(-1),
                    ttl_action: TtlAction::TtlDelete as i32,
                })]),
            },
            _ => Ok(Vec::new()),
        }
    }

    /// True if a worker may drop `block` to make room: its file's data is in the
    /// under-storage and the file is not pinned, or the file no longer exists.
    pub fn may_evict(&self, block: BlockId) -> bool {
        match self.node(&file_of_block(block)) {
            None => true,
            Some(inode) => !inode.pinned && matches!(inode.kind, InodeKind::File { complete: true, persistence: PersistenceState::Persisted, .. }),
        }
    }

    /// Plans deleting `path` (a non-empty directory only when `recursive`).
    pub fn plan_delete(&self, path: &FsPath, recursive: bool, now_ms: i64) -> Result<Vec<Kind>, FsError> {
        if path.is_root() {
            return Err(FsError::InvalidArgument { reason: "cannot delete the root directory".into() });
        }
        let inode = self.lookup(path)?;
        if let InodeKind::Directory { children } = &inode.kind {
            if !children.is_empty() && !recursive {
                return Err(FsError::DirectoryNotEmpty { path: path.to_string() });
            }
        }
        self.refuse_mount_points(inode, path, "delete")?;
        Ok(vec![Kind::Delete(DeleteEntry { id: inode.id, time_ms: now_ms })])
    }

    fn refuse_mount_points(&self, inode: &Inode, path: &FsPath, what: &str) -> Result<(), FsError> {
        match self.mount_at_or_below(inode).and_then(|m| self.path_of(m)) {
            Some(m) => Err(FsError::InvalidArgument { reason: format!("cannot {what} {path}: {m} is a mount point (unmount it first)") }),
            None => Ok(()),
        }
    }

    /// Plans renaming `src` to `dst`; `dst` must not exist and its parent must be a directory.
    pub fn plan_rename(&self, src: &FsPath, dst: &FsPath, now_ms: i64) -> Result<Vec<Kind>, FsError> {
        if src.is_root() || dst.is_root() {
            return Err(FsError::InvalidArgument { reason: "cannot rename the root directory".into() });
        }
        let inode = self.lookup(src)?;
        if dst.starts_with(src) {
            return Err(FsError::InvalidArgument { reason: format!("cannot move {src} into itself ({dst})") });
        }
        match self.lookup(dst) {
            Ok(_) => return Err(FsError::AlreadyExists { path: dst.to_string() }),
            Err(FsError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let parent_path = dst.parent().unwrap_or_else(FsPath::root);
        let parent = self.lookup(&parent_path)?;
        if !parent.is_directory() {
            return Err(FsError::NotADirectory { path: parent_path.to_string() });
        }
        self.refuse_mount_points(inode, src, "rename")?;
        let mount_of = |p: &FsPath| self.resolve_ufs(p).mount.map(|m| m.path);
        if mount_of(src) != mount_of(dst) {
            return Err(FsError::InvalidArgument { reason: format!("cannot rename {src} to {dst}: they are in different under-storages (mounts)") });
        }
        Ok(vec![Kind::Rename(RenameEntry { id: inode.id, new_parent_id: parent.id, new_name: dst.name().unwrap_or_default().to_string(), time_ms: now_ms })])
    }

    /// Entries creating the missing ancestors of `path`; returns them, the id of the
    /// direct parent and the next free inode id.
    fn plan_parents(&self, path: &FsPath, recursive: bool, ownership: &InodeOwnership, now_ms: i64) -> Result<(Vec<Kind>, InodeId, InodeId), FsError> {
        let mut entries = Vec::new();
        let mut next_id = self.next_inode_id;
        let mut parent_id = ROOT_ID;
        let mut exists = true;
        let ancestors = &path.components()[..path.components().len().saturating_sub(1)];
        for (depth, name) in ancestors.iter().enumerate() {
            if exists {
                let parent = &self.inodes[&parent_id];
                let InodeKind::Directory { children } = &parent.kind else {
                    return Err(FsError::NotADirectory { path: components_path(&ancestors[..depth]) });
                };
                if let Some(&child) = children.get(NameKey::new(name)) {
                    parent_id = child;
                    continue;
                }
                exists = false;
            }
            if !recursive {
                return Err(FsError::NotFound { path: components_path(&ancestors[..=depth]) });
            }
            let id = take_id(&mut next_id)?;
            entries.push(Kind::CreateDirectory(CreateDirectoryEntry {
                id,
                parent_id,
                name: name.clone(),
                ownership: Some(directory_ownership(ownership)),
                time_ms: now_ms,
            }));
            parent_id = id;
        }
        if exists && !self.inodes[&parent_id].is_directory() {
            return Err(FsError::NotADirectory { path: components_path(ancestors) });
        }
        Ok((entries, parent_id, next_id))
    }

    // ─────────────────────────── applying ───────────────────────────

    /// Applies one journal entry. The entry must carry [`Self::next_sequence`] and an epoch
    /// no older than the last one applied; on error the state is unchanged.
    pub fn apply(&mut self, entry: &JournalEntry) -> Result<Vec<Effect>, ApplyError> {
        if entry.sequence != self.next_sequence {
            return Err(ApplyError::SequenceGap { expected: self.next_sequence, got: entry.sequence });
        }
        if entry.epoch < self.epoch {
            return Err(ApplyError::StaleEpoch { sequence: entry.sequence, epoch: entry.epoch, current: self.epoch });
        }
        let inconsistent = |reason: String| ApplyError::Inconsistent { sequence: entry.sequence, reason };
        let effects = match &entry.kind {
            None => return Err(inconsistent("entry has no kind (written by a newer version?)".into())),
            Some(Kind::CreateDirectory(e)) => {
                let kind = InodeKind::Directory { children: BTreeMap::new() };
                self.insert(e.id, e.parent_id, &e.name, e.ownership.as_ref(), e.time_ms, kind).map_err(inconsistent)?;
                Vec::new()
            }
            Some(Kind::CreateFile(e)) => {
                if e.block_size_bytes == 0 {
                    return Err(inconsistent(format!("file {} has block size 0", e.id)));
                }
                let kind = InodeKind::File { block_size: e.block_size_bytes, length: 0, complete: false, persistence: PersistenceState::NotPersisted };
                self.insert(e.id, e.parent_id, &e.name, e.ownership.as_ref(), e.time_ms, kind).map_err(inconsistent)?;
                Vec::new()
            }
            Some(Kind::CompleteFile(e)) => {
                let inode = self.inodes.get_mut(&e.id).ok_or_else(|| inconsistent(format!("no inode {}", e.id)))?;
                match &mut inode.kind {
                    InodeKind::File { length, complete, block_size, persistence } if !*complete => {
                        if block_count(e.length, *block_size) > MAX_BLOCKS_PER_FILE {
                            return Err(inconsistent(format!("file {} has too many blocks", e.id)));
                        }
                        *persistence = PersistenceState::try_from(e.persistence)
                            .map_err(|_| inconsistent(format!("file {} has unknown persistence state {}", e.id, e.persistence)))?;
                        *length = e.length;
                        *complete = true;
                    }
                    _ => return Err(inconsistent(format!("inode {} is not an incomplete file", e.id))),
                }
                inode.modification_time_ms = e.time_ms;
                self.incomplete_files.remove(&e.id);
                Vec::new()
            }
            Some(Kind::PersistFile(e)) => {
                let inode = self.inodes.get_mut(&e.id).ok_or_else(|| inconsistent(format!("no inode {}", e.id)))?;
                match &mut inode.kind {
                    InodeKind::File { complete: true, persistence, .. } => *persistence = PersistenceState::Persisted,
                    _ => return Err(inconsistent(format!("inode {} is not a complete file", e.id))),
                }
                Vec::new()
            }
            Some(Kind::SetAttribute(e)) => {
                let ttl = Ttl::change_from_wire(e.ttl_ms, e.ttl_action).map_err(|why| inconsistent(format!("inode {}: {why}", e.id)))?;
                let inode = self.node(&e.id).ok_or_else(|| inconsistent(format!("no inode {}", e.id)))?;
                let pinned_ids: Vec<InodeId> = match e.pinned {
                    Some(_) => std::iter::once(e.id).chain(self.descendants(inode).iter().map(|i| i.id)).collect(),
                    None => Vec::new(),
                };
                for id in pinned_ids {
                    if let (Some(i), Some(pinned)) = (self.inodes.get_mut(&id), e.pinned) {
                        i.pinned = pinned;
                    }
                }
                if let Some(ttl) = ttl {
                    self.set_ttl(e.id, ttl);
                }
                Vec::new()
            }
            Some(Kind::SetOwnership(e)) => {
                if e.mode.is_some_and(|m| m > permission::MODE_BITS) {
                    return Err(inconsistent(format!("inode {}: mode {:o} has more than permission bits", e.id, e.mode.unwrap_or(0))));
                }
                let inode = self.node(&e.id).ok_or_else(|| inconsistent(format!("no inode {}", e.id)))?;
                let ids: Vec<InodeId> =
                    if e.recursive { std::iter::once(e.id).chain(self.descendants(inode).iter().map(|i| i.id)).collect() } else { vec![e.id] };
                let owner = e.owner.as_deref().map(|o| self.names.intern(o));
                let group = e.group.as_deref().map(|g| self.names.intern(g));
                for id in ids {
                    if let Some(i) = self.inodes.get_mut(&id) {
                        if let Some(owner) = &owner {
                            i.ownership.owner = owner.clone();
                        }
                        if let Some(group) = &group {
                            i.ownership.group = group.clone();
                        }
                        if let Some(mode) = e.mode {
                            i.ownership.mode = mode;
                        }
                    }
                }
                Vec::new()
            }
            Some(Kind::Mount(e)) => {
                if e.ufs_uri.is_empty() {
                    return Err(inconsistent(format!("mount {} has no under-storage address", e.id)));
                }
                let kind = InodeKind::Directory { children: BTreeMap::new() };
                self.insert(e.id, e.parent_id, &e.name, e.ownership.as_ref(), e.time_ms, kind).map_err(inconsistent)?;
                self.mounts.insert(e.id, Mount { ufs_uri: e.ufs_uri.clone(), options: e.options.clone() });
                Vec::new()
            }
            Some(Kind::Unmount(e)) => {
                if !self.mounts.contains_key(&e.id) {
                    return Err(inconsistent(format!("inode {} is not a mount point", e.id)));
                }
                let removed = self.remove_subtree(e.id, e.time_ms).map_err(inconsistent)?;
                vec![Effect::FilesRemoved(removed)]
            }
            Some(Kind::UfsIntent(e)) => {
                if e.id != entry.sequence || UfsIntentKind::try_from(e.kind).is_err() {
                    return Err(inconsistent(format!("bad under-storage intent {} (kind {})", e.id, e.kind)));
                }
                self.ufs_intents.insert(e.id, e.clone());
                Vec::new()
            }
            Some(Kind::UfsIntentDone(e)) => {
                self.ufs_intents.remove(&e.id).ok_or_else(|| inconsistent(format!("no pending under-storage intent {}", e.id)))?;
                Vec::new()
            }
            Some(Kind::Delete(e)) => {
                let removed = self.remove_subtree(e.id, e.time_ms).map_err(inconsistent)?;
                vec![Effect::FilesRemoved(removed)]
            }
            Some(Kind::Rename(e)) => {
                self.rename(e.id, e.new_parent_id, &e.new_name, e.time_ms).map_err(inconsistent)?;
                Vec::new()
            }
        };
        self.next_sequence += 1;
        self.epoch = entry.epoch;
        self.recent_requests.insert(&entry.request_id);
        Ok(effects)
    }

    /// Turns one operation's planned kinds into sequenced entries of `epoch` and applies
    /// them. All but the last entry are marked `continues`, so replay applies the operation
    /// all or nothing. If an entry does not apply (a planning bug), the entries applied so
    /// far are returned, the last of them closing the operation, with the error.
    pub fn apply_operation(&mut self, kinds: Vec<Kind>, epoch: u64) -> AppliedOperation {
        self.apply_request(kinds, epoch, "")
    }

    /// [`Namespace::apply_operation`] for a client request: its id rides on the last entry,
    /// and [`Namespace::request_applied`] is true for it afterwards.
    pub fn apply_request(&mut self, kinds: Vec<Kind>, epoch: u64, request_id: &str) -> AppliedOperation {
        let count = kinds.len();
        let mut out = AppliedOperation { entries: Vec::with_capacity(count), effects: Vec::new(), error: None };
        for (i, kind) in kinds.into_iter().enumerate() {
            let last = i + 1 == count;
            let entry = JournalEntry {
                sequence: self.next_sequence,
                epoch,
                continues: !last,
                request_id: if last { request_id.to_string() } else { String::new() },
                kind: Some(kind),
            };
            match self.apply(&entry) {
                Ok(effects) => {
                    out.effects.extend(effects);
                    out.entries.push(entry);
                }
                Err(e) => {
                    out.error = Some(e);
                    break;
                }
            }
        }
        if let Some(last) = out.entries.last_mut() {
            last.continues = false;
        }
        out
    }

    fn insert(&mut self, id: InodeId, parent_id: InodeId, name: &str, ownership: Option<&InodeOwnership>, time_ms: i64, kind: InodeKind) -> Result<(), String> {
        // Ids at or past `next_inode_id` are new (the common case: the map is not searched).
        if id < self.next_inode_id && self.inodes.contains_key(&id) {
            return Err(format!("inode {id} already exists"));
        }
        if id > MAX_INODE_ID {
            return Err(format!("inode id {id} out of range"));
        }
        if name.is_empty() || name.contains('/') {
            return Err(format!("bad name {name:?}"));
        }
        let parent = self.inodes.get_mut(&parent_id).ok_or_else(|| format!("no parent {parent_id}"))?;
        let InodeKind::Directory { children } = &mut parent.kind else {
            return Err(format!("parent {parent_id} is not a directory"));
        };
        let name = Name::new(name);
        match children.entry(name.clone()) {
            std::collections::btree_map::Entry::Occupied(_) => return Err(format!("{name:?} already exists in {parent_id}")),
            std::collections::btree_map::Entry::Vacant(slot) => slot.insert(id),
        };
        parent.modification_time_ms = time_ms;
        let pinned = parent.pinned;
        let ownership = match ownership {
            Some(o) => self.names.ownership(o),
            None => self.names.ownership(&InodeOwnership::default()),
        };
        let inode = Inode {
            id,
            parent_id,
            name,
            ownership,
            creation_time_ms: time_ms,
            modification_time_ms: time_ms,
            kind,
            // Whatever is created below a pinned directory is pinned too.
            pinned,
            ttl: None,
        };
        if matches!(inode.kind, InodeKind::File { complete: false, .. }) {
            self.incomplete_files.insert(id);
        }
        self.inodes.insert(id, Box::new(inode));
        self.next_inode_id = self.next_inode_id.max(id + 1);
        Ok(())
    }

    fn remove_subtree(&mut self, id: InodeId, time_ms: i64) -> Result<Vec<InodeId>, String> {
        if id == ROOT_ID {
            return Err("cannot delete the root".into());
        }
        let inode = self.node(&id).ok_or_else(|| format!("no inode {id}"))?;
        let (parent_id, name) = (inode.parent_id, inode.name.clone());
        let mut doomed = vec![id];
        doomed.extend(self.descendants(inode).iter().map(|i| i.id));
        if let Some(InodeKind::Directory { children }) = self.inodes.get_mut(&parent_id).map(|p| &mut p.kind) {
            children.remove(NameKey::new(&name));
        }
        if let Some(parent) = self.inodes.get_mut(&parent_id) {
            parent.modification_time_ms = time_ms;
        }
        let mut files = Vec::new();
        for d in doomed {
            self.mounts.remove(&d);
            self.set_ttl(d, None);
            self.incomplete_files.remove(&d);
            if let Some(removed) = self.inodes.remove(&d) {
                if !removed.is_directory() {
                    files.push(d);
                }
            }
        }
        files.sort_unstable();
        Ok(files)
    }

    fn rename(&mut self, id: InodeId, new_parent_id: InodeId, new_name: &str, time_ms: i64) -> Result<(), String> {
        if id == ROOT_ID {
            return Err("cannot rename the root".into());
        }
        if new_name.is_empty() || new_name.contains('/') {
            return Err(format!("bad name {new_name:?}"));
        }
        // The new parent must not be the inode itself or one of its descendants.
        let mut cursor = new_parent_id;
        loop {
            if cursor == id {
                return Err(format!("cannot move {id} below itself"));
            }
            if cursor == ROOT_ID {
                break;
            }
            cursor = self.node(&cursor).ok_or_else(|| format!("no inode {cursor}"))?.parent_id;
        }
        match self.node(&new_parent_id).map(|p| &p.kind) {
            Some(InodeKind::Directory { children }) if !children.contains_key(NameKey::new(new_name)) => {}
            Some(InodeKind::Directory { .. }) => return Err(format!("{new_name:?} exists in {new_parent_id}")),
            _ => return Err(format!("new parent {new_parent_id} is not a directory")),
        }
        let inode = self.node(&id).ok_or_else(|| format!("no inode {id}"))?;
        let (old_parent, old_name) = (inode.parent_id, inode.name.clone());
        let name = Name::new(new_name);
        for (parent, add) in [(old_parent, false), (new_parent_id, true)] {
            if let Some(p) = self.inodes.get_mut(&parent) {
                if let InodeKind::Directory { children } = &mut p.kind {
                    if add {
                        children.insert(name.clone(), id);
                    } else {
                        children.remove(NameKey::new(&old_name));
                    }
                }
                p.modification_time_ms = time_ms;
            }
        }
        if let Some(inode) = self.inodes.get_mut(&id) {
            inode.parent_id = new_parent_id;
            inode.name = name;
        }
        Ok(())
    }

    // ─────────────────────────── checkpoints ───────────────────────────

    /// The whole state as a checkpoint record.
    pub fn to_checkpoint(&self) -> Checkpoint {
        let inodes = self
            .inodes
            .values()
            .map(|i| {
                let (is_directory, block_size, length, complete, persistence) = match i.kind {
                    InodeKind::Directory { .. } => (true, 0, 0, false, PersistenceState::NotPersisted),
                    InodeKind::File { block_size, length, complete, persistence } => (false, block_size, length, complete, persistence),
                };
                InodeRecord {
                    id: i.id,
                    parent_id: i.parent_id,
                    name: i.name.to_string(),
                    is_directory,
                    ownership: Some(i.ownership.to_proto()),
                    creation_time_ms: i.creation_time_ms,
                    modification_time_ms: i.modification_time_ms,
                    block_size_bytes: block_size,
                    length,
                    complete,
                    persistence: persistence as i32,
                    pinned: i.pinned,
                    ttl_ms: i.ttl.map(|t| t.ttl_ms),
                    ttl_action: i.ttl.map_or(TtlAction::TtlDelete, |t| t.action) as i32,
                }
            })
            .collect();
        Checkpoint {
            next_sequence: self.next_sequence,
            epoch: self.epoch,
            next_inode_id: self.next_inode_id,
            inodes,
            recent_request_ids: self.recent_requests.order.iter().cloned().collect(),
            mounts: self.mounts.iter().map(|(id, m)| MountRecord { id: *id, ufs_uri: m.ufs_uri.clone(), options: m.options.clone() }).collect(),
            ufs_intents: self.ufs_intents.values().cloned().collect(),
        }
    }

    /// Rebuilds the state from a checkpoint, checking that it forms a proper tree.
    pub fn from_checkpoint(cp: &Checkpoint) -> Result<Namespace, String> {
        let mut ns = Namespace::new();
        // In id order, so the inode map grows at its end (a checkpoint lists inodes in id
        // order; a random order would cost a cache miss per level of a deep tree). An inode
        // whose parent is not there yet (a parent can have a larger id after a rename) waits
        // until it is.
        let mut records: Vec<&InodeRecord> = cp.inodes.iter().filter(|r| r.id != ROOT_ID).collect();
        records.sort_by_key(|r| r.id);
        let mut waiting: BTreeMap<InodeId, Vec<&InodeRecord>> = BTreeMap::new();
        for r in records {
            if !ns.inodes.contains_key(&r.parent_id) {
                waiting.entry(r.parent_id).or_default().push(r);
                continue;
            }
            let mut ready = vec![r];
            while let Some(r) = ready.pop() {
                let kind = if r.is_directory {
                    InodeKind::Directory { children: BTreeMap::new() }
                } else {
                    let persistence = PersistenceState::try_from(r.persistence)
                        .map_err(|_| format!("checkpoint inode {} has unknown persistence state {}", r.id, r.persistence))?;
                    InodeKind::File { block_size: r.block_size_bytes, length: r.length, complete: r.complete, persistence }
                };
                ns.insert(r.id, r.parent_id, &r.name, r.ownership.as_ref(), r.creation_time_ms, kind)?;
                if !waiting.is_empty() {
                    ready.extend(waiting.remove(&r.id).unwrap_or_default());
                }
            }
        }
        if let Some((parent, _)) = waiting.into_iter().next() {
            return Err(format!("checkpoint has inodes under missing or non-directory parent {parent}"));
        }
        for r in &cp.inodes {
            // A checkpoint holds no negative TTL: absent means none.
            let ttl = Ttl::change_from_wire(r.ttl_ms, r.ttl_action).map_err(|why| format!("checkpoint inode {}: {why}", r.id))?.flatten();
            let root_ownership = (r.id == ROOT_ID).then(|| ns.names.ownership(&r.ownership.clone().unwrap_or_default()));
            if let Some(inode) = ns.inodes.get_mut(&r.id) {
                inode.modification_time_ms = r.modification_time_ms;
                inode.pinned = r.pinned;
                if let Some(ownership) = root_ownership {
                    inode.ownership = ownership;
                }
            }
            ns.set_ttl(r.id, ttl);
        }
        if cp.next_inode_id < ns.next_inode_id {
            return Err(format!("checkpoint next inode id {} is below an existing id", cp.next_inode_id));
        }
        ns.next_inode_id = cp.next_inode_id;
        ns.next_sequence = cp.next_sequence;
        ns.epoch = cp.epoch;
        for id in &cp.recent_request_ids {
            ns.recent_requests.insert(id);
        }
        for m in &cp.mounts {
            if !ns.node(&m.id).is_some_and(|i| i.is_directory() && i.id != ROOT_ID) {
                return Err(format!("checkpoint mounts {} at inode {}, which is not a directory", m.ufs_uri, m.id));
            }
            ns.mounts.insert(m.id, Mount { ufs_uri: m.ufs_uri.clone(), options: m.options.clone() });
        }
        for intent in &cp.ufs_intents {
            ns.ufs_intents.insert(intent.id, intent.clone());
        }
        Ok(ns)
    }

    /// A digest of the whole state; equal digests mean equal namespaces.
    pub fn digest(&self) -> u32 {
        crc32c::crc32c(&self.to_checkpoint().encode_to_vec())
    }

    /// Checks the tree invariants; returns the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        for inode in self.inodes.values().map(|b| &**b) {
            if inode.id >= self.next_inode_id {
                return Err(format!("inode {} not below next id {}", inode.id, self.next_inode_id));
            }
            if let InodeKind::Directory { children } = &inode.kind {
                for (name, child) in children {
                    let c = self.node(child).ok_or_else(|| format!("dir {} lists missing {child}", inode.id))?;
                    if c.parent_id != inode.id || *c.name != **name {
                        return Err(format!("inode {child} is listed as {name:?} in {} but disagrees", inode.id));
                    }
                }
            }
            if inode.id == ROOT_ID {
                continue;
            }
            let parent = self.node(&inode.parent_id).ok_or_else(|| format!("orphan inode {}", inode.id))?;
            match &parent.kind {
                InodeKind::Directory { children } if children.get(NameKey::new(&inode.name)) == Some(&inode.id) => {}
                _ => return Err(format!("inode {} is missing from its parent {}", inode.id, parent.id)),
            }
        }
        for id in self.mounts.keys() {
            if !self.node(id).is_some_and(|i| i.is_directory() && i.id != ROOT_ID) {
                return Err(format!("mount point {id} is not a directory"));
            }
        }
        let deadlines: BTreeSet<(i64, InodeId)> =
            self.inodes.values().map(|b| &**b).filter_map(|i| i.ttl.map(|t| (i.creation_time_ms.saturating_add(t.ttl_ms), i.id))).collect();
        if deadlines != self.ttl_deadlines {
            return Err("the TTL deadline index disagrees with the inodes".into());
        }
        let incomplete: BTreeSet<InodeId> =
            self.inodes.values().map(|b| &**b).filter(|i| matches!(i.kind, InodeKind::File { complete: false, .. })).map(|i| i.id).collect();
        if incomplete != self.incomplete_files {
            return Err("the index of files being written disagrees with the inodes".into());
        }
        let reachable = 1 + self.descendants(&self.inodes[&ROOT_ID]).len();
        if reachable != self.inodes.len() {
            return Err(format!("{} inodes but {reachable} reachable from the root", self.inodes.len()));
        }
        Ok(())
    }

    /// Total bytes of the complete files below (and including) `inode`.
    pub fn total_length(&self, inode: &Inode) -> u64 {
        std::iter::once(inode)
            .chain(self.descendants(inode))
            .map(|i| match i.kind {
                InodeKind::File { length, .. } => length,
                InodeKind::Directory { .. } => 0,
            })
            .sum()
    }
}

fn take_id(next: &mut InodeId) -> Result<InodeId, FsError> {
    if *next > MAX_INODE_ID {
        return Err(FsError::OutOfSpace { reason: "inode ids exhausted".into() });
    }
    let id = *next;
    *next += 1;
    Ok(id)
}

/// `ownership` for a directory made on the way (see [`permission::directory_mode`]).
fn directory_ownership(ownership: &InodeOwnership) -> InodeOwnership {
    InodeOwnership { mode: permission::directory_mode(ownership.mode), ..ownership.clone() }
}

fn components_path(components: &[String]) -> String {
    let mut s = String::new();
    for c in components {
        s.push('/');
        s.push_str(c);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}
