//! Child processes that never outlive the harness.
//!
//! Every child is started in its own process group, with `PR_SET_PDEATHSIG = SIGKILL`, from one long-lived spawner
//! thread (the kernel delivers the parent-death signal when the *thread* that forked exits, so children must not be
//! forked from short-lived tokio worker or blocking threads). Live process groups are remembered; dropping a
//! [`ChildProcess`] kills its group, and an `atexit` hook kills every group still alive when the test process exits
//! normally (statics, such as the shared control plane, are never dropped). If the process dies abruptly, the kernel
//! kills the direct children through the parent-death signal.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, Once, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("spawning {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("opening log file {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the process spawner thread is gone")]
    SpawnerGone,
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        #[source]
        source: io::Error,
    },
}

struct Request {
    cmd: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

static GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
static ATEXIT: Once = Once::new();
static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();

extern "C" fn kill_all_groups() {
    // Runs inside exit(): never block on a lock somebody else may hold.
    if let Ok(guard) = GROUPS.try_lock() {
        if let Some(groups) = guard.as_ref() {
            for &pgid in groups {
                // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
        }
    }
}

fn register(pgid: i32) {
    ATEXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" fn without captured state.
        unsafe {
            libc::atexit(kill_all_groups);
        }
    });
    if let Ok(mut guard) = GROUPS.lock() {
        guard.get_or_insert_with(HashSet::new).insert(pgid);
    }
}

fn unregister(pgid: i32) {
    if let Ok(mut guard) = GROUPS.lock() {
        if let Some(groups) = guard.as_mut() {
            groups.remove(&pgid);
        }
    }
}

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        let spawn_thread = std::thread::Builder::new()
            .name("ringcache-spawner".into())
            .spawn(move || {
                for mut req in rx {
                    let _ = req.reply.send(req.cmd.spawn());
                }
            });
        if let Err(e) = spawn_thread {
            tracing::error!(error = %e, "cannot start the process spawner thread");
        }
        Mutex::new(tx)
    })
}

/// A running child process leading its own process group. Dropping it kills the whole group.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    pgid: i32,
    exited: Option<ExitStatus>,
}

/// Opens (appending) a log file for a child's stdout and stderr.
pub fn log_file(path: &Path) -> Result<(File, File), ProcError> {
    let err = |source| ProcError::Log {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let f = File::options().create(true).append(true).open(path).map_err(err)?;
    let g = f.try_clone().map_err(err)?;
    Ok((f, g))
}

/// Starts `cmd` in its own process group with stdout and stderr appended to `log`, stdin closed.
pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<ChildProcess, ProcError> {
    let (out, err) = log_file(log)?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    cmd.process_group(0);
    let parent = std::process::id();
    // SAFETY: the closure only calls async-signal-safe libc functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    {
        let tx = spawner().lock().map_err(|_| ProcError::SpawnerGone)?;
        tx.send(Request { cmd, reply: reply_tx })
            .map_err(|_| ProcError::SpawnerGone)?;
    }
    let child = reply_rx
        .recv()
        .map_err(|_| ProcError::SpawnerGone)?
        .map_err(|source| ProcError::Spawn {
            program: name.to_owned(),
            source,
        })?;
    let pgid = child.id() as i32;
    register(pgid);
    Ok(ChildProcess {
        name: name.to_owned(),
        child,
        pgid,
        exited: None,
    })
}

impl ChildProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `sig` to the whole process group.
    pub fn signal(&self, sig: i32) {
        if self.exited.is_none() {
            // SAFETY: kill(2) on our own child's process group.
            unsafe {
                libc::kill(-self.pgid, sig);
            }
        }
    }

    /// Returns the exit status once the leader has exited (non-blocking).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcError> {
        if let Some(st) = self.exited {
            return Ok(Some(st));
        }
        let st = self.child.try_wait().map_err(|source| ProcError::Wait {
            program: self.name.clone(),
            source,
        })?;
        if let Some(st) = st {
            self.exited = Some(st);
            // Leftover group members (if any) go with the leader.
            // SAFETY: kill(2) on our own child's process group.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
            unregister(self.pgid);
        }
        Ok(st)
    }

    /// SIGKILLs the group and reaps the leader.
    pub fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        // SAFETY: kill(2) on our own child's process group.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        if let Ok(st) = self.child.wait() {
            self.exited = Some(st);
        }
        unregister(self.pgid);
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The inclusive port range children's ports come from: below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 by default), or above it when that leaves more room.
///
/// Binding port 0 and handing the released number to a child races with every other socket: any outgoing
/// connection may get it as its ephemeral source port, and a probe connecting to a port nobody listens on inside
/// that range can even connect to itself. Outside it, only explicit binds take ports, and a start that finds its
/// port taken anyway is retried ([`says_address_in_use`]).
pub fn port_range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999));
    choose_range(ephemeral)
}

