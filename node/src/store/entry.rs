//! One cached key and its value: a byte block in the shard's arena (see `arena`), or
//! an owned heap block while it is being built or after it was removed.
//!
//! Layout (all little endian):
//! ```text
//! [meta u8][clock u32]([expire_at_ms u64] if meta has EXPIRE_BIT)[varint key_len][key][payload]
//! payload = [varint val_len][value bytes]     for strings
//!         = [object index u32]                for every other type (the object lives
//!                                               in the arena, or in an owned entry)
//! ```
//! `meta` holds the type (3 bits), whether the TTL field is present, the S3-FIFO "main
//! queue" bit and a 2-bit access frequency. `clock` is the time (ms, wrapping u32) of
//! insertion or of the last access, depending on the eviction policy. A string entry
//! with a 16-byte key, a 64-byte value and no TTL takes 87 bytes (an 88-byte arena
//! block) and a 4-byte handle plus a tag byte in its slot's index. Setting a TTL on a key without one
//! moves it to a block 8 bytes larger.
//!
//! This module has no `unsafe` code: every byte access is a checked slice access on
//! the block's bytes.

use super::arena::{charged, Arena, Block, Handle};
use super::object::{Object, Stored};
use super::Changes;

const META: usize = 0;
const CLOCK: usize = 1;
const EXPIRE: usize = 5;
const KEYLEN_NO_TTL: usize = 5;
const KEYLEN_TTL: usize = 13;
const OBJ_INDEX_LEN: usize = 4;

const TYPE_MASK: u8 = 0b0000_0111;
const EXPIRE_BIT: u8 = 0b0000_1000;
const MAIN_BIT: u8 = 0b0001_0000;
const FREQ_SHIFT: u8 = 5;
const FREQ_MASK: u8 = 0b0110_0000;

/// Type tag stored in the entry header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String = 0,
    Object = 1,
}

/// Read access to an entry's value.
#[derive(Debug)]
pub enum ValueRef<'a> {
    Str(&'a [u8]),
    Obj(&'a Object),
}

/// A key with its value. An owned `Entry` (from `Entry::string`/`Entry::object`, or
/// returned by a removal) owns its bytes and object; `&Entry`/`&mut Entry` handed out
/// by the store are views of the stored block. Do not move an entry out of a
/// `&mut Entry` obtained from the store (`mem::replace`/`mem::swap`): the process
/// aborts if that happens.
pub struct Entry {
    block: Block,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("expire_at", &self.expire_at())
            .finish()
    }
}

fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(dst: &mut [u8], mut v: usize) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        if let Some(b) = dst.get_mut(i) {
            *b = (v as u8) | 0x80;
        }
        v >>= 7;
        i += 1;
    }
    if let Some(b) = dst.get_mut(i) {
        *b = v as u8;
    }
    i + 1
}

fn get_varint(src: &[u8]) -> (usize, usize) {
    let mut v = 0usize;
    let mut shift = 0u32;
    for (i, &b) in src.iter().enumerate().take(10) {
        v |= usize::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            return (v, i + 1);
        }
        shift += 7;
    }
    (v, src.len().min(10))
}

/// Where the parts of a block are.
#[derive(Clone, Copy)]
struct Parts {
    key_start: usize,
    key_len: usize,
    payload_start: usize,
    value_start: usize,
    value_len: usize,
}

impl Parts {
    fn total(&self) -> usize {
        self.value_start + self.value_len
    }
}

fn kind_of(meta: u8) -> Kind {
    if meta & TYPE_MASK == 0 {
        Kind::String
    } else {
        Kind::Object
    }
}

