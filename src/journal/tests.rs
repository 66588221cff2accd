//! Journal recovery and writer tests on a local folder.

use super::conformance::{mkdirs, try_mkdir};
use super::*;
use crate::core::path::FsPath;
use crate::underfs::local::LocalUnderFs;

fn journal(dir: &std::path::Path, limits: JournalLimits) -> Journal {
    Journal::new(Arc::new(LocalUnderFs::new(dir)), limits)
}

/// A formatted, empty journal with its writer open.
async fn fresh(dir: &std::path::Path, limits: JournalLimits) -> (Journal, JournalWriter, Namespace) {
    let j = journal(dir, limits);
    j.format(false).await.unwrap();
    let (ns, w) = j.take_over().await.unwrap();
    (j, w, ns)
}

fn log_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("logs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn local_journal_passes_the_journal_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    conformance::run(&|| Arc::new(LocalUnderFs::new(&root))).await;
}

#[tokio::test]
async fn unformatted_journal_is_refused_and_format_guards_data() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), JournalLimits::default());
    assert!(matches!(j.recover().await, Err(JournalError::NotFormatted { .. })));
    j.format(false).await.unwrap();
    let (mut ns, w) = j.take_over().await.unwrap();
    mkdirs(&mut ns, &w, &["/a"]).await;
    w.close().await;
    assert!(matches!(j.format(false).await, Err(JournalError::NotEmpty { .. })));
    j.format(true).await.unwrap();
    assert_eq!(j.recover().await.unwrap().namespace.inode_count(), 1);
}

#[tokio::test]
async fn format_if_unformatted_only_creates_and_leaves_a_live_journal_alone() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), JournalLimits::default());
    assert!(j.format_if_unformatted().await.unwrap(), "a new folder is formatted");
    let (mut ns, w) = j.take_over().await.unwrap();
    mkdirs(&mut ns, &w, &["/kept"]).await;
    let epochs_before = std::fs::read_dir(dir.path().join("epochs")).map(|d| d.count()).unwrap_or(0);
    // Another master's init step while this one leads: nothing changes, the writer goes on.
    assert!(!j.format_if_unformatted().await.unwrap());
    assert_eq!(std::fs::read_dir(dir.path().join("epochs")).map(|d| d.count()).unwrap_or(0), epochs_before);
    mkdirs(&mut ns, &w, &["/after"]).await;
    w.close().await;
    let recovered = j.recover().await.unwrap().namespace;
    assert_eq!(recovered, ns);
    // Entries without the marker are somebody's data: refused, never wiped.
    std::fs::remove_file(dir.path().join(FORMAT_MARKER)).unwrap();
    assert!(matches!(j.format_if_unformatted().await, Err(JournalError::NotEmpty { .. })));
}

#[tokio::test]
async fn recovery_after_crash_and_clean_close_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let (j, w, mut ns) = fresh(dir.path(), JournalLimits::default()).await;
    mkdirs(&mut ns, &w, &["/a/b", "/c"]).await;
    // Crash: the open segment stays open.
    w.abort().await;
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, ns);
    assert_eq!(rec.last_epoch, 1);
    // The next leader leaves the crashed segment as it is and appends after it.
    let (mut ns2, w) = j.take_over().await.unwrap();
    assert_eq!(ns2, ns);
    mkdirs(&mut ns2, &w, &["/d"]).await;
    w.close().await;
    assert_eq!(log_files(dir.path()), vec!["0000000000000000-open-e0000000000000001.log", "0000000000000003-0000000000000004-e0000000000000002.log"]);
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, ns2);
    assert_eq!(rec.last_epoch, 2);
}

