//! Locating the pinned Kubernetes binaries (tests/k8s/build.sh) and the workspace's own binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum BinsError {
    #[error("RINGCACHE_K8S_BIN={dir} lacks {missing}")]
    EnvDirIncomplete { dir: PathBuf, missing: String },
    #[error("running {script}: {source}")]
    RunBuild {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{script} failed ({status}); its output is above. Run `bash tests/k8s/build.sh` to see why")]
    BuildFailed {
        script: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("{script} printed no bin dir")]
    NoBinDir { script: PathBuf },
}

/// The binaries tests/k8s/build.sh produces.
pub const K8S_BINARIES: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-proxy",
    "kubectl",
    "helm",
];

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target dir: `$CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

fn missing_in(dir: &Path) -> Vec<&'static str> {
    K8S_BINARIES
        .iter()
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect()
}

/// The directory holding etcd, kube-apiserver, kube-controller-manager, kube-proxy, kubectl and helm.
///
/// `$RINGCACHE_K8S_BIN` wins when set. Otherwise tests/k8s/build.sh is run: it returns at once when its cache entry
/// is complete and builds (minutes, cold) otherwise; its progress goes to stderr.
pub fn k8s_bin_dir() -> Result<PathBuf, BinsError> {
    if let Some(dir) = std::env::var_os("RINGCACHE_K8S_BIN") {
        let dir = PathBuf::from(dir);
        let missing = missing_in(&dir);
        if !missing.is_empty() {
            return Err(BinsError::EnvDirIncomplete {
                dir,
                missing: missing.join(", "),
            });
        }
        return Ok(dir);
    }
    let script = workspace_root().join("tests/k8s/build.sh");
    // Fast path: the cache entry is complete.
    if let Ok(out) = Command::new("bash").arg(&script).arg("--print-bin-dir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success()
            && dir.is_absolute()
            && missing_in(&dir).is_empty()
            && dir.parent().is_some_and(|p| p.join("complete").is_file())
        {
            return Ok(dir);
        }
    }
    tracing::info!(script = %script.display(), "building the pinned Kubernetes components (cold: minutes)");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|source| BinsError::RunBuild {
            script: script.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(BinsError::BuildFailed {
            script,
            status: out.status,
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(line) if !line.trim().is_empty() => Ok(PathBuf::from(line.trim())),
        _ => Err(BinsError::NoBinDir { script }),
    }
}

/// Finds a workspace binary `name` in target/release or target/debug (the most recently built one wins).
pub fn workspace_binary(name: &str) -> Option<PathBuf> {
    let target = target_dir();
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for profile in ["release", "debug"] {
        let p = target.join(profile).join(name);
        if let Ok(meta) = std::fs::metadata(&p) {
            let t = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, p));
            }
        }
    }
    best.map(|(_, p)| p)
}
