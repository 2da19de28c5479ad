//! The command pipeline and one file per command family.
//!
//! Each family exports a table of [`CommandSpec`]s; [`registry`] merges them.
//! [`pipeline::execute`] runs one request: lookup → arity → authentication → routing
//! (once per command: [`route`]) → the handover step → memory check → handler → the
//! replication step, and returns what the connection must do next ([`Next`]).

pub mod args;
pub mod bits;
pub mod bloom;
pub mod cluster;
pub mod coalesce;
pub mod collection;
pub mod connection;
pub mod float;
pub mod handover;
pub mod hashes;
pub mod hotkeys;
pub mod hyperloglog;
pub mod keys;
pub mod keyspec;
pub mod lists;
pub mod pipeline;
pub mod replication;
pub mod route;
pub mod server;
pub mod sets;
pub mod strings;
pub mod tracking;
pub mod transactions;
pub mod zsets;

use std::sync::OnceLock;

use bytes::Bytes;
use ringcache_core::slot::{key_slot, Slot};
use ringcache_core::view::View;

use crate::blocking::BlockOn;
use crate::handover::FetchRequest;
use crate::replication::{AckWait, SyncRequest};
use crate::resp::Out;
use crate::state::{ClientState, ServerState};
use crate::store::{OutOfMemory, Store};

pub use pipeline::execute;

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
#[derive(Debug)]
pub enum Next {
    /// Run the next request.
    Continue,
    /// Send what is buffered, then close (QUIT).
    Close,
    /// The command wrote no reply: read these keys through from a handover's source,
    /// then run the command again.
    ReadThrough(FetchRequest),
    /// Hold the command's reply until enough replicas acknowledged its write.
    WaitForAcks(AckWait),
    /// `RINGCACHE.SYNC`: the connection now carries a replication stream.
    TakeOver(SyncRequest),
    /// The command found nothing to serve and wrote no reply: wait until one of the
    /// keys is written (or the timeout passes), then run the command again (see
    /// [`crate::blocking`]).
    Block(BlockOn),
}

/// Everything a handler can touch.
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub server: &'a ServerState,
    pub client: &'a mut ClientState,
    pub out: &'a mut Out,
    /// Time of this command, unix ms.
    pub now: u64,
    /// This node's view of the cluster, read once per batch of commands (cluster mode).
    pub view: Option<&'a View>,
    /// In cluster mode, the slot every key of this command hashes to (routing refused
    /// the rest); `None` in standalone mode or for keyless commands.
    pub slot: Option<Slot>,
    /// Set by a handler that ends the connection or hands it over.
    pub next: Next,
}

