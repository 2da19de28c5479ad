//! HyperLogLog sketches in Redis' own string representation, so that PFCOUNT gives
//! Redis' number and GET of an HLL key gives Redis' bytes. A pure module: functions
//! over the string value's bytes; `cmd/hyperloglog.rs` reads and stores the strings.
//!
//! Layout (Redis 7.0, `hyperloglog.c`): a 16-byte header `"HYLL"`, the encoding byte
//! (0 dense, 1 sparse), 3 zero bytes and the cached cardinality (8 bytes, little
//! endian, its top bit set when the cache is stale), then the registers:
//! - dense: 16384 registers of 6 bits, packed from the low bits of each byte
//!   (12288 bytes);
//! - sparse: run-length opcodes `00xxxxxx` (ZERO: 1..64 zero registers),
//!   `01xxxxxx yyyyyyyy` (XZERO: 1..16384 zero registers) and `1vvvvvxx` (VAL: 1..4
//!   registers of value 1..32). A sparse sketch turns dense when a register needs a
//!   value above 32 or when it would grow past `hll-sparse-max-bytes` (3000).
//!
//! Elements are hashed with MurmurHash64A (seed `0xadc83b19`); the low 14 bits pick the
//! register, the run of zeros after them gives its value. The estimate is Otmar Ertl's
//! improved estimator over the register histogram, as in Redis 7.0.

/// Header length.
pub const HDR: usize = 16;
/// Number of registers (2^14).
pub const REGISTERS: usize = 1 << P;
/// Redis' default `hll-sparse-max-bytes`.
pub const SPARSE_MAX_BYTES: usize = 3000;
/// Length of a dense sketch.
pub const DENSE_LEN: usize = HDR + (REGISTERS * BITS).div_ceil(8);

const P: usize = 14;
const Q: usize = 64 - P;
const BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << BITS) - 1;
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const SEED: u64 = 0xadc8_3b19;
/// 0.5 / ln 2, Redis' `HLL_ALPHA_INF` literal.
#[allow(clippy::excessive_precision)]
const ALPHA_INF: f64 = 0.721347520444481703680;

const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;

/// Why a string is not a usable sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HllError {
    /// Not an HLL string at all (Redis: `WRONGTYPE Key is not a valid HyperLogLog
    /// string value.`).
    NotHll,
    /// An HLL header over registers that do not add up (Redis: `INVALIDOBJ`).
    Corrupt,
}

