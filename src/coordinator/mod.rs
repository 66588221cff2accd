//! Leader election and leader discovery behind one trait, so masters, workers and
//! clients do not care whether a single static master or a ZooKeeper ensemble decides.
//!
//! Implementations: [`StaticCoordinator`] (one configured master, the embedded default) and
//! [`zookeeper::ZkCoordinator`] (real ZooKeeper; not compiled under madsim, where a
//! simulated ZooKeeper takes its place).

pub mod conformance;
#[cfg(not(madsim))]
pub mod zookeeper;

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::watch;
use async_trait::async_trait;
use tokio::time::Instant;

use crate::config::{self, Config};
use crate::error::FsError;

/// A leader's lease on the monotonic clock: the leader may answer as leader until
/// `valid_until`, the send time of its last round trip its coordinator answered plus the
/// lease duration. A coordinator expires a session no sooner than its timeout after the
/// last request it received, and elects no successor before that, so a duration a margin
/// below the session timeout means no successor can serve while the lease holds, even when
/// this process was frozen and has not yet heard that its session ended. Pure: the caller
/// passes the instants.
#[derive(Debug)]
pub struct Lease {
    /// `None`: a lease that never runs out (a single static master).
    duration: Option<Duration>,
    valid_until: std::sync::Mutex<Instant>,
}

impl Lease {
    /// A lease granted by a round trip sent at `sent_at`.
    pub fn new(duration: Option<Duration>, sent_at: Instant) -> Self {
        Lease { duration, valid_until: std::sync::Mutex::new(sent_at + duration.unwrap_or_default()) }
    }

    /// A round trip sent at `sent_at` was answered: the lease runs until `sent_at` plus the
    /// duration (never shorter than before).
    pub fn confirm(&self, sent_at: Instant) {
        if let Some(d) = self.duration {
            let mut until = self.valid_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *until = (*until).max(sent_at + d);
        }
    }

    /// True while the lease holds at `now`.
    pub fn is_valid(&self, now: Instant) -> bool {
        self.duration.is_none() || now < *self.valid_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lease duration for a session of `session_timeout`: a third below it, room for
    /// the coordinator's and this host's clocks to run at somewhat different rates.
    pub fn duration_for(session_timeout: Duration) -> Duration {
        session_timeout * 2 / 3
    }
}

/// What the coordinator granted a master: an epoch, a signal that turns true once
/// leadership is lost (session expired, node deleted), and a [`Lease`] kept alive by round
/// trips to the coordinator. The session ends when the last clone of the `Leadership` is
/// dropped or [`Leadership::resign`] is called.
#[derive(Clone)]
pub struct Leadership {
    /// The leadership term, strictly larger than any earlier leader's; written into every
    /// journal entry.
    pub epoch: u64,
    lost: watch::Receiver<bool>,
    session: Arc<dyn LeaderSession>,
    lease: Arc<Lease>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("epoch", &self.epoch).field("lost", &*self.lost.borrow()).finish()
    }
}

impl Leadership {
    /// Leadership from an implementation's session; `granted_at` is when the request that
    /// made this master the leader was sent (its lease starts there). While leadership
    /// lasts, a task renews the lease with a round trip every third of its duration.
    pub fn new(epoch: u64, lost: watch::Receiver<bool>, session: Arc<dyn LeaderSession>, granted_at: Instant) -> Self {
        let lease = Arc::new(Lease::new(session.lease_duration(), granted_at));
        if let Some(duration) = session.lease_duration() {
            tokio::spawn(renew_lease(Arc::downgrade(&session), lease.clone(), duration, lost.clone()));
        }
        Leadership { epoch, lost, session, lease }
    }

    /// True once leadership is gone for good.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// True while the lease holds: the coordinator answered recently enough that no
    /// successor can have been elected. A master answers as leader only then.
    pub fn lease_holds(&self) -> bool {
        self.lease.is_valid(Instant::now())
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

/// Renews `lease` while the session lives and leadership is not lost: a round trip every
/// third of the lease; one that fails or takes longer than the lease renews nothing.
async fn renew_lease(session: Weak<dyn LeaderSession>, lease: Arc<Lease>, duration: Duration, lost: watch::Receiver<bool>) {
    loop {
        tokio::time::sleep(duration / 3).await;
        let Some(session) = session.upgrade() else { return };
        if *lost.borrow() {
            return;
        }
        let sent_at = Instant::now();
        if let Ok(true) = tokio::time::timeout(duration, session.confirm_alive()).await {
            lease.confirm(sent_at);
        }
    }
}

/// The implementation side of a [`Leadership`].
#[async_trait]
pub trait LeaderSession: Send + Sync + 'static {
    /// Publishes the leader's address for discovery.
    async fn announce(&self, address: &str, epoch: u64) -> Result<(), FsError>;
    /// Ends the leadership session.
    async fn resign(&self);
    /// One round trip to the coordinator on this session: true if it answered (so the
    /// session was alive when the request was sent).
    async fn confirm_alive(&self) -> bool;
    /// How long an answered round trip keeps the lease; `None` for sessions that never
    /// expire (a single static master).
    fn lease_duration(&self) -> Option<Duration>;
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
    async fn confirm_alive(&self) -> bool {
        true
    }
    fn lease_duration(&self) -> Option<Duration> {
        None
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
        let (tx, rx) = watch::channel(false);
        Ok(Leadership::new(last_epoch + 1, rx, Arc::new(StaticSession { _lost: tx }), Instant::now()))
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
        assert!(l.lease_holds(), "a static master's lease never runs out");
    }

    #[test]
    fn a_lease_holds_for_its_duration_after_the_last_answered_send() {
        let t0 = Instant::now();
        let d = Lease::duration_for(Duration::from_secs(3));
        assert_eq!(d, Duration::from_secs(2));
        let lease = Lease::new(Some(d), t0);
        assert!(lease.is_valid(t0 + Duration::from_millis(1999)));
        assert!(!lease.is_valid(t0 + d), "expired exactly at sent + duration");
        lease.confirm(t0 + Duration::from_secs(1));
        assert!(lease.is_valid(t0 + Duration::from_millis(2999)));
        assert!(!lease.is_valid(t0 + Duration::from_secs(3)));
        lease.confirm(t0);
        assert!(lease.is_valid(t0 + Duration::from_millis(2999)), "an older answer never shortens it");
        assert!(Lease::new(None, t0).is_valid(t0 + Duration::from_secs(1_000_000)));
    }
}
