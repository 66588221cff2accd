//! The under-storage intent saga: renames and deletes of persisted files mirrored on the
//! under-storage, uploads published into place, and the settling of intents a previous
//! leader left, all under journaled intents (see ARCHITECTURE.md, "File data on
//! under-storage"). The handlers in `service.rs` and the leader's background tasks drive it.

use std::collections::BTreeSet;

use tracing::info;

use super::node::MasterNode;
use crate::core::intents::{self, Direction, IntentPlan, Then};
use crate::core::namespace::{MountPoint, UfsLocation};
use crate::core::path::FsPath;
use crate::core::permission::Caller;
use crate::core::requests;
use crate::error::FsError;
use crate::proto::*;
use crate::underfs::mounts::UfsMounts;

/// Renames `src` to `dst`, moving the under-storage copies of the persisted files below
/// it. The copies to move are journaled first as an intent (so listings leave those names
/// alone and a new leader settles them), then moved, then the rename is journaled together
/// with the intent's end. A failed move is undone.
pub(super) async fn rename_mirrored(
    node: &MasterNode,
    leader: &super::Master,
    caller: &Caller,
    request_id: &str,
    src: &FsPath,
    dst: &FsPath,
) -> Result<Empty, FsError> {
    let max_depth = node.options().max_path_depth;
    let plan_rename = |st: &super::State, now_ms| requests::rename(&st.ns, &requests::Context { caller, now_ms, max_depth }, src, dst);
    let mounts = match node.ufs_mounts() {
        Some(m) if !leader.read_unchecked(|st| st.ns.request_applied(request_id)).await => m,
        // No under-storage, or a retry of an applied rename: answered from its request id.
        _ => return leader.mutate(request_id, plan_rename, |_| Ok(Empty {})).await,
    };
    let mut planned = None;
    leader
        .mutate(
            "",
            |st, now| {
                plan_rename(st, now)?;
                planned = intents::plan_rename(&st.ns, src, dst)?;
                Ok(planned.as_ref().map(|p| p.kinds.clone()).unwrap_or_default())
            },
            |_| Ok(()),
        )
        .await?;
    let Some(plan) = planned else {
        return leader.mutate(request_id, plan_rename, |_| Ok(Empty {})).await;
    };
    let (renamed, _) = move_and_journal(leader, mounts, &plan, request_id, plan_rename, "rename").await;
    if renamed.is_ok() {
        remove_emptied_dirs(mounts, &plan.emptied).await;
    }
    renamed.map(|()| Empty {})
}

/// Carries out a planned intent that moves copies (a rename, a published upload): moves
/// them while the journal still names this master the leader, then journals `then`'s
/// entries together with the intent's end under `request_id`. If that is refused (not
/// merely unavailable: then whether it is journaled is unknown, and the next leader
/// settles it) while this master still leads, the copies are moved back and the intent
/// ended; the second value says whether that happened.
async fn move_and_journal(
    leader: &super::Master,
    mounts: &UfsMounts,
    plan: &IntentPlan,
    request_id: &str,
    then: impl Fn(&super::State, i64) -> Result<Vec<crate::proto::journal_entry::Kind>, FsError>,
    what: &str,
) -> (Result<(), FsError>, bool) {
    let journaled = match fenced_carry_out(leader, mounts, &plan.points, &plan.copies).await {
        Ok(()) => {
            let with_end = |st: &super::State, now| {
                let mut kinds = then(st, now)?;
                kinds.extend(st.ns.plan_ufs_intent_done(plan.id)?);
                Ok(kinds)
            };
            leader.mutate(request_id, with_end, |_| Ok(())).await
        }
        Err(e) => Err(e),
    };
    let undone = match &journaled {
        Err(e) if !e.is_retryable() && leader.verify_still_leading().await.is_ok() => {
            if let Err(undo) = carry_out(mounts, &plan.points, &plan.copies, Direction::Back, Strictness::Lenient).await {
                tracing::warn!(intent = plan.id, error = %undo, "could not move every under-storage copy back after a refused {what}");
            }
            if let Err(e) = leader.mutate("", |st, _| st.ns.plan_ufs_intent_done(plan.id), |_| Ok(())).await {
                tracing::warn!(intent = plan.id, error = %e, "could not end the intent of a refused {what}; the next leader settles it");
            }
            true
        }
        _ => false,
    };
    (journaled, undone)
}

