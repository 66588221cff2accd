//! Under-storage backends against real servers on loopback (moto for S3, an HDFS NameNode
//! and DataNode, a GlusterFS volume): the `UnderFs` contract, the journal's contract,
//! backend-specific fencing, and masters whose journal and data live there. Needs `--features s3,hdfs` and
//! `bin/install-test-services.sh` (bin/test-all.sh does both).

#![cfg(all(feature = "s3", feature = "hdfs"))]

mod common;

use std::sync::Arc;

use common::underfs::{GlusterVolume, HdfsServer, S3Server, S3_SECRET_KEY};
use common::zk::ZooKeeper;
use common::{content, eventually, Cluster};
use tachyon::client::{CreateOptions, WriteType};
use tachyon::underfs::hdfs::HdfsUnderFs;
use tachyon::underfs::s3::S3UnderFs;
use tachyon::underfs::{UfsOptions, UnderFs};

fn s3(server: &S3Server, prefix: &str) -> Arc<dyn UnderFs> {
    Arc::new(S3UnderFs::new(&format!("s3://tachyon/{prefix}"), &server.options().s3).unwrap())
}

fn hdfs(server: &HdfsServer, folder: &str) -> Arc<dyn UnderFs> {
    Arc::new(HdfsUnderFs::new(&format!("{}/{folder}", server.url())).unwrap())
}

#[tokio::test]
async fn s3_passes_the_under_storage_and_journal_conformance_suites() {
    let server = S3Server::start();
    tachyon::underfs::conformance::run(&*s3(&server, "contract")).await;
    tachyon::journal::conformance::run(&|| s3(&server, "team/journal")).await;
}

#[tokio::test]
async fn hdfs_passes_the_under_storage_and_journal_conformance_suites() {
    let server = HdfsServer::start();
    tachyon::underfs::conformance::run(&*hdfs(&server, "contract")).await;
    tachyon::journal::conformance::run(&|| hdfs(&server, "tachyon/journal")).await;
}

#[tokio::test]
async fn s3_files_grow_by_one_part_per_sync_hidden_from_listings() {
    let server = S3Server::start();
    let ufs = s3(&server, "p");
    let mut w = ufs.create("f").await.unwrap();
    assert_eq!(ufs.create("f").await.err().map(|e| e.kind()), Some(std::io::ErrorKind::AlreadyExists));
    for batch in [&b"one "[..], b"two ", b"three"] {
        w.write(batch).await.unwrap();
        w.sync().await.unwrap();
    }
    assert_eq!(ufs.read("f").await.unwrap(), b"one two three");
    assert_eq!(ufs.list("").await.unwrap(), vec!["f".to_string()], "part objects are not files");
    ufs.delete("f").await.unwrap();
    assert!(ufs.list("").await.unwrap().is_empty(), "delete removes the parts too");
}

#[tokio::test]
async fn s3_errors_name_the_object_and_never_the_secret() {
    let server = S3Server::start();
    let ufs = s3(&server, "x");
    let err = ufs.read("missing").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let text = format!("{err} {err:?} {:?} {}", server.options(), ufs.describe());
    assert!(text.contains("s3://tachyon/x/missing"), "{text}");
    assert!(!text.contains(S3_SECRET_KEY), "the secret key leaked: {text}");
    let no_bucket = S3UnderFs::new("s3://no-such-bucket/j", &server.options().s3).unwrap();
    assert!(no_bucket.list("").await.is_err(), "a missing bucket is an error, not an empty journal");
    let no_keys = S3UnderFs::new("s3://tachyon/j", &UfsOptions::default().s3).err().expect("credentials are required");
    assert!(no_keys.to_string().contains("s3a.accessKeyId"), "{no_keys}");
}

#[tokio::test]
async fn hdfs_seal_recovers_the_lease_and_fences_the_old_writer() {
    let server = HdfsServer::start();
    let writer_side = hdfs(&server, "fence");
    let mut w = writer_side.create("segment").await.unwrap();
    w.write(b"acknowledged").await.unwrap();
    w.sync().await.unwrap();
    // Another process (its own client and lease) takes the file over.
    let successor = hdfs(&server, "fence");
    successor.seal("segment").await.unwrap();
    assert_eq!(successor.read("segment").await.unwrap(), b"acknowledged");
    let late = async {
        w.write(b" late").await?;
        w.sync().await
    }
    .await;
    assert!(late.is_err(), "a writer whose lease was recovered must not sync again");
    assert_eq!(successor.read("segment").await.unwrap(), b"acknowledged");
}

