//! The seam between the deterministic core and the machine: wall-clock time is only
//! read through [`Clock`]. In a `--cfg madsim` build the same code reads madsim's virtual
//! clock (madsim intercepts the system time), so simulated runs replay from a seed.

use std::sync::Arc;

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The process clock (virtual under madsim).
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned read of the wall clock
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A number unlikely to repeat across processes (client ids): the one sanctioned read of
/// randomness. std seeds it from the OS in a real process and from the run's seed under
/// madsim (each simulated run starts on a fresh thread), so simulated runs replay.
#[allow(clippy::disallowed_methods)] // the one sanctioned source of per-process randomness
pub fn unique_id() -> u64 {
    std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8)
}

/// Runs `f` on a thread where it may use the CPU or block for a while (decoding a journal
/// segment while the previous batch is applied, copying a block between a worker's tiers).
/// Under madsim it is an ordinary task, run when the caller next waits: the same work in a
/// replayable order.
#[allow(deprecated)] // madsim marks it deprecated because simulated code must not block; `f` only computes
pub fn spawn_compute<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(f)
}

/// The clock processes use unless a test injects another.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
