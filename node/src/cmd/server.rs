//! Server commands: INFO DBSIZE FLUSHDB FLUSHALL TIME CONFIG COMMAND.

use std::fmt::Write;

use bytes::Bytes;

use super::args::{check_subcommand, is, text, unknown_subcommand};
use super::flag::*;
use super::{registry, CmdError, CmdResult, CommandSpec, Ctx};
use crate::store::encoding::{self, Encodings};
use crate::store::Policy;
use crate::util::size::parse_bytes;

/// The Redis version this server answers as (clients switch features on it).
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "info",
        arity: -1,
        flags: LOADING | STALE,
        keys: (0, 0, 0),
        group: "server",
        summary: "Returns information and statistics about the server.",
        handler: info,
    },
    CommandSpec {
        name: "dbsize",
        arity: 1,
        flags: READONLY | FAST,
        keys: (0, 0, 0),
        group: "server",
        summary: "Returns the number of keys.",
        handler: dbsize,
    },
    CommandSpec {
        name: "flushdb",
        arity: -1,
        flags: WRITE | FLUSH,
        keys: (0, 0, 0),
        group: "server",
        summary: "Removes all keys.",
        handler: flush,
    },
    CommandSpec {
        name: "flushall",
        arity: -1,
        flags: WRITE | FLUSH,
        keys: (0, 0, 0),
        group: "server",
        summary: "Removes all keys.",
        handler: flush,
    },
    CommandSpec {
        name: "time",
        arity: 1,
        flags: LOADING | STALE | FAST,
        keys: (0, 0, 0),
        group: "server",
        summary: "Returns the server time.",
        handler: time,
    },
    CommandSpec {
        name: "config",
        arity: -2,
        flags: ADMIN | NOSCRIPT | LOADING | STALE,
        keys: (0, 0, 0),
        group: "server",
        summary: "A container for server configuration commands.",
        handler: config,
    },
    CommandSpec {
        name: "command",
        arity: -1,
        flags: LOADING | STALE,
        keys: (0, 0, 0),
        group: "server",
        summary: "Returns detailed information about all commands.",
        handler: command,
    },
];

fn dbsize(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    ctx.out.int(ctx.store.dbsize() as i64);
    Ok(())
}

fn flush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    match args.get(1) {
        None => {}
        Some(a) if args.len() == 2 && (is(a, "ASYNC") || is(a, "SYNC")) => {}
        Some(_) => return Err(CmdError::Syntax),
    }
    ctx.store.flush();
    ctx.out.ok();
    Ok(())
}

fn time(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> CmdResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ctx.out.array(2);
    ctx.out.bulk_str(&now.as_secs().to_string());
    ctx.out.bulk_str(&now.subsec_micros().to_string());
    Ok(())
}

