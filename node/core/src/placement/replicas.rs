//! Phase 2: `R - 1` replicas per slot around the fixed primaries, keeping as many
//! existing copies as quotas and zones allow (a min-cost flow over classes of
//! interchangeable slots, [`super::flow`]).

use std::collections::BTreeMap;

use super::flow::{EdgeRef, Flow};
use super::quotas::Prepared;
use super::{PlacementError, S};

impl Prepared {
    /// Phase 2: `r - 1` replicas per slot around the fixed primaries.
    pub(super) fn place_replicas(&self, primary: Vec<usize>) -> Result<Replicas<'_>, PlacementError> {
        let m = self.ids.len();
        let want = self.r - 1;
        let mut st = Replicas {
            p: self,
            reps: vec![Vec::new(); S],
            count: vec![0; m],
            quota: (0..m).map(|i| self.cq[i].saturating_sub(self.pq[i])).collect(),
            primary,
        };
        if want == 0 {
            return Ok(st);
        }
        // Existing copies that may stay: not the primary, zones distinct, current order.
        let mut candidates = vec![Vec::new(); S];
        for (s, cands) in candidates.iter_mut().enumerate() {
            let p = st.primary[s];
            let mut domains = vec![self.domain[p]];
            for &o in &self.old_owners[s] {
                if o != p && !domains.contains(&self.domain[o]) {
                    domains.push(self.domain[o]);
                    cands.push(o);
                }
            }
        }
        if candidates.iter().all(Vec::is_empty) {
            // Nothing to keep (a fresh cluster): fill, spreading each member's replicas.
            st.fill_holes();
            if st.reps.iter().all(|r| r.len() == want) {
                return Ok(st);
            }
        }
        st.solve_exact(&candidates).map_err(|()| PlacementError::Infeasible)?;
        Ok(st)
    }
}

/// Replica assignment state.
pub(super) struct Replicas<'a> {
    pub(super) p: &'a Prepared,
    pub(super) primary: Vec<usize>,
    pub(super) reps: Vec<Vec<usize>>,
    /// Replica copies per member, and the target.
    pub(super) count: Vec<usize>,
    pub(super) quota: Vec<usize>,
}

