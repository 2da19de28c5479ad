//! The contract of [`super::place`]: unit tests and property tests.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::topology::moved_slots;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

fn member_id(i: usize) -> String {
    format!("m{i:02}")
}

fn equal(n: usize) -> Vec<Member> {
    (0..n).map(|i| Member::new(member_id(i))).collect()
}

fn place_ok(current: Option<&SlotOwners>, members: &[Member], r: usize) -> SlotOwners {
    place(&PlacementInput {
        current: current.map(Vec::as_slice),
        members,
        replication_factor: r,
    })
    .expect("placement")
}

fn quotas_ok(current: Option<&SlotOwners>, members: &[Member], r: usize) -> Quotas {
    quotas(&PlacementInput {
        current: current.map(Vec::as_slice),
        members,
        replication_factor: r,
    })
    .expect("quotas")
}

/// (primaries, copies) per member id.
fn counts(owners: &SlotOwners) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut primaries: HashMap<&str, usize> = HashMap::new();
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for list in owners {
        if let Some(p) = list.first() {
            *primaries.entry(p).or_insert(0) += 1;
        }
        for o in list {
            *copies.entry(o).or_insert(0) += 1;
        }
    }
    let own = |m: HashMap<&str, usize>| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    (own(primaries), own(copies))
}

/// Failure domain key of a member, `None` zones being their own domain.
fn domain_key(m: &Member) -> String {
    match &m.zone {
        Some(z) => format!("zone:{z}"),
        None => format!("member:{}", m.id),
    }
}

fn zones_enforceable(members: &[Member], r: usize) -> bool {
    let d: HashSet<String> = members.iter().map(domain_key).collect();
    d.len() >= r.min(members.len())
}

/// Properties 3 and 4, and that the counts meet the quotas exactly.
fn check_valid(members: &[Member], r: usize, q: &Quotas, out: &SlotOwners) {
    let r_eff = r.min(members.len());
    assert_eq!(q.replication_factor, r_eff);
    assert_eq!(out.len(), S);
    let enforce = zones_enforceable(members, r);
    assert_eq!(q.zones_enforced, enforce);
    // id → (member index, domain index), computed once.
    let keys: Vec<String> = members.iter().map(domain_key).collect();
    let by_id: HashMap<&str, (usize, usize)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), (i, keys.iter().position(|k| *k == keys[i]).unwrap())))
        .collect();
    for (s, list) in out.iter().enumerate() {
        assert_eq!(list.len(), r_eff, "slot {s}: {list:?}");
        let mut ids: Vec<(usize, usize)> = list
            .iter()
            .map(|id| *by_id.get(id.as_str()).expect("owner is a member"))
            .collect();
        ids.sort_unstable();
        ids.dedup_by_key(|x| x.0);
        assert_eq!(ids.len(), r_eff, "slot {s} repeats a member: {list:?}");
        if enforce {
            ids.sort_unstable_by_key(|x| x.1);
            ids.dedup_by_key(|x| x.1);
            assert_eq!(ids.len(), r_eff, "slot {s} repeats a zone: {list:?}");
        }
    }
    let (p, c) = counts(out);
    for m in members {
        assert_eq!(p.get(&m.id).copied().unwrap_or(0), q.primaries[&m.id], "{}", m.id);
        assert_eq!(c.get(&m.id).copied().unwrap_or(0), q.copies[&m.id], "{}", m.id);
    }
}

fn within(count: usize, share: f64) -> bool {
    let c = count as f64;
    c >= (share - 1e-6).floor() && c <= (share + 1e-6).ceil()
}

