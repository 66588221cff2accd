//! Under-storage: where the journal (and later persisted file data) lives.
//!
//! Backends implement [`UnderFs`]; everything above uses the trait only, so the
//! simulator can swap in an in-memory store. Paths are relative to the backend's root
//! (e.g. the journal folder) and use `/` separators.

pub mod local;

use async_trait::async_trait;
use std::io;
use std::sync::Arc;

/// A writable stream on under-storage, made durable by [`UfsWriter::sync`].
#[async_trait]
pub trait UfsWriter: Send {
    /// Appends bytes (buffered until `sync` on some backends).
    async fn write(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fsync, hsync, or an object upload).
    async fn sync(&mut self) -> io::Result<()>;
    /// Syncs and closes the stream.
    async fn close(self: Box<Self>) -> io::Result<()>;
}

/// A file system under tachyon: local disk (also NFS/GlusterFS mounts), HDFS, S3, or simulated.
#[async_trait]
pub trait UnderFs: Send + Sync + 'static {
    /// Where this under-storage is, for messages (never includes credentials).
    fn describe(&self) -> String;
    /// Creates a new file; fails with `AlreadyExists` if one is there.
    async fn create(&self, path: &str) -> io::Result<Box<dyn UfsWriter>>;
    /// Reads a whole file.
    async fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// Names (not paths) of the entries of a directory; empty if it does not exist.
    async fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// Renames a file; the target must not exist.
    async fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Deletes a file; deleting a missing file is not an error.
    async fn delete(&self, path: &str) -> io::Result<()>;
    /// Creates a directory and its parents.
    async fn mkdirs(&self, path: &str) -> io::Result<()>;

    /// Writes a whole file so that readers see either nothing or all of it.
    async fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let tmp = format!("{path}.tmp");
        self.delete(&tmp).await?;
        let mut w = self.create(&tmp).await?;
        w.write(data).await?;
        w.close().await?;
        self.delete(path).await?;
        self.rename(&tmp, path).await
    }
}

/// Opens the under-storage named by a URI or local path (`/x`, `file:///x`).
pub fn open(uri: &str) -> io::Result<Arc<dyn UnderFs>> {
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Arc::new(local::LocalUnderFs::new(path)));
    }
    if uri.starts_with('/') {
        return Ok(Arc::new(local::LocalUnderFs::new(uri)));
    }
    let scheme = uri.split("://").next().unwrap_or(uri);
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("under-storage scheme {scheme:?} of {uri:?} is not supported by this build (supported: local paths, file://)"),
    ))
}

#[cfg(test)]
pub mod conformance;
