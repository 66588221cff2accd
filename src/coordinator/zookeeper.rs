//! Leader election and discovery with a real ZooKeeper ensemble (`zookeeper-client`).
//!
//! Layout under `tachyon.zookeeper.root` (default `/tachyon`):
//! ```text
//! election/candidate-<seq>   ephemeral sequential, data = master address; lowest seq leads
//! epoch                      persistent counter, bumped with a versioned set by each new leader
//! leader/<epoch:020>         ephemeral, data = address; created once the leader serves
//! masters/<address>          ephemeral, one per running master (leader and standbys)
//! ```
//! A candidate waits on the deletion of its predecessor only (no herd effect). Discovery
//! reads the `leader/` child with the largest epoch, so a deposed leader whose session has
//! not expired yet is never preferred over its successor.

use std::sync::Arc;
use std::time::Duration;

use crate::watch;
use async_trait::async_trait;
use tokio::sync::Mutex;
use tracing::{info, warn};
use zookeeper_client as zk;

use super::{Coordinator, LeaderSession, Leadership};
use crate::config::{self, Config};
use crate::error::FsError;

/// How to reach ZooKeeper and where tachyon's nodes live.
#[derive(Clone, Debug)]
pub struct ZkOptions {
    /// `host:port[,host:port...]`.
    pub servers: String,
    pub root: String,
    pub election_path: String,
    pub leader_path: String,
    pub session_timeout: Duration,
    pub connection_timeout: Duration,
    /// `user:password` for ZooKeeper's digest scheme; with it, nodes tachyon creates can be
    /// changed only by sessions with the same credentials (the masters) and read by anyone.
    pub auth_digest: Option<String>,
}

impl ZkOptions {
    /// Reads the ZooKeeper settings; the address list must not be empty.
    pub fn from_config(cfg: &Config) -> Result<Self, FsError> {
        let servers = cfg.string(config::ZOOKEEPER_ADDRESS);
        if servers.is_empty() {
            return Err(FsError::InvalidArgument {
                reason: format!("{}=true needs {} (host:port[,host:port...])", config::ZOOKEEPER_ENABLED, config::ZOOKEEPER_ADDRESS),
            });
        }
        Ok(ZkOptions {
            servers,
            root: cfg.string(config::ZOOKEEPER_ROOT),
            election_path: cfg.string(config::ZOOKEEPER_ELECTION_PATH),
            leader_path: cfg.string(config::ZOOKEEPER_LEADER_PATH),
            session_timeout: Duration::from_millis(cfg.duration_ms(config::ZOOKEEPER_SESSION_TIMEOUT).max(1000)),
            connection_timeout: Duration::from_millis(cfg.duration_ms(config::ZOOKEEPER_CONNECTION_TIMEOUT).max(100)),
            auth_digest: Some(cfg.string(config::ZOOKEEPER_AUTH_DIGEST)).filter(|d| !d.is_empty()),
        })
    }

    /// The ACL of every node tachyon creates: with digest credentials, everything for
    /// sessions holding them and read for everyone else; without, open to all (as before).
    fn acls(&self) -> zk::Acls<'static> {
        if self.auth_digest.is_some() {
            zk::Acls::new(&GUARDED_ACLS)
        } else {
            zk::Acls::anyone_all()
        }
    }

    fn epoch_path(&self) -> String {
        format!("{}/epoch", self.root)
    }

    fn masters_path(&self) -> String {
        format!("{}/masters", self.root)
    }
}

/// Everything for the creating credentials ("auth" = every identity of the creator's
/// session), read for anyone: workers and clients find the leader without credentials.
static GUARDED_ACLS: [zk::Acl; 2] = [zk::Acl::new_const(zk::Permission::ALL, "auth", ""), zk::Acl::new_const(zk::Permission::READ, "world", "anyone")];

fn zk_err(what: &str, e: zk::Error) -> FsError {
    FsError::Unavailable { reason: format!("ZooKeeper {what}: {e}") }
}

/// A coordinator backed by ZooKeeper.
pub struct ZkCoordinator {
    options: ZkOptions,
    /// Session for discovery and the master registration; re-created after expiry.
    shared: Mutex<Option<zk::Client>>,
}

impl ZkCoordinator {
    /// A coordinator that connects lazily.
    pub fn new(options: ZkOptions) -> Self {
        ZkCoordinator { options, shared: Mutex::new(None) }
    }

    async fn connect(&self) -> Result<zk::Client, FsError> {
        let mut connector = zk::Client::connector().with_session_timeout(self.options.session_timeout).with_connection_timeout(self.options.connection_timeout);
        if let Some(digest) = &self.options.auth_digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        connector.connect(&self.options.servers).await.map_err(|e| zk_err(&format!("connect to {}", self.options.servers), e))
    }