/// Deletes what `plan` selects (at or below `target`) and the under-storage copies of the
/// persisted files it takes along: the copies are journaled first as an intent, removed,
/// and then the delete is journaled together with the intent's end (so a listing never
/// loads a copy being removed as a new file, and a new leader finishes the delete).
pub(super) async fn delete_mirrored(
    node: &MasterNode,
    leader: &super::Master,
    request_id: &str,
    target: &FsPath,
    plan: impl Fn(&super::State, i64) -> Result<Vec<crate::proto::journal_entry::Kind>, FsError>,
) -> Result<(), FsError> {
    let mounts = match node.ufs_mounts() {
        Some(m) if !leader.read_unchecked(|st| st.ns.request_applied(request_id)).await => m,
        _ => return leader.mutate(request_id, &plan, |_| Ok(())).await,
    };
    let mut planned = None;
    leader
        .mutate(
            "",
            |st, now| {
                let inode = match plan(st, now)?.first() {
                    Some(crate::proto::journal_entry::Kind::Delete(d)) => d.id,
                    _ => return Ok(Vec::new()),
                };
                planned = intents::plan_delete(&st.ns, target, inode, request_id)?.map(|p| (inode, p));
                Ok(planned.as_ref().map(|(_, p)| p.kinds.clone()).unwrap_or_default())
            },
            |_| Ok(()),
        )
        .await?;
    let Some((inode, IntentPlan { id: intent, copies, points, emptied: dirs, .. })) = planned else {
        return leader.mutate(request_id, &plan, |_| Ok(())).await;
    };
    // Removing copies is not undone: only a master the journal still names does it.
    leader.verify_still_leading().await?;
    carry_out(mounts, &points, &copies, Direction::Forward, Strictness::Lenient).await.map_err(|e| {
        tracing::warn!(path = %target, error = %e, "could not delete every under-storage copy; the delete is retried");
        e
    })?;
    leader.mutate(request_id, |st, now| intents::finish(&st.ns, intent, inode, Then::Delete, true, now), |_| Ok(())).await?;
    remove_emptied_dirs(mounts, &dirs).await;
    Ok(())
}

