//! Deterministic simulation of tachyon: the production master, worker and client code on
//! madsim's simulated network and clock, with a simulated ZooKeeper ([`zk`], behind the same
//! `Coordinator` trait as the real one: [`coordinator`]) and a simulated shared journal store
//! ([`store`]). [`cluster`] builds clusters from a topology; [`scenario`] runs the fault
//! scenarios of `fault-scenarios/` and checks their invariants.
//!
//! Only meaningful in a `--cfg madsim` build: `cargo sim` (an alias) or the root crate's
//! `cargo test --features sim`, which re-runs cargo with that flag.

#![cfg(madsim)]

pub mod cluster;
pub mod coordinator;
pub mod history;
pub mod scenario;
pub mod store;
pub mod zk;
