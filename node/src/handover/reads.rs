//! The command pipeline's handover step: on the new owner, a keyed command on a
//! handed-over slot reads its missing keys through from the source first, its reads
//! are counted (local hit, read-through hit, miss) and its writes mark their keys as
//! written here (never to be read through again).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use ringcache_core::slot::Slot;
use ringcache_core::view::View;

use super::{Handover, Handovers, MAX_FETCH_KEYS};
use crate::store::Store;

/// Keys a command asked to read through, for the connection to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub handover: Arc<Handover>,
    pub keys: Vec<Bytes>,
}

/// What the pipeline does next about a handover.
#[derive(Debug)]
pub enum HandoverStep {
    /// Run the command now.
    Run,
    /// Do not run it yet (write no reply): fetch these keys, then run it again.
    ReadThrough(FetchRequest),
}

/// The kind of access a command makes to its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAccess {
    pub read: bool,
    pub write: bool,
}

impl Handovers {
    /// The handover step of a command whose `keys` all hash to `slot` (routing refused
    /// the rest), after routing and before its handler. `filled` holds the keys a
    /// read-through just filled when the command runs the second time; `can_fetch`
    /// says whether this connection can await a read-through (the proxy port cannot).
    #[allow(clippy::too_many_arguments)]
    pub fn before_command(
        &self,
        store: &Store,
        view: &View,
        slot: Slot,
        keys: &[&Bytes],
        access: KeyAccess,
        now: u64,
        filled: Option<&[Bytes]>,
        can_fetch: bool,
    ) -> HandoverStep {
        if !self.is_active() || keys.is_empty() {
            return HandoverStep::Run;
        }
        let Some(h) = self.for_slot(slot) else {
            return HandoverStep::Run;
        };
        if !view.is_primary(slot) {
            return HandoverStep::Run;
        }
        let present: Vec<bool> = {
            let mut locked = store.lock(slot);
            let mut s = locked.slot();
            keys.iter().map(|k| s.get(k, now).is_some()).collect()
        };
        if filled.is_none() && can_fetch {
            let mut missing: Vec<Bytes> = Vec::new();
            for (k, _) in keys.iter().zip(&present).filter(|(_, p)| !**p) {
                if missing.len() < MAX_FETCH_KEYS && !missing.contains(k) && h.allows_read_through(k) {
                    missing.push((*k).clone());
                }
            }
            if !missing.is_empty() {
                return HandoverStep::ReadThrough(FetchRequest {
                    handover: h,
                    keys: missing,
                });
            }
        }
        if access.read {
            let filled = filled.unwrap_or_default();
            for (k, p) in keys.iter().zip(&present) {
                let counter = match (p, filled.contains(k)) {
                    (true, true) => &h.read_through_hits,
                    (true, false) => &h.local_hits,
                    (false, _) => &h.misses,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        if access.write {
            for k in keys {
                h.mark_written(k);
            }
        }
        HandoverStep::Run
    }
}
