//! Tests of the namespace: exact entries and effects of each plan and apply.

use super::*;

fn own() -> InodeOwnership {
    InodeOwnership { owner: "alice".into(), group: "staff".into(), mode: 0o644 }
}

/// [`own`] for a directory made on the way: executable where readable, `u+wx`.
fn dir_own() -> InodeOwnership {
    InodeOwnership { mode: 0o755, ..own() }
}

fn p(s: &str) -> FsPath {
    FsPath::parse(s).unwrap()
}

/// Applies planned kinds as the master does, returning all effects.
fn commit(ns: &mut Namespace, kinds: Vec<Kind>) -> Vec<Effect> {
    let applied = ns.apply_operation(kinds, 1);
    assert_eq!(applied.error, None);
    applied.effects
}

/// A namespace holding `files` (their directories made on the way), each `bytes_per_block`.
fn with_files(files: &[&str], bytes_per_block: u64) -> Namespace {
    let mut ns = Namespace::new();
    for f in files {
        let kinds = ns.plan_create_file(&p(f), bytes_per_block, true, &own(), 1).unwrap();
        commit(&mut ns, kinds);
    }
    ns
}

fn user(name: &str, groups: &[&str]) -> Caller {
    Caller { user: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), superuser: false }
}

/// Creates `path` (a directory if it ends in '/') owned by `owner:group` with `mode`.
fn make(ns: &mut Namespace, path: &str, owner: &str, group: &str, mode: u32) {
    let o = InodeOwnership { owner: owner.into(), group: group.into(), mode };
    let kinds = match path.strip_suffix('/') {
        Some(dir) => ns.plan_create_directory(&p(dir), false, false, &o, 1).unwrap(),
        None => ns.plan_create_file(&p(path), 1024, false, &o, 1).unwrap(),
    };
    commit(ns, kinds);
}

/// /home (root 755), /home/alice (alice:staff 750), /home/alice/notes (alice 640),
/// /tmp (root 1777), /tmp/bobs (bob 644), /shared (root:dev 775), /shared/x/ (bob 700) + /shared/x/y.
fn permission_tree() -> Namespace {
    let mut ns = Namespace::new();
    make(&mut ns, "/home/", "root", "root", 0o755);
    make(&mut ns, "/home/alice/", "alice", "staff", 0o750);
    make(&mut ns, "/home/alice/notes", "alice", "staff", 0o640);
    make(&mut ns, "/tmp/", "root", "root", 0o1777);
    make(&mut ns, "/tmp/bobs", "bob", "bob", 0o644);
    make(&mut ns, "/shared/", "root", "dev", 0o775);
    make(&mut ns, "/shared/x/", "bob", "bob", 0o700);
    make(&mut ns, "/shared/x/y", "bob", "bob", 0o600);
    ns
}

