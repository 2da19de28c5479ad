//! Miss coalescing (stampede protection): the lease table that decides, for a GET
//! that missed, whether its client becomes the key's *filler* (it gets nil and the
//! lease: it is expected to query the origin and SET the key), waits for the filler's
//! write, or gets nil at once. Pure and clock-free: every call takes `now` (unix ms),
//! so the rules are property-tested below; `cmd/coalesce.rs` drives it from GET, the
//! pipeline tells it about writes, the connection about clients that leave.
//!
//! Rules, per key:
//! - At most one live lease. A lease lives `lease_ms` from its grant, until the key is
//!   written ([`Leases::written`]) or its filler leaves ([`Leases::release_client`]).
//! - A miss with no live lease grants one ([`Miss::Fill`]); the filler asking again
//!   gets `Fill` again, without a new grant.
//! - A miss while another client holds the lease waits ([`Miss::Wait`]) until the lease
//!   ends or the waiter's own `wait_ms` has passed, whichever is first; it is then
//!   asked again: a freed lease goes to the first waiter that asks, and a waiter past
//!   its `wait_ms` gets [`Miss::TimedOut`] (nil, no lease).
//! - At most `max_waiters` wait per key; one more gets [`Miss::TooManyWaiters`] (nil
//!   at once).

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

/// A connection's coalescing parameters (`RINGCACHE.COALESCE ON ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// How long a filler holds its lease, ms.
    pub lease_ms: u64,
    /// How long a reader waits at most, ms.
    pub wait_ms: u64,
    /// Readers that may wait per key.
    pub max_waiters: usize,
    /// Early refresh: a GET that hits a key expiring within this many ms, while nobody
    /// holds its lease, gets nil and the lease (it refreshes the key while the others
    /// still get the value). 0: off.
    pub early_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            lease_ms: 2000,
            wait_ms: 5000,
            max_waiters: 10_000,
            early_ms: 0,
        }
    }
}

/// What a GET that missed does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Reply nil: this client holds the key's lease (is the filler).
    Fill,
    /// Wait until this time (unix ms) or a write to the key, then ask again.
    Wait { until: u64 },
    /// Reply nil: the wait bound passed while another client still held the lease.
    TimedOut,
    /// Reply nil: too many clients already wait for this key.
    TooManyWaiters,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    filler: u64,
    expires: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct KeyState {
    lease: Option<Lease>,
    waiters: usize,
}

/// The leases and waiter counts of every key some coalescing reader missed.
#[derive(Debug, Default)]
pub struct Leases {
    keys: hashbrown::HashMap<Bytes, KeyState>,
    /// Size after the last sweep of ended leases: the next sweep runs at twice it.
    swept_at: usize,
}

impl Leases {
    /// Whether any key has a lease or a waiter (writes skip the table when not).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A coalescing GET of `key` by `client` missed. `waiting_since`: when this client
    /// started waiting for the key (`None` on its first ask); a first ask that is told
    /// to wait counts as a waiter until [`Leases::leave`].
    pub fn miss(&mut self, key: &Bytes, client: u64, now: u64, p: Params, waiting_since: Option<u64>) -> Miss {
        self.sweep(now);
        let st = self.keys.entry(key.clone()).or_default();
        match st.lease {
            Some(l) if l.expires > now && l.filler == client => return Miss::Fill,
            Some(l) if l.expires > now => {
                let deadline = waiting_since.unwrap_or(now).saturating_add(p.wait_ms);
                if waiting_since.is_none() {
                    if st.waiters >= p.max_waiters {
                        return Miss::TooManyWaiters;
                    }
                    if p.wait_ms == 0 {
                        return Miss::TimedOut;
                    }
                    st.waiters += 1;
                } else if now >= deadline {
                    return Miss::TimedOut;
                }
                return Miss::Wait {
                    until: l.expires.min(deadline),
                };
            }
            _ => {}
        }
        st.lease = Some(Lease {
            filler: client,
            expires: now.saturating_add(p.lease_ms.max(1)),
        });
        Miss::Fill
    }

    /// A GET of `key` by `client` hit a value about to expire: grants the lease (the
    /// client refreshes the key early) when no live lease is held; true if granted.
    pub fn refresh(&mut self, key: &Bytes, client: u64, now: u64, p: Params) -> bool {
        if self.filler(key, now).is_some() {
            return false;
        }
        self.sweep(now);
        self.keys.entry(key.clone()).or_default().lease = Some(Lease {
            filler: client,
            expires: now.saturating_add(p.lease_ms.max(1)),
        });
        true
    }

