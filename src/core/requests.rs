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
use crate::proto::{
    CreateDirectoryRequest, CreateFileRequest, DeleteRequest, InodeOwnership, ListStatusRequest, PathRequest, RenameRequest, SetAttributeRequest,
};

/// Who asks, when, and within which limits: what every request below is planned with.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub caller: &'a Caller,
    pub now_ms: i64,
    /// Deepest path the namespace may hold (`tachyon.master.path.depth.max`).
    pub max_depth: usize,
}

impl Context<'_> {
    /// Refuses a path deeper than `max_depth` components, counting `below` more levels
    /// (the deepest path below a directory being moved there).
    fn check_depth(&self, path: &FsPath, below: usize) -> Result<(), FsError> {
        let depth = path.components().len() + below;
        if depth > self.max_depth {
            return Err(FsError::InvalidPath {
                path: crate::error::shorten(&path.to_string(), 256),
                reason: format!("{depth} levels deep; at most {} (tachyon.master.path.depth.max)", self.max_depth),
            });
        }
        Ok(())
    }
}

/// createFile: `w` on the deepest existing ancestor, then the plan.
pub fn create_file(ns: &Namespace, cx: &Context, path: &FsPath, block_size: u64, recursive: bool, own: &InodeOwnership) -> Result<Vec<Kind>, FsError> {
    cx.check_depth(path, 0)?;
    ns.check_access(cx.caller, path, Checks::CREATE)?;
    ns.plan_create_file(path, block_size, recursive, own, cx.now_ms)
}

/// createDirectory: `w` on the deepest existing ancestor, then the plan.
pub fn create_directory(ns: &Namespace, cx: &Context, path: &FsPath, recursive: bool, allow_exists: bool, own: &InodeOwnership) -> Result<Vec<Kind>, FsError> {
    cx.check_depth(path, 0)?;
    ns.check_access(cx.caller, path, Checks::CREATE)?;
    ns.plan_create_directory(path, recursive, allow_exists, own, cx.now_ms)
}

/// delete: `w` and the sticky rule on the parent (recursively `rwx` below), then the plan.
pub fn delete(ns: &Namespace, cx: &Context, path: &FsPath, recursive: bool) -> Result<Vec<Kind>, FsError> {
    ns.check_access(cx.caller, path, Checks::delete(recursive))?;
    ns.plan_delete(path, recursive, cx.now_ms)
}

/// rename: the source as removed from its parent, the destination as created; nothing
/// below the source may end up deeper than the limit.
pub fn rename(ns: &Namespace, cx: &Context, src: &FsPath, dst: &FsPath) -> Result<Vec<Kind>, FsError> {
    ns.check_access(cx.caller, src, Checks::REMOVE)?;
    ns.check_access(cx.caller, dst, Checks::CREATE)?;
    if dst.components().len() > src.components().len() {
        let below = ns.lookup(src).map(|i| ns.subtree_height(i)).unwrap_or(0);
        cx.check_depth(dst, below)?;
    }
    ns.plan_rename(src, dst, cx.now_ms)
}

/// setAttribute: pin and TTL need `w` on the target; owner, group and mode follow
/// [`Namespace::plan_set_ownership`]. One operation, both parts planned on the same tree.
pub fn set_attribute(ns: &Namespace, cx: &Context, path: &FsPath, change: AttributeChange, ownership: &OwnershipChange) -> Result<Vec<Kind>, FsError> {
    let mut kinds = Vec::new();
    if change != AttributeChange::default() {
        ns.check_access(cx.caller, path, Checks::WRITE_TARGET)?;
        kinds.extend(ns.plan_set_attribute(path, change, cx.now_ms)?);
    }
    if ownership.owner.is_some() || ownership.group.is_some() || ownership.mode.is_some() {
        ns.check_access(cx.caller, path, Checks::TRAVERSE)?;
        kinds.extend(ns.plan_set_ownership(cx.caller, path, ownership, cx.now_ms)?);
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
    let cx = Context { caller: &caller, now_ms: 1_000, max_depth: FUZZ_MAX_DEPTH };
    let kinds = match selector & 0x7f {
        0 => {
            let r = CreateFileRequest::decode(body).map_err(bad)?;
            let own = r.ownership.unwrap_or_default();
            check_ownership(&own)?;
            create_file(&ns, &cx, &FsPath::parse(&r.path)?, r.block_size_bytes, r.recursive, &own)?
        }
        1 => {
            let r = CreateDirectoryRequest::decode(body).map_err(bad)?;
            let own = r.ownership.unwrap_or_default();
            check_ownership(&own)?;
            create_directory(&ns, &cx, &FsPath::parse(&r.path)?, r.recursive, r.allow_exists, &own)?
        }
        2 => {
            let r = DeleteRequest::decode(body).map_err(bad)?;
            delete(&ns, &cx, &FsPath::parse(&r.path)?, r.recursive)?
        }
        3 => {
            let r = RenameRequest::decode(body).map_err(bad)?;
            rename(&ns, &cx, &FsPath::parse(&r.src)?, &FsPath::parse(&r.dst)?)?
        }
        4 => {
            let r = SetAttributeRequest::decode(body).map_err(bad)?;
            let (change, ownership) = attribute_changes(&r)?;
            set_attribute(&ns, &cx, &FsPath::parse(&r.path)?, change, &ownership)?
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

/// The depth limit of the fuzz target's namespace: low, so deep paths and renames reach it.
const FUZZ_MAX_DEPTH: usize = 16;

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
        let too_deep = mkdir(&format!("/home/alice{}", "/d".repeat(FUZZ_MAX_DEPTH)));
        assert!(matches!(plan_untrusted_request(&request(1, &too_deep)), Err(FsError::InvalidPath { reason, .. }) if reason.contains("path.depth.max")));
        // /deep holds 10 levels below it: under /home/alice/x/y (4 deep) it would reach 15, fine; one level more is not.
        let fits = RenameRequest { src: "/deep".into(), dst: "/home/alice/x/y/z".into(), ..Default::default() };
        assert!(matches!(plan_untrusted_request(&request(0x83, &fits)), Err(FsError::NotFound { .. })), "depth fine; the parent is missing");
        let sinks = RenameRequest { src: "/deep".into(), dst: "/home/alice/x/y/z/w/v".into(), ..Default::default() };
        assert!(matches!(plan_untrusted_request(&request(0x83, &sinks)), Err(FsError::InvalidPath { .. })), "the subtree would sink below the limit");
        let ls = ListStatusRequest { path: "/home/bob".into(), ..Default::default() };
        assert!(matches!(plan_untrusted_request(&request(5, &ls)), Err(FsError::PermissionDenied { .. })));
    }
}
