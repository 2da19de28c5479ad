//! What a primary ships: the state of a key after a write (or its deletion, or a
//! flush), encoded once as RESP, and how a replica parses and applies it.
//!
//! Frames on a replication stream are RESP arrays whose second element is an offset:
//!
//! ```text
//! RBEGIN    <offset> FULL|PARTIAL       stream starts; records from <offset> on follow
//! RSET      <offset> <key> <value> <expire_at>
//! ROBJ      <offset> <key> <expire_at> <type> <element> ...   (store/object.rs: the wire form)
//! RDEL      <offset> <key>
//! RFLUSH    <offset>                    every slot this stream covers is emptied
//! RCOPYDONE <offset>                    end of a full copy (copied keys carry offset 0)
//! RPING     <offset>                    heartbeat; everything up to <offset> was sent
//! RFENCE    <offset> <start> <end> ...  the slot ranges' records up to <offset> were sent,
//!                                       and this primary no longer leads them (crate::fence)
//! ```
//!
//! `expire_at` is unix ms, 0 for none. A replica answers `RINGCACHE.ACK <offset>`.

use bytes::{BufMut, Bytes, BytesMut};

use super::{ReplicationError, SlotSet};
use crate::store::{Entry, Object, Store, ValueRef};
use ringcache_core::slot::{key_slot, SLOT_COUNT};
use ringcache_core::topology::SlotRange;

/// Kind of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Set,
    Obj,
    Del,
    Flush,
}

impl Tag {
    fn name(self) -> &'static [u8] {
        match self {
            Tag::Set => b"RSET",
            Tag::Obj => b"ROBJ",
            Tag::Del => b"RDEL",
            Tag::Flush => b"RFLUSH",
        }
    }
}

/// One record without its offset: the RESP elements after the offset, pre-encoded.
#[derive(Debug, Clone)]
pub struct Record {
    pub tag: Tag,
    /// Number of array elements including tag and offset.
    pub nargs: usize,
    pub body: Bytes,
}

fn put_bulk(buf: &mut BytesMut, data: &[u8]) {
    buf.reserve(data.len() + 16);
    buf.put_u8(b'$');
    buf.put_slice(itoa(data.len() as u64).as_bytes());
    buf.put_slice(b"\r\n");
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
}

fn itoa(n: u64) -> String {
    n.to_string()
}

impl Record {
    /// The state of `key` now: its value and expiry, or a deletion when `entry` is none.
    pub fn from_entry(key: &[u8], entry: Option<&Entry>) -> Record {
        let Some(e) = entry else {
            return Record::del(key);
        };
        let expire = itoa(e.expire_at().unwrap_or(0));
        let mut body = BytesMut::new();
        match e.value() {
            ValueRef::Str(v) => {
                put_bulk(&mut body, key);
                put_bulk(&mut body, v);
                put_bulk(&mut body, expire.as_bytes());
                Record {
                    tag: Tag::Set,
                    nargs: 5,
                    body: body.freeze(),
                }
            }
            ValueRef::Obj(o) => {
                put_bulk(&mut body, key);
                put_bulk(&mut body, expire.as_bytes());
                put_bulk(&mut body, o.type_name().as_bytes());
                o.for_each_wire(|element| put_bulk(&mut body, element));
                Record {
                    tag: Tag::Obj,
                    nargs: 5 + o.wire_len(),
                    body: body.freeze(),
                }
            }
        }
    }

    pub fn del(key: &[u8]) -> Record {
        let mut body = BytesMut::new();
        put_bulk(&mut body, key);
        Record {
            tag: Tag::Del,
            nargs: 3,
            body: body.freeze(),
        }
    }

    pub fn flush() -> Record {
        Record {
            tag: Tag::Flush,
            nargs: 2,
            body: Bytes::new(),
        }
    }

    /// Appends the full frame (`*N`, tag, offset, body) to `buf`.
    pub fn write(&self, offset: u64, buf: &mut BytesMut) {
        write_header(buf, self.nargs, self.tag.name(), offset);
        buf.extend_from_slice(&self.body);
    }
}

fn write_header(buf: &mut BytesMut, nargs: usize, tag: &[u8], offset: u64) {
    buf.put_u8(b'*');
    buf.put_slice(itoa(nargs as u64).as_bytes());
    buf.put_slice(b"\r\n");
    put_bulk(buf, tag);
    put_bulk(buf, itoa(offset).as_bytes());
}