/// Moves a client's sealed upload `temp` (beside `p`'s under-storage path) into place and
/// journals `finish` (completing `p` as PERSISTED, or marking it persisted) together with
/// the end of the intent that covered the move. Nothing lands at `p`'s under-storage name
/// without a journaled intent, so a crash leaves no copy a listing would take for a new
/// file; a refused or failed publish discards the upload. Only a temporary upload name
/// beside `p`'s under-storage path is ever touched, and only if it holds exactly
/// `expected_length` bytes (a completion's length is never taken on trust).
#[allow(clippy::too_many_arguments)]
pub(super) async fn publish_upload(
    node: &MasterNode,
    leader: &super::Master,
    request_id: &str,
    p: &FsPath,
    temp: &str,
    expected_length: u64,
    kind: UfsIntentKind,
    finish: impl Fn(&super::State, i64) -> Result<Vec<crate::proto::journal_entry::Kind>, FsError>,
) -> Result<(), FsError> {
    if leader.read_unchecked(|st| st.ns.request_applied(request_id)).await {
        return leader.mutate(request_id, &finish, |_| Ok(())).await;
    }
    let mounts = node.ufs_mounts().ok_or_else(|| FsError::InvalidArgument { reason: format!("{p}: this master has no under-storage") })?;
    let location = leader.read(|st| Ok(st.ns.resolve_ufs(p))).await?;
    check_upload_name(&location, temp, p)?;
    let (ufs, _) = mounts.open(&location, "checking an upload")?;
    let uploaded =
        ufs.file_length(temp).await.map_err(|e| FsError::Unavailable { reason: format!("under-storage {}: looking up {temp}: {e}", ufs.describe()) })?;
    match uploaded {
        Some(length) if length == expected_length => {}
        Some(length) => {
            if let Err(e) = ufs.delete(temp).await {
                tracing::warn!(file = %temp, error = %e, "could not delete a refused upload");
            }
            return Err(FsError::InvalidArgument { reason: format!("{p}: the upload holds {length} bytes, not the {expected_length} the request claims") });
        }
        None => return Err(FsError::InvalidArgument { reason: format!("{p}: no upload {temp} in the under-storage") }),
    }
    let mut planned = None;
    let mut target = None;
    let intended = leader
        .mutate(
            "",
            |st, now| {
                // Renamed meanwhile: the upload is no longer beside it (and is discarded).
                let location = st.ns.resolve_ufs(p);
                target = Some((location.clone(), st.ns.mount_points()));
                check_upload_name(&location, temp, p)?;
                if finish(st, now)?.is_empty() {
                    return Ok(Vec::new());
                }
                let plan = intents::plan_publish(&st.ns, p, &location, temp, kind, request_id)?;
                let kinds = plan.kinds.clone();
                planned = Some(plan);
                Ok(kinds)
            },
            |_| Ok(()),
        )
        .await;
    let discard = |target: Option<(UfsLocation, Vec<MountPoint>)>| async move {
        let Some((location, _)) = target else { return };
        if let Ok((ufs, _)) = mounts.open(&location, "discarding an upload") {
            if let Err(e) = ufs.delete(temp).await {
                tracing::warn!(file = %temp, error = %e, "could not delete an unneeded upload");
            }
        }
    };
    match intended {
        Err(e) => {
            if !e.is_retryable() {
                discard(target).await;
            }
            return Err(e);
        }
        Ok(()) if planned.is_none() => {
            // Nothing to record (persisted meanwhile): the upload is not needed.
            discard(target).await;
            return leader.mutate(request_id, &finish, |_| Ok(())).await;
        }
        Ok(()) => {}
    }
    let Some(plan) = planned else { return Err(FsError::Internal { reason: "publish lost its plan".into() }) };
    let (published, undone) = move_and_journal(leader, mounts, &plan, request_id, &finish, "publish of an upload").await;
    if undone {
        discard(target).await;
    }
    published
}

/// An upload a client names must be a temporary upload name in the directory of `p`'s
/// under-storage path `location`: nothing else is moved, read or deleted on its word.
/// Deletes the uploads (`.<name>.tachyon-<request>.tmp`) a writer of `path` left beside its
/// under-storage path; logs what it cannot.
pub(super) async fn remove_uploads_beside(node: &MasterNode, leader: &super::Master, path: &FsPath) {
    let (Some(mounts), Some(name)) = (node.ufs_mounts(), path.name()) else { return };
    let location = leader.read_unchecked(|st| st.ns.resolve_ufs(path)).await;
    let Ok((ufs, relative)) = mounts.open(&location, "removing an abandoned upload") else { return };
    let dir = relative.rsplit_once('/').map_or("", |(dir, _)| dir).to_string();
    let prefix = format!(".{name}.tachyon-");
    let names = match ufs.list(&dir).await {
        Ok(names) => names,
        Err(e) => return tracing::warn!(%path, error = %e, "cannot list the under-storage to remove an abandoned upload"),
    };
    for upload in names.into_iter().filter(|n| n.starts_with(&prefix) && crate::core::namespace::is_upload_temp_name(n)) {
        let at = if dir.is_empty() { upload } else { format!("{dir}/{upload}") };
        match ufs.delete(&at).await {
            Ok(()) => info!(%path, upload = %at, "removed an abandoned upload"),
            Err(e) => tracing::warn!(%path, upload = %at, error = %e, "could not remove an abandoned upload"),
        }
    }
}

fn check_upload_name(location: &UfsLocation, temp: &str, p: &FsPath) -> Result<(), FsError> {
    let beside = location.relative.rsplit_once('/').map_or("", |(dir, _)| dir);
    let (temp_dir, temp_name) = temp.rsplit_once('/').unwrap_or(("", temp));
    if temp_dir != beside || !crate::core::namespace::is_upload_temp_name(temp_name) {
        return Err(FsError::InvalidArgument { reason: format!("{temp} is not an upload beside {p}'s under-storage path") });
    }
    Ok(())
}

