//! The journal: a write-ahead log of namespace changes plus checkpoints, stored in a
//! folder on under-storage (`tachyon.master.journal.folder`).
//!
//! Layout of the folder (names in [`format`]):
//! ```text
//! FORMAT                              marker written by `tachyon format`
//! epochs/<epoch>                      created by each leader before it takes over
//! checkpoints/<next>.ckpt             state before entry <next>
//! logs/<first>-<end>-e<epoch>.log     completed segment, entries first..end
//! logs/<first>-open-e<epoch>.log      a segment its leader appends to
//! ```
//! Recovery = newest readable checkpoint + every later entry of the logs. Several leaders
//! (epochs) may have left segments behind. **Epoch rule:** entries of a segment at or past
//! the first entry of any segment with a higher epoch are ignored, so whatever a deposed
//! leader writes after its successor took over never enters the history. A torn tail (a crash
//! mid-write) ends a segment at its last complete operation; damage anywhere else stops
//! recovery with an error that names the file and offset.
//!
//! **Fencing:** a new leader creates `epochs/<its epoch>` *before* reading the journal to
//! take over; a writer acknowledges a batch only after checking, after its sync, that no
//! newer epoch exists; reads check the same. So anything a deposed leader acknowledged was
//! durable before the marker existed and is read by its successor; anything later is
//! never acknowledged, and the epoch rule keeps it out of the history. Only create-exclusive
//! and listing are needed, which every under-storage offers.
//!
//! Writing is group commit: submissions queue in a bounded channel, one task writes all
//! that is queued with one sync, checks its epoch, then publishes the new durable position.
//!
//! Architecture Invariant: an operation is acknowledged only after [`JournalWriter::wait_durable`]
//! saw its entries synced and the epoch check passed; if either fails the writer stops for good
//! and the master gives up leadership and rebuilds its state from the journal, so memory never
//! runs ahead of the journal for long.

/// The journal's contract on a backend, public so integration tests run it on S3 and HDFS.
#[doc(hidden)]
pub mod conformance;
mod durable;
pub mod format;

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::core::namespace::{ApplyError, Namespace};
use crate::proto::{Checkpoint, JournalEntry};
use crate::underfs::{UfsWriter, UnderFs};
use durable::DurablePosition;
use format::{DecodedSegment, FormatError, SegmentName};

/// Name of the marker file written by format.
pub const FORMAT_MARKER: &str = "FORMAT";
const LOGS: &str = "logs";
const CHECKPOINTS: &str = "checkpoints";
const EPOCHS: &str = "epochs";

/// Errors of journal recovery and writing. None of them is retryable by a client: they
/// need an operator (restore, format) or a master restart.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {folder}: {op}: {source}")]
    Io { folder: String, op: String, source: std::io::Error },
    #[error("journal {folder} is not formatted: run `bin/tachyon format` first")]
    NotFormatted { folder: String },
    #[error("journal {folder} is not empty ({files} files): use `bin/tachyon format -f` to wipe it")]
    NotEmpty { folder: String, files: usize },
    #[error("journal file {file}: {source}")]
    Format { file: String, source: FormatError },
    #[error("journal file {file} is corrupt at byte {offset}: {problem}")]
    Corrupt { file: String, offset: usize, problem: String },
    #[error("replaying journal file {file}: {source}")]
    Apply { file: String, source: ApplyError },
    #[error("journal file {file}: entries {from}..{to} are missing")]
    MissingEntries { file: String, from: u64, to: u64 },
    #[error("journal writer stopped: {0}")]
    WriterFailed(String),
    #[error("fenced: a newer leader (epoch {newer}) has taken over from epoch {mine}")]
    Fenced { mine: u64, newer: u64 },
    #[error("journal entry {sequence} would take {bytes} bytes, more than the {max} one entry may (replay would refuse it); nothing was written", max = format::MAX_ENTRY_BYTES)]
    EntryTooLarge { sequence: u64, bytes: usize },
}

/// Bounds of the journal writer.
#[derive(Clone, Debug)]
pub struct JournalLimits {
    /// Most bytes written with one sync.
    pub max_batch_bytes: usize,
    /// Most queued submissions before submitters wait.
    pub queue_capacity: usize,
    /// A segment is completed and a new one started past this size.
    pub segment_max_bytes: u64,
    /// Where readers cannot see an open segment (HDFS), a segment holding entries is also
    /// completed after this long without a write, so standbys lag by at most about this.
    pub idle_segment_close_ms: u64,
}

impl Default for JournalLimits {
    fn default() -> Self {
        JournalLimits { max_batch_bytes: 4 << 20, queue_capacity: 1024, segment_max_bytes: 10 << 20, idle_segment_close_ms: 1000 }
    }
}

