//! The committed CRD YAML (crds/ and the Helm chart's crds/) is what the code generates,
//! and `ringcache-operator crd` prints exactly that. Regenerate with `make crds`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ringcache_operator::crd::{crd_yaml, CRD_NAME};

const REGENERATE: &str = "run `make crds` (cargo run -p ringcache-operator -- crd) to regenerate it";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first line where `a` and `b` differ, for the failure message.
fn first_difference(a: &str, b: &str) -> String {
    let (mut al, mut bl) = (a.lines(), b.lines());
    for n in 1.. {
        match (al.next(), bl.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (None, None) => break,
            (x, y) => {
                return format!(
                    "line {n}: committed {:?}, generated {:?}",
                    x.unwrap_or("<end of file>"),
                    y.unwrap_or("<end of file>")
                )
            }
        }
    }
    "only the line endings differ".to_owned()
}

fn assert_up_to_date(relative: &str) {
    let generated = crd_yaml().expect("generating the CRD YAML");
    let path = repo_root().join(relative);
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative} cannot be read ({e}); {REGENERATE}"));
    assert!(
        committed == generated,
        "{relative} differs from the CRD operator/src/crd.rs generates ({}); {REGENERATE}",
        first_difference(&committed, &generated)
    );
}

#[test]
fn crds_dir_is_up_to_date() {
    assert_up_to_date(&format!("crds/{CRD_NAME}.yaml"));
}

#[test]
fn helm_chart_crds_are_up_to_date() {
    assert_up_to_date(&format!("charts/ringcache/crds/{CRD_NAME}.yaml"));
}

#[test]
fn crd_subcommand_prints_the_generated_yaml() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringcache-operator"))
        .arg("crd")
        .output()
        .expect("running ringcache-operator crd");
    assert!(
        out.status.success(),
        "ringcache-operator crd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert_eq!(printed, crd_yaml().expect("generating the CRD YAML"));
}

#[test]
fn a_stale_copy_is_reported_with_the_command_that_fixes_it() {
    let generated = crd_yaml().expect("generating the CRD YAML");
    let stale = generated.replacen("minimum: 1", "minimum: 2", 1);
    assert_ne!(stale, generated);
    let diff = first_difference(&stale, &generated);
    assert!(diff.contains("minimum: 2") && diff.contains("minimum: 1"), "{diff}");
}
