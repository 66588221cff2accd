//! The web UI the seeds check failover with: the leader's pages, a file in "Browse File
//! System" with its size and preview, the standby page pointing at the leader, the same file
//! in the new leader's UI after `kill -9`, JSON and Prometheus endpoints, and the pages in
//! headless Chromium driven over WebDriver, clicking through links (screenshots saved under
//! the target dir).

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::http;
use common::zk::ZooKeeper;
use common::{eventually, Cluster};
use tachyon::client::CreateOptions;

/// Standard base64 (as WebDriver screenshots come).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text.bytes().filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| value(*c) as u32).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, x)| acc | x << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// A headless Chromium driven over WebDriver (Debian's chromium-driver).
struct Browser {
    driver: String,
    session: String,
    child: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser session (test support: waits on real time).
    #[allow(clippy::disallowed_methods)]
    fn start() -> Browser {
        assert!(Path::new("/usr/bin/chromedriver").exists(), "chromedriver is needed: install Debian's chromium-driver (bin/test-all.sh does)");
        let port = common::free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let driver = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium(),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())]
        }}}});
        let (status, body) = http::request("POST", &driver, "/session", Some(&caps.to_string()));
        assert_eq!(status, 200, "new WebDriver session: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let session = v["value"]["sessionId"].as_str().expect("session id").to_string();
        Browser { driver, session, child, _profile: profile }
    }

    fn command(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let path = format!("/session/{}{path}", self.session);
        let body = if method == "GET" { None } else { Some(body.to_string()) };
        let (status, text) = http::request(method, &self.driver, &path, body.as_deref());
        assert_eq!(status, 200, "WebDriver {method} {path}: {text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["value"].clone()
    }

    fn open(&self, url: &str) {
        self.command("POST", "/url", serde_json::json!({ "url": url }));
    }

    /// Clicks the link with exactly this text, as a user would.
    fn click_link(&self, text: &str) {
        self.click("link text", text);
    }

    /// Clicks the link whose text contains `text`.
    fn click_link_containing(&self, text: &str) {
        self.click("partial link text", text);
    }

    fn click(&self, using: &str, text: &str) {
        let element = self.command("POST", "/element", serde_json::json!({"using": using, "value": text}));
        let id = element.as_object().and_then(|o| o.values().next()).and_then(|v| v.as_str()).expect("element id").to_string();
        self.command("POST", &format!("/element/{id}/click"), serde_json::json!({}));
    }

    /// The text of an open JavaScript alert, if a page raised one.
    fn alert_text(&self) -> Option<String> {
        let (status, text) = http::request("GET", &self.driver, &format!("/session/{}/alert/text", self.session), None);
        (status == 200).then(|| serde_json::from_str::<serde_json::Value>(&text).unwrap()["value"].to_string())
    }

    fn page(&self) -> String {
        self.command("GET", "/source", serde_json::json!({})).as_str().unwrap_or_default().to_string()
    }

    fn screenshot(&self, name: &str) {
        let png = base64_decode(self.command("GET", "/screenshot", serde_json::json!({})).as_str().unwrap_or_default());
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http::request("DELETE", &self.driver, &format!("/session/{}", self.session), None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_get(base: &str, path: &str) -> serde_json::Value {
    let (status, body) = http::get(base, path);
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

/// The master whose `/readyz` says it leads.
async fn web_leader(c: &Cluster, masters: usize) -> usize {
    let mut found = None;
    for _ in 0..200 {
        found = (0..masters).find(|i| std::panic::catch_unwind(|| http::get(&c.master_web(*i), "/readyz").0 == 200).unwrap_or(false));
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
    fs.write_file("/ui/hello.txt", text.as_bytes(), CreateOptions { block_size: None, recursive: true, write_type: None }).await.unwrap();
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
    assert_eq!(http::get(&sw, "/readyz").0, 503);
    assert_eq!(http::get(&lw, "/healthz"), (200, "ok".into()));
    assert_eq!(json_get(&c.worker_web(0), "/api/blocks")["blocks"].as_array().unwrap().len(), 1);

    // Prometheus text parses, and the counters move with work.
    let before = http::get(&lw, "/metrics").1;
    let series = "tachyon_master_operations_total{op=\"createFile\",result=\"ok\"}";
    fs.write_file("/ui/second", b"2", CreateOptions { block_size: None, recursive: true, write_type: None }).await.unwrap();
    let after = http::get(&lw, "/metrics").1;
    assert_eq!(metric(&after, series), metric(&before, series) + 1.0, "{after}");
    // The library sends creates in `CreateFiles` calls; each create still counts as one above.
    let rpc_count = "tachyon_master_rpc_duration_seconds_count{op=\"createFiles\"}";
    assert!(metric(&after, rpc_count) > metric(&before, rpc_count), "{after}");
    assert!(metric(&after, "tachyon_journal_flush_duration_seconds_count") > metric(&before, "tachyon_journal_flush_duration_seconds_count"));
    assert!(metric(&after, "tachyon_journal_batch_operations_count") >= 1.0);
    assert_eq!(metric(&after, "tachyon_master_is_leader"), 1.0);
    // Every RPC is counted, the workers' and the informational ones too.
    for op in ["registerWorker", "heartbeat", "commitBlock", "checkBlockWrite", "getWorkers", "getMasterInfo"] {
        assert!(metric(&after, &format!("tachyon_master_operations_total{{op=\"{op}\",result=\"ok\"}}")) >= 1.0, "{op} is not counted: {after}");
    }
    assert_eq!(metric(&after, "tachyon_master_leader_terms_total"), 1.0);
    assert!(after.contains("tachyon_worker_heartbeat_age_seconds{worker="), "{after}");
    let standby_metrics = http::get(&sw, "/metrics").1;
    assert_eq!(metric(&standby_metrics, "tachyon_master_is_leader"), 0.0);
    assert!(standby_metrics.contains("tachyon_master_standby_lag_entries"), "{standby_metrics}");
    let worker_metrics = http::get(&c.worker_web(0), "/metrics").1;
    assert!(metric(&worker_metrics, "tachyon_worker_blocks") >= 2.0);
    assert!(metric(&worker_metrics, "tachyon_worker_bytes_total{direction=\"written\",tier=\"MEM\"}") >= (text.len() + 1) as f64, "{worker_metrics}");

    // In a real browser, clicking as a user would: the leader's overview, Browse File
    // System, the directory, the file with its size and preview.
    let browser = Browser::start();
    browser.open(&format!("{lw}/"));
    assert!(browser.page().contains("the <b>leader</b>"), "{}", browser.page());
    browser.screenshot("1-leader-overview");
    browser.click_link("Browse File System");
    browser.click_link("ui/");
    let dir = browser.page();
    assert!(dir.contains("hello.txt") && dir.contains("second"), "{dir}");
    browser.screenshot("2-leader-browse");
    browser.click_link("hello.txt");
    let file = browser.page();
    assert!(file.contains(&format!("({} bytes)", text.len())) && file.contains("hello from the web test"), "{file}");
    browser.screenshot("3-leader-file");
    // The standby says so and points at the leader; its browse page links to the leader's.
    browser.open(&format!("{sw}/"));
    let standby_page = browser.page();
    assert!(standby_page.contains("a <b>standby</b>") && standby_page.contains(&format!("href=\"{lw}/\"")), "{standby_page}");
    browser.screenshot("4-standby-overview");
    browser.click_link("Browse File System");
    assert!(browser.page().contains(&format!("{lw}/browse?path=/")), "{}", browser.page());
    browser.screenshot("5-standby-browse");
    browser.click_link_containing(&c.master_address(leader));
    assert!(browser.page().contains(">ui/<"), "the standby's link leads to the leader's listing: {}", browser.page());

    // A big directory is listed a page at a time; names that need escaping in a URL work.
    {
        use futures::StreamExt;
        let opts = || CreateOptions { block_size: None, recursive: true, write_type: None };
        let made: Vec<_> = futures::stream::iter(0..1003)
            .map(|i| {
                let fs = fs.clone();
                async move { fs.write_file(&format!("/many/f{i:04}"), b"", opts()).await }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(made.iter().all(|m| m.is_ok()));
        fs.write_file("/many/zz a&b #1%.txt", b"odd", opts()).await.unwrap();
    }
    let first = json_get(&lw, "/api/browse?path=/many");
    assert_eq!(first["children"].as_array().unwrap().len(), 1000);
    assert_eq!(first["next_after"], "/many/f0999");
    let rest = json_get(&lw, "/api/browse?path=/many&after=/many/f0999");
    let rest_names: Vec<&str> = rest["children"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(rest_names, ["f1000", "f1001", "f1002", "zz a&b #1%.txt"]);
    assert!(rest["next_after"].is_null());
    browser.open(&format!("{lw}/browse?path=/many"));
    browser.click_link("Next page");
    assert!(browser.page().contains("f1002"), "{}", browser.page());
    browser.click_link("zz a&b #1%.txt");
    assert!(browser.page().contains("(3 bytes)"), "{}", browser.page());

    // Names are shown as text, never run: a directory "<script>alert(1)<" holding "script>"
    // (together the path /<script>alert(1)</script>) and a file whose name closes an
    // attribute and opens an element.
    fs.write_file("/xss/<script>alert(1)</script>", b"s", CreateOptions { block_size: None, recursive: true, write_type: None }).await.unwrap();
    fs.write_file("/xss/\"><img src=x onerror=alert(2)>", b"i", CreateOptions { block_size: None, recursive: true, write_type: None }).await.unwrap();
    browser.open(&format!("{lw}/browse?path=/xss"));
    assert_eq!(browser.alert_text(), None, "a name ran as script");
    let listing = browser.page();
    assert!(listing.contains("&lt;script&gt;alert(1)&lt;") && !listing.contains("<script>alert(1)"), "{listing}");
    assert!(!listing.contains("<img src=x"), "{listing}");
    browser.click_link_containing("<script>alert(1)<");
    assert_eq!(browser.alert_text(), None, "a name ran as script");
    browser.click_link("script>");
    assert!(browser.page().contains("(1 bytes)"), "{}", browser.page());
    browser.screenshot("7-escaped-names");

    // No request to the UI changes the namespace: every page is a GET that reads, and other
    // methods are refused.
    let digest_before = fs.state_digests().await.unwrap();
    for page in ["/", "/browse?path=/xss", "/workers", "/config", "/api/overview", "/api/browse?path=/many", "/api/workers", "/api/config", "/metrics"] {
        assert_eq!(http::get(&lw, page).0, 200, "{page}");
        for method in ["POST", "PUT", "DELETE"] {
            assert_eq!(http::request(method, &lw, page.split('?').next().unwrap_or(page), Some("{}")).0, 405, "{method} {page}");
        }
    }
    assert_eq!(fs.state_digests().await.unwrap(), digest_before, "a web request changed the namespace");

    // Kill the leader: the other master's UI shows the same file.
    c.kill_master_at(leader);
    let became = eventually(|| async { http::get(&sw, "/readyz").0 == 200 }).await;
    assert!(became, "the standby did not take over");
    let after_failover = eventually(|| async { json_get(&sw, "/api/browse?path=/ui/hello.txt")["preview"].is_string() }).await;
    assert!(after_failover, "the file's preview is not served by the new leader");
    browser.open(&format!("{sw}/"));
    assert!(browser.page().contains("the <b>leader</b>"), "{}", browser.page());
    browser.click_link("Browse File System");
    browser.click_link("ui/");
    browser.click_link("hello.txt");
    let file = browser.page();
    assert!(file.contains(&format!("({} bytes)", text.len())) && file.contains("hello from the web test"), "{file}");
    browser.screenshot("6-new-leader-file");
    println!("screenshots in {}", screenshots_dir().display());
}
