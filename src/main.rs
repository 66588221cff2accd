//! The `tachyon` command: runs masters and workers, the `fs` shell, and the admin tools
//! (`format`, `readJournal`, `getConf`, `runTests`). `bin/tachyon` wraps it after sourcing
//! `conf/tachyon-env.sh`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tachyon::config::{Config, ConfigInputs, Role};
use tachyon::journal::{DumpItem, Journal, JournalLimits};
use tachyon::shell::{self, ShellError};

#[derive(Parser)]
#[command(name = "tachyon", version, about = "Fault-tolerant memory-speed distributed file system")]
struct Cli {
    /// Set a configuration key for this command (e.g. -Dtachyon.master.hostname=h1).
    #[arg(short = 'D', value_name = "KEY=VALUE", global = true)]
    defines: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a master process.
    Master,
    /// Run a worker process.
    Worker,
    /// File system shell.
    Fs {
        #[command(subcommand)]
        command: FsCommand,
    },
    /// Run the S3-compatible gateway (port 39999): buckets are top-level directories.
    Proxy,
    /// Mount tachyon as a local file system (FUSE), or unmount it.
    Fuse {
        #[command(subcommand)]
        command: FuseCommand,
    },
    /// Create an empty journal (refuses to wipe a non-empty one without -f).
    Format {
        #[arg(short = 'f', conflicts_with = "if_unformatted")]
        force: bool,
        /// Format only a journal folder never formatted; leave a formatted one as it is
        /// (safe for several masters starting at once, e.g. Kubernetes init containers).
        #[arg(long)]
        if_unformatted: bool,
    },
    /// Print the journal's checkpoints and entries.
    #[command(name = "readJournal")]
    ReadJournal,
    /// Print the effective configuration (one key, or all with their sources).
    #[command(name = "getConf")]
    GetConf {
        key: Option<String>,
        /// Also print where the value came from.
        #[arg(long)]
        source: bool,
        /// Load the configuration as this process does: master, worker or client (the
        /// default); each reads its own *_JAVA_OPTS and launch host name.
        #[arg(long, value_parser = ["master", "worker", "client"], default_value = "client")]
        role: String,
    },
    /// Write, read back and verify test files against the running cluster.
    #[command(name = "runTests")]
    RunTests,
    /// Measure throughput against same-run baselines (starts its own master and worker).
    Bench {
        /// Concurrent requests in the metadata benchmarks.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds each timed loop runs.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Journal entries in the replay benchmark.
        #[arg(long, default_value_t = 200_000)]
        replay_entries: u64,
        /// Megabytes read in the block-read benchmark (with --ufs: the size of each file read).
        #[arg(long, default_value_t = 64)]
        read_mb: usize,
        /// Benchmark an under-storage instead: journal appends vs raw write+sync, cold reads
        /// vs direct reads, warm vs cold. Takes a URI, or uses tachyon.underfs.address.
        #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "URI")]
        ufs: Option<String>,
        /// Files in the metadata-at-scale benchmark (default 1,000,000; 0 skips it); with
        /// --ufs: files read in each read benchmark (default 4).
        #[arg(long)]
        files: Option<u64>,
        /// Measure failover instead: start 3 masters electing through the ZooKeeper at
        /// tachyon.zookeeper.address, kill -9 the leader N times and stop it gracefully N
        /// times, and print fault -> first acknowledged write (p50/p99/max).
        #[arg(long, value_name = "N")]
        failover: Option<usize>,
    },
}

#[derive(Subcommand)]
enum FuseCommand {
    /// Mount a tachyon directory (default /) at MOUNT_POINT, an existing empty directory.
    /// Runs in the background (log: logs/fuse_<mount point>.log) unless --foreground.
    Mount {
        mount_point: PathBuf,
        #[arg(default_value = "/")]
        path: String,
        /// Serve in this process until unmounted.
        #[arg(long)]
        foreground: bool,
    },
    /// Unmount a tachyon FUSE mount.
    Unmount { mount_point: PathBuf },
}

