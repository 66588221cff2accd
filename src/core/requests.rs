//! Client requests as the namespace sees them: each checks what the caller may do
//! ([`Namespace::check_access`]) and plans the journal entries, in one pure call, so the
//! master's handlers and the `rpc_requests` fuzz target run exactly the same decisions.
//! [`plan_untrusted_request`] decodes raw request bytes the way the RPC layer does and
//! runs them through these functions against a small namespace.

use prost::Message;

use crate::core::namespace::{check_ownership, AttributeChange, Namespace, OwnershipChange, Ttl};
use crate::core::path::FsPath;
use crate::core::permission::{Caller, Checks};
use crate::error::FsError;
use crate::proto::journal_entry::Kind;
use crate::proto::{CreateDirectoryRequest, CreateFileRequest, DeleteRequest, InodeOwnership, ListStatusRequest, PathRequest, RenameRequest, SetAttributeRequest};

/// createFile: `w` on the deepest existing ancestor, then the plan.
pub fn create_file(ns: &Namespace, caller: &Caller, path: &FsPath, block_size: u64, recursive: bool, own: &InodeOwnership, now_ms: i64) -> Result<Vec<Kind>, FsError> {
    ns.check_access(caller, path, Checks::CREATE)?;
    ns.plan_create_file(path, block_size, recursive, own, now_ms)
}

/// createDirectory: `w` on the deepest existing ancestor, then the plan.
pub fn create_directory(
    ns: &Namespace,
    caller: &Caller,
    path: &FsPath,
    recursive: bool,
    allow_exists: bool,
    own: &InodeOwnership,
    now_ms: i64,
) -> Result<Vec<Kind>, FsError> {
    ns.check_access(caller, path, Checks::CREATE)?;
    ns.plan_create_directory(path, recursive, allow_exists, own, now_ms)
}

/// delete: `w` and the sticky rule on the parent (recursively `rwx` below), then the plan.
pub fn delete(ns: &Namespace, caller: &Caller, path: &FsPath, recursive: bool, now_ms: i64) -> Result<Vec<Kind>, FsError> {
    ns.check_access(caller, path, Checks::delete(recursive))?;
    ns.plan_delete(path, recursive, now_ms)
}

/// rename: the source as removed from its parent, the destination as created.
pub fn rename(ns: &Namespace, caller: &Caller, src: &FsPath, dst: &FsPath, now_ms: i64) -> Result<Vec<Kind>, FsError> {
    ns.check_access(caller, src, Checks::REMOVE)?;
    ns.check_access(caller, dst, Checks::CREATE)?;
    ns.plan_rename(src, dst, now_ms)
}

/// setAttribute: pin and TTL need `w` on the target; owner, group and mode follow
/// [`Namespace::plan_set_ownership`]. One operation, both parts planned on the same tree.
pub fn set_attribute(ns: &Namespace, caller: &Caller, path: &FsPath, change: AttributeChange, ownership: &OwnershipChange, now_ms: i64) -> Result<Vec<Kind>, FsError> {
    let mut kinds = Vec::new();
    if change != AttributeChange::default() {
        ns.check_access(caller, path, Checks::WRITE_TARGET)?;
        kinds.extend(ns.plan_set_attribute(path, change, now_ms)?);
    }
    if ownership.owner.is_some() || ownership.group.is_some() || ownership.mode.is_some() {
        ns.check_access(caller, path, Checks::TRAVERSE)?;
        kinds.extend(ns.plan_set_ownership(caller, path, ownership, now_ms)?);
    }
    Ok(kinds)
}

/// The attribute changes a [`SetAttributeRequest`] asks for.
pub fn attribute_changes(req: &SetAttributeRequest) -> Result<(AttributeChange, OwnershipChange), FsError> {
    let ttl = Ttl::change_from_wire(req.ttl_ms, req.ttl_action).map_err(|reason| FsError::InvalidArgument { reason })?;
    let ownership = OwnershipChange { owner: req.owner.clone(), group: req.group.clone(), mode: req.mode, recursive: req.recursive };
    Ok((AttributeChange { pinned: req.pinned, ttl }, ownership))
}

/// What a read of `path` needs: `r-x` to list a directory (and every directory below a
/// recursive listing), `r` for a file or a status.
pub fn check_read(ns: &Namespace, caller: &Caller, path: &FsPath, listing: bool, recursive: bool) -> Result<(), FsError> {
    match ns.lookup(path) {
        Ok(inode) if listing && inode.is_directory() => ns.check_access(caller, path, Checks::list(recursive)),
        _ => ns.check_access(caller, path, Checks::READ_TARGET),
    }
}