/// Property 1: quotas are floor/ceil of the exact shares, computed independently
/// here in floating point (with per-zone water-filling for copies).
fn check_balance(members: &[Member], r: usize, q: &Quotas) {
    let total_w: f64 = members.iter().map(|m| f64::from(m.weight)).sum();
    let sf = S as f64;
    assert_eq!(q.primaries.values().sum::<usize>(), S);
    for m in members {
        let share = sf * f64::from(m.weight) / total_w;
        assert!(
            within(q.primaries[&m.id], share),
            "{}: {} vs {share}",
            m.id,
            q.primaries[&m.id]
        );
    }
    // Copies: domains are zones when enforced, else members; each capped at S.
    let r_eff = r.min(members.len());
    let key = |m: &Member| {
        if q.zones_enforced {
            domain_key(m)
        } else {
            m.id.clone()
        }
    };
    let mut dw: BTreeMap<String, f64> = BTreeMap::new();
    for m in members {
        *dw.entry(key(m)).or_insert(0.0) += f64::from(m.weight);
    }
    let mut capped: HashSet<String> = HashSet::new();
    loop {
        let rest = (r_eff * S) as f64 - sf * capped.len() as f64;
        let rest_w: f64 = dw.iter().filter(|(k, _)| !capped.contains(*k)).map(|(_, w)| w).sum();
        let over: Vec<String> = dw
            .iter()
            .filter(|(k, w)| !capped.contains(*k) && rest * **w / rest_w > sf + 1e-9)
            .map(|(k, _)| k.clone())
            .collect();
        if over.is_empty() {
            for m in members {
                let k = key(m);
                let share = if capped.contains(&k) {
                    sf * f64::from(m.weight) / dw[&k]
                } else {
                    rest * f64::from(m.weight) / rest_w
                };
                let c = q.copies[&m.id];
                assert!(within(c, share), "{}: {c} copies vs share {share}", m.id);
                assert!(c >= q.primaries[&m.id]);
            }
            break;
        }
        capped.extend(over);
    }
    assert_eq!(q.copies.values().sum::<usize>(), r_eff * S);
    let mut per_domain: BTreeMap<String, usize> = BTreeMap::new();
    for m in members {
        *per_domain.entry(key(m)).or_insert(0) += q.copies[&m.id];
    }
    assert!(per_domain.values().all(|&c| c <= S));
}

/// Equality of two placements, reporting the first difference (not 16384 lists).
fn assert_same(a: &SlotOwners, b: &SlotOwners) {
    let diff = (0..S).filter(|&s| a[s] != b[s]).count();
    if let Some(s) = (0..S).find(|&s| a[s] != b[s]) {
        panic!("{diff} slots differ, first {s}: {:?} vs {:?}", a[s], b[s]);
    }
}

fn primary_changes(old: &SlotOwners, new: &SlotOwners) -> usize {
    old.iter().zip(new).filter(|(a, b)| a.first() != b.first()).count()
}

fn copies_added(old: &SlotOwners, new: &SlotOwners) -> usize {
    old.iter()
        .zip(new)
        .map(|(a, b)| b.iter().filter(|id| !a.contains(id)).count())
        .sum()
}

/// Property 2 for primaries: exactly the slots of removed members and the excess of
/// over-quota members change primary, nothing else.
fn check_min_primary_movement(old: &SlotOwners, new: &SlotOwners, members: &[Member], q: &Quotas) {
    let (cur_p, _) = counts(old);
    let removed = old
        .iter()
        .filter(|l| l.first().is_none_or(|p| !q.primaries.contains_key(p)))
        .count();
    let excess: usize = members
        .iter()
        .map(|m| {
            cur_p
                .get(&m.id)
                .copied()
                .unwrap_or(0)
                .saturating_sub(q.primaries[&m.id])
        })
        .sum();
    assert_eq!(primary_changes(old, new), removed + excess);
    for (a, b) in old.iter().zip(new) {
        if a.first() != b.first() {
            if let Some(p) = a.first() {
                if let Some(&quota) = q.primaries.get(p) {
                    assert!(cur_p[p] > quota, "{p} was not over quota but lost a slot");
                }
            }
        }
    }
}

/// The least number of copies any placement meeting `q` must add: every member
/// that grows needs at least its growth in new copies.
fn copy_lower_bound(old: &SlotOwners, members: &[Member], q: &Quotas) -> usize {
    let (_, cur_c) = counts(old);
    members
        .iter()
        .map(|m| q.copies[&m.id].saturating_sub(cur_c.get(&m.id).copied().unwrap_or(0)))
        .sum()
}

fn max_over_mean(counts: &BTreeMap<String, usize>) -> f64 {
    let max = counts.values().copied().max().unwrap_or(0) as f64;
    let mean = counts.values().sum::<usize>() as f64 / counts.len() as f64;
    max / mean
}

