//! Slot handover with warm-up (DESIGN.md §6) on in-process nodes: three nodes (R=1)
//! with 30k keys, a fourth joins and takes over the slots placement moves to it, in the
//! steps of the shared handover plan (`ringcache_core::handover`, carried out by
//! `common::plan`), while a cluster client keeps writing and reading. One test copies first (the new owner is
//! an extra replica), then flips; the other flips without a copy, so reads are served
//! by read-through from the old owners. Both check every acknowledged write at the
//! end, the new owner's hit ratio from `GetStatus`, that the old owners drop the moved
//! keys, and that a stale epoch is still refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::plan::PlanDriver;
use common::*;
use redis::Commands;
use ringcache_core::handover::{HandoverPlan, Step, Warmup};
use ringcache_core::placement::{next_topology, Member};
use ringcache_core::slot::{key_slot, Slot};
use ringcache_core::topology::{ranges_from_slots, NodeInfo, Topology};
use ringcache_node::cluster::ApplyError;
use ringcache_node::launch::NodeHandle;
use ringcache_proto::pb::{
    AdvanceHandoverRequest, BeginHandoverRequest, CompleteHandoverRequest, GetStatusRequest, HandoverStatus, SlotRange,
};
use tonic::Code;

const KEYS: usize = 30_000;

fn key(i: usize) -> String {
    format!("key:{i}")
}

fn apply(nodes: &[&NodeHandle], topo: &Topology) {
    for n in nodes {
        n.state.cluster.apply(topo.clone()).expect("topology applies");
    }
}

fn cluster_client(nodes: &[&NodeHandle]) -> redis::cluster::ClusterConnection {
    let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{}/", n.resp_addr)).collect();
    redis::cluster::ClusterClientBuilder::new(urls)
        .retries(30)
        .min_retry_wait(5)
        .max_retry_wait(100)
        .build()
        .expect("cluster client")
        .get_connection()
        .expect("connects")
}

/// What the background client saw: the last acknowledged value of each key it wrote,
/// values of writes that failed after it (they may or may not have happened), and
/// reads that contradicted an acknowledged write.
#[derive(Default)]
struct Seen {
    acked: HashMap<usize, String>,
    uncertain: HashMap<usize, Vec<String>>,
    stale_reads: Vec<String>,
    ops: u64,
    errors: u64,
}

/// A client that keeps writing and reading known keys until `stop`.
fn background(
    nodes: Vec<String>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    reads: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let client = redis::cluster::ClusterClientBuilder::new(nodes)
            .retries(30)
            .min_retry_wait(5)
            .max_retry_wait(100)
            .build()
            .expect("cluster client");
        let mut con = client.get_connection().expect("connects");
        let mut seq = 0u64;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while !stop.load(Ordering::Relaxed) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % KEYS as u64) as usize;
            seq += 1;
            let mut s = seen.lock().unwrap();
            s.ops += 1;
            // Only even keys are written: odd ones keep their initial value.
            if seq.is_multiple_of(3) && i.is_multiple_of(2) {
                let value = format!("w{seq}");
                match con.set::<_, _, ()>(key(i), &value) {
                    Ok(()) => {
                        s.acked.insert(i, value);
                        s.uncertain.remove(&i);
                    }
                    Err(_) => {
                        s.errors += 1;
                        s.uncertain.entry(i).or_default().push(value);
                    }
                }
            } else {
                match con.get::<_, Option<String>>(key(i)) {
                    Ok(v) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                        let want = s.acked.get(&i).cloned().unwrap_or_else(|| format!("v{i}"));
                        let maybe = s
                            .uncertain
                            .get(&i)
                            .is_some_and(|u| v.as_ref().is_some_and(|v| u.contains(v)));
                        if v.as_deref() != Some(want.as_str()) && !maybe && s.stale_reads.len() < 20 {
                            s.stale_reads
                                .push(format!("{}: got {v:?}, acknowledged {want}", key(i)));
                        }
                    }
                    Err(_) => s.errors += 1,
                }
            }
        }
    })
}

