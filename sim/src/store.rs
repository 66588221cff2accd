//! A simulated shared journal store: an in-memory [`UnderFs`] every master of a simulated
//! cluster reaches, with latency on the virtual clock and injectable write errors.
//!
//! Durability is modelled: bytes a writer has written but not synced live only in the
//! writer (the writing node's memory), so a node killed before `sync` loses them, exactly the
//! window group commit must never acknowledge.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tachyon::underfs::{UfsWriter, UnderFs};

/// Shared files, by path.
#[derive(Clone, Default)]
pub struct SimStore {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    fail_writes: Arc<AtomicBool>,
    drop_syncs: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Up to 2 ms of virtual latency per operation, drawn from the simulation's seeded RNG.
async fn latency() {
    let micros = madsim::rand::random::<u64>() % 2000;
    madsim::time::sleep(Duration::from_micros(micros)).await;
}

impl SimStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every write and sync fail (a broken or full journal disk) until turned off.
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Makes `sync` report success while throwing the bytes away (a disk that lies about
    /// flushing), to prove the checkers catch lost acknowledgements.
    pub fn set_drop_syncs(&self, drop: bool) {
        self.drop_syncs.store(drop, Ordering::SeqCst);
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated journal store write error"));
        }
        Ok(())
    }
}

struct SimWriter {
    store: SimStore,
    path: String,
    unsynced: Vec<u8>,
}

#[async_trait]
impl UfsWriter for SimWriter {
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.store.check_writable()?;
        self.unsynced.extend_from_slice(data);
        Ok(())
    }

    async fn sync(&mut self) -> io::Result<()> {
        latency().await;
        self.store.check_writable()?;
        if self.store.drop_syncs.load(Ordering::SeqCst) {
            self.unsynced.clear();
            return Ok(());
        }
        let mut files = lock(&self.store.files);
        let file = files.get_mut(&self.path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file deleted while open"))?;
        file.append(&mut self.unsynced);
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> io::Result<()> {
        self.sync().await
    }
}

#[async_trait]
impl UnderFs for SimStore {
    fn describe(&self) -> String {
        "sim://journal".into()
    }

    async fn create(&self, path: &str) -> io::Result<Box<dyn UfsWriter>> {
        latency().await;
        self.check_writable()?;
        let mut files = lock(&self.files);
        if files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, path.to_string()));
        }
        files.insert(path.to_string(), Vec::new());
        Ok(Box::new(SimWriter { store: self.clone(), path: path.to_string(), unsynced: Vec::new() }))
    }

    async fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        latency().await;
        lock(&self.files).get(path).cloned().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.to_string()))
    }

    async fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        latency().await;
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let files = lock(&self.files);
        let mut names: Vec<String> = files
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .map(|k| k[prefix.len()..].split('/').next().unwrap_or_default().to_string())
            .collect();
        names.dedup();
        Ok(names)
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        latency().await;
        self.check_writable()?;
        let mut files = lock(&self.files);
        if files.contains_key(to) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, to.to_string()));
        }
        let data = files.remove(from).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        files.insert(to.to_string(), data);
        Ok(())
    }

    async fn delete(&self, path: &str) -> io::Result<()> {
        latency().await;
        lock(&self.files).remove(path);
        Ok(())
    }

    async fn mkdirs(&self, _path: &str) -> io::Result<()> {
        Ok(())
    }
}
