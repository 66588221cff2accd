//! `tachyon fuse`: a tachyon directory as a local file system through FUSE (the `fuser`
//! crate; no libfuse needed), so ordinary programs (`cp`, `cat`, `tar`, Python's `open()`)
//! read and write tachyon.
//!
//! Every FUSE call runs the client library's calls (with their retries through a failover)
//! on the process's tokio runtime. Reads stream block by block with one block of
//! read-ahead; writes go through the client's writer with the configured write type and
//! the file appears complete when it is closed, as in Alluxio FUSE. What tachyon cannot do
//! (writing into an existing file anywhere but a truncation to zero, links) fails with a
//! clear errno instead of doing something else.
//!
//! Inode numbers: the mounted directory is 1, every other inode tachyon's id + 2 (ids are
//! never reused, so a number always means the same inode).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    Request, TimeOrNow,
};
use tokio::runtime::Handle;

use crate::client::{BlockStream, CreateOptions, FileReader, FileSystem, FileWriter};
use crate::core::namespace::OwnershipChange;
use crate::error::FsError;
use crate::proto::FileInfo;

/// The FUSE inode number of the mounted directory.
const ROOT_INO: u64 = fuser::FUSE_ROOT_ID;
/// Block size reported to `stat` and `statfs` (a hint for programs' buffer sizes).
const REPORTED_BLOCK_BYTES: u32 = 1 << 20;
/// Blocks a reader fetches ahead of the one being read.
const READ_AHEAD_BLOCKS: usize = 1;
/// Most open files and directories at once (each may hold up to three blocks in memory).
const MAX_OPEN_HANDLES: usize = 4096;
/// Most statuses cached (the cache is dropped whole when it is full).
const MAX_CACHED_STATUSES: usize = 100_000;
/// The id files owned by a user (or group) this host does not know are shown with.
const NOBODY_ID: u32 = 65534;

/// User and group names by id and back, from `/etc/passwd` and `/etc/group`: tachyon
/// keeps owners as names, the kernel wants numbers.
#[derive(Clone, Debug, Default)]
pub struct LocalIds {
    users: BTreeMap<String, u32>,
    groups: BTreeMap<String, u32>,
}

impl LocalIds {
    /// This host's users and groups.
    pub fn load() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Self::parse(&read("/etc/passwd"), &read("/etc/group"))
    }

    /// Users and groups from the texts of `/etc/passwd` and `/etc/group`.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let ids = |text: &str| -> BTreeMap<String, u32> {
            text.lines()
                .filter_map(|l| {
                    let mut fields = l.split(':');
                    let name = fields.next()?;
                    let id = fields.nth(1)?.parse().ok()?;
                    Some((name.to_string(), id))
                })
                .collect()
        };
        LocalIds { users: ids(passwd), groups: ids(group) }
    }

    fn uid_of(&self, user: &str) -> u32 {
        self.users.get(user).copied().unwrap_or(NOBODY_ID)
    }

    fn gid_of(&self, group: &str) -> u32 {
        self.groups.get(group).copied().unwrap_or(NOBODY_ID)
    }

    fn user_name(&self, uid: u32) -> Option<String> {
        self.users.iter().find(|(_, id)| **id == uid).map(|(n, _)| n.clone())
    }

    fn group_name(&self, gid: u32) -> Option<String> {
        self.groups.iter().find(|(_, id)| **id == gid).map(|(n, _)| n.clone())
    }
}

/// How a mount behaves.
#[derive(Clone, Debug)]
pub struct FuseOptions {
    /// The tachyon directory shown at the mount point.
    pub root: String,
    /// How long file attributes and lookups are cached (by this process and the kernel).
    pub metadata_cache: Duration,
}

