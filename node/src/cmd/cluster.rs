//! Redis Cluster commands: CLUSTER SHARDS SLOTS NODES MYID INFO KEYSLOT
//! COUNTKEYSINSLOT GETKEYSINSLOT, READONLY, READWRITE, ASKING. (Routing, `-MOVED`
//! and friends, is [`super::route`].)

use bytes::Bytes;

use super::args::{check_subcommand, int, is, text, unknown_subcommand};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use ringcache_core::slot::{key_slot, Slot, SLOT_COUNT};
use ringcache_core::topology::{NodeInfo, SlotRange};
use ringcache_core::view::View;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "cluster",
        arity: -2,
        flags: STALE,
        keys: (0, 0, 0),
        group: "cluster",
        summary: "A container for Redis Cluster commands.",
        handler: cluster,
    },
    CommandSpec {
        name: "readonly",
        arity: 1,
        flags: FAST | LOADING | STALE,
        keys: (0, 0, 0),
        group: "cluster",
        summary: "Enables read-only queries for a connection to a Redis Cluster replica node.",
        handler: readonly,
    },
    CommandSpec {
        name: "readwrite",
        arity: 1,
        flags: FAST | LOADING | STALE,
        keys: (0, 0, 0),
        group: "cluster",
        summary: "Enables read-write queries for a connection to a Reids Cluster replica node.",
        handler: readwrite,
    },
    CommandSpec {
        name: "asking",
        arity: 1,
        flags: FAST,
        keys: (0, 0, 0),
        group: "cluster",
        summary: "Signals that a cluster client is following an -ASK redirect.",
        handler: asking,
    },
];

const DISABLED: &str = "This instance has cluster support disabled";

fn readonly(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    if !ctx.server.cluster.enabled {
        return Err(CmdError::Other(DISABLED.into()));
    }
    ctx.client.readonly = true;
    ctx.out.ok();
    Ok(())
}

fn readwrite(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    if !ctx.server.cluster.enabled {
        return Err(CmdError::Other(DISABLED.into()));
    }
    ctx.client.readonly = false;
    ctx.out.ok();
    Ok(())
}

fn asking(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    if !ctx.server.cluster.enabled {
        return Err(CmdError::Other(DISABLED.into()));
    }
    ctx.out.ok();
    Ok(())
}

fn split_addr(addr: &str) -> (&str, i64) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().unwrap_or(0),
        ),
        None => (addr, 0),
    }
}

fn slot_arg(b: &Bytes) -> Result<Slot, CmdError> {
    let v = int(b).map_err(|_| CmdError::Other("Invalid slot".into()))?;
    if !(0..SLOT_COUNT as i64).contains(&v) {
        return Err(CmdError::Other("Invalid slot".into()));
    }
    Ok(v as Slot)
}

/// Slot ranges with their owners, in slot order.
fn ranges(view: &View) -> Vec<(SlotRange, Vec<&NodeInfo>)> {
    let mut out: Vec<(SlotRange, Vec<&NodeInfo>)> = view
        .topology
        .slots
        .iter()
        .map(|a| {
            (
                a.range,
                a.owners.iter().filter_map(|id| view.topology.node(id)).collect(),
            )
        })
        .collect();
    out.sort_by_key(|(r, _)| r.start);
    out
}

/// CLUSTER's subcommands and their arities (as Redis 7 declares them).
pub const CLUSTER_SUBCOMMANDS: &[(&str, i32)] = &[
    ("KEYSLOT", 3),
    ("MYID", 2),
    ("COUNTKEYSINSLOT", 3),
    ("GETKEYSINSLOT", 4),
    ("INFO", 2),
    ("SLOTS", 2),
    ("SHARDS", 2),
    ("NODES", 2),
];

