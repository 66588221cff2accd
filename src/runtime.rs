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
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// The clock processes use unless a test injects another.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
