//! Server-assisted client-side caching (CLIENT TRACKING) and the Pub/Sub it rides on,
//! with Redis 7.0's semantics: what each client may have cached, and the messages
//! (pushes) that tell it to forget.
//!
//! - Default mode: after a read-only command, its keys are remembered for the client
//!   (with OPTIN only after `CLIENT CACHING yes`, with OPTOUT unless `CLIENT CACHING
//!   no`); the first write of such a key sends `invalidate [key]` to every client that
//!   read it, once, and forgets them.
//! - BCAST: a client gets an invalidation for every written key under one of its
//!   prefixes (all keys without PREFIX), whether it read the key or not.
//! - NOLOOP: no invalidation for a client's own writes. A flush invalidates everything
//!   (`invalidate` with a null).
//! - Delivery: a RESP3 connection gets `>2 invalidate <keys>` pushes; with REDIRECT
//!   they go to another connection, which in RESP2 receives them as Pub/Sub messages on
//!   `__redis__:invalidate` once it has subscribed to it.
//!
//! Every connection has an inbox (an unbounded channel its loop drains between
//! batches); this module sends to inboxes and never writes to sockets. One mutex
//! guards the tables; nothing here runs unless some client tracks or subscribes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ringcache_core::slotset::SlotSet;
use tokio::sync::mpsc::UnboundedSender;

use crate::resp::Out;

/// The Pub/Sub channel RESP2 clients subscribe to for redirected invalidations.
pub const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";

/// A message for a connection, encoded by the receiving connection for its protocol.
#[derive(Debug, Clone)]
pub enum Push {
    /// Forget these keys (`None`: every key, after a flush).
    Invalidate(Option<Arc<[Bytes]>>),
    /// A PUBLISH to a channel the connection subscribed to.
    Message { channel: Bytes, payload: Bytes },
    /// The connection invalidations were redirected to has gone (RESP3 only).
    RedirectBroken(u64),
}

impl Push {
    /// Appends this push in the receiving connection's protocol; RESP2 connections get
    /// only what Pub/Sub can carry (`subscribed`: the connection is in Pub/Sub mode).
    pub fn encode(&self, out: &mut Out, subscribed_to_invalidations: bool) {
        let keys = |out: &mut Out, keys: &Option<Arc<[Bytes]>>| match keys {
            Some(keys) => {
                out.array(keys.len());
                for k in keys.iter() {
                    out.bulk(k);
                }
            }
            None => out.null(),
        };
        match self {
            Push::Invalidate(k) if out.resp3 => {
                out.push(2);
                out.bulk(b"invalidate");
                keys(out, k);
            }
            Push::Invalidate(k) if subscribed_to_invalidations => {
                out.array(3);
                out.bulk(b"message");
                out.bulk(INVALIDATE_CHANNEL);
                keys(out, k);
            }
            Push::Invalidate(_) => {}
            Push::Message { channel, payload } => {
                if out.resp3 {
                    out.push(3);
                } else {
                    out.array(3);
                }
                out.bulk(b"message");
                out.bulk(channel);
                out.bulk(payload);
            }
            Push::RedirectBroken(id) if out.resp3 => {
                out.push(2);
                out.bulk(b"tracking-redir-broken");
                out.int(*id as i64);
            }
            Push::RedirectBroken(_) => {}
        }
    }
}

/// A client's tracking options (`CLIENT TRACKING on ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mode {
    /// Client id invalidations go to instead (0: this client).
    pub redirect: u64,
    pub bcast: bool,
    pub prefixes: Vec<Bytes>,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every connection's inbox, by client id.
    inboxes: HashMap<u64, UnboundedSender<Push>>,
    /// Tracking clients and their options.
    trackers: HashMap<u64, Mode>,
    /// Default mode: key → clients that may have it cached.
    keys: HashMap<Bytes, HashSet<u64>>,
    /// Pub/Sub: channel → subscribed clients.
    channels: HashMap<Bytes, HashSet<u64>>,
}

/// Tracking and Pub/Sub state of one node.
#[derive(Debug, Default)]
pub struct Tracking {
    /// Some client tracks keys (the check every command makes first).
    active: AtomicBool,
    inner: Mutex<Inner>,
}

impl Tracking {
    /// Whether any client tracks keys.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// A new connection's inbox.
    pub fn open(&self, id: u64, inbox: UnboundedSender<Push>) {
        self.inner.lock().inboxes.insert(id, inbox);
    }

    /// A connection ended: its inbox, tracking and subscriptions go.
    pub fn close(&self, id: u64) {
        let mut g = self.inner.lock();
        g.inboxes.remove(&id);
        g.trackers.remove(&id);
        g.channels.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
        self.active.store(!g.trackers.is_empty(), Ordering::Relaxed);
    }

    /// Whether client `id` exists (has an inbox).
    pub fn exists(&self, id: u64) -> bool {
        self.inner.lock().inboxes.contains_key(&id)
    }