fn ranges(owners: &SlotOwners) -> usize {
    1 + owners.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn input_errors_name_the_problem() {
    let run = |members: &[Member], r: usize| {
        place(&PlacementInput {
            current: None,
            members,
            replication_factor: r,
        })
    };
    assert_eq!(run(&[], 1), Err(PlacementError::NoMembers));
    assert_eq!(run(&equal(2), 0), Err(PlacementError::ReplicationFactorZero));
    let dup = vec![Member::new("a"), Member::new("b"), Member::new("a")];
    assert_eq!(
        run(&dup, 1),
        Err(PlacementError::DuplicateMember {
            index: 2,
            id: "a".into()
        })
    );
    let zero = vec![Member::new("a"), Member::new("b").with_weight(0)];
    let err = run(&zero, 1).unwrap_err();
    assert_eq!(
        err,
        PlacementError::ZeroWeight {
            index: 1,
            id: "b".into()
        }
    );
    assert_eq!(err.to_string(), "members[1].weight: must be at least 1 (member \"b\")");
    assert_eq!(
        run(&[Member::new("")], 1),
        Err(PlacementError::EmptyMemberId { index: 0 })
    );
    let short = vec![Vec::new(); 3];
    assert_eq!(
        place(&PlacementInput {
            current: Some(&short),
            members: &equal(2),
            replication_factor: 1
        }),
        Err(PlacementError::CurrentWrongLength { got: 3 })
    );
}

#[test]
fn fresh_placement_is_contiguous_balanced_and_spreads_replicas() {
    let members = equal(3);
    let out = place_ok(None, &members, 1);
    assert_eq!(ranges(&out), 3);
    assert_eq!(out[0], vec!["m00".to_string()]);
    let (p, _) = counts(&out);
    assert_eq!(p.values().copied().collect::<Vec<_>>(), vec![5462, 5461, 5461]);

    // R=2 on 4 members: each member's primaries have their replicas spread evenly
    // over the 3 others (a failure spreads its load), one range per (primary, replica).
    let members = equal(4);
    let out = place_ok(None, &members, 2);
    assert_eq!(ranges(&out), 12);
    check_valid(&members, 2, &quotas_ok(None, &members, 2), &out);
    let mut pairs: BTreeMap<(String, String), usize> = BTreeMap::new();
    for list in &out {
        *pairs.entry((list[0].clone(), list[1].clone())).or_default() += 1;
    }
    assert_eq!(pairs.len(), 12);
    assert!(pairs.values().all(|&n| (1364..=1366).contains(&n)), "{pairs:?}");
}

#[test]
fn weights_follow_largest_remainder() {
    let members = vec![
        Member::new("a").with_weight(1),
        Member::new("b").with_weight(2),
        Member::new("c").with_weight(3),
    ];
    let q = quotas_ok(None, &members, 2);
    // 16384 / 6 = 2730.67
    assert_eq!(q.primaries["a"], 2731);
    assert_eq!(q.primaries["b"], 5461);
    assert_eq!(q.primaries["c"], 8192);
    // Copies: c's share 32768 * 3/6 = 16384 exactly hits the cap.
    assert_eq!(q.copies["c"], 16384);
    assert_eq!(q.copies["a"] + q.copies["b"], 16384);
    check_balance(&members, 2, &q);
    // b's share (5/7 of 32768) exceeds one copy per slot: capped, the rest re-spread.
    let heavy = vec![Member::new("a"), Member::new("b").with_weight(5), Member::new("c")];
    let q = quotas_ok(None, &heavy, 2);
    assert_eq!(q.copies["b"], 16384);
    assert_eq!(q.copies["a"], 8192);
    let out = place_ok(None, &heavy, 2);
    check_valid(&heavy, 2, &q, &out);
}

/// The numbers printed by `examples/placement_report.rs`: N → N+1 moves the ideal
/// 1/(N+1) of slots (within 0.5 %) and leaves max/mean load ≤ 1.02.
#[test]
fn scale_out_report_targets() {
    for r in [1, 2] {
        for n in [3, 10, 50] {
            let before = place_ok(None, &equal(n), r);
            let members = equal(n + 1);
            let after = place_ok(Some(&before), &members, r);
            let ideal = 1.0 / (n + 1) as f64;
            let primary = primary_changes(&before, &after) as f64 / S as f64;
            let copies = copies_added(&before, &after) as f64 / (r * S) as f64;
            assert!(
                (primary / ideal - 1.0).abs() <= 0.005,
                "n={n} r={r}: {primary} vs {ideal}"
            );
            assert!(
                (copies / ideal - 1.0).abs() <= 0.005,
                "n={n} r={r}: {copies} vs {ideal}"
            );
            let (p, c) = counts(&after);
            assert!(max_over_mean(&p) <= 1.02);
            assert!(max_over_mean(&c) <= 1.02);
            // The new member takes a tail of each old member's ranges: few new ranges.
            assert!(
                ranges(&after) <= ranges(&before) + 3 * (n + 1),
                "n={n} r={r}: {} → {} ranges",
                ranges(&before),
                ranges(&after)
            );
        }
    }
}

#[test]
fn removing_a_member_promotes_its_replicas() {
    let before = place_ok(None, &equal(4), 2);
    let members = equal(3);
    let after = place_ok(Some(&before), &members, 2);
    let q = quotas_ok(Some(&before), &members, 2);
    check_valid(&members, 2, &q, &after);
    check_min_primary_movement(&before, &after, &members, &q);
    // Replicas are spread, so (up to rounding) every slot m03 led is taken over by
    // its former replica: no data moves for those primaries.
    let led = before.iter().filter(|a| a[0] == "m03").count();
    let promoted = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a[0] == "m03" && a.contains(&b[0]))
        .count();
    assert!(promoted + 3 >= led, "{promoted} of {led} promoted");
    assert_eq!(copies_added(&before, &after), copy_lower_bound(&before, &members, &q));
}

