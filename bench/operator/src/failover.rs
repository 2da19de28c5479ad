//! Write unavailability after a primary's SIGKILL, the same client code for ringcache and
//! Redis Cluster: plain connections that follow `-MOVED` (never to the killed primary
//! once it is killed), a counter stream to keys in the killed primary's slots before
//! and through the kill, and a probe that sets keys of those slots every 50 ms until
//! each write succeeded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Commands;

use crate::redis_cluster::connect;
use crate::R;

const TIMEOUT: Duration = Duration::from_millis(500);

/// `host:port` of a `redis://host:port/` URL.
pub fn addr_of(url: &str) -> String {
    url.trim_start_matches("redis://").trim_end_matches('/').to_string()
}

/// Routes single-key commands: a cached connection to the last owner, else every node
/// in turn, following one `-MOVED`; the victim is skipped once `dead` is set.
struct Router {
    addrs: Vec<String>,
    victim: String,
    dead: Arc<AtomicBool>,
    owner: Option<(String, redis::Connection)>,
}

impl Router {
    fn new(addrs: Vec<String>, victim: String, dead: Arc<AtomicBool>) -> Router {
        Router {
            addrs,
            victim,
            dead,
            owner: None,
        }
    }

    fn usable(&self, addr: &str) -> bool {
        !(self.dead.load(Ordering::Relaxed) && addr == self.victim)
    }

