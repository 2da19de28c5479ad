//! Differential test: the same random command sequences go to ringcache-node and to
//! Debian's redis-server, and every reply must be byte-for-byte the same RESP, error
//! strings included. Keys, fields and values come from small sets so that commands
//! meet each other's data (wrong types, overflows, missing keys, options that clash).
//!
//! Replies that legitimately differ are normalised before comparing: remaining TTLs and
//! absolute expiry times become "positive" (the two servers' clocks are read at
//! different moments), and unordered collections (KEYS, HKEYS, HVALS, HGETALL) are
//! sorted. Commands with random or cursor-shaped replies are not generated.

mod common;
mod ports;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use proptest::prelude::*;

/// Debian's redis-server on a loopback port outside the ephemeral range (see `ports`),
/// stopped on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Redis {
        ports::start_on_fresh_ports("redis-server", 1, |p| Redis::try_start(p[0], extra))
    }

    /// Starts redis-server on `port`; `PortInUse` when another socket holds it.
    fn try_start(port: u16, extra: &[&str]) -> ports::Start<Redis> {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server runs (make test installs Debian's redis-server)");
        // Redis logs to stdout; "Ready to accept connections" comes after it listens,
        // a failed bind makes it exit. Either way the log says which.
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("Ready to accept connections") => break,
                Some(Ok(l)) => seen.push(l),
                Some(Err(e)) => panic!("reading redis-server's log: {e}"),
                None => {
                    let status = child.wait().expect("wait for redis-server");
                    let log = seen.join("\n");
                    if ports::says_address_in_use(&log) {
                        return ports::Start::PortInUse(log);
                    }
                    panic!("redis-server exited before listening on {port} ({status}):\n{log}");
                }
            }
        }
        // Keep draining the log so that Redis never blocks on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        ports::Start::Up(Redis { child, port })
    }
}

#[test]
fn redis_on_a_taken_port_is_reported_as_in_use_so_the_start_is_retried() {
    let (port, holder) = (0..20)
        .find_map(|_| {
            let port = ports::random_ports(1)[0];
            Some((port, TcpListener::bind(("127.0.0.1", port)).ok()?))
        })
        .expect("a port this test can hold");
    match Redis::try_start(port, &[]) {
        ports::Start::PortInUse(log) => assert!(log.contains(&port.to_string()), "{log}"),
        ports::Start::Up(_) => panic!("redis-server started although port {port} is taken"),
    }
    drop(holder);
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection that sends commands and returns each reply as its raw RESP bytes.
struct Conn {
    write: TcpStream,
    read: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: impl std::net::ToSocketAddrs) -> Conn {
        let s = TcpStream::connect(addr).expect("connects");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        Conn {
            write: s.try_clone().expect("clone"),
            read: BufReader::new(s),
        }
    }

    fn call(&mut self, args: &[String]) -> Vec<u8> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        self.write.write_all(&req).expect("request written");
        let mut reply = Vec::new();
        self.reply(&mut reply);
        reply
    }

    /// Appends one complete RESP2 or RESP3 reply to `out`.
    fn reply(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        let n = self.read.read_until(b'\n', out).expect("reply arrives");
        assert!(
            n >= 3,
            "truncated reply line: {:?}",
            String::from_utf8_lossy(&out[start..])
        );
        let line = String::from_utf8_lossy(&out[start + 1..out.len() - 2]).to_string();
        match out[start] {
            // Bulk string, bulk error, verbatim string: a length, then the body.
            b'$' | b'!' | b'=' => {
                let len: i64 = line.parse().expect("bulk length");
                if len >= 0 {
                    let mut body = vec![0; len as usize + 2];
                    std::io::Read::read_exact(&mut self.read, &mut body).expect("bulk body");
                    out.extend_from_slice(&body);
                }
            }
            // Array, set, push: n replies; map, attribute: n pairs.
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let len: i64 = line.parse().expect("aggregate length");
                let items = if matches!(out[start], b'%' | b'|') {
                    2 * len
                } else {
                    len
                };
                for _ in 0..items.max(0) {
                    self.reply(out);
                }
            }
            _ => {}
        }
    }
}

const KEYS: &[&str] = &["a", "b", "{a}c"];
const FIELDS: &[&str] = &["f", "g"];
const VALUES: &[&str] = &[
    "0",
    "1",
    "-7",
    "10",
    "abc",
    "",
    "3.5",
    "9223372036854775807",
    "-9223372036854775808",
    "1e3",
    " 1",
    "01",
    "+1",
    "-0",
    "1.0",
    "0x10",
    "1e400",
    "inf",
];
const INTS: &[&str] = &[
    "1",
    "-1",
    "0",
    "5",
    "9223372036854775807",
    "-9223372036854775808",
    "x",
    "1.5",
    "",
];
const FLOATS: &[&str] = &["1.5", "-0.25", "0", "10", "1e3", "x", "inf", "5.0e-1", "0.1"];
/// 536870912 is one past the 512 MB string limit (an error, nothing allocated).
const OFFSETS: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "-3",
    "5",
    "100",
    "x",
    "536870912",
    "9223372036854775807",
    "-9223372036854775808",
];
/// Expiry times far enough out that nothing expires during a test case.
const SECONDS: &[&str] = &[
    "100",
    "200",
    "0",
    "-5",
    "x",
    "9223372036854775807",
    "-9223372036854775808",
];
const MILLIS: &[&str] = &["100000", "200000", "0", "-5", "9223372036854775807"];
const UNIX_SECONDS: &[&str] = &["4102444800", "4102448400", "1", "x"];
/// SET's EXAT without a time in the past: Redis 7.0 stores such a key and counts it in
/// DBSIZE until something touches it; ringcache does not store it. Both answer nil.
const SET_UNIX_SECONDS: &[&str] = &["4102444800", "4102448400", "x"];

fn pick(set: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(set).prop_map(str::to_string)
}

fn key() -> impl Strategy<Value = String> {
    pick(KEYS)
}

fn set_command() -> impl Strategy<Value = Vec<String>> {
    (
        key(),
        pick(VALUES),
        proptest::option::of(pick(&["NX", "XX"])),
        any::<bool>(),
        proptest::option::of(prop_oneof![
            pick(SECONDS).prop_map(|s| vec!["EX".to_string(), s]),
            pick(MILLIS).prop_map(|s| vec!["PX".to_string(), s]),
            pick(SET_UNIX_SECONDS).prop_map(|s| vec!["EXAT".to_string(), s]),
            Just(vec!["KEEPTTL".to_string()]),
        ]),
    )
        .prop_map(|(k, v, cond, get, ttl)| {
            let mut c = vec!["SET".to_string(), k, v];
            c.extend(cond);
            if get {
                c.push("GET".into());
            }
            c.extend(ttl.into_iter().flatten());
            c
        })
}

fn string_command() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        key().prop_map(|k| vec!["GET".into(), k]),
        set_command(),
        (key(), pick(VALUES)).prop_map(|(k, v)| vec!["SETNX".into(), k, v]),
        (key(), pick(SECONDS), pick(VALUES)).prop_map(|(k, s, v)| vec!["SETEX".into(), k, s, v]),
        (key(), pick(MILLIS), pick(VALUES)).prop_map(|(k, s, v)| vec!["PSETEX".into(), k, s, v]),
        (key(), pick(VALUES)).prop_map(|(k, v)| vec!["GETSET".into(), k, v]),
        key().prop_map(|k| vec!["GETDEL".into(), k]),
        (
            key(),
            proptest::option::of(prop_oneof![
                Just(vec!["PERSIST".to_string()]),
                pick(SECONDS).prop_map(|s| vec!["EX".to_string(), s]),
                pick(MILLIS).prop_map(|s| vec!["PX".to_string(), s]),
            ])
        )
            .prop_map(|(k, o)| [vec!["GETEX".to_string(), k], o.unwrap_or_default()].concat()),
        (key(), key()).prop_map(|(a, b)| vec!["MGET".into(), a, b]),
        (key(), pick(VALUES), key(), pick(VALUES)).prop_map(|(a, x, b, y)| vec!["MSET".into(), a, x, b, y]),
        (key(), pick(VALUES), key(), pick(VALUES)).prop_map(|(a, x, b, y)| vec!["MSETNX".into(), a, x, b, y]),
        (key(), pick(VALUES)).prop_map(|(k, v)| vec!["APPEND".into(), k, v]),
        key().prop_map(|k| vec!["STRLEN".into(), k]),
        key().prop_map(|k| vec!["INCR".into(), k]),
        key().prop_map(|k| vec!["DECR".into(), k]),
        (key(), pick(INTS)).prop_map(|(k, n)| vec!["INCRBY".into(), k, n]),
        (key(), pick(INTS)).prop_map(|(k, n)| vec!["DECRBY".into(), k, n]),
        (key(), pick(FLOATS)).prop_map(|(k, f)| vec!["INCRBYFLOAT".into(), k, f]),
        (key(), pick(OFFSETS), pick(OFFSETS)).prop_map(|(k, s, e)| vec!["GETRANGE".into(), k, s, e]),
        (key(), pick(OFFSETS), pick(VALUES)).prop_map(|(k, o, v)| vec!["SETRANGE".into(), k, o, v]),
    ]
}

fn expire_command() -> impl Strategy<Value = Vec<String>> {
    (
        prop_oneof![
            Just(("EXPIRE", SECONDS)),
            Just(("PEXPIRE", MILLIS)),
            Just(("EXPIREAT", UNIX_SECONDS)),
            Just(("PEXPIREAT", &["4102444800000", "4102448400000", "1"][..])),
        ],
        key(),
        any::<u8>(),
        proptest::option::of(pick(&["NX", "XX", "GT", "LT"])),
    )
        .prop_map(|((name, times), k, i, cond)| {
            let mut c = vec![name.to_string(), k, times[i as usize % times.len()].to_string()];
            c.extend(cond);
            c
        })
}

