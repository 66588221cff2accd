//! Reading a file: block by block, short-circuit from a local worker's tiers, streamed
//! from a remote worker, or from the under-storage (and cached again) when no worker holds it.

use super::*;

/// How many times a reader looks up a block's locations again before calling it lost.
const LOST_BLOCK_RETRIES: u32 = 4;

/// Reads a file block by block.
pub struct FileReader {
    pub(super) fs: FileSystem,
    pub(super) info: FileInfo,
    pub(super) next_block: usize,
    pub(super) read_type: ReadType,
    /// True if the last block came from the under-storage.
    pub(super) last_from_under_fs: bool,
    /// The file's under-storage and its path there, looked up on the first block read there.
    pub(super) ufs: Option<(Arc<dyn UnderFs>, String)>,
}

impl FileReader {
    /// The file's status as of opening.
    pub fn info(&self) -> &FileInfo {
        &self.info
    }

    fn persisted(&self) -> bool {
        self.info.persistence_state == PersistenceState::Persisted.as_str_name()
    }

    /// The next block's bytes, or `None` at the end of the file. A block no worker can serve
    /// is read from the under-storage if the file is persisted (and cached there as the read
    /// type says); otherwise locations are looked up again a few times (a restarting worker
    /// re-registers within a heartbeat or two) before the block is reported lost.
    pub async fn next_block(&mut self) -> Result<Option<Bytes>, FsError> {
        let mut block = Vec::new();
        Ok(self.append_next_block(&mut block).await?.then(|| Bytes::from(block)))
    }

    /// Appends the next block's bytes to `out` (as [`FileReader::next_block`] reads them,
    /// without a buffer of its own per block); false at the end of the file. On an error
    /// `out` is as it was.
    pub async fn append_next_block(&mut self, out: &mut Vec<u8>) -> Result<bool, FsError> {
        let Some(mut block) = self.info.blocks.get(self.next_block).cloned() else { return Ok(false) };
        let index = self.next_block as u64;
        self.last_from_under_fs = false;
        let mut backoff = self.fs.inner.options.retry.base_sleep.max(Duration::from_millis(100));
        for attempt in 0..=LOST_BLOCK_RETRIES {
            let cached = if block.locations.is_empty() && self.persisted() {
                Err(FsError::BlockLost { path: self.info.path.clone(), block_id: block.block_id })
            } else {
                self.read_from_any(&block, out).await
            };
            match cached {
                Ok(()) => {
                    self.next_block += 1;
                    return Ok(true);
                }
                Err(_) if self.persisted() => {
                    let bytes = self.read_from_under_fs(&block, index).await?;
                    if out.is_empty() {
                        *out = Vec::from(bytes);
                    } else {
                        out.extend_from_slice(&bytes);
                    }
                    self.next_block += 1;
                    self.last_from_under_fs = true;
                    return Ok(true);
                }
                Err(e) if attempt == LOST_BLOCK_RETRIES => {
                    tracing::warn!(path = %self.info.path, block = block.block_id, error = %e, "no location could serve the block");
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    let fresh = self.fs.get_status(&self.info.path).await?;
                    if let Some(b) = fresh.blocks.iter().find(|b| b.block_id == block.block_id) {
                        block = b.clone();
                    }
                }
            }
        }
        Err(FsError::BlockLost { path: self.info.path.clone(), block_id: block.block_id })
    }

    /// Reads block `index` from the file's under-storage copy and, unless the read type is
    /// NO_CACHE, caches it in a worker (best effort: a failed cache fill is only logged).
    async fn read_from_under_fs(&mut self, block: &BlockInfo, index: u64) -> Result<Bytes, FsError> {
        if self.ufs.is_none() {
            self.ufs = Some(self.fs.ufs_of(&self.info.path, "reading a block no worker holds").await?);
        }
        let Some((ufs, path)) = self.ufs.clone() else { return Err(FsError::Internal { reason: "under-storage not resolved".into() }) };
        let offset = index * self.info.block_size_bytes;
        let data = ufs.read_range(&path, offset, block.length).await.map_err(|e| ufs_error(&ufs, &path, e))?;
        if data.len() as u64 != block.length {
            return Err(FsError::Internal {
                reason: format!(
                    "{}: the under-storage copy {path} has {} bytes at offset {offset}, expected {}: it changed behind tachyon's back",
                    self.info.path,
                    data.len(),
                    block.length
                ),
            });
        }
        let data = Bytes::from(data);
        if self.read_type != ReadType::NoCache {
            if let Err(e) = self.cache_block(block, &data).await {
                tracing::warn!(path = %self.info.path, block = block.block_id, error = %e, "could not cache a block read from the under-storage");
            }
        }
        Ok(data)
    }

    async fn cache_block(&self, block: &BlockInfo, data: &Bytes) -> Result<(), FsError> {
        // Best effort: with no live worker right now, the block simply stays uncached
        // (writers wait for workers; a cache fill never does).
        let workers = self.fs.workers().await?;
        let live: Vec<WorkerReport> = workers.into_iter().filter(|w| !w.lost).collect();
        let Some(worker) = pick_worker(&live) else { return Ok(()) };
        let mut upload = BlockUpload::start(&self.fs, &worker, block.block_id, block.length).await?;
        let chunk = self.fs.inner.options.chunk_bytes;
        let mut sent = 0;
        while sent < data.len() {
            let n = chunk.min(data.len() - sent);
            upload = upload.send(data.slice(sent..sent + n), &worker).await?;
            sent += n;
        }
        let stored = upload.finish().await?;
        if stored != block.length {
            return Err(FsError::Internal { reason: format!("worker stored {stored} bytes of block {}, sent {}", block.block_id, block.length) });
        }
        Ok(())
    }

