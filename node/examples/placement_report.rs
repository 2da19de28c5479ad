//! Prints how placement behaves when a cluster of N nodes grows to N + 1:
//! the fraction of slots (= of keys, for uniformly spread keys) that move, against the
//! ideal 1/(N+1), and the max/mean load ratio after the move.
//!
//! `cargo run -p ringcache-node --example placement_report`

use ringcache_core::placement::{next_topology, Member};
use ringcache_core::slot::SLOT_COUNT;
use ringcache_core::topology::{moved_slots, NodeInfo, Topology};

fn node(i: usize) -> NodeInfo {
    let id = format!("node-{i:03}");
    NodeInfo {
        instance: format!("{id}-1"),
        resp_addr: format!("10.0.0.{i}:6379"),
        control_addr: format!("10.0.0.{i}:7000"),
        replica_addr: None,
        zone: None,
        id,
    }
}

fn max_over_mean(counts: impl Iterator<Item = usize>) -> f64 {
    let counts: Vec<usize> = counts.collect();
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
    max / mean
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "{:>4} {:>2} | {:>9} {:>9} {:>9} | {:>9} {:>9} | {:>8} {:>8} | {:>6}",
        "N", "R", "ideal", "prim.mov", "copy.mov", "prim.err", "copy.err", "prim.imb", "copy.imb", "ranges"
    );
    for r in [1usize, 2] {
        for n in [3usize, 10, 50] {
            let nodes: Vec<NodeInfo> = (0..=n).map(node).collect();
            let before_members: Vec<Member> = nodes[..n].iter().map(Member::from).collect();
            let after_members: Vec<Member> = nodes.iter().map(Member::from).collect();
            let before: Topology = next_topology(None, &nodes, &before_members, r)?;
            let after = next_topology(Some(&before), &nodes, &after_members, r)?;
            let moved = moved_slots(&before, &after);

            let ideal = 1.0 / (n + 1) as f64;
            let prim_moved = moved.primary_changed_count() as f64 / SLOT_COUNT as f64;
            let copy_moved = moved.copies_added as f64 / (r * SLOT_COUNT) as f64;
            let prim_imb = max_over_mean(
                after
                    .nodes
                    .iter()
                    .map(|nd| after.slots_of(&nd.id).primary.iter().map(|x| x.len()).sum()),
            );
            let copy_imb = max_over_mean(after.nodes.iter().map(|nd| {
                let s = after.slots_of(&nd.id);
                s.primary.iter().chain(&s.replica).map(|x| x.len()).sum()
            }));
            println!(
                "{:>4} {:>2} | {:>8.4}% {:>8.4}% {:>8.4}% | {:>+8.3}% {:>+8.3}% | {:>8.4} {:>8.4} | {:>6}",
                n,
                r,
                ideal * 100.0,
                prim_moved * 100.0,
                copy_moved * 100.0,
                (prim_moved / ideal - 1.0) * 100.0,
                (copy_moved / ideal - 1.0) * 100.0,
                prim_imb,
                copy_imb,
                after.slots.len(),
            );
        }
    }
    println!(
        "\nideal = 1/(N+1); *.mov = fraction of slots whose primary changed / of slot copies \
         added; *.err = relative error vs ideal; *.imb = max/mean load; ranges = slot ranges \
         in the new topology. Targets: |err| <= 0.5 %, imb <= 1.02."
    );
    Ok(())
}
