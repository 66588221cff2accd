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

/// Identifies an inode. The root is [`ROOT_ID`].
pub type InodeId = u64;
/// Identifies a block: the file's inode id in the high 40 bits, the block index in the low 24.
pub type BlockId = u64;

/// The root directory's id.
pub const ROOT_ID: InodeId = 0;
/// Bits of a block id that hold the index of the block within its file.
pub const BLOCK_INDEX_BITS: u32 = 24;
/// Largest inode id that still fits a block id.
pub const MAX_INODE_ID: InodeId = (1 << (64 - BLOCK_INDEX_BITS)) - 1;
/// Most blocks one file may have.
pub const MAX_BLOCKS_PER_FILE: u64 = 1 << BLOCK_INDEX_BITS;

/// The id of block `index` of file `file_id`.
pub fn block_id(file_id: InodeId, index: u64) -> BlockId {
    debug_assert!(file_id <= MAX_INODE_ID && index < MAX_BLOCKS_PER_FILE);
    (file_id << BLOCK_INDEX_BITS) | index
}

/// The file a block belongs to.
pub fn file_of_block(block: BlockId) -> InodeId {
    block >> BLOCK_INDEX_BITS
}

/// Number of blocks of a file of `length` bytes cut into `block_size` pieces.
pub fn block_count(length: u64, block_size: u64) -> u64 {
    if block_size == 0 {
        return 0;
    }
    length.div_ceil(block_size)
}

/// Length of block `index` of a file of `length` bytes.
pub fn block_length(length: u64, block_size: u64, index: u64) -> u64 {
    let start = index.saturating_mul(block_size);
    length.saturating_sub(start).min(block_size)
}

/// An inode's name, also its key in the parent directory. Up to 23 bytes it lives inside
/// the value (no allocation; a directory search compares it without chasing a pointer),
/// longer ones are shared between the inode and its parent's key. Ordered byte by byte as
/// `str` is, but compared inline: a call to `memcmp` per comparison was a fifth of replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(smol_str::SmolStr);

impl Name {
    /// `name` as an inode name.
    pub fn new(name: &str) -> Name {
        Name(smol_str::SmolStr::new(name))
    }
}

/// The borrowed form of [`Name`], to look a `&str` up without allocating.
#[derive(Debug, Eq)]
#[repr(transparent)]
pub struct NameKey(str);

impl PartialEq for NameKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.cmp(other).is_eq()
    }
}

impl NameKey {
    /// `name` as a key.
    pub fn new(name: &str) -> &NameKey {
        // SAFETY: NameKey is a repr(transparent) wrapper of str, so the two references have
        // the same layout and the same lifetime.
        unsafe { &*(name as *const str as *const NameKey) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for NameKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        let common = a.len().min(b.len());
        let (mut a_words, mut b_words) = (a[..common].chunks_exact(8), b[..common].chunks_exact(8));
        for (x, y) in (&mut a_words).zip(&mut b_words) {
            let (x, y) = (u64::from_be_bytes(x.try_into().unwrap_or_default()), u64::from_be_bytes(y.try_into().unwrap_or_default()));
            if x != y {
                return x.cmp(&y);
            }
        }
        // Both remainders have the same length (under 8): compare them as one padded word.
        let padded = |rest: &[u8]| {
            let word = rest.iter().fold(0u64, |word, &byte| word << 8 | u64::from(byte));
            word.checked_shl(8 * (8 - rest.len() as u32)).unwrap_or(0)
        };
        padded(a_words.remainder()).cmp(&padded(b_words.remainder())).then(a.len().cmp(&b.len()))
    }
}

impl PartialOrd for NameKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        NameKey::new(self).cmp(NameKey::new(other))
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::borrow::Borrow<NameKey> for Name {
    fn borrow(&self) -> &NameKey {
        NameKey::new(self)
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// What kind of inode, with the kind's own fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InodeKind {
    /// Children by name; each name is the same allocation as the child's own `name`.
    Directory {
        children: BTreeMap<Name, InodeId>,
    },
    File {
        block_size: u64,
        length: u64,
        complete: bool,
        persistence: PersistenceState,
    },
}

/// A time to live: `action` runs once `ttl_ms` have passed since the inode's creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl {
    pub ttl_ms: i64,
    pub action: TtlAction,
}

/// A file or directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub id: InodeId,
    pub parent_id: InodeId,
    pub name: Name,
    pub ownership: Ownership,
    pub creation_time_ms: i64,
    pub modification_time_ms: i64,
    pub kind: InodeKind,
    /// Pinned blocks are never evicted from workers (and `free` refuses them).
    pub pinned: bool,
    pub ttl: Option<Ttl>,
}

impl Ttl {
    /// The TTL change a request or journal entry carries: absent leaves the TTL alone, a
    /// negative `ttl_ms` clears it, anything else sets it with `action` (a `TtlAction`).
    pub fn change_from_wire(ttl_ms: Option<i64>, action: i32) -> Result<Option<Option<Ttl>>, String> {
        match ttl_ms {
            None => Ok(None),
            Some(ms) if ms < 0 => Ok(Some(None)),
            Some(ttl_ms) => {
                let action = TtlAction::try_from(action).map_err(|_| format!("unknown TTL action {action}"))?;
                Ok(Some(Some(Ttl { ttl_ms, action })))
            }
        }
    }
}

/// Attributes to change with [`Namespace::plan_set_attribute`]; `None` leaves one alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttributeChange {
    pub pinned: Option<bool>,
    /// `Some(None)` clears the TTL.
    pub ttl: Option<Option<Ttl>>,
}

/// Owner, group and mode to set with [`Namespace::plan_set_ownership`]; `None` leaves one
/// alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnershipChange {
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
    /// Also every inode below the path.
    pub recursive: bool,
}

/// An under-storage mounted at a directory of the namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mount {
    pub ufs_uri: String,
    /// Under-storage settings for this mount only (S3 endpoint, credentials, ...).
    pub options: BTreeMap<String, String>,
}

/// A mount point: where it is and what is mounted there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPoint {
    pub path: FsPath,
    pub mount: Mount,
}

/// Where a tachyon path lives in under-storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UfsLocation {
    /// The mount point the path is below; `None` for the root under-storage
    /// (`tachyon.underfs.address`).
    pub mount: Option<MountPoint>,
    /// The path below that under-storage's root, without a leading `/` (empty for its root).
    pub relative: String,
}

impl UfsLocation {
    /// The mount point's path as intents record it: empty for the root under-storage.
    pub fn mount_path(&self) -> String {
        self.mount.as_ref().map(|m| m.path.to_string()).unwrap_or_default()
    }

