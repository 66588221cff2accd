//! The README's quick start, through the real `bin/` scripts: start a local cluster, copy
//! a file in, list, read, runTests, stop, start again, and the file is still there.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn script(home: &Path, name: &str, args: &[&str], java_opts: &str) -> Output {
    script_with_env(home, name, args, java_opts, &[])
}

/// `script` with extra environment variables, as a user exports them before a command.
fn script_with_env(home: &Path, name: &str, args: &[&str], java_opts: &str, env: &[(&str, &str)]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new(root.join("bin").join(name))
        .args(args)
        .envs(env.iter().copied())
        .env("TACHYON_HOME", home)
        .env("TACHYON_BIN", common::tachyon_bin())
        .env("TACHYON_RAM_FOLDER", home.join("ram"))
        .env("TACHYON_WORKER_MEMORY_SIZE", "128MB")
        .env("TACHYON_JAVA_OPTS", java_opts)
        .env_remove("TACHYON_CONF_DIR")
        .output()
        .unwrap()
}

/// `TACHYON_JAVA_OPTS` as the fault-tolerance guide has them (ZooKeeper, a journal folder
/// every master reaches), with free ports so tests do not collide.
fn fault_tolerant_opts(zk: &common::zk::ZooKeeper, home: &Path) -> String {
    format!(
        "-Dtachyon.zookeeper.enabled=true -Dtachyon.zookeeper.address={} -Dtachyon.zookeeper.session.timeout=2s \
         -Dtachyon.master.journal.folder={}/shared-journal -Dtachyon.master.port={} -Dtachyon.worker.port={} \
         -Dtachyon.worker.data.port={} -Dtachyon.master.web.port={} -Dtachyon.worker.web.port={} \
         -Dtachyon.user.rpc.retry.max.duration=30s",
        zk.servers(),
        home.display(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port()
    )
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
    let proxy_port = common::free_port();
    let opts = format!(
        "-Dtachyon.master.port={} -Dtachyon.master.web.port={} -Dtachyon.worker.port={} -Dtachyon.worker.data.port={} -Dtachyon.worker.web.port={} \
         -Dtachyon.proxy.web.port={proxy_port}",
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
    if cfg!(feature = "proxy") {
        // The S3 gateway starts as a process of its own and stops with the rest.
        assert!(ok(script(h, "tachyon-start.sh", &["proxy"], &opts), "start proxy").contains("Started proxy"));
        let wait = format!("for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{proxy_port}) 2>/dev/null && exit 0; sleep 0.05; done; exit 1");
        let listening = Command::new("bash").arg("-c").arg(wait).status().unwrap();
        assert!(listening.success(), "the gateway listens on tachyon.proxy.web.port");
    }
    let stopped = ok(script(h, "tachyon-stop.sh", &[], &opts), "stop");
    assert!(stopped.contains("Stopped master") && !stopped.contains("killing"), "graceful stop: {stopped}");
    assert_eq!(stopped.contains("Stopped proxy"), cfg!(feature = "proxy"), "{stopped}");
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
    let opts = fault_tolerant_opts(&zk, h);
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

/// Seed 000 literally, on one machine: one ZooKeeper, three masters each started with
/// `TACHYON_MASTER_ADDRESS=127.0.0.N bin/tachyon-start.sh master`, a worker with
/// `bin/tachyon-start.sh worker`. Three rounds of kill -9 of the leader followed at once by
/// the same start command: the killed master starts again (a dying or unreaped process is
/// not "already running"), the others are left alone, and every file stays byte-equal.
#[test]
fn seed_000_masters_started_one_by_one_restart_after_kill_9() {
    let zk = common::zk::ZooKeeper::standalone();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let opts = format!("{} -Dtachyon.user.block.size.bytes.default=256KB", fault_tolerant_opts(&zk, h));
    let masters = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let start_master = |addr: &str| ok(script_with_env(h, "tachyon-start.sh", &["master"], &opts, &[("TACHYON_MASTER_ADDRESS", addr)]), "start master");
    ok(script(h, "tachyon", &["format"], &opts), "format");
    for addr in masters {
        let started = start_master(addr);
        assert!(started.contains(&format!("Started master on {addr} ")), "{started}");
        assert!(h.join(format!("logs/master-{addr}.log")).exists());
    }
    assert!(start_master("127.0.0.2").contains("master on 127.0.0.2 is already running"));
    ok(script(h, "tachyon-start.sh", &["worker"], &opts), "start worker");

    let mut files = Vec::new();
    for round in 0..3u64 {
        for i in 0..2 {
            let data = common::content(200_000 + (round as usize) * 300_000 + i * 1000, round * 10 + i as u64);
            let local = h.join("upload");
            std::fs::write(&local, &data).unwrap();
            let path = format!("/seed000/r{round}-{i}");
            ok(script(h, "tachyon", &["fs", "copyFromLocal", local.to_str().unwrap(), &path], &opts), "copyFromLocal");
            files.push((path, data));
        }
        let leader = ok(script(h, "tachyon", &["fs", "leader"], &opts), "leader").trim().to_string();
        let leader_host = leader.split(':').next().unwrap().to_string();
        let pid = std::fs::read_to_string(h.join(format!("run/master-{leader_host}.pid"))).unwrap();
        let pid = pid.split_whitespace().next().unwrap().to_string();
        assert!(Command::new("kill").args(["-9", &pid]).status().unwrap().success());
        let restarted = start_master(&leader_host);
        assert!(restarted.contains(&format!("Started master on {leader_host} ")), "round {round}: {restarted}");
        for (path, data) in &files {
            let out = script(h, "tachyon", &["fs", "cat", path], &opts);
            assert!(out.status.success() && out.stdout == *data, "round {round}: {path}: {}", String::from_utf8_lossy(&out.stderr));
        }
        assert_ne!(ok(script(h, "tachyon", &["fs", "leader"], &opts), "leader").trim(), leader, "round {round}");
    }
    let stopped = ok(script(h, "tachyon-stop.sh", &[], &opts), "stop");
    assert_eq!(stopped.matches("Stopped master").count(), 3, "{stopped}");
    assert!(!stopped.contains("killing"), "graceful stop: {stopped}");
}

/// A pid file whose pid now belongs to another program (reused after a reboot or a crash)
/// does not keep a master from starting; one written on another host sharing
/// `TACHYON_HOME` is left alone by stop.
#[test]
fn a_reused_pid_or_another_hosts_pid_file_is_not_a_running_master() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let opts = format!("-Dtachyon.master.port={} -Dtachyon.master.web.port={}", common::free_port(), common::free_port());
    std::fs::create_dir_all(h.join("run")).unwrap();
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    std::fs::write(h.join("run/master-localhost.pid"), format!("{} {}\n", other.id(), boot.trim())).unwrap();
    std::fs::write(h.join("run/master-elsewhere.pid"), format!("{} another-boot\n", other.id())).unwrap();
    ok(script(h, "tachyon", &["format"], &opts), "format");
    let started = ok(script(h, "tachyon-start.sh", &["master"], &opts), "start master");
    assert!(started.contains("Started master on localhost "), "{started}");
    let stopped = ok(script(h, "tachyon-stop.sh", &["local"], &opts), "stop");
    assert_eq!(stopped.matches("Stopped master").count(), 1, "{stopped}");
    assert!(other.try_wait().unwrap().is_none(), "the unrelated process was not signalled");
    assert!(h.join("run/master-elsewhere.pid").exists(), "another host's pid file stays");
    other.kill().unwrap();
    let _ = other.wait();
}

/// `bin/tachyon copyDir conf` sends the folder to every other host of conf/masters and
/// conf/workers (once each, loopback hosts skipped) and unpacks it at the same path. The
/// `$TACHYON_SSH` here records what each host receives instead of logging in.
#[test]
fn copy_dir_sends_conf_to_every_other_host_once() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let conf = h.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("masters"), "m1.example\nm2.example\nlocalhost\n").unwrap();
    std::fs::write(conf.join("workers"), "w1.example\nm1.example\n127.0.0.1\n").unwrap();
    std::fs::write(conf.join("tachyon-site.properties"), "tachyon.zookeeper.enabled=true\n").unwrap();
    let received = h.join("received");
    std::fs::create_dir_all(&received).unwrap();
    let fake_ssh = h.join("record-ssh");
    std::fs::write(&fake_ssh, format!("#!/usr/bin/env bash\nhost=$1; shift\necho \"$*\" >{dir}/$host.cmd\ncat >{dir}/$host.tar\n", dir = received.display()))
        .unwrap();
    assert!(Command::new("chmod").args(["+x", fake_ssh.to_str().unwrap()]).status().unwrap().success());
    let out = script_with_env(h, "tachyon", &["copyDir", conf.to_str().unwrap()], "", &[("TACHYON_SSH", fake_ssh.to_str().unwrap())]);
    let stdout = ok(out, "copyDir");
    assert_eq!(stdout.matches("Copying").count(), 3, "{stdout}");
    for host in ["m1.example", "m2.example", "w1.example"] {
        let cmd = std::fs::read_to_string(received.join(format!("{host}.cmd"))).unwrap();
        assert!(cmd.contains(&format!("mkdir -p {}", conf.display())) && cmd.contains("tar -C"), "{cmd}");
        let listing = Command::new("tar").arg("-tf").arg(received.join(format!("{host}.tar"))).output().unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("./tachyon-site.properties") && listing.contains("./masters"), "{listing}");
    }
    assert!(!received.join("localhost.tar").exists() && !received.join("127.0.0.1.tar").exists());
    let bad = script(h, "tachyon", &["copyDir", "/no/such/folder"], "");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("usage: bin/tachyon copyDir DIR"));
}

