//! The README's quick start, through the real `bin/` scripts: start a local cluster, copy
//! a file in, list, read, runTests, stop, start again, and the file is still there.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn script(home: &Path, name: &str, args: &[&str], java_opts: &str) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new(root.join("bin").join(name))
        .args(args)
        .env("TACHYON_HOME", home)
        .env("TACHYON_BIN", common::tachyon_bin())
        .env("TACHYON_RAM_FOLDER", home.join("ram"))
        .env("TACHYON_WORKER_MEMORY_SIZE", "128MB")
        .env("TACHYON_JAVA_OPTS", java_opts)
        .env_remove("TACHYON_CONF_DIR")
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn readme_quick_start_through_the_scripts() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let opts = format!(
        "-Dtachyon.master.port={} -Dtachyon.master.web.port={} -Dtachyon.worker.port={} -Dtachyon.worker.data.port={} -Dtachyon.worker.web.port={}",
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port()
    );
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = readme.to_str().unwrap();
    let started = ok(script(h, "tachyon-start.sh", &["local"], &opts), "start local");
    assert!(started.contains("Live workers: 1"), "{started}");
    assert!(h.join("journal/FORMAT").exists(), "local start formats a new journal");
    ok(script(h, "tachyon", &["fs", "copyFromLocal", readme, "/docs/README.md"], &opts), "copyFromLocal");
    assert!(ok(script(h, "tachyon", &["fs", "ls", "/docs"], &opts), "ls").contains("/docs/README.md"));
    let original = std::fs::read(readme).unwrap();
    assert_eq!(script(h, "tachyon", &["fs", "cat", "/docs/README.md"], &opts).stdout, original);
    assert!(ok(script(h, "tachyon", &["runTests"], &opts), "runTests").contains("16 passed, 0 failed"));
    let stopped = ok(script(h, "tachyon-stop.sh", &[], &opts), "stop");
    assert!(stopped.contains("Stopped master") && !stopped.contains("killing"), "graceful stop: {stopped}");
    ok(script(h, "tachyon-start.sh", &["local"], &opts), "second start");
    assert_eq!(script(h, "tachyon", &["fs", "cat", "/docs/README.md"], &opts).stdout, original);
    ok(script(h, "tachyon-stop.sh", &[], &opts), "final stop");
    assert!(std::fs::read_dir(h.join("run")).unwrap().next().is_none(), "pid files removed");
}

/// The fault-tolerance guide through the scripts: ZooKeeper settings in `TACHYON_JAVA_OPTS`,
/// three masters from `conf/masters` (loopback addresses, one port), a worker from
/// `conf/workers`; kill -9 the leader and every file is still there.
#[test]
fn fault_tolerant_cluster_through_the_scripts_survives_a_leader_kill() {
    let zk = common::zk::ZooKeeper::standalone();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join("conf")).unwrap();
    std::fs::write(h.join("conf/masters"), "# three masters on one machine\n127.0.0.1\n127.0.0.2\n127.0.0.3\n").unwrap();
    std::fs::write(h.join("conf/workers"), "127.0.0.1\n").unwrap();
    let opts = format!(
        "-Dtachyon.zookeeper.enabled=true -Dtachyon.zookeeper.address={} -Dtachyon.zookeeper.session.timeout=2s \
         -Dtachyon.master.journal.folder={}/shared-journal -Dtachyon.master.port={} -Dtachyon.worker.port={} \
         -Dtachyon.worker.data.port={} -Dtachyon.master.web.port={} -Dtachyon.worker.web.port={} \
         -Dtachyon.user.rpc.retry.max.duration=30s",
        zk.servers(),
        h.display(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port()
    );
    ok(script(h, "tachyon", &["format"], &opts), "format");
    let started = ok(script(h, "tachyon-start.sh", &["all"], &opts), "start all");
    assert_eq!(started.matches("Started master").count(), 3, "{started}");
    assert_eq!(started.matches("Started worker").count(), 1, "{started}");
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let original = std::fs::read(&readme).unwrap();
    // The client finds the leader through ZooKeeper and retries until the worker registered.
    ok(script(h, "tachyon", &["fs", "copyFromLocal", readme.to_str().unwrap(), "/ft/README.md"], &opts), "copyFromLocal");
    let leader = ok(script(h, "tachyon", &["fs", "leader"], &opts), "leader").trim().to_string();
    let leader_host = leader.split(':').next().unwrap().to_string();
    let info = ok(script(h, "tachyon", &["fs", "masterInfo"], &opts), "masterInfo");
    assert!(info.contains(&format!("Leader: {leader}")), "{info}");

    let pidfile = h.join("run").join(format!("master-{leader_host}.pid"));
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let pid = pid.split_whitespace().next().unwrap();
    assert!(Command::new("kill").args(["-KILL", pid]).status().unwrap().success());
    assert_eq!(script(h, "tachyon", &["fs", "cat", "/ft/README.md"], &opts).stdout, original, "file after failover");
    let new_leader = ok(script(h, "tachyon", &["fs", "leader"], &opts), "leader").trim().to_string();
    assert_ne!(new_leader, leader);
    assert!(ok(script(h, "tachyon", &["runTests"], &opts), "runTests").contains("16 passed, 0 failed"));
    let stopped = ok(script(h, "tachyon-stop.sh", &["all"], &opts), "stop");
    assert_eq!(stopped.matches("Stopped master").count(), 2, "{stopped}");
    assert!(!stopped.contains("killing"), "graceful stop: {stopped}");
}

/// Seed 003's walkthrough with `bin/tachyon-cluster`: create (ZooKeeper, three masters, two
/// workers, runTests), kill the leader, see the new one in ZooKeeper and every file, destroy.
#[test]
fn seed_003_walkthrough_with_tachyon_cluster() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("cluster");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let worker_port = loop {
        let p = common::free_port();
        if p < 60000 {
            break p;
        }
    };
    let (zk_port, master_port, web_port) = (common::free_port(), common::free_port(), common::free_port());
    let run = |args: &[&str]| {
        let out = Command::new(root.join("bin/tachyon-cluster"))
            .args(args)
            .env("TACHYON_BIN", common::tachyon_bin())
            .env("TACHYON_CLUSTER_DIR", &state)
            .env("TACHYON_CLUSTER_ZK_PORT", zk_port.to_string())
            .env("TACHYON_CLUSTER_MASTER_PORT", master_port.to_string())
            .env("TACHYON_CLUSTER_MASTER_WEB_PORT", web_port.to_string())
            .env("TACHYON_CLUSTER_WORKER_PORT", worker_port.to_string())
            .env_remove("TACHYON_CONF_DIR")
            .output()
            .unwrap();
        ok(out, &format!("tachyon-cluster {args:?}"))
    };
    let created = run(&["create", "--masters", "3", "--workers", "2"]);
    assert!(created.contains("16 passed, 0 failed"), "{created}");
    assert!(created.contains("web UI: http://127.0.0."), "{created}");
    let killed = run(&["kill-leader"]);
    assert!(killed.contains("New leader: 127.0.0."), "{killed}");
    assert!(killed.contains("zkCli.sh get /tachyon/leader/"), "{killed}");
    assert!(killed.contains("/docs/README.md"), "{killed}");
    assert!(run(&["destroy"]).contains("Destroyed."));
    assert!(!state.exists());
}
