//! Configuration, layered exactly as the Tachyon user guide documents it:
//! defaults < `conf/tachyon-site.properties` < `conf/tachyon-env.sh` variables
//! (`TACHYON_MASTER_ADDRESS`, ... and `-Dkey=value` in `TACHYON_JAVA_OPTS`) < command line.
//! `alluxio.*` keys and `ALLUXIO_*` variables are aliases of `tachyon.*` ones.
//!
//! Every known key is declared once in [`KEYS`] with its type; [`Config::load`] validates
//! them all up front, so a bad value stops a process at start with the key and its source.
//! Values may refer to other keys as `${key}`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The type of a configuration value, used for validation and parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    String,
    Bool,
    Port,
    Integer,
    /// A size: `1048576`, `64MB`, `1GB`, `512KB`.
    Bytes,
    /// A duration: `5min`, `10s`, `300ms`; a bare number is milliseconds.
    Duration,
    /// A duration, or `-1` for never.
    DurationOrNever,
    /// One of the listed words.
    Enum(&'static [&'static str]),
    /// An octal permission mask such as `022`.
    OctalMask,
    /// Comma-separated sizes (`1GB,500MB`), possibly none.
    BytesList,
}

/// One known key.
pub struct KeyDef {
    pub name: &'static str,
    pub default: &'static str,
    pub value_type: ValueType,
    pub description: &'static str,
    /// True for credentials: never printed.
    pub secret: bool,
}

const fn key(name: &'static str, default: &'static str, value_type: ValueType, description: &'static str) -> KeyDef {
    KeyDef { name, default, value_type, description, secret: false }
}

/// A credential: an empty default, and its value is masked wherever keys are listed.
const fn secret_key(name: &'static str, description: &'static str) -> KeyDef {
    KeyDef { name, default: "", value_type: ValueType::String, description, secret: true }
}

/// Write types of the client (see `client::WriteType`).
pub const WRITE_TYPES: &[&str] = &["MUST_CACHE", "CACHE_THROUGH", "THROUGH", "ASYNC_THROUGH"];
/// Read types of the client.
pub const READ_TYPES: &[&str] = &["NO_CACHE", "CACHE", "CACHE_PROMOTE"];

