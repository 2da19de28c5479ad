//! Read-through I/O on the new owner: `RINGCACHE.FETCH` from the source over RESP
//! (pooled connections per handover), filling the local store; and the best-effort
//! `RINGCACHE.RETAIN` / `RINGCACHE.RELEASE` calls to the source.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use ringcache_core::slot::key_slot;
use ringcache_core::slotset::SlotSet;

use super::{FetchRequest, Handover};
use crate::access::Access;
use crate::replication::record::{write_command, Frame};
use crate::resp::{Limits, RequestParser};
use crate::store::{now_ms, DecodeError, Entry, Object, Store};

/// Longest a command waits for its keys from the source (connect included).
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(500);
/// Idle connections kept per handover.
const POOL: usize = 8;
/// Most reply bytes buffered from the source.
const MAX_REPLY_BUFFER: usize = 512 * 1024 * 1024;

/// Why talking to the source failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] crate::resp::ProtocolError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("the source closed the connection")]
    Closed,
    #[error("the source answered {0}")]
    Refused(String),
    #[error("reply larger than {0} bytes")]
    TooLarge(usize),
    #[error("the source sent a bad value: {0}")]
    BadValue(#[from] DecodeError),
}

async fn connect(addr: &str, password: Option<&str>, limits: &Limits) -> Result<TcpStream, FetchError> {
    let mut stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    if let Some(pass) = password {
        let mut buf = BytesMut::new();
        write_command(&mut buf, &[b"AUTH", pass.as_bytes()]);
        let replies = exchange(&mut stream, &buf, 1, limits).await?;
        check_ok(&replies)?;
    }
    Ok(stream)
}

fn check_ok(replies: &[Vec<Bytes>]) -> Result<(), FetchError> {
    match replies.first() {
        Some(r) if r.first().is_some_and(|a| a.starts_with(b"+") || a.starts_with(b":")) => Ok(()),
        Some(r) => Err(FetchError::Refused(words(r))),
        None => Err(FetchError::Closed),
    }
}

fn words(args: &[Bytes]) -> String {
    let all: Vec<String> = args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    all.join(" ").chars().take(256).collect()
}

/// Writes `request` and reads `n` replies (each parsed as a request: arrays of bulk
/// strings, or an inline line for `+OK` / `-ERR ...`).
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    n: usize,
    limits: &Limits,
) -> Result<Vec<Vec<Bytes>>, FetchError> {
    stream.write_all(request).await?;
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut parser = RequestParser::default();
    let mut replies = Vec::with_capacity(n);
    while replies.len() < n {
        while replies.len() < n {
            match parser.parse(&mut rbuf, limits)? {
                Some(args) => replies.push(args),
                None => break,
            }
        }
        if replies.len() == n {
            break;
        }
        if rbuf.len() > MAX_REPLY_BUFFER {
            return Err(FetchError::TooLarge(MAX_REPLY_BUFFER));
        }
        if stream.read_buf(&mut rbuf).await? == 0 {
            return Err(FetchError::Closed);
        }
    }
    Ok(replies)
}

/// Fetches the records of `keys` from the handover's source, on a pooled connection
/// (once more on a fresh one if the pooled connection fails: the source may have
/// closed it).
async fn fetch_records(h: &Handover, keys: &[Bytes], access: &Access) -> Result<Vec<Vec<Bytes>>, FetchError> {
    let mut buf = BytesMut::new();
    for k in keys {
        write_command(&mut buf, &[b"RINGCACHE.FETCH", k]);
    }
    let pooled = h.pool.lock().pop().map(TcpStream::from_std);
    if let Some(Ok(mut stream)) = pooled {
        if let Ok(replies) = exchange(&mut stream, &buf, keys.len(), &access.limits).await {
            give_back(h, stream);
            return Ok(replies);
        }
    }
    let password = access.requirepass();
    let mut stream = connect(&h.source_addr, password.as_deref(), &access.limits).await?;
    let replies = exchange(&mut stream, &buf, keys.len(), &access.limits).await?;
    give_back(h, stream);
    Ok(replies)
}

/// Returns a connection to the handover's pool (if there is room).
fn give_back(h: &Handover, stream: TcpStream) {
    if let Ok(std) = stream.into_std() {
        let mut pool = h.pool.lock();
        if pool.len() < POOL {
            pool.push(std);
        }
    }
}

/// Reads `req.keys` through from the source and fills what may still be filled.
/// Returns the keys this call filled. Failures count as read-through errors (the
/// command then sees misses).
pub async fn read_through(req: &FetchRequest, store: &Store, access: &Access) -> Vec<Bytes> {
    let h = &req.handover;
    let replies = match tokio::time::timeout(FETCH_TIMEOUT, fetch_records(h, &req.keys, access)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            h.count_error();
            debug!(handover = %h.id, source = %h.source_addr, error = %e, "handover: read-through failed");
            return Vec::new();
        }
        Err(_) => {
            h.count_error();
            debug!(handover = %h.id, source = %h.source_addr, "handover: read-through timed out");
            return Vec::new();
        }
    };
    let now = now_ms();
    let mut filled = Vec::new();
    for (key, reply) in req.keys.iter().zip(&replies) {
        match fill(store, h, key, reply, now) {
            Ok(true) => filled.push(key.clone()),
            Ok(false) => {}
            Err(e) => {
                h.count_error();
                debug!(handover = %h.id, error = %e, "handover: bad read-through reply");
            }
        }
    }
    filled
}