    async fn shared_client(&self) -> Result<zk::Client, FsError> {
        let mut guard = self.shared.lock().await;
        if let Some(c) = guard.as_ref() {
            if !matches!(c.state(), zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed) {
                return Ok(c.clone());
            }
        }
        let c = self.connect().await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn reset_shared(&self) {
        *self.shared.lock().await = None;
    }
}

/// Creates a persistent node and its parents; existing ones are fine.
async fn ensure_path(client: &zk::Client, path: &str, acls: zk::Acls<'static>) -> Result<(), FsError> {
    let opts = zk::CreateMode::Persistent.with_acls(acls);
    let mut prefix = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        match client.create(&prefix, b"", &opts).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(zk_err(&format!("create {prefix}"), e)),
        }
    }
    Ok(())
}

/// Sequence number of a `candidate-<seq>` child.
fn candidate_sequence(name: &str) -> Option<i64> {
    name.rsplit('-').next()?.parse().ok()
}

struct ZkSession {
    /// Dropping the last clone of the client closes the session.
    client: Mutex<Option<zk::Client>>,
    leader_path: String,
    /// Turns true once the session has ended.
    ended: watch::Receiver<bool>,
    /// The session timeout the server granted (it may lower the one asked for).
    session_timeout: Duration,
    /// The ACL of the nodes this session creates.
    acls: zk::Acls<'static>,
}

/// How long resigning waits for ZooKeeper to confirm the session is closed.
const RESIGN_WAIT: Duration = Duration::from_secs(2);

#[async_trait]
impl LeaderSession for ZkSession {
    async fn announce(&self, address: &str, epoch: u64) -> Result<(), FsError> {
        let path = format!("{}/{epoch:020}", self.leader_path);
        let opts = zk::CreateMode::Ephemeral.with_acls(self.acls);
        let client = self.client.lock().await.clone().ok_or_else(|| FsError::Unavailable { reason: "leadership resigned".into() })?;
        match client.create(&path, address.as_bytes(), &opts).await {
            Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
            Err(e) => Err(zk_err(&format!("announce {path}"), e)),
        }
    }

    async fn resign(&self) {
        // Dropping the client closes the session: its ephemeral nodes go at once, and the
        // next candidate's watch fires within milliseconds. The close request is sent in the
        // background, so wait for it: a process that exits first leaves the session (and
        // its leadership) to expire on its own.
        self.client.lock().await.take();
        let mut ended = self.ended.clone();
        if tokio::time::timeout(RESIGN_WAIT, ended.wait_for(|e| *e)).await.is_err() {
            warn!("ZooKeeper did not confirm the end of the leader's session; it will expire on its own");
        }
    }

    async fn confirm_alive(&self) -> bool {
        let Some(client) = self.client.lock().await.clone() else { return false };
        client.check_stat(&self.leader_path).await.is_ok()
    }

    fn lease_duration(&self) -> Option<Duration> {
        Some(crate::coordinator::Lease::duration_for(self.session_timeout))
    }
}

#[async_trait]
impl Coordinator for ZkCoordinator {
    async fn leader_address(&self) -> Result<Option<String>, FsError> {
        self.bounded("find the leader", self.leader_address_once()).await
    }

    async fn campaign(&self, address: &str, last_epoch: u64) -> Result<Leadership, FsError> {
        let o = &self.options;
        // A session of its own: its end is the end of this candidacy.
        let client = self.connect().await?;
        for p in [&o.election_path, &o.leader_path, &o.root] {
            ensure_path(&client, p, o.acls()).await?;
        }
        let opts = zk::CreateMode::EphemeralSequential.with_acls(o.acls());
        let prefix = format!("{}/candidate-", o.election_path);
        let (_, seq) = client.create(&prefix, address.as_bytes(), &opts).await.map_err(|e| zk_err("create candidate", e))?;
        let mine = seq.into_i64();
        info!(address, sequence = mine, "campaigning for leadership");
        loop {
            let children = client.list_children(&o.election_path).await.map_err(|e| zk_err("list candidates", e))?;
            let mut seqs: Vec<(i64, String)> = children.into_iter().filter_map(|c| candidate_sequence(&c).map(|s| (s, c))).collect();
            seqs.sort();
            let Some(pos) = seqs.iter().position(|(s, _)| *s == mine) else {
                return Err(FsError::Unavailable { reason: "our election node vanished (session expired)".into() });
            };
            if pos == 0 {
                break;
            }
            let predecessor = format!("{}/{}", o.election_path, seqs[pos - 1].1);
            let (stat, watcher) = client.check_and_watch_stat(&predecessor).await.map_err(|e| zk_err("watch predecessor", e))?;
            if stat.is_some() {
                watcher.changed().await;
            }
        }
        // The lease starts at the send time of the last request on this session.
        let granted_at = tokio::time::Instant::now();
        let epoch = self.next_epoch(&client, last_epoch).await?;
        let (lost_tx, lost_rx) = watch::channel(false);
        let mut states = client.state_watcher();
        tokio::spawn(async move {
            loop {
                let state = states.changed().await;
                match state {
                    zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed => {
                        warn!(?state, epoch, "ZooKeeper session of the leader ended: leadership lost");
                        lost_tx.send_replace(true);
                        return;
                    }
                    // Suspended: the client notices a silent connection well before the
                    // server could expire the session and elect a successor, so giving up
                    // here means a cut-off leader stops answering before another can start.
                    zk::SessionState::Disconnected => {
                        warn!(epoch, "leader lost its ZooKeeper connection: giving leadership up");
                        lost_tx.send_replace(true);
                        return;
                    }
                    other => info!(state = ?other, epoch, "leader's ZooKeeper session state"),
                }
            }
        });
        info!(address, epoch, "elected leader");
        let session_timeout = client.session_timeout().min(o.session_timeout);
        let session =
            ZkSession { client: Mutex::new(Some(client)), leader_path: o.leader_path.clone(), ended: lost_rx.clone(), session_timeout, acls: o.acls() };
        Ok(Leadership::new(epoch, lost_rx, Arc::new(session), granted_at))
    }