pub const HOME: &str = "tachyon.home";
pub const MASTER_HOSTNAME: &str = "tachyon.master.hostname";
pub const MASTER_PORT: &str = "tachyon.master.port";
pub const MASTER_WEB_PORT: &str = "tachyon.master.web.port";
pub const MASTER_BIND_HOST: &str = "tachyon.master.bind.host";
pub const MASTER_WEB_BIND_HOST: &str = "tachyon.master.web.bind.host";
pub const JOURNAL_FOLDER: &str = "tachyon.master.journal.folder";
pub const JOURNAL_SEGMENT_MAX: &str = "tachyon.master.journal.log.size.bytes.max";
pub const JOURNAL_CHECKPOINT_PERIOD: &str = "tachyon.master.journal.checkpoint.period.entries";
pub const MASTER_WORKER_TIMEOUT: &str = "tachyon.master.worker.timeout";
pub const MASTER_TTL_CHECK_INTERVAL: &str = "tachyon.master.ttl.checker.interval.ms";
pub const MASTER_MIN_BLOCK_SIZE: &str = "tachyon.master.block.size.bytes.min";
pub const MASTER_MAX_PATH_DEPTH: &str = "tachyon.master.path.depth.max";
pub const MASTER_ABANDONED_WRITE_TIMEOUT: &str = "tachyon.master.write.abandoned.timeout.ms";
pub const WORKER_HOSTNAME: &str = "tachyon.worker.hostname";
pub const WORKER_PORT: &str = "tachyon.worker.port";
pub const WORKER_DATA_PORT: &str = "tachyon.worker.data.port";
pub const WORKER_WEB_PORT: &str = "tachyon.worker.web.port";
pub const WORKER_BIND_HOST: &str = "tachyon.worker.bind.host";
pub const WORKER_DATA_BIND_HOST: &str = "tachyon.worker.data.bind.host";
pub const WORKER_WEB_BIND_HOST: &str = "tachyon.worker.web.bind.host";
pub const WORKER_MEMORY_SIZE: &str = "tachyon.worker.memory.size";
pub const WORKER_MEM_PATH: &str = "tachyon.worker.tieredstore.level0.dirs.path";
pub const FUSE_METADATA_CACHE: &str = "tachyon.fuse.metadata.cache.ms";
pub const PROXY_PORT: &str = "tachyon.proxy.web.port";
pub const PROXY_BIND_HOST: &str = "tachyon.proxy.web.bind.host";
pub const PROXY_HOSTNAME: &str = "tachyon.proxy.web.hostname";
pub const PROXY_ACCESS_KEY: &str = "tachyon.proxy.s3.access.key";
pub const PROXY_SECRET_KEY: &str = "tachyon.proxy.s3.secret.key";
pub const PROXY_MULTIPART_EXPIRY: &str = "tachyon.proxy.s3.multipart.upload.expiry";
pub const WORKER_TIER_LEVELS: &str = "tachyon.worker.tieredstore.levels";
/// Most storage tiers a worker may have (MEM, SSD, HDD).
pub const MAX_WORKER_TIERS: usize = 3;
/// The keys of each tier level: (alias, folders, quotas), top level first.
pub const WORKER_TIER_KEYS: [(&str, &str, &str); MAX_WORKER_TIERS] = [
    ("tachyon.worker.tieredstore.level0.alias", WORKER_MEM_PATH, "tachyon.worker.tieredstore.level0.dirs.quota"),
    ("tachyon.worker.tieredstore.level1.alias", "tachyon.worker.tieredstore.level1.dirs.path", "tachyon.worker.tieredstore.level1.dirs.quota"),
    ("tachyon.worker.tieredstore.level2.alias", "tachyon.worker.tieredstore.level2.dirs.path", "tachyon.worker.tieredstore.level2.dirs.quota"),
];
/// Kinds of storage tier.
pub const TIER_ALIASES: &[&str] = &["MEM", "SSD", "HDD"];
pub const WORKER_HEARTBEAT_INTERVAL: &str = "tachyon.worker.block.heartbeat.interval.ms";
pub const WORKER_HEARTBEAT_TIMEOUT: &str = "tachyon.worker.block.heartbeat.timeout.ms";
pub const WORKER_WRITE_IDLE_TIMEOUT: &str = "tachyon.worker.block.write.idle.timeout.ms";
pub const USER_BLOCK_SIZE: &str = "tachyon.user.block.size.bytes.default";
pub const USER_WRITE_TYPE: &str = "tachyon.user.file.writetype.default";
pub const USER_READ_TYPE: &str = "tachyon.user.file.readtype.default";
pub const USER_RETRY_MAX_DURATION: &str = "tachyon.user.rpc.retry.max.duration";
pub const USER_RETRY_BASE_SLEEP: &str = "tachyon.user.rpc.retry.base.sleep";
pub const USER_RETRY_MAX_SLEEP: &str = "tachyon.user.rpc.retry.max.sleep";
pub const USER_SHORT_CIRCUIT: &str = "tachyon.user.short.circuit.enabled";
pub const USER_CHUNK_SIZE: &str = "tachyon.user.network.chunk.size.bytes";
pub const USER_METADATA_SYNC_INTERVAL: &str = "tachyon.user.file.metadata.sync.interval";
pub const ZOOKEEPER_ENABLED: &str = "tachyon.zookeeper.enabled";
pub const ZOOKEEPER_ADDRESS: &str = "tachyon.zookeeper.address";
pub const ZOOKEEPER_ROOT: &str = "tachyon.zookeeper.root";
pub const ZOOKEEPER_ELECTION_PATH: &str = "tachyon.zookeeper.election.path";
pub const ZOOKEEPER_LEADER_PATH: &str = "tachyon.zookeeper.leader.path";
pub const ZOOKEEPER_SESSION_TIMEOUT: &str = "tachyon.zookeeper.session.timeout";
pub const ZOOKEEPER_CONNECTION_TIMEOUT: &str = "tachyon.zookeeper.connection.timeout";
pub const ZOOKEEPER_AUTH_DIGEST: &str = "tachyon.zookeeper.auth.digest";
pub const JOURNAL_TAILER_SLEEP: &str = "tachyon.master.journal.tailer.sleep.time";
pub const UNDERFS_ADDRESS: &str = "tachyon.underfs.address";
pub const DATA_FOLDER: &str = "tachyon.data.folder";
pub const UNDERFS_S3_ENDPOINT: &str = "tachyon.underfs.s3.endpoint";
pub const UNDERFS_S3_REGION: &str = "tachyon.underfs.s3.region";
pub const UNDERFS_S3_PATH_STYLE: &str = "tachyon.underfs.s3.disable.dns.buckets";
pub const S3_ACCESS_KEY: &str = "s3a.accessKeyId";
pub const S3_SECRET_KEY: &str = "s3a.secretKey";
pub const AUTHENTICATION_TYPE: &str = "tachyon.security.authentication.type";
pub const LOGIN_USERNAME: &str = "tachyon.security.login.username";
pub const AUTHENTICATION_CUSTOM_SECRET: &str = "tachyon.security.authentication.custom.secret";
pub const CLUSTER_SECRET: &str = "tachyon.security.cluster.secret";
pub const PERMISSION_ENABLED: &str = "tachyon.security.authorization.permission.enabled";
pub const PERMISSION_SUPERGROUP: &str = "tachyon.security.authorization.permission.supergroup";
pub const PERMISSION_UMASK: &str = "tachyon.security.authorization.permission.umask";
pub const GROUP_MAPPING_OVERRIDES: &str = "tachyon.security.group.mapping.static.overrides";
pub const GROUP_MAPPING_CACHE_TIMEOUT: &str = "tachyon.security.group.mapping.cache.timeout.ms";
pub const MOUNT_ALLOWED_URIS: &str = "tachyon.master.mount.allowed.uris";
pub const TLS_ENABLED: &str = "tachyon.network.tls.enabled";
pub const TLS_CERT_FILE: &str = "tachyon.network.tls.cert.file";
pub const TLS_KEY_FILE: &str = "tachyon.network.tls.key.file";
pub const TLS_CA_FILE: &str = "tachyon.network.tls.ca.file";

/// Authentication types (see `security::AuthType`).
pub const AUTHENTICATION_TYPES: &[&str] = &["NOSASL", "SIMPLE", "CUSTOM"];

