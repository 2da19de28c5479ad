//! `RINGCACHE.HOTKEYS [COUNT n]`: this node's hottest keys over its hot-key window
//! (see [`crate::hotkeys`]), hottest first, as an array of `[key, estimated ops/s]`
//! pairs; `n` defaults to `--hotkeys-k`. An error when the node runs with
//! `--hotkeys=false`.

use bytes::Bytes;

use super::args::{int, is};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "ringcache.hotkeys",
    arity: -1,
    flags: ADMIN | NOSCRIPT | LOADING | STALE,
    keys: (0, 0, 0),
    group: "server",
    summary: "RINGCACHE.HOTKEYS [COUNT n] lists this node's hottest keys with their estimated ops/s.",
    handler: hotkeys,
}];

/// The error when hot-key detection is off.
pub const DISABLED: &str = "hot key detection is off (start the node with --hotkeys=true)";

fn hotkeys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let hk = &ctx.server.hotkeys;
    let mut count = hk.config().k;
    let mut rest = args.get(1..).unwrap_or_default().iter();
    while let Some(opt) = rest.next() {
        match rest.next() {
            Some(n) if is(opt, "count") => {
                let n = int(n)?;
                count = usize::try_from(n)
                    .map_err(|_| CmdError::Other("value is out of range, must be positive".into()))?;
            }
            _ => return Err(CmdError::Syntax),
        }
    }
    if !hk.enabled() {
        return Err(CmdError::Other(DISABLED.into()));
    }
    let top = hk.top(ctx.now, count);
    ctx.out.array(top.len());
    for h in &top {
        ctx.out.array(2);
        ctx.out.bulk(&h.key);
        ctx.out.int(i64::try_from(h.ops_per_sec).unwrap_or(i64::MAX));
    }
    Ok(())
}
