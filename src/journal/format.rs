//! Byte formats of the journal: log segments, checkpoints and their file names. Pure code.
//!
//! A log segment is a header followed by records:
//! ```text
//! segment  := "TACHYONJ" version:u32le record*
//! record   := length:u32le crc32c(payload):u32le payload      (payload = protobuf JournalEntry)
//! ```
//! A checkpoint is `"TACHYONC" version:u32le length:u64le crc32c:u32le payload`
//! (payload = protobuf Checkpoint).
//!
//! Names, numbers in hex with 16 digits so that they sort by number:
//! - `logs/<first>-open-e<epoch>.log`: a segment being written by the leader of `epoch`,
//!   whose first entry is `first`;
//! - `logs/<first>-<end>-e<epoch>.log`: a completed segment holding exactly entries
//!   `first..end` (bytes after entry `end - 1` are ignored);
//! - `checkpoints/<next>.ckpt`: the state after every entry below `next`;
//! - `epochs/<epoch>`: created by each leader before it reads the journal to take over.

use prost::Message;

use crate::proto::{Checkpoint, JournalEntry};

/// Version written into every segment and checkpoint header. Version 2 added
/// `SetOwnership` entries; a build that reads only version 1 would skip them unseen, so it
/// must refuse the file instead.
pub const FORMAT_VERSION: u32 = 2;
/// Oldest version this build reads: version 1 files are version 2 without `SetOwnership`.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// True if this build reads files of format `version`.
pub fn is_readable_version(version: u32) -> bool {
    (OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version)
}
/// Magic bytes that open a log segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"TACHYONJ";
/// Magic bytes that open a checkpoint.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"TACHYONC";
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 12;
/// Bytes of a record header (length + checksum).
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest encoded entry accepted; anything larger is corruption. The writer refuses to
/// write a larger one and the master refuses to plan one, so everything written replays.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

/// Bytes an entry's fields besides its kind and request id take at most (sequence, epoch,
/// flag, field tags and lengths).
const ENTRY_FIELDS_BOUND_BYTES: usize = 64;

/// An upper bound of the encoded size of an entry holding `kind` and `request_id`, known
/// before its sequence and epoch are assigned.
pub fn entry_bytes_bound(kind: &crate::proto::journal_entry::Kind, request_id: &str) -> usize {
    kind.encoded_len() + request_id.len() + ENTRY_FIELDS_BOUND_BYTES
}

/// A segment or checkpoint could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a tachyon journal file (bad magic)")]
    BadMagic,
    #[error("journal format version {0} is not supported (this build reads versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("truncated header")]
    TruncatedHeader,
    #[error("checkpoint is corrupt: {0}")]
    CorruptCheckpoint(String),
}

/// The segment header bytes.
pub fn segment_header() -> Vec<u8> {
    let mut v = SEGMENT_MAGIC.to_vec();
    v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    v
}

/// Appends one framed record for `entry` to `out`.
pub fn encode_entry(entry: &JournalEntry, out: &mut Vec<u8>) {
    let payload = entry.encode_to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Why decoding of a segment stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailProblem {
    /// The last record is cut short (a write that did not finish).
    Truncated,
    /// A record's checksum does not match.
    BadChecksum,
    /// A record's length field is impossible.
    BadLength(u64),
    /// The payload is not a valid entry.
    Undecodable(String),
}

impl std::fmt::Display for TailProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TailProblem::Truncated => f.write_str("record cut short"),
            TailProblem::BadChecksum => f.write_str("checksum mismatch"),
            TailProblem::BadLength(n) => write!(f, "impossible record length {n}"),
            TailProblem::Undecodable(e) => write!(f, "undecodable entry: {e}"),
        }
    }
}

/// The valid entries of a segment and, if decoding stopped early, where and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedSegment {
    pub entries: Vec<JournalEntry>,
    /// Byte offset just after the last valid record.
    pub valid_len: usize,
    /// Set when bytes after `valid_len` could not be decoded.
    pub problem: Option<(TailProblem, usize)>,
}

/// Decodes a segment's bytes. Never panics: bad bytes end decoding with a [`TailProblem`]
/// that the caller judges (a torn tail of the open segment is cut; elsewhere it is fatal).
pub fn decode_segment(bytes: &[u8]) -> Result<DecodedSegment, FormatError> {
    let mut decoder = SegmentDecoder::new(bytes)?;
    let entries = decoder.next_batch(usize::MAX);
    Ok(decoder.finish(entries))
}

/// Decodes a segment's records a batch at a time, so that replay can apply one batch while
/// the next is decoded (see `Journal::replay_logs`). Owns or borrows the bytes (`B`).
#[derive(Debug)]
pub struct SegmentDecoder<B> {
    bytes: B,
    pos: usize,
    problem: Option<TailProblem>,
}

