//! What a primary ships: the state of a key after a write (or its deletion, or a
//! flush), or the write command itself when it is the one change a collection's
//! replicas miss (store/changes.rs); encoded once as RESP, and how a replica parses and
//! applies it.
//!
//! Frames on a replication stream are RESP arrays whose second element is an offset:
//!
//! ```text
//! RBEGIN    <offset> FULL|PARTIAL       stream starts; records from <offset> on follow
//! RSET      <offset> <key> <value> <expire_at>
//! ROBJ      <offset> <key> <expire_at> <type> <count> <element> ...   (store/object.rs: the wire form)
//! RCMD      <offset> <base> <now> <command> <key> <arg> ...   the write, to apply to the value at count <base>
//! RDEL      <offset> <key>
//! RFLUSH    <offset>                    every slot this stream covers is emptied
//! RCOPYDONE <offset>                    end of a full copy (copied keys carry offset 0)
//! RPING     <offset>                    heartbeat; everything up to <offset> was sent
//! RFENCE    <offset> <start> <end> ...  the slot ranges' records up to <offset> were sent,
//!                                       and this primary no longer leads them (crate::fence)
//! ```
//!
//! `expire_at` is unix ms, 0 for none. `count` is the collection's change count; an
//! `RCMD` runs its command on a replica when the key's value there has count `<base>`
//! (it then has `<base> + 1`), at time `<now>` (0: the replica's clock; sent when the key
//! has a TTL, so that both sides see it live or expired alike). A replica answers
//! `RINGCACHE.ACK <offset>`, and `RINGCACHE.REFETCH <key>` for a key whose value does
//! not match a command's base: the primary then ships that key's whole value.

use bytes::{BufMut, Bytes, BytesMut};

use super::{ReplicationError, SlotSet};
use crate::store::{Changes, Entry, Object, Store, ValueRef};
use ringcache_core::slot::{key_slot, Slot, SLOT_COUNT};
use ringcache_core::topology::SlotRange;

/// Kind of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Set,
    Obj,
    Cmd,
    Del,
    Flush,
}

