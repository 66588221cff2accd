//! The paged walk against a brute-force listing (every key sorted, then filtered) on
//! generated trees whose names collide in the ways key order and name order disagree.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// A namespace in memory that hands out `PAGE` children at a time.
struct Tree {
    entries: BTreeMap<String, FileInfo>,
    /// Children handed out so far.
    served: std::sync::atomic::AtomicUsize,
    /// Statuses looked up so far.
    lookups: std::sync::atomic::AtomicUsize,
}

const PAGE: usize = 3;

fn parent_of(path: &str) -> &str {
    &path[..path.rfind('/').unwrap_or(0)]
}

impl Tree {
    /// A tree under `/b` from relative paths; a path ending in `/` is a directory. Parents
    /// are made as directories; a name used both ways stays what it was made first.
    fn new(paths: &[String]) -> Tree {
        let mut entries: BTreeMap<String, FileInfo> = BTreeMap::new();
        let dir = |path: &str| FileInfo { path: path.into(), name: path.rsplit('/').next().unwrap_or("").into(), is_directory: true, ..FileInfo::default() };
        entries.insert("/b".into(), dir("/b"));
        for p in paths {
            let (rel, is_dir) = match p.strip_suffix('/') {
                Some(d) => (d, true),
                None => (p.as_str(), false),
            };
            let mut path = String::from("/b");
            let parts: Vec<&str> = rel.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                path = format!("{path}/{part}");
                let last = i + 1 == parts.len();
                if entries.get(&path).is_some_and(|e| !e.is_directory) {
                    break;
                }
                let info = if last && !is_dir {
                    FileInfo { path: path.clone(), name: part.to_string(), complete: true, length: 1, ..FileInfo::default() }
                } else {
                    dir(&path)
                };
                entries.entry(path.clone()).or_insert(info);
            }
        }
        let counts: Vec<(String, u64)> = entries.keys().map(|p| (p.clone(), entries.keys().filter(|c| parent_of(c) == p && *c != p).count() as u64)).collect();
        for (p, n) in counts {
            if let Some(e) = entries.get_mut(&p) {
                e.child_count = n;
            }
        }
        Tree { entries, served: Default::default(), lookups: Default::default() }
    }

    fn children(&self, dir: &str) -> Vec<FileInfo> {
        let mut v: Vec<FileInfo> = self.entries.values().filter(|e| e.path != dir && parent_of(&e.path) == dir).cloned().collect();
        v.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        v
    }

    /// Every key of the bucket as the gateway lists it, the brute-force way.
    fn reference(&self, prefix: &str, delimiter: Option<&str>, after: &str, max_keys: usize) -> (Vec<Listed>, bool) {
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut listed: BTreeMap<String, Option<FileInfo>> = BTreeMap::new();
        for e in self.entries.values().filter(|e| e.path != "/b") {
            let rel = &e.path["/b/".len()..];
            let key = if e.is_directory {
                if e.child_count > 0 {
                    continue;
                }
                format!("{rel}/")
            } else {
                rel.to_string()
            };
            if !key.starts_with(prefix) {
                continue;
            }
            match delimiter.and_then(|d| key[prefix.len()..].find(d).map(|i| key[..prefix.len() + i + d.len()].to_string())) {
                Some(common) => {
                    listed.insert(common, None);
                }
                None => {
                    let info = if e.is_directory { FileInfo { length: 0, ..e.clone() } } else { e.clone() };
                    listed.insert(key, Some(info));
                }
            }
        }
        // A directory `d/` holding keys is also the common prefix of its keys when `/`
        // delimits: the brute force lists it once, as the walk does.
        let mut page: Vec<Listed> = listed.into_iter().filter(|(k, _)| k.as_str() > after).map(|(key, info)| Listed { key, info }).collect();
        let truncated = page.len() > max_keys;
        page.truncate(max_keys);
        (page, truncated)
    }
}

