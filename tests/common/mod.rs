//! A real single-master cluster of `tachyon` processes on loopback, for integration tests.

#![allow(dead_code)]

pub mod http;
pub mod underfs;
pub mod zk;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use std::sync::Arc;
use tachyon::client::{ClientOptions, FileSystem};

use tachyon::coordinator::zookeeper::{ZkCoordinator, ZkOptions};
use tachyon::coordinator::{Coordinator, StaticCoordinator};
use tachyon::rpc::RetryPolicy;

/// The binary under test.
pub fn tachyon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tachyon")
}

/// A raw gRPC client of one master that names the test's user (SIMPLE), as the library does.
pub type RawMaster = tachyon::proto::master_service_client::MasterServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>>,
>;

/// Adds the SIMPLE identity of this process's user to a raw request.
fn identify(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let signed = tachyon::security::SecurityOptions::simple_as(&tachyon::client::current_user()).sign_client(());
    for key in [tachyon::security::AUTH_TYPE_HEADER, tachyon::security::USER_HEADER] {
        if let Some(v) = signed.metadata().get(key) {
            request.metadata_mut().insert(key, v.clone());
        }
    }
    Ok(request)
}

/// A raw client of the master at `address` (connects with a 3 s timeout).
pub async fn raw_master_at(address: &str) -> RawMaster {
    let channel = tachyon::rpc::connect(address, Duration::from_secs(3), None).await.unwrap();
    tachyon::proto::master_service_client::MasterServiceClient::with_interceptor(channel, identify as fn(_) -> _)
}

/// A TCP port free on every loopback address, never handed out twice by this test process
/// (see [`tachyon::bench::unused_port`]).
pub fn free_port() -> u16 {
    tachyon::bench::unused_port().expect("a free port for a test server")
}

/// Masters and workers, each a child process: one master with a static address, or
/// several elected through ZooKeeper.
pub struct Cluster {
    pub home: tempfile::TempDir,
    /// The first master's port (the only one without ZooKeeper).
    pub master_port: u16,
    /// (rpc port, extra `-D` options, process) of each master. Master `i` serves on
    /// 127.0.0.`i+1`: with ZooKeeper every master uses the same port on its own address.
    masters: Vec<(u16, Vec<String>, Option<Child>)>,
    /// ZooKeeper connect string when masters are elected.
    zookeeper: Option<String>,
    /// The masters' web UI port (each master on its own loopback address).
    pub web_port: u16,
    /// `-D` options every process gets after the defaults (journal folder, credentials).
    extra_defines: Vec<String>,
    /// (rpc port, data port, web port, process) of each worker; ports stay fixed across restarts.
    workers: Vec<(u16, u16, u16, Option<Child>)>,
}

impl Cluster {
    /// Formats a journal and starts a master (no workers yet).
    pub fn start() -> Cluster {
        Self::start_with(None, 1, Vec::new())
    }

    /// As [`Cluster::start`], every process also getting `extra_defines`.
    pub fn start_with_defines(extra_defines: Vec<String>) -> Cluster {
        Self::start_with(None, 1, extra_defines)
    }

    /// Formats a journal and starts `masters` masters that elect a leader through the
    /// ZooKeeper at `servers` (no workers yet).
    pub fn start_ha(servers: &str, masters: usize) -> Cluster {
        Self::start_with(Some(servers.to_string()), masters, Vec::new())
    }

    /// As [`Cluster::start_ha`], every process also getting `extra_defines` (e.g. a journal
    /// folder on HDFS or S3 and its credentials).
    pub fn start_ha_with(servers: &str, masters: usize, extra_defines: Vec<String>) -> Cluster {
        Self::start_with(Some(servers.to_string()), masters, extra_defines)
    }

