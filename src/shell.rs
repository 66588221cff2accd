//! The `tachyon fs` shell and `tachyon runTests`, on top of the client library.
//! Output goes to a writer so tests can read it; errors name the path and the reason.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::client::{CreateOptions, FileSystem, WriteType};
use crate::core::namespace::OwnershipChange;
use crate::core::permission::mode_string as tachyon_mode_string;
use crate::error::FsError;
use crate::master::ttl_action_name;
use crate::proto::{FileInfo, TtlAction};

/// A shell command failed: a file system error, or local IO.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("{0}")]
    Fs(#[from] FsError),
    #[error("{path}: {error}")]
    Local { path: String, error: std::io::Error },
    #[error("{0}")]
    Usage(String),
}

impl ShellError {
    fn local(path: &Path, error: std::io::Error) -> Self {
        ShellError::Local { path: path.display().to_string(), error }
    }
}

/// Result of a shell command.
pub type ShellResult = Result<(), ShellError>;

/// `1.50MB`-style sizes, as Tachyon prints them.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// `MM-dd-yyyy HH:mm:ss:SSS` in UTC.
pub fn format_time_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{month:02}-{day:02}-{year:04} {h:02}:{m:02}:{s:02}:{milli:03}")
}

fn mode_string(info: &FileInfo) -> String {
    tachyon_mode_string(info.is_directory, info.ownership.as_ref().map(|o| o.mode).unwrap_or(0))
}

/// One `ls` line: mode, owner, group, size, modification time, memory state, path.
pub fn ls_line(info: &FileInfo) -> String {
    let (owner, group) = info.ownership.as_ref().map(|o| (o.owner.as_str(), o.group.as_str())).unwrap_or(("", ""));
    let state = if info.is_directory {
        String::new()
    } else if !info.complete {
        "Incomplete".to_string()
    } else if info.in_memory_percentage == 100 {
        "In Memory".to_string()
    } else {
        format!("{}% In Memory", info.in_memory_percentage)
    };
    format!(
        "{} {:<8} {:<8} {:>10} {} {:>14} {}",
        mode_string(info),
        owner,
        group,
        format_bytes(info.length),
        format_time_ms(info.modification_time_ms),
        state,
        info.path
    )
}

