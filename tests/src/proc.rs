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

/// Returns a free TCP port on 127.0.0.1 (bound and released; the usual small race applies).
pub fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