    /// Runs `f` on the owner of the key; Err is the last error seen.
    fn run<T>(&mut self, mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T, String> {
        if let Some((addr, con)) = self.owner.as_mut() {
            if self.dead.load(Ordering::Relaxed) && *addr == self.victim {
                self.owner = None;
            } else {
                match f(con) {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        let moved = e.redirect_node().map(|(a, _)| a.to_string());
                        self.owner = None;
                        if let Some(a) = moved {
                            if self.usable(&a) {
                                if let Some(v) = self.try_at(&a, &mut f) {
                                    return Ok(v);
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut last = String::from("no node answered");
        for a in self.addrs.clone() {
            if !self.usable(&a) {
                continue;
            }
            let Ok(mut con) = connect(&a, TIMEOUT) else {
                last = format!("{a}: cannot connect");
                continue;
            };
            match f(&mut con) {
                Ok(v) => {
                    self.owner = Some((a, con));
                    return Ok(v);
                }
                Err(e) => {
                    last = format!("{a}: {e}");
                    if let Some((m, _)) = e.redirect_node() {
                        let m = m.to_string();
                        if m != a && self.usable(&m) {
                            if let Some(v) = self.try_at(&m, &mut f) {
                                return Ok(v);
                            }
                        }
                    }
                }
            }
        }
        Err(last)
    }

    fn try_at<T>(
        &mut self,
        addr: &str,
        f: &mut impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let mut con = connect(addr, TIMEOUT).ok()?;
        let v = f(&mut con).ok()?;
        self.owner = Some((addr.to_string(), con));
        Some(v)
    }
}

/// The counter stream: one writer setting `keys` round-robin to an increasing counter;
/// every acknowledged value is remembered per key.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashMap<String, Vec<u64>>>>,
    attempts: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Writer {
    fn start(addrs: Vec<String>, victim: String, dead: Arc<AtomicBool>, keys: Vec<String>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashMap::<String, Vec<u64>>::new()));
        let attempts = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, acked, attempts) = (stop.clone(), acked.clone(), attempts.clone());
            std::thread::spawn(move || {
                let mut router = Router::new(addrs, victim, dead);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for k in &keys {
                        n += 1;
                        attempts.fetch_add(1, Ordering::Relaxed);
                        match router.run(|c| c.set::<_, _, ()>(k, n)) {
                            Ok(()) => {
                                if let Ok(mut a) = acked.lock() {
                                    a.entry(k.clone()).or_default().push(n);
                                }
                            }
                            // Not writable right now: do not spin.
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                }
            })
        };
        Writer {
            stop,
            acked,
            attempts,
            thread,
        }
    }

    fn stop(self) -> (HashMap<String, Vec<u64>>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let acked = self.acked.lock().map(|a| a.clone()).unwrap_or_default();
        (acked, self.attempts.load(Ordering::Relaxed))
    }
}

/// One repetition's figures.
#[derive(Debug, Clone)]
pub struct FailoverRep {
    /// From the kill until every probe key was written again; None: not within the limit.
    pub writable_after: Option<Duration>,
    pub acked_writes: u64,
    pub write_attempts: u64,
    /// Acknowledged writes whose value is gone (the key holds an older value or none).
    pub lost_writes: u64,
    pub keys_with_loss: usize,
    pub examples: Vec<String>,
    /// Counter keys that could not be read back (not counted as lost).
    pub readback_errors: Vec<String>,
}

/// Runs the counter stream, calls `kill` after `lead` seconds, measures until every key
/// of `probe` is writable through the live nodes (polling every 50 ms, at most `limit`),
/// keeps writing `trail` more, then reads every counter key back.
pub fn measure(
    urls: &[String],
    victim: &str,
    probe: Vec<String>,
    counters: Vec<String>,
    kill: impl FnOnce() -> R<()>,
    limit: Duration,
) -> R<FailoverRep> {
    let addrs: Vec<String> = urls.iter().map(|u| addr_of(u)).collect();
    let dead = Arc::new(AtomicBool::new(false));
    let writer = Writer::start(addrs.clone(), victim.to_string(), dead.clone(), counters.clone());
    std::thread::sleep(Duration::from_secs(3));
    kill()?;
    let killed = Instant::now();
    dead.store(true, Ordering::Relaxed);
    let live: Vec<String> = addrs.iter().filter(|a| *a != victim).cloned().collect();
    let mut pending = probe;
    // A fresh connection for every attempt (no cached owner), as a new client would.
    while !pending.is_empty() && killed.elapsed() < limit {
        pending.retain(|k| {
            let mut r = Router::new(live.clone(), victim.to_string(), dead.clone());
            r.run(|c| c.set::<_, _, ()>(k, "after")).is_err()
        });
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let writable_after = pending.is_empty().then(|| killed.elapsed());
    eprintln!(
        "  writable after {writable_after:?} (pending probe keys: {})",
        pending.len()
    );
    std::thread::sleep(Duration::from_secs(3));
    let (acked, attempts) = writer.stop();
    // Read back as a client would now: from any node (the killed one's address too: a
    // restarted process there is what clients reach), following up to 4 redirects,
    // retrying each key for up to 20 s.
    let (mut lost, mut keys_with_loss, mut examples, mut acked_writes) = (0u64, 0usize, Vec::new(), 0u64);
    let mut readback_errors = Vec::new();
    let mut keys: Vec<&String> = acked.keys().collect();
    keys.sort();
    for k in keys {
        let values = &acked[k];
        acked_writes += values.len() as u64;
        let got = match read_back(&addrs, k, Duration::from_secs(20)) {
            Ok(got) => got,
            Err(e) => {
                readback_errors.push(format!("{k}: {e}"));
                continue;
            }
        };
        let have: u64 = got.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        let gone = values.iter().filter(|&&v| v > have).count() as u64;
        if gone > 0 {
            lost += gone;
            keys_with_loss += 1;
            if examples.len() < 5 {
                examples.push(format!(
                    "{k}: holds {got:?}, last acknowledged {}",
                    values.last().copied().unwrap_or(0)
                ));
            }
        }
    }
    if !readback_errors.is_empty() {
        eprintln!(
            "  {} keys could not be read back, e.g. {:?}",
            readback_errors.len(),
            readback_errors.first()
        );
    }
    Ok(FailoverRep {
        writable_after,
        acked_writes,
        write_attempts: attempts,
        lost_writes: lost,
        keys_with_loss,
        examples,
        readback_errors,
    })
}

/// GET `key` from the nodes in turn, following up to 4 redirects from each, until a
/// node answers or `limit` passes; the error names the redirect chain.
fn read_back(addrs: &[String], key: &str, limit: Duration) -> Result<Option<String>, String> {
    let start = Instant::now();
    loop {
        let mut chains = Vec::new();
        for first in addrs {
            let mut at = first.clone();
            let mut chain = vec![at.clone()];
            for _ in 0..5 {
                let r = connect(&at, TIMEOUT).and_then(|mut c| c.get::<_, Option<String>>(key));
                match r {
                    Ok(v) => return Ok(v),
                    Err(e) => match e.redirect_node() {
                        Some((next, _)) if next != at => {
                            at = next.to_string();
                            chain.push(at.clone());
                        }
                        _ => {
                            chain.push(e.to_string());
                            break;
                        }
                    },
                }
            }
            chains.push(chain.join(" -> "));
        }
        if start.elapsed() >= limit {
            return Err(chains.join("; "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