    /// A client that waited for `key` stopped waiting (served, timed out, became the
    /// filler or left).
    pub fn leave(&mut self, key: &[u8]) {
        if let Some(st) = self.keys.get_mut(key) {
            st.waiters = st.waiters.saturating_sub(1);
            if st.waiters == 0 && st.lease.is_none() {
                self.keys.remove(key);
            }
        }
    }

    /// `key` was written: its lease ends. Returns whether clients wait for it (they
    /// should all run their GET again).
    pub fn written(&mut self, key: &[u8]) -> bool {
        let Some(st) = self.keys.get_mut(key) else { return false };
        st.lease = None;
        let waiting = st.waiters > 0;
        if !waiting {
            self.keys.remove(key);
        }
        waiting
    }

    /// `client` left: the leases it held end. Returns those keys that have waiters
    /// (one of them should run its GET again and become the filler).
    pub fn release_client(&mut self, client: u64) -> Vec<Bytes> {
        let mut woken = Vec::new();
        self.keys.retain(|k, st| {
            if st.lease.is_some_and(|l| l.filler == client) {
                st.lease = None;
                if st.waiters > 0 {
                    woken.push(k.clone());
                }
            }
            st.lease.is_some() || st.waiters > 0
        });
        woken
    }

    /// The filler of `key` now, if a live lease is held.
    pub fn filler(&self, key: &[u8], now: u64) -> Option<u64> {
        let l = self.keys.get(key)?.lease?;
        (l.expires > now).then_some(l.filler)
    }

    /// Clients counted as waiting for `key`.
    pub fn waiters(&self, key: &[u8]) -> usize {
        self.keys.get(key).map_or(0, |s| s.waiters)
    }

    /// Drops ended leases of keys nobody waits for, when the table has doubled since
    /// the last sweep (amortised: a key missed once and never again is not kept).
    fn sweep(&mut self, now: u64) {
        if self.keys.len() < self.swept_at.max(64) * 2 {
            return;
        }
        self.keys.retain(|_, st| {
            if st.lease.is_some_and(|l| l.expires <= now) {
                st.lease = None;
            }
            st.lease.is_some() || st.waiters > 0
        });
        self.swept_at = self.keys.len();
    }
}

/// A connection's coalescing mode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As the node's `--coalesce-pattern`s say (no pattern: off).
    #[default]
    Default,
    /// `RINGCACHE.COALESCE ON`: every GET, with these parameters.
    On(Params),
    /// `RINGCACHE.COALESCE OFF`: no GET, whatever the patterns.
    Off,
}

/// A connection's coalescing state: its mode and the key it waits for.
#[derive(Debug, Default, Clone)]
pub struct ClientCoalesce {
    pub mode: Mode,
    /// The key this connection waits for and since when (unix ms), while its GET is
    /// blocked.
    pub waiting: Option<(Bytes, u64)>,
    /// Whether this connection was ever granted a lease (its leases end when it
    /// closes).
    pub filled: bool,
}

/// The node's lease table, shared by every connection, and its counters.
#[derive(Debug, Default)]
pub struct Coalescing {
    leases: Mutex<Leases>,
    /// `--coalesce-pattern`s: GETs of matching keys coalesce on connections in
    /// [`Mode::Default`], with the default [`Params`].
    pub patterns: Vec<Vec<u8>>,
    /// The parameters of pattern-coalesced GETs (`--coalesce-early-ms` sets `early_ms`).
    pub defaults: Params,
    /// Whether the table holds something (a lease, maybe ended, or a waiter): writes
    /// skip the lock when not. Set under the lock after every change.
    used: AtomicBool,
    pub stats: crate::metrics::CoalesceStats,
}

impl Coalescing {
    /// The parameters a GET of `key` coalesces with on a connection in `mode`; `None`
    /// when it does not coalesce.
    pub fn params_for(&self, mode: Mode, key: &[u8]) -> Option<Params> {
        match mode {
            Mode::On(p) => Some(p),
            Mode::Off => None,
            Mode::Default => self
                .patterns
                .iter()
                .any(|p| crate::util::glob::matches(p, key))
                .then_some(self.defaults),
        }
    }

