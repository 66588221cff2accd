//! A simulated cluster on madsim nodes, built from a topology: ZooKeeper on 10.0.0.1, the
//! journal store on 10.0.0.2, the data store (the under-storage for file data) on 10.0.0.3,
//! masters on 10.0.1.x, workers on 10.0.2.x, clients on 10.0.3.x, the test driver on
//! 10.0.9.1. Each master and worker runs the production `run_master`/`run_worker` code on
//! simulated network and time; helpers kill, restart, pause and resume nodes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle};
use tachyon::client::{ClientOptions, FileSystem};
use tachyon::coordinator::Coordinator;
use tachyon::core::tiers::TierAlias;
use tachyon::journal::{Journal, JournalLimits};
use tachyon::master::MasterOptions;
use tachyon::proto::WorkerNetAddress;
use tachyon::rpc::RetryPolicy;
use tachyon::security::SecurityOptions;
use tachyon::worker::store::TierDirs;
use tachyon::worker::{WorkerBindHosts, WorkerOptions};

use crate::coordinator::SimCoordinator;
use crate::store::{serve_store, RemoteStore, SimStore, STORE_PORT};
use crate::zk::{self, ZK_PORT};

/// Master RPC port in the simulation (as in production).
pub const MASTER_PORT: u16 = 19998;

/// The shape and timing of a simulated cluster.
#[derive(Clone, Debug)]
pub struct Topology {
    pub masters: usize,
    pub workers: usize,
    pub session_timeout: Duration,
    pub checkpoint_period_entries: u64,
    /// Journal fencing on the masters (off only to prove the checkers catch split brain).
    pub fencing: bool,
    /// The leader lease on the masters (off only to prove the checkers catch stale reads).
    pub leader_lease: bool,
    /// How late a master acts on the end of its ZooKeeper session.
    pub session_notice_delay: Duration,
    /// Each worker's storage tiers, fastest first: kind and quota in bytes (one folder each).
    pub worker_tiers: Vec<(TierAlias, u64)>,
}

fn ip(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, a, b))
}

/// The simulated ZooKeeper's address.
pub fn zk_addr() -> SocketAddr {
    SocketAddr::new(ip(0, 1), ZK_PORT)
}

/// The simulated journal store node's address.
pub fn store_addr() -> SocketAddr {
    SocketAddr::new(ip(0, 2), STORE_PORT)
}

/// The simulated data store node's address (the cluster's under-storage for file data).
pub fn data_store_addr() -> SocketAddr {
    SocketAddr::new(ip(0, 3), STORE_PORT)
}

/// The under-storage for file data, as seen from the calling node.
fn data_store() -> Arc<dyn tachyon::underfs::UnderFs> {
    Arc::new(RemoteStore::new(data_store_addr()))
}

/// The address master `i` serves on.
pub fn master_address(i: usize) -> String {
    format!("10.0.1.{}:{MASTER_PORT}", i + 1)
}

/// A running simulated cluster.
pub struct SimCluster {
    pub topology: Topology,
    /// The store node's disk (checkers read it directly).
    pub store: SimStore,
    handle: Handle,
    pub zookeeper: NodeHandle,
    pub store_node: NodeHandle,
    /// The data store's disk (file data written through to under-storage).
    pub data: SimStore,
    pub data_node: NodeHandle,
    pub masters: Vec<NodeHandle>,
    pub workers: Vec<NodeHandle>,
    /// Nodes killed and not restarted since.
    down: std::sync::Mutex<std::collections::BTreeSet<madsim::task::NodeId>>,
    _worker_dirs: WorkerDirs,
}

/// The real folders simulated workers keep their tiers in (madsim does not simulate
/// files), removed when the cluster is dropped. Named per process *and* per run, so seeds
/// simulated concurrently by parallel tests never share one.
struct WorkerDirs(Vec<std::path::PathBuf>);

impl WorkerDirs {
    fn new(seed: u64, workers: usize) -> WorkerDirs {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir();
        let dirs: Vec<_> = (0..workers).map(|i| root.join(format!("tachyon-sim-{}-run{run}-seed{seed}-worker{i}", std::process::id()))).collect();
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        WorkerDirs(dirs)
    }
}

