//! The [`Coordinator`] over the simulated ZooKeeper, with the same node layout and election
//! recipe as the real one (`tachyon::coordinator::zookeeper`): sequential candidate nodes,
//! a watch on the predecessor only, a versioned epoch counter, `leader/<epoch>` nodes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tachyon::coordinator::{Coordinator, LeaderSession, Leadership};
use tachyon::error::FsError;
use tachyon::watch;
use tokio::sync::Mutex;

use crate::zk::{SessionState, ZkClient, ZkError};

const ROOT: &str = "/tachyon";
const ELECTION: &str = "/tachyon/election";
const LEADER: &str = "/tachyon/leader";
const EPOCH: &str = "/tachyon/epoch";
const MASTERS: &str = "/tachyon/masters";

fn unavailable(what: &str, e: ZkError) -> FsError {
    FsError::Unavailable { reason: format!("simulated ZooKeeper {what}: {e:?}") }
}

/// A coordinator talking to the simulated ZooKeeper at `server`.
pub struct SimCoordinator {
    server: SocketAddr,
    session_timeout: Duration,
    shared: Mutex<Option<Arc<ZkClient>>>,
    /// How late a leader acts on its session's end (a client that learns it from its next
    /// ping, or a slow event thread): the window the leader lease must cover.
    notice_delay: Duration,
}

impl SimCoordinator {
    /// A coordinator that connects lazily, with sessions of `session_timeout`.
    pub fn new(server: SocketAddr, session_timeout: Duration) -> Self {
        SimCoordinator { server, session_timeout, shared: Mutex::new(None), notice_delay: Duration::ZERO }
    }

    /// The same, but a leader notices the end of its session `delay` late.
    pub fn with_notice_delay(mut self, delay: Duration) -> Self {
        self.notice_delay = delay;
        self
    }

    async fn shared_client(&self) -> Result<Arc<ZkClient>, FsError> {
        let mut guard = self.shared.lock().await;
        if let Some(c) = guard.as_ref() {
            if matches!(c.state(), SessionState::Connected | SessionState::Disconnected) {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(ZkClient::connect(self.server, self.session_timeout).await.map_err(|e| unavailable("connect", e))?);
        *guard = Some(c.clone());
        Ok(c)
    }
}

async fn ensure(client: &ZkClient, path: &str) -> Result<(), FsError> {
    let mut prefix = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        match client.create(&prefix, b"", false, false).await {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err(unavailable("create", e)),
        }
    }
    Ok(())
}

struct SimSession {
    client: Mutex<Option<Arc<ZkClient>>>,
    ended: watch::Receiver<bool>,
    session_timeout: Duration,
}

#[async_trait]
impl LeaderSession for SimSession {
    async fn announce(&self, address: &str, epoch: u64) -> Result<(), FsError> {
        let client = self.client.lock().await.clone().ok_or_else(|| FsError::Unavailable { reason: "resigned".into() })?;
        match client.create(&format!("{LEADER}/{epoch:020}"), address.as_bytes(), true, false).await {
            Ok(_) | Err(ZkError::NodeExists) => Ok(()),
            Err(e) => Err(unavailable("announce", e)),
        }
    }

    async fn resign(&self) {
        if let Some(client) = self.client.lock().await.take() {
            client.close().await;
        }
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(Duration::from_secs(2), ended.wait_for(|e| *e)).await;
    }

    async fn confirm_alive(&self) -> bool {
        let Some(client) = self.client.lock().await.clone() else { return false };
        client.children(ROOT).await.is_ok()
    }

    fn lease_duration(&self) -> Option<Duration> {
        Some(tachyon::coordinator::Lease::duration_for(self.session_timeout))
    }
}

#[async_trait]
impl Coordinator for SimCoordinator {
    async fn leader_address(&self) -> Result<Option<String>, FsError> {
        let client = self.shared_client().await?;
        let children = match client.children(LEADER).await {
            Ok(c) => c,
            Err(ZkError::NoNode) => return Ok(None),
            Err(e) => return Err(unavailable("list leaders", e)),
        };
        let Some(newest) = children.iter().filter_map(|c| c.parse::<u64>().ok().map(|e| (e, c))).max() else {
            return Ok(None);
        };
        match client.get(&format!("{LEADER}/{}", newest.1)).await {
            Ok((data, _)) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(unavailable("read leader", e)),
        }
    }