/// `RBEGIN <offset> FULL|PARTIAL`.
pub fn write_begin(buf: &mut BytesMut, offset: u64, full: bool) {
    write_header(buf, 3, b"RBEGIN", offset);
    put_bulk(buf, if full { b"FULL" } else { b"PARTIAL" });
}

/// `RCOPYDONE <offset>`.
pub fn write_copy_done(buf: &mut BytesMut, offset: u64) {
    write_header(buf, 2, b"RCOPYDONE", offset);
}

/// `RPING <offset>`.
pub fn write_ping(buf: &mut BytesMut, offset: u64) {
    write_header(buf, 2, b"RPING", offset);
}

/// `RFENCE <offset> <start> <end> ...` for `slots`.
pub fn write_fence(buf: &mut BytesMut, offset: u64, slots: &SlotSet) {
    let ranges = slots.ranges();
    write_header(buf, 2 + 2 * ranges.len(), b"RFENCE", offset);
    for r in ranges {
        put_bulk(buf, itoa(u64::from(r.start)).as_bytes());
        put_bulk(buf, itoa(u64::from(r.end)).as_bytes());
    }
}

/// A command frame (`RINGCACHE.ACK 17`, `RINGCACHE.SYNC id 3 0`).
pub fn write_command(buf: &mut BytesMut, args: &[&[u8]]) {
    buf.put_u8(b'*');
    buf.put_slice(itoa(args.len() as u64).as_bytes());
    buf.put_slice(b"\r\n");
    for a in args {
        put_bulk(buf, a);
    }
}

/// A parsed stream frame, borrowing the parsed arguments.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Begin {
        offset: u64,
        full: bool,
    },
    CopyDone {
        offset: u64,
    },
    Ping {
        offset: u64,
    },
    Set {
        offset: u64,
        key: &'a [u8],
        value: &'a [u8],
        expire_at: u64,
    },
    /// A collection: its `TYPE` name and its wire form (store/object.rs).
    Obj {
        offset: u64,
        key: &'a [u8],
        expire_at: u64,
        kind: &'a [u8],
        elements: &'a [Bytes],
    },
    Del {
        offset: u64,
        key: &'a [u8],
    },
    Flush {
        offset: u64,
    },
    /// The fence of `slots` (see [`write_fence`]).
    Fence {
        offset: u64,
        slots: SlotSet,
    },
}

fn num(b: &[u8]) -> Result<u64, ReplicationError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ReplicationError::BadFrame(format!("not a number: {:?}", String::from_utf8_lossy(b))))
}

impl<'a> Frame<'a> {
    /// Parses one frame; never panics on any input.
    pub fn parse(args: &'a [Bytes]) -> Result<Frame<'a>, ReplicationError> {
        let bad = |why: &str| ReplicationError::BadFrame(why.to_string());
        if args.first().is_some_and(|a| a.starts_with(b"-")) {
            let words: Vec<String> = args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            return Err(ReplicationError::Refused(words.join(" ")));
        }
        let (Some(tag), Some(off)) = (args.first(), args.get(1)) else {
            return Err(bad("too few elements"));
        };
        let offset = num(off)?;
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(bad("wrong number of elements"))
            }
        };
        let tag: &[u8] = tag;
        Ok(match tag {
            b"RBEGIN" => {
                arity(3)?;
                let full = match &args[2][..] {
                    b"FULL" => true,
                    b"PARTIAL" => false,
                    _ => return Err(bad("RBEGIN mode")),
                };
                Frame::Begin { offset, full }
            }
            b"RCOPYDONE" => {
                arity(2)?;
                Frame::CopyDone { offset }
            }
            b"RPING" => {
                arity(2)?;
                Frame::Ping { offset }
            }
            b"RSET" => {
                arity(5)?;
                Frame::Set {
                    offset,
                    key: &args[2],
                    value: &args[3],
                    expire_at: num(&args[4])?,
                }
            }
            b"ROBJ" => {
                if args.len() < 5 {
                    return Err(bad("ROBJ elements"));
                }
                Frame::Obj {
                    offset,
                    key: &args[2],
                    expire_at: num(&args[3])?,
                    kind: &args[4],
                    elements: &args[5..],
                }
            }
            b"RDEL" => {
                arity(3)?;
                Frame::Del { offset, key: &args[2] }
            }
            b"RFLUSH" => {
                arity(2)?;
                Frame::Flush { offset }
            }
            b"RFENCE" => {
                if args.len() < 4 || !args.len().is_multiple_of(2) {
                    return Err(bad("RFENCE ranges"));
                }
                let mut slots = SlotSet::empty();
                for pair in args[2..].chunks_exact(2) {
                    let (start, end) = (num(&pair[0])?, num(&pair[1])?);
                    let slot = |n: u64| u16::try_from(n).ok().filter(|&s| usize::from(s) < SLOT_COUNT);
                    match (slot(start), slot(end)) {
                        (Some(a), Some(b)) if a <= b => slots.insert_range(SlotRange::new(a, b)),
                        _ => return Err(bad("RFENCE range")),
                    }
                }
                Frame::Fence { offset, slots }
            }
            other => return Err(bad(&format!("unknown frame {:?}", String::from_utf8_lossy(other)))),
        })
    }

    pub fn offset(&self) -> u64 {
        match *self {
            Frame::Begin { offset, .. }
            | Frame::CopyDone { offset }
            | Frame::Ping { offset }
            | Frame::Set { offset, .. }
            | Frame::Obj { offset, .. }
            | Frame::Del { offset, .. }
            | Frame::Flush { offset }
            | Frame::Fence { offset, .. } => offset,
        }
    }
}

