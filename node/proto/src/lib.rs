//! ringcache-proto: the control API between the operator and the nodes (DESIGN.md §4).
//!
//! - `ringcache/control/v1/control.proto`: the service and its messages.
//! - [`pb`]: the generated prost messages, the tonic client (feature `client`) and
//!   server (feature `server`), checked in and regenerated with
//!   `cargo run -p ringcache-proto-codegen` (its test fails on drift).
//! - [`convert`]: wire ↔ [`ringcache_core`] types. Everything that comes off the wire is
//!   checked here, with errors that name the request field; the node's service and the
//!   operator only call these conversions.
//! - [`auth`]: the credential every control RPC carries.

pub mod auth;
pub mod convert;

/// Generated protobuf messages, client and server for `ringcache.control.v1`.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used, missing_docs, unreachable_pub)]
#[rustfmt::skip]
pub mod pb {
    include!("pb/ringcache.control.v1.rs");
}