fn pb_ranges(slots: &[Slot]) -> Vec<SlotRange> {
    ranges_from_slots(slots.iter().copied())
        .into_iter()
        .map(|r| SlotRange {
            start: u32::from(r.start),
            end: u32::from(r.end),
        })
        .collect()
}

/// `old` with `owners_for(slot, old owners)` replacing the owners of `moving` slots.
fn variant(
    old: &Topology,
    nodes: Vec<NodeInfo>,
    epoch: u64,
    moving: &HashSet<Slot>,
    owners_for: impl Fn(&[String]) -> Vec<String>,
) -> Topology {
    let owners = old
        .to_slot_owners()
        .into_iter()
        .enumerate()
        .map(|(s, o)| {
            if moving.contains(&(s as Slot)) {
                owners_for(&o)
            } else {
                o
            }
        })
        .collect();
    Topology::from_slot_owners(epoch, nodes, owners).expect("valid topology")
}

fn keys_in(node: &NodeHandle, slots: &HashSet<Slot>) -> usize {
    slots.iter().map(|&s| node.store.slot_stats(s).keys).sum()
}

struct Totals {
    local: u64,
    read_through: u64,
    misses: u64,
}

impl Totals {
    fn of(hs: &[HandoverStatus]) -> Totals {
        Totals {
            local: hs.iter().map(|h| h.local_hits).sum(),
            read_through: hs.iter().map(|h| h.read_through_hits).sum(),
            misses: hs.iter().map(|h| h.misses).sum(),
        }
    }
    fn ratio(&self) -> f64 {
        let hits = self.local + self.read_through;
        hits as f64 / (hits + self.misses).max(1) as f64
    }
}

/// Checks every key against what the background client acknowledged.
fn check_acknowledged(con: &mut redis::cluster::ClusterConnection, s: &Seen) -> Vec<String> {
    let mut wrong = Vec::new();
    for i in 0..KEYS {
        let v: Option<String> = con.get(key(i)).unwrap();
        let want = s.acked.get(&i).cloned().unwrap_or_else(|| format!("v{i}"));
        let maybe = s
            .uncertain
            .get(&i)
            .is_some_and(|u| v.as_ref().is_some_and(|v| u.contains(v)));
        if v.as_deref() != Some(want.as_str()) && !maybe {
            wrong.push(format!("{}: {v:?} != {want}", key(i)));
        }
    }
    wrong
}

