//! Compiles csrc/long_double.c: Redis' long-double INCRBYFLOAT arithmetic (see
//! src/cmd/float.rs for why it is C).

fn main() {
    println!("cargo:rerun-if-changed=csrc/long_double.c");
    cc::Build::new()
        .file("csrc/long_double.c")
        .warnings(true)
        .extra_warnings(true)
        .compile("ringcache_long_double");
}
