//! One pod's lifecycle on the test kubelet: its address, its containers as local processes, restarts with backoff,
//! probes, status, service-account token, and graceful deletion.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::env::{self, PodFacts};
use super::probe::{ProbeState, ProbeVerdict};
use super::{rfc3339_now, Ctx, PodUpdate, PID_ANNOTATION_PREFIX};
use crate::control_plane::{render_kubeconfig, KubeconfigAuth};
use crate::proc::{self, ChildProcess};

#[derive(Debug, Clone, PartialEq)]
enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        started_at: String,
        finished_at: String,
        container_id: String,
    },
}

impl State {
    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => {
                let mut w = json!({ "reason": reason });
                if !message.is_empty() {
                    w["message"] = json!(message);
                }
                json!({ "waiting": w })
            }
            State::Running { started_at } => json!({ "running": { "startedAt": started_at } }),
            State::Terminated {
                exit_code,
                signal,
                reason,
                started_at,
                finished_at,
                container_id,
            } => {
                let mut t = json!({
                    "exitCode": exit_code,
                    "reason": reason,
                    "startedAt": started_at,
                    "finishedAt": finished_at,
                    "containerID": container_id,
                });
                if let Some(s) = signal {
                    t["signal"] = json!(s);
                }
                json!({ "terminated": t })
            }
        }
    }
}

#[derive(Debug)]
struct ContainerRt {
    spec: Container,
    proc: Option<ChildProcess>,
    container_id: String,
    restart_count: i32,
    /// Number of processes started so far.
    starts: u32,
    state: State,
    last_state: Option<State>,
    readiness: Option<ProbeState>,
    liveness: Option<ProbeState>,
    next_start: Option<Instant>,
    backoff: Duration,
    started_instant: Option<Instant>,
    kill_deadline: Option<Instant>,
    /// Terminated for good (restartPolicy says no restart).
    done: bool,
}

impl ContainerRt {
    fn ready(&self) -> bool {
        self.proc.is_some()
            && matches!(self.state, State::Running { .. })
            && self.readiness.as_ref().is_none_or(|r| r.ok)
    }
}

pub(super) struct PodWorker {
    ctx: Arc<Ctx>,
    pod: Pod,
    rx: watch::Receiver<PodUpdate>,
    ip: Ipv4Addr,
    dir: PathBuf,
    containers: Vec<ContainerRt>,
    start_time: String,
    last_status: Option<Value>,
    ready_transition: (bool, String),
    token_refresh_at: Option<Instant>,
    kubeconfig: Option<PathBuf>,
}

