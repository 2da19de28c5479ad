//! Handover benchmark (run by hand, not part of `make test`): three in-process nodes
//! (R=1) loaded with N keys of 64-byte values, a fourth node joins and takes over the
//! slots placement moves to it in stages of 10/25/50/100 % of the moving slots, while
//! background cluster clients run a steady GET/SET mix over all keys. Prints one
//! Markdown table row (with header): copy time, per-stage time, total handover time,
//! the new owner's local hits / read-through hits / misses on moved slots (from
//! `GetStatus`), client throughput before vs during the handover and client errors.
//!
//! The steps are those of the shared handover plan (`ringcache_core::handover`), carried
//! out by the same driver as `node/tests/handover.rs` (`node/tests/common/plan.rs`):
//! the copy step (the new node an extra replica of the moving slots; wait until it
//! holds them), then per stage `BeginHandover`/`AdvanceHandover` and the flip (old
//! owners first; after a copy, wait until the new owner applied their replication
//! offsets; then the new owner), `CompleteHandover`, the final topology.
//!
//! ```text
//! cargo run --release -p ringcache-node --example handover_bench -- [--keys N] [--copy|--no-copy]
//!     [--clients T] [--dwell-ms MS] [--read-pct P]
//! ```
//! `--no-copy` flips without a copy: the new owner serves its misses by read-through.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Commands;
use ringcache_core::handover::{HandoverPlan, Warmup};
use ringcache_core::placement::{next_topology, Member};
use ringcache_core::slot::{key_slot, Slot};
use ringcache_core::topology::NodeInfo;
use ringcache_node::launch::NodeHandle;
use ringcache_proto::pb::HandoverStatus;

/// The in-process test helpers, for the shared plan driver (`common::plan`).
#[path = "../tests/common/mod.rs"]
mod common;
use common::plan::PlanDriver;

/// Cumulative percent of the moving slots flipped after each stage.
const STAGES: [u32; 4] = [10, 25, 50, 100];
const VALUE_LEN: usize = 64;
/// Most client error messages kept for printing.
const MAX_ERROR_MESSAGES: usize = 20;
/// How long the clients keep running after the handover completed.
const AFTER_COMPLETE: Duration = Duration::from_secs(1);

struct Args {
    keys: usize,
    copy: bool,
    clients: usize,
    dwell: Duration,
    read_pct: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: handover_bench [--keys N] [--copy|--no-copy] [--clients T] [--dwell-ms MS] [--read-pct P]\n\
         defaults: --keys 200000 --copy --clients 4 --dwell-ms 500 --read-pct 90"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        keys: 200_000,
        copy: true,
        clients: 4,
        dwell: Duration::from_millis(500),
        read_pct: 90,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| {
                    eprintln!("{name} needs a non-negative integer");
                    usage()
                })
        };
        match a.as_str() {
            "--keys" => args.keys = num("--keys") as usize,
            "--clients" => args.clients = num("--clients") as usize,
            "--dwell-ms" => args.dwell = Duration::from_millis(num("--dwell-ms")),
            "--read-pct" => args.read_pct = num("--read-pct").min(100),
            "--copy" => args.copy = true,
            "--no-copy" => args.copy = false,
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other}");
                usage()
            }
        }
    }
    if args.keys == 0 || args.clients == 0 {
        usage()
    }
    args
}

/// A cluster node with room for the data set (the new owner may hold a full copy).
fn cluster_node(id: &str) -> NodeHandle {
    common::cluster_node_with(id, |c| c.maxmemory = Some(1024 * 1024 * 1024))
}

fn key(i: usize) -> String {
    format!("key:{i}")
}

/// A 64-byte value tagged with the key index and a version.
fn value(i: usize, version: u64) -> String {
    let mut v = format!("v{version}:{i}:");
    v.extend(std::iter::repeat_n('x', VALUE_LEN.saturating_sub(v.len())));
    v.truncate(VALUE_LEN);
    v
}

fn urls(nodes: &[&NodeHandle]) -> Vec<String> {
    nodes.iter().map(|n| format!("redis://{}/", n.resp_addr)).collect()
}

fn cluster_client(urls: Vec<String>) -> redis::cluster::ClusterConnection {
    redis::cluster::ClusterClientBuilder::new(urls)
        .retries(30)
        .min_retry_wait(5)
        .max_retry_wait(100)
        .build()
        .expect("cluster client builds")
        .get_connection()
        .expect("cluster client connects")
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn keys_in(node: &NodeHandle, slots: &HashSet<Slot>) -> usize {
    slots.iter().map(|&s| node.store.slot_stats(s).keys).sum()
}

/// What the background clients saw.
#[derive(Default)]
struct Load {
    ops: AtomicU64,
    reads: AtomicU64,
    /// GETs of a loaded key that returned nil.
    nil_reads: AtomicU64,
    errors: AtomicU64,
    messages: Mutex<Vec<String>>,
}

impl Load {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut m = self.messages.lock().expect("error list lock");
        if m.len() < MAX_ERROR_MESSAGES {
            m.push(what);
        }
    }
}

