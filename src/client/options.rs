//! Client settings: how a client writes and reads (write and read types), who it is, and
//! its limits, validated from configuration.

use super::*;

/// Settings of a client, validated from [`Config`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    pub block_size: u64,
    pub short_circuit: bool,
    pub chunk_bytes: usize,
    pub write_type: WriteType,
    pub read_type: ReadType,
    /// Who this client is (its user, authentication type and umask).
    pub security: crate::security::SecurityOptions,
    pub request_timeout: Duration,
    /// Listings look at the under-storage again after this long (0 always, -1 only once).
    pub metadata_sync_interval_ms: i64,
}

impl ClientOptions {
    /// Reads the client's settings; the user is `tachyon.security.login.username` or this
    /// process's user.
    pub fn from_config(cfg: &Config) -> Result<Self, FsError> {
        Ok(ClientOptions {
            retry: RetryPolicy {
                base_sleep: Duration::from_millis(cfg.duration_ms(config::USER_RETRY_BASE_SLEEP).max(1)),
                max_sleep: Duration::from_millis(cfg.duration_ms(config::USER_RETRY_MAX_SLEEP).max(1)),
                max_duration: Duration::from_millis(cfg.duration_ms(config::USER_RETRY_MAX_DURATION)),
            },
            block_size: cfg.bytes(config::USER_BLOCK_SIZE).max(1),
            short_circuit: cfg.bool(config::USER_SHORT_CIRCUIT),
            chunk_bytes: cfg.bytes(config::USER_CHUNK_SIZE).clamp(4096, 16 << 20) as usize,
            // Validated against the same names when the configuration loads.
            write_type: WriteType::parse(&cfg.string(config::USER_WRITE_TYPE)).unwrap_or(WriteType::MustCache),
            read_type: ReadType::parse(&cfg.string(config::USER_READ_TYPE)).unwrap_or(ReadType::CachePromote),
            security: crate::security::SecurityOptions::from_config(cfg)?,
            request_timeout: Duration::from_secs(30),
            metadata_sync_interval_ms: cfg.duration_or_never_ms(config::USER_METADATA_SYNC_INTERVAL),
        })
    }
}

/// The name of the user running this process: `$USER`, `$LOGNAME`, or the passwd entry
/// of the process's uid.
pub fn current_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().next().unwrap_or("").to_string())));
    let Some(uid) = uid else { return "unknown".into() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
            })
        })
        .unwrap_or(uid)
}

/// Where a new file's data goes (`tachyon.user.file.writetype.default`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteType {
    /// Workers' memory only.
    MustCache,
    /// Workers' memory and, before the file completes, the under-storage.
    CacheThrough,
    /// The under-storage only; readers cache it on first read.
    Through,
    /// Workers' memory; the leader master copies it to the under-storage in the background.
    AsyncThrough,
}

impl WriteType {
    /// Parses a write type name (any case), as in [`config::WRITE_TYPES`].
    pub fn parse(name: &str) -> Result<Self, FsError> {
        match name.trim().to_ascii_uppercase().as_str() {
            "MUST_CACHE" => Ok(WriteType::MustCache),
            "CACHE_THROUGH" => Ok(WriteType::CacheThrough),
            "THROUGH" => Ok(WriteType::Through),
            "ASYNC_THROUGH" => Ok(WriteType::AsyncThrough),
            other => Err(FsError::InvalidArgument { reason: format!("unknown write type {other:?} (expected one of {})", config::WRITE_TYPES.join(", ")) }),
        }
    }

    /// The configuration name, e.g. `CACHE_THROUGH`.
    pub fn name(self) -> &'static str {
        match self {
            WriteType::MustCache => "MUST_CACHE",
            WriteType::CacheThrough => "CACHE_THROUGH",
            WriteType::Through => "THROUGH",
            WriteType::AsyncThrough => "ASYNC_THROUGH",
        }
    }

    pub(super) fn caches(self) -> bool {
        self != WriteType::Through
    }

    pub(super) fn writes_through(self) -> bool {
        matches!(self, WriteType::CacheThrough | WriteType::Through)
    }

    /// The persistence state the file completes with.
    pub(super) fn persistence(self) -> PersistenceState {
        match self {
            WriteType::MustCache => PersistenceState::NotPersisted,
            WriteType::CacheThrough | WriteType::Through => PersistenceState::Persisted,
            WriteType::AsyncThrough => PersistenceState::ToBePersisted,
        }
    }
}

/// Whether a block read from the under-storage is cached in a worker
/// (`tachyon.user.file.readtype.default`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadType {
    /// Read, never cache.
    NoCache,
    /// Cache blocks read from the under-storage in a worker.
    Cache,
    /// As `Cache` (one memory tier: there is no faster tier to promote to).
    CachePromote,
}

impl ReadType {
    /// Parses a read type name (any case), as in [`config::READ_TYPES`].
    pub fn parse(name: &str) -> Result<Self, FsError> {
        match name.trim().to_ascii_uppercase().as_str() {
            "NO_CACHE" => Ok(ReadType::NoCache),
            "CACHE" => Ok(ReadType::Cache),
            "CACHE_PROMOTE" => Ok(ReadType::CachePromote),
            other => Err(FsError::InvalidArgument { reason: format!("unknown read type {other:?} (expected one of {})", config::READ_TYPES.join(", ")) }),
        }
    }
}

/// Options of one file creation.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Block size; `None` for the configured default.
    pub block_size: Option<u64>,
    /// Create missing parent directories.
    pub recursive: bool,
    /// Write type; `None` for the configured default.
    pub write_type: Option<WriteType>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_types_read_their_names_and_say_where_data_goes() {
        for name in config::WRITE_TYPES {
            let t = WriteType::parse(&name.to_ascii_lowercase()).unwrap();
            assert_eq!(t.name(), *name, "names round-trip, case-insensitively");
        }
        assert!(WriteType::parse("SOMETIMES").unwrap_err().to_string().contains("MUST_CACHE, CACHE_THROUGH"));
        let expect = [
            (WriteType::MustCache, true, false, PersistenceState::NotPersisted),
            (WriteType::CacheThrough, true, true, PersistenceState::Persisted),
            (WriteType::Through, false, true, PersistenceState::Persisted),
            (WriteType::AsyncThrough, true, false, PersistenceState::ToBePersisted),
        ];
        for (t, caches, through, persistence) in expect {
            assert_eq!((t.caches(), t.writes_through(), t.persistence()), (caches, through, persistence), "{t:?}");
        }
        assert_eq!(ReadType::parse(" cache_promote ").unwrap(), ReadType::CachePromote);
        assert!(ReadType::parse("ALWAYS").is_err());
    }
}
