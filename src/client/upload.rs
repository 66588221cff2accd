//! The two uploads a write makes: a block streamed to a worker, and the under-storage copy
//! written under a temporary name beside its path.

use super::*;

/// How much longer than a worker's wait for the leader a client waits for its answer.
const BLOCK_ANSWER_MARGIN: Duration = Duration::from_secs(10);

/// A block being streamed to a worker; the worker commits it to the master before it
/// answers.
pub(super) struct BlockUpload {
    pub(super) tx: mpsc::Sender<WriteBlockChunk>,
    pub(super) call: tokio::task::JoinHandle<Result<WriteBlockResponse, FsError>>,
}

impl BlockUpload {
    /// Opens the stream of block `id`, reserving `reserve` bytes on the worker.
    pub(super) async fn start(fs: &FileSystem, worker: &WorkerNetAddress, id: u64, reserve: u64) -> Result<Self, FsError> {
        // The worker answers once the leader took the block, which may wait out a failover.
        let timeout = fs.inner.options.request_timeout.max(crate::worker::MAX_MASTER_WAIT + BLOCK_ANSWER_MARGIN);
        let channel = rpc::connect(&data_address(worker), timeout, fs.inner.options.security.tls.as_ref()).await?;
        let (tx, rx) = mpsc::channel::<WriteBlockChunk>(4);
        tx.send(WriteBlockChunk { block_id: id, length: reserve, data: Bytes::new() })
            .await
            .map_err(|_| FsError::Internal { reason: "block stream closed".into() })?;
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let call = tokio::spawn(async move {
            let mut client = BlockDataServiceClient::new(channel);
            client.write_block(stream).await.map(|r| r.into_inner()).map_err(status)
        });
        Ok(BlockUpload { tx, call })
    }

    /// Sends one piece; if the worker ended the stream early, its answer says why.
    pub(super) async fn send(self, piece: Bytes, worker: &WorkerNetAddress) -> Result<Self, FsError> {
        if self.tx.send(WriteBlockChunk { block_id: 0, length: 0, data: piece }).await.is_ok() {
            return Ok(self);
        }
        Err(match self.call.await {
            Ok(Err(e)) => e,
            _ => FsError::Unavailable { reason: format!("worker {} closed the block stream", worker.host) },
        })
    }

    /// Ends the stream; returns the length the worker stored and committed.
    pub(super) async fn finish(self) -> Result<u64, FsError> {
        drop(self.tx);
        let resp = self.call.await.map_err(|e| FsError::Internal { reason: format!("block upload task: {e}") })??;
        Ok(resp.length)
    }
}

/// A file being written to the under-storage under a temporary name beside its path; the
/// leader moves it into place (never over another file) when it records the file persisted.
pub(super) struct UfsUpload {
    pub(super) ufs: Arc<dyn UnderFs>,
    pub(super) writer: Option<Box<dyn UfsWriter>>,
    pub(super) tmp: String,
    pub(super) unsynced: u64,
}

impl UfsUpload {
    /// Starts writing the copy that becomes `target` (a path in `ufs`).
    pub(super) async fn start(ufs: Arc<dyn UnderFs>, target: String, request_id: &str) -> Result<Self, FsError> {
        let (dir, name) = target.rsplit_once('/').unwrap_or(("", target.as_str()));
        let tmp = if dir.is_empty() { format!(".{name}.tachyon-{request_id}.tmp") } else { format!("{dir}/.{name}.tachyon-{request_id}.tmp") };
        let writer = ufs.create(&tmp).await.map_err(|e| ufs_error(&ufs, &tmp, e))?;
        Ok(UfsUpload { ufs, writer: Some(writer), tmp, unsynced: 0 })
    }

    pub(super) async fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        let Some(w) = self.writer.as_mut() else { return Err(FsError::Internal { reason: "under-storage upload already finished".into() }) };
        w.write(data).await.map_err(|e| ufs_error(&self.ufs, &self.tmp, e))?;
        self.unsynced += data.len() as u64;
        if self.unsynced >= UFS_SYNC_BYTES {
            w.sync().await.map_err(|e| ufs_error(&self.ufs, &self.tmp, e))?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Makes the data durable under its temporary name and returns that name; the leader
    /// moves it into place when it records the file persisted (under a journaled intent, so
    /// a crash never leaves a copy at the final name that tachyon does not know).
    pub(super) async fn seal(&mut self) -> Result<String, FsError> {
        if let Some(w) = self.writer.take() {
            w.close().await.map_err(|e| ufs_error(&self.ufs, &self.tmp, e))?;
        }
        Ok(self.tmp.clone())
    }

    /// Deletes the temporary file (best effort).
    pub(super) async fn abandon(mut self) {
        self.writer = None;
        if let Err(e) = self.ufs.delete(&self.tmp).await {
            tracing::warn!(file = %self.tmp, error = %e, "could not delete an abandoned under-storage upload");
        }
    }
}

/// An under-storage failure as a client error: retryable, since under-storage outages pass.
pub(super) fn ufs_error(ufs: &Arc<dyn UnderFs>, path: &str, e: std::io::Error) -> FsError {
    FsError::Unavailable { reason: format!("under-storage {} {path}: {e}", ufs.describe()) }
}