impl Replicas<'_> {
    /// Fills missing replicas with under-quota members without moving any copy.
    ///
    /// Slots that need the same number of copies and already hold the same set of zones
    /// are interchangeable, so the problem is solved per such class: a max-flow from
    /// receivers (capacity: spare quota) through (class, zone) nodes (capacity: the
    /// class size, one copy per slot per zone) to the classes (capacity: missing copies).
    /// Each class's share is then laid out McNaughton-style: receivers grouped by zone
    /// fill consecutive positions that wrap over the class's slots, so no zone lands twice
    /// in a slot and every receiver gets a contiguous run of slots.
    fn fill_holes(&mut self) {
        let want = self.p.r - 1;
        let domain = &self.p.domain;
        let mut classes: BTreeMap<(Vec<usize>, usize), Vec<usize>> = BTreeMap::new();
        for s in 0..S {
            let need = want.saturating_sub(self.reps[s].len());
            if need > 0 {
                let mut doms: Vec<usize> = std::iter::once(self.primary[s])
                    .chain(self.reps[s].iter().copied())
                    .map(|o| domain[o])
                    .collect();
                doms.sort_unstable();
                classes.entry((doms, need)).or_default().push(s);
            }
        }
        let receivers: Vec<usize> = (0..self.count.len())
            .filter(|&j| self.count[j] < self.quota[j])
            .collect();
        if classes.is_empty() || receivers.is_empty() {
            return;
        }
        let (source, sink) = (0, 1);
        let mut flow = Flow::new(2 + receivers.len() + classes.len());
        for (k, &j) in receivers.iter().enumerate() {
            flow.add_edge(source, 2 + k, (self.quota[j] - self.count[j]) as u64, 0);
        }
        // First each receiver may take only its proportional part of each class, which
        // spreads a member's replicas over many members (a failure then spreads its load,
        // and a removal can promote replicas everywhere); then the caps are lifted.
        let mut edges: Vec<(usize, usize, usize, EdgeRef)> = Vec::new(); // (class, domain, member, edge)
        let mut lifts: Vec<(usize, usize, u64)> = Vec::new(); // (from, to, extra capacity)
        for (c, ((doms, need), slots)) in classes.iter().enumerate() {
            let class_node = 2 + receivers.len() + c;
            let n = slots.len() as u64;
            let demand = *need as u64 * n;
            flow.add_edge(class_node, sink, demand, 0);
            let allowed: Vec<(usize, usize)> = receivers
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, j)| doms.binary_search(&domain[j]).is_err())
                .collect();
            let supply: u64 = allowed
                .iter()
                .map(|&(_, j)| (self.quota[j] - self.count[j]) as u64)
                .sum();
            let mut zone_nodes: BTreeMap<usize, usize> = BTreeMap::new();
            for (k, j) in allowed {
                let d = domain[j];
                let zone_node = *zone_nodes.entry(d).or_insert_with(|| {
                    let v = flow.add_node();
                    flow.add_edge(v, class_node, n, 0);
                    v
                });
                let spare = (self.quota[j] - self.count[j]) as u64;
                let fair = (demand * spare).div_ceil(supply.max(1)).min(n);
                edges.push((c, d, j, flow.add_edge(2 + k, zone_node, fair, 0)));
                lifts.push((2 + k, zone_node, n - fair));
            }
        }
        flow.run(source, sink);
        for (i, (from, to, extra)) in lifts.into_iter().enumerate() {
            let (c, d, j, _) = edges[i];
            edges.push((c, d, j, flow.add_edge(from, to, extra, 0)));
        }
        flow.run(source, sink);
        edges.sort_unstable_by_key(|&(c, d, j, _)| (c, d, j));
        let mut next = 0;
        for (c, slots) in classes.values().enumerate() {
            let mut pos = 0;
            while next < edges.len() && edges[next].0 == c {
                let (_, _, j, edge) = edges[next];
                for _ in 0..flow.flow(edge) {
                    self.reps[slots[pos % slots.len()]].push(j);
                    self.count[j] += 1;
                    pos += 1;
                }
                next += 1;
            }
        }
    }

    /// Chooses all replicas at once as a min-cost flow: slots with the same primary zone
    /// and the same existing replicas form a class; member → (class, zone) edges carry
    /// up to one copy per slot, costing 0 where the member already holds a copy, 1
    /// where it must be copied. Minimum cost = fewest copies moved; full flow = every
    /// slot complete with distinct zones and every member at quota. Each class is then
    /// laid out McNaughton-style as in [`Self::fill_holes`].
    fn solve_exact(&mut self, candidates: &[Vec<usize>]) -> Result<(), ()> {
        let want = self.p.r - 1;
        let domain = &self.p.domain;
        let m = self.count.len();
        let mut classes: BTreeMap<(usize, Vec<usize>), Vec<usize>> = BTreeMap::new();
        for s in 0..S {
            let mut cands = candidates[s].clone();
            cands.sort_unstable();
            classes.entry((domain[self.primary[s]], cands)).or_default().push(s);
        }
        let (source, sink) = (0, 1);
        let mut flow = Flow::new(2 + m);
        for j in 0..m {
            flow.add_edge(source, 2 + j, self.quota[j] as u64, 0);
        }
        let mut edges: Vec<(usize, usize, usize, EdgeRef)> = Vec::new(); // (class, domain, member, edge)
        for (c, ((primary_domain, cands), slots)) in classes.iter().enumerate() {
            let n = slots.len() as u64;
            let class_node = flow.add_node();
            flow.add_edge(class_node, sink, want as u64 * n, 0);
            let mut zone_nodes: BTreeMap<usize, usize> = BTreeMap::new();
            for (j, &d) in domain.iter().enumerate() {
                if d == *primary_domain {
                    continue;
                }
                let zone_node = *zone_nodes.entry(d).or_insert_with(|| {
                    let v = flow.add_node();
                    flow.add_edge(v, class_node, n, 0);
                    v
                });
                let cost = i64::from(cands.binary_search(&j).is_err());
                edges.push((c, d, j, flow.add_edge(2 + j, zone_node, n, cost)));
            }
        }
        if flow.run(source, sink) < (want * S) as u64 {
            return Err(());
        }
        edges.sort_unstable_by_key(|&(c, d, j, _)| (c, d, j));
        self.count = vec![0; m];
        let mut next = 0;
        for (c, slots) in classes.values().enumerate() {
            for &s in slots {
                self.reps[s].clear();
            }
            let mut pos = 0;
            while next < edges.len() && edges[next].0 == c {
                let (_, _, j, edge) = edges[next];
                for _ in 0..flow.flow(edge) {
                    self.reps[slots[pos % slots.len()]].push(j);
                    self.count[j] += 1;
                    pos += 1;
                }
                next += 1;
            }
        }
        Ok(())
    }
}