impl Drop for WorkerDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Security in the simulation, as deployed by default plus a cluster secret: SIMPLE
/// identities (every process is the user "sim", the masters' superuser), permission checks
/// on, worker calls proving the cluster secret; groups from the configuration only (no
/// /etc/group read), so runs replay.
fn sim_security() -> SecurityOptions {
    SecurityOptions {
        cluster_secret: "sim-cluster-secret".into(),
        group_overrides: std::collections::BTreeMap::from([("sim".to_string(), vec!["sim".to_string()])]),
        ..SecurityOptions::simple_as("sim")
    }
}

/// Client settings in the simulation (no short-circuit reads: clients are on their own
/// nodes; MUST_CACHE unless a write says otherwise).
fn client_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy { base_sleep: Duration::from_millis(20), max_sleep: Duration::from_millis(500), max_duration: Duration::from_secs(30) },
        block_size: 256 << 10,
        short_circuit: false,
        chunk_bytes: 64 << 10,
        write_type: tachyon::client::WriteType::MustCache,
        read_type: tachyon::client::ReadType::CachePromote,
        security: sim_security(),
        request_timeout: Duration::from_secs(2),
        metadata_sync_interval_ms: 0,
    }
}

impl SimCluster {
    /// Starts ZooKeeper, formats the journal, starts every master and worker.
    pub async fn start(topology: Topology, seed: u64) -> SimCluster {
        let handle = Handle::current();
        let zookeeper = handle.create_node().name("zookeeper").ip(ip(0, 1)).init(|| zk::serve(zk_addr())).build();
        let store = SimStore::new();
        Journal::new(Arc::new(store.clone()), JournalLimits::default()).format(false).await.expect("format the simulated journal");
        let disk = store.clone();
        let store_node = handle.create_node().name("store").ip(store_addr().ip()).init(move || serve_store(store_addr(), disk.clone())).build();
        let data = SimStore::new();
        let data_disk = data.clone();
        let data_node =
            handle.create_node().name("datastore").ip(data_store_addr().ip()).init(move || serve_store(data_store_addr(), data_disk.clone())).build();
        let masters = (0..topology.masters)
            .map(|i| {
                let t = topology.clone();
                handle
                    .create_node()
                    .name(format!("master-{i}"))
                    .ip(ip(1, i as u8 + 1))
                    .init(move || {
                        let t = t.clone();
                        async move {
                            let options = MasterOptions {
                                address: master_address(i),
                                bind_address: master_address(i),
                                journal_folder: "sim://journal".into(),
                                journal_limits: JournalLimits { segment_max_bytes: 64 << 10, ..JournalLimits::default() },
                                checkpoint_period_entries: t.checkpoint_period_entries,
                                worker_timeout_ms: 3000,
                                tailer_sleep_ms: 50,
                                fencing: t.fencing,
                                leader_lease: t.leader_lease,
                                loaded_block_size: 1 << 20,
                                min_block_size_bytes: 4096,
                                ttl_check_interval_ms: 60_000,
                                security: sim_security(),
                                max_path_depth: 1000,
                                abandoned_write_timeout_ms: 3_600_000,
                            };
                            let coordinator: Arc<dyn Coordinator> =
                                Arc::new(SimCoordinator::new(zk_addr(), t.session_timeout).with_notice_delay(t.session_notice_delay));
                            // As in production, the master reaches the data under-storage
                            // through a client of the cluster (background persistence too).
                            let persister = FileSystem::with_under_fs(client_options(), coordinator.clone(), data_store());
                            let node = tachyon::master::node::MasterNode::new(
                                options,
                                tachyon::runtime::system_clock(),
                                coordinator,
                                Arc::new(RemoteStore::new(store_addr())),
                            )
                            .with_under_storage(persister);
                            let result = tachyon::master::node::run_node(Arc::new(node), std::future::pending()).await;
                            tracing::error!(master = i, ?result, "simulated master exited");
                        }
                    })
                    .build()
            })
            .collect();
        let worker_dirs = WorkerDirs::new(seed, topology.workers);
        let workers = (0..topology.workers)
            .map(|i| {
                let t = topology.clone();
                let worker_dir = worker_dirs.0[i].clone();
                handle
                    .create_node()
                    .name(format!("worker-{i}"))
                    .ip(ip(2, i as u8 + 1))
                    .init(move || {
                        let t = t.clone();
                        let tiers = t
                            .worker_tiers
                            .iter()
                            .map(|(alias, quota)| TierDirs { alias: *alias, dirs: vec![(worker_dir.join(alias.as_str()), *quota)] })
                            .collect();
                        async move {
                            let options = WorkerOptions {
                                address: WorkerNetAddress { host: format!("10.0.2.{}", i + 1), rpc_port: 29998, data_port: 29999, web_port: 30000 },
                                bind_hosts: WorkerBindHosts::all(&format!("10.0.2.{}", i + 1)),
                                tiers,
                                heartbeat_interval: Duration::from_millis(100),
                                heartbeat_timeout: Duration::from_secs(2),
                                chunk_bytes: 64 << 10,
                                write_idle_timeout: Duration::from_secs(30),
                                security: sim_security(),
                            };
                            let coordinator = Arc::new(SimCoordinator::new(zk_addr(), t.session_timeout));
                            let result = tachyon::worker::run_worker(options, coordinator, std::future::pending()).await;
                            tracing::error!(worker = i, ?result, "simulated worker exited");
                        }
                    })
                    .build()
            })
            .collect();
        SimCluster { topology, store, handle, zookeeper, store_node, data, data_node, masters, workers, down: Default::default(), _worker_dirs: worker_dirs }
    }