    async fn campaign(&self, address: &str, last_epoch: u64) -> Result<Leadership, FsError> {
        let client = Arc::new(ZkClient::connect(self.server, self.session_timeout).await.map_err(|e| unavailable("connect", e))?);
        for p in [ELECTION, LEADER, ROOT] {
            ensure(&client, p).await?;
        }
        let mine = client.create(&format!("{ELECTION}/candidate-"), address.as_bytes(), true, true).await.map_err(|e| unavailable("create candidate", e))?;
        let mine = mine.rsplit('/').next().unwrap_or_default().to_string();
        loop {
            let mut candidates = client.children(ELECTION).await.map_err(|e| unavailable("list candidates", e))?;
            candidates.sort();
            let Some(pos) = candidates.iter().position(|c| *c == mine) else {
                return Err(FsError::Unavailable { reason: "our election node vanished (session expired)".into() });
            };
            if pos == 0 {
                break;
            }
            client.wait_gone(&format!("{ELECTION}/{}", candidates[pos - 1])).await.map_err(|e| unavailable("watch predecessor", e))?;
        }
        let granted_at = tokio::time::Instant::now();
        let epoch = next_epoch(&client, last_epoch).await?;
        let (lost_tx, lost_rx) = watch::channel(false);
        let mut states = client.state_watcher();
        let notice_delay = self.notice_delay;
        tokio::spawn(async move {
            let _ = states.wait_for(|s| *s != SessionState::Connected).await;
            tokio::time::sleep(notice_delay).await;
            lost_tx.send_replace(true);
        });
        let session = SimSession { client: Mutex::new(Some(client)), ended: lost_rx.clone(), session_timeout: self.session_timeout };
        Ok(Leadership::new(epoch, lost_rx, Arc::new(session), granted_at))
    }

    async fn register_master(&self, address: &str) -> Result<(), FsError> {
        let client = self.shared_client().await?;
        ensure(&client, MASTERS).await?;
        match client.create(&format!("{MASTERS}/{address}"), b"", true, false).await {
            Ok(_) | Err(ZkError::NodeExists) => Ok(()),
            Err(e) => Err(unavailable("register master", e)),
        }
    }

    async fn masters(&self) -> Result<Vec<String>, FsError> {
        let client = self.shared_client().await?;
        match client.children(MASTERS).await {
            Ok(mut v) => {
                v.sort();
                Ok(v)
            }
            Err(ZkError::NoNode) => Ok(Vec::new()),
            Err(e) => Err(unavailable("list masters", e)),
        }
    }
}

/// Bumps the epoch counter with a versioned set: unique, and above `last_epoch`.
async fn next_epoch(client: &ZkClient, last_epoch: u64) -> Result<u64, FsError> {
    match client.create(EPOCH, b"0", false, false).await {
        Ok(_) | Err(ZkError::NodeExists) => {}
        Err(e) => return Err(unavailable("create epoch", e)),
    }
    for _ in 0..100 {
        let (data, version) = client.get(EPOCH).await.map_err(|e| unavailable("read epoch", e))?;
        let current: u64 = String::from_utf8_lossy(&data).trim().parse().unwrap_or(0);
        let next = current.max(last_epoch) + 1;
        match client.set(EPOCH, next.to_string().as_bytes(), version).await {
            Ok(()) => return Ok(next),
            Err(ZkError::BadVersion) => continue,
            Err(e) => return Err(unavailable("bump epoch", e)),
        }
    }
    Err(FsError::Unavailable { reason: "epoch counter kept changing".into() })
}