    fn start_with(zookeeper: Option<String>, masters: usize, extra_defines: Vec<String>) -> Cluster {
        let home = tempfile::tempdir().unwrap();
        let port = free_port();
        let ports: Vec<u16> = vec![port; masters];
        let mut c = Cluster {
            home,
            master_port: port,
            masters: ports.into_iter().map(|p| (p, Vec::new(), None)).collect(),
            zookeeper,
            web_port: free_port(),
            extra_defines,
            workers: Vec::new(),
        };
        let out = c.run(&["format"]);
        assert!(out.status.success(), "format failed: {}", String::from_utf8_lossy(&out.stderr));
        for i in 0..masters {
            c.start_master_at(i);
        }
        c
    }

    /// The `-D` options every process of this cluster gets.
    pub fn defines(&self) -> Vec<String> {
        let home = self.home.path().display();
        let mut d = vec![
            format!("-Dtachyon.master.hostname=127.0.0.1"),
            format!("-Dtachyon.master.port={}", self.master_port),
            format!("-Dtachyon.master.web.port={}", self.web_port),
            format!("-Dtachyon.master.journal.folder={home}/journal"),
            format!("-Dtachyon.worker.tieredstore.level0.dirs.path={home}/ram"),
            "-Dtachyon.worker.memory.size=256MB".into(),
            "-Dtachyon.worker.block.heartbeat.interval.ms=100".into(),
            "-Dtachyon.master.worker.timeout=1500ms".into(),
            "-Dtachyon.user.rpc.retry.max.duration=30s".into(),
        ];
        if let Some(servers) = &self.zookeeper {
            d.push("-Dtachyon.zookeeper.enabled=true".into());
            d.push(format!("-Dtachyon.zookeeper.address={servers}"));
            d.push("-Dtachyon.zookeeper.session.timeout=2s".into());
            d.push("-Dtachyon.master.journal.tailer.sleep.time=50ms".into());
        }
        d.extend(self.extra_defines.iter().cloned());
        d
    }

