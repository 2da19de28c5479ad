//! `make dev`: a real control plane and the test kubelet in the foreground.
//!
//! Builds the pinned Kubernetes components if needed (tests/k8s/build.sh, or `RINGCACHE_K8S_BIN`), starts etcd,
//! kube-apiserver, kube-controller-manager, the test kubelet and kube-proxy, prints `export KUBECONFIG=<path>` once
//! ready, and tears everything down on Ctrl-C (or SIGTERM), kube-proxy's nftables table included.

use std::time::Instant;

use ringcache_tests::{start_env, ControlPlaneOptions};

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube_client=warn,kube_client::client::builder=off")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringcache-dev: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let t0 = Instant::now();
        let (cp, kubelet) = match start_env(ControlPlaneOptions::default(), |_| {}).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("ringcache-dev: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        eprintln!(
            "ringcache-dev: control plane {} ready in {:.1}s; run dir {}; pod network {:?}; ClusterIPs {}",
            cp.server,
            t0.elapsed().as_secs_f64(),
            cp.run_dir.display(),
            kubelet.network(),
            if cp.kube_proxy_running() {
                "routed by kube-proxy"
            } else {
                "not routed (no kube-proxy)"
            }
        );
        eprintln!(
            "ringcache-dev: kubectl and helm: {}; Ctrl-C to stop",
            cp.bin_dir.display()
        );
        println!("export KUBECONFIG={}", cp.kubeconfig.display());
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ringcache-dev: SIGTERM handler: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("ringcache-dev: shutting down");
        kubelet.shutdown().await;
        drop(cp);
        std::process::ExitCode::SUCCESS
    })
}
