//! Redis Cluster commands: CLUSTER SHARDS SLOTS NODES MYID INFO KEYSLOT
//! COUNTKEYSINSLOT GETKEYSINSLOT, READONLY, READWRITE, ASKING. (Routing, `-MOVED`
//! and friends, is [`super::route`].)

use bytes::Bytes;

use super::args::{check_subcommand, int, is, text, unknown_subcommand};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use ringcache_core::roles::{self, Role};
use ringcache_core::slot::{key_slot, Slot, SLOT_COUNT};
use ringcache_core::topology::Topology;

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
        // Replicas with a replica port show there, as virtual nodes (core::roles).
        let rs = roles::range_endpoints(&view.topology);
        ctx.out.array(rs.len());
        for r in rs {
            ctx.out.array(2 + r.endpoints.len());
            ctx.out.int(i64::from(r.range.start));
            ctx.out.int(i64::from(r.range.end));
            for e in &r.endpoints {
                let (host, port) = split_addr(&e.addr);
                ctx.out.array(3);
                ctx.out.bulk_str(host);
                ctx.out.int(port);
                ctx.out.bulk_str(&e.id);
            }
        }
        return Ok(());
    }
    if is(sub, "SHARDS") {
        let Some(view) = view else {
            ctx.out.array(0);
            return Ok(());
        };
        // A shard is a distinct endpoint list: a primary and the replicas of its ranges.
        let shards = roles::shards(&view.topology);
        ctx.out.array(shards.len());
        for (endpoints, rs) in shards {
            ctx.out.map(2);
            ctx.out.bulk_str("slots");
            ctx.out.array(rs.len() * 2);
            for r in &rs {
                ctx.out.int(i64::from(r.start));
                ctx.out.int(i64::from(r.end));
            }
            ctx.out.bulk_str("nodes");
            ctx.out.array(endpoints.len());
            for (i, e) in endpoints.iter().enumerate() {
                let (host, port) = split_addr(&e.addr);
                ctx.out.map(7);
                ctx.out.bulk_str("id");
                ctx.out.bulk_str(&e.id);
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
        let text = match view {
            None => format!("{} :0@0 myself,master - 0 0 0 connected\n", state.node_id),
            Some(view) => nodes_text(&view.topology, &view.me.id),
        };
        ctx.out.verbatim(&text);
        return Ok(());
    }
    Err(unknown_subcommand("cluster", &text(sub)))
}

/// CLUSTER NODES for `topology` as node `me` sees it: one line per node at its RESP
/// address (`myself` on `me`'s), then one per virtual replica at a replica address.
fn nodes_text(topology: &Topology, me: &str) -> String {
    let mut s = String::new();
    for n in roles::listed_nodes(topology) {
        let (_, cport) = split_addr(&n.control_addr);
        let myself = if n.endpoint.id == me { "myself," } else { "" };
        let (flag, master) = match &n.role {
            Role::Primary => ("master", "-"),
            Role::Replica { of } => ("slave", of.as_str()),
        };
        s.push_str(&format!(
            "{} {}@{cport} {myself}{flag} {master} 0 0 {} connected",
            n.endpoint.id, n.endpoint.addr, topology.epoch
        ));
        for r in &n.primary_ranges {
            s.push_str(&format!(" {r}"));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ringcache_core::topology::{NodeInfo, SlotAssignment, SlotRange};

    fn node(id: &str, port: u16) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            instance: "i".into(),
            resp_addr: format!("10.0.0.1:{port}"),
            control_addr: format!("10.0.0.1:{}", port + 1000),
            replica_addr: Some(format!("10.0.0.1:{}", port + 2)),
            zone: None,
        }
    }

    #[test]
    fn nodes_lists_virtual_replicas_as_slaves_of_their_primary() {
        let t = Topology {
            epoch: 7,
            nodes: vec![node("a", 6379), node("b", 7379)],
            slots: vec![
                SlotAssignment {
                    range: SlotRange::new(0, 8191),
                    owners: vec!["a".into(), "b".into()],
                },
                SlotAssignment {
                    range: SlotRange::new(8192, 16383),
                    owners: vec!["b".into(), "a".into()],
                },
            ],
        };
        let text = nodes_text(&t, "a");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "a 10.0.0.1:6379@7379 myself,master - 0 0 7 connected 0-8191".to_string(),
                "b 10.0.0.1:7379@8379 master - 0 0 7 connected 8192-16383".to_string(),
                format!(
                    "{} 10.0.0.1:6381@7379 slave b 0 0 7 connected",
                    roles::replica_id("a", "b")
                ),
                format!(
                    "{} 10.0.0.1:7381@8379 slave a 0 0 7 connected",
                    roles::replica_id("b", "a")
                ),
            ]
        );
    }
}