fn choose_range((lo, hi): (u16, u16)) -> (u16, u16) {
    let below = (10_000, lo.saturating_sub(1));
    let above = (hi.saturating_add(1), u16::MAX);
    let room = |(a, b): (u16, u16)| b.saturating_sub(a);
    if room(below) >= room(above) && room(below) > 0 {
        below
    } else if room(above) > 0 {
        above
    } else {
        // The ephemeral range covers everything: retrying is all that is left.
        (10_000, 32_767)
    }
}

/// `n` distinct random ports from [`port_range`] that nobody listens on right now (each is bound and released on
/// 127.0.0.1 to check; outside the ephemeral range no connection takes it in between).
pub fn fresh_ports(n: usize) -> io::Result<Vec<u16>> {
    use std::hash::{BuildHasher, Hasher};
    let (lo, hi) = port_range();
    let span = u64::from(hi - lo) + 1;
    let mut ports = Vec::with_capacity(n);
    for tries in 0u32.. {
        if ports.len() == n {
            break;
        }
        if tries > 1000 {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("no {n} free ports in {lo}-{hi} after {tries} tries"),
            ));
        }
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(tries);
        let port = lo + (h.finish() % span) as u16;
        if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    Ok(ports)
}

/// Whether a child's output says a bind failed because another socket holds the address (Go: "bind: address already
/// in use", Rust/C: "Address already in use").
pub fn says_address_in_use(output: &str) -> bool {
    output.to_ascii_lowercase().contains("address already in use")
}

/// Whether process `pid` holds a listening TCP socket on each of `ports` (from `/proc/net/tcp{,6}` and
/// `/proc/<pid>/fd`), so that a readiness probe answered by some other process on the same port never counts.
pub fn listens_on(pid: u32, ports: &[u16]) -> bool {
    let mut inodes: HashSet<(u16, u64)> = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(&"0A"), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let port = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(inode)) = (port, inode.parse::<u64>()) {
                if ports.contains(&port) {
                    inodes.insert((port, inode));
                }
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let mut owned: HashSet<u64> = HashSet::new();
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                if let Ok(n) = n.parse() {
                    owned.insert(n);
                }
            }
        }
    }
    ports
        .iter()
        .all(|p| inodes.iter().any(|(port, inode)| port == p && owned.contains(inode)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_avoids_the_ephemeral_range() {
        assert_eq!(choose_range((32_768, 60_999)), (10_000, 32_767));
        assert_eq!(choose_range((1_024, 40_000)), (40_001, 65_535));
        assert_eq!(choose_range((1_024, 65_535)), (10_000, 32_767));
    }

    #[test]
    fn fresh_ports_are_distinct_and_in_range() {
        let (lo, hi) = port_range();
        let ports = fresh_ports(20).expect("free ports");
        for (i, p) in ports.iter().enumerate() {
            assert!((lo..=hi).contains(p), "{p} outside {lo}-{hi}");
            assert!(!ports[..i].contains(p), "{p} twice");
        }
    }

    #[test]
    fn listens_on_tells_whose_socket_it_is() {
        let ports = fresh_ports(2).expect("free ports");
        let l = std::net::TcpListener::bind(("127.0.0.1", ports[0])).expect("bind");
        assert!(listens_on(std::process::id(), &ports[..1]));
        // Not listening on the second port; and pid 1 does not hold ours.
        assert!(!listens_on(std::process::id(), &ports));
        assert!(!listens_on(1, &ports[..1]));
        drop(l);
        assert!(!listens_on(std::process::id(), &ports[..1]));
    }

    #[test]
    fn address_in_use_is_recognised_in_go_and_rust_wording() {
        assert!(says_address_in_use(
            "listen tcp 127.0.0.1:2379: bind: address already in use"
        ));
        assert!(says_address_in_use("Address already in use (os error 98)"));
        assert!(!says_address_in_use("connection refused"));
    }
}
