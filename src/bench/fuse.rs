//! `tachyon bench`'s FUSE lines: a sequential write and read of one file through a FUSE
//! mount of the benchmark cluster, each next to its same-run baseline (the same bytes
//! written to a local-disk file; the same file read through the client library).

use std::io::{Read, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use crate::client::FileSystem;
use crate::fuse::{FuseOptions, TachyonFuse};

/// Rounds of each measurement; the fastest counts.
pub const ROUNDS: usize = 3;
/// The size of each `write` and `read` a program makes through the mount.
const IO_BYTES: usize = 1 << 20;

/// FUSE mounts this process serves for the bench right now. A process that exits while
/// one of its own threads waits on its own mount never finishes exiting (the kernel waits
/// for an answer the exited server will not give), so a stopped bench lets these lines end
/// and unmount first ([`mounted`]).
static MOUNTS_UP: AtomicUsize = AtomicUsize::new(0);

/// True while the bench has a FUSE mount of this process up.
pub fn mounted() -> bool {
    MOUNTS_UP.load(Ordering::SeqCst) > 0
}

/// Counts a mount up for as long as it lives (drop it after the session).
struct MountUp;

impl MountUp {
    fn new() -> Self {
        MOUNTS_UP.fetch_add(1, Ordering::SeqCst);
        MountUp
    }
}

impl Drop for MountUp {
    fn drop(&mut self) {
        MOUNTS_UP.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why FUSE cannot be measured on this machine, if it cannot.
pub fn unavailable() -> Option<&'static str> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("mounting needs root");
    }
    None
}

/// Mounts `fs` at `scratch/fuse-mnt`, writes and reads `data` through it, prints both
/// lines, and unmounts.
pub async fn run(fs: &FileSystem, scratch: &Path, data: Arc<Vec<u8>>, out: &mut dyn std::io::Write) -> Result<(), String> {
    if let Some(reason) = unavailable() {
        let _ = writeln!(out, "FUSE lines skipped: {reason}");
        return Ok(());
    }
    let mount_point = scratch.join("fuse-mnt");
    std::fs::create_dir_all(&mount_point).map_err(|e| e.to_string())?;
    let fuse =
        TachyonFuse::new(fs.clone(), tokio::runtime::Handle::current(), FuseOptions { root: "/".into(), metadata_cache: std::time::Duration::from_secs(1) });
    let up = MountUp::new();
    let session = crate::fuse::spawn(fuse, &mount_point)?;
    let result = measure(fs, scratch, &mount_point, data, out).await;
    drop(session);
    drop(up);
    result
}

async fn measure(fs: &FileSystem, scratch: &Path, mount_point: &Path, data: Arc<Vec<u8>>, out: &mut dyn std::io::Write) -> Result<(), String> {
    let gbps = |secs: f64| data.len() as f64 / secs / 1e9;
    let (mut fuse_write, mut disk_write, mut fuse_read, mut client_read) = (0f64, 0f64, 0f64, 0f64);
    for round in 0..ROUNDS {
        let target = mount_point.join(format!("fuse-bench-{round}"));
        let local = scratch.join(format!("fuse-bench-local-{round}"));
        fuse_write = fuse_write.max(gbps(blocking_write(&target, &data).await?));
        disk_write = disk_write.max(gbps(blocking_write(&local, &data).await?));
        let start = Instant::now();
        let back = fs.read_file(&format!("/fuse-bench-{round}")).await.map_err(|e| e.to_string())?;
        client_read = client_read.max(gbps(start.elapsed().as_secs_f64()));
        if back.len() != data.len() {
            return Err(format!("the file written through FUSE has {} bytes, {} were written", back.len(), data.len()));
        }
        let (seconds, read) = blocking_read(&target).await?;
        fuse_read = fuse_read.max(gbps(seconds));
        if read != data.len() {
            return Err(format!("read {read} bytes through FUSE, {} were written", data.len()));
        }
        let _ = std::fs::remove_file(&local);
        fs.delete(&format!("/fuse-bench-{round}"), false).await.map_err(|e| e.to_string())?;
    }
    super::line(out, "FUSE sequential write (1 MB writes)", fuse_write, "GB/s", "local-disk write of the same bytes", disk_write);
    super::line(out, "FUSE sequential read (1 MB reads)", fuse_read, "GB/s", "client library read of the same file", client_read);
    Ok(())
}

/// Seconds to write `data` to a new file at `path` in [`IO_BYTES`] writes and close it,
/// on a thread that may block (the mount is served by this process's runtime). A failed
/// `close` (the file could not be completed) is an error.
async fn blocking_write(path: &Path, data: &Arc<Vec<u8>>) -> Result<f64, String> {
    use std::os::fd::IntoRawFd;
    let (path, data) = (path.to_path_buf(), data.clone());
    crate::runtime::spawn_compute(move || {
        let start = Instant::now();
        let mut file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for piece in data.chunks(IO_BYTES) {
            file.write_all(piece).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        // SAFETY: the descriptor was just taken from the file and is closed exactly once.
        if unsafe { libc::close(file.into_raw_fd()) } != 0 {
            return Err(format!("close {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        Ok(start.elapsed().as_secs_f64())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Seconds to read the file at `path` in [`IO_BYTES`] reads, and the bytes read.
async fn blocking_read(path: &Path) -> Result<(f64, usize), String> {
    let path = path.to_path_buf();
    crate::runtime::spawn_compute(move || {
        let start = Instant::now();
        let mut file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut buf = vec![0u8; IO_BYTES];
        let mut total = 0;
        loop {
            let n = file.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok((start.elapsed().as_secs_f64(), total))
    })
    .await
    .map_err(|e| e.to_string())?
}
