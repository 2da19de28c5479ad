//! Starting and stopping a whole node: store, worker threads, active expiry, admin
//! port. Used by `main` and by tests that run nodes in-process.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::access::Access;
use crate::cluster::ClusterState;
use crate::config::{Config, ReplicaPort};
use crate::hotkeys::HotKeys;
use crate::resp::Limits;
use crate::server::{self, ServerError};
use crate::state::ServerState;
use crate::store::{expiry, Store};
use ringcache_proto::auth::RequireToken;

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot listen on admin address {addr}: {source}")]
    Admin { addr: SocketAddr, source: std::io::Error },
    #[error("cannot listen on control address {addr}: {source}")]
    Control { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    #[error("--control-token (RINGCACHE_CONTROL_TOKEN) is required with --cluster-enabled: the control port must obey only whoever holds it")]
    NoControlToken,
    #[error("--control-token (RINGCACHE_CONTROL_TOKEN): {0}")]
    BadControlToken(#[from] ringcache_proto::auth::InvalidToken),
}

/// A running node.
pub struct NodeHandle {
    pub resp_addr: SocketAddr,
    /// The replica port (`READONLY` implied), unless it is off.
    pub replica_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// The proxy port for cluster-unaware clients.
    pub proxy_addr: SocketAddr,
    /// The gRPC control listener.
    pub control_addr: SocketAddr,
    pub store: Arc<Store>,
    pub state: Arc<ServerState>,
    shutdown: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("resp_addr", &self.resp_addr)
            .finish()
    }
}