fn human(bytes: usize) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let wanted: Vec<String> = args[1..].iter().map(|a| text(a).to_ascii_lowercase()).collect();
    let all = wanted.is_empty() || wanted.iter().any(|w| w == "all" || w == "everything" || w == "default");
    let want = |s: &str| all || wanted.iter().any(|w| w == s);
    let g = ctx.server.gauges(ctx.store);
    let st = ctx.server;
    let mut s = String::new();
    if want("server") {
        let _ = write!(
            s,
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nringcache_version:{}\r\nredis_mode:{}\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nio_threads_active:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            if st.cluster.enabled { "cluster" } else { "standalone" },
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            st.run_id,
            st.port,
            st.started.elapsed().as_secs(),
            st.started.elapsed().as_secs() / 86400,
            st.threads,
        );
    }
    if want("clients") {
        let _ = write!(
            s,
            "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\n\r\n",
            g.connected_clients,
            st.blocking.blocked_clients()
        );
    }
    if want("memory") {
        let _ = write!(
            s,
            "# Memory\r\nused_memory:{}\r\nused_memory_human:{}\r\nused_memory_rss:{}\r\nused_memory_rss_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_fragmentation_ratio:{:.2}\r\n\r\n",
            g.used_memory,
            human(g.used_memory),
            g.rss,
            human(g.rss),
            g.maxmemory,
            human(g.maxmemory),
            ctx.store.mem.policy().name(),
            if g.used_memory > 0 { g.rss as f64 / g.used_memory as f64 } else { 0.0 },
        );
    }
    if want("stats") {
        let c = st.stats_since_reset(&g);
        let _ = write!(
            s,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\njittered_ttls:{}\r\ncoalesce_fillers:{}\r\ncoalesce_waiters:{}\r\ncoalesce_wait_timeouts:{}\r\ncoalesce_too_many_waiters:{}\r\ncoalesce_early_refreshes:{}\r\n\r\n",
            c.total_connections, c.total_commands, c.expired, c.evicted, c.hits, c.misses, c.jittered_ttls,
            c.coalesce.fillers, c.coalesce.coalesced, c.coalesce.wait_timeouts, c.coalesce.too_many_waiters,
            c.coalesce.early_refreshes,
        );
    }
    if want("cpu") {
        let c = crate::metrics::cpu_times();
        let _ = write!(
            s,
            "# CPU\r\nused_cpu_sys:{:.6}\r\nused_cpu_user:{:.6}\r\nused_cpu_sys_children:{:.6}\r\nused_cpu_user_children:{:.6}\r\nused_cpu_sys_main_thread:{:.6}\r\nused_cpu_user_main_thread:{:.6}\r\n\r\n",
            c.sys, c.user, c.children_sys, c.children_user, c.main_thread_sys, c.main_thread_user,
        );
    }
    if want("cluster") {
        let _ = write!(
            s,
            "# Cluster\r\ncluster_enabled:{}\r\ncluster_replica_reads:{}\r\n\r\n",
            u8::from(st.cluster.enabled),
            st.cluster.replica_reads.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    // As in Redis, only when asked for (or "all"/"everything"): not in the default set.
    if wanted
        .iter()
        .any(|w| matches!(w.as_str(), "commandstats" | "all" | "everything"))
    {
        s.push_str("# Commandstats\r\n");
        for (i, spec) in super::registry().commands.iter().enumerate() {
            let t = st.metrics.command_totals(i);
            if t.calls > 0 {
                let _ = write!(
                    s,
                    "cmdstat_{}:calls={},usec={},usec_per_call={:.2}\r\n",
                    spec.name,
                    t.calls,
                    t.usec,
                    t.usec as f64 / t.calls as f64
                );
            }
        }
        s.push_str("\r\n");
    }
    if want("keyspace") {
        s.push_str("# Keyspace\r\n");
        if g.keys > 0 {
            let _ = write!(s, "db0:keys={},expires={},avg_ttl=0\r\n", g.keys, g.expires);
        }
        s.push_str("\r\n");
    }
    ctx.out.verbatim(s.trim_end_matches("\r\n"));
    Ok(())
}

/// A validated CONFIG SET change, applied once every pair has been checked.
type ConfigChange = Box<dyn FnOnce(&Ctx<'_>)>;

/// The parameters CONFIG GET/SET know, with their current values.
fn config_params(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("maxmemory", ctx.store.mem.max().to_string()),
        ("maxmemory-policy", ctx.store.mem.policy().name().to_string()),
        ("requirepass", ctx.server.access.requirepass().unwrap_or_default()),
        ("port", ctx.server.port.to_string()),
        ("databases", "1".to_string()),
        ("appendonly", "no".to_string()),
        ("save", String::new()),
        ("proto-max-bulk-len", ctx.server.access.limits.max_bulk_len.to_string()),
        (
            "client-query-buffer-limit",
            ctx.server.access.max_query_buffer.to_string(),
        ),
        (
            "cluster-enabled",
            if ctx.server.cluster.enabled { "yes" } else { "no" }.to_string(),
        ),
    ];
    // Redis 7.0's encoding parameters, under their names and old aliases.
    for (i, p) in encoding::PARAMS.iter().enumerate() {
        let value = ctx.store.encodings.get(i).to_string();
        params.push((p.name, value.clone()));
        if let Some(alias) = p.alias {
            params.push((alias, value));
        }
    }
    params
}

/// CONFIG's subcommands and their arities (as Redis 7 declares them).
pub const CONFIG_SUBCOMMANDS: &[(&str, i32)] = &[("GET", -3), ("SET", -4), ("RESETSTAT", 2)];

fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    check_subcommand("config", args, CONFIG_SUBCOMMANDS)?;
    let sub = &args[1];
    if is(sub, "GET") {
        let params = config_params(ctx);
        let mut hits: Vec<&(&str, String)> = Vec::new();
        for pat in &args[2..] {
            for p in &params {
                if crate::util::glob::matches(&pat.to_ascii_lowercase(), p.0.as_bytes())
                    && !hits.iter().any(|h| h.0 == p.0)
                {
                    hits.push(p);
                }
            }
        }
        ctx.out.map(hits.len());
        for (k, v) in hits {
            ctx.out.bulk_str(k);
            ctx.out.bulk_str(v);
        }
        return Ok(());
    }
    if is(sub, "SET") {
        if !args.len().is_multiple_of(2) {
            return Err(CmdError::Syntax);
        }
        // Validate everything first so a bad pair changes nothing.
        let mut changes: Vec<ConfigChange> = Vec::new();
        for pair in args[2..].chunks(2) {
            let (name, value) = (text(&pair[0]).to_ascii_lowercase(), text(&pair[1]));
            match name.as_str() {
                "maxmemory" => {
                    let v = parse_bytes(&value).map_err(|e| {
                        CmdError::Other(format!(
                            "CONFIG SET failed (possibly related to argument 'maxmemory') - {e}"
                        ))
                    })?;
                    changes.push(Box::new(move |c| c.store.mem.set_max(v as usize)));
                }
                "maxmemory-policy" => {
                    let p = Policy::parse(&value).ok_or_else(|| {
                        CmdError::Other("CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: s3fifo, allkeys-lru, volatile-ttl, noeviction".into())
                    })?;
                    changes.push(Box::new(move |c| c.store.mem.set_policy(p)));
                }
                "requirepass" => {
                    let p = if value.is_empty() { None } else { Some(value) };
                    changes.push(Box::new(move |c| c.server.access.set_requirepass(p)));
                }
                _ => {
                    let Some(i) = encoding::find(&name) else {
                        return Err(CmdError::Other(format!(
                            "Unknown option or number of arguments for CONFIG SET - '{name}'"
                        )));
                    };
                    let v = Encodings::parse(i, &value).map_err(|e| {
                        CmdError::Other(format!(
                            "CONFIG SET failed (possibly related to argument '{name}') - {e}"
                        ))
                    })?;
                    changes.push(Box::new(move |c| c.store.encodings.set(i, v)));
                }
            }
        }
        for c in changes {
            c(ctx);
        }
        ctx.out.ok();
        return Ok(());
    }
    if is(sub, "RESETSTAT") {
        ctx.server.reset_stats(ctx.store);
        ctx.out.ok();
        return Ok(());
    }
    Err(unknown_subcommand("config", &text(sub)))
}

