//! Miss coalescing (stampede protection), for plain Redis clients:
//! `RINGCACHE.COALESCE ON [LEASE ms] [WAIT ms] [MAXWAITERS n] [EARLY ms]` and
//! `RINGCACHE.COALESCE OFF` switch this connection's GETs into and out of coalescing
//! mode, and [`get`] is GET in that mode. The rules (who fills, who waits, for how
//! long) are the lease table's, [`crate::coalesce`]; a waiting GET blocks with the
//! blocking machinery ([`crate::blocking`]) and the pipeline wakes it when its key is
//! written.

use std::time::Duration;

use bytes::Bytes;

use super::args::{int, is};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::coalesce::{Miss, Mode, Params};
use ringcache_core::view::Owner;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "ringcache.coalesce",
    arity: -2,
    flags: NOSCRIPT | LOADING | STALE | FAST,
    keys: (0, 0, 0),
    group: "connection",
    summary: "RINGCACHE.COALESCE ON [LEASE ms] [WAIT ms] [MAXWAITERS n] [EARLY ms] | OFF switches this connection's GETs into or out of miss coalescing.",
    handler: coalesce,
}];

fn coalesce(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mode = &args[1];
    if is(mode, "off") {
        if args.len() > 2 {
            return Err(CmdError::Syntax);
        }
        ctx.client.coalesce.mode = Mode::Off;
        ctx.out.ok();
        return Ok(());
    }
    if !is(mode, "on") {
        return Err(CmdError::Syntax);
    }
    let mut p = Params::default();
    let mut rest = args[2..].iter();
    while let Some(opt) = rest.next() {
        let Some(v) = rest.next() else {
            return Err(CmdError::Syntax);
        };
        let n = int(v)?;
        if is(opt, "lease") {
            p.lease_ms = u64::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| CmdError::Other("LEASE must be a positive number of milliseconds".into()))?;
        } else if is(opt, "wait") {
            p.wait_ms = u64::try_from(n).map_err(|_| CmdError::Other("WAIT must not be negative".into()))?;
        } else if is(opt, "early") {
            p.early_ms = u64::try_from(n).map_err(|_| CmdError::Other("EARLY must not be negative".into()))?;
        } else if is(opt, "maxwaiters") {
            p.max_waiters =
                usize::try_from(n).map_err(|_| CmdError::Other("MAXWAITERS must not be negative".into()))?;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    ctx.client.coalesce.mode = Mode::On(p);
    ctx.out.ok();
    Ok(())
}

/// The parameters a GET of `key` coalesces with here, `None` when it does not: the
/// connection's mode or the node's patterns say so, the GET may block (not inside
/// MULTI, not on the proxy port), and this node is the key's primary (a replica would
/// see the filler's SET only by replication, which wakes nobody).
pub fn params(ctx: &Ctx<'_>, key: &[u8]) -> Option<Params> {
    let mode = ctx.client.coalesce.mode;
    if mode == Mode::Off || !ctx.may_block() {
        return None;
    }
    let p = ctx.server.coalesce.params_for(mode, key)?;
    if let (Some(view), Some(slot)) = (ctx.view, ctx.slot) {
        if ctx.client.readonly && !matches!(view.owner(slot, false), Owner::Here) {
            return None;
        }
    }
    Some(p)
}

/// GET in coalescing mode: a hit answers the value; a miss asks the lease table
/// whether this client fills (nil), waits (blocks until the key is written or the
/// lease or its wait bound ends, then runs again) or gets nil at once.
pub fn get(ctx: &mut Ctx<'_>, key: &Bytes, p: Params) -> CmdResult {
    let since = match &ctx.client.coalesce.waiting {
        Some((k, since)) if ctx.client.blocked && k == key => Some(*since),
        _ => None,
    };
    let miss = {
        let mut locked = ctx.store.lock(ctx.slot_of(key));
        let mut slot = locked.slot();
        if let Some(e) = slot.read(key, ctx.now) {
            let expiring = p.early_ms > 0
                && e.as_str().is_some()
                && e.expire_at().is_some_and(|at| at.saturating_sub(ctx.now) <= p.early_ms);
            if expiring && ctx.server.coalesce.refresh(key, ctx.client.id(), ctx.now, p) {
                // Early refresh: this client refreshes the key; the others still get
                // the value until it expires.
                ctx.client.coalesce.filled = true;
                ctx.out.null();
                return Ok(());
            }
            let v = e.as_str().ok_or(CmdError::WrongType)?;
            ctx.out.bulk(v);
            return Ok(());
        }
        // Decided under the slot's lock: a write of the key comes wholly before (this
        // read finds it) or after (its wake-up finds this client waiting).
        ctx.server.coalesce.miss(key, ctx.client.id(), ctx.now, p, since)
    };
    match miss {
        Miss::Wait { until } => {
            if since.is_none() {
                ctx.client.coalesce.waiting = Some((key.clone(), ctx.now));
            }
            let left = Duration::from_millis(until.saturating_sub(ctx.now).max(1));
            ctx.block(std::slice::from_ref(key), Some(left));
        }
        Miss::Fill => {
            ctx.client.coalesce.filled = true;
            ctx.out.null();
        }
        Miss::TimedOut | Miss::TooManyWaiters => ctx.out.null(),
    }
    Ok(())
}