/// The FUSE errno for a tachyon error.
pub fn errno(e: &FsError) -> i32 {
    match e {
        FsError::NotFound { .. } | FsError::BlockLost { .. } => libc::ENOENT,
        FsError::AlreadyExists { .. } => libc::EEXIST,
        FsError::NotADirectory { .. } => libc::ENOTDIR,
        FsError::IsADirectory { .. } => libc::EISDIR,
        FsError::DirectoryNotEmpty { .. } => libc::ENOTEMPTY,
        FsError::InvalidPath { .. } => libc::EINVAL,
        FsError::InvalidArgument { .. } => libc::EINVAL,
        FsError::FileIncomplete { .. } => libc::EBUSY,
        FsError::FileAlreadyComplete { .. } => libc::EPERM,
        FsError::NotPersisted { .. } => libc::EPERM,
        FsError::OutOfSpace { .. } => libc::ENOSPC,
        FsError::PermissionDenied { .. } | FsError::Unauthenticated { .. } => libc::EACCES,
        FsError::Unavailable { .. } | FsError::NotLeader { .. } | FsError::Internal { .. } => libc::EIO,
        FsError::Unsupported { .. } => libc::ENOTSUP,
    }
}

/// A file open for reading: the block being read and a task fetching the next ones.
struct OpenReader {
    info: FileInfo,
    /// (block index, its bytes).
    current: Option<(u64, Bytes)>,
    ahead: Option<ReadAhead>,
}

/// A file's blocks read in order, at most [`READ_AHEAD_BLOCKS`] ahead of the reader.
struct ReadAhead {
    /// The index of the next block `blocks` delivers.
    next: u64,
    blocks: BlockStream,
}

/// A file being written: sequential appends only.
struct OpenWriter {
    path: String,
    writer: Option<FileWriter>,
    written: u64,
}

/// The tachyon path of every inode number the kernel holds: handed out in an entry reply
/// (lookup, mkdir, create) and not yet forgotten, with how many lookups the kernel holds.
/// The mounted directory is always known.
#[derive(Debug)]
struct InodePaths {
    paths: BTreeMap<u64, String>,
    lookups: BTreeMap<u64, u64>,
}

impl InodePaths {
    fn new(root: &str) -> Self {
        InodePaths { paths: BTreeMap::from([(ROOT_INO, root.to_string())]), lookups: BTreeMap::new() }
    }

    fn path(&self, ino: u64) -> Option<String> {
        self.paths.get(&ino).cloned()
    }

    /// The kernel was handed `ino` for `path` once more.
    fn looked_up(&mut self, ino: u64, path: &str) {
        if ino != ROOT_INO {
            self.paths.insert(ino, path.to_string());
            *self.lookups.entry(ino).or_default() += 1;
        }
    }

    /// The kernel dropped `n` of its lookups of `ino`; with none left it is forgotten.
    fn forget(&mut self, ino: u64, n: u64) {
        let Some(count) = self.lookups.get_mut(&ino) else { return };
        *count = count.saturating_sub(n);
        if *count == 0 {
            self.lookups.remove(&ino);
            self.paths.remove(&ino);
        }
    }

    /// `from` was renamed to `to`: inode numbers at or below it name paths below `to`.
    fn renamed(&mut self, from: &str, to: &str) {
        let below = format!("{}/", from.trim_end_matches('/'));
        for p in self.paths.values_mut() {
            if *p == from {
                *p = to.to_string();
            } else if let Some(rest) = p.strip_prefix(&below) {
                *p = join(to, rest);
            }
        }
    }
}

/// What a file handle refers to.
enum OpenHandle {
    Read(Box<OpenReader>),
    Write(Box<OpenWriter>),
    /// A directory listing taken at `opendir`: (inode, kind, name).
    Dir(Vec<(u64, FileType, String)>),
}

/// The file system FUSE calls into.
pub struct TachyonFuse {
    fs: FileSystem,
    runtime: Handle,
    options: FuseOptions,
    inodes: InodePaths,
    /// Statuses fetched lately, with when.
    cache: BTreeMap<String, (FileInfo, tokio::time::Instant)>,
    handles: BTreeMap<u64, OpenHandle>,
    next_handle: u64,
    /// User and group names by id and back, as this host's /etc/passwd and /etc/group say.
    users: LocalIds,
}

fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

