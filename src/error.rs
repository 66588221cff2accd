//! The error a file system operation returns, everywhere from the namespace core to the
//! shell. Each variant says whether retrying can help ([`FsError::is_retryable`]) and
//! travels over gRPC intact (kind and fields ride in the status details).

use bytes::Bytes;
use thiserror::Error;

/// A file system operation failed. Callers branch on the variant.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FsError {
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: already exists")]
    AlreadyExists { path: String },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("{path}: is a directory")]
    IsADirectory { path: String },
    #[error("{path}: directory not empty (use -R to delete recursively)")]
    DirectoryNotEmpty { path: String },
    #[error("{path}: invalid path: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },
    #[error("{path}: file is incomplete (still being written, or its writer died)")]
    FileIncomplete { path: String },
    #[error("{path}: file is already complete")]
    FileAlreadyComplete { path: String },
    #[error("{path}: block {block_id} is lost (no live worker holds it and the file is not persisted)")]
    BlockLost { path: String, block_id: u64 },
    #[error("{path}: not persisted to under-storage; freeing it from memory would lose the data")]
    NotPersisted { path: String },
    #[error("out of space: {reason}")]
    OutOfSpace { reason: String },
    #[error("service unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("this master is not the leader (leader: {leader})")]
    NotLeader { leader: String },
    #[error("internal error: {reason}")]
    Internal { reason: String },
    #[error("{path}: permission denied: {reason}")]
    PermissionDenied { path: String, reason: String },
    #[error("not authenticated: {reason}")]
    Unauthenticated { reason: String },
    /// The server does not know the call (a master of an older version).
    #[error("not supported by the server: {reason}")]
    Unsupported { reason: String },
}

impl FsError {
    /// True when the same request may succeed later (failover, a restarting server).
    pub fn is_retryable(&self) -> bool {
        matches!(self, FsError::Unavailable { .. } | FsError::NotLeader { .. })
    }

    fn kind(&self) -> &'static str {
        match self {
            FsError::NotFound { .. } => "NotFound",
            FsError::AlreadyExists { .. } => "AlreadyExists",
            FsError::NotADirectory { .. } => "NotADirectory",
            FsError::IsADirectory { .. } => "IsADirectory",
            FsError::DirectoryNotEmpty { .. } => "DirectoryNotEmpty",
            FsError::InvalidPath { .. } => "InvalidPath",
            FsError::InvalidArgument { .. } => "InvalidArgument",
            FsError::FileIncomplete { .. } => "FileIncomplete",
            FsError::FileAlreadyComplete { .. } => "FileAlreadyComplete",
            FsError::BlockLost { .. } => "BlockLost",
            FsError::NotPersisted { .. } => "NotPersisted",
            FsError::OutOfSpace { .. } => "OutOfSpace",
            FsError::Unavailable { .. } => "Unavailable",
            FsError::NotLeader { .. } => "NotLeader",
            FsError::Internal { .. } => "Internal",
            FsError::PermissionDenied { .. } => "PermissionDenied",
            FsError::Unauthenticated { .. } => "Unauthenticated",
            FsError::Unsupported { .. } => "Unsupported",
        }
    }

    /// The fields, in declaration order, for the wire encoding.
    fn fields(&self) -> Vec<String> {
        match self {
            FsError::NotFound { path }
            | FsError::AlreadyExists { path }
            | FsError::NotADirectory { path }
            | FsError::IsADirectory { path }
            | FsError::DirectoryNotEmpty { path }
            | FsError::FileIncomplete { path }
            | FsError::FileAlreadyComplete { path }
            | FsError::NotPersisted { path } => vec![path.clone()],
            FsError::InvalidPath { path, reason } | FsError::PermissionDenied { path, reason } => vec![path.clone(), reason.clone()],
            FsError::BlockLost { path, block_id } => vec![path.clone(), block_id.to_string()],
            FsError::InvalidArgument { reason }
            | FsError::OutOfSpace { reason }
            | FsError::Unavailable { reason }
            | FsError::Internal { reason }
            | FsError::Unauthenticated { reason }
            | FsError::Unsupported { reason } => vec![reason.clone()],
            FsError::NotLeader { leader } => vec![leader.clone()],
        }
    }

    fn from_parts(kind: &str, f: &[&str]) -> Option<FsError> {
        let s = |i: usize| f.get(i).map(|v| v.to_string());
        Some(match kind {
            "NotFound" => FsError::NotFound { path: s(0)? },
            "AlreadyExists" => FsError::AlreadyExists { path: s(0)? },
            "NotADirectory" => FsError::NotADirectory { path: s(0)? },
            "IsADirectory" => FsError::IsADirectory { path: s(0)? },
            "DirectoryNotEmpty" => FsError::DirectoryNotEmpty { path: s(0)? },
            "InvalidPath" => FsError::InvalidPath { path: s(0)?, reason: s(1)? },
            "InvalidArgument" => FsError::InvalidArgument { reason: s(0)? },
            "FileIncomplete" => FsError::FileIncomplete { path: s(0)? },
            "FileAlreadyComplete" => FsError::FileAlreadyComplete { path: s(0)? },
            "BlockLost" => FsError::BlockLost { path: s(0)?, block_id: s(1)?.parse().ok()? },
            "NotPersisted" => FsError::NotPersisted { path: s(0)? },
            "OutOfSpace" => FsError::OutOfSpace { reason: s(0)? },
            "Unavailable" => FsError::Unavailable { reason: s(0)? },
            "NotLeader" => FsError::NotLeader { leader: s(0)? },
            "Internal" => FsError::Internal { reason: s(0)? },
            "PermissionDenied" => FsError::PermissionDenied { path: s(0)?, reason: s(1)? },
            "Unauthenticated" => FsError::Unauthenticated { reason: s(0)? },
            "Unsupported" => FsError::Unsupported { reason: s(0)? },
            _ => return None,
        })
    }

    fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            FsError::NotFound { .. } => Code::NotFound,
            FsError::AlreadyExists { .. } => Code::AlreadyExists,
            FsError::InvalidPath { .. } | FsError::InvalidArgument { .. } => Code::InvalidArgument,
            FsError::OutOfSpace { .. } => Code::ResourceExhausted,
            FsError::Unavailable { .. } | FsError::NotLeader { .. } => Code::Unavailable,
            FsError::Internal { .. } => Code::Internal,
            FsError::PermissionDenied { .. } => Code::PermissionDenied,
            FsError::Unauthenticated { .. } => Code::Unauthenticated,
            FsError::Unsupported { .. } => Code::Unimplemented,
            _ => Code::FailedPrecondition,
        }
    }
}

