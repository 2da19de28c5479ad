//! Placement: a pure function from (current owners, members, weights, zones, R) to the
//! owners of every slot.
//!
//! # Rules
//! * **Quotas.** Every member gets `floor` or `ceil` of its exact weighted share of the
//!   16384 primaries (largest-remainder apportionment). Which members get the `ceil`
//!   when shares have a fractional part: first those currently holding more than their
//!   `floor` (so fewer slots move), then the larger remainder, then the smaller id.
//!   Copies (primary + replicas, `R × 16384` in all) are apportioned the same way,
//!   except that no member — and, when zones are enforced, no zone — can hold more than
//!   one copy of a slot: a share above 16384 is capped and the rest is re-spread by
//!   weight ("water-filling"). So with uneven zones, balance bends exactly as far as
//!   the zones force it and no further. [`quotas`] returns the targets; a placement
//!   meets them exactly.
//! * **Copies.** Each slot gets `min(R, members)` copies on distinct members.
//! * **Zones.** Members without a zone each count as a zone of their own. When there are
//!   at least `min(R, members)` zones, no two copies of a slot share a zone; otherwise
//!   zones are ignored (only distinct members).
//! * **Minimum movement, primaries.** A member keeps its current primaries up to its
//!   quota, giving up its highest-numbered ones (moved slots stay contiguous). A slot
//!   that lost its primary promotes one of its current replicas when that replica is
//!   under quota (the data is already there), else goes to an under-quota member,
//!   members that must gain copies anyway first. So exactly `Σ max(0, current − quota)`
//!   slots plus those of removed members change primary.
//! * **Minimum movement, replicas.** With the primaries fixed, replicas are chosen by a
//!   min-cost flow over classes of interchangeable slots (same primary zone, same
//!   existing replicas): keeping a copy costs 0, creating one costs 1. So the fewest
//!   copies are made subject to quotas and zones. In a fresh cluster each member's
//!   replicas are spread evenly over the other members, so a failure or a removal
//!   spreads its load and its slots can be promoted in place.
//! * **Deterministic.** Members are sorted by id; there is no randomness.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};

use crate::cluster::slot::SLOT_COUNT;
use crate::cluster::topology::{NodeInfo, Topology, TopologyError};

const S: usize = SLOT_COUNT;

/// A node taking part in placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Relative capacity; `1` for equal shares. Must be at least 1.
    pub weight: u32,
    /// Failure domain; `None` counts as a zone of its own.
    pub zone: Option<String>,
}

impl Member {
    /// A member with weight 1 and no zone.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            weight: 1,
            zone: None,
        }
    }

    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }
}

impl From<&NodeInfo> for Member {
    /// Weight 1, the node's zone.
    fn from(node: &NodeInfo) -> Self {
        Self {
            id: node.id.clone(),
            weight: 1,
            zone: node.zone.clone(),
        }
    }
}

/// Owners per slot (`SLOT_COUNT` entries, `[primary, replicas…]`).
pub type SlotOwners = Vec<Vec<String>>;

/// Input of [`place`].
#[derive(Debug, Clone, Copy)]
pub struct PlacementInput<'a> {
    /// Current owners per slot (`SLOT_COUNT` entries), `None` for a fresh cluster.
    /// Ids that are not members are treated as gone; empty lists as unassigned slots.
    pub current: Option<&'a [Vec<String>]>,
    pub members: &'a [Member],
    /// Wanted copies per slot (primary included); capped to the member count.
    pub replication_factor: usize,
}

/// Why no placement was computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("members: at least one member is required")]
    NoMembers,
    #[error("replication_factor: must be at least 1")]
    ReplicationFactorZero,
    #[error("members[{index}].id: must not be empty")]
    EmptyMemberId { index: usize },
    #[error("members[{index}].id: duplicate member id {id:?}")]
    DuplicateMember { index: usize, id: String },
    #[error("members[{index}].weight: must be at least 1 (member {id:?})")]
    ZeroWeight { index: usize, id: String },
    #[error("current: expected {SLOT_COUNT} per-slot owner lists, got {got}")]
    CurrentWrongLength { got: usize },
    #[error("nodes: no NodeInfo for member {id:?}")]
    MissingNodeInfo { id: String },
    #[error("no placement satisfies the zone and quota constraints")]
    Infeasible,
    #[error("resulting topology: {0}")]
    Topology(#[from] TopologyError),
}

