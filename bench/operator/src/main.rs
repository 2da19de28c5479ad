//! `bench-operator`: the by-hand benchmark of issue 12, ringcache's operator measured
//! against a Redis Cluster on the same machine.
//!
//! - `rebalance`: the hit rate, one sample a second, of a cache-aside load during a
//!   scale-out 3 -> 5: ringcache with the operator's gated warm-up, ringcache with the
//!   stage gate off (`stages: [100]`), and a Redis Cluster grown with `redis-cli --cluster
//!   add-node` + `rebalance --cluster-use-empty-masters`.
//! - `failover`: from the SIGKILL of a primary's process until a write to its slots
//!   succeeds again, and the acknowledged writes lost; ringcache (operator defaults,
//!   `minReplicasToAck: 1`) against Redis Cluster with one replica per primary and
//!   `cluster-node-timeout 5000`.
//!
//! Results go to `<out>/` as JSON (summaries) and CSV (samples); bench/plot.py draws them.

mod failover;
mod rebalance;
mod redis_cluster;
mod ringcache;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use ringcache_tests::operator::keys_in;
use serde_json::{json, Value};

use crate::failover::FailoverRep;
use crate::rebalance::round;
use crate::redis_cluster::RedisCluster;

pub type R<T> = Result<T, String>;

#[derive(Parser)]
#[command(
    about = "ringcache operator vs Redis Cluster: hit rate during a scale-out, write unavailability after a primary's SIGKILL"
)]
struct Cli {
    /// Where the JSON and CSV results go.
    #[arg(long, global = true, default_value = "bench/results")]
    out: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Hit-rate curve during a scale-out 3 -> 5.
    Rebalance {
        /// Which of gated, ungated, redis to run (in this order).
        #[arg(long, value_delimiter = ',', default_value = "gated,ungated,redis")]
        variants: Vec<String>,
        /// Seconds of load before the scale-out (the first 2 are not counted).
        #[arg(long, default_value_t = 15)]
        baseline_secs: u64,
        /// Seconds of load kept after the change completed.
        #[arg(long, default_value_t = 10)]
        tail_secs: u64,
    },
    /// Write unavailability and lost writes after SIGKILL of a primary.
    Failover {
        /// Which of ringcache, redis, ringcache-sigstop (SIGSTOP instead of SIGKILL: a
        /// hung process, which the kubelet does not restart) to run.
        #[arg(long, value_delimiter = ',', default_value = "ringcache,redis")]
        systems: Vec<String>,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
}

/// The gated warm-up: the CacheCluster defaults (stages 10, 25, 50, 100 %, minHitRatio
/// 0.95) with shorter stage bounds.
const GATED: &str = "    minStageSeconds: 5\n    maxStageSeconds: 60\n";
/// Every moving slot flipped at once.
const UNGATED: &str = "    stages: [100]\n    minStageSeconds: 0\n";

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let r = rt.block_on(async {
        std::fs::create_dir_all(&cli.out).map_err(|e| format!("{}: {e}", cli.out.display()))?;
        match cli.cmd {
            Cmd::Rebalance {
                variants,
                baseline_secs,
                tail_secs,
            } => run_rebalance(&cli.out, &variants, baseline_secs, tail_secs).await,
            Cmd::Failover { systems, reps } => run_failover(&cli.out, &systems, reps).await,
        }
    });
    if let Err(e) = r {
        eprintln!("bench-operator: {e}");
        std::process::exit(1);
    }
}

fn write_json(path: &Path, v: &Value) -> R<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| format!("serializing: {e}"))?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