fn parts(b: &[u8]) -> Parts {
    let meta = b.first().copied().unwrap_or(0);
    let keylen_at = if meta & EXPIRE_BIT != 0 {
        KEYLEN_TTL
    } else {
        KEYLEN_NO_TTL
    };
    let (key_len, n) = get_varint(b.get(keylen_at..).unwrap_or_default());
    let key_start = keylen_at + n;
    let payload_start = key_start.saturating_add(key_len);
    let (value_start, value_len) = match kind_of(meta) {
        Kind::String => {
            let (vlen, m) = get_varint(b.get(payload_start..).unwrap_or_default());
            (payload_start + m, vlen)
        }
        Kind::Object => (payload_start, OBJ_INDEX_LEN),
    };
    Parts {
        key_start,
        key_len,
        payload_start,
        value_start: value_start.min(b.len()),
        value_len: value_len.min(b.len().saturating_sub(value_start)),
    }
}

fn slice(b: &[u8], start: usize, len: usize) -> &[u8] {
    b.get(start..start.saturating_add(len)).unwrap_or_default()
}

/// The key of a stored block (given its whole arena slot).
pub(super) fn key_of(b: &[u8]) -> &[u8] {
    let p = parts(b);
    slice(b, p.key_start, p.key_len)
}

fn object_index(b: &[u8], p: &Parts) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(slice(b, p.payload_start, OBJ_INDEX_LEN).get(..4).unwrap_or(&[0; 4]));
    u32::from_le_bytes(w)
}

impl Entry {
    pub(super) fn from_block(block: Block) -> Entry {
        Entry { block }
    }

    pub(super) fn block(&self) -> &Block {
        &self.block
    }

    fn bytes(&self) -> &[u8] {
        self.block.bytes()
    }

    fn build(key: &[u8], kind: Kind, value: &[u8], obj: Option<Box<Stored>>, expire_at: u64, clock: u32) -> Entry {
        let payload_len = match kind {
            Kind::String => varint_len(value.len()) + value.len(),
            Kind::Object => OBJ_INDEX_LEN,
        };
        let keylen_at = if expire_at != 0 { KEYLEN_TTL } else { KEYLEN_NO_TTL };
        let total = keylen_at + varint_len(key.len()) + key.len() + payload_len;
        let mut block = Block::heap(total);
        let buf = block.bytes_mut();
        let mut meta = kind as u8;
        if expire_at != 0 {
            meta |= EXPIRE_BIT;
            if let Some(w) = buf.get_mut(EXPIRE..KEYLEN_TTL) {
                w.copy_from_slice(&expire_at.to_le_bytes());
            }
        }
        if let Some(m) = buf.get_mut(META) {
            *m = meta;
        }
        if let Some(w) = buf.get_mut(CLOCK..EXPIRE) {
            w.copy_from_slice(&clock.to_le_bytes());
        }
        let mut at = keylen_at + put_varint(buf.get_mut(keylen_at..).unwrap_or_default(), key.len());
        if let Some(w) = buf.get_mut(at..at + key.len()) {
            w.copy_from_slice(key);
        }
        at += key.len();
        if kind == Kind::String {
            at += put_varint(buf.get_mut(at..).unwrap_or_default(), value.len());
            if let Some(w) = buf.get_mut(at..at + value.len()) {
                w.copy_from_slice(value);
            }
        }
        block.set_own_object(obj);
        Entry { block }
    }

    /// A string entry. `expire_at` is a unix time in ms, 0 for none.
    pub fn string(key: &[u8], value: &[u8], expire_at: u64, clock: u32) -> Entry {
        Entry::build(key, Kind::String, value, None, expire_at, clock)
    }

    /// An entry holding a non-string value.
    pub fn object(key: &[u8], obj: Object, expire_at: u64, clock: u32) -> Entry {
        Entry::object_with(key, obj, Changes::fresh(), expire_at, clock)
    }

    /// An entry holding a non-string value with the given change counts (a value
    /// received from a primary keeps the primary's count).
    pub fn object_with(key: &[u8], obj: Object, changes: Changes, expire_at: u64, clock: u32) -> Entry {
        let stored = Stored { object: obj, changes };
        Entry::build(key, Kind::Object, &[], Some(Box::new(stored)), expire_at, clock)
    }

