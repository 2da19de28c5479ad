//! Clients waiting for keys to be written (BLPOP, BLMOVE, … and anything else that
//! waits for a key): per key, a queue of waiters in the order they blocked.
//!
//! The protocol, which knows nothing of value types:
//! 1. A command that finds nothing to serve returns [`Next::Block`](crate::cmd::Next)
//!    with a [`BlockOn`]: its keys and timeout (`Ctx::block` in the commands layer;
//!    `args::blocking_timeout` reads Redis' timeout argument). It has changed and
//!    written nothing.
//! 2. The connection [`register`](Blocking::register)s a [`Ticket`] on those keys,
//!    then runs the command again (a write between the first run and the
//!    registration is not missed), and again each time the ticket is woken, until the
//!    command does something other than block, the timeout passes or the connection
//!    closes. Dropping the ticket removes the waiter from every queue.
//! 3. After every write command, the pipeline calls [`Blocking::key_written`] for its
//!    keys (one atomic load when nobody waits). That wakes the longest-waiting client
//!    on the key that is not already woken; the woken client's own command is a write
//!    to the key, so if data is left the next one is woken in turn. A woken client
//!    that leaves without being served passes its wake on. This serves waiters first
//!    blocked, first served per key, whichever worker thread they run on. A woken
//!    client whose command blocks again (the key holds a type it does not take, or
//!    the data is gone) [`pass_on`](Ticket::pass_on)s the wake to the waiters behind it.
//!    [`Blocking::wake_key`] wakes every waiter of a key instead, for commands that
//!    all take the same value without consuming it (coalesced GETs, `cmd/coalesce.rs`).
//! 4. [`Blocking::wake_all`] wakes everyone, e.g. so that blocked commands re-route
//!    after a topology change.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// What a blocked command waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOn {
    /// A write to any of these keys wakes the command.
    pub keys: Vec<Bytes>,
    /// How long to wait; `None` waits forever.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default)]
struct Waiter {
    notify: Notify,
    /// Woken and not yet back to waiting: further writes wake the next waiter.
    woken: AtomicBool,
}

/// The waiters of every key.
#[derive(Debug, Default)]
pub struct Blocking {
    /// Tickets alive: writes skip the lock when there are none.
    registered: AtomicUsize,
    queues: Mutex<hashbrown::HashMap<Bytes, VecDeque<Arc<Waiter>>>>,
}

impl Blocking {
    /// Whether any client waits.
    pub fn has_waiters(&self) -> bool {
        self.registered.load(Ordering::Acquire) > 0
    }

    /// Number of clients waiting (INFO's `blocked_clients`).
    pub fn blocked_clients(&self) -> usize {
        self.registered.load(Ordering::Acquire)
    }

    /// Number of clients waiting on `key`.
    pub fn waiting_on(&self, key: &[u8]) -> usize {
        self.queues.lock().get(key).map_or(0, VecDeque::len)
    }

    /// Queues a waiter at the back of each key's queue.
    pub fn register(&self, keys: Vec<Bytes>) -> Ticket<'_> {
        let waiter = Arc::new(Waiter::default());
        {
            let mut queues = self.queues.lock();
            for key in &keys {
                let queue = queues.entry(key.clone()).or_default();
                // A key named twice (BLPOP k k 0) waits once.
                if !queue.iter().any(|w| Arc::ptr_eq(w, &waiter)) {
                    queue.push_back(waiter.clone());
                }
            }
            self.registered.fetch_add(1, Ordering::AcqRel);
        }
        Ticket {
            blocking: self,
            waiter,
            keys,
        }
    }

    /// A write touched `key`: wakes the longest-waiting client on it that is not
    /// already woken.
    pub fn key_written(&self, key: &[u8]) {
        if !self.has_waiters() {
            return;
        }
        let queues = self.queues.lock();
        let Some(queue) = queues.get(key) else { return };
        if let Some(w) = queue.iter().find(|w| !w.woken.swap(true, Ordering::AcqRel)) {
            w.notify.notify_one();
        }
    }

    /// Wakes every client waiting on `key` (each runs its command again): for waiters
    /// that all take the same value without consuming it (coalesced GETs).
    pub fn wake_key(&self, key: &[u8]) {
        if !self.has_waiters() {
            return;
        }
        if let Some(queue) = self.queues.lock().get(key) {
            for w in queue {
                w.woken.store(true, Ordering::Release);
                w.notify.notify_one();
            }
        }
    }

    /// Wakes every waiter (each runs its command again).
    pub fn wake_all(&self) {
        if !self.has_waiters() {
            return;
        }
        for queue in self.queues.lock().values() {
            for w in queue {
                w.woken.store(true, Ordering::Release);
                w.notify.notify_one();
            }
        }
    }
}

/// One blocked client's place in its keys' queues; dropping it leaves them.
#[derive(Debug)]
pub struct Ticket<'a> {
    blocking: &'a Blocking,
    waiter: Arc<Waiter>,
    keys: Vec<Bytes>,
}