fn ns_name(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

impl PodWorker {
    pub(super) fn new(ctx: Arc<Ctx>, pod: Pod, rx: watch::Receiver<PodUpdate>, ip: Ipv4Addr) -> PodWorker {
        let (ns, name) = ns_name(&pod);
        let dir = ctx.config.run_dir.join("pods").join(format!("{ns}_{name}"));
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|c| ContainerRt {
                readiness: c.readiness_probe.clone().map(|p| ProbeState::new(p, false)),
                liveness: c.liveness_probe.clone().map(|p| ProbeState::new(p, true)),
                spec: c,
                proc: None,
                container_id: String::new(),
                restart_count: 0,
                starts: 0,
                state: State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                },
                last_state: None,
                next_start: Some(Instant::now()),
                backoff: Duration::ZERO,
                started_instant: None,
                kill_deadline: None,
                done: false,
            })
            .collect();
        PodWorker {
            ctx,
            pod,
            rx,
            ip,
            dir,
            containers,
            start_time: rfc3339_now(),
            last_status: None,
            ready_transition: (false, rfc3339_now()),
            token_refresh_at: None,
            kubeconfig: None,
        }
    }

    fn api(&self) -> Api<Pod> {
        let (ns, _) = ns_name(&self.pod);
        Api::namespaced(self.ctx.client.clone(), &ns)
    }

    fn name(&self) -> String {
        let (ns, name) = ns_name(&self.pod);
        format!("{ns}/{name}")
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    pub(super) async fn run(mut self) {
        tracing::info!(pod = %self.name(), ip = %self.ip, "starting pod");
        loop {
            // `changed()` below marks values seen, so always look at the latest one.
            let update = self.rx.borrow_and_update().clone();
            match update {
                PodUpdate::Pod(p) => self.pod = *p,
                PodUpdate::Gone => {
                    tracing::info!(pod = %self.name(), "pod object gone: killing its processes");
                    self.kill_all();
                    break;
                }
                PodUpdate::NodeDown => {
                    tracing::info!(pod = %self.name(), "node crashed: killing its processes");
                    self.kill_all();
                    break;
                }
            }
            if self.pod.metadata.deletion_timestamp.is_some() {
                self.terminate().await;
                break;
            }
            // Keep the service-account token fresh while containers run, like the kubelet does.
            if self.token_refresh_at.is_some_and(|t| Instant::now() >= t) {
                self.ensure_token().await;
            }
            self.step().await;
            self.push_status().await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                r = self.rx.changed() => {
                    if r.is_err() {
                        // The kubelet is shutting down.
                        self.kill_all();
                        break;
                    }
                }
            }
        }
        self.ctx.allocator.release(self.ip);
    }

    fn kill_all(&mut self) {
        for c in &mut self.containers {
            if let Some(mut p) = c.proc.take() {
                p.kill();
            }
        }
    }

    fn program_for(&self, image: &str) -> Option<PathBuf> {
        self.ctx.config.images.resolve(image)
    }

    async fn ensure_token(&mut self) -> Option<PathBuf> {
        if !self.ctx.config.service_account_tokens {
            return None;
        }
        let spec = self.pod.spec.as_ref()?;
        if spec.automount_service_account_token == Some(false) {
            return None;
        }
        if let (Some(kc), Some(at)) = (&self.kubeconfig, self.token_refresh_at) {
            if Instant::now() < at {
                return Some(kc.clone());
            }
        }
        let sa = spec.service_account_name.clone().unwrap_or_else(|| "default".into());
        let (ns, name) = ns_name(&self.pod);
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let expiration: i64 = 3600;
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": expiration,
                "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid },
            }
        });
        let sas: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), &ns);
        let resp: Result<Value, _> = sas
            .create_subresource("token", &sa, &PostParams::default(), &body)
            .await;
        let token = match resp {
            Ok(v) => v.pointer("/status/token").and_then(Value::as_str).map(str::to_owned),
            Err(e) => {
                tracing::warn!(pod = %self.name(), sa, error = %e, "TokenRequest failed");
                None
            }
        };
        let Some(token) = token else {
            self.token_refresh_at = Some(Instant::now() + Duration::from_secs(5));
            return self.kubeconfig.clone();
        };
        let sa_dir = self.dir.join("serviceaccount");
        let token_path = sa_dir.join("token");
        let kubeconfig = self.dir.join("kubeconfig");
        let tmp = sa_dir.join(".token.tmp");
        let written = std::fs::create_dir_all(&sa_dir)
            .and_then(|_| std::fs::write(&tmp, &token))
            .and_then(|_| std::fs::rename(&tmp, &token_path))
            .and_then(|_| std::fs::write(sa_dir.join("ca.crt"), &self.ctx.ca_pem))
            .and_then(|_| std::fs::write(sa_dir.join("namespace"), &ns))
            .and_then(|_| {
                let mut kc = render_kubeconfig(
                    &self.ctx.server,
                    &self.ctx.ca_pem,
                    &format!("system:serviceaccount:{ns}:{sa}"),
                    KubeconfigAuth::Token(""),
                    &ns,
                );
                kc = kc.replace("    token: \n", &format!("    tokenFile: {}\n", token_path.display()));
                std::fs::write(&kubeconfig, kc)
            });
        if let Err(e) = written {
            tracing::warn!(pod = %self.name(), error = %e, "writing service-account token files");
            return None;
        }
        // Refresh at 80% of the lifetime, like the kubelet.
        self.token_refresh_at = Some(Instant::now() + Duration::from_secs((expiration as u64) * 8 / 10));
        self.kubeconfig = Some(kubeconfig.clone());
        Some(kubeconfig)
    }

    async fn start_container(&mut self, idx: usize) {
        let kubeconfig = self.ensure_token().await;
        let c = &self.containers[idx];
        let image = c.spec.image.clone().unwrap_or_default();
        let Some(program) = self.program_for(&image) else {
            let c = &mut self.containers[idx];
            c.state = State::Waiting {
                reason: "ErrImagePull".into(),
                message: format!("image {image:?} is not mapped to a local binary in the test kubelet"),
            };
            c.next_start = Some(Instant::now() + Duration::from_secs(2));
            return;
        };
        let facts = PodFacts {
            pod_ip: self.ip.to_string(),
            host_ip: self.ctx.host_ip.clone(),
        };
        let spec = c.spec.clone();
        let mut env_map = match env::container_env(&self.ctx.client, &self.pod, &spec, &facts).await {
            Ok(e) => e,
            Err(e) => {
                let c = &mut self.containers[idx];
                c.state = State::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: e.to_string(),
                };
                c.next_start = Some(Instant::now() + Duration::from_secs(2));
                return;
            }
        };
        let (_, pod_name) = ns_name(&self.pod);
        let mut base = BTreeMap::new();
        base.insert(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        );
        base.insert("HOSTNAME".to_string(), pod_name);
        if let Some(kc) = &kubeconfig {
            base.insert("KUBECONFIG".to_string(), kc.display().to_string());
        }
        for (k, v) in &self.ctx.config.extra_env {
            base.insert(k.clone(), v.clone());
        }
        for (k, v) in base {
            env_map.entry(k).or_insert(v);
        }
        let mut argv: Vec<String> = spec.command.iter().flatten().skip(1).cloned().collect();
        argv.extend(spec.args.iter().flatten().cloned());
        let argv: Vec<String> = argv.iter().map(|a| env::expand(a, &env_map)).collect();

        let cdir = self.dir.join(&spec.name);
        let log = self.dir.join(format!("{}.log", spec.name));
        if let Err(e) = std::fs::create_dir_all(&cdir) {
            tracing::warn!(error = %e, dir = %cdir.display(), "creating container dir");
        }
        let mut cmd = Command::new(&program);
        cmd.args(&argv).env_clear().envs(&env_map).current_dir(&cdir);
        let name = format!("{}/{}", self.name(), spec.name);
        let c = &mut self.containers[idx];
        match proc::spawn(&name, cmd, &log) {
            Ok(p) => {
                let pid = p.pid();
                if c.starts > 0 {
                    c.restart_count += 1;
                }
                c.starts += 1;
                c.container_id = format!(
                    "ringcache://{}-{}",
                    self.pod.metadata.uid.as_deref().unwrap_or("pod"),
                    c.starts
                );
                c.state = State::Running {
                    started_at: rfc3339_now(),
                };
                c.proc = Some(p);
                c.started_instant = Some(Instant::now());
                c.next_start = None;
                c.kill_deadline = None;
                if let Some(r) = &mut c.readiness {
                    r.restart(false);
                }
                if let Some(l) = &mut c.liveness {
                    l.restart(true);
                }
                tracing::info!(container = name, pid, program = %program.display(), ?argv, "started");
                let patch = json!({ "metadata": { "annotations": {
                    format!("{PID_ANNOTATION_PREFIX}{}", spec.name): pid.to_string()
                }}});
                let (_, pod_name) = ns_name(&self.pod);
                if let Err(e) = self
                    .api()
                    .patch(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(pod = %self.name(), error = %e, "annotating pid");
                }
            }
            Err(e) => {
                c.state = State::Waiting {
                    reason: "RunContainerError".into(),
                    message: e.to_string(),
                };
                c.next_start = Some(Instant::now() + Duration::from_secs(2));
            }
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(0);
        Duration::from_secs(secs as u64)
    }

    /// Records the exit of container `idx` and decides about a restart.
    fn on_exit(&mut self, idx: usize, status: std::process::ExitStatus, allow_restart: bool) {
        use std::os::unix::process::ExitStatusExt;
        let policy = self.restart_policy();
        let cfg_initial = self.ctx.config.backoff_initial;
        let cfg_max = self.ctx.config.backoff_max;
        let c = &mut self.containers[idx];
        let started_at = match &c.state {
            State::Running { started_at } => started_at.clone(),
            _ => rfc3339_now(),
        };
        let (exit_code, signal) = match (status.code(), status.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            _ => (255, None),
        };
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        let terminated = State::Terminated {
            exit_code,
            signal,
            reason: reason.into(),
            started_at,
            finished_at: rfc3339_now(),
            container_id: c.container_id.clone(),
        };
        c.proc = None;
        c.kill_deadline = None;
        let restart = allow_restart && (policy == "Always" || (policy == "OnFailure" && exit_code != 0));
        tracing::info!(container = c.spec.name, exit_code, ?signal, restart, "container exited");
        if restart {
            // A container that ran for a while starts over with a short backoff.
            if c.started_instant
                .is_some_and(|t| t.elapsed() > Duration::from_secs(120))
            {
                c.backoff = Duration::ZERO;
            }
            let delay = c.backoff;
            c.backoff = if c.backoff.is_zero() {
                cfg_initial
            } else {
                (c.backoff * 2).min(cfg_max)
            };
            c.last_state = Some(terminated);
            c.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container={}",
                    delay.as_secs(),
                    c.spec.name
                ),
            };
            c.next_start = Some(Instant::now() + delay);
        } else {
            c.state = terminated;
            c.done = true;
        }
    }

    async fn step(&mut self) {
        let ip = IpAddr::V4(self.ip);
        for idx in 0..self.containers.len() {
            // Exits.
            let exited = match self.containers[idx].proc.as_mut().map(|p| p.try_wait()) {
                Some(Ok(Some(st))) => Some(st),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "waiting for container");
                    None
                }
                _ => None,
            };
            if let Some(st) = exited {
                self.on_exit(idx, st, true);
            }
            // Starts and restarts.
            let due = {
                let c = &self.containers[idx];
                !c.done && c.proc.is_none() && c.next_start.is_some_and(|t| Instant::now() >= t)
            };
            if due {
                self.start_container(idx).await;
            }
            // Liveness kill in progress.
            let c = &mut self.containers[idx];
            if let (Some(deadline), Some(p)) = (c.kill_deadline, c.proc.as_ref()) {
                if Instant::now() >= deadline {
                    p.signal(libc::SIGKILL);
                }
            }
            // Probes.
            if c.proc.is_some() && c.kill_deadline.is_none() {
                let spec = c.spec.clone();
                if let Some(r) = &mut c.readiness {
                    r.tick(&spec, ip).await;
                }
                if let Some(l) = &mut c.liveness {
                    if l.tick(&spec, ip).await == ProbeVerdict::BecameFailed {
                        tracing::info!(container = spec.name, "liveness probe failed: killing");
                        if let Some(p) = &c.proc {
                            p.signal(libc::SIGTERM);
                        }
                        let grace = self
                            .pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                            .unwrap_or(30)
                            .max(0) as u64;
                        c.kill_deadline = Some(Instant::now() + Duration::from_secs(grace));
                    }
                }
            }
        }
    }

    fn phase(&self) -> &'static str {
        if self.containers.is_empty() {
            return "Pending";
        }
        if self.containers.iter().all(|c| c.done) {
            let ok = self
                .containers
                .iter()
                .all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
            return if ok { "Succeeded" } else { "Failed" };
        }
        if self.containers.iter().all(|c| c.starts > 0) {
            "Running"
        } else {
            "Pending"
        }
    }

    fn status_json(&mut self, phase_override: Option<&str>) -> Value {
        let all_ready = !self.containers.is_empty() && self.containers.iter().all(|c| c.ready());
        if all_ready != self.ready_transition.0 {
            self.ready_transition = (all_ready, rfc3339_now());
        }
        let ready_time = self.ready_transition.1.clone();
        let tf = |b: bool| if b { "True" } else { "False" };
        let not_ready: Vec<&str> = self
            .containers
            .iter()
            .filter(|c| !c.ready())
            .map(|c| c.spec.name.as_str())
            .collect();
        let mut ready_cond = json!({
            "type": "Ready", "status": tf(all_ready), "lastTransitionTime": ready_time,
        });
        let mut cready_cond = json!({
            "type": "ContainersReady", "status": tf(all_ready), "lastTransitionTime": ready_time,
        });
        if !all_ready {
            let msg = format!("containers with unready status: [{}]", not_ready.join(" "));
            for c in [&mut ready_cond, &mut cready_cond] {
                c["reason"] = json!("ContainersNotReady");
                c["message"] = json!(msg);
            }
        }
        let statuses: Vec<Value> = self
            .containers
            .iter()
            .map(|c| {
                let image = c.spec.image.clone().unwrap_or_default();
                let image_id = self
                    .program_for(&image)
                    .map(|p| format!("ringcache-local://{}", p.display()))
                    .unwrap_or_default();
                let mut s = json!({
                    "name": c.spec.name,
                    "image": image,
                    "imageID": image_id,
                    "ready": c.ready(),
                    "started": c.proc.is_some(),
                    "restartCount": c.restart_count,
                    "state": c.state.to_json(),
                    "lastState": c.last_state.as_ref().map(State::to_json).unwrap_or_else(|| json!({})),
                });
                if !c.container_id.is_empty() {
                    s["containerID"] = json!(c.container_id);
                }
                s
            })
            .collect();
        let start = self.start_time.clone();
        json!({
            "phase": phase_override.unwrap_or(self.phase()),
            "conditions": [
                { "type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": start },
                { "type": "Initialized", "status": "True", "lastTransitionTime": start },
                ready_cond,
                cready_cond,
                { "type": "PodScheduled", "status": "True", "lastTransitionTime": start },
            ],
            "hostIP": self.ctx.host_ip,
            "hostIPs": [{ "ip": self.ctx.host_ip }],
            "podIP": self.ip.to_string(),
            "podIPs": [{ "ip": self.ip.to_string() }],
            "startTime": start,
            "containerStatuses": statuses,
        })
    }

    async fn push(&mut self, status: Value) {
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let (_, name) = ns_name(&self.pod);
        let patch = json!({ "status": status });
        match self
            .api()
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last_status = Some(status),
            Err(e) => tracing::warn!(pod = %self.name(), error = %e, "updating pod status"),
        }
    }

    async fn push_status(&mut self) {
        let s = self.status_json(None);
        self.push(s).await;
    }

    /// Graceful deletion: SIGTERM, SIGKILL after the grace period, final status, then release the pod object.
    async fn terminate(&mut self) {
        let grace = self.grace();
        tracing::info!(pod = %self.name(), grace_s = grace.as_secs(), "terminating pod");
        let deadline = Instant::now() + grace;
        for c in &mut self.containers {
            if let Some(p) = &c.proc {
                p.signal(libc::SIGTERM);
            }
            c.done = true;
            c.next_start = None;
        }
        loop {
            for idx in 0..self.containers.len() {
                let exited = match self.containers[idx].proc.as_mut().map(|p| p.try_wait()) {
                    Some(Ok(Some(st))) => Some(st),
                    _ => None,
                };
                if let Some(st) = exited {
                    self.on_exit(idx, st, false);
                }
            }
            if self.containers.iter().all(|c| c.proc.is_none()) {
                break;
            }
            if Instant::now() >= deadline {
                for c in &mut self.containers {
                    if let Some(p) = &c.proc {
                        p.signal(libc::SIGKILL);
                    }
                }
            }
            if matches!(*self.rx.borrow(), PodUpdate::Gone | PodUpdate::NodeDown) {
                self.kill_all();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Any state left waiting (never started / backing off) is final now.
        for c in &mut self.containers {
            if let State::Waiting { .. } = c.state {
                c.state = State::Terminated {
                    exit_code: 137,
                    signal: None,
                    reason: "ContainerStatusUnknown".into(),
                    started_at: rfc3339_now(),
                    finished_at: rfc3339_now(),
                    container_id: c.container_id.clone(),
                };
            }
        }
        let ok = self
            .containers
            .iter()
            .all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
        let s = self.status_json(Some(if ok { "Succeeded" } else { "Failed" }));
        self.push(s).await;
        let (_, name) = ns_name(&self.pod);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api().delete(&name, &dp).await {
            Ok(_) => tracing::info!(pod = %self.name(), "pod released"),
            Err(e) => tracing::warn!(pod = %self.name(), error = %e, "final pod delete"),
        }
    }
}

/// Where a pod's container logs go.
pub fn log_path(run_dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    run_dir
        .join("pods")
        .join(format!("{namespace}_{pod}"))
        .join(format!("{container}.log"))
}