    /// Where `path` lives given the mount `points`: below the deepest one on its way from
    /// the root, or in the root under-storage.
    pub fn resolve(points: &[MountPoint], path: &FsPath) -> UfsLocation {
        let deepest = points.iter().filter(|m| path.starts_with(&m.path)).max_by_key(|m| m.path.components().len());
        let depth = deepest.map_or(0, |m| m.path.components().len());
        UfsLocation { mount: deepest.cloned(), relative: path.components()[depth..].join("/") }
    }
}

/// What the TTL checker must do: run `action` on `path` (its TTL ran out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub id: InodeId,
    pub path: FsPath,
    pub action: TtlAction,
}

impl Inode {
    /// True for a directory.
    pub fn is_directory(&self) -> bool {
        matches!(self.kind, InodeKind::Directory { .. })
    }

    /// The ids of this file's blocks (empty for directories and incomplete files).
    pub fn block_ids(&self) -> Vec<BlockId> {
        match self.kind {
            InodeKind::File { block_size, length, complete: true, .. } => (0..block_count(length, block_size)).map(|i| block_id(self.id, i)).collect(),
            _ => Vec::new(),
        }
    }
}

impl Inode {
    /// The length of `block` if it is one of this complete file's blocks.
    pub fn expected_block_length(&self, block: BlockId) -> Option<u64> {
        match self.kind {
            InodeKind::File { block_size, length, complete: true, .. } if file_of_block(block) == self.id => {
                let index = block & (MAX_BLOCKS_PER_FILE - 1);
                (index < block_count(length, block_size)).then(|| block_length(length, block_size, index))
            }
            _ => None,
        }
    }
}

/// One name in an under-storage directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnderStorageEntry {
    pub name: String,
    pub is_directory: bool,
    /// Bytes, for files.
    pub length: u64,
}

/// Checks a new file's block size against the smallest allowed (`0` means the default and
/// is fine): a tiny block size would give one file millions of blocks to track and list.
pub fn check_block_size(block_size: u64, min_block_size: u64) -> Result<(), FsError> {
    if block_size != 0 && block_size < min_block_size {
        return Err(FsError::InvalidArgument {
            reason: format!("block size {block_size} bytes is below the minimum of {min_block_size} (tachyon.master.block.size.bytes.min)"),
        });
    }
    Ok(())
}

/// Longest owner or group name (POSIX allows 32 bytes; directory services more).
pub const MAX_OWNER_BYTES: usize = 256;

/// Checks an owner, group and mode a client sent: bounded, printable names (they are copied
/// into every parent a create makes and shown in listings and terminals) and only
/// permission bits.
pub fn check_ownership(o: &InodeOwnership) -> Result<(), FsError> {
    for (what, name) in [("owner", &o.owner), ("group", &o.group)] {
        if name.len() > MAX_OWNER_BYTES {
            return Err(FsError::InvalidArgument { reason: format!("{what} name longer than {MAX_OWNER_BYTES} bytes") });
        }
        if name.chars().any(|c| c.is_control() || c == ':' || c.is_whitespace()) {
            return Err(FsError::InvalidArgument { reason: format!("{what} name {name:?} has a control character, a space or ':'") });
        }
    }
    if o.mode > 0o7777 {
        return Err(FsError::InvalidArgument { reason: format!("mode {:o} has bits besides the permission bits (at most 7777)", o.mode) });
    }
    Ok(())
}

/// True for the temporary name a client writes a file's under-storage copy under
/// (`.<name>.tachyon-<request>.tmp`) before renaming it into place.
pub fn is_upload_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp") && name.contains(".tachyon-")
}

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

/// Owner and group names, each stored once and shared by every inode that has it. Derived
/// state: not checkpointed, never compared (two namespaces with the same inodes are equal
/// whatever names each has interned). Pruned of unused names as it doubles, so it holds at
/// most about twice the names in use.
#[derive(Clone, Debug, Default)]
struct Interner {
    names: BTreeSet<Arc<str>>,
    /// Size after the last prune; the next prune comes at twice this.
    pruned_at: usize,
    /// The owner and group interned last: runs of entries mostly share them.
    last: Option<(Arc<str>, Arc<str>)>,
}

impl PartialEq for Interner {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Interner {
    /// Names below this many are never pruned.
    const PRUNE_FLOOR: usize = 1024;

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.get(name) {
            return known.clone();
        }
        if self.names.len() >= (2 * self.pruned_at).max(Self::PRUNE_FLOOR) {
            // Only this set holds a name no inode has any more.
            self.names.retain(|n| Arc::strong_count(n) > 1);
            self.pruned_at = self.names.len();
        }
        let name: Arc<str> = Arc::from(name);
        self.names.insert(name.clone());
        name
    }

    fn ownership(&mut self, o: &InodeOwnership) -> Ownership {
        let (owner, group) = match &self.last {
            Some((owner, group)) if NameKey::new(owner) == NameKey::new(&o.owner) && NameKey::new(group) == NameKey::new(&o.group) => {
                (owner.clone(), group.clone())
            }
            _ => {
                let pair = (self.intern(&o.owner), self.intern(&o.group));
                self.last = Some(pair.clone());
                pair
            }
        };
        Ownership { owner, group, mode: o.mode }
    }
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
        // Parents may have larger ids than children (after a rename): insert in tree order.
        let mut by_parent: BTreeMap<InodeId, Vec<&InodeRecord>> = BTreeMap::new();
        for r in cp.inodes.iter().filter(|r| r.id != ROOT_ID) {
            by_parent.entry(r.parent_id).or_default().push(r);
        }
        let mut queue = vec![ROOT_ID];
        while let Some(parent) = queue.pop() {
            for r in by_parent.remove(&parent).unwrap_or_default() {
                let kind = if r.is_directory {
                    InodeKind::Directory { children: BTreeMap::new() }
                } else {
                    let persistence = PersistenceState::try_from(r.persistence)
                        .map_err(|_| format!("checkpoint inode {} has unknown persistence state {}", r.id, r.persistence))?;
                    InodeKind::File { block_size: r.block_size_bytes, length: r.length, complete: r.complete, persistence }
                };
                ns.insert(r.id, r.parent_id, &r.name, r.ownership.as_ref(), r.creation_time_ms, kind)?;
                queue.push(r.id);
            }
        }
        if let Some((parent, _)) = by_parent.into_iter().next() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> InodeOwnership {
        InodeOwnership { owner: "alice".into(), group: "staff".into(), mode: 0o644 }
    }

    /// [`own`] for a directory made on the way: executable where readable, `u+wx`.
    fn dir_own() -> InodeOwnership {
        InodeOwnership { mode: 0o755, ..own() }
    }

    fn p(s: &str) -> FsPath {
        FsPath::parse(s).unwrap()
    }