/// Two masters elected through a real ZooKeeper share a journal on `journal` and keep file
/// data below `data` (every process also gets `extra`): three rounds of writes with every
/// write type and kill -9 of the leader. Every acknowledged file reads back after each
/// failover, ASYNC_THROUGH files end persisted although leaders died meanwhile, persisted
/// files survive the loss of the only worker, and a restarted master catches up.
async fn masters_fail_over_with_journal_and_data_on(journal: String, data: String, mut extra: Vec<String>) -> Cluster {
    let zk = ZooKeeper::standalone();
    extra.push(format!("-Dtachyon.master.journal.folder={journal}"));
    extra.push(format!("-Dtachyon.underfs.address={data}"));
    // Small segments: standbys tail completed segments (all HDFS readers can see), and a
    // take-over must also read the open one.
    extra.push("-Dtachyon.master.journal.log.size.bytes.max=4KB".into());
    // 4 KB blocks, so every file spans several.
    extra.push("-Dtachyon.master.block.size.bytes.min=4KB".into());
    let mut c = Cluster::start_ha_with(&zk.servers(), 2, extra);
    c.start_worker(0);
    let fs = c.client();
    let mut leader = c.serving_leader().await;
    c.wait_for_workers(1).await;
    let write_types = [WriteType::MustCache, WriteType::CacheThrough, WriteType::Through, WriteType::AsyncThrough];
    let mut acked = Vec::new();
    for round in 0..3u64 {
        for i in 0..8u64 {
            let path = format!("/ha/r{round}/f{i}");
            let bytes = content(i as usize * 1000 + 1, round * 100 + i);
            let write_type = write_types[(i % 4) as usize];
            let options = CreateOptions { block_size: Some(4096), recursive: true, write_type: Some(write_type) };
            fs.write_file(&path, &bytes, options).await.unwrap_or_else(|e| panic!("round {round}: writing {path} {write_type:?}: {e}"));
            acked.push((path, bytes, write_type));
        }
        c.kill_master_at(leader);
        let next = c.serving_leader().await;
        assert_ne!(next, leader, "round {round}: the standby took over");
        c.start_master_at(leader);
        leader = next;
        for (path, data, _) in &acked {
            assert_eq!(&fs.read_file(path).await.unwrap_or_else(|e| panic!("round {round}: {path}: {e}")), data, "round {round}: {path}");
        }
    }
    let persisted = |path: String| {
        let fs = fs.clone();
        async move { fs.get_status(&path).await.is_ok_and(|f| f.persistence_state == "PERSISTED") }
    };
    for (path, _, write_type) in &acked {
        if *write_type != WriteType::MustCache {
            assert!(eventually(|| persisted(path.clone())).await, "{path} ({write_type:?}) is persisted");
        }
    }
    let same = eventually(|| async {
        let ds = fs.state_digests().await.unwrap_or_default();
        ds.len() == 2 && ds.iter().all(|d| d.applied_sequence == ds[0].applied_sequence && d.digest == ds[0].digest)
    })
    .await;
    assert!(same, "the restarted master did not catch up: {:?}", fs.state_digests().await);
    let dump = c.run_ok(&["readJournal"]);
    assert!(dump.contains("logs/"), "readJournal reads the journal on {journal}: {dump}");
    assert!(!std::path::Path::new(&c.journal()).join("FORMAT").exists(), "the local default folder was not used");

    // The only worker dies: persisted data is read back from the under-storage.
    c.kill_worker(0);
    assert!(eventually(|| async { fs.workers().await.is_ok_and(|w| w.iter().all(|w| w.lost)) }).await);
    for (path, data, write_type) in &acked {
        match write_type {
            WriteType::MustCache => assert!(fs.read_file(path).await.is_err(), "{path} had no other copy"),
            _ => assert_eq!(&fs.read_file(path).await.unwrap_or_else(|e| panic!("{path}: {e}")), data, "{path} from the under-storage"),
        }
    }
    drop(zk);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_fail_over_with_journal_and_data_on_hdfs() {
    let server = HdfsServer::start();
    masters_fail_over_with_journal_and_data_on(format!("{}/tachyon/journal", server.url()), format!("{}/tachyon/data", server.url()), Vec::new()).await;
}

/// GlusterFS, the seeds' third option, is a mounted folder to tachyon: the local backend's
/// contracts hold on it, and masters fail over with the journal and the data there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_fail_over_with_journal_and_data_on_glusterfs() {
    let volume = GlusterVolume::start();
    let local = |sub: &str| -> Arc<dyn UnderFs> { Arc::new(tachyon::underfs::local::LocalUnderFs::new(volume.path().join(sub))) };
    tachyon::underfs::conformance::run(&*local("contract")).await;
    tachyon::journal::conformance::run(&|| local("team/journal")).await;
    let at = |sub: &str| volume.path().join(sub).display().to_string();
    masters_fail_over_with_journal_and_data_on(at("tachyon/journal"), at("tachyon/data"), Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_fail_over_with_journal_and_data_on_s3() {
    let server = S3Server::start();
    let c = masters_fail_over_with_journal_and_data_on("s3://tachyon/ha/journal".into(), "s3://tachyon/ha/data".into(), server.defines()).await;
    let conf = c.run_ok(&["getConf"]);
    assert!(!conf.contains(S3_SECRET_KEY), "getConf shows the secret key: {conf}");
}

/// The under-storage benchmarks (`tachyon bench --ufs`) on local disk, S3 and HDFS: each
/// prints its ratios against baselines measured in the same run (never asserted: the
/// machine is shared), reads back exactly what it wrote, and removes its scratch folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_storage_benchmarks_print_ratios_on_local_s3_and_hdfs() {
    let (s3_server, hdfs_server, local) = (S3Server::start(), HdfsServer::start(), tempfile::tempdir().unwrap());
    let opts = tachyon::bench::UfsBenchOptions { concurrency: 8, duration: std::time::Duration::from_millis(700), file_bytes: 4 << 20, files: 2 };
    let backends = [
        (local.path().display().to_string(), UfsOptions::default()),
        ("s3://tachyon/bench".to_string(), s3_server.options()),
        (format!("{}/bench", hdfs_server.url()), UfsOptions::default()),
    ];
    for (uri, options) in backends {
        let mut out = Vec::new();
        let ran = tachyon::bench::run_under_storage(&uri, &options, opts.clone(), &mut out).await;
        let out = String::from_utf8(out).unwrap();
        println!("{out}");
        ran.unwrap_or_else(|e| panic!("{uri}: {e}\n{out}"));
        for line in ["journal append (group commit + sync)", "cold read via tachyon", "warm read via tachyon"] {
            assert!(out.lines().any(|l| l.starts_with(line) && l.contains("ratio")), "{uri}: no {line:?} line:\n{out}");
        }
        let left = tachyon::underfs::open(&uri, &options).unwrap().list("").await.unwrap();
        assert!(left.iter().all(|n| !n.starts_with("tachyon-bench-")), "{uri}: scratch folder left behind: {left:?}");
    }
}

/// A cluster whose root under-storage is local mounts an S3 bucket with the bucket's own
/// endpoint and credentials as mount options (the processes have no S3 settings at all):
/// files written through land in the bucket, read back from it once freed, and the
/// secret never shows in the mount listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bucket_mounted_with_its_own_credentials_is_written_and_read_through() {
    let server = S3Server::start();
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let endpoint = format!("tachyon.underfs.s3.endpoint={}", server.endpoint());
    let access = format!("s3a.accessKeyId={}", common::underfs::S3_ACCESS_KEY);
    let secret = format!("fs.s3a.secret.key={S3_SECRET_KEY}");
    let mount = [
        "fs",
        "mount",
        "--option",
        &endpoint,
        "--option",
        "tachyon.underfs.s3.disable.dns.buckets=true",
        "--option",
        &access,
        "--option",
        &secret,
        "/s3",
        "s3://tachyon/mounted",
    ];
    c.run_ok(&mount);
    let listed = c.run_ok(&["fs", "mount"]);
    assert!(listed.contains("s3://tachyon/mounted") && listed.contains("fs.s3a.secret.key=******"), "{listed}");
    assert!(!listed.contains(S3_SECRET_KEY), "the secret is never shown: {listed}");

    let fs = c.client();
    let data = content(3 << 20, 5);
    let opts = CreateOptions { block_size: Some(1 << 20), recursive: true, write_type: Some(WriteType::CacheThrough) };
    fs.write_file("/s3/dir/file", &data, opts).await.unwrap();
    let bucket = s3(&server, "mounted");
    assert_eq!(bucket.read("dir/file").await.unwrap(), data, "the copy is in the mounted bucket");
    assert_eq!(fs.free("/s3/dir/file", false).await.unwrap(), 3);
    assert_eq!(fs.read_file("/s3/dir/file").await.unwrap(), data, "read back from the bucket");
    // Objects put into the bucket directly appear below the mount point.
    bucket.write_atomic("dir/direct", b"from outside").await.unwrap();
    assert_eq!(fs.read_file("/s3/dir/direct").await.unwrap(), b"from outside");
    let bad = c.run(&["fs", "mount", "/s3bad", "s3://tachyon/x"]);
    assert!(!bad.status.success(), "a bucket the master cannot reach is not mounted: {bad:?}");
}
