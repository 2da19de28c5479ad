//! Connection commands: PING ECHO HELLO AUTH QUIT SELECT CLIENT RESET.

use bytes::Bytes;

use super::args::{check_subcommand, int, is, text, unknown_subcommand};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx, Next};

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ping",
        arity: -1,
        flags: FAST | STALE | PUBSUB,
        keys: (0, 0, 0),
        group: "connection",
        summary: "Returns the server's liveliness response.",
        handler: ping,
    },
    CommandSpec {
        name: "echo",
        arity: 2,
        flags: FAST,
        keys: (0, 0, 0),
        group: "connection",
        summary: "Returns the given string.",
        handler: echo,
    },
    CommandSpec {
        name: "hello",
        arity: -1,
        flags: FAST | NOAUTH | STALE | LOADING | NOSCRIPT,
        keys: (0, 0, 0),
        group: "connection",
        summary: "Handshakes with the server.",
        handler: hello,
    },
    CommandSpec {
        name: "auth",
        arity: -2,
        flags: FAST | NOAUTH | STALE | LOADING | NOSCRIPT,
        keys: (0, 0, 0),
        group: "connection",
        summary: "Authenticates the connection.",
        handler: auth,
    },
    CommandSpec {
        name: "quit",
        arity: -1,
        flags: FAST | NOAUTH | STALE | LOADING | NOSCRIPT | TX | PUBSUB,
        keys: (0, 0, 0),
        group: "connection",
        summary: "Closes the connection.",
        handler: quit,
    },
    CommandSpec {
        name: "select",
        arity: 2,
        flags: FAST | LOADING | STALE,
        keys: (0, 0, 0),
        group: "connection",
        summary: "Changes the selected database (only 0 exists).",
        handler: select,
    },
    CommandSpec {
        name: "reset",
        arity: 1,
        flags: FAST | NOAUTH | STALE | LOADING | NOSCRIPT | TX | PUBSUB,
        keys: (0, 0, 0),
        group: "connection",
        summary: "Resets the connection.",
        handler: reset,
    },
    CommandSpec {
        name: "client",
        arity: -2,
        flags: STALE | LOADING | NOSCRIPT,
        keys: (0, 0, 0),
        group: "connection",
        summary: "A container for client connection commands.",
        handler: client,
    },
];

fn ping(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if !ctx.out.resp3 && !ctx.client.pushes.channels.is_empty() {
        // In RESP2 Pub/Sub mode PING answers like a message: [pong, <arg or "">].
        if args.len() > 2 {
            return Err(CmdError::WrongArity("ping".into()));
        }
        ctx.out.array(2);
        ctx.out.bulk(b"pong");
        ctx.out.bulk(args.get(1).map_or(&b""[..], |a| &a[..]));
        return Ok(());
    }
    match args.len() {
        1 => ctx.out.simple("PONG"),
        2 => ctx.out.bulk(&args[1]),
        _ => return Err(CmdError::WrongArity("ping".into())),
    }
    Ok(())
}

fn echo(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    ctx.out.bulk(&args[1]);
    Ok(())
}

fn check_password(ctx: &mut Ctx<'_>, user: &[u8], pass: &[u8]) -> CmdResult {
    let required = ctx.server.access.requirepass();
    let ok = match required {
        Some(p) => user == b"default" && pass == p.as_bytes(),
        // With no password every AUTH of the default user succeeds (Redis 6+ says so
        // for HELLO; plain AUTH errors, handled by the caller).
        None => user == b"default",
    };
    if !ok {
        return Err(CmdError::Coded(
            "WRONGPASS invalid username-password pair or user is disabled.".into(),
        ));
    }
    ctx.client.authenticated = true;
    Ok(())
}

fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let (user, pass): (&[u8], &[u8]) = match args.len() {
        2 => (b"default", &args[1]),
        3 => (&args[1], &args[2]),
        _ => return Err(CmdError::Syntax),
    };
    if args.len() == 2 && !ctx.server.access.auth_required() {
        return Err(CmdError::Other(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into(),
        ));
    }
    check_password(ctx, user, pass)?;
    ctx.out.ok();
    Ok(())
}

fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let mut proto = if ctx.out.resp3 { 3 } else { 2 };
    let mut i = 1;
    if args.len() > 1 {
        let v =
            int(&args[1]).map_err(|_| CmdError::Other("Protocol version is not an integer or out of range".into()))?;
        if !(2..=3).contains(&v) {
            return Err(CmdError::Coded("NOPROTO unsupported protocol version".into()));
        }
        proto = v as u8;
        i = 2;
    }
    let mut setname = None;
    while i < args.len() {
        if is(&args[i], "AUTH") && i + 2 < args.len() {
            check_password(ctx, &args[i + 1], &args[i + 2])?;
            i += 3;
        } else if is(&args[i], "SETNAME") && i + 1 < args.len() {
            setname = Some(valid_name(&args[i + 1])?);
            i += 2;
        } else {
            return Err(CmdError::Other(format!(
                "Syntax error in HELLO option '{}'",
                text(&args[i])
            )));
        }
    }
    if !ctx.client.authenticated {
        return Err(CmdError::Coded("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into()));
    }
    {
        let mut meta = ctx.client.shared.meta.lock();
        if let Some(n) = setname {
            meta.name = n;
        }
        meta.resp = proto;
    }
    ctx.out.resp3 = proto == 3;
    let out = &mut *ctx.out;
    out.map(7);
    out.bulk_str("server");
    out.bulk_str("redis");
    out.bulk_str("version");
    out.bulk_str(crate::cmd::server::REDIS_COMPAT_VERSION);
    out.bulk_str("proto");
    out.int(i64::from(proto));
    out.bulk_str("id");
    out.int(ctx.client.id() as i64);
    out.bulk_str("mode");
    out.bulk_str(if ctx.server.cluster.enabled {
        "cluster"
    } else {
        "standalone"
    });
    out.bulk_str("role");
    out.bulk_str("master");
    out.bulk_str("modules");
    out.array(0);
    Ok(())
}

fn quit(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    ctx.out.ok();
    ctx.next = Next::Close;
    Ok(())
}

fn select(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match int(&args[1]) {
        Ok(0) => {
            ctx.out.ok();
            Ok(())
        }
        Ok(_) => Err(CmdError::Other("DB index is out of range".into())),
        Err(e) => Err(e),
    }
}

fn reset(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    super::transactions::discard(ctx.store, ctx.client);
    super::tracking::reset(ctx);
    ctx.out.resp3 = false;
    ctx.client.no_evict = false;
    // RINGCACHE.COALESCE: back to the node's patterns (leases held stay until written).
    ctx.client.coalesce.mode = Default::default();
    ctx.client.authenticated = !ctx.server.access.auth_required();
    {
        let mut meta = ctx.client.shared.meta.lock();
        meta.name = None;
        meta.resp = 2;
    }
    ctx.out.simple("RESET");
    Ok(())
}

/// A client name: no spaces or newlines (Redis rejects them).
fn valid_name(b: &[u8]) -> Result<Option<String>, CmdError> {
    if b.iter().any(|&c| c <= b' ' || c > b'~') {
        return Err(CmdError::Other(
            "Client names cannot contain spaces, newlines or special characters.".into(),
        ));
    }
    Ok(if b.is_empty() { None } else { Some(text(b)) })
}

/// CLIENT's subcommands and their arities (as Redis 7 declares them).
pub const CLIENT_SUBCOMMANDS: &[(&str, i32)] = &[
    ("ID", 2),
    ("SETNAME", 3),
    ("GETNAME", 2),
    ("INFO", 2),
    ("LIST", -2),
    ("SETINFO", 4),
    ("NO-EVICT", 3),
    ("TRACKING", -3),
    ("CACHING", 3),
    ("GETREDIR", 2),
    ("TRACKINGINFO", 2),
];

fn client(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    check_subcommand("client", args, CLIENT_SUBCOMMANDS)?;
    let sub = &args[1];
    if is(sub, "ID") {
        ctx.out.int(ctx.client.id() as i64);
    } else if is(sub, "SETNAME") {
        let name = valid_name(&args[2])?;
        ctx.client.shared.meta.lock().name = name;
        ctx.out.ok();
    } else if is(sub, "GETNAME") {
        let name = ctx.client.shared.meta.lock().name.clone();
        match name {
            Some(name) => ctx.out.bulk_str(&name),
            None => ctx.out.null(),
        }
    } else if is(sub, "INFO") {
        let line = ctx.client.shared.info_line();
        ctx.out.verbatim(&format!("{line}\n"));
    } else if is(sub, "LIST") {
        let mut s = String::new();
        for c in ctx.server.clients.all() {
            s.push_str(&c.info_line());
            s.push('\n');
        }
        ctx.out.verbatim(&s);
    } else if is(sub, "SETINFO") {
        let value = &args[3];
        if value.iter().any(|&c| c <= b' ' || c > b'~') {
            return Err(CmdError::Other(format!(
                "{} cannot contain spaces, newlines or special characters.",
                text(&args[2]).to_ascii_lowercase()
            )));
        }
        let mut meta = ctx.client.shared.meta.lock();
        if is(&args[2], "LIB-NAME") {
            meta.lib_name = Some(text(value));
        } else if is(&args[2], "LIB-VER") {
            meta.lib_ver = Some(text(value));
        } else {
            return Err(CmdError::Other(format!("Unrecognized option '{}'", text(&args[2]))));
        }
        drop(meta);
        ctx.out.ok();
    } else if is(sub, "NO-EVICT") {
        if is(&args[2], "ON") {
            ctx.client.no_evict = true;
        } else if is(&args[2], "OFF") {
            ctx.client.no_evict = false;
        } else {
            return Err(CmdError::Syntax);
        }
        ctx.out.ok();
    } else if is(sub, "TRACKING") {
        super::tracking::client_tracking(ctx, args)?;
    } else if is(sub, "CACHING") {
        super::tracking::client_caching(ctx, args)?;
    } else if is(sub, "GETREDIR") {
        let redirect = ctx.client.pushes.tracking.as_ref().map_or(-1, |m| m.redirect as i64);
        ctx.out.int(redirect);
    } else if is(sub, "TRACKINGINFO") {
        super::tracking::client_trackinginfo(ctx);
    } else {
        return Err(unknown_subcommand("client", &text(sub)));
    }
    Ok(())
}
