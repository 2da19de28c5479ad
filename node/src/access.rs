//! What every RESP connection of this node is held to, in both directions: the password
//! (clients `AUTH` with it; this node `AUTH`s with it to its peers, since the nodes of a
//! cluster share one) and the request limits (the parser's, Redis' smaller pre-`AUTH`
//! ones, and the cap on a client's buffered, incomplete request).

use parking_lot::RwLock;

use crate::resp::Limits;

/// Password and limits, shared by the client ports and the node-to-node links.
#[derive(Debug)]
pub struct Access {
    requirepass: RwLock<Option<String>>,
    /// Limits of an authenticated connection (and of peers' replies).
    pub limits: Limits,
    /// Maximum bytes a connection may have buffered in an incomplete request.
    pub max_query_buffer: usize,
}

impl Access {
    pub fn new(requirepass: Option<String>, limits: Limits, max_query_buffer: usize) -> Access {
        Access {
            requirepass: RwLock::new(requirepass),
            limits,
            max_query_buffer,
        }
    }

    /// The password, if one is set (`CONFIG SET requirepass` changes it).
    pub fn requirepass(&self) -> Option<String> {
        self.requirepass.read().clone()
    }

    pub fn set_requirepass(&self, password: Option<String>) {
        *self.requirepass.write() = password;
    }

    /// Whether a new connection must authenticate first.
    pub fn auth_required(&self) -> bool {
        self.requirepass.read().is_some()
    }

    /// The limits a client's next request is parsed with: before AUTH on a server with
    /// a password, Redis' small ones (see [`Limits::unauthenticated`]).
    pub fn request_limits(&self, authenticated: bool) -> Limits {
        if authenticated {
            self.limits
        } else {
            self.limits.unauthenticated()
        }
    }
}