fn key_command() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), key()).prop_map(|(a, b)| vec!["DEL".into(), a, b]),
        key().prop_map(|k| vec!["UNLINK".into(), k]),
        (key(), key()).prop_map(|(a, b)| vec!["EXISTS".into(), a.clone(), b, a]),
        expire_command(),
        pick(&["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "PERSIST", "TYPE", "TOUCH"])
            .prop_flat_map(|c| key().prop_map(move |k| vec![c.clone(), k])),
        (key(), key()).prop_map(|(a, b)| vec!["RENAME".into(), a, b]),
        (key(), key()).prop_map(|(a, b)| vec!["RENAMENX".into(), a, b]),
        (
            key(),
            key(),
            proptest::option::of(pick(&["REPLACE", "DB 0", "DB x", "BOGUS"]))
        )
            .prop_map(|(a, b, opt)| {
                let mut c = vec!["COPY".to_string(), a, b];
                c.extend(opt.iter().flat_map(|o| o.split(' ')).map(String::from));
                c
            }),
        // OBJECT ENCODING: see `normalise`; REFCOUNT differs (Redis shares small
        // integers), FREQ and IDLETIME depend on the eviction policy.
        key().prop_map(|k| words(&["OBJECT", "ENCODING", &k])),
        Just(words(&["OBJECT", "HELP"])),
        Just(words(&["OBJECT", "ENCODING"])),
        Just(words(&["OBJECT", "nosuch", "a"])),
        // MEMORY USAGE: sizes differ (they are this node's accounting), errors and a
        // missing key's nil do not.
        pick(&[
            "MEMORY USAGE never-written",
            "MEMORY USAGE never-written SAMPLES -1",
            "MEMORY USAGE never-written SAMPLES x",
            "MEMORY USAGE never-written SAMPLES",
            "MEMORY USAGE never-written foo",
            "MEMORY USAGE",
            "MEMORY nosuch",
        ])
        .prop_map(|c| c.split(' ').map(String::from).collect::<Vec<_>>()),
        pick(&[
            "hash-max-ziplist-entries",
            "list-max-listpack-size",
            "set-max-intset-entries",
            "zset-max-listpack-*"
        ])
        .prop_map(|p| words(&["CONFIG", "GET", &p])),
        Just(vec!["DBSIZE".to_string()]),
        pick(&["FLUSHDB", "FLUSHALL"]).prop_flat_map(|c| {
            proptest::option::of(pick(&["SYNC", "ASYNC"]))
                .prop_map(move |m| [vec![c.clone()], m.into_iter().collect()].concat())
        }),
        Just(vec!["KEYS".to_string(), "*".to_string()]),
        Just(vec!["KEYS".to_string(), "{a}*".to_string()]),
        // A COUNT above the keyspace's size: one call returns everything and cursor 0.
        (
            proptest::option::of(pick(&["*", "{a}*", "b", "[ab]", "*c"])),
            proptest::option::of(pick(&["string", "hash", "list", "set", "zset"]))
        )
            .prop_map(|(pattern, kind)| {
                let mut c: Vec<String> = ["SCAN", "0", "COUNT", "1000"].map(String::from).to_vec();
                if let Some(p) = pattern {
                    c.extend(["MATCH".to_string(), p]);
                }
                if let Some(t) = kind {
                    c.extend(["TYPE".to_string(), t]);
                }
                c
            }),
    ]
}

fn hash_command() -> impl Strategy<Value = Vec<String>> {
    let field = || pick(FIELDS);
    prop_oneof![
        (key(), field(), pick(VALUES)).prop_map(|(k, f, v)| vec!["HSET".into(), k, f, v]),
        (key(), field(), pick(VALUES), field(), pick(VALUES)).prop_map(|(k, f, v, g, w)| vec![
            "HSET".into(),
            k,
            f,
            v,
            g,
            w
        ]),
        (key(), field(), pick(VALUES)).prop_map(|(k, f, v)| vec!["HSETNX".into(), k, f, v]),
        (key(), field(), pick(VALUES)).prop_map(|(k, f, v)| vec!["HMSET".into(), k, f, v]),
        (key(), field()).prop_map(|(k, f)| vec!["HGET".into(), k, f]),
        (key(), field(), field()).prop_map(|(k, f, g)| vec!["HMGET".into(), k, f, g]),
        (key(), field(), field()).prop_map(|(k, f, g)| vec!["HDEL".into(), k, f, g]),
        (key(), field()).prop_map(|(k, f)| vec!["HEXISTS".into(), k, f]),
        (key(), field(), pick(INTS)).prop_map(|(k, f, n)| vec!["HINCRBY".into(), k, f, n]),
        (key(), field(), pick(FLOATS)).prop_map(|(k, f, n)| vec!["HINCRBYFLOAT".into(), k, f, n]),
        (key(), field()).prop_map(|(k, f)| vec!["HSTRLEN".into(), k, f]),
        pick(&["HGETALL", "HLEN", "HKEYS", "HVALS"]).prop_flat_map(|c| key().prop_map(move |k| vec![c.clone(), k])),
        // (NOVALUES is Redis 7.4's; Debian's 7.0 calls it a syntax error.)
        (key(), proptest::option::of(pick(&["*", "f", "[fg]", "x*"]))).prop_map(|(k, pattern)| {
            let mut c = vec!["HSCAN".to_string(), k, "0".into(), "COUNT".into(), "1000".into()];
            if let Some(p) = pattern {
                c.extend(["MATCH".to_string(), p]);
            }
            c
        }),
    ]
}

const MEMBERS: &[&str] = &["m", "n", "o", "p", ""];
/// ZADD/ZINCRBY scores and weights: good ones (-0, hex, infinities) and bad ones.
const SCORES: &[&str] = &[
    "1", "2", "-1", "0", "1.5", "0.1", "3", "inf", "-inf", "+inf", "-0", "1e3", "0x10", "1e-310", "x", "nan", " 1",
    "1e400", "(1", "",
];
/// Score range bounds: exclusive, infinite, and ones Redis' strtod reads oddly ("" is 0).
const SCORE_BOUNDS: &[&str] = &[
    "-inf", "+inf", "inf", "0", "1", "(1", "2", "(2", "1.5", "(", "", "x", "nan", "(nan", " 1", "1 ", "1e400", "-1",
];
const LEX_BOUNDS: &[&str] = &[
    "-", "+", "[m", "(m", "[n", "(o", "[", "(", "[p", "m", "+x", "", "[\u{0}",
];
const RANKS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "-2",
    "5",
    "-100",
    "100",
    "x",
    "9223372036854775807",
    "-9223372036854775808",
];
const LIMIT_ARGS: &[&str] = &["0", "1", "2", "-1", "-5", "x", "9223372036854775807"];
const NUMKEYS: &[&str] = &["1", "2", "2", "3", "0", "-1", "x", "9223372036854775807"];
/// A key no generator writes, for ZRANDMEMBER's deterministic "no such key" replies.
const ZEMPTY: &str = "{a}never";

fn zadd_command() -> impl Strategy<Value = Vec<String>> {
    (
        pick(&["ZADD", "ZADD", "ZINCRBY"]),
        key(),
        proptest::collection::vec(pick(&["NX", "XX", "GT", "LT", "CH", "INCR", "ch"]), 0..3),
        proptest::collection::vec((pick(SCORES), pick(MEMBERS)), 1..4),
        proptest::option::of(pick(MEMBERS)),
    )
        .prop_map(|(name, k, opts, pairs, odd)| {
            let mut c = vec![name.clone(), k];
            if name == "ZINCRBY" {
                c.extend([pairs[0].0.clone(), pairs[0].1.clone()]);
                return c;
            }
            c.extend(opts);
            for (s, m) in pairs {
                c.extend([s, m]);
            }
            c.extend(odd.filter(|_| c.len() % 7 == 0));
            c
        })
}

/// ZRANGE's options in any order (some clash, some repeat).
fn range_options() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![
            pick(&["WITHSCORES", "REV", "BYSCORE", "BYLEX", "withscores", "BOGUS"]).prop_map(|w| vec![w]),
            (pick(LIMIT_ARGS), pick(LIMIT_ARGS)).prop_map(|(o, n)| vec!["LIMIT".into(), o, n]),
            Just(vec!["LIMIT".to_string(), "0".to_string()]),
        ],
        0..4,
    )
    .prop_map(|v| v.concat())
}

fn bounds() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (pick(RANKS), pick(RANKS)),
        (pick(SCORE_BOUNDS), pick(SCORE_BOUNDS)),
        (pick(LEX_BOUNDS), pick(LEX_BOUNDS)),
    ]
}

fn zrange_command() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), bounds(), range_options()).prop_map(|(k, (a, b), o)| [vec!["ZRANGE".into(), k, a, b], o].concat()),
        (key(), key(), bounds(), range_options()).prop_map(|(d, k, (a, b), o)| [
            vec!["ZRANGESTORE".into(), d, k, a, b],
            o
        ]
        .concat()),
        (
            key(),
            pick(RANKS),
            pick(RANKS),
            proptest::option::of(pick(&["WITHSCORES", "LIMIT"]))
        )
            .prop_map(|(k, a, b, o)| [vec!["ZREVRANGE".into(), k, a, b], o.into_iter().collect()].concat()),
        (
            pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]),
            key(),
            pick(SCORE_BOUNDS),
            pick(SCORE_BOUNDS),
            range_options()
        )
            .prop_map(|(c, k, a, b, o)| [vec![c, k, a, b], o].concat()),
        (
            pick(&["ZRANGEBYLEX", "ZREVRANGEBYLEX"]),
            key(),
            pick(LEX_BOUNDS),
            pick(LEX_BOUNDS),
            range_options()
        )
            .prop_map(|(c, k, a, b, o)| [vec![c, k, a, b], o].concat()),
        (
            pick(&["ZCOUNT", "ZREMRANGEBYSCORE"]),
            key(),
            pick(SCORE_BOUNDS),
            pick(SCORE_BOUNDS)
        )
            .prop_map(|(c, k, a, b)| vec![c, k, a, b]),
        (
            pick(&["ZLEXCOUNT", "ZREMRANGEBYLEX"]),
            key(),
            pick(LEX_BOUNDS),
            pick(LEX_BOUNDS)
        )
            .prop_map(|(c, k, a, b)| vec![c, k, a, b]),
        (key(), pick(RANKS), pick(RANKS)).prop_map(|(k, a, b)| vec!["ZREMRANGEBYRANK".into(), k, a, b]),
    ]
}