fn cluster(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    let state = ctx.server.cluster.clone();
    // Subcommand and arity first, as Redis checks them before running the command.
    check_subcommand("cluster", args, CLUSTER_SUBCOMMANDS)?;
    if !state.enabled {
        return Err(CmdError::Other(DISABLED.into()));
    }
    if is(sub, "KEYSLOT") {
        ctx.out.int(i64::from(key_slot(&args[2])));
        return Ok(());
    }
    if is(sub, "MYID") {
        ctx.out.bulk_str(&state.node_id);
        return Ok(());
    }
    if is(sub, "COUNTKEYSINSLOT") {
        let slot = slot_arg(&args[2])?;
        ctx.out.int(ctx.store.slot_stats(slot).keys as i64);
        return Ok(());
    }
    if is(sub, "GETKEYSINSLOT") {
        let slot = slot_arg(&args[2])?;
        let count = int(&args[3])?;
        if count < 0 {
            return Err(CmdError::Other("Invalid number of keys".into()));
        }
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut locked = ctx.store.lock(slot);
        locked.slot().for_each_key(ctx.now, |e| {
            if (keys.len() as i64) < count {
                keys.push(e.key().to_vec());
            }
        });
        drop(locked);
        ctx.out.array(keys.len());
        for k in keys {
            ctx.out.bulk(&k);
        }
        return Ok(());
    }
    let view = state.view();
    if is(sub, "INFO") {
        let (assigned, known, size, epoch) = match &view {
            Some(v) => {
                let assigned: usize = v
                    .topology
                    .slots
                    .iter()
                    .filter(|a| !a.owners.is_empty())
                    .map(|a| a.range.len())
                    .sum();
                let primaries: std::collections::HashSet<&str> = v
                    .topology
                    .slots
                    .iter()
                    .filter_map(|a| a.owners.first().map(String::as_str))
                    .collect();
                (assigned, v.topology.nodes.len(), primaries.len(), v.topology.epoch)
            }
            None => (0, 1, 0, 0),
        };
        let ok = assigned == SLOT_COUNT;
        let text = format!(
            "cluster_enabled:1\r\ncluster_state:{}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{known}\r\ncluster_size:{size}\r\ncluster_current_epoch:{epoch}\r\ncluster_my_epoch:{epoch}\r\n",
            if ok { "ok" } else { "fail" }
        );
        ctx.out.verbatim(&text);
        return Ok(());
    }
    if is(sub, "SLOTS") {
        let Some(view) = view else {
            ctx.out.array(0);
            return Ok(());
        };
        let rs = ranges(&view);
        ctx.out.array(rs.len());
        for (r, owners) in rs {
            ctx.out.array(2 + owners.len());
            ctx.out.int(i64::from(r.start));
            ctx.out.int(i64::from(r.end));
            for o in owners {
                let (host, port) = split_addr(&o.resp_addr);
                ctx.out.array(3);
                ctx.out.bulk_str(host);
                ctx.out.int(port);
                ctx.out.bulk_str(&o.id);
            }
        }
        return Ok(());
    }
    if is(sub, "SHARDS") {
        let Some(view) = view else {
            ctx.out.array(0);
            return Ok(());
        };
        // A shard is a distinct owner list: its slot ranges and its nodes.
        let mut shards: Vec<(Vec<&NodeInfo>, Vec<SlotRange>)> = Vec::new();
        for (r, owners) in ranges(&view) {
            match shards
                .iter_mut()
                .find(|(o, _)| o.iter().map(|n| &n.id).eq(owners.iter().map(|n| &n.id)))
            {
                Some((_, rs)) => rs.push(r),
                None => shards.push((owners, vec![r])),
            }
        }
        ctx.out.array(shards.len());
        for (owners, rs) in shards {
            ctx.out.map(2);
            ctx.out.bulk_str("slots");
            ctx.out.array(rs.len() * 2);
            for r in &rs {
                ctx.out.int(i64::from(r.start));
                ctx.out.int(i64::from(r.end));
            }
            ctx.out.bulk_str("nodes");
            ctx.out.array(owners.len());
            for (i, o) in owners.iter().enumerate() {
                let (host, port) = split_addr(&o.resp_addr);
                ctx.out.map(7);
                ctx.out.bulk_str("id");
                ctx.out.bulk_str(&o.id);
                ctx.out.bulk_str("port");
                ctx.out.int(port);
                ctx.out.bulk_str("ip");
                ctx.out.bulk_str(host);
                ctx.out.bulk_str("endpoint");
                ctx.out.bulk_str(host);
                ctx.out.bulk_str("role");
                ctx.out.bulk_str(if i == 0 { "master" } else { "replica" });
                ctx.out.bulk_str("replication-offset");
                ctx.out.int(0);
                ctx.out.bulk_str("health");
                ctx.out.bulk_str("online");
            }
        }
        return Ok(());
    }
    if is(sub, "NODES") {
        let mut s = String::new();
        match view {
            None => s.push_str(&format!("{} :0@0 myself,master - 0 0 0 connected\n", state.node_id)),
            Some(view) => {
                for node in &view.topology.nodes {
                    let slots = view.topology.slots_of(&node.id);
                    let is_primary = !slots.primary.is_empty() || slots.replica.is_empty();
                    let master = if is_primary {
                        "-".to_string()
                    } else {
                        slots
                            .replica
                            .first()
                            .and_then(|r| view.slots.primary(r.start))
                            .unwrap_or("-")
                            .to_string()
                    };
                    let (_, cport) = split_addr(&node.control_addr);
                    let myself = if node.id == view.me.id { "myself," } else { "" };
                    s.push_str(&format!(
                        "{} {}@{} {myself}{} {master} 0 0 {} connected",
                        node.id,
                        node.resp_addr,
                        cport,
                        if is_primary { "master" } else { "slave" },
                        view.topology.epoch
                    ));
                    for r in &slots.primary {
                        if r.start == r.end {
                            s.push_str(&format!(" {}", r.start));
                        } else {
                            s.push_str(&format!(" {}-{}", r.start, r.end));
                        }
                    }
                    s.push('\n');
                }
            }
        }
        ctx.out.verbatim(&s);
        return Ok(());
    }
    Err(unknown_subcommand("cluster", &text(sub)))
}
