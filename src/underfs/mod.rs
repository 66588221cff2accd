//! Under-storage: where the journal (and later persisted file data) lives.
//!
//! Backends implement [`UnderFs`]; everything above uses the trait only, so the
//! simulator can swap in an in-memory store. Paths are relative to the backend's root
//! (e.g. the journal folder) and use `/` separators. Backends: [`local`] (also NFS and
//! GlusterFS mounts), `s3` (cargo feature `s3`) and `hdfs` (cargo feature `hdfs`); the
//! latter two are never compiled into the simulator.

#[cfg(all(feature = "hdfs", not(madsim)))]
pub mod hdfs;
pub mod local;
pub mod mounts;
#[cfg(all(feature = "s3", not(madsim)))]
pub mod s3;

use async_trait::async_trait;

pub use crate::core::namespace::UnderStorageEntry;
use std::io;
use std::sync::Arc;

/// A writable stream on under-storage, made durable by [`UfsWriter::sync`].
#[async_trait]
pub trait UfsWriter: Send {
    /// Appends bytes (buffered until `sync` on some backends).
    async fn write(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fsync, hsync, or an object upload).
    async fn sync(&mut self) -> io::Result<()>;
    /// Syncs and closes the stream.
    async fn close(self: Box<Self>) -> io::Result<()>;
}

/// A file system under tachyon: local disk (also NFS/GlusterFS mounts), HDFS, S3, or simulated.
#[async_trait]
pub trait UnderFs: Send + Sync + 'static {
    /// Where this under-storage is, for messages (never includes credentials).
    fn describe(&self) -> String;
    /// Creates a new file; fails with `AlreadyExists` if one is there.
    async fn create(&self, path: &str) -> io::Result<Box<dyn UfsWriter>>;
    /// Reads a whole file.
    async fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`; fewer only where the file ends. Backends override the
    /// default (read everything, keep the range) where they can read a range directly.
    async fn read_range(&self, path: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        Ok(slice_range(&self.read(path).await?, offset, len).to_vec())
    }

    /// Names (not paths) of the entries of a directory; empty if it does not exist.
    async fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// The entries of a directory with kind and length, sorted by name (for loading
    /// under-storage files into the namespace); empty if it does not exist.
    async fn list_status(&self, _dir: &str) -> io::Result<Vec<UnderStorageEntry>> {
        Err(io::Error::new(io::ErrorKind::Unsupported, format!("{}: listing with file status is not supported", self.describe())))
    }

    /// The length of the file at `path`; `None` if there is no file there (nothing, or a
    /// directory). The default lists the parent; backends override it with a single lookup.
    async fn file_length(&self, path: &str) -> io::Result<Option<u64>> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        Ok(self.list_status(dir).await?.into_iter().find(|e| e.name == name && !e.is_directory).map(|e| e.length))
    }

    /// Renames a file; the target must not exist.
    async fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Deletes a file; deleting a missing file is not an error.
    async fn delete(&self, path: &str) -> io::Result<()>;
    /// Creates a directory and its parents.
    async fn mkdirs(&self, path: &str) -> io::Result<()>;
    /// Removes an empty directory; a missing one is not an error, a non-empty one is.
    async fn delete_empty_dir(&self, path: &str) -> io::Result<()>;

    /// True if readers see what a writer synced while the file is still open. HDFS shows
    /// an open file's last block to no reader, so the journal completes an idle open segment
    /// there to let standbys follow.
    fn readers_see_open_files(&self) -> bool {
        true
    }

    /// Ends any other writer's hold on a file, so that everything it synced is readable
    /// and it can write no more where the backend can enforce that (HDFS lease recovery).
    /// A new journal leader seals its predecessor's open segment before reading it. A
    /// missing or already closed file is not an error. Backends whose readers always see
    /// synced bytes need nothing here.
    async fn seal(&self, _path: &str) -> io::Result<()> {
        Ok(())
    }

    /// Writes a whole file so that readers see either nothing or all of it.
    async fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let tmp = format!("{path}.tmp");
        self.delete(&tmp).await?;
        let mut w = self.create(&tmp).await?;
        w.write(data).await?;
        w.close().await?;
        self.delete(path).await?;
        self.rename(&tmp, path).await
    }
}

/// Deletes `dir` and everything below it (files first, then directories bottom-up), as
/// far as it can: each failure is skipped and the first is returned at the end. Listing
/// at most `max_entries` names in all bounds the walk.
pub async fn remove_tree(ufs: &dyn UnderFs, dir: &str, max_entries: usize) -> io::Result<()> {
    let mut dirs = vec![dir.trim_end_matches('/').to_string()];
    let mut files = Vec::new();
    let mut next = 0;
    while next < dirs.len() && dirs.len() + files.len() <= max_entries {
        let here = dirs[next].clone();
        next += 1;
        for e in ufs.list_status(&here).await? {
            let path = if here.is_empty() { e.name } else { format!("{here}/{}", e.name) };
            if e.is_directory {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut first_error = None;
    for path in files.iter().chain(dirs.iter().rev()) {
        let removed = if files.contains(path) { ufs.delete(path).await } else { ufs.delete_empty_dir(path).await };
        if let Err(e) = removed {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The part of `all` a range read of `len` bytes at `offset` returns: cut at the end.
pub(crate) fn slice_range(all: &[u8], offset: u64, len: u64) -> &[u8] {
    let start = (offset as usize).min(all.len());
    let end = (offset.saturating_add(len) as usize).min(all.len());
    &all[start..end]
}

/// What opening an under-storage may need besides its address: S3 endpoint and
/// credentials (from configuration; see [`UfsOptions::from_config`]).
#[derive(Clone, Debug, Default)]
pub struct UfsOptions {
    /// S3 endpoint, region, addressing style and credentials.
    #[cfg(all(feature = "s3", not(madsim)))]
    pub s3: s3::S3Options,
}

impl UfsOptions {
    /// Options from the configuration keys `tachyon.underfs.s3.*`, `s3a.accessKeyId` and
    /// `s3a.secretKey`, falling back to `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        #[cfg(all(feature = "s3", not(madsim)))]
        {
            use crate::config as c;
            let non_empty = |v: String| (!v.trim().is_empty()).then(|| v.trim().to_string());
            let env = |name: &str| std::env::var(name).ok().and_then(non_empty);
            UfsOptions {
                s3: s3::S3Options {
                    endpoint: non_empty(cfg.string(c::UNDERFS_S3_ENDPOINT)),
                    region: cfg.string(c::UNDERFS_S3_REGION),
                    path_style: cfg.bool(c::UNDERFS_S3_PATH_STYLE),
                    access_key: non_empty(cfg.string(c::S3_ACCESS_KEY)).or_else(|| env("AWS_ACCESS_KEY_ID")),
                    secret_key: non_empty(cfg.string(c::S3_SECRET_KEY)).or_else(|| env("AWS_SECRET_ACCESS_KEY")),
                },
            }
        }
        #[cfg(not(all(feature = "s3", not(madsim))))]
        {
            let _ = cfg;
            UfsOptions::default()
        }
    }
}

