//! The contract every [`Coordinator`] keeps, as one suite run against each implementation:
//! real ZooKeeper (`tests/ha.rs`) and the simulated ZooKeeper (`sim/`), so the simulation
//! cannot drift from reality. Each check panics with what broke.

use std::sync::Arc;
use std::time::Duration;

use super::Coordinator;

/// Runs every check. `connect` returns a new coordinator with its own session, as each
/// master process has; all of them must reach the same fresh ensemble and root.
pub async fn run_all(connect: &(dyn Fn() -> Arc<dyn Coordinator> + Send + Sync)) {
    one_leader_at_a_time_with_increasing_epochs(connect).await;
    epochs_exceed_what_the_journal_has_seen(connect).await;
    masters_are_listed_while_registered(connect).await;
}

/// Waits up to 10 s (virtual under simulation) for `check`.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A second candidate waits while the first leads and is elected, with a newer epoch, as
/// soon as the first resigns; discovery follows the announced address.
pub async fn one_leader_at_a_time_with_increasing_epochs(connect: &(dyn Fn() -> Arc<dyn Coordinator> + Send + Sync)) {
    let (a, b) = (connect(), connect());
    let first = a.campaign("10.9.0.1:1", 0).await.expect("first campaign");
    first.announce("10.9.0.1:1").await.expect("announce");
    assert_eq!(b.leader_address().await.expect("discovery").as_deref(), Some("10.9.0.1:1"));
    let second = tokio::spawn(async move { b.campaign("10.9.0.2:1", 0).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "two leaders at once");
    first.resign().await;
    assert!(eventually(|| first.is_lost()).await, "a resigned leader must know it lost");
    let second = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the next candidate is elected after a resignation")
        .expect("campaign task")
        .expect("second campaign");
    assert!(second.epoch > first.epoch, "epochs increase: {} then {}", first.epoch, second.epoch);
    second.announce("10.9.0.2:1").await.expect("announce");
    assert_eq!(a.leader_address().await.expect("discovery").as_deref(), Some("10.9.0.2:1"));
    second.resign().await;
}

/// The granted epoch exceeds the `last_epoch` a candidate read from the journal.
pub async fn epochs_exceed_what_the_journal_has_seen(connect: &(dyn Fn() -> Arc<dyn Coordinator> + Send + Sync)) {
    let c = connect();
    let leadership = c.campaign("10.9.0.3:1", 1000).await.expect("campaign");
    assert!(leadership.epoch > 1000, "epoch {} not above the journal's 1000", leadership.epoch);
    leadership.resign().await;
}

/// Registered masters are listed, sorted.
pub async fn masters_are_listed_while_registered(connect: &(dyn Fn() -> Arc<dyn Coordinator> + Send + Sync)) {
    let c = connect();
    c.register_master("10.9.0.5:1").await.expect("register");
    c.register_master("10.9.0.4:1").await.expect("register");
    let listed = c.masters().await.expect("masters");
    assert_eq!(listed, vec!["10.9.0.4:1".to_string(), "10.9.0.5:1".to_string()]);
}
