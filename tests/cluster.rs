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
        "createFile via the client library",
        "getStatus via gRPC",
        "getStatus, permissions checked",
        "journal replay",
        "short-circuit block read",
        "remote block read",
        "short-circuit read, MEM tier",
        "short-circuit read, SSD tier",
        "short-circuit read, HDD tier",
        "master memory per file",
    ] {
        let line = text.lines().find(|l| l.starts_with(figure)).unwrap_or_else(|| panic!("no {figure:?} line: {text}"));
        let ratio: f64 = line.rsplit("ratio").next().and_then(|r| r.trim().parse().ok()).unwrap_or_else(|| panic!("no ratio: {line}"));
        assert!(ratio > 0.0, "{line}");
    }
    // The FUSE lines where FUSE can be mounted, else the reason they are skipped.
    match tachyon::bench::fuse::unavailable() {
        None => assert!(text.contains("FUSE sequential write") && text.contains("FUSE sequential read"), "{text}"),
        Some(reason) => assert!(text.contains(&format!("FUSE lines skipped: {reason}")), "{text}"),
    }
    if cfg!(feature = "proxy") {
        assert!(text.contains("S3 gateway PUT") && text.contains("S3 gateway GET") && text.contains("S3 gateway ListObjectsV2"), "{text}");
    } else {
        assert!(text.contains("S3 gateway lines skipped"), "{text}");
    }
    assert!(text.contains("checkpoint of 2000 files: written in"), "{text}");
}

/// Which tier the worker's web API names for each block, by block id.
fn block_tiers(c: &Cluster) -> std::collections::BTreeMap<u64, String> {
    let (status, body) = common::http::get(&c.worker_web(0), "/api/blocks");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["blocks"].as_array().unwrap().iter().map(|b| (b["id"].as_u64().unwrap(), b["tier"].as_str().unwrap().to_string())).collect()
}

/// A worker with a 2 MB memory tier over an SSD tier, configured by the tieredstore keys
/// as a user would: what does not fit in memory lands on SSD, short-circuit reads work
/// from either tier, CACHE_PROMOTE reads move blocks up (the coldest go down), `fs
/// report`, the web UI and metrics show each tier, and a restart finds every block again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_blocks_in_memory_then_on_ssd_and_promotes_what_is_read() {
    let mut c = Cluster::start();
    let ssd = format!("-Dtachyon.worker.tieredstore.level1.dirs.path={}", c.path().join("ssd").display());
    let tiers =
        ["-Dtachyon.worker.memory.size=2MB", "-Dtachyon.worker.tieredstore.levels=2", ssd.as_str(), "-Dtachyon.worker.tieredstore.level1.dirs.quota=16MB"];
    c.start_worker_with(0, &tiers);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let (first, second) = (content(2 << 20, 1), content(3 << 20, 2));
    fs.write_file("/t/first", &first, opts()).await.unwrap();
    fs.write_file("/t/second", &second, opts()).await.unwrap();
    let ids = |path: &'static str| {
        let fs = fs.clone();
        async move { fs.get_status(path).await.unwrap().blocks.iter().map(|b| b.block_id).collect::<Vec<u64>>() }
    };
    let (first_ids, second_ids) = (ids("/t/first").await, ids("/t/second").await);
    let tier_of = |tiers: &std::collections::BTreeMap<u64, String>, blocks: &[u64]| blocks.iter().map(|b| tiers[b].clone()).collect::<Vec<_>>();
    let placed = block_tiers(&c);
    assert_eq!(tier_of(&placed, &first_ids), ["MEM", "MEM"], "the first file fills the memory tier");
    assert_eq!(tier_of(&placed, &second_ids), ["SSD", "SSD", "SSD"], "the second goes to the next tier with room");

    // A CACHE read (no promotion) is served short-circuit from the SSD tier as it is.
    let mut options = fs.options().clone();
    options.read_type = tachyon::client::ReadType::Cache;
    let no_promote = tachyon::client::FileSystem::with_under_fs(options, c.coordinator(), c.under_fs());
    assert_eq!(no_promote.read_file("/t/second").await.unwrap(), second);
    assert_eq!(block_tiers(&c), placed);
    // CACHE_PROMOTE moves each block read to memory; the least recently used move down.
    assert_eq!(fs.read_file("/t/second").await.unwrap(), second);
    let promoted = block_tiers(&c);
    assert_eq!(tier_of(&promoted, &second_ids), ["SSD", "MEM", "MEM"], "{promoted:?}");
    assert_eq!(tier_of(&promoted, &first_ids), ["SSD", "SSD"], "{promoted:?}");
    assert_eq!(fs.read_file("/t/first").await.unwrap(), first);

    // Every view shows both tiers.
    let (mem, ssd) = (2u64 << 20, 3u64 << 20);
    assert!(
        eventually(|| async {
            fs.workers().await.map(|w| w[0].tiers.iter().map(|t| (t.alias.clone(), t.used_bytes)).collect::<Vec<_>>()).unwrap_or_default()
                == [("MEM".to_string(), mem), ("SSD".to_string(), ssd)]
        })
        .await,
        "the master's view of the tiers: {:?}",
        fs.workers().await
    );
    let report = c.run_ok(&["fs", "report"]);
    assert!(report.contains("Tier MEM: 2.00MB used of 2.00MB") && report.contains("Tier SSD: 3.00MB used of 16.00MB"), "{report}");
    let (_, page) = common::http::get(&c.worker_web(0), "/");
    assert!(page.contains("MEM tier") && page.contains("SSD tier"), "{page}");
    let (_, metrics) = common::http::get(&c.worker_web(0), "/metrics");
    assert!(metrics.contains(&format!("tachyon_worker_tier_bytes{{tier=\"SSD\",kind=\"used\"}} {ssd}")), "{metrics}");
    assert!(metrics.contains("tachyon_worker_tier_moves_total{from=\"MEM\",to=\"SSD\"}"), "{metrics}");
    let (_, workers) = common::http::get(&c.master_web(0), "/workers");
    assert!(workers.contains("SSD 3.0 MB of 16.0 MB"), "{workers}");

    // A restart finds every block where it was.
    let before = block_tiers(&c);
    c.kill_worker(0);
    c.start_worker_with(0, &tiers);
    c.wait_for_workers(1).await;
    let web = c.worker_web(0).trim_start_matches("http://").to_string();
    assert!(eventually(|| async { std::net::TcpStream::connect(&web).is_ok() }).await, "the restarted worker's web UI");
    assert_eq!(block_tiers(&c), before);
    assert_eq!(no_promote.read_file("/t/first").await.unwrap(), first);
    assert_eq!(no_promote.read_file("/t/second").await.unwrap(), second);
}

