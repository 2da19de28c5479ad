//! A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager built from the pins
//! in tests/k8s, with generated certificates and service-account keys, and kube-proxy on the host once the nodes
//! exist ([`ControlPlane::start_kube_proxy`]). Dropping it stops every process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Api;

use crate::bins::{self, BinsError};
use crate::http;
use crate::kube_proxy::{self, HostLock, KubeProxy, KubeProxyError};
use crate::pki::{CertPair, Pki, PkiError};
use crate::proc::{self, ChildProcess, ProcError};

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error(transparent)]
    Bins(#[from] BinsError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    KubeProxy(#[from] KubeProxyError),
    #[error("no free port: {0}")]
    Port(#[source] std::io::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited early ({status}); log: {log}\n{tail}")]
    Exited {
        what: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{what} not ready after {secs}s; log: {log}\n{tail}")]
    Timeout {
        what: String,
        secs: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Options for [`ControlPlane::start`].
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneOptions {
    /// Where certificates, data and logs go; a fresh dir under `<target>/ringcache-runs/` when `None`.
    pub run_dir: Option<PathBuf>,
    /// The dir with the k8s binaries; [`bins::k8s_bin_dir`] when `None`.
    pub bin_dir: Option<PathBuf>,
}

/// A running control plane. Fields drop in order: kube-proxy (and its nftables tables), controller-manager,
/// apiserver, etcd.
#[derive(Debug)]
pub struct ControlPlane {
    kube_proxy: Option<KubeProxy>,
    controller_manager: ChildProcess,
    apiserver: ChildProcess,
    etcd: ChildProcess,
    pub run_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// Admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    pub server: String,
    pub pki: Pki,
    pub etcd_url: String,
}

const SERVICE_CIDR: &str = "10.96.0.0/16";
const SERVICE_IP: &str = "10.96.0.1";
const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Pods' addresses (the kubelet's local-route network), for kube-proxy's `--cluster-cidr`.
const CLUSTER_CIDR: &str = crate::kubelet::network::LOCAL_ROUTE_CIDR;
/// How long a harness waits for another one to stop using the host's kube-proxy tables.
const HOST_LOCK_TIMEOUT: Duration = Duration::from_secs(300);

static RUN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// How many finished runs keep their logs.
const KEEP_RUNS: usize = 10;

/// A new, unique run dir under `<target>/ringcache-runs/`. Runs whose process is gone lose their etcd data
/// (about 120 MB each); only the newest [`KEEP_RUNS`] finished runs keep their logs.
pub fn new_run_dir() -> PathBuf {
    let root = bins::target_dir().join("ringcache-runs");
    prune_runs(&root);
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    root.join(format!("{stamp}-{}-{n}", std::process::id()))
}

fn prune_runs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut dead: Vec<(String, PathBuf)> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
        let Some(pid) = pid else { continue };
        // SAFETY: kill with signal 0 only checks for existence.
        let alive = pid as u32 == std::process::id() || unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            dead.push((name, e.path()));
        }
    }
    dead.sort();
    let cut = dead.len().saturating_sub(KEEP_RUNS);
    for (i, (_, path)) in dead.iter().enumerate() {
        if i < cut {
            let _ = std::fs::remove_dir_all(path);
        } else {
            let _ = std::fs::remove_dir_all(path.join("etcd"));
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// Renders a kubeconfig for `server` trusting `ca_pem`, authenticating with a client certificate or a bearer token.
pub fn render_kubeconfig(server: &str, ca_pem: &str, user: &str, auth: KubeconfigAuth<'_>, namespace: &str) -> String {
    let user_body = match auth {
        KubeconfigAuth::Cert(pair) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&pair.cert_pem),
            b64(&pair.key_pem)
        ),
        KubeconfigAuth::Token(t) => format!("    token: {t}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ringcache\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n{user_body}contexts:\n- name: ringcache\n  context:\n    cluster: ringcache\n    user: {user}\n    namespace: {namespace}\ncurrent-context: ringcache\n",
        ca = b64(ca_pem),
    )
}

/// How a kubeconfig authenticates.
#[derive(Debug, Clone, Copy)]
pub enum KubeconfigAuth<'a> {
    Cert(&'a CertPair),
    Token(&'a str),
}

fn write(path: &Path, contents: &str) -> Result<(), ControlPlaneError> {
    std::fs::write(path, contents).map_err(|source| ControlPlaneError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Builds a kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, ControlPlaneError> {
    let kc = Kubeconfig::read_from(path).map_err(|source| ControlPlaneError::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|source| ControlPlaneError::Kubeconfig {
            path: path.to_owned(),
            source,
        })?;
    Ok(kube::Client::try_from(cfg)?)
}

async fn wait_until<F, Fut>(
    what: &str,
    child: &mut ChildProcess,
    log: &Path,
    timeout: Duration,
    mut check: F,
) -> Result<(), ControlPlaneError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Err(ControlPlaneError::Exited {
                what: what.to_owned(),
                status: st.to_string(),
                log: log.to_owned(),
                tail: log_tail(log, 30),
            });
        }
        if check().await {
            tracing::info!(what, elapsed_ms = start.elapsed().as_millis() as u64, "ready");
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(ControlPlaneError::Timeout {
                what: what.to_owned(),
                secs: timeout.as_secs(),
                log: log.to_owned(),
                tail: log_tail(log, 30),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How often a component is started on new ports after finding one of its ports taken.
const PORT_ATTEMPTS: usize = 10;

/// Starts `what` on `n` fresh ports ([`proc::fresh_ports`]: outside the ephemeral range, so no connection's source
/// port can take them) and waits until the process itself listens on all of them ([`proc::listens_on`]). When it
/// exits saying that an address is in use (another harness bound the same port first), it is started again on
/// other ports. Returns the child and its ports.
async fn spawn_listening(
    what: &str,
    n: usize,
    log: &Path,
    mut command: impl FnMut(&[u16]) -> Command,
) -> Result<(ChildProcess, Vec<u16>), ControlPlaneError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ports = proc::fresh_ports(n).map_err(ControlPlaneError::Port)?;
        let log_start = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let mut child = proc::spawn(what, command(&ports), log)?;
        let pid = child.pid();
        let started = Instant::now();
        loop {
            if let Some(st) = child.try_wait()? {
                let output = log_since(log, log_start);
                if proc::says_address_in_use(&output) && attempt < PORT_ATTEMPTS {
                    tracing::warn!(what, ?ports, attempt, "a port was taken; starting again on other ports");
                    break;
                }
                return Err(ControlPlaneError::Exited {
                    what: what.to_owned(),
                    status: st.to_string(),
                    log: log.to_owned(),
                    tail: log_tail(log, 30),
                });
            }
            if proc::listens_on(pid, &ports) {
                tracing::debug!(
                    what,
                    ?ports,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "listening"
                );
                return Ok((child, ports));
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(ControlPlaneError::Timeout {
                    what: format!("{what} listening on {ports:?}"),
                    secs: READY_TIMEOUT.as_secs(),
                    log: log.to_owned(),
                    tail: log_tail(log, 30),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What was appended to a log file after byte `start`.
fn log_since(path: &Path, start: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(start).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the apiserver is ready and the
    /// controller-manager has created the `default` ServiceAccount.
    pub async fn start(opts: ControlPlaneOptions) -> Result<ControlPlane, ControlPlaneError> {
        let started = Instant::now();
        let bin_dir = match opts.bin_dir {
            Some(d) => d,
            None => tokio::task::spawn_blocking(bins::k8s_bin_dir).await.map_err(|e| {
                ControlPlaneError::Port(std::io::Error::other(format!("k8s binary lookup panicked: {e}")))
            })??,
        };
        let run_dir = opts.run_dir.unwrap_or_else(new_run_dir);
        let mk = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|source| ControlPlaneError::Write {
                path: p.to_owned(),
                source,
            })
        };
        let pki_dir = run_dir.join("pki");
        let logs = run_dir.join("logs");
        mk(&run_dir)?;
        mk(&logs)?;
        let pki = Pki::generate(&pki_dir, SERVICE_IP)?;

        // --- etcd ---
        let etcd_log = logs.join("etcd.log");
        let data_dir = run_dir.join("etcd");
        let (mut etcd, etcd_ports) = spawn_listening("etcd", 2, &etcd_log, |p| {
            let etcd_url = format!("http://127.0.0.1:{}", p[0]);
            let peer_url = format!("http://127.0.0.1:{}", p[1]);
            let mut cmd = Command::new(bin_dir.join("etcd"));
            cmd.arg("--name=default")
                .arg(format!("--data-dir={}", data_dir.display()))
                .arg(format!("--listen-client-urls={etcd_url}"))
                .arg(format!("--advertise-client-urls={etcd_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=default={peer_url}"))
                .arg("--unsafe-no-fsync=true")
                .arg("--log-level=warn");
            cmd
        })
        .await?;
        let etcd_port = etcd_ports[0];
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let etcd_addr = SocketAddr::from(([127, 0, 0, 1], etcd_port));
        wait_until("etcd", &mut etcd, &etcd_log, READY_TIMEOUT, || async {
            matches!(
                http::get(etcd_addr, "127.0.0.1", "/health", Duration::from_secs(2)).await,
                Ok((200, body)) if body.contains("true")
            )
        })
        .await?;

        // --- kube-apiserver ---
        let api_log = logs.join("kube-apiserver.log");
        let (mut apiserver, api_ports) = spawn_listening("kube-apiserver", 1, &api_log, |p| {
            let mut cmd = Command::new(bin_dir.join("kube-apiserver"));
            cmd.arg(format!("--etcd-servers={etcd_url}"))
                .arg("--bind-address=127.0.0.1")
                .arg("--advertise-address=127.0.0.1")
                .arg(format!("--secure-port={}", p[0]))
                .arg(format!("--cert-dir={}", pki_dir.display()))
                .arg(format!("--tls-cert-file={}", pki.apiserver.cert_path.display()))
                .arg(format!("--tls-private-key-file={}", pki.apiserver.key_path.display()))
                .arg(format!("--client-ca-file={}", pki.ca.cert_path.display()))
                .arg(format!("--service-account-issuer={SA_ISSUER}"))
                .arg(format!("--service-account-key-file={}", pki.sa_pub_path.display()))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    pki.sa_key_path.display()
                ))
                .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
                .arg("--authorization-mode=Node,RBAC")
                .arg("--allow-privileged=true")
                // The advertise address is loopback, which Endpoints may not hold: don't publish the `kubernetes`
                // Service's endpoints (kube-proxy rejects 10.96.0.1:443; pods get a kubeconfig with the loopback
                // address instead).
                .arg("--endpoint-reconciler-type=none")
                .arg("--profiling=false")
                .arg("--v=1");
            cmd
        })
        .await?;
        let server = format!("https://127.0.0.1:{}", api_ports[0]);

        let admin_kubeconfig = run_dir.join("kubeconfig");
        write(
            &admin_kubeconfig,
            &render_kubeconfig(
                &server,
                &pki.ca.cert_pem,
                "ringcache-admin",
                KubeconfigAuth::Cert(&pki.admin),
                "default",
            ),
        )?;
        let client = client_from_kubeconfig(&admin_kubeconfig).await?;
        {
            let client = client.clone();
            wait_until("kube-apiserver", &mut apiserver, &api_log, READY_TIMEOUT, move || {
                let client = client.clone();
                async move {
                    let req = match ::http::Request::get("/readyz").body(Vec::new()) {
                        Ok(r) => r,
                        Err(_) => return false,
                    };
                    matches!(client.request_text(req).await, Ok(t) if t.trim() == "ok")
                }
            })
            .await?;
        }

        // --- kube-controller-manager ---
        let cm_kubeconfig = run_dir.join("controller-manager.kubeconfig");
        write(
            &cm_kubeconfig,
            &render_kubeconfig(
                &server,
                &pki.ca.cert_pem,
                "system:kube-controller-manager",
                KubeconfigAuth::Cert(&pki.controller_manager),
                "kube-system",
            ),
        )?;
        let cm_log = logs.join("kube-controller-manager.log");
        let mut cmd = Command::new(bin_dir.join("kube-controller-manager"));
        cmd.arg(format!("--kubeconfig={}", cm_kubeconfig.display()))
            .arg(format!("--authentication-kubeconfig={}", cm_kubeconfig.display()))
            .arg(format!("--authorization-kubeconfig={}", cm_kubeconfig.display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--secure-port=0")
            .arg(format!(
                "--service-account-private-key-file={}",
                pki.sa_key_path.display()
            ))
            .arg(format!("--root-ca-file={}", pki.ca.cert_path.display()))
            .arg(format!("--cluster-signing-cert-file={}", pki.ca.cert_path.display()))
            .arg(format!("--cluster-signing-key-file={}", pki.ca.key_path.display()))
            .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
            .arg("--use-service-account-credentials=true")
            .arg("--controllers=*")
            .arg("--leader-elect=false")
            // 4× the test kubelet's 4 s heartbeat, as a real cluster's 40 s is 4× its kubelets' 10 s.
            .arg("--node-monitor-grace-period=16s")
            .arg("--node-monitor-period=2s")
            .arg("--profiling=false")
            .arg("--v=1");
        let mut controller_manager = proc::spawn("kube-controller-manager", cmd, &cm_log)?;
        {
            let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
            wait_until(
                "kube-controller-manager (default ServiceAccount)",
                &mut controller_manager,
                &cm_log,
                READY_TIMEOUT,
                move || {
                    let sas = sas.clone();
                    async move { matches!(sas.get_opt("default").await, Ok(Some(_))) }
                },
            )
            .await?;
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            server,
            run_dir = %run_dir.display(),
            "control plane ready"
        );
        Ok(ControlPlane {
            kube_proxy: None,
            controller_manager,
            apiserver,
            etcd,
            run_dir,
            bin_dir,
            kubeconfig: admin_kubeconfig,
            server,
            pki,
            etcd_url,
        })
    }

    /// Starts kube-proxy on the host in nftables mode, as the proxy of Node `node` (which must exist: kube-proxy
    /// waits 30 s for its Node's addresses and reports unhealthy without it), and waits until it is healthy and
    /// has programmed its first rules. Pods share the host's network namespace, so its rules serve every node's
    /// pods and the test process alike. Needs root and `nft`; waits for any other harness using the host's
    /// kube-proxy tables to stop (see [`kube_proxy`]).
    pub async fn start_kube_proxy(&mut self, node: &str) -> Result<(), ControlPlaneError> {
        if self.kube_proxy.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        kube_proxy::check_nft()?;
        let lock = HostLock::acquire(&self.run_dir.display().to_string(), HOST_LOCK_TIMEOUT).await?;
        // Whatever a harness that could not clean up left behind (no kube-proxy runs: we hold the lock).
        for failure in kube_proxy::delete_tables() {
            tracing::warn!(failure, "removing a stale kube-proxy table");
        }
        let kubeconfig = self.run_dir.join("kube-proxy.kubeconfig");
        write(
            &kubeconfig,
            &render_kubeconfig(
                &self.server,
                &self.pki.ca.cert_pem,
                "system:kube-proxy",
                KubeconfigAuth::Cert(&self.pki.kube_proxy),
                "kube-system",
            ),
        )?;
        let log = self.run_dir.join("logs/kube-proxy.log");
        let bin = self.bin_dir.join("kube-proxy");
        let (mut child, ports) = spawn_listening("kube-proxy", 2, &log, |p| {
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
                .arg("--proxy-mode=nftables")
                .arg(format!("--hostname-override={node}"))
                .arg(format!("--cluster-cidr={CLUSTER_CIDR}"))
                .arg(format!("--healthz-bind-address=127.0.0.1:{}", p[0]))
                .arg(format!("--metrics-bind-address=127.0.0.1:{}", p[1]))
                // NodePorts only on pod addresses, never on the host's real interfaces.
                .arg(format!("--nodeport-addresses={CLUSTER_CIDR}"))
                // Leave the host's conntrack table size and timeouts and this process's OOM score as they are.
                .arg("--conntrack-max-per-core=0")
                .arg("--conntrack-tcp-timeout-established=0")
                .arg("--conntrack-tcp-timeout-close-wait=0")
                .arg("--oom-score-adj=0")
                .arg("--profiling=false")
                .arg("--v=1");
            cmd
        })
        .await?;
        let (healthz, metrics) = (
            SocketAddr::from(([127, 0, 0, 1], ports[0])),
            SocketAddr::from(([127, 0, 0, 1], ports[1])),
        );
        wait_until("kube-proxy", &mut child, &log, READY_TIMEOUT, || async move {
            let timeout = Duration::from_secs(2);
            // 200 needs the Node (kube-proxy's "node eligible") and a sync loop that keeps up; the metrics show
            // that the first IPv4 rules are in place.
            matches!(http::get(healthz, "127.0.0.1", "/healthz", timeout).await, Ok((200, _)))
                && matches!(
                    http::get(metrics, "127.0.0.1", "/metrics", timeout).await,
                    Ok((200, body)) if kube_proxy::synced(&body)
                )
        })
        .await?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            node,
            tables = ?kube_proxy::tables(),
            "kube-proxy ready"
        );
        self.kube_proxy = Some(KubeProxy::new(child, lock, ports[0], ports[1]));
        Ok(())
    }

    /// Whether kube-proxy runs (Services' ClusterIPs are routed).
    pub fn kube_proxy_running(&self) -> bool {
        self.kube_proxy.is_some()
    }

    /// A new admin client (bound to the calling tokio runtime).
    pub async fn client(&self) -> Result<kube::Client, ControlPlaneError> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// `kubectl` from the pinned build, pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// `helm` from the pinned build, pointed at this control plane (its caches under the run dir).
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("helm"));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.run_dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.run_dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.run_dir.join("helm/data"));
        cmd
    }

    /// Checks that none of the components has exited.
    pub fn check_alive(&mut self) -> Result<(), ControlPlaneError> {
        let logs = self.run_dir.join("logs");
        for (child, log) in [
            (&mut self.etcd, "etcd.log"),
            (&mut self.apiserver, "kube-apiserver.log"),
            (&mut self.controller_manager, "kube-controller-manager.log"),
        ] {
            if let Some(st) = child.try_wait()? {
                let log = logs.join(log);
                return Err(ControlPlaneError::Exited {
                    what: child.name().to_owned(),
                    status: st.to_string(),
                    tail: log_tail(&log, 30),
                    log,
                });
            }
        }
        if let Some(kp) = self.kube_proxy.as_mut() {
            if let Some(st) = kp.child_mut().try_wait()? {
                let log = logs.join("kube-proxy.log");
                return Err(ControlPlaneError::Exited {
                    what: "kube-proxy".into(),
                    status: st.to_string(),
                    tail: log_tail(&log, 30),
                    log,
                });
            }
        }
        Ok(())
    }
}