/// Settles the under-storage intents an earlier leader left pending, before this one
/// serves: a rename whose entry is journaled is finished (copies moved to the new names),
/// one that is not is undone; a delete is finished (copies removed, delete journaled with
/// the client's request id). Returns the ids it could not settle yet (an under-storage
/// unreachable), to try again.
pub async fn settle_ufs_intents(node: &MasterNode, leader: &super::Master, only: Option<&BTreeSet<u64>>) -> BTreeSet<u64> {
    let Some(mounts) = node.ufs_mounts() else { return BTreeSet::new() };
    let (intents, points) = leader
        .read_unchecked(|st| {
            let intents: Vec<UfsIntentEntry> = st.ns.ufs_intents().into_iter().filter(|i| only.is_none_or(|ids| ids.contains(&i.id))).cloned().collect();
            (intents, st.ns.mount_points())
        })
        .await;
    let mut unsettled = BTreeSet::new();
    for intent in intents {
        let kind = UfsIntentKind::try_from(intent.kind).unwrap_or(UfsIntentKind::UfsRename);
        let settled = async {
            let plan = leader.read_unchecked(|st| intents::settle(&st.ns, &intent)).await;
            carry_out(mounts, &points, &intent.copies, plan.direction, Strictness::Lenient).await?;
            let mut then = plan.then;
            let in_place = then != Then::PersistIfInPlace || copies_in_place(mounts, &points, &intent.copies).await?;
            if !in_place {
                // The persist's copy did not land: undo it and drop the upload.
                carry_out(mounts, &points, &intent.copies, Direction::Back, Strictness::Lenient).await?;
                then = Then::DiscardUploads;
            }
            if then == Then::DiscardUploads {
                for copy in &intent.copies {
                    discard_upload(mounts, &points, copy).await;
                }
            }
            let request_id = if then.answers_client(in_place) { intent.request_id.as_str() } else { "" };
            leader.mutate(request_id, |st, now| intents::finish(&st.ns, intent.id, intent.inode_id, then, in_place, now), |_| Ok(())).await
        }
        .await;
        match settled {
            Ok(()) => info!(intent = intent.id, inode = intent.inode_id, ?kind, "settled under-storage work a previous leader left pending"),
            Err(e) => {
                tracing::warn!(intent = intent.id, error = %e, "cannot settle pending under-storage work yet; will retry");
                unsettled.insert(intent.id);
            }
        }
    }
    unsettled
}

/// Moves copies forward (strictly) only while the journal still names this master the
/// leader. A deposed leader never touches the under-storage again, not even to undo: the
/// new leader has settled the intent, and later operations may already use the names.
async fn fenced_carry_out(leader: &super::Master, mounts: &UfsMounts, points: &[MountPoint], copies: &[UfsCopy]) -> Result<(), FsError> {
    leader.verify_still_leading().await?;
    carry_out(mounts, points, copies, Direction::Forward, Strictness::Strict).await
}

/// Whether [`carry_out`] stops at the first copy it cannot place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// First attempt of a rename: any failure (a file already at the new name, one the
    /// rename would overwrite) fails it, after undoing what moved.
    Strict,
    /// Settling or undoing: idempotent, a copy already in place is fine; a copy at both
    /// names is left at both (never overwritten) with a warning.
    Lenient,
}

