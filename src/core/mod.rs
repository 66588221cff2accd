//! The sans-IO core: pure state machines with no IO, clock or randomness.
//! Events and `now_ms` go in, effects come out. Async services in `master`, `worker`
//! and `client` only drive them.

pub mod intents;
pub mod namespace;
pub mod path;
pub mod permission;
pub mod registry;
pub mod requests;
pub mod role;
pub mod tiers;
