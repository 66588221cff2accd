//! Hostile requests sent over the real RPC to a real master (regressions of what probing a
//! running cluster found): each gets a clear error, and the namespace and the master's host
//! are left intact.

mod common;

use common::Cluster;
use tachyon::error::FsError;
use tachyon::proto::{CompleteFileRequest, CreateFileRequest, PathRequest, PersistFileRequest, PersistenceState};

/// A raw gRPC client of the master, once it serves (the library client retries until then).
async fn raw_master(c: &Cluster) -> common::RawMaster {
    c.client().list_status("/", false).await.unwrap();
    common::raw_master_at(&c.master_address(0)).await
}

fn create(path: &str, request_id: &str) -> CreateFileRequest {
    CreateFileRequest { path: path.into(), block_size_bytes: 1 << 20, recursive: true, ownership: None, request_id: request_id.into() }
}

fn complete(path: &str, length: u64, temp: &str, request_id: &str) -> CompleteFileRequest {
    CompleteFileRequest {
        path: path.into(),
        length,
        request_id: request_id.into(),
        persistence: PersistenceState::Persisted as i32,
        ufs_temp_name: temp.into(),
    }
}

fn invalid_argument(result: Result<tonic::Response<impl std::fmt::Debug>, tonic::Status>, what: &str) -> String {
    match result.map_err(FsError::from) {
        Err(FsError::InvalidArgument { reason }) => reason,
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// A PERSISTED completion is backed by the upload it names, holding exactly the claimed
/// length: no upload, a name that is not an upload beside the file (a path out of the
/// under-storage), or a length of 2^64-1 are refused, and nothing outside uploads is
/// touched. A persist without an upload is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_completions_are_backed_by_their_upload() {
    let c = Cluster::start();
    let mut m = raw_master(&c).await;
    let ufs = c.path().join("underFSStorage");
    m.create_file(create("/h/f", "r1")).await.unwrap();

    let reason = invalid_argument(m.complete_file(complete("/h/f", u64::MAX, "", "r2")).await, "no upload");
    assert!(reason.contains("must name its under-storage upload"), "{reason}");

    // A name outside the upload convention, pointing out of the under-storage: refused, and
    // the file it names is neither moved nor deleted.
    let sentinel = c.path().join("sentinel");
    std::fs::write(&sentinel, b"keep me").unwrap();
    for temp in ["../sentinel", "h/../../sentinel", "h/f", "other/.f.tachyon-x.tmp"] {
        let reason = invalid_argument(m.complete_file(complete("/h/f", 7, temp, "r3")).await, temp);
        assert!(reason.contains("is not an upload beside"), "{temp}: {reason}");
    }
    assert_eq!(std::fs::read(&sentinel).unwrap(), b"keep me");

    // A real upload, with a length claim that does not match it.
    std::fs::create_dir_all(ufs.join("h")).unwrap();
    std::fs::write(ufs.join("h/.f.tachyon-r4.tmp"), b"one").unwrap();
    let reason = invalid_argument(m.complete_file(complete("/h/f", u64::MAX, "h/.f.tachyon-r4.tmp", "r4")).await, "wrong length");
    assert!(reason.contains("holds 3 bytes"), "{reason}");
    let reason = invalid_argument(m.complete_file(complete("/h/f", 3, "h/.f.tachyon-gone.tmp", "r5")).await, "missing upload");
    assert!(reason.contains("no upload"), "{reason}");
    let status = m.get_status(PathRequest { path: "/h/f".into() }).await.unwrap().into_inner();
    assert!(!status.complete && status.length == 0, "the file stays incomplete: {status:?}");

    // The honest completion still works, and reads back what was uploaded.
    std::fs::write(ufs.join("h/.f.tachyon-r6.tmp"), b"one").unwrap();
    m.complete_file(complete("/h/f", 3, "h/.f.tachyon-r6.tmp", "r6")).await.unwrap();
    assert_eq!(c.client().read_file("/h/f").await.unwrap(), b"one");

    // Persisting a file held only in memory needs its upload.
    let fs = c.client();
    m.create_file(create("/h/mem", "r7")).await.unwrap();
    m.complete_file(CompleteFileRequest { path: "/h/mem".into(), length: 0, request_id: "r8".into(), persistence: 0, ufs_temp_name: String::new() })
        .await
        .unwrap();
    let reason =
        invalid_argument(m.persist_file(PersistFileRequest { path: "/h/mem".into(), request_id: "r9".into(), ufs_temp_name: String::new() }).await, "persist");
    assert!(reason.contains("needs its under-storage upload"), "{reason}");
    assert_eq!(fs.get_status("/h/mem").await.unwrap().persistence_state, "NOT_PERSISTED");
}

/// Strings a client or a would-be worker controls are checked before they reach the journal,
/// a listing or a terminal; cached block files are readable by the worker's user only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_worker_strings_are_bounded_and_block_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    use tachyon::proto::{InodeOwnership, RegisterWorkerRequest, WorkerNetAddress};
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let mut m = raw_master(&c).await;
    let journal_bytes = || -> u64 { std::fs::read_dir(c.journal().join("logs")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum() };
    let before = journal_bytes();

    // A 135 KB owner name would have been copied into each of the five parents it creates.
    let huge_owner = InodeOwnership { owner: "o".repeat(135_000), group: "g".into(), mode: 0o644 };
    let req = CreateFileRequest { ownership: Some(huge_owner), ..create("/deep/a/b/c/d/e", "h1") };
    let reason = invalid_argument(m.create_file(req).await, "huge owner");
    assert!(reason.contains("owner name longer than"), "{reason}");
    for (owner, group, mode) in [("a\nb", "g", 0o644), ("a", "g", 0o100644)] {
        let req = CreateFileRequest { ownership: Some(InodeOwnership { owner: owner.into(), group: group.into(), mode }), ..create("/deep/x", "h2") };
        invalid_argument(m.create_file(req).await, owner);
    }
    assert!(matches!(c.client().get_status("/deep").await, Err(FsError::NotFound { .. })));
    // A block size of one byte would give a file millions of blocks to track and list.
    let reason = invalid_argument(m.create_file(CreateFileRequest { block_size_bytes: 1, ..create("/tiny", "h3") }).await, "tiny blocks");
    assert!(reason.contains("below the minimum"), "{reason}");
    assert!(journal_bytes() - before < 4096, "refused requests wrote {} journal bytes", journal_bytes() - before);

    // Anyone reaching the master cannot register a "worker" whose name breaks listings.
    let evil = WorkerNetAddress { host: "evil\ntachyon_master_is_leader 1".into(), rpc_port: 1, data_port: 2, web_port: 3 };
    let req = RegisterWorkerRequest { address: Some(evil), capacity_bytes: 1 << 30, ..RegisterWorkerRequest::default() };
    invalid_argument(m.register_worker(req).await, "evil worker");
    let report = c.run_ok(&["fs", "report"]);
    assert!(report.contains("Live workers: 1") && !report.contains("evil"), "{report}");

    // Block files and their folders are private to the worker's user.
    c.client()
        .write_file("/private", b"not for other users", tachyon::client::CreateOptions { block_size: None, recursive: true, write_type: None })
        .await
        .unwrap();
    let tiers: Vec<_> = std::fs::read_dir(c.path().join("ram/tachyonworker")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(tiers.len(), 1);
    assert_eq!(std::fs::metadata(&tiers[0]).unwrap().permissions().mode() & 0o777, 0o700);
    let blocks: Vec<_> = std::fs::read_dir(&tiers[0]).unwrap().map(|e| e.unwrap()).filter(|e| e.file_type().unwrap().is_file()).collect();
    assert!(!blocks.is_empty());
    for b in blocks {
        assert_eq!(b.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{:?}", b.path());
    }
}

/// `getConf` never prints a credential, not even when asked for it by name.
#[test]
fn get_conf_masks_a_secret_asked_for_by_name() {
    let out = std::process::Command::new(common::tachyon_bin())
        .args(["-Ds3a.secretKey=TOPSECRET-42", "getConf", "s3a.secretKey"])
        .env_remove("TACHYON_CONF_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.trim() == "******", "{stdout}");
    let all = std::process::Command::new(common::tachyon_bin())
        .args(["-Dfs.s3a.secret.key=TOPSECRET-42", "getConf", "--source", "fs.s3a.secret.key"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&all.stdout).contains("TOPSECRET"));
}

/// A known secret, given as configuration (S3 key, custom authentication secret, cluster
/// secret) and as a mount option, shows up in no log, no
/// `getConf` or `fs mount` output, no `readJournal` dump, no web page, no `/api` JSON and no
/// metrics, of the master or the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_never_shows_in_logs_conf_journal_dump_web_ui_or_metrics() {
    const SECRET: &str = "S3CR3T-v4lue-7f1c";
    let mut c = Cluster::start_with_defines(vec![
        format!("-Ds3a.secretKey={SECRET}"),
        "-Ds3a.accessKeyId=AKID".into(),
        format!("-Dtachyon.security.cluster.secret={SECRET}"),
        format!("-Dtachyon.security.authentication.custom.secret={SECRET}"),
        format!("-Dtachyon.zookeeper.auth.digest=tachyon:{SECRET}"),
    ]);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let opts = tachyon::client::CreateOptions { block_size: None, recursive: true, write_type: None };
    fs.write_file("/s/file", b"data", opts).await.unwrap();
    let folder = c.path().join("mounted");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("there"), b"x").unwrap();
    let options = std::collections::BTreeMap::from([("s3a.secretKey".to_string(), SECRET.to_string()), ("s3a.accessKeyId".to_string(), "AKID".to_string())]);
    fs.mount("/mnt", folder.to_str().unwrap(), options).await.unwrap();
    assert_eq!(fs.list_status("/mnt", false).await.unwrap().len(), 1);

    let mut seen: Vec<(String, String)> = Vec::new();
    for args in [
        &["getConf"][..],
        &["getConf", "s3a.secretKey"],
        &["getConf", "--source", "s3a.secretKey"],
        &["getConf", "tachyon.security.cluster.secret"],
        &["getConf", "alluxio.security.authentication.custom.secret"],
        &["readJournal"],
        &["fs", "mount"],
        &["fs", "ls", "-R", "/"],
    ] {
        seen.push((format!("tachyon {}", args.join(" ")), c.run_ok(args)));
    }
    let (master, worker) = (c.master_web(0), c.worker_web(0));
    for page in
        ["/", "/config", "/browse?path=/", "/browse?path=/mnt", "/workers", "/metrics", "/api/overview", "/api/config", "/api/browse?path=/mnt", "/api/workers"]
    {
        seen.push((format!("master {page}"), common::http::get(&master, page).1));
    }
    for page in ["/", "/metrics", "/api/blocks"] {
        seen.push((format!("worker {page}"), common::http::get(&worker, page).1));
    }
    for log in ["master0.log", "worker0.log"] {
        seen.push((log.to_string(), std::fs::read_to_string(c.path().join(log)).unwrap_or_default()));
    }
    for (what, text) in &seen {
        assert!(!text.is_empty(), "{what} printed nothing: the check would be vacuous");
        assert!(!text.contains(SECRET), "{what} shows the secret");
    }
    // Where the key is listed, it is listed masked.
    assert!(seen[0].1.contains("s3a.secretKey=******"), "{}", seen[0].1);
    assert!(seen.iter().any(|(what, text)| what == "tachyon fs mount" && text.contains("******")));

    // The journal itself holds the mount's credential sealed (with the cluster secret), and
    // a restarted master opens it again to reach the mount.
    let journal_bytes: Vec<u8> = ["logs", "checkpoints"]
        .iter()
        .filter_map(|d| std::fs::read_dir(c.journal().join(d)).ok())
        .flatten()
        .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(String::from_utf8_lossy(&journal_bytes).contains("sealed:v1:"), "the mount entry is in the journal, sealed");
    assert!(!journal_bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "the journal holds the secret readable");
    c.kill_master();
    c.start_master();
    std::fs::write(folder.join("later"), b"y").unwrap();
    assert_eq!(fs.list_status("/mnt", false).await.unwrap().len(), 2, "the restarted master reaches the mount");
}

/// Malformed paths over the raw RPC get `InvalidPath` and change nothing; a repeated slash is
/// folded as the shell and Alluxio do; a block read past its end or with a length that would
/// overflow is refused by the worker, and a short read stops at the block's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_paths_and_out_of_range_reads_are_refused() {
    use tachyon::proto::block_data_service_client::BlockDataServiceClient;
    use tachyon::proto::{CreateDirectoryRequest, ReadBlockRequest};
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let mut m = raw_master(&c).await;
    let mkdir = |path: String| CreateDirectoryRequest { path, recursive: true, allow_exists: false, ownership: None, request_id: String::new() };
    let long_name = format!("/{}", "n".repeat(256));
    let long_path = "/p".repeat(2049);
    for bad in ["/a/../b".to_string(), "/a/./b".into(), "relative/x".into(), "/a\0b".into(), "/a\nb".into(), long_name, long_path] {
        match m.create_directory(mkdir(bad.clone())).await.map_err(FsError::from) {
            Err(FsError::InvalidPath { .. }) => {}
            other => panic!("{:?}: expected InvalidPath, got {other:?}", bad.chars().take(40).collect::<String>()),
        }
    }
    m.create_directory(mkdir("//a///b//".into())).await.unwrap();
    let fs = c.client();
    let root: Vec<String> = fs.list_status("/", true).await.unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(root, ["/a", "/a/b"], "only the folded path was created");

    // Reads of a block past its end.
    let data = common::content(10_000, 3);
    let info = fs.write_file("/a/f", &data, tachyon::client::CreateOptions { block_size: None, recursive: true, write_type: None }).await.unwrap();
    let block = &info.blocks[0];
    let loc = &block.locations[0];
    let mut worker = BlockDataServiceClient::connect(format!("http://{}:{}", loc.host, loc.data_port)).await.unwrap();
    let read = |offset: u64, length: u64| ReadBlockRequest { block_id: block.block_id, offset, length, promote: false };
    match worker.read_block(read(10_001, 1)).await.map_err(FsError::from) {
        Err(FsError::InvalidArgument { reason }) => assert!(reason.contains("past block end"), "{reason}"),
        other => panic!("offset past the end: {other:?}"),
    }
    let streamed = |request| {
        let mut worker = worker.clone();
        async move {
            let mut stream = worker.read_block(request).await.unwrap().into_inner();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.message().await.unwrap() {
                bytes.extend_from_slice(&chunk.data);
            }
            bytes
        }
    };
    assert_eq!(streamed(read(1_000, 2_500)).await, data[1_000..3_500], "a range inside the block");
    assert_eq!(streamed(read(9_990, u64::MAX)).await, data[9_990..], "a length running past the end (even u64::MAX) stops at the end");
}

/// A request whose path field is raw bytes (the wire shape of every path request), to
/// send what a Rust `String` cannot hold.
#[derive(Clone, PartialEq, prost::Message)]
struct RawPathRequest {
    #[prost(bytes = "vec", tag = "1")]
    path: Vec<u8>,
    #[prost(bool, tag = "2")]
    recursive: bool,
}

/// Sends `request` as a CreateDirectory call, as the test's user.
async fn raw_mkdir(address: &str, request: RawPathRequest) -> Result<tachyon::proto::FileInfo, tonic::Status> {
    let channel = tachyon::rpc::connect(address, std::time::Duration::from_secs(10), None).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let signed = tachyon::security::SecurityOptions::simple_as(&tachyon::client::current_user()).sign_client(request);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/tachyon.MasterService/CreateDirectory");
    grpc.unary(signed, path, tonic_prost::ProstCodec::default()).await.map(tonic::Response::into_inner)
}

/// Invalid UTF-8 where a path belongs, and a request larger than the master decodes, get a
/// clear error each; nothing is created and the master goes on serving. Many concurrent
/// requests on one connection are served within the per-connection stream limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_oversized_requests_and_stream_floods_leave_the_master_serving() {
    let c = Cluster::start();
    let fs = c.client();
    fs.create_directory("/kept", false, false).await.unwrap();
    let address = c.master_address(0);

    let bad = raw_mkdir(&address, RawPathRequest { path: b"/bad\xff\xfename".to_vec(), recursive: true }).await.unwrap_err();
    assert!(bad.message().contains("UTF-8"), "{:?}: {}", bad.code(), bad.message());

    let huge = vec![b'a'; tachyon::rpc::MAX_MASTER_REQUEST_BYTES + 1];
    let mut path = b"/".to_vec();
    path.extend_from_slice(&huge);
    let too_big = raw_mkdir(&address, RawPathRequest { path, recursive: true }).await.unwrap_err();
    assert!(too_big.message().contains("too large"), "{:?}: {}", too_big.code(), too_big.message());

    // A path just under the limit is decoded and refused by the path rules, not the decoder.
    let mut long = b"/".to_vec();
    long.extend_from_slice(&vec![b'b'; 1 << 20]);
    let long = raw_mkdir(&address, RawPathRequest { path: long, recursive: true }).await.map_err(FsError::from).unwrap_err();
    assert!(matches!(long, FsError::InvalidPath { .. }), "{long}");

    // 1,000 requests at once on one connection (eight times the stream limit).
    let channel = tachyon::rpc::connect(&address, std::time::Duration::from_secs(30), None).await.unwrap();
    let calls = (0..1000).map(|_| {
        let channel = channel.clone();
        async move {
            let mut m = tachyon::proto::master_service_client::MasterServiceClient::new(channel);
            let req = tachyon::security::SecurityOptions::simple_as(&tachyon::client::current_user())
                .sign_client(tachyon::proto::PathRequest { path: "/kept".into() });
            m.get_status(req).await.is_ok()
        }
    });
    let answered = futures::future::join_all(calls).await;
    assert!(answered.iter().all(|ok| *ok), "{} of 1000 answered", answered.iter().filter(|ok| **ok).count());

    let listed: Vec<String> = fs.list_status("/", false).await.unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(listed, ["/kept"], "nothing else was created");
}

