//! Process metrics in the Prometheus model (`prometheus` crate, default registry), served as
//! text on `/metrics` by the web UI. Recording is cheap and free of IO; durations come from
//! tokio's clock (virtual under simulation).

// The `prometheus` registration macros build (empty) const-label HashMaps; the text encoder
// sorts what it writes, so no iteration order leaks.
#![allow(clippy::disallowed_types)]

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec, Histogram, HistogramVec, IntCounter, IntCounterVec,
};

/// Client RPCs answered by masters, by operation and result.
pub static MASTER_OPERATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("tachyon_master_operations_total", "Client operations answered, by type and result", &["op", "result"])
        .expect("metric registers once")
});

/// Master RPC latency by operation.
pub static MASTER_RPC_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tachyon_master_rpc_duration_seconds",
        "Master RPC latency by operation",
        &["op"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]
    )
    .expect("metric registers once")
});

/// Journal write + sync latency of one group-commit batch.
pub static JOURNAL_FLUSH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tachyon_journal_flush_duration_seconds",
        "Journal write + sync latency of one group-commit batch",
        vec![0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0]
    )
    .expect("metric registers once")
});

/// Operations per group-commit batch.
pub static JOURNAL_BATCH_OPERATIONS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tachyon_journal_batch_operations",
        "Operations written with one journal sync",
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0]
    )
    .expect("metric registers once")
});

/// Times this master became leader.
pub static LEADER_TERMS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("tachyon_master_leader_terms_total", "Times this master took over as leader (failovers to it)").expect("metric registers once")
});

/// Bytes a worker stored and served, by tier and direction.
pub static WORKER_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("tachyon_worker_bytes_total", "Block bytes written to and read from a worker, by tier", &["tier", "direction"])
        .expect("metric registers once")
});

/// Blocks a worker moved between its tiers (down to make room, up when read).
pub static WORKER_TIER_MOVES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("tachyon_worker_tier_moves_total", "Blocks moved between a worker's storage tiers", &["from", "to"])
        .expect("metric registers once")
});

/// The default registry in Prometheus text format.
pub fn gather_text() -> String {
    let mut buf = Vec::new();
    // Encoding to a Vec cannot fail for well-formed metric families.
    let _ = prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &prometheus::gather(), &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
