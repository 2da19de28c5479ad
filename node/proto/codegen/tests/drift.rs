//! Fails when the checked-in gRPC code differs from what the proto generates.
#![allow(clippy::unwrap_used)]

use ringcache_proto_codegen as codegen;

#[test]
fn checked_in_grpc_code_is_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = codegen::generate(tmp.path()).unwrap_or_else(|e| panic!("codegen failed: {e}"));
    let fresh = std::fs::read_to_string(fresh).unwrap();
    let checked_in_path = codegen::checked_in_dir().join(codegen::GENERATED);
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    assert!(
        fresh == checked_in,
        "{} is out of date with its .proto: run `cargo run -p ringcache-proto-codegen` and commit the result",
        checked_in_path.display()
    );
}