impl NodeHandle {
    /// Starts a node from `config`.
    pub fn start(config: &Config) -> Result<NodeHandle, LaunchError> {
        let control_auth = match config.control_token.as_deref() {
            Some(token) => Some(RequireToken::new(token)?),
            None if config.cluster_enabled => return Err(LaunchError::NoControlToken),
            None => None,
        };
        let threads = config.effective_threads();
        let store = Arc::new(Store::new(
            config.effective_maxmemory() as usize,
            config.maxmemory_policy,
        ));
        store.ttl_jitter.set_percent(config.ttl_jitter_percent);
        let listeners = server::bind_listeners(SocketAddr::new(config.bind, config.port), threads)?;
        let resp_addr = listeners[0].local_addr().map_err(|source| ServerError::Listen {
            addr: SocketAddr::new(config.bind, config.port),
            source,
        })?;
        // The replica port: one listener per worker, like the RESP port.
        let (replica_listeners, replica_addr) = match config.replica_port {
            ReplicaPort::Off => (Vec::new(), None),
            ReplicaPort::Port(port) => {
                let addr = SocketAddr::new(config.bind, port);
                let ls = server::bind_listeners(addr, threads)?;
                let bound = ls[0]
                    .local_addr()
                    .map_err(|source| ServerError::Listen { addr, source })?;
                (ls, Some(bound))
            }
        };
        let limits = Limits {
            max_bulk_len: config.proto_max_bulk_len as usize,
            ..Limits::default()
        };
        let access = Access::new(
            config.requirepass.clone(),
            limits,
            config.client_query_buffer_limit as usize,
        );
        let mut state = ServerState::new(
            resp_addr.port(),
            access,
            threads,
            crate::cmd::registry().commands.len(),
            Arc::new(ClusterState::new(config.cluster_enabled, config.node_id.clone())),
        )
        .with_hotkeys(HotKeys::new(config.hotkeys_config()));
        state.bloom = config.bloom_defaults();
        state.coalesce.patterns = config.coalesce_patterns.iter().map(|p| p.as_bytes().to_vec()).collect();
        state.coalesce.defaults.early_ms = config.coalesce_early_ms;
        let state = Arc::new(state);
        state
            .replication
            .configure(usize::from(config.min_replicas_to_ack), config.replica_ack_timeout_ms);
        let shutdown = CancellationToken::new();
        let admin_bind = SocketAddr::new(config.bind, config.admin_port);
        let admin = std::net::TcpListener::bind(admin_bind)
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .map_err(|source| LaunchError::Admin {
                addr: admin_bind,
                source,
            })?;
        let admin_addr = admin.local_addr().map_err(|source| LaunchError::Admin {
            addr: admin_bind,
            source,
        })?;

        let (control, control_addr) = bind_control(config)?;
        let (proxy_listeners, proxy_addr) =
            crate::proxy::bind(SocketAddr::new(config.bind, config.proxy_port), threads)?;
        let mut handles = server::spawn_workers(
            listeners,
            replica_listeners,
            store.clone(),
            state.clone(),
            shutdown.clone(),
        )?;
        handles.extend(crate::proxy::spawn(
            proxy_listeners,
            store.clone(),
            state.clone(),
            shutdown.clone(),
        )?);
        let control_service =
            crate::control::ControlService::new(state.clone(), store.clone(), resp_addr, replica_addr);
        handles.push(spawn_control(control, control_service, control_auth, shutdown.clone())?);
        handles.push(expiry::spawn(store.clone()).map_err(LaunchError::Thread)?);
        handles.push(crate::tracking::spawn_forwarder(&store, &state).map_err(LaunchError::Thread)?);
        if config.cluster_enabled {
            handles.push(
                crate::handover::cleanup::spawn(
                    store.clone(),
                    state.cluster.clone(),
                    state.handovers.clone(),
                    shutdown.clone(),
                )
                .map_err(LaunchError::Thread)?,
            );
            let links = crate::replication::replica::Links {
                repl: state.replication.clone(),
                access: state.access.clone(),
                replay: Arc::new(crate::cmd::replication::Replayer::new(state.clone())),
                handovers: state.handovers.clone(),
            };
            let repl = crate::replication::replica::spawn(store.clone(), links, shutdown.clone());
            handles.push(repl.map_err(LaunchError::Thread)?);
        }
        let (s2, st2, sd2) = (store.clone(), state.clone(), shutdown.clone());
        handles.push(
            std::thread::Builder::new()
                .name("admin".into())
                .spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                        return;
                    };
                    rt.block_on(async move {
                        if let Ok(l) = tokio::net::TcpListener::from_std(admin) {
                            crate::admin::serve(l, s2, st2, sd2).await;
                        }
                    });
                })
                .map_err(LaunchError::Thread)?,
        );
        state.ready.store(true, Ordering::Relaxed);
        info!(%resp_addr, replica_addr = ?replica_addr, %admin_addr, %control_addr, threads, maxmemory = store.mem.max(), policy = store.mem.policy().name(), "ringcache-node ready");
        Ok(NodeHandle {
            resp_addr,
            replica_addr,
            admin_addr,
            proxy_addr,
            control_addr,
            store,
            state,
            shutdown,
            threads: handles,
        })
    }

    /// Stops accepting, lets connections finish the replies they owe, and waits.
    pub fn shutdown(self) {
        self.state.ready.store(false, Ordering::Relaxed);
        self.shutdown.cancel();
        let store = self.store;
        drop(store);
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// A token that stops the node when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Binds the gRPC control listener (`bind:control_port`, 0 = a free port).
fn bind_control(config: &Config) -> Result<(std::net::TcpListener, SocketAddr), LaunchError> {
    let addr = SocketAddr::new(config.bind, config.control_port);
    let err = |source| LaunchError::Control { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

/// Serves the control service on its own thread and runtime until `shutdown`.
fn spawn_control(
    listener: std::net::TcpListener,
    service: crate::control::ControlService,
    auth: Option<RequireToken>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, LaunchError> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "control: cannot start runtime"),
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!(error = %e, "control: cannot use listener"),
                };
                if let Err(e) = crate::control::serve(listener, service, auth, shutdown).await {
                    tracing::error!(error = %e, "control server failed");
                }
            });
        })
        .map_err(LaunchError::Thread)
}
