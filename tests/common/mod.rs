//! A real single-master cluster of `tachyon` processes on loopback, for integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tachyon::client::{ClientOptions, FileSystem};
use tachyon::coordinator::StaticCoordinator;
use tachyon::rpc::RetryPolicy;

/// The binary under test.
pub fn tachyon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tachyon")
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One master and any number of workers, each a child process.
pub struct Cluster {
    pub home: tempfile::TempDir,
    pub master_port: u16,
    master: Option<Child>,
    /// (rpc port, data port, process) of each worker; ports stay fixed across restarts.
    workers: Vec<(u16, u16, Option<Child>)>,
}

impl Cluster {
    /// Formats a journal and starts a master (no workers yet).
    pub fn start() -> Cluster {
        let home = tempfile::tempdir().unwrap();
        let mut c = Cluster { home, master_port: free_port(), master: None, workers: Vec::new() };
        let out = c.run(&["format"]);
        assert!(out.status.success(), "format failed: {}", String::from_utf8_lossy(&out.stderr));
        c.start_master();
        c
    }

    /// The `-D` options every process of this cluster gets.
    pub fn defines(&self) -> Vec<String> {
        let home = self.home.path().display();
        vec![
            format!("-Dtachyon.master.hostname=127.0.0.1"),
            format!("-Dtachyon.master.port={}", self.master_port),
            format!("-Dtachyon.master.journal.folder={home}/journal"),
            format!("-Dtachyon.worker.tieredstore.level0.dirs.path={home}/ram"),
            "-Dtachyon.worker.memory.size=256MB".into(),
            "-Dtachyon.worker.block.heartbeat.interval.ms=100".into(),
            "-Dtachyon.master.worker.timeout=1500ms".into(),
            "-Dtachyon.user.rpc.retry.max.duration=20s".into(),
        ]
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tachyon_bin());
        cmd.env("TACHYON_HOME", self.home.path())
            .env_remove("TACHYON_JAVA_OPTS")
            .env_remove("TACHYON_CONF_DIR")
            .args(self.defines())
            .args(args);
        cmd
    }

    /// Runs a `tachyon` command against this cluster and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tachyon {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new().create(true).append(true).open(self.home.path().join(name)).unwrap()
    }

    pub fn start_master(&mut self) {
        let log = self.log("master.log");
        let child = self.command(&["master"]).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.master = Some(child);
    }

    /// SIGKILLs the master.
    pub fn kill_master(&mut self) {
        if let Some(mut m) = self.master.take() {
            m.kill().unwrap();
            m.wait().unwrap();
        }
    }

    /// SIGTERMs the master and waits for it to exit; returns whether it exited cleanly.
    pub fn stop_master(&mut self) -> bool {
        let Some(mut m) = self.master.take() else { return true };
        Command::new("kill").args(["-TERM", &m.id().to_string()]).status().unwrap();
        m.wait().unwrap().success()
    }

    /// Starts worker number `i` (a new one if `i == workers.len()`).
    pub fn start_worker(&mut self, i: usize) {
        self.start_worker_with(i, &[]);
    }

    /// Starts worker `i` with extra `-D` options.
    pub fn start_worker_with(&mut self, i: usize, extra: &[&str]) {
        if i == self.workers.len() {
            self.workers.push((free_port(), free_port(), None));
        }
        let (port, data_port) = (self.workers[i].0, self.workers[i].1);
        let log = self.log(&format!("worker{i}.log"));
        let child = self
            .command(&[
                &format!("-Dtachyon.worker.port={port}"),
                &format!("-Dtachyon.worker.data.port={data_port}"),
                "-Dtachyon.worker.hostname=127.0.0.1",
            ])
            .args(extra)
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.workers[i].2 = Some(child);
    }

    /// SIGKILLs worker `i`.
    pub fn kill_worker(&mut self, i: usize) {
        if let Some(mut w) = self.workers[i].2.take() {
            w.kill().unwrap();
            w.wait().unwrap();
        }
    }

    /// A client of this cluster.
    pub fn client(&self) -> FileSystem {
        let options = ClientOptions {
            retry: RetryPolicy {
                base_sleep: Duration::from_millis(20),
                max_sleep: Duration::from_millis(500),
                max_duration: Duration::from_secs(20),
            },
            block_size: 1 << 20,
            short_circuit: true,
            chunk_bytes: 256 << 10,
            write_type: "MUST_CACHE".into(),
            owner: "tester".into(),
            group: "testers".into(),
            request_timeout: Duration::from_secs(10),
        };
        let coordinator = StaticCoordinator::new(format!("127.0.0.1:{}", self.master_port));
        FileSystem::new(options, std::sync::Arc::new(coordinator))
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
        self.kill_master();
        for i in 0..self.workers.len() {
            self.kill_worker(i);
        }
    }
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
    let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
