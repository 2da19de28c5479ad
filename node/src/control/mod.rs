//! The gRPC control service (operator → node), see DESIGN.md §4.
//!
//! The messages, the generated server and the wire conversion (with its field-named
//! errors) live in the `ringcache-proto` crate. The service ([`service`]) only
//! converts with `ringcache_proto::convert` and calls the domain state
//! ([`crate::cluster::ClusterState`], the handovers, the store).
//! [`bootstrap`] implements `ringcache-node cluster create`.

pub mod bootstrap;
pub mod service;

use ringcache_proto::auth::RequireToken;
use ringcache_proto::pb;
pub use service::ControlService;
use tonic::service::Interceptor;

use tokio_util::sync::CancellationToken;

/// How long open connections may take to finish after shutdown before they are cut.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves the control service on `listener` until `shutdown` is cancelled; then stops
/// accepting, lets in-flight RPCs finish for up to [`SHUTDOWN_GRACE`] and returns (the
/// caller drops the runtime, which closes whatever is still open). With `auth`, every
/// RPC without the control token is refused (`UNAUTHENTICATED`); without it (a
/// standalone node started with no token) the port serves as it is.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: ControlService,
    auth: Option<RequireToken>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut auth = auth;
    let check = move |request: tonic::Request<()>| match auth.as_mut() {
        Some(check) => check.call(request),
        None => Ok(request),
    };
    let server = tonic::transport::Server::builder().serve_with_incoming_shutdown(
        pb::control_server::ControlServer::with_interceptor(service, check),
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