/// Applies one `RINGCACHE.FETCH` reply for `key`: inserts the record when the key is
/// still missing here and may be read through. Returns whether it filled the key.
pub fn fill(store: &Store, h: &Handover, key: &[u8], reply: &[Bytes], now: u64) -> Result<bool, FetchError> {
    let frame = Frame::parse(reply).map_err(|e| FetchError::Refused(e.to_string()))?;
    let entry = match frame {
        Frame::Set {
            key: k,
            value,
            expire_at,
            ..
        } if k == key => {
            if expire_at != 0 && expire_at <= now {
                return Ok(false);
            }
            Entry::string(key, value, expire_at, 0)
        }
        Frame::Obj {
            key: k,
            expire_at,
            kind,
            elements,
            ..
        } if k == key => {
            if expire_at != 0 && expire_at <= now {
                return Ok(false);
            }
            match Object::decode(kind, elements)? {
                Some(object) => Entry::object(key, object, expire_at, 0),
                None => return Ok(false),
            }
        }
        Frame::Del { key: k, .. } if k == key => return Ok(false),
        _ => return Err(FetchError::Refused(words(reply))),
    };
    if store.ensure_memory().is_err() {
        return Ok(false);
    }
    let slot = key_slot(key);
    let mut locked = store.lock(slot);
    let mut s = locked.slot();
    if s.get(key, now).is_some() {
        return Ok(false);
    }
    Ok(h.fill_if_allowed(key, || {
        s.insert(entry, now);
    }))
}

/// `RINGCACHE.RETAIN <id> <start> <end> ...` or `RINGCACHE.RELEASE <id>` on the
/// source, best effort: failures are logged.
pub async fn notify_source(access: &Access, addr: &str, id: &str, retain: Option<&SlotSet>) {
    let mut args: Vec<Vec<u8>> = Vec::new();
    match retain {
        Some(slots) => {
            args.push(b"RINGCACHE.RETAIN".to_vec());
            args.push(id.as_bytes().to_vec());
            for r in slots.ranges() {
                args.push(r.start.to_string().into_bytes());
                args.push(r.end.to_string().into_bytes());
            }
        }
        None => {
            args.push(b"RINGCACHE.RELEASE".to_vec());
            args.push(id.as_bytes().to_vec());
        }
    }
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let mut buf = BytesMut::new();
    write_command(&mut buf, &refs);
    let password = access.requirepass();
    let result = tokio::time::timeout(Duration::from_secs(2), async {
        let mut stream = connect(addr, password.as_deref(), &access.limits).await?;
        let replies = exchange(&mut stream, &buf, 1, &access.limits).await?;
        check_ok(&replies)
    })
    .await;
    match result {
        Ok(Ok(())) => debug!(handover = %id, source = %addr, retain = retain.is_some(), "handover: source notified"),
        Ok(Err(e)) => warn!(handover = %id, source = %addr, error = %e, "handover: could not notify the source"),
        Err(_) => warn!(handover = %id, source = %addr, "handover: notifying the source timed out"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replication::record::Record;
    use crate::resp::parse_request;
    use crate::store::{Hash, Policy};

    fn reply(rec: &Record) -> Vec<Bytes> {
        let mut buf = BytesMut::new();
        rec.write(0, &mut buf);
        parse_request(&mut buf, &Limits::default()).unwrap().unwrap()
    }

    #[test]
    fn fills_only_missing_unwritten_keys() {
        let source = Store::new(0, Policy::S3Fifo);
        let target = Store::new(0, Policy::S3Fifo);
        let now = now_ms();
        let rec = |store: &Store, key: &[u8]| {
            let slot = key_slot(key);
            Record::from_entry(key, store.lock(slot).slot().get(key, now).map(|e| &*e))
        };
        for (k, v, exp) in [
            (&b"a"[..], &b"1"[..], 0),
            (b"b", b"2", now + 60_000),
            (b"old", b"x", now - 1),
        ] {
            source.lock(key_slot(k)).slot().insert(Entry::string(k, v, exp, 0), now);
        }
        let mut hash = Hash::default();
        hash.insert(b"f", b"v");
        source
            .lock(key_slot(b"h"))
            .slot()
            .insert(Entry::object(b"h", Object::Hash(hash), 0, 0), now);

        let h = Handover::new("h".into(), SlotSet::all(), "o".into(), "o:1".into(), 0, (100, 1 << 20));
        // A plain key, with and without TTL, and a hash are filled.
        for k in [&b"a"[..], b"b", b"h"] {
            assert!(fill(&target, &h, k, &reply(&rec(&source, k)), now).unwrap(), "{k:?}");
        }
        let slot = key_slot(b"b");
        assert_eq!(
            target.lock(slot).slot().get(b"b", now).unwrap().expire_at(),
            Some(now + 60_000)
        );
        // Absent on the source, expired there, already present here, written here: no fill.
        assert!(!fill(&target, &h, b"none", &reply(&rec(&source, b"none")), now).unwrap());
        let expired = Record::from_entry(b"old", Some(&Entry::string(b"old", b"x", now - 1, 0)));
        assert!(!fill(&target, &h, b"old", &reply(&expired), now).unwrap());
        assert!(!fill(&target, &h, b"a", &reply(&rec(&source, b"a")), now).unwrap());
        source
            .lock(key_slot(b"w"))
            .slot()
            .insert(Entry::string(b"w", b"old", 0, 0), now);
        h.mark_written(b"w");
        assert!(!fill(&target, &h, b"w", &reply(&rec(&source, b"w")), now).unwrap());
        assert!(target.lock(key_slot(b"w")).slot().get(b"w", now).is_none());
        // A reply for another key, or an error line, is an error, not a fill.
        assert!(fill(&target, &h, b"zzz", &reply(&rec(&source, b"a")), now).is_err());
        let err = vec![Bytes::from_static(b"-ERR"), Bytes::from_static(b"nope")];
        assert!(fill(&target, &h, b"zzz", &err, now).is_err());
    }
}