fn zread_command() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (pick(&["ZSCORE", "ZRANK", "ZREVRANK"]), key(), pick(MEMBERS)).prop_map(|(c, k, m)| vec![c, k, m]),
        // WITHSCORE is Redis 7.2's: 7.0 has a fixed arity.
        (key(), pick(MEMBERS)).prop_map(|(k, m)| vec!["ZRANK".into(), k, m, "WITHSCORE".into()]),
        (key(), proptest::collection::vec(pick(MEMBERS), 1..4)).prop_map(|(k, ms)| [
            vec!["ZMSCORE".to_string(), k],
            ms
        ]
        .concat()),
        (key(), proptest::collection::vec(pick(MEMBERS), 1..4))
            .prop_map(|(k, ms)| [vec!["ZREM".to_string(), k], ms].concat()),
        key().prop_map(|k| vec!["ZCARD".into(), k]),
        (
            key(),
            proptest::option::of(pick(&["*", "m", "[mn]", "x*"])),
            pick(&["1000", "0", "x"])
        )
            .prop_map(|(k, pattern, count)| {
                let mut c = vec!["ZSCAN".to_string(), k, "0".into(), "COUNT".into(), count];
                if let Some(p) = pattern {
                    c.extend(["MATCH".to_string(), p]);
                }
                c
            }),
        (key(), pick(&["x", "0 NOVALUES", "-1"])).prop_map(|(k, rest)| {
            [
                vec!["ZSCAN".to_string(), k],
                rest.split(' ').map(String::from).collect(),
            ]
            .concat()
        }),
        // ZRANDMEMBER only where the reply is not random: no key, a count of 0, a count
        // covering the whole set (returned in reverse order), errors.
        (
            prop_oneof![key(), Just(ZEMPTY.to_string())],
            pick(&[
                "0",
                "100",
                "100 WITHSCORES",
                "0 WITHSCORES",
                "x",
                "-9223372036854775808",
                "100 BOGUS",
                "5 WITHSCORES x",
                "4611686018427387904 WITHSCORES",
                "-4611686018427387904 WITHSCORES"
            ])
        )
            .prop_map(|(k, rest)| [
                vec!["ZRANDMEMBER".to_string(), k],
                rest.split(' ').map(String::from).collect()
            ]
            .concat()),
        pick(&["", "-3", "-3 WITHSCORES", "3"]).prop_map(|rest| [
            vec!["ZRANDMEMBER".to_string(), ZEMPTY.to_string()],
            rest.split(' ').filter(|w| !w.is_empty()).map(String::from).collect()
        ]
        .concat()),
    ]
}

/// What may follow ZMPOP's and BZMPOP's keys and MIN|MAX: a COUNT, good or bad.
const MPOP_OPTIONS: &[&str] = &[
    "",
    "COUNT 1",
    "COUNT 3",
    "COUNT 0",
    "COUNT x",
    "COUNT",
    "COUNT 1 COUNT 2",
    "BOGUS",
];

fn zpop_command() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (
            pick(&["ZPOPMIN", "ZPOPMAX"]),
            key(),
            pick(&["", "1", "2", "0", "-1", "x", "100", "1 1"])
        )
            .prop_map(|(c, k, n)| [
                vec![c, k],
                n.split(' ').filter(|w| !w.is_empty()).map(String::from).collect()
            ]
            .concat()),
        (
            pick(NUMKEYS),
            proptest::collection::vec(key(), 1..3),
            pick(&["MIN", "MAX", "min", "BOGUS"]),
            pick(MPOP_OPTIONS),
        )
            .prop_map(|(n, keys, w, rest)| {
                let mut c = vec!["ZMPOP".to_string(), n];
                c.extend(keys);
                c.push(w);
                c.extend(rest.split(' ').filter(|w| !w.is_empty()).map(String::from));
                c
            }),
        (
            pick(&["BZPOPMIN", "BZPOPMAX", "bzpopmin"]),
            proptest::collection::vec(key(), 1..3),
            pick(TIMEOUTS)
        )
            .prop_map(|(c, keys, t)| [vec![c], keys, vec![t]].concat()),
        (
            pick(TIMEOUTS),
            pick(NUMKEYS),
            proptest::collection::vec(key(), 1..3),
            pick(&["MIN", "MAX", "max", "BOGUS"]),
            pick(MPOP_OPTIONS),
        )
            .prop_map(|(t, n, keys, w, rest)| {
                let mut c = vec!["BZMPOP".to_string(), t, n];
                c.extend(keys);
                c.push(w);
                c.extend(rest.split(' ').filter(|w| !w.is_empty()).map(String::from));
                c
            }),
    ]
}

/// Set members: canonical integers (a compact set) and others ("01" is not canonical).
const SET_MEMBERS: &[&str] = &["1", "2", "10", "-3", "x", "y", "", "01"];
/// At least as many as `SET_MEMBERS`: such a count takes (or pops) the whole set, so the
/// reply is not random.
const ALL: &str = "100";

fn sets_command() -> impl Strategy<Value = Vec<String>> {
    let member = || pick(SET_MEMBERS);
    let members = || proptest::collection::vec(pick(SET_MEMBERS), 1..4);
    let keys = || proptest::collection::vec(key(), 1..4);
    let with = |name: &str, rest: Vec<String>| [vec![name.to_string()], rest].concat();
    prop_oneof![
        (key(), members()).prop_map(move |(k, m)| with("SADD", [vec![k], m].concat())),
        (key(), members()).prop_map(move |(k, m)| with("SREM", [vec![k], m].concat())),
        pick(&["SMEMBERS", "SCARD"]).prop_flat_map(|c| key().prop_map(move |k| vec![c.clone(), k])),
        (key(), member()).prop_map(|(k, m)| vec!["SISMEMBER".into(), k, m]),
        (key(), members()).prop_map(move |(k, m)| with("SMISMEMBER", [vec![k], m].concat())),
        // SPOP only where nothing random happens: the whole set, nothing, or an error.
        (key(), pick(&[ALL, "9223372036854775807", "0", "-1", "x", "1.5"])).prop_map(|(k, n)| vec![
            "SPOP".into(),
            k,
            n
        ]),
        key().prop_map(|k| vec!["SPOP".into(), k, "1".into(), "2".into()]),
        // SRANDMEMBER: `normalise` keeps what is not random.
        (
            key(),
            proptest::option::of(pick(&[
                ALL,
                "9223372036854775807",
                "0",
                "1",
                "2",
                "-1",
                "-5",
                "x",
                "-9223372036854775808"
            ]))
        )
            .prop_map(|(k, n)| [vec!["SRANDMEMBER".to_string(), k], n.into_iter().collect()].concat()),
        key().prop_map(|k| vec!["SRANDMEMBER".into(), k, "1".into(), "2".into()]),
        (pick(&["SINTER", "SUNION", "SDIFF"]), keys()).prop_map(move |(c, ks)| with(&c, ks)),
        (pick(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]), key(), keys())
            .prop_map(move |(c, d, ks)| with(&c, [vec![d], ks].concat())),
        (
            pick(&["1", "2", "3", "0", "-1", "x"]),
            proptest::collection::vec(key(), 2),
            proptest::option::of((pick(&["LIMIT", "limit", "BOGUS"]), pick(&["0", "1", "2", "-1", "x"]))),
            any::<bool>()
        )
            .prop_map(move |(n, ks, limit, cut)| {
                let mut c = with("SINTERCARD", [vec![n], ks].concat());
                if let Some((opt, v)) = limit {
                    c.push(opt);
                    if !cut {
                        c.push(v);
                    }
                }
                c
            }),
        (key(), key(), member()).prop_map(|(a, b, m)| vec!["SMOVE".into(), a, b, m]),
        // Cursors other than 0 and COUNTs below the set's size are Redis' hash-table
        // walk, which ringcache does not reproduce (see SSCAN in the README).
        (
            key(),
            pick(&["0", "x"]),
            proptest::option::of(pick(&["*", "1*", "[xy]", "?", "-*"])),
            proptest::option::of(pick(&["10", "1000", "0", "x"])),
            proptest::option::of(pick(&["TYPE", "NOVALUES"]))
        )
            .prop_map(|(k, cursor, pattern, count, bogus)| {
                let mut c = vec!["SSCAN".to_string(), k, cursor];
                if let Some(p) = pattern {
                    c.extend(["MATCH".to_string(), p]);
                }
                if let Some(n) = count {
                    c.extend(["COUNT".to_string(), n]);
                }
                c.extend(bogus);
                c
            }),
    ]
}

fn zsetop_command() -> impl Strategy<Value = Vec<String>> {
    let options = proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(pick(SCORES), 1..4).prop_map(|w| [vec!["WEIGHTS".to_string()], w].concat()),
            pick(&["SUM", "MIN", "MAX", "min", "AVG"]).prop_map(|a| vec!["AGGREGATE".to_string(), a]),
            Just(vec!["WITHSCORES".to_string()]),
            pick(&["0", "1", "2", "-1", "x"]).prop_map(|l| vec!["LIMIT".to_string(), l]),
        ],
        0..3,
    )
    .prop_map(|v| v.concat());
    (
        pick(&[
            "ZUNION",
            "ZINTER",
            "ZDIFF",
            "ZINTERCARD",
            "ZUNIONSTORE",
            "ZINTERSTORE",
            "ZDIFFSTORE",
        ]),
        key(),
        pick(NUMKEYS),
        proptest::collection::vec(key(), 1..4),
        options,
    )
        .prop_map(|(c, dst, n, keys, opts)| {
            let mut v = vec![c.clone()];
            if c.ends_with("STORE") {
                v.push(dst);
            }
            v.push(n);
            v.extend(keys);
            v.extend(opts);
            v
        })
}

