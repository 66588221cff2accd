//! Leader election and leader discovery behind one trait, so masters, workers and
//! clients do not care whether a single static master or a ZooKeeper ensemble decides.
//!
//! Implementations: [`StaticCoordinator`] (one configured master, the embedded default).
//! ZooKeeper and the simulated ZooKeeper come with the fault-tolerance work.

use async_trait::async_trait;

use crate::config::{self, Config};
use crate::error::FsError;

/// Leadership granted to a master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The leadership term, strictly larger than any earlier leader's; written into
    /// every journal entry so replay can reject a deposed leader's writes.
    pub epoch: u64,
}

/// Who leads, and how a master becomes the leader.
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// The RPC address (`host:port`) of the current leader, if one is known.
    async fn leader_address(&self) -> Result<Option<String>, FsError>;

    /// Waits until the master at `address` is the leader. `last_epoch` is the newest epoch
    /// in the journal; the granted epoch is larger.
    async fn campaign(&self, address: &str, last_epoch: u64) -> Result<Leadership, FsError>;
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

#[async_trait]
impl Coordinator for StaticCoordinator {
    async fn leader_address(&self) -> Result<Option<String>, FsError> {
        Ok(Some(self.master_address.clone()))
    }

    async fn campaign(&self, address: &str, last_epoch: u64) -> Result<Leadership, FsError> {
        if address != self.master_address {
            return Err(FsError::NotLeader { leader: self.master_address.clone() });
        }
        Ok(Leadership { epoch: last_epoch + 1 })
    }
}

/// The coordinator configuration asks for.
pub fn from_config(cfg: &Config) -> Result<std::sync::Arc<dyn Coordinator>, FsError> {
    if cfg.bool(config::ZOOKEEPER_ENABLED) {
        return Err(FsError::InvalidArgument {
            reason: format!(
                "{}=true, but this build has no ZooKeeper coordinator yet; unset it to run a single master",
                config::ZOOKEEPER_ENABLED
            ),
        });
    }
    Ok(std::sync::Arc::new(StaticCoordinator::new(cfg.master_address())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_coordinator_grants_a_newer_epoch_only_to_its_master() {
        let c = StaticCoordinator::new("h:1".into());
        assert_eq!(c.leader_address().await.unwrap().as_deref(), Some("h:1"));
        assert_eq!(c.campaign("h:1", 4).await.unwrap(), Leadership { epoch: 5 });
        assert_eq!(c.campaign("h:2", 4).await, Err(FsError::NotLeader { leader: "h:1".into() }));
    }
}