#[tokio::test]
async fn torn_tail_is_cut_at_the_last_valid_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (j, w, mut ns) = fresh(dir.path(), JournalLimits::default()).await;
    mkdirs(&mut ns, &w, &["/a"]).await;
    let before = ns.clone();
    mkdirs(&mut ns, &w, &["/b"]).await;
    w.abort().await;
    let open = dir.path().join("logs").join(log_files(dir.path())[0].clone());
    let len = std::fs::metadata(&open).unwrap().len();
    // Tear the last record in half.
    std::fs::OpenOptions::new().write(true).open(&open).unwrap().set_len(len - 3).unwrap();
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, before);
    // The next leader writes after the cut; the torn bytes stay ignored for good.
    let (mut ns, w) = j.take_over().await.unwrap();
    assert_eq!(ns, before);
    mkdirs(&mut ns, &w, &["/c"]).await;
    w.close().await;
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, ns);
    assert!(rec.namespace.lookup(&FsPath::parse("/c").unwrap()).is_ok());
    assert!(rec.namespace.lookup(&FsPath::parse("/b").unwrap()).is_err());
}

#[tokio::test]
async fn operations_straddling_replay_batches_apply_whole_and_a_torn_last_one_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (j, w, mut ns) = fresh(dir.path(), JournalLimits { segment_max_bytes: 64 << 20, ..JournalLimits::default() }).await;
    // Three entries per operation: the batch boundaries fall inside operations.
    let operations = REPLAY_BATCH_ENTRIES;
    let (mut before_last, mut end) = (ns.clone(), 0);
    for i in 0..operations {
        if i + 1 == operations {
            before_last = ns.clone();
        }
        let kinds = ns.plan_create_directory(&FsPath::parse(&format!("/d{i}/x/y")).unwrap(), true, false, &Default::default(), 0).unwrap();
        assert_eq!(kinds.len(), 3);
        end = w.submit(&ns.apply_operation(kinds, 2).entries).await.unwrap();
    }
    w.wait_durable(end).await.unwrap();
    w.abort().await;
    assert_eq!(j.recover().await.unwrap().namespace, ns, "every whole operation replays, across batches");
    // Tear the last record: its operation's first two entries are in the file, but not applied.
    let open = dir.path().join("logs").join(log_files(dir.path())[0].clone());
    let len = std::fs::metadata(&open).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&open).unwrap().set_len(len - 3).unwrap();
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, before_last);
    assert!(rec.namespace.lookup(&FsPath::parse(&format!("/d{}", operations - 1)).unwrap()).is_err());
}

#[tokio::test]
async fn damage_in_a_completed_segment_stops_recovery_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (j, w, mut ns) = fresh(dir.path(), JournalLimits::default()).await;
    mkdirs(&mut ns, &w, &["/a", "/b", "/c"]).await;
    w.close().await;
    let file = dir.path().join("logs").join(log_files(dir.path())[0].clone());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[format::SEGMENT_HEADER_LEN + 9] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    match j.recover().await {
        Err(JournalError::Corrupt { file, offset, .. }) => {
            assert!(file.ends_with("0000000000000000-0000000000000003-e0000000000000001.log"), "{file}");
            assert_eq!(offset, format::SEGMENT_HEADER_LEN);
        }
        other => panic!("expected corruption error, got {other:?}"),
    }
}

#[tokio::test]
async fn rotation_and_checkpoint_keep_recovery_exact_and_prune_logs() {
    let dir = tempfile::tempdir().unwrap();
    let limits = JournalLimits { segment_max_bytes: 200, ..JournalLimits::default() };
    let (j, w, mut ns) = fresh(dir.path(), limits).await;
    let paths: Vec<String> = (0..20).map(|i| format!("/dir{i}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    mkdirs(&mut ns, &w, &refs).await;
    assert!(log_files(dir.path()).len() >= 3, "segments rotate: {:?}", log_files(dir.path()));
    j.write_checkpoint(&ns.to_checkpoint()).await.unwrap();
    let first_cp = ns.next_sequence();
    mkdirs(&mut ns, &w, &["/after"]).await;
    j.write_checkpoint(&ns.to_checkpoint()).await.unwrap();
    // Logs fully below the older kept checkpoint are gone.
    for name in log_files(dir.path()) {
        let seg = SegmentName::parse(&name).unwrap();
        assert!(seg.end.is_none_or(|e| e > first_cp), "{name} should have been pruned");
    }
    mkdirs(&mut ns, &w, &["/later"]).await;
    w.abort().await;
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, ns);
    assert_eq!(rec.namespace.digest(), ns.digest());
}

#[tokio::test]
async fn out_of_order_submission_fails_the_writer_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (_j, w, _ns) = fresh(dir.path(), JournalLimits::default()).await;
    let bogus = JournalEntry { sequence: 5, epoch: 1, continues: false, request_id: String::new(), kind: None };
    let end = w.submit(&[bogus]).await.unwrap();
    assert!(matches!(w.wait_durable(end).await, Err(JournalError::WriterFailed(_))));
    assert!(w.durability().failed.is_some());
}

