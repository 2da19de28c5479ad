//! String commands: GET SET (more in this family are added here).

use bytes::Bytes;

use super::args::{int, is};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::cluster::slot::key_slot;
use crate::store::Entry;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "get", arity: 2, flags: READONLY | FAST, keys: (1, 1, 1), group: "string", summary: "Returns the string value of a key.", handler: get },
    CommandSpec { name: "set", arity: -3, flags: WRITE | DENYOOM, keys: (1, 1, 1), group: "string", summary: "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", handler: set },
];

/// Reads a string key for a read command: counts a hit or miss, WRONGTYPE for other
/// types, and writes the value (or null) to the reply.
fn reply_string(ctx: &mut Ctx<'_>, key: &[u8]) -> CmdResult {
    let mut locked = ctx.store.lock(key_slot(key));
    let mut slot = locked.slot();
    match slot.read(key, ctx.now) {
        None => ctx.out.null(),
        Some(e) => match e.as_str() {
            Some(v) => ctx.out.bulk(v),
            None => return Err(CmdError::WrongType),
        },
    }
    Ok(())
}

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    reply_string(ctx, &args[1])
}

/// When a write expires, from the EX/PX/EXAT/PXAT options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No option: the key loses any TTL.
    None,
    /// KEEPTTL.
    Keep,
    /// Absolute unix time in ms.
    At(u64),
}

/// Parses an expiry option value: `unit_ms` is 1000 for EX/EXAT, 1 for PX/PXAT.
pub fn parse_expiry(v: &Bytes, unit_ms: i64, absolute: bool, now: u64, cmd: &str) -> Result<u64, CmdError> {
    let n = int(v)?;
    let invalid = || CmdError::Other(format!("invalid expire time in '{cmd}' command"));
    if n <= 0 {
        return Err(invalid());
    }
    let ms = n.checked_mul(unit_ms).ok_or_else(invalid)?;
    let at = if absolute { ms } else { ms.checked_add(now as i64).ok_or_else(invalid)? };
    Ok(at as u64)
}

fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (key, value) = (&args[1], &args[2]);
    let (mut nx, mut xx, mut get) = (false, false, false);
    let mut expiry = Expiry::None;
    let mut i = 3;
    while i < args.len() {
        let a = &args[i];
        let has_next = i + 1 < args.len();
        if is(a, "NX") && !xx {
            nx = true;
        } else if is(a, "XX") && !nx {
            xx = true;
        } else if is(a, "GET") {
            get = true;
        } else if is(a, "KEEPTTL") && expiry == Expiry::None {
            expiry = Expiry::Keep;
        } else if has_next && expiry == Expiry::None && (is(a, "EX") || is(a, "PX") || is(a, "EXAT") || is(a, "PXAT")) {
            let unit = if is(a, "EX") || is(a, "EXAT") { 1000 } else { 1 };
            let absolute = is(a, "EXAT") || is(a, "PXAT");
            expiry = Expiry::At(parse_expiry(&args[i + 1], unit, absolute, ctx.now, "set")?);
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let now = ctx.now;
    let mut locked = ctx.store.lock(key_slot(key));
    let mut slot = locked.slot();
    let (exists, old_ttl) = match slot.get(key, now) {
        Some(e) => {
            if get && e.as_str().is_none() {
                return Err(CmdError::WrongType);
            }
            if get {
                if let Some(v) = e.as_str() {
                    ctx.out.bulk(v);
                }
            }
            (true, e.expire_at())
        }
        None => {
            if get {
                ctx.out.null();
            }
            (false, None)
        }
    };
    if (nx && exists) || (xx && !exists) {
        if !get {
            ctx.out.null();
        }
        return Ok(());
    }
    let expire_at = match expiry {
        Expiry::None => 0,
        Expiry::Keep => old_ttl.unwrap_or(0),
        Expiry::At(t) => t,
    };
    if expire_at != 0 && expire_at <= now {
        // Already expired: the key is deleted, as Redis does.
        slot.remove(key, now);
    } else {
        slot.insert(Entry::string(key, value, expire_at, 0), now);
    }
    if !get {
        ctx.out.ok();
    }
    Ok(())
}