/// The configuration keys a mount may set for its own under-storage.
pub const MOUNT_OPTION_KEYS: &[&str] = &[
    crate::config::UNDERFS_S3_ENDPOINT,
    crate::config::UNDERFS_S3_REGION,
    crate::config::UNDERFS_S3_PATH_STYLE,
    crate::config::S3_ACCESS_KEY,
    crate::config::S3_SECRET_KEY,
];

impl UfsOptions {
    /// These options with a mount's own settings on top (keys of [`MOUNT_OPTION_KEYS`] or
    /// their aliases); an unknown key or a bad value is an error naming it. A mount never
    /// inherits this process's credentials: it has the ones its options give, or none (a
    /// mount of an attacker's endpoint must not receive the master's keys).
    pub fn with_mount_options(&self, options: &std::collections::BTreeMap<String, String>) -> Result<UfsOptions, String> {
        #[cfg_attr(not(all(feature = "s3", not(madsim))), allow(unused_mut))]
        let mut out = self.clone();
        #[cfg(all(feature = "s3", not(madsim)))]
        {
            out.s3.access_key = None;
            out.s3.secret_key = None;
        }
        for (key, value) in options {
            let canonical = crate::config::canonical_key(key);
            if !MOUNT_OPTION_KEYS.contains(&canonical.as_str()) {
                return Err(format!("{key} is not an under-storage setting a mount can take (use one of {})", MOUNT_OPTION_KEYS.join(", ")));
            }
            #[cfg(all(feature = "s3", not(madsim)))]
            {
                use crate::config as c;
                let value = value.trim().to_string();
                match canonical.as_str() {
                    c::UNDERFS_S3_ENDPOINT => out.s3.endpoint = Some(value).filter(|v| !v.is_empty()),
                    c::UNDERFS_S3_REGION => out.s3.region = value,
                    c::UNDERFS_S3_PATH_STYLE => {
                        out.s3.path_style = value.parse().map_err(|_| format!("{key}={value}: expected true or false"))?;
                    }
                    c::S3_ACCESS_KEY => out.s3.access_key = Some(value),
                    _ => out.s3.secret_key = Some(value),
                }
            }
            #[cfg(not(all(feature = "s3", not(madsim))))]
            let _ = value;
        }
        Ok(out)
    }
}

