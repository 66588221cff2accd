//! File data in the under-storage with real master and worker processes (local
//! under-storage `<home>/underFSStorage`): write types, reads of blocks no worker holds,
//! read types, `persist`, `free`, `load`, and deletes and renames mirrored there.

mod common;

use common::{content, eventually, Cluster};
use tachyon::client::{CreateOptions, FileSystem, ReadType, WriteType};
use tachyon::error::FsError;

const BLOCK: u64 = 1 << 20;

fn with(write_type: WriteType) -> CreateOptions {
    CreateOptions { block_size: Some(BLOCK), recursive: true, write_type: Some(write_type) }
}

async fn started() -> Cluster {
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    c
}

/// The under-storage copy of `path`, read straight from the folder.
fn ufs_copy(c: &Cluster, path: &str) -> Option<Vec<u8>> {
    std::fs::read(c.path().join("underFSStorage").join(path.trim_start_matches('/'))).ok()
}

async fn state(fs: &FileSystem, path: &str) -> (String, u32) {
    let f = fs.get_status(path).await.unwrap();
    (f.persistence_state, f.in_memory_percentage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_write_type_puts_the_data_where_it_says_and_every_file_reads_back() {
    let c = started().await;
    let fs = c.client();
    let data = content((2 * BLOCK + 4321) as usize, 7);
    for (path, wt) in [("/w/must", WriteType::MustCache), ("/w/cache_through", WriteType::CacheThrough), ("/w/through", WriteType::Through)] {
        fs.write_file(path, &data, with(wt)).await.unwrap();
    }
    assert_eq!(state(&fs, "/w/must").await, ("NOT_PERSISTED".into(), 100));
    assert_eq!(ufs_copy(&c, "/w/must"), None, "MUST_CACHE writes nothing to the under-storage");
    assert_eq!(state(&fs, "/w/cache_through").await, ("PERSISTED".into(), 100));
    assert_eq!(ufs_copy(&c, "/w/cache_through").as_ref(), Some(&data));
    assert_eq!(state(&fs, "/w/through").await, ("PERSISTED".into(), 0), "THROUGH caches nothing");
    assert_eq!(ufs_copy(&c, "/w/through").as_ref(), Some(&data));
    // No temporary upload files are left behind.
    let names: Vec<String> = std::fs::read_dir(c.path().join("underFSStorage/w")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // THROUGH data is read from the under-storage and cached on the way (CACHE_PROMOTE).
    assert_eq!(fs.read_file("/w/through").await.unwrap(), data);
    assert!(eventually(|| async { state(&fs, "/w/through").await.1 == 100 }).await, "the first read cached every block");

    // ASYNC_THROUGH: cached now, persisted by the leader in the background.
    fs.write_file("/w/async", &data, with(WriteType::AsyncThrough)).await.unwrap();
    assert_eq!(fs.read_file("/w/async").await.unwrap(), data);
    assert!(eventually(|| async { state(&fs, "/w/async").await.0 == "PERSISTED" }).await, "background persistence finished");
    assert_eq!(ufs_copy(&c, "/w/async").as_ref(), Some(&data));
    let stat = c.run_ok(&["fs", "stat", "/w/async"]);
    assert!(stat.contains("persistence state:  PERSISTED"), "{stat}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_persist_and_load_move_data_between_memory_and_under_storage() {
    let c = started().await;
    let fs = c.client();
    let data = content((BLOCK + 99) as usize, 3);
    fs.write_file("/d/f", &data, with(WriteType::MustCache)).await.unwrap();
    // Unpersisted data never leaves memory.
    assert!(matches!(fs.free("/d/f", false).await, Err(FsError::NotPersisted { .. })));
    let refused = c.run(&["fs", "free", "/d/f"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("/d/f"), "{refused:?}");

    let out = c.run_ok(&["fs", "persist", "/d/f"]);
    assert!(out.contains("persisted /d/f"), "{out}");
    assert_eq!(ufs_copy(&c, "/d/f").as_ref(), Some(&data));
    assert_eq!(state(&fs, "/d/f").await.0, "PERSISTED");

    let out = c.run_ok(&["fs", "free", "-R", "/d"]);
    assert!(out.contains("freed"), "{out}");
    assert!(eventually(|| async { state(&fs, "/d/f").await.1 == 0 }).await, "freed blocks leave memory");
    let stat = c.run_ok(&["fs", "stat", "/d/f"]);
    assert!(stat.contains("under-storage only"), "{stat}");

    // NO_CACHE reads from the under-storage and leaves memory alone.
    let mut options = fs.options().clone();
    options.read_type = ReadType::NoCache;
    let no_cache = FileSystem::with_under_fs(options, c.coordinator(), c.under_fs());
    assert_eq!(no_cache.read_file("/d/f").await.unwrap(), data);
    assert_eq!(state(&fs, "/d/f").await.1, 0, "NO_CACHE cached nothing");

    let out = c.run_ok(&["fs", "load", "/d/f"]);
    assert!(out.contains(&format!("{} bytes read from the under-storage", data.len())), "{out}");
    assert_eq!(state(&fs, "/d/f").await.1, 100);
    assert_eq!(fs.read_file("/d/f").await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_and_deletes_of_persisted_files_are_mirrored_in_under_storage() {
    let c = started().await;
    let fs = c.client();
    fs.write_file("/a/x/one", b"one", with(WriteType::CacheThrough)).await.unwrap();
    fs.write_file("/a/x/two", b"two", with(WriteType::Through)).await.unwrap();
    fs.write_file("/a/x/mem", b"mem", with(WriteType::MustCache)).await.unwrap();
    fs.rename("/a/x", "/b").await.unwrap();
    assert_eq!(ufs_copy(&c, "/b/one").as_deref(), Some(&b"one"[..]));
    assert_eq!(ufs_copy(&c, "/b/two").as_deref(), Some(&b"two"[..]));
    assert_eq!(ufs_copy(&c, "/a/x/one"), None);
    let ufs_root = c.path().join("underFSStorage");
    assert!(!ufs_root.join("a/x").exists(), "the renamed-away directory is gone from the under-storage");
    assert!(ufs_root.join("a").exists(), "its parent stays: it is still a tachyon directory");
    assert_eq!(fs.read_file("/b/two").await.unwrap(), b"two", "a renamed THROUGH file reads from its new place");
    std::fs::create_dir_all(ufs_root.join("b/sub")).unwrap();
    std::fs::write(ufs_root.join("b/sub/unknown"), b"not tachyon's").unwrap();
    fs.create_directory("/b/empty/deeper", true, false).await.unwrap();
    std::fs::create_dir_all(ufs_root.join("b/empty/deeper")).unwrap();
    fs.delete("/b", true).await.unwrap();
    assert_eq!(ufs_copy(&c, "/b/one"), None);
    assert_eq!(ufs_copy(&c, "/b/two"), None);
    assert!(!ufs_root.join("b/empty").exists(), "emptied directories are removed");
    assert_eq!(std::fs::read(ufs_root.join("b/sub/unknown")).unwrap(), b"not tachyon's", "but never a file tachyon did not know");

    // A file that already exists in the under-storage is never overwritten.
    std::fs::create_dir_all(c.path().join("underFSStorage/taken")).unwrap();
    std::fs::write(c.path().join("underFSStorage/taken/f"), b"someone else's").unwrap();
    let err = fs.write_file("/taken/f", b"mine", with(WriteType::CacheThrough)).await.unwrap_err();
    assert!(err.to_string().contains("taken/f"), "{err}");
    assert_eq!(ufs_copy(&c, "/taken/f").as_deref(), Some(&b"someone else's"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_worker_loses_only_unpersisted_data() {
    let mut c = started().await;
    let fs = c.client();
    // Three blocks: a read appends each block after the ones before it.
    let data = content(2 * BLOCK as usize + 3000, 11);
    fs.write_file("/l/persisted", &data, with(WriteType::CacheThrough)).await.unwrap();
    fs.write_file("/l/memory_only", &data, with(WriteType::MustCache)).await.unwrap();
    c.kill_worker(0);
    // Before the master notices, the blocks still name the dead worker: each read from it
    // fails, and the block comes whole from the under-storage, after the blocks before it.
    assert_eq!(fs.read_file("/l/persisted").await.unwrap(), data, "read from the under-storage past a dead location");
    // The master declares the worker lost (1.5 s in these clusters); its locations vanish.
    assert!(eventually(|| async { fs.workers().await.is_ok_and(|w| w.iter().all(|w| w.lost)) }).await);
    assert_eq!(fs.read_file("/l/persisted").await.unwrap(), data, "read from the under-storage");
    assert!(matches!(fs.read_file("/l/memory_only").await, Err(FsError::BlockLost { .. })), "never silently empty data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_only_in_under_storage_appear_in_listings_and_are_cached_on_first_read() {
    let c = started().await;
    let fs = c.client();
    let ufs = c.path().join("underFSStorage");
    std::fs::create_dir_all(ufs.join("ext/sub")).unwrap();
    let data = content((BLOCK + 500) as usize, 21);
    std::fs::write(ufs.join("ext/data.bin"), &data).unwrap();
    std::fs::write(ufs.join("ext/sub/deep.txt"), b"deep").unwrap();
    // A client's upload in progress is not a file.
    std::fs::write(ufs.join("ext/.half.tachyon-0000000000000001-9.tmp"), b"partial").unwrap();

    let listed = c.run_ok(&["fs", "ls", "/ext"]);
    assert!(listed.contains("/ext/data.bin") && listed.contains("/ext/sub"), "{listed}");
    assert!(!listed.contains("tachyon-"), "{listed}");
    let f = fs.get_status("/ext/data.bin").await.unwrap();
    assert_eq!((f.length, f.persistence_state.as_str(), f.in_memory_percentage), (data.len() as u64, "PERSISTED", 0));
    assert_eq!(fs.read_file("/ext/data.bin").await.unwrap(), data);
    assert!(eventually(|| async { state(&fs, "/ext/data.bin").await.1 == 100 }).await, "cached on first read");
    // A path never listed is found by its status lookup.
    assert_eq!(fs.read_file("/ext/sub/deep.txt").await.unwrap(), b"deep");

    // Loaded metadata is journaled: a restarted master still knows the file, and so a
    // later change behind tachyon's back is reported, never served as wrong data.
    std::fs::write(ufs.join("ext/data.bin"), b"shorter").unwrap();
    let out = c.run(&["fs", "checkConsistency", "/ext"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/ext/data.bin") && text.contains("1 inconsistent"), "{text}");
    assert!(!out.status.success(), "inconsistency is a failing exit status");
    fs.free("/ext/data.bin", false).await.unwrap();
    assert!(eventually(|| async { state(&fs, "/ext/data.bin").await.1 == 0 }).await);
    let err = fs.read_file("/ext/data.bin").await.unwrap_err();
    assert!(err.to_string().contains("changed behind tachyon's back"), "{err}");
    let fine = c.run(&["fs", "checkConsistency", "/ext/sub"]);
    assert!(fine.status.success() && String::from_utf8_lossy(&fine.stdout).contains("0 inconsistent"), "{fine:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisting_again_after_a_crash_between_copy_and_journal_accepts_its_own_copy() {
    let c = started().await;
    let fs = c.client();
    let data = content(5000, 4);
    fs.write_file("/p/f", &data, with(WriteType::MustCache)).await.unwrap();
    // What a leader leaves when it dies after copying a file but before journaling it.
    std::fs::create_dir_all(c.path().join("underFSStorage/p")).unwrap();
    std::fs::write(c.path().join("underFSStorage/p/f"), &data).unwrap();
    assert_eq!(fs.persist("/p/f").await.unwrap().persistence_state, "PERSISTED");
    // A different file in the way is never overwritten.
    fs.write_file("/p/g", &data, with(WriteType::MustCache)).await.unwrap();
    std::fs::write(c.path().join("underFSStorage/p/g"), b"other").unwrap();
    assert!(matches!(fs.persist("/p/g").await, Err(FsError::AlreadyExists { .. })));
    assert_eq!(ufs_copy(&c, "/p/g").as_deref(), Some(&b"other"[..]));
    assert_eq!(std::fs::read_dir(c.path().join("underFSStorage/p")).unwrap().count(), 2, "no temporary files left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_files_stay_and_ttls_delete_or_free_once_they_run_out() {
    let mut c = Cluster::start_with_defines(vec!["-Dtachyon.master.ttl.checker.interval.ms=100".into()]);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let data = content((BLOCK + 10) as usize, 11);
    fs.write_file("/pin/f", &data, with(WriteType::CacheThrough)).await.unwrap();
    let out = c.run_ok(&["fs", "pin", "/pin"]);
    assert!(out.contains("'/pin' was successfully pinned"), "{out}");
    assert!(fs.get_status("/pin/f").await.unwrap().pinned, "pinning a directory pins what is below it");
    let refused = fs.free("/pin", true).await;
    assert!(matches!(&refused, Err(FsError::InvalidArgument { reason }) if reason.contains("pinned")), "{refused:?}");
    c.run_ok(&["fs", "unpin", "/pin/f"]);
    assert_eq!(fs.free("/pin/f", false).await.unwrap(), 2, "unpinned persisted data may be freed");

    // DELETE: the file goes from tachyon and the under-storage once its TTL ran out.
    fs.write_file("/ttl/gone", &data, with(WriteType::CacheThrough)).await.unwrap();
    // FREE: the cached blocks go, the file stays readable from the under-storage.
    fs.write_file("/ttl/freed", &data, with(WriteType::CacheThrough)).await.unwrap();
    // FREE of data that is only in memory does nothing (and is retried until persisted).
    fs.write_file("/ttl/kept", &data, with(WriteType::MustCache)).await.unwrap();
    // A TTL removed in time never fires.
    fs.write_file("/ttl/spared", &data, with(WriteType::MustCache)).await.unwrap();
    let bad = c.run(&["fs", "setTtl", "/ttl/gone", "1000", "--action", "explode"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("delete or free"), "{bad:?}");
    let out = c.run_ok(&["fs", "setTtl", "/ttl/gone", "1500"]);
    assert!(out.contains("1500 milliseconds, with expiry action set to DELETE"), "{out}");
    c.run_ok(&["fs", "setTtl", "/ttl/freed", "1500", "--action", "free"]);
    c.run_ok(&["fs", "setTtl", "/ttl/kept", "1500", "--action", "FREE"]);
    c.run_ok(&["fs", "setTtl", "/ttl/spared", "1500"]);
    let stat = c.run_ok(&["fs", "stat", "/ttl/freed"]);
    assert!(stat.contains("ttl:                1500 ms after creation, then FREE"), "{stat}");
    c.run_ok(&["fs", "unsetTtl", "/ttl/spared"]);
    assert!(eventually(|| async { matches!(fs.get_status("/ttl/gone").await, Err(FsError::NotFound { .. })) }).await, "the file with a DELETE TTL was deleted");
    assert_eq!(ufs_copy(&c, "/ttl/gone"), None, "and its under-storage copy with it");
    assert!(eventually(|| async { state(&fs, "/ttl/freed").await.1 == 0 }).await, "FREE dropped the cached blocks");
    let freed = fs.get_status("/ttl/freed").await.unwrap();
    assert_eq!(freed.ttl_ms, None, "a FREE TTL runs once");
    assert_eq!(fs.read_file("/ttl/freed").await.unwrap(), data);
    assert_eq!(state(&fs, "/ttl/kept").await, ("NOT_PERSISTED".into(), 100), "unpersisted data is never freed");
    assert_eq!(fs.read_file("/ttl/spared").await.unwrap(), data);
    assert_eq!(fs.get_status("/ttl/kept").await.unwrap().ttl_ms, Some(1500), "still waiting to be persisted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_evicts_persisted_unpinned_blocks_and_they_read_back_from_under_storage() {
    let mut c = Cluster::start();
    c.start_worker_with(0, &["-Dtachyon.worker.memory.size=4MB"]);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let file = |i: u64| content(BLOCK as usize, 100 + i);
    fs.write_file("/pinned", &file(0), with(WriteType::CacheThrough)).await.unwrap();
    fs.set_pinned("/pinned", true).await.unwrap();
    // Six persisted blocks through a four-block tier: older unpinned ones make room.
    for i in 1..=6 {
        fs.write_file(&format!("/e/{i}"), &file(i), with(WriteType::CacheThrough)).await.unwrap();
    }
    assert_eq!(state(&fs, "/pinned").await.1, 100, "pinned blocks are never evicted");
    assert_eq!(state(&fs, "/e/6").await.1, 100, "the newest write is cached");
    // Data only in memory is never evicted: fill the tier with it, then nothing fits.
    for i in 1..=3 {
        fs.write_file(&format!("/m/{i}"), &file(10 + i), with(WriteType::MustCache)).await.unwrap();
    }
    let full = fs.write_file("/m/4", &file(14), with(WriteType::MustCache)).await;
    assert!(matches!(&full, Err(FsError::OutOfSpace { .. })), "{full:?}");
    for i in 1..=3 {
        assert_eq!(state(&fs, &format!("/m/{i}")).await.1, 100);
        assert_eq!(fs.read_file(&format!("/m/{i}")).await.unwrap(), file(10 + i));
    }
    // Every evicted block reads back from the under-storage (the tier is full, so it stays uncached).
    for i in 1..=6 {
        assert_eq!(fs.read_file(&format!("/e/{i}")).await.unwrap(), file(i), "/e/{i}");
    }
    assert_eq!(fs.read_file("/pinned").await.unwrap(), file(0));
    assert!(eventually(|| async { state(&fs, "/e/6").await.1 == 0 }).await, "the master learned of the evictions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_folder_is_browsed_written_and_renamed_in_place_and_survives_a_restart() {
    let mut c = started().await;
    let fs = c.client();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("existing.txt"), b"was there before").unwrap();
    let other_path = other.path().display().to_string();
    c.run_ok(&["fs", "mkdir", "/mnt"]);
    let bad = c.run(&["fs", "mount", "--option", "tachyon.master.port=1", "/mnt/bad", &other_path]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("not an under-storage setting"), "{bad:?}");
    // (S3 keys do nothing for a folder; the secret only shows how secrets are kept.)
    let out = c.run_ok(&["fs", "mount", "--option", "s3a.secretKey=hunter2", "/mnt/other", &other_path]);
    assert!(out.contains("Mounted"), "{out}");
    let listed = c.run_ok(&["fs", "mount"]);
    assert!(listed.contains(&format!("{other_path:<40} on /mnt/other (s3a.secretKey=******)")), "{listed}");
    let journal = c.run_ok(&["readJournal"]);
    assert!(journal.contains("Mount(") && !journal.contains("hunter2"), "the journal dump masks mount secrets:\n{journal}");

    // What the folder holds shows up below the mount point and reads from there.
    assert!(c.run_ok(&["fs", "ls", "/mnt/other"]).contains("/mnt/other/existing.txt"));
    assert_eq!(fs.read_file("/mnt/other/existing.txt").await.unwrap(), b"was there before");
    // Writes, persists, renames and deletes below it happen in that folder, not the root's.
    let data = content((BLOCK + 5) as usize, 21);
    fs.write_file("/mnt/other/new", &data, with(WriteType::CacheThrough)).await.unwrap();
    assert_eq!(std::fs::read(other.path().join("new")).unwrap(), data);
    assert_eq!(ufs_copy(&c, "/mnt/other/new"), None);
    fs.write_file("/mnt/other/mem", &data, with(WriteType::MustCache)).await.unwrap();
    fs.persist("/mnt/other/mem").await.unwrap();
    assert_eq!(std::fs::read(other.path().join("mem")).unwrap(), data);
    fs.create_directory("/mnt/other/d", true, false).await.unwrap();
    fs.rename("/mnt/other/new", "/mnt/other/d/renamed").await.unwrap();
    assert_eq!(std::fs::read(other.path().join("d/renamed")).unwrap(), data);
    assert!(!other.path().join("new").exists());
    fs.delete("/mnt/other/mem", false).await.unwrap();
    assert!(!other.path().join("mem").exists());
    // Nothing moves between under-storages, and a mount point is not deleted by rm.
    let across = fs.rename("/mnt/other/d/renamed", "/renamed").await;
    assert!(matches!(&across, Err(FsError::InvalidArgument { reason }) if reason.contains("different under-storages")), "{across:?}");
    let rm = c.run(&["fs", "rm", "-R", "/mnt"]);
    assert!(!rm.status.success() && String::from_utf8_lossy(&rm.stderr).contains("unmount it first"), "{rm:?}");

    // The mount is journaled: a restarted master still has it, and a freed block of a
    // persisted file there is read back from the mounted folder.
    c.kill_master();
    c.start_master();
    c.wait_for_workers(1).await;
    assert!(eventually(|| async { state(&fs, "/mnt/other/d/renamed").await.1 == 100 }).await, "the worker re-registered its blocks");
    assert_eq!(fs.free("/mnt/other/d/renamed", false).await.unwrap(), 2);
    assert_eq!(fs.read_file("/mnt/other/d/renamed").await.unwrap(), data);

    fs.write_file("/mnt/other/only-in-memory", b"x", with(WriteType::MustCache)).await.unwrap();
    let refused = c.run(&["fs", "unmount", "/mnt/other"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("persist or delete it"), "{refused:?}");
    fs.delete("/mnt/other/only-in-memory", false).await.unwrap();
    c.run_ok(&["fs", "unmount", "/mnt/other"]);
    assert!(matches!(fs.get_status("/mnt/other/d/renamed").await, Err(FsError::NotFound { .. })));
    assert_eq!(std::fs::read(other.path().join("d/renamed")).unwrap(), data, "unmounting leaves the files where they are");
    assert!(!c.run_ok(&["fs", "mount"]).contains("/mnt/other"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_look_at_the_under_storage_again_as_the_sync_interval_says() {
    let c = started().await;
    let ufs_dir = c.path().join("underFSStorage/sync");
    std::fs::create_dir_all(&ufs_dir).unwrap();
    std::fs::write(ufs_dir.join("first"), b"1").unwrap();
    let never = "-Dtachyon.user.file.metadata.sync.interval=-1";
    assert!(c.run_ok(&[never, "fs", "ls", "/sync"]).contains("/sync/first"), "the first listing always looks");
    std::fs::write(ufs_dir.join("second"), b"2").unwrap();
    assert!(!c.run_ok(&[never, "fs", "ls", "/sync"]).contains("/sync/second"), "-1: only the first time");
    let hourly = "-Dtachyon.user.file.metadata.sync.interval=1h";
    assert!(!c.run_ok(&[hourly, "fs", "ls", "/sync"]).contains("/sync/second"), "looked at within the hour");
    let bad = c.run(&["-Dtachyon.user.file.metadata.sync.interval=sometimes", "fs", "ls", "/sync"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("tachyon.user.file.metadata.sync.interval"), "{bad:?}");
    // The default (0) looks every time.
    assert!(c.run_ok(&["fs", "ls", "/sync"]).contains("/sync/second"));
}

/// Regression (found by probing a running cluster): the rename of a directory holding some
/// 2,300 persisted files with long paths needed one journal entry larger than replay
/// accepts, and afterwards no master could read the journal. Now the rename is refused
/// before anything changes, with a clear error; nothing moved; the journal replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_too_big_for_one_journal_entry_is_refused_and_the_journal_stays_readable() {
    use futures::StreamExt;
    let mut c = started().await;
    let fs = c.client();
    // A directory path of about 3,770 bytes: 15 names of 250 bytes.
    let long: String = (0..15u8).map(|i| format!("/{}", char::from(b'a' + i).to_string().repeat(250))).collect();
    let dir = format!("/big{long}");
    const FILES: usize = 2300;
    let written: Vec<Result<_, FsError>> = futures::stream::iter(0..FILES)
        .map(|i| {
            let (fs, path) = (fs.clone(), format!("{dir}/f{i:05}"));
            async move { fs.write_file(&path, b"x", with(WriteType::Through)).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(written.iter().all(|w| w.is_ok()), "{:?}", written.iter().find(|w| w.is_err()));

    let err = fs.rename("/big", "/moved").await.unwrap_err();
    assert!(matches!(&err, FsError::InvalidArgument { reason } if reason.contains("journal entry")), "{err}");
    assert_eq!(fs.list_status(&dir, false).await.unwrap().len(), FILES, "nothing was renamed");
    assert!(matches!(fs.get_status("/moved").await, Err(FsError::NotFound { .. })));
    assert_eq!(ufs_copy(&c, &format!("{dir}/f00000")).as_deref(), Some(&b"x"[..]), "no under-storage copy moved");

    // The journal replays: readJournal finds no damaged record, and a restarted master
    // recovers every file.
    let dump = c.run_ok(&["readJournal"]);
    assert!(!dump.contains("!!") && !dump.contains("ERROR"), "{}", &dump[dump.len().saturating_sub(2000)..]);
    c.kill_master();
    c.start_master();
    let fs = c.client();
    assert_eq!(fs.list_status(&dir, false).await.unwrap().len(), FILES);
    assert_eq!(fs.read_file(&format!("{dir}/f02299")).await.unwrap(), b"x");
}

/// A writer that dies leaves an incomplete file and an upload; once no block of it was
/// stored for `tachyon.master.write.abandoned.timeout.ms` the leader deletes both, while a
/// slow but living writer (a block now and then) keeps its file and completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_writes_are_removed_and_living_ones_kept() {
    let mut c = Cluster::start_with_defines(vec!["-Dtachyon.master.write.abandoned.timeout.ms=2000".into()]);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    // The dead writer: created the file, uploaded part of a copy, then vanished.
    let dead = fs.create_file("/w/dead", CreateOptions { block_size: Some(64 << 10), recursive: true, write_type: None }).await.unwrap();
    drop(dead);
    let ufs_dir = c.path().join("underFSStorage/w");
    std::fs::create_dir_all(&ufs_dir).unwrap();
    std::fs::write(ufs_dir.join(".dead.tachyon-0000000000000001-7.tmp"), b"half a copy").unwrap();
    std::fs::write(ufs_dir.join(".other.tachyon-0000000000000001-8.tmp"), b"someone else's").unwrap();
    // The living writer: one 64 KB block every 300 ms for longer than the timeout.
    let mut living = fs.create_file("/w/living", CreateOptions { block_size: Some(64 << 10), recursive: true, write_type: None }).await.unwrap();
    let block = common::content(64 << 10, 3);
    for _ in 0..12 {
        living.write(&block).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let gone = common::eventually(|| async { matches!(fs.get_status("/w/dead").await, Err(tachyon::error::FsError::NotFound { .. })) }).await;
    assert!(gone, "the dead writer's incomplete file was not removed");
    assert!(!ufs_dir.join(".dead.tachyon-0000000000000001-7.tmp").exists(), "its upload was left");
    assert!(ufs_dir.join(".other.tachyon-0000000000000001-8.tmp").exists(), "another file's upload was removed");
    let info = living.close().await.unwrap();
    assert_eq!(info.length, 12 * (64 << 10) as u64);
    assert_eq!(fs.read_file("/w/living").await.unwrap().len(), 12 * (64 << 10));
}
