//! Identity and permissions over the real RPC, with real master and worker processes:
//! SIMPLE and CUSTOM identities, HDFS permission rules as users meet them through the
//! library and the `tachyon fs` shell, ownership surviving a master restart (journal
//! replay), and workers that must prove the cluster secret.

mod common;

use common::Cluster;
use tachyon::client::{CreateOptions, FileSystem};
use tachyon::core::namespace::OwnershipChange;
use tachyon::error::FsError;
use tachyon::security::{AuthType, SecurityOptions};

/// Groups the master maps users to (the clients cannot claim any).
const GROUPS: &str = "-Dtachyon.security.group.mapping.static.overrides=alice=staff;bob=dev;carol=staff";

fn opts() -> CreateOptions {
    CreateOptions { block_size: None, recursive: true, write_type: None }
}

fn as_user(c: &Cluster, user: &str) -> FileSystem {
    c.client_with(SecurityOptions::simple_as(user))
}

fn denied<T: std::fmt::Debug>(r: Result<T, FsError>, what: &str) -> String {
    match r {
        Err(FsError::PermissionDenied { path, reason }) => format!("{path}: {reason}"),
        other => panic!("{what}: expected PermissionDenied, got {other:?}"),
    }
}

/// Runs `tachyon` as `user` against the cluster; returns (success, stdout + stderr).
fn shell_as(c: &Cluster, user: &str, args: &[&str]) -> (bool, String) {
    let login = format!("-Dtachyon.security.login.username={user}");
    let mut all = vec![login.as_str()];
    all.extend_from_slice(args);
    let out = c.run(&all);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_meet_hdfs_permissions_and_they_survive_a_master_restart() {
    // Checkpoints every few entries, so the restart below recovers from one plus logs.
    let mut c = Cluster::start_with_defines(vec![GROUPS.into(), "-Dtachyon.master.journal.checkpoint.period.entries=4".into()]);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let admin = c.client();
    let (alice, bob, carol) = (as_user(&c, "alice"), as_user(&c, "bob"), as_user(&c, "carol"));

    // The root belongs to the superuser: users cannot create at the top.
    denied(alice.create_directory("/mine", false, false).await, "alice mkdir /");
    // The admin sets up homes and a sticky /tmp with the shell.
    c.run_ok(&["fs", "mkdir", "/home/alice", "/tmp"]);
    c.run_ok(&["fs", "chown", "alice:staff", "/home/alice"]);
    assert!(c.run_ok(&["fs", "chmod", "750", "/home/alice"]).contains("Changed permission of /home/alice to 750"));
    c.run_ok(&["fs", "chmod", "a+rwx,+t", "/tmp"]);
    let listing = c.run_ok(&["fs", "ls", "/home"]);
    assert!(listing.contains("drwxr-x---") && listing.contains("alice") && listing.contains("staff"), "{listing}");
    assert!(c.run_ok(&["fs", "ls", "/"]).contains("drwxrwxrwt"), "sticky bit shown");

    // alice works in her home; new inodes are hers, in her first group, less the umask (022).
    let f = alice.write_file("/home/alice/notes", b"private notes", opts()).await.unwrap();
    let own = f.ownership.clone().unwrap();
    assert_eq!((own.owner.as_str(), own.group.as_str(), own.mode), ("alice", "staff", 0o644));
    let d = alice.create_directory("/home/alice/a/b", true, false).await.unwrap().ownership.unwrap();
    assert_eq!((d.owner.as_str(), d.mode), ("alice", 0o755));
    // A client's claim of another owner is ignored: the master names the owner.
    assert_eq!(alice.get_status("/home/alice/a").await.unwrap().ownership.unwrap().owner, "alice");

    // bob (other): no traverse into alice's home; carol (group staff): read, not write.
    let why = denied(bob.read_file("/home/alice/notes").await, "bob reads");
    assert!(why.starts_with("/home/alice:") && why.contains("user=bob") && why.contains("access=--x"), "{why}");
    denied(bob.delete("/home/alice/notes", false).await, "bob deletes");
    denied(bob.create_directory("/home/alice/x", false, false).await, "bob mkdir");
    assert_eq!(carol.read_file("/home/alice/notes").await.unwrap(), b"private notes");
    denied(carol.delete("/home/alice/notes", false).await, "carol deletes");
    denied(carol.rename("/home/alice/notes", "/tmp/stolen").await, "carol renames");
    denied(carol.write_file("/home/alice/new", b"x", opts()).await, "carol creates");

    // Ownership changes: chmod by the owner, chgrp into her own groups only, chown by the superuser only.
    denied(alice.set_ownership("/home/alice/notes", OwnershipChange { owner: Some("bob".into()), ..Default::default() }).await, "alice chown");
    denied(alice.set_ownership("/home/alice/notes", OwnershipChange { group: Some("dev".into()), ..Default::default() }).await, "alice chgrp dev");
    denied(carol.set_ownership("/home/alice/notes", OwnershipChange { mode: Some(0o666), ..Default::default() }).await, "carol chmod");
    let (ok, out) = shell_as(&c, "alice", &["fs", "chmod", "-R", "go-rwx", "/home/alice"]);
    assert!(ok, "{out}");
    denied(carol.read_file("/home/alice/notes").await, "carol after chmod go-rwx");
    let (ok, out) = shell_as(&c, "alice", &["fs", "chown", "bob", "/home/alice/notes"]);
    assert!(!ok && out.contains("permission denied") && out.contains("only a superuser may change the owner"), "{out}");

    // Sticky /tmp: bob's file stays bob's.
    bob.write_file("/tmp/bobs", b"bob", opts()).await.unwrap();
    alice.write_file("/tmp/alices", b"alice", opts()).await.unwrap();
    let why = denied(alice.delete("/tmp/bobs", false).await, "alice deletes bob's file in /tmp");
    assert!(why.contains("sticky"), "{why}");
    denied(alice.rename("/tmp/bobs", "/tmp/mine").await, "alice renames bob's file in /tmp");
    bob.rename("/tmp/bobs", "/tmp/bobs2").await.unwrap();
    admin.delete("/tmp/alices", false).await.unwrap();

    // The web UI has no login: it shows what anyone may read, and no more.
    let web = c.master_web(0);
    assert_eq!(common::http::get(&web, "/api/browse?path=/home").0, 200);
    for private in ["/api/browse?path=/home/alice", "/api/browse?path=/home/alice/notes", "/browse?path=/home/alice/notes"] {
        let (status, body) = common::http::get(&web, private);
        assert_eq!(status, 403, "{private}: {body}");
        assert!(!body.contains("private notes"), "{private} shows the content");
    }

    // Mounting is the superuser's.
    let target = c.path().join("elsewhere");
    std::fs::create_dir_all(&target).unwrap();
    denied(alice.mount("/tmp/m", &target.display().to_string(), Default::default()).await, "alice mounts");

    // Everything above is journaled: a restarted master (checkpoint + journal replay)
    // enforces the same.
    let checkpoints = common::eventually(|| async { std::fs::read_dir(c.journal().join("checkpoints")).is_ok_and(|d| d.count() > 0) }).await;
    assert!(checkpoints, "no checkpoint was written");
    c.kill_master();
    c.start_master();
    let status = |fs: FileSystem, path: &'static str| async move { fs.get_status(path).await };
    let notes = status(admin.clone(), "/home/alice/notes").await.unwrap().ownership.unwrap();
    assert_eq!((notes.owner.as_str(), notes.group.as_str(), notes.mode), ("alice", "staff", 0o600));
    denied(carol.read_file("/home/alice/notes").await, "carol after the restart");
    assert_eq!(alice.read_file("/home/alice/notes").await.unwrap(), b"private notes");
    assert_eq!(status(admin.clone(), "/tmp").await.unwrap().ownership.unwrap().mode, 0o1777);
    denied(alice.delete("/tmp/bobs2", false).await, "sticky after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_authentication_and_the_cluster_secret_keep_impostors_out() {
    let secret = "-Dtachyon.security.authentication.custom.secret=let-me-in-7";
    let cluster_secret = "-Dtachyon.security.cluster.secret=workers-only-9";
    let mut c = Cluster::start_with_defines(vec!["-Dtachyon.security.authentication.type=CUSTOM".into(), secret.into(), cluster_secret.into(), GROUPS.into()]);
    c.start_worker(0);
    let custom = |user: &str, key: &str| {
        let mut s = SecurityOptions::simple_as(user);
        s.auth_type = AuthType::Custom;
        s.custom_secret = key.into();
        s
    };
    let root = tachyon::client::current_user();
    let admin = c.client_with(custom(&root, "let-me-in-7"));
    assert!(common::eventually(|| async { admin.workers().await.is_ok_and(|w| w.len() == 1) }).await, "the worker (with the cluster secret) registers");
    admin.write_file("/d/f", b"data", opts()).await.unwrap();
    assert_eq!(admin.read_file("/d/f").await.unwrap(), b"data");

    // Without the secret, with a wrong one, or with the wrong type: refused, saying why.
    for (who, fs) in [
        ("wrong secret", c.client_with(custom(&root, "guess"))),
        ("SIMPLE client", c.client_with(SecurityOptions::simple_as(&root))),
        ("NOSASL client", c.client_with(SecurityOptions::unchecked())),
    ] {
        match fs.list_status("/", false).await {
            Err(FsError::Unauthenticated { reason }) => assert!(reason.contains("CUSTOM") || reason.contains("custom.secret"), "{who}: {reason}"),
            other => panic!("{who}: expected Unauthenticated, got {other:?}"),
        }
    }
    let out = c.run(&["-Dtachyon.security.authentication.custom.secret=guess", "fs", "ls", "/"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("not authenticated"), "{stderr}");
    assert!(c.run_ok(&["fs", "ls", "/d"]).contains("/d/f"), "the shell with the configured secret works");

    // A client that knows the client secret cannot pose as a worker.
    use tachyon::proto::{CommitBlockRequest, RegisterWorkerRequest, WorkerNetAddress};
    let mut raw = common::raw_master_at(&c.master_address(0)).await;
    let fake = RegisterWorkerRequest {
        address: Some(WorkerNetAddress { host: "127.0.0.1".into(), rpc_port: 1, data_port: 2, web_port: 3 }),
        capacity_bytes: 1 << 30,
        ..RegisterWorkerRequest::default()
    };
    match raw.register_worker(fake).await.map_err(FsError::from) {
        Err(FsError::Unauthenticated { reason }) => assert!(reason.contains("cluster.secret"), "{reason}"),
        other => panic!("a fake worker: {other:?}"),
    }
    let commit = CommitBlockRequest { worker_id: 1, block_id: 1 << 24, length: 4, used_bytes: 4, commit_mark: 0 };
    assert!(matches!(raw.commit_block(commit).await.map_err(FsError::from), Err(FsError::Unauthenticated { .. })));
    // A worker with the wrong cluster secret never registers; the real one stays the only one.
    c.start_worker_with(1, &["-Dtachyon.security.cluster.secret=guess"]);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(admin.workers().await.unwrap().len(), 1);
    // Secrets never reach getConf.
    let conf = c.run_ok(&["getConf"]);
    assert!(!conf.contains("let-me-in-7") && !conf.contains("workers-only-9"), "{conf}");
}

/// A stand-in for a hostile S3 endpoint: answers every request with 403 and a body holding
/// a marker, and records the requests' headers.
#[cfg(feature = "s3")]
async fn hostile_s3_endpoint() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                let n = tcp.read(&mut buf).await.unwrap_or(0);
                record.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>EVIL-BODY-MARKER</Message></Error>";
                let answer =
                    format!("HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = tcp.write_all(answer.as_bytes()).await;
            });
        }
    });
    (endpoint, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_are_for_superusers_within_the_allow_list_and_keep_their_secrets() {
    let home = tempfile::tempdir().unwrap();
    let allowed = home.path().join("allowed");
    std::fs::create_dir_all(allowed.join("x")).unwrap();
    std::fs::create_dir_all(home.path().join("private")).unwrap();
    let mut c = Cluster::start_with_defines(vec![
        GROUPS.into(),
        format!("-Dtachyon.master.mount.allowed.uris={}/,s3://bucket/", allowed.display()),
        "-Ds3a.accessKeyId=MASTER-KEY-ID".into(),
        "-Ds3a.secretKey=MASTER-SECRET".into(),
    ]);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let admin = c.client();
    let alice = as_user(&c, "alice");

    let with_secret = std::collections::BTreeMap::from([("s3a.secretKey".to_string(), "MOUNT-SECRET".to_string())]);
    admin.mount("/m", &allowed.join("x").display().to_string(), with_secret).await.unwrap();
    for refused in ["/etc".to_string(), home.path().join("private").display().to_string(), format!("{}/../private", allowed.display())] {
        let why = denied(admin.mount("/bad", &refused, Default::default()).await, &refused);
        assert!(why.contains("tachyon.master.mount.allowed.uris"), "{why}");
    }
    // Mount credentials reach superusers only.
    let theirs = |points: Vec<tachyon::core::namespace::MountPoint>| points.into_iter().find(|p| p.path.to_string() == "/m").unwrap().mount.options;
    assert_eq!(theirs(admin.mount_points().await.unwrap()).get("s3a.secretKey").map(String::as_str), Some("MOUNT-SECRET"));
    assert!(theirs(alice.mount_points().await.unwrap()).is_empty(), "alice sees the mount, not its secret");

    // A mount of a hostile endpoint: without credentials of its own nothing is sent there
    // (never the master's keys); with its own, the master's never travel either; and what
    // the endpoint answers is not echoed to the caller.
    #[cfg(feature = "s3")]
    {
        let (endpoint, seen) = hostile_s3_endpoint().await;
        let options = |creds: bool| {
            let mut o = std::collections::BTreeMap::from([
                ("tachyon.underfs.s3.endpoint".to_string(), endpoint.clone()),
                ("tachyon.underfs.s3.disable.dns.buckets".to_string(), "true".to_string()),
            ]);
            if creds {
                o.insert("s3a.accessKeyId".into(), "GIVEN-KEY-ID".into());
                o.insert("s3a.secretKey".into(), "GIVEN-SECRET".into());
            }
            o
        };
        let bare = admin.mount("/evil1", "s3://bucket/x", options(false)).await.unwrap_err().to_string();
        assert!(bare.contains("no S3 credentials"), "{bare}");
        assert!(seen.lock().unwrap().is_empty(), "a mount without credentials sent a request");
        let refused = admin.mount("/evil2", "s3://bucket/x", options(true)).await.unwrap_err().to_string();
        assert!(!refused.contains("EVIL-BODY-MARKER") && refused.contains("details in the leader's log"), "{refused}");
        let requests = seen.lock().unwrap().join("\n");
        assert!(requests.contains("GIVEN-KEY-ID") && !requests.contains("MASTER-KEY-ID"), "{requests}");
    }
}

/// A write whose completion is refused for good (here: the file's mode changed under the
/// writer) leaves nothing behind: no incomplete file, no upload in the under-storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_at_completion_leaves_no_incomplete_file_or_upload() {
    let mut c = Cluster::start_with_defines(vec![GROUPS.into()]);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let admin = c.client();
    admin.create_directory("/home/alice", true, false).await.unwrap();
    admin.set_ownership("/home/alice", OwnershipChange { owner: Some("alice".into()), ..Default::default() }).await.unwrap();
    let alice = as_user(&c, "alice");
    let through = CreateOptions { block_size: None, recursive: false, write_type: Some(tachyon::client::WriteType::CacheThrough) };
    let mut w = alice.create_file("/home/alice/report", through).await.unwrap();
    w.write(&common::content(200_000, 9)).await.unwrap();
    let ufs_dir = c.path().join("underFSStorage/home/alice");
    let uploads = || {
        std::fs::read_dir(&ufs_dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(uploads().iter().any(|n| n.contains(".tachyon-")), "the write streams its upload: {:?}", uploads());
    admin.set_ownership("/home/alice/report", OwnershipChange { mode: Some(0o444), ..Default::default() }).await.unwrap();
    let refused = w.close().await;
    assert!(matches!(refused, Err(FsError::PermissionDenied { .. })), "{refused:?}");
    assert!(matches!(admin.get_status("/home/alice/report").await, Err(FsError::NotFound { .. })), "the incomplete file is gone");
    assert!(uploads().iter().all(|n| !n.contains(".tachyon-")), "an upload was left: {:?}", uploads());
}
