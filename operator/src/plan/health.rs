//! What the status says: which members serve, how many slots are covered, the
//! `Ready` / `Progressing` / `Degraded` conditions with their reasons, and the phase.
//!
//! A member *serves* when its pod is Ready, and its node runs the process the topology
//! lists and has the topology's epoch. A slot is *covered* when its primary serves; it
//! is *fully replicated* when `min(replicationFactor, members)` of its owners serve.
//! `Ready` is true when there is a topology, every wanted pod is in it, every slot is
//! covered and fully replicated.

use ringcache_core::slot::SLOT_COUNT;
use ringcache_core::topology::Topology;

use super::observed::{NodeObs, Observed};
use super::rebalance::Rebalance;
use super::{cluster_topology, Action, ApplyReason};

/// Lifecycle phase (`status.phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Bootstrapping,
    Running,
    Rebalancing,
    Degraded,
    Paused,
}

/// One condition: its type, status, reason (CamelCase) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// One member as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberHealth {
    pub pod: String,
    pub node_id: Option<String>,
    pub instance: Option<String>,
    pub zone: Option<String>,
    pub primary_slots: usize,
    pub replica_slots: usize,
    /// Serves its slots (see the module docs).
    pub serving: bool,
    pub used_memory: u64,
    pub hit_rate: Option<f64>,
    /// The node's hottest keys (text, estimated commands per second), hottest first,
    /// at most [`HOT_KEYS_SHOWN`].
    pub hot_keys: Vec<(String, u64)>,
}

/// Hot keys shown per member: the status is for reading, `RINGCACHE.HOTKEYS` on the
/// node has the full list.
pub const HOT_KEYS_SHOWN: usize = 3;

/// Longest key text shown (longer keys are cut, with "…").
const HOT_KEY_TEXT: usize = 100;

