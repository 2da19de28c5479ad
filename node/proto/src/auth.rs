//! The control port's credential: a token the operator creates (in a Secret), handed
//! to every node as `RINGCACHE_CONTROL_TOKEN` and sent on every RPC as
//! `authorization: Bearer <token>`. A node with a token refuses an RPC without it
//! (`UNAUTHENTICATED`).

/// The gRPC metadata key that carries the credential.
pub const METADATA_KEY: &str = "authorization";

/// The metadata value for `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Whether the metadata `value` carries `token`. Compares in time independent of
/// where the first difference is, so the comparison does not leak the token.
pub fn verify(value: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = value else { return false };
    let Some(offered) = value.strip_prefix(b"Bearer ") else {
        return false;
    };
    let expected = token.as_bytes();
    if offered.len() != expected.len() {
        return false;
    }
    offered.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A token that cannot be sent as gRPC metadata (it must be visible ASCII).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("control token: must be non-empty visible ASCII (no spaces or control characters)")]
pub struct InvalidToken;

/// Checks that `token` can be carried in metadata.
pub fn check_token(token: &str) -> Result<(), InvalidToken> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidToken);
    }
    Ok(())
}

/// Client side: adds the credential to every request.
#[cfg(feature = "client")]
#[derive(Debug, Clone)]
pub struct Bearer(tonic::metadata::AsciiMetadataValue);

#[cfg(feature = "client")]
impl Bearer {
    pub fn new(token: &str) -> Result<Bearer, InvalidToken> {
        check_token(token)?;
        bearer(token).parse().map(Bearer).map_err(|_| InvalidToken)
    }
}

#[cfg(feature = "client")]
impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(METADATA_KEY, self.0.clone());
        Ok(request)
    }
}

/// A control client that sends the credential on every call.
#[cfg(feature = "client")]
pub type Client = crate::pb::control_client::ControlClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

/// A [`Client`] over `channel` carrying `token`.
#[cfg(feature = "client")]
pub fn client(channel: tonic::transport::Channel, token: &str) -> Result<Client, InvalidToken> {
    Ok(crate::pb::control_client::ControlClient::with_interceptor(
        channel,
        Bearer::new(token)?,
    ))
}

/// Server side: refuses every call that does not carry `token` with `UNAUTHENTICATED`.
#[cfg(feature = "server")]
#[derive(Debug, Clone)]
pub struct RequireToken(std::sync::Arc<str>);

#[cfg(feature = "server")]
impl RequireToken {
    pub fn new(token: &str) -> Result<RequireToken, InvalidToken> {
        check_token(token)?;
        Ok(RequireToken(token.into()))
    }
}

#[cfg(feature = "server")]
impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let offered = request.metadata().get(METADATA_KEY).map(|v| v.as_bytes());
        if verify(offered, &self.0) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(
                "the control port obeys only the operator: send `authorization: Bearer <control token>`",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_verify_exactly() {
        let v = bearer("s3cret");
        assert!(verify(Some(v.as_bytes()), "s3cret"));
        assert!(!verify(Some(v.as_bytes()), "s3cre"));
        assert!(!verify(Some(b"Bearer s3creT"), "s3cret"));
        assert!(!verify(Some(b"s3cret"), "s3cret"));
        assert!(!verify(None, "s3cret"));
        assert!(check_token("a-B_9.~").is_ok());
        assert_eq!(check_token(""), Err(InvalidToken));
        assert_eq!(check_token("two words"), Err(InvalidToken));
    }
}