/// One client thread: a steady GET/SET mix over all keys until `stop`.
fn client_thread(
    id: u64,
    urls: Vec<String>,
    keys: usize,
    read_pct: u64,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut con = cluster_client(urls);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (id.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut version = 0u64;
        while !stop.load(Ordering::Relaxed) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % keys as u64) as usize;
            if (x >> 32) % 100 < read_pct {
                match con.get::<_, Option<String>>(key(i)) {
                    Ok(v) => {
                        load.reads.fetch_add(1, Ordering::Relaxed);
                        if v.is_none() {
                            load.nil_reads.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => load.error(format!("GET {}: {e}", key(i))),
                }
            } else {
                version += 1;
                if let Err(e) = con.set::<_, _, ()>(key(i), value(i, id * 1_000_000_000 + version)) {
                    load.error(format!("SET {}: {e}", key(i)));
                }
            }
            load.ops.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[derive(Default)]
struct Totals {
    local: u64,
    read_through: u64,
    misses: u64,
    read_through_errors: u64,
}

impl Totals {
    fn of(hs: &[HandoverStatus]) -> Totals {
        Totals {
            local: hs.iter().map(|h| h.local_hits).sum(),
            read_through: hs.iter().map(|h| h.read_through_hits).sum(),
            misses: hs.iter().map(|h| h.misses).sum(),
            read_through_errors: hs.iter().map(|h| h.read_through_errors).sum(),
        }
    }
    fn ratio(&self) -> f64 {
        let hits = self.local + self.read_through;
        hits as f64 / (hits + self.misses).max(1) as f64
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn per_sec(ops: u64, d: Duration) -> String {
    format!("{:.0}", ops as f64 / d.as_secs_f64().max(1e-9))
}

fn main() {
    let args = parse_args();
    // Three nodes, R=1, epoch 1.
    let olds: Vec<NodeHandle> = ["a", "b", "c"].iter().map(|id| cluster_node(id)).collect();
    let old_refs: Vec<&NodeHandle> = olds.iter().collect();
    let infos: Vec<NodeInfo> = olds.iter().map(common::info).collect();
    let members: Vec<Member> = infos.iter().map(|n| Member::new(n.id.clone())).collect();
    let t1 = next_topology(None, &infos, &members, 1).expect("placement of three nodes");
    for n in &old_refs {
        n.state.cluster.apply(t1.clone()).expect("epoch 1 applies");
    }

    // Load through a pipelining cluster client.
    let loading = Instant::now();
    let mut con = cluster_client(urls(&old_refs));
    for chunk in (0..args.keys).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::cluster::cluster_pipe();
        for &i in chunk {
            pipe.set(key(i), value(i, 0)).ignore();
        }
        let () = pipe.query(&mut con).expect("initial pipelined writes");
    }
    drop(con);
    eprintln!("handover_bench: loaded {} keys in {:?}", args.keys, loading.elapsed());

    // The fourth node, the placement with it, and the shared plan to get there.
    let d = cluster_node("d");
    let mut all_infos = infos.clone();
    all_infos.push(common::info(&d));
    let mut all_members = members.clone();
    all_members.push(Member::new("d"));
    let target = next_topology(Some(&t1), &all_infos, &all_members, 1).expect("placement of four nodes");
    let warmup = if args.copy {
        Warmup::CopyThenFlip
    } else {
        Warmup::ReadThrough
    };
    let plan = HandoverPlan::new(&t1, &target, &STAGES, warmup).expect("handover plan");
    let moving: HashSet<Slot> = plan.moving_slots().iter().collect();
    let moved_keys = (0..args.keys)
        .filter(|&i| moving.contains(&key_slot(key(i).as_bytes())))
        .count();
    eprintln!(
        "handover_bench: {} of 16384 slots ({moved_keys} keys) move to d from {:?}",
        moving.len(),
        plan.moves()
            .iter()
            .map(|m| (m.source.clone(), m.slots.len()))
            .collect::<Vec<_>>()
    );

    // Background load, and the throughput before the handover.
    let stop = Arc::new(AtomicBool::new(false));
    let load = Arc::new(Load::default());
    let clients: Vec<_> = (0..args.clients as u64)
        .map(|id| {
            client_thread(
                id,
                urls(&old_refs),
                args.keys,
                args.read_pct,
                stop.clone(),
                load.clone(),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before_ops0 = load.ops.load(Ordering::Relaxed);
    let before_start = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let before_ops = load.ops.load(Ordering::Relaxed) - before_ops0;
    let before_took = before_start.elapsed();

    let everyone: Vec<&NodeHandle> = olds.iter().chain([&d]).collect();
    let driver = PlanDriver::new(plan, "bench", everyone);
    let started = Instant::now();
    let ops0 = load.ops.load(Ordering::Relaxed);
    let reads0 = load.reads.load(Ordering::Relaxed);
    let nil0 = load.nil_reads.load(Ordering::Relaxed);

    // 1. Copy: d becomes an extra replica of the moving slots. Without a copy, d only
    // joins the membership (BeginHandover needs a topology that knows it).
    driver.copy();
    let copy_took = if args.copy {
        let sources = driver.plan.moves().len();
        wait_until(
            "d holds a full copy of the moving slots",
            Duration::from_secs(300),
            || {
                let st = d.state.replication.status();
                st.links.len() == sources && st.links.iter().all(|l| l.connected) && keys_in(&d, &moving) >= moved_keys
            },
        );
        let took = started.elapsed();
        eprintln!("handover_bench: copy of {moved_keys} keys done after {took:?}");
        Some(took)
    } else {
        None
    };

    // 2. Stages: Begin/Advance for the stage's slots, then the flip epoch for them.
    let mut stage_took = Vec::new();
    for (k, pct) in STAGES.iter().enumerate() {
        let stage_start = Instant::now();
        driver.stage(k);
        let took = stage_start.elapsed();
        let slots: usize = driver
            .plan
            .moves()
            .iter()
            .map(|m| driver.plan.stage_slots(m, k).len())
            .sum();
        eprintln!(
            "handover_bench: stage {} ({slots} slots, {pct} %) flipped in {took:?}",
            k + 1
        );
        stage_took.push(took);
        // Let the clients read the flipped slots from d before the next stage.
        std::thread::sleep(args.dwell);
    }

    // Counters of the new owner, then complete.
    let handovers = driver.handovers();
    let totals = Totals::of(&handovers);
    let stopped = handovers.iter().filter(|h| h.read_through_stopped).count();
    // Client reads while the handovers were active (up to the counters above).
    let during_reads = load.reads.load(Ordering::Relaxed) - reads0;
    let during_nil = load.nil_reads.load(Ordering::Relaxed) - nil0;
    driver.complete();
    let handover_took = started.elapsed();
    let during_ops = load.ops.load(Ordering::Relaxed) - ops0;
    let nil_at_complete = nil0 + during_nil;

    // 3. Final topology: the old owners drop the moved slots.
    driver.finish();
    // Keep the load up for a second: without a copy, moved keys nobody read before
    // CompleteHandover are gone from the new owner (nil GETs after complete).
    std::thread::sleep(AFTER_COMPLETE);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread finished");
    }
    let nil_after = load.nil_reads.load(Ordering::Relaxed) - nil_at_complete;
    let errors = load.errors.load(Ordering::Relaxed);

    let stages_cell = STAGES.iter().map(ToString::to_string).collect::<Vec<_>>().join("/");
    let stage_cell = stage_took.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(" / ");
    println!(
        "| variant | keys | moving slots (keys) | stages % | copy s | per-stage s | dwell/stage s | total handover s \
         | reads during | new owner local hits | read-through hits | misses | hit ratio | nil GETs during | nil GETs complete..+1 s | ops/s before \
         | ops/s during | client errors |"
    );
    println!("|---|--:|--:|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    println!(
        "| {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.4} | {} | {} | {} | {} | {} |",
        if args.copy { "copy, then flip" } else { "flip, no copy" },
        args.keys,
        moving.len(),
        moved_keys,
        stages_cell,
        copy_took.map_or_else(|| "–".to_string(), secs),
        stage_cell,
        secs(args.dwell),
        secs(handover_took),
        during_reads,
        totals.local,
        totals.read_through,
        totals.misses,
        totals.ratio(),
        during_nil,
        nil_after,
        per_sec(before_ops, before_took),
        per_sec(during_ops, handover_took),
        errors
    );
    if totals.read_through_errors > 0 || stopped > 0 {
        eprintln!(
            "handover_bench: read-through errors {}, handovers that stopped reading through {stopped}",
            totals.read_through_errors
        );
    }
    drop(driver);
    for n in olds.into_iter().chain([d]) {
        n.shutdown();
    }
    if errors > 0 {
        eprintln!("handover_bench: {errors} client errors, first ones:");
        for m in load.messages.lock().expect("error list lock").iter() {
            eprintln!("  {m}");
        }
        std::process::exit(1);
    }
}
