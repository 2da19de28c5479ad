//! Running one request: lookup → arity → authentication → routing (once, [`route`]) →
//! inside MULTI, queueing instead of what follows (`transactions.rs`) →
//! the handover step (read-through, read counters, written keys) → memory check →
//! handler → wake-ups of clients blocked on the written keys → the replication step
//! (records for the replicas, an acknowledgement wait).
//! What the connection must do next comes back as one [`Next`].
//!
//! Before the handover step, a sample of the served commands' first keys feeds hot-key
//! detection ([`crate::hotkeys`]).

use bytes::Bytes;

use super::flag::{DENYOOM, FLUSH, NOAUTH, NOMULTI, PUBSUB, READONLY, REPLAY, TX, WRITE};
use super::route::route;
use super::{unknown_command, CmdError, CommandSpec, Ctx, Found, Next};
use crate::handover::{HandoverStep, KeyAccess};
use crate::replication::{Change, Replication};
use crate::store::Object;
use ringcache_core::slot::key_slot;

/// Runs one request whose command was looked up as `found`, writes its reply (none
/// when a read-through comes first) and returns the command's registry index (for
/// per-command metrics) when it was a known command, and what the connection does
/// next. `filled`: the keys a read-through filled, when the command runs again after
/// one.
pub fn execute(ctx: &mut Ctx<'_>, args: &[Bytes], found: Found, filled: Option<&[Bytes]>) -> (Option<usize>, Next) {
    if args.is_empty() {
        return (None, Next::Continue);
    }
    let Some((index, spec)) = found else {
        // Inside MULTI, a refused command makes EXEC fail.
        ctx.client.tx.failed |= ctx.client.tx.in_multi();
        ctx.out.error(&unknown_command(args));
        return (None, Next::Continue);
    };
    ctx.next = Next::Continue;
    ctx.slot = None;
    ctx.client.depth += 1;
    let result = run(ctx, spec, args, filled);
    // The write gate routing took (if any) ends once the write's records are in the
    // backlog (see `ClusterState::enter_write`).
    if let Some(slot) = ctx.client.write_gate.take() {
        ctx.server.cluster.leave_write(slot);
    }
    ctx.client.depth -= 1;
    match result {
        Ok(Some(next)) => return (Some(index), next),
        Ok(None) => {}
        Err(e) => ctx.out.error(&e.to_string()),
    }
    (Some(index), std::mem::replace(&mut ctx.next, Next::Continue))
}

/// The checks, the handler and the steps around it; `Ok(Some(next))` when a step
/// decides what comes next instead of the handler.
fn run(
    ctx: &mut Ctx<'_>,
    spec: &CommandSpec,
    args: &[Bytes],
    filled: Option<&[Bytes]>,
) -> Result<Option<Next>, CmdError> {
    if let Err(e) = check(ctx, spec, args) {
        // Inside MULTI, a refused command makes EXEC fail.
        ctx.client.tx.failed |= ctx.client.tx.in_multi();
        return Err(e);
    }
    if ctx.client.tx.in_multi() && spec.flags & TX == 0 {
        return super::transactions::queue(ctx, args).map(|()| None);
    }
    let server = ctx.server;
    // Served here: a sample of first keys feeds hot-key detection (not again when the
    // command runs a second time after a read-through).
    if filled.is_none() && spec.has_keys() && server.hotkeys.sample() {
        if let Some(key) = spec.key_positions(args).next().and_then(|p| args.get(p)) {
            server.hotkeys.record(key, ctx.now);
        }
    }
    if spec.flags & FLUSH != 0 {
        server.handovers.stop_all();
    }
    if let (Some(slot), Some(view)) = (ctx.slot, ctx.view) {
        if server.handovers.is_active() {
            let keys: Vec<&Bytes> = spec.key_positions(args).map(|p| &args[p]).collect();
            let access = KeyAccess {
                read: spec.flags & READONLY != 0,
                write: spec.flags & WRITE != 0,
            };
            let step = server.handovers.before_command(
                ctx.store,
                view,
                slot,
                &keys,
                access,
                ctx.now,
                filled,
                ctx.client.can_read_through,
            );
            if let HandoverStep::ReadThrough(fetch) = step {
                return Ok(Some(Next::ReadThrough(fetch)));
            }
        }
    }
    if spec.flags & DENYOOM != 0 && !ctx.client.no_evict {
        ctx.store.ensure_memory()?;
    }
    let base = change_base(ctx, spec, args);
    let result = (spec.handler)(ctx, args);
    if matches!(ctx.next, Next::Block(_)) {
        // Nothing changed and nothing was answered: no records, no wake-ups.
        if !ctx.may_block() {
            // Handlers ask `may_block` first; should one block anyway, it answers
            // as a timed-out blocking command.
            ctx.next = Next::Continue;
            ctx.out.null_array();
        }
        return result.map(|()| None);
    }
    if spec.flags & WRITE != 0 && server.blocking.has_waiters() {
        // Clients blocked on these keys run their commands again, when a key now holds
        // something they can take (Redis signals a key ready only when a list or a
        // sorted set is written, so a DEL or a SET wakes nobody and cannot reorder
        // the queue).
        for p in spec.key_positions(args) {
            let key = &args[p];
            let ready = ctx
                .store
                .lock(key_slot(key))
                .slot()
                .get(key, ctx.now)
                .is_some_and(|e| matches!(e.as_object(), Some(Object::List(_) | Object::ZSet(_))));
            if ready {
                server.blocking.key_written(key);
            }
        }
    }
    if spec.flags & WRITE != 0 {
        // Miss coalescing: a write of a key ends its lease, and the GETs waiting for
        // it run again (they find the value, or one of them becomes the filler).
        for p in spec.key_positions(args) {
            if server.coalesce.written(&args[p]) {
                server.blocking.wake_key(&args[p]);
            }
        }
    }
    if server.tracking.active() || ctx.client.pushes.tracking.is_some() {
        super::tracking::after_command(ctx, spec, args);
    }
    if spec.flags & WRITE != 0 {
        // Also after an error: a handler may have changed a key before failing.
        if let Some(wait) = replicate(ctx, spec, args, base, result.is_ok()) {
            return result.map(|()| Some(Next::WaitForAcks(wait)));
        }
    }
    result.map(|()| None)
}

