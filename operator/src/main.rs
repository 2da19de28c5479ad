//! `ringcache-operator`: `crd` prints the CacheCluster CRD as YAML; `run` runs the operator.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringcache_operator::config::{Config, LogFormat};

/// ringcache operator: runs CacheCluster resources as sharded, replicated ringcache-node pods.
#[derive(Debug, Parser)]
#[command(name = "ringcache-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CacheCluster CustomResourceDefinition as YAML (what crds/ holds).
    Crd,
    /// Run the operator (leader election, controllers, /metrics /healthz /readyz).
    Run(Box<Config>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print_crd(),
        Command::Run(config) => run(*config),
    }
}

fn print_crd() -> ExitCode {
    let yaml = match ringcache_operator::crd::crd_yaml() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("ringcache-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("ringcache-operator: writing the CRD to stdout: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn run(config: Config) -> ExitCode {
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "starting the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ringcache_operator::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "ringcache-operator failed");
            ExitCode::FAILURE
        }
    }
}

/// `e: its source: its source…`, so a log line carries the whole cause.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

/// Logs to stderr; `RINGCACHE_OPERATOR_LOG` (or `RUST_LOG`) filters, default `info`.
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGCACHE_OPERATOR_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
