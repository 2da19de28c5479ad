//! ringcache-operator: runs `CacheCluster` resources as sharded, replicated ringcache-node pods.

pub mod config;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod nodes;
pub mod plan;
pub mod reconcile;
pub mod run;

pub use run::{run, RunError};