fn zset_command() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        4 => zadd_command(),
        3 => zrange_command(),
        2 => zread_command(),
        2 => zpop_command(),
        2 => zsetop_command(),
        // Arity errors.
        1 => pick(&["ZADD", "ZINCRBY", "ZRANGE", "ZRANGESTORE", "ZCOUNT", "ZMPOP", "ZUNION", "ZUNIONSTORE", "ZSCAN", "ZPOPMIN", "BZPOPMIN", "BZPOPMAX", "BZMPOP"])
            .prop_map(|c| vec![c, "a".to_string()]),
    ]
}

/// List elements: repeats so that LREM, LPOS and LINSERT find several matches.
const ELEMENTS: &[&str] = &["a", "b", "c", "", "1", "a"];
/// List indexes and counts: in range, negative, out of range, extremes, not integers.
const INDEXES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "-2",
    "-5",
    "7",
    "100",
    "9223372036854775807",
    "-9223372036854775808",
    "x",
    "1.5",
];
const COUNTS: &[&str] = &["0", "1", "2", "3", "10", "-1", "x", "9223372036854775807"];
/// Blocking timeouts: short enough that an empty key times out at once on both servers
/// (never 0, which waits forever), and the invalid ones.
const TIMEOUTS: &[&str] = &["0.01", "-1", "x", "inf", "1e30", "-0.5"];

