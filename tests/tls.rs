//! TLS on master and worker RPC and the web UI, with a CA generated here: a client that
//! trusts the CA works through the library, the shell and HTTPS; one without the CA, or
//! speaking plain text, is refused with an error that says why.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::Cluster;
use tachyon::client::CreateOptions;
use tachyon::error::FsError;
use tachyon::security::SecurityOptions;
use tachyon::tls::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A CA and a server certificate for 127.0.0.1/localhost signed by it, as PEM files in
/// `dir`; returns the CA's PEM.
fn make_ca_and_server_cert(dir: &Path, name: &str) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("tachyon test CA {name}"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{name}-ca.pem")), ca_cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-cert.pem")), server_cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), server_key.serialize_pem()).unwrap();
    ca_cert.pem()
}

fn client_security(ca_pem: &str) -> SecurityOptions {
    SecurityOptions {
        tls: Some(TlsConfig { ca_pem: ca_pem.as_bytes().to_vec(), identity: None }),
        ..SecurityOptions::simple_as(&tachyon::client::current_user())
    }
}

/// GET `path` over HTTPS trusting `ca_pem`; returns the whole response.
async fn https_get(port: u16, path: &str, ca_pem: &str) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = String::new();
    tls.read_to_string(&mut response).await.map_err(|e| e.to_string())?;
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_web_ui_speak_tls_and_refuse_clients_without_the_ca() {
    let certs = tempfile::tempdir().unwrap();
    let ca = make_ca_and_server_cert(certs.path(), "cluster");
    let other_ca = make_ca_and_server_cert(certs.path(), "other");
    let file = |n: &str| certs.path().join(n).display().to_string();
    let mut c = Cluster::start_with_defines(vec![
        "-Dtachyon.network.tls.enabled=true".into(),
        format!("-Dtachyon.network.tls.cert.file={}", file("cluster-cert.pem")),
        format!("-Dtachyon.network.tls.key.file={}", file("cluster-key.pem")),
        format!("-Dtachyon.network.tls.ca.file={}", file("cluster-ca.pem")),
    ]);
    c.start_worker(0);
    let fs = c.client_with(client_security(&ca));
    assert!(common::eventually(|| async { fs.workers().await.is_ok_and(|w| w.len() == 1) }).await, "the worker registers over TLS");
    // Writes stream to the worker's data port and reads come back over it (no short-circuit).
    let data = common::content(300_000, 5);
    fs.write_file("/tls/f", &data, CreateOptions { recursive: true, ..Default::default() }).await.unwrap();
    let remote = c.client_with(client_security(&ca));
    assert_eq!(remote.read_file("/tls/f").await.unwrap(), data);
    assert!(c.run_ok(&["fs", "ls", "/tls"]).contains("/tls/f"), "the shell with the cluster's TLS settings");

    // No CA, or another CA: refused, naming the reason, with an error clients do not
    // retry (not two minutes of backoff against a certificate that will not change).
    for (who, ca_pem) in [("no CA", ""), ("another CA", other_ca.as_str())] {
        match c.client_with(client_security(ca_pem)).list_status("/", false).await {
            Err(e @ FsError::Unauthenticated { .. }) => {
                let reason = e.to_string();
                assert!(reason.contains("certificate") && reason.contains("tachyon.network.tls.ca.file"), "{who}: {reason}");
                assert!(!e.is_retryable(), "{who}");
            }
            other => panic!("{who}: expected Unauthenticated, got {other:?}"),
        }
    }
    // Plain text to a TLS server gets nowhere.
    let plain = tachyon::rpc::connect(&c.master_address(0), std::time::Duration::from_secs(3), None).await;
    if let Ok(channel) = plain {
        let mut raw = tachyon::proto::master_service_client::MasterServiceClient::new(channel);
        assert!(raw.get_master_info(tachyon::proto::Empty {}).await.is_err(), "a plain-text request was answered");
    }

    // The web UI: HTTPS with the CA; refused without it; no plain HTTP.
    let web_port = c.web_port;
    let page = https_get(web_port, "/healthz", &ca).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200") && page.ends_with("ok"), "{page}");
    let overview = https_get(web_port, "/api/overview", &ca).await.unwrap();
    assert!(overview.contains("https://127.0.0.1:"), "links to masters use https: {overview}");
    let refused = https_get(web_port, "/healthz", &other_ca).await.unwrap_err();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", web_port)).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "plain HTTP was served");

    // A master or worker told to serve TLS without a certificate does not start.
    let out = c.run(&["-Dtachyon.network.tls.cert.file=", "-Dtachyon.network.tls.key.file=", "worker"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("tachyon.network.tls.cert.file"), "{stderr}");
}
