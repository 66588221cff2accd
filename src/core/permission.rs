//! Who may do what: POSIX permission checks over the namespace, as HDFS's
//! `FSPermissionChecker` makes them. Pure: the caller, the tree and what an operation needs
//! go in; allowed, or the exact denial, comes out (see ARCHITECTURE.md, "Security").

use std::sync::Arc;

use crate::error::FsError;
use crate::proto::InodeOwnership;

/// Read permission bit (of one class: owner, group or other).
pub const READ: u32 = 4;
/// Write permission bit.
pub const WRITE: u32 = 2;
/// Execute (for a directory: traverse) permission bit.
pub const EXECUTE: u32 = 1;
/// Sticky bit: in such a directory only an entry's owner, the directory's owner or the
/// superuser may delete or rename the entry.
pub const STICKY_BIT: u32 = 0o1000;
/// Every bit a mode may have.
pub const MODE_BITS: u32 = 0o7777;

/// Owner, group and mode of an inode as the namespace keeps it: the names are shared by
/// every inode of the same owner (interned), so a million files of one user cost two
/// strings, not two million.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    pub owner: Arc<str>,
    pub group: Arc<str>,
    pub mode: u32,
}

impl Ownership {
    /// The wire (and journal) form.
    pub fn to_proto(&self) -> InodeOwnership {
        InodeOwnership { owner: self.owner.to_string(), group: self.group.to_string(), mode: self.mode }
    }
}

/// A verified caller: the user the master authenticated, the groups the master mapped it
/// to, and whether it is a superuser (the master's own user or a member of the supergroup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub groups: Vec<String>,
    pub superuser: bool,
}

impl Caller {
    /// A caller that passes every check: the master acting on its own (TTL actions,
    /// under-storage loads, background persists) or a cluster without permission checks.
    pub fn superuser(user: &str) -> Caller {
        Caller { user: user.to_string(), groups: Vec::new(), superuser: true }
    }

    /// The group new inodes of this caller get: its first group, or none.
    pub fn primary_group(&self) -> &str {
        self.groups.first().map(String::as_str).unwrap_or("")
    }

    /// True if the caller is in `group` (never for the empty group).
    pub fn in_group(&self, group: &str) -> bool {
        !group.is_empty() && self.groups.iter().any(|g| g == group)
    }
}

/// The permission bits (`rwx` as 0..=7) of `ownership` that apply to `caller`: the owner's
/// class if it owns the inode, else the group's if it is in the group, else other's.
pub fn class_bits(ownership: &Ownership, caller: &Caller) -> u32 {
    if !ownership.owner.is_empty() && *ownership.owner == *caller.user {
        (ownership.mode >> 6) & 7
    } else if caller.in_group(&ownership.group) {
        (ownership.mode >> 3) & 7
    } else {
        ownership.mode & 7
    }
}

/// True if `caller` has every bit of `want` on an inode with `ownership`.
pub fn permits(ownership: &Ownership, caller: &Caller, want: u32) -> bool {
    caller.superuser || class_bits(ownership, caller) & want == want
}

/// What an operation needs on a path, in HDFS's terms. Every check also needs execute
/// (traverse) on each existing directory above the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// Bits needed on the deepest existing ancestor of the target (create, mkdir -p).
    pub ancestor: Option<u32>,
    /// Bits needed on the target's parent.
    pub parent: Option<u32>,
    /// Bits needed on the target itself, if it exists.
    pub target: Option<u32>,
    /// Bits needed on the target and every non-empty directory below it.
    pub subtree: Option<u32>,
    /// Apply the sticky rule of the parent to the target.
    pub sticky: bool,
    /// The caller must own the target.
    pub owner: bool,
}

impl Checks {
    /// Only traverse: reach the path.
    pub const TRAVERSE: Checks = Checks { ancestor: None, parent: None, target: None, subtree: None, sticky: false, owner: false };
    /// getStatus, free, reading a file's blocks: read the target.
    pub const READ_TARGET: Checks = Checks { target: Some(READ), ..Checks::TRAVERSE };
    /// complete, persist, pin, TTL: write the target.
    pub const WRITE_TARGET: Checks = Checks { target: Some(WRITE), ..Checks::TRAVERSE };
    /// Create a file or directory, with or without its missing parents.
    pub const CREATE: Checks = Checks { ancestor: Some(WRITE), ..Checks::TRAVERSE };
    /// Delete the target (or take it away from its parent by a rename).
    pub const REMOVE: Checks = Checks { parent: Some(WRITE), sticky: true, ..Checks::TRAVERSE };
    /// chmod, chgrp: own the target.
    pub const OWNER: Checks = Checks { owner: true, ..Checks::TRAVERSE };