/// True if a mount of `uri` is allowed by `allowed` (URI prefixes, matched at a path
/// boundary: `s3://data/` allows `s3://data/x` but `s3://data` does not allow
/// `s3://database`); an empty list allows every URI. A `..` component is never allowed
/// (it would climb out of an allowed prefix).
pub fn mount_uri_allowed(uri: &str, allowed: &[String]) -> bool {
    let uri = uri.trim();
    if uri.split('/').any(|part| part == "..") {
        return false;
    }
    allowed.is_empty()
        || allowed
            .iter()
            .map(|a| a.trim())
            .filter(|a| !a.is_empty())
            .any(|prefix| uri == prefix.trim_end_matches('/') || uri.strip_prefix(prefix).is_some_and(|rest| prefix.ends_with('/') || rest.starts_with('/')))
}

/// Opens the under-storage named by a URI or local path (`/x`, `file:///x`, `s3://bucket/x`,
/// `hdfs://host:port/x`). A scheme this build lacks is an `Unsupported` error that says
/// which cargo feature adds it.
pub fn open(uri: &str, options: &UfsOptions) -> io::Result<Arc<dyn UnderFs>> {
    let _ = options;
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Arc::new(local::LocalUnderFs::new(path)));
    }
    if uri.starts_with('/') {
        return Ok(Arc::new(local::LocalUnderFs::new(uri)));
    }
    let scheme = uri.split("://").next().unwrap_or(uri);
    match scheme {
        #[cfg(all(feature = "s3", not(madsim)))]
        "s3" | "s3a" => return Ok(Arc::new(s3::S3UnderFs::new(uri, &options.s3)?)),
        #[cfg(all(feature = "hdfs", not(madsim)))]
        "hdfs" => return Ok(Arc::new(hdfs::HdfsUnderFs::new(uri)?)),
        _ => {}
    }
    let hint = match scheme {
        "s3" | "s3a" => " (build with `--features s3`; bin/tachyon does)",
        "hdfs" => " (build with `--features hdfs`; bin/tachyon does)",
        _ => "",
    };
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "under-storage scheme {scheme:?} of {uri:?} is not supported by this build{hint}; supported: local paths, file://{}{}",
            if cfg!(all(feature = "s3", not(madsim))) { ", s3://" } else { "" },
            if cfg!(all(feature = "hdfs", not(madsim))) { ", hdfs://" } else { "" }
        ),
    ))
}

/// The contract suite, public so integration tests can run it against real servers.
#[doc(hidden)]
pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_uris_are_allowed_by_prefix_at_a_path_boundary() {
        let allowed = vec!["s3://data/".to_string(), "/srv/shared".to_string(), "hdfs://nn:9000/warehouse".to_string()];
        for ok in ["s3://data/x", "s3://data/", "/srv/shared", "/srv/shared/a/b", "hdfs://nn:9000/warehouse/t"] {
            assert!(mount_uri_allowed(ok, &allowed), "{ok}");
        }
        for refused in ["s3://database/x", "/srv/shared2", "/etc", "hdfs://nn:9000/", "/srv/shared/../../etc", "s3://data/../other"] {
            assert!(!mount_uri_allowed(refused, &allowed), "{refused}");
        }
        assert!(mount_uri_allowed("/anything", &[]), "no list: anything (mounting is for superusers)");
        assert!(!mount_uri_allowed("/a/../etc", &[]), "never a climb");
    }

    #[cfg(all(feature = "s3", not(madsim)))]
    #[test]
    fn mounts_never_inherit_this_processes_credentials() {
        let mut base = UfsOptions::default();
        base.s3.access_key = Some("MASTER-KEY".into());
        base.s3.secret_key = Some("MASTER-SECRET".into());
        base.s3.endpoint = Some("http://127.0.0.1:9000".into());
        let bare = base.with_mount_options(&std::collections::BTreeMap::new()).unwrap();
        assert_eq!((bare.s3.access_key, bare.s3.secret_key), (None, None));
        assert_eq!(bare.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"), "settings that are not credentials carry over");
        let own = std::collections::BTreeMap::from([("s3a.accessKeyId".to_string(), "MINE".to_string()), ("s3a.secretKey".to_string(), "S".to_string())]);
        let given = base.with_mount_options(&own).unwrap();
        assert_eq!((given.s3.access_key.as_deref(), given.s3.secret_key.as_deref()), (Some("MINE"), Some("S")));
    }
}