    proptest::proptest! {
        /// Directories list children in `str` order: the inline comparison must agree with
        /// it for any two names (shared prefixes, word boundaries, multi-byte characters).
        #[test]
        fn name_keys_order_as_str_does(a in "[a-c\u{e9}\u{1f600}]{0,20}", b in "[a-c\u{e9}\u{1f600}]{0,20}") {
            proptest::prop_assert_eq!(NameKey::new(&a).cmp(NameKey::new(&b)), a.as_str().cmp(b.as_str()));
            proptest::prop_assert_eq!(Name::new(&a).cmp(&Name::new(&b)), a.cmp(&b));
        }
    }

    #[test]
    fn owner_names_are_shared_and_unused_ones_pruned() {
        let mut names = Interner::default();
        let first = names.intern("alice");
        assert!(Arc::ptr_eq(&first, &names.intern("alice")), "one allocation per name");
        drop(first);
        for i in 0..Interner::PRUNE_FLOOR {
            names.intern(&format!("user{i}"));
        }
        let kept = names.intern("kept");
        // Every name above went unused, so the set was pruned as it reached the floor.
        assert!(names.names.len() <= 2, "{} names left", names.names.len());
        assert!(names.names.contains(&kept));
    }

    /// Applies planned kinds as the master does, returning all effects.
    fn commit(ns: &mut Namespace, kinds: Vec<Kind>) -> Vec<Effect> {
        let applied = ns.apply_operation(kinds, 1);
        assert_eq!(applied.error, None);
        applied.effects
    }

