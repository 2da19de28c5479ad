//! Leader election against the real control plane, as the chart's ServiceAccount (so the
//! chart's Lease RBAC is what is exercised): of two candidates exactly one leads; when the
//! leader dies a standby takes over once the lease runs out; when the leader shuts down it
//! releases the Lease and a standby takes over at its next attempt; a leader that can no
//! longer renew steps down by its renew deadline.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use ringcache_operator::leader::{LeaderElector, Leadership, LeaseSettings};
use ringcache_tests::{shared, TestEnv};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

const LEASE: &str = "rc-ringcache-operator";
const LEASE_DURATION: Duration = Duration::from_secs(4);
const RENEW_DEADLINE: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);
/// Room for apiserver latency on a busy machine.
const SLACK: Duration = Duration::from_secs(3);

fn chart() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/ringcache")
        .to_string_lossy()
        .into_owned()
}

/// A client that authenticates as the chart's ServiceAccount in `ns`.
async fn service_account_client(env: &TestEnv, ns: &str) -> Client {
    let token = env
        .kubectl_run(&["create", "token", LEASE, "-n", ns, "--duration=1h"], None)
        .expect("a token for the chart's ServiceAccount");
    let admin = Kubeconfig::read_from(&env.kubeconfig).expect("admin kubeconfig");
    let ca = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .expect("the cluster's CA");
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: operator\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: operator\n    namespace: {ns}\ncurrent-context: c\n",
        server = env.server,
        token = token.trim(),
    );
    let kc = Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

struct Candidate {
    name: &'static str,
    leadership: Leadership,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ringcache_operator::leader::LeaderError>>,
}

fn start(client: &Client, ns: &str, name: &'static str) -> Candidate {
    let settings = LeaseSettings {
        namespace: ns.to_owned(),
        name: LEASE.to_owned(),
        identity: name.to_owned(),
        lease_duration: LEASE_DURATION,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY,
    };
    let (elector, leadership) = LeaderElector::new(client.clone(), settings);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(elector.run(async move {
        let _ = rx.await;
    }));
    Candidate {
        name,
        leadership,
        stop: Some(tx),
        task,
    }
}

impl Candidate {
    /// Graceful shutdown: steps down and releases the Lease.
    async fn shut_down(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let r = timeout(RENEW_DEADLINE + SLACK, self.task)
            .await
            .expect("the elector stops promptly")
            .expect("the elector task");
        r.expect("releasing the Lease");
    }

    /// A crash: the task is gone without releasing anything.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        assert!(
            !self.leadership.is_leader(),
            "{}: a dead elector must not lead",
            self.name
        );
    }
}

async fn holder(leases: &Api<Lease>) -> (Option<String>, Option<i32>) {
    let l = leases.get(LEASE).await.expect("get Lease");
    let spec = l.spec.unwrap_or_default();
    (spec.holder_identity, spec.lease_transitions)
}

