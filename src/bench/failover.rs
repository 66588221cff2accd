//! `tachyon bench --failover N`: how long a failover takes, measured. Starts three masters
//! of this binary on loopback (127.0.0.1-3) that elect a leader through a real ZooKeeper,
//! then N times each kills the leader (`kill -9`) or stops it (SIGTERM: it resigns), and
//! times "fault → first acknowledged write" (a journaled mkdir, through a client that finds
//! the leader through ZooKeeper, as every client does). The killed master is restarted and
//! back as a standby before the next fault. Prints p50/p99/max next to the targets, which
//! follow from the session timeout: after a crash ZooKeeper must first expire the dead
//! leader's session, so no failover can beat it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{ClientOptions, FileSystem};
use crate::config::{self, Config, ConfigInputs, Role};
use crate::rpc::RetryPolicy;

/// Masters in the benchmark cluster (a leader and two standbys, as the HA guide sets up).
const MASTERS: usize = 3;
/// How long the cluster may take to have every master answering and one leader.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The client's retry backoff while the cluster fails over: short, so the figure measures
/// the failover and not the client's sleep.
const PROBE_RETRY: RetryPolicy =
    RetryPolicy { base_sleep: Duration::from_millis(10), max_sleep: Duration::from_millis(50), max_duration: Duration::from_secs(120) };

/// What the failover benchmark runs.
#[derive(Clone, Debug)]
pub struct FailoverBenchOptions {
    /// Faults of each kind (kill -9, graceful stop).
    pub trials: usize,
    /// The `tachyon` binary the masters run (this one).
    pub program: PathBuf,
    /// ZooKeeper connect string.
    pub zookeeper: String,
    /// The masters' ZooKeeper session timeout.
    pub session_timeout: Duration,
    /// `key=value` settings (`-D` options) every master and the client get before the
    /// benchmark's own (ZooKeeper credentials, journal or client settings to measure).
    pub defines: Vec<String>,
}

/// The three master processes and what they share.
struct Masters {
    program: PathBuf,
    home: PathBuf,
    defines: Vec<String>,
    rpc_port: u16,
    processes: Vec<Option<Child>>,
}

impl Masters {
    fn host(i: usize) -> String {
        format!("127.0.0.{}", i + 1)
    }

    fn address(&self, i: usize) -> String {
        format!("{}:{}", Self::host(i), self.rpc_port)
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.program);
        // Only the options given here: a site file or JAVA_OPTS of this shell must not move
        // the benchmark's masters onto a real cluster's journal or ports.
        for var in ["TACHYON_CONF_DIR", "ALLUXIO_CONF_DIR", "TACHYON_JAVA_OPTS", "TACHYON_MASTER_JAVA_OPTS", "ALLUXIO_JAVA_OPTS", "ALLUXIO_MASTER_JAVA_OPTS"] {
            cmd.env_remove(var);
        }
        cmd.env("TACHYON_HOME", &self.home).args(self.defines.iter().map(|d| format!("-D{d}"))).args(args);
        cmd
    }

    fn start(&mut self, i: usize) -> Result<(), String> {
        let log_path = self.home.join(format!("master{i}.log"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let args = [format!("-Dtachyon.master.hostname={}", Self::host(i)), "master".to_string()];
        let child = self.command(&args).stdout(Stdio::null()).stderr(log).spawn().map_err(|e| format!("start master {i}: {e}"))?;
        self.processes[i] = Some(child);
        Ok(())
    }

    /// Sends the fault to master `i`: SIGKILL, or SIGTERM (it resigns and exits).
    fn fault(&mut self, i: usize, graceful: bool) -> Result<(), String> {
        let Some(child) = self.processes[i].as_mut() else { return Err(format!("master {i} is not running")) };
        if graceful {
            let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().map_err(|e| format!("kill -TERM: {e}"))?;
            if !status.success() {
                return Err(format!("kill -TERM of master {i} failed"));
            }
            Ok(())
        } else {
            child.kill().map_err(|e| format!("kill -9 master {i}: {e}"))
        }
    }

    /// Waits for master `i` to exit (it was sent a fault).
    async fn reap(&mut self, i: usize) -> Result<(), String> {
        let Some(mut child) = self.processes[i].take() else { return Ok(()) };
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                Ok(None) => {
                    let _ = child.kill();
                    return Err(format!("master {i} did not exit after its fault"));
                }
                Err(e) => return Err(format!("wait for master {i}: {e}")),
            }
        }
    }
}

