//! `tachyon bench`: throughput figures, each printed next to a baseline measured in the
//! same run on the same machine (the machine is shared and noisy, so only ratios mean
//! something). Starts an in-process master and worker on loopback ports in a temp folder.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{ClientOptions, CreateOptions, FileSystem};
use crate::coordinator::StaticCoordinator;
use crate::core::path::FsPath;
use crate::core::tiers::TierAlias;
use crate::error::FsError;
use crate::journal::{format, Journal, JournalLimits};
use crate::master::node::MasterNode;
use crate::master::MasterOptions;
use crate::proto::master_service_client::MasterServiceClient;
use crate::proto::{CreateFileRequest, Empty, InodeOwnership, PathRequest};
use crate::rpc::RetryPolicy;
use crate::security::SecurityOptions;
use crate::underfs::local::LocalUnderFs;
use crate::underfs::UnderFs;
use crate::worker::store::TierDirs;
use crate::worker::WorkerOptions;

pub mod failover;
#[cfg(not(madsim))]
pub mod fuse;
#[cfg(all(feature = "proxy", not(madsim)))]
pub mod gateway;
#[cfg(not(madsim))]
use fuse::ROUNDS as FUSE_ROUNDS;
#[cfg(madsim)]
const FUSE_ROUNDS: usize = 0;
#[cfg(all(feature = "proxy", not(madsim)))]
use gateway::ROUNDS as GATEWAY_ROUNDS;
#[cfg(not(all(feature = "proxy", not(madsim))))]
const GATEWAY_ROUNDS: usize = 0;

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
    /// Files in the metadata-at-scale benchmark (0: skip it).
    pub scale_files: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { concurrency: 32, duration: Duration::from_secs(2), replay_entries: 200_000, read_bytes: 64 << 20, scale_files: 1_000_000 }
    }
}

/// First port [`unused_port`] hands out.
const UNUSED_PORT_FIRST: u16 = 20_100;
/// Ports [`unused_port`] hands out: below the default worker ports (29998-30000) and below
/// the kernel's ephemeral range (32768 and up on Linux), which outgoing connections and
/// `bind(0)` draw from, so no other socket of this machine's clients takes a port between
/// its check and its use.
const UNUSED_PORT_COUNT: u16 = 9_800;

/// A TCP port free on every address, never handed out twice by this process: for the
/// servers of benchmarks and tests. Ports come from one counter per process, starting at an
/// offset from the process id (so two processes rarely try the same ones), each checked
/// free before it is handed out. Picking with `bind(0)` and releasing raced with other
/// servers and with outgoing connections, which take ports from the same ephemeral range.
pub fn unused_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let count = u32::from(UNUSED_PORT_COUNT);
    let _ = NEXT.compare_exchange(u32::MAX, (std::process::id().wrapping_mul(211)) % count, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..count {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % count;
        let port = UNUSED_PORT_FIRST + offset as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("no free port in {UNUSED_PORT_FIRST}..{}", UNUSED_PORT_FIRST + UNUSED_PORT_COUNT)))
}

fn line(out: &mut dyn Write, name: &str, value: f64, unit: &str, baseline_name: &str, baseline: f64) {
    let ratio = if baseline > 0.0 { value / baseline } else { 0.0 };
    let _ = writeln!(out, "{name:<44} {value:>12.1} {unit:<9} {baseline_name:<40} {baseline:>12.1} {unit:<9} ratio {ratio:>6.3}");
}

/// getStatus of `path` through raw gRPC, as the user `security` names.
fn getstatus_op(channel: &tonic::transport::Channel, security: &SecurityOptions, path: &str) -> BenchOp {
    let (channel, security, path) = (channel.clone(), security.clone(), path.to_string());
    bench_op(move |_| {
        let mut client = MasterServiceClient::new(channel.clone());
        let req = security.sign_client(PathRequest { path: path.clone() });
        async move { client.get_status(req).await.is_ok() }
    })
}

/// The user the benchmark master runs as (a superuser: no permission checks).
const BENCH_SUPERUSER: &str = "bench";
/// A user of the benchmark cluster whose every request is permission-checked.
const BENCH_USER: &str = "bench-user";

/// One benchmark operation: given a number unique among the operations of its kind, makes
/// one request and says whether it succeeded.
type BenchOp = Arc<dyn Fn(u64) -> futures::future::BoxFuture<'static, bool> + Send + Sync>;

/// `op` as a [`BenchOp`].
fn bench_op<F, Fut>(op: F) -> BenchOp
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    Arc::new(move |i| Box::pin(op(i)))
}

