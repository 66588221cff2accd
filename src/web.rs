//! The web UI and HTTP endpoints of a master (port 19999) and a worker (port 30000):
//! server-rendered pages with a small inline stylesheet (no external assets), the same data
//! as JSON under `/api/`, Prometheus text on `/metrics`, `/healthz` (the process is up) and
//! `/readyz` (this master leads). Not part of a simulation build: it serves real sockets.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::client::FileSystem;
use crate::config::Config;
use crate::core::namespace::block_count;
use crate::core::path::FsPath;
use crate::core::permission::Caller;
use crate::error::FsError;
use crate::master::node::MasterNode;
use crate::master::{file_info_with_blocks, list_page_infos, DEFAULT_LIST_PAGE_ENTRIES};
use crate::proto::{FileInfo, MasterStatus};
use crate::worker::Worker;

/// Bytes of a file shown in the browser's preview.
const PREVIEW_BYTES: usize = 4096;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}\
header{background:#234;color:#fff;padding:10px 20px}header a{color:#cde;margin-right:16px}\
main{padding:16px 20px;max-width:1100px}table{border-collapse:collapse;margin:8px 0 16px}\
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#eef}\
.role{font-size:16px;padding:8px 12px;border-radius:4px;display:inline-block}\
.leader{background:#dfd}.standby{background:#ffd}pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:400px}";

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Percent-encodes a query parameter value (a path): only unreserved characters and `/`
/// stay, so the result is also safe inside HTML attributes.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Blocks of a file listed on its browse page; more are counted, not listed.
const MAX_BLOCKS_SHOWN: usize = 1000;

fn page(title: &str, nav: &[(&str, &str)], body: &str) -> Html<String> {
    let links: String = nav.iter().map(|(href, name)| format!("<a href=\"{href}\">{name}</a>")).collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{t}</title><style>{STYLE}</style></head>\
         <body><header><b>tachyon</b> &nbsp; {links}</header><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    ))
}

/// Human-readable bytes.
/// Tiers as JSON: alias, capacity and use.
fn tiers_json(tiers: &[crate::proto::TierUsage]) -> Value {
    tiers.iter().map(|t| json!({"alias": t.alias, "capacity_bytes": t.capacity_bytes, "used_bytes": t.used_bytes})).collect()
}

/// Tiers of a JSON value as one line of HTML: `MEM 1.0 MB of 4.0 MB, SSD ...`.
fn tiers_html(tiers: &Value) -> String {
    let parts: Vec<String> = tiers
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let n = |k: &str| t[k].as_u64().unwrap_or(0);
            format!("{} {} of {}", esc(t["alias"].as_str().unwrap_or_default()), bytes(n("used_bytes")), bytes(n("capacity_bytes")))
        })
        .collect();
    parts.join(", ")
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A directory page: the inode, its children on this page, where the next page starts.
type Listing = (FileInfo, Vec<FileInfo>, Option<String>);
/// An answer other than the page: status and message.
type Refusal = (StatusCode, String);

/// What a master's web UI serves from.
pub struct MasterUi {
    node: Arc<MasterNode>,
    config: Arc<Config>,
    /// A client of this cluster, for the master list and file previews.
    fs: FileSystem,
    web_port: u16,
}

const MASTER_NAV: [(&str, &str); 5] =
    [("/", "Overview"), ("/browse", "Browse File System"), ("/workers", "Workers"), ("/config", "Configuration"), ("/metrics", "Metrics")];

impl MasterUi {
    /// The UI of `node`.
    pub fn new(node: Arc<MasterNode>, config: Arc<Config>, fs: FileSystem) -> Self {
        let web_port = config.port(crate::config::MASTER_WEB_PORT);
        MasterUi { node, config, fs, web_port }
    }

    /// The web UI address of a master known by its RPC address (same web port everywhere).
    fn web_url(&self, rpc_address: &str) -> String {
        let host = rpc_address.rsplit_once(':').map(|(h, _)| h).unwrap_or(rpc_address);
        let scheme = if self.config.bool(crate::config::TLS_ENABLED) { "https" } else { "http" };
        format!("{scheme}://{host}:{}", self.web_port)
    }

