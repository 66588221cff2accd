//! HDFS as under-storage through `hdfs-native`: `hdfs://namenode:port/path`.
//!
//! Files are written with append + `hsync`. Two facts of HDFS shape the rest:
//! - A reader of a file that is still open sees only its completed blocks (usually zero
//!   bytes), even after `hsync`: the visible length of the block under construction lives
//!   on the DataNodes. So standbys tail completed journal segments only, and a new leader
//!   [`UnderFs::seal`]s the previous leader's open segment before reading it.
//! - `seal` is lease recovery: the NameNode closes the file at the last length its
//!   DataNodes hold, and the old writer's next `hsync` fails. That fences a deposed leader
//!   at the storage level, on top of the journal's epoch rule.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hdfs_native::{Client, HdfsError, WriteOptions};

use super::{UfsWriter, UnderFs, UnderStorageEntry};

/// First wait between lease-recovery polls; doubles up to [`SEAL_MAX_SLEEP`].
const SEAL_FIRST_SLEEP: Duration = Duration::from_millis(50);
const SEAL_MAX_SLEEP: Duration = Duration::from_secs(1);
/// Most lease-recovery polls before giving up (about two minutes).
const SEAL_MAX_POLLS: u32 = 130;

/// Under-storage in an HDFS folder.
pub struct HdfsUnderFs {
    client: Arc<Client>,
    /// `hdfs://host:port`, for messages.
    namenode: String,
    /// Absolute folder, no trailing `/` (empty for the root).
    root: String,
}

impl HdfsUnderFs {
    /// Connects to `hdfs://host:port/folder` (the connection is made on first use).
    pub fn new(uri: &str) -> io::Result<Self> {
        let rest = uri.strip_prefix("hdfs://").ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri:?} is not an hdfs:// address")))?;
        let (authority, folder) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{uri:?} names no NameNode (expected hdfs://host:port/path)")));
        }
        let namenode = format!("hdfs://{authority}");
        let client = hdfs_native::ClientBuilder::new()
            .with_url(namenode.as_str())
            .build()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: {e}")))?;
        Ok(HdfsUnderFs { client: Arc::new(client), namenode, root: folder.trim_end_matches('/').to_string() })
    }

    fn full(&self, path: &str) -> String {
        let path = path.trim_matches('/');
        match (self.root.is_empty(), path.is_empty()) {
            (true, true) => "/".to_string(),
            (false, true) => self.root.clone(),
            _ => format!("{}/{path}", self.root),
        }
    }

    fn error(&self, op: &str, path: &str) -> impl FnOnce(HdfsError) -> io::Error + '_ {
        let what = format!("hdfs {op} {}{}", self.namenode, self.full(path));
        move |e| hdfs_error(what, e)
    }
}

/// Maps an HDFS error to an `io::Error` whose kind callers branch on.
fn hdfs_error(what: String, e: HdfsError) -> io::Error {
    let kind = match &e {
        HdfsError::FileNotFound(_) => io::ErrorKind::NotFound,
        HdfsError::AlreadyExists(_) => io::ErrorKind::AlreadyExists,
        HdfsError::RPCError(class, _) | HdfsError::FatalRPCError(class, _) if class.ends_with("FileAlreadyExistsException") => io::ErrorKind::AlreadyExists,
        HdfsError::RPCError(class, _) | HdfsError::FatalRPCError(class, _) if class.ends_with("FileNotFoundException") => io::ErrorKind::NotFound,
        HdfsError::RPCError(class, _) if class.ends_with("AccessControlException") => io::ErrorKind::PermissionDenied,
        HdfsError::IOError(io) => io.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{what}: {e}"))
}

/// An open HDFS file.
struct HdfsWriter {
    writer: hdfs_native::file::FileWriter,
    what: String,
}

#[async_trait]
impl UfsWriter for HdfsWriter {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let what = format!("write {}", self.what);
        self.writer.write_bytes(Bytes::copy_from_slice(data)).await.map(|_| ()).map_err(|e| hdfs_error(what, e))
    }

    async fn sync(&mut self) -> io::Result<()> {
        let what = format!("hsync {}", self.what);
        self.writer.hsync().await.map_err(|e| hdfs_error(what, e))
    }

    async fn close(mut self: Box<Self>) -> io::Result<()> {
        let what = format!("close {}", self.what);
        self.writer.close().await.map_err(|e| hdfs_error(what, e))
    }
}

