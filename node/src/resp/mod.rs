//! RESP2/RESP3 framing: `parse` turns request bytes into argument vectors,
//! `encode` writes replies in the protocol version the client chose with `HELLO`.

pub mod encode;
pub mod parse;

pub use encode::Out;
pub use parse::{parse_request, Limits, ProtocolError, Request, RequestParser};
