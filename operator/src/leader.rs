//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one reconciles.
//!
//! The same protocol as client-go's leader election: the holder renews the Lease every
//! retry period; a candidate takes the Lease when it has seen no change to it for the
//! lease duration (measured on its own monotonic clock from the moment it saw the last
//! change, so clock offsets between machines do not matter); every write is a `replace`
//! carrying the `resourceVersion` it read, so two candidates cannot both win. The leader
//! steps down when it has not renewed for the renew deadline, which is shorter than the
//! lease duration: it stops before anyone else may start. On shutdown the leader
//! releases the Lease (no holder), so a standby takes it at its next attempt instead of
//! waiting out the lease duration.
//!
//! The decisions are the pure functions [`decide`] and [`next_spec`]; [`LeaderElector`]
//! is the loop around them. RBAC: `leases` get, create, update in the Lease's namespace.
//!
//! ```no_run
//! # async fn demo(client: kube::Client, config: ringcache_operator::config::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use ringcache_operator::leader::LeaderElector;
//!
//! let settings = config.lease_settings(client.default_namespace())?;
//! let (elector, mut leadership) = LeaderElector::new(client, settings);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let election = tokio::spawn(elector.run(async move {
//!     let _ = stopped.await;
//! }));
//! leadership.until_leader().await?;
//! // ... reconcile while leadership.is_leader(); stop when until_not_leader() returns ...
//! leadership.until_not_leader().await;
//! let _ = stop.send(()); // on SIGTERM too: steps down and releases the Lease
//! election.await??;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Where and how to elect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a standby waits, after the last change it saw, before taking the Lease.
    pub lease_duration: Duration,
    /// How long the leader leads without a successful renewal before stepping down.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

/// What a candidate needs of a Lease's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Current holder; `None` or empty when nobody holds the Lease (never taken, released).
    pub holder: Option<String>,
    /// The holder's announced lease duration.
    pub lease_duration_seconds: Option<i32>,
}

impl From<&LeaseSpec> for LeaseRecord {
    fn from(spec: &LeaseSpec) -> Self {
        LeaseRecord {
            holder: spec.holder_identity.clone(),
            lease_duration_seconds: spec.lease_duration_seconds,
        }
    }
}

/// What to do with the Lease as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, holding it.
    Create,
    /// Nobody holds the Lease: take it.
    Acquire,
    /// `previous` held the Lease but it ran out unrenewed: take it over.
    TakeOver { previous: String },
    /// This replica holds the Lease: renew it.
    Renew,
    /// `holder` holds a live Lease; it runs out in `expires_in` unless renewed.
    Wait { holder: String, expires_in: Duration },
}

/// Decides what `me` does with a Lease that has been unchanged (same resourceVersion) for
/// `unchanged_for` on this replica's clock. `record` is `None` when no Lease exists. The
/// holder's own `leaseDurationSeconds` counts when positive, else `default_duration`.
pub fn decide(record: Option<&LeaseRecord>, me: &str, unchanged_for: Duration, default_duration: Duration) -> Decision {
    let Some(record) = record else {
        return Decision::Create;
    };
    let holder = match record.holder.as_deref() {
        None | Some("") => return Decision::Acquire,
        Some(h) => h,
    };
    if holder == me {
        return Decision::Renew;
    }
    let duration = record
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|&s| s > 0)
        .map_or(default_duration, Duration::from_secs);
    match duration.checked_sub(unchanged_for) {
        Some(left) if !left.is_zero() => Decision::Wait {
            holder: holder.to_owned(),
            expires_in: left,
        },
        _ => Decision::TakeOver {
            previous: holder.to_owned(),
        },
    }
}

/// The spec to write for `decision` (`None` for [`Decision::Wait`]), given the current
/// spec, at time `now`.
pub fn next_spec(
    decision: &Decision,
    current: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    lease_duration: Duration,
) -> Option<LeaseSpec> {
    let seconds = i32::try_from(lease_duration.as_secs()).unwrap_or(i32::MAX).max(1);
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    let taken = |transitions: i32| LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(seconds),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    match decision {
        Decision::Create => Some(taken(0)),
        // A released Lease counts the transition when it is taken, as client-go does.
        Decision::Acquire | Decision::TakeOver { .. } => Some(taken(transitions.saturating_add(1))),
        Decision::Renew => {
            let mut spec = current.cloned().unwrap_or_else(|| taken(transitions));
            spec.holder_identity = Some(me.to_owned());
            spec.lease_duration_seconds = Some(seconds);
            spec.renew_time = Some(MicroTime(now));
            if spec.acquire_time.is_none() {
                spec.acquire_time = Some(MicroTime(now));
            }
            Some(spec)
        }
        Decision::Wait { .. } => None,
    }
}

