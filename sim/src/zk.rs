//! A simulated ZooKeeper served from its own madsim node, and a client session for it.
//!
//! The server keeps a node tree (persistent, ephemeral and sequential nodes, versioned
//! sets) and sessions that expire on the virtual clock when no request or ping arrives
//! within their timeout; an expired session's ephemeral nodes go at once. Watches are long
//! polls ("wait until this node is gone"), answered in order of deletion.
//!
//! The client pings every third of its timeout; if the server stays silent for two thirds of
//! it the session is `Disconnected` (suspended), and `Expired` once the server says so —
//! the same states the real client reports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::rpc::Request;
use madsim::net::Endpoint;
use madsim::time::Instant;
use serde::{Deserialize, Serialize};
use tachyon::watch;

/// The port the simulated ZooKeeper listens on.
pub const ZK_PORT: u16 = 2181;

/// A request to the simulated server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ZkRequest {
    Connect {
        timeout_ms: u64,
    },
    Ping {
        session: u64,
    },
    Close {
        session: u64,
    },
    Create {
        session: u64,
        path: String,
        data: Vec<u8>,
        ephemeral: bool,
        sequential: bool,
    },
    Get {
        session: u64,
        path: String,
    },
    Set {
        session: u64,
        path: String,
        data: Vec<u8>,
        version: u32,
    },
    Children {
        session: u64,
        path: String,
    },
    /// Answers `Done` once `path` does not exist, `StillThere` after `max_wait_ms` (the
    /// client asks again: a long poll that survives lost messages), or fails if the session
    /// ends.
    WaitGone {
        session: u64,
        path: String,
        max_wait_ms: u64,
    },
}

/// The server's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ZkResponse {
    Session(u64),
    Done,
    Created(String),
    Data(Vec<u8>, u32),
    Children(Vec<String>),
    StillThere,
    Failed(ZkError),
}

/// Errors as ZooKeeper names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZkError {
    NoNode,
    NodeExists,
    BadVersion,
    SessionExpired,
    /// No answer from the server (client side).
    ConnectionLoss,
}

impl Request for ZkRequest {
    type Response = ZkResponse;
    const ID: u64 = 0x7a6b_2181;
}

struct Node {
    data: Vec<u8>,
    version: u32,
    owner: Option<u64>,
    next_child_sequence: u32,
}

struct Session {
    timeout: Duration,
    deadline: Instant,
}

/// The server's state.
struct Server {
    nodes: BTreeMap<String, Node>,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    /// Bumped on every deletion, so long polls re-check.
    deletions: watch::Sender<u64>,
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

impl Server {
    fn new() -> Self {
        let root = Node { data: Vec::new(), version: 0, owner: None, next_child_sequence: 0 };
        Server { nodes: BTreeMap::from([("/".to_string(), root)]), sessions: BTreeMap::new(), next_session: 1, deletions: watch::channel(0).0 }
    }

    fn touch(&mut self, session: u64) -> Result<(), ZkError> {
        let s = self.sessions.get_mut(&session).ok_or(ZkError::SessionExpired)?;
        s.deadline = Instant::now() + s.timeout;
        Ok(())
    }

    fn end_session(&mut self, session: u64) {
        self.sessions.remove(&session);
        let owned: Vec<String> = self.nodes.iter().filter(|(_, n)| n.owner == Some(session)).map(|(p, _)| p.clone()).collect();
        for p in owned {
            self.nodes.remove(&p);
        }
        self.deletions.send_modify(|g| *g += 1);
    }

    fn expire_sessions(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self.sessions.iter().filter(|(_, s)| s.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            tracing::info!(session = id, "simulated ZooKeeper: session expired");
            self.end_session(id);
        }
    }