#[test]
fn changing_r_keeps_primaries() {
    let members = equal(5);
    let one = place_ok(None, &members, 1);
    let two = place_ok(Some(&one), &members, 2);
    let three = place_ok(Some(&two), &members, 3);
    let back = place_ok(Some(&three), &members, 1);
    assert_eq!(primary_changes(&one, &two), 0);
    assert_eq!(primary_changes(&two, &three), 0);
    assert_same(&back, &one);
    assert_eq!(copies_added(&one, &two), S);
    assert_eq!(copies_added(&two, &three), S);
    // R above the member count is capped.
    let capped = place_ok(None, &equal(2), 5);
    assert!(capped.iter().all(|l| l.len() == 2));
}

#[test]
fn zones_are_distinct_and_balance_bends_only_as_needed() {
    // Three zones of two: every slot has one copy per zone, perfectly balanced.
    let members: Vec<Member> = (0..6)
        .map(|i| Member::new(member_id(i)).with_zone(format!("z{}", i % 3)))
        .collect();
    let q = quotas_ok(None, &members, 3);
    assert!(q.zones_enforced);
    let out = place_ok(None, &members, 3);
    check_valid(&members, 3, &q, &out);
    let (p, c) = counts(&out);
    assert!(p.values().all(|&n| n == 2730 || n == 2731));
    assert!(c.values().all(|&n| n == 8192));

    // Uneven zones, R=2: the lone member of zone b must hold every slot; zone a's
    // three members split the other copy. Primaries stay balanced.
    let uneven = vec![
        Member::new("a1").with_zone("a"),
        Member::new("a2").with_zone("a"),
        Member::new("a3").with_zone("a"),
        Member::new("b1").with_zone("b"),
    ];
    let q = quotas_ok(None, &uneven, 2);
    let out = place_ok(None, &uneven, 2);
    check_valid(&uneven, 2, &q, &out);
    check_balance(&uneven, 2, &q);
    assert_eq!(q.copies["b1"], S);
    assert!(q.primaries.values().all(|&n| n == 4096));

    // Fewer zones than R: zones are not enforced, members still distinct.
    let two_zones = vec![
        Member::new("a1").with_zone("a"),
        Member::new("a2").with_zone("a"),
        Member::new("b1").with_zone("b"),
    ];
    let q = quotas_ok(None, &two_zones, 3);
    assert!(!q.zones_enforced);
    check_valid(&two_zones, 3, &q, &place_ok(None, &two_zones, 3));
}

#[test]
fn next_topology_bumps_the_epoch() {
    let nodes: Vec<NodeInfo> = (0..4)
        .map(|i| NodeInfo {
            id: member_id(i),
            instance: format!("i{i}"),
            resp_addr: format!("10.0.0.{i}:6379"),
            control_addr: format!("10.0.0.{i}:7000"),
            replica_addr: None,
            zone: None,
        })
        .collect();
    let members: Vec<Member> = nodes[..3].iter().map(Member::from).collect();
    let t1 = next_topology(None, &nodes, &members, 1).unwrap();
    assert_eq!(t1.epoch, 1);
    assert_eq!(t1.nodes.len(), 3);
    assert_eq!(t1.slots.len(), 3);
    let all: Vec<Member> = nodes.iter().map(Member::from).collect();
    let t2 = next_topology(Some(&t1), &nodes, &all, 1).unwrap();
    assert_eq!(t2.epoch, 2);
    assert_eq!(t2.validate(), Ok(()));
    let moved = moved_slots(&t1, &t2);
    assert_eq!(moved.primary_changed_count(), 4096);
    assert_eq!(moved.copies_added, 4096);
    assert_eq!(
        next_topology(Some(&t2), &nodes[..1], &all, 2),
        Err(PlacementError::MissingNodeInfo { id: member_id(1) })
    );
}