/// Writes an empty file at `path` (creating its parents) in a task of its own: a create
/// and a completion, each coalesced with those of the client's other tasks.
fn spawn_empty_file(fs: &tachyon::client::FileSystem, path: String) -> tokio::task::JoinHandle<Result<tachyon::proto::FileInfo, FsError>> {
    let fs = fs.clone();
    tokio::spawn(async move {
        let mut writer = fs.create_file(&path, tachyon::client::CreateOptions { recursive: true, ..Default::default() }).await?;
        writer.write(b"").await?;
        writer.close().await
    })
}

/// Creates made at the same time by one client's tasks leave together (one `CreateFiles`
/// call) yet each gets its own answer: 200 new files all exist, and of 20 creates of one
/// path exactly one succeeds, the others are told it exists. Empty files need no worker
/// (none runs here); writing data does, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_client_each_get_their_own_answer() {
    let c = Cluster::start();
    let fs = c.client();
    let create = |path: String| spawn_empty_file(&fs, path);
    let distinct: Vec<_> = (0..200).map(|i| create(format!("/many/f{i}"))).collect();
    let same: Vec<_> = (0..20).map(|_| create("/many/same".to_string())).collect();
    for t in distinct {
        let info = t.await.unwrap().expect("every distinct create succeeds");
        assert!(info.complete && info.length == 0, "{info:?}");
    }
    let mut created = 0;
    for t in same {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(FsError::AlreadyExists { path }) => assert_eq!(path, "/many/same"),
            Err(e) => panic!("a create of a taken path: {e:?}"),
        }
    }
    assert_eq!(created, 1, "exactly one create of the same path succeeds");
    assert_eq!(fs.list_status("/many", false).await.unwrap().len(), 201);

    let mut options = fs.options().clone();
    options.retry.max_duration = std::time::Duration::from_millis(500);
    let impatient = tachyon::client::FileSystem::new(options, c.coordinator());
    let mut writer = impatient.create_file("/many/data", Default::default()).await.expect("the create needs no worker");
    match writer.write(b"data").await {
        Err(FsError::Unavailable { reason }) => assert!(reason.contains("no live worker"), "{reason}"),
        other => panic!("writing with no worker: {other:?}"),
    }
}

