//! The S3 gateway (`tachyon proxy`) driven by real S3 clients: boto3 (`tests/s3/
//! boto3_suite.py`: buckets, put/get with ranges, head, listings (both versions) with prefix,
//! delimiter and pages, copy, multi-delete, a 100 MiB multipart upload, an aborted one, bad signatures and
//! keys) and the AWS CLI; a listing that pages through a leader failover; and the sweep of
//! abandoned multipart uploads.

#![cfg(feature = "proxy")]

mod common;

use std::process::{Child, Command, Stdio};

use common::zk::ZooKeeper;
use common::{eventually, free_port, Cluster};

/// A program of the S3 clients' venv (`bin/install-test-services.sh` installs boto3 and the
/// AWS CLI there).
fn s3_client_bin(name: &str) -> std::path::PathBuf {
    let bin = common::underfs::cache_dir().join("s3-clients-venv/bin").join(name);
    assert!(bin.exists(), "{} is missing: run bin/install-test-services.sh", bin.display());
    bin
}

const ACCESS_KEY: &str = "tachyon-test-ak";
const SECRET_KEY: &str = "tachyon-test-secret";

/// A gateway process of a cluster, killed when dropped.
struct Gateway {
    child: Child,
    endpoint: String,
}

impl Gateway {
    async fn start(c: &Cluster) -> Gateway {
        Gateway::start_with(c, &[]).await
    }

    /// A gateway with extra `-D` options.
    async fn start_with(c: &Cluster, defines: &[&str]) -> Gateway {
        let port = free_port();
        let log = std::fs::File::create(c.path().join("proxy.log")).unwrap();
        let child = Command::new(common::tachyon_bin())
            .env("TACHYON_HOME", c.path())
            .env_remove("TACHYON_JAVA_OPTS")
            .env_remove("TACHYON_CONF_DIR")
            .args(c.defines())
            .args([
                format!("-Dtachyon.proxy.web.port={port}"),
                "-Dtachyon.proxy.web.hostname=127.0.0.1".to_string(),
                format!("-Dtachyon.proxy.s3.access.key={ACCESS_KEY}"),
                format!("-Dtachyon.proxy.s3.secret.key={SECRET_KEY}"),
            ])
            .args(defines)
            .arg("proxy")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        assert!(eventually(|| async { std::net::TcpStream::connect(&address).is_ok() }).await, "the gateway did not listen");
        Gateway { child, endpoint: format!("http://{address}") }
    }

    /// Runs the AWS CLI against the gateway.
    fn aws(&self, scratch: &std::path::Path, args: &[&str]) -> std::process::Output {
        let config = scratch.join("aws-config");
        std::fs::write(&config, "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n").unwrap();
        Command::new(s3_client_bin("aws"))
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .arg("--endpoint-url")
            .arg(&self.endpoint)
            .args(args)
            .output()
            .unwrap()
    }

    /// Python running `script` with `s3` defined first: a boto3 client of this gateway that
    /// retries through a failover.
    fn python(&self, script: &str) -> Command {
        let client = format!(
            "import boto3, sys, time\nfrom botocore.config import Config\n\
             s3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='{ACCESS_KEY}', aws_secret_access_key='{SECRET_KEY}', region_name='us-east-1', \
             config=Config(s3={{'addressing_style': 'path'}}, retries={{'max_attempts': 20, 'mode': 'standard'}}))\n",
            endpoint = self.endpoint
        );
        let mut command = Command::new(s3_client_bin("python"));
        command.arg("-c").arg(client + script);
        command
    }

