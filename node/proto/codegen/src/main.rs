//! `cargo run -p ringcache-proto-codegen`: writes node/proto/src/pb/ from the .proto.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = ringcache_proto_codegen::checked_in_dir();
    std::fs::create_dir_all(&dir)?;
    let path = ringcache_proto_codegen::generate(&dir)?;
    println!("wrote {}", path.display());
    Ok(())
}