/// The spec that releases a Lease `me` holds: no holder, so any candidate takes it at once.
pub fn released_spec(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: None,
        renew_time: Some(MicroTime(now)),
        lease_transitions: current.lease_transitions,
        ..current.clone()
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("{action} Lease {namespace}/{name}: {source}")]
    Kube {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} Lease {namespace}/{name}: no answer within {after:?}")]
    Timeout {
        action: &'static str,
        namespace: String,
        name: String,
        after: Duration,
    },
    #[error("the leader elector stopped")]
    Stopped,
}

/// Whether this replica leads, as the elector last decided. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// True while this replica holds the Lease and renews it within the renew deadline;
    /// false once the elector has stopped (returned, panicked or been dropped).
    pub fn is_leader(&self) -> bool {
        self.rx.has_changed().is_ok() && *self.rx.borrow()
    }

    /// A receiver that sees every change (true: leading; false: not, or stepped down).
    /// When the elector stops, `changed()` fails: treat that as not leading.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Waits until this replica leads.
    pub async fn until_leader(&mut self) -> Result<(), LeaderError> {
        // `wait_for` also accepts the last value of an elector that is gone.
        self.rx
            .wait_for(|&l| l)
            .await
            .map(|_| ())
            .map_err(|_| LeaderError::Stopped)?;
        if self.is_leader() {
            Ok(())
        } else {
            Err(LeaderError::Stopped)
        }
    }

    /// Waits until this replica no longer leads (stepped down, or the elector stopped).
    pub async fn until_not_leader(&mut self) {
        // An error means the elector is gone: not leading either.
        let _ = self.rx.wait_for(|&l| !l).await;
    }
}

/// What one attempt found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following { holder: String },
}