    async fn overview_json(&self) -> Value {
        let me = self.node.status().await;
        let leader = self.node.coordinator().leader_address().await.ok().flatten().unwrap_or_default();
        let masters = self.fs.masters().await.unwrap_or_else(|_| vec![me.clone()]);
        let leader_applied = masters.iter().find(|m| m.role == "leader").map(|m| m.applied_sequence);
        let master_rows: Vec<Value> = masters.iter().map(|m| master_json(m, leader_applied)).collect();
        let cluster = self
            .node
            .leader_state(|st| {
                let (mut live, mut lost, mut cap, mut used) = (0u64, 0u64, 0u64, 0u64);
                for w in st.registry.workers() {
                    if w.lost {
                        lost += 1;
                    } else {
                        live += 1;
                        cap += w.capacity_bytes;
                        used += w.used_bytes;
                    }
                }
                json!({"live_workers": live, "lost_workers": lost, "capacity_bytes": cap, "used_bytes": used, "inodes": st.ns.inode_count(),
                       "tiers": tiers_json(&st.registry.tier_totals())})
            })
            .await;
        json!({
            "address": me.address, "role": me.role, "epoch": me.epoch, "applied_sequence": me.applied_sequence,
            "leader": leader, "leader_web": if leader.is_empty() { String::new() } else { self.web_url(&leader) },
            "masters": master_rows, "cluster": cluster,
            "uptime_ms": crate::runtime::system_clock().now_ms() - self.node.start_time_ms(),
            "version": env!("CARGO_PKG_VERSION"),
        })
    }

    /// Who browses: pages have no login, so a visitor gets what anyone may read (the
    /// "other" bits of each mode), unless the cluster checks no permissions.
    fn visitor(&self) -> Caller {
        Caller { user: String::new(), groups: Vec::new(), superuser: !self.node.options().security.permissions_enabled }
    }

    /// The leader's view of `path`: the inode and, for a directory, one page of its
    /// children (those after `after`), with where the next page starts; what a visitor
    /// may not read is refused (403).
    async fn browse_json(&self, path: &str, after: Option<&str>) -> Result<Value, (StatusCode, String)> {
        let p = FsPath::parse(path).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let after = after.filter(|a| !a.is_empty()).map(FsPath::parse).transpose().map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let visitor = self.visitor();
        let listed = self
            .node
            .leader_state(|st| -> Result<Listing, Refusal> {
                let refused = |e: FsError| match e {
                    FsError::PermissionDenied { .. } => (StatusCode::FORBIDDEN, format!("{e} (the web UI shows what anyone may read)")),
                    other => (StatusCode::NOT_FOUND, other.to_string()),
                };
                crate::core::requests::check_read(&st.ns, &visitor, &p, true, false).map_err(refused)?;
                let inode = st.ns.lookup(&p).map_err(refused)?;
                let info = file_info_with_blocks(st, inode, &p, MAX_BLOCKS_SHOWN);
                if !inode.is_directory() {
                    return Ok((info, Vec::new(), None));
                }
                let (children, next) = list_page_infos(st, inode, &p, false, after.as_ref(), DEFAULT_LIST_PAGE_ENTRIES).map_err(refused)?;
                Ok((info, children, next))
            })
            .await
            .ok_or((StatusCode::SERVICE_UNAVAILABLE, "this master is a standby: browse on the leader".to_string()))?;
        let (info, children, next) = listed?;
        let preview = if info.is_directory || !info.complete { None } else { self.preview(&info.path).await };
        Ok(json!({"file": file_json(&info), "children": children.iter().map(file_json).collect::<Vec<_>>(), "next_after": next, "preview": preview}))
    }

    /// The first bytes of a file, read from a worker like any client would.
    async fn preview(&self, path: &str) -> Option<String> {
        let mut reader = self.fs.open_file(path).await.ok()?;
        let first = reader.next_block().await.ok()??;
        Some(String::from_utf8_lossy(&first[..first.len().min(PREVIEW_BYTES)]).into_owned())
    }

