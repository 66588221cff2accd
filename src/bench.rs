//! `tachyon bench`: throughput figures, each printed next to a baseline measured in the
//! same run on the same machine (the machine is shared and noisy, so only ratios mean
//! something). Starts an in-process master and worker on loopback ports in a temp folder.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{ClientOptions, CreateOptions, FileSystem};
use crate::coordinator::StaticCoordinator;
use crate::core::path::FsPath;
use crate::journal::{format, Journal, JournalLimits};
use crate::master::MasterOptions;
use crate::proto::master_service_client::MasterServiceClient;
use crate::proto::{CreateFileRequest, InodeOwnership, PathRequest};
use crate::rpc::RetryPolicy;
use crate::underfs::local::LocalUnderFs;
use crate::worker::WorkerOptions;

/// Sizes of a benchmark run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Concurrent requests in the metadata benchmarks.
    pub concurrency: usize,
    /// How long each timed loop runs.
    pub duration: Duration,
    /// Entries in the replay benchmark.
    pub replay_entries: u64,
    /// Size of the file read in the block-read benchmark.
    pub read_bytes: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { concurrency: 32, duration: Duration::from_secs(2), replay_entries: 200_000, read_bytes: 64 << 20 }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn line(out: &mut dyn Write, name: &str, value: f64, unit: &str, baseline_name: &str, baseline: f64) {
    let ratio = if baseline > 0.0 { value / baseline } else { 0.0 };
    let _ = writeln!(out, "{name:<44} {value:>12.1} {unit:<9} {baseline_name:<34} {baseline:>12.1} {unit:<9} ratio {ratio:>6.3}");
}

