//! tachyon: a fault-tolerant, memory-speed distributed file system (Tachyon/Alluxio in Rust).
//!
//! See `ARCHITECTURE.md` for the codemap. In short: [`core`] holds the pure state machines,
//! [`journal`] and [`underfs`] the durable storage, [`master`], [`worker`] and [`client`] the
//! async services that drive them.

pub mod bench;
pub mod client;
pub mod config;
pub mod coordinator;
pub mod core;
pub mod error;
#[cfg(not(madsim))]
pub mod fuse;
pub mod journal;
pub mod master;
pub mod metrics;
#[cfg(all(feature = "proxy", not(madsim)))]
pub mod proxy;
pub mod rpc;
pub mod runtime;
pub mod security;
pub mod shell;
#[cfg(not(madsim))]
pub mod startup;
pub mod tls;
pub mod underfs;
pub mod watch;
#[cfg(not(madsim))]
pub mod web;
pub mod worker;

/// Generated protobuf messages and gRPC services (`proto/tachyon.proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("tachyon");
}