    async fn workers_json(&self) -> Value {
        let now = crate::runtime::system_clock().now_ms();
        let workers = self
            .node
            .leader_state(|st| {
                st.registry
                    .workers()
                    .map(|w| {
                        json!({"id": w.id, "host": w.address.host, "rpc_port": w.address.rpc_port, "lost": w.lost,
                               "capacity_bytes": w.capacity_bytes, "used_bytes": w.used_bytes, "blocks": w.blocks.len(), "tiers": tiers_json(&w.tiers),
                               "last_heartbeat_ago_ms": now - w.last_heartbeat_ms})
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        json!({ "workers": workers })
    }

    fn config_json(&self) -> Value {
        let entries: Vec<Value> = self.config.entries().into_iter().map(|(k, v, s)| json!({"key": k, "value": v, "source": s.to_string()})).collect();
        json!({ "configuration": entries })
    }

    /// Prometheus text exposition of this master: the process's registry plus gauges read
    /// from its state at scrape time.
    async fn metrics_text(&self) -> String {
        let me = self.node.status().await;
        let mut out = crate::metrics::gather_text();
        let leader = u8::from(me.role == "leader");
        let _ = writeln!(
            out,
            "# HELP tachyon_master_is_leader 1 if this master serves as leader.\n# TYPE tachyon_master_is_leader gauge\ntachyon_master_is_leader {leader}"
        );
        let _ = writeln!(
            out,
            "# HELP tachyon_master_epoch Leadership epoch this master knows.\n# TYPE tachyon_master_epoch gauge\ntachyon_master_epoch {}",
            me.epoch
        );
        let _ = writeln!(out, "# HELP tachyon_master_applied_sequence Next journal sequence this master would apply.\n# TYPE tachyon_master_applied_sequence gauge\ntachyon_master_applied_sequence {}", me.applied_sequence);
        if me.role != "leader" {
            if let Ok(masters) = self.fs.masters().await {
                if let Some(l) = masters.iter().find(|m| m.role == "leader") {
                    let lag = l.applied_sequence.saturating_sub(me.applied_sequence);
                    let _ = writeln!(out, "# HELP tachyon_master_standby_lag_entries Journal entries this standby is behind the leader.\n# TYPE tachyon_master_standby_lag_entries gauge\ntachyon_master_standby_lag_entries {lag}");
                }
            }
        }
        let now = crate::runtime::system_clock().now_ms();
        let leader_view = self
            .node
            .leader_state(|st| {
                let lost = st.registry.workers().filter(|w| w.lost).count();
                let ages: Vec<(String, i64)> = st
                    .registry
                    .workers()
                    .filter(|w| !w.lost)
                    .map(|w| (format!("{}:{}", w.address.host, w.address.rpc_port), now - w.last_heartbeat_ms))
                    .collect();
                (st.registry.workers().count() - lost, lost, st.ns.inode_count(), ages)
            })
            .await;
        if let Some((live, lost, inodes, ages)) = leader_view {
            let _ = writeln!(out, "# HELP tachyon_workers Registered workers by state.\n# TYPE tachyon_workers gauge\ntachyon_workers{{state=\"live\"}} {live}\ntachyon_workers{{state=\"lost\"}} {lost}");
            let _ = writeln!(out, "# HELP tachyon_inodes Files and directories.\n# TYPE tachyon_inodes gauge\ntachyon_inodes {inodes}");
            let _ = writeln!(
                out,
                "# HELP tachyon_worker_heartbeat_age_seconds Time since each live worker's last heartbeat.\n# TYPE tachyon_worker_heartbeat_age_seconds gauge"
            );
            for (worker, age_ms) in ages {
                let _ = writeln!(out, "tachyon_worker_heartbeat_age_seconds{{worker=\"{worker}\"}} {}", age_ms as f64 / 1000.0);
            }
        }
        out
    }
}

fn master_json(m: &MasterStatus, leader_applied: Option<u64>) -> Value {
    let lag = leader_applied.map(|l| l.saturating_sub(m.applied_sequence));
    json!({"address": m.address, "role": m.role, "epoch": m.epoch, "applied_sequence": m.applied_sequence, "lag": lag})
}

fn file_json(f: &FileInfo) -> Value {
    let blocks: Vec<Value> = f
        .blocks
        .iter()
        .map(|b| json!({"id": b.block_id, "length": b.length, "locations": b.locations.iter().map(|l| format!("{}:{}", l.host, l.rpc_port)).collect::<Vec<_>>()}))
        .collect();
    json!({"path": f.path, "name": f.name, "directory": f.is_directory, "length": f.length, "complete": f.complete,
           "block_size": f.block_size_bytes, "blocks": blocks, "persistence": f.persistence_state,
           "in_memory_percentage": f.in_memory_percentage, "modified_ms": f.modification_time_ms,
           "pinned": f.pinned, "ttl_ms": f.ttl_ms, "ttl_action": f.ttl_action})
}

#[derive(serde::Deserialize)]
struct PathQuery {
    path: Option<String>,
    /// Paging of a directory: list the children after this path.
    after: Option<String>,
}

type Ui = State<Arc<MasterUi>>;

async fn overview_page(State(ui): Ui) -> Html<String> {
    let o = ui.overview_json().await;
    let role = o["role"].as_str().unwrap_or_default().to_string();
    let leader = o["leader"].as_str().unwrap_or_default();
    let leader_link = if leader.is_empty() {
        "no leader is known".to_string()
    } else {
        format!("<a href=\"{}/\">{}</a>", esc(o["leader_web"].as_str().unwrap_or_default()), esc(leader))
    };
    let mut body = format!(
        "<p class=\"role {role}\">This master ({}) is {}. Leader: {leader_link}</p>",
        esc(o["address"].as_str().unwrap_or_default()),
        if role == "leader" { "the <b>leader</b>" } else { "a <b>standby</b>" }
    );
    body.push_str("<h2>Masters</h2><table><tr><th>Master</th><th>Role</th><th>Epoch</th><th>Applied sequence</th><th>Lag</th></tr>");
    for m in o["masters"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(m["address"].as_str().unwrap_or_default()),
            esc(m["role"].as_str().unwrap_or_default()),
            m["epoch"],
            m["applied_sequence"],
            m["lag"]
        );
    }
    body.push_str("</table>");
    if let Some(c) = o["cluster"].as_object() {
        let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
        let _ = write!(
            body,
            "<h2>Cluster</h2><table><tr><th>Live workers</th><td>{}</td></tr><tr><th>Lost workers</th><td>{}</td></tr>\
             <tr><th>Capacity</th><td>{}</td></tr><tr><th>Used</th><td>{}</td></tr><tr><th>Tiers</th><td>{}</td></tr>\
             <tr><th>Files and directories</th><td>{}</td></tr></table>",
            n("live_workers"),
            n("lost_workers"),
            bytes(n("capacity_bytes")),
            bytes(n("used_bytes")),
            tiers_html(&c["tiers"]),
            n("inodes")
        );
    }
    let _ = write!(body, "<p>Up {} s &middot; version {}</p>", o["uptime_ms"].as_i64().unwrap_or(0) / 1000, esc(o["version"].as_str().unwrap_or_default()));
    page("Overview", &MASTER_NAV, &body)
}

async fn browse_page(State(ui): Ui, Query(q): Query<PathQuery>) -> Response {
    let path = q.path.unwrap_or_else(|| "/".into());
    let data = match ui.browse_json(&path, q.after.as_deref()).await {
        Ok(d) => d,
        Err((code, msg)) => {
            let leader = ui.node.coordinator().leader_address().await.ok().flatten().unwrap_or_default();
            let hint = if leader.is_empty() {
                String::new()
            } else {
                let url = format!("{}/browse?path={}", ui.web_url(&leader), esc(&path));
                format!(" <a href=\"{url}\">Browse on the leader ({})</a>", esc(&leader))
            };
            return (code, page("Browse File System", &MASTER_NAV, &format!("<p class=\"role standby\">{}.{hint}</p>", esc(&msg)))).into_response();
        }
    };
    let f = &data["file"];
    let mut body = format!("<p>Path: <b>{}</b></p>", esc(f["path"].as_str().unwrap_or_default()));
    if f["directory"].as_bool() == Some(true) {
        body.push_str("<table><tr><th>Name</th><th>Size</th><th>Blocks</th><th>Persistence</th><th>In memory</th><th>Complete</th></tr>");
        for c in data["children"].as_array().into_iter().flatten() {
            let name = if c["directory"].as_bool() == Some(true) {
                format!("{}/", c["name"].as_str().unwrap_or_default())
            } else {
                c["name"].as_str().unwrap_or_default().to_string()
            };
            let _ = write!(
                body,
                "<tr><td><a href=\"/browse?path={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}%</td><td>{}</td></tr>",
                url_encode(c["path"].as_str().unwrap_or_default()),
                esc(&name),
                bytes(c["length"].as_u64().unwrap_or(0)),
                block_count(c["length"].as_u64().unwrap_or(0), c["block_size"].as_u64().unwrap_or(0)),
                esc(c["persistence"].as_str().unwrap_or_default()),
                c["in_memory_percentage"],
                c["complete"]
            );
        }
        body.push_str("</table>");
        if let Some(next) = data["next_after"].as_str() {
            let _ = write!(body, "<p><a href=\"/browse?path={}&amp;after={}\">Next page</a></p>", url_encode(&path), url_encode(next));
        }
    } else {
        let _ = write!(
            body,
            "<table><tr><th>Size</th><td class=\"size\">{} ({} bytes)</td></tr><tr><th>Block size</th><td>{}</td></tr>\
             <tr><th>Persistence</th><td>{}</td></tr><tr><th>In memory</th><td>{}%</td></tr><tr><th>Complete</th><td>{}</td></tr>\
             <tr><th>Pinned</th><td>{}</td></tr><tr><th>TTL</th><td>{}</td></tr></table>",
            bytes(f["length"].as_u64().unwrap_or(0)),
            f["length"],
            bytes(f["block_size"].as_u64().unwrap_or(0)),
            esc(f["persistence"].as_str().unwrap_or_default()),
            f["in_memory_percentage"],
            f["complete"],
            f["pinned"],
            match f["ttl_ms"].as_i64() {
                Some(ms) => format!("{ms} ms after creation, then {}", esc(f["ttl_action"].as_str().unwrap_or_default())),
                None => "none".to_string(),
            }
        );
        body.push_str("<h2>Blocks</h2><table><tr><th>Block</th><th>Length</th><th>Locations</th></tr>");
        for b in f["blocks"].as_array().into_iter().flatten() {
            let locations: Vec<String> = b["locations"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(esc)).collect();
            let _ = write!(body, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", b["id"], b["length"], locations.join(", "));
        }
        body.push_str("</table>");
        let total = block_count(f["length"].as_u64().unwrap_or(0), f["block_size"].as_u64().unwrap_or(0));
        if total > MAX_BLOCKS_SHOWN as u64 {
            let _ = write!(body, "<p>The first {MAX_BLOCKS_SHOWN} of {total} blocks.</p>");
        }
        if let Some(p) = data["preview"].as_str() {
            let _ = write!(body, "<h2>First {PREVIEW_BYTES} bytes</h2><pre class=\"preview\">{}</pre>", esc(p));
        }
    }
    page("Browse File System", &MASTER_NAV, &body).into_response()
}

async fn workers_page(State(ui): Ui) -> Html<String> {
    let w = ui.workers_json().await;
    let mut body =
        String::from("<table><tr><th>Worker</th><th>State</th><th>Capacity</th><th>Used</th><th>Tiers</th><th>Blocks</th><th>Last heartbeat</th></tr>");
    match w["workers"].as_array() {
        None => body = "<p class=\"role standby\">This master is a standby: workers register with the leader.</p>".into(),
        Some(list) => {
            for x in list {
                let _ = write!(
                    body,
                    "<tr><td>{}:{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms ago</td></tr>",
                    esc(x["host"].as_str().unwrap_or_default()),
                    x["rpc_port"],
                    if x["lost"].as_bool() == Some(true) { "LOST" } else { "live" },
                    bytes(x["capacity_bytes"].as_u64().unwrap_or(0)),
                    bytes(x["used_bytes"].as_u64().unwrap_or(0)),
                    tiers_html(&x["tiers"]),
                    x["blocks"],
                    x["last_heartbeat_ago_ms"]
                );
            }
            body.push_str("</table>");
        }
    }
    page("Workers", &MASTER_NAV, &body)
}

async fn config_page(State(ui): Ui) -> Html<String> {
    let mut body = String::from("<table><tr><th>Key</th><th>Value</th><th>Source</th></tr>");
    for (k, v, s) in ui.config.entries() {
        let _ = write!(body, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&k), esc(&v), esc(&s.to_string()));
    }
    body.push_str("</table>");
    page("Configuration", &MASTER_NAV, &body)
}

fn metrics_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The master's router.
pub fn master_router(ui: Arc<MasterUi>) -> Router {
    Router::new()
        .route("/", get(overview_page))
        .route("/browse", get(browse_page))
        .route("/workers", get(workers_page))
        .route("/config", get(config_page))
        .route("/api/overview", get(|State(ui): Ui| async move { Json(ui.overview_json().await) }))
        .route(
            "/api/browse",
            get(|State(ui): Ui, Query(q): Query<PathQuery>| async move {
                match ui.browse_json(&q.path.unwrap_or_else(|| "/".into()), q.after.as_deref()).await {
                    Ok(v) => Json(v).into_response(),
                    Err((code, msg)) => (code, Json(json!({"error": msg}))).into_response(),
                }
            }),
        )
        .route("/api/workers", get(|State(ui): Ui| async move { Json(ui.workers_json().await) }))
        .route("/api/config", get(|State(ui): Ui| async move { Json(ui.config_json()) }))
        .route("/metrics", get(|State(ui): Ui| async move { metrics_response(ui.metrics_text().await) }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(ui): Ui| async move {
                if ui.node.leader().await.is_ok() {
                    (StatusCode::OK, "leader")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "standby")
                }
            }),
        )
        .with_state(ui)
}

/// A worker's overview page, block list, metrics and health.
pub fn worker_router(worker: Arc<Worker>) -> Router {
    type W = State<Arc<Worker>>;
    let nav: [(&str, &str); 3] = [("/", "Overview"), ("/api/blocks", "Blocks (JSON)"), ("/metrics", "Metrics")];
    Router::new()
        .route(
            "/",
            get(move |State(w): W| async move {
                let s = w.summary();
                let mut body = format!(
                    "<table><tr><th>Worker</th><td>{}</td></tr><tr><th>Worker id</th><td>{}</td></tr><tr><th>All tiers</th><td>{} of {} used</td></tr>",
                    esc(&s.address),
                    s.worker_id,
                    bytes(s.used_bytes),
                    bytes(s.capacity_bytes),
                );
                for t in &s.tiers {
                    let _ = write!(body, "<tr><th>{} tier</th><td>{} of {} used</td></tr>", t.alias, bytes(t.used_bytes), bytes(t.capacity_bytes));
                }
                let _ = write!(
                    body,
                    "<tr><th>Blocks</th><td>{}</td></tr></table><h2>Blocks</h2><table><tr><th>Block</th><th>Length</th><th>Tier</th></tr>",
                    s.blocks.len()
                );
                for (id, len, tier) in &s.blocks {
                    let _ = write!(body, "<tr><td>{id}</td><td>{len}</td><td>{tier}</td></tr>");
                }
                body.push_str("</table>");
                page("Worker", &nav, &body)
            }),
        )
        .route(
            "/api/blocks",
            get(|State(w): W| async move {
                let s = w.summary();
                let tiers: Vec<_> = s.tiers.iter().map(|t| t.to_proto()).collect();
                Json(json!({"address": s.address, "worker_id": s.worker_id, "used_bytes": s.used_bytes, "capacity_bytes": s.capacity_bytes,
                            "tiers": tiers_json(&tiers),
                            "blocks": s.blocks.iter().map(|(id, len, tier)| json!({"id": id, "length": len, "tier": tier.as_str()})).collect::<Vec<_>>()}))
            }),
        )
        .route(
            "/metrics",
            get(|State(w): W| async move {
                let s = w.summary();
                let mut text = crate::metrics::gather_text();
                text.push_str("# HELP tachyon_worker_tier_bytes Bytes used and capacity of each storage tier.\n# TYPE tachyon_worker_tier_bytes gauge\n");
                for t in &s.tiers {
                    let _ = write!(
                        text,
                        "tachyon_worker_tier_bytes{{tier=\"{0}\",kind=\"used\"}} {1}\ntachyon_worker_tier_bytes{{tier=\"{0}\",kind=\"capacity\"}} {2}\n",
                        t.alias, t.used_bytes, t.capacity_bytes
                    );
                }
                let _ =
                    write!(text, "# HELP tachyon_worker_blocks Blocks held.\n# TYPE tachyon_worker_blocks gauge\ntachyon_worker_blocks {}\n", s.blocks.len());
                metrics_response(text)
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(worker)
}

/// Serves `router` on `bind` (HTTPS when `tls` is given) until the process ends; logs and
/// returns if it cannot bind.
pub async fn serve(bind: SocketAddr, router: Router, what: &'static str, tls: Option<crate::tls::TlsConfig>) {
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(listener) => listener,
        Err(e) => return tracing::error!(%bind, what, error = %e, "cannot bind the web UI; serving without it"),
    };
    tracing::info!(%bind, what, tls = tls.is_some(), "web UI listening");
    let served = match tls {
        None => axum::serve(listener, router).await,
        Some(tls) => {
            let tls_listener =
                tls.rustls_server().map_err(|e| e.to_string()).and_then(|c| crate::tls::TlsListener::new(listener, c).map_err(|e| e.to_string()));
            match tls_listener {
                Ok(tls_listener) => axum::serve(tls_listener, router).await,
                Err(e) => return tracing::error!(%bind, what, error = %e, "cannot serve the web UI over TLS"),
            }
        }
    };
    if let Err(e) = served {
        tracing::error!(%bind, what, error = %e, "web UI stopped");
    }
}
