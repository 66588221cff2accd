//! A cluster across several hosts, as a user deploys one: Linux network namespaces joined by
//! a bridge, each "host" with its own non-loopback address, one installation (`TACHYON_HOME`
//! shared as over NFS) whose `bin/tachyon-start.sh all` starts three masters and two workers
//! on the hosts of `conf/masters` and `conf/workers` through `$TACHYON_SSH` (here a command
//! that enters the host's namespace, as ssh would log in). Kill -9 of the leader, twice, and
//! every file reads back byte-equal; the killed master restarts with the same command.
//!
//! Needs root and `ip netns`; without them the test says so and skips (and fails instead
//! when `TACHYON_REQUIRE_NETNS=1`, as `bin/test-all.sh` sets when running as root).

#![allow(clippy::disallowed_methods)] // real processes on real time

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The test hosts' addresses: they exist only inside the namespaces this test creates.
const MASTERS: [&str; 3] = ["10.99.0.1", "10.99.0.2", "10.99.0.3"];
const WORKERS: [&str; 2] = ["10.99.0.4", "10.99.0.5"];
const ZOOKEEPER: &str = "10.99.0.10";
const ADMIN: &str = "10.99.0.20";

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().unwrap()
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Why network namespaces cannot be used here, if they cannot.
fn netns_unavailable() -> Option<String> {
    let probe = format!("tachyon-probe-{}", std::process::id());
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Err(e) => Some(format!("no `ip` command ({e})")),
        Ok(out) if !out.status.success() => Some(format!("`ip netns add` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Ok(_) => {
            let _ = sh(&["ip", "netns", "del", &probe]);
            None
        }
    }
}

/// Hosts on one bridge: a namespace per host plus one for the bridge. Deleted (with every
/// process inside) when dropped.
struct Hosts {
    prefix: String,
    names: Vec<String>,
}