/// The cluster's master behind a proxy that, until `upgraded` is set, plays a master of an
/// older version: it answers the batched calls (`CreateFiles`, `CompleteFiles`) the way a
/// server without them does. Every other call is forwarded. Counts the batched calls it
/// refused and forwarded.
#[derive(Clone)]
struct ProxiedMaster {
    master: tonic::transport::Channel,
    upgraded: std::sync::Arc<std::sync::atomic::AtomicBool>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    batched: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl tonic::server::NamedService for ProxiedMaster {
    const NAME: &'static str = "tachyon.MasterService";
}

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for ProxiedMaster {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        use std::sync::atomic::Ordering::SeqCst;
        let path = request.uri().path();
        if path.ends_with("/CreateFiles") || path.ends_with("/CompleteFiles") {
            if !self.upgraded.load(SeqCst) {
                self.refused.fetch_add(1, SeqCst);
                return Box::pin(async { Ok(tonic::Status::unimplemented("").into_http()) });
            }
            self.batched.fetch_add(1, SeqCst);
        }
        let mut master = self.master.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| tonic::codegen::Service::poll_ready(&mut master, cx)).await.expect("the master channel");
            Ok(match tonic::codegen::Service::call(&mut master, request).await {
                Ok(response) => response,
                Err(e) => tonic::Status::unavailable(e.to_string()).into_http(),
            })
        })
    }
}

/// A client newer than its master (a rolling upgrade done clients first) still creates and
/// completes files: the first batched call is refused as unsupported, its requests and every
/// later one go one call each, and nothing is lost or made twice. Once the master is
/// upgraded, the client sends batched calls again when the refusal runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_without_batched_calls_gets_each_create_and_completion_alone() {
    use std::sync::atomic::Ordering::SeqCst;
    let c = Cluster::start();
    c.wait_for_workers(0).await;
    let master = tachyon::rpc::connect(&c.master_address(0), std::time::Duration::from_secs(3), None).await.unwrap();
    let older = ProxiedMaster { master, upgraded: Default::default(), refused: Default::default(), batched: Default::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap().to_string();
    tokio::spawn(tonic::transport::Server::builder().add_service(older.clone()).serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    let fs = tachyon::client::FileSystem::new(c.client().options().clone(), std::sync::Arc::new(tachyon::coordinator::StaticCoordinator::new(proxy)));
    let write_empty = |path: String| spawn_empty_file(&fs, path);
    let first: Vec<_> = (0..50).map(|i| write_empty(format!("/old/f{i}"))).collect();
    for t in first {
        let info = t.await.unwrap().expect("a create and completion sent alone succeed");
        assert!(info.complete && info.length == 0, "{info:?}");
    }
    let refusals = older.refused.load(SeqCst);
    assert!((1..=4).contains(&refusals), "each kind's batched calls are refused until the client stops sending them: {refusals}");
    let later: Vec<_> = (50..80).map(|i| write_empty(format!("/old/f{i}"))).collect();
    for t in later {
        t.await.unwrap().expect("later creates go alone at once");
    }
    assert_eq!(older.refused.load(SeqCst), refusals, "no batched call is tried again");
    assert_eq!(fs.list_status("/old", false).await.unwrap().len(), 80, "every file exists once");
    // Errors still come back per request: a taken path is refused.
    let twice: Vec<_> = (0..2).map(|_| write_empty("/old/f0".to_string())).collect();
    for t in twice {
        assert!(matches!(t.await.unwrap(), Err(FsError::AlreadyExists { .. })));
    }
    assert_eq!(older.batched.load(SeqCst), 0);

    // The master is upgraded: after a while the client asks again, and batches from then on.
    older.upgraded.store(true, SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(tachyon::client::BATCHING_REFUSAL_MS + 200)).await;
    let round: Vec<_> = (80..100).map(|i| write_empty(format!("/old/f{i}"))).collect();
    for t in round {
        t.await.unwrap().expect("a create after the upgrade");
    }
    assert!(older.batched.load(SeqCst) > 0, "no batched call once the refusal ran out");
    assert_eq!(older.refused.load(SeqCst), refusals);
    assert_eq!(fs.list_status("/old", false).await.unwrap().len(), 100, "every file exists once");
}