/// Most bytes a torn tail may span: one batch plus one entry. More than that after a bad
/// record means damage in the middle, which is never silently dropped.
fn max_torn_tail_bytes(limits: &JournalLimits) -> usize {
    limits.max_batch_bytes + format::MAX_ENTRY_BYTES + format::RECORD_HEADER_LEN
}

/// The state rebuilt from the journal.
#[derive(Debug)]
pub struct Recovered {
    pub namespace: Namespace,
    /// The newest epoch seen (entries or markers); a new leader's epoch must exceed it.
    pub last_epoch: u64,
}

/// How replay treats an incomplete tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplayMode {
    /// Starting: a torn tail is logged as cut.
    Recover,
    /// A new leader's final catch-up: as `Recover`, and every open segment is sealed
    /// ([`UnderFs::seal`]) before it is read, so its writer is fenced off and all it
    /// synced is visible (HDFS shows an open file's last block to no reader).
    TakeOver,
    /// A standby following a live leader: a partial last batch is normal, read it next time.
    Tail,
}

/// Handle on a journal folder.
#[derive(Clone)]
pub struct Journal {
    ufs: Arc<dyn UnderFs>,
    limits: JournalLimits,
    /// The ack rule of fencing; only the simulator's checker tests turn it off.
    fencing: bool,
}

impl Journal {
    /// A journal stored on `ufs` (rooted at the journal folder).
    pub fn new(ufs: Arc<dyn UnderFs>, limits: JournalLimits) -> Self {
        Journal { ufs, limits, fencing: true }
    }

    /// Turns the writer's epoch check off (`false`) or on. For the simulator's proof that
    /// its checkers catch a deposed leader's acknowledgements; never for real masters.
    pub fn with_fencing(mut self, fencing: bool) -> Self {
        self.fencing = fencing;
        self
    }

    /// Where the journal lives, for messages.
    pub fn folder(&self) -> String {
        self.ufs.describe()
    }

