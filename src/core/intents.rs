//! Settling the under-storage intents a previous leader left pending, decided from the
//! namespace alone: which way the copies go and what is journaled after they moved. The
//! master's executor (`master/ufs_intents.rs`) carries the decision out; these functions
//! are the whole decision, so unit tests assert it for every state a crash can leave.
//!
//! A crash can leave an intent pending before its copies moved, after some or all moved,
//! or after they moved and before the operation's entries were journaled; an operation
//! journaled together with its intent's end leaves nothing pending. Moving is idempotent
//! (a copy already where it should be is fine), so each state settles the same way.

use crate::core::namespace::{InodeKind, Namespace};
use crate::error::FsError;
use crate::proto::journal_entry::Kind;
use crate::proto::{DeleteEntry, PersistFileEntry, PersistenceState, UfsIntentEntry, UfsIntentKind};

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
    use crate::core::path::FsPath;
    use crate::proto::{InodeOwnership, UfsCopy, UfsIntentDoneEntry};

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