/// Every key tachyon knows, with its default and type.
pub const KEYS: &[KeyDef] = &[
    key(HOME, "", ValueType::String, "Installation folder; defaults to $TACHYON_HOME or the current folder"),
    key(MASTER_HOSTNAME, "localhost", ValueType::String, "Externally visible address of the master (TACHYON_MASTER_ADDRESS)"),
    key(MASTER_PORT, "19998", ValueType::Port, "Master RPC port"),
    key(MASTER_WEB_PORT, "19999", ValueType::Port, "Master web UI port"),
    key(MASTER_BIND_HOST, "", ValueType::String, "Master RPC: address to listen on; empty: the advertised host if it is a loopback address, else 0.0.0.0 (every interface)"),
    key(MASTER_WEB_BIND_HOST, "", ValueType::String, "Master web UI: address to listen on; empty: the advertised host if it is a loopback address, else 0.0.0.0 (every interface)"),
    key(JOURNAL_FOLDER, "${tachyon.home}/journal", ValueType::String, "Journal folder: a local path, hdfs://... or s3://..."),
    key(JOURNAL_SEGMENT_MAX, "10MB", ValueType::Bytes, "A journal log segment is completed past this size"),
    key(JOURNAL_CHECKPOINT_PERIOD, "2000000", ValueType::Integer, "Write a checkpoint after this many journal entries"),
    key(MASTER_WORKER_TIMEOUT, "5min", ValueType::Duration, "A worker silent this long is declared lost"),
    key(MASTER_TTL_CHECK_INTERVAL, "60000", ValueType::Duration, "How often the leader looks for files and directories whose TTL ran out"),
    key(MASTER_MIN_BLOCK_SIZE, "64KB", ValueType::Bytes,
        "Smallest block size a new file may have (a tiny one would give a file millions of blocks to track)"),
    key(MASTER_ABANDONED_WRITE_TIMEOUT, "1h", ValueType::Duration,
        "An incomplete file whose writer stored no block for this long is deleted with its under-storage upload (the writer died); keep it above the longest THROUGH write, which stores no blocks"),
    key(MASTER_MAX_PATH_DEPTH, "1000", ValueType::Integer, "Deepest path (in components) a file or directory may have, as HDFS's limit"),
    key(WORKER_HOSTNAME, "localhost", ValueType::String, "Externally visible address of the worker"),
    key(WORKER_PORT, "29998", ValueType::Port, "Worker RPC port"),
    key(WORKER_DATA_PORT, "29999", ValueType::Port, "Worker data port"),
    key(WORKER_WEB_PORT, "30000", ValueType::Port, "Worker web UI port"),
    key(WORKER_BIND_HOST, "", ValueType::String, "Worker RPC: address to listen on; empty: the advertised host if it is a loopback address, else 0.0.0.0 (every interface)"),
    key(WORKER_DATA_BIND_HOST, "", ValueType::String, "Worker data: address to listen on; empty: the advertised host if it is a loopback address, else 0.0.0.0 (every interface)"),
    key(WORKER_WEB_BIND_HOST, "", ValueType::String, "Worker web UI: address to listen on; empty: the advertised host if it is a loopback address, else 0.0.0.0 (every interface)"),
    key(WORKER_MEMORY_SIZE, "1GB", ValueType::Bytes, "Capacity of the worker's memory tier (TACHYON_WORKER_MEMORY_SIZE)"),
    key(PROXY_PORT, "39999", ValueType::Port, "Port of the S3-compatible gateway (`tachyon proxy`)"),
    key(PROXY_HOSTNAME, "localhost", ValueType::String, "Externally visible address of the S3 gateway"),
    key(PROXY_BIND_HOST, "", ValueType::String, "S3 gateway: address to listen on; empty: the advertised host if it is a loopback address, else 0.0.0.0"),
    key(PROXY_ACCESS_KEY, "", ValueType::String, "Access key id S3 clients sign requests with (SigV4); empty: unsigned requests are accepted"),
    secret_key(PROXY_SECRET_KEY, "Secret key S3 clients sign requests with, never shown"),
    key(PROXY_MULTIPART_EXPIRY, "24h", ValueType::Duration,
        "A multipart upload that gets no part for this long is aborted and its parts deleted (clients that crash abandon theirs)"),
    key(FUSE_METADATA_CACHE, "1000", ValueType::Duration, "How long a FUSE mount (and the kernel) keeps file attributes and lookups before asking the master again"),
    key(WORKER_TIER_LEVELS, "1", ValueType::Integer, "Storage tiers of a worker (1 to 3), configured by the level0..level2 keys, fastest first"),
    key(WORKER_TIER_KEYS[0].0, "MEM", ValueType::Enum(TIER_ALIASES), "Kind of the top tier (MEM, SSD or HDD)"),
    key(WORKER_MEM_PATH, "/dev/shm", ValueType::String,
        "Folders of the top tier, comma-separated; for MEM on a ramdisk/tmpfs (TACHYON_RAM_FOLDER)"),
    key(WORKER_TIER_KEYS[0].2, "${tachyon.worker.memory.size}", ValueType::BytesList,
        "Quota of each top-tier folder, comma-separated; the last one applies to the remaining folders"),
    key(WORKER_TIER_KEYS[1].0, "SSD", ValueType::Enum(TIER_ALIASES), "Kind of the second tier"),
    key(WORKER_TIER_KEYS[1].1, "", ValueType::String, "Folders of the second tier, comma-separated (needed with 2 or more levels)"),
    key(WORKER_TIER_KEYS[1].2, "", ValueType::BytesList, "Quota of each second-tier folder, comma-separated"),
    key(WORKER_TIER_KEYS[2].0, "HDD", ValueType::Enum(TIER_ALIASES), "Kind of the third tier"),
    key(WORKER_TIER_KEYS[2].1, "", ValueType::String, "Folders of the third tier, comma-separated (needed with 3 levels)"),
    key(WORKER_TIER_KEYS[2].2, "", ValueType::BytesList, "Quota of each third-tier folder, comma-separated"),
    key(WORKER_HEARTBEAT_INTERVAL, "1000", ValueType::Duration, "Interval between worker heartbeats"),
    key(WORKER_HEARTBEAT_TIMEOUT, "60000", ValueType::Duration,
        "Without a successful heartbeat for this long the worker looks up the leader again and re-registers (it never exits)"),
    key(WORKER_WRITE_IDLE_TIMEOUT, "30000", ValueType::Duration,
        "A block write that sends nothing for this long is abandoned and its reserved space released"),
    key(USER_BLOCK_SIZE, "64MB", ValueType::Bytes, "Block size of new files"),
    key(USER_WRITE_TYPE, "MUST_CACHE", ValueType::Enum(WRITE_TYPES), "Default write type"),
    key(USER_READ_TYPE, "CACHE_PROMOTE", ValueType::Enum(READ_TYPES), "Default read type"),
    key(USER_RETRY_MAX_DURATION, "2min", ValueType::Duration, "Clients retry an unavailable master for at most this long"),
    key(USER_RETRY_BASE_SLEEP, "50ms", ValueType::Duration, "First retry backoff"),
    key(USER_RETRY_MAX_SLEEP, "3s", ValueType::Duration, "Longest retry backoff"),
    key(USER_SHORT_CIRCUIT, "true", ValueType::Bool, "Read blocks of a local worker straight from its memory tier"),
    key(USER_CHUNK_SIZE, "1MB", ValueType::Bytes, "Size of the data chunks streamed to and from workers"),
    key(USER_METADATA_SYNC_INTERVAL, "0", ValueType::DurationOrNever,
        "How stale a listing may be before the master looks at the under-storage again: 0 every time, -1 only the first time"),
    key(ZOOKEEPER_ENABLED, "false", ValueType::Bool, "Elect the leader master with ZooKeeper"),
    key(ZOOKEEPER_ADDRESS, "", ValueType::String, "ZooKeeper servers, host:port[,host:port...]"),
    key(ZOOKEEPER_ROOT, "/tachyon", ValueType::String, "ZooKeeper node under which tachyon keeps its election, leader, epoch and masters nodes"),
    key(ZOOKEEPER_ELECTION_PATH, "${tachyon.zookeeper.root}/election", ValueType::String, "ZooKeeper path of the leader election"),
    key(ZOOKEEPER_LEADER_PATH, "${tachyon.zookeeper.root}/leader", ValueType::String, "ZooKeeper path where the serving leader is published"),
    key(ZOOKEEPER_SESSION_TIMEOUT, "5s", ValueType::Duration, "ZooKeeper session timeout: a crashed leader is replaced after about this long"),
    key(ZOOKEEPER_CONNECTION_TIMEOUT, "3s", ValueType::Duration, "ZooKeeper connection timeout"),
    secret_key(ZOOKEEPER_AUTH_DIGEST,
        "user:password the masters authenticate to ZooKeeper with (digest); nodes they create are then theirs to change and everyone's to read. Never shown"),
    key(JOURNAL_TAILER_SLEEP, "200ms", ValueType::Duration, "How often a standby master reads new journal entries"),
    key(UNDERFS_ADDRESS, "${tachyon.home}/underFSStorage", ValueType::String, "Root of the under-storage (TACHYON_UNDERFS_ADDRESS)"),
    key(DATA_FOLDER, "${tachyon.underfs.address}", ValueType::String,
        "Under-storage folder holding the file data of tachyon's root (Tachyon 0.x's name; defaults to the under-storage root)"),
    key(UNDERFS_S3_ENDPOINT, "", ValueType::String, "S3 endpoint (http://host:port of an S3-compatible server); empty for AWS"),
    key(UNDERFS_S3_REGION, "us-east-1", ValueType::String, "S3 region"),
    key(UNDERFS_S3_PATH_STYLE, "false", ValueType::Bool, "Path-style S3 requests (endpoint/bucket/key) instead of bucket.endpoint/key"),
    key(S3_ACCESS_KEY, "", ValueType::String, "S3 access key id (aliases aws.accessKeyId, fs.s3n.awsAccessKeyId, fs.s3a.access.key)"),
    secret_key(S3_SECRET_KEY, "S3 secret key, never shown (aliases aws.secretKey, fs.s3n.awsSecretAccessKey, fs.s3a.secret.key)"),
    key(AUTHENTICATION_TYPE, "SIMPLE", ValueType::Enum(AUTHENTICATION_TYPES),
        "NOSASL: callers are not identified and nothing is checked; SIMPLE: clients name their user; CUSTOM: as SIMPLE, and clients prove they hold the custom secret"),
    key(LOGIN_USERNAME, "", ValueType::String, "The user this process acts as; empty: the operating-system user"),
    secret_key(AUTHENTICATION_CUSTOM_SECRET, "CUSTOM authentication: the secret clients and masters share, never shown"),
    secret_key(CLUSTER_SECRET, "The secret masters and workers share so no client can pose as a worker, never shown"),
    key(PERMISSION_ENABLED, "true", ValueType::Bool, "Check POSIX permissions of every request (never with NOSASL)"),
    key(PERMISSION_SUPERGROUP, "supergroup", ValueType::String, "Members of this group are superusers, as is the user the master runs as"),
    key(PERMISSION_UMASK, "022", ValueType::OctalMask, "Permission bits cleared from the mode of every new file and directory"),
    key(GROUP_MAPPING_OVERRIDES, "", ValueType::String,
        "Groups of users, overriding the master host's /etc/group: user=group1,group2;user2= (Hadoop's format)"),
    key(GROUP_MAPPING_CACHE_TIMEOUT, "60000", ValueType::Duration, "How long the master keeps a user's groups before looking them up again"),
    key(MOUNT_ALLOWED_URIS, "", ValueType::String,
        "Under-storage URI prefixes a superuser may mount, comma-separated (s3://bucket/,/srv/data); empty: any"),
    key(TLS_ENABLED, "false", ValueType::Bool, "TLS on master and worker RPC and the web UIs"),
    key(TLS_CERT_FILE, "", ValueType::String, "PEM certificate chain a master or worker presents (RPC and web UI)"),
    key(TLS_KEY_FILE, "", ValueType::String, "PEM private key of that certificate"),
    key(TLS_CA_FILE, "", ValueType::String, "PEM CA certificates trusted when connecting to masters and workers"),
];

