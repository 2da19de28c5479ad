//! Shards held for a transaction. EXEC runs its queued commands as one atomic step:
//! it locks the shards of every key they touch (all shards when one of them is
//! keyless), then runs the commands, which lock shards as usual. On the thread running
//! EXEC, [`Store::shard`](super::Store) hands out the shard already held instead of
//! locking it again (a `parking_lot` mutex is not re-entrant); every other thread waits
//! for the transaction to end, as it would for any command's lock.
//!
//! Besides `arena.rs`, this is the one module of the store with `unsafe` code: a held
//! shard is reached through the pointer its guard was taken from. That is sound
//! because (1) the guard stays alive, in [`hold`]'s frame, until the pointers are
//! forgotten, even on unwind; (2) only the thread that took the guards sees the
//! pointers (thread-local); (3) a shard is handed out once at a time: a second
//! [`Held`] of the same shard on the same thread is refused — the same nesting would
//! deadlock on the mutex outside a transaction, so no command does it.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use parking_lot::MutexGuard;

use super::shard::Shard;

/// One held shard: its store (by address), its number, where it is, whether a
/// [`Held`] for it is alive.
struct Entry {
    store: usize,
    shard: usize,
    at: *mut Shard,
    in_use: bool,
}

thread_local! {
    static HELD: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// A shard this thread holds for a transaction, handed out to one command's lock.
pub struct Held {
    at: *mut Shard,
    store: usize,
    shard: usize,
}

impl Deref for Held {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        // SAFETY: see the module docs; the guard behind `at` outlives this value.
        unsafe { &*self.at }
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut Shard {
        // SAFETY: as above, and `in_use` makes this the only reference to the shard.
        unsafe { &mut *self.at }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with(|h| {
            if let Some(e) = h
                .borrow_mut()
                .iter_mut()
                .find(|e| e.store == self.store && e.shard == self.shard)
            {
                e.in_use = false;
            }
        });
    }
}

/// The held shard `shard` of the store at address `store`, if this thread holds it.
pub(super) fn take(store: usize, shard: usize) -> Option<Held> {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_empty() {
            return None;
        }
        let e = h.iter_mut().find(|e| e.store == store && e.shard == shard)?;
        assert!(!e.in_use, "shard {shard} locked twice by one command");
        e.in_use = true;
        Some(Held { at: e.at, store, shard })
    })
}

/// Forgets the held shards when [`hold`] ends, also on unwind.
struct Forget;

impl Drop for Forget {
    fn drop(&mut self) {
        HELD.with(|h| h.borrow_mut().clear());
    }
}

/// Runs `f` with `guards` (shard number, guard; of the store at address `store`) held
/// by this thread: locks of those shards inside `f` reuse them.
pub(super) fn hold<R>(store: usize, mut guards: Vec<(usize, MutexGuard<'_, Shard>)>, f: impl FnOnce() -> R) -> R {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        assert!(h.is_empty(), "transactions do not nest");
        h.extend(guards.iter_mut().map(|(shard, g)| Entry {
            store,
            shard: *shard,
            at: &mut **g as *mut Shard,
            in_use: false,
        }));
    });
    let forget = Forget;
    let r = f();
    drop(forget);
    drop(guards);
    r
}