#[async_trait::async_trait]
impl DirectoryPages for Tree {
    async fn page(&self, dir: &str, start_after: Option<&str>) -> Result<(Vec<FileInfo>, bool), FsError> {
        let all: Vec<FileInfo> = self.children(dir).into_iter().filter(|c| start_after.is_none_or(|s| c.name.as_bytes() > s.as_bytes())).collect();
        let more = all.len() > PAGE;
        let page: Vec<FileInfo> = all.into_iter().take(PAGE).collect();
        self.served.fetch_add(page.len(), std::sync::atomic::Ordering::SeqCst);
        Ok((page, more))
    }

    async fn status(&self, path: &str) -> Result<FileInfo, FsError> {
        self.lookups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entries.get(path).cloned().ok_or_else(|| FsError::NotFound { path: path.into() })
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
}

fn keys(page: &[Listed]) -> Vec<&str> {
    page.iter().map(|l| l.key.as_str()).collect()
}

/// Pages through the whole listing, each page resuming after the last key of the one
/// before, as S3 clients do with continuation tokens.
fn all_pages(tree: &Tree, prefix: &str, delimiter: Option<&str>, max_keys: usize) -> Vec<Listed> {
    let mut all: Vec<Listed> = Vec::new();
    loop {
        let after = all.last().map(|l| l.key.clone()).unwrap_or_default();
        let request = ListRequest { root: "/b", prefix, delimiter, after: &after, max_keys };
        let (page, truncated) = block_on(list_page(tree, request)).expect("list");
        let expected = tree.reference(prefix, delimiter, &after, max_keys);
        assert_eq!((keys(&page), truncated), (keys(&expected.0), expected.1), "prefix {prefix:?} delimiter {delimiter:?} after {after:?}");
        assert_eq!(page, expected.0, "the same statuses");
        all.extend(page);
        if !truncated {
            return all;
        }
        assert!(all.len() < 10_000, "a listing that never ends");
    }
}

#[test]
fn key_order_differs_from_name_order_where_a_sibling_extends_a_directory_name() {
    let tree = Tree::new(&["d/x".into(), "d-1".into(), "d.zip".into(), "d0".into(), "d/y/z".into(), "e/".into(), "c".into()]);
    let listed = all_pages(&tree, "", None, 2);
    assert_eq!(keys(&listed), vec!["c", "d-1", "d.zip", "d/x", "d/y/z", "d0", "e/"]);
    let rolled = all_pages(&tree, "", Some("/"), 1);
    assert_eq!(keys(&rolled), vec!["c", "d-1", "d.zip", "d/", "d0", "e/"]);
    let dashed = all_pages(&tree, "d", Some("-"), 1);
    assert_eq!(keys(&dashed), vec!["d-", "d.zip", "d/x", "d/y/z", "d0"]);
}

#[test]
fn a_narrow_prefix_reads_only_the_children_it_names() {
    // 40 siblings, 10 of them with the prefix: the walk starts at them and stops past them.
    let mut paths: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
    paths.push("j".into());
    let tree = Tree::new(&paths);
    let request = ListRequest { root: "/b", prefix: "k1", delimiter: None, after: "", max_keys: 100 };
    let (page, truncated) = block_on(list_page(&tree, request)).unwrap();
    assert_eq!(keys(&page), (10..20).map(|i| format!("k{i}")).collect::<Vec<_>>().iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!truncated);
    let served = tree.served.load(std::sync::atomic::Ordering::SeqCst);
    assert!(served <= 10 + PAGE, "read {served} children for 10 keys");
    // Resuming in the middle reads from there.
    tree.served.store(0, std::sync::atomic::Ordering::SeqCst);
    let request = ListRequest { root: "/b", prefix: "", delimiter: None, after: "k30", max_keys: 2 };
    let (page, truncated) = block_on(list_page(&tree, request)).unwrap();
    assert_eq!((keys(&page), truncated), (vec!["k31", "k32"], true));
    assert!(tree.served.load(std::sync::atomic::Ordering::SeqCst) <= 2 * PAGE, "a resumed page reads from where it resumes");
}

#[test]
fn a_resume_key_full_of_low_bytes_costs_a_bounded_number_of_lookups() {
    // `d-` ... `d-----`: directories that sort after `d------x` though named below it.
    let mut paths: Vec<String> = (1..=5).map(|n| format!("d{}/k", "-".repeat(n))).collect();
    paths.extend(["d------x".to_string(), "e".to_string()]);
    let tree = Tree::new(&paths);
    for after in ["d------x", "d--x"] {
        tree.lookups.store(0, std::sync::atomic::Ordering::SeqCst);
        let request = ListRequest { root: "/b", prefix: "", delimiter: None, after, max_keys: 100 };
        let (page, _) = block_on(list_page(&tree, request)).unwrap();
        assert_eq!(page, tree.reference("", None, after, 100).0, "after {after}");
        assert!(tree.lookups.load(std::sync::atomic::Ordering::SeqCst) <= MAX_SHADOW_LOOKUPS);
    }
}

#[test]
fn start_positions_are_valid_names_at_or_just_below_the_first_wanted_one() {
    assert_eq!(start_after_for("k05", false).as_deref(), Some("k04\u{10FFFF}"), "past k04 and the names starting with it");
    assert_eq!(start_after_for("k0", false).as_deref(), Some("k.\u{10FFFF}"), "names hold no '/': '0' steps down to '.'");
    let long = "n".repeat(255);
    assert_eq!(start_after_for(&long, false), Some(format!("{}m", "n".repeat(254))), "no room for the suffix in a name of 255 bytes");
    assert_eq!(start_after_for("a-", true).as_deref(), Some("a-\u{10FFFF}"), "past every name starting with a-");
    assert_eq!(start_after_for("a ", false).as_deref(), Some("a"), "one below ' ' is a control character: the shorter name");
    assert_eq!(start_after_for("b", false).as_deref(), Some("a\u{10FFFF}"));
    assert_eq!(start_after_for("\0", false), None);
    assert_eq!(start_after_for(&"x".repeat(300), false), Some("x".repeat(255)), "no name is longer: after the first 255 bytes");
    assert_eq!(start_after_for("ab\u{7}c", true).as_deref(), Some("ab"), "no name holds a control character");
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just('a'), Just('b'), Just('-'), Just('.'), Just('0')], 1..3).prop_map(|c| c.into_iter().collect())
}