#[tokio::test]
async fn a_deposed_writer_is_fenced_and_its_late_entries_never_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (j, old, mut old_ns) = fresh(dir.path(), JournalLimits::default()).await;
    mkdirs(&mut old_ns, &old, &["/acked-by-old"]).await;
    // A new leader takes over while the old one still runs (a paused or partitioned leader).
    let (mut new_ns, new) = j.take_over().await.unwrap();
    assert_eq!(new_ns, old_ns, "everything the old leader acknowledged is taken over");
    // The old leader's next write reaches the disk but is never acknowledged...
    match try_mkdir(&mut old_ns, &old, "/zombie").await {
        Err(JournalError::WriterFailed(reason)) => assert!(reason.contains("fenced"), "{reason}"),
        other => panic!("a deposed writer must not acknowledge: {other:?}"),
    }
    // ...and after that it writes nothing at all.
    assert!(matches!(try_mkdir(&mut old_ns, &old, "/zombie2").await, Err(JournalError::WriterFailed(_))));
    mkdirs(&mut new_ns, &new, &["/acked-by-new"]).await;
    new.abort().await;
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, new_ns);
    assert!(rec.namespace.lookup(&FsPath::parse("/zombie").unwrap()).is_err());
    assert!(rec.namespace.lookup(&FsPath::parse("/acked-by-new").unwrap()).is_ok());
    assert_eq!(rec.last_epoch, 2);
}

#[tokio::test]
async fn entries_of_an_older_epoch_past_a_newer_segment_are_ignored_by_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (j, old, mut old_ns) = fresh(dir.path(), JournalLimits::default()).await;
    mkdirs(&mut old_ns, &old, &["/a"]).await;
    let (mut new_ns, new) = j.take_over().await.unwrap();
    mkdirs(&mut new_ns, &new, &["/from-new"]).await;
    // The deposed writer's bytes land after the takeover point in its own segment, as if
    // its write raced the new leader's claim (its epoch check fails, but the bytes are there).
    let _ = try_mkdir(&mut old_ns, &old, "/late-from-old").await;
    old.abort().await;
    new.close().await;
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, new_ns);
    // A standby following along sees the same.
    let mut standby = journal(dir.path(), JournalLimits::default()).load_checkpoint().await.unwrap();
    j.catch_up(&mut standby, false).await.unwrap();
    assert_eq!(standby.digest(), new_ns.digest());
}

#[tokio::test]
async fn a_standby_tailing_sees_each_batch_and_a_takeover_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let limits = JournalLimits { segment_max_bytes: 300, ..JournalLimits::default() };
    let (j, w, mut ns) = fresh(dir.path(), limits.clone()).await;
    let mut standby = j.recover().await.unwrap().namespace;
    for i in 0..12 {
        mkdirs(&mut ns, &w, &[&format!("/t{i}")]).await;
        if i % 3 == 0 {
            assert!(j.catch_up(&mut standby, false).await.unwrap() > 0);
            assert_eq!(standby, ns, "caught up after batch {i}");
        }
        if i == 7 {
            j.write_checkpoint(&ns.to_checkpoint()).await.unwrap();
        }
    }
    w.abort().await;
    // The standby is promoted: claim, final catch-up, write.
    let standby_journal = journal(dir.path(), limits);
    standby_journal.claim_epoch(2).await.unwrap();
    standby_journal.catch_up(&mut standby, true).await.unwrap();
    assert_eq!(standby, ns);
    let w2 = standby_journal.start_writer(&standby, 2).await.unwrap();
    mkdirs(&mut standby, &w2, &["/after-failover"]).await;
    w2.close().await;
    assert_eq!(j.recover().await.unwrap().namespace, standby);
}

