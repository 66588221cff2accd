//! `tachyon bench`'s S3 gateway lines: PUT and GET of one object and a paged listing of a
//! folder through an in-process gateway over plain HTTP/1.1, each next to the client library
//! doing the same (writing the same bytes; reading the same file; listing the same folder).

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use tokio::time::Instant;

use crate::client::{CreateOptions, FileSystem};
use crate::error::FsError;
use crate::proto::FileInfo;

/// Rounds of each measurement; the fastest counts.
pub const ROUNDS: usize = 3;
/// Keys in the listed folder: ten pages of S3's 1,000 keys.
const LISTED_KEYS: usize = 10_000;
/// Files created at once while filling the listed folder.
const FILL_CONCURRENCY: usize = 32;

/// Starts a gateway over `fs` on a free loopback port, PUTs and GETs `data`, prints both
/// lines, and stops the gateway.
pub async fn run(fs: &FileSystem, data: Arc<Vec<u8>>, out: &mut dyn std::io::Write) -> Result<(), String> {
    let port = super::unused_port().map_err(|e| e.to_string())?;
    let bind: SocketAddr = ([127, 0, 0, 1], port).into();
    let gateway =
        tokio::spawn(crate::proxy::serve(crate::proxy::ProxyOptions { bind, credentials: None, tls: None, multipart_expiry_ms: u64::MAX }, fs.clone()));
    let mut result = measure(fs, bind, data, out).await;
    if result.is_ok() {
        result = measure_listing(fs, bind, out).await;
    }
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
        let (seconds, length) =
            crate::runtime::spawn_compute(move || http(gateway, "GET", &path, &[]).map(|(s, body)| (s, body.len()))).await.map_err(|e| e.to_string())??;
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

/// ListObjectsV2 of a folder of [`LISTED_KEYS`] files in pages of 1,000, against the client
/// library's paged listing of the same folder; both counted in keys per second.
async fn measure_listing(fs: &FileSystem, gateway: SocketAddr, out: &mut dyn std::io::Write) -> Result<(), String> {
    use futures::StreamExt;
    let folder = "/gateway-bench/listed";
    fs.create_directory(folder, true, true).await.map_err(|e| e.to_string())?;
    let created: Vec<Result<FileInfo, FsError>> = futures::stream::iter(0..LISTED_KEYS)
        .map(|i| async move { fs.write_file(&format!("{folder}/key-{i:06}"), &[], CreateOptions::default()).await })
        .buffer_unordered(FILL_CONCURRENCY)
        .collect()
        .await;
    created.into_iter().collect::<Result<Vec<_>, FsError>>().map_err(|e| format!("fill {folder}: {e}"))?;
    let (mut gateway_rate, mut client_rate) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        let listed = crate::runtime::spawn_compute(move || list_all(gateway, "gateway-bench", "listed/")).await.map_err(|e| e.to_string())??;
        if listed.0 != LISTED_KEYS {
            return Err(format!("the gateway listed {} keys of {LISTED_KEYS}", listed.0));
        }
        gateway_rate = gateway_rate.max(listed.0 as f64 / listed.1);
        let start = Instant::now();
        let mut count = 0;
        fs.list_status_pages(folder, false, |page| {
            count += page.len();
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
        client_rate = client_rate.max(count as f64 / start.elapsed().as_secs_f64());
    }
    let _ = fs.delete("/gateway-bench", true).await;
    super::line(out, "S3 gateway ListObjectsV2 (1,000 keys a page)", gateway_rate, "keys/s", "client library listing of the same folder", client_rate);
    Ok(())
}

/// Lists every key below `prefix` in `bucket`, following continuation tokens: the keys
/// counted and the seconds taken.
fn list_all(gateway: SocketAddr, bucket: &str, prefix: &str) -> Result<(usize, f64), String> {
    let start = Instant::now();
    let (mut keys, mut token) = (0, None::<String>);
    loop {
        let mut path = format!("/{bucket}?list-type=2&max-keys=1000&prefix={}", percent_encode(prefix));
        if let Some(t) = &token {
            path.push_str(&format!("&continuation-token={}", percent_encode(t)));
        }
        let (_, body) = http(gateway, "GET", &path, &[])?;
        let xml = String::from_utf8_lossy(&body);
        keys += xml.matches("<Key>").count();
        token = xml.split_once("<NextContinuationToken>").and_then(|(_, rest)| rest.split_once("</NextContinuationToken>")).map(|(t, _)| t.to_string());
        if token.is_none() {
            return Ok((keys, start.elapsed().as_secs_f64()));
        }
    }
}

/// `s` with everything but unreserved characters percent-encoded, for a query string.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// One unsigned request on a new connection: seconds until the whole answer arrived, and
/// its body. Non-2xx answers are errors.
fn http(gateway: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<(f64, Vec<u8>), String> {
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
    Ok((start.elapsed().as_secs_f64(), answer))
}