/// What is checked before a command runs or is queued: arity, authentication,
/// routing; inside MULTI also what Redis checks before queueing (not allowed in a
/// transaction, subcommand and its arity, memory).
fn check(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Result<(), CmdError> {
    let argc = args.len() as i32;
    if (spec.arity > 0 && argc != spec.arity) || (spec.arity < 0 && argc < -spec.arity) {
        return Err(CmdError::WrongArity(spec.name.to_string()));
    }
    if !ctx.client.authenticated && spec.flags & NOAUTH == 0 {
        return Err(CmdError::NoAuth);
    }
    if spec.has_keys() {
        ctx.slot = route(ctx, spec, args)?;
    }
    if !ctx.out.resp3 && !ctx.client.pushes.channels.is_empty() && spec.flags & PUBSUB == 0 {
        return Err(CmdError::Other(format!(
            "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        )));
    }
    if ctx.client.tx.in_multi() && spec.flags & TX == 0 {
        if spec.flags & NOMULTI != 0 {
            return Err(CmdError::Other("Command not allowed inside a transaction".into()));
        }
        if let Some(table) = super::subcommands(spec.name) {
            super::args::check_subcommand(spec.name, args, table)?;
        }
        if !ctx.client.no_evict {
            ctx.store.ensure_memory()?;
        }
    }
    Ok(())
}

/// For a command that may be shipped to replicas as itself (`REPLAY`), on the primary
/// of a slot with replicas: the change count of its key's value before it runs.
fn change_base(ctx: &Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Option<u64> {
    if spec.flags & REPLAY == 0 {
        return None;
    }
    let (view, slot, key) = (ctx.view?, ctx.slot?, args.get(1)?);
    Replication::change_base(ctx.store, view, slot, key, ctx.now)
}

/// The replication step after a write (cluster mode, on the primary of the keys'
/// slot): the written keys' new state, or the command itself (`base`: see
/// [`change_base`]), goes to the backlog, a flush becomes a flush record. Returns the
/// acknowledgement wait `minReplicasToAck` asks for, if the write `succeeded`.
fn replicate(
    ctx: &Ctx<'_>,
    spec: &CommandSpec,
    args: &[Bytes],
    base: Option<u64>,
    succeeded: bool,
) -> Option<crate::replication::AckWait> {
    let view = ctx.view?;
    let repl = &ctx.server.replication;
    if spec.flags & FLUSH != 0 {
        if succeeded {
            repl.record_flush();
        }
        return None;
    }
    let slot = ctx.slot?;
    let keys = spec.key_positions(args).map(|p| &args[p]);
    let change = base.map(|base| Change { base, args });
    let offset = repl.record_write(ctx.store, view, slot, keys, change, ctx.now);
    if succeeded {
        repl.ack_wait(slot, offset)
    } else {
        None
    }
}