    /// Listing: read and traverse a directory (and every directory below, recursively).
    pub fn list(recursive: bool) -> Checks {
        Checks { target: Some(READ | EXECUTE), subtree: recursive.then_some(READ | EXECUTE), ..Checks::TRAVERSE }
    }

    /// Deleting: [`Checks::REMOVE`] plus, recursively, everything on every directory below.
    pub fn delete(recursive: bool) -> Checks {
        Checks { subtree: recursive.then_some(READ | WRITE | EXECUTE), ..Checks::REMOVE }
    }
}

/// The denial of `want` on `path` for `caller`, as HDFS words it.
pub fn denied(caller: &Caller, want: &str, path: &str, ownership: &Ownership, is_directory: bool) -> FsError {
    FsError::PermissionDenied {
        path: path.to_string(),
        reason: format!(
            "user={}, access={want}, inode owned by {}:{} with mode {}",
            caller.user,
            ownership.owner,
            ownership.group,
            mode_string(is_directory, ownership.mode)
        ),
    }
}

/// The `rwx` string of a 3-bit class.
pub fn bits_string(bits: u32) -> String {
    let flag = |bit: u32, c: char| if bits & bit != 0 { c } else { '-' };
    [flag(READ, 'r'), flag(WRITE, 'w'), flag(EXECUTE, 'x')].iter().collect()
}

/// `ls -l` style: `drwxr-xr-t` (type, then owner, group, other; sticky shown as `t`/`T`).
pub fn mode_string(is_directory: bool, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(if is_directory { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        s.push_str(&bits_string((mode >> shift) & 7));
    }
    if mode & STICKY_BIT != 0 {
        let last = if mode & EXECUTE != 0 { 't' } else { 'T' };
        s.pop();
        s.push(last);
    }
    s
}

/// The mode of a directory made on the way to an inode of `mode` (a file's parents made by
/// `create -p`, directories loaded from under-storage): `mode` plus execute wherever it
/// reads, and write and execute for the owner, so whoever made it can use it (HDFS adds
/// `u+wx` the same way).
pub fn directory_mode(mode: u32) -> u32 {
    mode | 0o300 | ((mode & 0o444) >> 2)
}

/// Applies `umask` to a requested mode (permission bits only; the sticky bit stays).
pub fn apply_umask(mode: u32, umask: u32) -> u32 {
    (mode & MODE_BITS) & !(umask & 0o777)
}

/// Parses an octal umask such as `022`.
pub fn parse_umask(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text.trim(), 8) {
        Ok(v) if v <= 0o777 && !text.trim().is_empty() => Ok(v),
        _ => Err(format!("{text:?} is not an octal umask between 000 and 777")),
    }
}

