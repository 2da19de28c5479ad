//! kube-proxy on the host, in nftables mode: it turns every Service's ClusterIP into DNAT rules to the pods behind
//! it, in the nftables tables `ip kube-proxy` and `ip6 kube-proxy`. Pods share the host's network namespace, so
//! one kube-proxy serves them all, and the test process reaches `ClusterIP:port` like a pod would.
//!
//! The host has one such table, so one harness at a time may run kube-proxy: [`HostLock`] (an `flock` on
//! `/run/lock/ringcache-kube-proxy.lock`) makes a second one wait for the first to end. kube-proxy leaves its
//! tables behind when it stops; the harness deletes them when [`KubeProxy`] is dropped, at process exit (statics
//! such as the shared test environment are never dropped), and before starting (a harness that was SIGKILLed
//! could not).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::proc::ChildProcess;

/// The nftables table kube-proxy's nftables mode programs, in both families.
pub const TABLE: &str = "kube-proxy";
const FAMILIES: [&str; 2] = ["ip", "ip6"];

#[derive(Debug, thiserror::Error)]
pub enum KubeProxyError {
    #[error("`nft` is not available ({0}); kube-proxy's nftables mode needs it: run `make nftables`")]
    NoNft(String),
    #[error("opening the host lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another harness has run this host's kube-proxy for over {secs}s ({holder}); one harness at a time can \
         program the host's nftables table `{TABLE}` (stop it, or set RINGCACHE_KUBE_PROXY=off to run without \
         Service routing)"
    )]
    Busy { secs: u64, holder: String },
}

/// Exclusive use of the host's kube-proxy tables, held for the life of a harness's kube-proxy. The kernel releases
/// it when the process ends, however it ends.
#[derive(Debug)]
pub struct HostLock {
    /// Held open: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl HostLock {
    fn path() -> PathBuf {
        let dir = Path::new("/run/lock");
        let dir = if dir.is_dir() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join("ringcache-kube-proxy.lock")
    }

    /// Takes the lock, waiting up to `timeout` for the harness holding it; `holder` (e.g. the run dir) is recorded
    /// in the lock file for the error message of the next one who has to wait.
    pub async fn acquire(holder: &str, timeout: Duration) -> Result<HostLock, KubeProxyError> {
        let path = HostLock::path();
        let err = |source| KubeProxyError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        let start = Instant::now();
        let mut last_report: Option<Instant> = None;
        loop {
            // SAFETY: flock(2) on a descriptor this function owns; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(err(e));
            }
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if start.elapsed() > timeout {
                return Err(KubeProxyError::Busy {
                    secs: timeout.as_secs(),
                    holder: current.trim().to_owned(),
                });
            }
            if last_report.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    holder = current.trim(),
                    "waiting for another harness's kube-proxy to stop"
                );
                last_report = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        file.set_len(0).map_err(err)?;
        writeln!(file, "pid {} ({holder})", std::process::id()).map_err(err)?;
        Ok(HostLock { _file: file, path })
    }

    pub fn path_held(&self) -> &Path {
        &self.path
    }
}

/// Checks that `nft` runs (kube-proxy's nftables mode drives it).
pub fn check_nft() -> Result<(), KubeProxyError> {
    match Command::new("nft").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(KubeProxyError::NoNft(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )),
        Err(e) => Err(KubeProxyError::NoNft(e.to_string())),
    }
}

/// Which of kube-proxy's tables exist now (`nft list tables`), as "family name".
pub fn tables() -> Vec<String> {
    let Ok(out) = Command::new("nft").args(["list", "tables"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table "))
        .filter(|t| t.ends_with(&format!(" {TABLE}")))
        .map(str::to_owned)
        .collect()
}

/// Deletes kube-proxy's tables (both families); a table that does not exist is fine. Returns what failed.
pub fn delete_tables() -> Vec<String> {
    let mut failures = Vec::new();
    for family in FAMILIES {
        match Command::new("nft").args(["delete", "table", family, TABLE]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if !stderr.contains("No such file or directory") {
                    failures.push(format!("nft delete table {family} {TABLE}: {}", stderr.trim()));
                }
            }
            Err(e) => failures.push(format!("nft delete table {family} {TABLE}: {e}")),
        }
    }
    failures
}

/// The process group of the kube-proxy whose tables must go when this process exits.
static AT_EXIT: Mutex<Option<i32>> = Mutex::new(None);
static AT_EXIT_HOOK: Once = Once::new();

extern "C" fn clean_up_at_exit() {
    // Runs inside exit(): never block on a lock somebody else may hold.
    let pgid = AT_EXIT.try_lock().ok().and_then(|mut g| g.take());
    if let Some(pgid) = pgid {
        // SAFETY: kill(2) and waitpid(2) on our own child (the group leader); no memory but a null status pointer.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
            libc::waitpid(pgid, std::ptr::null_mut(), 0);
        }
        for failure in delete_tables() {
            eprintln!("ringcache-tests: {failure}");
        }
    }
}

/// A running kube-proxy and the lock on the host's tables. Dropping it stops kube-proxy and deletes its tables.
#[derive(Debug)]
pub struct KubeProxy {
    child: ChildProcess,
    lock: HostLock,
    pub healthz: u16,
    pub metrics: u16,
}

impl KubeProxy {
    /// Takes ownership of a started kube-proxy; its tables are deleted on drop and at process exit.
    pub fn new(child: ChildProcess, lock: HostLock, healthz: u16, metrics: u16) -> KubeProxy {
        AT_EXIT_HOOK.call_once(|| {
            // SAFETY: registering a plain extern "C" fn without captured state.
            unsafe {
                libc::atexit(clean_up_at_exit);
            }
        });
        if let Ok(mut g) = AT_EXIT.lock() {
            *g = Some(child.pid() as i32);
        }
        KubeProxy {
            child,
            lock,
            healthz,
            metrics,
        }
    }

    pub fn child_mut(&mut self) -> &mut ChildProcess {
        &mut self.child
    }

    pub fn lock_path(&self) -> &Path {
        self.lock.path_held()
    }
}

impl Drop for KubeProxy {
    fn drop(&mut self) {
        if let Ok(mut g) = AT_EXIT.lock() {
            *g = None;
        }
        // Stopped (and reaped) first, so that no sync re-creates what is deleted next.
        self.child.kill();
        for failure in delete_tables() {
            tracing::warn!(failure, "removing kube-proxy's nftables table");
        }
    }
}

/// Whether a kube-proxy `/metrics` text shows a completed IPv4 rules sync.
pub fn synced(metrics: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"}")
            && l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_ipv4_sync_is_recognised() {
        let before = "# TYPE kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds gauge\n\
            kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family=\"IPv4\"} 1.79e+09\n";
        assert!(!synced(before));
        let ipv6_only =
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv6\"} 1.7963092764676003e+09\n";
        assert!(!synced(ipv6_only));
        let after = format!(
            "{before}kubeproxy_sync_proxy_rules_last_timestamp_seconds{{ip_family=\"IPv4\"}} 1.7963092764676003e+09\n"
        );
        assert!(synced(&after));
    }
}