/// Runs `op` from `concurrency` tasks until `duration` passes; returns completed ops/s.
async fn ops_per_second<F, Fut>(concurrency: usize, duration: Duration, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = 0u64;
            while start.elapsed() < duration {
                if op((t as u64) << 32 | i).await {
                    done += 1;
                }
                i += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Runs every benchmark and prints one line each.
pub async fn run(opts: BenchOptions, out: &mut dyn Write) -> Result<(), String> {
    let dir = tempfile_dir(&std::env::temp_dir())?;
    let root = dir.path().to_path_buf();
    // The memory tier belongs on tmpfs, as in production.
    let shm = std::path::Path::new("/dev/shm");
    let ram_dir = tempfile_dir(if shm.is_dir() { shm } else { &root })?;
    let _ = writeln!(out, "tachyon bench: concurrency {}, {:?} per loop, folder {}", opts.concurrency, opts.duration, root.display());

    // ── raw group-commit append rate of the journal folder's file system ──
    let raw = Journal::new(Arc::new(LocalUnderFs::new(root.join("raw-journal"))), JournalLimits::default());
    raw.format(false).await.map_err(|e| e.to_string())?;
    let (raw_ns, writer) = raw.take_over().await.map_err(|e| e.to_string())?;
    let ns = Arc::new(tokio::sync::Mutex::new(raw_ns));
    let raw_rate = {
        let (writer, ns) = (writer.clone(), ns.clone());
        ops_per_second(opts.concurrency, opts.duration, move |i| {
            let (writer, ns) = (writer.clone(), ns.clone());
            async move {
                let end = {
                    let mut ns = ns.lock().await;
                    let path = FsPath::root().join(&format!("d{i}"));
                    let Ok(kinds) = ns.plan_create_directory(&path, false, false, &InodeOwnership::default(), 0) else {
                        return false;
                    };
                    let entries = ns.apply_operation(kinds, 2).entries;
                    match writer.submit(&entries).await {
                        Ok(end) => end,
                        Err(_) => return false,
                    }
                };
                writer.wait_durable(end).await.is_ok()
            }
        })
        .await
    };
    writer.close().await;

    // ── a real master and worker ──
    let master_port = free_port().map_err(|e| e.to_string())?;
    let master_addr = format!("127.0.0.1:{master_port}");
    let master_opts = MasterOptions {
        address: master_addr.clone(),
        journal_folder: root.join("journal").display().to_string(),
        journal_limits: JournalLimits::default(),
        checkpoint_period_entries: u64::MAX,
        worker_timeout_ms: 60_000,
        tailer_sleep_ms: 200,
        fencing: true,
        loaded_block_size: 64 << 20,
        ttl_check_interval_ms: 60_000,
    };
    Journal::new(Arc::new(LocalUnderFs::new(root.join("journal"))), JournalLimits::default())
        .format(false)
        .await
        .map_err(|e| e.to_string())?;
    let coordinator = Arc::new(StaticCoordinator::new(master_addr.clone()));
    let (stop_tx, stop_rx) = crate::watch::channel(false);
    let stop = |mut rx: crate::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let master = tokio::spawn(crate::master::node::run_master(
        master_opts,
        crate::runtime::system_clock(),
        coordinator.clone(),
        Arc::new(LocalUnderFs::new(root.join("journal"))),
        stop(stop_rx.clone()),
    ));
    let worker_opts = WorkerOptions {
        address: crate::proto::WorkerNetAddress {
            host: "127.0.0.1".into(),
            rpc_port: free_port().map_err(|e| e.to_string())? as u32,
            data_port: free_port().map_err(|e| e.to_string())? as u32,
            web_port: 0,
        },
        memory_bytes: (opts.read_bytes as u64) * 2 + (64 << 20),
        mem_dir: ram_dir.path().to_path_buf(),
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_secs(10),
        chunk_bytes: 1 << 20,
    };
    let worker = tokio::spawn(crate::worker::run_worker(worker_opts, coordinator.clone(), stop(stop_rx.clone())));
    let client_opts = |short_circuit| ClientOptions {
        retry: RetryPolicy { base_sleep: Duration::from_millis(20), max_sleep: Duration::from_millis(200), max_duration: Duration::from_secs(10) },
        block_size: 16 << 20,
        short_circuit,
        chunk_bytes: 1 << 20,
        write_type: crate::client::WriteType::MustCache,
            read_type: crate::client::ReadType::CachePromote,
        owner: "bench".into(),
        group: "bench".into(),
        request_timeout: Duration::from_secs(30),
    };
    let fs = FileSystem::new(client_opts(true), coordinator.clone());
    for _ in 0..100 {
        if fs.workers().await.map(|w| !w.is_empty()).unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel = crate::rpc::connect(&master_addr, Duration::from_secs(30)).await.map_err(|e| e.to_string())?;

    // ── create-file ops/s through gRPC (each journaled and fsync'd) ──
    let create_rate = {
        let channel = channel.clone();
        ops_per_second(opts.concurrency, opts.duration, move |i| {
            let mut client = MasterServiceClient::new(channel.clone());
            async move {
                let req = CreateFileRequest { path: format!("/bench/f{i}"), block_size_bytes: 1 << 20, recursive: true, ..CreateFileRequest::default() };
                client.create_file(req).await.is_ok()
            }
        })
        .await
    };
    line(out, "createFile via gRPC, fsync'd journal", create_rate, "ops/s", "raw group-commit journal append", raw_rate);

    // ── getStatus ops/s vs an in-process namespace lookup ──
    fs.write_file("/bench/status", b"x", CreateOptions { recursive: true, ..Default::default() }).await.map_err(|e| e.to_string())?;
    let status_rate = {
        let channel = channel.clone();
        ops_per_second(opts.concurrency, opts.duration, move |_| {
            let mut client = MasterServiceClient::new(channel.clone());
            async move { client.get_status(PathRequest { path: "/bench/status".into() }).await.is_ok() }
        })
        .await
    };
    let lookup_rate = {
        let ns = ns.lock().await.clone();
        let p = FsPath::root().join("d0");
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < opts.duration / 4 {
            for _ in 0..1000 {
                n += u64::from(ns.lookup(&p).is_ok());
            }
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    line(out, "getStatus via gRPC", status_rate, "ops/s", "in-process namespace lookup", lookup_rate);

    // ── journal replay vs raw decode ──
    let replay_dir = root.join("replay-journal");
    let rj = Journal::new(Arc::new(LocalUnderFs::new(&replay_dir)), JournalLimits { segment_max_bytes: 64 << 20, ..JournalLimits::default() });
    rj.format(false).await.map_err(|e| e.to_string())?;
    let (mut rns, w) = rj.take_over().await.map_err(|e| e.to_string())?;
    let mut last_end = 0;
    for i in 0..opts.replay_entries {
        let dir = FsPath::root().join(&format!("r{}", i % 1000));
        let path = if i < 1000 { dir } else { dir.join(&format!("f{i}")) };
        let kinds = rns.plan_create_directory(&path, false, false, &InodeOwnership::default(), 0).map_err(|e| e.to_string())?;
        let entries = rns.apply_operation(kinds, 2).entries;
        last_end = w.submit(&entries).await.map_err(|e| e.to_string())?;
    }
    w.wait_durable(last_end).await.map_err(|e| e.to_string())?;
    w.close().await;
    let start = Instant::now();
    let recovered = rj.recover().await.map_err(|e| e.to_string())?;
    let replay_rate = recovered.namespace.next_sequence() as f64 / start.elapsed().as_secs_f64();
    let mut segments = Vec::new();
    for e in std::fs::read_dir(replay_dir.join("logs")).map_err(|e| e.to_string())? {
        segments.push(std::fs::read(e.map_err(|e| e.to_string())?.path()).map_err(|e| e.to_string())?);
    }
    let start = Instant::now();
    let decoded: usize = segments.iter().map(|s| format::decode_segment(s).map(|d| d.entries.len()).unwrap_or(0)).sum();
    let decode_rate = decoded as f64 / start.elapsed().as_secs_f64();
    line(out, "journal replay (read + decode + apply)", replay_rate, "entries/s", "raw decode of the same bytes", decode_rate);

    // ── block reads vs memcpy ──
    let data: Vec<u8> = (0..opts.read_bytes).map(|i| (i * 31 % 251) as u8).collect();
    fs.write_file("/bench/read", &data, CreateOptions { recursive: true, ..Default::default() }).await.map_err(|e| e.to_string())?;
    let rounds = 5;
    let gbps = |bytes: usize, secs: f64| bytes as f64 * rounds as f64 / secs / 1e9;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut copy = vec![0u8; data.len()];
        copy.copy_from_slice(&data);
        std::hint::black_box(&copy);
    }
    let memcpy = gbps(data.len(), start.elapsed().as_secs_f64());
    for (name, short_circuit) in [("short-circuit block read (mmap)", true), ("remote block read (gRPC stream)", false)] {
        let reader = FileSystem::new(client_opts(short_circuit), coordinator.clone());
        let start = Instant::now();
        for _ in 0..rounds {
            let back = reader.read_file("/bench/read").await.map_err(|e| e.to_string())?;
            if back.len() != data.len() {
                return Err(format!("{name}: read {} bytes, expected {}", back.len(), data.len()));
            }
        }
        line(out, name, gbps(data.len(), start.elapsed().as_secs_f64()), "GB/s", "memcpy of the same bytes", memcpy);
    }

    stop_tx.send_replace(true);
    let _ = master.await;
    let _ = worker.await;
    Ok(())
}

/// A temporary folder for the benchmark under `parent`, removed afterwards.
fn tempfile_dir(parent: &std::path::Path) -> Result<TempDir, String> {
    let base = parent.join(format!("tachyon-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    Ok(TempDir(base))
}

/// Removes its folder when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
