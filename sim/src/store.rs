//! A simulated shared store: the journal's, and a second one for file data (the cluster's
//! under-storage). [`SimStore`] is the disk: in-memory files with latency
//! on the virtual clock and injectable faults (write errors, flushes that lie). It is served
//! from its own node ([`serve_store`]) and masters reach it over the simulated network
//! ([`RemoteStore`]), so partitions, a lagging standby (a clogged link) and a store restart
//! apply; checkers read the disk directly.
//!
//! Durability is modelled: bytes a writer has written but not synced live only in the
//! writer (the writing node's memory), so a node killed before `sync` loses them, exactly the
//! window group commit must never acknowledge; a sync travels in two calls, so a kill between
//! them leaves a torn tail.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tachyon::underfs::{UfsWriter, UnderFs, UnderStorageEntry};

/// Shared files, by path, and directories made explicitly (`mkdirs`; a file's parents
/// exist implicitly, as on an object store).
#[derive(Clone, Default)]
pub struct SimStore {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    dirs: Arc<Mutex<BTreeSet<String>>>,
    fail_writes: Arc<AtomicBool>,
    drop_syncs: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Up to 2 ms of virtual latency per operation, drawn from the simulation's seeded RNG.
async fn latency() {
    let micros = madsim::rand::random::<u64>() % 2000;
    madsim::time::sleep(Duration::from_micros(micros)).await;
}

impl SimStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every write and sync fail (a broken or full journal disk) until turned off.
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Makes `sync` report success while throwing the bytes away (a disk that lies about
    /// flushing), to prove the checkers catch lost acknowledgements.
    pub fn set_drop_syncs(&self, drop: bool) {
        self.drop_syncs.store(drop, Ordering::SeqCst);
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated journal store write error"));
        }
        Ok(())
    }
}

struct SimWriter {
    store: SimStore,
    path: String,
    unsynced: Vec<u8>,
}

#[async_trait]
impl UfsWriter for SimWriter {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.store.check_writable()?;
        self.unsynced.extend_from_slice(data);
        Ok(())
    }

    async fn sync(&mut self) -> io::Result<()> {
        self.store.append(&self.path, std::mem::take(&mut self.unsynced)).await
    }

    async fn close(mut self: Box<Self>) -> io::Result<()> {
        self.sync().await
    }
}

#[async_trait]
impl UnderFs for SimStore {
    fn describe(&self) -> String {
        "sim://store".into()
    }

    async fn create(&self, path: &str) -> io::Result<Box<dyn UfsWriter>> {
        latency().await;
        self.check_writable()?;
        let mut files = lock(&self.files);
        if files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, path.to_string()));
        }
        files.insert(path.to_string(), Vec::new());
        Ok(Box::new(SimWriter { store: self.clone(), path: path.to_string(), unsynced: Vec::new() }))
    }

    async fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        latency().await;
        lock(&self.files).get(path).cloned().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.to_string()))
    }

    async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        latency().await;
        Ok(self.entries(dir).into_keys().collect())
    }

    async fn list_status(&self, dir: &str) -> io::Result<Vec<UnderStorageEntry>> {
        latency().await;
        Ok(self.entries(dir).into_values().collect())
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        latency().await;
        self.check_writable()?;
        let mut files = lock(&self.files);
        if files.contains_key(to) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, to.to_string()));
        }
        let data = files.remove(from).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        files.insert(to.to_string(), data);
        Ok(())
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        latency().await;
        lock(&self.files).remove(path);
        Ok(())
    }

    async fn mkdirs(&self, path: &str) -> io::Result<()> {
        latency().await;
        self.check_writable()?;
        let mut dirs = lock(&self.dirs);
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            dirs.insert(prefix.clone());
        }
        Ok(())
    }

    async fn delete_empty_dir(&self, path: &str) -> io::Result<()> {
        latency().await;
        if !self.entries(path).is_empty() {
            return Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, format!("{path}: directory not empty")));
        }
        lock(&self.dirs).remove(path);
        Ok(())
    }
}