    fn io(&self, op: impl Into<String>) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
        let op = op.into();
        move |source| JournalError::Io { folder: self.folder(), op, source }
    }

    /// True once `format` has run.
    pub async fn is_formatted(&self) -> Result<bool, JournalError> {
        Ok(self.ufs.list("").await.map_err(self.io("list"))?.iter().any(|n| n == FORMAT_MARKER))
    }

    /// Formats the journal unless it already is: only creates (folders, then the marker),
    /// never deletes, so several masters starting at once (Kubernetes init containers) can
    /// all call it while one of them may already run. Returns whether it formatted.
    pub async fn format_if_unformatted(&self) -> Result<bool, JournalError> {
        if self.is_formatted().await? {
            return Ok(false);
        }
        let files =
            self.ufs.list(LOGS).await.map_err(self.io("list logs"))?.len() + self.ufs.list(CHECKPOINTS).await.map_err(self.io("list checkpoints"))?.len();
        if files > 0 {
            return Err(JournalError::NotEmpty { folder: self.folder(), files });
        }
        self.ufs.mkdirs(LOGS).await.map_err(self.io("mkdir logs"))?;
        self.ufs.mkdirs(CHECKPOINTS).await.map_err(self.io("mkdir checkpoints"))?;
        self.write_format_marker().await?;
        Ok(true)
    }

    async fn write_format_marker(&self) -> Result<(), JournalError> {
        let marker = format!("tachyon journal, format version {}\n", format::FORMAT_VERSION);
        self.ufs.write_atomic(FORMAT_MARKER, marker.as_bytes()).await.map_err(self.io("write marker"))
    }

    /// Creates an empty journal. Refuses to wipe one holding entries unless `force`.
    pub async fn format(&self, force: bool) -> Result<(), JournalError> {
        let logs = self.ufs.list(LOGS).await.map_err(self.io("list logs"))?;
        let cps = self.ufs.list(CHECKPOINTS).await.map_err(self.io("list checkpoints"))?;
        let epochs = self.ufs.list(EPOCHS).await.map_err(self.io("list epochs"))?;
        let empty = logs.is_empty() && cps.is_empty();
        if !force && !empty {
            return Err(JournalError::NotEmpty { folder: self.folder(), files: logs.len() + cps.len() });
        }
        for (dir, names) in [(LOGS, logs), (CHECKPOINTS, cps), (EPOCHS, epochs)] {
            for n in names {
                self.ufs.delete(&format!("{dir}/{n}")).await.map_err(self.io("delete"))?;
            }
        }
        self.ufs.mkdirs(LOGS).await.map_err(self.io("mkdir logs"))?;
        self.ufs.mkdirs(CHECKPOINTS).await.map_err(self.io("mkdir checkpoints"))?;
        self.write_format_marker().await?;
        info!(folder = %self.folder(), "journal formatted");
        Ok(())
    }

    /// Segment names in `logs/`, sorted by first sequence.
    async fn segments(&self) -> Result<Vec<SegmentName>, JournalError> {
        let mut segs = Vec::new();
        for name in self.ufs.list(LOGS).await.map_err(self.io("list logs"))? {
            match SegmentName::parse(&name) {
                Some(s) => segs.push(s),
                None if name.ends_with(".tmp") => {}
                None => warn!(file = %name, "ignoring unknown file in journal logs folder"),
            }
        }
        segs.sort();
        Ok(segs)
    }

    async fn checkpoint_names(&self) -> Result<Vec<u64>, JournalError> {
        let names = self.ufs.list(CHECKPOINTS).await.map_err(self.io("list checkpoints"))?;
        let mut v: Vec<u64> = names.iter().filter_map(|n| format::parse_checkpoint_name(n)).collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The position of the newest checkpoint, if any.
    pub async fn newest_checkpoint(&self) -> Result<Option<u64>, JournalError> {
        Ok(self.checkpoint_names().await?.last().copied())
    }

    /// True if a checkpoint of the state before entry `next` exists.
    pub async fn has_checkpoint(&self, next: u64) -> Result<bool, JournalError> {
        Ok(self.checkpoint_names().await?.contains(&next))
    }

    /// The newest readable checkpoint, or an empty namespace if there is none.
    async fn load_checkpoint(&self) -> Result<Namespace, JournalError> {
        for next in self.checkpoint_names().await?.into_iter().rev() {
            let file = format!("{CHECKPOINTS}/{}", format::checkpoint_file_name(next));
            let bytes = self.ufs.read(&file).await.map_err(self.io(format!("read {file}")))?;
            let loaded = format::decode_checkpoint(&bytes).map_err(|e| e.to_string()).and_then(|cp| Namespace::from_checkpoint(&cp));
            match loaded {
                Ok(ns) => {
                    info!(%file, next_sequence = ns.next_sequence(), inodes = ns.inode_count(), "loaded checkpoint");
                    return Ok(ns);
                }
                Err(e) => warn!(%file, error = %e, "skipping unreadable checkpoint; trying an older one"),
            }
        }
        Ok(Namespace::new())
    }

    /// The newest epoch marker.
    pub async fn latest_epoch(&self) -> Result<u64, JournalError> {
        let names = self.ufs.list(EPOCHS).await.map_err(self.io("list epochs"))?;
        Ok(names.iter().filter_map(|n| format::parse_epoch_name(n)).max().unwrap_or(0))
    }

    /// Fails with [`JournalError::Fenced`] if a leader newer than `epoch` has taken over.
    pub async fn verify_epoch(&self, epoch: u64) -> Result<(), JournalError> {
        let newest = self.latest_epoch().await?;
        if newest > epoch {
            return Err(JournalError::Fenced { mine: epoch, newer: newest });
        }
        Ok(())
    }

    /// Marks `epoch` as the leader's; from now on no older leader acknowledges anything.
    /// Must come before the final catch-up of a take-over. Then removes the older markers,
    /// so the check after every batch lists one or two files however many leaders came
    /// before.
    pub async fn claim_epoch(&self, epoch: u64) -> Result<(), JournalError> {
        let file = format!("{EPOCHS}/{}", format::epoch_file_name(epoch));
        let w = self.ufs.create(&file).await.map_err(self.io(format!("claim {file}")))?;
        w.close().await.map_err(self.io(format!("claim {file}")))?;
        self.verify_epoch(epoch).await?;
        self.remove_epoch_markers_below(epoch).await;
        Ok(())
    }

    /// Deletes the markers of epochs older than `epoch`, whose own marker stays (a newer
    /// leader's too): fencing compares only with the newest marker, so an older leader is
    /// fenced all the same. Best effort: a marker left behind costs a longer listing only.
    async fn remove_epoch_markers_below(&self, epoch: u64) {
        let names = match self.ufs.list(EPOCHS).await {
            Ok(names) => names,
            Err(e) => return warn!(folder = %self.folder(), epoch, error = %e, "cannot list epoch markers to remove the old ones"),
        };
        for name in names.iter().filter(|n| format::parse_epoch_name(n).is_some_and(|e| e < epoch)) {
            if let Err(e) = self.ufs.delete(&format!("{EPOCHS}/{name}")).await {
                warn!(folder = %self.folder(), epoch, marker = %name, error = %e, "cannot remove an old epoch marker");
            }
        }
    }

    /// Rebuilds the namespace from the newest readable checkpoint and the logs after it.
    pub async fn recover(&self) -> Result<Recovered, JournalError> {
        if !self.is_formatted().await? {
            return Err(JournalError::NotFormatted { folder: self.folder() });
        }
        let mut namespace = self.load_checkpoint().await?;
        self.replay_logs(&mut namespace, ReplayMode::Recover).await?;
        let last_epoch = namespace.epoch().max(self.latest_epoch().await?);
        info!(next_sequence = namespace.next_sequence(), inodes = namespace.inode_count(), last_epoch, "journal replayed");
        Ok(Recovered { namespace, last_epoch })
    }

    /// Applies what was journaled since `ns` was last brought up to date (a standby's
    /// tailing, and a new leader's final catch-up). Reloads from a checkpoint if the logs it
    /// needs were pruned meanwhile. Returns how many entries were applied.
    pub async fn catch_up(&self, ns: &mut Namespace, final_catch_up: bool) -> Result<u64, JournalError> {
        let before = ns.next_sequence();
        let mode = if final_catch_up { ReplayMode::TakeOver } else { ReplayMode::Tail };
        match self.replay_logs(ns, mode).await {
            Err(JournalError::MissingEntries { .. }) => {
                let cp = self.load_checkpoint().await?;
                if cp.next_sequence() <= ns.next_sequence() {
                    return self.replay_logs(ns, mode).await.map(|_| ns.next_sequence() - before);
                }
                info!(from = ns.next_sequence(), to = cp.next_sequence(), "standby fell behind pruned logs: reloading a checkpoint");
                *ns = cp;
                self.replay_logs(ns, mode).await?;
            }
            other => other?,
        }
        Ok(ns.next_sequence().saturating_sub(before))
    }

    /// Replays every segment entry at or past the namespace's position, applying the epoch
    /// rule and whole operations only.
    async fn replay_logs(&self, ns: &mut Namespace, mode: ReplayMode) -> Result<(), JournalError> {
        let segments = self.segments().await?;
        for (i, seg) in segments.iter().enumerate() {
            let limit = segment_limit(&segments, seg);
            if limit <= ns.next_sequence() {
                continue;
            }
            let file = format!("{LOGS}/{}", seg.file_name());
            if seg.first > ns.next_sequence() {
                return Err(JournalError::MissingEntries { file, from: ns.next_sequence(), to: seg.first });
            }
            if mode == ReplayMode::TakeOver && seg.end.is_none() {
                self.ufs.seal(&file).await.map_err(self.io(format!("seal {file}")))?;
            }
            let bytes = match self.ufs.read(&file).await {
                Ok(b) => b,
                // Completed or pruned under our feet; the next pass sees its new name.
                Err(e) if mode == ReplayMode::Tail && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(self.io(format!("read {file}"))(e)),
            };
            let bytes_len = bytes.len();
            let (decoded, unfinished) = replay_bytes(ns, limit, bytes, &file).await?;
            let reached = ns.next_sequence();
            let completed_in_full = seg.end.is_some_and(|end| end == limit);
            if completed_in_full && reached < limit {
                let (offset, why) = match &decoded.problem {
                    Some((p, off)) => (*off, p.to_string()),
                    None if unfinished > 0 => (decoded.valid_len, "segment ends inside an operation".to_string()),
                    None => (bytes_len, "segment ends early".to_string()),
                };
                return Err(JournalError::Corrupt { file, offset, problem: format!("{why}; entries up to {limit} expected, got up to {reached}") });
            }
            if reached < limit {
                if let Some((problem, offset)) = &decoded.problem {
                    let dropped = bytes_len - offset;
                    if dropped > max_torn_tail_bytes(&self.limits) {
                        return Err(JournalError::Corrupt {
                            file,
                            offset: *offset,
                            problem: format!("{problem} with {dropped} bytes after it: damage in the middle, not a torn tail"),
                        });
                    }
                    let later_data = segments[i + 1..].iter().any(|s| segment_limit(&segments, s) > reached);
                    if mode != ReplayMode::Tail && !later_data {
                        warn!(%file, offset, dropped_bytes = dropped, %problem,
                            "journal: torn tail; the log continues after the last complete operation");
                    }
                }
                if unfinished > 0 && mode != ReplayMode::Tail {
                    warn!(%file, entries = unfinished, next_sequence = reached,
                        "journal: dropping an operation whose last entry was never written (it was not acknowledged)");
                }
            }
        }
        Ok(())
    }

    /// Takes the journal over as its only writer, as a master does after winning an
    /// election: recover, claim the next epoch, catch up, start writing.
    pub async fn take_over(&self) -> Result<(Namespace, JournalWriter), JournalError> {
        let mut rec = self.recover().await?;
        let epoch = rec.last_epoch + 1;
        self.claim_epoch(epoch).await?;
        self.catch_up(&mut rec.namespace, true).await?;
        let writer = self.start_writer(&rec.namespace, epoch).await?;
        Ok((rec.namespace, writer))
    }

    /// Starts appending at the namespace's next sequence as the leader of `epoch`, which
    /// must have been claimed. Only the leader calls this.
    pub async fn start_writer(&self, ns: &Namespace, epoch: u64) -> Result<JournalWriter, JournalError> {
        let next = ns.next_sequence();
        let writer = open_segment_on(&*self.ufs, &self.folder(), next, epoch).await?;
        let (tx, rx) = mpsc::channel(self.limits.queue_capacity);
        let durable = Arc::new(DurablePosition::new(next));
        let task = WriterTask {
            journal: self.clone(),
            writer,
            epoch,
            segment_first: next,
            segment_bytes: format::SEGMENT_HEADER_LEN as u64,
            next,
            durable: durable.clone(),
        };
        let handle = tokio::spawn(task.run(rx));
        Ok(JournalWriter { tx, durable, task: Arc::new(tokio::sync::Mutex::new(Some(handle))) })
    }

    /// Writes a checkpoint, then removes the logs and older checkpoints it makes redundant
    /// (the previous checkpoint is kept as a fallback).
    pub async fn write_checkpoint(&self, cp: &Checkpoint) -> Result<(), JournalError> {
        let next = cp.next_sequence;
        let file = format!("{CHECKPOINTS}/{}", format::checkpoint_file_name(next));
        let bytes = format::encode_checkpoint(cp);
        if !self.publish_checkpoint(&file, &bytes).await? {
            return Ok(());
        }
        let cps = self.checkpoint_names().await?;
        let keep_from = cps.iter().rev().nth(1).copied().unwrap_or(next);
        for old in cps.into_iter().filter(|c| *c < keep_from) {
            let f = format!("{CHECKPOINTS}/{}", format::checkpoint_file_name(old));
            self.ufs.delete(&f).await.map_err(self.io(format!("delete {f}")))?;
            // A writer that crashed mid-way may have left its temporary file.
            self.ufs.delete(&format!("{f}.tmp")).await.map_err(self.io(format!("delete {f}.tmp")))?;
        }
        let segments = self.segments().await?;
        for seg in &segments {
            if segment_limit(&segments, seg) <= keep_from {
                let f = format!("{LOGS}/{}", seg.file_name());
                self.ufs.delete(&f).await.map_err(self.io(format!("delete {f}")))?;
            }
        }
        info!(%file, bytes = bytes.len(), "checkpoint written");
        Ok(())
    }

    /// Puts a checkpoint file in place without ever removing an existing one: written to
    /// `<file>.tmp` (create-exclusive), then renamed (no-clobber). Several standbys may
    /// checkpoint the same sequence; their bytes are identical, so whoever is first wins and
    /// the others skip. Returns false if this writer skipped.
    async fn publish_checkpoint(&self, file: &str, bytes: &[u8]) -> Result<bool, JournalError> {
        let tmp = format!("{file}.tmp");
        let mut w = match self.ufs.create(&tmp).await {
            Ok(w) => w,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                info!(%file, "another master is writing this checkpoint; skipping");
                return Ok(false);
            }
            Err(e) => return Err(self.io(format!("create {tmp}"))(e)),
        };
        let written = async {
            w.write(bytes).await?;
            w.close().await
        }
        .await;
        if let Err(e) = written {
            let _ = self.ufs.delete(&tmp).await;
            return Err(self.io(format!("write {tmp}"))(e));
        }
        match self.ufs.rename(&tmp, file).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                self.ufs.delete(&tmp).await.map_err(self.io(format!("delete {tmp}")))?;
                Ok(false)
            }
            Err(e) => Err(self.io(format!("rename {tmp}"))(e)),
        }
    }

    /// Every checkpoint and segment, decoded, for `tachyon readJournal`.
    pub async fn dump(&self) -> Result<Vec<(String, Result<DumpItem, JournalError>)>, JournalError> {
        let mut files: Vec<(String, Decoder)> = Vec::new();
        for next in self.checkpoint_names().await? {
            let decode: Decoder = |b| format::decode_checkpoint(b).map(DumpItem::Checkpoint);
            files.push((format!("{CHECKPOINTS}/{}", format::checkpoint_file_name(next)), decode));
        }
        for seg in self.segments().await? {
            let decode: Decoder = |b| format::decode_segment(b).map(DumpItem::Segment);
            files.push((format!("{LOGS}/{}", seg.file_name()), decode));
        }
        let mut out = Vec::with_capacity(files.len());
        for (file, decode) in files {
            let item = match self.ufs.read(&file).await {
                Ok(bytes) => decode(&bytes).map_err(|source| JournalError::Format { file: file.clone(), source }),
                Err(e) => Err(self.io(format!("read {file}"))(e)),
            };
            out.push((file, item));
        }
        Ok(out)
    }
}