/// Applies a data frame to `store`, bypassing routing. Keys outside `slots` (the
/// slots this replica holds for the stream's primary) are ignored. Returns whether
/// something was applied.
pub fn apply(store: &Store, frame: &Frame<'_>, slots: &SlotSet, now: u64) -> bool {
    match *frame {
        Frame::Set {
            key, value, expire_at, ..
        } => {
            let slot = key_slot(key);
            if !slots.contains(slot) {
                return false;
            }
            let mut locked = store.lock(slot);
            let mut s = locked.slot();
            if expire_at != 0 && expire_at <= now {
                s.remove(key, now);
            } else {
                s.insert(Entry::string(key, value, expire_at, 0), now);
            }
            store.removals.record(key);
            true
        }
        Frame::Obj {
            key,
            expire_at,
            kind,
            elements,
            ..
        } => {
            let slot = key_slot(key);
            if !slots.contains(slot) {
                return false;
            }
            // A malformed value cannot come from a primary of the same build; if one
            // does, the key is dropped rather than kept stale.
            let object = Object::decode(kind, elements).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "replicated value dropped");
                None
            });
            let mut locked = store.lock(slot);
            let mut s = locked.slot();
            match object {
                Some(o) if expire_at == 0 || expire_at > now => {
                    s.insert(Entry::object(key, o, expire_at, 0), now);
                }
                _ => {
                    s.remove(key, now);
                }
            }
            store.removals.record(key);
            true
        }
        Frame::Del { key, .. } => {
            let slot = key_slot(key);
            if !slots.contains(slot) {
                return false;
            }
            store.lock(slot).slot().remove(key, now);
            store.removals.record(key);
            true
        }
        Frame::Flush { .. } => {
            clear_slots(store, slots, now);
            true
        }
        Frame::Begin { .. } | Frame::CopyDone { .. } | Frame::Ping { .. } | Frame::Fence { .. } => false,
    }
}

