//! ringcache-node: a Redis-compatible, multi-core cache engine.
//!
//! Layers, from the socket inwards (one layer per module):
//! `server` (listeners, connections, shutdown) → `resp` (frames) → `cmd` (one file per
//! command family) → `store` (per-slot tables, memory accounting, eviction, expiry).
//! `cluster` holds slot hashing, topology and placement; `admin` the HTTP port.

pub mod admin;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod control;
pub mod handover;
pub mod launch;
pub mod metrics;
pub mod proxy;
pub mod replication;
pub mod resp;
pub mod server;
pub mod store;
pub mod util;
