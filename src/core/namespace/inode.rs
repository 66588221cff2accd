//! Inodes and the values around them: ids, blocks, kinds, TTLs, mounts, the changes
//! requests carry, and the checks on what clients send.

use super::*;

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
