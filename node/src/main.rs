use clap::Parser;
use ringcache_node::config::Config;
use ringcache_node::launch::NodeHandle;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `ringcache-node cluster …`: administration subcommands (see control::bootstrap).
    if std::env::args_os().nth(1).is_some_and(|a| a == "cluster") {
        init_logging("text");
        std::process::exit(ringcache_node::control::bootstrap::run_cli(std::env::args_os().skip(2)));
    }
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            // One line naming the flag; clap's first line does exactly that.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("ringcache-node: {}", first.trim_start_matches("error: "));
            std::process::exit(2);
        }
    };
    init_logging(&config.log_format);
    // Keys and values live in huge-page regions when the host allows them on request.
    let huge_pages = ringcache_node::store::allow_huge_pages();
    tracing::debug!(huge_pages, "transparent huge pages for the keyspace");
    // Signal handlers are installed before the node reports ready, so a SIGTERM that
    // arrives right after "ready" still shuts down gracefully.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringcache-node: cannot start the signal runtime: {e}");
            std::process::exit(1);
        }
    };
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let _guard = rt.enter();
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("ringcache-node: cannot install signal handlers: {e}");
                std::process::exit(1);
            }
        }
    };
    let node = match NodeHandle::start(&config) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("ringcache-node: {e}");
            std::process::exit(1);
        }
    };
    let token = node.shutdown_token();
    let (mut term, mut int) = signals;
    rt.block_on(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = token.cancelled() => {}
        }
        token.cancel();
    });
    node.shutdown();
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGCACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