/// A worker reserves space only for a block the leader expects (of a file being written,
/// at most its block size), and a writer that goes silent loses its reservation after
/// `tachyon.worker.block.write.idle.timeout.ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reserve_only_expected_blocks_and_release_silent_writes() {
    use futures::StreamExt;
    use tachyon::proto::block_data_service_client::BlockDataServiceClient;
    use tachyon::proto::WriteBlockChunk;
    let mut c = Cluster::start_with_defines(vec!["-Dtachyon.worker.block.write.idle.timeout.ms=500".into()]);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let worker = fs.workers().await.unwrap().remove(0).address.unwrap();
    let mut data = BlockDataServiceClient::connect(format!("http://{}:{}", worker.host, worker.data_port)).await.unwrap();
    let chunk = |block_id: u64, length: u64| WriteBlockChunk { block_id, length, data: vec![7; 10].into() };

    // No such file, or more than the file's block size: refused before anything is reserved.
    let ghost = data.write_block(futures::stream::iter(vec![chunk(9_999 << 24, 1 << 30)])).await.map_err(FsError::from);
    assert!(matches!(ghost, Err(FsError::NotFound { .. })), "{ghost:?}");
    let mut m = raw_master(&c).await;
    let file = m.create_file(create("/w/f", "w1")).await.unwrap().into_inner();
    let block = file.id << 24;
    let oversized = data.write_block(futures::stream::iter(vec![chunk(block, 1 << 30)])).await.map_err(FsError::from);
    assert!(matches!(&oversized, Err(FsError::InvalidArgument { reason }) if reason.contains("block size")), "{oversized:?}");

    // A write of a real block that then says nothing more is abandoned and its space freed.
    let silent = futures::stream::iter(vec![chunk(block, 1 << 20)]).chain(futures::stream::pending());
    let abandoned = data.write_block(silent).await.map_err(FsError::from);
    assert!(matches!(&abandoned, Err(FsError::Unavailable { reason }) if reason.contains("write abandoned")), "{abandoned:?}");
    let tier = std::fs::read_dir(c.path().join("ram/tachyonworker")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read_dir(tier.join(".tmp")).unwrap().count(), 0, "the abandoned write left a temporary file");
    // The space is free again: the same block can be written in full.
    let whole = data.write_block(futures::stream::iter(vec![WriteBlockChunk { block_id: block, length: 10, data: vec![7; 10].into() }])).await.unwrap();
    assert_eq!(whole.into_inner().length, 10);
}