/// Per-member targets that a placement meets exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// `min(R, members)`.
    pub replication_factor: usize,
    /// Whether copies of a slot must be in distinct zones.
    pub zones_enforced: bool,
    /// Primary slots per member id.
    pub primaries: BTreeMap<String, usize>,
    /// Copies (primary + replica) per member id.
    pub copies: BTreeMap<String, usize>,
}

/// The quotas [`place`] will meet for `input`.
pub fn quotas(input: &PlacementInput<'_>) -> Result<Quotas, PlacementError> {
    let p = Prepared::new(input)?;
    Ok(Quotas {
        replication_factor: p.r,
        zones_enforced: p.zones_enforced,
        primaries: p.ids.iter().cloned().zip(p.pq.iter().copied()).collect(),
        copies: p.ids.iter().cloned().zip(p.cq.iter().copied()).collect(),
    })
}

/// Computes the owners of every slot. See the module docs for the rules.
pub fn place(input: &PlacementInput<'_>) -> Result<SlotOwners, PlacementError> {
    let p = Prepared::new(input)?;
    let primary = p.place_primaries()?;
    let replicas = p.place_replicas(primary)?;
    Ok(replicas
        .primary
        .iter()
        .zip(&replicas.reps)
        .map(|(&first, rest)| {
            std::iter::once(first)
                .chain(rest.iter().copied())
                .map(|i| p.ids[i].clone())
                .collect()
        })
        .collect())
}