    /// A coordinator for the caller's node.
    pub fn coordinator(&self) -> Arc<dyn Coordinator> {
        Arc::new(SimCoordinator::new(zk_addr(), self.topology.session_timeout))
    }

    /// A client for the caller's node, with the data under-storage.
    pub fn client(&self) -> FileSystem {
        FileSystem::with_under_fs(client_options(), self.coordinator(), data_store())
    }

    /// A client that only ever talks to master `i`, whoever leads.
    pub fn client_of_master(&self, i: usize) -> FileSystem {
        FileSystem::with_under_fs(client_options(), Arc::new(tachyon::coordinator::StaticCoordinator::new(master_address(i))), data_store())
    }

    /// A client of master `i` only that gives up on a request after 250 ms without
    /// retrying, so it keeps issuing new requests while that master is frozen.
    pub fn impatient_client_of_master(&self, i: usize) -> FileSystem {
        let mut options = client_options();
        options.retry.max_duration = Duration::ZERO;
        options.request_timeout = Duration::from_millis(250);
        FileSystem::new(options, Arc::new(tachyon::coordinator::StaticCoordinator::new(master_address(i))))
    }

    /// The index of the master that currently serves as leader, if any.
    pub async fn leader(&self) -> Option<usize> {
        let address = self.coordinator().leader_address().await.ok()??;
        let i = (0..self.masters.len()).find(|i| master_address(*i) == address)?;
        let mut quick = self.client().options().clone();
        quick.retry.max_duration = Duration::from_millis(200);
        let fs = FileSystem::new(quick, Arc::new(tachyon::coordinator::StaticCoordinator::new(address)));
        let answer = fs.master_info().await.ok()?;
        answer.masters.iter().any(|m| m.role == "leader").then_some(i)
    }

    /// Waits (virtual time) until some master serves as leader.
    pub async fn wait_for_leader(&self, limit: Duration) -> Option<usize> {
        let deadline = madsim::time::Instant::now() + limit;
        while madsim::time::Instant::now() < deadline {
            if let Some(i) = self.leader().await {
                return Some(i);
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Kills a node (a crash: no shutdown code runs).
    pub fn kill(&self, node: &NodeHandle) {
        self.handle.kill(node.id());
        self.down.lock().unwrap_or_else(|p| p.into_inner()).insert(node.id());
    }

    /// How many masters are running (not killed, or restarted since).
    pub fn running_masters(&self) -> usize {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        self.masters.iter().filter(|m| !down.contains(&m.id())).count()
    }

    /// Restarts a node from its init task: a crash (if it still runs), then a fresh start
    /// once its sockets are gone.
    pub async fn restart(&self, node: &NodeHandle) {
        self.handle.kill(node.id());
        madsim::time::sleep(Duration::from_millis(100)).await;
        self.handle.restart(node.id());
        self.down.lock().unwrap_or_else(|p| p.into_inner()).remove(&node.id());
    }

    /// Pauses a node (a stop-the-world pause: nothing of it runs).
    pub fn pause(&self, node: &NodeHandle) {
        self.handle.pause(node.id());
    }

    /// Resumes a paused node.
    pub fn resume(&self, node: &NodeHandle) {
        self.handle.resume(node.id());
    }
}
