//! Local-disk under-storage (also NFS or GlusterFS mounts): fsync for durability,
//! directory fsync after renames so a crash cannot undo them.

use std::io;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{UfsWriter, UnderFs, UnderStorageEntry};

/// Under-storage in a local folder.
pub struct LocalUnderFs {
    root: PathBuf,
}

impl LocalUnderFs {
    /// Under-storage rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalUnderFs { root: root.into() }
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

/// Runs blocking file IO on a blocking thread: one trip for the whole of `io` (`tokio::fs`
/// takes one per call, so a write then a sync, or a listing, would take two or more, each
/// a wake-up of another thread and of this one).
#[allow(deprecated)] // madsim marks it deprecated because simulated code must not block; local disks are never simulated
async fn blocking<T: Send + 'static>(io: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(io).await.map_err(|e| io::Error::other(format!("local file IO task: {e}")))?
}

/// What `describe` makes of each entry of `dir` (skipping those it gives `None` for), read
/// in one trip to a blocking thread (`tokio::fs` takes one per entry and more); nothing if
/// `dir` does not exist.
async fn read_dir<T: Send + 'static>(dir: PathBuf, describe: impl Fn(std::fs::DirEntry) -> io::Result<Option<T>> + Send + 'static) -> io::Result<Vec<T>> {
    blocking(move || {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut described = Vec::new();
        for entry in entries {
            described.extend(describe(entry?)?);
        }
        Ok(described)
    })
    .await
}

/// Most bytes a [`LocalWriter`] holds before handing them to the kernel without a sync.
const PENDING_MAX_BYTES: usize = 4 << 20;

/// A file being written. Writes collect in memory and reach the kernel together with the
/// next sync (one trip to a blocking thread per group commit), or once
/// [`PENDING_MAX_BYTES`] have collected.
struct LocalWriter {
    file: Arc<std::fs::File>,
    pending: Vec<u8>,
}

impl LocalWriter {
    /// Writes the collected bytes, then syncs the file's data if `sync`.
    async fn drain(&mut self, sync: bool) -> io::Result<()> {
        let (file, bytes) = (self.file.clone(), std::mem::take(&mut self.pending));
        blocking(move || {
            (&*file).write_all(&bytes)?;
            if sync {
                file.sync_data()?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl UfsWriter for LocalWriter {
    async fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        // Fewer than PENDING_MAX_BYTES wait between calls, however large a write.
        while !data.is_empty() {
            let (now, rest) = data.split_at(data.len().min(PENDING_MAX_BYTES - self.pending.len()));
            self.pending.extend_from_slice(now);
            data = rest;
            if self.pending.len() >= PENDING_MAX_BYTES {
                self.drain(false).await?;
            }
        }
        Ok(())
    }

    async fn sync(&mut self) -> io::Result<()> {
        self.drain(true).await
    }

    async fn close(mut self: Box<Self>) -> io::Result<()> {
        self.sync().await
    }
}

#[async_trait]
impl UnderFs for LocalUnderFs {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn create(&self, path: &str) -> io::Result<Box<dyn UfsWriter>> {
        let full = self.full(path);
        if let Some(parent) = full.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&full).await?.into_std().await;
        if let Some(parent) = full.parent() {
            sync_dir(parent).await?;
        }
        Ok(Box::new(LocalWriter { file: Arc::new(file), pending: Vec::new() }))
    }

    async fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        tokio::fs::read(self.full(path)).await
    }

    async fn read_range(&self, path: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = tokio::fs::File::open(self.full(path)).await?;
        file.seek(io::SeekFrom::Start(offset)).await?;
        let mut buf = Vec::with_capacity(len.min(64 << 20) as usize);
        file.take(len).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        // The journal lists its epoch markers after every group commit.
        let mut names = read_dir(self.full(dir), |entry| Ok(Some(entry.file_name().to_string_lossy().into_owned()))).await?;
        names.sort();
        Ok(names)
    }

    async fn list_status(&self, dir: &str) -> io::Result<Vec<UnderStorageEntry>> {
        let mut entries = read_dir(self.full(dir), |entry| {
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Removed or renamed between reading the directory and looking at it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            Ok(Some(UnderStorageEntry { name, is_directory: meta.is_dir(), length: if meta.is_dir() { 0 } else { meta.len() } }))
        })
        .await?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn file_length(&self, path: &str) -> io::Result<Option<u64>> {
        match tokio::fs::metadata(self.full(path)).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (self.full(from), self.full(to));
        // A hard link fails if the target exists: an atomic no-clobber rename.
        tokio::fs::hard_link(&from, &to).await.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", to.display())),
            _ => e,
        })?;
        tokio::fs::remove_file(&from).await?;
        if let Some(parent) = to.parent() {
            sync_dir(parent).await?;
        }
        Ok(())
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.full(path)).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn mkdirs(&self, path: &str) -> io::Result<()> {
        tokio::fs::create_dir_all(self.full(path)).await
    }

    async fn delete_empty_dir(&self, path: &str) -> io::Result<()> {
        match tokio::fs::remove_dir(self.full(path)).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_under_fs_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let ufs = LocalUnderFs::new(dir.path());
        crate::underfs::conformance::run(&ufs).await;
    }

    #[tokio::test]
    async fn a_writer_hands_its_bytes_to_the_kernel_once_enough_collect_and_all_of_them_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let ufs = LocalUnderFs::new(dir.path());
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let mut w = ufs.create("f").await.unwrap();
        let chunks = PENDING_MAX_BYTES / chunk.len() + 1;
        for _ in 0..chunks {
            w.write(&chunk).await.unwrap();
        }
        // Never synced, yet no more than the bound waits in memory.
        let on_disk = std::fs::metadata(dir.path().join("f")).unwrap().len() as usize;
        assert!(on_disk >= PENDING_MAX_BYTES && on_disk <= chunks * chunk.len(), "{on_disk} bytes reached the file");
        // One write far past the bound goes in pieces of the bound (never collected whole);
        // less than the bound stays behind.
        let large: Vec<u8> = chunk.iter().copied().cycle().take(2 * PENDING_MAX_BYTES + 4).collect();
        w.write(&large).await.unwrap();
        let on_disk = std::fs::metadata(dir.path().join("f")).unwrap().len() as usize;
        assert_eq!(on_disk % PENDING_MAX_BYTES, 0, "{on_disk} bytes reached the file");
        assert!(on_disk + PENDING_MAX_BYTES > chunks * chunk.len() + large.len(), "{on_disk} bytes reached the file");
        w.write(b"tail").await.unwrap();
        w.close().await.unwrap();
        let got = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(got.len(), chunks * chunk.len() + large.len() + 4);
        assert!(got.chunks(chunk.len()).take(chunks).all(|c| c == &chunk[..]));
        assert_eq!(&got[chunks * chunk.len()..][..large.len()], &large[..]);
        assert!(got.ends_with(b"tail"));
    }
}