impl Hosts {
    fn new(addresses: &[&str]) -> Hosts {
        let prefix = format!("tmh{}", std::process::id() % 100_000);
        let mut hosts = Hosts { prefix: prefix.clone(), names: vec![format!("{prefix}-sw")] };
        let sw = hosts.names[0].clone();
        must(&["ip", "netns", "add", &sw]);
        must(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        for (i, addr) in addresses.iter().enumerate() {
            let ns = hosts.namespace(addr);
            let veth = format!("v{i}");
            must(&["ip", "netns", "add", &ns]);
            hosts.names.push(ns.clone());
            must(&["ip", "-n", &sw, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            must(&["ip", "-n", &sw, "link", "set", &veth, "master", "br0", "up"]);
            must(&["ip", "-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        hosts
    }

    fn namespace(&self, addr: &str) -> String {
        format!("{}-{}", self.prefix, addr.rsplit('.').next().unwrap())
    }

    /// `ip netns exec NS` + the command, as a login on that host would run it.
    fn on(&self, addr: &str, command: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespace(addr)]).args(command);
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.names {
            let pids = sh(&["ip", "netns", "pids", ns]);
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = sh(&["kill", "-9", pid]);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        for ns in &self.names {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

/// An installation in `home`: the scripts copied into `home/bin` (so `TACHYON_HOME` is
/// `home` on every host), `conf/` written by the test.
fn install(home: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(home.join("bin")).unwrap();
    std::fs::create_dir_all(home.join("conf")).unwrap();
    for entry in std::fs::read_dir(root.join("bin")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, home.join("bin").join(path.file_name().unwrap())).unwrap();
    }
}

/// The `$TACHYON_SSH` of the test: `netns-ssh HOST COMMAND` runs COMMAND with bash inside
/// HOST's namespace, with a login's clean environment (nothing of the caller's is passed).
fn write_netns_ssh(home: &Path, hosts: &Hosts) -> PathBuf {
    let path = home.join("netns-ssh");
    let mut script = String::from(
        "#!/usr/bin/env bash\n# Test stand-in for ssh: HOST COMMAND runs COMMAND in HOST's network namespace.\nhost=$1; shift\ncase \"$host\" in\n",
    );
    for addr in MASTERS.iter().chain(WORKERS.iter()) {
        script.push_str(&format!("  {addr}) ns={} ;;\n", hosts.namespace(addr)));
    }
    script.push_str("  *) echo \"netns-ssh: unknown host $host\" >&2; exit 255 ;;\nesac\n");
    script.push_str("exec ip netns exec \"$ns\" env -i PATH=\"$PATH\" HOME=\"$HOME\" bash -c \"$*\"\n");
    std::fs::write(&path, script).unwrap();
    must(&["chmod", "+x", path.to_str().unwrap()]);
    path
}

/// A child process killed and reaped when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a ZooKeeper server inside the namespace of `ZOOKEEPER`; waits until it serves.
fn start_zookeeper(hosts: &Hosts, dir: &Path) -> Reaped {
    let data = dir.join("zk");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = data.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=200\ninitLimit=50\nsyncLimit=25\nminSessionTimeout=400\nmaxSessionTimeout=60000\ndataDir={}\n\
             clientPort=2181\nclientPortAddress={ZOOKEEPER}\nadmin.enableServer=false\n4lw.commands.whitelist=*\n",
            data.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("zk.log")).unwrap();
    let server = hosts
        .on(ZOOKEEPER, &["java", "-Xmx128m", "-XX:+UseSerialGC", "-cp"])
        .arg(format!("{}:/usr/share/java/zookeeper.jar", data.display()))
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(&cfg)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let server = Reaped(server);
    let probe = format!("exec 3<>/dev/tcp/{ZOOKEEPER}/2181 && echo srvr >&3 && cat <&3");
    for _ in 0..300 {
        let out = hosts.on(ADMIN, &["bash", "-c", &probe]).output().unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("Mode:") {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("ZooKeeper did not start in its namespace; see {}", dir.join("zk.log").display());
}

#[test]
fn three_masters_and_two_workers_on_five_hosts_survive_leader_kills() {
    if let Some(why) = netns_unavailable() {
        assert!(std::env::var_os("TACHYON_REQUIRE_NETNS").is_none(), "TACHYON_REQUIRE_NETNS is set but {why}");
        eprintln!("SKIPPED three_masters_and_two_workers_on_five_hosts_survive_leader_kills: network namespaces unavailable: {why}");
        return;
    }
    let mut all: Vec<&str> = MASTERS.iter().chain(WORKERS.iter()).copied().collect();
    all.extend([ZOOKEEPER, ADMIN]);
    let hosts = Hosts::new(&all);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("tachyon");
    install(&home);
    let ssh = write_netns_ssh(dir.path(), &hosts);
    let conf = home.join("conf");
    std::fs::write(conf.join("masters"), MASTERS.join("\n") + "\n").unwrap();
    std::fs::write(conf.join("workers"), WORKERS.join("\n") + "\n").unwrap();
    // As the fault-tolerance guide says: ZooKeeper in TACHYON_JAVA_OPTS, the journal on a
    // folder every master reaches (here the shared home). The hosts' own names come from
    // conf/masters and conf/workers; nothing here names an address of a master or worker.
    std::fs::write(
        conf.join("tachyon-env.sh"),
        format!(
            "export TACHYON_BIN={bin}\nexport TACHYON_RAM_FOLDER={home}/ram\nexport TACHYON_WORKER_MEMORY_SIZE=64MB\n\
             export TACHYON_JAVA_OPTS=\"-Dtachyon.zookeeper.enabled=true -Dtachyon.zookeeper.address={ZOOKEEPER}:2181 \
             -Dtachyon.zookeeper.session.timeout=2s -Dtachyon.master.journal.folder={home}/journal \
             -Dtachyon.user.block.size.bytes.default=1MB -Dtachyon.user.rpc.retry.max.duration=60s\"\n",
            bin = common::tachyon_bin(),
            home = home.display()
        ),
    )
    .unwrap();
    let _zookeeper = start_zookeeper(&hosts, dir.path());

    // Everything the admin runs, from the admin host: a login shell there has only PATH.
    let admin = |args: &[&str]| -> Output {
        let mut c = hosts.on(ADMIN, &["env", "-i"]);
        c.arg(format!("PATH={}", std::env::var("PATH").unwrap()))
            .arg(format!("TACHYON_SSH={}", ssh.display()))
            .arg(home.join("bin").join(args[0]))
            .args(&args[1..])
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    let ok = |args: &[&str]| -> String {
        let out = admin(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    ok(&["tachyon", "format"]);
    let started = ok(&["tachyon-start.sh", "all"]);
    for addr in MASTERS {
        assert!(started.contains(&format!("Started master on {addr} ")), "{started}");
    }
    for addr in WORKERS {
        assert!(started.contains(&format!("Started worker on {addr} ")), "{started}");
    }

    let files: Vec<(String, Vec<u8>)> = (0..6).map(|i| (format!("/multi/f{i}"), common::content(300_000 + i * 700_000, i as u64))).collect();
    let write = |path: &str, data: &[u8]| {
        let local = dir.path().join("upload");
        std::fs::write(&local, data).unwrap();
        ok(&["tachyon", "fs", "copyFromLocal", local.to_str().unwrap(), path]);
    };
    let check_all = |count: usize, round: usize| {
        for (path, data) in &files[..count] {
            let out = admin(&["tachyon", "fs", "cat", path]);
            assert!(out.status.success(), "round {round}: cat {path}: {}", String::from_utf8_lossy(&out.stderr));
            assert!(out.stdout == *data, "round {round}: {path} differs ({} bytes read, {} written)", out.stdout.len(), data.len());
        }
    };
    for (path, data) in &files[..2] {
        write(path, data);
    }
    // Workers advertise their own hosts' addresses, not localhost.
    let mut report = String::new();
    for _ in 0..100 {
        report = ok(&["tachyon", "fs", "report"]);
        if report.contains("Live workers: 2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for addr in WORKERS {
        assert!(report.contains(addr), "{report}");
    }
    assert!(!report.contains("localhost"), "{report}");

    for round in 0..2 {
        let leader = ok(&["tachyon", "fs", "leader"]).trim().to_string();
        let leader_host = leader.split(':').next().unwrap().to_string();
        assert!(MASTERS.contains(&leader_host.as_str()), "leader {leader}");
        let pidfile = home.join("run").join(format!("master-{leader_host}.pid"));
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid = pid.split_whitespace().next().unwrap().to_string();
        must(&["kill", "-9", &pid]);
        check_all(2 + 2 * round, round);
        let new_leader = ok(&["tachyon", "fs", "leader"]).trim().to_string();
        assert_ne!(new_leader, leader, "round {round}");
        for (path, data) in &files[2 + 2 * round..4 + 2 * round] {
            write(path, data);
        }
        // The same command restarts the killed master (and only it) at once.
        let restarted = ok(&["tachyon-start.sh", "masters"]);
        assert!(restarted.contains(&format!("Started master on {leader_host} ")), "round {round}: {restarted}");
        assert_eq!(restarted.matches("already running").count(), 2, "round {round}: {restarted}");
    }
    check_all(files.len(), 2);
    let info = ok(&["tachyon", "fs", "masterInfo"]);
    for addr in MASTERS {
        assert!(info.contains(addr), "{info}");
    }
    let stopped = ok(&["tachyon-stop.sh", "all"]);
    assert_eq!(stopped.matches("Stopped master").count(), 3, "{stopped}");
    assert_eq!(stopped.matches("Stopped worker").count(), 2, "{stopped}");
}
