//! Under-storage backends against real servers on loopback (moto for S3, an HDFS NameNode
//! and DataNode): the `UnderFs` contract, the journal's contract, backend-specific fencing,
//! and a master process whose journal lives there. Needs `--features s3,hdfs` and
//! `bin/install-test-services.sh` (bin/test-all.sh does both).

#![cfg(all(feature = "s3", feature = "hdfs"))]

mod common;

use std::sync::Arc;

use common::underfs::{HdfsServer, S3Server, S3_SECRET_KEY};
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
