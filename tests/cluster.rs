//! Integration tests with real master and worker processes on loopback.

mod common;

use common::{content, eventually, Cluster};
use tachyon::client::CreateOptions;
use tachyon::error::FsError;

const SIZES: [usize; 5] = [0, 1, 1000, 1 << 20, (3 << 20) + 777];

fn opts() -> CreateOptions {
    CreateOptions { block_size: Some(1 << 20), recursive: true, write_type: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_survive_master_kill_9_byte_for_byte() {
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    for (i, len) in SIZES.iter().enumerate() {
        fs.write_file(&format!("/data/f{i}"), &content(*len, i as u64), opts()).await.unwrap();
    }
    fs.create_directory("/empty/dir", true, false).await.unwrap();
    fs.rename("/data/f1", "/data/renamed").await.unwrap();

    c.kill_master();
    c.start_master();
    c.wait_for_workers(1).await;

    for (i, len) in SIZES.iter().enumerate() {
        let path = if i == 1 { "/data/renamed".to_string() } else { format!("/data/f{i}") };
        let back = fs.read_file(&path).await.unwrap();
        assert_eq!(back, content(*len, i as u64), "{path} differs after master restart");
    }
    assert!(fs.get_status("/empty/dir").await.unwrap().is_directory);
    assert_eq!(fs.get_status("/data/f1").await, Err(FsError::NotFound { path: "/data/f1".into() }));
    // The restarted master keeps accepting writes after the replayed ones.
    fs.write_file("/data/after", b"after restart", opts()).await.unwrap();
    c.kill_master();
    c.start_master();
    c.wait_for_workers(1).await;
    assert_eq!(fs.read_file("/data/after").await.unwrap(), b"after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_concurrent_write_survives_kill_9() {
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (fs, stop) = (fs.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..1000u64 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let path = format!("/load/t{t}/f{i}");
                match fs.write_file(&path, &content(100, t * 1000 + i), opts()).await {
                    Ok(_) => acked.push((path, t * 1000 + i)),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    c.kill_master();
    c.start_master();
    // Writes in flight at the kill retry into the new master; each is acked or fails whole.
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() > 50, "the load ran ({} acknowledged writes)", acked.len());
    c.wait_for_workers(1).await;
    for (path, seed) in &acked {
        assert_eq!(fs.read_file(path).await.unwrap(), content(100, *seed), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_refuses_with_out_of_space_and_loses_nothing() {
    let mut c = Cluster::start();
    c.start_worker_with(0, &["-Dtachyon.worker.memory.size=3MB"]);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let kept = content(2 << 20, 5);
    fs.write_file("/full/kept", &kept, opts()).await.unwrap();
    let err = fs.write_file("/full/toobig", &content(2 << 20, 6), opts()).await.unwrap_err();
    assert!(matches!(err, FsError::OutOfSpace { .. }), "{err}");
    assert!(err.to_string().contains("evict"), "{err}");
    // The failed file is cleaned up, the stored one is intact, and space is not leaked.
    assert!(!fs.exists("/full/toobig").await.unwrap());
    assert_eq!(fs.read_file("/full/kept").await.unwrap(), kept);
    // Removing the failed file's first block rides on the next heartbeat.
    let kept_len = kept.len() as u64;
    assert!(
        eventually(|| async { fs.workers().await.map(|ws| ws[0].used_bytes == kept_len).unwrap_or(false) }).await,
        "the failed write's block was not freed"
    );
    fs.write_file("/full/fits", &content(1 << 20, 7), opts()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_restart_keeps_metadata_and_memory_data() {
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let data = content((2 << 20) + 5, 9);
    fs.write_file("/w/file", &data, opts()).await.unwrap();
    c.kill_worker(0);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let info = fs.get_status("/w/file").await.unwrap();
    assert_eq!(info.length, data.len() as u64);
    assert_eq!(info.blocks.len(), 3);
    // Block locations come back with the worker's re-registration.
    eventually(|| async { fs.get_status("/w/file").await.unwrap().in_memory_percentage == 100 }).await;
    assert_eq!(fs.read_file("/w/file").await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_files_free_worker_memory_and_lost_worker_is_reported() {
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    fs.write_file("/d/x", &content(500_000, 1), opts()).await.unwrap();
    let used = |ws: &[tachyon::proto::WorkerReport]| ws[0].used_bytes;
    assert_eq!(used(&fs.workers().await.unwrap()), 500_000);
    fs.delete("/d", true).await.unwrap();
    let freed = eventually(|| async { used(&fs.workers().await.unwrap()) == 0 }).await;
    assert!(freed, "worker memory was not freed after delete");

    // A worker that stops heartbeating is declared lost; its unpersisted blocks are lost,
    // and reading them says so instead of returning empty data.
    fs.write_file("/e/y", &content(1000, 2), opts()).await.unwrap();
    c.kill_worker(0);
    let lost = eventually(|| async { fs.workers().await.unwrap().iter().all(|w| w.lost) }).await;
    assert!(lost, "killed worker was not declared lost");
    assert!(c.run_ok(&["fs", "report"]).contains("Lost workers: 1"));
    assert!(c.run_ok(&["fs", "stat", "/e/y"]).contains("LOST"));
    let block = fs.get_status("/e/y").await.unwrap().blocks[0].block_id;
    assert_eq!(fs.read_file("/e/y").await, Err(FsError::BlockLost { path: "/e/y".into(), block_id: block }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_commands_print_what_users_expect_and_fail_with_exit_codes() {
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let local = c.path().join("local.txt");
    std::fs::write(&local, b"hello from the shell\n").unwrap();
    let local = local.to_str().unwrap();

    assert!(c.run_ok(&["fs", "mkdir", "/docs"]).contains("Successfully created directory /docs"));
    assert!(c.run_ok(&["fs", "copyFromLocal", local, "/docs"]).contains("to /docs/local.txt"));
    let ls = c.run_ok(&["fs", "ls", "/docs"]);
    assert!(ls.contains("/docs/local.txt") && ls.contains("In Memory") && ls.contains("21.00B"), "{ls}");
    assert_eq!(c.run_ok(&["fs", "cat", "/docs/local.txt"]), "hello from the shell\n");
    assert!(c.run_ok(&["fs", "mv", "/docs/local.txt", "/moved.txt"]).contains("Renamed"));
    assert!(c.run_ok(&["fs", "stat", "/moved.txt"]).contains("length:             21"));
    assert!(c.run_ok(&["fs", "touch", "/empty"]).contains("/empty has been created"));
    assert!(c.run_ok(&["fs", "du", "/"]).contains("total"));
    assert!(c.run_ok(&["fs", "report"]).contains("Live workers: 1"));
    assert!(c.run_ok(&["fs", "leader"]).contains(&format!("127.0.0.1:{}", c.master_port)));
    assert!(c.run_ok(&["fs", "masterInfo"]).contains("leader"));
    let out_file = c.path().join("back.txt");
    let copied = c.run(&["fs", "copyToLocal", "/moved.txt", out_file.to_str().unwrap()]);
    assert!(copied.status.success());
    // Progress bars draw only on a terminal: piped, stderr stays quiet.
    assert!(copied.stderr.is_empty(), "{}", String::from_utf8_lossy(&copied.stderr));
    assert_eq!(std::fs::read(&out_file).unwrap(), b"hello from the shell\n");
    let tests = c.run_ok(&["runTests"]);
    assert!(tests.contains("16 passed, 0 failed"), "{tests}");

    // Failures: non-zero exit, the path and the reason on stderr.
    for (args, expected) in [
        (vec!["fs", "cat", "/nope"], "/nope: no such file or directory"),
        (vec!["fs", "rm", "/"], "cannot delete the root"),
        (vec!["fs", "mkdir", "/docs"], "/docs: already exists"),
        (vec!["fs", "cat", "/docs"], "/docs: is a directory"),
        (vec!["fs", "ls", "relative"], "path must be absolute"),
        (vec!["fs", "free", "/moved.txt"], "not persisted"),
    ] {
        let out = c.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(expected), "{args:?}: stderr {err:?} lacks {expected:?}");
    }
    c.run_ok(&["fs", "mkdir", "/full/sub"]);
    let out = c.run(&["fs", "rm", "/full"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("directory not empty"));
    assert!(c.run_ok(&["fs", "rm", "-R", "/full"]).contains("/full has been removed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_completes_the_journal_and_readjournal_shows_it() {
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    fs.create_directory("/a/b", true, false).await.unwrap();
    assert!(c.stop_master(), "master must exit 0 on SIGTERM");
    let logs: Vec<String> = std::fs::read_dir(c.journal().join("logs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(logs, vec!["0000000000000000-0000000000000002-e0000000000000001.log".to_string()]);
    let dump = c.run_ok(&["readJournal"]);
    assert!(dump.contains("CreateDirectory") && dump.contains("name: \"b\""), "{dump}");
    // Format refuses to wipe a journal with entries.
    let out = c.run(&["format"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("format -f"));
}

#[test]
fn bad_configuration_stops_start_with_key_and_source() {
    let out = std::process::Command::new(common::tachyon_bin()).args(["-Dtachyon.master.port=99999", "master"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tachyon.master.port") && err.contains("command line"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_without_standbys_checkpoints_itself() {
    let mut c2 = Cluster::start();
    c2.kill_master();
    c2.start_master_with(0, &["-Dtachyon.master.journal.checkpoint.period.entries=10"]);
    let fs = c2.client();
    for i in 0..60 {
        fs.create_directory(&format!("/cp/d{i}"), true, false).await.unwrap();
    }
    let checkpoints = c2.journal().join("checkpoints");
    let written = eventually(|| async { std::fs::read_dir(&checkpoints).map(|d| d.count() > 0).unwrap_or(false) }).await;
    assert!(written, "no checkpoint written by a lone leader");
    c2.kill_master();
    c2.start_master();
    assert_eq!(fs.list_status("/cp", false).await.unwrap().len(), 60);
    let log = std::fs::read_to_string(c2.path().join("master0.log")).unwrap();
    assert!(log.contains("loaded checkpoint"), "restart did not start from the checkpoint");
}

/// `tachyon bench` runs end to end (small sizes) and prints every figure next to its
/// same-run baseline with a ratio, and the metadata-at-scale lines.
#[test]
fn bench_prints_every_figure_with_its_baseline() {
    let out = std::process::Command::new(common::tachyon_bin())
        .args(["bench", "--seconds", "0.1", "--replay-entries", "1000", "--read-mb", "1", "--files", "2000", "--concurrency", "4"])
        .env_remove("TACHYON_CONF_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for figure in [
        "createFile via gRPC",
        "getStatus via gRPC",
        "getStatus, permissions checked",
        "journal replay",
        "short-circuit block read",
        "remote block read",
        "master memory per file",
    ] {
        let line = text.lines().find(|l| l.starts_with(figure)).unwrap_or_else(|| panic!("no {figure:?} line: {text}"));
        let ratio: f64 = line.rsplit("ratio").next().and_then(|r| r.trim().parse().ok()).unwrap_or_else(|| panic!("no ratio: {line}"));
        assert!(ratio > 0.0, "{line}");
    }
    assert!(text.contains("checkpoint of 2000 files: written in"), "{text}");
}