/// A key as status text: lossy UTF-8, cut to [`HOT_KEY_TEXT`] characters.
fn key_text(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    match text.char_indices().nth(HOT_KEY_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// The whole health of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub phase: Phase,
    pub ready: bool,
    pub epoch: u64,
    pub slots_covered: usize,
    pub ready_replicas: usize,
    pub members: Vec<MemberHealth>,
    /// Hits / reads over the last window, all members together.
    pub hit_rate: Option<f64>,
    /// `Ready`, `Progressing`, `Degraded`, in that order.
    pub conditions: Vec<Condition>,
}

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// The health of the cluster `o` describes, given the action just planned, the
/// rebalance in progress and why the plan waits (if it does).
pub fn assess(o: &Observed, action: &Action, rebalance: Option<&Rebalance>, waiting: Option<&str>) -> Health {
    let topology = cluster_topology(o);
    let serving: Vec<&str> = o
        .pods
        .iter()
        .filter(|p| p.ready)
        .filter(|p| match (topology, p.status()) {
            (Some(t), Some(s)) => s.epoch == t.epoch && t.node(&p.name).is_some_and(|n| n.instance == s.instance),
            _ => false,
        })
        .map(|p| p.name.as_str())
        .collect();
    let (covered, replicated) = topology.map_or((0, 0), |t| coverage(t, &serving));
    let members = o
        .pods
        .iter()
        .map(|p| {
            let (primary_slots, replica_slots) = topology.map_or((0, 0), |t| {
                let held = t.slots_of(&p.name);
                let count = |r: &[ringcache_core::topology::SlotRange]| r.iter().map(|r| r.len()).sum();
                (count(&held.primary), count(&held.replica))
            });
            let status = p.status();
            MemberHealth {
                pod: p.name.clone(),
                node_id: status.map(|s| s.node_id.clone()),
                instance: status.map(|s| s.instance.clone()),
                zone: p.zone.clone(),
                primary_slots,
                replica_slots,
                serving: serving.contains(&p.name.as_str()),
                used_memory: status.map_or(0, |s| s.used_memory),
                hit_rate: p.window.and_then(rate),
                hot_keys: status.map_or_else(Vec::new, |s| {
                    s.hot_keys
                        .iter()
                        .take(HOT_KEYS_SHOWN)
                        .map(|h| (key_text(&h.key), h.ops_per_sec))
                        .collect()
                }),
            }
        })
        .collect();
    let window = o
        .pods
        .iter()
        .filter_map(|p| p.window)
        .fold((0, 0), |(h, m), (dh, dm)| (h + dh, m + dm));
    let wanted_in_topology = topology.is_some_and(|t| o.wanted().all(|p| t.node(&p.name).is_some()));
    let all_members_serve = topology.is_some_and(|t| t.nodes.iter().all(|n| serving.contains(&n.id.as_str())));
    let ready = topology.is_some()
        && wanted_in_topology
        && all_members_serve
        && covered == SLOT_COUNT
        && replicated == SLOT_COUNT
        && !o.paused;
    let conditions = conditions(o, topology, action, ready, covered, &serving, rebalance, waiting);
    let rebalancing = rebalance.is_some() || matches!(action, Action::Replan { .. } | Action::Finish { .. });
    let phase = if o.paused {
        Phase::Paused
    } else if matches!(action, Action::Promote { .. }) {
        Phase::Degraded
    } else if rebalancing && covered == SLOT_COUNT {
        Phase::Rebalancing
    } else if ready {
        Phase::Running
    } else if matches!(
        action,
        Action::ApplyTopology {
            why: ApplyReason::Bootstrap,
            ..
        }
    ) {
        Phase::Bootstrapping
    } else if topology.is_none() && o.missing_secret.is_none() && !matches!(action, Action::Blocked { .. }) {
        Phase::Pending
    } else {
        Phase::Degraded
    };
    Health {
        phase,
        ready,
        epoch: topology.map_or(o.status_epoch, |t| t.epoch),
        slots_covered: covered,
        ready_replicas: o.pods.iter().filter(|p| p.ready).count(),
        members,
        hit_rate: rate(window),
        conditions,
    }
}

/// hits / (hits + misses), when anything was read.
pub fn rate((hits, misses): (u64, u64)) -> Option<f64> {
    let all = hits + misses;
    (all > 0).then(|| hits as f64 / all as f64)
}

/// (slots whose primary serves, slots with `min(R, members)` serving owners), where R
/// is the number of copies the topology gives the slot.
fn coverage(t: &Topology, serving: &[&str]) -> (usize, usize) {
    let mut covered = 0;
    let mut replicated = 0;
    for a in &t.slots {
        let n = a.range.len();
        if a.owners.first().is_some_and(|p| serving.contains(&p.as_str())) {
            covered += n;
        }
        if a.owners.iter().all(|o| serving.contains(&o.as_str())) {
            replicated += n;
        }
    }
    (covered, replicated)
}

#[allow(clippy::too_many_arguments)]
fn conditions(
    o: &Observed,
    topology: Option<&Topology>,
    action: &Action,
    ready: bool,
    covered: usize,
    serving: &[&str],
    rebalance: Option<&Rebalance>,
    waiting: Option<&str>,
) -> Vec<Condition> {
    let not_ready: Vec<_> = o.wanted().filter(|p| !p.ready).collect();
    let overdue: Vec<String> = not_ready
        .iter()
        .filter(|p| o.now - p.created > o.progress_deadline_seconds)
        .map(|p| match &p.not_ready_reason {
            Some(r) => format!("{} ({r})", p.name),
            None => p.name.clone(),
        })
        .collect();
    let missing_pods = o.replicas.saturating_sub(o.wanted().count());
    let unreachable: Vec<String> = o
        .pods
        .iter()
        .filter_map(|p| match &p.node {
            NodeObs::Unreachable(e) => Some(format!("{}: {e}", p.name)),
            _ => None,
        })
        .collect();

    let ready_condition = if ready {
        cond(
            READY,
            true,
            "AllSlotsServed",
            format!("all {SLOT_COUNT} slots served with their copies"),
        )
    } else if o.paused {
        cond(
            READY,
            false,
            "Paused",
            "spec.paused is true: the operator changes nothing".into(),
        )
    } else if topology.is_none() {
        cond(READY, false, "NoTopology", "the slots are not placed yet".into())
    } else {
        cond(
            READY,
            false,
            "NotAllSlotsServed",
            format!(
                "{covered} of {SLOT_COUNT} slots have a serving primary; {} of {} members serve",
                serving.len(),
                topology.map_or(0, |t| t.nodes.len())
            ),
        )
    };

    let progressing = if o.paused {
        cond(PROGRESSING, false, "Paused", "spec.paused is true".into())
    } else if !overdue.is_empty() {
        cond(
            PROGRESSING,
            false,
            "ProgressDeadlineExceeded",
            format!(
                "pods not Ready after {} s: {}",
                o.progress_deadline_seconds,
                overdue.join(", ")
            ),
        )
    } else if let Action::Promote { lost, promoted, .. } = action {
        cond(
            PROGRESSING,
            true,
            "Failover",
            format!(
                "promoting {} for the slots of {}",
                promoted.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", "),
                lost.join(", ")
            ),
        )
    } else if let Some(r) = rebalance {
        let progress = r.plan().map(|p| r.progress(&p)).unwrap_or_default();
        let held = r.held;
        let mut message = format!("{} {}: {progress}", r.reason.as_str(), r.id);
        if let Some(w) = waiting {
            message.push_str(&format!("; {w}"));
        }
        if held {
            cond(PROGRESSING, false, "StageHeld", message)
        } else {
            cond(PROGRESSING, true, "Rebalancing", message)
        }
    } else if let Action::RestartPod { pod } = action {
        cond(
            PROGRESSING,
            true,
            "RollingUpdate",
            format!("restarting {pod} on the new pod template"),
        )
    } else if let Action::Stage { calls, first, .. } = action.clone() {
        // A stage without handover calls is a rolling update handing a pod's primaries over.
        if calls.is_empty() {
            cond(
                PROGRESSING,
                true,
                "RollingUpdate",
                format!("handing {}'s primaries to their replicas", first.join(", ")),
            )
        } else {
            cond(PROGRESSING, true, "Rebalancing", "flipping a stage".into())
        }
    } else if let Action::Replan { .. } = action {
        cond(
            PROGRESSING,
            true,
            "Replanning",
            "the desired members changed: planning again".into(),
        )
    } else if let Action::ApplyTopology { why, to, topology } = action {
        cond(
            PROGRESSING,
            true,
            why.as_str(),
            format!("applying epoch {} to {}", topology.epoch, to.join(", ")),
        )
    } else if missing_pods > 0 || !not_ready.is_empty() {
        cond(
            PROGRESSING,
            true,
            "PodsStarting",
            format!(
                "{} of {} pods Ready",
                o.wanted().filter(|p| p.ready).count(),
                o.replicas
            ),
        )
    } else if ready {
        cond(PROGRESSING, false, "Stable", "nothing to change".into())
    } else {
        cond(PROGRESSING, false, "Waiting", "waiting for the nodes to serve".into())
    };

    let degraded = if let Some(secret) = &o.missing_secret {
        cond(
            DEGRADED,
            true,
            "SecretMissing",
            format!("Secret {secret} does not exist"),
        )
    } else if let Action::Blocked { reason, message } = action {
        cond(DEGRADED, true, reason, message.clone())
    } else if let Action::Promote { lost, .. } = action {
        cond(DEGRADED, true, "MembersLost", format!("lost: {}", lost.join(", ")))
    } else if !overdue.is_empty() {
        cond(
            DEGRADED,
            true,
            "PodsNotReady",
            format!("pods not Ready: {}", overdue.join(", ")),
        )
    } else if !unreachable.is_empty() {
        cond(
            DEGRADED,
            true,
            "NodeUnreachable",
            format!("control port: {}", unreachable.join("; ")),
        )
    } else if topology.is_some() && covered < SLOT_COUNT {
        cond(
            DEGRADED,
            true,
            "SlotsUncovered",
            format!("{} slots have no serving primary", SLOT_COUNT - covered),
        )
    } else {
        cond(DEGRADED, false, "AsExpected", "no fault seen".into())
    };
    vec![ready_condition, progressing, degraded]
}

fn cond(type_: &'static str, status: bool, reason: &'static str, message: String) -> Condition {
    Condition {
        type_,
        status,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_key_text_is_lossy_and_cut() {
        assert_eq!(key_text(b"feed:home"), "feed:home");
        assert_eq!(key_text(b"a\xffb"), "a\u{fffd}b");
        let long = "k".repeat(150);
        let shown = key_text(long.as_bytes());
        assert_eq!(shown.chars().count(), HOT_KEY_TEXT + 1);
        assert!(shown.ends_with('…'));
    }
}