fn denied_at(r: Result<(), FsError>) -> String {
    match r {
        Err(FsError::PermissionDenied { path, .. }) => path,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn permission_checks_follow_hdfs_rules_with_exact_outcomes() {
    let ns = permission_tree();
    let (alice, bob, carol) = (user("alice", &["staff"]), user("bob", &["bob", "dev"]), user("carol", &["staff"]));
    // Traverse needs x on every directory above; the target's own bits decide reads.
    assert_eq!(ns.check_access(&alice, &p("/home/alice/notes"), Checks::READ_TARGET), Ok(()));
    assert_eq!(ns.check_access(&carol, &p("/home/alice/notes"), Checks::READ_TARGET), Ok(()), "group staff reads");
    assert_eq!(denied_at(ns.check_access(&bob, &p("/home/alice/notes"), Checks::READ_TARGET)), "/home/alice", "no x on alice's home");
    assert_eq!(denied_at(ns.check_access(&carol, &p("/home/alice/notes"), Checks::WRITE_TARGET)), "/home/alice/notes");
    let err = ns.check_access(&carol, &p("/home/alice/notes"), Checks::WRITE_TARGET).unwrap_err().to_string();
    assert!(err.contains("user=carol") && err.contains("access=-w-") && err.contains("alice:staff") && err.contains("-rw-r-----"), "{err}");
    // Listing needs r-x on the directory.
    assert_eq!(ns.check_access(&carol, &p("/home/alice"), Checks::list(false)), Ok(()));
    assert_eq!(denied_at(ns.check_access(&bob, &p("/home/alice"), Checks::list(false))), "/home/alice");
    // Creating needs w on the deepest existing ancestor, also for missing parents.
    assert_eq!(denied_at(ns.check_access(&alice, &p("/new"), Checks::CREATE)), "/");
    assert_eq!(ns.check_access(&alice, &p("/home/alice/a/b/c"), Checks::CREATE), Ok(()));
    assert_eq!(denied_at(ns.check_access(&carol, &p("/home/alice/a/b/c"), Checks::CREATE)), "/home/alice");
    assert_eq!(ns.check_access(&bob, &p("/shared/new"), Checks::CREATE), Ok(()), "group dev writes /shared");
    // Sticky /tmp: anyone creates, only the owner (or /tmp's owner) removes.
    assert_eq!(ns.check_access(&alice, &p("/tmp/mine"), Checks::CREATE), Ok(()));
    assert_eq!(denied_at(ns.check_access(&alice, &p("/tmp/bobs"), Checks::delete(false))), "/tmp/bobs");
    assert_eq!(ns.check_access(&bob, &p("/tmp/bobs"), Checks::delete(false)), Ok(()));
    assert_eq!(ns.check_access(&user("root", &[]), &p("/tmp/bobs"), Checks::delete(false)), Ok(()), "the directory's owner");
    // A recursive delete needs rwx on every non-empty directory below.
    assert_eq!(denied_at(ns.check_access(&user("dave", &["dev"]), &p("/shared/x"), Checks::delete(true))), "/shared/x");
    assert_eq!(ns.check_access(&bob, &p("/shared/x"), Checks::delete(true)), Ok(()));
    // Ownership checks; a missing target is left to the plan.
    assert_eq!(denied_at(ns.check_access(&carol, &p("/home/alice/notes"), Checks::OWNER)), "/home/alice/notes");
    assert_eq!(ns.check_access(&alice, &p("/home/alice/missing"), Checks::WRITE_TARGET), Ok(()));
    // The superuser passes everything.
    assert_eq!(ns.check_access(&Caller::superuser("root"), &p("/shared/x/y"), Checks::delete(true)), Ok(()));
}

#[test]
fn ownership_changes_are_planned_for_whom_may_make_them_and_applied_exactly() {
    let mut ns = permission_tree();
    let (alice, carol) = (user("alice", &["staff", "dev"]), user("carol", &["staff"]));
    let change = |owner: Option<&str>, group: Option<&str>, mode: Option<u32>, recursive| OwnershipChange {
        owner: owner.map(String::from),
        group: group.map(String::from),
        mode,
        recursive,
    };
    let home = p("/home/alice");
    assert!(
        matches!(ns.plan_set_ownership(&alice, &home, &change(Some("carol"), None, None, false), 5), Err(FsError::PermissionDenied { .. })),
        "chown needs a superuser"
    );
    assert!(
        matches!(ns.plan_set_ownership(&carol, &home, &change(None, None, Some(0o777), false), 5), Err(FsError::PermissionDenied { .. })),
        "chmod needs the owner"
    );
    assert!(
        matches!(ns.plan_set_ownership(&alice, &home, &change(None, Some("ops"), None, false), 5), Err(FsError::PermissionDenied { .. })),
        "chgrp into a group alice is not in"
    );
    assert!(ns.plan_set_ownership(&alice, &home, &change(None, None, Some(0o750), false), 5).unwrap().is_empty(), "nothing changes");
    assert!(ns.plan_set_ownership(&alice, &home, &change(None, None, Some(0o10000), false), 5).is_err(), "only permission bits");
    let kinds = ns.plan_set_ownership(&alice, &home, &change(None, Some("dev"), Some(0o700), true), 5).unwrap();
    let id = ns.lookup(&home).unwrap().id;
    assert_eq!(
        kinds,
        vec![Kind::SetOwnership(SetOwnershipEntry { id, time_ms: 5, owner: None, group: Some("dev".into()), mode: Some(0o700), recursive: true })]
    );
    commit(&mut ns, kinds);
    for path in ["/home/alice", "/home/alice/notes"] {
        assert_eq!(ns.lookup(&p(path)).unwrap().ownership.to_proto(), InodeOwnership { owner: "alice".into(), group: "dev".into(), mode: 0o700 }, "{path}");
    }
    // A recursive chmod by someone who does not own everything below is refused whole.
    let root = Caller::superuser("root");
    let chown = ns.plan_set_ownership(&root, &p("/home/alice/notes"), &change(Some("bob"), None, None, false), 6).unwrap();
    commit(&mut ns, chown);
    let refused = ns.plan_set_ownership(&alice, &home, &change(None, None, Some(0o755), true), 7);
    assert!(matches!(&refused, Err(FsError::PermissionDenied { path, .. }) if path == "/home/alice/notes"), "{refused:?}");
    // Survives a checkpoint.
    let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
    assert_eq!(back.lookup(&p("/home/alice/notes")).unwrap().ownership.owner, "bob".into());
    assert_eq!(back.digest(), ns.digest());
}

#[test]
fn abandoned_writes_are_incomplete_files_silent_past_the_timeout() {
    let mut ns = Namespace::new();
    for (path, t) in [("/old", 100), ("/busy", 100), ("/new", 900)] {
        let kinds = ns.plan_create_file(&p(path), 1024, false, &own(), t).unwrap();
        commit(&mut ns, kinds);
    }
    let done = ns.plan_create_file(&p("/done"), 1024, false, &own(), 100).unwrap();
    commit(&mut ns, done);
    let complete = ns.plan_complete_file(&p("/done"), 0, PersistenceState::NotPersisted, |_| None, 150).unwrap();
    commit(&mut ns, complete);
    let busy = ns.lookup(&p("/busy")).unwrap().id;
    let last_write = |id| (id == busy).then_some(800);
    let found: Vec<String> = ns.abandoned_writes(1000, 500, last_write, 10).into_iter().map(|(_, p)| p.to_string()).collect();
    assert_eq!(found, ["/old"], "busy wrote a block at 800, new was created at 900, done is complete");
    let old = ns.lookup(&p("/old")).unwrap().id;
    assert_eq!(ns.plan_reap_abandoned(old, 1000, 500, None), vec![Kind::Delete(DeleteEntry { id: old, time_ms: 1000 })]);
    assert!(ns.plan_reap_abandoned(old, 1000, 500, Some(700)).is_empty(), "written since it was found");
    assert!(ns.plan_reap_abandoned(busy, 1000, 500, Some(800)).is_empty());
    assert!(ns.abandoned_writes(1000, 500, |_| None, 1).len() == 1, "the limit");
}

#[test]
fn workers_may_store_only_blocks_the_namespace_expects() {
    let mut ns = Namespace::new();
    let create = ns.plan_create_file(&p("/f"), 1000, false, &own(), 1).unwrap();
    commit(&mut ns, create);
    let f = ns.lookup(&p("/f")).unwrap().id;
    assert_eq!(ns.check_block_write(block_id(f, 0), 1000), Ok(()), "a block of a file being written");
    assert!(matches!(ns.check_block_write(block_id(f, 0), 1001), Err(FsError::InvalidArgument { .. })), "more than the block size");
    assert!(matches!(ns.check_block_write(block_id(f + 1, 0), 10), Err(FsError::NotFound { .. })), "no such file");
    assert!(matches!(ns.check_block_write(block_id(ROOT_ID, 0), 10), Err(FsError::NotFound { .. })), "a directory");
    let complete = ns.plan_complete_file(&p("/f"), 1500, PersistenceState::Persisted, |_| None, 2).unwrap();
    commit(&mut ns, complete);
    assert_eq!(ns.check_block_write(block_id(f, 1), 500), Ok(()), "exactly a block of a persisted file: a cache fill");
    assert!(matches!(ns.check_block_write(block_id(f, 1), 1000), Err(FsError::FileAlreadyComplete { .. })), "the wrong length");
    assert!(matches!(ns.check_block_write(block_id(f, 2), 1), Err(FsError::FileAlreadyComplete { .. })), "past the last block");
}

#[test]
fn listing_pages_resume_in_order_whatever_changed_between_pages() {
    let mut ns = Namespace::new();
    for d in ["/d/a/x", "/d/a/y", "/d/a-b", "/d/c/z/deep", "/d/e"] {
        let kinds = ns.plan_create_directory(&p(d), true, false, &own(), 1).unwrap();
        commit(&mut ns, kinds);
    }
    let dir_path = p("/d");
    let dir = ns.lookup(&dir_path).unwrap();
    let names = |page: &[&Inode]| page.iter().map(|i| ns.path_of(i.id).unwrap().to_string()).collect::<Vec<_>>();
    let everything = names(&ns.descendants(dir));
    // Recursive pages of every size concatenate to the full listing.
    for limit in 1..=everything.len() + 1 {
        let (mut all, mut after) = (Vec::new(), None::<FsPath>);
        loop {
            let (page, more) = ns.list_page(dir, &dir_path, true, after.as_ref(), limit).unwrap();
            assert!(page.len() <= limit);
            all.extend(names(&page));
            if !more {
                break;
            }
            after = Some(p(all.last().unwrap()));
        }
        assert_eq!(all, everything, "page size {limit}");
    }
    assert_eq!(everything, ["/d/a", "/d/a/x", "/d/a/y", "/d/a-b", "/d/c", "/d/c/z", "/d/c/z/deep", "/d/e"]);
    // Non-recursive: children only, resumable by name.
    let (page, more) = ns.list_page(dir, &dir_path, false, Some(&p("/d/a")), 2).unwrap();
    assert_eq!((names(&page), more), (vec!["/d/a-b".to_string(), "/d/c".to_string()], true));
    // The last entry of a page disappeared: the next page starts at the next name.
    let (page, more) = ns.list_page(dir, &dir_path, true, Some(&p("/d/c/gone/below")), 2).unwrap();
    assert_eq!((names(&page), more), (vec!["/d/c/z".to_string(), "/d/c/z/deep".to_string()], true));
    let (page, more) = ns.list_page(dir, &dir_path, true, Some(&p("/d/b")), 10).unwrap();
    assert_eq!((names(&page).len(), more), (4, false));
    // A resume point outside the listing is refused.
    assert!(ns.list_page(dir, &dir_path, false, Some(&p("/d/a/x")), 5).is_err());
    assert!(ns.list_page(dir, &dir_path, true, Some(&p("/elsewhere")), 5).is_err());
}

#[test]
fn block_sizes_below_the_minimum_are_refused() {
    assert_eq!(check_block_size(0, 65536), Ok(()), "0: the client's default");
    assert_eq!(check_block_size(65536, 65536), Ok(()));
    assert!(matches!(check_block_size(1, 65536), Err(FsError::InvalidArgument { reason }) if reason.contains("tachyon.master.block.size.bytes.min")));
}

#[test]
fn ownership_names_are_bounded_and_printable() {
    assert_eq!(check_ownership(&own()), Ok(()));
    let with = |owner: &str, group: &str, mode: u32| InodeOwnership { owner: owner.into(), group: group.into(), mode };
    assert_eq!(check_ownership(&with("", "", 0)), Ok(()), "empty names: the master's defaults apply");
    for bad in [
        with(&"x".repeat(MAX_OWNER_BYTES + 1), "g", 0o644),
        with("a\nb", "g", 0o644),
        with("a", "g:h", 0o644),
        with("a", "g h", 0o644),
        with("a", "g", 0o10000),
    ] {
        assert!(check_ownership(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn mkdir_recursive_plans_exact_entries() {
    let ns = Namespace::new();
    let kinds = ns.plan_create_directory(&p("/a/b"), true, false, &own(), 7).unwrap();
    assert_eq!(
        kinds,
        vec![
            Kind::CreateDirectory(CreateDirectoryEntry { id: 1, parent_id: 0, name: "a".into(), ownership: Some(dir_own()), time_ms: 7 }),
            Kind::CreateDirectory(CreateDirectoryEntry { id: 2, parent_id: 1, name: "b".into(), ownership: Some(own()), time_ms: 7 }),
        ]
    );
    assert_eq!(ns.plan_create_directory(&p("/a/b"), false, false, &own(), 7), Err(FsError::NotFound { path: "/a".into() }));
}

#[test]
fn loading_an_under_storage_listing_plans_exact_entries_and_skips_what_is_known() {
    let mut ns = Namespace::new();
    let kinds = ns.plan_create_directory(&p("/mnt/known"), true, false, &own(), 1).unwrap();
    commit(&mut ns, kinds);
    let entry = |name: &str, is_directory, length| UnderStorageEntry { name: name.into(), is_directory, length };
    let found = [
        entry("known", true, 0),
        entry("sub", true, 0),
        entry("data.csv", false, 25),
        entry(".data.csv.tachyon-0000000000000001-3.tmp", false, 7),
        entry("..", true, 0),
    ];
    let kinds = ns.plan_load_from_under_storage(&p("/mnt"), &found, 10, &own(), 100, 5).unwrap();
    let dir =
        |id, parent_id, name: &str| Kind::CreateDirectory(CreateDirectoryEntry { id, parent_id, name: name.into(), ownership: Some(dir_own()), time_ms: 5 });
    assert_eq!(
        kinds,
        vec![
            dir(3, 1, "sub"),
            Kind::CreateFile(CreateFileEntry { id: 4, parent_id: 1, name: "data.csv".into(), ownership: Some(own()), time_ms: 5, block_size_bytes: 10 }),
            Kind::CompleteFile(CompleteFileEntry { id: 4, length: 25, time_ms: 5, persistence: PersistenceState::Persisted as i32 }),
        ]
    );
    commit(&mut ns, kinds);
    let f = ns.lookup(&p("/mnt/data.csv")).unwrap();
    assert_eq!(f.kind, InodeKind::File { block_size: 10, length: 25, complete: true, persistence: PersistenceState::Persisted });
    assert_eq!(f.block_ids().len(), 3);
    // Loaded once: the same listing plans nothing more.
    assert_eq!(ns.plan_load_from_under_storage(&p("/mnt"), &found, 10, &own(), 100, 6).unwrap(), Vec::new());
    // A directory tachyon does not have yet is created with its parents; the limit holds.
    let kinds = ns.plan_load_from_under_storage(&p("/new/deep"), &found[1..3], 10, &own(), 1, 5).unwrap();
    assert_eq!(kinds, vec![dir(5, 0, "new"), dir(6, 5, "deep"), dir(7, 6, "sub")]);
    // Nothing to load into a file.
    assert_eq!(ns.plan_load_from_under_storage(&p("/mnt/data.csv"), &found, 10, &own(), 100, 8).unwrap(), Vec::new());
}

#[test]
fn create_complete_and_lookup() {
    let mut ns = Namespace::new();
    let kinds = ns.plan_create_file(&p("/d/f"), 10, true, &own(), 1).unwrap();
    commit(&mut ns, kinds);
    let f = ns.lookup(&p("/d/f")).unwrap().clone();
    assert_eq!(f.kind, InodeKind::File { block_size: 10, length: 0, complete: false, persistence: PersistenceState::NotPersisted });
    assert_eq!(ns.plan_create_file(&p("/d/f"), 10, true, &own(), 1), Err(FsError::AlreadyExists { path: "/d/f".into() }));
    // Block 1 missing: refused with the block named.
    let committed = |b: BlockId| (b == block_id(f.id, 0)).then_some(10);
    assert!(matches!(ns.plan_complete_file(&p("/d/f"), 15, PersistenceState::NotPersisted, committed, 2), Err(FsError::InvalidArgument { .. })));
    let committed = |b: BlockId| match b & 0xff_ffff {
        0 => Some(10),
        1 => Some(5),
        _ => None,
    };
    let kinds = ns.plan_complete_file(&p("/d/f"), 15, PersistenceState::NotPersisted, committed, 2).unwrap();
    commit(&mut ns, kinds);
    let f = ns.lookup(&p("/d/f")).unwrap();
    assert_eq!(f.block_ids(), vec![block_id(f.id, 0), block_id(f.id, 1)]);
    assert_eq!(ns.plan_complete_file(&p("/d/f"), 15, PersistenceState::NotPersisted, committed, 3), Err(FsError::FileAlreadyComplete { path: "/d/f".into() }));
    assert_eq!(ns.path_of(f.id).unwrap().to_string(), "/d/f");
}

#[test]
fn file_in_path_is_not_a_directory() {
    let mut ns = Namespace::new();
    let kinds = ns.plan_create_file(&p("/f"), 10, false, &own(), 1).unwrap();
    commit(&mut ns, kinds);
    assert_eq!(ns.lookup(&p("/f/x")), Err(FsError::NotADirectory { path: "/f".into() }));
    assert_eq!(ns.plan_create_file(&p("/f/x/y"), 10, true, &own(), 1), Err(FsError::NotADirectory { path: "/f".into() }));
    assert_eq!(ns.plan_create_directory(&p("/f/x"), true, false, &own(), 1), Err(FsError::NotADirectory { path: "/f".into() }));
}

#[test]
fn delete_reports_removed_files_and_needs_recursive() {
    let mut ns = with_files(&["/d/a", "/d/e/b"], 10);
    assert_eq!(ns.plan_delete(&p("/d"), false, 2), Err(FsError::DirectoryNotEmpty { path: "/d".into() }));
    let a = ns.lookup(&p("/d/a")).unwrap().id;
    let b = ns.lookup(&p("/d/e/b")).unwrap().id;
    let kinds = ns.plan_delete(&p("/d"), true, 2).unwrap();
    assert_eq!(commit(&mut ns, kinds), vec![Effect::FilesRemoved(vec![a, b])]);
    assert_eq!(ns.inode_count(), 1);
    ns.check_invariants().unwrap();
}

#[test]
fn rename_moves_and_refuses_cycles_and_clobbering() {
    let mut ns = Namespace::new();
    for d in ["/a/b", "/c"] {
        let kinds = ns.plan_create_directory(&p(d), true, false, &own(), 1).unwrap();
        commit(&mut ns, kinds);
    }
    assert!(matches!(ns.plan_rename(&p("/a"), &p("/a/b/x"), 2), Err(FsError::InvalidArgument { .. })));
    assert_eq!(ns.plan_rename(&p("/a"), &p("/c"), 2), Err(FsError::AlreadyExists { path: "/c".into() }));
    let kinds = ns.plan_rename(&p("/a"), &p("/c/z"), 2).unwrap();
    commit(&mut ns, kinds);
    assert!(ns.lookup(&p("/c/z/b")).is_ok());
    assert!(ns.lookup(&p("/a")).is_err());
    ns.check_invariants().unwrap();
}

#[test]
fn operations_mark_all_but_their_last_entry_as_continuing() {
    let mut ns = Namespace::new();
    let kinds = ns.plan_create_directory(&p("/x/y/z"), true, false, &own(), 1).unwrap();
    let applied = ns.apply_operation(kinds, 4);
    let flags: Vec<(u64, bool)> = applied.entries.iter().map(|e| (e.sequence, e.continues)).collect();
    assert_eq!(flags, vec![(0, true), (1, true), (2, false)]);
    assert!(applied.entries.iter().all(|e| e.epoch == 4));
    // A kind that cannot apply stops the operation; what applied is closed off.
    let good = ns.plan_create_directory(&p("/w"), false, false, &own(), 1).unwrap().remove(0);
    let bad = Kind::Delete(DeleteEntry { id: 999, time_ms: 1 });
    let applied = ns.apply_operation(vec![good, bad], 4);
    assert_eq!(applied.entries.len(), 1);
    assert!(!applied.entries[0].continues);
    assert!(matches!(applied.error, Some(ApplyError::Inconsistent { sequence: 4, .. })));
}

#[test]
fn apply_rejects_gaps_and_stale_epochs_without_change() {
    let mut ns = Namespace::new();
    let kind = ns.plan_create_directory(&p("/x"), false, false, &own(), 1).unwrap().remove(0);
    let gap = JournalEntry { sequence: 5, epoch: 1, continues: false, request_id: String::new(), kind: Some(kind.clone()) };
    assert_eq!(ns.apply(&gap), Err(ApplyError::SequenceGap { expected: 0, got: 5 }));
    ns.apply(&JournalEntry { sequence: 0, epoch: 3, continues: false, request_id: String::new(), kind: Some(kind.clone()) }).unwrap();
    let before = ns.clone();
    let stale = JournalEntry { sequence: 1, epoch: 2, continues: false, request_id: String::new(), kind: Some(kind) };
    assert!(matches!(ns.apply(&stale), Err(ApplyError::StaleEpoch { .. })));
    assert_eq!(ns, before);
}

/// A complete file of `len` bytes (block size 4) at `path`, created at `time_ms`.
fn file(ns: &mut Namespace, path: &str, len: u64, persistence: PersistenceState, time_ms: i64) -> InodeId {
    let kinds = ns.plan_create_file(&p(path), 4, true, &own(), time_ms).unwrap();
    commit(ns, kinds);
    let kinds = ns.plan_complete_file(&p(path), len, persistence, |_| Some(4), time_ms).unwrap();
    commit(ns, kinds);
    ns.lookup(&p(path)).unwrap().id
}

#[test]
fn pinning_plans_one_entry_reaches_everything_below_and_is_inherited() {
    let mut ns = Namespace::new();
    let a = file(&mut ns, "/d/a", 4, PersistenceState::Persisted, 1);
    let d = ns.lookup(&p("/d")).unwrap().id;
    let pin = AttributeChange { pinned: Some(true), ttl: None };
    let kinds = ns.plan_set_attribute(&p("/d"), pin, 9).unwrap();
    assert_eq!(
        kinds,
        vec![Kind::SetAttribute(SetAttributeEntry { id: d, time_ms: 9, pinned: Some(true), ttl_ms: None, ttl_action: TtlAction::TtlDelete as i32 })]
    );
    commit(&mut ns, kinds);
    assert!(ns.inode(d).unwrap().pinned && ns.inode(a).unwrap().pinned, "the directory and its file are pinned");
    assert_eq!(ns.plan_set_attribute(&p("/d"), pin, 10).unwrap(), Vec::new(), "pinning again changes nothing");
    let b = file(&mut ns, "/d/sub/b", 4, PersistenceState::Persisted, 2);
    assert!(ns.inode(b).unwrap().pinned, "created below a pinned directory");
    // Pinned blocks stay; unpinned persisted ones may go; unpersisted ones never.
    assert!(!ns.may_evict(block_id(a, 0)));
    let kinds = ns.plan_set_attribute(&p("/d/a"), AttributeChange { pinned: Some(false), ttl: None }, 11).unwrap();
    commit(&mut ns, kinds);
    assert!(ns.may_evict(block_id(a, 0)) && !ns.may_evict(block_id(b, 0)));
    let c = file(&mut ns, "/c", 4, PersistenceState::ToBePersisted, 3);
    assert!(!ns.may_evict(block_id(c, 0)), "not in under-storage yet");
    assert!(ns.may_evict(block_id(9999, 0)), "a deleted file's blocks may go");
    let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
    assert_eq!(back, ns);
}

#[test]
fn ttls_expire_from_creation_time_and_plan_delete_or_free() {
    let mut ns = Namespace::new();
    let gone = file(&mut ns, "/tmp/x/gone", 4, PersistenceState::NotPersisted, 100);
    let freed = file(&mut ns, "/keep/freed", 4, PersistenceState::Persisted, 100);
    let tmp = ns.lookup(&p("/tmp")).unwrap().id;
    let ttl = |ttl_ms, action| AttributeChange { pinned: None, ttl: Some(Some(Ttl { ttl_ms, action })) };
    for (path, change) in
        [("/tmp", ttl(50, TtlAction::TtlDelete)), ("/tmp/x/gone", ttl(60, TtlAction::TtlDelete)), ("/keep/freed", ttl(80, TtlAction::TtlFree))]
    {
        let kinds = ns.plan_set_attribute(&p(path), change, 120).unwrap();
        commit(&mut ns, kinds);
    }
    assert!(ns.plan_set_attribute(&p("/tmp"), ttl(0, TtlAction::TtlDelete), 1).is_err_and(|e| matches!(e, FsError::InvalidArgument { .. })));
    assert_eq!(ns.expired(149), Vec::new(), "the TTL counts from creation (100)");
    // /tmp expires at 150 and takes its subtree along: /tmp/x/gone (due at 160) is never listed on its own.
    assert_eq!(ns.expired(150), vec![Expired { id: tmp, path: p("/tmp"), action: TtlAction::TtlDelete }]);
    assert_eq!(
        ns.expired(180),
        vec![Expired { id: freed, path: p("/keep/freed"), action: TtlAction::TtlFree }, Expired { id: tmp, path: p("/tmp"), action: TtlAction::TtlDelete },]
    );
    assert_eq!(ns.plan_expire(tmp, 150), Ok(vec![Kind::Delete(DeleteEntry { id: tmp, time_ms: 150 })]));
    assert_eq!(ns.plan_expire(tmp, 149), Ok(Vec::new()), "not yet");
    let clear =
        vec![Kind::SetAttribute(SetAttributeEntry { id: freed, time_ms: 180, pinned: None, ttl_ms: Some(-1), ttl_action: TtlAction::TtlDelete as i32 })];
    assert_eq!(ns.plan_expire(freed, 180), Ok(clear.clone()));
    let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
    assert_eq!(back, ns, "TTLs survive checkpoints");
    commit(&mut ns, clear);
    assert_eq!(ns.inode(freed).unwrap().ttl, None, "a FREE runs once");
    let kinds = ns.plan_expire(tmp, 150).unwrap();
    let effects = commit(&mut ns, kinds);
    assert_eq!(effects, vec![Effect::FilesRemoved(vec![gone])]);
    assert_eq!(ns.plan_expire(tmp, 200), Ok(Vec::new()), "gone already");
}

#[test]
fn mounts_plan_exact_entries_resolve_paths_and_fence_deletes_and_renames() {
    let mut ns = Namespace::new();
    let kinds = ns.plan_create_directory(&p("/mnt"), false, false, &own(), 1).unwrap();
    commit(&mut ns, kinds);
    let options = BTreeMap::from([("s3a.accessKeyId".to_string(), "k".to_string())]);
    assert!(ns.plan_mount(&p("/mnt/s3/x"), "s3://b", &options, &own(), 2).is_err(), "the parent must exist");
    assert!(ns.plan_mount(&p("/mnt"), "s3://b", &options, &own(), 2).is_err(), "the mount point must not exist");
    assert!(ns.plan_mount(&p("/"), "s3://b", &options, &own(), 2).is_err());
    assert!(ns.plan_mount(&p("/mnt/s3"), " ", &options, &own(), 2).is_err());
    let many: BTreeMap<String, String> = (0..=MAX_MOUNT_OPTIONS).map(|i| (format!("k{i}"), String::new())).collect();
    assert!(ns.plan_mount(&p("/mnt/s3"), "s3://b", &many, &own(), 2).is_err(), "options are bounded");
    let kinds = ns.plan_mount(&p("/mnt/s3"), "s3://b/data", &options, &own(), 2).unwrap();
    assert_eq!(
        kinds,
        vec![Kind::Mount(MountEntry {
            id: 2,
            parent_id: 1,
            name: "s3".into(),
            ownership: Some(own()),
            time_ms: 2,
            ufs_uri: "s3://b/data".into(),
            options: options.clone()
        })]
    );
    commit(&mut ns, kinds);
    let f = file(&mut ns, "/mnt/s3/a/f", 4, PersistenceState::Persisted, 3);
    file(&mut ns, "/top", 4, PersistenceState::Persisted, 3);
    let mounted = MountPoint { path: p("/mnt/s3"), mount: Mount { ufs_uri: "s3://b/data".into(), options } };
    assert_eq!(ns.mount_points(), vec![mounted.clone()]);
    assert_eq!(ns.resolve_ufs(&p("/mnt/s3/a/f")), UfsLocation { mount: Some(mounted.clone()), relative: "a/f".into() });
    assert_eq!(ns.resolve_ufs(&p("/mnt/s3/new/name")), UfsLocation { mount: Some(mounted.clone()), relative: "new/name".into() });
    assert_eq!(ns.resolve_ufs(&p("/mnt/s3")), UfsLocation { mount: Some(mounted), relative: String::new() });
    assert_eq!(ns.resolve_ufs(&p("/mnt/s3x")), UfsLocation { mount: None, relative: "mnt/s3x".into() });
    // A mount point is neither deleted nor renamed, nothing moves between under-storages.
    assert!(ns.plan_delete(&p("/mnt"), true, 4).is_err_and(|e| e.to_string().contains("unmount")));
    assert!(ns.plan_delete(&p("/mnt/s3/a"), true, 4).is_ok(), "inside a mount is fine");
    assert!(ns.plan_rename(&p("/mnt/s3"), &p("/s3"), 4).is_err());
    assert!(ns.plan_rename(&p("/top"), &p("/mnt/s3/top"), 4).is_err_and(|e| e.to_string().contains("different under-storages")));
    assert!(ns.plan_rename(&p("/mnt/s3/a"), &p("/mnt/s3/b"), 4).is_ok());
    assert!(ns.plan_unmount(&p("/mnt"), 5).is_err(), "not a mount point");
    let mem = file(&mut ns, "/mnt/s3/mem", 4, PersistenceState::ToBePersisted, 4);
    assert!(ns.plan_unmount(&p("/mnt/s3"), 5).is_err_and(|e| e.to_string().contains("/mnt/s3/mem")), "unpersisted data would be lost");
    let kinds = ns.plan_persist_file(&p("/mnt/s3/mem"), 5).unwrap();
    commit(&mut ns, kinds);
    let ttl = AttributeChange { pinned: None, ttl: Some(Some(Ttl { ttl_ms: 1, action: TtlAction::TtlDelete })) };
    let kinds = ns.plan_set_attribute(&p("/mnt"), ttl, 5).unwrap();
    commit(&mut ns, kinds);
    let mnt = ns.lookup(&p("/mnt")).unwrap().id;
    assert!(ns.plan_expire(mnt, 100).is_err_and(|e| e.to_string().contains("unmount")), "a TTL does not delete a mount point either");
    let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
    assert_eq!(back, ns, "mounts survive checkpoints");
    let kinds = ns.plan_unmount(&p("/mnt/s3"), 5).unwrap();
    assert_eq!(kinds, vec![Kind::Unmount(UnmountEntry { id: 2, time_ms: 5 })]);
    assert_eq!(commit(&mut ns, kinds), vec![Effect::FilesRemoved(vec![f, mem])]);
    assert_eq!(ns.mount_points(), Vec::new());
    assert!(ns.lookup(&p("/mnt/s3")).is_err());
    ns.check_invariants().unwrap();
}

#[test]
fn under_storage_intents_are_journaled_keep_their_names_out_of_listings_and_end() {
    let mut ns = Namespace::new();
    let f = file(&mut ns, "/d/f", 4, PersistenceState::Persisted, 1);
    let copy = UfsCopy { mount_path: String::new(), from: "d/f".into(), to: "d/g".into(), temporary_source: false };
    let id = ns.next_sequence();
    let (_, kinds) = ns.plan_ufs_intent(UfsIntentKind::UfsRename, f, "", "/d/g", vec![copy.clone()]);
    let intent =
        UfsIntentEntry { id, kind: UfsIntentKind::UfsRename as i32, inode_id: f, request_id: String::new(), renamed_path: "/d/g".into(), copies: vec![copy] };
    assert_eq!(kinds, vec![Kind::UfsIntent(intent.clone())]);
    commit(&mut ns, kinds);
    assert_eq!(ns.ufs_intents(), vec![&intent]);
    // While the copy moves, a listing of the folder loads neither name.
    let dir = ns.resolve_ufs(&p("/d"));
    assert_eq!(ns.ufs_names_in_flux(&dir), BTreeSet::from(["f".to_string(), "g".to_string()]));
    let found = [UnderStorageEntry { name: "g".into(), is_directory: false, length: 4 }];
    assert_eq!(ns.plan_load_from_under_storage(&p("/d"), &found, 4, &own(), 10, 2).unwrap(), Vec::new());
    assert_eq!(Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap(), ns, "pending intents survive checkpoints");
    // An entry must carry its own sequence as id, and only a pending intent ends.
    let mut wrong = intent.clone();
    wrong.id += 7;
    let bad = JournalEntry { sequence: ns.next_sequence(), epoch: 1, continues: false, request_id: String::new(), kind: Some(Kind::UfsIntent(wrong)) };
    assert!(ns.apply(&bad).is_err());
    assert!(ns.plan_ufs_intent_done(id + 1).is_err());
    let mut kinds = ns.plan_rename(&p("/d/f"), &p("/d/g"), 3).unwrap();
    kinds.extend(ns.plan_ufs_intent_done(id).unwrap());
    commit(&mut ns, kinds);
    assert!(ns.ufs_intents().is_empty());
    assert!(ns.ufs_names_in_flux(&dir).is_empty());
}

#[test]
fn checkpoint_round_trip_preserves_digest() {
    let mut ns = with_files(&["/z/a", "/b"], 4);
    // Move a low-id directory under a higher-id one so parents come after children in id order.
    let kinds = ns.plan_create_directory(&p("/y"), false, false, &own(), 2).unwrap();
    commit(&mut ns, kinds);
    let kinds = ns.plan_rename(&p("/z"), &p("/y/z"), 3).unwrap();
    commit(&mut ns, kinds);
    let back = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
    assert_eq!(back, ns);
    assert_eq!(back.digest(), ns.digest());
}

#[test]
fn a_checkpoint_whose_inodes_do_not_hang_from_the_root_is_refused() {
    let ns = with_files(&["/d/f", "/e/g"], 4);
    let good = ns.to_checkpoint();
    let id_of = |name: &str| good.inodes.iter().find(|r| r.name == name).map(|r| r.id).unwrap();
    let with_parent = |child: &str, parent_id: u64| {
        let mut cp = good.clone();
        cp.inodes.iter_mut().filter(|r| r.name == child).for_each(|r| r.parent_id = parent_id);
        cp
    };
    // A parent that is not there.
    let err = Namespace::from_checkpoint(&with_parent("f", 999)).unwrap_err();
    assert!(err.contains("missing or non-directory parent 999"), "{err}");
    // Two directories each the other's parent: neither hangs from the root.
    let mut cycle = with_parent("d", id_of("e"));
    cycle.inodes.iter_mut().filter(|r| r.name == "e").for_each(|r| r.parent_id = id_of("d"));
    let err = Namespace::from_checkpoint(&cycle).unwrap_err();
    assert!(err.contains("missing or non-directory parent"), "{err}");
    // A file as a parent.
    let err = Namespace::from_checkpoint(&with_parent("g", id_of("f"))).unwrap_err();
    assert!(err.contains("not a directory"), "{err}");
    // Two inodes with one id.
    let mut twice = good.clone();
    let copy = twice.inodes.iter().find(|r| r.name == "g").cloned().unwrap();
    twice.inodes.push(InodeRecord { name: "g2".into(), ..copy.clone() });
    let err = Namespace::from_checkpoint(&twice).unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    // Two inodes of one name in one directory.
    let mut same_name = good.clone();
    let next = same_name.next_inode_id;
    same_name.inodes.push(InodeRecord { id: next, ..copy });
    same_name.next_inode_id = next + 1;
    let err = Namespace::from_checkpoint(&same_name).unwrap_err();
    assert!(err.contains("already exists in"), "{err}");
    assert_eq!(Namespace::from_checkpoint(&good).unwrap(), ns);
}

#[test]
fn a_checkpoint_loads_each_directorys_names_whatever_order_their_ids_come_in() {
    // Ids in creation order, names not: the loaded directory lists and finds them by name.
    let names = ["m", "b", "z", "a", "k"];
    let paths: Vec<String> = names.iter().map(|n| format!("/d/{n}")).collect();
    let ns = with_files(&paths.iter().map(String::as_str).collect::<Vec<_>>(), 4);
    let loaded = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
    assert_eq!(loaded, ns);
    loaded.check_invariants().unwrap();
    let listed: Vec<String> = loaded.children(loaded.lookup(&p("/d")).unwrap()).iter().map(|i| i.name.to_string()).collect();
    assert_eq!(listed, ["a", "b", "k", "m", "z"]);
    for n in names {
        assert_eq!(&*loaded.lookup(&p(&format!("/d/{n}"))).unwrap().name, n);
    }
}

#[test]
fn applied_request_ids_ride_on_the_last_entry_survive_checkpoints_and_are_bounded() {
    let mut ns = Namespace::new();
    let kinds = ns.plan_create_directory(&p("/a/b"), true, false, &own(), 1).unwrap();
    let applied = ns.apply_request(kinds, 1, "client-1");
    assert_eq!(applied.error, None);
    let ids: Vec<&str> = applied.entries.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids, vec!["", "client-1"], "only the last entry carries the id");
    assert!(ns.request_applied("client-1"));
    assert!(!ns.request_applied("client-2"));
    assert!(!ns.request_applied(""), "an empty id is never a retry");

    // A standby replaying the same entries knows the request too.
    let mut replayed = Namespace::new();
    for e in &applied.entries {
        replayed.apply(e).unwrap();
    }
    assert!(replayed.request_applied("client-1"));
    let restored = Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap();
    assert!(restored.request_applied("client-1"));
    assert_eq!(restored, ns);

    // Only the most recent ids are kept.
    for i in 0..MAX_RECENT_REQUESTS {
        let kinds = ns.plan_create_directory(&p(&format!("/n{i}")), false, false, &own(), 2).unwrap();
        ns.apply_request(kinds, 1, &format!("r{i}"));
    }
    assert!(!ns.request_applied("client-1"), "the oldest id was forgotten");
    assert!(ns.request_applied("r0") && ns.request_applied(&format!("r{}", MAX_RECENT_REQUESTS - 1)));
    assert_eq!(Namespace::from_checkpoint(&ns.to_checkpoint()).unwrap(), ns);
}
