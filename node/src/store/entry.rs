//! One cached key and its value in a single heap block behind a thin pointer.
//!
//! Layout (all little endian):
//! ```text
//! [meta u8][clock u32][expire_at_ms u64][varint key_len][key][payload]
//! payload = [varint val_len][value bytes]     for strings
//!         = [*mut Object as 8 bytes]          for every other type
//! ```
//! `meta` holds the type (3 bits), the S3-FIFO "main queue" bit and a 2-bit access
//! frequency. `clock` is the time (ms, wrapping u32) of insertion or of the last
//! access, depending on the eviction policy. A string entry with a 16-byte key and a
//! 64-byte value takes 95 bytes in one allocation, and a table slot of 8 bytes.
//!
//! This is the only module with `unsafe` code in the store; every access goes
//! through the bounds computed by `layout()`.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;

use super::object::Object;

const META: usize = 0;
const CLOCK: usize = 1;
const EXPIRE: usize = 5;
const KEYLEN: usize = 13;

const TYPE_MASK: u8 = 0b0000_0111;
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

/// A key with its value, owned; dropping it frees the block and any object.
pub struct Entry {
    ptr: NonNull<u8>,
}

// SAFETY: an Entry exclusively owns its block and object, like a Box.
unsafe impl Send for Entry {}
// SAFETY: shared references only read.
unsafe impl Sync for Entry {}

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
        dst[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    dst[i] = v as u8;
    i + 1
}

fn get_varint(src: &[u8]) -> (usize, usize) {
    let mut v = 0usize;
    let mut shift = 0;
    for (i, &b) in src.iter().enumerate() {
        v |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return (v, i + 1);
        }
        shift += 7;
    }
    (v, src.len())
}

struct Parts {
    key_start: usize,
    key_len: usize,
    payload_start: usize,
    total: usize,
}

impl Entry {
    fn build(key: &[u8], kind: Kind, value: &[u8], obj: Option<Box<Object>>, expire_at: u64, clock: u32) -> Entry {
        let payload_len = match kind {
            Kind::String => varint_len(value.len()) + value.len(),
            Kind::Object => std::mem::size_of::<usize>(),
        };
        let total = KEYLEN + varint_len(key.len()) + key.len() + payload_len;
        let layout = match Layout::from_size_align(total, 1) {
            Ok(l) => l,
            Err(_) => std::alloc::handle_alloc_error(Layout::new::<u8>()),
        };
        // SAFETY: total > 0.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: we just allocated `total` bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), total) };
        buf[META] = kind as u8;
        buf[CLOCK..EXPIRE].copy_from_slice(&clock.to_le_bytes());
        buf[EXPIRE..KEYLEN].copy_from_slice(&expire_at.to_le_bytes());
        let mut at = KEYLEN + put_varint(&mut buf[KEYLEN..], key.len());
        buf[at..at + key.len()].copy_from_slice(key);
        at += key.len();
        match kind {
            Kind::String => {
                at += put_varint(&mut buf[at..], value.len());
                buf[at..at + value.len()].copy_from_slice(value);
            }
            Kind::Object => {
                let p = obj.map(Box::into_raw).unwrap_or(std::ptr::null_mut()) as usize;
                buf[at..at + 8].copy_from_slice(&p.to_le_bytes());
            }
        }
        Entry { ptr }
    }

    /// A string entry. `expire_at` is a unix time in ms, 0 for none.
    pub fn string(key: &[u8], value: &[u8], expire_at: u64, clock: u32) -> Entry {
        Entry::build(key, Kind::String, value, None, expire_at, clock)
    }

    /// An entry holding a non-string value.
    pub fn object(key: &[u8], obj: Object, expire_at: u64, clock: u32) -> Entry {
        Entry::build(key, Kind::Object, &[], Some(Box::new(obj)), expire_at, clock)
    }

    fn head(&self) -> &[u8] {
        // SAFETY: every block is longer than KEYLEN bytes (a key-length varint follows).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), KEYLEN) }
    }

