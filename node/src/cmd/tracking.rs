//! Client-side caching and Pub/Sub commands: CLIENT TRACKING / CACHING /
//! TRACKINGINFO (CLIENT GETREDIR is answered in `connection.rs` with the other CLIENT
//! subcommands), SUBSCRIBE UNSUBSCRIBE PUBLISH, and the step the pipeline runs after
//! every command while some client tracks keys ([`after_command`]). The tables and the
//! delivery are in [`crate::tracking`].

use bytes::Bytes;

use super::args::{int, is, text};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::tracking::Mode;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "subscribe",
        arity: -2,
        flags: NOSCRIPT | LOADING | STALE | PUBSUB,
        keys: (0, 0, 0),
        group: "pubsub",
        summary: "Listens for messages published to channels.",
        handler: subscribe,
    },
    CommandSpec {
        name: "unsubscribe",
        arity: -1,
        flags: NOSCRIPT | LOADING | STALE | PUBSUB,
        keys: (0, 0, 0),
        group: "pubsub",
        summary: "Stops listening to messages posted to channels.",
        handler: unsubscribe,
    },
    CommandSpec {
        name: "publish",
        arity: 3,
        flags: LOADING | STALE | FAST,
        keys: (0, 0, 0),
        group: "pubsub",
        summary: "Posts a message to a channel.",
        handler: publish,
    },
];

fn unsupported() -> CmdError {
    CmdError::Other("client tracking and Pub/Sub are not supported on the proxy port; use a node's RESP port".into())
}

/// What the pipeline does after a command while some client tracks keys: a write
/// invalidates its keys (a flush everything), a read by a tracking client in default
/// mode remembers its keys. `CLIENT CACHING` lasts for one command.
pub fn after_command(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) {
    let tracking = &ctx.server.tracking;
    let id = ctx.client.id();
    if spec.flags & FLUSH != 0 {
        tracking.flush(id);
    } else if spec.flags & WRITE != 0 {
        tracking.invalidate(id, spec.key_positions(args).map(|p| &args[p]));
    }
    let pushes = &ctx.client.pushes;
    let Some(mode) = &pushes.tracking else { return };
    if spec.flags & READONLY != 0 && !mode.bcast {
        let wanted = if mode.optin {
            pushes.caching
        } else if mode.optout {
            !pushes.caching
        } else {
            true
        };
        if wanted {
            tracking.remember(id, spec.key_positions(args).map(|p| &args[p]));
        }
    }
    // As in Redis, CLIENT CACHING covers the next command, or the whole transaction
    // when that is MULTI (its queued reads run inside EXEC, one level down).
    let caching_command = spec.name == "client" && args.get(1).is_some_and(|a| is(a, "CACHING"));
    let in_transaction = ctx.client.tx.in_multi() || ctx.client.depth > 1;
    if !caching_command && !in_transaction {
        ctx.client.pushes.caching = false;
    }
}

/// RESET: tracking off, every subscription gone.
pub fn reset(ctx: &mut Ctx<'_>) {
    let id = ctx.client.id();
    ctx.server.tracking.disable(id);
    for channel in ctx.client.pushes.channels.drain(..) {
        ctx.server.tracking.unsubscribe(id, &channel);
    }
    ctx.client.pushes.tracking = None;
    ctx.client.pushes.caching = false;
}

