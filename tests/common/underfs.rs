//! Real under-storage servers on loopback for integration tests: moto's S3-compatible
//! server and an HDFS NameNode + DataNode (Hadoop 2.7.3 jars), each a child process with
//! its own folder (`bin/install-test-services.sh` installs both into the test cache), and
//! a GlusterFS volume mounted with FUSE (Debian's `glusterfs-server`, installed by
//! `bin/test-all.sh`).
//! Test support outside the deterministic core: it waits on real time.

#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::free_port;

/// Where `bin/install-test-services.sh` put the servers and tools.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("TACHYON_TEST_CACHE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tachyon"),
    }
}

fn wait_listening(port: u16, what: &str, log: &std::path::Path) {
    for _ in 0..600 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on 127.0.0.1:{port}; see {}", log.display());
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Access key of the test S3 server (moto accepts any).
pub const S3_ACCESS_KEY: &str = "tachyon-test-access";
/// Secret key of the test S3 server; tests check it never appears in output.
pub const S3_SECRET_KEY: &str = "tachyon-test-secret-4f2a9c";

/// A moto S3 server with one bucket, `tachyon`.
pub struct S3Server {
    dir: tempfile::TempDir,
    pub port: u16,
    server: Option<Child>,
}

impl S3Server {
    /// Starts the server and creates the bucket.
    pub fn start() -> S3Server {
        let bin = cache_dir().join("moto-venv/bin/moto_server");
        assert!(bin.exists(), "{} is missing: run bin/install-test-services.sh (bin/test-all.sh does)", bin.display());
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log_path = dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { dir, port, server: Some(child) };
        wait_listening(port, "moto", &log_path);
        server.create_bucket("tachyon");
        server
    }

    /// The endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto needs no signature for it).
    pub fn create_bucket(&self, name: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port).unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "creating bucket {name} failed: {reply}; see {}", self.dir.path().display());
    }

    /// Under-storage options for this server.
    #[cfg(feature = "s3")]
    pub fn options(&self) -> tachyon::underfs::UfsOptions {
        tachyon::underfs::UfsOptions {
            s3: tachyon::underfs::s3::S3Options {
                endpoint: Some(self.endpoint()),
                region: "us-east-1".into(),
                path_style: true,
                access_key: Some(S3_ACCESS_KEY.into()),
                secret_key: Some(S3_SECRET_KEY.into()),
            },
        }
    }

    /// The `-D` options a tachyon process needs to use this server.
    pub fn defines(&self) -> Vec<String> {
        vec![
            format!("-Dtachyon.underfs.s3.endpoint={}", self.endpoint()),
            "-Dtachyon.underfs.s3.disable.dns.buckets=true".into(),
            format!("-Daws.accessKeyId={S3_ACCESS_KEY}"),
            format!("-Daws.secretKey={S3_SECRET_KEY}"),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        kill(&mut self.server);
    }
}

/// An HDFS cluster of one NameNode and one DataNode.
pub struct HdfsServer {
    dir: tempfile::TempDir,
    pub port: u16,
    namenode: Option<Child>,
    datanode: Option<Child>,
}