/// Environment variables of `tachyon-env.sh` that set a key directly.
const ENV_KEYS: &[(&str, &str)] = &[
    ("TACHYON_MASTER_ADDRESS", MASTER_HOSTNAME),
    ("TACHYON_MASTER_HOSTNAME", MASTER_HOSTNAME),
    ("ALLUXIO_MASTER_HOSTNAME", MASTER_HOSTNAME),
    ("TACHYON_WORKER_MEMORY_SIZE", WORKER_MEMORY_SIZE),
    ("ALLUXIO_WORKER_MEMORY_SIZE", WORKER_MEMORY_SIZE),
    ("TACHYON_RAM_FOLDER", WORKER_MEM_PATH),
    ("ALLUXIO_RAM_FOLDER", WORKER_MEM_PATH),
    ("TACHYON_UNDERFS_ADDRESS", UNDERFS_ADDRESS),
    ("ALLUXIO_UNDERFS_ADDRESS", UNDERFS_ADDRESS),
];

/// Which process is loading configuration: selects the role's `*_JAVA_OPTS` variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Worker,
    Client,
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    SiteProperties(PathBuf),
    Environment(String),
    JavaOpts(String),
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::SiteProperties(p) => write!(f, "{}", p.display()),
            Source::Environment(v) => write!(f, "environment variable {v}"),
            Source::JavaOpts(v) => write!(f, "-D option in {v}"),
            Source::CommandLine => f.write_str("command line"),
        }
    }
}

/// Configuration could not be loaded; the process must not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {key} (from {origin}): {reason}")]
    Invalid { key: String, value: String, origin: Source, reason: String },
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}:{line}: cannot parse {text:?} (expected key=value)")]
    Syntax { path: PathBuf, line: usize, text: String },
    #[error("{key}: {reason}")]
    Unresolvable { key: String, reason: String },
}