    /// Waits until some master serves as leader and every one of them answers; returns the
    /// leader's index.
    pub async fn serving_leader(&self) -> usize {
        let coordinator = self.coordinator();
        for _ in 0..300 {
            if let Ok(Some(address)) = coordinator.leader_address().await {
                // The named leader answers as leader (not a deposed master whose node lingers).
                if let Some(i) = self.master_index(&address) {
                    let info = self.impatient_client_of(i).master_info().await;
                    if info.is_ok_and(|info| info.masters.iter().any(|m| m.role == "leader")) {
                        return i;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader serves; logs in {}", self.path().display())
    }

    /// A client of master `i` alone that gives up after about a second.
    pub fn impatient_client_of(&self, i: usize) -> FileSystem {
        let mut options = self.client_of_master(i).options().clone();
        options.retry = RetryPolicy { base_sleep: Duration::from_millis(50), max_sleep: Duration::from_millis(200), max_duration: Duration::from_secs(1) };
        FileSystem::new(options, Arc::new(StaticCoordinator::new(self.master_address(i))))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tachyon_bin());
        cmd.env("TACHYON_HOME", self.home.path()).env_remove("TACHYON_JAVA_OPTS").env_remove("TACHYON_CONF_DIR").args(self.defines()).args(args);
        cmd
    }

    /// Runs a `tachyon` command against this cluster and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "tachyon {args:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new().create(true).append(true).open(self.home.path().join(name)).unwrap()
    }

    /// Starts the (first) master.
    pub fn start_master(&mut self) {
        self.start_master_at(0);
    }

    /// Adds and starts one more master that always gets the extra `-D` options.
    pub fn add_master_with(&mut self, extra: &[&str]) {
        self.masters.push((self.master_port, extra.iter().map(|s| s.to_string()).collect(), None));
        self.start_master_at(self.masters.len() - 1);
    }

    /// Starts master `i` with extra `-D` options it keeps across later restarts.
    pub fn start_master_with(&mut self, i: usize, extra: &[&str]) {
        self.masters[i].1 = extra.iter().map(|s| s.to_string()).collect();
        self.start_master_at(i);
    }

    /// How many masters this cluster has (running or not).
    pub fn master_count(&self) -> usize {
        self.masters.len()
    }

    /// Starts master `i`.
    pub fn start_master_at(&mut self, i: usize) {
        let log = self.log(&format!("master{i}.log"));
        let port = format!("-Dtachyon.master.port={}", self.masters[i].0);
        let host = format!("-Dtachyon.master.hostname={}", master_host(i));
        let child = self.command(&[&port, &host]).args(&self.masters[i].1).arg("master").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.masters[i].2 = Some(child);
    }

    /// The address master `i` serves on.
    pub fn master_address(&self, i: usize) -> String {
        format!("{}:{}", master_host(i), self.masters[i].0)
    }

    /// Master `i`'s web UI, `http://host:port`.
    pub fn master_web(&self, i: usize) -> String {
        format!("http://{}:{}", master_host(i), self.web_port)
    }

    /// Worker `i`'s web UI, `http://127.0.0.1:port`.
    pub fn worker_web(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.workers[i].2)
    }

    /// The index of the master serving at `address`.
    pub fn master_index(&self, address: &str) -> Option<usize> {
        (0..self.masters.len()).find(|i| self.master_address(*i) == address)
    }

    /// SIGKILLs the (first) master.
    pub fn kill_master(&mut self) {
        self.kill_master_at(0);
    }

    /// SIGKILLs master `i`.
    pub fn kill_master_at(&mut self, i: usize) {
        if let Some(mut m) = self.masters[i].2.take() {
            m.kill().unwrap();
            m.wait().unwrap();
        }
    }

    /// Sends `signal` (e.g. "STOP", "CONT", "TERM") to master `i`.
    pub fn signal_master(&self, i: usize, signal: &str) {
        let pid = self.masters[i].2.as_ref().expect("master is running").id().to_string();
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
    }

    /// SIGTERMs the (first) master and waits for it to exit; returns whether it exited cleanly.
    pub fn stop_master(&mut self) -> bool {
        self.stop_master_at(0)
    }

    /// SIGTERMs master `i` and waits for it to exit; returns whether it exited cleanly.
    pub fn stop_master_at(&mut self, i: usize) -> bool {
        if self.masters[i].2.is_none() {
            return true;
        }
        self.signal_master(i, "TERM");
        self.masters[i].2.take().map(|mut m| m.wait().unwrap().success()).unwrap_or(true)
    }

    /// Starts worker number `i` (a new one if `i == workers.len()`).
    pub fn start_worker(&mut self, i: usize) {
        self.start_worker_with(i, &[]);
    }

    /// Starts worker `i` with extra `-D` options.
    pub fn start_worker_with(&mut self, i: usize, extra: &[&str]) {
        if i == self.workers.len() {
            self.workers.push((free_port(), free_port(), free_port(), None));
        }
        let (port, data_port, web_port) = (self.workers[i].0, self.workers[i].1, self.workers[i].2);
        let log = self.log(&format!("worker{i}.log"));
        let child = self
            .command(&[
                &format!("-Dtachyon.worker.port={port}"),
                &format!("-Dtachyon.worker.data.port={data_port}"),
                &format!("-Dtachyon.worker.web.port={web_port}"),
                "-Dtachyon.worker.hostname=127.0.0.1",
            ])
            .args(extra)
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.workers[i].3 = Some(child);
    }

    /// SIGKILLs worker `i`.
    pub fn kill_worker(&mut self, i: usize) {
        if let Some(mut w) = self.workers[i].3.take() {
            w.kill().unwrap();
            w.wait().unwrap();
        }
    }

    /// A client of this cluster, as this process's user (SIMPLE).
    pub fn client(&self) -> FileSystem {
        self.client_with(tachyon::security::SecurityOptions::simple_as(&tachyon::client::current_user()))
    }

    /// A client of this cluster with the identity `security` gives it.
    pub fn client_with(&self, security: tachyon::security::SecurityOptions) -> FileSystem {
        let options = ClientOptions {
            retry: RetryPolicy { base_sleep: Duration::from_millis(20), max_sleep: Duration::from_millis(500), max_duration: Duration::from_secs(20) },
            block_size: 1 << 20,
            short_circuit: true,
            chunk_bytes: 256 << 10,
            write_type: tachyon::client::WriteType::MustCache,
            read_type: tachyon::client::ReadType::CachePromote,
            security,
            request_timeout: Duration::from_secs(3),
            metadata_sync_interval_ms: 0,
        };
        FileSystem::with_under_fs(options, self.coordinator(), self.under_fs())
    }

    /// The under-storage for file data every process of this cluster uses
    /// (`tachyon.underfs.address`: `<home>/underFSStorage` unless the cluster sets it).
    pub fn under_fs(&self) -> Arc<dyn tachyon::underfs::UnderFs> {
        let mut env = std::collections::BTreeMap::new();
        env.insert("TACHYON_HOME".to_string(), self.home.path().display().to_string());
        let overrides = self.defines().iter().map(|d| d.trim_start_matches("-D").to_string()).collect();
        let inputs = tachyon::config::ConfigInputs { conf_dir: None, env, overrides, role: Some(tachyon::config::Role::Client) };
        let cfg = tachyon::config::Config::load(&inputs).unwrap();
        tachyon::underfs::open(&cfg.string(tachyon::config::DATA_FOLDER), &tachyon::underfs::UfsOptions::from_config(&cfg)).unwrap()
    }

    /// How this cluster's clients find the leader.
    pub fn coordinator(&self) -> Arc<dyn Coordinator> {
        match &self.zookeeper {
            Some(servers) => Arc::new(ZkCoordinator::new(ZkOptions {
                servers: servers.clone(),
                root: "/tachyon".into(),
                election_path: "/tachyon/election".into(),
                leader_path: "/tachyon/leader".into(),
                session_timeout: Duration::from_secs(2),
                connection_timeout: Duration::from_secs(2),
                auth_digest: None,
            })),
            None => Arc::new(StaticCoordinator::new(format!("127.0.0.1:{}", self.master_port))),
        }
    }

    /// A client that talks to master `i` only, whoever leads.
    pub fn client_of_master(&self, i: usize) -> FileSystem {
        FileSystem::new(self.client().options().clone(), Arc::new(StaticCoordinator::new(self.master_address(i))))
    }

    /// Waits until `n` live workers are registered.
    pub async fn wait_for_workers(&self, n: usize) {
        let fs = self.client();
        for _ in 0..200 {
            if let Ok(ws) = fs.workers().await {
                if ws.iter().filter(|w| !w.lost).count() >= n {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} workers did not register; logs in {}", self.home.path().display());
    }

    pub fn path(&self) -> &Path {
        self.home.path()
    }

    pub fn journal(&self) -> PathBuf {
        self.home.path().join("journal")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.masters.len() {
            self.kill_master_at(i);
        }
        for i in 0..self.workers.len() {
            self.kill_worker(i);
        }
        // A failing test keeps its logs for a look.
        if std::thread::panicking() {
            let kept = std::mem::replace(&mut self.home, tempfile::tempdir().unwrap()).keep();
            eprintln!("cluster logs kept in {}", kept.display());
        }
    }
}

/// The loopback address master `i` serves on.
pub fn master_host(i: usize) -> String {
    format!("127.0.0.{}", i + 1)
}

/// Polls `check` every 50 ms for up to 10 s; true once it held. For effects that the
/// cluster applies asynchronously (block removal rides on heartbeats, for example).
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Deterministic pseudo-random content.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    tachyon::shell::test_bytes(len, seed)
}