fn list_command() -> impl Strategy<Value = Vec<String>> {
    let elem = || pick(ELEMENTS);
    let end = || pick(&["LEFT", "RIGHT", "left", "MIDDLE"]);
    prop_oneof![
        3 => (pick(&["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]), key(), proptest::collection::vec(elem(), 1..4))
            .prop_map(|(c, k, es)| [vec![c, k], es].concat()),
        2 => (pick(&["LPOP", "RPOP"]), key(), proptest::option::of(pick(COUNTS)))
            .prop_map(|(c, k, n)| [vec![c, k], n.into_iter().collect()].concat()),
        1 => key().prop_map(|k| vec!["LLEN".into(), k]),
        2 => (key(), pick(INDEXES), pick(INDEXES)).prop_map(|(k, a, b)| vec!["LRANGE".into(), k, a, b]),
        1 => (key(), pick(INDEXES)).prop_map(|(k, i)| vec!["LINDEX".into(), k, i]),
        1 => (key(), pick(INDEXES), elem()).prop_map(|(k, i, e)| vec!["LSET".into(), k, i, e]),
        1 => (key(), pick(&["BEFORE", "after", "AROUND"]), elem(), elem())
            .prop_map(|(k, w, p, e)| vec!["LINSERT".into(), k, w, p, e]),
        1 => (key(), pick(COUNTS), elem()).prop_map(|(k, n, e)| vec!["LREM".into(), k, n, e]),
        1 => (key(), pick(INDEXES), pick(INDEXES)).prop_map(|(k, a, b)| vec!["LTRIM".into(), k, a, b]),
        2 => (
            key(),
            elem(),
            proptest::collection::vec(
                (pick(&["RANK", "COUNT", "MAXLEN", "BOGUS"]), pick(&["1", "2", "-1", "-2", "0", "x", "-9223372036854775808"])),
                0..3
            ),
            any::<bool>(),
        )
            .prop_map(|(k, e, opts, dangling)| {
                let mut c = vec!["LPOS".to_string(), k, e];
                for (o, v) in opts {
                    c.extend([o, v]);
                }
                if dangling {
                    c.push("COUNT".into());
                }
                c
            }),
        1 => (key(), key(), end(), end()).prop_map(|(a, b, f, t)| vec!["LMOVE".into(), a, b, f, t]),
        1 => (key(), key()).prop_map(|(a, b)| vec!["RPOPLPUSH".into(), a, b]),
        1 => (pick(&["BLPOP", "BRPOP"]), proptest::collection::vec(key(), 1..3), pick(TIMEOUTS))
            .prop_map(|(c, keys, t)| [vec![c], keys, vec![t]].concat()),
        1 => (key(), key(), end(), end(), pick(TIMEOUTS)).prop_map(|(a, b, f, t, w)| vec!["BLMOVE".into(), a, b, f, t, w]),
        1 => (key(), key(), pick(TIMEOUTS)).prop_map(|(a, b, t)| vec!["BRPOPLPUSH".into(), a, b, t]),
        1 => (
            pick(TIMEOUTS),
            pick(&["1", "2", "0", "x"]),
            proptest::collection::vec(key(), 1..3),
            end(),
            proptest::option::of(pick(COUNTS)),
        )
            .prop_map(|(t, n, keys, e, count)| {
                let mut c = vec!["BLMPOP".to_string(), t, n];
                c.extend(keys);
                c.push(e);
                if let Some(count) = count {
                    c.extend(["COUNT".to_string(), count]);
                }
                c
            }),
        2 => (
            pick(&["1", "2", "3", "0", "-1", "x"]),
            proptest::collection::vec(key(), 1..3),
            end(),
            proptest::option::of(pick(COUNTS)),
        )
            .prop_map(|(n, keys, e, count)| {
                let mut c = vec!["LMPOP".to_string(), n];
                c.extend(keys);
                c.push(e);
                if let Some(count) = count {
                    c.extend(["COUNT".to_string(), count]);
                }
                c
            }),
    ]
}

/// String values for the bit commands and LCS: byte boundaries, all-ones bytes, and
/// strings with common subsequences.
const BIT_VALUES: &[&str] = &[
    "a",
    "\u{7f}",
    "ÿ",
    "\u{0}\u{0}\u{1}",
    "ohmytext",
    "mynewtext",
    "\u{ff}\u{ff}\u{ff}\u{ff}",
    "AAAA",
];
/// Bit offsets and BITFIELD offsets (`#n` counts in the field's width); 4294967296 is
/// one bit past the 512 MB limit.
const BIT_OFFSETS: &[&str] = &[
    "0",
    "1",
    "7",
    "8",
    "9",
    "15",
    "16",
    "23",
    "31",
    "100",
    "-1",
    "x",
    "#1",
    "#3",
    "4294967296",
    "9223372036854775807",
];
/// BITCOUNT/BITPOS range ends, negative ones included.
const BIT_RANGES: &[&str] = &["0", "1", "2", "-1", "-2", "-3", "5", "9", "17", "-100", "100", "x"];
const FIELD_TYPES: &[&str] = &[
    "i1", "u1", "i5", "u8", "i8", "i16", "u16", "i63", "i64", "u63", "u64", "i65", "i0", "I8", "x",
];
const FIELD_VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "100",
    "127",
    "128",
    "255",
    "256",
    "-129",
    "9223372036854775807",
    "-9223372036854775808",
    "x",
];

fn bitfield_op() -> impl Strategy<Value = Vec<String>> {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    prop_oneof![
        (pick(FIELD_TYPES), pick(BIT_OFFSETS)).prop_map(|(t, o)| vec!["GET".to_string(), t, o]),
        (pick(FIELD_TYPES), pick(BIT_OFFSETS), pick(FIELD_VALUES)).prop_map(|(t, o, v)| vec![
            "SET".to_string(),
            t,
            o,
            v
        ]),
        (pick(FIELD_TYPES), pick(BIT_OFFSETS), pick(FIELD_VALUES)).prop_map(|(t, o, v)| vec![
            "INCRBY".to_string(),
            t,
            o,
            v
        ]),
        pick(&["WRAP", "SAT", "FAIL", "sat", "BOGUS"]).prop_map(|m| vec!["OVERFLOW".to_string(), m]),
        Just(words(&["GET", "u8"])),
        Just(words(&["BOGUS", "u8", "0"])),
    ]
}

fn bits_command() -> impl Strategy<Value = Vec<String>> {
    let unit = || proptest::option::of(pick(&["BYTE", "BIT", "bit", "BOGUS"]));
    prop_oneof![
        (key(), pick(BIT_VALUES)).prop_map(|(k, v)| vec!["SET".into(), k, v]),
        (key(), pick(BIT_OFFSETS), pick(&["0", "1", "2", "-1", "x"])).prop_map(|(k, o, b)| vec![
            "SETBIT".into(),
            k,
            o,
            b
        ]),
        (key(), pick(BIT_OFFSETS)).prop_map(|(k, o)| vec!["GETBIT".into(), k, o]),
        // All-ones bytes (not writable as UTF-8 arguments) for BITPOS 0 and BITCOUNT.
        (key(), pick(&["#0", "#1", "#2"])).prop_map(|(k, o)| vec![
            "BITFIELD".into(),
            k,
            "SET".into(),
            "i8".into(),
            o,
            "-1".into()
        ]),
        (
            key(),
            proptest::option::of((pick(BIT_RANGES), proptest::option::of((pick(BIT_RANGES), unit()))))
        )
            .prop_map(|(k, range)| {
                let mut c = vec!["BITCOUNT".to_string(), k];
                if let Some((s, rest)) = range {
                    c.push(s);
                    if let Some((e, u)) = rest {
                        c.push(e);
                        c.extend(u);
                    }
                }
                c
            }),
        (
            key(),
            pick(&["0", "1", "2", "x"]),
            proptest::option::of((pick(BIT_RANGES), proptest::option::of((pick(BIT_RANGES), unit()))))
        )
            .prop_map(|(k, bit, range)| {
                let mut c = vec!["BITPOS".to_string(), k, bit];
                if let Some((s, rest)) = range {
                    c.push(s);
                    if let Some((e, u)) = rest {
                        c.push(e);
                        c.extend(u);
                    }
                }
                c
            }),
        (
            pick(&["AND", "OR", "XOR", "NOT", "not", "NAND"]),
            key(),
            proptest::collection::vec(key(), 1..4)
        )
            .prop_map(|(op, d, src)| [vec!["BITOP".to_string(), op, d], src].concat()),
        (
            pick(&["BITFIELD", "BITFIELD_RO"]),
            key(),
            proptest::collection::vec(bitfield_op(), 0..4)
        )
            .prop_map(|(c, k, ops)| [vec![c, k], ops.concat()].concat()),
        (
            key(),
            key(),
            proptest::collection::vec(
                prop_oneof![
                    Just(vec!["LEN".to_string()]),
                    Just(vec!["IDX".to_string()]),
                    Just(vec!["WITHMATCHLEN".to_string()]),
                    pick(&["0", "1", "2", "4", "-1", "x"]).prop_map(|n| vec!["MINMATCHLEN".to_string(), n]),
                    Just(vec!["MINMATCHLEN".to_string()]),
                    Just(vec!["BOGUS".to_string()]),
                ],
                0..3,
            )
        )
            .prop_map(|(a, b, opts)| [vec!["LCS".to_string(), a, b], opts.concat()].concat()),
    ]
}

/// Strings that look like sketches: too short, a valid empty sparse one (256 ZERO
/// opcodes), truncated sparse ones with a valid and a stale cache, a dense one of the
/// wrong length, an unknown encoding.
fn crafted_sketch() -> impl Strategy<Value = String> {
    let header = "HYLL\u{1}\0\0\0\0\0\0\0\0\0\0\0";
    // "\u{80}" is the two bytes c2 80: the cache's top bit set (stale).
    let stale = "HYLL\u{1}\0\0\0\0\0\0\0\0\0\u{80}";
    proptest::sample::select(vec![
        "HYLL".to_string(),
        format!("{header}{}", "?".repeat(256)),
        format!("{header}{}", "?".repeat(10)),
        format!("{stale}{}", "?".repeat(10)),
        format!("{stale}{}", "?".repeat(256)),
        format!("HYLL\0\0\0\0\0\0\0\0\0\0\0\0{}", "?".repeat(30)),
        format!("HYLL\u{2}\0\0\0\0\0\0\0\0\0\0\0{}", "?".repeat(30)),
        "aaaaaaaaaaaaaaaaaaaa".to_string(),
    ])
}

fn hll_command() -> impl Strategy<Value = Vec<String>> {
    let element = || pick(&["a", "b", "c", "d", "e", "f", "", "1", "foo", "bar", "hello world"]);
    prop_oneof![
        (key(), proptest::collection::vec(element(), 0..5))
            .prop_map(|(k, e)| [vec!["PFADD".to_string(), k], e].concat()),
        // Many elements: a sparse sketch passes hll-sparse-max-bytes and turns dense.
        (key(), 0u32..1_000_000, prop_oneof![1usize..300, 1500usize..2200]).prop_map(|(k, from, n)| {
            let mut c = vec!["PFADD".to_string(), k];
            c.extend((from..from + n as u32).map(|i| format!("e{i}")));
            c
        }),
        (key(), crafted_sketch()).prop_map(|(k, v)| vec!["SET".into(), k, v]),
        proptest::collection::vec(key(), 1..4).prop_map(|k| [vec!["PFCOUNT".to_string()], k].concat()),
        proptest::collection::vec(key(), 1..4).prop_map(|k| [vec!["PFMERGE".to_string()], k].concat()),
        key().prop_map(|k| vec!["GET".into(), k]),
    ]
}

/// Every command family's names, for arity errors.
const NAMES: &[&str] = &[
    "GET",
    "SET",
    "SETEX",
    "PSETEX",
    "SETNX",
    "GETSET",
    "GETDEL",
    "GETEX",
    "MGET",
    "MSET",
    "MSETNX",
    "APPEND",
    "STRLEN",
    "INCR",
    "DECR",
    "INCRBY",
    "DECRBY",
    "INCRBYFLOAT",
    "GETRANGE",
    "SETRANGE",
    "DEL",
    "UNLINK",
    "EXISTS",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "TTL",
    "PTTL",
    "EXPIRETIME",
    "PEXPIRETIME",
    "PERSIST",
    "TYPE",
    "KEYS",
    "RENAME",
    "RENAMENX",
    "TOUCH",
    "HSET",
    "HSETNX",
    "HGET",
    "HMGET",
    "HMSET",
    "HGETALL",
    "HDEL",
    "HEXISTS",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HLEN",
    "HKEYS",
    "HVALS",
    "HSTRLEN",
    "LPUSH",
    "LPOP",
    "RPOP",
    "LLEN",
    "LRANGE",
    "LINDEX",
    "LSET",
    "LINSERT",
    "LREM",
    "LTRIM",
    "LPOS",
    "LMOVE",
    "RPOPLPUSH",
    "LMPOP",
    "BLPOP",
    "BLMOVE",
    "BLMPOP",
    "SADD",
    "SREM",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SCARD",
    "SPOP",
    "SRANDMEMBER",
    "SINTER",
    "SUNION",
    "SDIFF",
    "SINTERSTORE",
    "SUNIONSTORE",
    "SDIFFSTORE",
    "SINTERCARD",
    "SMOVE",
    "SSCAN",
    "ECHO",
    "PING",
    "DBSIZE",
    "SETBIT",
    "GETBIT",
    "BITCOUNT",
    "BITPOS",
    "BITOP",
    "BITFIELD",
    "BITFIELD_RO",
    "LCS",
    "PFADD",
    "PFCOUNT",
    "PFMERGE",
];

/// A command from its words.
fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// Wrong arity, clashing options and unknown commands, whose error strings clients match on.
fn malformed_command() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        // No arguments, or five more than a key: wrong for every fixed arity here.
        (pick(NAMES), any::<bool>()).prop_map(|(c, long)| {
            let mut v = vec![c];
            if long {
                v.extend(["a", "b", "c", "d", "e"].map(String::from));
            }
            v
        }),
        Just(words(&["SET", "a"])),
        Just(words(&["MSET", "a", "1", "b"])),
        Just(words(&["HSET", "a", "f"])),
        Just(words(&["NOSUCHCOMMAND", "x"])),
        Just(words(&["SET", "a", "1", "EX"])),
        Just(words(&["SET", "a", "1", "NX", "XX"])),
        Just(words(&["SET", "a", "1", "EX", "1", "PX", "1"])),
        Just(words(&["SET", "a", "1", "KEEPTTL", "EX", "1"])),
        Just(words(&["SET", "a", "1", "BOGUS"])),
        Just(words(&["EXPIRE", "a", "1", "NX", "XX"])),
        Just(words(&["EXPIRE", "a", "1", "GT", "LT"])),
        Just(words(&["CLIENT", "SETNAME", "someone"])),
        Just(words(&["CLIENT", "GETNAME"])),
        Just(words(&["EXPIRE", "a", "1", "NX", "GT"])),
        Just(words(&["EXPIRE", "a", "1", "BOGUS"])),
        Just(words(&["GETEX", "a", "EX", "1", "PERSIST"])),
        Just(words(&["GETEX", "a", "BOGUS"])),
        Just(words(&["PING", "hello"])),
        Just(words(&["ECHO", "hello"])),
        // Container commands: unknown subcommands and subcommand arity.
        Just(words(&["CLIENT"])),
        Just(words(&["CLIENT", "SETNAME"])),
        Just(words(&["CLIENT", "SETNAME", "a", "b"])),
        Just(words(&["CLIENT", "SETNAME", "has space"])),
        Just(words(&["CLIENT", "GETNAME", "x"])),
        Just(words(&["CLIENT", "ID", "x"])),
        Just(words(&["CLIENT", "nosuch"])),
        Just(words(&["CLIENT", "NO-EVICT", "maybe"])),
        Just(words(&["CONFIG"])),
        Just(words(&["CONFIG", "GET"])),
        Just(words(&["CONFIG", "SET", "maxmemory"])),
        Just(words(&["CONFIG", "SET", "maxmemory", "1mb", "maxmemory"])),
        Just(words(&["CONFIG", "SET", "nosuch", "1"])),
        Just(words(&["CONFIG", "nosuch"])),
        Just(words(&["COMMAND", "nosuch"])),
        Just(words(&["COMMAND", "GETKEYS"])),
        Just(words(&["COMMAND", "GETKEYS", "nosuch"])),
        Just(words(&["COMMAND", "GETKEYS", "GET", "k"])),
        Just(words(&["COMMAND", "GETKEYS", "MSET", "k", "v", "l", "w"])),
        Just(words(&["COMMAND", "COUNT", "x"])),
        Just(words(&["AUTH", "secret"])),
        Just(words(&["AUTH", "default", "secret"])),
        Just(words(&["HELLO", "4"])),
        Just(words(&["HELLO", "x"])),
        Just(words(&["HELLO", "3", "BOGUS"])),
        Just(words(&["HELLO", "3", "AUTH", "default"])),
        Just(words(&["SELECT", "0"])),
        Just(words(&["SELECT", "x"])),
        Just(words(&["FLUSHDB", "BOGUS"])),
        Just(words(&["FLUSHALL", "SYNC", "ASYNC"])),
    ]
}

/// Transactions: MULTI and EXEC often enough that sequences hold whole transactions,
/// with WATCH before them and the other families' commands queued inside.
fn transaction_command() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        3 => Just(words(&["MULTI"])),
        3 => Just(words(&["EXEC"])),
        1 => Just(words(&["DISCARD"])),
        2 => proptest::collection::vec(key(), 1..3).prop_map(|keys| {
            let mut c = words(&["WATCH"]);
            c.extend(keys);
            c
        }),
        1 => Just(words(&["UNWATCH"])),
        1 => Just(words(&["MULTI", "x"])),
        1 => Just(words(&["WATCH"])),
    ]
}

/// Pseudo-command run by the test itself: sleep long enough for a 1 ms TTL to pass on
/// both servers.
const SLEEP: &str = "SLEEP";

