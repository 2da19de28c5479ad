//! Hashes commands.

use super::CommandSpec;

pub const COMMANDS: &[CommandSpec] = &[];
