//! ringcache-node: a Redis-compatible, multi-core cache engine.
//!
//! Layers, from the bottom up; a module imports only from its own layer or the ones
//! below (`tests/layers.rs` reads the `use crate::…` lines and fails otherwise; the
//! table it checks is [`LAYERS`]). Below them all are the pure crates `ringcache_core`
//! (slots, topology, placement, the handover plan) and `ringcache_proto` (the control
//! API).
//!
//! | layer | modules | what they own |
//! |---|---|---|
//! | base | [`util`], [`resp`] | glob matching; RESP2/RESP3 frames, parse and encode |
//! | store | [`store`] | per-slot tables, memory accounting, eviction, expiry |
//! | domain | [`access`], [`cluster`], [`fence`], [`replication`], [`handover`], [`metrics`], [`blocking`], [`hotkeys`], [`coalesce`] | password and limits; this node's view and lease; fenced changes of primary; replication streams; slot handovers; counters and their Prometheus text; clients waiting for keys to be written; the hot-key sketches; miss coalescing's lease table |
//! | state | [`state`], [`tracking`] | what every connection shares and what one connection holds; client-side caching's tracking tables and Pub/Sub, and the pushes they send |
//! | commands | [`cmd`] | the command pipeline (routes once, returns what the connection does next) and one file per command family |
//! | adapters | [`server`], [`proxy`], [`control`], [`admin`] | the RESP port, the proxy port, the gRPC control port, the HTTP admin port |
//! | launch | [`config`], [`launch`] | flags, starting and stopping a node |

pub mod access;
pub mod admin;
pub mod blocking;
pub mod cluster;
pub mod cmd;
pub mod coalesce;
pub mod config;
pub mod control;
pub mod fence;
pub mod handover;
pub mod hotkeys;
pub mod launch;
pub mod metrics;
pub mod proxy;
pub mod replication;
pub mod resp;
pub mod server;
pub mod state;
pub mod store;
pub mod tracking;
pub mod util;

/// The layers, bottom first: each module's name and the layer it is in. A module may
/// import (`use crate::x`) only modules of its own layer or a lower one.
pub const LAYERS: &[&[&str]] = &[
    &["util", "resp"],
    &["store"],
    &[
        "access",
        "cluster",
        "fence",
        "replication",
        "handover",
        "metrics",
        "blocking",
        "hotkeys",
        "coalesce",
    ],
    &["state", "tracking"],
    &["cmd"],
    &["server", "proxy", "control", "admin"],
    &["config", "launch"],
];
