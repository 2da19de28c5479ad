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

use crate::metrics::{self, Gauges};
use crate::server::state::ServerState;
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

/// Current gauges for /metrics and INFO.
pub fn gauges(store: &Store, state: &ServerState) -> Gauges {
    let (keys, expires) = store.key_counts();
    let (hits, misses) = store.hits_misses();
    Gauges {
        keys,
        expires,
        used_memory: store.mem.used(),
        maxmemory: store.mem.max(),
        rss: metrics::rss_bytes(),
        hits,
        misses,
        evicted: store.stats.evicted_keys.load(Ordering::Relaxed),
        expired: store.stats.expired_keys.load(Ordering::Relaxed),
        connected_clients: state.clients.count(),
        total_connections: state.total_connections.load(Ordering::Relaxed),
        replication: {
            let mut s = crate::replication::render_metrics(&state.replication.status());
            s.push_str(&crate::handover::render_metrics(&state.handovers.snapshots()));
            s
        },
    }
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
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            metrics::render(&state.metrics, &gauges(store, state)),
        ),
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