/// Carries out (or undoes) the copies of an intent in the under-storages named by
/// `points`: moves `from` to `to` (back: `to` to `from`); a copy without `to` is deleted
/// (going forward; a delete is never undone).
async fn carry_out(mounts: &UfsMounts, points: &[MountPoint], copies: &[UfsCopy], direction: Direction, strictness: Strictness) -> Result<(), FsError> {
    let mut done: Vec<&UfsCopy> = Vec::new();
    for copy in copies {
        let placed = carry_out_one(mounts, points, copy, direction, strictness).await;
        match placed {
            Ok(()) => done.push(copy),
            Err(e) if strictness == Strictness::Strict => {
                for copy in done.iter().rev() {
                    let _ = carry_out_one(mounts, points, copy, Direction::Back, Strictness::Lenient).await;
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The under-storage holding a copy (by its mount path).
fn ufs_of_copy(mounts: &UfsMounts, points: &[MountPoint], copy: &UfsCopy) -> Result<std::sync::Arc<dyn crate::underfs::UnderFs>, FsError> {
    let mount = match copy.mount_path.as_str() {
        "" => None,
        path => Some(
            points
                .iter()
                .find(|m| m.path.to_string() == path)
                .cloned()
                .ok_or_else(|| FsError::Internal { reason: format!("the under-storage mounted at {path} is no longer mounted") })?,
        ),
    };
    Ok(mounts.open(&UfsLocation { mount, relative: String::new() }, "moving under-storage copies")?.0)
}

/// True if every copy's `to` exists.
async fn copies_in_place(mounts: &UfsMounts, points: &[MountPoint], copies: &[UfsCopy]) -> Result<bool, FsError> {
    for copy in copies {
        let ufs = ufs_of_copy(mounts, points, copy)?;
        let (dir, name) = copy.to.rsplit_once('/').unwrap_or(("", copy.to.as_str()));
        let listed =
            ufs.list_status(dir).await.map_err(|e| FsError::Unavailable { reason: format!("under-storage {}: listing {dir}: {e}", ufs.describe()) })?;
        if !listed.iter().any(|e| e.name == name && !e.is_directory) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deletes a copy's temporary upload (best effort).
async fn discard_upload(mounts: &UfsMounts, points: &[MountPoint], copy: &UfsCopy) {
    if let Ok(ufs) = ufs_of_copy(mounts, points, copy) {
        if let Err(e) = ufs.delete(&copy.from).await {
            tracing::warn!(file = %copy.from, error = %e, "could not delete an unneeded upload");
        }
    }
}

async fn carry_out_one(mounts: &UfsMounts, points: &[MountPoint], copy: &UfsCopy, direction: Direction, strictness: Strictness) -> Result<(), FsError> {
    let ufs = ufs_of_copy(mounts, points, copy)?;
    let io_error = |what: &str, e: std::io::Error| FsError::Unavailable { reason: format!("under-storage {}: {what}: {e}", ufs.describe()) };
    if copy.to.is_empty() {
        if direction == Direction::Forward {
            ufs.delete(&copy.from).await.map_err(|e| io_error(&format!("deleting {}", copy.from), e))?;
        }
        return Ok(());
    }
    let (from, to) = match direction {
        Direction::Forward => (&copy.from, &copy.to),
        Direction::Back => (&copy.to, &copy.from),
    };
    if let Some((parent, _)) = to.rsplit_once('/') {
        ufs.mkdirs(parent).await.map_err(|e| io_error(&format!("creating {parent}"), e))?;
    }
    let moved = ufs.rename(from, to).await;
    tracing::debug!(%from, %to, ok = moved.is_ok(), "under-storage copy moved");
    match moved {
        Ok(()) => Ok(()),
        Err(e) if strictness == Strictness::Lenient && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if strictness == Strictness::Lenient && e.kind() == std::io::ErrorKind::AlreadyExists => {
            tracing::warn!(%from, %to, "an under-storage copy exists at both names; leaving both");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && copy.temporary_source && direction == Direction::Forward => {
            // An earlier attempt of the same upload already in place is accepted; any other
            // file there is never overwritten.
            let (ours, theirs) = (ufs.read(from).await, ufs.read(to).await);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) if ours == theirs => ufs.delete(from).await.map_err(|e| io_error(&format!("deleting {from}"), e)),
                _ => Err(FsError::AlreadyExists { path: format!("{to} in the under-storage {} (move it away or delete it there first)", ufs.describe()) }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(FsError::AlreadyExists { path: format!("{to} in the under-storage {} (move it away or delete it there first)", ufs.describe()) })
        }
        Err(e) => Err(io_error(&format!("moving {from} to {to}"), e)),
    }
}

/// Removes the under-storage directories of a deleted (or renamed-away) tachyon directory,
/// deepest first, where they are empty: one still holding files tachyon does not know
/// keeps them, and itself.
async fn remove_emptied_dirs(mounts: &UfsMounts, dirs: &[UfsLocation]) {
    for dir in dirs.iter().filter(|d| !d.relative.is_empty()) {
        let removed = match mounts.open(dir, "removing a directory") {
            Ok((ufs, at)) => ufs.delete_empty_dir(&at).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = removed {
            tracing::debug!(dir = %dir.relative, error = %e, "under-storage directory kept");
        }
    }
}