/// Decodes `data` as the RPC layer would (first byte: which request; the rest: its
/// protobuf) and runs it as `alice` (or, with the first byte's high bit, the superuser)
/// against a small namespace with other users' files, a sticky directory and deep
/// nesting. Whatever the bytes, nothing panics, refused requests change nothing, and
/// planned entries apply cleanly and keep the namespace's invariants. Returns the
/// planned entries' count, or the refusal.
pub fn plan_untrusted_request(data: &[u8]) -> Result<usize, FsError> {
    let Some((&selector, body)) = data.split_first() else { return Ok(0) };
    let mut ns = sample_namespace();
    let caller = if selector & 0x80 != 0 { Caller::superuser("root") } else { Caller { user: "alice".into(), groups: vec!["staff".into()], superuser: false } };
    let bad = |e: prost::DecodeError| FsError::InvalidArgument { reason: format!("undecodable request: {e}") };
    let now = 1_000;
    let kinds = match selector & 0x7f {
        0 => {
            let r = CreateFileRequest::decode(body).map_err(bad)?;
            let own = r.ownership.unwrap_or_default();
            check_ownership(&own)?;
            create_file(&ns, &caller, &FsPath::parse(&r.path)?, r.block_size_bytes, r.recursive, &own, now)?
        }
        1 => {
            let r = CreateDirectoryRequest::decode(body).map_err(bad)?;
            let own = r.ownership.unwrap_or_default();
            check_ownership(&own)?;
            create_directory(&ns, &caller, &FsPath::parse(&r.path)?, r.recursive, r.allow_exists, &own, now)?
        }
        2 => {
            let r = DeleteRequest::decode(body).map_err(bad)?;
            delete(&ns, &caller, &FsPath::parse(&r.path)?, r.recursive, now)?
        }
        3 => {
            let r = RenameRequest::decode(body).map_err(bad)?;
            rename(&ns, &caller, &FsPath::parse(&r.src)?, &FsPath::parse(&r.dst)?, now)?
        }
        4 => {
            let r = SetAttributeRequest::decode(body).map_err(bad)?;
            let (change, ownership) = attribute_changes(&r)?;
            set_attribute(&ns, &caller, &FsPath::parse(&r.path)?, change, &ownership, now)?
        }
        5 => {
            let r = ListStatusRequest::decode(body).map_err(bad)?;
            let p = FsPath::parse(&r.path)?;
            check_read(&ns, &caller, &p, true, r.recursive)?;
            let dir = ns.lookup(&p)?;
            let after = if r.start_after.is_empty() { None } else { Some(FsPath::parse(&r.start_after)?) };
            if dir.is_directory() {
                ns.list_page(dir, &p, r.recursive, after.as_ref(), (r.limit as usize).clamp(1, 10_000))?;
            }
            Vec::new()
        }
        _ => {
            let r = PathRequest::decode(body).map_err(bad)?;
            let p = FsPath::parse(&r.path)?;
            check_read(&ns, &caller, &p, false, false)?;
            ns.lookup(&p)?;
            Vec::new()
        }
    };
    let planned = kinds.len();
    for kind in &kinds {
        let bound = crate::journal::format::entry_bytes_bound(kind, "");
        assert!(bound <= crate::journal::format::MAX_ENTRY_BYTES, "a planned entry is larger than replay accepts");
    }
    let applied = ns.apply_operation(kinds, 1);
    assert_eq!(applied.error, None, "a planned operation must apply");
    if let Err(broken) = ns.check_invariants() {
        panic!("an accepted request broke the namespace: {broken}");
    }
    Ok(planned)
}

/// The fuzz target's world: `/home/alice` (alice 750), `/home/bob` (bob 700, with a file),
/// `/tmp` (1777, holding bob's file), `/deep/...` ten levels.
fn sample_namespace() -> Namespace {
    let mut ns = Namespace::new();
    let mut make = |path: &str, owner: &str, mode: u32, dir: bool| {
        let own = InodeOwnership { owner: owner.into(), group: owner.into(), mode };
        let p = FsPath::parse(path).unwrap_or_else(|_| FsPath::root());
        let kinds = if dir { ns.plan_create_directory(&p, true, true, &own, 1) } else { ns.plan_create_file(&p, 1 << 20, true, &own, 1) };
        if let Ok(kinds) = kinds {
            ns.apply_operation(kinds, 1);
        }
    };
    make("/home/alice", "alice", 0o750, true);
    make("/home/bob/notes", "bob", 0o600, false);
    make("/tmp", "root", 0o1777, true);
    make("/tmp/bobs", "bob", 0o644, false);
    make("/deep/a/b/c/d/e/f/g/h/i/j", "alice", 0o755, true);
    ns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(selector: u8, message: &impl Message) -> Vec<u8> {
        let mut data = vec![selector];
        message.encode(&mut data).unwrap_or_default();
        data
    }

    #[test]
    fn untrusted_requests_are_planned_or_refused_exactly() {
        let mkdir = |path: &str| CreateDirectoryRequest { path: path.into(), recursive: true, ..Default::default() };
        assert_eq!(plan_untrusted_request(&request(1, &mkdir("/home/alice/x/y"))), Ok(2), "alice in her home");
        assert!(matches!(plan_untrusted_request(&request(1, &mkdir("/home/bob/x"))), Err(FsError::PermissionDenied { .. })));
        assert_eq!(plan_untrusted_request(&request(0x81, &mkdir("/home/bob/x"))), Ok(1), "the superuser");
        let rm = DeleteRequest { path: "/tmp/bobs".into(), ..Default::default() };
        assert!(matches!(plan_untrusted_request(&request(2, &rm)), Err(FsError::PermissionDenied { .. })), "sticky /tmp");
        assert!(matches!(plan_untrusted_request(&request(1, &mkdir("/a/../b"))), Err(FsError::InvalidPath { .. })));
        assert!(matches!(plan_untrusted_request(&[1, 0xff, 0xff]), Err(FsError::InvalidArgument { .. })), "undecodable");
        assert_eq!(plan_untrusted_request(&[]), Ok(0));
        let chmod = SetAttributeRequest { path: "/home/alice".into(), mode: Some(0o700), recursive: true, ..Default::default() };
        assert_eq!(plan_untrusted_request(&request(4, &chmod)), Ok(1));
        let chown = SetAttributeRequest { path: "/home/alice".into(), owner: Some("mallory".into()), ..Default::default() };
        assert!(matches!(plan_untrusted_request(&request(4, &chown)), Err(FsError::PermissionDenied { .. })));
        let ls = ListStatusRequest { path: "/home/bob".into(), ..Default::default() };
        assert!(matches!(plan_untrusted_request(&request(5, &ls)), Err(FsError::PermissionDenied { .. })));
    }
}
