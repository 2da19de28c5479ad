//! Small helpers with no better home.

pub mod glob;
pub mod size;
