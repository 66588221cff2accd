//! The contract every [`UnderFs`] backend must meet; run against each implementation.

use super::UnderFs;

/// Runs the whole contract against an empty under-storage; panics on the first breach.
pub async fn run(ufs: &dyn UnderFs) {
    assert_eq!(ufs.list("d").await.unwrap(), Vec::<String>::new(), "missing dir lists empty");

    let mut w = ufs.create("d/a").await.unwrap();
    w.write(b"hello ").await.unwrap();
    w.sync().await.unwrap();
    w.write(b"world").await.unwrap();
    w.close().await.unwrap();
    assert_eq!(ufs.read("d/a").await.unwrap(), b"hello world");
    assert_eq!(ufs.read_range("d/a", 6, 5).await.unwrap(), b"world");
    assert_eq!(ufs.read_range("d/a", 6, 100).await.unwrap(), b"world", "a range past the end is cut");
    assert_eq!(ufs.read_range("d/a", 50, 5).await.unwrap(), b"", "a range after the end is empty");
    let listed = ufs.list_status("d").await.unwrap();
    assert_eq!(listed, vec![super::UnderStorageEntry { name: "a".into(), is_directory: false, length: 11 }], "written in two syncs");
    assert_eq!(ufs.file_length("d/a").await.unwrap(), Some(11), "written in two syncs");
    assert_eq!(ufs.file_length("d/missing").await.unwrap(), None);
    assert_eq!(ufs.file_length("d").await.unwrap(), None, "a directory is not a file");
    assert_eq!(ufs.file_length("nowhere/x").await.unwrap(), None);

    let err = ufs.create("d/a").await.err().expect("create over an existing file must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);

    ufs.write_atomic("d/b", b"atomic").await.unwrap();
    ufs.write_atomic("d/b", b"replaced").await.unwrap();
    assert_eq!(ufs.read("d/b").await.unwrap(), b"replaced");
    assert_eq!(ufs.list("d").await.unwrap(), vec!["a".to_string(), "b".to_string()]);

    assert!(ufs.rename("d/a", "d/b").await.is_err(), "rename onto an existing file must fail");
    ufs.rename("d/a", "d/c").await.unwrap();
    assert_eq!(ufs.read("d/c").await.unwrap(), b"hello world");
    assert_eq!(ufs.read_range("d/c", 0, 5).await.unwrap(), b"hello");
    assert!(ufs.read("d/a").await.is_err());

    ufs.delete("d/c").await.unwrap();
    ufs.delete("d/c").await.unwrap();
    assert_eq!(ufs.list("d").await.unwrap(), vec!["b".to_string()]);

    ufs.mkdirs("e/f").await.unwrap();
    assert_eq!(ufs.list("e").await.unwrap(), vec!["f".to_string()]);
    ufs.write_atomic("e/g", b"12345").await.unwrap();
    let status = ufs.list_status("e").await.unwrap();
    let entry = |name: &str, is_directory, length| super::UnderStorageEntry { name: name.into(), is_directory, length };
    assert_eq!(status, vec![entry("f", true, 0), entry("g", false, 5)]);
    assert_eq!(ufs.list_status("missing").await.unwrap(), Vec::new());
    ufs.delete("e/g").await.unwrap();
    assert!(ufs.delete_empty_dir("e").await.is_err(), "a directory with a subdirectory is not empty");
    ufs.delete_empty_dir("e/f").await.unwrap();
    ufs.delete_empty_dir("e/f").await.unwrap();
    assert_eq!(ufs.list("e").await.unwrap(), Vec::<String>::new(), "an empty directory can be removed");
    ufs.mkdirs("t/u/v").await.unwrap();
    ufs.write_atomic("t/u/w", b"1").await.unwrap();
    ufs.write_atomic("t/x", b"2").await.unwrap();
    super::remove_tree(ufs, "t", 100).await.unwrap();
    assert_eq!(ufs.list("t").await.unwrap(), Vec::<String>::new(), "a tree is removed whole");

    // A sealed file shows everything its still-open writer synced (a new journal leader
    // reads its predecessor's open segment this way); sealing twice or a missing file is fine.
    let mut open = ufs.create("s/open").await.unwrap();
    open.write(b"synced").await.unwrap();
    open.sync().await.unwrap();
    open.write(b" never synced").await.unwrap();
    ufs.seal("s/open").await.unwrap();
    ufs.seal("s/open").await.unwrap();
    let sealed = ufs.read("s/open").await.unwrap();
    assert!(sealed.starts_with(b"synced"), "sealed file lost synced bytes: {sealed:?}");
    drop(open);
    ufs.seal("s/missing").await.unwrap();
    let top = ufs.list("").await.unwrap();
    assert!(top.starts_with(&["d".to_string()]) && top.contains(&"s".to_string()) && !top.contains(&"t".to_string()), "{top:?}");
}