/// Longest field of an error sent over gRPC: messages travel in HTTP/2 trailers, which
/// clients bound (16 KiB by default), so an error echoing a huge request must be cut.
pub const MAX_WIRE_FIELD_BYTES: usize = 4200;

/// `text` cut to at most `max` bytes (at a character boundary), marked with "…" if cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Separates kind and fields in the status details; never appears in paths (control char).
const FIELD_SEPARATOR: char = '\u{1f}';

impl From<FsError> for tonic::Status {
    fn from(e: FsError) -> Self {
        let mut details = e.kind().to_string();
        for f in e.fields() {
            details.push(FIELD_SEPARATOR);
            details.push_str(&shorten(&f, MAX_WIRE_FIELD_BYTES));
        }
        tonic::Status::with_details(e.code(), shorten(&e.to_string(), MAX_WIRE_FIELD_BYTES), Bytes::from(details))
    }
}

impl From<tonic::Status> for FsError {
    fn from(status: tonic::Status) -> Self {
        if let Ok(details) = std::str::from_utf8(status.details()) {
            let mut parts = details.split(FIELD_SEPARATOR);
            if let Some(kind) = parts.next() {
                let fields: Vec<&str> = parts.collect();
                if let Some(e) = FsError::from_parts(kind, &fields) {
                    return e;
                }
            }
        }
        let reason = status.message().to_string();
        // A status made on this side from a transport error (an HTTP/2 GOAWAY or reset while
        // a master shuts down: "h2 protocol error") carries that error as its source; one the
        // server sent never does. The request may not have run: retry it (mutations carry
        // request ids, so a retry of one that did run is recognised).
        let transport_failure = std::error::Error::source(&status).is_some();
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled | tonic::Code::Aborted | tonic::Code::Unknown => {
                FsError::Unavailable { reason: format!("{:?}: {reason}", status.code()) }
            }
            // (ResourceExhausted too: an HTTP/2 ENHANCE_YOUR_CALM is the connection's limit,
            // not a full worker.)
            tonic::Code::Internal | tonic::Code::ResourceExhausted if transport_failure => {
                FsError::Unavailable { reason: format!("connection failed: {reason}") }
            }
            tonic::Code::NotFound => FsError::NotFound { path: reason },
            tonic::Code::InvalidArgument => FsError::InvalidArgument { reason },
            tonic::Code::ResourceExhausted => FsError::OutOfSpace { reason },
            tonic::Code::PermissionDenied => FsError::PermissionDenied { path: String::new(), reason },
            tonic::Code::Unauthenticated => FsError::Unauthenticated { reason },
            // What a server answers for a method it does not have.
            tonic::Code::Unimplemented => FsError::Unsupported { reason },
            _ => FsError::Internal { reason: format!("{:?}: {reason}", status.code()) },
        }
    }
}

/// One item's failure inside a batched call, as the status a call of its own would have got.
impl From<FsError> for crate::proto::ItemError {
    fn from(e: FsError) -> Self {
        let status = tonic::Status::from(e);
        crate::proto::ItemError { code: status.code() as i32, message: status.message().to_string(), details: Bytes::copy_from_slice(status.details()) }
    }
}

/// The error a batched item failed with, as if its own call had returned that status.
impl From<crate::proto::ItemError> for FsError {
    fn from(e: crate::proto::ItemError) -> Self {
        FsError::from(tonic::Status::with_details(tonic::Code::from_i32(e.code), e.message, e.details))
    }
}