impl Tag {
    fn name(self) -> &'static [u8] {
        match self {
            Tag::Set => b"RSET",
            Tag::Obj => b"ROBJ",
            Tag::Cmd => b"RCMD",
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
                let count = e.changes().map_or(0, |c| c.count);
                put_bulk(&mut body, key);
                put_bulk(&mut body, expire.as_bytes());
                put_bulk(&mut body, o.type_name().as_bytes());
                put_bulk(&mut body, itoa(count).as_bytes());
                o.for_each_wire(|element| put_bulk(&mut body, element));
                Record {
                    tag: Tag::Obj,
                    nargs: 6 + o.wire_len(),
                    body: body.freeze(),
                }
            }
        }
    }

    /// A write command `args` (name, key, arguments) to run on the value at count
    /// `base`, at time `now` (0: the replica's own clock).
    pub fn command(base: u64, now: u64, args: &[Bytes]) -> Record {
        let mut body = BytesMut::with_capacity(args.iter().map(|a| a.len() + 16).sum::<usize>() + 40);
        put_bulk(&mut body, itoa(base).as_bytes());
        put_bulk(&mut body, itoa(now).as_bytes());
        for a in args {
            put_bulk(&mut body, a);
        }
        Record {
            tag: Tag::Cmd,
            nargs: 4 + args.len(),
            body: body.freeze(),
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

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Bytes of a record's whole frame at `offset` (what a stream carries), from its tag,
/// element count and body length.
pub fn frame_len(tag: Tag, nargs: usize, body: usize, offset: u64) -> usize {
    let bulk = |len: usize| 1 + digits(len as u64) + 2 + len + 2;
    1 + digits(nargs as u64) + 2 + bulk(tag.name().len()) + bulk(digits(offset)) + body
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
    /// A collection: its `TYPE` name, change count and wire form (store/object.rs).
    Obj {
        offset: u64,
        key: &'a [u8],
        expire_at: u64,
        kind: &'a [u8],
        count: u64,
        elements: &'a [Bytes],
    },
    /// A write command (`args`: name, key, arguments) for the value at count `base`.
    Cmd {
        offset: u64,
        base: u64,
        now: u64,
        args: &'a [Bytes],
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
                if args.len() < 6 {
                    return Err(bad("ROBJ elements"));
                }
                Frame::Obj {
                    offset,
                    key: &args[2],
                    expire_at: num(&args[3])?,
                    kind: &args[4],
                    count: num(&args[5])?,
                    elements: &args[6..],
                }
            }
            b"RCMD" => {
                // The command name and its key at least.
                if args.len() < 6 {
                    return Err(bad("RCMD elements"));
                }
                Frame::Cmd {
                    offset,
                    base: num(&args[2])?,
                    now: num(&args[3])?,
                    args: &args[4..],
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
            | Frame::Cmd { offset, .. }
            | Frame::Del { offset, .. }
            | Frame::Flush { offset }
            | Frame::Fence { offset, .. } => offset,
        }
    }
}

/// Runs a replicated write command on the local store, as a client's command would
/// run (the command layer provides it: replication sits below the commands).
pub trait Replay: Send + Sync {
    /// Runs `args` (name, key, arguments) at time `now`, bypassing routing.
    fn replay(&self, store: &Store, args: &[Bytes], now: u64);
}

/// What applying a frame did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Yes,
    /// Not for this replica's slots, or already part of what it holds.
    Ignored,
    /// A command for a value that is not here at its base count: the key's whole value
    /// must be asked for.
    Refetch(Bytes),
}

/// The change count of `key`'s value at `now`, if it holds a collection.
fn count_of(store: &Store, key: &[u8], now: u64) -> Option<u64> {
    store
        .lock(key_slot(key))
        .slot()
        // A write's lookup: no hit or miss counted.
        .get(key, now)
        .and_then(|e| e.changes())
        .map(|c| c.count)
}

/// Applies a data frame to `store`, bypassing routing. Keys outside `slots` (the
/// slots this replica holds for the stream's primary) are ignored.
pub fn apply(store: &Store, frame: &Frame<'_>, slots: &SlotSet, now: u64, replay: &dyn Replay) -> Applied {
    if !applies(store, frame, slots, now) {
        return Applied::Ignored;
    }
    let Frame::Cmd {
        base, now: at, args, ..
    } = *frame
    else {
        return Applied::Yes;
    };
    let key = &args[1];
    let at = if at == 0 { now } else { at };
    match count_of(store, key, at) {
        Some(c) if c == base => {}
        // A full copy read after this write already has it.
        Some(c) if c > base => return Applied::Ignored,
        _ => return Applied::Refetch(key.clone()),
    }
    replay.replay(store, args, at);
    store.removals.record(key);
    // The primary ran the same command on the same value and saw one change; anything
    // else means the values differ (a replica's eviction, say).
    if count_of(store, key, at) == Some(base.wrapping_add(1)) {
        Applied::Yes
    } else {
        Applied::Refetch(key.clone())
    }
}

/// Applies a whole-value frame; for a command frame, only says whether it is for
/// these slots.
fn applies(store: &Store, frame: &Frame<'_>, slots: &SlotSet, now: u64) -> bool {
    match *frame {
        Frame::Cmd { args, .. } => slots.contains(key_slot(&args[1])),
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
            count,
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
                    s.insert(Entry::object_with(key, o, Changes::received(count), expire_at, 0), now);
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
    clear_slots_then(store, slots, now, |_, _| {});
}

/// [`clear_slots`], calling `removed` with each slot's removed keys while its shard
/// lock is still held (so what it records is in order with the slot's writes).
pub fn clear_slots_then(store: &Store, slots: &SlotSet, now: u64, mut removed: impl FnMut(Slot, &[Vec<u8>])) {
    for slot in slots.iter() {
        let mut locked = store.lock(slot);
        let mut s = locked.slot();
        if s.is_empty() {
            continue;
        }
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(s.len());
        s.for_each_key(now, |e| keys.push(e.key().to_vec()));
        for k in &keys {
            s.remove(k, now);
        }
        removed(slot, &keys);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::resp::{parse_request, Limits};
    use crate::store::{now_ms, Hash, Policy};

    /// Stands in for the command layer: runs `<name> <key> <element>` as a push to the
    /// head of the list at key (one change).
    struct PushFront;

    impl Replay for PushFront {
        fn replay(&self, store: &Store, args: &[Bytes], now: u64) {
            let (key, element) = (&args[1], &args[2]);
            store.lock(key_slot(key)).slot().modify(key, now, |e| {
                if let Some(Object::List(l)) = e.as_object_mut() {
                    l.push_front(element);
                }
            });
        }
    }

    fn list_of(store: &Store, key: &[u8], now: u64) -> Option<(Vec<Vec<u8>>, u64)> {
        let mut l = store.lock(key_slot(key));
        let mut s = l.slot();
        let e = s.get(key, now)?;
        let count = e.changes()?.count;
        match e.as_object() {
            Some(Object::List(l)) => Some((l.iter().map(<[u8]>::to_vec).collect(), count)),
            _ => None,
        }
    }

    #[test]
    fn a_command_applies_once_to_the_value_at_its_base_and_asks_for_the_value_otherwise() {
        let primary = Store::new(0, Policy::S3Fifo);
        let replica = Store::new(0, Policy::S3Fifo);
        let now = now_ms();
        let all = SlotSet::all();
        let mut list = crate::store::List::default();
        list.push_back(b"a");
        let slot = key_slot(b"feed");
        primary
            .lock(slot)
            .slot()
            .insert(Entry::object(b"feed", Object::List(list), 0, 0), now);
        let whole = |store: &Store| Record::from_entry(b"feed", store.lock(slot).slot().get(b"feed", now).map(|e| &*e));
        // The whole value carries its count.
        let args = roundtrip(&whole(&primary), 1);
        assert_eq!(
            apply(&replica, &Frame::parse(&args).unwrap(), &all, now, &PushFront),
            Applied::Yes
        );
        let (_, base) = list_of(&primary, b"feed", now).unwrap();
        assert_eq!(list_of(&replica, b"feed", now), Some((vec![b"a".to_vec()], base)));

        let push: Vec<Bytes> = ["LPUSH", "feed", "b"].iter().map(|w| Bytes::from(*w)).collect();
        let cmd = Record::command(base, 0, &push);
        let args = roundtrip(&cmd, 2);
        let frame = Frame::parse(&args).unwrap();
        assert_eq!(apply(&replica, &frame, &all, now, &PushFront), Applied::Yes);
        let want = Some((vec![b"b".to_vec(), b"a".to_vec()], base + 1));
        assert_eq!(list_of(&replica, b"feed", now), want);
        // Again (a copy that already has it): ignored, not pushed twice.
        assert_eq!(apply(&replica, &frame, &all, now, &PushFront), Applied::Ignored);
        assert_eq!(list_of(&replica, b"feed", now), want);
        // A command for a later count, or for a key not here: the value is asked for.
        let args = roundtrip(&Record::command(base + 5, 0, &push), 3);
        let frame = Frame::parse(&args).unwrap();
        assert_eq!(
            apply(&replica, &frame, &all, now, &PushFront),
            Applied::Refetch(Bytes::from("feed"))
        );
        replica.lock(slot).slot().remove(b"feed", now);
        assert_eq!(
            apply(&replica, &frame, &all, now, &PushFront),
            Applied::Refetch(Bytes::from("feed"))
        );
        // A command is smaller than the value it changes.
        assert!(cmd.body.len() < whole(&primary).body.len() + 64);
    }

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
            assert_eq!(apply(&replica, &frame, &all, now, &PushFront), Applied::Yes);
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
        apply(&replica, &Frame::parse(&args).unwrap(), &all, now, &PushFront);
        assert!(replica.lock(slot).slot().get(b"s", now).is_none());
        // Keys outside the stream's slots are ignored.
        let args = roundtrip(&Record::from_entry(b"h", None), 10);
        assert_eq!(
            apply(
                &replica,
                &Frame::parse(&args).unwrap(),
                &SlotSet::empty(),
                now,
                &PushFront
            ),
            Applied::Ignored
        );
        assert_eq!(replica.dbsize(), 1);
        let args = roundtrip(&Record::flush(), 11);
        apply(&replica, &Frame::parse(&args).unwrap(), &all, now, &PushFront);
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
            b(&["ROBJ", "1", "k", "0", "list"]),
            b(&["ROBJ", "1", "k", "0", "list", "x", "a"]),
            b(&["RCMD", "1", "7", "0", "LPUSH"]),
            b(&["RCMD", "1", "x", "0", "LPUSH", "k"]),
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