/// Decodes one kind of journal file.
type Decoder = fn(&[u8]) -> Result<DumpItem, FormatError>;

/// One decoded journal file.
#[derive(Debug)]
pub enum DumpItem {
    Checkpoint(Checkpoint),
    Segment(DecodedSegment),
}

/// The first sequence at which a segment's entries stop counting: its end, or the first
/// entry of any segment of a newer epoch (the epoch rule), whichever comes first.
fn segment_limit(all: &[SegmentName], seg: &SegmentName) -> u64 {
    let cutoff = all.iter().filter(|o| o.epoch > seg.epoch).map(|o| o.first).min().unwrap_or(u64::MAX);
    seg.end.unwrap_or(u64::MAX).min(cutoff)
}

async fn open_segment_on(ufs: &dyn UnderFs, folder: &str, first: u64, epoch: u64) -> Result<Box<dyn UfsWriter>, JournalError> {
    let file = format!("{LOGS}/{}", SegmentName { first, end: None, epoch }.file_name());
    let io = |op: &str| {
        let op = format!("{op} {file}");
        move |source| JournalError::Io { folder: folder.to_string(), op, source }
    };
    let mut w = ufs.create(&file).await.map_err(io("create"))?;
    w.write(&format::segment_header()).await.map_err(io("write header"))?;
    w.sync().await.map_err(io("sync"))?;
    Ok(w)
}