impl Ticket<'_> {
    /// Before the command runs again: a write from now on wakes this client again.
    pub fn rearm(&self) {
        self.waiter.woken.store(false, Ordering::Release);
    }

    /// After a wake this client could not use (its command blocked again: the key
    /// holds a type it does not take, or another client took the data first): wakes
    /// the first waiter behind it on each of its keys that is not already woken, so a
    /// write reaches, in order, the waiters that can take it (Redis serves a sorted set
    /// to a BZPOPMIN queued behind a BLPOP). Only ever forward: the wake ends at the
    /// back of the queue.
    pub fn pass_on(&self) {
        let queues = self.blocking.queues.lock();
        for key in &self.keys {
            let Some(queue) = queues.get(key) else { continue };
            let mut behind = queue.iter().skip_while(|w| !Arc::ptr_eq(w, &self.waiter)).skip(1);
            if let Some(w) = behind.find(|w| !w.woken.swap(true, Ordering::AcqRel)) {
                w.notify.notify_one();
            }
        }
    }

    /// Completes when a write to one of the keys (or [`Blocking::wake_all`]) wakes
    /// this client; at once if that happened since the last wait.
    pub async fn woken(&self) {
        self.waiter.notify.notified().await;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        {
            let mut queues = self.blocking.queues.lock();
            for key in &self.keys {
                if let Some(queue) = queues.get_mut(key) {
                    queue.retain(|w| !Arc::ptr_eq(w, &self.waiter));
                    if queue.is_empty() {
                        queues.remove(key);
                    }
                }
            }
            self.blocking.registered.fetch_sub(1, Ordering::AcqRel);
        }
        // Woken for a write this client did not take (it timed out, its connection
        // closed, or it took less than there was): the next waiter gets the chance.
        if self.waiter.woken.load(Ordering::Acquire) {
            for key in &self.keys {
                self.blocking.key_written(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    #[tokio::test]
    async fn writes_wake_waiters_in_order_and_dropped_tickets_leave_nothing() {
        let b = Blocking::default();
        assert!(!b.has_waiters());
        let first = b.register(vec![key("k"), key("other")]);
        let second = b.register(vec![key("k")]);
        assert_eq!(b.waiting_on(b"k"), 2);
        assert_eq!(b.blocked_clients(), 2);
        b.key_written(b"k");
        // The first is woken, the second not yet.
        tokio::time::timeout(Duration::from_secs(1), first.woken())
            .await
            .expect("first woken");
        assert!(tokio::time::timeout(Duration::from_millis(20), second.woken())
            .await
            .is_err());
        // The first leaves without taking what was written: the second gets the wake.
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), second.woken())
            .await
            .expect("second woken");
        assert_eq!(b.waiting_on(b"other"), 0);
        second.rearm();
        drop(second);
        assert!(!b.has_waiters());
        assert!(b.queues.lock().is_empty());
        b.key_written(b"k");
    }

    #[tokio::test]
    async fn a_wake_passed_on_goes_to_the_next_waiter_behind_and_stops_at_the_back() {
        let b = Blocking::default();
        let first = b.register(vec![key("k")]);
        let second = b.register(vec![key("k")]);
        let third = b.register(vec![key("k")]);
        b.key_written(b"k");
        tokio::time::timeout(Duration::from_secs(1), first.woken())
            .await
            .expect("first woken");
        // The first could not use it: it waits again and passes the wake back.
        first.rearm();
        first.pass_on();
        tokio::time::timeout(Duration::from_secs(1), second.woken())
            .await
            .expect("second woken");
        assert!(tokio::time::timeout(Duration::from_millis(20), first.woken())
            .await
            .is_err());
        assert!(tokio::time::timeout(Duration::from_millis(20), third.woken())
            .await
            .is_err());
        second.rearm();
        second.pass_on();
        tokio::time::timeout(Duration::from_secs(1), third.woken())
            .await
            .expect("third woken");
        // From the back, nobody is woken.
        third.rearm();
        third.pass_on();
        for t in [&first, &second, &third] {
            assert!(tokio::time::timeout(Duration::from_millis(20), t.woken())
                .await
                .is_err());
        }
    }

    #[tokio::test]
    async fn a_rearmed_waiter_is_woken_again_and_wake_all_reaches_everyone() {
        let b = Blocking::default();
        let t = b.register(vec![key("k"), key("k")]);
        assert_eq!(b.waiting_on(b"k"), 1);
        b.key_written(b"k");
        t.woken().await;
        t.rearm();
        b.key_written(b"k");
        tokio::time::timeout(Duration::from_secs(1), t.woken())
            .await
            .expect("woken again");
        let u = b.register(vec![key("j")]);
        b.wake_all();
        tokio::time::timeout(Duration::from_secs(1), u.woken())
            .await
            .expect("woken by wake_all");
    }
}