#[tokio::test]
async fn claiming_an_epoch_older_than_the_newest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _w, _ns) = fresh(dir.path(), JournalLimits::default()).await;
    j.claim_epoch(5).await.unwrap();
    assert!(matches!(j.claim_epoch(3).await, Err(JournalError::Fenced { mine: 3, newer: 5 })));
    assert_eq!(j.recover().await.unwrap().last_epoch, 5);
}

#[tokio::test]
async fn a_checkpoint_is_never_removed_to_be_rewritten_and_a_crashed_writer_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (j, w, mut ns) = fresh(dir.path(), JournalLimits::default()).await;
    mkdirs(&mut ns, &w, &["/a", "/b"]).await;
    let cp = ns.to_checkpoint();
    j.write_checkpoint(&cp).await.unwrap();
    let file = dir.path().join("checkpoints").join(format::checkpoint_file_name(cp.next_sequence));
    let written = std::fs::metadata(&file).unwrap().modified().unwrap();
    // A second standby checkpointing the same sequence leaves the first file alone.
    j.write_checkpoint(&cp).await.unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), written);
    // A writer that crashed after creating its temporary file does not block the next one.
    mkdirs(&mut ns, &w, &["/c"]).await;
    let next = ns.to_checkpoint();
    let tmp = dir.path().join("checkpoints").join(format!("{}.tmp", format::checkpoint_file_name(next.next_sequence)));
    std::fs::write(&tmp, b"half a checkpoint").unwrap();
    j.write_checkpoint(&next).await.unwrap();
    mkdirs(&mut ns, &w, &["/d"]).await;
    j.write_checkpoint(&ns.to_checkpoint()).await.unwrap();
    w.abort().await;
    assert_eq!(j.recover().await.unwrap().namespace, ns);
}

/// Rewrites the format version in the header of every segment and checkpoint below `dir`
/// to `version` (byte 8..12 of both headers), as an older build would have written them.
fn set_header_versions(dir: &std::path::Path, version: u32) {
    for sub in ["logs", "checkpoints"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = e.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[8..12].copy_from_slice(&version.to_le_bytes());
            std::fs::write(&path, bytes).unwrap();
        }
    }
}

#[tokio::test]
async fn a_version_1_journal_replays_and_a_new_leader_continues_it_in_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let (j, w, mut ns) = fresh(dir.path(), JournalLimits::default()).await;
    mkdirs(&mut ns, &w, &["/old/a", "/old/b"]).await;
    j.write_checkpoint(&ns.to_checkpoint()).await.unwrap();
    mkdirs(&mut ns, &w, &["/old/c"]).await;
    w.close().await;
    set_header_versions(dir.path(), 1);
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace.digest(), ns.digest(), "version 1 checkpoint + logs replay");

    // The new leader writes version 2, including an entry version 1 does not have.
    let (mut ns2, w) = j.take_over().await.unwrap();
    let root = crate::core::permission::Caller::superuser("root");
    let change = crate::core::namespace::OwnershipChange { owner: Some("alice".into()), mode: Some(0o700), recursive: true, ..Default::default() };
    let kinds = ns2.plan_set_ownership(&root, &FsPath::parse("/old").unwrap(), &change, 9).unwrap();
    let entries = ns2.apply_operation(kinds, 2).entries;
    w.wait_durable(w.submit(&entries).await.unwrap()).await.unwrap();
    w.close().await;
    let newest = log_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(dir.path().join("logs").join(&newest)).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), format::FORMAT_VERSION);
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace.digest(), ns2.digest());
    let c = rec.namespace.lookup(&FsPath::parse("/old/c").unwrap()).unwrap();
    assert_eq!((&*c.ownership.owner, c.ownership.mode), ("alice", 0o700));

    // A version this build does not know is refused by name, never skipped.
    set_header_versions(dir.path(), format::FORMAT_VERSION + 1);
    let err = j.recover().await.unwrap_err().to_string();
    assert!(err.contains("version 3 is not supported"), "{err}");
}