impl SimStore {
    /// The entries directly in `dir`, by name: files, the parents of deeper files, and
    /// directories made with `mkdirs`.
    fn entries(&self, dir: &str) -> BTreeMap<String, UnderStorageEntry> {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let mut entries: BTreeMap<String, UnderStorageEntry> = BTreeMap::new();
        let mut add = |rest: &str, length: Option<u64>| {
            let (name, is_directory, length) = match (rest.split_once('/'), length) {
                (Some((name, _)), _) => (name, true, 0),
                (None, None) => (rest, true, 0),
                (None, Some(length)) => (rest, false, length),
            };
            if !name.is_empty() {
                entries.entry(name.to_string()).or_insert(UnderStorageEntry { name: name.to_string(), is_directory, length });
            }
        };
        for (key, data) in lock(&self.files).range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
            add(&key[prefix.len()..], Some(data.len() as u64));
        }
        for key in lock(&self.dirs).range(prefix.clone()..).take_while(|k| k.starts_with(&prefix)) {
            add(&key[prefix.len()..], None);
        }
        entries
    }
}

/// The port the simulated store node listens on.
pub const STORE_PORT: u16 = 9000;
/// How long a store call may take before the caller sees an IO error.
const STORE_CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// A request to the store node.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum StoreRequest {
    Create { path: String },
    Append { path: String, data: Vec<u8> },
    Read { path: String },
    List { dir: String },
    ListStatus { dir: String },
    Rename { from: String, to: String },
    Delete { path: String },
    Mkdirs { path: String },
    DeleteEmptyDir { path: String },
}

/// The store node's answer.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum StoreResponse {
    Done,
    Data(Vec<u8>),
    Names(Vec<String>),
    /// (name, is a directory, length) of each entry.
    Entries(Vec<(String, bool, u64)>),
    NotFound(String),
    AlreadyExists(String),
    NotEmpty(String),
    Failed(String),
}

impl madsim::net::rpc::Request for StoreRequest {
    type Response = StoreResponse;
    const ID: u64 = 0x5107_e000;
}

fn to_response(r: io::Result<StoreResponse>) -> StoreResponse {
    match r {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => StoreResponse::NotFound(e.to_string()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => StoreResponse::AlreadyExists(e.to_string()),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => StoreResponse::NotEmpty(e.to_string()),
        Err(e) => StoreResponse::Failed(e.to_string()),
    }
}

impl SimStore {
    /// Applies one request to the disk.
    async fn handle(&self, req: StoreRequest) -> StoreResponse {
        let r = match req {
            StoreRequest::Create { path } => self.create(&path).await.map(|_| StoreResponse::Done),
            StoreRequest::Append { path, data } => self.append(&path, data).await.map(|_| StoreResponse::Done),
            StoreRequest::Read { path } => self.read(&path).await.map(StoreResponse::Data),
            StoreRequest::List { dir } => self.list(&dir).await.map(StoreResponse::Names),
            StoreRequest::ListStatus { dir } => {
                self.list_status(&dir).await.map(|entries| StoreResponse::Entries(entries.into_iter().map(|e| (e.name, e.is_directory, e.length)).collect()))
            }
            StoreRequest::Rename { from, to } => self.rename(&from, &to).await.map(|_| StoreResponse::Done),
            StoreRequest::Delete { path } => self.delete(&path).await.map(|_| StoreResponse::Done),
            StoreRequest::Mkdirs { path } => self.mkdirs(&path).await.map(|_| StoreResponse::Done),
            StoreRequest::DeleteEmptyDir { path } => self.delete_empty_dir(&path).await.map(|_| StoreResponse::Done),
        };
        to_response(r)
    }

    /// Appends synced bytes to a file (what a remote writer's `sync` sends).
    async fn append(&self, path: &str, mut data: Vec<u8>) -> io::Result<()> {
        latency().await;
        self.check_writable()?;
        if self.drop_syncs.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut files = lock(&self.files);
        let file = files.get_mut(path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file deleted while open"))?;
        file.append(&mut data);
        Ok(())
    }
}

/// Serves `disk` from the store node at `addr`. The disk outlives the node: a restarted store
/// node serves the same bytes (a storage server restart, not a disk loss).
pub async fn serve_store(addr: std::net::SocketAddr, disk: SimStore) {
    let ep = Arc::new(madsim::net::Endpoint::bind(addr).await.expect("bind the simulated store"));
    ep.add_rpc_handler(move |req: StoreRequest| {
        let disk = disk.clone();
        async move { disk.handle(req).await }
    });
    std::future::pending::<()>().await;
}

/// A store as masters and clients see it: every operation is a call over the simulated
/// network to the store node, so partitions, clogged links and a store restart apply.
pub struct RemoteStore {
    server: std::net::SocketAddr,
}

impl RemoteStore {
    /// A client of the store node at `server`.
    pub fn new(server: std::net::SocketAddr) -> Self {
        RemoteStore { server }
    }

    async fn call(server: std::net::SocketAddr, req: StoreRequest) -> io::Result<StoreResponse> {
        let ep = madsim::net::Endpoint::bind("0.0.0.0:0").await?;
        match ep.call_timeout(server, req, STORE_CALL_TIMEOUT).await {
            Ok(StoreResponse::NotFound(m)) => Err(io::Error::new(io::ErrorKind::NotFound, m)),
            Ok(StoreResponse::AlreadyExists(m)) => Err(io::Error::new(io::ErrorKind::AlreadyExists, m)),
            Ok(StoreResponse::NotEmpty(m)) => Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, m)),
            Ok(StoreResponse::Failed(m)) => Err(io::Error::other(m)),
            Ok(r) => Ok(r),
            Err(e) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("simulated store unreachable: {e}"))),
        }
    }
}