/// MurmurHash2, 64-bit version (Austin Appleby's MurmurHash64A), reading 8-byte
/// blocks little endian, as Redis does on every architecture.
pub fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    // Redis takes the seed as a 32-bit unsigned int and the length as an int.
    let mut h = (seed & 0xffff_ffff) ^ (data.len() as u64).wrapping_mul(M);
    let mut blocks = data.chunks_exact(8);
    for block in blocks.by_ref() {
        let mut k = block.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element goes to and the value it offers (length of the `0..01`
/// pattern after the index bits, 1..=51).
pub fn register_of(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash as usize) & (REGISTERS - 1);
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// An empty sketch: sparse, one XZERO opcode covering every register, cache valid (0).
pub fn new_sparse() -> Vec<u8> {
    let mut v = header(SPARSE);
    let mut left = REGISTERS;
    while left > 0 {
        let run = left.min(XZERO_MAX_LEN);
        v.extend_from_slice(&xzero(run));
        left -= run;
    }
    v
}

fn header(encoding: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(HDR + 2);
    v.extend_from_slice(b"HYLL");
    v.extend_from_slice(&[encoding, 0, 0, 0]);
    v.extend_from_slice(&[0; 8]);
    v
}

/// Redis' check that a string value holds a sketch: the magic, a known encoding, and
/// the exact length for a dense one (a sparse one is checked as it is read).
pub fn validate(v: &[u8]) -> Result<(), HllError> {
    if v.len() < HDR || &v[..4] != b"HYLL" || v[4] > SPARSE || (v[4] == DENSE && v.len() != DENSE_LEN) {
        return Err(HllError::NotHll);
    }
    Ok(())
}

fn is_dense(v: &[u8]) -> bool {
    v.get(4) == Some(&DENSE)
}

/// The cached cardinality, when valid.
pub fn cached(v: &[u8]) -> Option<u64> {
    let card = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    (card >> 63 == 0).then_some(card)
}

/// Stores `card` as the cached cardinality.
pub fn set_cached(v: &mut [u8], card: u64) {
    if let Some(c) = v.get_mut(8..16) {
        c.copy_from_slice(&card.to_le_bytes());
    }
}

/// Marks the cached cardinality stale.
pub fn invalidate_cache(v: &mut [u8]) {
    if let Some(b) = v.get_mut(15) {
        *b |= 0x80;
    }
}

// Dense registers: register `i` takes bits `6i..6i+6` counted from the low bit of
// each byte. The last register's second byte lies past the string: Redis reads its
// terminating zero there, and writes nothing to it.

fn dense_get(regs: &[u8], i: usize) -> u8 {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let b0 = u16::from(regs.get(byte).copied().unwrap_or(0));
    let b1 = u16::from(regs.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) & u16::from(REGISTER_MAX)) as u8
}

fn dense_put(regs: &mut [u8], i: usize, val: u8) {
    let byte = i * BITS / 8;
    let fb = (i * BITS) & 7;
    let v = u16::from(val);
    let max = u16::from(REGISTER_MAX);
    if let Some(b) = regs.get_mut(byte) {
        *b &= !((max << fb) as u8);
        *b |= (v << fb) as u8;
    }
    if let Some(b) = regs.get_mut(byte + 1) {
        *b &= !((max >> (8 - fb)) as u8);
        *b |= (v >> (8 - fb)) as u8;
    }
}

/// Raises dense register `i` to `count`; whether it changed.
fn dense_set(v: &mut [u8], i: usize, count: u8) -> bool {
    let regs = v.get_mut(HDR..).unwrap_or_default();
    if count > dense_get(regs, i) {
        dense_put(regs, i, count);
        true
    } else {
        false
    }
}

// Sparse opcodes.

fn is_zero(op: u8) -> bool {
    op & 0xc0 == 0
}

fn is_xzero(op: u8) -> bool {
    op & 0xc0 == 0x40
}

fn is_val(op: u8) -> bool {
    op & 0x80 != 0
}

fn zero_len(op: u8) -> usize {
    usize::from(op & 0x3f) + 1
}

fn xzero_len(op: u8, next: u8) -> usize {
    ((usize::from(op & 0x3f) << 8) | usize::from(next)) + 1
}

fn val_value(op: u8) -> u8 {
    ((op >> 2) & 0x1f) + 1
}

fn val_len(op: u8) -> usize {
    usize::from(op & 0x3) + 1
}

fn val(value: u8, len: usize) -> u8 {
    ((value - 1) << 2) | (len as u8 - 1) | 0x80
}

fn zero(len: usize) -> u8 {
    (len - 1) as u8
}

fn xzero(len: usize) -> [u8; 2] {
    let l = len - 1;
    [((l >> 8) as u8) | 0x40, (l & 0xff) as u8]
}

/// A run of `len` zero registers: ZERO when it fits, XZERO otherwise.
fn zeros(len: usize, out: &mut Vec<u8>) {
    if len > ZERO_MAX_LEN {
        out.extend_from_slice(&xzero(len));
    } else {
        out.push(zero(len));
    }
}

/// Walks a sparse body: `f(first register, run length, value)` per opcode. Returns
/// the number of registers covered; VAL runs that would pass the last register stop
/// the walk, as in Redis.
fn walk_sparse(body: &[u8], mut f: impl FnMut(usize, usize, u8)) -> usize {
    let (mut i, mut p) = (0usize, 0usize);
    while let Some(&op) = body.get(p) {
        if is_zero(op) {
            i += zero_len(op);
            p += 1;
        } else if is_xzero(op) {
            i += xzero_len(op, body.get(p + 1).copied().unwrap_or(0));
            p += 2;
        } else {
            let (len, value) = (val_len(op), val_value(op));
            if i + len > REGISTERS {
                break;
            }
            f(i, len, value);
            i += len;
            p += 1;
        }
    }
    i
}

/// Converts a sparse sketch to dense (the header, cache included, is kept).
pub fn to_dense(v: &mut Vec<u8>) -> Result<(), HllError> {
    if is_dense(v) {
        return Ok(());
    }
    let mut dense = vec![0u8; DENSE_LEN];
    dense[..HDR].copy_from_slice(v.get(..HDR).ok_or(HllError::Corrupt)?);
    dense[4] = DENSE;
    let regs = &mut dense[HDR..];
    let covered = walk_sparse(v.get(HDR..).unwrap_or_default(), |first, len, value| {
        for i in first..first + len {
            dense_put(regs, i, value);
        }
    });
    if covered != REGISTERS {
        return Err(HllError::Corrupt);
    }
    *v = dense;
    Ok(())
}

/// Raises register `index` to `count` in a sparse sketch, splitting and merging
/// opcodes in place as Redis does (so the bytes are Redis' bytes), or turning the
/// sketch dense. Whether the register changed.
fn sparse_set(v: &mut Vec<u8>, index: usize, count: u8, max_bytes: usize) -> Result<bool, HllError> {
    if count > VAL_MAX_VALUE {
        return promote(v, index, count);
    }
    // Step 1: the opcode covering `index`.
    let end = v.len();
    let (mut p, mut first, mut span) = (HDR, 0usize, 0usize);
    let mut prev = None;
    while p < end {
        let op = v[p];
        let oplen;
        (span, oplen) = if is_zero(op) {
            (zero_len(op), 1)
        } else if is_val(op) {
            (val_len(op), 1)
        } else {
            (xzero_len(op, v.get(p + 1).copied().unwrap_or(0)), 2)
        };
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= end {
        return Err(HllError::Corrupt);
    }
    let op = v[p];
    let oplen = if is_xzero(op) { 2 } else { 1 };
    let has_next = p + oplen < end;
    let runlen = span;
    // Step 2: the trivial updates, or the sequence replacing the opcode.
    let trivial = if is_val(op) {
        let current = val_value(op);
        if current >= count {
            return Ok(false);
        }
        runlen == 1
    } else {
        is_zero(op) && runlen == 1
    };
    if trivial {
        v[p] = val(count, 1);
    } else {
        let last = first + span - 1;
        let mut seq = Vec::with_capacity(5);
        if is_val(op) {
            let current = val_value(op);
            if index != first {
                seq.push(val(current, index - first));
            }
            seq.push(val(count, 1));
            if index != last {
                seq.push(val(current, last - index));
            }
        } else {
            if index != first {
                zeros(index - first, &mut seq);
            }
            seq.push(val(count, 1));
            if index != last {
                zeros(last - index, &mut seq);
            }
        }
        // Step 3: put the sequence in place of the opcode.
        let delta = seq.len() as isize - oplen as isize;
        if delta > 0 && end + delta as usize > max_bytes {
            return promote(v, index, count);
        }
        let tail = if has_next { v[p + oplen..].to_vec() } else { Vec::new() };
        v.truncate(p);
        v.extend_from_slice(&seq);
        v.extend_from_slice(&tail);
        v.resize((end as isize + delta) as usize, 0);
    }
    // Step 4: merge adjacent VAL opcodes of the same value, from the previous opcode
    // on, scanning at most 5 opcodes.
    let mut p = prev.unwrap_or(HDR);
    let mut scan = 5;
    while p < v.len() && scan > 0 {
        scan -= 1;
        let op = v[p];
        if is_xzero(op) {
            p += 2;
            continue;
        }
        if is_zero(op) {
            p += 1;
            continue;
        }
        if let Some(&next) = v.get(p + 1).filter(|&&n| is_val(n)) {
            let len = val_len(op) + val_len(next);
            if val_value(op) == val_value(next) && len <= VAL_MAX_LEN {
                v[p + 1] = val(val_value(op), len);
                v.remove(p);
                continue;
            }
        }
        p += 1;
    }
    invalidate_cache(v);
    Ok(true)
}

/// Turns a sparse sketch dense and sets the register there.
fn promote(v: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, HllError> {
    to_dense(v)?;
    Ok(dense_set(v, index, count))
}

/// Raises register `index` to `count` in either encoding; whether it changed.
pub fn set_register(v: &mut Vec<u8>, index: usize, count: u8, max_bytes: usize) -> Result<bool, HllError> {
    if is_dense(v) {
        Ok(dense_set(v, index, count))
    } else {
        sparse_set(v, index, count, max_bytes)
    }
}

/// Adds an element to a validated sketch; whether a register changed. The cache is
/// left for the caller to invalidate (PFADD does it once for all elements).
pub fn add(v: &mut Vec<u8>, element: &[u8], max_bytes: usize) -> Result<bool, HllError> {
    let (index, count) = register_of(element);
    set_register(v, index, count, max_bytes)
}

/// Raises `max[i]` to the sketch's register `i`, for every register.
pub fn merge_into(max: &mut [u8; REGISTERS], v: &[u8]) -> Result<(), HllError> {
    let body = v.get(HDR..).unwrap_or_default();
    if is_dense(v) {
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(body, i));
        }
        return Ok(());
    }
    let covered = walk_sparse(body, |first, len, value| {
        for m in &mut max[first..first + len] {
            *m = (*m).max(value);
        }
    });
    if covered == REGISTERS {
        Ok(())
    } else {
        Err(HllError::Corrupt)
    }
}

/// Whether the sketch is dense.
pub fn dense(v: &[u8]) -> bool {
    is_dense(v)
}

/// The estimated cardinality of a validated sketch.
pub fn count(v: &[u8]) -> Result<u64, HllError> {
    let mut histogram = [0u32; 64];
    let body = v.get(HDR..).unwrap_or_default();
    if is_dense(v) {
        for i in 0..REGISTERS {
            histogram[usize::from(dense_get(body, i))] += 1;
        }
    } else {
        // Unlike a merge, a count takes every VAL run and checks the total after.
        let (mut i, mut p) = (0usize, 0usize);
        while let Some(&op) = body.get(p) {
            let (len, value, oplen) = if is_zero(op) {
                (zero_len(op), 0, 1)
            } else if is_xzero(op) {
                (xzero_len(op, body.get(p + 1).copied().unwrap_or(0)), 0, 2)
            } else {
                (val_len(op), val_value(op), 1)
            };
            i += len;
            histogram[usize::from(value)] = histogram[usize::from(value)].wrapping_add(len as u32);
            p += oplen;
        }
        if i != REGISTERS {
            return Err(HllError::Corrupt);
        }
    }
    Ok(estimate(&histogram))
}

/// The estimated cardinality of plain registers (one byte each), for a union.
pub fn count_registers(max: &[u8; REGISTERS]) -> u64 {
    let mut histogram = [0u32; 64];
    for &r in max {
        histogram[usize::from(r & 63)] += 1;
    }
    estimate(&histogram)
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if before == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if before == z {
            return z / 3.0;
        }
    }
}

