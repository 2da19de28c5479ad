//! Readiness and liveness probes (TCP socket and HTTP GET) against a pod's address.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::http;

/// Probe result bookkeeping for one probe of one container.
#[derive(Debug, Clone)]
pub struct ProbeState {
    probe: Probe,
    started: Instant,
    last_run: Option<Instant>,
    successes: i32,
    failures: i32,
    /// Current verdict (readiness: ready; liveness: alive).
    pub ok: bool,
}

/// Outcome of one [`ProbeState::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    Unchanged,
    BecameOk,
    BecameFailed,
}

fn resolve_port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Some(p);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }
    }
}

/// Runs one probe attempt. Exec probes are not supported (they would run inside the image) and always fail.
pub async fn run_once(probe: &Probe, container: &Container, pod_ip: IpAddr) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(container, &tcp.port)
            .ok_or_else(|| format!("tcpSocket port {:?} does not resolve", tcp.port))?;
        let ip = tcp.host.as_deref().and_then(|h| h.parse().ok()).unwrap_or(pod_ip);
        let addr = SocketAddr::new(ip, port);
        return if http::tcp_ok(addr, timeout).await {
            Ok(())
        } else {
            Err(format!("dial tcp {addr}: connection refused or timed out"))
        };
    }
    if let Some(h) = &probe.http_get {
        let port =
            resolve_port(container, &h.port).ok_or_else(|| format!("httpGet port {:?} does not resolve", h.port))?;
        if h.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("https")) {
            return Err("httpGet with scheme HTTPS is not supported by the test kubelet".into());
        }
        let ip = h.host.as_deref().and_then(|x| x.parse().ok()).unwrap_or(pod_ip);
        let addr = SocketAddr::new(ip, port);
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        return match http::get(addr, &ip.to_string(), &path, timeout).await {
            Ok((code, _)) if (200..400).contains(&code) => Ok(()),
            Ok((code, body)) => Err(format!("HTTP probe failed with statuscode: {code} {body}")),
            Err(e) => Err(e.to_string()),
        };
    }
    if probe.grpc.is_some() {
        return Err("grpc probes are not supported by the test kubelet".into());
    }
    Err("exec probes are not supported by the test kubelet".into())
}

impl ProbeState {
    pub fn new(probe: Probe, initially_ok: bool) -> ProbeState {
        ProbeState {
            probe,
            started: Instant::now(),
            last_run: None,
            successes: 0,
            failures: 0,
            ok: initially_ok,
        }
    }

    /// Resets counters for a new container start.
    pub fn restart(&mut self, initially_ok: bool) {
        self.started = Instant::now();
        self.last_run = None;
        self.successes = 0;
        self.failures = 0;
        self.ok = initially_ok;
    }

    /// Runs the probe if it is due.
    pub async fn tick(&mut self, container: &Container, pod_ip: IpAddr) -> ProbeVerdict {
        let now = Instant::now();
        let delay = Duration::from_secs(self.probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        if now < self.started + delay {
            return ProbeVerdict::Unchanged;
        }
        let period = Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64);
        if let Some(last) = self.last_run {
            if now < last + period {
                return ProbeVerdict::Unchanged;
            }
        }
        self.last_run = Some(now);
        let result = run_once(&self.probe, container, pod_ip).await;
        match result {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                if !self.ok && self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                    self.ok = true;
                    return ProbeVerdict::BecameOk;
                }
            }
            Err(msg) => {
                self.successes = 0;
                self.failures += 1;
                tracing::debug!(container = container.name, msg, "probe failed");
                if self.ok && self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                    self.ok = false;
                    return ProbeVerdict::BecameFailed;
                }
            }
        }
        ProbeVerdict::Unchanged
    }
}