/// A configuration mistake stops a master or worker at start with one line naming the key
/// and its value, and the start script shows it.
#[test]
fn bad_addresses_stop_a_process_with_one_clear_line() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let ports = format!("-Dtachyon.master.port={} -Dtachyon.master.web.port={}", common::free_port(), common::free_port());
    ok(script(h, "tachyon", &["format"], &ports), "format");
    for (opts, expected) in [
        (format!("{ports} -Dtachyon.zookeeper.enabled=true -Dtachyon.zookeeper.address=zk1:21a81"), "tachyon.zookeeper.address"),
        (format!("{ports} -Dtachyon.zookeeper.enabled=true -Dtachyon.zookeeper.address=no-such-zk.invalid:2181"), "no-such-zk.invalid:2181 does not resolve"),
        (format!("{ports} -Dtachyon.master.bind.host=192.0.2.1"), "tachyon.master.bind.host=\"192.0.2.1\""),
        (format!("{ports} -Dtachyon.master.hostname=no-such-host.invalid"), "tachyon.master.hostname=no-such-host.invalid does not resolve"),
    ] {
        let out = Command::new(common::tachyon_bin())
            .arg("master")
            .env("TACHYON_HOME", h)
            .env("TACHYON_JAVA_OPTS", &opts)
            .env_remove("TACHYON_CONF_DIR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{opts}: started");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("Error")).collect();
        assert!(errors.len() == 1 && errors[0].contains(expected), "{opts}: {stderr}");
    }
    let started = script(h, "tachyon-start.sh", &["master"], &format!("{ports} -Dtachyon.master.bind.host=192.0.2.1"));
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(!started.status.success() && stderr.contains("exited at start") && stderr.contains("cannot listen on"), "{stderr}");
}

