//! gRPC connections shared by workers and clients: a cached channel to the current
//! leader (found through the [`Coordinator`]) and bounded retry with exponential backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};
use tracing::debug;

use crate::coordinator::Coordinator;
use crate::error::FsError;
use crate::tls::TlsConfig;

/// How long to wait for a TCP connection before calling a server unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Most requests one connection may have in flight at a server (HTTP/2 streams); a client
/// with more queues them (its HTTP/2 layer honours the server's setting).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// Largest request header block a server accepts.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 << 10;
/// Streams a client may open and reset before the server drops the connection (HTTP/2
/// "rapid reset").
const MAX_PENDING_RESETS: usize = 32;
/// Largest request a master decodes: a worker's block report of about a million blocks.
pub const MAX_MASTER_REQUEST_BYTES: usize = 32 << 20;
/// Largest message a worker decodes: one data chunk (at most 16 MiB) and its header.
pub const MAX_WORKER_REQUEST_BYTES: usize = (16 << 20) + (64 << 10);

/// A gRPC server with tachyon's per-connection limits, serving TLS when `tls` is given.
pub fn server_builder(tls: Option<&TlsConfig>) -> Result<tonic::transport::Server, FsError> {
    let builder = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_max_header_list_size(Some(MAX_HEADER_LIST_BYTES))
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS));
    crate::tls::with_tls(builder, tls)
}

/// Opens a channel to `host:port`, with TLS if `tls` is given. A server whose certificate
/// this process does not trust is refused for good (`Unauthenticated`, not retried); other
/// failures are `Unavailable`.
pub async fn connect(address: &str, request_timeout: Duration, tls: Option<&TlsConfig>) -> Result<Channel, FsError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| FsError::InvalidArgument { reason: format!("bad address {address:?}: {e}") })?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(request_timeout);
    #[cfg(not(madsim))]
    let endpoint = match tls {
        Some(tls) => endpoint.tls_config(tls.client()).map_err(|e| FsError::InvalidArgument { reason: format!("TLS settings: {e}") })?,
        None => endpoint,
    };
    endpoint.connect().await.map_err(|e| {
        let reason = format!("cannot connect to {address}: {}", crate::tls::describe_connect_error(&e, tls.is_some()));
        if reason.contains(crate::config::TLS_CA_FILE) {
            FsError::Unauthenticated { reason }
        } else {
            FsError::Unavailable { reason }
        }
    })
}

/// A channel to whichever master leads, re-resolved after a failure.
pub struct LeaderChannel {
    coordinator: Arc<dyn Coordinator>,
    cached: Mutex<Option<(String, Channel)>>,
    request_timeout: Duration,
    tls: Option<TlsConfig>,
}

impl LeaderChannel {
    /// A lazily connected channel to the leader.
    pub fn new(coordinator: Arc<dyn Coordinator>, request_timeout: Duration, tls: Option<TlsConfig>) -> Self {
        LeaderChannel { coordinator, cached: Mutex::new(None), request_timeout, tls }
    }

    /// The coordinator the leader is found through.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coordinator
    }

    /// The cached channel, or a new one to the leader the coordinator names.
    pub async fn get(&self) -> Result<(String, Channel), FsError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let leader = self.coordinator.leader_address().await?.ok_or_else(|| FsError::Unavailable { reason: "no leader master is known yet".into() })?;
        let channel = connect(&leader, self.request_timeout, self.tls.as_ref()).await?;
        *cached = Some((leader.clone(), channel.clone()));
        Ok((leader, channel))
    }

    /// Asks the coordinator who leads now and forgets the cached channel if that changed.
    /// Returns true when the leader moved (a failover happened since the last call).
    pub async fn follow_leader(&self) -> Result<bool, FsError> {
        let current = self.coordinator.leader_address().await?;
        let mut cached = self.cached.lock().await;
        let moved = match (cached.as_ref(), current) {
            (Some((address, _)), Some(leader)) => *address != leader,
            _ => false,
        };
        if moved {
            *cached = None;
        }
        Ok(moved)
    }

    /// Forgets the channel so the next call looks up the leader again.
    pub async fn reset(&self) {
        *self.cached.lock().await = None;
    }
}

/// Exponential backoff bounded in total time.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub base_sleep: Duration,
    pub max_sleep: Duration,
    pub max_duration: Duration,
}

impl RetryPolicy {
    /// Runs `op` until it succeeds, fails with a non-retryable error, or the time is up.
    /// Before each retry the leader channel is reset so a failover is followed.
    pub async fn run<T, F, Fut>(&self, leader: &LeaderChannel, what: &str, mut op: F) -> Result<T, FsError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, FsError>>,
    {
        let start = tokio::time::Instant::now();
        let mut sleep = self.base_sleep;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result = match leader.get().await {
                Ok((_, channel)) => op(channel).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && start.elapsed() + sleep <= self.max_duration => {
                    debug!(what, attempt, error = %e, "retrying");
                    leader.reset().await;
                    tokio::time::sleep(sleep).await;
                    sleep = (sleep * 2).min(self.max_sleep);
                }
                Err(e) => return Err(e),
            }
        }
    }
}
