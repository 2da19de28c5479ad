//! Admin HTTP port: `GET /metrics` (Prometheus text), `/healthz` (process alive),
//! `/readyz` (accepting clients). A deliberately tiny HTTP/1.1 server: one request per
//! connection, bounded header size, no body.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::cmd::registry;
use crate::metrics;
use crate::state::ServerState;
use crate::store::Store;

const MAX_REQUEST: usize = 8 * 1024;

/// Serves the admin port until `shutdown`.
pub async fn serve(listener: TcpListener, store: Arc<Store>, state: Arc<ServerState>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (store, state) = (store.clone(), state.clone());
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &store, &state).await {
                        debug!(error = %e, "admin request failed");
                    }
                });
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The whole `/metrics` page.
fn metrics_page(store: &Store, state: &ServerState) -> String {
    let names: Vec<&str> = registry().commands.iter().map(|c| c.name).collect();
    let mut page = metrics::render(
        &state.metrics,
        &names,
        &state.gauges(store),
        &state.replication.status(),
        &state.handovers.snapshots(),
    );
    metrics::render_hot_keys(&mut page, &state.hotkeys.top_k(crate::store::now_ms()));
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let spread = &state.hotkeys.spread;
    metrics::render_spread_reads(&mut page, count(&spread.primary), count(&spread.replica));
    let shipped = &state.replication.counters;
    metrics::render_shipped(
        &mut page,
        count(&shipped.bytes_shipped),
        count(&shipped.commands_shipped),
        count(&shipped.refetches_served),
    );
    page
}

async fn handle(mut stream: TcpStream, store: &Store, state: &ServerState) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > MAX_REQUEST {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics_page(store, state)),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") => {
            if state.ready.load(Ordering::Relaxed) {
                ("200 OK", "text/plain", "ready\n".to_string())
            } else {
                ("503 Service Unavailable", "text/plain", "not ready\n".to_string())
            }
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
