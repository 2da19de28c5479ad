//! Handover of hash slots from an old owner (the *source*) to a new owner, with
//! warm-up (DESIGN.md §6). A controller drives it with topologies and three RPCs:
//!
//! 1. **Copy.** An epoch where the new owner is an extra replica of the moving slots:
//!    replication copies them (hottest keys first, see
//!    [`crate::replication::primary`]) and then streams every write.
//! 2. **Flip with read-through.** `BeginHandover` on the new owner (it tells the
//!    source to *retain* the slots, see below), then an epoch where the new owner is
//!    primary of the slots. While the handover is active, a keyed command on the new
//!    owner whose key is missing locally reads the key's record from the source
//!    (`RINGCACHE.FETCH`, the record format replication uses), fills the local store
//!    and runs against it. The fetch is a connection-loop step ([`ClientHandover`]):
//!    the command pipeline's handover step ([`Handovers::before_command`]) asks for
//!    the keys, the connection awaits them (bounded by [`fetch::FETCH_TIMEOUT`]),
//!    applies them and runs the command again; an unreachable source is a miss. Writes read through too (so `INCR`, `APPEND`,
//!    `HSET` start from the source's value). A key written or deleted on the new owner
//!    since `BeginHandover` is never read through ([`written::WrittenKeys`], bounded;
//!    when full, or after a `FLUSHALL`, the handover stops reading through and says
//!    so in its status). `AdvanceHandover` adds slots (the next stage);
//!    `CompleteHandover` ends read-through and returns the final counters.
//!    After a copy, the controller applies the flip epoch on the old owners first,
//!    then on the new owner, which answers -TRYAGAIN on the flipped slots until each
//!    old owner's fence arrived ([`crate::fence`]): a write an old owner acknowledged
//!    just before the flip then cannot be missing from (or older on) the new owner,
//!    which read-through would not repair since the key is present there.
//! 3. **Counters** per handover ([`HandoverStatus`]), in `GetStatus` and
//!    `/metrics`: reads served while this node is primary of a handed-over slot count
//!    as local hits, read-through hits or misses; the controller gates stages on
//!    (local + read-through hits) / all.
//!
//! **Cleanup.** A node drops the keys of slots it no longer holds (neither primary
//! nor replica) in its newest topology ([`cleanup`], bounded batches), except slots a
//! handover *retains* on it as a source (`RINGCACHE.RETAIN` from the new owner at
//! Begin/Advance, `RINGCACHE.RELEASE` at Complete), so read-through keeps working when
//! the flip epoch drops the source from the slots.
//!
//! **No ASK/ASKING.** Ownership of a stage's slots flips atomically by epoch, not key
//! by key, so there is no window where a key may live on either node from the
//! client's point of view: a client with a stale map gets `-MOVED` from the source
//! and the new owner finds missing keys itself by read-through.
//!
//! Known limits:
//! - If the flip epoch keeps the source as a *replica* of the slots, replication gives
//!   the source a full copy from the new owner, which first empties those slots on the
//!   source: read-through then only finds keys the new owner already had. So a flip
//!   without (or with an unfinished) copy must drop the source from the slots.
//! - `BeginHandover` / `AdvanceHandover` must come before the epoch that flips their
//!   slots: writes made here before a slot joins a handover are not in its
//!   written-keys set, so a key deleted here earlier could be read through again.
//! - Only keyed commands read through; key enumeration (`SCAN`, `KEYS`, `DBSIZE`,
//!   `CLUSTER COUNTKEYSINSLOT`) shows local keys only.
//! - Commands the proxy port runs locally read through like the RESP port's.
//!
//! Files: [`active`] one handover (slots, written keys, counters, pooled connections),
//! [`registry`] every handover of this node and the slots it retains, [`reads`] the
//! command step, [`fetch`] the read-through I/O, [`written`] the written-keys set,
//! [`cleanup`] dropping slots this node no longer holds.
//! - A read-through blocks its connection (not the worker) for up to
//!   [`fetch::FETCH_TIMEOUT`]; pipelined commands behind it wait, in order.
//! - Retain/release are best effort: an unreachable source at Begin is logged, not
//!   refused, and a source that restarts forgets what it retained.
//! - Handover state is in memory only; a restart of the new owner ends it.

mod active;
pub mod cleanup;
pub mod fetch;
mod reads;
mod registry;
pub mod written;

pub use active::Handover;
pub use reads::{FetchRequest, HandoverStep, KeyAccess};
pub use registry::Handovers;

use ringcache_core::slot::Slot;

/// Most handovers active on one node at once.
pub const MAX_HANDOVERS: usize = 64;
/// Most keys one command reads through.
pub const MAX_FETCH_KEYS: usize = 64;
/// Default cap of a handover's written-keys set (keys and bytes).
pub const WRITTEN_MAX_KEYS: usize = 256 * 1024;
pub const WRITTEN_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Why a handover request was refused (its input was checked off the wire already,
/// see `ringcache_proto::convert`). Messages name the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoverError {
    #[error("source_node_id: {0:?} is this node")]
    SourceIsSelf(String),
    #[error("cluster mode is not enabled on this node")]
    NotClusterMode,
    #[error("this node has no topology yet")]
    NoTopology,
    #[error("slots: slot {slot} has primary {primary:?}, neither the source {source_id:?} nor this node")]
    NotOwned {
        slot: Slot,
        primary: String,
        source_id: String,
    },
    #[error("slots: slot {slot} is already in handover {other:?}")]
    Overlap { slot: Slot, other: String },
    #[error("handover_id: {0:?} already exists")]
    AlreadyExists(String),
    #[error("handover_id: no active handover {0:?}")]
    NotFound(String),
    #[error("at most {MAX_HANDOVERS} handovers may be active")]
    TooMany,
}