    /// Appends the block to `out` from the first of its locations that serves it whole;
    /// `out` is as it was if none does.
    async fn read_from_any(&self, block: &BlockInfo, out: &mut Vec<u8>) -> Result<(), FsError> {
        let mut locations = block.locations.clone();
        // Local workers first, so short-circuit reads are tried before the network.
        locations.sort_by_key(|a| !is_local_host(&a.host));
        let mut last_error = FsError::BlockLost { path: self.info.path.clone(), block_id: block.block_id };
        let start = out.len();
        for loc in &locations {
            let result = if self.fs.inner.options.short_circuit && is_local_host(&loc.host) {
                match self.read_local(loc, block, out).await {
                    Err(_) => {
                        out.truncate(start);
                        self.read_remote(loc, block, out).await
                    }
                    read => read,
                }
            } else {
                self.read_remote(loc, block, out).await
            };
            let read = out.len() - start;
            match result {
                Ok(()) if read as u64 == block.length => return Ok(()),
                Ok(()) => {
                    last_error = FsError::Internal {
                        reason: format!("worker {} returned {read} bytes of block {}, expected {}", loc.host, block.block_id, block.length),
                    }
                }
                Err(e) => last_error = e,
            }
            out.truncate(start);
        }
        Err(last_error)
    }

    /// Reads the file's blocks with indexes in `blocks` from a task of its own, at most
    /// `capacity` blocks ahead of the consumer (at least one). The task stops at the end of
    /// the range or the file, after delivering the first error, or when the stream is
    /// dropped.
    pub fn read_ahead(mut self, blocks: std::ops::Range<usize>, capacity: usize) -> BlockStream {
        self.next_block = blocks.start;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(async move {
            while self.next_block < blocks.end {
                let (next, last) = match self.next_block().await {
                    Ok(Some(block)) => (Ok(block), false),
                    Ok(None) => return,
                    Err(e) => (Err(e), true),
                };
                if tx.send(next).await.is_err() || last {
                    return;
                }
            }
        });
        BlockStream { blocks: rx, task }
    }

    /// True if reads move blocks to their worker's top tier.
    fn promote(&self) -> bool {
        self.read_type == ReadType::CachePromote
    }

    /// Short-circuit: map the block file of a worker on this host. A block that moved
    /// between tiers after the worker named its file is asked for once more.
    async fn read_local(&self, loc: &WorkerNetAddress, block: &BlockInfo, out: &mut Vec<u8>) -> Result<(), FsError> {
        let channel =
            rpc::connect(&format!("{}:{}", loc.host, loc.rpc_port), self.fs.inner.options.request_timeout, self.fs.inner.options.security.tls.as_ref()).await?;
        let mut worker = WorkerServiceClient::new(channel);
        let mut request = BlockRequest { block_id: block.block_id, promote: self.promote() };
        let mut resp = worker.open_local_block(request).await.map_err(status)?.into_inner();
        let mut opened = std::fs::File::open(&resp.path);
        if opened.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            request.promote = false;
            resp = worker.open_local_block(request).await.map_err(status)?.into_inner();
            opened = std::fs::File::open(&resp.path);
        }
        let file = opened.map_err(|e| FsError::Unavailable { reason: format!("short-circuit open {}: {e}", resp.path) })?;
        if resp.length == 0 {
            return Ok(());
        }
        // SAFETY: committed block files are immutable; eviction unlinks, never truncates,
        // so the mapping stays valid for its whole life.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FsError::Unavailable { reason: format!("short-circuit map {}: {e}", resp.path) })?;
        out.extend_from_slice(&map[..]);
        Ok(())
    }

    /// Streams the block from a worker's data port, appending it to `out`.
    async fn read_remote(&self, loc: &WorkerNetAddress, block: &BlockInfo, out: &mut Vec<u8>) -> Result<(), FsError> {
        let channel = rpc::connect(&data_address(loc), self.fs.inner.options.request_timeout, self.fs.inner.options.security.tls.as_ref()).await?;
        let mut stream = BlockDataServiceClient::new(channel)
            .read_block(ReadBlockRequest { block_id: block.block_id, offset: 0, length: 0, promote: self.promote() })
            .await
            .map_err(status)?
            .into_inner();
        out.reserve(block.length as usize);
        let mut left = block.length;
        while let Some(chunk) = stream.next().await {
            let data = chunk.map_err(status)?.data;
            // A worker sending more than the block holds is cut off, not buffered.
            left = left.checked_sub(data.len() as u64).ok_or_else(|| FsError::Internal {
                reason: format!("worker {} sent more than the {} bytes of block {}", loc.host, block.length, block.block_id),
            })?;
            out.extend_from_slice(&data);
        }
        Ok(())
    }
}

/// A file's blocks in order, read ahead by a task ([`FileReader::read_ahead`]); dropping
/// it stops the task.
pub struct BlockStream {
    blocks: mpsc::Receiver<Result<Bytes, FsError>>,
    task: tokio::task::JoinHandle<()>,
}

impl BlockStream {
    /// The next block; `None` after the last one or after an error was delivered.
    pub async fn next_block(&mut self) -> Option<Result<Bytes, FsError>> {
        self.blocks.recv().await
    }
}

impl futures::Stream for BlockStream {
    type Item = Result<Bytes, FsError>;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.blocks.poll_recv(cx)
    }
}

impl Drop for BlockStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