/// The whole scenario, carried out by the shared handover plan in two stages (10 %,
/// then the rest); `copy_first` copies before the flips. `r` is the replication factor
/// (a flip without a copy needs r = 1: see the handover module's known limits).
fn scale_out(copy_first: bool, r: usize) {
    let olds: Vec<NodeHandle> = ["a", "b", "c"].iter().map(|id| cluster_node(id)).collect();
    let infos: Vec<NodeInfo> = olds.iter().map(info).collect();
    let members: Vec<Member> = infos.iter().map(|n| Member::new(n.id.clone())).collect();
    let t1 = next_topology(None, &infos, &members, r).expect("placement");
    assert_eq!(t1.epoch, 1);
    apply(&olds.iter().collect::<Vec<_>>(), &t1);

    let old_refs: Vec<&NodeHandle> = olds.iter().collect();
    let mut con = cluster_client(&old_refs);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::cluster::cluster_pipe();
        for &i in chunk {
            pipe.set(key(i), format!("v{i}")).ignore();
        }
        let () = pipe.query(&mut con).expect("initial writes");
    }
    drop(con);

    let d = cluster_node("d");
    let mut all_infos = infos.clone();
    all_infos.push(info(&d));
    let mut all_members = members.clone();
    all_members.push(Member::new("d"));
    let target = next_topology(Some(&t1), &all_infos, &all_members, r).expect("placement");
    let warmup = if copy_first {
        Warmup::CopyThenFlip
    } else {
        Warmup::ReadThrough
    };
    let plan = HandoverPlan::new(&t1, &target, &[10, 100], warmup).expect("plan");
    assert_eq!(plan.targets(), vec!["d"]);
    let moving: HashSet<Slot> = plan.moving_slots().iter().collect();
    eprintln!(
        "handover: {} of 16384 slots move to d from {:?}",
        moving.len(),
        plan.moves()
            .iter()
            .map(|m| (m.source.clone(), m.slots.len()))
            .collect::<Vec<_>>()
    );
    assert!(
        (3000..=5000).contains(&moving.len()),
        "about a quarter moves: {}",
        moving.len()
    );
    let moved_keys = (0..KEYS)
        .filter(|&i| moving.contains(&key_slot(key(i).as_bytes())))
        .count();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reads = Arc::new(AtomicU64::new(0));
    let bg = background(
        olds.iter().map(|n| format!("redis://{}/", n.resp_addr)).collect(),
        stop.clone(),
        seen.clone(),
        reads.clone(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let everyone: Vec<&NodeHandle> = olds.iter().chain([&d]).collect();
    let driver = PlanDriver::new(plan, "scale", everyone.clone());
    let started = Instant::now();

    // 1. Copy (d an extra replica of the moving slots), or join without a copy.
    driver.copy();
    if copy_first {
        wait_until(
            "d holds a full copy of the moving slots",
            Duration::from_secs(60),
            || {
                let st = d.state.replication.status();
                st.links.len() == 3 && st.links.iter().all(|l| l.connected) && keys_in(&d, &moving) >= moved_keys
            },
        );
        eprintln!("handover: copy of {moved_keys} keys done after {:?}", started.elapsed());
    }

    // 2. The stages: Begin/Advance, then each stage's flip (old owners first, then d).
    // After a copy, d answers -TRYAGAIN for a flipped slot until the slot's old owner
    // sent its fence (every write it acknowledged there); the driver waits for that.
    for k in 0..driver.plan.stages().len() {
        driver.stage(k);
    }
    let flipped = Instant::now();

    // Keys no one touched since the start: d serves them (read-through without a copy).
    let mut direct = client(&d);
    let untouched: Vec<usize> = (0..KEYS)
        .filter(|&i| i % 2 == 1 && moving.contains(&key_slot(key(i).as_bytes())))
        .take(300)
        .collect();
    for &i in &untouched {
        let v: Option<String> = direct.get(key(i)).unwrap();
        assert_eq!(v, Some(format!("v{i}")), "{} on d after the flip", key(i));
    }
    std::thread::sleep(Duration::from_millis(1500));

    if !copy_first {
        // Without a copy, moved keys nobody read before CompleteHandover are gone
        // afterwards (later origin misses): stop the client and read every key once
        // while read-through is on; each must show its last acknowledged value.
        stop.store(true, Ordering::Relaxed);
        let s = seen.lock().unwrap();
        let sweep = Instant::now();
        let wrong = check_acknowledged(&mut cluster_client(&everyone), &s);
        assert!(
            wrong.is_empty(),
            "during read-through: {:?}",
            &wrong[..wrong.len().min(10)]
        );
        eprintln!(
            "handover: read all {KEYS} keys during read-through in {:?}",
            sweep.elapsed()
        );
    }
    let handovers = driver.handovers();
    assert_eq!(handovers.len(), driver.plan.moves().len());
    let metrics = http_get(d.admin_addr, "/metrics");
    for h in &handovers {
        for name in ["local_hits_total", "read_through_hits_total", "misses_total"] {
            assert!(
                metrics.contains(&format!("ringcache_handover_{name}{{handover=\"{}\"}} ", h.handover_id)),
                "{name} of {} in /metrics",
                h.handover_id
            );
        }
    }
    let finals = driver.complete();
    let handover_took = started.elapsed();
    let totals = Totals::of(&finals);
    let errors: u64 = finals.iter().map(|h| h.read_through_errors).sum();
    let mode = if copy_first {
        "copy, then flip"
    } else {
        "flip without copy"
    };
    eprintln!(
        "handover (R={r}, {mode}): {:?} from start to complete ({:?} since the flip); new owner on moved slots: \
         local hits {}, read-through hits {}, misses {}, read-through errors {errors}, hit ratio {:.4}",
        handover_took,
        flipped.elapsed(),
        totals.local,
        totals.read_through,
        totals.misses,
        totals.ratio()
    );
    assert!(driver.handovers().is_empty());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut control = rt.block_on(common::control_client(&d));
    let err = rt
        .block_on(control.complete_handover(CompleteHandoverRequest {
            handover_id: driver.plan.moves()[0].handover_id("scale"),
        }))
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // 3. Final topology: the old owners drop the moved slots.
    let final_topo = driver.finish();
    stop.store(true, Ordering::Relaxed);
    bg.join().unwrap();

    assert!(totals.ratio() >= 0.95, "hit ratio {:.4} on moved slots", totals.ratio());
    assert!(
        totals.local + totals.read_through > 0,
        "reads of moved slots were counted"
    );
    if copy_first {
        assert!(totals.local > totals.read_through, "the copy serves most reads locally");
    } else {
        assert!(
            totals.read_through >= untouched.len() as u64,
            "reads were served by read-through"
        );
        assert_eq!(totals.misses, 0, "no read of an existing key missed");
    }

    wait_until("old owners drop the moved keys", Duration::from_secs(10), || {
        olds.iter().all(|n| {
            let me = n.state.cluster.node_id.as_str();
            let dropped: HashSet<Slot> = moving
                .iter()
                .copied()
                .filter(|&s| !final_topo.owners_of(s).iter().any(|o| o == me))
                .collect();
            keys_in(n, &dropped) == 0
        })
    });

    // Every acknowledged write is readable with its last acknowledged value.
    let s = seen.lock().unwrap();
    eprintln!(
        "handover: background client did {} operations ({} reads, {} errors, {} keys written)",
        s.ops,
        reads.load(Ordering::Relaxed),
        s.errors,
        s.acked.len()
    );
    assert!(
        s.stale_reads.is_empty(),
        "reads contradicting acknowledged writes: {:?}",
        s.stale_reads
    );
    let wrong = check_acknowledged(&mut cluster_client(&everyone), &s);
    assert!(
        wrong.is_empty(),
        "{} keys lost their last acknowledged write: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(keys_in(&d, &moving), moved_keys, "d holds every moved key");

    // A stale epoch is still refused.
    let last_flip = driver.topology(Step::Flip(driver.plan.stages().len() - 1));
    assert!(matches!(
        d.state.cluster.apply(last_flip.clone()),
        Err(ApplyError::StaleEpoch { offered, current }) if offered == last_flip.epoch && current == final_topo.epoch
    ));
    drop(s);
    drop(control);
    drop(rt);
    drop(driver);
    for n in olds.into_iter().chain([d]) {
        n.shutdown();
    }
}

#[test]
fn scale_out_with_copy_then_flip_keeps_every_acknowledged_write() {
    scale_out(true, 1);
}

#[test]
fn scale_out_with_two_copies_and_copy_then_flip_keeps_every_acknowledged_write() {
    scale_out(true, 2);
}

#[test]
fn scale_out_without_copy_serves_reads_by_read_through() {
    scale_out(false, 1);
}

#[test]
fn handover_requests_are_validated() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let standalone = start();
    let a = cluster_node("a");
    let b = cluster_node("b");
    let infos = vec![info(&a), info(&b)];
    let members: Vec<Member> = infos.iter().map(|n| Member::new(n.id.clone())).collect();
    let mut t = next_topology(None, &infos, &members, 1).unwrap();
    t.epoch = 1;
    apply(&[&a, &b], &t);
    let a_slot = (0..16384u16).find(|&s| t.primary_of(s) == Some("a")).unwrap();
    let req = |id: &str, start: u32, end: u32, source: &str| BeginHandoverRequest {
        handover_id: id.into(),
        slots: vec![SlotRange { start, end }],
        source_node_id: source.into(),
        source_resp_addr: a.resp_addr.to_string(),
    };
    let s = u32::from(a_slot);
    rt.block_on(async {
        let mut cb = common::control_client(&b).await;
        for (r, code, field) in [
            (req("", s, s, "a"), Code::InvalidArgument, "handover_id"),
            (req("h", s, 16384, "a"), Code::InvalidArgument, "slots[0].end"),
            (req("h", s + 1, s, "a"), Code::InvalidArgument, "slots[0]"),
            (req("h", s, s, ""), Code::InvalidArgument, "source_node_id"),
            (req("h", s, s, "b"), Code::InvalidArgument, "source_node_id"),
            (
                BeginHandoverRequest {
                    slots: vec![],
                    ..req("h", s, s, "a")
                },
                Code::InvalidArgument,
                "slots",
            ),
            (
                BeginHandoverRequest {
                    source_resp_addr: "nohost".into(),
                    ..req("h", s, s, "a")
                },
                Code::InvalidArgument,
                "source_resp_addr",
            ),
            // A slot whose primary is neither the source nor this node.
            (req("h", s, s, "c"), Code::FailedPrecondition, "slots"),
        ] {
            let e = cb.begin_handover(r).await.unwrap_err();
            assert_eq!(e.code(), code, "{e:?}");
            assert!(e.message().starts_with(field) || e.message().contains(field), "{e:?}");
        }
        cb.begin_handover(req("h", s, s, "a")).await.unwrap();
        assert_eq!(
            cb.begin_handover(req("h", s, s, "a")).await.unwrap_err().code(),
            Code::AlreadyExists
        );
        assert_eq!(
            cb.begin_handover(req("g", s, s, "a")).await.unwrap_err().code(),
            Code::FailedPrecondition,
            "a slot in two handovers"
        );
        let e = cb
            .advance_handover(AdvanceHandoverRequest {
                handover_id: "nope".into(),
                slots: vec![SlotRange { start: s, end: s }],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        // The source was told to retain the slot.
        assert!(a.state.handovers.retained().contains(a_slot));
        cb.complete_handover(CompleteHandoverRequest {
            handover_id: "h".into(),
        })
        .await
        .unwrap();
        assert!(!a.state.handovers.retained().contains(a_slot), "released on complete");

        let mut cs = common::control_client(&standalone).await;
        let e = cs.begin_handover(req("h", s, s, "a")).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
    });
    drop(rt);
    standalone.shutdown();
    a.shutdown();
    b.shutdown();
}

/// Read-through semantics on one slot: values, TTLs and hashes come from the source;
/// writes start from the source's value (INCR, DEL counts it); a key written or
/// deleted on the new owner is never read through again; an unreachable source is a
/// miss; FLUSHALL on the new owner stops read-through.
#[test]
fn read_through_respects_local_writes_deletes_and_flushes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = cluster_node("a");
    let b = cluster_node("b");
    let infos = vec![info(&a), info(&b)];
    let members: Vec<Member> = infos.iter().map(|n| Member::new(n.id.clone())).collect();
    let mut t1 = next_topology(None, &infos, &members, 1).unwrap();
    t1.epoch = 1;
    apply(&[&a, &b], &t1);
    // Keys of one slot of a (hash tags).
    let tag = (0..100)
        .map(|i| format!("t{i}"))
        .find(|t| t1.primary_of(key_slot(t.as_bytes())) == Some("a"))
        .unwrap();
    let slot = key_slot(tag.as_bytes());
    let k = |name: &str| format!("{{{tag}}}{name}");
    let mut ca = client(&a);
    let _: () = ca.set(k("plain"), "p").unwrap();
    let _: () = ca.set_ex(k("ttl"), "t", 1000).unwrap();
    let _: () = ca.set(k("counter"), 5).unwrap();
    let _: () = ca.set(k("gone"), "g").unwrap();
    let _: () = ca.set(k("later"), "l").unwrap();
    let _: () = ca.set(k("flushed"), "f").unwrap();
    let _: () = ca.hset_multiple(k("hash"), &[("f1", "v1"), ("f2", "v2")]).unwrap();

    let mut control = rt.block_on(common::control_client(&b));
    rt.block_on(control.begin_handover(BeginHandoverRequest {
        handover_id: "h".into(),
        slots: pb_ranges(&[slot]),
        source_node_id: "a".into(),
        source_resp_addr: a.resp_addr.to_string(),
    }))
    .unwrap();
    let flip = variant(&t1, infos.clone(), 2, &HashSet::from([slot]), |_| vec!["b".to_string()]);
    apply(&[&a, &b], &flip);
    // a keeps the slot's keys while the handover retains them.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.store.slot_stats(slot).keys, 7);

    let mut cb = client(&b);
    assert_eq!(cb.get::<_, Option<String>>(k("plain")).unwrap().as_deref(), Some("p"));
    let ttl: i64 = cb.ttl(k("ttl")).unwrap();
    assert!((990..=1000).contains(&ttl), "the TTL came along: {ttl}");
    let h: HashMap<String, String> = cb.hgetall(k("hash")).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(
        cb.incr::<_, _, i64>(k("counter"), 1).unwrap(),
        6,
        "INCR starts from the source's value"
    );
    assert_eq!(cb.del::<_, i64>(k("gone")).unwrap(), 1, "DEL counts the source's key");
    assert_eq!(
        cb.get::<_, Option<String>>(k("gone")).unwrap(),
        None,
        "a deleted key is not read through again"
    );
    assert_eq!(cb.get::<_, Option<String>>(k("never")).unwrap(), None);
    // A key written here is served from here.
    let _: () = cb.set(k("plain"), "new").unwrap();
    assert_eq!(cb.get::<_, Option<String>>(k("plain")).unwrap().as_deref(), Some("new"));

    let status = |control: &mut ringcache_proto::auth::Client| {
        rt.block_on(control.get_status(GetStatusRequest {}))
            .unwrap()
            .into_inner()
            .handovers
            .into_iter()
            .next()
            .unwrap()
    };
    let s = status(&mut control);
    assert_eq!(s.read_through_hits, 3, "plain, ttl, hash: {s:?}");
    assert_eq!(s.misses, 2, "gone (deleted here) and never: {s:?}");
    assert!(s.local_hits >= 1, "{s:?}");
    assert!(s.written_keys >= 3, "{s:?}");

    // The source goes away: a missing key is a miss, not an error to the client.
    a.shutdown();
    assert_eq!(cb.get::<_, Option<String>>(k("later")).unwrap(), None);
    let s = status(&mut control);
    assert!(s.read_through_errors >= 1, "{s:?}");
    assert!(!s.read_through_stopped);
    let _: () = redis::cmd("FLUSHALL").query(&mut cb).unwrap();
    let s = status(&mut control);
    assert!(s.read_through_stopped, "FLUSHALL stops read-through: {s:?}");
    drop(control);
    drop(rt);
    b.shutdown();
}

/// A flip whose new owner has not caught up (its replication is paused): it answers
/// -TRYAGAIN on the flipped slots until the old owner's fence brought every write the
/// old owner acknowledged (a value and a deletion here); then it serves them. A third
/// copy that synced from the new owner before the fence gets those writes too (through
/// the new owner's backlog). The old owner, now a replica, does not copy the new owner
/// before it sent the fence (it would take back the deleted key, and the new owner's
/// handover reads missing keys through from it); it follows the new owner after.
#[test]
fn a_new_owner_serves_flipped_slots_only_after_the_old_owners_fence() {
    let (o, d, r) = (cluster_node("o"), cluster_node("d"), cluster_node("r"));
    let infos = vec![info(&o), info(&d), info(&r)];
    let every_slot = |owners: [&str; 3], epoch: u64| {
        let owners = (0..16384)
            .map(|_| owners.iter().map(|s| s.to_string()).collect())
            .collect();
        Topology::from_slot_owners(epoch, infos.clone(), owners).expect("valid topology")
    };
    apply(&[&o, &d, &r], &every_slot(["o", "d", "r"], 1));
    let mut co = client(&o);
    let _: () = co.set("k", "v1").unwrap();
    let _: () = co.set("gone", "x").unwrap();
    let has_everything = |n: &NodeHandle| {
        let offset = o.state.replication.status().current_offset;
        n.state
            .replication
            .status()
            .links
            .iter()
            .any(|l| l.applied_offset >= offset)
    };
    wait_until("d and r replicated o's writes", Duration::from_secs(10), || {
        has_everything(&d) && has_everything(&r)
    });
    d.state.replication.set_paused(true);
    wait_until("d's link is down", Duration::from_secs(5), || {
        d.state.replication.status().links.iter().all(|l| !l.connected)
    });
    // Acknowledged by o, not on d yet.
    let _: () = co.set("k", "v2").unwrap();
    let _: i64 = co.del("gone").unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut control = rt.block_on(common::control_client(&d));
    rt.block_on(control.begin_handover(BeginHandoverRequest {
        handover_id: "h".into(),
        slots: vec![SlotRange { start: 0, end: 16383 }],
        source_node_id: "o".into(),
        source_resp_addr: o.resp_addr.to_string(),
    }))
    .unwrap();
    let flip = every_slot(["d", "o", "r"], 2);
    apply(&[&o, &r], &flip);
    apply(&[&d], &flip);
    let moved = co.get::<_, Option<String>>("k").unwrap_err();
    assert_eq!(moved.code(), Some("MOVED"), "{moved:?}");
    let mut cd = client(&d);
    for e in [
        cd.get::<_, Option<String>>("k").unwrap_err(),
        cd.set::<_, _, ()>("k", "early").unwrap_err(),
    ] {
        assert_eq!(e.code(), Some("TRYAGAIN"), "{e:?}");
    }
    assert_eq!(
        d.state.replication.status().fencing,
        vec![ringcache_core::topology::SlotRange::new(0, 16383)]
    );
    // r copies d meanwhile (d's state before the fence); o does not.
    wait_until("r copied d", Duration::from_secs(10), || {
        r.state
            .replication
            .status()
            .links
            .iter()
            .any(|l| l.primary_id == "d" && l.connected)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        o.state.replication.status().links.is_empty(),
        "o owes d the fence: no link to d yet"
    );
    let _: () = redis::cmd("READONLY").query(&mut co).unwrap();
    assert_eq!(co.get::<_, Option<String>>("gone").unwrap(), None);
    assert_eq!(co.get::<_, Option<String>>("k").unwrap().as_deref(), Some("v2"));

    d.state.replication.set_paused(false);
    wait_until("d has o's fence", Duration::from_secs(10), || {
        d.state.replication.status().fencing.is_empty()
    });
    assert_eq!(cd.get::<_, Option<String>>("k").unwrap().as_deref(), Some("v2"));
    assert_eq!(cd.get::<_, Option<String>>("gone").unwrap(), None);
    let mut cr = client(&r);
    let _: () = redis::cmd("READONLY").query(&mut cr).unwrap();
    wait_until("r has what o acknowledged", Duration::from_secs(10), || {
        cr.get::<_, Option<String>>("k").ok().flatten().as_deref() == Some("v2")
            && cr.get::<_, Option<String>>("gone").ok() == Some(None)
    });
    // o replicates d now and follows its writes.
    let _: () = cd.set("k", "v3").unwrap();
    wait_until("o and r follow d", Duration::from_secs(10), || {
        co.get::<_, Option<String>>("k").ok().flatten().as_deref() == Some("v3")
            && cr.get::<_, Option<String>>("k").ok().flatten().as_deref() == Some("v3")
    });
    assert_eq!(co.get::<_, Option<String>>("gone").unwrap(), None);
    drop(control);
    drop(rt);
    for n in [o, d, r] {
        n.shutdown();
    }
}