/// Whether two prefixes overlap (one starts the other).
fn overlap(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// CLIENT TRACKING on|off [REDIRECT id] [PREFIX p]... [BCAST] [OPTIN] [OPTOUT] [NOLOOP]
pub fn client_tracking(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if !ctx.client.pushes.supported {
        return Err(unsupported());
    }
    let mut mode = Mode::default();
    let mut j = 3;
    while j < args.len() {
        let more = j + 1 < args.len();
        let a = &args[j];
        if is(a, "REDIRECT") && more {
            j += 1;
            if mode.redirect != 0 {
                return Err(CmdError::Other(
                    "A client can only redirect to a single other client".into(),
                ));
            }
            let id = int(&args[j])?;
            if id <= 0 || !ctx.server.tracking.exists(id as u64) {
                return Err(CmdError::Other(
                    "The client ID you want redirect to does not exist".into(),
                ));
            }
            mode.redirect = id as u64;
        } else if is(a, "BCAST") {
            mode.bcast = true;
        } else if is(a, "OPTIN") {
            mode.optin = true;
        } else if is(a, "OPTOUT") {
            mode.optout = true;
        } else if is(a, "NOLOOP") {
            mode.noloop = true;
        } else if is(a, "PREFIX") && more {
            j += 1;
            mode.prefixes.push(args[j].clone());
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let current = ctx.client.pushes.tracking.clone();
    if is(&args[2], "ON") {
        if !mode.bcast && !mode.prefixes.is_empty() {
            return Err(CmdError::Other(
                "PREFIX option requires BCAST mode to be enabled".into(),
            ));
        }
        if current.as_ref().is_some_and(|c| c.bcast != mode.bcast) {
            return Err(CmdError::Other("You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.".into()));
        }
        if mode.bcast && (mode.optin || mode.optout) {
            return Err(CmdError::Other("OPTIN and OPTOUT are not compatible with BCAST".into()));
        }
        if mode.optin && mode.optout {
            return Err(CmdError::Other(
                "You can't specify both OPTIN mode and OPTOUT mode".into(),
            ));
        }
        if current
            .as_ref()
            .is_some_and(|c| (mode.optin && c.optout) || (mode.optout && c.optin))
        {
            return Err(CmdError::Other("You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.".into()));
        }
        if mode.bcast {
            let existing: &[Bytes] = current.as_ref().map_or(&[], |c| &c.prefixes);
            for (i, p) in mode.prefixes.iter().enumerate() {
                if let Some(e) = existing.iter().find(|e| overlap(e, p)) {
                    return Err(CmdError::Other(format!(
                        "Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                        text(p),
                        text(e)
                    )));
                }
                if let Some(q) = mode.prefixes[i + 1..].iter().find(|q| overlap(p, q)) {
                    return Err(CmdError::Other(format!(
                        "Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                        text(p),
                        text(q)
                    )));
                }
            }
            // Re-enabling BCAST adds prefixes to those already there.
            let mut all = existing.to_vec();
            all.append(&mut mode.prefixes);
            mode.prefixes = all;
        }
        ctx.server.tracking.enable(ctx.client.id(), mode.clone());
        ctx.client.pushes.tracking = Some(mode);
    } else if is(&args[2], "OFF") {
        ctx.server.tracking.disable(ctx.client.id());
        ctx.client.pushes.tracking = None;
    } else {
        return Err(CmdError::Syntax);
    }
    ctx.client.pushes.caching = false;
    ctx.out.ok();
    Ok(())
}

/// CLIENT CACHING yes|no: whether the next command's keys are tracked (OPTIN/OPTOUT).
pub fn client_caching(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let Some(mode) = &ctx.client.pushes.tracking else {
        return Err(CmdError::Other(
            "CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"
                .into(),
        ));
    };
    if is(&args[2], "YES") {
        if !mode.optin {
            return Err(CmdError::Other(
                "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.".into(),
            ));
        }
    } else if is(&args[2], "NO") {
        if !mode.optout {
            return Err(CmdError::Other(
                "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.".into(),
            ));
        }
    } else {
        return Err(CmdError::Syntax);
    }
    ctx.client.pushes.caching = true;
    ctx.out.ok();
    Ok(())
}

/// CLIENT TRACKINGINFO: flags, redirect, prefixes.
pub fn client_trackinginfo(ctx: &mut Ctx<'_>) {
    let pushes = &ctx.client.pushes;
    let mut flags: Vec<&str> = Vec::new();
    let (redirect, prefixes) = match &pushes.tracking {
        Some(m) => {
            flags.push("on");
            if m.bcast {
                flags.push("bcast");
            }
            if m.optin {
                flags.push("optin");
                if pushes.caching {
                    flags.push("caching-yes");
                }
            }
            if m.optout {
                flags.push("optout");
                if pushes.caching {
                    flags.push("caching-no");
                }
            }
            if m.noloop {
                flags.push("noloop");
            }
            if m.redirect != 0 && !ctx.server.tracking.exists(m.redirect) {
                flags.push("broken_redirect");
            }
            let mut prefixes = m.prefixes.clone();
            prefixes.sort();
            (m.redirect as i64, prefixes)
        }
        None => {
            flags.push("off");
            (-1, Vec::new())
        }
    };
    let out = &mut *ctx.out;
    out.map(3);
    out.bulk(b"flags");
    out.set(flags.len());
    for f in flags {
        out.bulk_str(f);
    }
    out.bulk(b"redirect");
    out.int(redirect);
    out.bulk(b"prefixes");
    out.array(prefixes.len());
    for p in &prefixes {
        out.bulk(p);
    }
}

/// The reply to one channel of (UN)SUBSCRIBE: [kind, channel, subscriptions left].
fn subscription_reply(ctx: &mut Ctx<'_>, kind: &[u8], channel: Option<&[u8]>) {
    let count = ctx.client.pushes.channels.len() as i64;
    if ctx.out.resp3 {
        ctx.out.push(3);
    } else {
        ctx.out.array(3);
    }
    ctx.out.bulk(kind);
    match channel {
        Some(c) => ctx.out.bulk(c),
        None => ctx.out.null(),
    }
    ctx.out.int(count);
}

fn subscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if !ctx.client.pushes.supported {
        return Err(unsupported());
    }
    for channel in &args[1..] {
        if ctx.server.tracking.subscribe(ctx.client.id(), channel) {
            ctx.client.pushes.channels.push(channel.clone());
        }
        subscription_reply(ctx, b"subscribe", Some(channel));
    }
    Ok(())
}

fn unsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let channels: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        ctx.client.pushes.channels.clone()
    };
    if channels.is_empty() {
        subscription_reply(ctx, b"unsubscribe", None);
        return Ok(());
    }
    for channel in &channels {
        ctx.server.tracking.unsubscribe(ctx.client.id(), channel);
        ctx.client.pushes.channels.retain(|c| c != channel);
        subscription_reply(ctx, b"unsubscribe", Some(channel));
    }
    Ok(())
}

fn publish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = ctx.server.tracking.publish(&args[1], &args[2]);
    ctx.out.int(n as i64);
    Ok(())
}