    /// Starts (or changes) tracking for client `id`.
    pub fn enable(&self, id: u64, mode: Mode) {
        let mut g = self.inner.lock();
        g.trackers.insert(id, mode);
        self.active.store(true, Ordering::Relaxed);
    }

    /// Stops tracking for client `id`.
    pub fn disable(&self, id: u64) {
        let mut g = self.inner.lock();
        g.trackers.remove(&id);
        self.active.store(!g.trackers.is_empty(), Ordering::Relaxed);
    }

    /// Client `id` read `keys` (default mode).
    pub fn remember<'k>(&self, id: u64, keys: impl Iterator<Item = &'k Bytes>) {
        let mut g = self.inner.lock();
        for k in keys {
            g.keys.entry(k.clone()).or_default().insert(id);
        }
    }

    /// Sends `push` on behalf of tracking client `id` (to its redirect target if it
    /// has one). A redirect to a connection that has gone tells the client once.
    fn deliver(g: &Inner, id: u64, mode: &Mode, push: Push) {
        let target = if mode.redirect != 0 { mode.redirect } else { id };
        match g.inboxes.get(&target) {
            Some(inbox) => {
                let _ = inbox.send(push);
            }
            None => {
                if let Some(inbox) = g.inboxes.get(&id) {
                    let _ = inbox.send(Push::RedirectBroken(mode.redirect));
                }
            }
        }
    }

    /// `keys` were written by client `writer` (0: by the node itself, e.g. a replicated
    /// write): invalidates them for every client that may have them cached.
    pub fn invalidate<'k>(&self, writer: u64, keys: impl Iterator<Item = &'k Bytes>) {
        let mut g = self.inner.lock();
        let keys: Vec<Bytes> = keys.cloned().collect();
        // Default mode: per client, the keys it read.
        let mut per_client: HashMap<u64, Vec<Bytes>> = HashMap::new();
        for k in &keys {
            if let Some(ids) = g.keys.remove(k) {
                for id in ids {
                    per_client.entry(id).or_default().push(k.clone());
                }
            }
        }
        // BCAST: per client, the keys under its prefixes.
        for (&id, mode) in &g.trackers {
            if !mode.bcast {
                continue;
            }
            let hit: Vec<Bytes> = keys
                .iter()
                .filter(|k| mode.prefixes.is_empty() || mode.prefixes.iter().any(|p| k.starts_with(p)))
                .cloned()
                .collect();
            if !hit.is_empty() {
                per_client.entry(id).or_default().extend(hit);
            }
        }
        for (id, keys) in per_client {
            let Some(mode) = g.trackers.get(&id) else { continue };
            if mode.noloop && id == writer {
                continue;
            }
            Self::deliver(&g, id, mode, Push::Invalidate(Some(keys.into())));
        }
    }

    /// This node stopped serving the slots `lost` (a handover moved them, a failover
    /// demoted it): later writes of their keys happen elsewhere and could not be
    /// invalidated from here, so every key of them a client read is invalidated now,
    /// and BCAST clients (whose keys are not known) forget everything.
    pub fn lose_slots(&self, lost: &ringcache_core::slotset::SlotSet) {
        let mut g = self.inner.lock();
        let keys: Vec<Bytes> = g
            .keys
            .keys()
            .filter(|k| lost.contains(ringcache_core::slot::key_slot(k)))
            .cloned()
            .collect();
        drop(g);
        self.invalidate(0, keys.iter());
        g = self.inner.lock();
        for (&id, mode) in &g.trackers {
            if mode.bcast {
                Self::deliver(&g, id, mode, Push::Invalidate(None));
            }
        }
    }

    /// The keyspace was emptied: every tracking client forgets everything.
    pub fn flush(&self, writer: u64) {
        let mut g = self.inner.lock();
        g.keys.clear();
        for (&id, mode) in &g.trackers {
            if mode.noloop && id == writer {
                continue;
            }
            Self::deliver(&g, id, mode, Push::Invalidate(None));
        }
    }

    /// Subscribes client `id` to `channel`; returns whether it was new.
    pub fn subscribe(&self, id: u64, channel: &Bytes) -> bool {
        self.inner
            .lock()
            .channels
            .entry(channel.clone())
            .or_default()
            .insert(id)
    }

    /// Unsubscribes client `id` from `channel`; returns whether it was subscribed.
    pub fn unsubscribe(&self, id: u64, channel: &[u8]) -> bool {
        let mut g = self.inner.lock();
        let Some(ids) = g.channels.get_mut(channel) else {
            return false;
        };
        let was = ids.remove(&id);
        if ids.is_empty() {
            g.channels.remove(channel);
        }
        was
    }

    /// Sends `payload` to the subscribers of `channel`; returns how many there are.
    pub fn publish(&self, channel: &Bytes, payload: &Bytes) -> usize {
        let g = self.inner.lock();
        let Some(ids) = g.channels.get(channel) else {
            return 0;
        };
        for id in ids {
            if let Some(inbox) = g.inboxes.get(id) {
                let _ = inbox.send(Push::Message {
                    channel: channel.clone(),
                    payload: payload.clone(),
                });
            }
        }
        ids.len()
    }
}