    fn handle(&mut self, req: ZkRequest) -> ZkResponse {
        let fail = ZkResponse::Failed;
        match req {
            ZkRequest::Connect { timeout_ms } => {
                let id = self.next_session;
                self.next_session += 1;
                let timeout = Duration::from_millis(timeout_ms);
                self.sessions.insert(id, Session { timeout, deadline: Instant::now() + timeout });
                ZkResponse::Session(id)
            }
            ZkRequest::Ping { session } => match self.touch(session) {
                Ok(()) => ZkResponse::Done,
                Err(e) => fail(e),
            },
            ZkRequest::Close { session } => {
                self.end_session(session);
                ZkResponse::Done
            }
            ZkRequest::Create { session, path, data, ephemeral, sequential } => {
                if let Err(e) = self.touch(session) {
                    return fail(e);
                }
                let parent = parent_of(&path).to_string();
                let Some(p) = self.nodes.get_mut(&parent) else { return fail(ZkError::NoNode) };
                let path = if sequential {
                    let seq = p.next_child_sequence;
                    p.next_child_sequence += 1;
                    format!("{path}{seq:010}")
                } else {
                    path
                };
                if self.nodes.contains_key(&path) {
                    return fail(ZkError::NodeExists);
                }
                let owner = ephemeral.then_some(session);
                self.nodes.insert(path.clone(), Node { data, version: 0, owner, next_child_sequence: 0 });
                ZkResponse::Created(path)
            }
            ZkRequest::Get { session, path } => {
                if let Err(e) = self.touch(session) {
                    return fail(e);
                }
                match self.nodes.get(&path) {
                    Some(n) => ZkResponse::Data(n.data.clone(), n.version),
                    None => fail(ZkError::NoNode),
                }
            }
            ZkRequest::Set { session, path, data, version } => {
                if let Err(e) = self.touch(session) {
                    return fail(e);
                }
                match self.nodes.get_mut(&path) {
                    Some(n) if n.version == version => {
                        n.data = data;
                        n.version += 1;
                        ZkResponse::Done
                    }
                    Some(_) => fail(ZkError::BadVersion),
                    None => fail(ZkError::NoNode),
                }
            }
            ZkRequest::Children { session, path } => {
                if let Err(e) = self.touch(session) {
                    return fail(e);
                }
                if !self.nodes.contains_key(&path) {
                    return fail(ZkError::NoNode);
                }
                let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
                let children = self
                    .nodes
                    .range(prefix.clone()..)
                    .take_while(|(p, _)| p.starts_with(&prefix))
                    .filter(|(p, _)| p.len() > prefix.len() && !p[prefix.len()..].contains('/'))
                    .map(|(p, _)| p[prefix.len()..].to_string())
                    .collect();
                ZkResponse::Children(children)
            }
            ZkRequest::WaitGone { .. } => unreachable!("handled by the long poll"),
        }
    }
}

/// Serves a simulated ZooKeeper on `addr` until the node is killed. Run it as the init task
/// of its own node; a restarted node starts empty (as a ZooKeeper that lost its data).
pub async fn serve(addr: SocketAddr) {
    let server = Arc::new(Mutex::new(Server::new()));
    let ep = Arc::new(Endpoint::bind(addr).await.expect("bind simulated ZooKeeper"));
    let handler = server.clone();
    ep.add_rpc_handler(move |req: ZkRequest| {
        let server = handler.clone();
        async move {
            if let ZkRequest::WaitGone { session, path, max_wait_ms } = req {
                let mut deletions = lock(&server).deletions.subscribe();
                let deadline = Instant::now() + Duration::from_millis(max_wait_ms);
                loop {
                    {
                        let mut s = lock(&server);
                        if s.touch(session).is_err() {
                            return ZkResponse::Failed(ZkError::SessionExpired);
                        }
                        if !s.nodes.contains_key(&path) {
                            return ZkResponse::Done;
                        }
                    }
                    match madsim::time::timeout(deadline.saturating_duration_since(Instant::now()), deletions.changed()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return ZkResponse::Failed(ZkError::ConnectionLoss),
                        Err(_) => return ZkResponse::StillThere,
                    }
                }
            }
            lock(&server).handle(req)
        }
    });
    loop {
        madsim::time::sleep(Duration::from_millis(20)).await;
        lock(&server).expire_sessions();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The client's view of its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    Connected,
    Disconnected,
    Expired,
    Closed,
}

/// A session with the simulated server; pings in the background.
pub struct ZkClient {
    ep: Arc<Endpoint>,
    server: SocketAddr,
    session: u64,
    timeout: Duration,
    state: watch::Receiver<SessionState>,
    state_tx: Arc<watch::Sender<SessionState>>,
    pinger: tokio::task::JoinHandle<()>,
}

impl Drop for ZkClient {
    fn drop(&mut self) {
        self.pinger.abort();
    }
}

impl ZkClient {
    /// Opens a session with the given timeout.
    pub async fn connect(server: SocketAddr, timeout: Duration) -> Result<ZkClient, ZkError> {
        let ep = Arc::new(Endpoint::bind("0.0.0.0:0").await.map_err(|_| ZkError::ConnectionLoss)?);
        let req = ZkRequest::Connect { timeout_ms: timeout.as_millis() as u64 };
        let session = match ep.call_timeout(server, req, timeout).await {
            Ok(ZkResponse::Session(id)) => id,
            _ => return Err(ZkError::ConnectionLoss),
        };
        let (tx, rx) = watch::channel(SessionState::Connected);
        let state_tx = Arc::new(tx);
        let pinger = tokio::spawn(ping_loop(ep.clone(), server, session, timeout, state_tx.clone()));
        Ok(ZkClient { ep, server, session, timeout, state: rx, state_tx, pinger })
    }

    /// The session's current state.
    pub fn state(&self) -> SessionState {
        *self.state.borrow()
    }

    /// A receiver of state changes.
    pub fn state_watcher(&self) -> watch::Receiver<SessionState> {
        self.state.clone()
    }

    async fn call(&self, req: ZkRequest) -> Result<ZkResponse, ZkError> {
        if matches!(self.state(), SessionState::Expired | SessionState::Closed) {
            return Err(ZkError::SessionExpired);
        }
        match self.ep.call_timeout(self.server, req, self.timeout).await {
            Ok(ZkResponse::Failed(ZkError::SessionExpired)) => {
                self.state_tx.send_replace(SessionState::Expired);
                Err(ZkError::SessionExpired)
            }
            Ok(ZkResponse::Failed(e)) => Err(e),
            Ok(r) => Ok(r),
            Err(_) => Err(ZkError::ConnectionLoss),
        }
    }

    /// Creates a node; returns its path (with the sequence for sequential nodes).
    pub async fn create(&self, path: &str, data: &[u8], ephemeral: bool, sequential: bool) -> Result<String, ZkError> {
        let req = ZkRequest::Create { session: self.session, path: path.into(), data: data.to_vec(), ephemeral, sequential };
        match self.call(req).await? {
            ZkResponse::Created(p) => Ok(p),
            _ => Err(ZkError::ConnectionLoss),
        }
    }

    /// A node's data and version.
    pub async fn get(&self, path: &str) -> Result<(Vec<u8>, u32), ZkError> {
        match self.call(ZkRequest::Get { session: self.session, path: path.into() }).await? {
            ZkResponse::Data(d, v) => Ok((d, v)),
            _ => Err(ZkError::ConnectionLoss),
        }
    }

    /// Sets a node's data if its version is still `version`.
    pub async fn set(&self, path: &str, data: &[u8], version: u32) -> Result<(), ZkError> {
        self.call(ZkRequest::Set { session: self.session, path: path.into(), data: data.to_vec(), version }).await.map(|_| ())
    }

    /// Names of a node's children.
    pub async fn children(&self, path: &str) -> Result<Vec<String>, ZkError> {
        match self.call(ZkRequest::Children { session: self.session, path: path.into() }).await? {
            ZkResponse::Children(c) => Ok(c),
            _ => Err(ZkError::ConnectionLoss),
        }
    }

    /// Waits until `path` is gone; errors if the session ends first. Polls in rounds of a
    /// third of the session timeout, so a lost request or answer only delays it.
    pub async fn wait_gone(&self, path: &str) -> Result<(), ZkError> {
        let round = self.timeout / 3;
        loop {
            let req = ZkRequest::WaitGone { session: self.session, path: path.into(), max_wait_ms: round.as_millis() as u64 };
            match self.ep.call_timeout(self.server, req, round * 2).await {
                Ok(ZkResponse::Done) => return Ok(()),
                Ok(ZkResponse::Failed(ZkError::SessionExpired)) => {
                    self.state_tx.send_replace(SessionState::Expired);
                    return Err(ZkError::SessionExpired);
                }
                Ok(ZkResponse::StillThere) => {}
                _ => {
                    if matches!(self.state(), SessionState::Expired | SessionState::Closed) {
                        return Err(ZkError::SessionExpired);
                    }
                    madsim::time::sleep(round).await;
                }
            }
        }
    }

    /// Ends the session: its ephemeral nodes go at once.
    pub async fn close(&self) {
        self.pinger.abort();
        let _ = self.ep.call_timeout(self.server, ZkRequest::Close { session: self.session }, self.timeout).await;
        self.state_tx.send_replace(SessionState::Closed);
    }
}

async fn ping_loop(ep: Arc<Endpoint>, server: SocketAddr, session: u64, timeout: Duration, state: Arc<watch::Sender<SessionState>>) {
    let mut last_heard = Instant::now();
    loop {
        madsim::time::sleep(timeout / 3).await;
        match ep.call_timeout(server, ZkRequest::Ping { session }, timeout / 3).await {
            Ok(ZkResponse::Done) => {
                last_heard = Instant::now();
                state.send_if_modified(|s| {
                    let changed = *s == SessionState::Disconnected;
                    if changed {
                        *s = SessionState::Connected;
                    }
                    changed
                });
            }
            Ok(ZkResponse::Failed(ZkError::SessionExpired)) => {
                state.send_replace(SessionState::Expired);
                return;
            }
            _ => {
                if last_heard.elapsed() >= timeout * 2 / 3 {
                    state.send_if_modified(|s| {
                        let changed = *s == SessionState::Connected;
                        if changed {
                            *s = SessionState::Disconnected;
                        }
                        changed
                    });
                }
            }
        }
    }
}
