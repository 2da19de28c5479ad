//! The gRPC control service (operator → node), see DESIGN.md §4.
//!
//! `pb` is generated from `node/proto/ringcache/control/v1/control.proto` and checked
//! in; regenerate it with `cargo run -p ringcache-node --example codegen`. The service
//! ([`service`]) only converts wire types ([`convert`]) to the pure types of
//! [`crate::cluster::topology`] and calls [`crate::cluster::state::ClusterState`].
//! [`bootstrap`] implements `ringcache-node cluster create`.

pub mod bootstrap;
pub mod convert;
pub mod service;

/// Generated protobuf messages, client and server for `ringcache.control.v1`.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used, missing_docs, unreachable_pub)]
#[rustfmt::skip]
pub mod pb {
    include!("pb/ringcache.control.v1.rs");
}

pub use service::ControlService;

use tokio_util::sync::CancellationToken;

/// How long open connections may take to finish after shutdown before they are cut.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves the control service on `listener` until `shutdown` is cancelled; then stops
/// accepting, lets in-flight RPCs finish for up to [`SHUTDOWN_GRACE`] and returns (the
/// caller drops the runtime, which closes whatever is still open).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: ControlService,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder().serve_with_incoming_shutdown(
        pb::control_server::ControlServer::new(service),
        incoming,
        shutdown.clone().cancelled_owned(),
    );
    tokio::select! {
        result = server => result,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::debug!("control: connections still open after the shutdown grace period; closing them");
            Ok(())
        }
    }
}