/// A key given a 1 ms TTL, then a pause: the key is expired on both servers before
/// the next command, so what follows meets lazy expiry deterministically.
fn expire_soon() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (key(), pick(VALUES)).prop_map(|(k, v)| vec!["SET".into(), k, v, "PX".into(), "1".into()]),
        (key(), pick(VALUES)).prop_map(|(k, v)| vec!["PSETEX".into(), k, "1".into(), v]),
        key().prop_map(|k| vec!["PEXPIRE".into(), k, "1".into()]),
        key().prop_map(|k| vec!["GETEX".into(), k, "PX".into(), "1".into()]),
    ]
}

fn command() -> impl Strategy<Value = Vec<String>> {
    let any_command = prop_oneof![
        4 => string_command(),
        3 => key_command(),
        3 => hash_command(),
        3 => list_command(),
        2 => bits_command(),
        2 => hll_command(),
        2 => transaction_command(),
        4 => zset_command(),
        3 => sets_command(),
        1 => malformed_command(),
        1 => expire_soon(),
    ];
    // Command names are case-insensitive.
    (any_command, any::<bool>()).prop_map(|(mut c, lower)| {
        if lower {
            c[0] = c[0].to_ascii_lowercase();
        }
        c
    })
}

/// Whether `cmd` is one of `expire_soon`'s 1 ms TTL commands.
fn expires_soon(cmd: &[String]) -> bool {
    let name = cmd[0].to_ascii_uppercase();
    match name.as_str() {
        "SET" | "GETEX" => cmd.len() >= 4 && cmd[cmd.len() - 2].eq_ignore_ascii_case("PX") && cmd[cmd.len() - 1] == "1",
        "PSETEX" => cmd.len() == 4 && cmd[2] == "1",
        "PEXPIRE" => cmd.len() == 3 && cmd[2] == "1",
        _ => false,
    }
}

/// Follows MULTI, queued commands, EXEC and DISCARD from `cmd` and Redis' `reply`;
/// the queued commands when `cmd` is an EXEC that ran them.
fn exec_of(cmd: &[String], queued: &mut Option<Vec<Vec<String>>>, reply: &[u8]) -> Option<Vec<Vec<String>>> {
    let name = cmd[0].to_ascii_uppercase();
    match name.as_str() {
        "MULTI" if reply == b"+OK\r\n" => *queued = Some(Vec::new()),
        "EXEC" | "DISCARD" | "RESET" => {
            let q = queued.take();
            if name == "EXEC" && reply.starts_with(b"*") {
                return q;
            }
        }
        _ if reply == b"+QUEUED\r\n" => {
            if let Some(q) = queued.as_mut() {
                q.push(cmd.to_vec());
            }
        }
        _ => {}
    }
    None
}

/// The length of the first complete RESP reply in `b`.
fn reply_len(b: &[u8]) -> Option<usize> {
    let eol = b.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&b[1..eol]).ok()?;
    let head = eol + 2;
    match b.first()? {
        b'$' | b'!' | b'=' => {
            let n: i64 = line.parse().ok()?;
            Some(if n < 0 { head } else { head + n as usize + 2 })
        }
        t @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
            let n: i64 = line.parse().ok()?;
            let items = if matches!(t, b'%' | b'|') { 2 * n } else { n };
            let mut at = head;
            for _ in 0..items.max(0) {
                at += reply_len(&b[at..])?;
            }
            Some(at)
        }
        _ => Some(head),
    }
}

/// EXEC's reply with each queued command's reply normalised; DBSIZE's hidden after a
/// TTL ran out (`dbsize_ok` false), as outside transactions.
fn normalise_exec(queue: &[Vec<String>], reply: Vec<u8>, dbsize_ok: bool) -> Vec<u8> {
    let Some(eol) = reply.windows(2).position(|w| w == b"\r\n") else {
        return reply;
    };
    let mut out = reply[..eol + 2].to_vec();
    let mut at = eol + 2;
    for cmd in queue {
        let Some(n) = reply_len(&reply[at..]) else {
            return reply;
        };
        let one = reply[at..at + n].to_vec();
        at += n;
        if !dbsize_ok && cmd[0].eq_ignore_ascii_case("DBSIZE") {
            out.extend_from_slice(b"(dbsize)");
            continue;
        }
        out.extend(normalise(cmd, one));
    }
    out.extend_from_slice(&reply[at..]);
    out
}

/// Whether `cmd` is EXEC or DISCARD.
fn ends_transaction(cmd: &[String]) -> bool {
    cmd.len() == 1 && (cmd[0].eq_ignore_ascii_case("EXEC") || cmd[0].eq_ignore_ascii_case("DISCARD"))
}

/// Makes replies that may differ between two correct servers comparable.
fn normalise(cmd: &[String], reply: Vec<u8>) -> Vec<u8> {
    let name = cmd[0].to_ascii_uppercase();
    match name.as_str() {
        "TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME" => match reply.strip_prefix(b":") {
            Some(rest) if !rest.starts_with(b"-") => b"positive".to_vec(),
            _ => reply,
        },
        "KEYS" | "HKEYS" | "HVALS" => sorted(&reply, 0, 1),
        "HGETALL" => sorted(&reply, 0, 2),
        // Which encoding: compared in `object_encoding_of_strings_matches_redis`
        // (Redis' string encodings depend on a key's history, and its collections'
        // on forms ringcache does not all have); here only nil and errors.
        "OBJECT"
            if cmd.len() == 3
                && cmd[1].eq_ignore_ascii_case("ENCODING")
                && reply.starts_with(b"$")
                && !reply.starts_with(b"$-1") =>
        {
            b"(an encoding)".to_vec()
        }
        // CONFIG GET with a pattern: the pairs in any order.
        "CONFIG" => sorted(&reply, 0, 2),
        // `*2`, the cursor (`$1`, `0`), then the array of items: sort the items.
        "SCAN" => sorted(&reply, 3, 1),
        "HSCAN" => sorted(&reply, 3, 2),
        "SMEMBERS" | "SINTER" | "SUNION" | "SDIFF" | "SPOP" => sorted(&reply, 0, 1),
        "SSCAN" => sorted(&reply, 3, 1),
        "SRANDMEMBER" => srandmember_shape(cmd, reply),
        _ => reply,
    }
}

/// What of an SRANDMEMBER reply is not random: errors and nil; without a count, that a
/// member came; with a count, the whole set (sorted) for a count above the set's size,
/// else how many members came.
fn srandmember_shape(cmd: &[String], reply: Vec<u8>) -> Vec<u8> {
    if !(reply.starts_with(b"$") || reply.starts_with(b"*")) || reply.starts_with(b"$-1") {
        return reply;
    }
    match cmd.get(2).map(String::as_str) {
        None => b"a member".to_vec(),
        Some(n) if n == ALL || n == "9223372036854775807" => sorted(&reply, 0, 1),
        Some(_) => reply.split(|&b| b == b'\n').next().unwrap_or_default().to_vec(),
    }
}

/// The reply's lines with the bulk strings after the first `skip` lines and the next
/// header sorted in groups of `per` (field and value stay together), when every
/// element there is a bulk string; other replies (errors) are left alone.
fn sorted(reply: &[u8], skip: usize, per: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(reply).to_string();
    let mut lines: Vec<&str> = text.split("\r\n").collect();
    lines.pop(); // after the last CRLF
    if lines.len() <= skip || !lines[skip].starts_with(['*', '%', '~']) {
        return reply.to_vec();
    }
    // A bulk string is its length line and its (possibly empty) body line.
    let mut items: Vec<String> = Vec::new();
    let mut rest = lines[skip + 1..].iter();
    while let Some(line) = rest.next() {
        match (line.starts_with('$'), rest.next()) {
            (true, Some(body)) => items.push(format!("{line}\r\n{body}")),
            _ => return reply.to_vec(),
        }
    }
    let mut groups: Vec<String> = items.chunks(per).map(|c| c.join("\r\n")).collect();
    groups.sort();
    format!("{} {}", lines[..=skip].join("\r\n"), groups.join(" ")).into_bytes()
}

/// keyspace_hits and keyspace_misses from an INFO reply.
fn counts(info: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(info);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in INFO stats"))
    };
    (field("keyspace_hits:"), field("keyspace_misses:"))
}

/// Printable bytes, cut at 300 characters.
fn show(b: &[u8]) -> String {
    let text = String::from_utf8_lossy(b).replace("\r\n", "⏎");
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], b.len()),
        None => text,
    }
}

