//! Property tests: random operation sequences against the namespace, journaled for real.
//! (a) the state rebuilt from the journal (checkpoint at a random point, torn tail) equals
//!     the live state at the last fully written entry, digest for digest;
//! (b) after every operation the tree invariants hold and the namespace lists exactly what
//!     a plain path→entry model says it should.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use prost::Message as _;
use tachyon::core::namespace::{block_length, InodeKind, Namespace};
use tachyon::core::path::FsPath;
use tachyon::journal::{Journal, JournalLimits};
use tachyon::proto::journal_entry::Kind;
use tachyon::proto::PersistenceState;
use tachyon::proto::{InodeOwnership, JournalEntry};
use tachyon::underfs::local::LocalUnderFs;

const NAMES: [&str; 3] = ["a", "b", "c"];
const BLOCK: u64 = 10;
/// Every persistence state a file can complete with, chosen by length so checkpoints carry all three.
const PERSISTENCE: [PersistenceState; 3] = [PersistenceState::NotPersisted, PersistenceState::ToBePersisted, PersistenceState::Persisted];

#[derive(Clone, Debug)]
enum Op {
    Mkdir(String),
    Create(String, u64),
    Delete(String, bool),
    Rename(String, String),
}

fn arb_path() -> impl Strategy<Value = String> {
    prop::collection::vec(0..NAMES.len(), 1..4).prop_map(|v| v.iter().map(|i| format!("/{}", NAMES[*i])).collect())
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        arb_path().prop_map(Op::Mkdir),
        (arb_path(), 0..35u64).prop_map(|(p, l)| Op::Create(p, l)),
        (arb_path(), any::<bool>()).prop_map(|(p, r)| Op::Delete(p, r)),
        (arb_path(), arb_path()).prop_map(|(a, b)| Op::Rename(a, b)),
    ]
}

/// What the namespace should hold: path → None for a directory, Some(length) for a file.
type Model = BTreeMap<String, Option<u64>>;

fn listing(ns: &Namespace) -> Model {
    let root = ns.inode(0).unwrap();
    ns.descendants(root)
        .into_iter()
        .map(|i| {
            let v = match i.kind {
                InodeKind::Directory { .. } => None,
                InodeKind::File { length, .. } => Some(length),
            };
            (ns.path_of(i.id).unwrap().to_string(), v)
        })
        .collect()
}

fn model_apply(model: &mut Model, op: &Op) {
    let ancestors = |p: &str| -> Vec<String> {
        let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        (1..parts.len()).map(|n| format!("/{}", parts[..n].join("/"))).collect()
    };
    match op {
        Op::Mkdir(p) => {
            for a in ancestors(p) {
                model.insert(a, None);
            }
            model.insert(p.clone(), None);
        }
        Op::Create(p, len) => {
            for a in ancestors(p) {
                model.insert(a, None);
            }
            model.insert(p.clone(), Some(*len));
        }
        Op::Delete(p, _) => {
            let prefix = format!("{p}/");
            model.retain(|k, _| k != p && !k.starts_with(&prefix));
        }
        Op::Rename(a, b) => {
            let prefix = format!("{a}/");
            let moved: Vec<(String, Option<u64>)> = model.iter().filter(|(k, _)| *k == a || k.starts_with(&prefix)).map(|(k, v)| (k.clone(), *v)).collect();
            for (k, v) in moved {
                model.remove(&k);
                model.insert(format!("{b}{}", &k[a.len()..]), v);
            }
        }
    }
}

/// Plans an op; creation is followed by completion with every block committed.
fn plan(ns: &Namespace, op: &Op) -> Result<Vec<Vec<Kind>>, tachyon::error::FsError> {
    let own = InodeOwnership { owner: "u".into(), group: "g".into(), mode: 0o644 };
    let p = |s: &str| FsPath::parse(s).unwrap();
    Ok(match op {
        Op::Mkdir(d) => vec![ns.plan_create_directory(&p(d), true, false, &own, 1)?],
        Op::Create(f, _) => vec![ns.plan_create_file(&p(f), BLOCK, true, &own, 1)?],
        Op::Delete(d, r) => vec![ns.plan_delete(&p(d), *r, 2)?],
        Op::Rename(a, b) => vec![ns.plan_rename(&p(a), &p(b), 3)?],
    })
}

fn apply_all(ns: &mut Namespace, kinds: Vec<Kind>) -> Vec<JournalEntry> {
    let applied = ns.apply_operation(kinds, 1);
    assert_eq!(applied.error, None, "planned entries apply");
    applied.entries
}

