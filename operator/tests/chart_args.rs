//! The Helm chart's Deployment passes flags `ringcache-operator run` accepts, with the values
//! they come from, and the Lease it names is the one its Role lets the operator update.

use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::Role;
use ringcache_operator::config::{Config, LogFormat};

#[derive(Debug, Parser)]
enum Cli {
    Run(Config),
}

fn helm_template(show: &str, set: &[&str]) -> String {
    let bin = ringcache_tests::bins::k8s_bin_dir().expect("the pinned helm (bash tests/k8s/build.sh)");
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/ringcache");
    let mut cmd = Command::new(bin.join("helm"));
    cmd.args(["template", "rc"])
        .arg(&chart)
        .args(["--namespace", "ops", "--show-only", show]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("running helm template");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The operator's argv as the kubelet would expand it, parsed as `ringcache-operator` does.
fn parsed_config(set: &[&str]) -> (Config, Deployment) {
    let yaml = helm_template("templates/deployment.yaml", set);
    let d: Deployment = serde_saphyr::from_str(&yaml).expect("a Deployment");
    let c = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].clone())
        .expect("a container");
    let args: Vec<String> = c
        .args
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.replace("$(POD_IP)", "198.18.0.9"))
        .collect();
    // POD_NAME / POD_NAMESPACE come from the downward API as env; given as their hidden flags here.
    let argv = ["ringcache-operator"]
        .into_iter()
        .map(str::to_owned)
        .chain(args)
        .chain(["--pod-name", "rc-op-0", "--pod-namespace", "ops"].map(str::to_owned));
    let Cli::Run(config) = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("the chart's args: {e}"));
    (config, d)
}

#[test]
fn the_deployment_args_parse_into_the_configured_values() {
    let (config, d) = parsed_config(&[]);
    assert_eq!(config.bind.to_string(), "198.18.0.9");
    assert_eq!(config.http_port, 8080);
    assert_eq!(config.log_format, LogFormat::Text);
    assert!(config.network_policy);
    assert_eq!(config.namespace, None);
    let lease = config.lease_settings("unused").expect("lease settings");
    assert_eq!(lease.identity, "rc-op-0");
    assert_eq!(lease.namespace, "ops");
    assert_eq!(lease.lease_duration.as_secs(), 15);
    assert_eq!(lease.renew_deadline.as_secs(), 10);
    assert_eq!(lease.retry_period.as_secs(), 2);

    // Every env var the flags fall back on comes from the downward API.
    let env = d
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers[0].env.clone())
        .unwrap_or_default();
    for name in ["POD_NAME", "POD_NAMESPACE", "POD_IP"] {
        assert!(
            env.iter()
                .any(|e| e.name == name && e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).is_some()),
            "{name}"
        );
    }

    // The Role allows get/update on exactly the Lease the operator is told to use.
    let rbac = helm_template("templates/rbac.yaml", &[]);
    let role_doc = rbac
        .split("\n---")
        .find(|doc| doc.contains("kind: Role\n"))
        .expect("a Role");
    let role: Role = serde_saphyr::from_str(role_doc).expect("parse the Role");
    let named: Vec<String> = role
        .rules
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.verbs.contains(&"update".to_owned()))
        .flat_map(|r| r.resource_names.unwrap_or_default())
        .collect();
    assert_eq!(named, vec![lease.name.clone()]);
}

#[test]
fn values_reach_the_flags() {
    let (config, _) = parsed_config(&[
        "networkPolicy.enabled=false",
        "watchNamespace=team-a",
        "logFormat=json",
        "httpPort=9090",
        "leaderElection.leaseDurationSeconds=30,leaderElection.renewDeadlineSeconds=20,leaderElection.retryPeriodSeconds=5",
    ]);
    assert!(!config.network_policy);
    assert_eq!(config.namespace.as_deref(), Some("team-a"));
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.http_port, 9090);
    let lease = config.lease_settings("unused").expect("lease settings");
    assert_eq!(
        (
            lease.lease_duration.as_secs(),
            lease.renew_deadline.as_secs(),
            lease.retry_period.as_secs()
        ),
        (30, 20, 5)
    );
}
