//! Minimal plain-HTTP/1.0 GET over loopback, for etcd's /health and kubelet HTTP probes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} timed out")]
    Timeout { addr: SocketAddr },
    #[error("{addr} sent no valid HTTP status line")]
    BadResponse { addr: SocketAddr },
}

/// Sends `GET path` with `Host: host` and returns (status code, body).
pub async fn get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<(u16, String), HttpError> {
    tokio::time::timeout(timeout, get_inner(addr, host, path))
        .await
        .map_err(|_| HttpError::Timeout { addr })?
}

async fn get_inner(addr: SocketAddr, host: &str, path: &str) -> Result<(u16, String), HttpError> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|source| HttpError::Connect { addr, source })?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: ringcache-test-kubelet\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|source| HttpError::Io { addr, source })?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|source| HttpError::Io { addr, source })?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or(HttpError::BadResponse { addr })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// True when a TCP connection to `addr` succeeds within `timeout`.
pub async fn tcp_ok(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, TcpStream::connect(addr)).await, Ok(Ok(_)))
}
