//! Writing a file: blocks streamed to a worker, the under-storage copy alongside for the
//! write types that write through, completion at close.

use super::*;

/// Writes a file's content block by block; [`FileWriter::close`] completes the file.
pub struct FileWriter {
    pub(super) fs: FileSystem,
    pub(super) info: FileInfo,
    /// The worker that caches the blocks, picked at the first write (an empty file needs
    /// none); never one for THROUGH.
    pub(super) worker: Option<WorkerNetAddress>,
    pub(super) write_type: WriteType,
    /// The under-storage copy (CACHE_THROUGH, THROUGH).
    pub(super) through: Option<UfsUpload>,
    pub(super) block_index: u64,
    pub(super) in_block: u64,
    pub(super) total: u64,
    pub(super) current: Option<BlockUpload>,
}

impl FileWriter {
    /// The file being written.
    pub fn path(&self) -> &str {
        &self.info.path
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.total
    }

    async fn start_block(&mut self, worker: &WorkerNetAddress) -> Result<(), FsError> {
        if self.block_index >= MAX_BLOCKS_PER_FILE {
            return Err(FsError::InvalidArgument { reason: format!("{}: too many blocks", self.info.path) });
        }
        let id = block_id(self.info.id, self.block_index);
        self.current = Some(BlockUpload::start(&self.fs, worker, id, self.info.block_size_bytes).await?);
        self.in_block = 0;
        Ok(())
    }

    async fn finish_block(&mut self) -> Result<(), FsError> {
        if let Some(upload) = self.current.take() {
            let stored = upload.finish().await?;
            if stored != self.in_block {
                return Err(FsError::Internal { reason: format!("worker stored {stored} bytes of block {}, sent {}", self.block_index, self.in_block) });
            }
            self.block_index += 1;
            self.in_block = 0;
        }
        Ok(())
    }

    /// Appends data to the file.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        if let Some(through) = self.through.as_mut() {
            through.write(data).await?;
        }
        if !self.write_type.caches() || data.is_empty() {
            self.total += data.len() as u64;
            return Ok(());
        }
        let worker = match self.worker.clone() {
            Some(worker) => worker,
            None => {
                let worker = self.fs.writable_worker().await?;
                self.worker = Some(worker.clone());
                worker
            }
        };
        self.write_blocks(&worker, data).await
    }

    async fn write_blocks(&mut self, worker: &WorkerNetAddress, mut data: &[u8]) -> Result<(), FsError> {
        let block_size = self.info.block_size_bytes;
        let chunk = self.fs.inner.options.chunk_bytes as u64;
        while !data.is_empty() {
            if self.current.is_none() {
                self.start_block(worker).await?;
            }
            let room = (block_size - self.in_block).min(chunk) as usize;
            let n = room.min(data.len());
            let upload = self.current.take().ok_or_else(|| FsError::Internal { reason: "no block stream".into() })?;
            self.current = Some(upload.send(Bytes::copy_from_slice(&data[..n]), worker).await?);
            self.in_block += n as u64;
            self.total += n as u64;
            data = &data[n..];
            if self.in_block == block_size {
                self.finish_block().await?;
            }
        }
        Ok(())
    }

    /// Finishes the last block (and the under-storage copy) and completes the file; the
    /// file is readable after this. A definitive failure (not a lost master: whether the
    /// completion was applied would be unknown) cancels the write, so neither the
    /// incomplete file nor an under-storage upload is left behind.
    pub async fn close(mut self) -> Result<FileInfo, FsError> {
        match self.finish_and_complete().await {
            Err(e) if !e.is_retryable() => {
                tracing::warn!(path = %self.info.path, error = %e, "could not complete the file; removing what the write left");
                self.cancel().await;
                Err(e)
            }
            done => done,
        }
    }

    async fn finish_and_complete(&mut self) -> Result<FileInfo, FsError> {
        self.finish_block().await?;
        let ufs_temp_name = match self.through.as_mut() {
            Some(through) => through.seal().await?,
            None => String::new(),
        };
        let req = CompleteFileRequest {
            path: self.info.path.clone(),
            length: self.total,
            request_id: self.fs.next_request_id(),
            persistence: self.write_type.persistence() as i32,
            ufs_temp_name,
        };
        if req.persistence == PersistenceState::Persisted as i32 {
            // It publishes its own upload: alone.
            return self.fs.alone(req).await;
        }
        self.fs.coalesced(req).await
    }

    /// Abandons the write and deletes the incomplete file (best effort).
    pub async fn cancel(mut self) {
        if let Some(up) = self.current.take() {
            up.call.abort();
        }
        if let Some(through) = self.through.take() {
            through.abandon().await;
        }
        if let Err(e) = self.fs.delete(&self.info.path, false).await {
            tracing::warn!(path = %self.info.path, error = %e, "could not delete the incomplete file");
        }
    }
}