impl<B: AsRef<[u8]>> SegmentDecoder<B> {
    /// Checks the segment header; fails only on bytes that are not a segment of a readable
    /// version (a half-written header is an empty segment with a truncated tail).
    pub fn new(bytes: B) -> Result<Self, FormatError> {
        let b = bytes.as_ref();
        if b.len() < SEGMENT_HEADER_LEN {
            if SEGMENT_MAGIC.starts_with(&b[..b.len().min(8)]) {
                // An empty or half-written header: a segment whose creation was interrupted.
                return Ok(SegmentDecoder { bytes, pos: 0, problem: Some(TailProblem::Truncated) });
            }
            return Err(FormatError::TruncatedHeader);
        }
        if &b[..8] != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if !is_readable_version(version) {
            return Err(FormatError::UnsupportedVersion(version));
        }
        Ok(SegmentDecoder { bytes, pos: SEGMENT_HEADER_LEN, problem: None })
    }

    /// True once every valid record was decoded (or decoding stopped at a problem).
    pub fn is_done(&self) -> bool {
        self.problem.is_some() || self.pos == self.bytes.as_ref().len()
    }

    /// Decodes up to `max` more records.
    pub fn next_batch(&mut self, max: usize) -> Vec<JournalEntry> {
        let bytes = self.bytes.as_ref();
        let mut entries = Vec::with_capacity(max.min(MAX_BATCH_CAPACITY_HINT));
        while entries.len() < max && !self.is_done() {
            let rest = &bytes[self.pos..];
            if rest.len() < RECORD_HEADER_LEN {
                self.problem = Some(TailProblem::Truncated);
                break;
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            if len > MAX_ENTRY_BYTES {
                self.problem = Some(TailProblem::BadLength(len as u64));
                break;
            }
            if rest.len() < RECORD_HEADER_LEN + len {
                self.problem = Some(TailProblem::Truncated);
                break;
            }
            let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
            if crc32c::crc32c(payload) != crc {
                self.problem = Some(TailProblem::BadChecksum);
                break;
            }
            match JournalEntry::decode(payload) {
                Ok(entry) => entries.push(entry),
                Err(e) => {
                    self.problem = Some(TailProblem::Undecodable(e.to_string()));
                    break;
                }
            }
            self.pos += RECORD_HEADER_LEN + len;
        }
        entries
    }

    /// The segment as decoded, with `entries` (what the batches returned) and where and why
    /// decoding stopped.
    pub fn finish(self, entries: Vec<JournalEntry>) -> DecodedSegment {
        DecodedSegment { entries, valid_len: self.pos, problem: self.problem.map(|p| (p, self.pos)) }
    }
}

/// Entries a batch reserves room for up front (a whole-segment decode grows past it).
const MAX_BATCH_CAPACITY_HINT: usize = 4096;

/// Encodes a checkpoint file.
pub fn encode_checkpoint(cp: &Checkpoint) -> Vec<u8> {
    let payload = cp.encode_to_vec();
    let mut v = CHECKPOINT_MAGIC.to_vec();
    v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    v.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    v.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    v.extend_from_slice(&payload);
    v
}

/// Decodes a checkpoint file, verifying its checksum.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, FormatError> {
    const HEADER: usize = 8 + 4 + 8 + 4;
    if bytes.len() < HEADER {
        return Err(FormatError::TruncatedHeader);
    }
    if &bytes[..8] != CHECKPOINT_MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| FormatError::TruncatedHeader)?);
    if !is_readable_version(version) {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().map_err(|_| FormatError::TruncatedHeader)?);
    let crc = u32::from_le_bytes(bytes[20..24].try_into().map_err(|_| FormatError::TruncatedHeader)?);
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(FormatError::CorruptCheckpoint(format!("length {} but header says {len}", payload.len())));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(FormatError::CorruptCheckpoint("checksum mismatch".into()));
    }
    Checkpoint::decode(payload).map_err(|e| FormatError::CorruptCheckpoint(e.to_string()))
}

/// What a file name in `logs/` says about the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentName {
    /// Sequence number of the first entry.
    pub first: u64,
    /// One past the last entry, for a completed segment; `None` while open.
    pub end: Option<u64>,
    /// Epoch of the leader that wrote it.
    pub epoch: u64,
}

impl Ord for SegmentName {
    /// By first entry, then epoch; a completed segment before an open one.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = |s: &SegmentName| (s.first, s.epoch, s.end.unwrap_or(u64::MAX));
        key(self).cmp(&key(other))
    }
}

impl PartialOrd for SegmentName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl SegmentName {
    /// The file name for this segment.
    pub fn file_name(&self) -> String {
        match self.end {
            Some(end) => format!("{:016x}-{:016x}-e{:016x}.log", self.first, end, self.epoch),
            None => format!("{:016x}-open-e{:016x}.log", self.first, self.epoch),
        }
    }