/// The next topology: places `members` starting from `current` (which need not be
/// valid: unassigned slots are simply placed) with epoch `current.epoch + 1` (or 1).
/// `nodes` must hold a [`NodeInfo`] for every member; other nodes are left out.
pub fn next_topology(
    current: Option<&Topology>,
    nodes: &[NodeInfo],
    members: &[Member],
    replication_factor: usize,
) -> Result<Topology, PlacementError> {
    let current_owners = current.map(Topology::to_slot_owners);
    let owners = place(&PlacementInput {
        current: current_owners.as_deref(),
        members,
        replication_factor,
    })?;
    let mut ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    let topo_nodes = ids
        .into_iter()
        .map(|id| {
            nodes
                .iter()
                .find(|n| n.id == id)
                .cloned()
                .ok_or_else(|| PlacementError::MissingNodeInfo { id: id.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let epoch = current.map_or(1, |t| t.epoch.saturating_add(1));
    Ok(Topology::from_slot_owners(epoch, topo_nodes, owners)?)
}

/// An exact non-negative fraction.
#[derive(Debug, Clone, Copy)]
struct Frac {
    num: u128,
    den: u128,
}

impl Frac {
    fn floor(self) -> usize {
        usize::try_from(self.num / self.den).unwrap_or(usize::MAX)
    }

    fn rem(self) -> u128 {
        self.num % self.den
    }

    /// Compares the fractional parts.
    fn cmp_rem(self, other: Frac) -> Ordering {
        (self.rem() * other.den).cmp(&(other.rem() * self.den))
    }
}

/// Largest-remainder rounding: each entry gets floor or ceil of its share, the entries
/// sum to `total`, no group exceeds `cap`, and the extra units go to eligible entries in
/// `prefer` order.
fn apportion(
    shares: &[Frac],
    total: usize,
    group: &[usize],
    cap: usize,
    prefer: impl FnMut(&usize, &usize) -> Ordering,
) -> Vec<usize> {
    let mut counts: Vec<usize> = shares.iter().map(|s| s.floor()).collect();
    let mut used: HashMap<usize, usize> = HashMap::new();
    for (i, &c) in counts.iter().enumerate() {
        *used.entry(group[i]).or_default() += c;
    }
    let mut extra = total.saturating_sub(counts.iter().sum());
    let mut eligible: Vec<usize> = (0..shares.len()).filter(|&i| shares[i].rem() > 0).collect();
    eligible.sort_by(prefer);
    for i in eligible {
        if extra == 0 {
            break;
        }
        let used = used.entry(group[i]).or_default();
        if *used < cap {
            counts[i] += 1;
            *used += 1;
            extra -= 1;
        }
    }
    counts
}

/// Validated input, members sorted by id and referred to by index.
struct Prepared {
    ids: Vec<String>,
    /// Failure domain of each member: its zone when zones are enforced (a zone-less
    /// member is its own domain), else the member itself.
    domain: Vec<usize>,
    zones_enforced: bool,
    /// Effective replication factor.
    r: usize,
    /// Per slot: current primary, if still a member.
    old_primary: Vec<Option<usize>>,
    /// Per slot: current owners that are still members, deduplicated, in order.
    old_owners: Vec<Vec<usize>>,
    cur_copies: Vec<usize>,
    /// Primary and copy quotas.
    pq: Vec<usize>,
    cq: Vec<usize>,
}

impl Prepared {
    fn new(input: &PlacementInput<'_>) -> Result<Self, PlacementError> {
        if input.members.is_empty() {
            return Err(PlacementError::NoMembers);
        }
        if input.replication_factor == 0 {
            return Err(PlacementError::ReplicationFactorZero);
        }
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for (index, m) in input.members.iter().enumerate() {
            if m.id.is_empty() {
                return Err(PlacementError::EmptyMemberId { index });
            }
            if m.weight == 0 {
                return Err(PlacementError::ZeroWeight {
                    index,
                    id: m.id.clone(),
                });
            }
            if seen.insert(&m.id, ()).is_some() {
                return Err(PlacementError::DuplicateMember {
                    index,
                    id: m.id.clone(),
                });
            }
        }
        if let Some(current) = input.current {
            if current.len() != S {
                return Err(PlacementError::CurrentWrongLength { got: current.len() });
            }
        }

        let mut members: Vec<&Member> = input.members.iter().collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let m = members.len();
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        let weights: Vec<u128> = members.iter().map(|m| u128::from(m.weight)).collect();
        let r = input.replication_factor.min(m);

        // Zones → domains (a member without a zone is a domain of its own).
        let mut zone_index: HashMap<&str, usize> = HashMap::new();
        let mut domains = 0;
        let mut zone_domain = Vec::with_capacity(m);
        for member in &members {
            let d = match &member.zone {
                Some(z) => *zone_index.entry(z.as_str()).or_insert(domains),
                None => domains,
            };
            if d == domains {
                domains += 1;
            }
            zone_domain.push(d);
        }
        let zones_enforced = domains >= r;
        let (domain, domains) = if zones_enforced {
            (zone_domain, domains)
        } else {
            ((0..m).collect(), m)
        };

        // Current state.
        let index_of: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let mut old_primary = vec![None; S];
        let mut old_owners = vec![Vec::new(); S];
        let mut cur_primary = vec![0usize; m];
        let mut cur_copies = vec![0usize; m];
        if let Some(current) = input.current {
            // Neighbouring slots mostly have the same owners: resolve each run once.
            let mut prev: Option<(&Vec<String>, Vec<usize>, Option<usize>)> = None;
            for (s, owners) in current.iter().enumerate() {
                let (list, first) = match &prev {
                    Some((p, list, first)) if *p == owners => (list.clone(), *first),
                    _ => {
                        let mut list: Vec<usize> = Vec::with_capacity(owners.len());
                        for id in owners {
                            if let Some(&i) = index_of.get(id.as_str()) {
                                if !list.contains(&i) {
                                    list.push(i);
                                }
                            }
                        }
                        let first = owners.first().and_then(|id| index_of.get(id.as_str()).copied());
                        prev = Some((owners, list.clone(), first));
                        (list, first)
                    }
                };
                for &i in &list {
                    cur_copies[i] += 1;
                }
                if let Some(i) = first {
                    cur_primary[i] += 1;
                }
                old_primary[s] = first;
                old_owners[s] = list;
            }
        }

        // Primary quotas: weighted shares of S.
        let total_w: u128 = weights.iter().sum();
        let shares: Vec<Frac> = weights
            .iter()
            .map(|&w| Frac {
                num: S as u128 * w,
                den: total_w,
            })
            .collect();
        // Giving the extra slot to a member that holds more than its floor saves a move.
        let keeps = |counts: &[usize], shares: &[Frac], i: usize| counts[i] > shares[i].floor();
        let pq = apportion(&shares, S, &vec![0; m], S, |&a, &b| {
            keeps(&cur_primary, &shares, b)
                .cmp(&keeps(&cur_primary, &shares, a))
                .then(shares[b].cmp_rem(shares[a]))
                .then(a.cmp(&b))
        });

        // Copy quotas: water-fill R × S over domains, each domain capped at S.
        let mut domain_w = vec![0u128; domains];
        for i in 0..m {
            domain_w[domain[i]] += weights[i];
        }
        let mut capped = vec![false; domains];
        let (rest_total, rest_w) = loop {
            let n_capped = capped.iter().filter(|&&c| c).count();
            let rest_total = ((r * S) as u128).saturating_sub((n_capped * S) as u128);
            let rest_w: u128 = (0..domains).filter(|&z| !capped[z]).map(|z| domain_w[z]).sum();
            let mut changed = false;
            for z in 0..domains {
                if !capped[z] && rest_total * domain_w[z] > S as u128 * rest_w {
                    capped[z] = true;
                    changed = true;
                }
            }
            if !changed {
                break (rest_total, rest_w.max(1));
            }
        };
        let shares: Vec<Frac> = (0..m)
            .map(|i| {
                let z = domain[i];
                if capped[z] {
                    Frac {
                        num: S as u128 * weights[i],
                        den: domain_w[z],
                    }
                } else {
                    Frac {
                        num: rest_total * weights[i],
                        den: rest_w,
                    }
                }
            })
            .collect();
        // A member's copies include its primaries, so members whose floor is below
        // their primary quota get their ceil first.
        let forced: Vec<bool> = (0..m).map(|i| shares[i].floor() < pq[i]).collect();
        let cq = apportion(&shares, r * S, &domain, S, |&a, &b| {
            forced[b]
                .cmp(&forced[a])
                .then(keeps(&cur_copies, &shares, b).cmp(&keeps(&cur_copies, &shares, a)))
                .then(shares[b].cmp_rem(shares[a]))
                .then(a.cmp(&b))
        });

        Ok(Self {
            ids,
            domain,
            zones_enforced,
            r,
            old_primary,
            old_owners,
            cur_copies,
            pq,
            cq,
        })
    }

    /// Phase 1: one primary per slot, each member exactly at its primary quota.
    fn place_primaries(&self) -> Result<Vec<usize>, PlacementError> {
        let m = self.ids.len();
        let mut primary: Vec<Option<usize>> = vec![None; S];
        let mut deficit = self.pq.clone();
        // Keep current primaries up to quota; over-quota members give up their highest
        // slots, so what moves is a contiguous tail.
        for (slot, old) in primary.iter_mut().zip(&self.old_primary) {
            if let Some(o) = *old {
                if deficit[o] > 0 {
                    *slot = Some(o);
                    deficit[o] -= 1;
                }
            }
        }
        // Promote a current replica (data already there) when it is under quota.
        for (slot, owners) in primary.iter_mut().zip(&self.old_owners) {
            if slot.is_none() {
                if let Some(&o) = owners.iter().find(|&&o| deficit[o] > 0) {
                    *slot = Some(o);
                    deficit[o] -= 1;
                }
            }
        }
        // The rest go to under-quota members, those that must gain copies anyway first;
        // one member at a time so that each receives contiguous runs. Avoid members whose
        // zone already holds a copy of the slot, so that copy can stay.
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by_key(|&i| (Reverse(self.cq[i] as i64 - self.cur_copies[i] as i64), i));
        let mut out = Vec::with_capacity(S);
        for (slot, owners) in primary.iter().zip(&self.old_owners) {
            let chosen = match *slot {
                Some(p) => p,
                None => {
                    let free = |j: usize| !owners.iter().any(|&o| self.domain[o] == self.domain[j]);
                    let pick = order
                        .iter()
                        .copied()
                        .find(|&j| deficit[j] > 0 && free(j))
                        .or_else(|| order.iter().copied().find(|&j| deficit[j] > 0))
                        .ok_or(PlacementError::Infeasible)?;
                    deficit[pick] -= 1;
                    pick
                }
            };
            out.push(chosen);
        }
        Ok(out)
    }

    /// Phase 2: `r - 1` replicas per slot around the fixed primaries.
    fn place_replicas(&self, primary: Vec<usize>) -> Result<Replicas<'_>, PlacementError> {
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
struct Replicas<'a> {
    p: &'a Prepared,
    primary: Vec<usize>,
    reps: Vec<Vec<usize>>,
    /// Replica copies per member, and the target.
    count: Vec<usize>,
    quota: Vec<usize>,
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

/// Handle of an edge in a [`Flow`] graph.
#[derive(Debug, Clone, Copy)]
struct EdgeRef {
    node: usize,
    index: usize,
}

/// Min-cost max-flow on the small class-level graphs of [`Replicas::fill_holes`] (all
/// costs 0, i.e. plain Dinic) and [`Replicas::solve_exact`] (costs 0/1).
struct Flow {
    /// Per node: (to, reverse edge index, residual capacity, cost).
    graph: Vec<Vec<(usize, usize, u64, i64)>>,
    original: Vec<Vec<u64>>,
}

impl Flow {
    fn new(nodes: usize) -> Self {
        Self {
            graph: vec![Vec::new(); nodes],
            original: vec![Vec::new(); nodes],
        }
    }

    fn add_node(&mut self) -> usize {
        self.graph.push(Vec::new());
        self.original.push(Vec::new());
        self.graph.len() - 1
    }

    fn add_edge(&mut self, from: usize, to: usize, cap: u64, cost: i64) -> EdgeRef {
        let index = self.graph[from].len();
        let rev = self.graph[to].len();
        self.graph[from].push((to, rev, cap, cost));
        self.original[from].push(cap);
        self.graph[to].push((from, index, 0, -cost));
        self.original[to].push(0);
        EdgeRef { node: from, index }
    }

    fn flow(&self, e: EdgeRef) -> u64 {
        self.original[e.node][e.index] - self.graph[e.node][e.index].2
    }

    /// Primal-dual: shortest distances by Bellman-Ford, then a blocking flow (Dinic)
    /// over the edges on shortest paths; repeat until the sink is unreachable. Costs
    /// are 0/1 here, so there are few rounds.
    fn run(&mut self, source: usize, sink: usize) -> u64 {
        let n = self.graph.len();
        let mut total = 0;
        loop {
            let mut dist = vec![i64::MAX; n];
            let mut queued = vec![false; n];
            dist[source] = 0;
            let mut queue = std::collections::VecDeque::from([source]);
            while let Some(u) = queue.pop_front() {
                queued[u] = false;
                for &(v, _, cap, cost) in &self.graph[u] {
                    if cap > 0 && dist[u] + cost < dist[v] {
                        dist[v] = dist[u] + cost;
                        if !queued[v] {
                            queued[v] = true;
                            queue.push_back(v);
                        }
                    }
                }
            }
            if dist[sink] == i64::MAX {
                return total;
            }
            let admissible = |dist: &[i64], u: usize, e: &(usize, usize, u64, i64)| {
                e.2 > 0 && dist[u] != i64::MAX && dist[u] + e.3 == dist[e.0]
            };
            loop {
                let mut level = vec![usize::MAX; n];
                level[source] = 0;
                let mut queue = std::collections::VecDeque::from([source]);
                while let Some(u) = queue.pop_front() {
                    for e in &self.graph[u] {
                        if admissible(&dist, u, e) && level[e.0] == usize::MAX {
                            level[e.0] = level[u] + 1;
                            queue.push_back(e.0);
                        }
                    }
                }
                if level[sink] == usize::MAX {
                    break;
                }
                let mut iter = vec![0usize; n];
                loop {
                    let pushed = self.push(source, sink, u64::MAX, &dist, &level, &mut iter);
                    if pushed == 0 {
                        break;
                    }
                    total += pushed;
                }
            }
        }
    }

    fn push(&mut self, u: usize, sink: usize, limit: u64, dist: &[i64], level: &[usize], iter: &mut [usize]) -> u64 {
        if u == sink {
            return limit;
        }
        while iter[u] < self.graph[u].len() {
            let (v, rev, cap, cost) = self.graph[u][iter[u]];
            if cap > 0 && dist[u] + cost == dist[v] && level[v] == level[u] + 1 {
                let pushed = self.push(v, sink, limit.min(cap), dist, level, iter);
                if pushed > 0 {
                    self.graph[u][iter[u]].2 -= pushed;
                    self.graph[v][rev].2 += pushed;
                    return pushed;
                }
            }
            iter[u] += 1;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cluster::topology::moved_slots;
    use proptest::prelude::*;
    use std::collections::HashSet;

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
}
