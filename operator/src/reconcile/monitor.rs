//! Heartbeats and health checks, between reconciles: every [`PERIOD`] the leader sends
//! `Heartbeat` to every member of every cluster's topology, granting a write lease of
//! `detectionSeconds` from the send time, and records which members answer. A member
//! that does not answer gets only `Health` probes from then on (no lease) until it
//! answers again; after `detectionSeconds` of that it is lost (the plan's failover),
//! and every lease it could hold, the last one sent before its first miss included,
//! has run out: it cannot accept a write any more. A member that starts or stops
//! failing wakes its cluster's reconcile at once.
//!
//! The cost: when no operator leads (a leader change takes the Lease's duration), the
//! leases run out after `detectionSeconds` and primaries refuse writes (`-TRYAGAIN`)
//! until the new leader's first heartbeat.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kube::runtime::reflector::{ObjectRef, Store};
use parking_lot::Mutex;
use ringcache_proto::auth;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::crd::CacheCluster;
use crate::nodes;

/// How often every member is checked.
pub const PERIOD: Duration = Duration::from_millis(500);
/// How long one heartbeat may take.
const CALL_TIMEOUT: Duration = Duration::from_millis(450);

/// What to check for one cluster (set by its reconcile).
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub token: String,
    /// The cluster's epoch (a node refuses a lease for an older one).
    pub epoch: u64,
    pub lease_ms: u64,
    /// (node id, control address) of every member of the topology.
    pub members: Vec<(String, String)>,
}

/// One member's recent health.
#[derive(Debug, Clone, Copy, Default)]
struct MemberHealth {
    failing_since: Option<Instant>,
}

type ClusterKey = (String, String);

/// The monitor's shared state.
#[derive(Default)]
pub struct Monitor {
    targets: Mutex<HashMap<ClusterKey, Targets>>,
    /// Per cluster, per member id: kept only for the members of the cluster's current
    /// targets (a member dropped from the topology is forgotten, so a pod that comes
    /// back under its name starts with a clean record).
    health: Mutex<HashMap<ClusterKey, HashMap<String, MemberHealth>>>,
    /// Channels by (control address, token): a pod IP may come back in another
    /// cluster, with another token.
    clients: Mutex<HashMap<(String, String), auth::Client>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

impl Monitor {
    /// Sets (or, with `None`, stops) what to check for cluster `ns/name`.
    pub fn set(&self, ns: &str, name: &str, targets: Option<Targets>) {
        let key = (ns.to_string(), name.to_string());
        let mut all = self.targets.lock();
        let mut health = self.health.lock();
        match targets {
            Some(t) => {
                if let Some(h) = health.get_mut(&key) {
                    h.retain(|id, _| t.members.iter().any(|(m, _)| m == id));
                }
                all.insert(key, t);
            }
            None => {
                all.remove(&key);
                health.remove(&key);
            }
        }
    }

    /// Forgets the clusters for which `exists(namespace, name)` is false (deleted
    /// CacheClusters: their pods' addresses may come back in another cluster).
    pub fn retain(&self, exists: impl Fn(&str, &str) -> bool) {
        let mut all = self.targets.lock();
        let mut health = self.health.lock();
        all.retain(|(ns, name), _| exists(ns, name));
        health.retain(|key, _| all.contains_key(key));
    }

