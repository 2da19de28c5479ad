//! Phase 1: one primary per slot, each member exactly at its primary quota, moving as
//! few primaries as the quotas allow.

use std::cmp::Reverse;

use super::quotas::Prepared;
use super::{PlacementError, S};

impl Prepared {
    /// Phase 1: one primary per slot, each member exactly at its primary quota.
    pub(super) fn place_primaries(&self) -> Result<Vec<usize>, PlacementError> {
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
}
