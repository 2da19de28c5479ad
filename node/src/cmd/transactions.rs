//! Transactions: MULTI EXEC DISCARD WATCH UNWATCH, with Redis 7.0's semantics.
//!
//! Inside MULTI the pipeline checks each command as it would run it (known, arity,
//! authentication, routing, memory) and queues it (`+QUEUED`); a refused command makes
//! EXEC answer `-EXECABORT`. EXEC runs the queue as one atomic step: it locks the
//! shards of every key the queue and the watched keys touch (every shard when a queued
//! command reads or writes without naming keys, like FLUSHALL or DBSIZE), checks the
//! watched keys under those locks, and runs the commands one after the other while no
//! other connection can reach those shards (`Store::atomically`). In cluster mode all
//! of a transaction's keys must hash to one slot (`-CROSSSLOT`, and the transaction is
//! discarded, as Redis Cluster does).
//!
//! WATCH keeps, per key, what the key's shard counted at WATCH time (`store/watch.rs`);
//! a write, eviction or flush of the key since then, or its expiry if it was live at
//! WATCH, turns EXEC into a null reply.

use bytes::Bytes;
use ringcache_core::slot::{key_slot, Slot};

use super::flag::*;
use super::{find, CmdError, CmdResult, CommandSpec, Ctx, Next};
use crate::state::ClientState;
use crate::store::Store;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "multi",
        arity: 1,
        flags: NOSCRIPT | LOADING | STALE | FAST | TX,
        keys: (0, 0, 0),
        group: "transactions",
        summary: "Starts a transaction.",
        handler: multi,
    },
    CommandSpec {
        name: "exec",
        arity: 1,
        flags: NOSCRIPT | LOADING | STALE | TX,
        keys: (0, 0, 0),
        group: "transactions",
        summary: "Executes all commands in a transaction.",
        handler: exec,
    },
    CommandSpec {
        name: "discard",
        arity: 1,
        flags: NOSCRIPT | LOADING | STALE | FAST | TX,
        keys: (0, 0, 0),
        group: "transactions",
        summary: "Discards a transaction.",
        handler: discard_command,
    },
    CommandSpec {
        name: "watch",
        arity: -2,
        flags: NOSCRIPT | LOADING | STALE | FAST | TX,
        keys: (1, -1, 1),
        group: "transactions",
        summary: "Monitors changes to keys to determine the execution of a transaction.",
        handler: watch,
    },
    CommandSpec {
        name: "unwatch",
        arity: 1,
        flags: NOSCRIPT | LOADING | STALE | FAST,
        keys: (0, 0, 0),
        group: "transactions",
        summary: "Forgets about watched keys of a transaction.",
        handler: unwatch,
    },
];

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

fn unsupported() -> CmdError {
    CmdError::Other("transactions are not supported on the proxy port; use a node's RESP port".into())
}

/// Queues a command checked by the pipeline: `+QUEUED`.
pub fn queue(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if let Some(q) = ctx.client.tx.queued.as_mut() {
        q.push(args.to_vec());
    }
    ctx.out.simple("QUEUED");
    Ok(())
}

/// Stops watching every key this client watches.
pub fn unwatch_all(store: &Store, client: &mut ClientState) {
    for (key, slot, _) in client.tx.watched.drain(..) {
        store.lock(slot).slot().unwatch(&key);
    }
}

/// Leaves MULTI (if in it) and stops watching (DISCARD, RESET, the end of EXEC).
pub fn discard(store: &Store, client: &mut ClientState) {
    client.tx.queued = None;
    client.tx.failed = false;
    unwatch_all(store, client);
}

fn multi(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    if !ctx.client.tx.supported {
        return Err(unsupported());
    }
    if ctx.client.tx.in_multi() {
        return Err(CmdError::Other("MULTI calls can not be nested".into()));
    }
    ctx.client.tx.queued = Some(Vec::new());
    ctx.out.ok();
    Ok(())
}

fn discard_command(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    if !ctx.client.tx.in_multi() {
        return Err(CmdError::Other("DISCARD without MULTI".into()));
    }
    discard(ctx.store, ctx.client);
    ctx.out.ok();
    Ok(())
}

fn watch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if !ctx.client.tx.supported {
        return Err(unsupported());
    }
    if ctx.client.tx.in_multi() {
        return Err(CmdError::Other("WATCH inside MULTI is not allowed".into()));
    }
    for key in &args[1..] {
        if ctx.client.tx.watched.iter().any(|(k, _, _)| k == key) {
            continue;
        }
        let slot = ctx.slot_of(key);
        let stamp = ctx.store.lock(slot).slot().watch(key, ctx.now);
        ctx.client.tx.watched.push((key.clone(), slot, stamp));
    }
    ctx.out.ok();
    Ok(())
}

fn unwatch(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    unwatch_all(ctx.store, ctx.client);
    ctx.out.ok();
    Ok(())
}

/// The slots a transaction touches (queued commands' keys and watched keys), or `None`
/// when a queued command reads or writes without naming keys (every shard then).
fn touched_slots(queued: &[Vec<Bytes>], watched: &[(Bytes, Slot, crate::store::Stamp)]) -> Option<Vec<Slot>> {
    let mut slots: Vec<Slot> = watched.iter().map(|(_, s, _)| *s).collect();
    for args in queued {
        let Some((_, spec)) = find(args) else { continue };
        if spec.has_keys() {
            slots.extend(spec.key_positions(args).map(|p| key_slot(&args[p])));
        } else if spec.flags & (READONLY | WRITE) != 0 {
            return None;
        }
    }
    Some(slots)
}

fn exec(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let Some(queued) = ctx.client.tx.queued.take() else {
        return Err(CmdError::Other("EXEC without MULTI".into()));
    };
    if std::mem::take(&mut ctx.client.tx.failed) {
        unwatch_all(ctx.store, ctx.client);
        return Err(CmdError::Coded(EXECABORT.into()));
    }
    let slots = touched_slots(&queued, &ctx.client.tx.watched);
    if ctx.server.cluster.enabled {
        let mut all = slots.iter().flatten();
        if let Some(first) = all.next() {
            if all.any(|s| s != first) {
                unwatch_all(ctx.store, ctx.client);
                return Err(CmdError::Coded(CROSSSLOT.into()));
            }
        }
    }
    let store = ctx.store;
    let last_wait = store.atomically(slots.as_deref(), || {
        let now = ctx.now;
        let dirty = ctx
            .client
            .tx
            .watched
            .iter()
            .any(|(key, slot, stamp)| store.lock(*slot).slot().watch_dirty(key, stamp, now));
        if dirty {
            ctx.out.null_array();
            return None;
        }
        ctx.out.array(queued.len());
        // A transaction never waits for a handover's read-through: its keys are
        // served from what this node has, like a read by the proxy port.
        let could_read_through = std::mem::replace(&mut ctx.client.can_read_through, false);
        let mut wait = None;
        for args in &queued {
            let (_, next) = super::pipeline::execute(ctx, args, find(args), None);
            if let Next::WaitForAcks(w) = next {
                wait = Some(w);
            }
        }
        ctx.client.can_read_through = could_read_through;
        wait
    });
    unwatch_all(ctx.store, ctx.client);
    if let Some(w) = last_wait {
        // minReplicasToAck: EXEC's reply waits for the transaction's last write.
        ctx.next = Next::WaitForAcks(w);
    }
    Ok(())
}