    async fn register_master(&self, address: &str) -> Result<(), FsError> {
        self.bounded("register this master", self.register_master_once(address)).await
    }

    async fn masters(&self) -> Result<Vec<String>, FsError> {
        self.bounded("list masters", self.masters_once()).await
    }
}

impl ZkCoordinator {
    /// Runs one ZooKeeper operation of the shared session with a deadline (connection plus
    /// session timeout): a request that hangs on a broken session becomes `Unavailable`, and
    /// the next call starts a fresh session.
    async fn bounded<T>(&self, what: &str, op: impl std::future::Future<Output = Result<T, FsError>>) -> Result<T, FsError> {
        let deadline = self.options.connection_timeout + self.options.session_timeout;
        match tokio::time::timeout(deadline, op).await {
            Ok(r) => r,
            Err(_) => {
                self.reset_shared().await;
                Err(FsError::Unavailable { reason: format!("ZooKeeper did not answer within {deadline:?} ({what})") })
            }
        }
    }

    /// One try at finding the leader.
    async fn leader_address_once(&self) -> Result<Option<String>, FsError> {
        let client = self.shared_client().await?;
        let path = &self.options.leader_path;
        let children = match client.list_children(path).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => return Ok(None),
            Err(e) => {
                self.reset_shared().await;
                return Err(zk_err(&format!("list {path}"), e));
            }
        };
        let newest = children.iter().filter_map(|c| c.parse::<u64>().ok().map(|e| (e, c))).max();
        let Some((_, name)) = newest else { return Ok(None) };
        match client.get_data(&format!("{path}/{name}")).await {
            Ok((data, _)) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(zk_err("read leader", e)),
        }
    }

    async fn register_master_once(&self, address: &str) -> Result<(), FsError> {
        let client = self.shared_client().await?;
        let dir = self.options.masters_path();
        ensure_path(&client, &dir, self.options.acls()).await?;
        let opts = zk::CreateMode::Ephemeral.with_acls(self.options.acls());
        match client.create(&format!("{dir}/{address}"), b"", &opts).await {
            Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
            Err(e) => Err(zk_err("register master", e)),
        }
    }

    async fn masters_once(&self) -> Result<Vec<String>, FsError> {
        let client = self.shared_client().await?;
        match client.list_children(&self.options.masters_path()).await {
            Ok(mut v) => {
                v.sort();
                Ok(v)
            }
            Err(zk::Error::NoNode) => Ok(Vec::new()),
            Err(e) => Err(zk_err("list masters", e)),
        }
    }
}

impl ZkCoordinator {
    /// Bumps the epoch counter with a versioned set: unique, and above `last_epoch`.
    async fn next_epoch(&self, client: &zk::Client, last_epoch: u64) -> Result<u64, FsError> {
        let path = self.options.epoch_path();
        let opts = zk::CreateMode::Persistent.with_acls(self.options.acls());
        match client.create(&path, b"0", &opts).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(zk_err("create epoch", e)),
        }
        const MAX_ATTEMPTS: usize = 100;
        for _ in 0..MAX_ATTEMPTS {
            let (data, stat) = client.get_data(&path).await.map_err(|e| zk_err("read epoch", e))?;
            let current: u64 = String::from_utf8_lossy(&data).trim().parse().unwrap_or(0);
            let next = current.max(last_epoch) + 1;
            match client.set_data(&path, next.to_string().as_bytes(), Some(stat.version)).await {
                Ok(_) => return Ok(next),
                Err(zk::Error::BadVersion) => continue,
                Err(e) => return Err(zk_err("bump epoch", e)),
            }
        }
        Err(FsError::Unavailable { reason: "epoch counter kept changing under us".into() })
    }
}
