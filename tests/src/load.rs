//! A cache-aside load as applications put on a cache: keys drawn with a zipf-like
//! popularity; a read that misses "reads the origin" (counted) and SETs the value with a
//! TTL; a share of operations are writes whose acknowledged values are remembered, so a
//! test can check none was lost. A sampler turns the counters into one hit rate per
//! second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Commands;

/// How the load reaches the cache.
#[derive(Debug, Clone)]
pub enum Target {
    /// A cluster-aware client given every node's `redis://` URL (it follows `-MOVED`).
    Cluster(Vec<String>),
    /// A plain client (e.g. through the client Service's ClusterIP, to the proxy port).
    Plain(String),
}

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Shape {
    pub keys: usize,
    /// Zipf exponent of key popularity (1.0: the n-th key is read 1/n as often).
    pub skew: f64,
    /// TTL of values set after a miss, seconds.
    pub ttl: u64,
    /// Percent of operations that are writes (acknowledged values remembered).
    pub write_pct: u64,
    pub threads: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            keys: 20_000,
            skew: 1.0,
            ttl: 3600,
            write_pct: 5,
            threads: 2,
        }
    }
}

/// What the load saw.
#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    /// Reads that missed: each read the origin.
    pub origin_reads: AtomicU64,
    pub writes: AtomicU64,
    pub errors: AtomicU64,
    /// Last acknowledged value of each written (or filled) key, and values of writes that failed
    /// after it (they may or may not have been applied).
    pub acked: Mutex<HashMap<usize, (String, Vec<String>)>>,
    pub first_errors: Mutex<Vec<String>>,
}

/// One second of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the load started.
    pub at: f64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
}

impl Sample {
    pub fn hit_rate(&self) -> Option<f64> {
        let all = self.hits + self.misses;
        (all > 0).then(|| self.hits as f64 / all as f64)
    }
}

/// A running load; stop it with [`Load::stop`].
#[derive(Debug)]
pub struct Load {
    pub counters: Arc<Counters>,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub started: Instant,
}

/// The key name of index `i`.
pub fn key(i: usize) -> String {
    format!("item:{i}")
}

/// A cumulative distribution over `n` ranks with exponent `s`.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|r| {
            acc += 1.0 / (r as f64).powf(s);
            acc
        })
        .collect();
    for c in cdf.iter_mut() {
        *c /= acc;
    }
    cdf
}

enum Conn {
    Cluster(redis::cluster::ClusterConnection),
    Plain(redis::Connection),
}

impl Conn {
    fn open(target: &Target, password: Option<&str>) -> redis::RedisResult<Conn> {
        match target {
            Target::Cluster(urls) => {
                let mut b = redis::cluster::ClusterClientBuilder::new(urls.clone())
                    .retries(20)
                    .min_retry_wait(5)
                    .max_retry_wait(200)
                    // A hung node (SIGSTOP) accepts connections and never answers.
                    .connection_timeout(Duration::from_secs(1))
                    .response_timeout(Duration::from_secs(1));
                if let Some(p) = password {
                    b = b.password(p.to_string());
                }
                Ok(Conn::Cluster(b.build()?.get_connection()?))
            }
            Target::Plain(url) => {
                let con = redis::Client::open(url.as_str())?.get_connection_with_timeout(Duration::from_secs(1))?;
                con.set_read_timeout(Some(Duration::from_secs(1)))?;
                con.set_write_timeout(Some(Duration::from_secs(1)))?;
                Ok(Conn::Plain(con))
            }
        }
    }

    fn get(&mut self, k: &str) -> redis::RedisResult<Option<String>> {
        match self {
            Conn::Cluster(c) => c.get(k),
            Conn::Plain(c) => c.get(k),
        }
    }

    fn set_ex(&mut self, k: &str, v: &str, ttl: u64) -> redis::RedisResult<()> {
        match self {
            Conn::Cluster(c) => c.set_ex(k, v, ttl),
            Conn::Plain(c) => c.set_ex(k, v, ttl),
        }
    }
}

/// SETs key `i` to `v` and records the outcome in `counters.acked`, holding its lock
/// across the request: with several threads writing the same key, the order in which
/// acknowledgements are recorded is then the order the cache applied the writes (else a
/// thread descheduled between its reply and the lock would record an older value as the
/// last one, and `lost_writes` would report a write that was not lost). Reads do not
/// take the lock; only writes and cache fills (both can overwrite a value) wait for it.
fn tracked_set(conn: &mut Conn, counters: &Counters, i: usize, v: String, ttl: u64) -> redis::RedisResult<()> {
    let Ok(mut acked) = counters.acked.lock() else {
        return conn.set_ex(&key(i), &v, ttl);
    };
    let r = conn.set_ex(&key(i), &v, ttl);
    let e = acked.entry(i).or_insert_with(|| (String::new(), Vec::new()));
    if r.is_ok() {
        *e = (v, Vec::new());
    } else {
        e.1.push(v);
    }
    r
}

