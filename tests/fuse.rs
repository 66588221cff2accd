//! The FUSE mount (`tachyon fuse mount`) driven by real programs: `cp`, `cat`, `ls -l`,
//! `mv`, `rm -r`, `dd`, `tar x`, `chmod`, a shell truncation and Python's `open()`; what
//! tachyon cannot do fails with a clear errno; a mount survives a leader failover. Needs
//! `/dev/fuse` and root (to mount without fusermount): without them each test says so and
//! skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::zk::ZooKeeper;
use common::{content, Cluster};
use tachyon::client::CreateOptions;

/// Why FUSE cannot be tested here, if it cannot.
fn fuse_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse on this machine".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: mounting needs root (or fusermount3 with user_allow_other)".into());
    }
    None
}

macro_rules! require_fuse {
    () => {
        if let Some(reason) = fuse_unavailable() {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
}

fn sh(script: &str) -> Output {
    Command::new("sh").arg("-c").arg(script).output().unwrap()
}

fn sh_ok(script: &str) -> String {
    let out = sh(script);
    assert!(out.status.success(), "{script}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A mount of a cluster, unmounted when dropped (so a failing test leaves no mount behind).
struct Mount {
    point: PathBuf,
}

impl Mount {
    fn new(cluster: &Cluster, path: &str) -> Mount {
        let point = cluster.path().join("mnt");
        std::fs::create_dir_all(&point).unwrap();
        let out = cluster.run_ok(&["fuse", "mount", point.to_str().unwrap(), path]);
        assert!(out.contains("Mounted tachyon"), "{out}");
        Mount { point }
    }

    fn at(&self, rel: &str) -> String {
        format!("{}/{rel}", self.point.display())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if tachyon::fuse::is_mounted(&self.point) {
            let _ = tachyon::fuse::unmount(&self.point);
        }
    }
}

fn started_cluster() -> Cluster {
    let mut c = Cluster::start();
    c.start_worker(0);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_programs_read_and_write_tachyon_through_the_mount() {
    require_fuse!();
    let c = started_cluster();
    c.wait_for_workers(1).await;
    let fs = c.client();
    let m = Mount::new(&c, "/");
    let local = c.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let data = content((3 << 20) + 12345, 1);
    std::fs::write(local.join("a"), &data).unwrap();

    // cp in, cat out, the client library sees the same bytes.
    sh_ok(&format!("cp {} {}", local.join("a").display(), m.at("a")));
    assert_eq!(fs.read_file("/a").await.unwrap(), data);
    let cat = Command::new("cat").arg(m.at("a")).output().unwrap();
    assert!(cat.status.success());
    assert_eq!(cat.stdout, data);
    let listing = sh_ok(&format!("ls -l {}", m.point.display()));
    assert!(listing.contains(&format!("{} ", data.len())) && listing.contains(" a\n"), "{listing}");

    // mkdir, mv, chmod, ls of a directory, Python's open().
    sh_ok(&format!("mkdir {d} && mv {a} {d}/b && chmod 640 {d}/b", d = m.at("d"), a = m.at("a")));
    assert!(!fs.exists("/a").await.unwrap());
    let moved = fs.get_status("/d/b").await.unwrap();
    assert_eq!((moved.length, moved.ownership.unwrap().mode & 0o777), (data.len() as u64, 0o640));
    assert_eq!(sh_ok(&format!("ls {}", m.at("d"))), "b\n");
    // chown by name: the owner and group tachyon records, shown back as this host's ids.
    sh_ok(&format!("chown daemon:daemon {}", m.at("d/b")));
    let owned = fs.get_status("/d/b").await.unwrap().ownership.unwrap();
    assert_eq!((owned.owner.as_str(), owned.group.as_str()), ("daemon", "daemon"));
    assert_eq!(sh_ok(&format!("stat -c %U:%G {}", m.at("d/b"))).trim(), "daemon:daemon");
    let digest = sh_ok(&format!("python3 -c \"import hashlib; print(hashlib.sha256(open('{}', 'rb').read()).hexdigest())\"", m.at("d/b")));
    assert_eq!(digest, sh_ok(&format!("sha256sum < {} | cut -d' ' -f1", local.join("a").display())));

    // dd in large blocks both ways.
    sh_ok(&format!("dd if=/dev/urandom of={} bs=1M count=24 status=none", local.join("big").display()));
    sh_ok(&format!("dd if={} of={} bs=1M conv=fsync status=none", local.join("big").display(), m.at("big")));
    sh_ok(&format!(
        "dd if={} of={} bs=256k status=none && cmp {} {}",
        m.at("big"),
        local.join("big.back").display(),
        local.join("big").display(),
        local.join("big.back").display()
    ));

    // tar x of a real archive (nested folders, modes, times), compared file by file.
    let tree = local.join("tree");
    sh_ok(&format!(
        "mkdir -p {t}/x/y && echo one > {t}/one.txt && head -c 300000 /dev/urandom > {t}/x/blob && echo deep > {t}/x/y/deep && chmod 600 {t}/x/y/deep && tar cf {a} -C {t} .",
        t = tree.display(),
        a = local.join("tree.tar").display()
    ));
    sh_ok(&format!("mkdir {u} && tar xf {a} -C {u} && diff -r {t} {u}", u = m.at("untarred"), a = local.join("tree.tar").display(), t = tree.display()));
    assert_eq!(fs.get_status("/untarred/x/y/deep").await.unwrap().ownership.unwrap().mode & 0o777, 0o600);

    // A shell truncation replaces the file by an empty one.
    sh_ok(&format!(": > {}", m.at("untarred/one.txt")));
    assert_eq!(fs.get_status("/untarred/one.txt").await.unwrap().length, 0);

    // rm -r.
    sh_ok(&format!("rm -r {}", m.at("untarred")));
    assert!(!fs.exists("/untarred").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_tachyon_cannot_do_fails_with_a_clear_errno_and_changes_nothing() {
    require_fuse!();
    let c = started_cluster();
    c.wait_for_workers(1).await;
    let fs = c.client();
    let data = content(5000, 2);
    fs.write_file("/kept", &data, CreateOptions::default()).await.unwrap();
    let m = Mount::new(&c, "/");
    // Writing into the middle of an existing file, or opening it read-write.
    let notrunc = sh(&format!("printf zz | dd of={} bs=1 seek=10 conv=notrunc status=none", m.at("kept")));
    assert!(!notrunc.status.success());
    assert!(String::from_utf8_lossy(&notrunc.stderr).contains("Operation not permitted"), "{}", String::from_utf8_lossy(&notrunc.stderr));
    let rw = sh(&format!("python3 -c \"open('{}', 'r+b')\"", m.at("kept")));
    assert!(String::from_utf8_lossy(&rw.stderr).contains("Operation not supported"), "{}", String::from_utf8_lossy(&rw.stderr));
    let grow = sh(&format!("python3 -c \"import os; os.truncate('{}', 10 << 20)\"", m.at("kept")));
    assert!(String::from_utf8_lossy(&grow.stderr).contains("Operation not supported"), "{}", String::from_utf8_lossy(&grow.stderr));
    let reopen = sh(&format!("truncate -s 10M {}", m.at("kept")));
    assert!(String::from_utf8_lossy(&reopen.stderr).contains("Operation not permitted"), "{}", String::from_utf8_lossy(&reopen.stderr));
    let link = sh(&format!("ln {} {}", m.at("kept"), m.at("hard")));
    assert!(!link.status.success());
    assert_eq!(fs.read_file("/kept").await.unwrap(), data, "nothing changed");
    // Removing a non-empty directory with rmdir.
    fs.create_directory("/full/sub", true, false).await.unwrap();
    let rmdir = sh(&format!("rmdir {}", m.at("full")));
    assert!(String::from_utf8_lossy(&rmdir.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&rmdir.stderr));
    assert!(fs.exists("/full/sub").await.unwrap());

    // Bad mount points: missing, busy.
    let missing = c.run(&["fuse", "mount", c.path().join("nowhere").to_str().unwrap()]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("No such file"), "{missing:?}");
    let busy = c.run(&["fuse", "mount", m.point.to_str().unwrap()]);
    assert!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).contains("busy"), "{busy:?}");
    let not_a_dir = c.run(&["fuse", "mount", c.path().join("other").to_str().unwrap(), "/kept"]);
    assert!(!not_a_dir.status.success());

    // Unmounting ends the mount (and a second unmount says nothing is mounted there).
    c.run_ok(&["fuse", "unmount", m.point.to_str().unwrap()]);
    assert!(!tachyon::fuse::is_mounted(&m.point));
    let again = c.run(&["fuse", "unmount", m.point.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing is mounted"), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subdirectory_can_be_mounted_alone() {
    require_fuse!();
    let c = started_cluster();
    c.wait_for_workers(1).await;
    let fs = c.client();
    fs.write_file("/projects/p1/readme", b"hello", CreateOptions { recursive: true, ..Default::default() }).await.unwrap();
    fs.write_file("/other", b"hidden", CreateOptions::default()).await.unwrap();
    let m = Mount::new(&c, "/projects");
    assert_eq!(sh_ok(&format!("ls {}", m.point.display())), "p1\n");
    assert_eq!(sh_ok(&format!("cat {}", m.at("p1/readme"))), "hello");
    sh_ok(&format!("cp {} {}", m.at("p1/readme"), m.at("copy")));
    assert_eq!(fs.read_file("/projects/copy").await.unwrap(), b"hello");
}

/// kill -9 of the leader while `cp` writes into the mount and `cat` reads from it: both
/// finish and every file is byte-equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_survives_a_leader_failover_while_cp_and_cat_run() {
    require_fuse!();
    let zk = ZooKeeper::standalone();
    let mut c = Cluster::start_ha(&zk.servers(), 2);
    c.start_worker(0);
    c.wait_for_workers(1).await;
    let fs = c.client();
    let readable = content(24 << 20, 3);
    fs.write_file("/readable", &readable, CreateOptions { block_size: Some(4 << 20), ..Default::default() }).await.unwrap();
    let local = c.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let written = content(48 << 20, 4);
    std::fs::write(local.join("src"), &written).unwrap();
    let m = Mount::new(&c, "/");
    let leader = c.serving_leader().await;
    // A slow writer and a slow reader (1 MiB, then a pause) so the kill lands mid-way.
    let slow_copy = |from: String, to: String| {
        let script = format!(
            "import sys, time\nsrc = open('{from}', 'rb')\ndst = open('{to}', 'wb') if '{to}' else sys.stdout.buffer\nwhile True:\n    chunk = src.read(1 << 20)\n    if not chunk:\n        break\n    dst.write(chunk)\n    dst.flush()\n    time.sleep(0.05)\ndst.close()\n"
        );
        Command::new("python3").arg("-c").arg(script).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    let cp = slow_copy(local.join("src").display().to_string(), m.at("copy"));
    let cat = slow_copy(m.at("readable"), String::new());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    c.kill_master_at(leader);
    let cp = cp.wait_with_output().unwrap();
    let cat = cat.wait_with_output().unwrap();
    assert!(cp.status.success(), "cp through the failover: {}", String::from_utf8_lossy(&cp.stderr));
    assert!(cat.status.success(), "cat through the failover: {}", String::from_utf8_lossy(&cat.stderr));
    assert_eq!(cat.stdout.len(), readable.len());
    assert!(cat.stdout == readable, "cat read different bytes");
    assert!(fs.read_file("/copy").await.unwrap() == written, "the copy differs");
}

/// `tachyon bench` stopped (SIGINT) while its FUSE lines have the cluster mounted in the
/// bench's own process lets them finish and unmount, then exits with an error and removes
/// its scratch folder. (Exiting at once left the process unkillable, stuck on its own
/// mount, and the mount behind.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bench_stopped_during_its_fuse_lines_unmounts_and_exits() {
    require_fuse!();
    let logs = tempfile::tempdir().unwrap();
    let (out, err) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let mut bench = Command::new(env!("CARGO_BIN_EXE_tachyon"))
        .args(["bench", "--files", "0", "--read-mb", "16", "--replay-entries", "1000", "--seconds", "0.2"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mounted = |mount_point: &Path| std::fs::read_to_string("/proc/mounts").unwrap().lines().any(|l| l.split(' ').nth(1) == mount_point.to_str());
    // The first line names the scratch folder; the mount is made in it.
    let mut mount_point = None;
    for _ in 0..6000 {
        let first = std::fs::read_to_string(&out).unwrap().lines().next().map(str::to_string);
        let candidate = first.and_then(|l| l.split_once("folder ").map(|(_, folder)| PathBuf::from(folder).join("fuse-mnt")));
        if candidate.as_deref().is_some_and(mounted) {
            mount_point = candidate;
            break;
        }
        assert!(bench.try_wait().unwrap().is_none(), "the bench ended before its FUSE lines: {}", std::fs::read_to_string(&err).unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mount_point = mount_point.expect("the bench never mounted the cluster");
    // SAFETY: kill(2) on the child's pid; the child has not been reaped.
    assert_eq!(unsafe { libc::kill(bench.id() as libc::pid_t, libc::SIGINT) }, 0);
    let mut status = None;
    for _ in 0..2400 {
        status = bench.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let status = status.expect("the stopped bench did not exit within 2 minutes");
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(!status.success(), "a stopped bench reports failure");
    assert!(stderr.contains("letting the FUSE lines finish") && stderr.contains("stopped"), "{stderr}");
    assert!(!mounted(&mount_point), "the bench left {} mounted", mount_point.display());
    let scratch = mount_point.parent().unwrap();
    assert!(!scratch.exists(), "the bench left {} behind", scratch.display());
}