/// Replays arbitrary bytes as the journal's only (open) segment onto an empty namespace,
/// the way recovery would. For the `journal_replay` fuzz target and its corpus test: it
/// must return an error or a namespace whose invariants hold, never panic or hang.
pub fn replay_untrusted_segment(bytes: &[u8]) -> Result<Namespace, String> {
    let decoded = format::decode_segment(bytes).map_err(|e| e.to_string())?;
    let mut ns = Namespace::new();
    SegmentReplay::new(u64::MAX, "fuzz").feed(&mut ns, decoded.entries).map_err(|e| e.to_string())?;
    ns.check_invariants()?;
    Ok(ns)
}

/// Decodes arbitrary bytes as a checkpoint and loads it, as recovery would.
pub fn load_untrusted_checkpoint(bytes: &[u8]) -> Result<Namespace, String> {
    let cp = format::decode_checkpoint(bytes).map_err(|e| e.to_string())?;
    let ns = Namespace::from_checkpoint(&cp)?;
    ns.check_invariants()?;
    Ok(ns)
}

/// Entries decoded per batch while replaying: what is in memory besides the namespace
/// (two batches: one being applied, one being decoded).
const REPLAY_BATCH_ENTRIES: usize = 4096;

/// Replays a segment's `bytes` up to `limit` (see [`SegmentReplay`]), decoding each batch on
/// another thread while the previous one is applied: a standby's take-over costs about
/// the larger of the two, not their sum. Returns how decoding ended (entries left out) and
/// how many trailing entries belong to an unfinished operation.
async fn replay_bytes(ns: &mut Namespace, limit: u64, bytes: Vec<u8>, file: &str) -> Result<(DecodedSegment, usize), JournalError> {
    let mut decoder = format::SegmentDecoder::new(bytes).map_err(|source| JournalError::Format { file: file.to_string(), source })?;
    let mut replay = SegmentReplay::new(limit, file);
    let mut batch = decoder.next_batch(REPLAY_BATCH_ENTRIES);
    while !decoder.is_done() && !replay.reached_limit {
        let next = crate::runtime::spawn_compute(move || {
            let batch = decoder.next_batch(REPLAY_BATCH_ENTRIES);
            (decoder, batch)
        });
        replay.feed(ns, std::mem::take(&mut batch))?;
        (decoder, batch) = next.await.map_err(|e| JournalError::Corrupt { file: file.to_string(), offset: 0, problem: format!("decoding failed: {e}") })?;
    }
    replay.feed(ns, batch)?;
    Ok((decoder.finish(Vec::new()), replay.unfinished()))
}