/// Paths deeper than `tachyon.master.path.depth.max` cannot be created, directly or by
/// moving a directory under a deep one; the refusal names the limit and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_beyond_the_configured_depth_is_refused() {
    let c = Cluster::start_with_defines(vec!["-Dtachyon.master.path.depth.max=8".into()]);
    let mut m = raw_master(&c).await;
    let mkdir = |path: &str, id: &str| tachyon::proto::CreateDirectoryRequest {
        path: path.into(),
        recursive: true,
        allow_exists: false,
        ownership: None,
        request_id: id.into(),
    };
    m.create_directory(mkdir("/a/b/c/d/e/f/g/h", "d1")).await.unwrap();
    match m.create_directory(mkdir("/x/b/c/d/e/f/g/h/i", "d2")).await.map_err(FsError::from) {
        Err(FsError::InvalidPath { reason, .. }) => assert!(reason.contains("tachyon.master.path.depth.max") && reason.contains("at most 8"), "{reason}"),
        other => panic!("nine levels: {other:?}"),
    }
    match m.create_file(create("/a/b/c/d/e/f/g/h/file", "d3")).await.map_err(FsError::from) {
        Err(FsError::InvalidPath { .. }) => {}
        other => panic!("a file at level nine: {other:?}"),
    }
    // /t/u/v holds two levels below it: fine under /a/b/c/d/e (3 + 5 = 8), not one deeper.
    m.create_directory(mkdir("/t/u/v", "d4")).await.unwrap();
    let rename = |dst: &str, id: &str| tachyon::proto::RenameRequest { src: "/t".into(), dst: dst.into(), request_id: id.into() };
    assert!(matches!(m.rename(rename("/a/b/c/d/e/f/t", "d5")).await.map_err(FsError::from), Err(FsError::InvalidPath { .. })));
    m.rename(rename("/a/b/c/d/t", "d6")).await.unwrap();
    let all: Vec<String> = c.client().list_status("/", true).await.unwrap().into_iter().map(|f| f.path).collect();
    assert!(all.contains(&"/a/b/c/d/t/u/v".to_string()) && !all.iter().any(|p| p.starts_with("/x")), "{all:?}");
    assert!(all.iter().all(|p| p.matches('/').count() <= 8), "{all:?}");
}