#[test]
fn placing_again_changes_nothing_and_order_does_not_matter() {
    let members = vec![
        Member::new("x").with_weight(3).with_zone("a"),
        Member::new("y").with_zone("b"),
        Member::new("z").with_weight(2),
        Member::new("w").with_zone("a"),
    ];
    let out = place_ok(None, &members, 2);
    assert_same(&place_ok(Some(&out), &members, 2), &out);
    let mut reversed = members.clone();
    reversed.reverse();
    assert_same(&place_ok(None, &reversed, 2), &out);
}

/// A pool of up to 12 members, (weight, zone) each; a scenario picks a "before" and
/// an "after" subset, possibly with new weights, and replication factors.
#[derive(Debug, Clone)]
struct Scenario {
    before: Vec<Member>,
    after: Vec<Member>,
    r_before: usize,
    r_after: usize,
}

fn scenario(zones: bool, weights: bool) -> impl Strategy<Value = Scenario> {
    let max_w = if weights { 4u32 } else { 1 };
    let zone = if zones { 0u8..4 } else { 0u8..1 };
    (
        prop::collection::vec((1..=max_w, 1..=max_w, zone, any::<bool>(), any::<bool>()), 1..=12),
        1usize..=3,
        1usize..=3,
    )
        .prop_map(move |(pool, r_before, r_after)| {
            let mk = |i: usize, w: u32, z: u8| {
                let m = Member::new(member_id(i)).with_weight(w);
                if zones {
                    m.with_zone(format!("z{z}"))
                } else {
                    m
                }
            };
            let mut before: Vec<Member> = pool
                .iter()
                .enumerate()
                .filter(|(_, p)| p.3)
                .map(|(i, p)| mk(i, p.0, p.2))
                .collect();
            let mut after: Vec<Member> = pool
                .iter()
                .enumerate()
                .filter(|(_, p)| p.4)
                .map(|(i, p)| mk(i, p.1, p.2))
                .collect();
            if before.is_empty() {
                before.push(mk(0, pool[0].0, pool[0].2));
            }
            if after.is_empty() {
                let last = pool.len() - 1;
                after.push(mk(last, pool[last].1, pool[last].2));
            }
            Scenario {
                before,
                after,
                r_before,
                r_after,
            }
        })
}

fn run_scenario(sc: &Scenario) -> (SlotOwners, SlotOwners, Quotas) {
    let old = place_ok(None, &sc.before, sc.r_before);
    let new = place_ok(Some(&old), &sc.after, sc.r_after);
    let q = quotas_ok(Some(&old), &sc.after, sc.r_after);
    (old, new, q)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Properties 1 and 3: exact (weighted) balance, R distinct copies.
    #[test]
    fn prop_balance_and_distinct_copies(sc in scenario(false, true)) {
        let (_, new, q) = run_scenario(&sc);
        check_balance(&sc.after, sc.r_after, &q);
        check_valid(&sc.after, sc.r_after, &q, &new);
    }

    /// Property 2 for primaries, under any change of members, weights and R; and
    /// placing again from the result moves nothing.
    #[test]
    fn prop_minimum_primary_movement(sc in scenario(false, true)) {
        let (old, new, q) = run_scenario(&sc);
        check_min_primary_movement(&old, &new, &sc.after, &q);
        assert_same(&place_ok(Some(&new), &sc.after, sc.r_after), &new);
    }

    /// Property 2 for copies: with the same R and equal weights, any change of
    /// membership adds exactly the copies the growing members must gain.
    #[test]
    fn prop_minimum_copy_movement(sc in scenario(false, false)) {
        let sc = Scenario { r_after: sc.r_before, ..sc };
        let (old, new, q) = run_scenario(&sc);
        prop_assert_eq!(copies_added(&old, &new), copy_lower_bound(&old, &sc.after, &q));
    }

    /// Property 4: distinct zones whenever there are enough zones, with balance and
    /// minimum primary movement still holding.
    #[test]
    fn prop_zones(sc in scenario(true, true)) {
        let (old, new, q) = run_scenario(&sc);
        check_balance(&sc.after, sc.r_after, &q);
        check_valid(&sc.after, sc.r_after, &q, &new);
        check_min_primary_movement(&old, &new, &sc.after, &q);
    }
}