fn tree_paths() -> impl Strategy<Value = Vec<String>> {
    let path = (proptest::collection::vec(name(), 1..4), any::<bool>()).prop_map(|(parts, dir)| parts.join("/") + if dir { "/" } else { "" });
    proptest::collection::vec(path, 1..25).prop_map(|v| v.into_iter().filter(|p| p.split('/').all(|n| n != "." && n != "..")).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_page_equals_the_brute_force_listing(
        paths in tree_paths(),
        prefix in prop_oneof![Just(String::new()), name(), (name(), name()).prop_map(|(a, b)| format!("{a}/{b}")), name().prop_map(|a| format!("{a}/"))],
        delimiter in prop_oneof![Just(None), Just(Some("/")), Just(Some("-")), Just(Some("a/"))],
        max_keys in 1usize..5,
        after in prop_oneof![Just(String::new()), name(), (name(), name()).prop_map(|(a, b)| format!("{a}/{b}")), name().prop_map(|a| format!("{a}-"))],
    ) {
        let tree = Tree::new(&paths);
        all_pages(&tree, &prefix, delimiter, max_keys);
        // A page from any start key, as `StartAfter` gives.
        let request = ListRequest { root: "/b", prefix: &prefix, delimiter, after: &after, max_keys };
        let (page, truncated) = block_on(list_page(&tree, request)).expect("list");
        let expected = tree.reference(&prefix, delimiter, &after, max_keys);
        prop_assert_eq!((keys(&page), truncated), (keys(&expected.0), expected.1));
    }
}