/// Applies a chmod mode argument to `current`: octal (`755`, `1777`) or symbolic
/// (`u+x,go-w`, `a=r`, `+t`, `u=rwX`; `X` is execute for directories or for inodes some
/// class may already execute). Errors name what could not be read.
pub fn change_mode(spec: &str, current: u32, is_directory: bool) -> Result<u32, String> {
    let spec = spec.trim();
    if !spec.is_empty() && spec.chars().all(|c| c.is_ascii_digit()) {
        return match u32::from_str_radix(spec, 8) {
            Ok(v) if spec.len() <= 4 && v <= MODE_BITS => Ok(v),
            _ => Err(format!("{spec:?} is not an octal mode (at most 4 digits 0-7)")),
        };
    }
    let mut mode = current & MODE_BITS;
    for clause in spec.split(',') {
        let who_len = clause.find(['+', '-', '=']).ok_or_else(|| format!("{clause:?}: expected [ugoa]*[+-=][rwxXt]*"))?;
        let mut who = 0u32;
        for c in clause[..who_len].chars() {
            who |= match c {
                'u' => 0o700,
                'g' => 0o070,
                'o' => 0o007,
                'a' => 0o777,
                _ => return Err(format!("{clause:?}: {c:?} is not one of u, g, o, a")),
            };
        }
        if who == 0 {
            who = 0o777;
        }
        let op = clause[who_len..].chars().next().unwrap_or('+');
        let mut perms = 0u32;
        let mut sticky = false;
        for c in clause[who_len + 1..].chars() {
            perms |= match c {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                'X' if is_directory || mode & 0o111 != 0 => 0o111,
                'X' => 0,
                't' => {
                    sticky = true;
                    0
                }
                _ => return Err(format!("{clause:?}: {c:?} is not one of r, w, x, X, t")),
            };
        }
        let bits = perms & who;
        let sticky_bit = if sticky { STICKY_BIT } else { 0 };
        mode = match op {
            '+' => mode | bits | sticky_bit,
            '-' => mode & !bits & !sticky_bit,
            _ => (mode & !who) | bits | sticky_bit,
        };
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(owner: &str, group: &str, mode: u32) -> Ownership {
        Ownership { owner: owner.into(), group: group.into(), mode }
    }

    fn alice() -> Caller {
        Caller { user: "alice".into(), groups: vec!["staff".into(), "dev".into()], superuser: false }
    }

    #[test]
    fn the_class_is_owner_then_group_then_other() {
        let a = alice();
        assert_eq!(class_bits(&own("alice", "x", 0o740), &a), 7);
        assert_eq!(class_bits(&own("bob", "dev", 0o740), &a), 4);
        assert_eq!(class_bits(&own("bob", "ops", 0o741), &a), 1);
        // The owner's class applies even when it grants less than the group's (POSIX).
        assert_eq!(class_bits(&own("alice", "dev", 0o070), &a), 0);
        assert!(!permits(&own("alice", "dev", 0o070), &a, READ));
        // No one is in the empty group, and an empty owner is no one.
        assert_eq!(class_bits(&own("", "", 0o770), &Caller { user: String::new(), groups: vec![String::new()], superuser: false }), 0);
        assert!(permits(&own("bob", "ops", 0o000), &Caller::superuser("root"), READ | WRITE | EXECUTE));
    }

    #[test]
    fn modes_print_like_ls() {
        assert_eq!(mode_string(true, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(false, 0o640), "-rw-r-----");
        assert_eq!(mode_string(true, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(true, 0o1776), "drwxrwxrwT");
    }

    #[test]
    fn directories_made_on_the_way_can_be_entered() {
        assert_eq!(directory_mode(0o644), 0o755);
        assert_eq!(directory_mode(0o600), 0o700);
        assert_eq!(directory_mode(0o400), 0o700);
        assert_eq!(directory_mode(0o1755), 0o1755);
    }

    #[test]
    fn umask_clears_permission_bits() {
        assert_eq!(apply_umask(0o666, 0o022), 0o644);
        assert_eq!(apply_umask(0o1777, 0o027), 0o1750);
        assert_eq!(parse_umask("022"), Ok(0o22));
        assert!(parse_umask("999").is_err());
        assert!(parse_umask("1022").is_err());
        assert!(parse_umask("").is_err());
    }

    #[test]
    fn chmod_reads_octal_and_symbolic_modes() {
        assert_eq!(change_mode("755", 0o600, false), Ok(0o755));
        assert_eq!(change_mode("1777", 0o755, true), Ok(0o1777));
        assert_eq!(change_mode("u+x", 0o644, false), Ok(0o744));
        assert_eq!(change_mode("go-w", 0o666, false), Ok(0o644));
        assert_eq!(change_mode("a=r", 0o777, false), Ok(0o444));
        assert_eq!(change_mode("u=rwx,g=rx,o=", 0o000, false), Ok(0o750));
        assert_eq!(change_mode("+x", 0o644, false), Ok(0o755));
        assert_eq!(change_mode("+t", 0o777, true), Ok(0o1777));
        assert_eq!(change_mode("-t", 0o1777, true), Ok(0o777));
        assert_eq!(change_mode("a+X", 0o644, true), Ok(0o755));
        assert_eq!(change_mode("a+X", 0o644, false), Ok(0o644));
        assert_eq!(change_mode("a+X", 0o744, false), Ok(0o755));
        for bad in ["8", "77777", "u+q", "z+r", "rwx", ""] {
            assert!(change_mode(bad, 0o644, false).is_err(), "{bad:?} accepted");
        }
    }
}