/// Removes every key of `slots` (before a full copy, and on a replicated flush).
pub fn clear_slots(store: &Store, slots: &SlotSet, now: u64) {
    for slot in slots.iter() {
        let mut locked = store.lock(slot);
        let mut s = locked.slot();
        if s.is_empty() {
            continue;
        }
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(s.len());
        s.for_each_key(now, |e| keys.push(e.key().to_vec()));
        for k in keys {
            s.remove(&k, now);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::resp::{parse_request, Limits};
    use crate::store::{now_ms, Hash, Policy};

    fn roundtrip(rec: &Record, offset: u64) -> Vec<Bytes> {
        let mut buf = BytesMut::new();
        rec.write(offset, &mut buf);
        let args = parse_request(&mut buf, &Limits::default()).unwrap().unwrap();
        assert!(buf.is_empty());
        args
    }

    #[test]
    fn string_hash_and_delete_records_apply_on_a_replica() {
        let primary = Store::new(0, Policy::S3Fifo);
        let replica = Store::new(0, Policy::S3Fifo);
        let now = now_ms();
        let slot = key_slot(b"s");
        primary
            .lock(slot)
            .slot()
            .insert(Entry::string(b"s", b"v\r\n1", now + 60_000, 0), now);
        let mut h = Hash::default();
        h.insert(b"f1", b"a");
        h.insert(b"f2", b"");
        let hslot = key_slot(b"h");
        primary
            .lock(hslot)
            .slot()
            .insert(Entry::object(b"h", Object::Hash(h), 0, 0), now);
        let all = SlotSet::all();
        for (i, key) in [&b"s"[..], b"h", b"missing"].iter().enumerate() {
            let slot = key_slot(key);
            let rec = Record::from_entry(key, primary.lock(slot).slot().get(key, now).map(|e| &*e));
            let args = roundtrip(&rec, i as u64 + 1);
            let frame = Frame::parse(&args).unwrap();
            assert_eq!(frame.offset(), i as u64 + 1);
            assert!(apply(&replica, &frame, &all, now));
        }
        let mut l = replica.lock(slot);
        let mut s = l.slot();
        let e = s.get(b"s", now).unwrap();
        assert_eq!(e.as_str(), Some(&b"v\r\n1"[..]));
        assert_eq!(e.expire_at(), Some(now + 60_000));
        drop(l);
        let mut l = replica.lock(hslot);
        let mut s = l.slot();
        let Some(Object::Hash(h)) = s.get(b"h", now).and_then(|e| e.as_object().cloned()) else {
            panic!("hash")
        };
        assert_eq!(h.get(b"f1"), Some(&b"a"[..]));
        assert_eq!(h.get(b"f2"), Some(&b""[..]));
        drop(l);

        let args = roundtrip(&Record::del(b"s"), 9);
        apply(&replica, &Frame::parse(&args).unwrap(), &all, now);
        assert!(replica.lock(slot).slot().get(b"s", now).is_none());
        // Keys outside the stream's slots are ignored.
        let args = roundtrip(&Record::from_entry(b"h", None), 10);
        assert!(!apply(&replica, &Frame::parse(&args).unwrap(), &SlotSet::empty(), now));
        assert_eq!(replica.dbsize(), 1);
        let args = roundtrip(&Record::flush(), 11);
        apply(&replica, &Frame::parse(&args).unwrap(), &all, now);
        assert_eq!(replica.dbsize(), 0);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let b = |v: &[&str]| v.iter().map(|s| Bytes::from(s.to_string())).collect::<Vec<_>>();
        for bad in [
            b(&[]),
            b(&["RSET"]),
            b(&["RSET", "x", "k", "v", "0"]),
            b(&["RSET", "1", "k", "v"]),
            b(&["ROBJ", "1", "k", "0"]),
            b(&["RBEGIN", "1", "HALF"]),
            b(&["NOPE", "1"]),
            b(&["RDEL", "1"]),
        ] {
            assert!(Frame::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            Frame::parse(&b(&["-TRYAGAIN", "epoch"])),
            Err(ReplicationError::Refused(_))
        ));
        assert!(matches!(Frame::parse(&b(&["-ERR"])), Err(ReplicationError::Refused(_))));
        let mut buf = BytesMut::new();
        write_begin(&mut buf, 5, true);
        write_ping(&mut buf, 6);
        write_copy_done(&mut buf, 7);
        let l = Limits::default();
        let a = parse_request(&mut buf, &l).unwrap().unwrap();
        assert_eq!(Frame::parse(&a).unwrap(), Frame::Begin { offset: 5, full: true });
        let a = parse_request(&mut buf, &l).unwrap().unwrap();
        assert_eq!(Frame::parse(&a).unwrap(), Frame::Ping { offset: 6 });
        let a = parse_request(&mut buf, &l).unwrap().unwrap();
        assert_eq!(Frame::parse(&a).unwrap(), Frame::CopyDone { offset: 7 });
    }

    #[test]
    fn fence_frames_roundtrip_and_bad_ranges_are_errors() {
        let slots: SlotSet = [0, 1, 2, 500, 16383].into_iter().collect();
        let mut buf = BytesMut::new();
        write_fence(&mut buf, 42, &slots);
        let args = parse_request(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(Frame::parse(&args).unwrap(), Frame::Fence { offset: 42, slots });
        let b = |v: &[&str]| v.iter().map(|s| Bytes::from(s.to_string())).collect::<Vec<_>>();
        for bad in [
            b(&["RFENCE", "1"]),
            b(&["RFENCE", "1", "5"]),
            b(&["RFENCE", "1", "5", "4"]),
            b(&["RFENCE", "1", "0", "16384"]),
            b(&["RFENCE", "1", "0", "x"]),
        ] {
            assert!(Frame::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