/// Runs `op` from `concurrency` tasks until `duration` passes, numbering the operations
/// from `numbers`; returns the operations completed and the seconds taken.
async fn run_loop(op: &BenchOp, concurrency: usize, duration: Duration, numbers: &Arc<AtomicU64>) -> (u64, f64) {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (op, numbers) = (op.clone(), numbers.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < duration {
                if op(numbers.fetch_add(1, Ordering::Relaxed)).await {
                    done += 1;
                }
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    (total, start.elapsed().as_secs_f64())
}

/// How many turns each loop of an interleaved comparison gets.
const INTERLEAVED_TURNS: u32 = 4;

/// Runs each of `ops` (from `concurrency` tasks) for `duration` in all, in
/// [`INTERLEAVED_TURNS`] turns taken in rotation (A B C, B C A, C A B, A B C), so a machine
/// that speeds up or slows down during the run weighs on a line and its baseline alike.
/// Returns each one's completed ops/s over its own turns, in the order given.
async fn interleaved_rates(concurrency: usize, duration: Duration, ops: &[BenchOp]) -> Vec<f64> {
    let turn = duration / INTERLEAVED_TURNS;
    let numbers: Vec<Arc<AtomicU64>> = ops.iter().map(|_| Arc::default()).collect();
    let (mut done, mut seconds) = (vec![0u64; ops.len()], vec![0f64; ops.len()]);
    for round in 0..INTERLEAVED_TURNS as usize {
        for k in 0..ops.len() {
            let j = (round + k) % ops.len();
            let (d, s) = run_loop(&ops[j], concurrency, turn, &numbers[j]).await;
            done[j] += d;
            seconds[j] += s;
        }
    }
    done.iter().zip(&seconds).map(|(&d, &s)| d as f64 / s.max(1e-9)).collect()
}

/// Runs every benchmark and prints one line each.
pub async fn run(opts: BenchOptions, out: &mut dyn Write) -> Result<(), String> {
    let dir = tempfile_dir(&std::env::temp_dir())?;
    let root = dir.path().to_path_buf();
    // The memory tier belongs on tmpfs, as in production.
    let shm = std::path::Path::new("/dev/shm");
    let ram_dir = tempfile_dir(if shm.is_dir() { shm } else { &root })?;
    let _ = writeln!(out, "tachyon bench: concurrency {}, {:?} per loop, folder {}", opts.concurrency, opts.duration, root.display());

    // ── the raw group-commit append of the journal folder's file system (the create lines' baseline) ──
    let raw = Journal::new(Arc::new(LocalUnderFs::new(root.join("raw-journal"))), JournalLimits::default());
    let (raw_append, raw_writer) = journal_appender(&raw).await?;

    // ── a real master and worker ──
    // Room for the read file, the files of the other lines and each FUSE round's file.
    let memory = (opts.read_bytes as u64) * (3 + FUSE_ROUNDS as u64 + 2 * GATEWAY_ROUNDS as u64) + (64 << 20);
    let cluster = BenchCluster::start(Arc::new(LocalUnderFs::new(root.join("journal"))), None, memory_tier(ram_dir.path(), memory)).await?;
    let fs = cluster.client(true);
    let master_addr = cluster.master_addr.clone();
    let channel = crate::rpc::connect(&master_addr, Duration::from_secs(30), None).await.map_err(|e| e.to_string())?;

    // ── createFile ops/s (each journaled and fsync'd): one gRPC call each, and through the
    //    client library, which sends the creates its tasks make at the same time in one call;
    //    taken in turns with the raw append ──
    let superuser = SecurityOptions::simple_as(BENCH_SUPERUSER);
    let create_call = {
        let (channel, superuser) = (channel.clone(), superuser.clone());
        bench_op(move |i| {
            let mut client = MasterServiceClient::new(channel.clone());
            let req = CreateFileRequest { path: format!("/bench/f{i}"), block_size_bytes: 1 << 20, recursive: true, ..CreateFileRequest::default() };
            let req = superuser.sign_client(req);
            async move { client.create_file(req).await.is_ok() }
        })
    };
    let create_coalesced = {
        let fs = fs.clone();
        bench_op(move |i| {
            let fs = fs.clone();
            async move { fs.create_file(&format!("/bench/c{i}"), CreateOptions { recursive: true, ..Default::default() }).await.is_ok() }
        })
    };
    let rates = interleaved_rates(opts.concurrency, opts.duration, &[raw_append, create_call, create_coalesced]).await;
    raw_writer.close().await;
    let (raw_rate, create_rate, client_create_rate) = (rates[0], rates[1], rates[2]);
    line(out, "createFile via gRPC, fsync'd journal", create_rate, "ops/s", "raw group-commit journal append", raw_rate);
    line(out, "createFile via the client library, coalesced", client_create_rate, "ops/s", "raw group-commit journal append", raw_rate);

    // ── getStatus ops/s vs a no-op RPC, in turns ──
    fs.write_file("/bench/status", b"x", CreateOptions { recursive: true, ..Default::default() }).await.map_err(|e| e.to_string())?;
    let ping = {
        let (channel, superuser) = (channel.clone(), superuser.clone());
        bench_op(move |_| {
            let mut client = MasterServiceClient::new(channel.clone());
            let req = superuser.sign_client(Empty {});
            async move { client.ping(req).await.is_ok() }
        })
    };
    let rates = interleaved_rates(opts.concurrency, opts.duration, &[getstatus_op(&channel, &superuser, "/bench/status"), ping]).await;
    line(out, "getStatus via gRPC", rates[0], "ops/s", "no-op RPC, same server and client", rates[1]);

    // ── what permission checks cost: the same getStatus 8 directories deep, checked
    //    (another user: x on every directory, r on the file) and unchecked (the superuser) ──
    let deep = "/bench/p1/p2/p3/p4/p5/p6/p7/status";
    fs.write_file(deep, b"x", CreateOptions { recursive: true, ..Default::default() }).await.map_err(|e| e.to_string())?;
    let user = SecurityOptions::simple_as(BENCH_USER);
    // The checks are live: the same user is refused a file only its owner may read.
    fs.write_file("/bench/private", b"x", CreateOptions::default()).await.map_err(|e| e.to_string())?;
    fs.set_ownership("/bench/private", crate::core::namespace::OwnershipChange { mode: Some(0o600), ..Default::default() }).await.map_err(|e| e.to_string())?;
    let refused = MasterServiceClient::new(channel.clone()).get_status(user.sign_client(PathRequest { path: "/bench/private".into() })).await;
    if !matches!(refused.map_err(FsError::from), Err(FsError::PermissionDenied { .. })) {
        return Err("permission checks are not in effect for the benchmark user".into());
    }
    let rates = interleaved_rates(opts.concurrency, opts.duration, &[getstatus_op(&channel, &user, deep), getstatus_op(&channel, &superuser, deep)]).await;
    line(out, "getStatus, permissions checked (8 deep)", rates[0], "ops/s", "same path as superuser, unchecked", rates[1]);

    // ── journal replay vs raw decode ──
    let replay_dir = root.join("replay-journal");
    let rj = Journal::new(Arc::new(LocalUnderFs::new(&replay_dir)), JournalLimits { segment_max_bytes: 64 << 20, ..JournalLimits::default() });
    rj.format(false).await.map_err(|e| e.to_string())?;
    let (mut rns, w) = rj.take_over().await.map_err(|e| e.to_string())?;
    let mut last_end = 0;
    // As a master journals them: every create names its owner and group.
    let own = InodeOwnership { owner: BENCH_USER.into(), group: BENCH_USER.into(), mode: 0o755 };
    for i in 0..opts.replay_entries {
        let dir = FsPath::root().join(&format!("r{}", i % 1000));
        let path = if i < 1000 { dir } else { dir.join(&format!("f{i}")) };
        let kinds = rns.plan_create_directory(&path, false, false, &own, 0).map_err(|e| e.to_string())?;
        let entries = rns.apply_operation(kinds, 2).entries;
        last_end = w.submit(&entries).await.map_err(|e| e.to_string())?;
    }
    w.wait_durable(last_end).await.map_err(|e| e.to_string())?;
    w.close().await;
    let mut segments = Vec::new();
    for e in std::fs::read_dir(replay_dir.join("logs")).map_err(|e| e.to_string())? {
        segments.push(std::fs::read(e.map_err(|e| e.to_string())?.path()).map_err(|e| e.to_string())?);
    }
    // The fastest of a few alternating rounds of each: the first round of anything pays
    // for fresh pages, and the machine is noisy.
    let (mut replay_rate, mut decode_rate) = (0f64, 0f64);
    for _ in 0..REPLAY_ROUNDS {
        let start = Instant::now();
        let recovered = rj.recover().await.map_err(|e| e.to_string())?;
        replay_rate = replay_rate.max(recovered.namespace.next_sequence() as f64 / start.elapsed().as_secs_f64());
        drop(recovered);
        let start = Instant::now();
        let decoded: Vec<_> = segments.iter().map(|s| format::decode_segment(s).map(|d| d.entries)).collect();
        decode_rate = decode_rate.max(decoded.iter().map(|d| d.as_ref().map_or(0, Vec::len)).sum::<usize>() as f64 / start.elapsed().as_secs_f64());
    }
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
    let chunk = cluster.client(false).options().chunk_bytes;
    let tcp = gbps(data.len(), raw_tcp_seconds(&data, chunk, rounds).await?);
    let baselines = [("memcpy of the same bytes", memcpy), ("raw loopback TCP, same bytes and chunks", tcp)];
    for ((name, short_circuit), (baseline_name, baseline)) in
        [("short-circuit block read (mmap)", true), ("remote block read (gRPC stream)", false)].into_iter().zip(baselines)
    {
        let reader = cluster.client(short_circuit);
        let start = Instant::now();
        for _ in 0..rounds {
            let back = reader.read_file("/bench/read").await.map_err(|e| e.to_string())?;
            if back.len() != data.len() {
                return Err(format!("{name}: read {} bytes, expected {}", back.len(), data.len()));
            }
        }
        line(out, name, gbps(data.len(), start.elapsed().as_secs_f64()), "GB/s", baseline_name, baseline);
    }

    #[cfg(not(madsim))]
    {
        let data = Arc::new(data);
        fuse::run(&fs, &root, data.clone(), out).await?;
        #[cfg(feature = "proxy")]
        gateway::run(&fs, data, out).await?;
        #[cfg(not(feature = "proxy"))]
        let _ = writeln!(out, "S3 gateway lines skipped: built without the cargo feature `proxy`");
    }
    cluster.stop().await;
    tier_reads(&root, ram_dir.path(), opts.read_bytes as u64, out).await?;
    if opts.scale_files > 0 {
        metadata_at_scale(&root, opts.scale_files, out).await?;
    }
    Ok(())
}

/// One memory tier of `capacity_bytes` in `dir`.
fn memory_tier(dir: &std::path::Path, capacity_bytes: u64) -> Vec<TierDirs> {
    vec![TierDirs { alias: TierAlias::Mem, dirs: vec![(dir.to_path_buf(), capacity_bytes)] }]
}

/// Reads a file held in each tier of a worker (MEM on `ram_dir`, SSD and HDD in folders
/// under `root`), short-circuit and without promotion, next to a raw read of the same block
/// files. Each tier's quota is one file (in whole blocks, which writers reserve), so the
/// three files land one per tier.
async fn tier_reads(root: &std::path::Path, ram_dir: &std::path::Path, file_bytes: u64, out: &mut dyn Write) -> Result<(), String> {
    let quota = file_bytes.div_ceil(BENCH_BLOCK_BYTES) * BENCH_BLOCK_BYTES;
    let tiers: Vec<TierDirs> =
        [(TierAlias::Mem, ram_dir.join("tiers-mem")), (TierAlias::Ssd, root.join("tiers-ssd")), (TierAlias::Hdd, root.join("tiers-hdd"))]
            .into_iter()
            .map(|(alias, dir)| TierDirs { alias, dirs: vec![(dir, quota)] })
            .collect();
    let cluster = BenchCluster::start(Arc::new(LocalUnderFs::new(root.join("tiers-journal"))), None, tiers.clone()).await?;
    let result = async {
        let fs = cluster.client_reading(true, crate::client::ReadType::Cache);
        let data: Vec<u8> = (0..file_bytes).map(|i| (i * 17 % 253) as u8).collect();
        for tier in &tiers {
            fs.write_file(&format!("/tiers/{}", tier.alias), &data, CreateOptions { recursive: true, ..Default::default() })
                .await
                .map_err(|e| e.to_string())?;
        }
        let rounds = 5;
        let gbps = |secs: f64| file_bytes as f64 * rounds as f64 / secs / 1e9;
        for tier in &tiers {
            let dir = &tier.dirs[0].0;
            let blocks: Vec<std::path::PathBuf> =
                std::fs::read_dir(dir).map_err(|e| e.to_string())?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
            let held: u64 = blocks.iter().map(|p| p.metadata().map_or(0, |m| m.len())).sum();
            if held != file_bytes {
                return Err(format!("the {} tier holds {held} bytes, expected the {file_bytes} of /tiers/{}", tier.alias, tier.alias));
            }
            let path = format!("/tiers/{}", tier.alias);
            if fs.read_file(&path).await.map_err(|e| e.to_string())? != data {
                return Err(format!("{path} read back different bytes"));
            }
            // Block by block, as the baseline reads its files: no concatenation in either.
            let start = Instant::now();
            for _ in 0..rounds {
                let mut reader = fs.open_file(&path).await.map_err(|e| e.to_string())?;
                while let Some(block) = reader.next_block().await.map_err(|e| e.to_string())? {
                    std::hint::black_box(block);
                }
            }
            let tier_rate = gbps(start.elapsed().as_secs_f64());
            let start = Instant::now();
            for _ in 0..rounds {
                for block in &blocks {
                    std::hint::black_box(std::fs::read(block).map_err(|e| e.to_string())?);
                }
            }
            let raw_rate = gbps(start.elapsed().as_secs_f64());
            line(out, &format!("short-circuit read, {} tier", tier.alias), tier_rate, "GB/s", "raw read of the same block files", raw_rate);
        }
        Ok(())
    }
    .await;
    cluster.stop().await;
    result
}

/// Rounds of the replay benchmark (and of its baseline); the fastest of each counts.
const REPLAY_ROUNDS: usize = 3;

/// Directories the metadata-at-scale files are spread over.
const SCALE_DIRECTORIES: u64 = 1000;

/// Bytes this process has allocated and not freed: glibc's count over all its arenas, so
/// what is built in between counts even where it reuses memory freed before (which the
/// resident size would not show: the benchmarks before this one free plenty).
#[cfg(all(not(madsim), target_os = "linux", target_env = "gnu"))]
fn heap_bytes() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

/// Without glibc's statistics: this process's resident memory, from /proc (0 where there
/// is none).
#[cfg(not(all(not(madsim), target_os = "linux", target_env = "gnu")))]
fn heap_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm").ok().and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()));
    pages.unwrap_or(0) * 4096
}

/// Builds a namespace of `files` files (through the planner and `apply`, as a master
/// does), and prints the memory each file takes, how long its checkpoint takes to write
/// and to load through the journal on local disk, and so how long a standby takes over at
/// that size (recovery from the checkpoint).
async fn metadata_at_scale(root: &std::path::Path, files: u64, out: &mut dyn Write) -> Result<(), String> {
    let before = heap_bytes();
    let mut ns = crate::core::namespace::Namespace::new();
    let own = InodeOwnership { owner: "bench".into(), group: "bench".into(), mode: 0o644 };
    let start = Instant::now();
    for d in 0..SCALE_DIRECTORIES.min(files) {
        let kinds = ns.plan_create_directory(&FsPath::root().join(&format!("s{d}")), false, false, &own, 0).map_err(|e| e.to_string())?;
        ns.apply_operation(kinds, 1);
    }
    for i in 0..files {
        let path = FsPath::root().join(&format!("s{}", i % SCALE_DIRECTORIES)).join(&format!("f{i}"));
        let kinds = ns.plan_create_file(&path, 64 << 20, false, &own, 0).map_err(|e| e.to_string())?;
        ns.apply_operation(kinds, 1);
    }
    let build = start.elapsed().as_secs_f64();
    let per_file = heap_bytes().saturating_sub(before) as f64 / files as f64;
    let _ = writeln!(out, "metadata at scale: {files} files in {SCALE_DIRECTORIES} directories, built in {build:.1} s");
    line(out, "master memory per file", per_file, "B", "target (HDFS NameNode: ~150 B)", 300.0);
    let journal = Journal::new(Arc::new(LocalUnderFs::new(root.join("scale-journal"))), JournalLimits::default());
    journal.format(false).await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    journal.write_checkpoint(&ns.to_checkpoint()).await.map_err(|e| e.to_string())?;
    let written = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let recovered = journal.recover().await.map_err(|e| e.to_string())?;
    let loaded = start.elapsed().as_secs_f64();
    if recovered.namespace.digest() != ns.digest() {
        return Err("the checkpoint did not load back the namespace it was written from".into());
    }
    let _ = writeln!(out, "checkpoint of {files} files: written in {written:.2} s, loaded (a standby's take-over) in {loaded:.2} s");
    Ok(())
}

/// Seconds to move `data` `rounds` times over a loopback TCP connection, written in
/// `chunk`-byte writes and read into one buffer: what a remote block read does, without
/// gRPC, HTTP/2 or a worker.
async fn raw_tcp_seconds(data: &[u8], chunk: usize, rounds: usize) -> Result<f64, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let payload = bytes::Bytes::copy_from_slice(data);
    let sender = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        for _ in 0..rounds {
            for piece in payload.chunks(chunk.max(1)) {
                socket.write_all(piece).await?;
            }
        }
        socket.flush().await
    });
    let start = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(address).await.map_err(|e| e.to_string())?;
    for _ in 0..rounds {
        let mut received = vec![0u8; data.len()];
        socket.read_exact(&mut received).await.map_err(|e| e.to_string())?;
        std::hint::black_box(&received);
    }
    let seconds = start.elapsed().as_secs_f64();
    sender.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    Ok(seconds)
}