/// How often expired and evicted keys are turned into invalidations.
pub const FORWARD_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Starts the thread that invalidates, for tracking clients, the keys the store
/// removed on its own (expiry, eviction), as Redis does when it deletes them. While no
/// client tracks, the store does not collect them. Ends when `state` or `store` goes.
pub fn spawn_forwarder(
    store: &std::sync::Arc<crate::store::Store>,
    state: &std::sync::Arc<crate::state::ServerState>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (store, state) = (std::sync::Arc::downgrade(store), std::sync::Arc::downgrade(state));
    std::thread::Builder::new()
        .name("tracking-forwarder".into())
        .spawn(move || {
            // The slots this node was primary for, as of the last topology seen.
            let mut serving: Option<(u64, SlotSet)> = None;
            loop {
                std::thread::sleep(FORWARD_EVERY);
                let (Some(store), Some(state)) = (store.upgrade(), state.upgrade()) else {
                    return;
                };
                let tracking = &state.tracking;
                let active = tracking.active();
                store.removals.on.store(active, Ordering::Relaxed);
                let removed = store.removals.take();
                if active && !removed.is_empty() {
                    let keys: Vec<Bytes> = removed.into_iter().map(Bytes::from).collect();
                    tracking.invalidate(0, keys.iter());
                }
                if let Some(view) = state.cluster.view() {
                    let epoch = state.cluster.epoch();
                    if serving.as_ref().is_none_or(|(e, _)| *e != epoch) {
                        let mut now_serving = SlotSet::empty();
                        (0..ringcache_core::slot::SLOT_COUNT as u16)
                            .filter(|&s| view.is_primary(s))
                            .for_each(|s| now_serving.insert(s));
                        if let Some((_, before)) = &serving {
                            let mut lost = SlotSet::empty();
                            before
                                .iter()
                                .filter(|&s| !now_serving.contains(s))
                                .for_each(|s| lost.insert(s));
                            if active && !lost.is_empty() {
                                tracking.lose_slots(&lost);
                            }
                        }
                        serving = Some((epoch, now_serving));
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    fn client(t: &Tracking, id: u64) -> UnboundedReceiver<Push> {
        let (tx, rx) = unbounded_channel();
        t.open(id, tx);
        rx
    }

    fn invalidated(rx: &mut UnboundedReceiver<Push>) -> Vec<Option<Vec<Bytes>>> {
        let mut got = Vec::new();
        while let Ok(p) = rx.try_recv() {
            if let Push::Invalidate(k) = p {
                got.push(k.map(|k| k.to_vec()));
            }
        }
        got
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_read_key_is_invalidated_once_for_its_readers_only() {
        let t = Tracking::default();
        let (mut r1, mut r2) = (client(&t, 1), client(&t, 2));
        t.enable(1, Mode::default());
        t.enable(2, Mode::default());
        t.remember(1, [b("k")].iter());
        t.invalidate(3, [b("k"), b("other")].iter());
        assert_eq!(invalidated(&mut r1), vec![Some(vec![b("k")])]);
        assert!(invalidated(&mut r2).is_empty());
        t.invalidate(3, [b("k")].iter());
        assert!(invalidated(&mut r1).is_empty(), "forgotten after one invalidation");
    }

    #[test]
    fn bcast_prefixes_noloop_redirect_and_flush() {
        let t = Tracking::default();
        let (mut a, mut target) = (client(&t, 1), client(&t, 2));
        t.enable(
            1,
            Mode {
                bcast: true,
                prefixes: vec![b("user:")],
                noloop: true,
                redirect: 2,
                ..Mode::default()
            },
        );
        t.invalidate(9, [b("user:1"), b("post:1")].iter());
        assert_eq!(invalidated(&mut target), vec![Some(vec![b("user:1")])]);
        t.invalidate(1, [b("user:2")].iter());
        assert!(invalidated(&mut target).is_empty(), "NOLOOP");
        t.flush(9);
        assert_eq!(invalidated(&mut target), vec![None]);
        assert!(invalidated(&mut a).is_empty());
        // The redirect target goes: the client hears about it.
        t.close(2);
        t.invalidate(9, [b("user:3")].iter());
        assert!(matches!(a.try_recv(), Ok(Push::RedirectBroken(2))));
        t.close(1);
        assert!(!t.active());
    }

    #[test]
    fn publish_reaches_subscribers() {
        let t = Tracking::default();
        let mut s = client(&t, 1);
        assert!(t.subscribe(1, &b("news")));
        assert!(!t.subscribe(1, &b("news")));
        assert_eq!(t.publish(&b("news"), &b("hi")), 1);
        assert!(matches!(s.try_recv(), Ok(Push::Message { .. })));
        assert!(t.unsubscribe(1, b"news"));
        assert_eq!(t.publish(&b("news"), &b("hi")), 0);
    }
}