/// Exactly one of `cs` leads at every sample for `how_long`; returns its index.
async fn exactly_one_leads(cs: &[&Candidate], how_long: Duration) -> usize {
    let end = Instant::now() + how_long;
    let mut leader = None;
    while Instant::now() < end {
        let leading: Vec<usize> = (0..cs.len()).filter(|&i| cs[i].leadership.is_leader()).collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        if let [i] = leading[..] {
            if let Some(prev) = leader {
                assert_eq!(prev, i, "leadership moved without a failure");
            }
            leader = Some(i);
        }
        sleep(Duration::from_millis(50)).await;
    }
    leader.expect("nobody led")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_failover_release_and_step_down() {
    let env = shared().expect("starting the shared control plane");
    let ns = env.namespace("leader").await.expect("namespace");
    // The chart's ServiceAccount and RBAC, rendered for a release named rc in `ns`.
    let rbac = ringcache_tests::run_with_stdin(
        env.helm(),
        &[
            "template",
            "rc",
            &chart(),
            "--namespace",
            &ns,
            "-s",
            "templates/serviceaccount.yaml",
            "-s",
            "templates/rbac.yaml",
        ],
        None,
    )
    .expect("helm template");
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(&rbac))
        .expect("apply the chart's RBAC");
    let client = service_account_client(env, &ns).await;
    let leases: Api<Lease> = Api::namespaced(env.client().await.expect("admin client"), &ns);

    // Two candidates, no Lease yet: exactly one wins the race to create it.
    let a = start(&client, &ns, "op-a");
    let b = start(&client, &ns, "op-b");
    timeout(Duration::from_secs(10), async {
        loop {
            if a.leadership.is_leader() || b.leadership.is_leader() {
                break;
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("nobody became the leader");
    let i = exactly_one_leads(&[&a, &b], LEASE_DURATION * 2).await;
    let (leader, standby) = if i == 0 { (a, b) } else { (b, a) };
    assert!(leader.leadership.is_leader());
    assert_eq!(holder(&leases).await.0.as_deref(), Some(leader.name));

    // The leader dies without a word: the standby takes over once the lease runs out,
    // not before (the dead leader's last renewal was at most one retry period earlier).
    let mut standby_leadership = standby.leadership.clone();
    let died = Instant::now();
    leader.kill().await;
    timeout(LEASE_DURATION + RETRY * 2 + SLACK, standby_leadership.until_leader())
        .await
        .expect("the standby did not take over")
        .expect("the standby's elector stopped");
    let took = died.elapsed();
    assert!(
        took >= LEASE_DURATION - RETRY * 2,
        "took over after {took:?}, before the lease ran out"
    );
    let (h, transitions) = holder(&leases).await;
    assert_eq!(h.as_deref(), Some(standby.name));
    assert_eq!(transitions, Some(1));

    // A new standby; the leader shuts down gracefully and releases the Lease, so the
    // standby takes over at its next attempt, well before a lease duration.
    let c = start(&client, &ns, "op-c");
    exactly_one_leads(&[&standby, &c], LEASE_DURATION).await;
    assert!(standby.leadership.is_leader() && !c.leadership.is_leader());
    let mut c_leadership = c.leadership.clone();
    let stopped = Instant::now();
    let old = standby.leadership.clone();
    standby.shut_down().await;
    assert!(!old.is_leader());
    timeout(LEASE_DURATION, c_leadership.until_leader())
        .await
        .expect("the standby did not take the released Lease")
        .expect("elector stopped");
    let took = stopped.elapsed();
    assert!(
        took < LEASE_DURATION - RETRY,
        "took over after {took:?}: the Lease was not released"
    );
    assert_eq!(holder(&leases).await, (Some("op-c".to_owned()), Some(2)));

    // The leader loses access to the Lease: it steps down by its renew deadline.
    env.kubectl_run(
        &[
            "delete",
            "rolebinding",
            "-n",
            &ns,
            "rc-ringcache-operator-leader-election",
        ],
        None,
    )
    .expect("delete the RoleBinding");
    let lost = Instant::now();
    timeout(RENEW_DEADLINE + SLACK, c_leadership.until_not_leader())
        .await
        .expect("the leader kept leading without renewing");
    // Not at the first failed renewal: it leads on through failures until the deadline.
    let after = lost.elapsed();
    assert!(after >= RENEW_DEADLINE - RETRY * 2, "stepped down after {after:?}");
    assert!(!c.leadership.is_leader());
    // Access back: it holds the Lease still, so it leads again.
    env.kubectl_run(&["apply", "-n", &ns, "-f", "-"], Some(&rbac))
        .expect("restore the RBAC");
    timeout(LEASE_DURATION + SLACK, c_leadership.until_leader())
        .await
        .expect("no leader after access came back")
        .expect("elector stopped");
    c.shut_down().await;
    let (h, _) = holder(&leases).await;
    assert_eq!(h, None, "a graceful shutdown releases the Lease");
    let _ = env.kubectl_run(&["delete", "namespace", &ns, "--wait=false"], None);
}
