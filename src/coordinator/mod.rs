//! Leader election and leader discovery behind one trait, so masters, workers and
//! clients do not care whether a single static master or a ZooKeeper ensemble decides.
//!
//! Implementations: [`StaticCoordinator`] (one configured master, the embedded default) and
//! [`zookeeper::ZkCoordinator`] (real ZooKeeper; not compiled under madsim, where a
//! simulated ZooKeeper takes its place).

pub mod conformance;
#[cfg(not(madsim))]
pub mod zookeeper;

use std::sync::Arc;

use async_trait::async_trait;
use crate::watch;

use crate::config::{self, Config};
use crate::error::FsError;

/// What the coordinator granted a master: an epoch, and a signal that turns true once
/// leadership is lost (session expired, node deleted). The session ends when the last clone
/// of the `Leadership` is dropped or [`Leadership::resign`] is called.
#[derive(Clone)]
pub struct Leadership {
    /// The leadership term, strictly larger than any earlier leader's; written into every
    /// journal entry.
    pub epoch: u64,
    lost: watch::Receiver<bool>,
    session: Arc<dyn LeaderSession>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("epoch", &self.epoch).field("lost", &*self.lost.borrow()).finish()
    }
}

impl Leadership {
    /// Leadership from an implementation's session.
    pub fn new(epoch: u64, lost: watch::Receiver<bool>, session: Arc<dyn LeaderSession>) -> Self {
        Leadership { epoch, lost, session }
    }

    /// True once leadership is gone for good.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when leadership is lost.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Tells workers and clients that this master now serves at `address`.
    pub async fn announce(&self, address: &str) -> Result<(), FsError> {
        self.session.announce(address, self.epoch).await
    }

    /// Gives leadership up at once (graceful stop), so a standby takes over immediately.
    pub async fn resign(&self) {
        self.session.resign().await
    }
}

/// The implementation side of a [`Leadership`].
#[async_trait]
pub trait LeaderSession: Send + Sync + 'static {
    /// Publishes the leader's address for discovery.
    async fn announce(&self, address: &str, epoch: u64) -> Result<(), FsError>;
    /// Ends the leadership session.
    async fn resign(&self);
}

/// Who leads, and how a master becomes the leader.
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// The RPC address (`host:port`) of the current serving leader, if one is known.
    async fn leader_address(&self) -> Result<Option<String>, FsError>;

    /// Waits until the master at `address` is elected. `last_epoch` is the newest epoch in
    /// the journal; the granted epoch is larger than it and than every earlier grant.
    async fn campaign(&self, address: &str, last_epoch: u64) -> Result<Leadership, FsError>;

    /// Lists this master among the cluster's masters for as long as the process lives.
    async fn register_master(&self, address: &str) -> Result<(), FsError>;

    /// The addresses of every running master, leader and standbys, sorted.
    async fn masters(&self) -> Result<Vec<String>, FsError>;
}

/// A single master named in configuration: always the leader.
pub struct StaticCoordinator {
    master_address: String,
}

impl StaticCoordinator {
    /// A coordinator that names `master_address` as the leader.
    pub fn new(master_address: String) -> Self {
        StaticCoordinator { master_address }
    }
}

/// The static master's session: nothing to publish, never lost.
struct StaticSession {
    _lost: watch::Sender<bool>,
}

#[async_trait]
impl LeaderSession for StaticSession {
    async fn announce(&self, _address: &str, _epoch: u64) -> Result<(), FsError> {
        Ok(())
    }
    async fn resign(&self) {}
}

#[async_trait]
impl Coordinator for StaticCoordinator {
    async fn leader_address(&self) -> Result<Option<String>, FsError> {
        Ok(Some(self.master_address.clone()))
    }

    async fn campaign(&self, address: &str, last_epoch: u64) -> Result<Leadership, FsError> {
        if address != self.master_address {
            return Err(FsError::NotLeader { leader: self.master_address.clone() });
        }
        let (tx, rx) = watch::channel(false);
        Ok(Leadership::new(last_epoch + 1, rx, Arc::new(StaticSession { _lost: tx })))
    }

    async fn register_master(&self, _address: &str) -> Result<(), FsError> {
        Ok(())
    }

    async fn masters(&self) -> Result<Vec<String>, FsError> {
        Ok(vec![self.master_address.clone()])
    }
}

/// The coordinator configuration asks for: ZooKeeper when `tachyon.zookeeper.enabled`.
pub fn from_config(cfg: &Config) -> Result<Arc<dyn Coordinator>, FsError> {
    if cfg.bool(config::ZOOKEEPER_ENABLED) {
        #[cfg(not(madsim))]
        return Ok(Arc::new(zookeeper::ZkCoordinator::new(zookeeper::ZkOptions::from_config(cfg)?)));
        #[cfg(madsim)]
        return Err(FsError::InvalidArgument { reason: "real ZooKeeper is not available in a simulation build".into() });
    }
    Ok(Arc::new(StaticCoordinator::new(cfg.master_address())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_coordinator_grants_a_newer_epoch_only_to_its_master() {
        let c = StaticCoordinator::new("h:1".into());
        assert_eq!(c.leader_address().await.unwrap().as_deref(), Some("h:1"));
        let l = c.campaign("h:1", 4).await.unwrap();
        assert_eq!(l.epoch, 5);
        assert!(!l.is_lost());
        assert!(matches!(c.campaign("h:2", 4).await, Err(FsError::NotLeader { leader }) if leader == "h:1"));
        assert_eq!(c.masters().await.unwrap(), vec!["h:1".to_string()]);
    }
}
