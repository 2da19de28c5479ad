//! Regenerates the checked-in gRPC code for the control service:
//!
//! ```text
//! cargo run -p ringcache-node --example codegen
//! ```
//!
//! Reads `node/proto/ringcache/control/v1/control.proto` with `protox` (a pure-Rust
//! protobuf compiler: no system `protoc` needed) and writes
//! `node/src/control/pb/ringcache.control.v1.rs` with `tonic-prost-build`. The test
//! `node/tests/codegen_drift.rs` runs [`generate`] into a temporary directory and fails
//! when the checked-in file differs.

use std::error::Error;
use std::path::{Path, PathBuf};

/// The proto files, relative to [`proto_root`].
pub const PROTOS: &[&str] = &["ringcache/control/v1/control.proto"];

/// The generated file's name (the proto package plus `.rs`).
pub const GENERATED: &str = "ringcache.control.v1.rs";

/// Where the generated file is checked in.
pub fn checked_in_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/control/pb")
}

pub fn proto_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("proto")
}

const HEADER: &str = "\
// @generated from node/proto/ringcache/control/v1/control.proto. DO NOT EDIT.
// Regenerate with: cargo run -p ringcache-node --example codegen
// (node/tests/codegen_drift.rs fails when this file is out of date.)
";

/// Compiles the protos and writes the generated Rust into `out_dir`; returns the path
/// of the generated file.
pub fn generate(out_dir: &Path) -> Result<PathBuf, Box<dyn Error>> {
    let fds = protox::compile(PROTOS, [proto_root()])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .emit_rerun_if_changed(false)
        .out_dir(out_dir)
        .compile_fds(fds)?;
    let path = out_dir.join(GENERATED);
    let body = std::fs::read_to_string(&path)?;
    std::fs::write(&path, format!("{HEADER}{body}"))?;
    Ok(path)
}

#[allow(dead_code)] // the drift test includes this file without calling main
fn main() -> Result<(), Box<dyn Error>> {
    let dir = checked_in_dir();
    std::fs::create_dir_all(&dir)?;
    let path = generate(&dir)?;
    println!("wrote {}", path.display());
    Ok(())
}