/// Ertl's estimator over the register histogram (Redis 7.0's `hllCount`).
fn estimate(histogram: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(histogram[Q + 1])) / m);
    for j in (1..=Q).rev() {
        z += f64::from(histogram[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_sketch_is_redis_bytes_and_counts_zero() {
        let v = new_sparse();
        assert_eq!(v, b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\0\x7f\xff");
        assert_eq!(validate(&v), Ok(()));
        assert_eq!(count(&v), Ok(0));
        assert_eq!(cached(&v), Some(0));
    }

    /// The bytes redis-server 7.0.15 stores after `PFADD h a b c`, then `PFCOUNT h`.
    #[test]
    fn three_elements_give_redis_bytes_and_count() {
        let mut v = new_sparse();
        for e in [&b"a"[..], b"b", b"c"] {
            assert_eq!(add(&mut v, e, SPARSE_MAX_BYTES), Ok(true));
        }
        invalidate_cache(&mut v);
        let body = b"`\xf3\x80P\xb1\x84K\xfb\x80BZ";
        assert_eq!(v, [&b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80"[..], body].concat());
        assert_eq!(cached(&v), None);
        assert_eq!(count(&v), Ok(3));
        set_cached(&mut v, 3);
        assert_eq!(v, [&b"HYLL\x01\0\0\0\x03\0\0\0\0\0\0\0"[..], body].concat());
    }

    /// Sparse and dense sketches fed the same elements hold the same registers and
    /// give the same count; the sparse one turns dense past the size limit.
    #[test]
    fn sparse_updates_agree_with_dense_and_switch_at_the_limit() {
        let mut sparse = new_sparse();
        let mut dense = new_sparse();
        to_dense(&mut dense).expect("valid");
        for n in 0..5000u32 {
            let e = n.to_string();
            let a = add(&mut sparse, e.as_bytes(), SPARSE_MAX_BYTES).expect("valid");
            let b = add(&mut dense, e.as_bytes(), SPARSE_MAX_BYTES).expect("valid");
            assert_eq!(a, b, "element {n}");
            if !is_dense(&sparse) {
                assert!(sparse.len() <= SPARSE_MAX_BYTES);
                let mut m1 = [0u8; REGISTERS];
                let mut m2 = [0u8; REGISTERS];
                merge_into(&mut m1, &sparse).expect("valid");
                merge_into(&mut m2, &dense).expect("valid");
                assert!(m1 == m2, "registers differ after {n}");
                assert_eq!(count(&sparse), count(&dense));
            }
        }
        assert!(is_dense(&sparse));
        assert_eq!(sparse[HDR..], dense[HDR..]);
        let n = count(&dense).expect("valid");
        assert!((4900..5100).contains(&n), "{n}");
    }

    #[test]
    fn corrupt_sparse_sketches_are_reported() {
        let mut v = header(SPARSE);
        v.push(0x3f);
        assert_eq!(validate(&v), Ok(()));
        assert_eq!(count(&v), Err(HllError::Corrupt));
        assert_eq!(
            add(&mut v.clone(), b"x", SPARSE_MAX_BYTES).err(),
            Some(HllError::Corrupt)
        );
        let mut max = [0u8; REGISTERS];
        assert_eq!(merge_into(&mut max, &v), Err(HllError::Corrupt));
        assert_eq!(validate(b"HYLL"), Err(HllError::NotHll));
        assert_eq!(validate(&header(DENSE)), Err(HllError::NotHll));
    }
}