impl HdfsServer {
    /// Formats and starts the NameNode and DataNode; returns once a file can be written.
    pub fn start() -> HdfsServer {
        let jars = cache_dir().join("hadoop/pyspark-2.4.8/deps/jars");
        assert!(jars.join("hadoop-hdfs-2.7.3.jar").exists(), "{} is missing: run bin/install-test-services.sh (bin/test-all.sh does)", jars.display());
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["conf", "web/webapps/hdfs", "web/webapps/datanode", "name", "data"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let port = free_port();
        let prop = |k: &str, v: String| format!("<property><name>{k}</name><value>{v}</value></property>\n");
        let core = format!("<configuration>\n{}</configuration>\n", prop("fs.defaultFS", format!("hdfs://127.0.0.1:{port}")));
        let mut hdfs = String::from("<configuration>\n");
        for (k, v) in [
            ("dfs.namenode.name.dir", d.join("name").display().to_string()),
            ("dfs.datanode.data.dir", d.join("data").display().to_string()),
            ("dfs.replication", "1".into()),
            ("dfs.webhdfs.enabled", "false".into()),
            ("dfs.permissions.enabled", "false".into()),
            ("dfs.namenode.safemode.extension", "0".into()),
            ("dfs.heartbeat.interval", "1".into()),
            ("dfs.namenode.rpc-address", format!("127.0.0.1:{port}")),
            ("dfs.namenode.http-address", format!("127.0.0.1:{}", free_port())),
            ("dfs.namenode.secondary.http-address", format!("127.0.0.1:{}", free_port())),
            ("dfs.datanode.address", format!("127.0.0.1:{}", free_port())),
            ("dfs.datanode.http.address", format!("127.0.0.1:{}", free_port())),
            ("dfs.datanode.ipc.address", format!("127.0.0.1:{}", free_port())),
        ] {
            hdfs.push_str(&prop(k, v));
        }
        hdfs.push_str("</configuration>\n");
        std::fs::write(d.join("conf/core-site.xml"), core).unwrap();
        std::fs::write(d.join("conf/hdfs-site.xml"), hdfs).unwrap();
        std::fs::write(
            d.join("conf/log4j.properties"),
            "log4j.rootLogger=INFO,console\nlog4j.appender.console=org.apache.log4j.ConsoleAppender\n\
             log4j.appender.console.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{1}: %m%n\n",
        )
        .unwrap();
        let classpath = format!("{}:{}:{}/*", d.join("conf").display(), d.join("web").display(), jars.display());
        let java = |class: &str, log: &str, args: &[&str]| {
            let log = std::fs::File::create(d.join(log)).unwrap();
            Command::new("java")
                .args(["-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", &classpath, class])
                .args(args)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("java must be installed to run HDFS")
        };
        let status = java("org.apache.hadoop.hdfs.server.namenode.NameNode", "format.log", &["-format", "-nonInteractive"]).wait().unwrap();
        assert!(status.success(), "NameNode format failed; see {}", d.join("format.log").display());
        let namenode = Some(java("org.apache.hadoop.hdfs.server.namenode.NameNode", "namenode.log", &[]));
        let datanode = Some(java("org.apache.hadoop.hdfs.server.datanode.DataNode", "datanode.log", &[]));
        let server = HdfsServer { dir, port, namenode, datanode };
        wait_listening(port, "NameNode", &server.dir.path().join("namenode.log"));
        server.wait_datanode();
        server
    }

    /// Waits until the DataNode has registered (the NameNode logs its first block report).
    fn wait_datanode(&self) {
        let log = self.dir.path().join("namenode.log");
        for _ in 0..600 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("BLOCK* processReport") || text.contains("from DatanodeRegistration") && text.contains("processReport") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("HDFS DataNode did not register; see {}", self.dir.path().display());
    }

    /// `hdfs://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("hdfs://127.0.0.1:{}", self.port)
    }
}

impl Drop for HdfsServer {
    fn drop(&mut self) {
        kill(&mut self.datanode);
        kill(&mut self.namenode);
    }
}

/// `program` run as root: directly when this process is root, else through `sudo -n`.
fn as_root(program: &str) -> Command {
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if is_root {
        return Command::new(program);
    }
    let mut cmd = Command::new("sudo");
    cmd.arg("-n").arg(program);
    cmd
}

/// Runs `program args` as root; the output, or why it failed.
fn run_as_root(program: &str, args: &[&str]) -> Result<String, String> {
    let out = as_root(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{program} {args:?}: {text}"))
    }
}

/// A GlusterFS volume with one brick, mounted with FUSE (the seeds' third journal option;
/// tachyon sees it as a local folder). Needs Debian's `glusterfs-server` and root (or
/// password-less sudo).
pub struct GlusterVolume {
    dir: tempfile::TempDir,
    name: String,
}

impl GlusterVolume {
    /// Starts `glusterd` if it is not running, creates and starts a volume whose brick
    /// lives in a fresh folder, and mounts it. (Bricks on 127.0.0.1 are refused; 127.0.0.2
    /// is loopback too and accepted.)
    pub fn start() -> GlusterVolume {
        if !Command::new("pgrep").args(["-x", "glusterd"]).output().is_ok_and(|o| o.status.success()) {
            run_as_root("glusterd", &["--log-level", "WARNING"]).unwrap_or_else(|e| panic!("{e}"));
        }
        let dir = tempfile::tempdir().unwrap();
        for sub in ["brick", "mnt"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let name = format!("tachyon{}x{}", std::process::id(), free_port());
        let brick = format!("127.0.0.2:{}", dir.path().join("brick").display());
        // glusterd answers a moment after it starts.
        let mut created = Err(String::new());
        for _ in 0..100 {
            created = run_as_root("gluster", &["--mode=script", "volume", "create", &name, &brick, "force"]);
            if created.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        created.unwrap_or_else(|e| panic!("cannot create a GlusterFS volume: {e}"));
        let volume = GlusterVolume { dir, name };
        run_as_root("gluster", &["--mode=script", "volume", "start", &volume.name]).unwrap_or_else(|e| panic!("{e}"));
        let mnt = volume.path().display().to_string();
        run_as_root("mount", &["-t", "glusterfs", &format!("127.0.0.2:/{}", volume.name), &mnt]).unwrap_or_else(|e| panic!("{e}"));
        volume
    }

    /// The mounted folder.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for GlusterVolume {
    fn drop(&mut self) {
        let mnt = self.path().display().to_string();
        let _ = run_as_root("umount", &["-l", &mnt]);
        let _ = run_as_root("gluster", &["--mode=script", "volume", "stop", &self.name, "force"]);
        let _ = run_as_root("gluster", &["--mode=script", "volume", "delete", &self.name]);
    }
}