/// Inputs to [`Config::load`]; split out so tests do not touch the real environment.
#[derive(Clone, Debug, Default)]
pub struct ConfigInputs {
    /// The `conf/` folder; `None` skips the site file.
    pub conf_dir: Option<PathBuf>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// `key=value` pairs from the command line.
    pub overrides: Vec<String>,
    pub role: Option<Role>,
}

impl ConfigInputs {
    /// Inputs from this process: its environment, `$TACHYON_CONF_DIR` or `$TACHYON_HOME/conf`.
    pub fn from_process(role: Role, overrides: Vec<String>) -> Self {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let conf_dir =
            env.get("TACHYON_CONF_DIR").or_else(|| env.get("ALLUXIO_CONF_DIR")).map(PathBuf::from).or_else(|| home_dir(&env).map(|h| h.join("conf")));
        ConfigInputs { conf_dir, env, overrides, role: Some(role) }
    }
}

fn home_dir(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    env.get("TACHYON_HOME").or_else(|| env.get("ALLUXIO_HOME")).map(PathBuf::from)
}

/// The effective configuration: every known key resolved, validated, with its source.
#[derive(Clone, Debug)]
pub struct Config {
    values: BTreeMap<String, (String, Source)>,
    warnings: Vec<String>,
}

/// Other names of keys, as Tachyon, Alluxio and Hadoop spelled them.
const KEY_ALIASES: &[(&str, &str)] = &[
    ("tachyon.usezookeeper", ZOOKEEPER_ENABLED),
    ("aws.accessKeyId", S3_ACCESS_KEY),
    ("fs.s3n.awsAccessKeyId", S3_ACCESS_KEY),
    ("fs.s3a.access.key", S3_ACCESS_KEY),
    ("aws.secretKey", S3_SECRET_KEY),
    ("fs.s3n.awsSecretAccessKey", S3_SECRET_KEY),
    ("fs.s3a.secret.key", S3_SECRET_KEY),
];

/// Maps `alluxio.x` to `tachyon.x` and the aliases of [`KEY_ALIASES`] to their key; other
/// keys unchanged.
pub fn canonical_key(key: &str) -> String {
    let key = match key.strip_prefix("alluxio.") {
        Some(rest) => format!("tachyon.{rest}"),
        None => key.to_string(),
    };
    match KEY_ALIASES.iter().find(|(alias, _)| *alias == key) {
        Some((_, canonical)) => canonical.to_string(),
        None => key,
    }
}

/// Keys of older Tachyon releases that tachyon accepts but does not need, with what
/// replaces them: setting one warns instead of failing, so an old configuration still starts.
const OBSOLETE_KEYS: &[(&str, &str)] =
    &[("tachyon.workers.folder", "workers stage uploads beside their final name under tachyon.data.folder, so no separate workers folder is used")];

/// Set by `bin/tachyon-start.sh` to the host name it read from `conf/masters` or
/// `conf/workers`: the process's own advertised host unless configured otherwise (it ranks
/// just above the defaults, so every configured value wins).
pub const LAUNCH_HOSTNAME_VAR: &str = "TACHYON_LAUNCH_HOSTNAME";

/// True for names that only this machine can reach: `localhost`, `127.x.y.z`, `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The address to listen on: `configured` if set; else the advertised host when it is a
/// loopback address (only this machine can reach it anyway, and several processes can
/// share a port on 127.0.0.1, .2, .3), else `0.0.0.0`, every interface, as Alluxio does.
pub fn derive_bind_host(advertised: &str, configured: &str) -> String {
    match configured.trim() {
        "" if is_loopback_host(advertised) => advertised.trim().to_string(),
        "" => "0.0.0.0".to_string(),
        c => c.to_string(),
    }
}

/// Parses a ZooKeeper server list `host:port[,host:port...]`.
pub fn parse_server_list(list: &str) -> Result<Vec<(String, u16)>, String> {
    let mut servers = Vec::new();
    for (i, item) in list.split(',').enumerate() {
        let item = item.trim();
        let Some((host, port)) = item.rsplit_once(':') else {
            return Err(format!("server {} {item:?} is not host:port", i + 1));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(format!("server {} {item:?} has no valid host name", i + 1));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => servers.push((host.to_string(), p)),
            _ => return Err(format!("server {} {item:?} has no valid port (1-65535)", i + 1)),
        }
    }
    Ok(servers)
}

/// True for every key tachyon understands under this name: a key, an alias of one, or an
/// older key it accepts with a warning.
pub fn is_accepted_key(key: &str) -> bool {
    let key = canonical_key(key);
    key_def(&key).is_some() || OBSOLETE_KEYS.iter().any(|(name, _)| *name == key)
}

/// True for keys whose values are never shown (credentials).
pub fn is_secret_key(key: &str) -> bool {
    key_def(&canonical_key(key)).is_some_and(|k| k.secret)
}

fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