fn run_case(ops: Vec<Op>, checkpoint_at: usize, tear: bool) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(Arc::new(LocalUnderFs::new(dir.path())), JournalLimits::default());
        journal.format(false).await.unwrap();
        let (mut ns, writer) = journal.take_over().await.unwrap();
        let mut model = Model::new();
        let mut digest_at: BTreeMap<u64, u32> = BTreeMap::from([(0, ns.digest())]);
        for (i, op) in ops.iter().enumerate() {
            if i == checkpoint_at {
                journal.write_checkpoint(&ns.to_checkpoint()).await.unwrap();
            }
            let Ok(batches) = plan(&ns, op) else { continue };
            for kinds in batches {
                let entries = apply_all(&mut ns, kinds);
                let end = writer.submit(&entries).await.unwrap();
                writer.wait_durable(end).await.unwrap();
                digest_at.insert(ns.next_sequence(), ns.digest());
            }
            if let Op::Create(f, len) = op {
                let path = FsPath::parse(f).unwrap();
                let kinds =
                    ns.plan_complete_file(&path, *len, PERSISTENCE[(*len % 3) as usize], |b| Some(block_length(*len, BLOCK, b & 0xff_ffff)), 4).unwrap();
                let entries = apply_all(&mut ns, kinds);
                let end = writer.submit(&entries).await.unwrap();
                writer.wait_durable(end).await.unwrap();
            }
            model_apply(&mut model, op);
            ns.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert_eq!(listing(&ns), model.clone(), "after {:?}", op);
            digest_at.insert(ns.next_sequence(), ns.digest());
        }
        writer.abort().await;
        if tear {
            let logs = dir.path().join("logs");
            let open = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with("-open.log"));
            if let Some(open) = open {
                let len = std::fs::metadata(&open).unwrap().len();
                if len > 12 {
                    std::fs::OpenOptions::new().write(true).open(&open).unwrap().set_len(len - 1).unwrap();
                }
            }
        }
        let recovered = journal.recover().await.map_err(|e| TestCaseError::fail(e.to_string()))?.namespace;
        recovered.check_invariants().map_err(TestCaseError::fail)?;
        let expected = digest_at.get(&recovered.next_sequence()).copied();
        prop_assert_eq!(Some(recovered.digest()), expected, "recovered at {} of {}", recovered.next_sequence(), ns.next_sequence());
        if !tear {
            prop_assert_eq!(&recovered, &ns);
        } else {
            // Only the last operation may be lost to a one-byte tear, and only whole.
            let last_op_start = digest_at.range(..ns.next_sequence()).next_back().map(|(s, _)| *s).unwrap_or(0);
            prop_assert!(recovered.next_sequence() >= last_op_start);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn journal_replay_rebuilds_the_live_state(
        ops in prop::collection::vec(arb_op(), 1..40),
        checkpoint_at in 0usize..40,
        tear in any::<bool>(),
    ) {
        run_case(ops, checkpoint_at, tear)?;
    }
}

/// Submits entries whose request ids are `sizes` bytes long: each is either refused before
/// anything is written (larger than a record may be) or written, and then the journal's
/// files decode to exactly the accepted entries, with no damaged record.
fn writer_and_reader_agree(sizes: Vec<usize>) -> Result<(), TestCaseError> {
    use tachyon::journal::format::MAX_ENTRY_BYTES;
    use tachyon::journal::{DumpItem, JournalError};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(Arc::new(LocalUnderFs::new(dir.path())), JournalLimits::default());
        journal.format(false).await.unwrap();
        let (ns, writer) = journal.take_over().await.unwrap();
        let mut next = ns.next_sequence();
        let mut accepted = Vec::new();
        for size in sizes {
            let entry = JournalEntry {
                sequence: next,
                epoch: 1,
                continues: false,
                request_id: "r".repeat(size),
                kind: Some(Kind::UfsIntentDone(tachyon::proto::UfsIntentDoneEntry { id: next })),
            };
            match writer.submit(std::slice::from_ref(&entry)).await {
                Ok(end) => {
                    prop_assert!(entry.encoded_len() <= MAX_ENTRY_BYTES, "accepted an entry of {} bytes", entry.encoded_len());
                    writer.wait_durable(end).await.unwrap();
                    accepted.push(entry);
                    next += 1;
                }
                Err(JournalError::EntryTooLarge { bytes, .. }) => prop_assert!(bytes > MAX_ENTRY_BYTES && bytes == entry.encoded_len()),
                Err(e) => return Err(TestCaseError::fail(format!("unexpected writer error: {e}"))),
            }
        }
        writer.close().await;
        let mut replayed = Vec::new();
        for (file, item) in journal.dump().await.unwrap() {
            match item {
                Ok(DumpItem::Segment(seg)) => {
                    prop_assert!(seg.problem.is_none(), "{file}: {:?}", seg.problem);
                    replayed.extend(seg.entries);
                }
                Ok(DumpItem::Checkpoint(_)) => {}
                Err(e) => return Err(TestCaseError::fail(format!("{file}: {e}"))),
            }
        }
        prop_assert_eq!(replayed.len(), accepted.len());
        prop_assert!(replayed == accepted, "the journal does not read back what the writer accepted");
        Ok(())
    })
}

proptest! {
    // Entries near the 16 MiB limit are slow to build: a few cases, sizes on both sides.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn what_the_writer_accepts_replay_reads_back(
        sizes in prop::collection::vec(
            prop_oneof![0usize..4096, (tachyon::journal::format::MAX_ENTRY_BYTES - 256)..(tachyon::journal::format::MAX_ENTRY_BYTES + 256)],
            1..4,
        ),
    ) {
        writer_and_reader_agree(sizes)?;
    }
}
