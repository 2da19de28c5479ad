//! ringcache's end-to-end harness: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager
//! and kube-proxy, built from the pins in tests/k8s) on loopback, and a test kubelet that runs pods as local
//! processes.
//!
//! Tests share one control plane per test binary ([`shared`]) and isolate themselves by namespace
//! ([`TestEnv::namespace`]).

pub mod bins;
pub mod control_plane;
pub mod http;
pub mod kube_proxy;
pub mod kubelet;
pub mod load;
pub mod operator;
pub mod pki;
pub mod proc;

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::PostParams;
use kube::Api;

pub use control_plane::{ControlPlane, ControlPlaneError, ControlPlaneOptions};
pub use kubelet::{ImageMap, ImageSource, Kubelet, KubeletConfig, KubeletError, NodeControl};

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    #[error(transparent)]
    Kubelet(#[from] KubeletError),
    #[error("starting the shared test environment failed earlier: {0}")]
    Failed(String),
    #[error("{what}: not done after {secs}s; last: {last}")]
    Timeout { what: String, secs: u64, last: String },
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("running {cmd}: {detail}")]
    Command { cmd: String, detail: String },
    #[error("runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What tests need to reach the shared control plane and kubelet.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub kubeconfig: PathBuf,
    pub server: String,
    pub bin_dir: PathBuf,
    pub run_dir: PathBuf,
    pub images: ImageMap,
    /// Simulated node crashes (see [`kubelet::NodeControl`]).
    pub nodes: kubelet::NodeControl,
    pub network: kubelet::network::PodNetwork,
    /// Whether kube-proxy runs, i.e. Services' ClusterIPs are routed (see [`start_env`]).
    pub kube_proxy: bool,
    pub startup: Duration,
}

static SHARED: OnceLock<Result<TestEnv, String>> = OnceLock::new();
static NS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Installs a tracing subscriber for tests (RUST_LOG, default `info`), once.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube_client=warn,kube_client::client::builder=off,hyper=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Starts a control plane, a test kubelet and (once the kubelet's nodes exist) kube-proxy on the current runtime.
///
/// kube-proxy runs as the proxy of the kubelet's first node; it is left out, with a warning, when pods get
/// loopback addresses (no root: Services have no endpoints then anyway) or when `RINGCACHE_KUBE_PROXY=off`.
pub async fn start_env(
    opts: ControlPlaneOptions,
    configure: impl FnOnce(&mut KubeletConfig),
) -> Result<(ControlPlane, Kubelet), EnvError> {
    let mut cp = ControlPlane::start(opts).await?;
    let client = cp.client().await?;
    let mut cfg = KubeletConfig::new(cp.run_dir.clone());
    configure(&mut cfg);
    let proxy_node = cfg.nodes.first().map(|n| n.name.clone());
    let kubelet = Kubelet::start(client, cp.server.clone(), cp.pki.ca.cert_pem.clone(), cfg).await?;
    let wanted = std::env::var("RINGCACHE_KUBE_PROXY").map_or(true, |v| v != "off");
    match proxy_node {
        Some(node) if wanted && kubelet.network().endpoints_supported() => cp.start_kube_proxy(&node).await?,
        _ => tracing::warn!(
            network = ?kubelet.network(),
            "no kube-proxy (RINGCACHE_KUBE_PROXY=off, no nodes, or loopback pod addresses): ClusterIPs are not routed"
        ),
    }
    Ok((cp, kubelet))
}

/// The control plane and kubelet shared by all tests of this test binary, started on first use on a dedicated
/// thread and runtime. Its processes are killed when the test process exits (see [`proc`]).
pub fn shared() -> Result<&'static TestEnv, EnvError> {
    let r = SHARED.get_or_init(|| {
        init_tracing();
        let (tx, rx) = std::sync::mpsc::channel::<Result<TestEnv, String>>();
        let spawned = std::thread::Builder::new()
            .name("ringcache-test-env".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(format!("tokio runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let t0 = Instant::now();
                    match start_env(ControlPlaneOptions::default(), |_| {}).await {
                        Ok((cp, kubelet)) => {
                            let env = TestEnv {
                                kubeconfig: cp.kubeconfig.clone(),
                                server: cp.server.clone(),
                                bin_dir: cp.bin_dir.clone(),
                                run_dir: cp.run_dir.clone(),
                                images: kubelet.images().clone(),
                                nodes: kubelet.node_control().clone(),
                                network: kubelet.network(),
                                kube_proxy: cp.kube_proxy_running(),
                                startup: t0.elapsed(),
                            };
                            let _ = tx.send(Ok(env));
                            // Keep both alive for the life of the process.
                            let _keep = (cp, kubelet);
                            std::future::pending::<()>().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            });
        if let Err(e) = spawned {
            return Err(format!("spawning the test-env thread: {e}"));
        }
        rx.recv().unwrap_or_else(|_| Err("the test-env thread died".into()))
    });
    r.as_ref().map_err(|e| EnvError::Failed(e.clone()))
}

impl TestEnv {
    /// A client for the caller's runtime (admin credentials).
    pub async fn client(&self) -> Result<kube::Client, EnvError> {
        Ok(control_plane::client_from_kubeconfig(&self.kubeconfig).await?)
    }

    /// The pinned kubectl, pointed at the control plane.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// The pinned helm, pointed at the control plane.
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("helm"));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.run_dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.run_dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.run_dir.join("helm/data"));
        cmd
    }

    /// Runs `kubectl <args>` with `stdin`, returning stdout or an error with stderr.
    pub fn kubectl_run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, EnvError> {
        run_with_stdin(self.kubectl(), args, stdin)
    }

    /// Creates a fresh namespace `<prefix>-<n>` and waits for its `default` ServiceAccount.
    pub async fn namespace(&self, prefix: &str) -> Result<String, EnvError> {
        let client = self.client().await?;
        let n = NS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id() % 100_000);
        let nss: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name }
        }))
        .map_err(|e| EnvError::Command {
            cmd: "namespace".into(),
            detail: e.to_string(),
        })?;
        nss.create(&PostParams::default(), &ns).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client, &name);
        wait_for(
            &format!("default ServiceAccount in namespace {name}"),
            Duration::from_secs(60),
            || {
                let sas = sas.clone();
                async move {
                    match sas.get_opt("default").await {
                        Ok(Some(_)) => Ok(()),
                        Ok(None) => Err("not created yet".to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        )
        .await?;
        Ok(name)
    }
}

/// Runs a command with args and optional stdin; stdout on success, an error naming the command and stderr otherwise.
pub fn run_with_stdin(mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Result<String, EnvError> {
    use std::io::Write;
    let desc = format!("{} {}", cmd.get_program().to_string_lossy(), args.join(" "));
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| EnvError::Command {
        cmd: desc.clone(),
        detail: e.to_string(),
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|e| EnvError::Command {
            cmd: desc.clone(),
            detail: format!("writing stdin: {e}"),
        })?;
    }
    let out = child.wait_with_output().map_err(|e| EnvError::Command {
        cmd: desc.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(EnvError::Command {
            cmd: desc,
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `pod` has the condition Ready=True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls `check` every 250 ms until it returns `Ok`, or fails after `timeout` with the last error message.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, EnvError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if start.elapsed() >= timeout {
            return Err(EnvError::Timeout {
                what: what.to_owned(),
                secs: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