impl Config {
    /// Loads and validates configuration from `inputs`.
    pub fn load(inputs: &ConfigInputs) -> Result<Config, ConfigError> {
        let mut cfg = Config { values: BTreeMap::new(), warnings: Vec::new() };
        for k in KEYS {
            cfg.values.insert(k.name.to_string(), (k.default.to_string(), Source::Default));
        }
        let home = home_dir(&inputs.env).or_else(|| std::env::current_dir().ok()).unwrap_or_else(|| PathBuf::from("."));
        cfg.values.insert(HOME.into(), (home.display().to_string(), Source::Default));
        let own_hostname_key = match inputs.role {
            Some(Role::Master) => Some(MASTER_HOSTNAME),
            Some(Role::Worker) => Some(WORKER_HOSTNAME),
            _ => None,
        };
        if let (Some(key), Some(host)) = (own_hostname_key, inputs.env.get(LAUNCH_HOSTNAME_VAR).filter(|h| !h.is_empty())) {
            cfg.set(key, host.clone(), Source::Environment(LAUNCH_HOSTNAME_VAR.into()));
        }

        if let Some(dir) = &inputs.conf_dir {
            for name in ["tachyon-site.properties", "alluxio-site.properties"] {
                let path = dir.join(name);
                if path.exists() {
                    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read { path: path.clone(), error })?;
                    for (k, v) in parse_properties(&path, &text)? {
                        cfg.set(&k, v, Source::SiteProperties(path.clone()));
                    }
                }
            }
        }
        if let Some(h) = home_dir(&inputs.env) {
            cfg.set(HOME, h.display().to_string(), Source::Environment("TACHYON_HOME".into()));
        }
        for (var, key) in ENV_KEYS {
            if let Some(v) = inputs.env.get(*var).filter(|v| !v.is_empty()) {
                cfg.set(key, v.clone(), Source::Environment(var.to_string()));
            }
        }
        let role_var = match inputs.role {
            Some(Role::Master) => Some("MASTER"),
            Some(Role::Worker) => Some("WORKER"),
            Some(Role::Client) => Some("USER"),
            None => None,
        };
        let mut opt_vars = vec!["ALLUXIO_JAVA_OPTS".to_string(), "TACHYON_JAVA_OPTS".to_string()];
        if let Some(r) = role_var {
            opt_vars.push(format!("ALLUXIO_{r}_JAVA_OPTS"));
            opt_vars.push(format!("TACHYON_{r}_JAVA_OPTS"));
        }
        for var in opt_vars {
            if let Some(opts) = inputs.env.get(&var) {
                for (k, v) in parse_java_opts(opts) {
                    cfg.set(&k, v, Source::JavaOpts(var.clone()));
                }
            }
        }
        for o in &inputs.overrides {
            let (k, v) = o.trim_start_matches("-D").split_once('=').ok_or_else(|| ConfigError::Syntax {
                path: PathBuf::from("<command line>"),
                line: 0,
                text: o.clone(),
            })?;
            cfg.set(k.trim(), v.trim().to_string(), Source::CommandLine);
        }
        cfg.resolve()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn set(&mut self, key: &str, value: String, source: Source) {
        let key = canonical_key(key);
        if let Some((_, replacement)) = OBSOLETE_KEYS.iter().find(|(name, _)| *name == key) {
            self.warnings.push(format!("{key} (from {source}) is not used: {replacement}"));
            return;
        }
        if key_def(&key).is_none() {
            if key.starts_with("tachyon.") {
                self.warnings.push(format!("unknown configuration key {key} (from {source}) is ignored"));
            }
            return;
        }
        self.values.insert(key, (value, source));
    }

    /// Expands `${key}` references (nested up to a fixed depth).
    fn resolve(&mut self) -> Result<(), ConfigError> {
        const MAX_DEPTH: usize = 16;
        let snapshot = self.values.clone();
        for (key, (value, _)) in self.values.iter_mut() {
            let mut v = value.clone();
            for _ in 0..MAX_DEPTH {
                let Some(start) = v.find("${") else { break };
                let Some(len) = v[start..].find('}') else {
                    return Err(ConfigError::Unresolvable { key: key.clone(), reason: format!("unclosed ${{ in {v:?}") });
                };
                let name = canonical_key(&v[start + 2..start + len]);
                let Some((sub, _)) = snapshot.get(&name) else {
                    return Err(ConfigError::Unresolvable { key: key.clone(), reason: format!("refers to unknown key {name}") });
                };
                v = format!("{}{}{}", &v[..start], sub, &v[start + len + 1..]);
            }
            if v.contains("${") {
                return Err(ConfigError::Unresolvable { key: key.clone(), reason: "reference cycle".into() });
            }
            *value = v;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for k in KEYS {
            let (value, source) = &self.values[k.name];
            let invalid = |reason: String| ConfigError::Invalid { key: k.name.to_string(), value: value.clone(), origin: source.clone(), reason };
            match k.value_type {
                ValueType::String if k.name == ZOOKEEPER_ADDRESS && !value.trim().is_empty() => {
                    parse_server_list(value).map_err(invalid)?;
                }
                ValueType::String if k.name == GROUP_MAPPING_OVERRIDES => {
                    crate::security::parse_group_overrides(value).map_err(invalid)?;
                }
                ValueType::String => {}
                ValueType::Bool => {
                    parse_bool(value).map_err(invalid)?;
                }
                ValueType::Port => {
                    value.trim().parse::<u16>().map_err(|e| invalid(format!("not a port number: {e}")))?;
                }
                ValueType::Integer => {
                    value.trim().parse::<u64>().map_err(|e| invalid(format!("not a whole number: {e}")))?;
                }
                ValueType::Bytes => {
                    parse_bytes(value).map_err(invalid)?;
                }
                ValueType::Duration => {
                    parse_duration_ms(value).map_err(invalid)?;
                }
                ValueType::DurationOrNever => {
                    if value.trim() != "-1" {
                        parse_duration_ms(value).map_err(|e| invalid(format!("{e} (or -1 for never)")))?;
                    }
                }
                ValueType::Enum(choices) => {
                    if !choices.iter().any(|c| c.eq_ignore_ascii_case(value.trim())) {
                        return Err(invalid(format!("expected one of {}", choices.join(", "))));
                    }
                }
                ValueType::OctalMask => {
                    crate::core::permission::parse_umask(value).map_err(invalid)?;
                }
                ValueType::BytesList => {
                    parse_bytes_list(value).map_err(invalid)?;
                }
            }
        }
        Ok(())
    }

    /// Warnings gathered while loading (unknown keys).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The raw value and source of a key (`alluxio.*` accepted).
    pub fn get_with_source(&self, key: &str) -> Option<&(String, Source)> {
        self.values.get(&canonical_key(key))
    }

    /// Every key with its value and source, in key order; secrets masked.
    pub fn entries(&self) -> Vec<(String, String, Source)> {
        self.values
            .iter()
            .map(|(k, (v, s))| {
                let secret = key_def(k).is_some_and(|d| d.secret);
                (k.clone(), if secret { "******".to_string() } else { v.clone() }, s.clone())
            })
            .collect()
    }

    fn raw(&self, key: &str) -> &str {
        // Every key read below is declared in KEYS, and load() fills all of them.
        self.values.get(key).map(|(v, _)| v.as_str()).unwrap_or_default()
    }

    /// A string value.
    pub fn string(&self, key: &str) -> String {
        self.raw(key).trim().to_string()
    }

    /// A validated boolean.
    pub fn bool(&self, key: &str) -> bool {
        parse_bool(self.raw(key)).unwrap_or(false)
    }

    /// A validated port.
    pub fn port(&self, key: &str) -> u16 {
        self.raw(key).trim().parse().unwrap_or(0)
    }

    /// A validated whole number.
    pub fn integer(&self, key: &str) -> u64 {
        self.raw(key).trim().parse().unwrap_or(0)
    }

    /// A validated list of sizes in bytes.
    pub fn bytes_list(&self, key: &str) -> Vec<u64> {
        parse_bytes_list(self.raw(key)).unwrap_or_default()
    }

    /// A validated size in bytes.
    pub fn bytes(&self, key: &str) -> u64 {
        parse_bytes(self.raw(key)).unwrap_or(0)
    }

    /// A validated duration in milliseconds.
    pub fn duration_ms(&self, key: &str) -> u64 {
        parse_duration_ms(self.raw(key)).unwrap_or(0)
    }

    /// A validated duration in milliseconds, or -1 for never.
    pub fn duration_or_never_ms(&self, key: &str) -> i64 {
        if self.raw(key).trim() == "-1" {
            return -1;
        }
        parse_duration_ms(self.raw(key)).map_or(-1, |ms| ms.min(i64::MAX as u64) as i64)
    }

    /// The address to listen on for `bind_key` (a `*.bind.host` key), given the advertised
    /// host of `hostname_key` (see [`derive_bind_host`]).
    pub fn bind_host(&self, bind_key: &str, hostname_key: &str) -> String {
        derive_bind_host(&self.string(hostname_key), &self.string(bind_key))
    }

    /// The master's RPC address `host:port`.
    pub fn master_address(&self) -> String {
        format!("{}:{}", self.string(MASTER_HOSTNAME), self.port(MASTER_PORT))
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// Parses comma-separated sizes (`1GB, 500MB`); empty parts are skipped.
pub fn parse_bytes_list(v: &str) -> Result<Vec<u64>, String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_bytes).collect()
}

/// Parses `64MB`, `1GB`, `512kb`, `100` (bytes).
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    let s = v.trim().to_ascii_uppercase();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        "T" | "TB" => 1 << 40,
        u => return Err(format!("unknown size unit {u:?} (use B, KB, MB, GB, TB)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("{v:?} is not a size"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{v:?} is not a size"));
    }
    let bytes = n * factor as f64;
    if bytes > u64::MAX as f64 {
        return Err("size too large".into());
    }
    Ok(bytes as u64)
}