    /// Parses a file name; `None` for anything that is not a segment name.
    pub fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(".log")?;
        let mut parts = stem.split('-');
        let first = parse_hex16(parts.next()?)?;
        let end = match parts.next()? {
            "open" => None,
            e => Some(parse_hex16(e)?),
        };
        let epoch = parse_hex16(parts.next()?.strip_prefix('e')?)?;
        if parts.next().is_some() || end.is_some_and(|e| e < first) {
            return None;
        }
        Some(SegmentName { first, end, epoch })
    }
}

/// File name of a leader's epoch marker.
pub fn epoch_file_name(epoch: u64) -> String {
    format!("{epoch:016x}")
}

/// Parses an epoch marker name.
pub fn parse_epoch_name(name: &str) -> Option<u64> {
    parse_hex16(name)
}

/// File name of the checkpoint holding the state before entry `next`.
pub fn checkpoint_file_name(next: u64) -> String {
    format!("{next:016x}.ckpt")
}

/// Parses a checkpoint file name.
pub fn parse_checkpoint_name(name: &str) -> Option<u64> {
    parse_hex16(name.strip_suffix(".ckpt")?)
}

fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::journal_entry::Kind;
    use crate::proto::DeleteEntry;

    fn entry(seq: u64) -> JournalEntry {
        JournalEntry { sequence: seq, epoch: 1, continues: false, request_id: String::new(), kind: Some(Kind::Delete(DeleteEntry { id: seq, time_ms: 5 })) }
    }

    fn segment(n: u64) -> Vec<u8> {
        let mut v = segment_header();
        for s in 0..n {
            encode_entry(&entry(s), &mut v);
        }
        v
    }

    #[test]
    fn round_trip() {
        let bytes = segment(3);
        let d = decode_segment(&bytes).unwrap();
        assert_eq!(d.entries, vec![entry(0), entry(1), entry(2)]);
        assert_eq!(d.valid_len, bytes.len());
        assert_eq!(d.problem, None);
    }

    #[test]
    fn every_truncation_keeps_the_valid_prefix() {
        let bytes = segment(3);
        let full = decode_segment(&bytes).unwrap();
        for cut in SEGMENT_HEADER_LEN..bytes.len() {
            let d = decode_segment(&bytes[..cut]).unwrap();
            assert!(d.entries.len() < 3);
            assert_eq!(d.entries[..], full.entries[..d.entries.len()]);
            if cut > d.valid_len {
                assert_eq!(d.problem, Some((TailProblem::Truncated, d.valid_len)));
            }
        }
    }

    #[test]
    fn flipped_byte_is_detected() {
        let mut bytes = segment(2);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let d = decode_segment(&bytes).unwrap();
        assert_eq!(d.entries.len(), 1);
        assert_eq!(d.problem.map(|p| p.0), Some(TailProblem::BadChecksum));
    }

    #[test]
    fn header_errors() {
        assert_eq!(decode_segment(b"NOTAJRNLxxxx"), Err(FormatError::BadMagic));
        let mut v = segment_header();
        v[8] = 9;
        assert_eq!(decode_segment(&v), Err(FormatError::UnsupportedVersion(9)));
        assert!(decode_segment(b"TACH").unwrap().problem.is_some());
        assert_eq!(decode_segment(b"xy"), Err(FormatError::TruncatedHeader));
    }

    #[test]
    fn checkpoint_round_trip_and_corruption() {
        let cp = Checkpoint {
            next_sequence: 9,
            epoch: 2,
            next_inode_id: 4,
            inodes: vec![],
            recent_request_ids: vec!["c-1".into()],
            mounts: vec![],
            ufs_intents: vec![],
        };
        let mut bytes = encode_checkpoint(&cp);
        assert_eq!(decode_checkpoint(&bytes).unwrap(), cp);
        bytes.push(0);
        assert!(matches!(decode_checkpoint(&bytes), Err(FormatError::CorruptCheckpoint(_))));
    }

    #[test]
    fn names_round_trip_and_sort() {
        let open = SegmentName { first: 0x10, end: None, epoch: 3 };
        let done = SegmentName { first: 0, end: Some(0x10), epoch: 2 };
        assert_eq!(SegmentName::parse(&open.file_name()), Some(open));
        assert_eq!(SegmentName::parse(&done.file_name()), Some(done));
        assert_eq!(done.file_name(), "0000000000000000-0000000000000010-e0000000000000002.log");
        assert_eq!(open.file_name(), "0000000000000010-open-e0000000000000003.log");
        assert_eq!(SegmentName::parse("0000000000000010-0000000000000001-e0000000000000001.log"), None);
        assert_eq!(SegmentName::parse("0000000000000010-open.log"), None);
        assert_eq!(SegmentName::parse("junk.log"), None);
        let same_first_done = SegmentName { first: 0x10, end: Some(0x10), epoch: 3 };
        assert!(same_first_done < open && done < open);
        assert_eq!(parse_checkpoint_name(&checkpoint_file_name(77)), Some(77));
        assert_eq!(parse_epoch_name(&epoch_file_name(9)), Some(9));
    }
}
