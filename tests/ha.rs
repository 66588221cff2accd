//! Fault-tolerant masters against real ZooKeeper: election, discovery, standby tailing,
//! failover after kill -9, fast hand-over on graceful stop, and fencing of a paused leader.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::zk::ZooKeeper;
use common::{content, eventually, Cluster};
use tachyon::client::{CreateOptions, FileSystem};

fn opts() -> CreateOptions {
    CreateOptions { block_size: None, recursive: true, write_type: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_coordinator_passes_the_conformance_suite() {
    let zk = ZooKeeper::standalone();
    let c = Cluster::start_ha(&zk.servers(), 0);
    tachyon::coordinator::conformance::run_all(&|| c.coordinator()).await;
}

/// With `tachyon.zookeeper.auth.digest`, tachyon's ZooKeeper nodes belong to the masters:
/// the coordinator contract holds with the ACLs in place, a failover works, and a session
/// without the credentials (or with others) can read who leads but cannot bump the epoch,
/// delete the leader's node or stand as a candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_zookeeper_digest_only_masters_change_tachyons_nodes() {
    use tachyon::coordinator::zookeeper::{ZkCoordinator, ZkOptions};
    use zookeeper_client as zk;
    let zk_server = ZooKeeper::standalone();
    let servers = zk_server.servers();
    let guarded = |root: &str| ZkOptions {
        servers: servers.clone(),
        root: root.into(),
        election_path: format!("{root}/election"),
        leader_path: format!("{root}/leader"),
        session_timeout: Duration::from_secs(2),
        connection_timeout: Duration::from_secs(2),
        auth_digest: Some("tachyon:zk-digest-secret".into()),
    };
    let options = guarded("/guarded");
    tachyon::coordinator::conformance::run_all(&|| Arc::new(ZkCoordinator::new(options.clone())) as Arc<dyn tachyon::coordinator::Coordinator>).await;

    let mut c = Cluster::start_ha_with(&servers, 2, vec!["-Dtachyon.zookeeper.auth.digest=tachyon:zk-digest-secret".into()]);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    fs.write_file("/acl/f", b"guarded", opts()).await.unwrap();
    // Ownership and modes survive the failover too (the standby replayed them).
    fs.set_ownership("/acl/f", tachyon::core::namespace::OwnershipChange { owner: Some("alice".into()), mode: Some(0o600), ..Default::default() })
        .await
        .unwrap();
    let leader = c.serving_leader().await;
    c.kill_master_at(leader);
    assert_eq!(fs.read_file("/acl/f").await.unwrap(), b"guarded", "failover with ACLs in place");
    let as_user = |user: &str| c.client_with(tachyon::security::SecurityOptions::simple_as(user));
    assert_eq!(as_user("alice").read_file("/acl/f").await.unwrap(), b"guarded");
    assert!(
        matches!(as_user("bob").read_file("/acl/f").await, Err(tachyon::error::FsError::PermissionDenied { .. })),
        "the new leader checks the replayed mode"
    );

    for (who, auth) in [("no credentials", None), ("other credentials", Some("tachyon:guess"))] {
        let mut connector = zk::Client::connector().with_session_timeout(Duration::from_secs(2));
        if let Some(a) = auth {
            connector = connector.with_auth("digest", a.as_bytes());
        }
        let outsider = connector.connect(&servers).await.unwrap();
        let leaders = outsider.list_children("/tachyon/leader").await.unwrap();
        assert!(!leaders.is_empty(), "{who}: reading who leads works");
        let leader_node = format!("/tachyon/leader/{}", leaders[0]);
        assert!(matches!(outsider.set_data("/tachyon/epoch", b"999999", None).await, Err(zk::Error::NoAuth)), "{who}: epoch bumped");
        assert!(matches!(outsider.delete(&leader_node, None).await, Err(zk::Error::NoAuth)), "{who}: leader node deleted");
        let candidate = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        assert!(matches!(outsider.create("/tachyon/election/candidate-", b"evil:1", &candidate).await, Err(zk::Error::NoAuth)), "{who}: stood as a candidate");
    }
    assert_eq!(fs.read_file("/acl/f").await.unwrap(), b"guarded");
}

/// What writer `k` puts into its `n`-th file: derived from the path alone, so any file found
/// in the namespace can be checked, acknowledged or not.
fn intended(path: &str) -> Vec<u8> {
    let mut parts = path.trim_start_matches("/load/w").split("/f");
    let k: u64 = parts.next().and_then(|p| p.parse().ok()).expect("writer index");
    let n: u64 = parts.next().and_then(|p| p.parse().ok()).expect("file index");
    let len = if n % 10 == 9 { 1_200_000 } else { (n as usize * 997) % 20_000 };
    content(len, k * 1_000_000 + n)
}

/// The number of masters that report themselves leader, once every running one answers.
async fn leaders(fs: &FileSystem, running: usize) -> Option<usize> {
    let ms = fs.masters().await.ok()?;
    let answering = ms.iter().filter(|m| m.role != "unreachable").count();
    (answering == running).then(|| ms.iter().filter(|m| m.role == "leader").count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_writers_lose_nothing_through_ten_leader_kills_and_pauses() {
    let zk = ZooKeeper::standalone();
    let mut c = Cluster::start_ha(&zk.servers(), 3);
    c.start_worker(0);
    c.start_worker(1);
    let fs = c.client();
    let mut leader = c.serving_leader().await;
    c.wait_for_workers(2).await;

    // The shell names the leader and every master's role.
    assert_eq!(c.run_ok(&["fs", "leader"]).trim(), c.master_address(leader));
    let info = c.run_ok(&["fs", "masterInfo"]);
    assert_eq!(info.matches("standby").count(), 2, "{info}");
    assert_eq!(info.matches(" leader ").count(), 1, "{info}");
    assert!(info.contains("127.0.0.2:") && info.contains("127.0.0.3:"), "{info}");

    // Two clients write continuously; only acknowledged files are recorded.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The last failure of each writer, for the message if they stall.
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..2u64)
        .map(|k| {
            let (fs, acked, stop, failures) = (c.client(), acked.clone(), stop.clone(), failures.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = format!("/load/w{k}/f{n}");
                    match fs.write_file(&path, &intended(&path), opts()).await {
                        Ok(_) => acked.lock().unwrap().push(path),
                        Err(e) => failures.lock().unwrap().push(format!("{path}: {e}")),
                    }
                    n += 1;
                }
            })
        })
        .collect();

    let mut verified = 0;
    for round in 0..10 {
        let paused = round % 3 == 2;
        if paused {
            // A zombie: paused past its session timeout, resumed after a successor serves.
            c.signal_master(leader, "STOP");
            let next = c.serving_leader().await;
            assert_ne!(next, leader, "round {round}: a standby took over from the paused leader");
            c.signal_master(leader, "CONT");
            leader = next;
        } else {
            c.kill_master_at(leader);
            let next = c.serving_leader().await;
            assert_ne!(next, leader, "round {round}: a standby took over");
            c.start_master_at(leader);
            leader = next;
        }
        let one = eventually(|| async { leaders(&fs, 3).await == Some(1) }).await;
        assert!(one, "round {round}: not exactly one leader: {:?}", fs.masters().await);
        // The writers get going again with the new leader before the next fault (a write
        // caught in the failover may retry for up to the client's 30 s)...
        let mut progressed = false;
        for _ in 0..4 {
            progressed = progressed || eventually(|| async { acked.lock().unwrap().len() > verified }).await;
        }
        let recent: Vec<String> = failures.lock().unwrap().iter().rev().take(6).cloned().collect();
        assert!(progressed, "round {round}: the writers made no progress after the failover; last failures: {recent:?}");
        // ...and everything acknowledged since the last round reads back exactly.
        let now_acked: Vec<String> = acked.lock().unwrap()[verified..].to_vec();
        for path in &now_acked {
            assert_eq!(fs.read_file(path).await.unwrap(), intended(path), "round {round}: {path}");
        }
        verified += now_acked.len();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "the writers made progress ({} files)", acked.len());
    let listed = fs.list_status("/load", true).await.unwrap();
    for path in &acked {
        assert!(listed.iter().any(|f| &f.path == path && f.complete), "acknowledged {path} is missing or incomplete");
        assert_eq!(&fs.read_file(path).await.unwrap(), &intended(path), "{path}");
    }
    // Nothing unacknowledged shows up half-written: a complete file has its exact bytes.
    for f in listed.iter().filter(|f| !f.is_directory && f.complete) {
        assert_eq!(fs.read_file(&f.path).await.unwrap(), intended(&f.path), "{}", f.path);
    }
    // Standbys caught up: every master is at the same journal position with the same state.
    let same = eventually(|| async {
        let ds = fs.state_digests().await.unwrap();
        ds.len() == 3 && ds.iter().all(|d| d.applied_sequence == ds[0].applied_sequence && d.digest == ds[0].digest)
    })
    .await;
    assert!(same, "standbys did not catch up to the leader's state: {:?}", fs.state_digests().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_hands_leadership_over_before_the_session_could_expire() {
    let zk = ZooKeeper::standalone();
    let mut c = Cluster::start_ha(&zk.servers(), 0);
    // Sessions that would take 30 s to expire: only resigning explains a fast hand-over.
    for i in 0..2 {
        c.add_master_with(&["-Dtachyon.zookeeper.session.timeout=30s"]);
        assert_eq!(c.master_count(), i + 1);
    }
    c.start_worker(0);
    let fs = c.client();
    let leader = c.serving_leader().await;
    fs.write_file("/g/before", b"kept", opts()).await.unwrap();
    let started = tokio::time::Instant::now();
    assert!(c.stop_master_at(leader), "the leader exits cleanly on SIGTERM");
    fs.write_file("/g/after", b"new leader", opts()).await.unwrap();
    let handover = started.elapsed();
    println!("graceful hand-over took {handover:?}");
    assert!(handover < Duration::from_secs(15), "hand-over waited for session expiry ({handover:?})");
    assert_ne!(c.serving_leader().await, leader);
    assert_eq!(fs.read_file("/g/before").await.unwrap(), b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_fenced_and_rejoins_as_a_standby() {
    let zk = ZooKeeper::standalone();
    let mut c = Cluster::start_ha(&zk.servers(), 2);
    c.start_worker(0);
    let fs = c.client();
    let old = c.serving_leader().await;
    fs.write_file("/z/acked", b"before the pause", opts()).await.unwrap();
    let zombie = c.impatient_client_of(old);

    // Paused past its session timeout: the other master takes over.
    c.signal_master(old, "STOP");
    fs.write_file("/z/by-new-leader", b"after", opts()).await.unwrap();
    let new = c.serving_leader().await;
    assert_ne!(new, old);

    // Resumed, the old leader must not acknowledge anything.
    c.signal_master(old, "CONT");
    let r = zombie.create_directory("/z/zombie-write", true, false).await;
    assert!(r.is_err(), "a deposed leader acknowledged a write: {r:?}");
    assert!(!fs.exists("/z/zombie-write").await.unwrap());
    // It rejoins as a standby and follows the new leader's journal.
    fs.write_file("/z/later", b"later", opts()).await.unwrap();
    let rejoined = eventually(|| async {
        let ms = fs.masters().await.unwrap_or_default();
        let old_status = ms.iter().find(|m| m.address == c.master_address(old));
        let new_status = ms.iter().find(|m| m.address == c.master_address(new));
        match (old_status, new_status) {
            (Some(o), Some(n)) => o.role == "standby" && n.role == "leader" && o.applied_sequence == n.applied_sequence,
            _ => false,
        }
    })
    .await;
    assert!(rejoined, "old leader did not rejoin as a caught-up standby: {:?}", fs.masters().await);
    assert!(matches!(zombie.create_directory("/z/x", true, false).await, Err(tachyon::error::FsError::NotLeader { .. })));
    for (path, data) in [("/z/acked", &b"before the pause"[..]), ("/z/by-new-leader", b"after"), ("/z/later", b"later")] {
        assert_eq!(fs.read_file(path).await.unwrap(), data, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_zookeeper_ensemble_survives_a_server_loss_and_a_master_failover() {
    let mut zk = ZooKeeper::ensemble();
    let mut c = Cluster::start_ha(&zk.servers(), 2);
    c.start_worker(0);
    let fs = c.client();
    let leader = c.serving_leader().await;
    fs.write_file("/e/one", &content(70_000, 1), opts()).await.unwrap();
    zk.kill(0);
    fs.write_file("/e/two", &content(70_000, 2), opts()).await.unwrap();
    c.kill_master_at(leader);
    fs.write_file("/e/three", &content(70_000, 3), opts()).await.unwrap();
    assert_ne!(c.serving_leader().await, leader);
    for (i, name) in ["one", "two", "three"].iter().enumerate() {
        assert_eq!(fs.read_file(&format!("/e/{name}")).await.unwrap(), content(70_000, i as u64 + 1));
    }
    zk.restart(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_is_applied_once_even_across_a_failover() {
    use tachyon::proto::{CreateFileRequest, RenameRequest};
    let zk = ZooKeeper::standalone();
    let mut c = Cluster::start_ha(&zk.servers(), 2);
    let leader = c.serving_leader().await;
    let addresses: Vec<String> = (0..2).map(|i| c.master_address(i)).collect();
    let raw = |i: usize| {
        let address = addresses[i].clone();
        async move { common::raw_master_at(&address).await }
    };
    let create = CreateFileRequest {
        path: "/idem/f".into(),
        block_size_bytes: 1 << 20,
        recursive: true,
        request_id: "test-client-1".into(),
        ..CreateFileRequest::default()
    };
    let first = raw(leader).await.create_file(create.clone()).await.unwrap().into_inner();
    // The answer was "lost": the same request again is answered, not refused or re-applied.
    let again = raw(leader).await.create_file(create.clone()).await.unwrap().into_inner();
    assert_eq!(again.id, first.id);
    let rename = RenameRequest { src: "/idem/f".into(), dst: "/idem/g".into(), request_id: "test-client-2".into() };
    raw(leader).await.rename(rename.clone()).await.unwrap();
    let create_h = CreateFileRequest { path: "/idem/h".into(), request_id: "test-client-4".into(), ..create };
    let h = raw(leader).await.create_file(create_h.clone()).await.unwrap().into_inner();

    c.kill_master_at(leader);
    let next = c.serving_leader().await;
    // The new leader learned the request ids from the journal.
    let after = raw(next).await.create_file(create_h).await.expect("create retried after failover").into_inner();
    assert_eq!(after.id, h.id);
    raw(next).await.rename(rename.clone()).await.expect("rename retried after failover");
    // A new request for the same change is a different matter.
    let fresh = RenameRequest { request_id: "test-client-3".into(), ..rename };
    let err = tachyon::error::FsError::from(raw(next).await.rename(fresh).await.unwrap_err());
    assert!(matches!(err, tachyon::error::FsError::NotFound { .. }), "{err}");
    let listed: Vec<String> = c.client().list_status("/idem", false).await.unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(listed, vec!["/idem/g".to_string(), "/idem/h".to_string()]);
}

/// `tachyon bench --failover N` end to end, once per fault kind, against a real ZooKeeper:
/// it runs three masters, faults the leader, and prints fault -> first acknowledged write.
/// The figures are the bench's to judge (no timed assertion); this checks that each fault
/// kind was measured and that the bench verified every acknowledged write afterwards (it
/// fails otherwise). The full run: `bin/tachyon bench --failover 10` (README, Performance).
#[test]
fn the_failover_bench_faults_the_leader_and_prints_each_kind() {
    let zk = ZooKeeper::standalone();
    let out = std::process::Command::new(common::tachyon_bin())
        .env_remove("TACHYON_CONF_DIR")
        .env_remove("TACHYON_JAVA_OPTS")
        .args(["bench", "--failover", "1", &format!("-Dtachyon.zookeeper.address={}", zk.servers()), "-Dtachyon.zookeeper.session.timeout=2s"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench --failover failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    for kind in ["kill -9 of the leader", "graceful stop of the leader"] {
        let line = stdout.lines().find(|l| l.starts_with(kind)).unwrap_or_else(|| panic!("no {kind:?} line in:\n{stdout}"));
        let p50: f64 = line.split("p50 ").nth(1).and_then(|r| r.split(' ').next()).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no p50 in {line:?}"));
        assert!(p50 > 0.0, "{line}");
    }
    assert!(stdout.contains("session timeout 2.0 s"), "{stdout}");
    // Without a ZooKeeper address it says what to set.
    let out = std::process::Command::new(common::tachyon_bin())
        .env_remove("TACHYON_CONF_DIR")
        .env_remove("TACHYON_JAVA_OPTS")
        .args(["bench", "--failover", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tachyon.zookeeper.address"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standbys_write_checkpoints_and_a_take_over_starts_from_one() {
    let zk = ZooKeeper::standalone();
    let mut c = Cluster::start_ha(&zk.servers(), 0);
    for _ in 0..2 {
        c.add_master_with(&["-Dtachyon.master.journal.checkpoint.period.entries=20", "-Dtachyon.master.journal.log.size.bytes.max=1KB"]);
    }
    let fs = c.client();
    let leader = c.serving_leader().await;
    let standby = 1 - leader;
    for i in 0..60 {
        fs.create_directory(&format!("/cp/d{i}"), true, false).await.unwrap();
    }
    let standby_log = c.path().join(format!("master{standby}.log"));
    let wrote = eventually(|| async { std::fs::read_to_string(&standby_log).unwrap_or_default().contains("standby wrote a checkpoint") }).await;
    assert!(wrote, "the standby wrote no checkpoint; see {}", standby_log.display());
    let checkpoints = std::fs::read_dir(c.journal().join("checkpoints")).unwrap().count();
    assert!(checkpoints >= 1);
    // Logs below the older kept checkpoint are pruned.
    let first_log = std::fs::read_dir(c.journal().join("logs")).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name().into_string().unwrap()).min().unwrap();
    assert!(!first_log.starts_with("0000000000000000-"), "logs were not pruned: {first_log}");

    c.kill_master_at(leader);
    assert_eq!(c.serving_leader().await, standby);
    fs.create_directory("/cp/after", true, false).await.unwrap();
    let names: Vec<String> = fs.list_status("/cp", false).await.unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names.len(), 61, "{names:?}");
    // The restarted master recovers from a checkpoint, not from entry 0.
    c.start_master_at(leader);
    let log = c.path().join(format!("master{leader}.log"));
    let loaded = eventually(|| async { std::fs::read_to_string(&log).unwrap_or_default().matches("loaded checkpoint").count() >= 1 }).await;
    assert!(loaded, "restart did not start from a checkpoint; see {}", log.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_zookeeper_stops_acknowledging_and_service_resumes_after() {
    let mut zk = ZooKeeper::standalone();
    let mut c = Cluster::start_ha(&zk.servers(), 2);
    c.start_worker(0);
    let fs = c.client();
    let leader = c.serving_leader().await;
    c.wait_for_workers(1).await;
    fs.write_file("/cut/before", b"acked", opts()).await.unwrap();
    let direct = c.impatient_client_of(leader);
    zk.kill(0);
    // Within the session timeout the leader notices and stops answering as leader.
    let stopped = eventually(|| async { direct.create_directory("/cut/while-down", true, true).await.is_err() }).await;
    assert!(stopped, "a leader without ZooKeeper kept acknowledging writes");
    zk.restart(0);
    c.serving_leader().await;
    fs.write_file("/cut/after", b"resumed", opts()).await.unwrap();
    assert_eq!(fs.read_file("/cut/before").await.unwrap(), b"acked");
    assert_eq!(fs.read_file("/cut/after").await.unwrap(), b"resumed");
}