/// Alluxio's names for the configuration files work through the scripts as the seed
/// documents use them: `conf/alluxio-env.sh` (its `ALLUXIO_*` variables and
/// `ALLUXIO_JAVA_OPTS`) and `conf/alluxio-site.properties` (`alluxio.*` keys).
#[test]
fn alluxio_env_and_site_files_are_read() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join("conf")).unwrap();
    std::fs::write(
        h.join("conf/alluxio-env.sh"),
        "export ALLUXIO_MASTER_HOSTNAME=127.0.0.7\nexport ALLUXIO_JAVA_OPTS=\"-Dalluxio.zookeeper.address=zk9:2181\"\n",
    )
    .unwrap();
    std::fs::write(h.join("conf/alluxio-site.properties"), "alluxio.master.port=19555\nalluxio.zookeeper.enabled=true\n").unwrap();
    let get = |key: &str| ok(script(h, "tachyon", &["getConf", "--role", "master", "--source", key], ""), key).trim().to_string();
    assert_eq!(get("tachyon.master.hostname"), "127.0.0.7 (environment variable ALLUXIO_MASTER_HOSTNAME)");
    assert_eq!(get("tachyon.zookeeper.address"), "zk9:2181 (-D option in ALLUXIO_JAVA_OPTS)");
    assert!(get("tachyon.master.port").starts_with("19555 ("), "{}", get("tachyon.master.port"));
    assert!(get("alluxio.zookeeper.enabled").starts_with("true ("));
}