/// Runs random sequences on both servers after `hello` (if any) and compares replies.
fn compare(hello: Option<&str>) {
    let node = common::start();
    let redis = Redis::start();
    // proptest's body is a `Fn`: the connections are borrowed mutably per case.
    let ours = std::cell::RefCell::new(Conn::open(node.resp_addr));
    let theirs = std::cell::RefCell::new(Conn::open(("127.0.0.1", redis.port)));
    if let Some(version) = hello {
        // The HELLO replies name each server, so they are not compared.
        let hello = vec!["HELLO".to_string(), version.to_string()];
        ours.borrow_mut().call(&hello);
        theirs.borrow_mut().call(&hello);
    }
    // PROPTEST_CASES=5000 for a longer hunt.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in proptest::collection::vec(command(), 1..40))| {
        let (mut ours, mut theirs) = (ours.borrow_mut(), theirs.borrow_mut());
        let flush = vec!["FLUSHALL".to_string()];
        prop_assert_eq!(ours.call(&flush), theirs.call(&flush));
        let resetstat = vec!["CONFIG".to_string(), "RESETSTAT".to_string()];
        prop_assert_eq!(ours.call(&resetstat), theirs.call(&resetstat));
        // Each 1 ms TTL is followed by a pause.
        let commands: Vec<Vec<String>> = steps
            .into_iter()
            .flat_map(|c| {
                // Inside MULTI a 1 ms TTL starts at EXEC (both servers run a
                // transaction at one fixed time), so a pause follows every EXEC too.
                let pause = expires_soon(&c) || ends_transaction(&c);
                std::iter::once(c).chain(pause.then(|| vec![SLEEP.to_string()]))
            })
            .collect();
        // Redis counts an expired key in DBSIZE until its expiry cycle or an access
        // reclaims it, which is timing: DBSIZE is compared only before any TTL ran out.
        let mut expired_some = false;
        // The commands queued since MULTI, as Redis' replies tell.
        let mut queued: Option<Vec<Vec<String>>> = None;
        for (i, cmd) in commands.iter().enumerate() {
            if cmd[0] == SLEEP {
                std::thread::sleep(Duration::from_millis(3));
                expired_some = true;
                continue;
            }
            if expired_some && queued.is_none() && cmd[0].eq_ignore_ascii_case("DBSIZE") {
                ours.call(cmd);
                theirs.call(cmd);
                continue;
            }
            let (a, b) = (ours.call(cmd), theirs.call(cmd));
            let (a, b) = match exec_of(cmd, &mut queued, &b) {
                // EXEC's replies are the queued commands' replies, each normalised.
                Some(queue) => {
                    let dbsize_ok = !expired_some;
                    (normalise_exec(&queue, a, dbsize_ok), normalise_exec(&queue, b, dbsize_ok))
                }
                None => (normalise(cmd, a), normalise(cmd, b)),
            };
            prop_assert!(
                a == b,
                "command {} of {}: {:?}\n ringcache: {}\n redis:     {}",
                i + 1, commands.len(), cmd, show(&a), show(&b)
            );
        }
        // A case may end inside MULTI or with keys watched: leave both before INFO.
        for end in [words(&["DISCARD"]), words(&["UNWATCH"])] {
            prop_assert_eq!(ours.call(&end), theirs.call(&end));
        }
        // Hits and misses count the way Redis counts them (the control plane's hit
        // rates are built on them), with one deliberate difference: Redis 7.0 counts
        // SCAN's TYPE filter looking at each key as a hit or miss; here a scan does
        // not move the hit rate.
        let scan_type = commands.iter().any(|c| {
            c[0].eq_ignore_ascii_case("SCAN") && c.iter().any(|a| a.eq_ignore_ascii_case("TYPE"))
        });
        let info = vec!["INFO".to_string(), "stats".to_string()];
        let (a, b) = (counts(&ours.call(&info)), counts(&theirs.call(&info)));
        prop_assert!(a == b || scan_type, "keyspace hits/misses after {:?}\n ringcache: {:?}\n redis:     {:?}", commands, a, b);
    });
}

#[test]
fn random_command_sequences_get_the_same_resp2_replies_as_redis() {
    compare(None);
}

#[test]
fn random_command_sequences_get_the_same_resp3_replies_as_redis() {
    compare(Some("3"));
}

/// OBJECT ENCODING of strings written by SET and its family, INCR and COPY: `int`,
/// `embstr` or `raw` as Redis says. (Redis also remembers that APPEND, SETRANGE or
/// INCRBYFLOAT made a value, which ringcache does not; those are left out.)
#[test]
fn object_encoding_of_strings_matches_redis() {
    let node = common::start();
    let redis = Redis::start();
    let mut ours = Conn::open(node.resp_addr);
    let mut theirs = Conn::open(("127.0.0.1", redis.port));
    let long = "x".repeat(45);
    let edge = "y".repeat(44);
    let mut script: Vec<Vec<String>> = Vec::new();
    for (i, v) in [
        "12",
        "-7",
        "007",
        "9223372036854775807",
        "9223372036854775808",
        "1.5",
        "",
        &edge,
        &long,
    ]
    .iter()
    .enumerate()
    {
        let k = format!("k{i}");
        script.push(words(&["SET", &k, v]));
        script.push(words(&["OBJECT", "ENCODING", &k]));
        script.push(words(&["COPY", &k, &format!("c{i}")]));
        script.push(words(&["OBJECT", "ENCODING", &format!("c{i}")]));
        script.push(words(&["MSET", &k, v]));
        script.push(words(&["OBJECT", "ENCODING", &k]));
    }
    script.push(words(&["INCR", "n"]));
    script.push(words(&["OBJECT", "ENCODING", "n"]));
    script.push(words(&["SETEX", "t", "100", "abc"]));
    script.push(words(&["OBJECT", "ENCODING", "t"]));
    script.push(words(&["OBJECT", "ENCODING", "missing"]));
    for c in &script {
        assert_eq!(show(&ours.call(c)), show(&theirs.call(c)), "{c:?}");
    }
}

/// OBJECT ENCODING of hashes: `listpack` while small, `hashtable` once a field or value
/// is longer than `hash-max-listpack-value` or there are more fields than
/// `hash-max-listpack-entries` (also after CONFIG SET lowers them), and for good.
#[test]
fn object_encoding_of_hashes_matches_redis() {
    let node = common::start();
    let redis = Redis::start();
    let mut ours = Conn::open(node.resp_addr);
    let mut theirs = Conn::open(("127.0.0.1", redis.port));
    let mut script: Vec<Vec<String>> = vec![
        words(&["HSET", "small", "a", "1", "b", "2"]),
        words(&["OBJECT", "ENCODING", "small"]),
        words(&["HSET", "edge", "f", &"v".repeat(64)]),
        words(&["OBJECT", "ENCODING", "edge"]),
        words(&["HSET", "long", "f", &"v".repeat(65)]),
        words(&["OBJECT", "ENCODING", "long"]),
        words(&["HDEL", "long", "f"]),
        words(&["HSET", "longfield", &"f".repeat(65), "v"]),
        words(&["HSET", "longfield", &"f".repeat(65), "w", "g", "1"]),
        words(&["HDEL", "longfield", &"f".repeat(65)]),
        words(&["OBJECT", "ENCODING", "longfield"]),
        words(&["HINCRBY", "counter", "n", "5"]),
        words(&["OBJECT", "ENCODING", "counter"]),
    ];
    let mut many = vec!["HSET".to_string(), "many".to_string()];
    for i in 0..512 {
        many.push(format!("f{i}"));
        many.push(i.to_string());
    }
    script.push(many.clone());
    script.push(words(&["OBJECT", "ENCODING", "many"]));
    script.push(words(&["HSET", "many", "f0", "again"]));
    script.push(words(&["OBJECT", "ENCODING", "many"]));
    script.push(words(&["HSET", "many", "one-more", "x"]));
    script.push(words(&["OBJECT", "ENCODING", "many"]));
    script.push(words(&["CONFIG", "SET", "hash-max-listpack-entries", "3"]));
    script.push(words(&["HSET", "small", "c", "3"]));
    script.push(words(&["OBJECT", "ENCODING", "small"]));
    script.push(words(&["HSET", "small", "d", "4"]));
    script.push(words(&["OBJECT", "ENCODING", "small"]));
    script.push(words(&["HDEL", "small", "a", "b", "c"]));
    script.push(words(&["OBJECT", "ENCODING", "small"]));
    script.push(words(&["HGETALL", "edge"]));
    for c in &script {
        assert_eq!(show(&ours.call(c)), show(&theirs.call(c)), "{:?}", &c[..c.len().min(4)]);
    }
}

/// Everything a connection receives up to the reply to a PING sent now: the pushes
/// (invalidations, messages) that arrived since the last call, then the PING reply
/// (`+QUEUED` inside MULTI).
fn until_pong(c: &mut Conn) -> Vec<u8> {
    let ping = words(&["PING"]);
    let mut req = format!("*{}\r\n", ping.len()).into_bytes();
    for a in &ping {
        req.extend_from_slice(format!("${}\r\n{}\r\n", a.len(), a).as_bytes());
    }
    c.write.write_all(&req).expect("PING written");
    let mut all = Vec::new();
    loop {
        let start = all.len();
        c.reply(&mut all);
        let last = &all[start..];
        // Inside MULTI the PING is queued (and answered by EXEC on both servers).
        if last == b"+PONG\r\n" || last == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n" || last == b"+QUEUED\r\n" {
            return all;
        }
    }
}

/// One connection's step of a tracking script: the command, with `{id:N}` standing
/// for connection N's client id on the server at hand.
type Step = (usize, &'static [&'static str]);

/// Runs `script` over three connections on each server (after `hello` on every one)
/// and compares, step by step, what every connection received: replies, and the
/// invalidations and messages that reached the others.
fn compare_script(hello: Option<&str>, script: &[Step]) {
    let node = common::start();
    let redis = Redis::start();
    let open = |addr: std::net::SocketAddr| -> Vec<Conn> {
        (0..3)
            .map(|_| {
                let mut c = Conn::open(addr);
                if let Some(v) = hello {
                    c.call(&words(&["HELLO", v]));
                }
                c
            })
            .collect()
    };
    let redis_addr: std::net::SocketAddr = format!("127.0.0.1:{}", redis.port).parse().expect("address");
    let mut sides = [open(node.resp_addr), open(redis_addr)];
    let ids: Vec<Vec<String>> = sides
        .iter_mut()
        .map(|conns| {
            conns
                .iter_mut()
                .map(|c| {
                    let r = String::from_utf8_lossy(&c.call(&words(&["CLIENT", "ID"]))).to_string();
                    r.trim_start_matches(':').trim().to_string()
                })
                .collect()
        })
        .collect();
    for (i, (conn, command)) in script.iter().enumerate() {
        let mut seen: Vec<Vec<u8>> = Vec::new();
        for (side, conns) in sides.iter_mut().enumerate() {
            let cmd: Vec<String> = command
                .iter()
                .map(|w| match w.strip_prefix("{id:").and_then(|r| r.strip_suffix('}')) {
                    Some(n) => ids[side][n.parse::<usize>().expect("connection number")].clone(),
                    None => w.to_string(),
                })
                .collect();
            let mut got = conns[*conn].call(&cmd);
            // Client ids differ between the servers: name them by connection.
            if command.len() == 2 && (command[1] == "GETREDIR" || command[1] == "TRACKINGINFO") {
                for (n, id) in ids[side].iter().enumerate() {
                    got = String::from_utf8_lossy(&got)
                        .replace(&format!(":{id}\r\n"), &format!(":{{id:{n}}}\r\n"))
                        .into_bytes();
                }
            }
            // Then what every connection has received meanwhile.
            for (n, c) in conns.iter_mut().enumerate() {
                got.extend_from_slice(format!(" | conn {n}: ").as_bytes());
                got.extend(until_pong(c));
            }
            seen.push(got);
        }
        assert!(
            seen[0] == seen[1],
            "step {} {:?} on connection {conn}\n ringcache: {}\n redis:     {}",
            i + 1,
            command,
            show(&seen[0]),
            show(&seen[1])
        );
    }
}

