//! Everything about the 16384 hash slots: key → slot hashing, topology, placement.
//!
//! The pure parts (slot hashing, topology data, placement) have no I/O and are reused
//! by the operator.

pub mod placement;
pub mod promote;
pub mod slot;
pub mod state;
pub mod topology;