/// Parses `5min`, `10s`, `300ms`, `2h`, `1d`, or a bare number of milliseconds.
pub fn parse_duration_ms(v: &str) -> Result<u64, String> {
    let s = v.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{v:?} is not a duration (e.g. 500ms, 10s, 5min)"))?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" | "sec" => 1_000,
        "m" | "min" => 60_000,
        "h" | "hr" => 3_600_000,
        "d" | "day" => 86_400_000,
        u => return Err(format!("unknown duration unit {u:?} (use ms, s, min, h, d)")),
    };
    n.checked_mul(factor).ok_or_else(|| "duration too large".to_string())
}

/// Parses a Java properties file: `key=value`, `key: value` or `key value`; `#` and `!`
/// comments; a trailing backslash continues a line.
pub fn parse_properties(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start_line = 0;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if pending.is_empty() {
            start_line = i + 1;
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
                continue;
            }
        }
        if let Some(cont) = trimmed.strip_suffix('\\') {
            pending.push_str(cont);
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        let sep = full.find(['=', ':']).or_else(|| full.find(char::is_whitespace));
        let Some(sep) = sep else {
            return Err(ConfigError::Syntax { path: path.to_path_buf(), line: start_line, text: full });
        };
        let (k, v) = (full[..sep].trim(), full[sep + 1..].trim());
        if k.is_empty() {
            return Err(ConfigError::Syntax { path: path.to_path_buf(), line: start_line, text: full.clone() });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Extracts `-Dkey=value` options from a `*_JAVA_OPTS` string; other JVM flags are ignored.
pub fn parse_java_opts(opts: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for token in split_shell_words(opts) {
        if let Some(kv) = token.strip_prefix("-D") {
            if let Some((k, v)) = kv.split_once('=') {
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

fn split_shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(env: &[(&str, &str)], overrides: &[&str]) -> ConfigInputs {
        ConfigInputs {
            conf_dir: None,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
            role: Some(Role::Master),
        }
    }

    #[test]
    fn layers_apply_in_documented_order_with_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tachyon-site.properties"),
            "# comment\ntachyon.master.port=1000\nalluxio.worker.memory.size = 2GB\ntachyon.zookeeper.enabled: true\n",
        )
        .unwrap();
        let mut i = inputs(
            &[
                ("TACHYON_HOME", "/opt/t"),
                ("TACHYON_MASTER_ADDRESS", "m1"),
                ("TACHYON_JAVA_OPTS", "-Xmx1g -Dtachyon.master.port=2000 -Dtachyon.zookeeper.address=a:2181,b:2181"),
            ],
            &["tachyon.master.web.port=3000"],
        );
        i.conf_dir = Some(dir.path().to_path_buf());
        let c = Config::load(&i).unwrap();
        assert_eq!(c.master_address(), "m1:2000");
        assert_eq!(c.get_with_source(MASTER_PORT).unwrap().1, Source::JavaOpts("TACHYON_JAVA_OPTS".into()));
        assert_eq!(c.bytes(WORKER_MEMORY_SIZE), 2 << 30);
        assert!(c.bool(ZOOKEEPER_ENABLED));
        assert_eq!(c.string(ZOOKEEPER_ADDRESS), "a:2181,b:2181");
        assert_eq!(c.port(MASTER_WEB_PORT), 3000);
        assert_eq!(c.get_with_source("alluxio.master.web.port").unwrap().1, Source::CommandLine);
        assert_eq!(c.string(JOURNAL_FOLDER), "/opt/t/journal");
        assert_eq!(c.duration_ms(MASTER_WORKER_TIMEOUT), 300_000);
    }

    #[test]
    fn bad_value_names_key_and_source() {
        let err = Config::load(&inputs(&[("TACHYON_JAVA_OPTS", "-Dtachyon.master.port=99999")], &[])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("tachyon.master.port") && msg.contains("TACHYON_JAVA_OPTS"), "{msg}");
        let err = Config::load(&inputs(&[], &["tachyon.user.file.writetype.default=SOMETIMES"])).unwrap_err();
        assert!(err.to_string().contains("MUST_CACHE"), "{err}");
    }

    #[test]
    fn unknown_keys_warn_and_aliases_resolve() {
        let c = Config::load(&inputs(&[("ALLUXIO_MASTER_HOSTNAME", "h9")], &["tachyon.bogus.key=1"])).unwrap();
        assert_eq!(c.string(MASTER_HOSTNAME), "h9");
        assert_eq!(c.warnings().len(), 1);
        assert!(c.warnings()[0].contains("tachyon.bogus.key"));
    }

    #[test]
    fn sizes_durations_and_syntax() {
        assert_eq!(parse_bytes("64MB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1.5kb"), Ok(1536));
        assert!(parse_bytes("3 parsecs").is_err());
        assert_eq!(parse_duration_ms("5min"), Ok(300_000));
        assert_eq!(parse_duration_ms("250"), Ok(250));
        assert!(parse_duration_ms("soon").is_err());
        let p = Path::new("x");
        assert_eq!(parse_properties(p, "a = b\\\n  c\n").unwrap(), vec![("a".into(), "bc".into())]);
        assert!(matches!(parse_properties(p, "novalue"), Err(ConfigError::Syntax { line: 1, .. })));
        assert_eq!(parse_java_opts("-Da='x y' -Xmx1g -Db=2"), vec![("a".into(), "x y".into()), ("b".into(), "2".into())]);
        let c = Config::load(&inputs(&[], &["tachyon.zookeeper.address=${tachyon.master.hostname}:2181"])).unwrap();
        assert_eq!(c.string(ZOOKEEPER_ADDRESS), "localhost:2181");
        assert!(Config::load(&inputs(&[], &["tachyon.zookeeper.address=${nope}"])).is_err());
    }

    #[test]
    fn seed_document_keys_of_older_releases_are_honoured() {
        let c = Config::load(&inputs(
            &[("TACHYON_JAVA_OPTS", "-Dtachyon.usezookeeper=true -Dtachyon.zookeeper.address=zk1:2181 -Dtachyon.workers.folder=/x/workers")],
            &["tachyon.data.folder=/ufs/tmp/tachyon/data"],
        ))
        .unwrap();
        assert!(c.bool(ZOOKEEPER_ENABLED), "tachyon.usezookeeper is tachyon.zookeeper.enabled");
        assert_eq!(c.string(DATA_FOLDER), "/ufs/tmp/tachyon/data");
        assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
        assert!(c.warnings()[0].contains("tachyon.workers.folder") && c.warnings()[0].contains("tachyon.data.folder"));
        let c = Config::load(&inputs(&[("TACHYON_UNDERFS_ADDRESS", "hdfs://nn:9000/t")], &["alluxio.usezookeeper=false"])).unwrap();
        assert_eq!(c.string(DATA_FOLDER), "hdfs://nn:9000/t", "the data folder follows the under-storage root");
        assert!(!c.bool(ZOOKEEPER_ENABLED));
    }

    #[test]
    fn a_launch_hostname_ranks_below_everything_configured() {
        let launched = [(LAUNCH_HOSTNAME_VAR, "h2")];
        let c = Config::load(&inputs(&launched, &[])).unwrap();
        assert_eq!(c.string(MASTER_HOSTNAME), "h2");
        assert_eq!(c.string(WORKER_HOSTNAME), "localhost", "a master's launch host is not a worker's");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tachyon-site.properties"), "tachyon.master.hostname=site-host\n").unwrap();
        let mut i = inputs(&launched, &[]);
        i.conf_dir = Some(dir.path().to_path_buf());
        assert_eq!(Config::load(&i).unwrap().string(MASTER_HOSTNAME), "site-host");
        let mut i = inputs(&launched, &[]);
        i.role = Some(Role::Worker);
        let c = Config::load(&i).unwrap();
        assert_eq!((c.string(WORKER_HOSTNAME).as_str(), c.string(MASTER_HOSTNAME).as_str()), ("h2", "localhost"));
        i.role = Some(Role::Client);
        assert_eq!(Config::load(&i).unwrap().string(WORKER_HOSTNAME), "localhost");
    }

    #[test]
    fn bind_hosts_default_to_every_interface_except_for_loopback_names() {
        assert_eq!(derive_bind_host("10.1.2.3", ""), "0.0.0.0");
        assert_eq!(derive_bind_host("node7.example", ""), "0.0.0.0");
        assert_eq!(derive_bind_host("127.0.0.2", ""), "127.0.0.2");
        assert_eq!(derive_bind_host("localhost", " "), "localhost");
        assert_eq!(derive_bind_host("::1", ""), "::1");
        assert_eq!(derive_bind_host("node7.example", "10.0.0.9"), "10.0.0.9");
        let c = Config::load(&inputs(&[("TACHYON_MASTER_ADDRESS", "m1.example")], &["tachyon.master.web.bind.host=192.0.2.1"])).unwrap();
        assert_eq!(c.bind_host(MASTER_BIND_HOST, MASTER_HOSTNAME), "0.0.0.0");
        assert_eq!(c.bind_host(MASTER_WEB_BIND_HOST, MASTER_HOSTNAME), "192.0.2.1");
        assert_eq!(c.bind_host(WORKER_BIND_HOST, WORKER_HOSTNAME), "localhost");
    }

    #[test]
    fn a_zookeeper_address_typo_is_one_clear_error() {
        assert_eq!(parse_server_list("a:2181, b:2182"), Ok(vec![("a".into(), 2181), ("b".into(), 2182)]));
        assert_eq!(parse_server_list("[::1]:2181"), Ok(vec![("::1".into(), 2181)]));
        for (bad, why) in
            [("zk1:21a81", "valid port"), ("zk1", "not host:port"), ("zk1:2181,,zk2:2181", "server 2"), (":2181", "host name"), ("zk1:0", "valid port")]
        {
            let err = parse_server_list(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            let err = Config::load(&inputs(&[], &[&format!("tachyon.zookeeper.address={bad}")])).unwrap_err().to_string();
            assert!(err.contains(ZOOKEEPER_ADDRESS) && err.contains(bad) && !err.contains('\n'), "{err}");
        }
    }
}