impl TachyonFuse {
    /// A file system showing `options.root` of `fs`; calls run on `runtime`.
    pub fn new(fs: FileSystem, runtime: Handle, options: FuseOptions) -> Self {
        TachyonFuse {
            fs,
            runtime,
            inodes: InodePaths::new(&options.root),
            options,
            cache: BTreeMap::new(),
            handles: BTreeMap::new(),
            next_handle: 1,
            users: LocalIds::load(),
        }
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    fn ino_of(&self, info: &FileInfo) -> u64 {
        if info.path == self.options.root {
            ROOT_INO
        } else {
            info.id + 2
        }
    }

    fn path(&self, ino: u64) -> Result<String, i32> {
        self.inodes.path(ino).ok_or(libc::ESTALE)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<String, i32> {
        let name = name.to_str().ok_or(libc::EINVAL)?;
        Ok(join(&self.path(parent)?, name))
    }

    /// The status of `path`, from the cache while it is fresh.
    fn status(&mut self, path: &str) -> Result<FileInfo, i32> {
        if let Some((info, at)) = self.cache.get(path) {
            if at.elapsed() < self.options.metadata_cache {
                return Ok(info.clone());
            }
        }
        let info = self.block_on(self.fs.get_status(path)).map_err(|e| errno(&e))?;
        self.remember(&info);
        Ok(info)
    }

    fn remember(&mut self, info: &FileInfo) {
        if self.cache.len() >= MAX_CACHED_STATUSES {
            self.cache.clear();
        }
        self.cache.insert(info.path.clone(), (info.clone(), tokio::time::Instant::now()));
    }

    /// The attributes of an entry handed to the kernel (lookup, mkdir, create): from now on
    /// the kernel may name it by inode number until it forgets it.
    fn entry(&mut self, info: &FileInfo) -> FileAttr {
        self.inodes.looked_up(self.ino_of(info), &info.path);
        self.attr(info)
    }

    /// Forgets cached statuses at or below `path` (it changed).
    fn invalidate(&mut self, path: &str) {
        self.cache.remove(path);
        let below = format!("{}/", path.trim_end_matches('/'));
        self.cache.retain(|p, _| !p.starts_with(&below));
    }

    /// Bytes written so far to `path` through a handle still writing it.
    fn being_written(&self, path: &str) -> Option<u64> {
        self.handles.values().find_map(|h| match h {
            OpenHandle::Write(w) if w.writer.is_some() && w.path == path => Some(w.written),
            _ => None,
        })
    }

    fn attr(&self, info: &FileInfo) -> FileAttr {
        let ownership = info.ownership.clone().unwrap_or_default();
        // A file being written is 0 bytes long to tachyon until it is complete; the kernel
        // must keep counting what was written (it caches the size it is told).
        let length = self.being_written(&info.path).unwrap_or(info.length);
        let (kind, perm, size) =
            if info.is_directory { (FileType::Directory, ownership.mode & 0o7777, 0) } else { (FileType::RegularFile, ownership.mode & 0o7777, length) };
        let modified = time_of(info.modification_time_ms);
        FileAttr {
            ino: self.ino_of(info),
            size,
            blocks: size.div_ceil(512),
            atime: modified,
            mtime: modified,
            ctime: modified,
            crtime: time_of(info.creation_time_ms),
            kind,
            perm: perm as u16,
            nlink: if info.is_directory { 2 } else { 1 },
            uid: self.users.uid_of(&ownership.owner),
            gid: self.users.gid_of(&ownership.group),
            rdev: 0,
            blksize: REPORTED_BLOCK_BYTES,
            flags: 0,
        }
    }

    fn new_handle(&mut self, handle: OpenHandle) -> Result<u64, i32> {
        if self.handles.len() >= MAX_OPEN_HANDLES {
            return Err(libc::EMFILE);
        }
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, handle);
        Ok(fh)
    }

    /// Starts a writer of a new file at `path`.
    fn start_writer(&mut self, path: &str) -> Result<(FileInfo, u64), i32> {
        let writer = self.block_on(self.fs.create_file(path, CreateOptions::default())).map_err(|e| errno(&e))?;
        self.invalidate(path);
        let info = self.status(path)?;
        let fh = self.new_handle(OpenHandle::Write(Box::new(OpenWriter { path: path.to_string(), writer: Some(writer), written: 0 })))?;
        Ok((info, fh))
    }

    /// Replaces the file at `path` by an empty one (truncation to zero: tachyon files are
    /// written once, so the old one is deleted and a new one written).
    fn truncate_to_zero(&mut self, path: &str) -> Result<(), i32> {
        self.block_on(self.fs.delete(path, false)).map_err(|e| errno(&e))?;
        self.invalidate(path);
        let writer = self.block_on(self.fs.create_file(path, CreateOptions::default())).map_err(|e| errno(&e))?;
        self.block_on(writer.close()).map_err(|e| errno(&e))?;
        Ok(())
    }

    /// Completes the file a write handle writes, once; the error goes to `close(2)`.
    fn finish_writer(&mut self, fh: u64) -> Result<(), i32> {
        let Some(OpenHandle::Write(w)) = self.handles.get_mut(&fh) else { return Ok(()) };
        let Some(writer) = w.writer.take() else { return Ok(()) };
        let path = w.path.clone();
        let result = self.block_on(writer.close());
        self.invalidate(&path);
        result.map(|_| ()).map_err(|e| {
            tracing::warn!(path, error = %e, "completing a file written through FUSE failed");
            errno(&e)
        })
    }

    /// Bytes `[offset, offset + size)` of an open file.
    fn read_at(&mut self, fh: u64, offset: u64, size: u64) -> Result<Vec<u8>, i32> {
        let fs = self.fs.clone();
        let runtime = self.runtime.clone();
        let Some(OpenHandle::Read(r)) = self.handles.get_mut(&fh) else { return Err(libc::EBADF) };
        let (length, block_size) = (r.info.length, r.info.block_size_bytes.max(1));
        let end = offset.saturating_add(size).min(length);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let index = pos / block_size;
            if r.current.as_ref().is_none_or(|(i, _)| *i != index) {
                let bytes = runtime.block_on(next_block_at(&fs, r, index))?;
                r.current = Some((index, bytes));
            }
            let Some((_, block)) = &r.current else { return Err(libc::EIO) };
            let start = (pos - index * block_size) as usize;
            let stop = ((end - index * block_size) as usize).min(block.len());
            if start >= stop {
                return Err(libc::EIO);
            }
            out.extend_from_slice(&block[start..stop]);
            pos += (stop - start) as u64;
        }
        Ok(out)
    }
}