    /// [`Leases::miss`], counted. A freshly granted lease counts as a filler; a first
    /// ask told to wait as a coalesced reader.
    pub fn miss(&self, key: &Bytes, client: u64, now: u64, p: Params, waiting_since: Option<u64>) -> Miss {
        let mut leases = self.leases.lock();
        let held = leases.filler(key, now) == Some(client);
        let m = leases.miss(key, client, now, p, waiting_since);
        self.settle(&leases);
        let counter = match m {
            Miss::Fill if held => None,
            Miss::Fill => Some(&self.stats.fillers),
            Miss::Wait { .. } if waiting_since.is_none() => Some(&self.stats.coalesced),
            Miss::Wait { .. } => None,
            Miss::TimedOut => Some(&self.stats.wait_timeouts),
            Miss::TooManyWaiters => Some(&self.stats.too_many_waiters),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        m
    }

    /// [`Leases::refresh`], counted.
    pub fn refresh(&self, key: &Bytes, client: u64, now: u64, p: Params) -> bool {
        let mut leases = self.leases.lock();
        let granted = leases.refresh(key, client, now, p);
        self.settle(&leases);
        if granted {
            self.stats.early_refreshes.fetch_add(1, Ordering::Relaxed);
        }
        granted
    }

    /// [`Leases::leave`].
    pub fn leave(&self, key: &[u8]) {
        let mut leases = self.leases.lock();
        leases.leave(key);
        self.settle(&leases);
    }

    /// [`Leases::written`]; false at the cost of one atomic load while the table is
    /// empty. (A GET that put something there did so under the key's slot lock, which
    /// a write of the key takes after it: the write then sees the flag.)
    pub fn written(&self, key: &[u8]) -> bool {
        if !self.used.load(Ordering::Acquire) {
            return false;
        }
        let mut leases = self.leases.lock();
        let waiting = leases.written(key);
        self.settle(&leases);
        waiting
    }

    /// [`Leases::release_client`].
    pub fn release_client(&self, client: u64) -> Vec<Bytes> {
        let mut leases = self.leases.lock();
        let woken = leases.release_client(client);
        self.settle(&leases);
        woken
    }

    fn settle(&self, leases: &Leases) {
        self.used.store(!leases.is_empty(), Ordering::Release);
    }

    /// [`Leases::filler`].
    pub fn filler(&self, key: &[u8], now: u64) -> Option<u64> {
        self.leases.lock().filler(key, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: Params = Params {
        lease_ms: 100,
        wait_ms: 250,
        max_waiters: 3,
        early_ms: 0,
    };

    fn k(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn first_miss_fills_the_rest_wait_and_a_write_releases_them() {
        let mut l = Leases::default();
        assert_eq!(l.miss(&k("a"), 1, 1000, P, None), Miss::Fill);
        assert_eq!(l.miss(&k("a"), 1, 1010, P, None), Miss::Fill);
        assert_eq!(l.miss(&k("a"), 2, 1010, P, None), Miss::Wait { until: 1100 });
        assert_eq!(l.filler(b"a", 1050), Some(1));
        assert!(l.written(b"a"));
        assert_eq!(l.filler(b"a", 1050), None);
        l.leave(b"a");
        assert!(l.is_empty());
        assert!(!l.written(b"a"));
    }

    #[test]
    fn an_ended_lease_goes_to_the_next_waiter_and_waiters_are_bounded() {
        let mut l = Leases::default();
        assert_eq!(l.miss(&k("a"), 1, 0, P, None), Miss::Fill);
        for c in 2..5 {
            assert!(matches!(l.miss(&k("a"), c, 10, P, None), Miss::Wait { .. }));
        }
        assert_eq!(l.miss(&k("a"), 9, 10, P, None), Miss::TooManyWaiters);
        // The lease expires at 100: the first waiter to ask fills, the others wait on.
        assert_eq!(l.miss(&k("a"), 3, 100, P, Some(10)), Miss::Fill);
        l.leave(b"a");
        assert_eq!(l.miss(&k("a"), 2, 100, P, Some(10)), Miss::Wait { until: 200 });
        // The filler leaves: its lease ends, and the key has waiters to wake.
        assert_eq!(l.release_client(3), vec![k("a")]);
        assert_eq!(l.miss(&k("a"), 4, 200, P, Some(10)), Miss::Fill);
        l.leave(b"a");
        // Past its own wait bound, a waiter gives up while the lease is held.
        assert_eq!(l.miss(&k("a"), 2, 260, P, Some(10)), Miss::TimedOut);
        l.leave(b"a");
        assert_eq!(l.waiters(b"a"), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A client asks (first ask or again, as its state says).
        Ask(u64),
        Write,
        /// A client hits the key's value near its expiry: a lease grant, as for a miss,
        /// but only when no live lease is held.
        Early(u64),
        Leave(u64),
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..6).prop_map(Op::Ask),
            1 => Just(Op::Write),
            1 => (0u64..6).prop_map(Op::Early),
            1 => (0u64..6).prop_map(Op::Leave),
            2 => (1u64..80).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Clients asking for one key, writes, departures and time passing: at most one
        /// live filler; a waiter is told to wait only while someone else holds a live
        /// lease, never past its bound; the waiter count matches the clients waiting;
        /// and once everyone keeps asking, each ends with a value, a lease or a timeout.
        #[test]
        fn leases_hold_their_rules(ops in proptest::collection::vec(op(), 0..300)) {
            let mut l = Leases::default();
            let key = k("hot");
            let mut now = 0u64;
            // Per client: Some(since) while waiting.
            let mut waiting: [Option<u64>; 6] = [None; 6];
            let mut written = false;
            for op in ops {
                match op {
                    Op::Tick(d) => now += d,
                    Op::Write => {
                        let has = l.written(&key);
                        prop_assert_eq!(has, waiting.iter().any(Option::is_some));
                        written = true;
                    }
                    Op::Early(c) => {
                        if waiting[c as usize].is_some() {
                            continue;
                        }
                        let before = l.filler(&key, now);
                        let granted = l.refresh(&key, c, now, P);
                        prop_assert_eq!(granted, before.is_none());
                        if granted {
                            prop_assert_eq!(l.filler(&key, now), Some(c));
                        }
                    }
                    Op::Leave(c) => {
                        if waiting[c as usize].take().is_some() {
                            l.leave(&key);
                        }
                        l.release_client(c);
                    }
                    Op::Ask(c) => {
                        if written {
                            // The value is there: a waiter is served.
                            if waiting[c as usize].take().is_some() {
                                l.leave(&key);
                            }
                            continue;
                        }
                        let since = waiting[c as usize];
                        let before = l.filler(&key, now);
                        match l.miss(&key, c, now, P, since) {
                            Miss::Fill => {
                                prop_assert!(before.is_none() || before == Some(c));
                                prop_assert_eq!(l.filler(&key, now), Some(c));
                                if waiting[c as usize].take().is_some() {
                                    l.leave(&key);
                                }
                            }
                            Miss::Wait { until } => {
                                let f = before.expect("a wait needs a live lease");
                                prop_assert_ne!(f, c);
                                prop_assert!(until > now);
                                prop_assert!(until <= since.unwrap_or(now) + P.wait_ms);
                                waiting[c as usize].get_or_insert(now);
                            }
                            Miss::TimedOut => {
                                prop_assert!(now >= since.expect("only a waiter times out") + P.wait_ms);
                                waiting[c as usize] = None;
                                l.leave(&key);
                            }
                            Miss::TooManyWaiters => {
                                prop_assert!(since.is_none());
                                prop_assert_eq!(l.waiters(&key), P.max_waiters);
                            }
                        }
                    }
                }
                prop_assert_eq!(l.waiters(&key), waiting.iter().filter(|w| w.is_some()).count());
                if let Some(f) = l.filler(&key, now) {
                    prop_assert!(waiting[f as usize].is_none(), "the filler does not wait");
                }
            }
            // Liveness: with no write, every waiter asking again as time passes ends
            // by filling or timing out, within its wait bound.
            if !written {
                for _ in 0..10 {
                    now += P.lease_ms.min(P.wait_ms);
                    for (c, w) in waiting.iter_mut().enumerate() {
                        if let Some(since) = *w {
                            match l.miss(&key, c as u64, now, P, Some(since)) {
                                Miss::Wait { .. } => {}
                                _ => {
                                    *w = None;
                                    l.leave(&key);
                                }
                            }
                        }
                    }
                }
                prop_assert!(waiting.iter().all(Option::is_none));
            }
            // A lease expires: later, someone else fills.
            let later = now + P.lease_ms;
            if !written {
                prop_assert!(l.filler(&key, later).is_none());
            }
        }
    }
}