/// Formats `journal` and takes it over. Returns an operation appending a one-entry
/// operation (a mkdir) and waiting until it is durable, and the writer (still open).
async fn journal_appender(journal: &Journal) -> Result<(BenchOp, crate::journal::JournalWriter), String> {
    journal.format(false).await.map_err(|e| format!("format the journal: {e}"))?;
    let (ns, writer) = journal.take_over().await.map_err(|e| format!("take the journal over: {e}"))?;
    let ns = Arc::new(tokio::sync::Mutex::new(ns));
    let append = {
        let writer = writer.clone();
        bench_op(move |i| {
            let (writer, ns) = (writer.clone(), ns.clone());
            async move {
                let end = {
                    let mut ns = ns.lock().await;
                    let path = FsPath::root().join(&format!("d{i}"));
                    let Ok(kinds) = ns.plan_create_directory(&path, false, false, &InodeOwnership::default(), 0) else {
                        return false;
                    };
                    match writer.submit(&ns.apply_operation(kinds, 2).entries).await {
                        Ok(end) => end,
                        Err(_) => return false,
                    }
                };
                writer.wait_durable(end).await.is_ok()
            }
        })
    };
    Ok((append, writer))
}

/// An in-process master and worker on loopback ports, optionally with an under-storage
/// for file data.
struct BenchCluster {
    coordinator: Arc<StaticCoordinator>,
    master_addr: String,
    data_ufs: Option<Arc<dyn UnderFs>>,
    stop: crate::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BenchCluster {
    /// Formats the journal on `journal_ufs`, starts the master and a worker with `tiers`,
    /// and waits until the worker registered.
    async fn start(journal_ufs: Arc<dyn UnderFs>, data_ufs: Option<Arc<dyn UnderFs>>, tiers: Vec<TierDirs>) -> Result<Self, String> {
        let master_addr = format!("127.0.0.1:{}", unused_port().map_err(|e| e.to_string())?);
        let master_opts = MasterOptions {
            address: master_addr.clone(),
            bind_address: master_addr.clone(),
            journal_folder: journal_ufs.describe(),
            journal_limits: JournalLimits::default(),
            checkpoint_period_entries: u64::MAX,
            worker_timeout_ms: 60_000,
            tailer_sleep_ms: 200,
            fencing: true,
            leader_lease: true,
            loaded_block_size: BENCH_BLOCK_BYTES,
            min_block_size_bytes: 1,
            ttl_check_interval_ms: 60_000,
            // As deployed by default: SIMPLE identities, permissions checked; "bench" is
            // the master's own user (a superuser).
            security: SecurityOptions::simple_as(BENCH_SUPERUSER),
            max_path_depth: 1000,
            abandoned_write_timeout_ms: 3_600_000,
        };
        Journal::new(journal_ufs.clone(), JournalLimits::default()).format(false).await.map_err(|e| e.to_string())?;
        let coordinator = Arc::new(StaticCoordinator::new(master_addr.clone()));
        let (stop, stop_rx) = crate::watch::channel(false);
        let stopped = |mut rx: crate::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut cluster = BenchCluster { coordinator: coordinator.clone(), master_addr, data_ufs, stop, tasks: Vec::new() };
        let mut node = MasterNode::new(master_opts, crate::runtime::system_clock(), coordinator.clone(), journal_ufs);
        if cluster.data_ufs.is_some() {
            node = node.with_under_storage(cluster.client(true));
        }
        let shutdown = stopped(stop_rx.clone());
        cluster.tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::master::node::run_node(Arc::new(node), shutdown).await {
                tracing::error!(error = %e, "benchmark master failed");
            }
        }));
        let worker_opts = WorkerOptions {
            address: crate::proto::WorkerNetAddress {
                host: "127.0.0.1".into(),
                rpc_port: unused_port().map_err(|e| e.to_string())? as u32,
                data_port: unused_port().map_err(|e| e.to_string())? as u32,
                web_port: 0,
            },
            bind_hosts: crate::worker::WorkerBindHosts::all("127.0.0.1"),
            tiers,
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_secs(10),
            chunk_bytes: 1 << 20,
            write_idle_timeout: Duration::from_secs(30),
            security: SecurityOptions::unchecked(),
        };
        let shutdown = stopped(stop_rx);
        cluster.tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::worker::run_worker(worker_opts, coordinator, shutdown).await {
                tracing::error!(error = %e, "benchmark worker failed");
            }
        }));
        let fs = cluster.client(true);
        for _ in 0..200 {
            if fs.workers().await.map(|w| !w.is_empty()).unwrap_or(false) {
                return Ok(cluster);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.stop().await;
        Err("the benchmark worker did not register within 10 s".into())
    }

    /// A client of this cluster (with its under-storage, if any), reading CACHE_PROMOTE.
    fn client(&self, short_circuit: bool) -> FileSystem {
        self.client_reading(short_circuit, crate::client::ReadType::CachePromote)
    }

    /// A client of this cluster reading with `read_type`.
    fn client_reading(&self, short_circuit: bool, read_type: crate::client::ReadType) -> FileSystem {
        let options = ClientOptions {
            retry: RetryPolicy { base_sleep: Duration::from_millis(20), max_sleep: Duration::from_millis(200), max_duration: Duration::from_secs(10) },
            block_size: BENCH_BLOCK_BYTES,
            short_circuit,
            chunk_bytes: 1 << 20,
            write_type: crate::client::WriteType::MustCache,
            read_type,
            security: SecurityOptions::simple_as(BENCH_SUPERUSER),
            request_timeout: Duration::from_secs(30),
            metadata_sync_interval_ms: 0,
        };
        match &self.data_ufs {
            Some(ufs) => FileSystem::with_under_fs(options, self.coordinator.clone(), ufs.clone()),
            None => FileSystem::new(options, self.coordinator.clone()),
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Block size of the benchmarks' files.
const BENCH_BLOCK_BYTES: u64 = 16 << 20;

/// Sizes of an under-storage benchmark run.
#[derive(Clone, Debug)]
pub struct UfsBenchOptions {
    /// Concurrent journal writers.
    pub concurrency: usize,
    /// How long the journal append loop runs.
    pub duration: Duration,
    /// Size of each file read cold, directly and warm.
    pub file_bytes: usize,
    /// Files read in each read benchmark.
    pub files: usize,
}

/// Benchmarks one under-storage, in a scratch folder `<uri>/tachyon-bench-<pid>` removed
/// afterwards: journal appends against raw write+sync of the same bytes in the same number
/// of syncs; cold reads through tachyon (under-storage → worker → client) against direct
/// reads of the same files; warm reads against cold ones. Prints one line each.
pub async fn run_under_storage(uri: &str, ufs_options: &crate::underfs::UfsOptions, opts: UfsBenchOptions, out: &mut dyn Write) -> Result<(), String> {
    let base = crate::underfs::open(uri, ufs_options).map_err(|e| format!("{uri}: {e}"))?;
    let scratch = format!("tachyon-bench-{}", std::process::id());
    let open = |sub: &str| {
        let at = format!("{}/{scratch}/{sub}", uri.trim_end_matches('/'));
        crate::underfs::open(&at, ufs_options).map_err(|e| format!("{at}: {e}"))
    };
    let ufs = UfsUnderTest { journal: open("journal")?, raw: open("raw")?, cluster_journal: open("cluster-journal")?, data: open("data")? };
    let _ = writeln!(
        out,
        "tachyon bench --ufs: {} ({} writers, {:?}; {} files of {} read)",
        base.describe(),
        opts.concurrency,
        opts.duration,
        opts.files,
        crate::shell::format_bytes(opts.file_bytes as u64)
    );
    let result = ufs_benchmarks(&ufs, &opts, out).await;
    if let Err(e) = crate::underfs::remove_tree(&*base, &scratch, 1_000_000).await {
        let _ = writeln!(out, "could not remove all of {scratch} in {}: {e}", base.describe());
    }
    result
}

/// The folders of one under-storage benchmark run.
struct UfsUnderTest {
    journal: Arc<dyn UnderFs>,
    raw: Arc<dyn UnderFs>,
    cluster_journal: Arc<dyn UnderFs>,
    data: Arc<dyn UnderFs>,
}

async fn ufs_benchmarks(ufs: &UfsUnderTest, opts: &UfsBenchOptions, out: &mut dyn Write) -> Result<(), String> {
    let (journal_ufs, raw_ufs, data_ufs) = (&ufs.journal, &ufs.raw, &ufs.data);
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    // ── journal appends vs raw write+sync of the same bytes in as many syncs ──
    let journal = Journal::new(journal_ufs.clone(), JournalLimits::default());
    let (append, writer) = journal_appender(&journal).await?;
    let (appended, journal_secs) = run_loop(&append, opts.concurrency, opts.duration, &Arc::default()).await;
    let syncs = writer.durability().syncs.max(1);
    writer.close().await;
    let journal_bytes: u64 = journal_ufs.list_status("logs").await.map_err(|e| err("list the journal", &e))?.iter().map(|e| e.length).sum();
    let chunk = vec![0x5au8; (journal_bytes / syncs).max(1) as usize];
    let start = Instant::now();
    let mut raw = raw_ufs.create("raw.log").await.map_err(|e| err("create raw.log", &e))?;
    for _ in 0..syncs {
        raw.write(&chunk).await.map_err(|e| err("write raw.log", &e))?;
        raw.sync().await.map_err(|e| err("sync raw.log", &e))?;
    }
    raw.close().await.map_err(|e| err("close raw.log", &e))?;
    let raw_secs = start.elapsed().as_secs_f64();
    let _ = writeln!(out, "journal: {} operations in {syncs} group commits, {} written", appended, crate::shell::format_bytes(journal_bytes));
    let kbps = |bytes: u64, secs: f64| bytes as f64 / secs.max(1e-9) / 1e3;
    line(
        out,
        "journal append (group commit + sync)",
        kbps(journal_bytes, journal_secs),
        "KB/s",
        "raw write+sync, same bytes and syncs",
        kbps(chunk.len() as u64 * syncs, raw_secs),
    );
    let mbps = |bytes: u64, secs: f64| bytes as f64 / secs.max(1e-9) / 1e6;

    // ── cold reads through tachyon vs direct reads; warm vs cold ──
    let shm = std::path::Path::new("/dev/shm");
    let tmp = std::env::temp_dir();
    let ram_dir = tempfile_dir(if shm.is_dir() { shm } else { &tmp })?;
    let total = (opts.file_bytes * opts.files) as u64;
    let cluster = BenchCluster::start(ufs.cluster_journal.clone(), Some(data_ufs.clone()), memory_tier(ram_dir.path(), total * 2 + (64 << 20))).await?;
    let result = async {
        let content: Vec<u8> = (0..opts.file_bytes).map(|i| (i * 131 % 251) as u8).collect();
        for i in 0..opts.files {
            let mut w = data_ufs.create(&format!("cold/{i}")).await.map_err(|e| err("write a file to read", &e))?;
            w.write(&content).await.map_err(|e| err("write a file to read", &e))?;
            w.close().await.map_err(|e| err("write a file to read", &e))?;
        }
        let start = Instant::now();
        for i in 0..opts.files {
            let direct = data_ufs.read(&format!("cold/{i}")).await.map_err(|e| err("direct read", &e))?;
            check_read("direct read", &direct, &content)?;
        }
        let direct_secs = start.elapsed().as_secs_f64();
        let fs = cluster.client(true);
        let read_all = |what: &'static str| {
            let fs = fs.clone();
            let content = &content;
            async move {
                let start = Instant::now();
                for i in 0..opts.files {
                    let back = fs.read_file(&format!("/cold/{i}")).await.map_err(|e| format!("{what}: {e}"))?;
                    check_read(what, &back, content)?;
                }
                Ok::<f64, String>(start.elapsed().as_secs_f64())
            }
        };
        let cold_secs = read_all("cold read").await?;
        let warm_secs = read_all("warm read").await?;
        line(
            out,
            "cold read via tachyon (ufs → worker → client)",
            mbps(total, cold_secs),
            "MB/s",
            "direct read from the under-storage",
            mbps(total, direct_secs),
        );
        line(out, "warm read via tachyon (memory tier)", mbps(total, warm_secs), "MB/s", "cold read via tachyon", mbps(total, cold_secs));
        Ok(())
    }
    .await;
    cluster.stop().await;
    result
}

fn check_read(what: &str, got: &[u8], expected: &[u8]) -> Result<(), String> {
    if got != expected {
        return Err(format!("{what}: read {} bytes that differ from the {} written", got.len(), expected.len()));
    }
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
