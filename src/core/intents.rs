//! Settling the under-storage intents a previous leader left pending, decided from the
//! namespace alone: which way the copies go and what is journaled after they moved. The
//! master's executor (`master/ufs_intents.rs`) carries the decision out; these functions
//! are the whole decision, so unit tests assert it for every state a crash can leave.
//!
//! A crash can leave an intent pending before its copies moved, after some or all moved,
//! or after they moved and before the operation's entries were journaled; an operation
//! journaled together with its intent's end leaves nothing pending. Moving is idempotent
//! (a copy already where it should be is fine), so each state settles the same way.

use crate::core::namespace::{Inode, InodeId, InodeKind, MountPoint, Namespace, UfsLocation};
use crate::core::path::FsPath;
use crate::error::FsError;
use crate::proto::journal_entry::Kind;
use crate::proto::{DeleteEntry, PersistFileEntry, PersistenceState, UfsCopy, UfsIntentEntry, UfsIntentKind};

/// An intent planned for an operation that moves or removes under-storage copies: the entry
/// recording it (journaled before any copy moves; its id is its sequence) and what the
/// executor needs to carry it out.
#[derive(Clone, Debug, PartialEq)]
pub struct IntentPlan {
    /// The intent's id.
    pub id: u64,
    /// The intent entry to journal.
    pub kinds: Vec<Kind>,
    /// The copies to move (or remove).
    pub copies: Vec<UfsCopy>,
    /// The mount points when planned (where each copy's under-storage is).
    pub points: Vec<MountPoint>,
    /// Under-storage directories the operation empties, deepest first: removed after it
    /// where nothing else is in them.
    pub emptied: Vec<UfsLocation>,
}

fn plan(
    ns: &Namespace,
    kind: UfsIntentKind,
    inode: InodeId,
    request_id: &str,
    renamed_path: &str,
    copies: Vec<UfsCopy>,
    emptied: Vec<UfsLocation>,
) -> IntentPlan {
    let (id, kinds) = ns.plan_ufs_intent(kind, inode, request_id, renamed_path, copies.clone());
    IntentPlan { id, kinds, copies, points: ns.mount_points(), emptied }
}

/// The intent of renaming `src` to `dst` (which planning allowed): the copies of the
/// persisted files at or below `src`, each to its name below `dst`. `None` when there is
/// nothing in under-storage to move (the rename alone is journaled).
pub fn plan_rename(ns: &Namespace, src: &FsPath, dst: &FsPath) -> Result<Option<IntentPlan>, FsError> {
    let copies = ufs_copies_under(ns, src, Some(dst))?;
    if copies.is_empty() {
        return Ok(None);
    }
    let inode = ns.lookup(src)?.id;
    Ok(Some(plan(ns, UfsIntentKind::UfsRename, inode, "", &dst.to_string(), copies, directories_under(ns, src))))
}

/// The intent of deleting `target` (inode `inode`) for request `request_id`: the copies of
/// the persisted files it takes along. `None` when there are none.
pub fn plan_delete(ns: &Namespace, target: &FsPath, inode: InodeId, request_id: &str) -> Result<Option<IntentPlan>, FsError> {
    let copies = ufs_copies_under(ns, target, None)?;
    if copies.is_empty() {
        return Ok(None);
    }
    Ok(Some(plan(ns, UfsIntentKind::UfsDelete, inode, request_id, "", copies, directories_under(ns, target))))
}

/// The intent of publishing a client's upload `temp` (beside `p`'s under-storage path
/// `location`) into place, for a completion or a persist (`kind`).
pub fn plan_publish(ns: &Namespace, p: &FsPath, location: &UfsLocation, temp: &str, kind: UfsIntentKind, request_id: &str) -> Result<IntentPlan, FsError> {
    let inode = ns.lookup(p)?.id;
    let copy = UfsCopy { mount_path: location.mount_path(), from: temp.to_string(), to: location.relative.clone(), temporary_source: true };
    Ok(plan(ns, kind, inode, request_id, "", vec![copy], Vec::new()))
}

/// The under-storage copies of the persisted files at or below `src`: where each is, and
/// (for a rename to `dst`) where it goes. A rename never crosses under-storages (planning
/// refuses it), so a copy stays in its mount.
fn ufs_copies_under(ns: &Namespace, src: &FsPath, dst: Option<&FsPath>) -> Result<Vec<UfsCopy>, FsError> {
    let Ok(top) = ns.lookup(src) else { return Ok(Vec::new()) };
    let persisted = |i: &&Inode| matches!(i.kind, InodeKind::File { persistence: PersistenceState::Persisted, .. });
    let mut copies = Vec::new();
    for path in std::iter::once(top).chain(ns.descendants(top)).filter(persisted).filter_map(|i| ns.path_of(i.id)) {
        let from = ns.resolve_ufs(&path);
        let to = match dst {
            Some(dst) => {
                let moved = FsPath::parse(&format!("{dst}{}", &path.to_string()[src.to_string().len()..]))?;
                ns.resolve_ufs(&moved).relative
            }
            None => String::new(),
        };
        copies.push(UfsCopy { mount_path: from.mount_path(), from: from.relative, to, temporary_source: false });
    }
    Ok(copies)
}