/// Applies a segment's entries from the namespace's position up to `limit`, one whole
/// operation at a time, as they are fed in order.
struct SegmentReplay<'f> {
    limit: u64,
    file: &'f str,
    /// Entries of an operation whose last entry has not come yet.
    operation: Vec<JournalEntry>,
    /// Set at the first entry at or past `limit`: nothing after it is applied.
    reached_limit: bool,
}

impl<'f> SegmentReplay<'f> {
    fn new(limit: u64, file: &'f str) -> Self {
        SegmentReplay { limit, file, operation: Vec::new(), reached_limit: false }
    }

    fn feed(&mut self, ns: &mut Namespace, entries: Vec<JournalEntry>) -> Result<(), JournalError> {
        for entry in entries {
            if self.reached_limit || entry.sequence >= self.limit {
                self.reached_limit = true;
                return Ok(());
            }
            if entry.sequence < ns.next_sequence() + self.operation.len() as u64 {
                continue;
            }
            let apply_error = |source| JournalError::Apply { file: self.file.to_string(), source };
            if entry.continues {
                self.operation.push(entry);
                continue;
            }
            for e in self.operation.drain(..) {
                ns.apply(&e).map_err(apply_error)?;
            }
            ns.apply(&entry).map_err(apply_error)?;
        }
        Ok(())
    }