/// The election loop for one replica.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    tx: watch::Sender<bool>,
    /// resourceVersion of the Lease last seen, and when it was first seen.
    observed: Option<(String, Instant)>,
    /// When this replica last wrote the Lease as its holder.
    last_renewal: Option<Instant>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("settings", &self.settings)
            .field("leading", &*self.tx.borrow())
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// An elector (not started) and the handle that reports its decisions.
    pub fn new(client: Client, settings: LeaseSettings) -> (LeaderElector, Leadership) {
        let (tx, rx) = watch::channel(false);
        let api = Api::namespaced(client, &settings.namespace);
        let elector = LeaderElector {
            api,
            settings,
            tx,
            observed: None,
            last_renewal: None,
        };
        (elector, Leadership { rx })
    }

    /// Acquires and renews the Lease until `shutdown` completes, then steps down and
    /// releases the Lease if this replica holds it. Stop reconciling before `shutdown`
    /// completes: leadership ends (the [`Leadership`] turns false) before the release.
    /// Errors talking to the apiserver are logged and retried; the result reports only
    /// a failed release.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), LeaderError> {
        let s = &self.settings;
        info!(lease = %format!("{}/{}", s.namespace, s.name), identity = %s.identity, "leader election started");
        tokio::pin!(shutdown);
        loop {
            self.check_renew_deadline();
            let limit = self.attempt_limit();
            // A renewal counts from before it was sent: the standbys see it no earlier.
            let started = Instant::now();
            let attempt = tokio::select! {
                () = &mut shutdown => break,
                r = tokio::time::timeout(limit, self.try_acquire_or_renew()) => r,
            };
            match attempt {
                Ok(Ok(Attempt::Leading)) => {
                    self.last_renewal = Some(started);
                    self.set_leading(true, "acquired or renewed the Lease");
                }
                Ok(Ok(Attempt::Following { holder })) => {
                    debug!(%holder, "the Lease is held by another replica");
                    self.set_leading(false, "another replica holds the Lease");
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "leader election attempt failed");
                    self.check_renew_deadline();
                }
                Err(_) => {
                    warn!(after = ?limit, "leader election attempt timed out");
                    self.check_renew_deadline();
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.next_wait()) => {}
            }
        }
        let was_leading = *self.tx.borrow();
        self.set_leading(false, "shutting down");
        if was_leading {
            let limit = self.settings.renew_deadline;
            match tokio::time::timeout(limit, self.release()).await {
                Ok(r) => r?,
                Err(_) => return Err(self.timeout("releasing", limit)),
            }
        }
        Ok(())
    }

    /// How long one attempt may take: the leader must know by its renew deadline.
    fn attempt_limit(&self) -> Duration {
        let s = &self.settings;
        match self.last_renewal {
            Some(at) if *self.tx.borrow() => s
                .renew_deadline
                .saturating_sub(at.elapsed())
                .max(Duration::from_millis(1)),
            _ => s.renew_deadline,
        }
    }

    /// Time to the next attempt: the retry period, but a leader wakes by its renew
    /// deadline so it steps down on time.
    fn next_wait(&self) -> Duration {
        let s = &self.settings;
        match self.last_renewal {
            Some(at) if *self.tx.borrow() => s.retry_period.min(s.renew_deadline.saturating_sub(at.elapsed())),
            _ => s.retry_period,
        }
    }

    fn check_renew_deadline(&mut self) {
        if !*self.tx.borrow() {
            return;
        }
        let overdue = self
            .last_renewal
            .is_none_or(|at| at.elapsed() >= self.settings.renew_deadline);
        if overdue {
            self.set_leading(false, "could not renew the Lease within the renew deadline");
        }
    }

    fn set_leading(&self, leading: bool, why: &str) {
        let changed = self.tx.send_if_modified(|cur| {
            let changed = *cur != leading;
            *cur = leading;
            changed
        });
        if changed {
            let s = &self.settings;
            if leading {
                info!(identity = %s.identity, why, "became the leader");
            } else {
                warn!(identity = %s.identity, why, "stepped down as the leader");
            }
        }
    }

    fn kube_error(&self, action: &'static str, source: kube::Error) -> LeaderError {
        LeaderError::Kube {
            action,
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            source,
        }
    }

    fn timeout(&self, action: &'static str, after: Duration) -> LeaderError {
        LeaderError::Timeout {
            action,
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            after,
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, LeaderError> {
        let s = self.settings.clone();
        let seen_at = Instant::now();
        let current = self
            .api
            .get_opt(&s.name)
            .await
            .map_err(|e| self.kube_error("reading", e))?;
        let Some(mut lease) = current else {
            let spec = next_spec(&Decision::Create, None, &s.identity, Timestamp::now(), s.lease_duration);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.name.clone()),
                    namespace: Some(s.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec,
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created, Instant::now(), true);
                    Ok(Attempt::Leading)
                }
                // Another candidate created it first; look again next time.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following {
                    holder: "(another candidate)".to_owned(),
                }),
                Err(e) => Err(self.kube_error("creating", e)),
            };
        };
        let unchanged_for = self.observe(&lease, seen_at, false);
        let record = lease.spec.as_ref().map(LeaseRecord::from).unwrap_or_default();
        let decision = decide(Some(&record), &s.identity, unchanged_for, s.lease_duration);
        let Some(spec) = next_spec(
            &decision,
            lease.spec.as_ref(),
            &s.identity,
            Timestamp::now(),
            s.lease_duration,
        ) else {
            let holder = record.holder.unwrap_or_default();
            return Ok(Attempt::Following { holder });
        };
        if let Decision::TakeOver { previous } = &decision {
            info!(%previous, "the Lease ran out unrenewed; taking it over");
        }
        lease.spec = Some(spec);
        // `lease` carries the resourceVersion it was read at: the apiserver refuses the
        // write (409) if anyone wrote in between.
        match self.api.replace(&s.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                self.observe(&written, Instant::now(), true);
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                debug!("lost a race for the Lease");
                Ok(Attempt::Following {
                    holder: "(the replica that wrote first)".to_owned(),
                })
            }
            Err(e) => Err(self.kube_error("updating", e)),
        }
    }

    /// Records the Lease's resourceVersion; returns how long it has been unchanged.
    fn observe(&mut self, lease: &Lease, at: Instant, force: bool) -> Duration {
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        match &self.observed {
            Some((seen, since)) if *seen == rv && !force => at.saturating_duration_since(*since),
            previous => {
                // A process that has just started counts a held Lease as renewed one
                // retry period from now: a standby that watched the holder all along
                // takes over first when the holder dies, not the holder's own container
                // restarted in place a moment later (both would otherwise race).
                let since = if previous.is_none() && !force {
                    at + self.settings.retry_period
                } else {
                    at
                };
                self.observed = Some((rv, since));
                Duration::ZERO
            }
        }
    }

    async fn release(&mut self) -> Result<(), LeaderError> {
        let s = self.settings.clone();
        let Some(mut lease) = self
            .api
            .get_opt(&s.name)
            .await
            .map_err(|e| self.kube_error("reading", e))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_ref() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(released_spec(spec, Timestamp::now()));
        match self.api.replace(&s.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                info!(identity = %s.identity, "released the Lease");
                Ok(())
            }
            // Someone wrote in between: then it is no longer ours to release.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(self.kube_error("releasing", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held_by(holder: &str, seconds: Option<i32>) -> LeaseRecord {
        LeaseRecord {
            holder: Some(holder.to_owned()),
            lease_duration_seconds: seconds,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", Duration::ZERO, D), Decision::Create);
    }

    #[test]
    fn a_free_lease_is_acquired_at_once() {
        for holder in [None, Some(String::new())] {
            let r = LeaseRecord {
                holder,
                lease_duration_seconds: Some(1),
            };
            assert_eq!(decide(Some(&r), "a", Duration::ZERO, D), Decision::Acquire);
        }
    }

    #[test]
    fn the_holder_renews() {
        assert_eq!(
            decide(Some(&held_by("a", Some(15))), "a", secs(100), D),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_lease_is_waited_for_until_it_runs_out() {
        let r = held_by("b", Some(15));
        assert_eq!(
            decide(Some(&r), "a", secs(4), D),
            Decision::Wait {
                holder: "b".into(),
                expires_in: secs(11)
            }
        );
        assert_eq!(
            decide(Some(&r), "a", Duration::from_millis(14_999), D),
            Decision::Wait {
                holder: "b".into(),
                expires_in: Duration::from_millis(1)
            }
        );
        for unchanged in [secs(15), secs(16), secs(3600)] {
            assert_eq!(
                decide(Some(&r), "a", unchanged, D),
                Decision::TakeOver { previous: "b".into() }
            );
        }
    }

    #[test]
    fn the_holders_own_duration_counts() {
        let r = held_by("b", Some(40));
        assert!(matches!(decide(Some(&r), "a", secs(20), D), Decision::Wait { .. }));
        assert!(matches!(decide(Some(&r), "a", secs(40), D), Decision::TakeOver { .. }));
        // Missing, zero or negative: ours.
        for s in [None, Some(0), Some(-5)] {
            let r = held_by("b", s);
            assert!(
                matches!(decide(Some(&r), "a", secs(14), D), Decision::Wait { .. }),
                "{s:?}"
            );
            assert!(
                matches!(decide(Some(&r), "a", secs(15), D), Decision::TakeOver { .. }),
                "{s:?}"
            );
        }
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("timestamp")
    }

    #[test]
    fn specs_written_for_each_decision() {
        let created = next_spec(&Decision::Create, None, "a", ts(100), D).expect("spec");
        assert_eq!(created.holder_identity.as_deref(), Some("a"));
        assert_eq!(created.lease_duration_seconds, Some(15));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.acquire_time, Some(MicroTime(ts(100))));
        assert_eq!(created.renew_time, Some(MicroTime(ts(100))));

        let renewed = next_spec(&Decision::Renew, Some(&created), "a", ts(102), D).expect("spec");
        assert_eq!(
            renewed.acquire_time,
            Some(MicroTime(ts(100))),
            "renewal keeps acquireTime"
        );
        assert_eq!(renewed.renew_time, Some(MicroTime(ts(102))));
        assert_eq!(renewed.lease_transitions, Some(0));

        let taken = next_spec(
            &Decision::TakeOver { previous: "a".into() },
            Some(&renewed),
            "b",
            ts(130),
            D,
        )
        .expect("spec");
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(ts(130))));

        let released = released_spec(&taken, ts(140));
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_transitions, Some(1));
        assert_eq!(released.lease_duration_seconds, Some(1));
        let r = LeaseRecord::from(&released);
        assert_eq!(decide(Some(&r), "a", Duration::ZERO, D), Decision::Acquire);

        let acquired = next_spec(&Decision::Acquire, Some(&released), "a", ts(141), D).expect("spec");
        assert_eq!(acquired.holder_identity.as_deref(), Some("a"));
        assert_eq!(acquired.lease_transitions, Some(2));

        let wait = Decision::Wait {
            holder: "b".into(),
            expires_in: secs(1),
        };
        assert_eq!(next_spec(&wait, Some(&taken), "a", ts(131), D), None);
    }

    #[test]
    fn leadership_ends_when_the_elector_is_gone() {
        let (tx, rx) = watch::channel(false);
        let leadership = Leadership { rx };
        assert!(!leadership.is_leader());
        tx.send_replace(true);
        assert!(leadership.is_leader());
        drop(tx);
        assert!(
            !leadership.is_leader(),
            "a dropped elector must not leave a leader behind"
        );
    }

    #[test]
    fn a_standby_never_takes_over_before_the_leader_steps_down() {
        // The leader renews at t=0 and then can no longer reach the apiserver; it steps
        // down at the renew deadline. A standby that saw the renewal at any t >= 0 takes
        // over no earlier than t + lease duration > renew deadline.
        let renew_deadline = secs(10);
        let r = held_by("leader", Some(15));
        for seen_after_renewal in 0..5u64 {
            for now in 0..=30u64 {
                let Some(unchanged) = now.checked_sub(seen_after_renewal) else {
                    continue;
                };
                if let Decision::TakeOver { .. } = decide(Some(&r), "standby", secs(unchanged), D) {
                    assert!(secs(now) > renew_deadline, "took over at {now}s");
                }
            }
        }
    }
}