/// Where the directories at or below `p` are in under-storage, deepest first.
fn directories_under(ns: &Namespace, p: &FsPath) -> Vec<UfsLocation> {
    let Ok(top) = ns.lookup(p) else { return Vec::new() };
    let mut dirs: Vec<UfsLocation> = std::iter::once(top)
        .chain(ns.descendants(top))
        .filter(|i| i.is_directory())
        .filter_map(|i| ns.path_of(i.id))
        .map(|path| ns.resolve_ufs(&path))
        .collect();
    // `descendants` lists each directory before what is below it.
    dirs.reverse();
    dirs
}

/// Which way an intent's copies go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// To where the operation puts them (or away, for a delete).
    Forward,
    /// Back to where they were before the intent.
    Back,
}

/// What is journaled once the copies moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// The intent's end only.
    End,
    /// The delete (if the inode is still there) with the intent's end, under the client's
    /// request id, so the client's retry is answered, not repeated.
    Delete,
    /// If every copy is in place: the file persisted with the intent's end (under the
    /// request id); otherwise undo, drop the uploads and end.
    PersistIfInPlace,
    /// Drop the uploads (nothing will use them) and end.
    DiscardUploads,
}

/// How to settle one pending intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub direction: Direction,
    pub then: Then,
}

/// Decides how to settle `intent`: a rename whose entry is in the namespace is finished,
/// one that is not is undone; a delete is finished; a completion's upload is put back for
/// the client's retry; a persist is finished if the file still waits for it at the same
/// under-storage name, else undone and its upload dropped.
pub fn settle(ns: &Namespace, intent: &UfsIntentEntry) -> Settlement {
    let settlement = |direction, then| Settlement { direction, then };
    match UfsIntentKind::try_from(intent.kind).unwrap_or(UfsIntentKind::UfsRename) {
        UfsIntentKind::UfsRename => {
            let renamed = ns.path_of(intent.inode_id).is_some_and(|p| p.to_string() == intent.renamed_path);
            settlement(if renamed { Direction::Forward } else { Direction::Back }, Then::End)
        }
        UfsIntentKind::UfsDelete => settlement(Direction::Forward, Then::Delete),
        UfsIntentKind::UfsComplete => settlement(Direction::Back, Then::End),
        UfsIntentKind::UfsPersist => {
            let waiting = ns
                .inode(intent.inode_id)
                .is_some_and(|i| matches!(i.kind, InodeKind::File { complete: true, persistence, .. } if persistence != PersistenceState::Persisted));
            let same_place = ns
                .path_of(intent.inode_id)
                .map(|p| ns.resolve_ufs(&p))
                .is_some_and(|l| intent.copies.iter().all(|c| c.to == l.relative && c.mount_path == l.mount_path()));
            if waiting && same_place {
                settlement(Direction::Forward, Then::PersistIfInPlace)
            } else {
                settlement(Direction::Back, Then::DiscardUploads)
            }
        }
    }
}

impl Then {
    /// True if the entries answer the client's request (and are journaled under its id).
    pub fn answers_client(self, in_place: bool) -> bool {
        matches!(self, Then::Delete) || (self == Then::PersistIfInPlace && in_place)
    }
}

