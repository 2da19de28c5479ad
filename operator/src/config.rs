//! Flags of `ringcache-operator run`; each is also an environment variable
//! `RINGCACHE_OPERATOR_<FLAG>`.

use std::net::IpAddr;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};

use crate::leader::LeaseSettings;

/// Settings of `ringcache-operator run`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Config {
    /// Address of the HTTP port (/metrics, /healthz, /readyz). In a pod: the pod IP
    /// (the Helm chart passes `$(POD_IP)`).
    #[arg(long, env = "RINGCACHE_OPERATOR_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Port of the HTTP server.
    #[arg(long, env = "RINGCACHE_OPERATOR_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,

    /// Log format.
    #[arg(long, env = "RINGCACHE_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Watch CacheClusters in this namespace only. Default: all namespaces.
    #[arg(long, env = "RINGCACHE_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,

    /// Create a NetworkPolicy per CacheCluster that admits only the operator to the
    /// nodes' control port (`--network-policy=false` to leave network policy to others).
    #[arg(
        long,
        env = "RINGCACHE_OPERATOR_NETWORK_POLICY",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 1,
        value_name = "BOOL"
    )]
    pub network_policy: bool,

    /// Labels of the operator's own pods, `k=v,k=v`: the NetworkPolicy admits pods with
    /// them (in any namespace) to the nodes' control port. The Helm chart passes its
    /// selector labels.
    #[arg(
        long,
        env = "RINGCACHE_OPERATOR_OPERATOR_SELECTOR",
        default_value = "app.kubernetes.io/name=ringcache,app.kubernetes.io/component=operator"
    )]
    pub operator_selector: String,

    /// Seconds a CacheCluster's pods may take to become Ready before its Progressing
    /// condition turns False (ProgressDeadlineExceeded) and it counts as Degraded.
    #[arg(long, env = "RINGCACHE_OPERATOR_PROGRESS_DEADLINE_SECONDS", default_value_t = 300)]
    pub progress_deadline_seconds: u32,

    /// Namespace of the leader-election Lease. Default: $POD_NAMESPACE, else the
    /// client's default namespace (the service account's, in a pod).
    #[arg(long, env = "RINGCACHE_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, env = "RINGCACHE_OPERATOR_LEASE_NAME", default_value = "ringcache-operator")]
    pub lease_name: String,

    /// This replica's identity in the Lease. Default: $POD_NAME.
    #[arg(long, env = "RINGCACHE_OPERATOR_IDENTITY")]
    pub identity: Option<String>,

    /// Seconds a standby waits after the last renewal it saw before it takes the Lease.
    #[arg(long, env = "RINGCACHE_OPERATOR_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u32,

    /// Seconds the leader keeps leading without a successful renewal; after that it
    /// steps down. Less than --lease-duration-seconds.
    #[arg(long, env = "RINGCACHE_OPERATOR_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    pub renew_deadline_seconds: u32,

    /// Seconds between attempts to acquire or renew the Lease. Less than
    /// --renew-deadline-seconds.
    #[arg(long, env = "RINGCACHE_OPERATOR_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    pub retry_period_seconds: u32,

    /// Pod name from the downward API: the default --identity.
    #[arg(long, env = "POD_NAME", hide = true)]
    pub pod_name: Option<String>,

    /// Pod namespace from the downward API: the default --lease-namespace.
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pub pod_namespace: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no leader-election identity: pass --identity or set RINGCACHE_OPERATOR_IDENTITY or POD_NAME")]
    NoIdentity,
    #[error("--{flag} must not be empty")]
    Empty { flag: &'static str },
    #[error("--retry-period-seconds ({retry}) must be at least 1 and less than --renew-deadline-seconds ({renew})")]
    RetryPeriod { retry: u32, renew: u32 },
    #[error("--renew-deadline-seconds ({renew}) must be less than --lease-duration-seconds ({lease})")]
    RenewDeadline { renew: u32, lease: u32 },
    #[error("--lease-duration-seconds ({0}) must fit a Lease's int32 leaseDurationSeconds")]
    LeaseDuration(u32),
    #[error("--operator-selector: {0:?} is not key=value")]
    Labels(String),
}