/// `CreateFiles` answers each create as its own `CreateFile` would, in order: a bad path, a
/// taken name, a tiny block size or a repeated request id affect only that create. A retry
/// of the whole call (a client retrying through a failover) applies nothing twice, and a
/// call past the limit is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_creates_answers_each_alone_in_order_and_retries_apply_nothing_twice() {
    use tachyon::proto::{CreateFilesRequest, FileInfo, FileResult};
    let c = Cluster::start();
    let mut m = raw_master(&c).await;
    m.create_file(create("/batch/taken", "t0")).await.unwrap();
    let files = vec![
        create("/batch/a", "t1"),
        create("relative/path", "t2"),
        create("/batch/taken", "t3"),
        CreateFileRequest { block_size_bytes: 1, ..create("/batch/tiny", "t4") },
        create("/batch/b", "t5"),
        // The same request again: answered as the retry it is, not refused as taken.
        create("/batch/a", "t1"),
        create("/batch/taken/below", "t6"),
    ];
    let answers =
        |response: tachyon::proto::FileResults| -> Vec<Result<FileInfo, FsError>> { response.results.into_iter().map(|r: FileResult| r.into()).collect() };
    let first = answers(m.create_files(CreateFilesRequest { files: files.clone() }).await.unwrap().into_inner());
    assert_eq!(first.len(), files.len());
    let a = first[0].as_ref().expect("a new file is created");
    assert_eq!(a.path, "/batch/a");
    assert!(matches!(&first[1], Err(FsError::InvalidPath { .. })), "{:?}", first[1]);
    assert_eq!(first[2], Err(FsError::AlreadyExists { path: "/batch/taken".into() }));
    assert!(matches!(&first[3], Err(FsError::InvalidArgument { .. })), "{:?}", first[3]);
    let b = first[4].as_ref().expect("a create after failed ones still applies");
    assert_eq!((b.path.as_str(), b.id == a.id), ("/batch/b", false));
    assert_eq!(first[5].as_ref().map(|f| f.id), Ok(a.id), "a repeated request id answers with the file it created");
    assert!(matches!(&first[6], Err(FsError::NotADirectory { .. })), "{:?}", first[6]);

    // The whole call again: the same answers, nothing created twice.
    let again = answers(m.create_files(CreateFilesRequest { files }).await.unwrap().into_inner());
    assert_eq!(again[0].as_ref().map(|f| f.id), Ok(a.id));
    assert_eq!(again[4].as_ref().map(|f| f.id), Ok(b.id));
    assert_eq!(again[2], first[2]);
    let listed = c.client().list_status("/batch", false).await.unwrap();
    let mut names: Vec<&str> = listed.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "taken"]);

    let too_many = (0..1025).map(|i| create(&format!("/many/{i}"), &format!("m{i}"))).collect();
    let reason = invalid_argument(m.create_files(CreateFilesRequest { files: too_many }).await, "too many creates");
    assert!(reason.contains("at most 1024"), "{reason}");
    assert!(matches!(c.client().get_status("/many").await, Err(FsError::NotFound { .. })), "a refused call creates nothing");
}

