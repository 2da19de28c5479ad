//! Regenerates ringcache-proto's checked-in gRPC code for the control service:
//!
//! ```text
//! cargo run -p ringcache-proto-codegen
//! ```
//!
//! Reads `node/proto/ringcache/control/v1/control.proto` with `protox` (a pure-Rust
//! protobuf compiler: no system `protoc` needed), writes
//! `node/proto/src/pb/ringcache.control.v1.rs` with `tonic-prost-build`, and puts the
//! generated client behind ringcache-proto's `client` feature and the server behind
//! `server`. The test `tests/drift.rs` runs [`generate`] into a temporary directory and
//! fails when the checked-in file differs. This crate does not depend on
//! ringcache-proto, so it runs while that crate does not compile against the old code.

use std::error::Error;
use std::path::{Path, PathBuf};

/// The proto files, relative to [`proto_root`].
pub const PROTOS: &[&str] = &["ringcache/control/v1/control.proto"];

/// The generated file's name (the proto package plus `.rs`).
pub const GENERATED: &str = "ringcache.control.v1.rs";

/// The ringcache-proto crate (this crate's parent directory).
fn proto_crate() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Where the generated file is checked in.
pub fn checked_in_dir() -> PathBuf {
    proto_crate().join("src/pb")
}

pub fn proto_root() -> PathBuf {
    proto_crate()
}

const HEADER: &str = "\
// @generated from node/proto/ringcache/control/v1/control.proto. DO NOT EDIT.
// Regenerate with: cargo run -p ringcache-proto-codegen
// (node/proto/codegen/tests/drift.rs fails when this file is out of date.)
";

/// The generated modules and the crate feature each is compiled under.
const GATED: &[(&str, &str)] = &[
    ("pub mod control_client {", "client"),
    ("pub mod control_server {", "server"),
];

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
    let mut body = std::fs::read_to_string(&path)?;
    for (module, feature) in GATED {
        if !body.contains(module) {
            return Err(format!("generated code has no `{module}`").into());
        }
        body = body.replace(module, &format!("#[cfg(feature = \"{feature}\")]\n{module}"));
    }
    std::fs::write(&path, format!("{HEADER}{body}"))?;
    Ok(path)
}