impl Config {
    /// The leader-election settings, checked. `default_namespace` is the client's default
    /// namespace, used when neither --lease-namespace nor POD_NAMESPACE is set.
    pub fn lease_settings(&self, default_namespace: &str) -> Result<LeaseSettings, ConfigError> {
        let identity = self
            .identity
            .clone()
            .or_else(|| self.pod_name.clone())
            .ok_or(ConfigError::NoIdentity)?;
        if identity.is_empty() {
            return Err(ConfigError::Empty { flag: "identity" });
        }
        let namespace = self
            .lease_namespace
            .clone()
            .or_else(|| self.pod_namespace.clone())
            .unwrap_or_else(|| default_namespace.to_owned());
        if namespace.is_empty() {
            return Err(ConfigError::Empty {
                flag: "lease-namespace",
            });
        }
        if self.lease_name.is_empty() {
            return Err(ConfigError::Empty { flag: "lease-name" });
        }
        let (lease, renew, retry) = (
            self.lease_duration_seconds,
            self.renew_deadline_seconds,
            self.retry_period_seconds,
        );
        if retry == 0 || retry >= renew {
            return Err(ConfigError::RetryPeriod { retry, renew });
        }
        if renew >= lease {
            return Err(ConfigError::RenewDeadline { renew, lease });
        }
        if i32::try_from(lease).is_err() {
            return Err(ConfigError::LeaseDuration(lease));
        }
        Ok(LeaseSettings {
            namespace,
            name: self.lease_name.clone(),
            identity,
            lease_duration: Duration::from_secs(lease.into()),
            renew_deadline: Duration::from_secs(renew.into()),
            retry_period: Duration::from_secs(retry.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("ringcache-operator").chain(args.iter().copied())).map(|c| c.config)
    }

    #[test]
    fn defaults() {
        // The test process may run with POD_NAME / POD_NAMESPACE set (in a test pod).
        let c = parse(&["--pod-name", "op-0", "--pod-namespace", "ops"]).expect("parse");
        assert_eq!(c.bind, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.http_port, 8080);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.network_policy);
        assert_eq!(c.lease_name, "ringcache-operator");
        let l = c.lease_settings("default").expect("settings");
        assert_eq!(l.identity, "op-0");
        assert_eq!(l.namespace, "ops");
        assert_eq!(l.name, "ringcache-operator");
        assert_eq!(l.lease_duration, Duration::from_secs(15));
        assert_eq!(l.renew_deadline, Duration::from_secs(10));
        assert_eq!(l.retry_period, Duration::from_secs(2));
    }

    #[test]
    fn flags_win_over_the_downward_api() {
        let c = parse(&[
            "--bind",
            "198.18.0.7",
            "--log-format",
            "json",
            "--network-policy=false",
            "--namespace",
            "team-a",
            "--identity",
            "me",
            "--lease-namespace",
            "leases",
            "--pod-name",
            "op-0",
            "--pod-namespace",
            "ops",
        ])
        .expect("parse");
        assert_eq!(c.bind, IpAddr::from([198, 18, 0, 7]));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.network_policy);
        assert_eq!(c.namespace.as_deref(), Some("team-a"));
        let l = c.lease_settings("default").expect("settings");
        assert_eq!((l.identity.as_str(), l.namespace.as_str()), ("me", "leases"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse(&["--log-format", "xml"]).expect_err("bad format").to_string();
        assert!(e.contains("--log-format"), "{e}");
        let e = parse(&["--bind", "pod-ip"]).expect_err("bad address").to_string();
        assert!(e.contains("--bind"), "{e}");
        let e = parse(&["--network-policy", "maybe"]).expect_err("bad bool").to_string();
        assert!(e.contains("--network-policy"), "{e}");
    }

    #[test]
    fn lease_timing_must_be_ordered() {
        let base = ["--identity", "me", "--lease-namespace", "ns"];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args).expect("parse").lease_settings("default")
        };
        assert!(matches!(
            with(&["--renew-deadline-seconds", "15"]),
            Err(ConfigError::RenewDeadline { renew: 15, lease: 15 })
        ));
        assert!(matches!(
            with(&["--retry-period-seconds", "10"]),
            Err(ConfigError::RetryPeriod { retry: 10, renew: 10 })
        ));
        assert!(matches!(
            with(&["--retry-period-seconds", "0"]),
            Err(ConfigError::RetryPeriod { .. })
        ));
        assert!(with(&[
            "--lease-duration-seconds",
            "4",
            "--renew-deadline-seconds",
            "3",
            "--retry-period-seconds",
            "1"
        ])
        .is_ok());
    }

    #[test]
    fn identity_is_required_and_namespace_falls_back() {
        let c = Config {
            identity: None,
            pod_name: None,
            lease_namespace: None,
            pod_namespace: None,
            ..parse(&["--identity", "x"]).expect("parse")
        };
        assert!(matches!(c.lease_settings("default"), Err(ConfigError::NoIdentity)));
        let c = Config {
            identity: Some("me".into()),
            ..c
        };
        assert_eq!(
            c.lease_settings("from-client").expect("settings").namespace,
            "from-client"
        );
        let c = Config {
            identity: Some(String::new()),
            ..c
        };
        assert!(matches!(
            c.lease_settings("default"),
            Err(ConfigError::Empty { flag: "identity" })
        ));
    }
}
