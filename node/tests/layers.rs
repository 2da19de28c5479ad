//! Keeps the engine's layers honest: every `crate::…` path in node/src (outside
//! comments) must name a module of the importing module's layer or a lower one, by
//! the table `ringcache_node::LAYERS` (the map in node/src/lib.rs). A module missing
//! from the table fails too, so a new module gets a place in it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ringcache_node::LAYERS;

/// Module name → layer index.
fn layer_of() -> BTreeMap<&'static str, usize> {
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, mods)| mods.iter().map(move |m| (*m, i)))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a line refers to through `crate::` (`crate::a::b`,
/// `crate::{a, b::c}`).
fn crate_refs(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        // `ringcache_crate::` or `some_crate::` are other names.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(first_segment(&item));
                        item.clear();
                    }
                    _ => item.push(c),
                }
            }
            if !item.trim().is_empty() {
                out.push(first_segment(&item));
            }
        } else {
            out.push(first_segment(rest));
        }
    }
    out
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every upward import in node/src: (file, line number, module, imported module).
fn violations(src: &Path) -> Vec<String> {
    let layers = layer_of();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        let first = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let Some(first) = first else { continue };
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&mine) = layers.get(module.as_str()) else {
            out.push(format!(
                "{}: module {module:?} is not in LAYERS (node/src/lib.rs)",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for target in crate_refs(code) {
                match layers.get(target.as_str()) {
                    Some(&theirs) if theirs > mine => out.push(format!(
                        "{}:{}: {module} (layer {mine}) uses crate::{target} (layer {theirs}): {}",
                        rel.display(),
                        n + 1,
                        code.trim()
                    )),
                    Some(_) => {}
                    None => out.push(format!(
                        "{}:{}: crate::{target} is not in LAYERS (node/src/lib.rs)",
                        rel.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    out
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(bad.is_empty(), "imports that point up the layers:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_sees_paths_and_groups() {
    assert_eq!(crate_refs("use crate::cmd::{self, Ctx};"), vec!["cmd"]);
    assert_eq!(
        crate_refs("use crate::{store::Store, resp::Out};"),
        vec!["store", "resp"]
    );
    assert_eq!(
        crate_refs("let x = crate::handover::fetch::read_through(a, crate::store::now_ms());"),
        vec!["handover", "store"]
    );
    assert!(crate_refs("use ringcache_core::slot::Slot;").is_empty());
    assert!(crate_refs("use my_crate::x;").is_empty());
    // An upward import in a scratch tree is reported.
    let dir = std::env::temp_dir().join(format!("ringcache-layers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("store")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("store/mod.rs"), "use crate::cmd::Ctx;\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("cmd.rs"),
        "use crate::store::Store;\n// crate::server in a comment\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let bad = violations(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("store (layer 1) uses crate::cmd (layer 4)"), "{bad:?}");
}