/// The entries that end intent `intent_id` on inode `inode_id` after its copies moved as
/// `then` says (`in_place`: every copy is where the operation puts it).
pub fn finish(ns: &Namespace, intent_id: u64, inode_id: u64, then: Then, in_place: bool, now_ms: i64) -> Result<Vec<Kind>, FsError> {
    let mut kinds = Vec::new();
    match then {
        Then::Delete if ns.inode(inode_id).is_some() => kinds.push(Kind::Delete(DeleteEntry { id: inode_id, time_ms: now_ms })),
        Then::PersistIfInPlace if in_place => kinds.push(Kind::PersistFile(PersistFileEntry { id: inode_id, time_ms: now_ms })),
        _ => {}
    }
    kinds.extend(ns.plan_ufs_intent_done(intent_id)?);
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{InodeOwnership, UfsIntentDoneEntry};

    fn p(s: &str) -> FsPath {
        FsPath::parse(s).unwrap()
    }

    fn commit(ns: &mut Namespace, kinds: Vec<Kind>) {
        let applied = ns.apply_operation(kinds, 1);
        assert_eq!(applied.error, None);
    }

    /// A namespace with a complete file at `path` (persisted or not) and a pending intent
    /// of `kind` on it; returns the intent.
    fn pending(ns: &mut Namespace, path: &str, persisted: bool, kind: UfsIntentKind, renamed_path: &str) -> UfsIntentEntry {
        let own = InodeOwnership { owner: "u".into(), group: "g".into(), mode: 0o644 };
        let create = ns.plan_create_file(&p(path), 1024, true, &own, 1).unwrap();
        commit(ns, create);
        let state = if persisted { PersistenceState::Persisted } else { PersistenceState::ToBePersisted };
        let complete = ns.plan_complete_file(&p(path), 0, state, |_| None, 2).unwrap();
        commit(ns, complete);
        let id = ns.lookup(&p(path)).unwrap().id;
        let relative = path.trim_start_matches('/').to_string();
        let copy = UfsCopy { mount_path: String::new(), from: format!(".{relative}.tachyon-r.tmp"), to: relative, temporary_source: true };
        let (_, kinds) = ns.plan_ufs_intent(kind, id, "req-7", renamed_path, vec![copy]);
        commit(ns, kinds);
        ns.ufs_intents().last().map(|i| (*i).clone()).unwrap()
    }

    fn done(intent: &UfsIntentEntry) -> Kind {
        Kind::UfsIntentDone(UfsIntentDoneEntry { id: intent.id })
    }

    /// Persisted files /d/x and /d/sub/y and an unpersisted /d/z.
    fn tree() -> Namespace {
        let mut ns = Namespace::new();
        let own = InodeOwnership { owner: "u".into(), group: "g".into(), mode: 0o644 };
        for (path, state) in [("/d/x", PersistenceState::Persisted), ("/d/sub/y", PersistenceState::Persisted), ("/d/z", PersistenceState::NotPersisted)] {
            let create = ns.plan_create_file(&p(path), 1024, true, &own, 1).unwrap();
            commit(&mut ns, create);
            let complete = ns.plan_complete_file(&p(path), 0, state, |_| None, 2).unwrap();
            commit(&mut ns, complete);
        }
        ns
    }

    fn copy(from: &str, to: &str) -> UfsCopy {
        UfsCopy { mount_path: String::new(), from: from.into(), to: to.into(), temporary_source: false }
    }

    #[test]
    fn a_rename_plans_an_intent_moving_every_persisted_copy_below_it() {
        let ns = tree();
        let plan = plan_rename(&ns, &p("/d"), &p("/e")).unwrap().unwrap();
        let d = ns.lookup(&p("/d")).unwrap().id;
        let copies = vec![copy("d/sub/y", "e/sub/y"), copy("d/x", "e/x")];
        let intent = UfsIntentEntry {
            id: ns.next_sequence(),
            kind: UfsIntentKind::UfsRename as i32,
            inode_id: d,
            request_id: String::new(),
            renamed_path: "/e".into(),
            copies: copies.clone(),
        };
        assert_eq!(plan.id, ns.next_sequence(), "an intent's id is its sequence");
        assert_eq!(plan.kinds, vec![Kind::UfsIntent(intent)]);
        assert_eq!(plan.copies, copies);
        let emptied: Vec<&str> = plan.emptied.iter().map(|l| l.relative.as_str()).collect();
        assert_eq!(emptied, vec!["d/sub", "d"], "deepest first");
        // Nothing persisted below: no intent.
        assert_eq!(plan_rename(&ns, &p("/d/z"), &p("/d/w")).unwrap(), None);
    }

    #[test]
    fn a_delete_plans_an_intent_removing_the_copies_under_the_clients_request() {
        let ns = tree();
        let x = ns.lookup(&p("/d/x")).unwrap().id;
        let plan = plan_delete(&ns, &p("/d/x"), x, "req-9").unwrap().unwrap();
        let Kind::UfsIntent(intent) = &plan.kinds[0] else { panic!("{:?}", plan.kinds) };
        assert_eq!((intent.kind, intent.inode_id, intent.request_id.as_str()), (UfsIntentKind::UfsDelete as i32, x, "req-9"));
        assert_eq!(intent.copies, vec![copy("d/x", "")]);
        let z = ns.lookup(&p("/d/z")).unwrap().id;
        assert_eq!(plan_delete(&ns, &p("/d/z"), z, "req-9").unwrap(), None);
    }

    #[test]
    fn a_publish_plans_one_copy_from_the_upload_into_place() {
        let ns = tree();
        let location = ns.resolve_ufs(&p("/d/z"));
        let plan = plan_publish(&ns, &p("/d/z"), &location, "d/.z.tachyon-r.tmp", UfsIntentKind::UfsPersist, "req-3").unwrap();
        assert_eq!(plan.copies, vec![UfsCopy { mount_path: String::new(), from: "d/.z.tachyon-r.tmp".into(), to: "d/z".into(), temporary_source: true }]);
        assert!(plan.emptied.is_empty());
        assert!(plan_publish(&ns, &p("/d/nope"), &location, "t", UfsIntentKind::UfsPersist, "r").is_err());
    }

    #[test]
    fn a_rename_is_finished_if_journaled_and_undone_if_not() {
        let mut ns = Namespace::new();
        let intent = pending(&mut ns, "/a", true, UfsIntentKind::UfsRename, "/b");
        // Crashed before the rename's entry (copies not moved, some moved, all moved): undo.
        assert_eq!(settle(&ns, &intent), Settlement { direction: Direction::Back, then: Then::End });
        assert_eq!(finish(&ns, intent.id, intent.inode_id, Then::End, false, 9).unwrap(), vec![done(&intent)]);
        assert!(!Then::End.answers_client(true));
        // The namespace already has the new name: finish moving.
        let rename = ns.plan_rename(&p("/a"), &p("/b"), 5).unwrap();
        commit(&mut ns, rename);
        assert_eq!(settle(&ns, &intent), Settlement { direction: Direction::Forward, then: Then::End });
    }

    #[test]
    fn a_delete_is_finished_under_the_clients_request_id() {
        let mut ns = Namespace::new();
        let intent = pending(&mut ns, "/gone", true, UfsIntentKind::UfsDelete, "");
        assert_eq!(settle(&ns, &intent), Settlement { direction: Direction::Forward, then: Then::Delete });
        let id = ns.lookup(&p("/gone")).unwrap().id;
        let kinds = finish(&ns, intent.id, intent.inode_id, Then::Delete, true, 9).unwrap();
        assert_eq!(kinds, vec![Kind::Delete(DeleteEntry { id, time_ms: 9 }), done(&intent)]);
        assert!(Then::Delete.answers_client(true), "journaled under the client's request id");
        // Already deleted (say, its TTL ran out meanwhile): only the end.
        let delete = ns.plan_delete(&p("/gone"), false, 8).unwrap();
        commit(&mut ns, delete);
        assert_eq!(finish(&ns, intent.id, intent.inode_id, Then::Delete, true, 9).unwrap(), vec![done(&intent)]);
    }

    #[test]
    fn a_completion_puts_its_upload_back_for_the_clients_retry() {
        let mut ns = Namespace::new();
        let intent = pending(&mut ns, "/c", false, UfsIntentKind::UfsComplete, "");
        assert_eq!(settle(&ns, &intent), Settlement { direction: Direction::Back, then: Then::End });
    }

    #[test]
    fn a_persist_finishes_only_while_the_file_waits_for_it_there() {
        let mut ns = Namespace::new();
        let intent = pending(&mut ns, "/d/f", false, UfsIntentKind::UfsPersist, "");
        assert_eq!(settle(&ns, &intent), Settlement { direction: Direction::Forward, then: Then::PersistIfInPlace });
        let id = ns.lookup(&p("/d/f")).unwrap().id;
        let kinds = finish(&ns, intent.id, intent.inode_id, Then::PersistIfInPlace, true, 9).unwrap();
        assert_eq!(kinds, vec![Kind::PersistFile(PersistFileEntry { id, time_ms: 9 }), done(&intent)]);
        assert!(Then::PersistIfInPlace.answers_client(true) && !Then::PersistIfInPlace.answers_client(false));
        assert_eq!(finish(&ns, intent.id, intent.inode_id, Then::PersistIfInPlace, false, 9).unwrap(), vec![done(&intent)], "not in place: only the end");
        // Renamed since: its copy would land at the old name; undo and drop the upload.
        let rename = ns.plan_rename(&p("/d/f"), &p("/d/g"), 5).unwrap();
        commit(&mut ns, rename);
        assert_eq!(settle(&ns, &intent), Settlement { direction: Direction::Back, then: Then::DiscardUploads });
        // Already persisted, or deleted: the same.
        let mut ns = Namespace::new();
        let intent = pending(&mut ns, "/e", true, UfsIntentKind::UfsPersist, "");
        assert_eq!(settle(&ns, &intent), Settlement { direction: Direction::Back, then: Then::DiscardUploads });
        let delete = ns.plan_delete(&p("/e"), false, 8).unwrap();
        commit(&mut ns, delete);
        assert_eq!(settle(&ns, &intent).then, Then::DiscardUploads);
    }
}