/// `ls [-R] path`.
pub async fn ls(fs: &FileSystem, path: &str, recursive: bool, out: &mut dyn Write) -> ShellResult {
    fs.list_status_pages(path, recursive, |page| {
        for f in &page {
            writeln!(out, "{}", ls_line(f)).ok();
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// `mkdir path...` (parents are created as needed).
pub async fn mkdir(fs: &FileSystem, paths: &[String], out: &mut dyn Write) -> ShellResult {
    for p in paths {
        fs.create_directory(p, true, false).await?;
        writeln!(out, "Successfully created directory {p}").ok();
    }
    Ok(())
}

/// `touch path`: an empty, complete file.
pub async fn touch(fs: &FileSystem, path: &str, out: &mut dyn Write) -> ShellResult {
    fs.write_file(path, &[], CreateOptions { recursive: true, ..Default::default() }).await?;
    writeln!(out, "{path} has been created").ok();
    Ok(())
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

async fn is_dir(fs: &FileSystem, path: &str) -> Result<bool, FsError> {
    match fs.get_status(path).await {
        Ok(info) => Ok(info.is_directory),
        Err(FsError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `copyFromLocal src dst`: a file, or a folder recursively. Into `dst/<name>` if `dst`
/// is a directory.
pub async fn copy_from_local(fs: &FileSystem, src: &Path, dst: &str, write_type: Option<WriteType>, out: &mut dyn Write) -> ShellResult {
    let meta = std::fs::metadata(src).map_err(|e| ShellError::local(src, e))?;
    let name = src.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let target = if is_dir(fs, dst).await? { join(dst, name) } else { dst.to_string() };
    if meta.is_dir() {
        fs.create_directory(&target, true, true).await?;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(src).map_err(|e| ShellError::local(src, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            Box::pin(copy_from_local(fs, &e, &target, write_type, out)).await?;
        }
        return Ok(());
    }
    copy_file_from_local(fs, src, &target, write_type).await?;
    let abs = std::fs::canonicalize(src).unwrap_or_else(|_| src.to_path_buf());
    writeln!(out, "Copied file://{} to {target}", abs.display()).ok();
    Ok(())
}

/// A byte progress bar on stderr for a long copy; draws nothing when stderr is not a
/// terminal (piped, in tests, in scripts).
fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(what.to_string());
    bar
}

async fn copy_file_from_local(fs: &FileSystem, src: &Path, target: &str, write_type: Option<WriteType>) -> ShellResult {
    use std::io::Read;
    let mut file = std::fs::File::open(src).map_err(|e| ShellError::local(src, e))?;
    let bar = progress(file.metadata().map(|m| m.len()).unwrap_or(0), target);
    let mut writer = fs.create_file(target, CreateOptions { recursive: true, write_type, ..Default::default() }).await?;
    let mut buf = vec![0u8; fs.options().chunk_bytes.max(1 << 20)];
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                writer.cancel().await;
                return Err(ShellError::local(src, e));
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = writer.write(&buf[..n]).await {
            bar.abandon();
            writer.cancel().await;
            return Err(e.into());
        }
        bar.inc(n as u64);
    }
    writer.close().await?;
    bar.finish_and_clear();
    Ok(())
}

/// `copyToLocal src dst`.
pub async fn copy_to_local(fs: &FileSystem, src: &str, dst: &Path, out: &mut dyn Write) -> ShellResult {
    let info = fs.get_status(src).await?;
    let target = if dst.is_dir() { dst.join(&info.name) } else { dst.to_path_buf() };
    if info.is_directory {
        std::fs::create_dir_all(&target).map_err(|e| ShellError::local(&target, e))?;
        for child in fs.list_status(src, false).await? {
            Box::pin(copy_to_local(fs, &child.path, &target.join(&child.name), out)).await?;
        }
        return Ok(());
    }
    let mut reader = fs.open_file(src).await?;
    let tmp = target.with_extension("tachyon-partial");
    let mut file = std::fs::File::create(&tmp).map_err(|e| ShellError::local(&tmp, e))?;
    let bar = progress(info.length, src);
    while let Some(block) = reader.next_block().await? {
        file.write_all(&block).map_err(|e| ShellError::local(&tmp, e))?;
        bar.inc(block.len() as u64);
    }
    bar.finish_and_clear();
    file.sync_all().map_err(|e| ShellError::local(&tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| ShellError::local(&target, e))?;
    writeln!(out, "Copied {src} to file://{}", target.display()).ok();
    Ok(())
}

/// `cat path`.
pub async fn cat(fs: &FileSystem, path: &str, out: &mut dyn Write) -> ShellResult {
    let mut reader = fs.open_file(path).await?;
    while let Some(block) = reader.next_block().await? {
        out.write_all(&block).map_err(|e| ShellError::local(Path::new("<stdout>"), e))?;
    }
    Ok(())
}

/// `rm [-R] path`.
pub async fn rm(fs: &FileSystem, path: &str, recursive: bool, out: &mut dyn Write) -> ShellResult {
    fs.delete(path, recursive).await?;
    writeln!(out, "{path} has been removed").ok();
    Ok(())
}

/// `mv src dst`: into `dst/<name>` if `dst` is a directory.
pub async fn mv(fs: &FileSystem, src: &str, dst: &str, out: &mut dyn Write) -> ShellResult {
    let target = if is_dir(fs, dst).await? {
        let name = src.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        join(dst, name)
    } else {
        dst.to_string()
    };
    fs.rename(src, &target).await?;
    writeln!(out, "Renamed {src} to {target}").ok();
    Ok(())
}

/// `stat path`.
pub async fn stat(fs: &FileSystem, path: &str, out: &mut dyn Write) -> ShellResult {
    let f = fs.get_status(path).await?;
    let own = f.ownership.clone().unwrap_or_default();
    let kind = if f.is_directory { "directory" } else { "file" };
    writeln!(out, "{} is a {kind}", f.path).ok();
    writeln!(out, "  id:                 {}", f.id).ok();
    writeln!(out, "  length:             {} ({})", f.length, format_bytes(f.length)).ok();
    if !f.is_directory {
        writeln!(out, "  block size:         {}", f.block_size_bytes).ok();
        writeln!(out, "  complete:           {}", f.complete).ok();
        writeln!(out, "  in memory:          {}%", f.in_memory_percentage).ok();
    } else {
        writeln!(out, "  children:           {}", f.child_count).ok();
    }
    writeln!(out, "  persistence state:  {}", f.persistence_state).ok();
    writeln!(out, "  pinned:             {}", f.pinned).ok();
    match f.ttl_ms {
        Some(ms) => writeln!(out, "  ttl:                {ms} ms after creation, then {}", f.ttl_action).ok(),
        None => writeln!(out, "  ttl:                none").ok(),
    };
    writeln!(out, "  owner/group/mode:   {}/{}/{:o}", own.owner, own.group, own.mode).ok();
    writeln!(out, "  created:            {}", format_time_ms(f.creation_time_ms)).ok();
    writeln!(out, "  modified:           {}", format_time_ms(f.modification_time_ms)).ok();
    for (i, b) in f.blocks.iter().enumerate() {
        let locs: Vec<String> = b.locations.iter().map(|l| format!("{}:{}", l.host, l.rpc_port)).collect();
        let persisted = f.persistence_state == "PERSISTED";
        let where_ = match (locs.is_empty(), persisted) {
            (false, _) => locs.join(", "),
            (true, true) => "under-storage only (read from there and cached on first read)".to_string(),
            (true, false) => "LOST (no live worker holds it)".to_string(),
        };
        writeln!(out, "  block {i}: id {} length {} on {where_}", b.block_id, b.length).ok();
    }
    Ok(())
}

/// `du path`: size and in-memory size of each file, and the total.
pub async fn du(fs: &FileSystem, path: &str, out: &mut dyn Write) -> ShellResult {
    let files: Vec<FileInfo> = fs.list_status(path, true).await?.into_iter().filter(|f| !f.is_directory).collect();
    writeln!(out, "{:>14} {:>14}  Path", "File Size", "In Memory").ok();
    let (mut total, mut in_mem) = (0u64, 0u64);
    for f in &files {
        let mem = f.length * u64::from(f.in_memory_percentage) / 100;
        total += f.length;
        in_mem += mem;
        writeln!(out, "{:>14} {:>14}  {}", f.length, mem, f.path).ok();
    }
    writeln!(out, "{:>14} {:>14}  total ({} in {} files)", total, in_mem, format_bytes(total), files.len()).ok();
    Ok(())
}

/// `persist path...`: copies each file to the under-storage now.
pub async fn persist(fs: &FileSystem, paths: &[String], out: &mut dyn Write) -> ShellResult {
    if paths.is_empty() {
        return Err(ShellError::Usage("persist needs at least one path".into()));
    }
    for p in paths {
        let info = fs.persist(p).await?;
        writeln!(out, "persisted {} ({} bytes)", info.path, info.length).ok();
    }
    Ok(())
}

/// `checkConsistency path`: persisted files whose under-storage copy is missing or changed.
/// Fails (exit status 1) if there are any.
pub async fn check_consistency(fs: &FileSystem, path: &str, out: &mut dyn Write) -> ShellResult {
    let inconsistent = fs.check_consistency(path).await?;
    for (file, reason) in &inconsistent {
        writeln!(out, "{file}: {reason}").ok();
    }
    writeln!(out, "{path}: {} inconsistent files", inconsistent.len()).ok();
    if inconsistent.is_empty() {
        Ok(())
    } else {
        Err(ShellError::Usage(format!("{path} has {} files that differ from the under-storage", inconsistent.len())))
    }
}

/// `load path`: brings every block of a file into memory.
pub async fn load(fs: &FileSystem, path: &str, out: &mut dyn Write) -> ShellResult {
    let from_under_fs = fs.load(path).await?;
    writeln!(out, "{path} loaded into memory ({from_under_fs} bytes read from the under-storage).").ok();
    Ok(())
}

/// `free [-R] path`.
pub async fn free(fs: &FileSystem, path: &str, recursive: bool, out: &mut dyn Write) -> ShellResult {
    let n = fs.free(path, recursive).await?;
    writeln!(out, "{path} was successfully freed from memory ({n} blocks).").ok();
    Ok(())
}

/// `mount [--option k=v]... PATH URI`, or `mount` alone to list the mount points (secret
/// option values masked).
pub async fn mount(fs: &FileSystem, target: Option<(&str, &str)>, options: &[String], out: &mut dyn Write) -> ShellResult {
    let Some((path, uri)) = target else {
        if let Some(root) = fs.under_fs() {
            writeln!(out, "{:<40} on / (root under-storage)", root.describe()).ok();
        }
        for m in fs.mount_points().await? {
            let shown: Vec<String> =
                m.mount.options.iter().map(|(k, v)| if crate::config::is_secret_key(k) { format!("{k}=******") } else { format!("{k}={v}") }).collect();
            let options = if shown.is_empty() { String::new() } else { format!(" ({})", shown.join(", ")) };
            writeln!(out, "{:<40} on {}{options}", m.mount.ufs_uri, m.path).ok();
        }
        return Ok(());
    };
    let mut parsed = std::collections::BTreeMap::new();
    for o in options {
        let (k, v) = o.split_once('=').ok_or_else(|| ShellError::Usage(format!("--option {o:?}: expected key=value")))?;
        parsed.insert(k.trim().to_string(), v.to_string());
    }
    fs.mount(path, uri, parsed).await?;
    writeln!(out, "Mounted {uri} at {path}").ok();
    Ok(())
}

/// `unmount PATH`.
pub async fn unmount(fs: &FileSystem, path: &str, out: &mut dyn Write) -> ShellResult {
    fs.unmount(path).await?;
    writeln!(out, "Unmounted {path}").ok();
    Ok(())
}

/// `pin path` / `unpin path`.
pub async fn pin(fs: &FileSystem, path: &str, pinned: bool, out: &mut dyn Write) -> ShellResult {
    fs.set_pinned(path, pinned).await?;
    let what = if pinned { "pinned" } else { "unpinned" };
    writeln!(out, "File '{path}' was successfully {what}.").ok();
    Ok(())
}

/// `chmod [-R] MODE path`: octal (`755`, `1777`: one request, recursive on the master) or
/// symbolic (`u+x,go-w`: each inode's new mode follows from its current one, so with -R
/// every inode below is changed by a request of its own).
pub async fn chmod(fs: &FileSystem, mode: &str, path: &str, recursive: bool, out: &mut dyn Write) -> ShellResult {
    let octal = !mode.is_empty() && mode.chars().all(|c| c.is_ascii_digit());
    if octal {
        let bits = crate::core::permission::change_mode(mode, 0, false).map_err(ShellError::Usage)?;
        fs.set_ownership(path, OwnershipChange { mode: Some(bits), recursive, ..OwnershipChange::default() }).await?;
        writeln!(out, "Changed permission of {path} to {bits:o}").ok();
        return Ok(());
    }
    // Checked once up front, so a bad mode changes nothing.
    crate::core::permission::change_mode(mode, 0, false).map_err(ShellError::Usage)?;
    let mut targets = vec![fs.get_status(path).await?];
    if recursive && targets[0].is_directory {
        fs.list_status_pages(path, true, |page| {
            targets.extend(page);
            Ok(())
        })
        .await?;
    }
    for info in targets {
        let current = info.ownership.as_ref().map(|o| o.mode).unwrap_or(0);
        let bits = crate::core::permission::change_mode(mode, current, info.is_directory).map_err(ShellError::Usage)?;
        if bits != current {
            fs.set_ownership(&info.path, OwnershipChange { mode: Some(bits), ..OwnershipChange::default() }).await?;
        }
        writeln!(out, "Changed permission of {} to {bits:o}", info.path).ok();
    }
    Ok(())
}

/// `chown [-R] OWNER[:GROUP] path` (superusers only).
pub async fn chown(fs: &FileSystem, owner_group: &str, path: &str, recursive: bool, out: &mut dyn Write) -> ShellResult {
    let (owner, group) = match owner_group.split_once(':') {
        Some((o, g)) => (o, Some(g)),
        None => (owner_group, None),
    };
    if owner.is_empty() || group == Some("") {
        return Err(ShellError::Usage(format!("{owner_group:?}: expected OWNER or OWNER:GROUP")));
    }
    let change = OwnershipChange { owner: Some(owner.to_string()), group: group.map(String::from), mode: None, recursive };
    fs.set_ownership(path, change).await?;
    match group {
        Some(g) => writeln!(out, "Changed owner:group of {path} to {owner}:{g}.").ok(),
        None => writeln!(out, "Changed owner of {path} to {owner}.").ok(),
    };
    Ok(())
}

/// `chgrp [-R] GROUP path` (the owner into a group it is in, or a superuser).
pub async fn chgrp(fs: &FileSystem, group: &str, path: &str, recursive: bool, out: &mut dyn Write) -> ShellResult {
    if group.is_empty() {
        return Err(ShellError::Usage("chgrp needs a group name".into()));
    }
    fs.set_ownership(path, OwnershipChange { group: Some(group.to_string()), recursive, ..OwnershipChange::default() }).await?;
    writeln!(out, "Changed group of {path} to {group}.").ok();
    Ok(())
}

/// `setTtl path ms [--action delete|free]`; `unsetTtl path`.
pub async fn set_ttl(fs: &FileSystem, path: &str, ttl: Option<(i64, TtlAction)>, out: &mut dyn Write) -> ShellResult {
    fs.set_ttl(path, ttl).await?;
    match ttl {
        Some((ms, action)) => {
            writeln!(out, "TTL of path '{path}' was successfully set to {ms} milliseconds, with expiry action set to {}", ttl_action_name(action)).ok()
        }
        None => writeln!(out, "TTL of path '{path}' was successfully removed.").ok(),
    };
    Ok(())
}

/// Parses a TTL action as the shell takes it: `delete` or `free` (any case).
pub fn parse_ttl_action(raw: &str) -> Result<TtlAction, ShellError> {
    match raw.to_ascii_lowercase().as_str() {
        "delete" => Ok(TtlAction::TtlDelete),
        "free" => Ok(TtlAction::TtlFree),
        _ => Err(ShellError::Usage(format!("unknown TTL action {raw:?}: use delete or free"))),
    }
}

/// `MEM 1.00MB/4.00MB, SSD ...`: use and capacity of each tier.
fn format_tiers(tiers: &[crate::proto::TierUsage]) -> String {
    let parts: Vec<String> = tiers.iter().map(|t| format!("{} {}/{}", t.alias, format_bytes(t.used_bytes), format_bytes(t.capacity_bytes))).collect();
    parts.join(", ")
}

/// `report`: cluster capacity (in all and per tier) and every worker.
pub async fn report(fs: &FileSystem, out: &mut dyn Write) -> ShellResult {
    let info = fs.master_info().await?;
    let workers = fs.workers().await?;
    writeln!(out, "Tachyon cluster summary:").ok();
    writeln!(out, "    Leader master: {}", info.leader_address).ok();
    writeln!(out, "    Started: {}", format_time_ms(info.start_time_ms)).ok();
    writeln!(out, "    Version: {}", info.version).ok();
    writeln!(out, "    Live workers: {}", info.live_workers).ok();
    writeln!(out, "    Lost workers: {}", info.lost_workers).ok();
    writeln!(out, "    Total capacity: {}", format_bytes(info.capacity_bytes)).ok();
    writeln!(out, "    Used capacity: {}", format_bytes(info.used_bytes)).ok();
    for t in &info.tiers {
        writeln!(out, "    Tier {}: {} used of {}", t.alias, format_bytes(t.used_bytes), format_bytes(t.capacity_bytes)).ok();
    }
    writeln!(out).ok();
    writeln!(out, "{:<24} {:<6} {:>12} {:>12} {:>8}  {:<32} Tiers (used/capacity)", "Worker", "State", "Capacity", "Used", "Blocks", "Last heartbeat").ok();
    for w in workers {
        let a = w.address.unwrap_or_default();
        writeln!(
            out,
            "{:<24} {:<6} {:>12} {:>12} {:>8}  {:<32} {}",
            format!("{}:{}", a.host, a.rpc_port),
            if w.lost { "LOST" } else { "LIVE" },
            format_bytes(w.capacity_bytes),
            format_bytes(w.used_bytes),
            w.block_count,
            format_time_ms(w.last_heartbeat_ms),
            format_tiers(&w.tiers)
        )
        .ok();
    }
    Ok(())
}

/// `leader`: the leader master's address.
pub async fn leader(fs: &FileSystem, out: &mut dyn Write) -> ShellResult {
    let info = fs.master_info().await?;
    writeln!(out, "{}", info.leader_address).ok();
    Ok(())
}

/// `masterInfo`: every master with its role, epoch and applied journal sequence.
pub async fn master_info(fs: &FileSystem, out: &mut dyn Write) -> ShellResult {
    let info = fs.master_info().await?;
    writeln!(out, "Leader: {}", info.leader_address).ok();
    writeln!(out, "{:<24} {:<11} {:>6} {:>16}", "Master", "Role", "Epoch", "Applied sequence").ok();
    for m in fs.masters().await? {
        writeln!(out, "{:<24} {:<11} {:>6} {:>16}", m.address, m.role, m.epoch, m.applied_sequence).ok();
    }
    Ok(())
}

/// Deterministic test content: `len` pseudo-random bytes from `seed` (runTests, the
/// integration tests and the simulator's workload all use it).
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `runTests`: writes, reads back and verifies files of several sizes (empty, one byte,
/// several blocks), then deletes them. Returns (passed, failed).
pub async fn run_tests(fs: &FileSystem, out: &mut dyn Write, run_id: i64) -> Result<(u32, u32), ShellError> {
    let dir = format!("/tachyon_runTests/{run_id}");
    let block = 1u64 << 20;
    let cases: [(&str, usize); 4] = [("Empty", 0), ("OneByte", 1), ("OneBlock", 4096), ("MultiBlock", (2 * block + 12_345) as usize)];
    let write_types = [WriteType::MustCache, WriteType::CacheThrough, WriteType::Through, WriteType::AsyncThrough];
    let (mut passed, mut failed) = (0u32, 0u32);
    let bar = indicatif::ProgressBar::with_draw_target(Some((cases.len() * write_types.len()) as u64), indicatif::ProgressDrawTarget::stderr());
    for (t, write_type) in write_types.into_iter().enumerate() {
        for (i, (name, len)) in cases.iter().enumerate() {
            bar.set_message(format!("runTest {name} {}", write_type.name()));
            let path = format!("{dir}/{}/{name}", write_type.name());
            let data = test_bytes(*len, (t * cases.len() + i) as u64 + 1);
            let result: Result<(), ShellError> = async {
                let options = CreateOptions { block_size: Some(block), recursive: true, write_type: Some(write_type) };
                fs.write_file(&path, &data, options).await?;
                let back = fs.read_file(&path).await?;
                if back != data {
                    return Err(ShellError::Usage(format!("{path}: read {} bytes that differ from the {} written", back.len(), data.len())));
                }
                Ok(())
            }
            .await;
            bar.suspend(|| match result {
                Ok(()) => {
                    passed += 1;
                    writeln!(out, "runTest {name} {} ({len} bytes) ... Passed the test!", write_type.name()).ok();
                }
                Err(e) => {
                    failed += 1;
                    writeln!(out, "runTest {name} {} ({len} bytes) ... FAILED: {e}", write_type.name()).ok();
                }
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if let Err(e) = fs.delete("/tachyon_runTests", true).await {
        writeln!(out, "warning: could not clean up {dir}: {e}").ok();
    }
    writeln!(out, "{passed} passed, {failed} failed").ok();
    Ok((passed, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_format_like_tachyon() {
        assert_eq!(format_bytes(0), "0.00B");
        assert_eq!(format_bytes(1536), "1.50KB");
        assert_eq!(format_bytes(3 << 30), "3.00GB");
        assert_eq!(format_time_ms(0), "01-01-1970 00:00:00:000");
        assert_eq!(format_time_ms(1_795_000_000_123), "11-18-2026 11:06:40:123");
        assert_eq!(format_time_ms(951_782_400_000), "02-29-2000 00:00:00:000");
    }

    #[test]
    fn test_bytes_are_deterministic_and_varied() {
        assert_eq!(test_bytes(64, 3), test_bytes(64, 3));
        assert_ne!(test_bytes(64, 3), test_bytes(64, 4));
        assert!(test_bytes(256, 1).iter().collect::<std::collections::BTreeSet<_>>().len() > 100);
    }
}
