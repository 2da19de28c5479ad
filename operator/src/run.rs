//! `ringcache-operator run`: the HTTP port, leader election, and the CacheCluster
//! controller while this replica leads.
//!
//! Every replica serves `/metrics`, `/healthz` and `/readyz` and competes for the
//! Lease; the leader runs the controller. A leader that loses the Lease (it could not
//! renew in time) stops reconciling and exits with an error, so it restarts as a
//! standby and never acts on a stale view next to a new leader. SIGTERM stops the
//! controller, then releases the Lease so a standby takes over at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::Client;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
use crate::crd::CacheCluster;
use crate::http::{self, Site};
use crate::leader::{LeaderElector, LeaderError};
use crate::metrics::Metrics;
use crate::reconcile::{self, Context};

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("installing the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("leader election: {0}")]
    Leader(#[source] Box<LeaderError>),
    #[error("lost the leader Lease (could not renew it in time); exiting so a fresh process rejoins as a standby")]
    LostLeadership,
}

/// Parses `k=v,k=v` label selectors (the operator pods' labels).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    s.split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').ok_or_else(|| ConfigError::Labels(kv.to_string()))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Eight random hex digits, new for every process.
fn process_suffix() -> String {
    use rand::RngCore;
    format!("{:08x}", rand::rngs::OsRng.next_u32())
}

/// Waits for SIGTERM or SIGINT, then flips `stop`.
fn spawn_signals(stop: watch::Sender<bool>) -> Result<(), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
        let _ = stop.send(true);
    });
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Runs the operator until SIGTERM/SIGINT (or until it loses the Lease: an error).
pub async fn run(config: Config) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let mut settings = config.lease_settings(client.default_namespace())?;
    let pod = settings.identity.clone();
    // One identity per process (as client-go does): a leader restarted in place under
    // the same pod name must not take itself for the holder of the Lease it lost.
    settings.identity = format!("{pod}_{}", process_suffix());
    let network_policy = if config.network_policy {
        Some(parse_labels(&config.operator_selector)?)
    } else {
        None
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    spawn_signals(stop_tx.clone())?;

    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "ringcache-operator".into(),
                instance: Some(pod),
            },
        ),
        metrics: metrics.clone(),
        progress_deadline_seconds: i64::from(config.progress_deadline_seconds),
        network_policy,
        samples: Mutex::new(Default::default()),
        clusters: Mutex::new(None),
        monitor: Arc::new(crate::reconcile::monitor::Monitor::default()),
    });

    let addr = SocketAddr::new(config.bind, config.http_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })?;
    let metrics_ctx = ctx.clone();
    let site = Arc::new(Site {
        ready: AtomicBool::new(false),
        metrics: Box::new(move || {
            let store = metrics_ctx.clusters.lock().clone();
            metrics_ctx.metrics.render(|ns, name| {
                store
                    .as_ref()
                    .is_some_and(|s| s.get(&ObjectRef::<CacheCluster>::new(name).within(ns)).is_some())
            })
        }),
    });
    tokio::spawn(http::serve(listener, site.clone()));
    info!(%addr, "serving /metrics, /healthz, /readyz");
    match client.apiserver_version().await {
        Ok(v) => info!(version = %v.git_version, "reached the Kubernetes API"),
        Err(e) => warn!(error = %e, "the Kubernetes API did not answer /version yet"),
    }
    site.ready.store(true, Ordering::Relaxed);

    let (elector, mut leadership) = LeaderElector::new(client, settings);
    let election = tokio::spawn(elector.run(stopped(stop_rx.clone())));
    tokio::select! {
        r = leadership.until_leader() => r.map_err(|e| RunError::Leader(Box::new(e)))?,
        () = stopped(stop_rx.clone()) => {
            let _ = election.await;
            return Ok(());
        }
    }
    info!("leading: reconciling CacheClusters");
    // The controller stops on SIGTERM or when leadership ends.
    let lost = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = oneshot::channel::<()>();
    {
        let lost = lost.clone();
        let mut lead = leadership.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stopped(stop) => {}
                () = lead.until_not_leader() => lost.store(true, Ordering::Relaxed),
            }
            let _ = done_tx.send(());
        });
    }
    reconcile::run_controller(ctx, config.namespace.as_deref(), async move {
        let _ = done_rx.await;
    })
    .await;
    // Step down (releasing the Lease if still held) before exiting.
    let _ = stop_tx.send(true);
    match election.await {
        Ok(r) => r.map_err(|e| RunError::Leader(Box::new(e)))?,
        Err(e) => warn!(error = %e, "the leader elector task failed"),
    }
    if lost.load(Ordering::Relaxed) {
        return Err(RunError::LostLeadership);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_parse() {
        let l =
            parse_labels("app.kubernetes.io/name=ringcache, app.kubernetes.io/component=operator").unwrap_or_default();
        assert_eq!(l.len(), 2);
        assert_eq!(l["app.kubernetes.io/component"], "operator");
        assert!(parse_labels("novalue").is_err());
        assert_eq!(parse_labels("").map(|l| l.len()).ok(), Some(0));
    }
}
