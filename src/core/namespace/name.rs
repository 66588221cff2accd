//! Inode names (inline up to 23 bytes, compared a word at a time) and the interned owner
//! and group names inodes share.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::core::permission::Ownership;
use crate::proto::InodeOwnership;

/// An inode's name, also its key in the parent directory. Up to 23 bytes it lives inside
/// the value (no allocation; a directory search compares it without chasing a pointer),
/// longer ones are shared between the inode and its parent's key. Ordered byte by byte as
/// `str` is, but compared inline: a call to `memcmp` per comparison was a fifth of replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(smol_str::SmolStr);

impl Name {
    /// `name` as an inode name.
    pub fn new(name: &str) -> Name {
        Name(smol_str::SmolStr::new(name))
    }
}

/// The borrowed form of [`Name`], to look a `&str` up without allocating.
#[derive(Debug, Eq)]
#[repr(transparent)]
pub struct NameKey(str);

impl PartialEq for NameKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.cmp(other).is_eq()
    }
}

impl NameKey {
    /// `name` as a key.
    pub fn new(name: &str) -> &NameKey {
        // SAFETY: NameKey is a repr(transparent) wrapper of str, so the two references have
        // the same layout and the same lifetime.
        unsafe { &*(name as *const str as *const NameKey) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for NameKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        let common = a.len().min(b.len());
        let (mut a_words, mut b_words) = (a[..common].chunks_exact(8), b[..common].chunks_exact(8));
        for (x, y) in (&mut a_words).zip(&mut b_words) {
            let (x, y) = (u64::from_be_bytes(x.try_into().unwrap_or_default()), u64::from_be_bytes(y.try_into().unwrap_or_default()));
            if x != y {
                return x.cmp(&y);
            }
        }
        // Both remainders have the same length (under 8): compare them as one padded word.
        let padded = |rest: &[u8]| {
            let word = rest.iter().fold(0u64, |word, &byte| word << 8 | u64::from(byte));
            word.checked_shl(8 * (8 - rest.len() as u32)).unwrap_or(0)
        };
        padded(a_words.remainder()).cmp(&padded(b_words.remainder())).then(a.len().cmp(&b.len()))
    }
}

impl PartialOrd for NameKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        NameKey::new(self).cmp(NameKey::new(other))
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::borrow::Borrow<NameKey> for Name {
    fn borrow(&self) -> &NameKey {
        NameKey::new(self)
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// Owner and group names, each stored once and shared by every inode that has it. Derived
/// state: not checkpointed, never compared (two namespaces with the same inodes are equal
/// whatever names each has interned). Pruned of unused names as it doubles, so it holds at
/// most about twice the names in use.
#[derive(Clone, Debug, Default)]
pub(super) struct Interner {
    names: BTreeSet<Arc<str>>,
    /// Size after the last prune; the next prune comes at twice this.
    pruned_at: usize,
    /// The owner and group interned last: runs of entries mostly share them.
    last: Option<(Arc<str>, Arc<str>)>,
}

impl PartialEq for Interner {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Interner {
    /// Names below this many are never pruned.
    const PRUNE_FLOOR: usize = 1024;

    pub(super) fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.get(name) {
            return known.clone();
        }
        if self.names.len() >= (2 * self.pruned_at).max(Self::PRUNE_FLOOR) {
            // Only this set holds a name no inode has any more.
            self.names.retain(|n| Arc::strong_count(n) > 1);
            self.pruned_at = self.names.len();
        }
        let name: Arc<str> = Arc::from(name);
        self.names.insert(name.clone());
        name
    }

    pub(super) fn ownership(&mut self, o: &InodeOwnership) -> Ownership {
        let (owner, group) = match &self.last {
            Some((owner, group)) if NameKey::new(owner) == NameKey::new(&o.owner) && NameKey::new(group) == NameKey::new(&o.group) => {
                (owner.clone(), group.clone())
            }
            _ => {
                let pair = (self.intern(&o.owner), self.intern(&o.group));
                self.last = Some(pair.clone());
                pair
            }
        };
        Ownership { owner, group, mode: o.mode }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Directories list children in `str` order: the inline comparison must agree with
        /// it for any two names (shared prefixes, word boundaries, multi-byte characters).
        #[test]
        fn name_keys_order_as_str_does(a in "[a-c\u{e9}\u{1f600}]{0,20}", b in "[a-c\u{e9}\u{1f600}]{0,20}") {
            proptest::prop_assert_eq!(NameKey::new(&a).cmp(NameKey::new(&b)), a.as_str().cmp(b.as_str()));
            proptest::prop_assert_eq!(Name::new(&a).cmp(&Name::new(&b)), a.cmp(&b));
        }
    }

    #[test]
    fn owner_names_are_shared_and_unused_ones_pruned() {
        let mut names = Interner::default();
        let first = names.intern("alice");
        assert!(Arc::ptr_eq(&first, &names.intern("alice")), "one allocation per name");
        drop(first);
        for i in 0..Interner::PRUNE_FLOOR {
            names.intern(&format!("user{i}"));
        }
        let kept = names.intern("kept");
        // Every name above went unused, so the set was pruned as it reached the floor.
        assert!(names.names.len() <= 2, "{} names left", names.names.len());
        assert!(names.names.contains(&kept));
    }
}
