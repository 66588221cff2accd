//! `tachyon bench`'s S3 gateway lines: PUT and GET of one object through an in-process
//! gateway over plain HTTP/1.1, each next to the client library doing the same (writing the
//! same bytes; reading the same file).

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use tokio::time::Instant;

use crate::client::{CreateOptions, FileSystem};

/// Rounds of each measurement; the fastest counts.
pub const ROUNDS: usize = 3;

/// Starts a gateway over `fs` on a free loopback port, PUTs and GETs `data`, prints both
/// lines, and stops the gateway.
pub async fn run(fs: &FileSystem, data: Arc<Vec<u8>>, out: &mut dyn std::io::Write) -> Result<(), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let bind: SocketAddr = ([127, 0, 0, 1], port).into();
    let gateway =
        tokio::spawn(crate::proxy::serve(crate::proxy::ProxyOptions { bind, credentials: None, tls: None, multipart_expiry_ms: u64::MAX }, fs.clone()));
    let result = measure(fs, bind, data, out).await;
    gateway.abort();
    result
}

async fn measure(fs: &FileSystem, gateway: SocketAddr, data: Arc<Vec<u8>>, out: &mut dyn std::io::Write) -> Result<(), String> {
    fs.create_directory("/gateway-bench", true, true).await.map_err(|e| e.to_string())?;
    let gbps = |secs: f64| data.len() as f64 / secs / 1e9;
    let (mut put, mut client_write, mut get, mut client_read) = (0f64, 0f64, 0f64, 0f64);
    for round in 0..ROUNDS {
        let key = format!("/gateway-bench/object-{round}");
        let body = data.clone();
        let path = key.clone();
        let seconds = crate::runtime::spawn_compute(move || http(gateway, "PUT", &path, &body).map(|(s, _)| s)).await.map_err(|e| e.to_string())??;
        put = put.max(gbps(seconds));
        let start = Instant::now();
        fs.write_file(&format!("{key}-direct"), &data, CreateOptions::default()).await.map_err(|e| e.to_string())?;
        client_write = client_write.max(gbps(start.elapsed().as_secs_f64()));
        let path = key.clone();
        let (seconds, length) = crate::runtime::spawn_compute(move || http(gateway, "GET", &path, &[])).await.map_err(|e| e.to_string())??;
        if length != data.len() {
            return Err(format!("GET {key} returned {length} bytes, {} were PUT", data.len()));
        }
        get = get.max(gbps(seconds));
        let start = Instant::now();
        let back = fs.read_file(&key).await.map_err(|e| e.to_string())?;
        client_read = client_read.max(gbps(start.elapsed().as_secs_f64()));
        if back.len() != data.len() {
            return Err(format!("{key} holds {} bytes after the PUT of {}", back.len(), data.len()));
        }
    }
    let _ = fs.delete("/gateway-bench", true).await;
    super::line(out, "S3 gateway PUT (HTTP/1.1)", put, "GB/s", "client library write of the same bytes", client_write);
    super::line(out, "S3 gateway GET (HTTP/1.1)", get, "GB/s", "client library read of the same file", client_read);
    Ok(())
}

/// One unsigned request on a new connection: seconds until the whole answer arrived, and
/// the length of its body. Non-2xx answers are errors.
fn http(gateway: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<(f64, usize), String> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(gateway).map_err(|e| e.to_string())?;
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {gateway}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| e.to_string())?;
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut answer = Vec::with_capacity(length.unwrap_or(0));
    reader.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    if !status.split_whitespace().nth(1).is_some_and(|code| code.starts_with('2')) {
        return Err(format!("{method} {path}: {} {}", status.trim(), String::from_utf8_lossy(&answer[..answer.len().min(300)])));
    }
    Ok((start.elapsed().as_secs_f64(), answer.len()))
}
