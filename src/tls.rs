//! TLS for master and worker RPC and the web UIs (rustls on ring): certificates from the
//! PEM files `tachyon.network.tls.*` name, read and checked when a process starts. Servers
//! present `cert.file` + `key.file`; clients, workers and masters trust only the CA
//! certificates of `ca.file`. Simulated builds carry the settings but use no TLS (madsim's
//! network has no sockets to encrypt).

use crate::config::{self, Config};
use crate::error::FsError;

/// PEM material for TLS, checked to parse.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA certificates this process trusts (empty: none, so every server is refused).
    pub ca_pem: Vec<u8>,
    /// Certificate chain and private key this process presents as a server (masters, workers).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsConfig {
    /// Key material is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").field("ca_pem_bytes", &self.ca_pem.len()).field("has_identity", &self.identity.is_some()).finish()
    }
}

fn invalid(key: &str, reason: String) -> FsError {
    FsError::InvalidArgument { reason: format!("{key}: {reason}") }
}

fn read(cfg: &Config, key: &str) -> Result<Option<Vec<u8>>, FsError> {
    let path = cfg.string(key);
    if path.trim().is_empty() {
        return Ok(None);
    }
    std::fs::read(path.trim()).map(Some).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))
}

impl TlsConfig {
    /// The TLS settings, or `None` when `tachyon.network.tls.enabled` is off. The
    /// certificate and key are read if configured (a server fails to start without them);
    /// every file must hold what its key says.
    pub fn from_config(cfg: &Config) -> Result<Option<TlsConfig>, FsError> {
        if !cfg.bool(config::TLS_ENABLED) {
            return Ok(None);
        }
        let ca_pem = read(cfg, config::TLS_CA_FILE)?.unwrap_or_default();
        let identity = match (read(cfg, config::TLS_CERT_FILE)?, read(cfg, config::TLS_KEY_FILE)?) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err(invalid(config::TLS_KEY_FILE, format!("is needed with {}", config::TLS_CERT_FILE))),
            (None, Some(_)) => return Err(invalid(config::TLS_CERT_FILE, format!("is needed with {}", config::TLS_KEY_FILE))),
        };
        let tls = TlsConfig { ca_pem, identity };
        tls.check()?;
        Ok(Some(tls))
    }

    /// The certificate and key a server presents, or why it cannot serve TLS.
    pub fn server_identity(&self) -> Result<(&[u8], &[u8]), FsError> {
        self.identity
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()))
            .ok_or_else(|| invalid(config::TLS_CERT_FILE, format!("a server with {} needs a certificate and {}", config::TLS_ENABLED, config::TLS_KEY_FILE)))
    }
}

#[cfg(not(madsim))]
mod real {
    use std::sync::Arc;

    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::{invalid, TlsConfig};
    use crate::config;
    use crate::error::FsError;

    fn certificates(pem: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, FsError> {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| invalid(key, format!("not PEM certificates: {e:?}")))?;
        if certs.is_empty() {
            return Err(invalid(key, "holds no PEM certificate".into()));
        }
        Ok(certs)
    }

    impl TlsConfig {
        /// Checks that every configured file parses (certificates, a private key).
        pub(super) fn check(&self) -> Result<(), FsError> {
            if !self.ca_pem.is_empty() {
                certificates(&self.ca_pem, config::TLS_CA_FILE)?;
            }
            if self.identity.is_some() {
                self.rustls_server()?;
            }
            Ok(())
        }

        /// The client side for tonic: trust the configured CA only.
        pub fn client(&self) -> tonic::transport::ClientTlsConfig {
            let config = tonic::transport::ClientTlsConfig::new();
            if self.ca_pem.is_empty() {
                config
            } else {
                config.ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            }
        }

        /// The server side for tonic.
        pub fn server(&self) -> Result<tonic::transport::ServerTlsConfig, FsError> {
            let (cert, key) = self.server_identity()?;
            Ok(tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key)))
        }

        /// The server side for the web UI (rustls directly).
        pub fn rustls_server(&self) -> Result<Arc<rustls::ServerConfig>, FsError> {
            let (cert, key) = self.server_identity()?;
            let chain = certificates(cert, config::TLS_CERT_FILE)?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid(config::TLS_KEY_FILE, format!("no PEM private key: {e:?}")))?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let server = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(config::TLS_CERT_FILE, e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| invalid(config::TLS_KEY_FILE, format!("does not match the certificate: {e}")))?;
            Ok(Arc::new(server))
        }
    }
}

#[cfg(madsim)]
impl TlsConfig {
    /// Simulated builds do not parse certificates.
    pub(super) fn check(&self) -> Result<(), FsError> {
        Ok(())
    }
}

/// A gRPC server builder, serving TLS when `tls` is given (see [`crate::rpc::server_builder`]).
pub(crate) fn with_tls(builder: tonic::transport::Server, tls: Option<&TlsConfig>) -> Result<tonic::transport::Server, FsError> {
    match tls {
        #[cfg(not(madsim))]
        Some(tls) => builder.tls_config(tls.server()?).map_err(|e| invalid(config::TLS_CERT_FILE, e.to_string())),
        _ => Ok(builder),
    }
}

/// Most TLS handshakes of the web UI in progress at once; a client that never finishes
/// its handshake holds a slot for at most [`WEB_HANDSHAKE_TIMEOUT`].
#[cfg(not(madsim))]
const MAX_WEB_HANDSHAKES: usize = 64;
/// Longest a web UI client may take to finish its TLS handshake.
#[cfg(not(madsim))]
const WEB_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A listener for axum that hands out TLS connections: TCP accepts and handshakes run in
/// a task of their own (bounded, with a timeout), so one slow client delays nobody else.
#[cfg(not(madsim))]
pub struct TlsListener {
    local: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::net::SocketAddr)>,
}

#[cfg(not(madsim))]
impl TlsListener {
    /// Serves TLS with `config` on an already bound `listener`.
    pub fn new(listener: tokio::net::TcpListener, config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(MAX_WEB_HANDSHAKES);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_WEB_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "web UI accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(WEB_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "web UI TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "web UI TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

#[cfg(not(madsim))]
impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A connection failure with every cause in its chain, and a hint when TLS is the reason
/// (a server certificate this client does not trust, or TLS on one side only).
pub fn describe_connect_error(error: &(dyn std::error::Error + 'static), tls: bool) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        text.push_str(&format!(" (the server's certificate is not signed by a CA in {})", config::TLS_CA_FILE));
    } else if tls && (lower.contains("handshake") || lower.contains("corrupt message") || lower.contains("invalidcontenttype")) {
        text.push_str(&format!(" (the server does not speak TLS: is {} on there?)", config::TLS_ENABLED));
    }
    text
}
