//! Commands: one file per command family. Each family exports a table of
//! [`CommandSpec`]s; [`registry`] merges them, and [`execute`] runs one request:
//! lookup → arity → authentication → memory check → handler.

pub mod args;
pub mod cluster;
pub mod connection;
pub mod float;
pub mod handover;
pub mod hashes;
pub mod keys;
pub mod replication;
pub mod server;
pub mod strings;

use std::sync::OnceLock;

use bytes::Bytes;

use crate::resp::Out;
use crate::server::state::{ClientState, ServerState};
use crate::store::{OutOfMemory, Store};

/// What a handler may fail with; `Display` is the full error line (`ERR ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("{0}")]
    OutOfMemory(#[from] OutOfMemory),
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR {0}")]
    Other(String),
    /// An error line with its own code, e.g. `WRONGPASS ...`.
    #[error("{0}")]
    Coded(String),
}

pub type CmdResult = Result<(), CmdError>;

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Send what is buffered, then close (QUIT).
    Close,
}

/// Everything a handler can touch.
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub server: &'a ServerState,
    pub client: &'a mut ClientState,
    pub out: &'a mut Out,
    /// Time of this command, unix ms.
    pub now: u64,
    pub flow: Flow,
}

pub type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> CmdResult;

/// Command flags, as `COMMAND INFO` reports them.
pub mod flag {
    pub const WRITE: u32 = 1;
    pub const READONLY: u32 = 2;
    pub const DENYOOM: u32 = 4;
    pub const FAST: u32 = 8;
    pub const NOAUTH: u32 = 16;
    pub const LOADING: u32 = 32;
    pub const STALE: u32 = 64;
    pub const ADMIN: u32 = 128;
    pub const NOSCRIPT: u32 = 256;

    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (FAST, "fast"),
        (NOAUTH, "no_auth"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (ADMIN, "admin"),
        (NOSCRIPT, "noscript"),
    ];
}

/// Static description of a command (the shape Redis' `COMMAND` reports).
#[derive(Debug)]
pub struct CommandSpec {
    pub name: &'static str,
    /// Positive: exact argument count including the name; negative: at least -arity.
    pub arity: i32,
    pub flags: u32,
    /// Key positions: first, last (-1 = last argument), step; 0,0,0 for no keys.
    pub keys: (i32, i32, i32),
    pub group: &'static str,
    pub summary: &'static str,
    pub handler: Handler,
}

impl CommandSpec {
    /// Positions of key arguments in `args` (index 0 is the command name).
    pub fn key_positions(&self, argc: usize) -> impl Iterator<Item = usize> {
        let (first, last, step) = self.keys;
        let argc = argc as i32;
        let last = if last < 0 { argc + last } else { last.min(argc - 1) };
        let step = step.max(1);
        let first = if first <= 0 { argc } else { first };
        (first..=last).step_by(step as usize).map(|i| i as usize)
    }
}

/// All commands, and a case-insensitive index into them.
pub struct Registry {
    pub commands: Vec<&'static CommandSpec>,
    by_name: hashbrown::HashMap<&'static str, usize>,
}

impl Registry {
    /// Index and spec of `name` (any case).
    pub fn lookup(&self, name: &[u8]) -> Option<(usize, &'static CommandSpec)> {
        let mut buf = [0u8; 32];
        if name.len() > buf.len() {
            return None;
        }
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        let s = std::str::from_utf8(lower).ok()?;
        let i = *self.by_name.get(s)?;
        Some((i, self.commands[i]))
    }
}

/// The process-wide command registry.
pub fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        let commands: Vec<&'static CommandSpec> = [
            connection::COMMANDS,
            server::COMMANDS,
            cluster::COMMANDS,
            strings::COMMANDS,
            keys::COMMANDS,
            hashes::COMMANDS,
            replication::COMMANDS,
            handover::COMMANDS,
        ]
        .iter()
        .flat_map(|t| t.iter())
        .collect();
        let by_name = commands.iter().enumerate().map(|(i, c)| (c.name, i)).collect();
        Registry { commands, by_name }
    })
}

/// A request's command, looked up once in the [`registry`]: its index and spec, or
/// `None` for an unknown command.
pub type Found = Option<(usize, &'static CommandSpec)>;

/// Looks up the command of `args`.
pub fn find(args: &[Bytes]) -> Found {
    registry().lookup(args.first()?)
}

/// The first key argument of a request whose command is `found`.
pub fn first_key(args: &[Bytes], found: Found) -> Option<&[u8]> {
    let (_, spec) = found?;
    let pos = spec.key_positions(args.len()).next()?;
    args.get(pos).map(|k| &k[..])
}

/// Runs one request and writes its reply. Returns the command's registry index (for
/// per-command metrics) when it was a known command.
pub fn execute(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Option<usize> {
    execute_found(ctx, args, find(args))
}

/// [`execute`] for a request whose command was already looked up.
pub fn execute_found(ctx: &mut Ctx<'_>, args: &[Bytes], found: Found) -> Option<usize> {
    if args.is_empty() {
        return None;
    }
    let Some((index, spec)) = found else {
        ctx.out.error(&unknown_command(args));
        return None;
    };
    if let Err(e) = check_and_run(ctx, spec, args) {
        ctx.out.error(&e.to_string());
    }
    Some(index)
}

fn check_and_run(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> CmdResult {
    let argc = args.len() as i32;
    if (spec.arity > 0 && argc != spec.arity) || (spec.arity < 0 && argc < -spec.arity) {
        return Err(CmdError::WrongArity(spec.name.to_string()));
    }
    if !ctx.client.authenticated && spec.flags & flag::NOAUTH == 0 {
        return Err(CmdError::NoAuth);
    }
    if spec.keys.0 > 0 {
        cluster::route(ctx, spec, args)?;
    }
    if !crate::handover::before_command(ctx, spec, args) {
        // The connection reads keys through from a handover's source, then runs the
        // command again.
        return Ok(());
    }
    if spec.flags & flag::DENYOOM != 0 && !ctx.client.no_evict {
        ctx.store.ensure_memory()?;
    }
    let result = (spec.handler)(ctx, args);
    if spec.flags & flag::WRITE != 0 {
        // Also after an error: a handler may have changed a key before failing.
        crate::replication::after_write(ctx, spec, args, result.is_ok());
    }
    result
}

fn unknown_command(args: &[Bytes]) -> String {
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&args[0]).chars().take(128).collect::<String>()
    );
    for a in args.iter().skip(1).take(8) {
        msg.push('\'');
        msg.extend(String::from_utf8_lossy(a).chars().take(128));
        msg.push_str("' ");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_unique_lowercase_name_and_sane_key_spec() {
        let reg = registry();
        let mut seen = std::collections::HashSet::new();
        for c in &reg.commands {
            assert!(seen.insert(c.name), "duplicate command {}", c.name);
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(c.arity != 0, "{} has arity 0", c.name);
            let (first, last, step) = c.keys;
            if first > 0 {
                assert!(step > 0, "{}", c.name);
                assert!(last < 0 || last >= first, "{}", c.name);
            }
            assert!(
                c.flags & flag::WRITE == 0 || c.flags & flag::READONLY == 0,
                "{}",
                c.name
            );
        }
        assert!(reg.lookup(b"GeT").is_some());
        assert!(reg.lookup(b"nosuchcommand").is_none());
    }
}