/// One request's answer inside a batched reply (`CreateFiles`, `CompleteFiles`).
impl From<Result<crate::proto::FileInfo, FsError>> for crate::proto::FileResult {
    fn from(r: Result<crate::proto::FileInfo, FsError>) -> Self {
        use crate::proto::file_result::Outcome;
        crate::proto::FileResult { outcome: Some(r.map_or_else(|e| Outcome::Error(e.into()), Outcome::Info)) }
    }
}

/// One request's answer read back from a batched reply (none at all is a bug on the
/// master's side).
impl From<crate::proto::FileResult> for Result<crate::proto::FileInfo, FsError> {
    fn from(r: crate::proto::FileResult) -> Self {
        use crate::proto::file_result::Outcome;
        match r.outcome {
            Some(Outcome::Info(info)) => Ok(info),
            Some(Outcome::Error(e)) => Err(e.into()),
            None => Err(FsError::Internal { reason: "the master answered a request with neither a file nor an error".into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_failure_is_retried_but_an_internal_error_the_server_sent_is_not() {
        let mut goaway = tonic::Status::internal("h2 protocol error: http2 error");
        goaway.set_source(std::sync::Arc::new(std::io::Error::other("connection closed by GOAWAY")));
        assert!(matches!(FsError::from(goaway), FsError::Unavailable { .. }));
        assert!(matches!(FsError::from(tonic::Status::internal("a bug")), FsError::Internal { .. }));
        let mut calm = tonic::Status::resource_exhausted("h2 protocol error: too many resets");
        calm.set_source(std::sync::Arc::new(std::io::Error::other("ENHANCE_YOUR_CALM")));
        assert!(matches!(FsError::from(calm), FsError::Unavailable { .. }));
        assert!(matches!(FsError::from(tonic::Status::resource_exhausted("worker full")), FsError::OutOfSpace { .. }));
        // What tonic answers for a method the server lacks: not retried.
        let missing = FsError::from(tonic::Status::unimplemented(""));
        assert!(matches!(missing, FsError::Unsupported { .. }) && !missing.is_retryable());
    }

    #[test]
    fn every_kind_round_trips_through_grpc_status() {
        let all = vec![
            FsError::NotFound { path: "/a".into() },
            FsError::AlreadyExists { path: "/a".into() },
            FsError::NotADirectory { path: "/a".into() },
            FsError::IsADirectory { path: "/a".into() },
            FsError::DirectoryNotEmpty { path: "/a".into() },
            FsError::InvalidPath { path: "a".into(), reason: "relative".into() },
            FsError::InvalidArgument { reason: "x".into() },
            FsError::FileIncomplete { path: "/a".into() },
            FsError::FileAlreadyComplete { path: "/a".into() },
            FsError::BlockLost { path: "/a".into(), block_id: 77 },
            FsError::NotPersisted { path: "/a".into() },
            FsError::OutOfSpace { reason: "full".into() },
            FsError::Unavailable { reason: "down".into() },
            FsError::NotLeader { leader: "h:1".into() },
            FsError::Internal { reason: "bug".into() },
            FsError::PermissionDenied { path: "/a".into(), reason: "user=x".into() },
            FsError::Unauthenticated { reason: "no user".into() },
            FsError::Unsupported { reason: "no such method".into() },
        ];
        for e in all {
            let back = FsError::from(tonic::Status::from(e.clone()));
            assert_eq!(back, e);
            // The same inside a batched reply, as an item's error and as a create's result.
            assert_eq!(FsError::from(crate::proto::ItemError::from(e.clone())), e);
            let result: Result<crate::proto::FileInfo, FsError> = crate::proto::FileResult::from(Err(e.clone())).into();
            assert_eq!(result, Err(e));
        }
        let info = crate::proto::FileInfo { id: 7, path: "/a".into(), ..Default::default() };
        let result: Result<crate::proto::FileInfo, FsError> = crate::proto::FileResult::from(Ok(info.clone())).into();
        assert_eq!(result, Ok(info));
        let empty: Result<crate::proto::FileInfo, FsError> = crate::proto::FileResult { outcome: None }.into();
        assert!(matches!(empty, Err(FsError::Internal { .. })));
    }

    #[test]
    fn huge_fields_are_cut_on_the_wire_and_still_decode() {
        let e = FsError::InvalidPath { path: format!("/{}é", "x".repeat(100_000)), reason: "too long".into() };
        let status = tonic::Status::from(e);
        assert!(status.message().len() <= MAX_WIRE_FIELD_BYTES + 3);
        match FsError::from(status) {
            FsError::InvalidPath { path, reason } => {
                assert!(path.ends_with('…') && path.len() <= MAX_WIRE_FIELD_BYTES + 3, "{}", path.len());
                assert_eq!(reason, "too long");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(shorten("añb", 2), "a…", "cut at a character boundary");
    }

    #[test]
    fn transport_failures_are_retryable() {
        let e = FsError::from(tonic::Status::unavailable("connection refused"));
        assert!(e.is_retryable());
        assert!(!FsError::NotFound { path: "/x".into() }.is_retryable());
    }
}