    /// Moves an owned entry into `arena`; returns its handle. A view is copied.
    pub(super) fn into_arena(mut self, arena: &mut Arena) -> Handle {
        let p = parts(self.bytes());
        let len = p.total();
        let h = arena.alloc(len);
        let obj = self.block.take_own_object();
        let dst = arena.get_mut(h);
        if let (Some(d), Some(s)) = (dst.get_mut(..len), self.block.bytes().get(..len)) {
            d.copy_from_slice(s);
        }
        if let Some(obj) = obj {
            let i = arena.put_object(obj);
            if let Some(w) = arena
                .get_mut(h)
                .get_mut(p.payload_start..p.payload_start + OBJ_INDEX_LEN)
            {
                w.copy_from_slice(&i.to_le_bytes());
            }
        }
        h
    }

    /// Copies this owned string entry over arena block `h` when it fits that block's
    /// size class exactly (a replaced value of similar size: no allocation, no free).
    /// The block must hold a string (no object to release). False if it does not fit.
    pub(super) fn write_over(&self, arena: &mut Arena, h: Handle) -> bool {
        if self.kind() != Kind::String {
            return false;
        }
        let src = self.bytes();
        let len = parts(src).total();
        let dst = arena.get_mut(h);
        if dst.is_empty() || charged(len) != dst.len() {
            return false;
        }
        match (dst.get_mut(..len), src.get(..len)) {
            (Some(d), Some(s)) => {
                d.copy_from_slice(s);
                true
            }
            _ => false,
        }
    }

    /// Frees arena block `h` and its object, if any, without copying it out.
    pub(super) fn discard(arena: &mut Arena, h: Handle) {
        let src = arena.get(h);
        if kind_of(src.first().copied().unwrap_or(0)) == Kind::Object {
            let i = object_index(src, &parts(src));
            drop(arena.take_object(i));
        }
        arena.free(h);
    }

    /// Removes block `h` from `arena` as an owned entry.
    pub(super) fn take_from(arena: &mut Arena, h: Handle) -> Entry {
        let src = arena.get(h);
        let p = parts(src);
        let len = p.total();
        let mut block = Block::heap(len);
        if let (Some(d), Some(s)) = (block.bytes_mut().get_mut(..len), src.get(..len)) {
            d.copy_from_slice(s);
        }
        if kind_of(src.first().copied().unwrap_or(0)) == Kind::Object {
            let i = object_index(src, &p);
            block.set_own_object(arena.take_object(i));
        }
        arena.free(h);
        Entry { block }
    }

    pub fn kind(&self) -> Kind {
        kind_of(self.meta())
    }

    pub fn key(&self) -> &[u8] {
        key_of(self.bytes())
    }