fn unexpected(r: StoreResponse) -> io::Error {
    io::Error::other(format!("unexpected store answer {r:?}"))
}

/// Buffers written bytes; `sync` ships them in two calls, so a writer killed between them
/// leaves a torn record behind, as a crash mid-flush would.
struct RemoteWriter {
    server: std::net::SocketAddr,
    path: String,
    unsynced: Vec<u8>,
}

#[async_trait]
impl UfsWriter for RemoteWriter {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.unsynced.extend_from_slice(data);
        Ok(())
    }

    async fn sync(&mut self) -> io::Result<()> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.unsynced);
        let half = data.len() / 2;
        for part in [&data[..half], &data[half..]] {
            if !part.is_empty() {
                RemoteStore::call(self.server, StoreRequest::Append { path: self.path.clone(), data: part.to_vec() }).await?;
            }
        }
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> io::Result<()> {
        self.sync().await
    }
}

#[async_trait]
impl UnderFs for RemoteStore {
    fn describe(&self) -> String {
        format!("sim://{}", self.server)
    }

    async fn create(&self, path: &str) -> io::Result<Box<dyn UfsWriter>> {
        Self::call(self.server, StoreRequest::Create { path: path.into() }).await?;
        Ok(Box::new(RemoteWriter { server: self.server, path: path.into(), unsynced: Vec::new() }))
    }

    async fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        match Self::call(self.server, StoreRequest::Read { path: path.into() }).await? {
            StoreResponse::Data(d) => Ok(d),
            r => Err(unexpected(r)),
        }
    }

    async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        match Self::call(self.server, StoreRequest::List { dir: dir.into() }).await? {
            StoreResponse::Names(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    async fn list_status(&self, dir: &str) -> io::Result<Vec<UnderStorageEntry>> {
        match Self::call(self.server, StoreRequest::ListStatus { dir: dir.into() }).await? {
            StoreResponse::Entries(entries) => {
                Ok(entries.into_iter().map(|(name, is_directory, length)| UnderStorageEntry { name, is_directory, length }).collect())
            }
            r => Err(unexpected(r)),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        Self::call(self.server, StoreRequest::Rename { from: from.into(), to: to.into() }).await.map(|_| ())
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        Self::call(self.server, StoreRequest::Delete { path: path.into() }).await.map(|_| ())
    }

    async fn mkdirs(&self, path: &str) -> io::Result<()> {
        Self::call(self.server, StoreRequest::Mkdirs { path: path.into() }).await.map(|_| ())
    }

    async fn delete_empty_dir(&self, path: &str) -> io::Result<()> {
        Self::call(self.server, StoreRequest::DeleteEmptyDir { path: path.into() }).await.map(|_| ())
    }
}
