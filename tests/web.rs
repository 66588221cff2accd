//! The web UI the seeds check failover with: the leader's pages, a file in "Browse File
//! System" with its size and preview, the standby page pointing at the leader, the same file
//! in the new leader's UI after `kill -9`, JSON and Prometheus endpoints, and the pages as
//! headless Chromium renders them (screenshots saved under the target dir).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::zk::ZooKeeper;
use common::{eventually, Cluster};
use tachyon::client::CreateOptions;

/// A plain HTTP GET; returns (status, body).
fn http_get(base: &str, path: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

fn json_get(base: &str, path: &str) -> serde_json::Value {
    let (status, body) = http_get(base, path);
    assert_eq!(status, 200, "{base}{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{base}{path} is not JSON ({e}): {body}"))
}

/// Every line of a Prometheus text exposition is a comment or `name{labels} number`.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad metrics line {l:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {l:?}"));
            assert!(series.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'), "bad name in {l:?}");
            (series.to_string(), value)
        })
        .collect()
}

fn metric(text: &str, series: &str) -> f64 {
    parse_prometheus(text).into_iter().find(|(s, _)| s == series).map(|(_, v)| v).unwrap_or(0.0)
}

fn chromium() -> &'static str {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return c;
        }
    }
    panic!("headless Chromium is needed: install Debian's chromium package (bin/test-all.sh does)");
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Renders `url` in headless Chromium; returns the DOM and saves a screenshot as `name.png`.
fn render(url: &str, name: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ];
    let user_data = format!("--user-data-dir={}", profile.path().display());
    let dom = Command::new(chromium()).args(flags).arg(&user_data).args(["--dump-dom", url]).output().unwrap();
    assert!(dom.status.success(), "chromium --dump-dom {url}: {}", String::from_utf8_lossy(&dom.stderr));
    let shot = screenshots_dir().join(format!("{name}.png"));
    let out = Command::new(chromium()).args(flags).arg(&user_data).arg(format!("--screenshot={}", shot.display())).arg(url).output().unwrap();
    assert!(out.status.success() && shot.exists(), "chromium --screenshot {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

/// The master whose `/readyz` says it leads.
async fn web_leader(c: &Cluster, masters: usize) -> usize {
    let mut found = None;
    for _ in 0..200 {
        found = (0..masters).find(|i| std::panic::catch_unwind(|| http_get(&c.master_web(*i), "/readyz").0 == 200).unwrap_or(false));
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found.expect("a master's /readyz says it leads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_shows_the_leader_and_every_file_before_and_after_a_failover() {
    let zk = ZooKeeper::standalone();
    let mut c = Cluster::start_ha(&zk.servers(), 2);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let text = "hello from the web test\n".repeat(40);
    fs.write_file("/ui/hello.txt", text.as_bytes(), CreateOptions { block_size: None, recursive: true }).await.unwrap();
    let leader = web_leader(&c, 2).await;
    let standby = 1 - leader;
    let (lw, sw) = (c.master_web(leader), c.master_web(standby));

    // JSON: roles, the file, workers, configuration (no secrets in clear).
    let o = json_get(&lw, "/api/overview");
    assert_eq!(o["role"], "leader");
    assert_eq!(o["leader"], c.master_address(leader));
    assert_eq!(o["masters"].as_array().unwrap().len(), 2, "{o}");
    assert_eq!(o["cluster"]["live_workers"], 1);
    let b = json_get(&lw, "/api/browse?path=/ui/hello.txt");
    assert_eq!(b["file"]["length"], text.len());
    assert!(b["preview"].as_str().unwrap().starts_with("hello from the web test"));
    assert_eq!(json_get(&lw, "/api/workers")["workers"].as_array().unwrap().len(), 1);
    assert!(json_get(&lw, "/api/config")["configuration"].as_array().unwrap().iter().any(|e| e["key"] == "tachyon.zookeeper.enabled"));
    assert_eq!(json_get(&sw, "/api/overview")["role"], "standby");
    // The shell agrees with the UI.
    let info = c.run_ok(&["fs", "masterInfo"]);
    for m in o["masters"].as_array().unwrap() {
        let line = info.lines().find(|l| l.starts_with(m["address"].as_str().unwrap())).unwrap_or_else(|| panic!("{info}"));
        assert!(line.contains(m["role"].as_str().unwrap()), "{line} vs {m}");
    }
    assert!(c.run_ok(&["fs", "report"]).contains("Live workers: 1"));
    assert_eq!(http_get(&sw, "/readyz").0, 503);
    assert_eq!(http_get(&lw, "/healthz"), (200, "ok".into()));
    assert_eq!(json_get(&c.worker_web(0), "/api/blocks")["blocks"].as_array().unwrap().len(), 1);

    // Prometheus text parses, and the counters move with work.
    let before = http_get(&lw, "/metrics").1;
    let series = "tachyon_master_operations_total{op=\"createFile\",result=\"ok\"}";
    fs.write_file("/ui/second", b"2", CreateOptions { block_size: None, recursive: true }).await.unwrap();
    let after = http_get(&lw, "/metrics").1;
    assert_eq!(metric(&after, series), metric(&before, series) + 1.0, "{after}");
    let rpc_count = "tachyon_master_rpc_duration_seconds_count{op=\"createFile\"}";
    assert!(metric(&after, rpc_count) > metric(&before, rpc_count), "{after}");
    assert!(metric(&after, "tachyon_journal_flush_duration_seconds_count") > metric(&before, "tachyon_journal_flush_duration_seconds_count"));
    assert!(metric(&after, "tachyon_journal_batch_operations_count") >= 1.0);
    assert_eq!(metric(&after, "tachyon_master_is_leader"), 1.0);
    assert_eq!(metric(&after, "tachyon_master_leader_terms_total"), 1.0);
    assert!(after.contains("tachyon_worker_heartbeat_age_seconds{worker="), "{after}");
    let standby_metrics = http_get(&sw, "/metrics").1;
    assert_eq!(metric(&standby_metrics, "tachyon_master_is_leader"), 0.0);
    assert!(standby_metrics.contains("tachyon_master_standby_lag_entries"), "{standby_metrics}");
    let worker_metrics = http_get(&c.worker_web(0), "/metrics").1;
    assert!(metric(&worker_metrics, "tachyon_worker_blocks") >= 2.0);
    assert!(metric(&worker_metrics, "tachyon_worker_bytes_total{direction=\"written\",tier=\"MEM\"}") >= (text.len() + 1) as f64, "{worker_metrics}");

    // In a real browser: the leader's overview, the directory, the file with its preview.
    let overview = render(&format!("{lw}/"), "1-leader-overview");
    assert!(overview.contains("the <b>leader</b>"), "{overview}");
    let dir = render(&format!("{lw}/browse?path=/ui"), "2-leader-browse");
    assert!(dir.contains("hello.txt") && dir.contains("second"), "{dir}");
    let file = render(&format!("{lw}/browse?path=/ui/hello.txt"), "3-leader-file");
    assert!(file.contains(&format!("({} bytes)", text.len())) && file.contains("hello from the web test"), "{file}");
    // The standby says so and points at the leader, for the overview and for browsing.
    let standby_page = render(&format!("{sw}/"), "4-standby-overview");
    assert!(standby_page.contains("a <b>standby</b>") && standby_page.contains(&format!("href=\"{lw}/\"")), "{standby_page}");
    let standby_browse = render(&format!("{sw}/browse?path=/ui"), "5-standby-browse");
    assert!(standby_browse.contains(&format!("{lw}/browse?path=/ui")), "{standby_browse}");

    // Kill the leader: the other master's UI shows the same file.
    c.kill_master_at(leader);
    let became = eventually(|| async { http_get(&sw, "/readyz").0 == 200 }).await;
    assert!(became, "the standby did not take over");
    let after_failover = eventually(|| async { json_get(&sw, "/api/browse?path=/ui/hello.txt")["preview"].is_string() }).await;
    assert!(after_failover, "the file's preview is not served by the new leader");
    let file = render(&format!("{sw}/browse?path=/ui/hello.txt"), "6-new-leader-file");
    assert!(file.contains(&format!("({} bytes)", text.len())) && file.contains("hello from the web test"), "{file}");
    println!("screenshots in {}", screenshots_dir().display());
}
