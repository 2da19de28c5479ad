//! The operator's HTTP port: `GET /metrics`, `/healthz` (the process serves), `/readyz`
//! (it reached the apiserver: a standby is ready too, it only waits for the Lease). A
//! deliberately small HTTP/1.1 server: one request per connection, bounded head, no body.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

const MAX_REQUEST: usize = 8 * 1024;

/// What the HTTP port serves from.
pub struct Site {
    pub ready: AtomicBool,
    /// The `/metrics` body.
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Serves `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, site: Arc<Site>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let site = site.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &site).await {
                debug!(error = %e, "http request failed");
            }
        });
    }
}

/// (status line, content type, body) for a request line.
fn respond(site: &Site, method: &str, path: &str) -> (&'static str, &'static str, String) {
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", (site.metrics)()),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".into()),
        ("GET", "/readyz") if site.ready.load(Ordering::Relaxed) => ("200 OK", "text/plain", "ready\n".into()),
        ("GET", "/readyz") => ("503 Service Unavailable", "text/plain", "not ready\n".into()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "method not allowed\n".into()),
    }
}

async fn handle(mut stream: TcpStream, site: &Site) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
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
    let (status, ctype, body) = respond(site, method, path.split('?').next().unwrap_or(""));
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let site = Site {
            ready: AtomicBool::new(false),
            metrics: Box::new(|| "m 1\n".into()),
        };
        assert_eq!(respond(&site, "GET", "/metrics").2, "m 1\n");
        assert_eq!(respond(&site, "GET", "/readyz").0, "503 Service Unavailable");
        site.ready.store(true, Ordering::Relaxed);
        assert_eq!(respond(&site, "GET", "/readyz").0, "200 OK");
        assert_eq!(respond(&site, "GET", "/healthz").0, "200 OK");
        assert_eq!(respond(&site, "GET", "/x").0, "404 Not Found");
        assert_eq!(respond(&site, "POST", "/metrics").0, "405 Method Not Allowed");
    }
}