impl Drop for Masters {
    fn drop(&mut self) {
        for child in self.processes.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until every master answers and exactly one leads; returns the leader's index.
async fn settled_leader(fs: &FileSystem, masters: &Masters) -> Result<usize, String> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if let Ok(statuses) = fs.masters().await {
            let answering = statuses.iter().filter(|m| m.role != "unreachable").count();
            let leaders: Vec<&str> = statuses.iter().filter(|m| m.role == "leader").map(|m| m.address.as_str()).collect();
            if let ([leader], MASTERS) = (leaders.as_slice(), answering) {
                if let Some(i) = (0..MASTERS).find(|&i| masters.address(i) == *leader) {
                    return Ok(i);
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!("the masters did not settle on one leader within {SETTLE_TIMEOUT:?}; logs in {}", masters.home.display()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nearest-rank percentile `p` (0..=100) of sorted `samples`.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// Runs the benchmark in a scratch folder under `parent`; prints one line per fault kind.
pub async fn run(opts: FailoverBenchOptions, parent: &Path, out: &mut dyn Write) -> Result<(), String> {
    let home = super::tempfile_dir(parent)?;
    let rpc_port = super::unused_port().map_err(|e| e.to_string())?;
    let web_port = super::unused_port().map_err(|e| e.to_string())?;
    let mut defines = opts.defines.clone();
    defines.extend([
        format!("tachyon.master.journal.folder={}", home.path().join("journal").display()),
        format!("tachyon.master.port={rpc_port}"),
        format!("tachyon.master.web.port={web_port}"),
        "tachyon.zookeeper.enabled=true".to_string(),
        format!("{}={}", config::ZOOKEEPER_ADDRESS, opts.zookeeper),
        // Its own election, leader and epoch nodes: nothing of another cluster on the same
        // ZooKeeper is touched.
        format!("{}=/tachyon-failover-bench-{:016x}", config::ZOOKEEPER_ROOT, crate::runtime::unique_id()),
        format!("{}={}ms", config::ZOOKEEPER_SESSION_TIMEOUT, opts.session_timeout.as_millis()),
    ]);
    let mut masters =
        Masters { program: opts.program.clone(), home: home.path().to_path_buf(), defines, rpc_port, processes: (0..MASTERS).map(|_| None).collect() };
    let format = masters.command(&["format".to_string()]).output().map_err(|e| format!("format the journal: {e}"))?;
    if !format.status.success() {
        return Err(format!("format the journal: {}", String::from_utf8_lossy(&format.stderr).trim()));
    }
    for i in 0..MASTERS {
        masters.start(i)?;
    }
    let client_config = Config::load(&ConfigInputs {
        conf_dir: None,
        env: [("TACHYON_HOME".to_string(), home.path().display().to_string())].into(),
        overrides: masters.defines.clone(),
        role: Some(Role::Client),
    })
    .map_err(|e| e.to_string())?;
    let options = ClientOptions { retry: PROBE_RETRY, ..ClientOptions::from_config(&client_config).map_err(|e| e.to_string())? };
    let fs = FileSystem::new(options, crate::coordinator::from_config(&client_config).map_err(|e| e.to_string())?);
    let mut leader = settled_leader(&fs, &masters).await?;
    let _ = writeln!(
        out,
        "failover bench: {MASTERS} masters on loopback, ZooKeeper {}, session timeout {:.1} s, {} faults of each kind",
        opts.zookeeper,
        opts.session_timeout.as_secs_f64(),
        opts.trials
    );
    for graceful in [false, true] {
        let mut samples = Vec::with_capacity(opts.trials);
        for trial in 0..opts.trials {
            let path = format!("/failover-bench/{}/{trial}", if graceful { "graceful" } else { "kill" });
            fs.create_directory(&format!("{path}-before"), true, false).await.map_err(|e| format!("write before the fault: {e}"))?;
            let started = Instant::now();
            masters.fault(leader, graceful)?;
            fs.create_directory(&path, true, false).await.map_err(|e| format!("first write after the fault: {e}"))?;
            samples.push(started.elapsed());
            masters.reap(leader).await?;
            masters.start(leader)?;
            leader = settled_leader(&fs, &masters).await?;
        }
        samples.sort();
        let (kind, target) = if graceful {
            ("graceful stop of the leader (resigns)", Duration::from_secs(1))
        } else {
            ("kill -9 of the leader", opts.session_timeout + Duration::from_secs(1))
        };
        let p99 = percentile(&samples, 99);
        let _ = writeln!(
            out,
            "{kind:<40} fault -> first acknowledged write: p50 {:.2} s  p99 {:.2} s  max {:.2} s   target <= {:.2} s   p99/target {:.3}",
            percentile(&samples, 50).as_secs_f64(),
            p99.as_secs_f64(),
            samples.last().copied().unwrap_or_default().as_secs_f64(),
            target.as_secs_f64(),
            p99.as_secs_f64() / target.as_secs_f64()
        );
    }
    // Every acknowledged write survived all the failovers.
    let written = fs.list_status("/failover-bench", true).await.map_err(|e| e.to_string())?.len();
    let expected = 2 * 2 * opts.trials + 2;
    if written != expected {
        return Err(format!("after the failovers /failover-bench holds {written} entries, expected {expected}"));
    }
    // The masters stop before their folder is removed.
    drop(masters);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s: Vec<Duration> = (1..=10).map(Duration::from_secs).collect();
        assert_eq!(percentile(&s, 50), Duration::from_secs(5));
        assert_eq!(percentile(&s, 99), Duration::from_secs(10));
        assert_eq!(percentile(&s[..1], 50), Duration::from_secs(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }
}
