//! Real ZooKeeper servers (Debian's `zookeeper` package) on loopback for integration tests:
//! a standalone server or a 3-node ensemble, each a child JVM with its own data folder.
//! Test support outside the deterministic core: it waits on real time.

#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;

/// The ZooKeeper server jar; its manifest names the other jars it needs.
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

/// A running ZooKeeper standalone server or ensemble.
pub struct ZooKeeper {
    dir: tempfile::TempDir,
    client_ports: Vec<u16>,
    peer_ports: Vec<(u16, u16)>,
    servers: Vec<Option<Child>>,
}

impl ZooKeeper {
    /// One standalone server.
    pub fn standalone() -> ZooKeeper {
        Self::start(1)
    }

    /// A 3-node ensemble.
    pub fn ensemble() -> ZooKeeper {
        Self::start(3)
    }

    fn start(nodes: usize) -> ZooKeeper {
        assert!(std::path::Path::new(ZOOKEEPER_JAR).exists(), "{ZOOKEEPER_JAR} is missing: install Debian's zookeeper package (bin/test-all.sh does)");
        let dir = tempfile::tempdir().unwrap();
        let client_ports = (0..nodes).map(|_| free_port()).collect();
        let peer_ports = (0..nodes).map(|_| (free_port(), free_port())).collect();
        let mut zk = ZooKeeper { dir, client_ports, peer_ports, servers: (0..nodes).map(|_| None).collect() };
        for i in 0..nodes {
            zk.start_server(i);
        }
        for i in 0..nodes {
            zk.wait_serving(i);
        }
        zk
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("zk{i}"))
    }

    fn start_server(&mut self, i: usize) {
        let data = self.data_dir(i);
        std::fs::create_dir_all(&data).unwrap();
        let mut cfg = format!(
            "tickTime=200\ninitLimit=50\nsyncLimit=25\nminSessionTimeout=400\nmaxSessionTimeout=60000\n\
             dataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
             4lw.commands.whitelist=*\n",
            data.display(),
            self.client_ports[i]
        );
        if self.servers.len() > 1 {
            std::fs::write(data.join("myid"), format!("{}\n", i + 1)).unwrap();
            for (n, (peer, election)) in self.peer_ports.iter().enumerate() {
                cfg.push_str(&format!("server.{}=127.0.0.1:{peer}:{election}\n", n + 1));
            }
        }
        let cfg_file = data.join("zoo.cfg");
        std::fs::write(&cfg_file, cfg).unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("zk{i}.log"))).unwrap();
        let child = Command::new("java")
            .args(["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(format!("{}:{ZOOKEEPER_JAR}", data.display()))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg_file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("java must be installed to run ZooKeeper");
        self.servers[i] = Some(child);
    }

    /// Waits until server `i` answers `ruok` and serves (`srvr` shows a mode).
    fn wait_serving(&self, i: usize) {
        for _ in 0..300 {
            if let Some(reply) = four_letter_word(self.client_ports[i], "srvr") {
                if reply.contains("Mode:") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ZooKeeper server {i} did not start; see {}", self.dir.path().join(format!("zk{i}.log")).display());
    }

    /// The connect string, `127.0.0.1:p1,127.0.0.1:p2,...`.
    pub fn servers(&self) -> String {
        self.client_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// SIGKILLs server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts server `i` again on its data folder and waits until it serves.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.start_server(i);
        self.wait_serving(i);
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// Sends a ZooKeeper four-letter command and returns the reply, or `None` if the server
/// does not answer.
pub fn four_letter_word(port: u16, word: &str) -> Option<String> {
    let addr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(word.as_bytes()).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply)
}
