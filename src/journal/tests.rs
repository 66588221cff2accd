//! Journal recovery and writer tests on a local folder.

use super::*;
use crate::core::path::FsPath;
use crate::proto::InodeOwnership;
use crate::underfs::local::LocalUnderFs;

fn journal(dir: &std::path::Path, limits: JournalLimits) -> Journal {
    Journal::new(Arc::new(LocalUnderFs::new(dir)), limits)
}

/// Plans `mkdir -p` of each path, applies and journals it like the master does.
async fn mkdirs(ns: &mut Namespace, w: &JournalWriter, paths: &[&str]) {
    for p in paths {
        let own = InodeOwnership::default();
        let kinds = ns.plan_create_directory(&FsPath::parse(p).unwrap(), true, true, &own, 1).unwrap();
        let entries = ns.apply_operation(kinds, 1).entries;
        let end = w.submit(&entries).await.unwrap();
        w.wait_durable(end).await.unwrap();
    }
}

/// A formatted, empty journal with its writer open.
async fn fresh(dir: &std::path::Path, limits: JournalLimits) -> (Journal, JournalWriter, Namespace) {
    let j = journal(dir, limits);
    j.format(false).await.unwrap();
    let rec = j.recover().await.unwrap();
    let w = j.start_writer(&rec).await.unwrap();
    (j, w, rec.namespace)
}

fn log_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir.join("logs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn unformatted_journal_is_refused_and_format_guards_data() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path(), JournalLimits::default());
    assert!(matches!(j.recover().await, Err(JournalError::NotFormatted { .. })));
    j.format(false).await.unwrap();
    let rec = j.recover().await.unwrap();
    let w = j.start_writer(&rec).await.unwrap();
    let mut ns = rec.namespace;
    mkdirs(&mut ns, &w, &["/a"]).await;
    w.close().await;
    assert!(matches!(j.format(false).await, Err(JournalError::NotEmpty { .. })));
    j.format(true).await.unwrap();
    assert_eq!(j.recover().await.unwrap().namespace.inode_count(), 1);
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
    assert!(rec.open_segment.is_some());
    // The next leader completes it and appends after it.
    let w = j.start_writer(&rec).await.unwrap();
    let mut ns2 = rec.namespace;
    mkdirs(&mut ns2, &w, &["/d"]).await;
    w.close().await;
    assert_eq!(log_files(dir.path()), vec!["0000000000000000-0000000000000003.log", "0000000000000003-0000000000000004.log"]);
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, ns2);
    assert!(rec.open_segment.is_none());
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
    // Continue writing after the cut; a second recovery sees the cut segment completed.
    let w = j.start_writer(&rec).await.unwrap();
    let mut ns = rec.namespace;
    mkdirs(&mut ns, &w, &["/c"]).await;
    w.close().await;
    let rec = j.recover().await.unwrap();
    assert_eq!(rec.namespace, ns);
    assert!(rec.namespace.lookup(&FsPath::parse("/c").unwrap()).is_ok());
    assert!(rec.namespace.lookup(&FsPath::parse("/b").unwrap()).is_err());
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
            assert!(file.ends_with("0000000000000000-0000000000000003.log"));
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
    let bogus = JournalEntry { sequence: 5, epoch: 1, continues: false, kind: None };
    let end = w.submit(&[bogus]).await.unwrap();
    assert!(matches!(w.wait_durable(end).await, Err(JournalError::WriterFailed(_))));
    assert!(w.durability().failed.is_some());
}