    fn parts(&self) -> Parts {
        let base = self.ptr.as_ptr();
        let mut key_len = 0usize;
        let mut shift = 0;
        let mut i = 0;
        loop {
            // SAFETY: reading the varint we wrote, which ends with a byte < 0x80.
            let b = unsafe { *base.add(KEYLEN + i) };
            key_len |= usize::from(b & 0x7f) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let key_start = KEYLEN + i;
        let payload_start = key_start + key_len;
        let total = match self.kind() {
            Kind::String => {
                let mut vlen = 0usize;
                let mut shift = 0;
                let mut j = 0;
                loop {
                    // SAFETY: as above, for the value-length varint.
                    let b = unsafe { *base.add(payload_start + j) };
                    vlen |= usize::from(b & 0x7f) << shift;
                    j += 1;
                    if b & 0x80 == 0 {
                        break;
                    }
                    shift += 7;
                }
                payload_start + j + vlen
            }
            Kind::Object => payload_start + 8,
        };
        Parts {
            key_start,
            key_len,
            payload_start,
            total,
        }
    }

    fn bytes(&self) -> &[u8] {
        let total = self.parts().total;
        // SAFETY: `total` is the allocated length.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), total) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let total = self.parts().total;
        // SAFETY: `total` is the allocated length and we have &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), total) }
    }

    pub fn kind(&self) -> Kind {
        // SAFETY: byte 0 always exists.
        let meta = unsafe { *self.ptr.as_ptr() };
        if meta & TYPE_MASK == 0 {
            Kind::String
        } else {
            Kind::Object
        }
    }

    pub fn key(&self) -> &[u8] {
        let p = self.parts();
        &self.bytes()[p.key_start..p.key_start + p.key_len]
    }

    pub fn value(&self) -> ValueRef<'_> {
        let p = self.parts();
        let bytes = self.bytes();
        match self.kind() {
            Kind::String => {
                let (vlen, n) = get_varint(&bytes[p.payload_start..]);
                let start = p.payload_start + n;
                ValueRef::Str(&bytes[start..start + vlen])
            }
            Kind::Object => {
                let raw = self.object_ptr(&p);
                // SAFETY: object entries always hold a pointer from Box::into_raw.
                ValueRef::Obj(unsafe { &*raw })
            }
        }
    }

    fn object_ptr(&self, p: &Parts) -> *mut Object {
        let bytes = self.bytes();
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[p.payload_start..p.payload_start + 8]);
        usize::from_le_bytes(w) as *mut Object
    }

    /// The string value, or `None` for other types.
    pub fn as_str(&self) -> Option<&[u8]> {
        match self.value() {
            ValueRef::Str(s) => Some(s),
            ValueRef::Obj(_) => None,
        }
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
        let p = self.parts();
        let raw = self.object_ptr(&p);
        // SAFETY: exclusive access through &mut self; pointer from Box::into_raw.
        Some(unsafe { &mut *raw })
    }

    /// Unix time in ms at which the key expires, if any.
    pub fn expire_at(&self) -> Option<u64> {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.head()[EXPIRE..KEYLEN]);
        match u64::from_le_bytes(w) {
            0 => None,
            t => Some(t),
        }
    }

    pub fn set_expire_at(&mut self, at: Option<u64>) {
        let v = at.unwrap_or(0);
        self.bytes_mut()[EXPIRE..KEYLEN].copy_from_slice(&v.to_le_bytes());
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.expire_at(), Some(t) if t <= now_ms)
    }

    pub fn clock(&self) -> u32 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&self.head()[CLOCK..EXPIRE]);
        u32::from_le_bytes(w)
    }

    pub fn set_clock(&mut self, clock: u32) {
        // SAFETY: header bytes always exist; exclusive access.
        let head = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), KEYLEN) };
        head[CLOCK..EXPIRE].copy_from_slice(&clock.to_le_bytes());
    }

    fn meta(&self) -> u8 {
        self.head()[META]
    }

    fn set_meta(&mut self, meta: u8) {
        // SAFETY: byte 0 always exists; exclusive access.
        unsafe { *self.ptr.as_ptr() = meta };
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
        self.parts().total
    }

    /// Bytes charged against `maxmemory`: the block, one table slot, and the object's
    /// own accounting for non-string values.
    pub fn mem_size(&self) -> usize {
        let obj = match self.value() {
            ValueRef::Obj(o) => o.mem_size(),
            ValueRef::Str(_) => 0,
        };
        self.block_len() + TABLE_SLOT_BYTES + obj
    }
}

/// What one key costs in its slot's hash table (pointer + control byte, rounded).
pub const TABLE_SLOT_BYTES: usize = 10;

impl Drop for Entry {
    fn drop(&mut self) {
        let p = self.parts();
        if self.kind() == Kind::Object {
            let raw = self.object_ptr(&p);
            if !raw.is_null() {
                // SAFETY: created by Box::into_raw in `build`, dropped once here.
                drop(unsafe { Box::from_raw(raw) });
            }
        }
        if let Ok(layout) = Layout::from_size_align(p.total, 1) {
            // SAFETY: allocated in `build` with this exact layout.
            unsafe { dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::object::{Hash, Object};

    #[test]
    fn string_entry_roundtrip() {
        let mut e = Entry::string(b"key:000000000001", &[7u8; 64], 0, 99);
        assert_eq!(e.key(), b"key:000000000001");
        assert_eq!(e.as_str(), Some(&[7u8; 64][..]));
        assert_eq!(e.block_len(), 95);
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