async fn run_rebalance(out: &Path, variants: &[String], baseline_secs: u64, tail_secs: u64) -> R<()> {
    let (baseline, tail) = (Duration::from_secs(baseline_secs), Duration::from_secs(tail_secs));
    let mut failed = Vec::new();
    let mut installed = false;
    for v in variants {
        let run = match v.as_str() {
            "gated" | "ungated" => {
                let env = ringcache::env()?;
                if !installed {
                    ringcache::install(env)?;
                    installed = true;
                }
                let warmup = if v == "gated" { GATED } else { UNGATED };
                ringcache::rebalance(env, v, warmup, baseline, tail).await
            }
            "redis" => tokio::task::spawn_blocking(move || rebalance::redis(17100, baseline, tail))
                .await
                .map_err(|e| format!("redis thread: {e}"))?,
            other => return Err(format!("unknown variant {other} (gated, ungated, redis)")),
        };
        match run {
            Ok(mut run) => {
                run.notes.push(format!(
                    "load: ringcache_tests::load::Shape::default() = {:?}",
                    rebalance::shape()
                ));
                let s = run.write(out)?;
                eprintln!("{v}: {}", serde_json::to_string(&s).unwrap_or_default());
            }
            Err(e) => {
                eprintln!("{v}: FAILED: {e}");
                write_json(
                    &out.join(format!("rebalance-{v}.json")),
                    &json!({"variant": v, "failed": e}),
                )?;
                failed.push(v.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("variants failed: {failed:?}"))
    }
}

/// One Redis Cluster repetition: 3 primaries + 3 replicas, the first primary SIGKILLed.
fn redis_failover(base_port: u16) -> R<FailoverRep> {
    let mut rc = RedisCluster::start(base_port, 6, 5000)?;
    let all = [0, 1, 2, 3, 4, 5];
    rc.create(&all, 1)?;
    rc.wait_replicas_synced(&all, Duration::from_secs(60))?;
    let slots: HashSet<u16> = rc.primary_slots(0)?.into_iter().collect();
    if slots.is_empty() {
        return Err("the first node leads no slot".into());
    }
    let urls = rc.urls(&all);
    let victim = rc.nodes[0].addr();
    eprintln!("redis failover: killing {victim} ({} slots)", slots.len());
    let probe = keys_in(&slots, "probe:", 20);
    let counters = keys_in(&slots, "ctr:", 50);
    let process = rc.nodes[0].process.take();
    failover::measure(
        &urls,
        &victim,
        probe,
        counters,
        move || {
            let mut p = process.ok_or("the victim is not running")?;
            p.kill(); // SIGKILL (its process group: redis-server alone)
            Ok(())
        },
        Duration::from_secs(120),
    )
}

fn rep_json(system: &str, rep: usize, r: &R<FailoverRep>) -> Value {
    match r {
        Ok(r) => json!({
            "system": system,
            "rep": rep,
            "writable_after_s": r.writable_after.map(|d| round(d.as_secs_f64(), 3)),
            "acknowledged_writes": r.acked_writes,
            "write_attempts": r.write_attempts,
            "acknowledged_writes_lost": r.lost_writes,
            "keys_with_loss": r.keys_with_loss,
            "lost_examples": r.examples,
            "keys_not_read_back": r.readback_errors.len(),
            "read_back_errors": r.readback_errors.iter().take(3).collect::<Vec<_>>(),
        }),
        Err(e) => json!({"system": system, "rep": rep, "failed": e}),
    }
}

fn stats(xs: &[f64]) -> Value {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Value::Null;
    }
    json!({
        "n": v.len(),
        "min": round(v[0], 3),
        "median": round(v[v.len() / 2], 3),
        "max": round(v[v.len() - 1], 3),
    })
}

async fn run_failover(out: &Path, systems: &[String], reps: usize) -> R<()> {
    let mut installed = false;
    for system in systems {
        let mut rows = Vec::new();
        let mut results = Vec::new();
        for rep in 0..reps {
            let r = match system.as_str() {
                "ringcache" | "ringcache-sigstop" => {
                    let env = ringcache::env()?;
                    if !installed {
                        ringcache::install(env)?;
                        installed = true;
                    }
                    let signal = if system == "ringcache" {
                        libc::SIGKILL
                    } else {
                        libc::SIGSTOP
                    };
                    ringcache::failover(env, rep, signal).await
                }
                "redis" => {
                    let base = 17200 + 20 * rep as u16;
                    tokio::task::spawn_blocking(move || redis_failover(base))
                        .await
                        .map_err(|e| format!("redis thread: {e}"))?
                }
                other => return Err(format!("unknown system {other} (ringcache, ringcache-sigstop, redis)")),
            };
            let row = rep_json(system, rep, &r);
            eprintln!("{system} rep {rep}: {row}");
            rows.push(row);
            results.push(r);
        }
        let times: Vec<f64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok()?.writable_after.map(|d| d.as_secs_f64()))
            .collect();
        let lost: Vec<f64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.lost_writes as f64))
            .collect();
        let summary = json!({
                "system": system,
                "reps": reps,
                "failed_reps": results.iter().filter(|r| r.is_err()).count(),
                "not_writable_within_120s": results.iter().filter(|r| r.as_ref().is_ok_and(|r| r.writable_after.is_none())).count(),
                "writable_after_s": stats(&times),
                "acknowledged_writes_lost": stats(&lost),
        });
        // One file per system, so the systems can run separately.
        write_failover(out, system, &rows, &summary)?;
    }
    Ok(())
}

fn write_failover(out: &Path, system: &str, rows: &[Value], summary: &Value) -> R<()> {
    let mut csv =
        String::from("system,rep,writable_after_s,acknowledged_writes,acknowledged_writes_lost,keys_with_loss\n");
    for r in rows {
        let f = |k: &str| match &r[k] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            f("system"),
            f("rep"),
            f("writable_after_s"),
            f("acknowledged_writes"),
            f("acknowledged_writes_lost"),
            f("keys_with_loss")
        ));
    }
    let path = out.join(format!("failover-{system}.csv"));
    std::fs::write(&path, csv).map_err(|e| format!("{}: {e}", path.display()))?;
    write_json(
        &out.join(format!("failover-{system}.json")),
        &json!({
            "what": "seconds from SIGKILL of a primary's process until a SET to each of 20 keys of its slots succeeded (fresh connections to the live nodes every 50 ms, -MOVED followed); acknowledged writes of a counter stream to 50 keys of those slots that are gone afterwards",
            "summary": summary,
            "reps": rows,
        }),
    )
}