#[async_trait]
impl UnderFs for HdfsUnderFs {
    fn describe(&self) -> String {
        format!("{}{}", self.namenode, if self.root.is_empty() { "/" } else { &self.root })
    }

    async fn create(&self, path: &str) -> io::Result<Box<dyn UfsWriter>> {
        let full = self.full(path);
        let writer = self.client.create(&full, WriteOptions::default()).await.map_err(self.error("create", path))?;
        Ok(Box::new(HdfsWriter { writer, what: format!("{}{full}", self.namenode) }))
    }

    async fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let reader = self.client.read(&self.full(path)).await.map_err(self.error("open", path))?;
        // Read exactly the visible length: hdfs-native panics on a range past it.
        let len = reader.file_length();
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = reader.read_range(0, len).await.map_err(self.error("read", path))?;
        Ok(bytes.to_vec())
    }

    async fn read_range(&self, path: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let reader = self.client.read(&self.full(path)).await.map_err(self.error("open", path))?;
        // Clamp to the visible length: hdfs-native panics on a range past it.
        let visible = reader.file_length() as u64;
        let start = offset.min(visible);
        let take = len.min(visible - start);
        if take == 0 {
            return Ok(Vec::new());
        }
        let bytes = reader.read_range(start as usize, take as usize).await.map_err(self.error("read", path))?;
        Ok(bytes.to_vec())
    }

    async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        Ok(self.list_status(dir).await?.into_iter().map(|e| e.name).collect())
    }

    async fn list_status(&self, dir: &str) -> io::Result<Vec<UnderStorageEntry>> {
        let statuses = match self.client.list_status(&self.full(dir), false).await {
            Ok(s) => s,
            Err(e) => {
                let e = self.error("list", dir)(e);
                return if e.kind() == io::ErrorKind::NotFound { Ok(Vec::new()) } else { Err(e) };
            }
        };
        let mut entries: Vec<UnderStorageEntry> = statuses
            .iter()
            .filter_map(|s| {
                let name = s.path.rsplit('/').next().filter(|n| !n.is_empty())?;
                Some(UnderStorageEntry { name: name.to_string(), is_directory: s.isdir, length: if s.isdir { 0 } else { s.length as u64 } })
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn file_length(&self, path: &str) -> io::Result<Option<u64>> {
        match self.client.get_file_info(&self.full(path)).await {
            Ok(s) if !s.isdir => Ok(Some(s.length as u64)),
            Ok(_) => Ok(None),
            Err(e) => {
                let e = self.error("look up", path)(e);
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        // HDFS refuses to rename onto an existing file without `overwrite`: no clobber.
        self.client.rename(&self.full(from), &self.full(to), false).await.map_err(self.error("rename", from))
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        match self.client.delete(&self.full(path), false).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.error("delete", path)(e);
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn mkdirs(&self, path: &str) -> io::Result<()> {
        self.client.mkdirs(&self.full(path), 0o755, true).await.map_err(self.error("mkdirs", path))
    }

    async fn delete_empty_dir(&self, path: &str) -> io::Result<()> {
        // A non-recursive delete removes an empty directory and refuses a non-empty one.
        self.delete(path).await
    }

    fn readers_see_open_files(&self) -> bool {
        false
    }

    async fn seal(&self, path: &str) -> io::Result<()> {
        let full = self.full(path);
        let mut sleep = SEAL_FIRST_SLEEP;
        for _ in 0..SEAL_MAX_POLLS {
            match self.client.recover_lease(&full).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    let e = self.error("recover lease of", path)(e);
                    // Completed (renamed) or pruned meanwhile: nothing left to seal.
                    return if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) };
                }
            }
            tokio::time::sleep(sleep).await;
            sleep = (sleep * 2).min(SEAL_MAX_SLEEP);
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("hdfs recover lease of {}{full}: not closed after {SEAL_MAX_POLLS} polls", self.namenode)))
    }
}