fn write_command_info(ctx: &mut Ctx<'_>, c: &CommandSpec) {
    let out = &mut *ctx.out;
    out.array(10);
    out.bulk_str(c.name);
    out.int(i64::from(c.arity));
    let flags: Vec<&str> = NAMES
        .iter()
        .filter(|(f, _)| c.flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
    out.set(flags.len());
    for f in flags {
        out.simple(f);
    }
    out.int(i64::from(c.keys.0));
    out.int(i64::from(c.keys.1));
    out.int(i64::from(c.keys.2));
    out.set(1);
    out.simple(&format!("@{}", c.group));
    out.array(0);
    out.array(0);
    out.array(0);
}

/// COMMAND's subcommands and their arities (as Redis 7 declares them).
pub const COMMAND_SUBCOMMANDS: &[(&str, i32)] = &[("COUNT", 2), ("INFO", -2), ("DOCS", -2), ("GETKEYS", -4)];

fn command(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let reg = registry();
    if args.len() == 1 {
        ctx.out.array(reg.commands.len());
        for c in &reg.commands {
            write_command_info(ctx, c);
        }
        return Ok(());
    }
    check_subcommand("command", args, COMMAND_SUBCOMMANDS)?;
    let sub = &args[1];
    if is(sub, "COUNT") {
        ctx.out.int(reg.commands.len() as i64);
    } else if is(sub, "INFO") {
        let names: Vec<Option<&CommandSpec>> = if args.len() == 2 {
            reg.commands.iter().map(|c| Some(*c)).collect()
        } else {
            args[2..].iter().map(|n| reg.lookup(n).map(|(_, c)| c)).collect()
        };
        ctx.out.array(names.len());
        for c in names {
            match c {
                Some(c) => write_command_info(ctx, c),
                None => ctx.out.null_array(),
            }
        }
    } else if is(sub, "DOCS") {
        let docs: Vec<&CommandSpec> = if args.len() == 2 {
            reg.commands.clone()
        } else {
            args[2..].iter().filter_map(|n| reg.lookup(n).map(|(_, c)| c)).collect()
        };
        ctx.out.map(docs.len());
        for c in docs {
            ctx.out.bulk_str(c.name);
            ctx.out.map(3);
            ctx.out.bulk_str("summary");
            ctx.out.bulk_str(c.summary);
            ctx.out.bulk_str("since");
            ctx.out.bulk_str("1.0.0");
            ctx.out.bulk_str("group");
            ctx.out.bulk_str(c.group);
        }
    } else if is(sub, "GETKEYS") {
        let Some((_, c)) = reg.lookup(&args[2]) else {
            return Err(CmdError::Other("Invalid command specified".into()));
        };
        let cmd_args = &args[2..];
        let keys: Vec<usize> = c.key_positions(cmd_args).collect();
        if keys.is_empty() {
            return Err(CmdError::Other("The command has no key arguments".into()));
        }
        ctx.out.array(keys.len());
        for k in keys {
            ctx.out.bulk(&cmd_args[k]);
        }
    } else {
        return Err(unknown_subcommand("command", &text(sub)));
    }
    Ok(())
}