#[derive(Subcommand)]
enum FsCommand {
    /// List a directory.
    Ls {
        #[arg(short = 'R')]
        recursive: bool,
        #[arg(default_value = "/")]
        path: String,
    },
    /// Create directories (and their parents).
    Mkdir { paths: Vec<String> },
    /// Copy a local file or folder into tachyon.
    #[command(name = "copyFromLocal")]
    CopyFromLocal {
        /// MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH (default: tachyon.user.file.writetype.default)
        #[arg(long = "writeType")]
        write_type: Option<String>,
        src: PathBuf,
        dst: String,
    },
    /// Copy a tachyon file or directory to the local file system.
    #[command(name = "copyToLocal")]
    CopyToLocal { src: String, dst: PathBuf },
    /// Print a file.
    Cat { path: String },
    /// Remove a file, or a directory with -R.
    Rm {
        #[arg(short = 'R')]
        recursive: bool,
        path: String,
    },
    /// Move or rename.
    Mv { src: String, dst: String },
    /// Show a file's or directory's status and block locations.
    Stat { path: String },
    /// Show sizes below a path.
    Du { path: String },
    /// Create an empty file.
    Touch { path: String },
    /// Free a file's data from memory (only data persisted in under-storage).
    Free {
        #[arg(short = 'R')]
        recursive: bool,
        path: String,
    },
    /// Mount an under-storage at a new directory (no arguments: list the mount points).
    Mount {
        /// An under-storage setting for this mount only, e.g. s3a.accessKeyId=... (repeatable)
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        path: Option<String>,
        uri: Option<String>,
    },
    /// Unmount a mount point (its files stay in the under-storage).
    Unmount { path: String },
    /// Pin a file, or a directory and everything below it: its blocks are never evicted.
    Pin { path: String },
    /// Unpin a file or directory.
    Unpin { path: String },
    /// Change the mode: octal (755, 1777) or symbolic (u+x,go-w, a=r, +t); the owner or a superuser.
    Chmod {
        #[arg(short = 'R')]
        recursive: bool,
        mode: String,
        path: String,
    },
    /// Change the owner (and with OWNER:GROUP the group); superusers only.
    Chown {
        #[arg(short = 'R')]
        recursive: bool,
        owner: String,
        path: String,
    },
    /// Change the group; the owner (into a group it is in) or a superuser.
    Chgrp {
        #[arg(short = 'R')]
        recursive: bool,
        group: String,
        path: String,
    },
    /// Delete (or free) a file or directory once this many milliseconds have passed since its creation.
    #[command(name = "setTtl")]
    SetTtl {
        path: String,
        ttl_ms: i64,
        /// delete (the default) or free (persisted data only)
        #[arg(long, default_value = "delete")]
        action: String,
    },
    /// Remove a file's or directory's TTL.
    #[command(name = "unsetTtl")]
    UnsetTtl { path: String },
    /// Copy files to the under-storage now (and record them persisted).
    Persist { paths: Vec<String> },
    /// Bring a file's blocks into memory, reading from the under-storage what no worker holds.
    Load { path: String },
    /// List persisted files whose under-storage copy is missing or changed (exit 1 if any).
    #[command(name = "checkConsistency")]
    CheckConsistency { path: String },
    /// Cluster capacity and workers.
    Report,
    /// The leader master's address.
    Leader,
    /// Every master with its role, epoch and journal position.
    #[command(name = "masterInfo")]
    MasterInfo,
}