    /// Trailing entries of an operation whose last entry is missing (not applied).
    fn unfinished(&self) -> usize {
        self.operation.len()
    }
}

/// How far the journal is durable, published by the writer task.
#[derive(Clone, Debug)]
pub struct Durability {
    /// Every entry below this sequence is synced.
    pub next: u64,
    /// Set once a write failed; nothing is written after that.
    pub failed: Option<String>,
    /// Group commits (write + sync) this writer completed.
    pub syncs: u64,
}

struct Submission {
    first: u64,
    end: u64,
    bytes: Vec<u8>,
}

/// What the writer task is asked to do, in queue order.
enum Command {
    Append(Submission),
    /// Write what was queued before, complete the open segment, stop.
    Close,
}

/// Appends entries to the journal with group commit. Cheap to clone.
#[derive(Clone)]
pub struct JournalWriter {
    tx: mpsc::Sender<Command>,
    durable: Arc<DurablePosition>,
    task: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl JournalWriter {
    /// Queues entries (which must continue the sequence exactly) and returns the sequence
    /// one past the last. Waits while the queue is full.
    pub async fn submit(&self, entries: &[JournalEntry]) -> Result<u64, JournalError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(self.durable.snapshot().next);
        };
        // What replay would refuse is never written.
        use prost::Message as _;
        if let Some(e) = entries.iter().find(|e| e.encoded_len() > format::MAX_ENTRY_BYTES) {
            return Err(JournalError::EntryTooLarge { sequence: e.sequence, bytes: e.encoded_len() });
        }
        let mut bytes = Vec::new();
        for e in entries {
            format::encode_entry(e, &mut bytes);
        }
        let end = last.sequence + 1;
        let submission = Submission { first: first.sequence, end, bytes };
        self.tx.send(Command::Append(submission)).await.map_err(|_| self.failure())?;
        Ok(end)
    }

    fn failure(&self) -> JournalError {
        let reason = self.durable.snapshot().failed.unwrap_or_else(|| "writer closed".into());
        JournalError::WriterFailed(reason)
    }

    /// Waits until every entry below `end` is durable.
    pub async fn wait_durable(&self, end: u64) -> Result<(), JournalError> {
        let state = self.durable.reached(end).await;
        match state.failed {
            Some(reason) if state.next < end => Err(JournalError::WriterFailed(reason)),
            _ => Ok(()),
        }
    }

    /// The current durable position and failure, if any.
    pub fn durability(&self) -> Durability {
        self.durable.snapshot()
    }

    /// Waits until the writer has stopped for good (failed, fenced, closed or aborted) and
    /// returns why; wakes for nothing else.
    pub async fn stopped(&self) -> String {
        self.durable.reached(u64::MAX).await.failed.unwrap_or_else(|| "journal writer gone".into())
    }

    /// Stops writing at once, mid-batch if need be, leaving the open segment as a crash
    /// would. For a master that lost leadership: a deposed leader must not write again.
    pub async fn abort(self) {
        let handle = self.task.lock().await.take();
        if let Some(handle) = handle {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Stops accepting entries, writes what is queued and completes the open segment.
    pub async fn close(self) {
        let _ = self.tx.send(Command::Close).await;
        let handle = self.task.lock().await.take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

struct WriterTask {
    journal: Journal,
    writer: Box<dyn UfsWriter>,
    epoch: u64,
    segment_first: u64,
    segment_bytes: u64,
    next: u64,
    durable: Arc<DurablePosition>,
}

/// However the task ends (closed, failed, aborted by a deposed leader, panicked), nobody is
/// left waiting for entries it will never write.
impl Drop for WriterTask {
    fn drop(&mut self) {
        self.durable.fail("writer task ended".into());
    }
}

impl WriterTask {
    /// The next command; where readers cannot see open files, completes a segment holding
    /// entries once it has been idle for the configured time.
    async fn next_command(&mut self, rx: &mut mpsc::Receiver<Command>) -> Result<Option<Command>, String> {
        if self.journal.ufs.readers_see_open_files() {
            return Ok(rx.recv().await);
        }
        loop {
            if self.next == self.segment_first {
                return Ok(rx.recv().await);
            }
            let idle = std::time::Duration::from_millis(self.journal.limits.idle_segment_close_ms);
            match tokio::time::timeout(idle, rx.recv()).await {
                Ok(command) => return Ok(command),
                Err(_) => self.complete_segment(true).await?,
            }
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut closing = false;
        loop {
            let first = match self.next_command(&mut rx).await {
                Ok(Some(Command::Append(first))) => first,
                Ok(_) => break,
                Err(reason) => return self.stop_failed(reason),
            };
            let mut batch = vec![first];
            let mut bytes: usize = batch[0].bytes.len();
            while bytes < self.journal.limits.max_batch_bytes {
                match rx.try_recv() {
                    Ok(Command::Append(s)) => {
                        bytes += s.bytes.len();
                        batch.push(s);
                    }
                    Ok(Command::Close) => {
                        closing = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if let Err(reason) = self.write_batch(batch).await {
                return self.stop_failed(reason);
            }
            if closing {
                break;
            }
        }
        // Asked to close, or every sender is gone: complete the open segment. Later
        // submissions fail because the receiver is dropped with this task.
        if let Err(reason) = self.complete_segment(false).await {
            warn!(folder = %self.journal.folder(), %reason, "could not complete the open journal segment on shutdown");
        }
        self.durable.fail("journal writer closed".into());
    }

    /// A write, sync, epoch check or segment completion failed: publish it and write nothing more.
    fn stop_failed(&self, reason: String) {
        tracing::error!(folder = %self.journal.folder(), epoch = self.epoch, durable_next = self.next, %reason,
            "journal write failed; no further entries will be written");
        self.durable.fail(reason);
    }

    async fn write_batch(&mut self, batch: Vec<Submission>) -> Result<(), String> {
        let mut buf = Vec::with_capacity(batch.iter().map(|s| s.bytes.len()).sum());
        let mut expected = self.next;
        for s in &batch {
            if s.first != expected {
                return Err(format!("submission starts at entry {} but the journal is at {expected}", s.first));
            }
            expected = s.end;
            buf.extend_from_slice(&s.bytes);
        }
        let end = batch.last().map(|s| s.end).unwrap_or(self.next);
        let started = tokio::time::Instant::now();
        self.writer.write(&buf).await.map_err(|e| format!("write: {e}"))?;
        self.writer.sync().await.map_err(|e| format!("sync: {e}"))?;
        crate::metrics::JOURNAL_FLUSH_SECONDS.observe(started.elapsed().as_secs_f64());
        crate::metrics::JOURNAL_BATCH_OPERATIONS.observe(batch.len() as f64);
        // Durable, but acknowledged only if no newer leader has claimed the journal.
        if self.journal.fencing {
            self.journal.verify_epoch(self.epoch).await.map_err(|e| e.to_string())?;
        }
        self.next = end;
        self.segment_bytes += buf.len() as u64;
        self.durable.advance(end);
        if self.segment_bytes >= self.journal.limits.segment_max_bytes {
            self.complete_segment(true).await?;
        }
        Ok(())
    }

    /// Closes the open segment, renames it completed and, when `reopen`, starts the next one.
    async fn complete_segment(&mut self, reopen: bool) -> Result<(), String> {
        let epoch = self.epoch;
        let from = format!("{LOGS}/{}", SegmentName { first: self.segment_first, end: None, epoch }.file_name());
        let to = format!("{LOGS}/{}", SegmentName { first: self.segment_first, end: Some(self.next), epoch }.file_name());
        let old = std::mem::replace(&mut self.writer, Box::new(ClosedWriter));
        old.close().await.map_err(|e| format!("close {from}: {e}"))?;
        let ufs = &self.journal.ufs;
        if self.next > self.segment_first {
            ufs.rename(&from, &to).await.map_err(|e| format!("rename {from}: {e}"))?;
        } else {
            ufs.delete(&from).await.map_err(|e| format!("delete {from}: {e}"))?;
        }
        self.segment_first = self.next;
        self.segment_bytes = format::SEGMENT_HEADER_LEN as u64;
        if reopen {
            self.writer = open_segment_on(&**ufs, &self.journal.folder(), self.next, epoch).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Stands in for the writer after the last segment is completed; never written to.
struct ClosedWriter;

#[async_trait::async_trait]
impl UfsWriter for ClosedWriter {
    async fn write(&mut self, _data: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("journal segment already closed"))
    }
    async fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    async fn close(self: Box<Self>) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
