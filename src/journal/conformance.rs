//! The journal's contract on one under-storage backend: everything the journal needs from
//! a backend to keep every acknowledged write and to fence a deposed leader, checked end to
//! end. Run against local disk by the unit tests and against real S3 and HDFS servers by the
//! integration tests, so a backend cannot pass the plain [`crate::underfs::conformance`]
//! suite and still break the journal.

use std::sync::Arc;

use super::{Journal, JournalError, JournalLimits, JournalWriter};
use crate::core::namespace::Namespace;
use crate::core::path::FsPath;
use crate::proto::InodeOwnership;
use crate::underfs::UnderFs;

/// Plans `mkdir -p` of `path`, applies and journals it like the master does; returns what
/// waiting for durability said.
pub async fn try_mkdir(ns: &mut Namespace, w: &JournalWriter, path: &str) -> Result<(), JournalError> {
    let own = InodeOwnership::default();
    let kinds = ns.plan_create_directory(&FsPath::parse(path).expect("test path"), true, true, &own, 1).expect("plan mkdir");
    let entries = ns.apply_operation(kinds, 1).entries;
    let end = w.submit(&entries).await?;
    w.wait_durable(end).await
}

/// [`try_mkdir`] of each path, which must succeed.
pub async fn mkdirs(ns: &mut Namespace, w: &JournalWriter, paths: &[&str]) {
    for p in paths {
        try_mkdir(ns, w, p).await.unwrap_or_else(|e| panic!("mkdir {p}: {e}"));
    }
}

fn exists(ns: &Namespace, path: &str) -> bool {
    ns.lookup(&FsPath::parse(path).expect("test path")).is_ok()
}

/// Runs the contract on an empty folder. `open` gives a new handle on the same folder each
/// call, as a separate master process would have (HDFS leases belong to one client).
pub async fn run(open: &(dyn Fn() -> Arc<dyn UnderFs> + Send + Sync)) {
    let limits = JournalLimits { segment_max_bytes: 200, idle_segment_close_ms: 200, ..JournalLimits::default() };
    let first = Journal::new(open(), limits.clone());
    assert!(!first.is_formatted().await.unwrap(), "an empty folder is not a journal");
    assert!(matches!(first.recover().await, Err(JournalError::NotFormatted { .. })));
    first.format(false).await.unwrap();

    // A leader writes enough to complete several segments, then checkpoints.
    let (mut ns, old) = first.take_over().await.unwrap();
    let dirs: Vec<String> = (0..24).map(|i| format!("/dir{i}")).collect();
    mkdirs(&mut ns, &old, &dirs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(first.segments().await.unwrap().len() >= 3, "segments complete past the size limit");
    first.write_checkpoint(&ns.to_checkpoint()).await.unwrap();
    assert_eq!(first.newest_checkpoint().await.unwrap(), Some(ns.next_sequence()));
    mkdirs(&mut ns, &old, &["/acked-in-open-segment"]).await;

    // A standby following along sees every acknowledged entry within a bounded time, even
    // while the leader's segment stays open (where readers cannot see open files, the
    // writer completes an idle segment).
    let mut standby = first.recover().await.unwrap().namespace;
    let mut caught_up = false;
    for _ in 0..50 {
        first.catch_up(&mut standby, false).await.unwrap();
        if standby.digest() == ns.digest() {
            caught_up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(caught_up, "a standby reached {} of {}", standby.next_sequence(), ns.next_sequence());

    // A second master takes over while the first still runs (paused or partitioned).
    let second = Journal::new(open(), limits.clone());
    let (mut new_ns, new) = second.take_over().await.unwrap();
    assert_eq!(new_ns.digest(), ns.digest(), "the new leader has every acknowledged entry");
    assert!(exists(&new_ns, "/acked-in-open-segment"));
    let markers = second.ufs.list(super::EPOCHS).await.unwrap();
    assert_eq!(markers, vec![super::format::epoch_file_name(2)], "a take-over leaves only its own epoch marker");
    assert!(try_mkdir(&mut ns, &old, "/zombie").await.is_err(), "a deposed leader acknowledges nothing");
    mkdirs(&mut new_ns, &new, &["/acked-by-new"]).await;
    new.close().await;
    old.abort().await;

    // A third process replays from scratch: the new leader's history, nothing of the zombie.
    let third = Journal::new(open(), limits);
    let rec = third.recover().await.unwrap();
    assert_eq!(rec.namespace.digest(), new_ns.digest());
    assert!(exists(&rec.namespace, "/acked-by-new") && !exists(&rec.namespace, "/zombie"));
    assert_eq!(rec.last_epoch, 2);
    third.catch_up(&mut standby, false).await.unwrap();
    assert_eq!(standby.digest(), new_ns.digest(), "a tailing standby converges");

    assert!(matches!(third.format(false).await, Err(JournalError::NotEmpty { .. })), "format never wipes entries unasked");
    third.format(true).await.unwrap();
    assert_eq!(third.recover().await.unwrap().namespace.next_sequence(), Namespace::new().next_sequence());
}
