//! Local-disk under-storage (also NFS or GlusterFS mounts): fsync for durability,
//! directory fsync after renames so a crash cannot undo them.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

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

struct LocalWriter {
    file: tokio::fs::File,
}

#[async_trait]
impl UfsWriter for LocalWriter {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data).await
    }

    async fn sync(&mut self) -> io::Result<()> {
        self.file.flush().await?;
        self.file.sync_data().await
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
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&full).await?;
        if let Some(parent) = full.parent() {
            sync_dir(parent).await?;
        }
        Ok(Box::new(LocalWriter { file }))
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
        let mut rd = match tokio::fs::read_dir(self.full(dir)).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        while let Some(entry) = rd.next_entry().await? {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    async fn list_status(&self, dir: &str) -> io::Result<Vec<UnderStorageEntry>> {
        let mut rd = match tokio::fs::read_dir(self.full(dir)).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        while let Some(entry) = rd.next_entry().await? {
            let meta = match entry.metadata().await {
                Ok(meta) => meta,
                // Removed or renamed between reading the directory and looking at it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            entries.push(UnderStorageEntry { name, is_directory: meta.is_dir(), length: if meta.is_dir() { 0 } else { meta.len() } });
        }
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
}