/// A small xorshift generator (no shared state between threads).
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

impl Load {
    /// Writes every key once (so the cache starts warm), then runs the load until
    /// [`Load::stop`], sampling every second.
    pub fn start(target: Target, password: Option<String>, shape: Shape) -> redis::RedisResult<Load> {
        let mut conn = Conn::open(&target, password.as_deref())?;
        for i in 0..shape.keys {
            conn.set_ex(&key(i), &format!("origin-{i}"), shape.ttl)?;
        }
        let counters = Arc::new(Counters::default());
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let cdf = Arc::new(zipf_cdf(shape.keys, shape.skew));
        let started = Instant::now();
        let mut threads = Vec::new();
        for t in 0..shape.threads {
            let (target, password, shape) = (target.clone(), password.clone(), shape.clone());
            let (counters, stop, cdf) = (counters.clone(), stop.clone(), cdf.clone());
            threads.push(std::thread::spawn(move || {
                let mut conn = match Conn::open(&target, password.as_deref()) {
                    Ok(c) => c,
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = counters.first_errors.lock() {
                            f.push(format!("connect: {e}"));
                        }
                        return;
                    }
                };
                let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) << 32);
                let mut version = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let u = (next(&mut x) >> 11) as f64 / (1u64 << 53) as f64;
                    let i = cdf.partition_point(|&c| c < u).min(shape.keys - 1);
                    let k = key(i);
                    let result = if next(&mut x) % 100 < shape.write_pct {
                        version += 1;
                        counters.writes.fetch_add(1, Ordering::Relaxed);
                        tracked_set(&mut conn, &counters, i, format!("w{t}-{version}"), shape.ttl)
                    } else {
                        match conn.get(&k) {
                            Ok(Some(_)) => {
                                counters.hits.fetch_add(1, Ordering::Relaxed);
                                Ok(())
                            }
                            Ok(None) => {
                                // Cache-aside: read the origin, fill the cache.
                                counters.origin_reads.fetch_add(1, Ordering::Relaxed);
                                tracked_set(&mut conn, &counters, i, format!("origin-{i}"), shape.ttl)
                            }
                            Err(e) => Err(e),
                        }
                    };
                    if let Err(e) = result {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = counters.first_errors.lock() {
                            if f.len() < 20 {
                                f.push(e.to_string());
                            }
                        }
                    }
                }
            }));
        }
        {
            let (counters, stop, samples) = (counters.clone(), stop.clone(), samples.clone());
            threads.push(std::thread::spawn(move || {
                let mut last = (0, 0, 0);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(1));
                    let now = (
                        counters.hits.load(Ordering::Relaxed),
                        counters.origin_reads.load(Ordering::Relaxed),
                        counters.errors.load(Ordering::Relaxed),
                    );
                    if let Ok(mut s) = samples.lock() {
                        s.push(Sample {
                            at: started.elapsed().as_secs_f64(),
                            hits: now.0 - last.0,
                            misses: now.1 - last.1,
                            errors: now.2 - last.2,
                        });
                    }
                    last = now;
                }
            }));
        }
        Ok(Load {
            counters,
            samples,
            stop,
            threads,
            started,
        })
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the load and waits for its threads.
    pub fn stop(self) -> Arc<Counters> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.counters
    }
}

/// Keys whose value differs from their last acknowledged write (and from every write
/// attempted after it), read through `target`.
pub fn lost_writes(target: &Target, password: Option<&str>, counters: &Counters) -> redis::RedisResult<Vec<String>> {
    let mut conn = Conn::open(target, password)?;
    let acked = counters.acked.lock().map(|a| a.clone()).unwrap_or_default();
    let mut lost = Vec::new();
    for (i, (last, maybe)) in acked {
        if last.is_empty() {
            continue;
        }
        let got = conn.get(&key(i))?;
        let ok = got.as_deref() == Some(last.as_str()) || got.as_ref().is_some_and(|g| maybe.contains(g));
        if !ok {
            lost.push(format!("{}: {got:?}, acknowledged {last}", key(i)));
        }
    }
    Ok(lost)
}