    /// Seconds each member of cluster `ns/name` has been failing, for the members that are.
    pub fn failing(&self, ns: &str, name: &str) -> std::collections::BTreeMap<String, i64> {
        let key = (ns.to_string(), name.to_string());
        self.health
            .lock()
            .get(&key)
            .map(|members| {
                members
                    .iter()
                    .filter_map(|(id, h)| {
                        let since = h.failing_since?;
                        Some((id.clone(), i64::try_from(since.elapsed().as_secs()).unwrap_or(i64::MAX)))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn client(&self, addr: &str, token: &str) -> Result<auth::Client, nodes::NodeError> {
        let key = (addr.to_string(), token.to_string());
        if let Some(c) = self.clients.lock().get(&key) {
            return Ok(c.clone());
        }
        let c = nodes::connect(addr, token).await?;
        self.clients.lock().insert(key, c.clone());
        Ok(c)
    }

    /// One round: every member of every cluster, concurrently. Returns the clusters
    /// whose members' health changed.
    ///
    /// A member that is failing gets `Health` probes, which grant nothing, until it
    /// answers again: a heartbeat it never answered may still be read later (a stopped
    /// process resumes with its socket buffers full) and grants a lease until its send
    /// time + `detectionSeconds`. With no heartbeat sent after the first unanswered
    /// one, every lease it can hold has ended by the time it counts as lost, so the
    /// promotion never overlaps a lease of the old primary.
    async fn round(&self) -> Vec<ClusterKey> {
        let targets: Vec<(ClusterKey, Targets)> = self
            .targets
            .lock()
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        let failing: std::collections::HashSet<(ClusterKey, String)> = self
            .health
            .lock()
            .iter()
            .flat_map(|(key, members)| {
                members
                    .iter()
                    .filter(|(_, h)| h.failing_since.is_some())
                    .map(move |(id, _)| (key.clone(), id.clone()))
            })
            .collect();
        let failing = &failing;
        let calls = targets.iter().flat_map(|(key, t)| {
            t.members.iter().map(move |(id, addr)| async move {
                let probe_only = failing.contains(&(key.clone(), id.clone()));
                let ok = tokio::time::timeout(CALL_TIMEOUT, async {
                    let mut c = self.client(addr, &t.token).await?;
                    if probe_only {
                        nodes::probe(&mut c, addr).await
                    } else {
                        nodes::heartbeat(&mut c, addr, t.epoch, t.lease_ms).await
                    }
                })
                .await;
                let ok = match ok {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        debug!(member = %id, error = %e, "heartbeat failed");
                        // A broken channel is rebuilt on the next round.
                        self.clients.lock().remove(&(addr.clone(), t.token.clone()));
                        false
                    }
                    Err(_) => false,
                };
                (key.clone(), id.clone(), ok)
            })
        });
        let results = join_all(calls).await;
        let now = Instant::now();
        let mut changed = Vec::new();
        let targets = self.targets.lock();
        let mut health = self.health.lock();
        for (key, id, ok) in results {
            // The cluster's members changed during the round: drop a stale answer.
            let current = targets
                .get(&key)
                .is_some_and(|t| t.members.iter().any(|(m, _)| *m == id));
            if !current {
                continue;
            }
            let h = health.entry(key.clone()).or_default().entry(id.clone()).or_default();
            let was = h.failing_since;
            h.failing_since = match (ok, was) {
                (true, _) => None,
                (false, Some(since)) => Some(since),
                (false, None) => Some(now),
            };
            if was.is_some() != h.failing_since.is_some() {
                if ok {
                    info!(cluster = %key.1, member = %id, "member answers again");
                } else {
                    info!(cluster = %key.1, member = %id, "member stopped answering heartbeats");
                }
                changed.push(key.clone());
            }
        }
        changed
    }
}

/// Runs rounds forever; wakes the reconcile of clusters whose members' health changed,
/// and of clusters with a failing member once a second (so a loss is noticed when it
/// reaches the detection time). Clusters gone from `clusters` (the controller's cache)
/// are forgotten once it holds any cluster.
pub async fn run(
    monitor: Arc<Monitor>,
    clusters: Store<CacheCluster>,
    wake: mpsc::UnboundedSender<ObjectRef<CacheCluster>>,
) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds: u64 = 0;
    loop {
        tick.tick().await;
        rounds += 1;
        // An empty cache may not be filled yet (the controller's first list): keep
        // everything then. (`Store::wait_until_ready` never resolved on the
        // controller's store here.)
        if !clusters.is_empty() {
            monitor.retain(|ns, name| clusters.get(&ObjectRef::new(name).within(ns)).is_some());
        }
        let mut wake_up = monitor.round().await;
        if rounds.is_multiple_of(2) {
            let failing: Vec<ClusterKey> = {
                let health = monitor.health.lock();
                health
                    .iter()
                    .filter(|(_, members)| members.values().any(|h| h.failing_since.is_some()))
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            wake_up.extend(failing);
        }
        wake_up.sort();
        wake_up.dedup();
        for (ns, name) in wake_up {
            if wake.send(ObjectRef::new(&name).within(&ns)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(members: &[&str]) -> Targets {
        Targets {
            token: "t".into(),
            epoch: 1,
            lease_ms: 2000,
            members: members.iter().map(|m| (m.to_string(), format!("{m}:7379"))).collect(),
        }
    }

    fn fail(m: &Monitor, ns: &str, name: &str, id: &str) {
        m.health.lock().entry((ns.into(), name.into())).or_default().insert(
            id.into(),
            MemberHealth {
                failing_since: Some(Instant::now()),
            },
        );
    }

    #[test]
    fn a_member_dropped_from_the_topology_is_forgotten() {
        // A pod restarted by a rolling update failed heartbeats while it was down; the
        // failover then dropped it. When it comes back under its name it must not still
        // count as failing, or it is never desired again.
        let m = Monitor::default();
        m.set("ns", "c", Some(targets(&["c-0", "c-1", "c-2"])));
        fail(&m, "ns", "c", "c-2");
        assert!(m.failing("ns", "c").contains_key("c-2"));
        m.set("ns", "c", Some(targets(&["c-0", "c-1"])));
        assert!(m.failing("ns", "c").is_empty());
    }

    #[test]
    fn clusters_in_one_namespace_are_kept_apart() {
        let m = Monitor::default();
        m.set("ns", "a", Some(targets(&["x-0"])));
        m.set("ns", "b", Some(targets(&["x-0"])));
        fail(&m, "ns", "a", "x-0");
        assert!(m.failing("ns", "a").contains_key("x-0"));
        assert!(m.failing("ns", "b").is_empty());
        m.set("ns", "a", None);
        assert!(m.failing("ns", "a").is_empty());
    }

    #[test]
    fn a_deleted_cluster_is_forgotten() {
        let m = Monitor::default();
        m.set("ns", "gone", Some(targets(&["gone-0"])));
        m.set("ns", "kept", Some(targets(&["kept-0"])));
        fail(&m, "ns", "gone", "gone-0");
        m.retain(|_, name| name == "kept");
        assert!(m.failing("ns", "gone").is_empty());
        let left: Vec<_> = m.targets.lock().keys().cloned().collect();
        assert_eq!(left, vec![("ns".to_string(), "kept".to_string())]);
    }
}