    pub fn value(&self) -> ValueRef<'_> {
        let b = self.bytes();
        let p = parts(b);
        match self.kind() {
            Kind::String => ValueRef::Str(slice(b, p.value_start, p.value_len)),
            Kind::Object => match self.block.object(object_index(b, &p)) {
                Some(o) => ValueRef::Obj(&o.object),
                None => ValueRef::Str(&[]),
            },
        }
    }

    /// The string value, or `None` for other types.
    pub fn as_str(&self) -> Option<&[u8]> {
        match self.value() {
            ValueRef::Str(s) => Some(s),
            ValueRef::Obj(_) => None,
        }
    }

    /// The string value's bytes, to change in place without changing its length
    /// (SETBIT, BITFIELD, a HyperLogLog's registers); `None` for other types or when
    /// the block cannot be written in place (the caller then replaces the entry).
    pub fn as_str_mut(&mut self) -> Option<&mut [u8]> {
        if self.kind() != Kind::String {
            return None;
        }
        let p = parts(self.bytes());
        let (start, len) = (p.value_start, p.value_len);
        self.block.bytes_mut().get_mut(start..start + len)
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self.value() {
            ValueRef::Obj(o) => Some(o),
            ValueRef::Str(_) => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Object> {
        if self.kind() != Kind::Object {
            return None;
        }
        let b = self.bytes();
        let i = object_index(b, &parts(b));
        self.block.object_mut(i).map(|s| &mut s.object)
    }

    /// The change counts of a non-string value (see [`super::changes`]).
    pub fn changes(&self) -> Option<Changes> {
        if self.kind() != Kind::Object {
            return None;
        }
        let b = self.bytes();
        self.block.object(object_index(b, &parts(b))).map(|s| s.changes)
    }

    pub fn changes_mut(&mut self) -> Option<&mut Changes> {
        if self.kind() != Kind::Object {
            return None;
        }
        let b = self.bytes();
        let i = object_index(b, &parts(b));
        self.block.object_mut(i).map(|s| &mut s.changes)
    }

    /// Unix time in ms at which the key expires, if any.
    pub fn expire_at(&self) -> Option<u64> {
        if self.meta() & EXPIRE_BIT == 0 {
            return None;
        }
        let mut w = [0u8; 8];
        w.copy_from_slice(self.bytes().get(EXPIRE..KEYLEN_TTL).unwrap_or(&[0; 8]));
        match u64::from_le_bytes(w) {
            0 => None,
            t => Some(t),
        }
    }

    /// Sets or clears the TTL. Adding a TTL to an entry without the field moves it to
    /// a block 8 bytes larger (a cleared TTL keeps the field, set to 0).
    pub fn set_expire_at(&mut self, at: Option<u64>) {
        let v = at.unwrap_or(0);
        if self.meta() & EXPIRE_BIT != 0 {
            if let Some(w) = self.block.bytes_mut().get_mut(EXPIRE..KEYLEN_TTL) {
                w.copy_from_slice(&v.to_le_bytes());
            }
            return;
        }
        if v == 0 {
            return;
        }
        let len = parts(self.bytes()).total();
        let old: Vec<u8> = self.bytes().get(..len).unwrap_or_default().to_vec();
        self.block.reallocate(len + 8);
        let new = self.block.bytes_mut();
        let (Some(head), Some(rest)) = (old.get(..KEYLEN_NO_TTL), old.get(KEYLEN_NO_TTL..)) else {
            return;
        };
        if let Some(w) = new.get_mut(..KEYLEN_NO_TTL) {
            w.copy_from_slice(head);
        }
        if let Some(m) = new.get_mut(META) {
            *m |= EXPIRE_BIT;
        }
        if let Some(w) = new.get_mut(EXPIRE..KEYLEN_TTL) {
            w.copy_from_slice(&v.to_le_bytes());
        }
        if let Some(w) = new.get_mut(KEYLEN_TTL..KEYLEN_TTL + rest.len()) {
            w.copy_from_slice(rest);
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.expire_at(), Some(t) if t <= now_ms)
    }

    pub fn clock(&self) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(self.bytes().get(CLOCK..EXPIRE).unwrap_or(&[0; 4]));
        u32::from_le_bytes(w)
    }

    pub fn set_clock(&mut self, clock: u32) {
        if let Some(w) = self.block.bytes_mut().get_mut(CLOCK..EXPIRE) {
            w.copy_from_slice(&clock.to_le_bytes());
        }
    }

    fn meta(&self) -> u8 {
        self.bytes().get(META).copied().unwrap_or(0)
    }

    fn set_meta(&mut self, meta: u8) {
        if let Some(m) = self.block.bytes_mut().get_mut(META) {
            *m = meta;
        }
    }

    /// S3-FIFO: whether the entry has been promoted to the main queue.
    pub fn in_main(&self) -> bool {
        self.meta() & MAIN_BIT != 0
    }

    pub fn set_in_main(&mut self, main: bool) {
        let m = self.meta();
        self.set_meta(if main { m | MAIN_BIT } else { m & !MAIN_BIT });
    }

    /// Saturating 2-bit access frequency.
    pub fn freq(&self) -> u8 {
        (self.meta() & FREQ_MASK) >> FREQ_SHIFT
    }

    pub fn set_freq(&mut self, f: u8) {
        let m = self.meta() & !FREQ_MASK;
        self.set_meta(m | ((f.min(3) << FREQ_SHIFT) & FREQ_MASK));
    }

    /// Bytes of this entry's block (key, inline value and header).
    pub fn block_len(&self) -> usize {
        parts(self.bytes()).total()
    }

    /// Bytes charged against `maxmemory`: the block's arena size class, one table
    /// slot, and the object's own accounting for non-string values.
    pub fn mem_size(&self) -> usize {
        let obj = match self.value() {
            // The change counts live next to the value (store/changes.rs).
            ValueRef::Obj(o) => o.mem_size() + std::mem::size_of::<Changes>(),
            ValueRef::Str(_) => 0,
        };
        charged(self.block_len()) + TABLE_SLOT_BYTES + obj
    }
}