    fn user(name: &str, groups: &[&str]) -> Caller {
        Caller { user: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), superuser: false }
    }

    /// Creates `path` (a directory if it ends in '/') owned by `owner:group` with `mode`.
    fn make(ns: &mut Namespace, path: &str, owner: &str, group: &str, mode: u32) {
        let o = InodeOwnership { owner: owner.into(), group: group.into(), mode };
        let kinds = match path.strip_suffix('/') {
            Some(dir) => ns.plan_create_directory(&p(dir), false, false, &o, 1).unwrap(),
            None => ns.plan_create_file(&p(path), 1024, false, &o, 1).unwrap(),
        };
        commit(ns, kinds);
    }

    /// /home (root 755), /home/alice (alice:staff 750), /home/alice/notes (alice 640),
    /// /tmp (root 1777), /tmp/bobs (bob 644), /shared (root:dev 775), /shared/x/ (bob 700) + /shared/x/y.
    fn permission_tree() -> Namespace {
        let mut ns = Namespace::new();
        make(&mut ns, "/home/", "root", "root", 0o755);
        make(&mut ns, "/home/alice/", "alice", "staff", 0o750);
        make(&mut ns, "/home/alice/notes", "alice", "staff", 0o640);
        make(&mut ns, "/tmp/", "root", "root", 0o1777);
        make(&mut ns, "/tmp/bobs", "bob", "bob", 0o644);
        make(&mut ns, "/shared/", "root", "dev", 0o775);
        make(&mut ns, "/shared/x/", "bob", "bob", 0o700);
        make(&mut ns, "/shared/x/y", "bob", "bob", 0o600);
        ns
    }

    fn denied_at(r: Result<(), FsError>) -> String {
        match r {
            Err(FsError::PermissionDenied { path, .. }) => path,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn permission_checks_follow_hdfs_rules_with_exact_outcomes() {
        let ns = permission_tree();
        let (alice, bob, carol) = (user("alice", &["staff"]), user("bob", &["bob", "dev"]), user("carol", &["staff"]));
        // Traverse needs x on every directory above; the target's own bits decide reads.
        assert_eq!(ns.check_access(&alice, &p("/home/alice/notes"), Checks::READ_TARGET), Ok(()));
        assert_eq!(ns.check_access(&carol, &p("/home/alice/notes"), Checks::READ_TARGET), Ok(()), "group staff reads");
        assert_eq!(denied_at(ns.check_access(&bob, &p("/home/alice/notes"), Checks::READ_TARGET)), "/home/alice", "no x on alice's home");
        assert_eq!(denied_at(ns.check_access(&carol, &p("/home/alice/notes"), Checks::WRITE_TARGET)), "/home/alice/notes");
        let err = ns.check_access(&carol, &p("/home/alice/notes"), Checks::WRITE_TARGET).unwrap_err().to_string();
        assert!(err.contains("user=carol") && err.contains("access=-w-") && err.contains("alice:staff") && err.contains("-rw-r-----"), "{err}");
        // Listing needs r-x on the directory.
        assert_eq!(ns.check_access(&carol, &p("/home/alice"), Checks::list(false)), Ok(()));
        assert_eq!(denied_at(ns.check_access(&bob, &p("/home/alice"), Checks::list(false))), "/home/alice");
        // Creating needs w on the deepest existing ancestor, also for missing parents.
        assert_eq!(denied_at(ns.check_access(&alice, &p("/new"), Checks::CREATE)), "/");
        assert_eq!(ns.check_access(&alice, &p("/home/alice/a/b/c"), Checks::CREATE), Ok(()));
        assert_eq!(denied_at(ns.check_access(&carol, &p("/home/alice/a/b/c"), Checks::CREATE)), "/home/alice");
        assert_eq!(ns.check_access(&bob, &p("/shared/new"), Checks::CREATE), Ok(()), "group dev writes /shared");
        // Sticky /tmp: anyone creates, only the owner (or /tmp's owner) removes.
        assert_eq!(ns.check_access(&alice, &p("/tmp/mine"), Checks::CREATE), Ok(()));
        assert_eq!(denied_at(ns.check_access(&alice, &p("/tmp/bobs"), Checks::delete(false))), "/tmp/bobs");
        assert_eq!(ns.check_access(&bob, &p("/tmp/bobs"), Checks::delete(false)), Ok(()));
        assert_eq!(ns.check_access(&user("root", &[]), &p("/tmp/bobs"), Checks::delete(false)), Ok(()), "the directory's owner");
        // A recursive delete needs rwx on every non-empty directory below.
        assert_eq!(denied_at(ns.check_access(&user("dave", &["dev"]), &p("/shared/x"), Checks::delete(true))), "/shared/x");
        assert_eq!(ns.check_access(&bob, &p("/shared/x"), Checks::delete(true)), Ok(()));
        // Ownership checks; a missing target is left to the plan.
        assert_eq!(denied_at(ns.check_access(&carol, &p("/home/alice/notes"), Checks::OWNER)), "/home/alice/notes");
        assert_eq!(ns.check_access(&alice, &p("/home/alice/missing"), Checks::WRITE_TARGET), Ok(()));
        // The superuser passes everything.
        assert_eq!(ns.check_access(&Caller::superuser("root"), &p("/shared/x/y"), Checks::delete(true)), Ok(()));
    }

    #[test]
    fn ownership_changes_are_planned_for_whom_may_make_them_and_applied_exactly() {
        let mut ns = permission_tree();
        let (alice, carol) = (user("alice", &["staff", "dev"]), user("carol", &["staff"]));
        let change = |owner: Option<&str>, group: Option<&str>, mode: Option<u32>, recursive| OwnershipChange {
            owner: owner.map(String::from),
            group: group.map(String::from),
            mode,
            recursive,
        };
        let home = p("/home/alice");
        assert!(
            matches!(ns.plan_set_ownership(&alice, &home, &change(Some("carol"), None, None, false), 5), Err(FsError::PermissionDenied { .. })),
            "chown needs a superuser"
        );
        assert!(
            matches!(ns.plan_set_ownership(&carol, &home, &change(None, None, Some(0o777), false), 5), Err(FsError::PermissionDenied { .. })),
            "chmod needs the owner"
        );
        assert!(
            matches!(ns.plan_set_ownership(&alice, &home, &change(None, Some("ops"), None, false), 5), Err(FsError::PermissionDenied { .. })),
            "chgrp into a group alice is not in"
        );
        assert!(ns.plan_set_ownership(&alice, &home, &change(None, None, Some(0o750), false), 5).unwrap().is_empty(), "nothing changes");
        assert!(ns.plan_set_ownership(&alice, &home, &change(None, None, Some(0o10000), false), 5).is_err(), "only permission bits");
        let kinds = ns.plan_set_ownership(&alice, &home, &change(None, Some("dev"), Some(0o700), true), 5).unwrap();
        let id = ns.lookup(&home).unwrap().id;
        assert_eq!(
            kinds,
            vec![Kind::SetOwnership(SetOwnershipEntry { id, time_ms: 5, owner: None, group: Some("dev".into()), mode: Some(0o700), recursive: true })]
        );
        commit(&mut ns, kinds);
        for path in ["/home/alice", "/home/alice/notes"] {
            assert_eq!(ns.lookup(&p(path)).unwrap().ownership.to_proto(), InodeOwnership { owner: "alice".into(), group: "dev".into(), mode: 0o700 }, "{path}");
        }
        // A recursive chmod by someone who does not own everything below is refused whole.
        let root = Caller::superuser("root");
        let chown = ns.plan_set_ownership(&root, &p("/home/alice/notes"), &change(Some("bob"), None, None, false), 6).unwrap();
        commit(&mut ns, chown);
        let refused = ns.plan_set_ownership(&alice, &home, &change(None, None, Some(0o755), true), 7);
        assert!(matches!(&refused, Err(FsError::PermissionDenied { path, .. }) if path == "/home/alice/notes"), "{refused:?}");
        // Survives a checkpoint.
        let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
        assert_eq!(back.lookup(&p("/home/alice/notes")).unwrap().ownership.owner, "bob".into());
        assert_eq!(back.digest(), ns.digest());
    }

    #[test]
    fn abandoned_writes_are_incomplete_files_silent_past_the_timeout() {
        let mut ns = Namespace::new();
        for (path, t) in [("/old", 100), ("/busy", 100), ("/new", 900)] {
            let kinds = ns.plan_create_file(&p(path), 1024, false, &own(), t).unwrap();
            commit(&mut ns, kinds);
        }
        let done = ns.plan_create_file(&p("/done"), 1024, false, &own(), 100).unwrap();
        commit(&mut ns, done);
        let complete = ns.plan_complete_file(&p("/done"), 0, PersistenceState::NotPersisted, |_| None, 150).unwrap();
        commit(&mut ns, complete);
        let busy = ns.lookup(&p("/busy")).unwrap().id;
        let last_write = |id| (id == busy).then_some(800);
        let found: Vec<String> = ns.abandoned_writes(1000, 500, last_write, 10).into_iter().map(|(_, p)| p.to_string()).collect();
        assert_eq!(found, ["/old"], "busy wrote a block at 800, new was created at 900, done is complete");
        let old = ns.lookup(&p("/old")).unwrap().id;
        assert_eq!(ns.plan_reap_abandoned(old, 1000, 500, None), vec![Kind::Delete(DeleteEntry { id: old, time_ms: 1000 })]);
        assert!(ns.plan_reap_abandoned(old, 1000, 500, Some(700)).is_empty(), "written since it was found");
        assert!(ns.plan_reap_abandoned(busy, 1000, 500, Some(800)).is_empty());
        assert!(ns.abandoned_writes(1000, 500, |_| None, 1).len() == 1, "the limit");
    }

    #[test]
    fn workers_may_store_only_blocks_the_namespace_expects() {
        let mut ns = Namespace::new();
        let create = ns.plan_create_file(&p("/f"), 1000, false, &own(), 1).unwrap();
        commit(&mut ns, create);
        let f = ns.lookup(&p("/f")).unwrap().id;
        assert_eq!(ns.check_block_write(block_id(f, 0), 1000), Ok(()), "a block of a file being written");
        assert!(matches!(ns.check_block_write(block_id(f, 0), 1001), Err(FsError::InvalidArgument { .. })), "more than the block size");
        assert!(matches!(ns.check_block_write(block_id(f + 1, 0), 10), Err(FsError::NotFound { .. })), "no such file");
        assert!(matches!(ns.check_block_write(block_id(ROOT_ID, 0), 10), Err(FsError::NotFound { .. })), "a directory");
        let complete = ns.plan_complete_file(&p("/f"), 1500, PersistenceState::Persisted, |_| None, 2).unwrap();
        commit(&mut ns, complete);
        assert_eq!(ns.check_block_write(block_id(f, 1), 500), Ok(()), "exactly a block of a persisted file: a cache fill");
        assert!(matches!(ns.check_block_write(block_id(f, 1), 1000), Err(FsError::FileAlreadyComplete { .. })), "the wrong length");
        assert!(matches!(ns.check_block_write(block_id(f, 2), 1), Err(FsError::FileAlreadyComplete { .. })), "past the last block");
    }

    #[test]
    fn listing_pages_resume_in_order_whatever_changed_between_pages() {
        let mut ns = Namespace::new();
        for d in ["/d/a/x", "/d/a/y", "/d/a-b", "/d/c/z/deep", "/d/e"] {
            let kinds = ns.plan_create_directory(&p(d), true, false, &own(), 1).unwrap();
            commit(&mut ns, kinds);
        }
        let dir_path = p("/d");
        let dir = ns.lookup(&dir_path).unwrap();
        let names = |page: &[&Inode]| page.iter().map(|i| ns.path_of(i.id).unwrap().to_string()).collect::<Vec<_>>();
        let everything = names(&ns.descendants(dir));
        // Recursive pages of every size concatenate to the full listing.
        for limit in 1..=everything.len() + 1 {
            let (mut all, mut after) = (Vec::new(), None::<FsPath>);
            loop {
                let (page, more) = ns.list_page(dir, &dir_path, true, after.as_ref(), limit).unwrap();
                assert!(page.len() <= limit);
                all.extend(names(&page));
                if !more {
                    break;
                }
                after = Some(p(all.last().unwrap()));
            }
            assert_eq!(all, everything, "page size {limit}");
        }
        assert_eq!(everything, ["/d/a", "/d/a/x", "/d/a/y", "/d/a-b", "/d/c", "/d/c/z", "/d/c/z/deep", "/d/e"]);
        // Non-recursive: children only, resumable by name.
        let (page, more) = ns.list_page(dir, &dir_path, false, Some(&p("/d/a")), 2).unwrap();
        assert_eq!((names(&page), more), (vec!["/d/a-b".to_string(), "/d/c".to_string()], true));
        // The last entry of a page disappeared: the next page starts at the next name.
        let (page, more) = ns.list_page(dir, &dir_path, true, Some(&p("/d/c/gone/below")), 2).unwrap();
        assert_eq!((names(&page), more), (vec!["/d/c/z".to_string(), "/d/c/z/deep".to_string()], true));
        let (page, more) = ns.list_page(dir, &dir_path, true, Some(&p("/d/b")), 10).unwrap();
        assert_eq!((names(&page).len(), more), (4, false));
        // A resume point outside the listing is refused.
        assert!(ns.list_page(dir, &dir_path, false, Some(&p("/d/a/x")), 5).is_err());
        assert!(ns.list_page(dir, &dir_path, true, Some(&p("/elsewhere")), 5).is_err());
    }

    #[test]
    fn block_sizes_below_the_minimum_are_refused() {
        assert_eq!(check_block_size(0, 65536), Ok(()), "0: the client's default");
        assert_eq!(check_block_size(65536, 65536), Ok(()));
        assert!(matches!(check_block_size(1, 65536), Err(FsError::InvalidArgument { reason }) if reason.contains("tachyon.master.block.size.bytes.min")));
    }

    #[test]
    fn ownership_names_are_bounded_and_printable() {
        assert_eq!(check_ownership(&own()), Ok(()));
        let with = |owner: &str, group: &str, mode: u32| InodeOwnership { owner: owner.into(), group: group.into(), mode };
        assert_eq!(check_ownership(&with("", "", 0)), Ok(()), "empty names: the master's defaults apply");
        for bad in [
            with(&"x".repeat(MAX_OWNER_BYTES + 1), "g", 0o644),
            with("a\nb", "g", 0o644),
            with("a", "g:h", 0o644),
            with("a", "g h", 0o644),
            with("a", "g", 0o10000),
        ] {
            assert!(check_ownership(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mkdir_recursive_plans_exact_entries() {
        let ns = Namespace::new();
        let kinds = ns.plan_create_directory(&p("/a/b"), true, false, &own(), 7).unwrap();
        assert_eq!(
            kinds,
            vec![
                Kind::CreateDirectory(CreateDirectoryEntry { id: 1, parent_id: 0, name: "a".into(), ownership: Some(dir_own()), time_ms: 7 }),
                Kind::CreateDirectory(CreateDirectoryEntry { id: 2, parent_id: 1, name: "b".into(), ownership: Some(own()), time_ms: 7 }),
            ]
        );
        assert_eq!(ns.plan_create_directory(&p("/a/b"), false, false, &own(), 7), Err(FsError::NotFound { path: "/a".into() }));
    }

    #[test]
    fn loading_an_under_storage_listing_plans_exact_entries_and_skips_what_is_known() {
        let mut ns = Namespace::new();
        let kinds = ns.plan_create_directory(&p("/mnt/known"), true, false, &own(), 1).unwrap();
        commit(&mut ns, kinds);
        let entry = |name: &str, is_directory, length| UnderStorageEntry { name: name.into(), is_directory, length };
        let found = [
            entry("known", true, 0),
            entry("sub", true, 0),
            entry("data.csv", false, 25),
            entry(".data.csv.tachyon-0000000000000001-3.tmp", false, 7),
            entry("..", true, 0),
        ];
        let kinds = ns.plan_load_from_under_storage(&p("/mnt"), &found, 10, &own(), 100, 5).unwrap();
        let dir = |id, parent_id, name: &str| {
            Kind::CreateDirectory(CreateDirectoryEntry { id, parent_id, name: name.into(), ownership: Some(dir_own()), time_ms: 5 })
        };
        assert_eq!(
            kinds,
            vec![
                dir(3, 1, "sub"),
                Kind::CreateFile(CreateFileEntry { id: 4, parent_id: 1, name: "data.csv".into(), ownership: Some(own()), time_ms: 5, block_size_bytes: 10 }),
                Kind::CompleteFile(CompleteFileEntry { id: 4, length: 25, time_ms: 5, persistence: PersistenceState::Persisted as i32 }),
            ]
        );
        commit(&mut ns, kinds);
        let f = ns.lookup(&p("/mnt/data.csv")).unwrap();
        assert_eq!(f.kind, InodeKind::File { block_size: 10, length: 25, complete: true, persistence: PersistenceState::Persisted });
        assert_eq!(f.block_ids().len(), 3);
        // Loaded once: the same listing plans nothing more.
        assert_eq!(ns.plan_load_from_under_storage(&p("/mnt"), &found, 10, &own(), 100, 6).unwrap(), Vec::new());
        // A directory tachyon does not have yet is created with its parents; the limit holds.
        let kinds = ns.plan_load_from_under_storage(&p("/new/deep"), &found[1..3], 10, &own(), 1, 5).unwrap();
        assert_eq!(kinds, vec![dir(5, 0, "new"), dir(6, 5, "deep"), dir(7, 6, "sub")]);
        // Nothing to load into a file.
        assert_eq!(ns.plan_load_from_under_storage(&p("/mnt/data.csv"), &found, 10, &own(), 100, 8).unwrap(), Vec::new());
    }

    #[test]
    fn create_complete_and_lookup() {
        let mut ns = Namespace::new();
        let kinds = ns.plan_create_file(&p("/d/f"), 10, true, &own(), 1).unwrap();
        commit(&mut ns, kinds);
        let f = ns.lookup(&p("/d/f")).unwrap().clone();
        assert_eq!(f.kind, InodeKind::File { block_size: 10, length: 0, complete: false, persistence: PersistenceState::NotPersisted });
        assert_eq!(ns.plan_create_file(&p("/d/f"), 10, true, &own(), 1), Err(FsError::AlreadyExists { path: "/d/f".into() }));
        // Block 1 missing: refused with the block named.
        let committed = |b: BlockId| (b == block_id(f.id, 0)).then_some(10);
        assert!(matches!(ns.plan_complete_file(&p("/d/f"), 15, PersistenceState::NotPersisted, committed, 2), Err(FsError::InvalidArgument { .. })));
        let committed = |b: BlockId| match b & 0xff_ffff {
            0 => Some(10),
            1 => Some(5),
            _ => None,
        };
        let kinds = ns.plan_complete_file(&p("/d/f"), 15, PersistenceState::NotPersisted, committed, 2).unwrap();
        commit(&mut ns, kinds);
        let f = ns.lookup(&p("/d/f")).unwrap();
        assert_eq!(f.block_ids(), vec![block_id(f.id, 0), block_id(f.id, 1)]);
        assert_eq!(
            ns.plan_complete_file(&p("/d/f"), 15, PersistenceState::NotPersisted, committed, 3),
            Err(FsError::FileAlreadyComplete { path: "/d/f".into() })
        );
        assert_eq!(ns.path_of(f.id).unwrap().to_string(), "/d/f");
    }

    #[test]
    fn file_in_path_is_not_a_directory() {
        let mut ns = Namespace::new();
        let kinds = ns.plan_create_file(&p("/f"), 10, false, &own(), 1).unwrap();
        commit(&mut ns, kinds);
        assert_eq!(ns.lookup(&p("/f/x")), Err(FsError::NotADirectory { path: "/f".into() }));
        assert_eq!(ns.plan_create_file(&p("/f/x/y"), 10, true, &own(), 1), Err(FsError::NotADirectory { path: "/f".into() }));
        assert_eq!(ns.plan_create_directory(&p("/f/x"), true, false, &own(), 1), Err(FsError::NotADirectory { path: "/f".into() }));
    }

    #[test]
    fn delete_reports_removed_files_and_needs_recursive() {
        let mut ns = Namespace::new();
        for f in ["/d/a", "/d/e/b"] {
            let kinds = ns.plan_create_file(&p(f), 10, true, &own(), 1).unwrap();
            commit(&mut ns, kinds);
        }
        assert_eq!(ns.plan_delete(&p("/d"), false, 2), Err(FsError::DirectoryNotEmpty { path: "/d".into() }));
        let a = ns.lookup(&p("/d/a")).unwrap().id;
        let b = ns.lookup(&p("/d/e/b")).unwrap().id;
        let kinds = ns.plan_delete(&p("/d"), true, 2).unwrap();
        assert_eq!(commit(&mut ns, kinds), vec![Effect::FilesRemoved(vec![a, b])]);
        assert_eq!(ns.inode_count(), 1);
        ns.check_invariants().unwrap();
    }

    #[test]
    fn rename_moves_and_refuses_cycles_and_clobbering() {
        let mut ns = Namespace::new();
        for d in ["/a/b", "/c"] {
            let kinds = ns.plan_create_directory(&p(d), true, false, &own(), 1).unwrap();
            commit(&mut ns, kinds);
        }
        assert!(matches!(ns.plan_rename(&p("/a"), &p("/a/b/x"), 2), Err(FsError::InvalidArgument { .. })));
        assert_eq!(ns.plan_rename(&p("/a"), &p("/c"), 2), Err(FsError::AlreadyExists { path: "/c".into() }));
        let kinds = ns.plan_rename(&p("/a"), &p("/c/z"), 2).unwrap();
        commit(&mut ns, kinds);
        assert!(ns.lookup(&p("/c/z/b")).is_ok());
        assert!(ns.lookup(&p("/a")).is_err());
        ns.check_invariants().unwrap();
    }

    #[test]
    fn operations_mark_all_but_their_last_entry_as_continuing() {
        let mut ns = Namespace::new();
        let kinds = ns.plan_create_directory(&p("/x/y/z"), true, false, &own(), 1).unwrap();
        let applied = ns.apply_operation(kinds, 4);
        let flags: Vec<(u64, bool)> = applied.entries.iter().map(|e| (e.sequence, e.continues)).collect();
        assert_eq!(flags, vec![(0, true), (1, true), (2, false)]);
        assert!(applied.entries.iter().all(|e| e.epoch == 4));
        // A kind that cannot apply stops the operation; what applied is closed off.
        let good = ns.plan_create_directory(&p("/w"), false, false, &own(), 1).unwrap().remove(0);
        let bad = Kind::Delete(DeleteEntry { id: 999, time_ms: 1 });
        let applied = ns.apply_operation(vec![good, bad], 4);
        assert_eq!(applied.entries.len(), 1);
        assert!(!applied.entries[0].continues);
        assert!(matches!(applied.error, Some(ApplyError::Inconsistent { sequence: 4, .. })));
    }

    #[test]
    fn apply_rejects_gaps_and_stale_epochs_without_change() {
        let mut ns = Namespace::new();
        let kind = ns.plan_create_directory(&p("/x"), false, false, &own(), 1).unwrap().remove(0);
        let gap = JournalEntry { sequence: 5, epoch: 1, continues: false, request_id: String::new(), kind: Some(kind.clone()) };
        assert_eq!(ns.apply(&gap), Err(ApplyError::SequenceGap { expected: 0, got: 5 }));
        ns.apply(&JournalEntry { sequence: 0, epoch: 3, continues: false, request_id: String::new(), kind: Some(kind.clone()) }).unwrap();
        let before = ns.clone();
        let stale = JournalEntry { sequence: 1, epoch: 2, continues: false, request_id: String::new(), kind: Some(kind) };
        assert!(matches!(ns.apply(&stale), Err(ApplyError::StaleEpoch { .. })));
        assert_eq!(ns, before);
    }

    /// A complete file of `len` bytes (block size 4) at `path`, created at `time_ms`.
    fn file(ns: &mut Namespace, path: &str, len: u64, persistence: PersistenceState, time_ms: i64) -> InodeId {
        let kinds = ns.plan_create_file(&p(path), 4, true, &own(), time_ms).unwrap();
        commit(ns, kinds);
        let kinds = ns.plan_complete_file(&p(path), len, persistence, |_| Some(4), time_ms).unwrap();
        commit(ns, kinds);
        ns.lookup(&p(path)).unwrap().id
    }

    #[test]
    fn pinning_plans_one_entry_reaches_everything_below_and_is_inherited() {
        let mut ns = Namespace::new();
        let a = file(&mut ns, "/d/a", 4, PersistenceState::Persisted, 1);
        let d = ns.lookup(&p("/d")).unwrap().id;
        let pin = AttributeChange { pinned: Some(true), ttl: None };
        let kinds = ns.plan_set_attribute(&p("/d"), pin, 9).unwrap();
        assert_eq!(
            kinds,
            vec![Kind::SetAttribute(SetAttributeEntry { id: d, time_ms: 9, pinned: Some(true), ttl_ms: None, ttl_action: TtlAction::TtlDelete as i32 })]
        );
        commit(&mut ns, kinds);
        assert!(ns.inode(d).unwrap().pinned && ns.inode(a).unwrap().pinned, "the directory and its file are pinned");
        assert_eq!(ns.plan_set_attribute(&p("/d"), pin, 10).unwrap(), Vec::new(), "pinning again changes nothing");
        let b = file(&mut ns, "/d/sub/b", 4, PersistenceState::Persisted, 2);
        assert!(ns.inode(b).unwrap().pinned, "created below a pinned directory");
        // Pinned blocks stay; unpinned persisted ones may go; unpersisted ones never.
        assert!(!ns.may_evict(block_id(a, 0)));
        let kinds = ns.plan_set_attribute(&p("/d/a"), AttributeChange { pinned: Some(false), ttl: None }, 11).unwrap();
        commit(&mut ns, kinds);
        assert!(ns.may_evict(block_id(a, 0)) && !ns.may_evict(block_id(b, 0)));
        let c = file(&mut ns, "/c", 4, PersistenceState::ToBePersisted, 3);
        assert!(!ns.may_evict(block_id(c, 0)), "not in under-storage yet");
        assert!(ns.may_evict(block_id(9999, 0)), "a deleted file's blocks may go");
        let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
        assert_eq!(back, ns);
    }

    #[test]
    fn ttls_expire_from_creation_time_and_plan_delete_or_free() {
        let mut ns = Namespace::new();
        let gone = file(&mut ns, "/tmp/x/gone", 4, PersistenceState::NotPersisted, 100);
        let freed = file(&mut ns, "/keep/freed", 4, PersistenceState::Persisted, 100);
        let tmp = ns.lookup(&p("/tmp")).unwrap().id;
        let ttl = |ttl_ms, action| AttributeChange { pinned: None, ttl: Some(Some(Ttl { ttl_ms, action })) };
        for (path, change) in
            [("/tmp", ttl(50, TtlAction::TtlDelete)), ("/tmp/x/gone", ttl(60, TtlAction::TtlDelete)), ("/keep/freed", ttl(80, TtlAction::TtlFree))]
        {
            let kinds = ns.plan_set_attribute(&p(path), change, 120).unwrap();
            commit(&mut ns, kinds);
        }
        assert!(ns.plan_set_attribute(&p("/tmp"), ttl(0, TtlAction::TtlDelete), 1).is_err_and(|e| matches!(e, FsError::InvalidArgument { .. })));
        assert_eq!(ns.expired(149), Vec::new(), "the TTL counts from creation (100)");
        // /tmp expires at 150 and takes its subtree along: /tmp/x/gone (due at 160) is never listed on its own.
        assert_eq!(ns.expired(150), vec![Expired { id: tmp, path: p("/tmp"), action: TtlAction::TtlDelete }]);
        assert_eq!(
            ns.expired(180),
            vec![Expired { id: freed, path: p("/keep/freed"), action: TtlAction::TtlFree }, Expired { id: tmp, path: p("/tmp"), action: TtlAction::TtlDelete },]
        );
        assert_eq!(ns.plan_expire(tmp, 150), Ok(vec![Kind::Delete(DeleteEntry { id: tmp, time_ms: 150 })]));
        assert_eq!(ns.plan_expire(tmp, 149), Ok(Vec::new()), "not yet");
        let clear =
            vec![Kind::SetAttribute(SetAttributeEntry { id: freed, time_ms: 180, pinned: None, ttl_ms: Some(-1), ttl_action: TtlAction::TtlDelete as i32 })];
        assert_eq!(ns.plan_expire(freed, 180), Ok(clear.clone()));
        let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
        assert_eq!(back, ns, "TTLs survive checkpoints");
        commit(&mut ns, clear);
        assert_eq!(ns.inode(freed).unwrap().ttl, None, "a FREE runs once");
        let kinds = ns.plan_expire(tmp, 150).unwrap();
        let effects = commit(&mut ns, kinds);
        assert_eq!(effects, vec![Effect::FilesRemoved(vec![gone])]);
        assert_eq!(ns.plan_expire(tmp, 200), Ok(Vec::new()), "gone already");
    }

    #[test]
    fn mounts_plan_exact_entries_resolve_paths_and_fence_deletes_and_renames() {
        let mut ns = Namespace::new();
        let kinds = ns.plan_create_directory(&p("/mnt"), false, false, &own(), 1).unwrap();
        commit(&mut ns, kinds);
        let options = BTreeMap::from([("s3a.accessKeyId".to_string(), "k".to_string())]);
        assert!(ns.plan_mount(&p("/mnt/s3/x"), "s3://b", &options, &own(), 2).is_err(), "the parent must exist");
        assert!(ns.plan_mount(&p("/mnt"), "s3://b", &options, &own(), 2).is_err(), "the mount point must not exist");
        assert!(ns.plan_mount(&p("/"), "s3://b", &options, &own(), 2).is_err());
        assert!(ns.plan_mount(&p("/mnt/s3"), " ", &options, &own(), 2).is_err());
        let many: BTreeMap<String, String> = (0..=MAX_MOUNT_OPTIONS).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(ns.plan_mount(&p("/mnt/s3"), "s3://b", &many, &own(), 2).is_err(), "options are bounded");
        let kinds = ns.plan_mount(&p("/mnt/s3"), "s3://b/data", &options, &own(), 2).unwrap();
        assert_eq!(
            kinds,
            vec![Kind::Mount(MountEntry {
                id: 2,
                parent_id: 1,
                name: "s3".into(),
                ownership: Some(own()),
                time_ms: 2,
                ufs_uri: "s3://b/data".into(),
                options: options.clone()
            })]
        );
        commit(&mut ns, kinds);
        let f = file(&mut ns, "/mnt/s3/a/f", 4, PersistenceState::Persisted, 3);
        file(&mut ns, "/top", 4, PersistenceState::Persisted, 3);
        let mounted = MountPoint { path: p("/mnt/s3"), mount: Mount { ufs_uri: "s3://b/data".into(), options } };
        assert_eq!(ns.mount_points(), vec![mounted.clone()]);
        assert_eq!(ns.resolve_ufs(&p("/mnt/s3/a/f")), UfsLocation { mount: Some(mounted.clone()), relative: "a/f".into() });
        assert_eq!(ns.resolve_ufs(&p("/mnt/s3/new/name")), UfsLocation { mount: Some(mounted.clone()), relative: "new/name".into() });
        assert_eq!(ns.resolve_ufs(&p("/mnt/s3")), UfsLocation { mount: Some(mounted), relative: String::new() });
        assert_eq!(ns.resolve_ufs(&p("/mnt/s3x")), UfsLocation { mount: None, relative: "mnt/s3x".into() });
        // A mount point is neither deleted nor renamed, nothing moves between under-storages.
        assert!(ns.plan_delete(&p("/mnt"), true, 4).is_err_and(|e| e.to_string().contains("unmount")));
        assert!(ns.plan_delete(&p("/mnt/s3/a"), true, 4).is_ok(), "inside a mount is fine");
        assert!(ns.plan_rename(&p("/mnt/s3"), &p("/s3"), 4).is_err());
        assert!(ns.plan_rename(&p("/top"), &p("/mnt/s3/top"), 4).is_err_and(|e| e.to_string().contains("different under-storages")));
        assert!(ns.plan_rename(&p("/mnt/s3/a"), &p("/mnt/s3/b"), 4).is_ok());
        assert!(ns.plan_unmount(&p("/mnt"), 5).is_err(), "not a mount point");
        let mem = file(&mut ns, "/mnt/s3/mem", 4, PersistenceState::ToBePersisted, 4);
        assert!(ns.plan_unmount(&p("/mnt/s3"), 5).is_err_and(|e| e.to_string().contains("/mnt/s3/mem")), "unpersisted data would be lost");
        let kinds = ns.plan_persist_file(&p("/mnt/s3/mem"), 5).unwrap();
        commit(&mut ns, kinds);
        let ttl = AttributeChange { pinned: None, ttl: Some(Some(Ttl { ttl_ms: 1, action: TtlAction::TtlDelete })) };
        let kinds = ns.plan_set_attribute(&p("/mnt"), ttl, 5).unwrap();
        commit(&mut ns, kinds);
        let mnt = ns.lookup(&p("/mnt")).unwrap().id;
        assert!(ns.plan_expire(mnt, 100).is_err_and(|e| e.to_string().contains("unmount")), "a TTL does not delete a mount point either");
        let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
        assert_eq!(back, ns, "mounts survive checkpoints");
        let kinds = ns.plan_unmount(&p("/mnt/s3"), 5).unwrap();
        assert_eq!(kinds, vec![Kind::Unmount(UnmountEntry { id: 2, time_ms: 5 })]);
        assert_eq!(commit(&mut ns, kinds), vec![Effect::FilesRemoved(vec![f, mem])]);
        assert_eq!(ns.mount_points(), Vec::new());
        assert!(ns.lookup(&p("/mnt/s3")).is_err());
        ns.check_invariants().unwrap();
    }

    #[test]
    fn under_storage_intents_are_journaled_keep_their_names_out_of_listings_and_end() {
        let mut ns = Namespace::new();
        let f = file(&mut ns, "/d/f", 4, PersistenceState::Persisted, 1);
        let copy = UfsCopy { mount_path: String::new(), from: "d/f".into(), to: "d/g".into(), temporary_source: false };
        let id = ns.next_sequence();
        let (_, kinds) = ns.plan_ufs_intent(UfsIntentKind::UfsRename, f, "", "/d/g", vec![copy.clone()]);
        let intent = UfsIntentEntry {
            id,
            kind: UfsIntentKind::UfsRename as i32,
            inode_id: f,
            request_id: String::new(),
            renamed_path: "/d/g".into(),
            copies: vec![copy],
        };
        assert_eq!(kinds, vec![Kind::UfsIntent(intent.clone())]);
        commit(&mut ns, kinds);
        assert_eq!(ns.ufs_intents(), vec![&intent]);
        // While the copy moves, a listing of the folder loads neither name.
        let dir = ns.resolve_ufs(&p("/d"));
        assert_eq!(ns.ufs_names_in_flux(&dir), BTreeSet::from(["f".to_string(), "g".to_string()]));
        let found = [UnderStorageEntry { name: "g".into(), is_directory: false, length: 4 }];
        assert_eq!(ns.plan_load_from_under_storage(&p("/d"), &found, 4, &own(), 10, 2).unwrap(), Vec::new());
        assert_eq!(Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap(), ns, "pending intents survive checkpoints");
        // An entry must carry its own sequence as id, and only a pending intent ends.
        let mut wrong = intent.clone();
        wrong.id += 7;
        let bad = JournalEntry { sequence: ns.next_sequence(), epoch: 1, continues: false, request_id: String::new(), kind: Some(Kind::UfsIntent(wrong)) };
        assert!(ns.apply(&bad).is_err());
        assert!(ns.plan_ufs_intent_done(id + 1).is_err());
        let mut kinds = ns.plan_rename(&p("/d/f"), &p("/d/g"), 3).unwrap();
        kinds.extend(ns.plan_ufs_intent_done(id).unwrap());
        commit(&mut ns, kinds);
        assert!(ns.ufs_intents().is_empty());
        assert!(ns.ufs_names_in_flux(&dir).is_empty());
    }

    #[test]
    fn checkpoint_round_trip_preserves_digest() {
        let mut ns = Namespace::new();
        for f in ["/z/a", "/b"] {
            let kinds = ns.plan_create_file(&p(f), 4, true, &own(), 1).unwrap();
            commit(&mut ns, kinds);
        }
        // Move a low-id directory under a higher-id one so parents come after children in id order.
        let kinds = ns.plan_create_directory(&p("/y"), false, false, &own(), 2).unwrap();
        commit(&mut ns, kinds);
        let kinds = ns.plan_rename(&p("/z"), &p("/y/z"), 3).unwrap();
        commit(&mut ns, kinds);
        let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
        assert_eq!(back, ns);
        assert_eq!(back.digest(), ns.digest());
    }

    #[test]
    fn applied_request_ids_ride_on_the_last_entry_survive_checkpoints_and_are_bounded() {
        let mut ns = Namespace::new();
        let kinds = ns.plan_create_directory(&p("/a/b"), true, false, &own(), 1).unwrap();
        let applied = ns.apply_request(kinds, 1, "client-1");
        assert_eq!(applied.error, None);
        let ids: Vec<&str> = applied.entries.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, vec!["", "client-1"], "only the last entry carries the id");
        assert!(ns.request_applied("client-1"));
        assert!(!ns.request_applied("client-2"));
        assert!(!ns.request_applied(""), "an empty id is never a retry");

        // A standby replaying the same entries knows the request too.
        let mut replayed = Namespace::new();
        for e in &applied.entries {
            replayed.apply(e).unwrap();
        }
        assert!(replayed.request_applied("client-1"));
        let restored = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
        assert!(restored.request_applied("client-1"));
        assert_eq!(restored, ns);

        // Only the most recent ids are kept.
        for i in 0..MAX_RECENT_REQUESTS {
            let kinds = ns.plan_create_directory(&p(&format!("/n{i}")), false, false, &own(), 2).unwrap();
            ns.apply_request(kinds, 1, &format!("r{i}"));
        }
        assert!(!ns.request_applied("client-1"), "the oldest id was forgotten");
        assert!(ns.request_applied("r0") && ns.request_applied(&format!("r{}", MAX_RECENT_REQUESTS - 1)));
        assert_eq!(Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap(), ns);
    }
}