fn init_logging(default_level: &str) {
    let filter = std::env::var("TACHYON_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| default_level.to_string());
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_writer(std::io::stderr).with_ansi(false).try_init();
}

fn load_config(role: Role, defines: &[String]) -> Result<Config, String> {
    let cfg = Config::load(&ConfigInputs::from_process(role, defines.to_vec())).map_err(|e| e.to_string())?;
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the bench until it ends or the process is told to stop (its scratch folders are
/// removed either way). A stop during the FUSE lines lets them finish and unmount first:
/// exiting while this process's threads wait on its own mount would hang it for good.
async fn interruptible_bench(bench: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::pin!(bench);
    tokio::select! {
        result = &mut bench => return result,
        () = shutdown_signal() => {}
    }
    if tachyon::bench::fuse::mounted() {
        eprintln!("stopping: letting the FUSE lines finish and unmount first");
    }
    while tachyon::bench::fuse::mounted() {
        tokio::select! {
            result = &mut bench => return result.and(Err("stopped".into())),
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
    Err("stopped".into())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Master => {
            init_logging("info");
            run_master(&cli.defines).await
        }
        Command::Worker => {
            init_logging("info");
            run_worker(&cli.defines).await
        }
        Command::Fs { command } => {
            init_logging("warn");
            run_fs(command, &cli.defines).await
        }
        Command::Proxy => {
            init_logging("info");
            run_proxy(&cli.defines).await
        }
        Command::Fuse { command: FuseCommand::Mount { mount_point, path, foreground: true } } => {
            init_logging("info");
            fuse_serve(&mount_point, &path, &cli.defines).await
        }
        Command::Fuse { command: FuseCommand::Mount { mount_point, path, foreground: false } } => {
            init_logging("warn");
            fuse_mount_in_background(&mount_point, &path, &cli.defines).await
        }
        Command::Fuse { command: FuseCommand::Unmount { mount_point } } => {
            init_logging("warn");
            tachyon::fuse::unmount(&mount_point)
        }
        Command::Format { force, if_unformatted } => {
            init_logging("warn");
            format(force, if_unformatted, &cli.defines).await
        }
        Command::ReadJournal => {
            init_logging("warn");
            read_journal(&cli.defines).await
        }
        Command::GetConf { key, source, role } => {
            init_logging("warn");
            let role = match role.as_str() {
                "master" => Role::Master,
                "worker" => Role::Worker,
                _ => Role::Client,
            };
            get_conf(key, source, role, &cli.defines)
        }
        Command::RunTests => {
            init_logging("warn");
            run_tests(&cli.defines).await
        }
        Command::Bench { concurrency, seconds, replay_entries, read_mb, ufs, files, failover } => {
            init_logging("error");
            let duration = std::time::Duration::from_secs_f64(seconds.clamp(0.1, 600.0));
            match (ufs, failover) {
                (_, Some(trials)) => bench_failover(trials, &cli.defines).await,
                (Some(uri), None) => bench_under_storage(uri, concurrency, duration, read_mb, files.unwrap_or(4) as usize, &cli.defines).await,
                (None, None) => {
                    let opts = tachyon::bench::BenchOptions {
                        concurrency: concurrency.clamp(1, 1024),
                        duration,
                        replay_entries: replay_entries.clamp(1000, 50_000_000),
                        read_bytes: read_mb.clamp(1, 4096) << 20,
                        scale_files: files.unwrap_or(1_000_000).min(100_000_000),
                    };
                    interruptible_bench(tachyon::bench::run(opts, &mut std::io::stdout())).await
                }
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("Error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `proxy`: the S3 gateway, a client of the cluster, until the process is stopped.
#[cfg(feature = "proxy")]
async fn run_proxy(defines: &[String]) -> Result<(), String> {
    use tachyon::config::{PROXY_ACCESS_KEY, PROXY_BIND_HOST, PROXY_HOSTNAME, PROXY_MULTIPART_EXPIRY, PROXY_PORT, PROXY_SECRET_KEY};
    let cfg = load_config(Role::Client, defines)?;
    let bind_host = cfg.bind_host(PROXY_BIND_HOST, PROXY_HOSTNAME);
    let bind = format!("{bind_host}:{}", cfg.port(PROXY_PORT));
    let bind: std::net::SocketAddr = tokio::net::lookup_host(&bind)
        .await
        .map_err(|e| format!("{PROXY_BIND_HOST}: cannot resolve {bind}: {e}"))?
        .next()
        .ok_or_else(|| format!("{PROXY_BIND_HOST}: {bind} resolves to nothing"))?;
    // Fail at start, not at the first request, if the port is taken.
    drop(std::net::TcpListener::bind(bind).map_err(|e| format!("{PROXY_PORT}: cannot listen on {bind}: {e}"))?);
    let credentials = match (cfg.string(PROXY_ACCESS_KEY), cfg.string(PROXY_SECRET_KEY)) {
        (a, s) if a.is_empty() && s.is_empty() => None,
        (a, s) if a.is_empty() || s.is_empty() => return Err(format!("set both {PROXY_ACCESS_KEY} and {PROXY_SECRET_KEY}, or neither")),
        (a, s) => Some((a, s)),
    };
    let multipart_expiry_ms = cfg.duration_ms(PROXY_MULTIPART_EXPIRY);
    if multipart_expiry_ms == 0 {
        return Err(format!("{PROXY_MULTIPART_EXPIRY} must be longer than 0: every upload in progress would be aborted"));
    }
    let fs = tachyon::client::FileSystem::from_config(&cfg).map_err(|e| e.to_string())?;
    let tls = tachyon::security::SecurityOptions::from_config(&cfg).map_err(|e| e.to_string())?.tls;
    let options = tachyon::proxy::ProxyOptions { bind, credentials, tls, multipart_expiry_ms };
    tokio::select! {
        () = tachyon::proxy::serve(options, fs) => Err(format!("the S3 gateway stopped serving on {bind}")),
        () = shutdown_signal() => Ok(()),
    }
}

#[cfg(not(feature = "proxy"))]
async fn run_proxy(_defines: &[String]) -> Result<(), String> {
    Err("this tachyon was built without the S3 gateway (cargo feature `proxy`)".into())
}

/// `fuse mount --foreground`: checks the mount point and the tachyon directory, mounts,
/// and serves FUSE calls until the mount is unmounted.
async fn fuse_serve(mount_point: &std::path::Path, path: &str, defines: &[String]) -> Result<(), String> {
    tachyon::fuse::check_mount_point(mount_point)?;
    let cfg = load_config(Role::Client, defines)?;
    let fs = tachyon::client::FileSystem::from_config(&cfg).map_err(|e| e.to_string())?;
    let root = fs.get_status(path).await.map_err(|e| format!("cannot mount {path}: {e}"))?;
    if !root.is_directory {
        return Err(format!("cannot mount {path}: not a directory"));
    }
    let options = tachyon::fuse::FuseOptions {
        root: root.path.clone(),
        metadata_cache: std::time::Duration::from_millis(cfg.duration_ms(tachyon::config::FUSE_METADATA_CACHE)),
    };
    let fuse = tachyon::fuse::TachyonFuse::new(fs, tokio::runtime::Handle::current(), options);
    let mount_point = mount_point.to_path_buf();
    tracing::info!(mount_point = %mount_point.display(), path = %root.path, "mounting");
    let served = tokio::task::spawn_blocking(move || tachyon::fuse::serve(fuse, &mount_point)).await.map_err(|e| e.to_string())?;
    tracing::info!("unmounted");
    served
}

/// `fuse mount`: starts `fuse mount --foreground` in the background (its own process group,
/// output to a log file) and returns once the mount is there, or with the reason it failed.
async fn fuse_mount_in_background(mount_point: &std::path::Path, path: &str, defines: &[String]) -> Result<(), String> {
    tachyon::fuse::check_mount_point(mount_point)?;
    let cfg = load_config(Role::Client, defines)?;
    let mount_point = mount_point.canonicalize().map_err(|e| format!("mount point {}: {e}", mount_point.display()))?;
    let log = tachyon::fuse::log_path(std::path::Path::new(&cfg.string(tachyon::config::HOME)), &mount_point);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .args(defines.iter().map(|d| format!("-D{}", d.trim_start_matches("-D"))))
        .args(["fuse", "mount", "--foreground"])
        .arg(&mount_point)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())?;
    for _ in 0..300 {
        if tachyon::fuse::is_mounted(&mount_point) {
            println!("Mounted tachyon {path} at {} (pid {}, log {})", mount_point.display(), child.id(), log.display());
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let reason = text.lines().rev().find(|l| l.contains("Error") || l.contains("ERROR")).unwrap_or("no reason logged").trim().to_string();
            return Err(format!("the FUSE process exited ({status}) before mounting: {reason} (log: {})", log.display()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    Err(format!("{} was not mounted within 15 s (log: {})", mount_point.display(), log.display()))
}

/// `bench --failover N`: failover times of 3 masters on the configured ZooKeeper.
async fn bench_failover(trials: usize, defines: &[String]) -> Result<(), String> {
    let cfg = load_config(Role::Client, defines)?;
    let zookeeper = cfg.string(tachyon::config::ZOOKEEPER_ADDRESS);
    if zookeeper.is_empty() {
        return Err(format!(
            "bench --failover needs a ZooKeeper: set {} (e.g. -D{}=127.0.0.1:2181)",
            tachyon::config::ZOOKEEPER_ADDRESS,
            tachyon::config::ZOOKEEPER_ADDRESS
        ));
    }
    let opts = tachyon::bench::failover::FailoverBenchOptions {
        trials: trials.clamp(1, 1000),
        program: std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?,
        zookeeper,
        session_timeout: std::time::Duration::from_millis(cfg.duration_ms(tachyon::config::ZOOKEEPER_SESSION_TIMEOUT)),
        defines: defines.to_vec(),
    };
    tachyon::bench::failover::run(opts, &std::env::temp_dir(), &mut std::io::stdout()).await
}

/// `bench --ufs [URI]`: the under-storage benchmarks on URI or `tachyon.underfs.address`.
async fn bench_under_storage(
    uri: String,
    concurrency: usize,
    duration: std::time::Duration,
    file_mb: usize,
    files: usize,
    defines: &[String],
) -> Result<(), String> {
    let cfg = load_config(Role::Client, defines)?;
    let uri = if uri.is_empty() { cfg.string(tachyon::config::DATA_FOLDER) } else { uri };
    let opts = tachyon::bench::UfsBenchOptions {
        concurrency: concurrency.clamp(1, 1024),
        duration,
        file_bytes: file_mb.clamp(1, 4096) << 20,
        files: files.clamp(1, 64),
    };
    tachyon::bench::run_under_storage(&uri, &tachyon::underfs::UfsOptions::from_config(&cfg), opts, &mut std::io::stdout()).await
}

async fn run_master(defines: &[String]) -> Result<(), String> {
    let cfg = load_config(Role::Master, defines)?;
    start_checks(&cfg, tachyon::startup::Process::Master)?;
    let options = tachyon::master::MasterOptions::from_config(&cfg).map_err(|e| e.to_string())?;
    if cfg.bool(tachyon::config::ZOOKEEPER_ENABLED) && cfg.string(tachyon::config::ZOOKEEPER_AUTH_DIGEST).is_empty() {
        tracing::warn!(
            "{} is not set: anyone who reaches ZooKeeper can change tachyon's election, leader and epoch nodes",
            tachyon::config::ZOOKEEPER_AUTH_DIGEST
        );
    }
    let tls = options.security.tls.clone();
    if let Some(t) = &tls {
        t.server_identity().map_err(|e| e.to_string())?;
    }
    if options.security.auth_type != tachyon::security::AuthType::NoSasl && options.security.cluster_secret.is_empty() {
        tracing::warn!("{} is not set: anyone who reaches this master's port can register as a worker and commit blocks", tachyon::config::CLUSTER_SECRET);
    }
    let coordinator = tachyon::coordinator::from_config(&cfg).map_err(|e| e.to_string())?;
    let journal_ufs = open_journal_folder(&cfg)?;
    let web_bind =
        format!("{}:{}", cfg.bind_host(tachyon::config::MASTER_WEB_BIND_HOST, tachyon::config::MASTER_HOSTNAME), cfg.port(tachyon::config::MASTER_WEB_PORT));
    // The web UI and background persistence read the cluster like any client: through the
    // coordinator; the client also holds the under-storage for file data.
    let fs = tachyon::client::FileSystem::from_config(&cfg).map_err(|e| e.to_string())?;
    let node = std::sync::Arc::new(
        tachyon::master::node::MasterNode::new(options, tachyon::runtime::system_clock(), coordinator, journal_ufs).with_under_storage(fs.clone()),
    );
    let ui = std::sync::Arc::new(tachyon::web::MasterUi::new(node.clone(), std::sync::Arc::new(cfg), fs));
    let bind = tachyon::master::service::resolve(&web_bind).await.map_err(|e| e.to_string())?;
    tokio::spawn(tachyon::web::serve(bind, tachyon::web::master_router(ui), "master", tls));
    tachyon::master::node::run_node(node, shutdown_signal()).await.map_err(|e| e.to_string())
}

/// The start-up checks of a master or worker: a problem stops it with one line.
fn start_checks(cfg: &Config, process: tachyon::startup::Process) -> Result<(), String> {
    for warning in tachyon::startup::check(cfg, process)? {
        tracing::warn!("{warning}");
    }
    Ok(())
}

async fn run_worker(defines: &[String]) -> Result<(), String> {
    let cfg = load_config(Role::Worker, defines)?;
    start_checks(&cfg, tachyon::startup::Process::Worker)?;
    let options = tachyon::worker::WorkerOptions::from_config(&cfg).map_err(|e| e.to_string())?;
    let coordinator = tachyon::coordinator::from_config(&cfg).map_err(|e| e.to_string())?;
    tachyon::worker::run_worker(options, coordinator, shutdown_signal()).await.map_err(|e| e.to_string())
}

/// The under-storage of `tachyon.master.journal.folder`.
fn open_journal_folder(cfg: &Config) -> Result<std::sync::Arc<dyn tachyon::underfs::UnderFs>, String> {
    let folder = cfg.string(tachyon::config::JOURNAL_FOLDER);
    tachyon::underfs::open(&folder, &tachyon::underfs::UfsOptions::from_config(cfg)).map_err(|e| format!("cannot open the journal folder {folder}: {e}"))
}

fn journal_of(cfg: &Config) -> Result<Journal, String> {
    Ok(Journal::new(open_journal_folder(cfg)?, JournalLimits::default()))
}

async fn format(force: bool, if_unformatted: bool, defines: &[String]) -> Result<(), String> {
    let cfg = load_config(Role::Master, defines)?;
    let journal = journal_of(&cfg)?;
    if if_unformatted {
        if !journal.format_if_unformatted().await.map_err(|e| e.to_string())? {
            println!("Journal at {} is already formatted; left as it is", journal.folder());
            return Ok(());
        }
    } else {
        journal.format(force).await.map_err(|e| e.to_string())?;
    }
    println!("Formatted journal at {}", journal.folder());
    Ok(())
}

/// A journal entry as `readJournal` prints it: a mount's secret options (credentials) masked.
fn with_secrets_masked(kind: &tachyon::proto::journal_entry::Kind) -> tachyon::proto::journal_entry::Kind {
    let mut kind = kind.clone();
    if let tachyon::proto::journal_entry::Kind::Mount(m) = &mut kind {
        for (key, value) in m.options.iter_mut() {
            if tachyon::config::is_secret_key(key) {
                *value = "******".into();
            }
        }
    }
    kind
}

async fn read_journal(defines: &[String]) -> Result<(), String> {
    let cfg = load_config(Role::Master, defines)?;
    let journal = journal_of(&cfg)?;
    let mut out = std::io::stdout().lock();
    let mut problems = 0;
    for (file, item) in journal.dump().await.map_err(|e| e.to_string())? {
        match item {
            Ok(DumpItem::Checkpoint(cp)) => {
                let _ = writeln!(out, "== {file}: checkpoint of {} inodes, next entry {}, epoch {}", cp.inodes.len(), cp.next_sequence, cp.epoch);
            }
            Ok(DumpItem::Segment(seg)) => {
                let _ = writeln!(out, "== {file}: {} entries", seg.entries.len());
                for e in &seg.entries {
                    let kind = e.kind.as_ref().map(|k| format!("{:?}", with_secrets_masked(k))).unwrap_or_else(|| "<unknown kind>".into());
                    let _ = writeln!(out, "{:>8} epoch {:<4} {kind}", e.sequence, e.epoch);
                }
                if let Some((problem, offset)) = seg.problem {
                    problems += 1;
                    let _ = writeln!(out, "   !! stops at byte {offset}: {problem}");
                }
            }
            Err(e) => {
                problems += 1;
                let _ = writeln!(out, "== {file}: ERROR {e}");
            }
        }
    }
    if problems > 0 {
        let _ = writeln!(out, "{problems} file(s) end in damaged or torn data (a torn tail of the open segment is normal after a crash)");
    }
    Ok(())
}

fn get_conf(key: Option<String>, source: bool, role: Role, defines: &[String]) -> Result<(), String> {
    let cfg = load_config(role, defines)?;
    match key {
        Some(k) => {
            let (value, src) = cfg.get_with_source(&k).ok_or_else(|| format!("unknown configuration key {k}"))?;
            // A credential is never printed, not even when asked for by name.
            let value = if tachyon::config::is_secret_key(&k) && !value.is_empty() { "******" } else { value.as_str() };
            if source {
                println!("{value} ({src})");
            } else {
                println!("{value}");
            }
        }
        None => {
            for (k, v, src) in cfg.entries() {
                println!("{k}={v}  ({src})");
            }
        }
    }
    Ok(())
}

async fn run_tests(defines: &[String]) -> Result<(), String> {
    let cfg = load_config(Role::Client, defines)?;
    let fs = tachyon::client::FileSystem::from_config(&cfg).map_err(|e| e.to_string())?;
    let run_id = tachyon::runtime::system_clock().now_ms();
    let (_, failed) = shell::run_tests(&fs, &mut std::io::stdout(), run_id).await.map_err(|e| e.to_string())?;
    if failed > 0 {
        return Err(format!("{failed} test(s) failed"));
    }
    Ok(())
}

async fn run_fs(command: FsCommand, defines: &[String]) -> Result<(), String> {
    let cfg = load_config(Role::Client, defines)?;
    let fs = tachyon::client::FileSystem::from_config(&cfg).map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout().lock();
    let out: &mut dyn Write = &mut stdout;
    let result: Result<(), ShellError> = match command {
        FsCommand::Ls { recursive, path } => shell::ls(&fs, &path, recursive, out).await,
        FsCommand::Mkdir { paths } => shell::mkdir(&fs, &paths, out).await,
        FsCommand::CopyFromLocal { write_type, src, dst } => match write_type.as_deref().map(tachyon::client::WriteType::parse).transpose() {
            Ok(write_type) => shell::copy_from_local(&fs, &src, &dst, write_type, out).await,
            Err(e) => Err(e.into()),
        },
        FsCommand::CopyToLocal { src, dst } => shell::copy_to_local(&fs, &src, &dst, out).await,
        FsCommand::Cat { path } => shell::cat(&fs, &path, out).await,
        FsCommand::Rm { recursive, path } => shell::rm(&fs, &path, recursive, out).await,
        FsCommand::Mv { src, dst } => shell::mv(&fs, &src, &dst, out).await,
        FsCommand::Stat { path } => shell::stat(&fs, &path, out).await,
        FsCommand::Du { path } => shell::du(&fs, &path, out).await,
        FsCommand::Touch { path } => shell::touch(&fs, &path, out).await,
        FsCommand::Free { recursive, path } => shell::free(&fs, &path, recursive, out).await,
        FsCommand::Mount { options, path, uri } => match (path.as_deref(), uri.as_deref()) {
            (Some(path), Some(uri)) => shell::mount(&fs, Some((path, uri)), &options, out).await,
            (None, None) => shell::mount(&fs, None, &options, out).await,
            _ => Err(ShellError::Usage("usage: fs mount [--option KEY=VALUE]... PATH URI (or no arguments to list)".into())),
        },
        FsCommand::Unmount { path } => shell::unmount(&fs, &path, out).await,
        FsCommand::Pin { path } => shell::pin(&fs, &path, true, out).await,
        FsCommand::Unpin { path } => shell::pin(&fs, &path, false, out).await,
        FsCommand::Chmod { recursive, mode, path } => shell::chmod(&fs, &mode, &path, recursive, out).await,
        FsCommand::Chown { recursive, owner, path } => shell::chown(&fs, &owner, &path, recursive, out).await,
        FsCommand::Chgrp { recursive, group, path } => shell::chgrp(&fs, &group, &path, recursive, out).await,
        FsCommand::SetTtl { path, ttl_ms, action } => match shell::parse_ttl_action(&action) {
            Ok(action) => shell::set_ttl(&fs, &path, Some((ttl_ms, action)), out).await,
            Err(e) => Err(e),
        },
        FsCommand::UnsetTtl { path } => shell::set_ttl(&fs, &path, None, out).await,
        FsCommand::Persist { paths } => shell::persist(&fs, &paths, out).await,
        FsCommand::Load { path } => shell::load(&fs, &path, out).await,
        FsCommand::CheckConsistency { path } => shell::check_consistency(&fs, &path, out).await,
        FsCommand::Report => shell::report(&fs, out).await,
        FsCommand::Leader => shell::leader(&fs, out).await,
        FsCommand::MasterInfo => shell::master_info(&fs, out).await,
    };
    let _ = out.flush();
    result.map_err(|e| e.to_string())
}