/// What one key is charged for its slot's index (`table.rs`): a 4-byte handle and a tag
/// byte at a typical load of about 5/8 (a table grows at 13/16 to at most 5/8; a small
/// table just grown can sit lower, a full one higher). A fixed charge keeps accounting
/// exact and independent of when tables grow.
pub const TABLE_SLOT_BYTES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Hash, Object};

    #[test]
    fn string_entry_roundtrip() {
        let mut e = Entry::string(b"key:000000000001", &[7u8; 64], 0, 99);
        assert_eq!(e.key(), b"key:000000000001");
        assert_eq!(e.as_str(), Some(&[7u8; 64][..]));
        assert_eq!(e.block_len(), 87);
        assert_eq!(e.mem_size(), 88 + TABLE_SLOT_BYTES);
        assert_eq!(e.expire_at(), None);
        e.set_expire_at(Some(1234));
        assert_eq!(e.expire_at(), Some(1234));
        assert!(e.is_expired(1234));
        assert!(!e.is_expired(1233));
        e.set_freq(5);
        assert_eq!(e.freq(), 3);
        e.set_in_main(true);
        assert!(e.in_main());
        assert_eq!(e.freq(), 3);
        assert_eq!(e.kind(), Kind::String);
        assert_eq!(e.clock(), 99);
        e.set_clock(7);
        assert_eq!(e.clock(), 7);
        assert_eq!(e.key(), b"key:000000000001");
        let size = e.mem_size();
        if let Some(v) = e.as_str_mut() {
            v[63] = 1;
        }
        assert_eq!(e.as_str().map(|v| (v.len(), v[62], v[63])), Some((64, 7, 1)));
        assert_eq!(e.mem_size(), size);
        assert_eq!(e.key(), b"key:000000000001");
    }

    #[test]
    fn long_keys_and_values_use_multibyte_lengths() {
        let key = vec![b'k'; 300];
        let val = vec![b'v'; 100_000];
        let e = Entry::string(&key, &val, 5, 0);
        assert_eq!(e.key(), &key[..]);
        assert_eq!(e.as_str(), Some(&val[..]));
        assert_eq!(e.expire_at(), Some(5));
    }

    #[test]
    fn object_entry_owns_its_object() {
        let mut h = Hash::default();
        h.insert(b"f", b"v");
        let mut e = Entry::object(b"h", Object::Hash(h), 0, 0);
        assert!(e.as_str().is_none());
        match e.as_object_mut() {
            Some(Object::Hash(h)) => {
                h.insert(b"g", b"w");
            }
            _ => panic!("expected a hash"),
        }
        match e.as_object() {
            Some(Object::Hash(h)) => assert_eq!(h.len(), 2),
            _ => panic!("expected a hash"),
        }
    }
}