/// CLIENT TRACKING in default, OPTIN, OPTOUT, BCAST (with prefixes) and NOLOOP modes,
/// flushes, CLIENT CACHING / GETREDIR / TRACKINGINFO and their errors.
const TRACKING_SCRIPT: &[Step] = &[
    (0, &["CLIENT", "TRACKING", "on"]),
    (0, &["GET", "k"]),
    (1, &["SET", "k", "1"]),
    (1, &["SET", "k", "2"]),
    (0, &["MGET", "k", "j"]),
    (0, &["SET", "j", "mine"]),
    (0, &["HSET", "h", "f", "v"]),
    (0, &["HGET", "h", "f"]),
    (1, &["HDEL", "h", "f"]),
    (0, &["GET", "k"]),
    (1, &["FLUSHALL"]),
    (0, &["CLIENT", "TRACKINGINFO"]),
    (0, &["CLIENT", "GETREDIR"]),
    (0, &["CLIENT", "CACHING", "yes"]),
    (0, &["CLIENT", "TRACKING", "on", "BCAST"]),
    (0, &["CLIENT", "TRACKING", "on", "OPTOUT"]),
    (0, &["CLIENT", "TRACKING", "off"]),
    (0, &["CLIENT", "CACHING", "yes"]),
    (0, &["CLIENT", "TRACKING", "on", "OPTIN", "NOLOOP"]),
    (0, &["GET", "a"]),
    (0, &["CLIENT", "CACHING", "yes"]),
    (0, &["GET", "b"]),
    (1, &["SET", "a", "1"]),
    (1, &["SET", "b", "1"]),
    (0, &["CLIENT", "CACHING", "no"]),
    (0, &["CLIENT", "TRACKINGINFO"]),
    (0, &["CLIENT", "TRACKING", "off"]),
    (0, &["CLIENT", "TRACKING", "on", "OPTOUT"]),
    (0, &["CLIENT", "CACHING", "no"]),
    (0, &["GET", "a"]),
    (0, &["GET", "b"]),
    (1, &["SET", "a", "2"]),
    (1, &["SET", "b", "2"]),
    (0, &["CLIENT", "TRACKING", "off"]),
    (
        0,
        &[
            "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "user:", "PREFIX", "post:",
        ],
    ),
    (0, &["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "us"]),
    (0, &["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x", "PREFIX", "xy"]),
    (0, &["CLIENT", "TRACKINGINFO"]),
    (1, &["SET", "user:1", "a"]),
    (1, &["MSET", "post:1", "a", "other", "b"]),
    (0, &["SET", "user:2", "mine"]),
    (0, &["CLIENT", "TRACKING", "off"]),
    // OPTIN with CLIENT CACHING yes before MULTI covers the whole transaction (the
    // way rueidis reads through its cache).
    (0, &["CLIENT", "TRACKING", "on", "OPTIN"]),
    (0, &["CLIENT", "CACHING", "yes"]),
    (0, &["MULTI"]),
    (0, &["PTTL", "c"]),
    (0, &["GET", "c"]),
    (0, &["EXEC"]),
    (1, &["SET", "c", "1"]),
    (0, &["CLIENT", "TRACKING", "off"]),
    (0, &["CLIENT", "TRACKING", "on", "PREFIX", "p"]),
    (0, &["CLIENT", "TRACKING", "on", "BCAST", "OPTIN"]),
    (0, &["CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"]),
    (0, &["CLIENT", "TRACKING", "on", "REDIRECT", "999999"]),
    (0, &["CLIENT", "TRACKING", "on", "REDIRECT", "x"]),
    (0, &["CLIENT", "TRACKING", "on", "BOGUS"]),
    (0, &["CLIENT", "TRACKING", "maybe"]),
    (0, &["CLIENT", "TRACKING"]),
    (0, &["CLIENT", "CACHING", "maybe"]),
];

/// Invalidations redirected to another connection (which in RESP2 must subscribe to
/// `__redis__:invalidate`), SUBSCRIBE / UNSUBSCRIBE / PUBLISH and Pub/Sub mode.
const REDIRECT_SCRIPT: &[Step] = &[
    (2, &["SUBSCRIBE", "__redis__:invalidate", "news"]),
    (0, &["CLIENT", "TRACKING", "on", "REDIRECT", "{id:2}"]),
    (0, &["CLIENT", "GETREDIR"]),
    (0, &["GET", "k"]),
    (1, &["SET", "k", "v"]),
    (1, &["PUBLISH", "news", "hello"]),
    (1, &["PUBLISH", "nobody", "hello"]),
    (2, &["GET", "k"]),
    (2, &["UNSUBSCRIBE", "news"]),
    (1, &["FLUSHDB"]),
    (2, &["UNSUBSCRIBE"]),
    (2, &["UNSUBSCRIBE"]),
    (2, &["GET", "k"]),
];

#[test]
fn tracking_matches_redis_in_resp3() {
    compare_script(Some("3"), TRACKING_SCRIPT);
}

#[test]
fn tracking_matches_redis_in_resp2() {
    compare_script(None, TRACKING_SCRIPT);
}

#[test]
fn redirected_invalidations_and_pubsub_match_redis() {
    compare_script(None, REDIRECT_SCRIPT);
    compare_script(Some("3"), REDIRECT_SCRIPT);
}

/// Sends `input`, reads what comes back, and ends with QUIT if the server has not
/// closed the connection itself: the replies, and the protocol error if the input broke
/// the connection. QUIT goes only after a pause with nothing to read, because bytes
/// still unread when a server closes after a protocol error make the kernel reset the
/// connection, which can discard the error reply before the client reads it.
fn raw_exchange(addr: impl std::net::ToSocketAddrs, input: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.write_all(input).expect("input written");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut quit_sent = false;
    loop {
        let timeout = if quit_sent {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(200)
        };
        s.set_read_timeout(Some(timeout)).expect("timeout");
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e)
                if !quit_sent && matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                s.write_all(b"*1\r\n$4\r\nQUIT\r\n").expect("QUIT written");
                quit_sent = true;
            }
            Err(e) => panic!("reading after {:?}: {e}", show(input)),
        }
    }
    out
}

/// Framing, inline commands and protocol errors, byte for byte. One deliberate
/// difference is not listed: a bulk string followed by something other than CRLF
/// (`$1\r\nab\r\n`) is a protocol error here, where Redis skips two bytes unchecked.
#[test]
fn framing_and_protocol_errors_match_redis() {
    let node = common::start();
    let redis = Redis::start();
    // Redis reads 16 KiB at a time and checks the 64 KiB inline limit after each read:
    // well past it, both refuse whatever the reads' sizes.
    let long_inline = vec![b'a'; 200 * 1024];
    let cases: Vec<&[u8]> = vec![
        b"*x\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n+foo\r\n",
        b"*-1\r\n*1\r\n$4\r\nPING\r\n",
        b"*0\r\n*1\r\n$4\r\nPING\r\n",
        b"PING\r\n",
        b"ping hello\r\n",
        b"SET a \"b c\"\r\nGET a\r\n",
        b"SET a 'single quoted'\r\nGET a\r\n",
        b"SET a \"tab\\there\\x41\"\r\nGET a\r\n",
        b"SET a \"b\r\n",
        b"SET a \"b\"c\r\n",
        b"\r\n\r\n*1\r\n$4\r\nPING\r\n",
        b"SET a b\nGET a\n",
        b"*3000000000\r\n",
        b"*1048577\r\n",
        b"$5\r\n",
        b"*1\r\n$600000000\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n",
        &long_inline,
    ];
    for input in cases {
        let ours = raw_exchange(node.resp_addr, input);
        let theirs = raw_exchange(("127.0.0.1", redis.port), input);
        assert_eq!(show(&ours), show(&theirs), "after sending {:?}", show(input));
    }
}

/// Before AUTH a request may have at most 10 arguments of at most 16 KiB; after it
/// (even in the same write) the usual limits hold again.
#[test]
fn unauthenticated_limits_match_redis() {
    let node = common::start_with(|c| c.requirepass = Some("pw".into()));
    let redis = Redis::start_with(&["--requirepass", "pw"]);
    let auth: &[u8] = b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n";
    let mset12 = format!("*13\r\n$4\r\nMSET\r\n{}", "$1\r\nk\r\n$1\r\nv\r\n".repeat(6));
    let big = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000\r\n{}\r\n", "v".repeat(20000));
    let cases: Vec<Vec<u8>> = vec![
        b"*11\r\n".to_vec(),
        b"*10\r\n$3\r\nGET\r\n".to_vec(),
        b"*1\r\n$16385\r\n".to_vec(),
        b"*1\r\n$600000000\r\n".to_vec(),
        b"GET a\r\n".to_vec(),
        b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n".to_vec(),
        [auth, mset12.as_bytes()].concat(),
        [auth, big.as_bytes(), b"*2\r\n$6\r\nSTRLEN\r\n$1\r\nk\r\n"].concat(),
        [mset12.as_bytes(), auth].concat(),
    ];
    for input in cases {
        let ours = raw_exchange(node.resp_addr, &input);
        let theirs = raw_exchange(("127.0.0.1", redis.port), &input);
        assert_eq!(show(&ours), show(&theirs), "after sending {:?}", show(&input));
    }
}
