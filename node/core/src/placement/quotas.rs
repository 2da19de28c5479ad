//! Phase 0: validating the input and computing the quotas (largest-remainder
//! apportionment of primaries, water-filled copies), the targets the next phases meet.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::{Member, PlacementError, PlacementInput, S};

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
pub(super) struct Prepared {
    pub(super) ids: Vec<String>,
    /// Failure domain of each member: its zone when zones are enforced (a zone-less
    /// member is its own domain), else the member itself.
    pub(super) domain: Vec<usize>,
    pub(super) zones_enforced: bool,
    /// Effective replication factor.
    pub(super) r: usize,
    /// Per slot: current primary, if still a member.
    pub(super) old_primary: Vec<Option<usize>>,
    /// Per slot: current owners that are still members, deduplicated, in order.
    pub(super) old_owners: Vec<Vec<usize>>,
    pub(super) cur_copies: Vec<usize>,
    /// Primary and copy quotas.
    pub(super) pq: Vec<usize>,
    pub(super) cq: Vec<usize>,
}

impl Prepared {
    pub(super) fn new(input: &PlacementInput<'_>) -> Result<Self, PlacementError> {
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
}