impl Ctx<'_> {
    /// Whether the command now running may block (return [`Next::Block`]): only a
    /// command the connection runs itself, on a connection that can hold it. A
    /// blocking command that may not block answers as if it timed out at once, as
    /// Redis does for a client that may not block (inside MULTI, for instance).
    pub fn may_block(&self) -> bool {
        self.client.can_block && self.client.depth <= 1
    }

    /// For a blocking command with nothing to serve: asks the connection to wait for a
    /// write to `keys` (or `timeout`), then run the command again. A command that may
    /// not block answers a null array instead, as Redis answers it then and on a
    /// timeout. Nothing else may be written to the reply.
    pub fn block(&mut self, keys: &[Bytes], timeout: Option<std::time::Duration>) {
        if !self.may_block() {
            self.out.null_array();
            return;
        }
        self.next = Next::Block(BlockOn {
            keys: keys.to_vec(),
            timeout,
        });
    }

    /// The slot of `key`, one of this command's keys: the routed slot in cluster mode,
    /// computed otherwise.
    pub fn slot_of(&self, key: &[u8]) -> Slot {
        self.slot.unwrap_or_else(|| key_slot(key))
    }
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
    /// Key positions depend on the arguments (a `numkeys` count, see
    /// [`super::keyspec`]); `keys` holds only the fixed ones, as `COMMAND` reports.
    pub const MOVABLEKEYS: u32 = 512;
    /// May block the client (returns [`super::Next::Block`]).
    pub const BLOCKING: u32 = 1024;
    /// Empties the keyspace (FLUSHALL, FLUSHDB): handovers stop reading through and the
    /// replicas are told. Internal, not reported by COMMAND.
    pub const FLUSH: u32 = 1 << 16;
    /// Runs even inside MULTI instead of being queued (EXEC DISCARD MULTI WATCH QUIT
    /// RESET). Internal.
    pub const TX: u32 = 1 << 17;
    /// Refused inside MULTI ("Command not allowed inside a transaction"): commands that
    /// take the connection over. Internal.
    pub const NOMULTI: u32 = 1 << 18;
    /// Allowed in RESP2 Pub/Sub mode (SUBSCRIBE UNSUBSCRIBE PING QUIT RESET). Internal.
    pub const PUBSUB: u32 = 1 << 19;
    /// A write of one collection key whose effect depends only on the value it finds
    /// and its arguments (LPUSH, HSET, ZADD, …): replication may ship the command
    /// instead of the whole value, and a replica runs it (replication/mod.rs). The
    /// key is the first argument. Internal.
    pub const REPLAY: u32 = 1 << 20;

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
        (BLOCKING, "blocking"),
        (MOVABLEKEYS, "movablekeys"),
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
    /// Whether the command takes keys (fixed or counted).
    pub fn has_keys(&self) -> bool {
        self.keys.0 > 0 || self.flags & flag::MOVABLEKEYS != 0
    }

    /// Positions of key arguments in `args` (index 0 is the command name): the fixed
    /// ones of `keys`, then the counted ones of a [`flag::MOVABLEKEYS`] command.
    pub fn key_positions(&self, args: &[Bytes]) -> impl Iterator<Item = usize> {
        let (first, last, step) = self.keys;
        let argc = args.len() as i32;
        let last = if last < 0 { argc + last } else { last.min(argc - 1) };
        let step = step.max(1);
        let first = if first <= 0 { argc } else { first };
        let fixed = (first..=last).step_by(step as usize).map(|i| i as usize);
        let counted = if self.flags & flag::MOVABLEKEYS != 0 {
            keyspec::counted_keys(self.name, args)
        } else {
            0..0
        };
        fixed.chain(counted)
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
            bits::COMMANDS,
            hyperloglog::COMMANDS,
            keys::COMMANDS,
            hashes::COMMANDS,
            transactions::COMMANDS,
            tracking::COMMANDS,
            zsets::COMMANDS,
            sets::COMMANDS,
            lists::COMMANDS,
            bloom::COMMANDS,
            replication::COMMANDS,
            handover::COMMANDS,
            hotkeys::COMMANDS,
            coalesce::COMMANDS,
        ]
        .iter()
        .flat_map(|t| t.iter())
        .collect();
        let by_name = commands.iter().enumerate().map(|(i, c)| (c.name, i)).collect();
        Registry { commands, by_name }
    })
}

/// The subcommand table (name, arity) of a container command, for checks made before
/// its handler runs (MULTI queues only what its handler would accept that far).
pub fn subcommands(name: &str) -> Option<&'static [(&'static str, i32)]> {
    match name {
        "client" => Some(connection::CLIENT_SUBCOMMANDS),
        "cluster" => Some(cluster::CLUSTER_SUBCOMMANDS),
        "config" => Some(server::CONFIG_SUBCOMMANDS),
        "command" => Some(server::COMMAND_SUBCOMMANDS),
        "object" => Some(keys::OBJECT_SUBCOMMANDS),
        "memory" => Some(keys::MEMORY_SUBCOMMANDS),
        _ => None,
    }
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
    let pos = spec.key_positions(args).next()?;
    args.get(pos).map(|k| &k[..])
}

pub(crate) fn unknown_command(args: &[Bytes]) -> String {
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