    fn boto3(&self, script: &str, scratch: &std::path::Path) -> std::process::Output {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3").join(script);
        Command::new(s3_client_bin("python")).arg(path).arg(&self.endpoint).arg(ACCESS_KEY).arg(SECRET_KEY).arg(scratch).output().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_the_aws_cli_use_tachyon_through_the_gateway() {
    let mut c = Cluster::start_with_defines(vec!["-Dtachyon.worker.memory.size=1GB".into()]);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let gateway = Gateway::start(&c).await;
    let scratch = c.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = gateway.boto3("boto3_suite.py", &scratch);
    assert!(ok(&out, "the boto3 suite").contains("boto3 suite passed"));

    // What boto3 wrote is tachyon's: the client library sees it.
    let fs = c.client();
    assert_eq!(fs.read_file("/bkt1/copies/x1").await.unwrap(), b"x1");
    assert_eq!(fs.get_status("/bkt1/big/object.bin").await.unwrap().length, 100 << 20);
    assert!(fs.list_status("/.tachyon-s3/uploads", false).await.map(|l| l.is_empty()).unwrap_or(true), "no multipart upload left behind");

    // The AWS CLI: ls, cp both ways, s3api listing.
    let local = scratch.join("cli.txt");
    std::fs::write(&local, b"from the aws cli\n").unwrap();
    ok(&gateway.aws(&scratch, &["s3", "cp", local.to_str().unwrap(), "s3://bkt1/cli/cli.txt"]), "aws s3 cp up");
    let listing = ok(&gateway.aws(&scratch, &["s3", "ls", "s3://bkt1/cli/"]), "aws s3 ls");
    assert!(listing.contains("cli.txt"), "{listing}");
    let back = scratch.join("cli.back");
    ok(&gateway.aws(&scratch, &["s3", "cp", "s3://bkt1/cli/cli.txt", back.to_str().unwrap()]), "aws s3 cp down");
    assert_eq!(std::fs::read(&back).unwrap(), b"from the aws cli\n");
    let api = ok(&gateway.aws(&scratch, &["s3api", "list-objects-v2", "--bucket", "bkt1", "--prefix", "dir/", "--delimiter", "/"]), "s3api");
    assert!(api.contains("dir/x3") && !api.contains("copies/x1"), "{api}");
    let buckets = ok(&gateway.aws(&scratch, &["s3", "ls"]), "aws s3 ls of buckets");
    assert!(buckets.contains("bkt1"), "{buckets}");
}

/// A listing paged 5 keys at a time continues across a kill -9 of the leader: every key is
/// listed once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_pages_through_a_leader_failover() {
    let zk = ZooKeeper::standalone();
    let mut c = Cluster::start_ha(&zk.servers(), 2);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let keys: Vec<String> = (0..30).map(|i| format!("k{i:03}")).collect();
    for k in &keys {
        fs.write_file(&format!("/listed/{k}"), k.as_bytes(), tachyon::client::CreateOptions { recursive: true, ..Default::default() }).await.unwrap();
    }
    let gateway = Gateway::start(&c).await;
    let scratch = c.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    // The first page, then the leader dies, then the rest of the pages.
    let script = "page = s3.list_objects_v2(Bucket='listed', MaxKeys=5)\n\
         keys = [o['Key'] for o in page['Contents']]\n\
         open(sys.argv[1], 'w').write('first page')\n\
         while not __import__('os').path.exists(sys.argv[2]): time.sleep(0.05)\n\
         while page['IsTruncated']:\n    page = s3.list_objects_v2(Bucket='listed', MaxKeys=5, ContinuationToken=page['NextContinuationToken'])\n    keys += [o['Key'] for o in page['Contents']]\n\
         print(','.join(keys))\n";
    let (paged, killed) = (scratch.join("paged"), scratch.join("killed"));
    let lister = gateway.python(script).arg(&paged).arg(&killed).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    assert!(eventually(|| async { paged.exists() }).await, "the first page");
    let leader = c.serving_leader().await;
    c.kill_master_at(leader);
    std::fs::write(&killed, b"").unwrap();
    let out = lister.wait_with_output().unwrap();
    let listed = ok(&out, "listing through the failover");
    assert_eq!(listed.trim(), keys.join(","));
}

/// A client that starts a multipart upload and goes away: once no part came for the expiry
/// the gateway aborts the upload and deletes its parts; the upload id is then unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_multipart_upload_is_aborted_after_the_expiry() {
    let mut c = Cluster::start();
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    fs.create_directory("/abandoned", false, false).await.unwrap();
    let gateway = Gateway::start_with(&c, &["-Dtachyon.proxy.s3.multipart.upload.expiry=2s"]).await;
    let scratch = c.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let started = gateway
        .python(
            "u = s3.create_multipart_upload(Bucket='abandoned', Key='big.bin')['UploadId']\n\
             s3.upload_part(Bucket='abandoned', Key='big.bin', UploadId=u, PartNumber=1, Body=b'p' * 1024)\n\
             print(u)\n",
        )
        .output()
        .unwrap();
    let upload_id = ok(&started, "start an upload and send one part").trim().to_string();
    let folder = format!("/.tachyon-s3/uploads/{upload_id}");
    assert_eq!(fs.list_status(&folder, false).await.unwrap().len(), 2, "the target and one part wait for the rest");
    assert!(eventually(|| async { fs.get_status(&folder).await.is_err() }).await, "the abandoned upload was not aborted");
    let late = gateway
        .python(&format!(
            "import botocore\n\
             try:\n    s3.upload_part(Bucket='abandoned', Key='big.bin', UploadId='{upload_id}', PartNumber=2, Body=b'q')\n    print('accepted')\n\
             except botocore.exceptions.ClientError as e:\n    print(e.response['Error']['Code'])\n"
        ))
        .output()
        .unwrap();
    assert_eq!(ok(&late, "a part after the abort").trim(), "NoSuchUpload");
    assert!(fs.list_status("/abandoned", false).await.unwrap().is_empty(), "nothing of the upload became an object");
}