/// `CompleteFiles` answers each completion alone, in order, as `CompleteFile` would: a
/// missing file or a PERSISTED completion (which publishes its own upload, so goes alone)
/// fails by itself, and a retry of the call changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_completions_answers_each_alone_in_order() {
    use tachyon::proto::{CompleteFilesRequest, FileInfo, FileResults};
    let c = Cluster::start();
    let mut m = raw_master(&c).await;
    m.create_file(create("/done/a", "c1")).await.unwrap();
    m.create_file(create("/done/b", "c2")).await.unwrap();
    let plain = |path: &str, request_id: &str| CompleteFileRequest { persistence: PersistenceState::NotPersisted as i32, ..complete(path, 0, "", request_id) };
    let files = vec![plain("/done/a", "c3"), plain("/done/missing", "c4"), complete("/done/b", 0, "done/.b.tachyon-x.tmp", "c5"), plain("/done/b", "c6")];
    let answers = |response: FileResults| -> Vec<Result<FileInfo, FsError>> { response.results.into_iter().map(Into::into).collect() };
    let first = answers(m.complete_files(CompleteFilesRequest { files: files.clone() }).await.unwrap().into_inner());
    assert!(first[0].as_ref().is_ok_and(|f| f.complete), "{:?}", first[0]);
    assert!(matches!(&first[1], Err(FsError::NotFound { .. })), "{:?}", first[1]);
    assert!(matches!(&first[2], Err(FsError::InvalidArgument { reason }) if reason.contains("send it alone")), "{:?}", first[2]);
    assert!(first[3].as_ref().is_ok_and(|f| f.complete && f.path == "/done/b"), "{:?}", first[3]);
    let again = answers(m.complete_files(CompleteFilesRequest { files }).await.unwrap().into_inner());
    assert_eq!(again[0].as_ref().map(|f| f.id), first[0].as_ref().map(|f| f.id), "a retried completion is answered, not refused");
    assert_eq!(again[3].as_ref().map(|f| f.id), first[3].as_ref().map(|f| f.id));
}