/// Block `index` of an open file: from the read-ahead task if it is the next one it
/// delivers, else from a new task started at `index`.
async fn next_block_at(fs: &FileSystem, r: &mut OpenReader, index: u64) -> Result<Bytes, i32> {
    if r.ahead.as_ref().is_none_or(|a| a.next != index) {
        r.ahead = None;
        let reader: FileReader = fs.open_file(&r.info.path).await.map_err(|e| errno(&e))?;
        r.ahead = Some(ReadAhead { next: index, blocks: reader.read_ahead(index as usize..usize::MAX, READ_AHEAD_BLOCKS) });
    }
    let Some(ahead) = r.ahead.as_mut() else { return Err(libc::EIO) };
    match ahead.blocks.next_block().await {
        Some(Ok(block)) => {
            ahead.next += 1;
            Ok(block)
        }
        Some(Err(e)) => {
            tracing::warn!(path = %r.info.path, block = index, error = %e, "reading through FUSE failed");
            r.ahead = None;
            Err(errno(&e))
        }
        None => {
            r.ahead = None;
            Err(libc::EIO)
        }
    }
}

impl Filesystem for TachyonFuse {
    /// Asks the kernel to pass `O_TRUNC` to `open` (else it truncates with a separate
    /// `setattr` after the open, which a write-once file cannot take).
    fn init(&mut self, _req: &Request<'_>, config: &mut fuser::KernelConfig) -> Result<(), libc::c_int> {
        if let Err(missing) = config.add_capabilities(fuser::consts::FUSE_ATOMIC_O_TRUNC) {
            tracing::warn!(missing, "the kernel cannot pass O_TRUNC to open: truncating opens will be refused");
        }
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name).and_then(|p| self.status(&p)) {
            Ok(info) => {
                let attr = self.entry(&info);
                reply.entry(&self.options.metadata_cache, &attr, 0)
            }
            Err(e) => reply.error(e),
        }
    }

    /// The kernel dropped `nlookup` of its lookups of `ino`: with none left, the inode
    /// number is forgotten here too (a long-lived mount holds only what the kernel holds).
    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        self.inodes.forget(ino, nlookup);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.path(ino).and_then(|p| self.status(&p)) {
            Ok(info) => reply.attr(&self.options.metadata_cache, &self.attr(&info)),
            Err(e) => reply.error(e),
        }
    }

    #[allow(clippy::too_many_arguments)] // the FUSE call's shape
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let result = (|| {
            let path = self.path(ino)?;
            let info = self.status(&path)?;
            if let Some(size) = size {
                let written = fh.and_then(|fh| match self.handles.get(&fh) {
                    Some(OpenHandle::Write(w)) => Some(w.written),
                    _ => None,
                });
                match (size, written) {
                    (0, Some(0)) => {}
                    _ if written.is_none() && size == info.length => {}
                    (0, None) if !info.is_directory => self.truncate_to_zero(&path)?,
                    // Tachyon files are written once, front to back.
                    _ => return Err(libc::EOPNOTSUPP),
                }
            }
            let owner = uid.map(|u| self.users.user_name(u).ok_or(libc::EINVAL)).transpose()?;
            let group = gid.map(|g| self.users.group_name(g).ok_or(libc::EINVAL)).transpose()?;
            if mode.is_some() || owner.is_some() || group.is_some() {
                let change = OwnershipChange { owner, group, mode: mode.map(|m| m & 0o7777), recursive: false };
                self.block_on(self.fs.set_ownership(&path, change)).map_err(|e| errno(&e))?;
            }
            // Times are tachyon's own (modification is the last change); setting them is
            // accepted and ignored, as `tar` and `cp -p` expect it to work.
            self.invalidate(&path);
            self.status(&path)
        })();
        match result {
            Ok(info) => reply.attr(&self.options.metadata_cache, &self.attr(&info)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let result = (|| {
            let path = self.child(parent, name)?;
            self.block_on(self.fs.create_directory(&path, false, false)).map_err(|e| errno(&e))?;
            let wanted = mode & !umask & 0o7777;
            let change = OwnershipChange { mode: Some(wanted), ..OwnershipChange::default() };
            let info = self.block_on(self.fs.set_ownership(&path, change)).map_err(|e| errno(&e))?;
            self.remember(&info);
            Ok(info)
        })();
        match result {
            Ok(info) => {
                let attr = self.entry(&info);
                reply.entry(&self.options.metadata_cache, &attr, 0)
            }
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, false, reply);
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, true, reply);
    }

    fn rename(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr, flags: u32, reply: ReplyEmpty) {
        let result = (|| {
            let (from, to) = (self.child(parent, name)?, self.child(newparent, newname)?);
            let source = self.status(&from)?;
            self.invalidate(&to);
            match self.block_on(self.fs.get_status(&to)) {
                Ok(_) if flags & libc::RENAME_NOREPLACE != 0 => return Err(libc::EEXIST),
                // POSIX rename replaces a file (or an empty directory) at the target.
                Ok(target) if target.is_directory == source.is_directory => {
                    self.block_on(self.fs.delete(&to, false)).map_err(|e| errno(&e))?;
                }
                Ok(target) => return Err(if target.is_directory { libc::EISDIR } else { libc::ENOTDIR }),
                Err(FsError::NotFound { .. }) => {}
                Err(e) => return Err(errno(&e)),
            }
            if flags & libc::RENAME_EXCHANGE != 0 {
                return Err(libc::EINVAL);
            }
            self.block_on(self.fs.rename(&from, &to)).map_err(|e| errno(&e))?;
            self.invalidate(&from);
            self.invalidate(&to);
            self.inodes.renamed(&from, &to);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let result = (|| {
            let path = self.path(ino)?;
            let info = self.status(&path)?;
            if info.is_directory {
                return Err(libc::EISDIR);
            }
            if flags & libc::O_ACCMODE == libc::O_RDONLY {
                if !info.complete {
                    return Err(libc::EBUSY);
                }
                return self.new_handle(OpenHandle::Read(Box::new(OpenReader { info, current: None, ahead: None })));
            }
            // Writing: only a new, empty file (after a truncation to zero).
            if flags & libc::O_ACCMODE == libc::O_RDWR {
                return Err(libc::EOPNOTSUPP);
            }
            if flags & libc::O_TRUNC == 0 && info.length > 0 {
                return Err(libc::EPERM);
            }
            self.block_on(self.fs.delete(&path, false)).map_err(|e| errno(&e))?;
            self.invalidate(&path);
            self.start_writer(&path).map(|(_, fh)| fh)
        })();
        match result {
            Ok(fh) => reply.opened(fh, 0),
            Err(e) => reply.error(e),
        }
    }

    fn create(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        let result = (|| {
            if flags & libc::O_ACCMODE == libc::O_RDWR {
                return Err(libc::EOPNOTSUPP);
            }
            let path = self.child(parent, name)?;
            let (mut info, fh) = self.start_writer(&path)?;
            let wanted = mode & !umask & 0o7777;
            if info.ownership.as_ref().is_some_and(|o| o.mode & 0o7777 != wanted) {
                let change = OwnershipChange { mode: Some(wanted), ..OwnershipChange::default() };
                info = self.block_on(self.fs.set_ownership(&path, change)).map_err(|e| errno(&e))?;
                self.remember(&info);
            }
            Ok((info, fh))
        })();
        match result {
            Ok((info, fh)) => {
                let attr = self.entry(&info);
                reply.created(&self.options.metadata_cache, &attr, 0, fh, 0)
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, offset: i64, size: u32, _flags: i32, _lock: Option<u64>, reply: ReplyData) {
        match self.read_at(fh, offset.max(0) as u64, u64::from(size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, offset: i64, data: &[u8], _wflags: u32, _flags: i32, _lock: Option<u64>, reply: ReplyWrite) {
        let runtime = self.runtime.clone();
        let result = match self.handles.get_mut(&fh) {
            Some(OpenHandle::Write(w)) => match w.writer.as_mut() {
                // Only appends: tachyon files are written once, front to back.
                Some(_) if offset as u64 != w.written => Err(libc::EOPNOTSUPP),
                Some(writer) => match runtime.block_on(writer.write(data)) {
                    Ok(()) => {
                        w.written += data.len() as u64;
                        Ok(data.len() as u32)
                    }
                    Err(e) => {
                        tracing::warn!(path = %w.path, error = %e, "writing through FUSE failed");
                        Err(errno(&e))
                    }
                },
                None => Err(libc::EBADF),
            },
            _ => Err(libc::EBADF),
        };
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    /// `close(2)` of a descriptor: a file that has data is completed here, so `close`
    /// reports a failure and the file is complete when `close` returns. One with no data yet
    /// waits for `release` (the last descriptor gone): programs such as `dd` open the file,
    /// `dup` the descriptor and close the original before writing anything.
    fn flush(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        if matches!(self.handles.get(&fh), Some(OpenHandle::Write(w)) if w.written == 0) {
            return reply.ok();
        }
        match self.finish_writer(fh) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _flags: i32, _lock_owner: Option<u64>, _flush: bool, reply: ReplyEmpty) {
        let result = self.finish_writer(fh);
        self.handles.remove(&fh);
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// Nothing to make durable before `close`: a file is written once and completed at
    /// close, and its durability is its write type's. Accepted, so programs that sync
    /// (`dd conv=fsync`, editors, databases' exports) work.
    fn fsync(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _datasync: bool, reply: ReplyEmpty) {
        match self.handles.get(&fh) {
            Some(_) => reply.ok(),
            None => reply.error(libc::EBADF),
        }
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let result = (|| {
            let path = self.path(ino)?;
            let children = self.block_on(self.fs.list_status(&path, false)).map_err(|e| errno(&e))?;
            let mut entries = vec![(ino, FileType::Directory, ".".to_string()), (ino, FileType::Directory, "..".to_string())];
            for child in children {
                self.remember(&child);
                let kind = if child.is_directory { FileType::Directory } else { FileType::RegularFile };
                entries.push((self.ino_of(&child), kind, child.name.clone()));
            }
            self.new_handle(OpenHandle::Dir(entries))
        })();
        match result {
            Ok(fh) => reply.opened(fh, 0),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let Some(OpenHandle::Dir(entries)) = self.handles.get(&fh) else { return reply.error(libc::EBADF) };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, i as i64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _flags: i32, reply: ReplyEmpty) {
        self.handles.remove(&fh);
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        match self.block_on(self.fs.master_info()) {
            Ok(info) => {
                let unit = u64::from(REPORTED_BLOCK_BYTES);
                let free = info.capacity_bytes.saturating_sub(info.used_bytes) / unit;
                reply.statfs(info.capacity_bytes / unit, free, free, 0, 0, REPORTED_BLOCK_BYTES, 255, REPORTED_BLOCK_BYTES);
            }
            Err(e) => reply.error(errno(&e)),
        }
    }
}

impl TachyonFuse {
    fn remove(&mut self, parent: u64, name: &OsStr, directory: bool, reply: ReplyEmpty) {
        let result = (|| {
            let path = self.child(parent, name)?;
            let info = self.status(&path)?;
            match (directory, info.is_directory) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                _ => {}
            }
            self.block_on(self.fs.delete(&path, false)).map_err(|e| errno(&e))?;
            self.invalidate(&path);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

/// Why a mount point cannot be used, if it cannot: it must be an existing, empty directory
/// nothing is mounted on.
pub fn check_mount_point(mount_point: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(mount_point).map_err(|e| format!("mount point {}: {e}", mount_point.display()))?;
    if !meta.is_dir() {
        return Err(format!("mount point {} is not a directory", mount_point.display()));
    }
    if is_mounted(mount_point) {
        return Err(format!("mount point {} is busy: something is mounted there already", mount_point.display()));
    }
    let mut entries = std::fs::read_dir(mount_point).map_err(|e| format!("mount point {}: {e}", mount_point.display()))?;
    if entries.next().is_some() {
        return Err(format!("mount point {} is not empty", mount_point.display()));
    }
    Ok(())
}

/// True if something is mounted at `mount_point` (per /proc/self/mountinfo).
pub fn is_mounted(mount_point: &Path) -> bool {
    let Ok(canonical) = mount_point.canonicalize() else { return false };
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let wanted = canonical.to_string_lossy().replace(' ', "\\040");
    table.lines().any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

fn mount_options() -> Vec<MountOption> {
    let mut options = vec![MountOption::FSName("tachyon".into()), MountOption::Subtype("tachyon".into()), MountOption::DefaultPermissions];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root's mount is for every user (the kernel checks the permission bits shown).
        options.push(MountOption::AllowOther);
    }
    options
}

/// Mounts `fuse` at `mount_point` and serves it until it is unmounted.
pub fn serve(fuse: TachyonFuse, mount_point: &Path) -> Result<(), String> {
    fuser::mount2(fuse, mount_point, &mount_options()).map_err(|e| format!("FUSE mount at {}: {e}", mount_point.display()))
}

/// Mounts `fuse` at `mount_point`, served on a thread of its own until the returned
/// session is dropped (which unmounts).
pub fn spawn(fuse: TachyonFuse, mount_point: &Path) -> Result<fuser::BackgroundSession, String> {
    fuser::spawn_mount2(fuse, mount_point, &mount_options()).map_err(|e| format!("FUSE mount at {}: {e}", mount_point.display()))
}

/// Unmounts a tachyon mount: `umount(2)` as root, else `fusermount3 -u` / `fusermount -u`.
pub fn unmount(mount_point: &Path) -> Result<(), String> {
    if !is_mounted(mount_point) {
        return Err(format!("nothing is mounted at {}", mount_point.display()));
    }
    let c_path = std::ffi::CString::new(mount_point.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a valid NUL-terminated path; umount2 only reads it.
    if unsafe { libc::umount2(c_path.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    for helper in ["fusermount3", "fusermount"] {
        if std::process::Command::new(helper).arg("-u").arg(mount_point).status().is_ok_and(|s| s.success()) {
            return Ok(());
        }
    }
    Err(format!("unmount {}: {error}", mount_point.display()))
}

/// Where a mount's log goes: `<home>/logs/fuse-<mount point with / as _>.log`.
pub fn log_path(home: &Path, mount_point: &Path) -> PathBuf {
    let name: String = mount_point.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    home.join("logs").join(format!("fuse{name}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_errno_programs_expect() {
        let p = || "/x".to_string();
        assert_eq!(errno(&FsError::NotFound { path: p() }), libc::ENOENT);
        assert_eq!(errno(&FsError::AlreadyExists { path: p() }), libc::EEXIST);
        assert_eq!(errno(&FsError::DirectoryNotEmpty { path: p() }), libc::ENOTEMPTY);
        assert_eq!(errno(&FsError::PermissionDenied { path: p(), reason: String::new() }), libc::EACCES);
        assert_eq!(errno(&FsError::OutOfSpace { reason: String::new() }), libc::ENOSPC);
        assert_eq!(errno(&FsError::Unavailable { reason: String::new() }), libc::EIO);
    }

    #[test]
    fn a_mount_point_must_be_an_existing_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_mount_point(dir.path()), Ok(()));
        assert!(check_mount_point(&dir.path().join("missing")).unwrap_err().contains("No such file"));
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(check_mount_point(dir.path()).unwrap_err().contains("not empty"));
        assert!(check_mount_point(&dir.path().join("f")).unwrap_err().contains("not a directory"));
        assert!(check_mount_point(Path::new("/proc")).unwrap_err().contains("busy"));
        assert_eq!(log_path(Path::new("/h"), Path::new("/mnt/t x")), PathBuf::from("/h/logs/fuse_mnt_t_x.log"));
    }

    #[test]
    fn inode_numbers_live_while_the_kernel_holds_them_and_follow_renames() {
        let mut inodes = InodePaths::new("/m");
        inodes.looked_up(7, "/m/a");
        inodes.looked_up(7, "/m/a");
        inodes.looked_up(8, "/m/a/b");
        inodes.looked_up(9, "/m/ab");
        inodes.renamed("/m/a", "/m/z");
        assert_eq!((inodes.path(7), inodes.path(8), inodes.path(9)), (Some("/m/z".into()), Some("/m/z/b".into()), Some("/m/ab".into())));
        inodes.forget(7, 1);
        assert_eq!(inodes.path(7).as_deref(), Some("/m/z"), "one lookup is still held");
        inodes.forget(7, 1);
        assert_eq!(inodes.path(7), None);
        inodes.forget(ROOT_INO, 5);
        assert_eq!(inodes.path(ROOT_INO).as_deref(), Some("/m"), "the mounted directory stays");
        inodes.looked_up(ROOT_INO, "/elsewhere");
        assert_eq!(inodes.path(ROOT_INO).as_deref(), Some("/m"));
    }

    #[test]
    fn owners_map_to_this_hosts_ids_and_unknown_ones_to_nobody() {
        let ids = LocalIds::parse("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n", "root:x:0:\nstaff:x:50:alice\n");
        assert_eq!((ids.uid_of("alice"), ids.uid_of("root"), ids.uid_of("mallory")), (1000, 0, NOBODY_ID));
        assert_eq!((ids.gid_of("staff"), ids.gid_of("nogroup-here")), (50, NOBODY_ID));
        assert_eq!(ids.user_name(1000).as_deref(), Some("alice"));
        assert_eq!(ids.group_name(50).as_deref(), Some("staff"));
        assert_eq!(ids.user_name(4242), None);
    }
}
