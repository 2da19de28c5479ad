//! Bitmap commands on string values: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD
//! BITFIELD_RO, and LCS (the longest common subsequence of two string values; it lives
//! here because, like the bit commands, it reads strings as raw byte arrays).
//!
//! Bits are numbered from the most significant bit of the first byte, as in Redis.
//! Strings are stored inline in their entry (see `strings.rs`), so a write builds the
//! new value and replaces the entry, keeping the TTL; a write past the end grows the
//! string with zero bytes. Offsets are limited to `proto-max-bulk-len` bytes, like
//! Redis' 512 MB limit.

use bytes::Bytes;

use super::args::{int, is, parse_i64};
use super::flag::*;
use super::strings::string_for_write;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::store::Entry;
use ringcache_core::slot::Slot;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "setbit", arity: 4, flags: WRITE | DENYOOM, keys: (1, 1, 1), group: "bitmap", summary: "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.", handler: setbit },
    CommandSpec { name: "getbit", arity: 3, flags: READONLY | FAST, keys: (1, 1, 1), group: "bitmap", summary: "Returns a bit value by offset.", handler: getbit },
    CommandSpec { name: "bitcount", arity: -2, flags: READONLY, keys: (1, 1, 1), group: "bitmap", summary: "Counts the number of set bits (population counting) in a string.", handler: bitcount },
    CommandSpec { name: "bitpos", arity: -3, flags: READONLY, keys: (1, 1, 1), group: "bitmap", summary: "Finds the first set (1) or clear (0) bit in a string.", handler: bitpos },
    CommandSpec { name: "bitop", arity: -4, flags: WRITE | DENYOOM, keys: (2, -1, 1), group: "bitmap", summary: "Performs bitwise operations on multiple strings, and stores the result.", handler: bitop },
    CommandSpec { name: "bitfield", arity: -2, flags: WRITE | DENYOOM, keys: (1, 1, 1), group: "bitmap", summary: "Performs arbitrary bitfield integer operations on strings.", handler: bitfield },
    CommandSpec { name: "bitfield_ro", arity: -2, flags: READONLY | FAST, keys: (1, 1, 1), group: "bitmap", summary: "Performs arbitrary read-only bitfield integer operations on strings.", handler: bitfield_ro },
    CommandSpec { name: "lcs", arity: -3, flags: READONLY, keys: (1, 2, 1), group: "string", summary: "Finds the longest common substring.", handler: lcs },
];

const BAD_OFFSET: &str = "bit offset is not an integer or out of range";
const BAD_TYPE: &str = "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

/// A bit offset argument: non-negative and addressing a byte below
/// `proto-max-bulk-len`. With `width` (BITFIELD), `#n` means `n * width`.
fn bit_offset(ctx: &Ctx<'_>, arg: &[u8], width: Option<u32>) -> Result<u64, CmdError> {
    let bad = || CmdError::Other(BAD_OFFSET.into());
    let (hashed, digits) = match (arg.first(), width) {
        (Some(b'#'), Some(w)) => (Some(w), &arg[1..]),
        _ => (None, arg),
    };
    let mut n = parse_i64(digits).ok_or_else(bad)?;
    if let Some(w) = hashed {
        // Redis multiplies without an overflow check; a wrapped product is negative
        // or huge and refused below, as there.
        n = n.wrapping_mul(i64::from(w));
    }
    let max = ctx.server.access.limits.max_bulk_len as u64;
    if n < 0 || (n as u64 >> 3) >= max {
        return Err(bad());
    }
    Ok(n as u64)
}

/// The bit at `offset` (0 past the end).
fn get_bit(v: &[u8], offset: u64) -> bool {
    let byte = usize::try_from(offset >> 3).ok().and_then(|i| v.get(i));
    byte.is_some_and(|b| b & (0x80 >> (offset & 7)) != 0)
}

/// Sets the bit at `offset`, which must be inside `v`.
fn set_bit(v: &mut [u8], offset: u64, on: bool) {
    if let Some(b) = usize::try_from(offset >> 3).ok().and_then(|i| v.get_mut(i)) {
        let mask = 0x80u8 >> (offset & 7);
        if on {
            *b |= mask;
        } else {
            *b &= !mask;
        }
    }
}

/// Runs `f` on the string value of `key` grown with zero bytes to hold bit `max_bit`
/// (created when missing), keeping its TTL: Redis' lookup for bit writes (a write
/// lookup, no hit or miss counted; WRONGTYPE for other types). `f` returns its result
/// and whether it changed a bit. A string already long enough is changed in place and
/// counts as written (for WATCH) only when a bit changed, as in Redis; a shorter one is
/// rebuilt at its new length.
fn write_bits<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    max_bit: u64,
    f: impl FnOnce(&mut [u8]) -> (R, bool),
) -> Result<R, CmdError> {
    let now = ctx.now;
    // The offset was checked against proto-max-bulk-len, so this fits in memory terms.
    let need = usize::try_from((max_bit >> 3) + 1).map_err(|_| CmdError::Other(BAD_OFFSET.into()))?;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    let mut f = Some(f);
    let in_place = match slot.get(key, now) {
        None => None,
        Some(e) => {
            if e.as_str().ok_or(CmdError::WrongType)?.len() >= need {
                // Same length: the accounting does not move; `modify` below records
                // the write.
                e.as_str_mut().and_then(|v| f.take().map(|f| f(v)))
            } else {
                None
            }
        }
    };
    if let Some((r, changed)) = in_place {
        if changed {
            slot.modify(key, now, |_| ());
        }
        return Ok(r);
    }
    let (mut value, expire_at) = string_for_write(&mut slot, key, now)?.unwrap_or_default();
    if value.len() < need {
        value.resize(need, 0);
    }
    let Some(f) = f else {
        return Err(CmdError::Other("string changed while it was written".into()));
    };
    let (r, _) = f(&mut value);
    slot.insert(Entry::string(key, &value, expire_at, 0), now);
    Ok(r)
}

/// Runs `f` on the string value of `key` under a read lookup (a hit or miss counted):
/// `None` when the key is missing, WRONGTYPE for other types.
fn read_string<R>(ctx: &mut Ctx<'_>, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, CmdError> {
    let now = ctx.now;
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    match slot.read(key, now) {
        None => Ok(f(None)),
        Some(e) => Ok(f(Some(e.as_str().ok_or(CmdError::WrongType)?))),
    }
}

fn setbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let offset = bit_offset(ctx, &args[2], None)?;
    let bad_bit = || CmdError::Other("bit is not an integer or out of range".into());
    let on = match parse_i64(&args[3]).ok_or_else(bad_bit)? {
        0 => false,
        1 => true,
        _ => return Err(bad_bit()),
    };
    let old = write_bits(ctx, &args[1], offset, |v| {
        let old = get_bit(v, offset);
        set_bit(v, offset, on);
        (old, old != on)
    })?;
    ctx.out.int(i64::from(old));
    Ok(())
}

fn getbit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let offset = bit_offset(ctx, &args[2], None)?;
    let bit = read_string(ctx, &args[1], |v| v.is_some_and(|v| get_bit(v, offset)))?;
    ctx.out.int(i64::from(bit));
    Ok(())
}

/// BYTE or BIT for BITCOUNT and BITPOS: whether ranges count bits.
fn range_unit(arg: &[u8]) -> Result<bool, CmdError> {
    if is(arg, "BIT") {
        Ok(true)
    } else if is(arg, "BYTE") {
        Ok(false)
    } else {
        Err(CmdError::Syntax)
    }
}

/// Redis' clamping of a `[start, end]` range over `total` units (bytes or bits):
/// negative indexes count from the end; `None` when the range is empty.
fn clamp_range(total: i64, start: i64, end: i64) -> Option<(u64, u64)> {
    let start = if start < 0 { total + start } else { start }.max(0);
    let end = if end < 0 { total + end } else { end }.max(0).min(total - 1);
    (start <= end).then_some((start as u64, end as u64))
}

/// Number of set bits in bit range `[from, to]` of `v`.
fn count_bits(v: &[u8], from: u64, to: u64) -> u64 {
    let (first, last) = ((from >> 3) as usize, (to >> 3) as usize);
    let bytes = v.get(first..=last).unwrap_or_default();
    let mut n: u64 = bytes.iter().map(|b| u64::from(b.count_ones())).sum();
    // Take off the bits of the edge bytes that are outside the range.
    if let Some(b) = bytes.first() {
        n -= u64::from((b & !(0xffu8 >> (from & 7))).count_ones());
    }
    if let Some(b) = bytes.last() {
        n -= u64::from((b & (0x7fu8 >> (to & 7))).count_ones());
    }
    n
}

fn bitcount(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let count = read_string(ctx, &args[1], |v| -> Result<u64, CmdError> {
        let Some(v) = v else { return Ok(0) };
        let (from, to) = match args.len() {
            2 => (0, (v.len() as i64) * 8 - 1),
            4 | 5 => {
                let (start, end) = (int(&args[2])?, int(&args[3])?);
                if start < 0 && end < 0 && start > end {
                    return Ok(0);
                }
                let bits = match args.get(4) {
                    Some(unit) => range_unit(unit)?,
                    None => false,
                };
                let total = v.len() as i64 * if bits { 8 } else { 1 };
                match clamp_range(total, start, end) {
                    None => return Ok(0),
                    Some((s, e)) if bits => (s as i64, e as i64),
                    Some((s, e)) => (s as i64 * 8, e as i64 * 8 + 7),
                }
            }
            _ => return Err(CmdError::Syntax),
        };
        if from > to {
            return Ok(0);
        }
        Ok(count_bits(v, from as u64, to as u64))
    })??;
    ctx.out.int(count as i64);
    Ok(())
}

/// First bit equal to `bit` in bit range `[from, to]` of `v`.
fn find_bit(v: &[u8], from: u64, to: u64, bit: bool) -> Option<u64> {
    let skip = if bit { 0u8 } else { 0xff };
    let mut pos = from;
    while pos <= to {
        let byte = v.get((pos >> 3) as usize).copied().unwrap_or(0);
        // A whole byte without the bit looked for: skip it.
        if pos & 7 == 0 && pos + 7 <= to && byte == skip {
            pos += 8;
            continue;
        }
        if get_bit(v, pos) == bit {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

fn bitpos(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let bit = match int(&args[2])? {
        0 => false,
        1 => true,
        _ => return Err(CmdError::Other("The bit argument must be 1 or 0.".into())),
    };
    let pos = read_string(ctx, &args[1], |v| -> Result<i64, CmdError> {
        // A missing key is an endless run of zeros.
        let Some(v) = v else {
            return Ok(if bit { -1 } else { 0 });
        };
        let len = v.len() as i64;
        let (range, end_given) = match args.len() {
            3 => (clamp_range(len, 0, len - 1).map(|(s, e)| (s * 8, e * 8 + 7)), false),
            4..=6 => {
                let start = int(&args[3])?;
                let bits = match args.get(5) {
                    Some(unit) => range_unit(unit)?,
                    None => false,
                };
                let end = match args.get(4) {
                    Some(e) => int(e)?,
                    None => len - 1,
                };
                let total = if bits { len * 8 } else { len };
                let range = clamp_range(total, start, end);
                let range = if bits {
                    range
                } else {
                    range.map(|(s, e)| (s * 8, e * 8 + 7))
                };
                (range, args.len() >= 5)
            }
            _ => return Err(CmdError::Syntax),
        };
        let Some((from, to)) = range else { return Ok(-1) };
        Ok(match find_bit(v, from, to, bit) {
            Some(p) => p as i64,
            // Looking for a clear bit without an end: the string is padded with zeros,
            // so the first bit past it is clear.
            None if !bit && !end_given => (to + 1) as i64,
            None => -1,
        })
    })??;
    ctx.out.int(pos);
    Ok(())
}

fn bitop(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    #[derive(PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let op = [("AND", Op::And), ("OR", Op::Or), ("XOR", Op::Xor), ("NOT", Op::Not)]
        .into_iter()
        .find(|(name, _)| is(&args[1], name))
        .map(|(_, op)| op)
        .ok_or(CmdError::Syntax)?;
    if op == Op::Not && args.len() != 4 {
        return Err(CmdError::Other(
            "BITOP NOT must be called with a single source key.".into(),
        ));
    }
    let now = ctx.now;
    let dest = &args[2];
    let sources = &args[3..];
    let slots: Vec<Slot> = args[2..].iter().map(|k| ctx.slot_of(k)).collect();
    let mut locked = ctx.store.lock_many(&slots);
    let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(sources.len());
    for (key, &s) in sources.iter().zip(&slots[1..]) {
        let Some(mut slot) = locked.slot(s) else {
            values.push(None);
            continue;
        };
        match slot.read(key, now) {
            None => values.push(None),
            Some(e) => values.push(Some(e.as_str().ok_or(CmdError::WrongType)?.to_vec())),
        }
    }
    let max_len = values.iter().map(|v| v.as_ref().map_or(0, Vec::len)).max().unwrap_or(0);
    let byte = |v: &Option<Vec<u8>>, i: usize| v.as_ref().and_then(|v| v.get(i)).copied().unwrap_or(0);
    let mut result = vec![0u8; max_len];
    for (i, out) in result.iter_mut().enumerate() {
        let mut acc = values.first().map_or(0, |v| byte(v, i));
        if op == Op::Not {
            acc = !acc;
        }
        for v in values.iter().skip(1) {
            match op {
                Op::And => acc &= byte(v, i),
                Op::Or => acc |= byte(v, i),
                Op::Xor => acc ^= byte(v, i),
                Op::Not => {}
            }
        }
        *out = acc;
    }
    if let Some(mut slot) = locked.slot(slots[0]) {
        if max_len > 0 {
            // Like SET: the destination loses any TTL.
            slot.insert(Entry::string(dest, &result, 0, 0), now);
        } else {
            slot.remove(dest, now);
        }
    }
    ctx.out.int(max_len as i64);
    Ok(())
}

/// How BITFIELD's SET and INCRBY treat a value that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

/// One BITFIELD operation on an integer of `bits` bits at bit `offset`.
#[derive(Debug, Clone, Copy)]
struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

/// A bitfield type: `i1`..`i64` or `u1`..`u63`.
fn field_type(arg: &[u8]) -> Result<(bool, u32), CmdError> {
    let bad = || CmdError::Other(BAD_TYPE.into());
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(bad()),
    };
    let bits = parse_i64(&arg[1..]).ok_or_else(bad)?;
    let max = if signed { 64 } else { 63 };
    if !(1..=max).contains(&bits) {
        return Err(bad());
    }
    Ok((signed, bits as u32))
}

/// Reads the unsigned integer of `bits` bits at bit `offset` (zeros past the end).
fn get_field(v: &[u8], offset: u64, bits: u32) -> u64 {
    (0..u64::from(bits)).fold(0u64, |acc, j| (acc << 1) | u64::from(get_bit(v, offset + j)))
}

/// Writes the low `bits` bits of `value` at bit `offset` (inside `v`).
fn set_field(v: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..u64::from(bits) {
        let on = value & (1u64 << (u64::from(bits) - 1 - j)) != 0;
        set_bit(v, offset + j, on);
    }
}

fn sign_extend(raw: u64, bits: u32) -> i64 {
    if bits < 64 && raw & (1u64 << (bits - 1)) != 0 {
        (raw | (u64::MAX << bits)) as i64
    } else {
        raw as i64
    }
}

/// `value + incr` in an unsigned field of `bits` (< 64) bits: the result, or `None`
/// when it overflows under FAIL. WRAP keeps the low bits, SAT clamps.
fn add_unsigned(value: u64, incr: i64, bits: u32, overflow: Overflow) -> Option<u64> {
    let max = (1u64 << bits) - 1;
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = value.wrapping_neg() as i64;
    let wrapped = value.wrapping_add(incr as u64) & max;
    let limit = if value > max || (incr > 0 && incr > max_incr) {
        max
    } else if incr < 0 && incr < min_incr {
        0
    } else {
        return Some(value.wrapping_add(incr as u64));
    };
    match overflow {
        Overflow::Wrap => Some(wrapped),
        Overflow::Sat => Some(limit),
        Overflow::Fail => None,
    }
}

/// `value + incr` in a signed field of `bits` bits, as [`add_unsigned`].
fn add_signed(value: i64, incr: i64, bits: u32, overflow: Overflow) -> Option<i64> {
    let max = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let limit = if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr) {
        max
    } else if value < min || (bits != 64 && incr < min_incr) || (value < 0 && incr < 0 && incr < min_incr) {
        min
    } else {
        return Some(value.wrapping_add(incr));
    };
    match overflow {
        Overflow::Wrap => {
            let sum = (value as u64).wrapping_add(incr as u64);
            let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            Some(sign_extend(sum & mask, bits))
        }
        Overflow::Sat => Some(limit),
        Overflow::Fail => None,
    }
}

/// Parses BITFIELD's operations, in Redis' order of checks.
fn parse_fields(ctx: &Ctx<'_>, args: &[Bytes]) -> Result<Vec<Field>, CmdError> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let rest = args.len() - j - 1;
        let sub = &args[j];
        let op = if is(sub, "GET") && rest >= 2 {
            FieldOp::Get
        } else if is(sub, "SET") && rest >= 3 {
            FieldOp::Set(0)
        } else if is(sub, "INCRBY") && rest >= 3 {
            FieldOp::IncrBy(0)
        } else if is(sub, "OVERFLOW") && rest >= 1 {
            let kind = &args[j + 1];
            overflow = [
                ("WRAP", Overflow::Wrap),
                ("SAT", Overflow::Sat),
                ("FAIL", Overflow::Fail),
            ]
            .into_iter()
            .find(|(name, _)| is(kind, name))
            .map(|(_, o)| o)
            .ok_or_else(|| CmdError::Other("Invalid OVERFLOW type specified".into()))?;
            j += 2;
            continue;
        } else {
            return Err(CmdError::Syntax);
        };
        let (signed, bits) = field_type(&args[j + 1])?;
        let offset = bit_offset(ctx, &args[j + 2], Some(bits))?;
        let op = match op {
            FieldOp::Get => FieldOp::Get,
            FieldOp::Set(_) => FieldOp::Set(int(&args[j + 3])?),
            FieldOp::IncrBy(_) => FieldOp::IncrBy(int(&args[j + 3])?),
        };
        fields.push(Field {
            op,
            signed,
            bits,
            offset,
            overflow,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    Ok(fields)
}

/// Runs one operation on `v` and returns its reply: the value read, the old value
/// (SET), the new value (INCRBY), or `None` for an overflow under FAIL.
fn run_field(v: &mut [u8], f: &Field) -> Option<i64> {
    let raw = get_field(v, f.offset, f.bits);
    let (reply, new) = match (f.op, f.signed) {
        (FieldOp::Get, true) => return Some(sign_extend(raw, f.bits)),
        (FieldOp::Get, false) => return Some(raw as i64),
        (FieldOp::Set(n), true) => (sign_extend(raw, f.bits), add_signed(n, 0, f.bits, f.overflow)? as u64),
        (FieldOp::Set(n), false) => (raw as i64, add_unsigned(n as u64, 0, f.bits, f.overflow)?),
        (FieldOp::IncrBy(n), true) => {
            let new = add_signed(sign_extend(raw, f.bits), n, f.bits, f.overflow)?;
            (new, new as u64)
        }
        (FieldOp::IncrBy(n), false) => {
            let new = add_unsigned(raw, n, f.bits, f.overflow)?;
            (new as i64, new)
        }
    };
    set_field(v, f.offset, f.bits, new);
    Some(reply)
}

fn reply_fields(ctx: &mut Ctx<'_>, replies: &[Option<i64>]) {
    ctx.out.array(replies.len());
    for r in replies {
        match r {
            Some(n) => ctx.out.int(*n),
            None => ctx.out.null(),
        }
    }
}

fn bitfield_generic(ctx: &mut Ctx<'_>, args: &[Bytes], read_only: bool) -> CmdResult {
    let fields = parse_fields(ctx, args)?;
    let key = &args[1];
    let highest_write = fields
        .iter()
        .filter(|f| f.op != FieldOp::Get)
        .map(|f| f.offset + u64::from(f.bits) - 1)
        .max();
    let replies = match highest_write {
        None => read_string(ctx, key, |v| {
            let mut v = v.map(<[u8]>::to_vec).unwrap_or_default();
            fields.iter().map(|f| run_field(&mut v, f)).collect::<Vec<_>>()
        })?,
        Some(_) if read_only => {
            return Err(CmdError::Other("BITFIELD_RO only supports the GET subcommand".into()));
        }
        Some(max_bit) => write_bits(ctx, key, max_bit, |v| {
            let mut changed = false;
            let replies = fields
                .iter()
                .map(|f| {
                    let before = get_field(v, f.offset, f.bits);
                    let reply = run_field(v, f);
                    changed |= get_field(v, f.offset, f.bits) != before;
                    reply
                })
                .collect();
            (replies, changed)
        })?,
    };
    reply_fields(ctx, &replies);
    Ok(())
}

fn bitfield(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, false)
}

fn bitfield_ro(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, true)
}

/// One run of LCS matches: byte ranges in the first and the second string.
struct Match {
    a: (usize, usize),
    b: (usize, usize),
}

impl Match {
    fn len(&self) -> usize {
        self.a.1 - self.a.0 + 1
    }
}

/// The longest common subsequence of `a` and `b`, and its matching runs from the end
/// of the strings backwards (Redis' order), by the classic dynamic-programming table.
fn longest_common_subsequence(a: &[u8], b: &[u8], table: &mut Vec<u32>) -> (Vec<u8>, Vec<Match>) {
    let w = b.len() + 1;
    table.clear();
    table.resize((a.len() + 1) * w, 0);
    let at = |i: usize, j: usize| i * w + j;
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[at(i, j)] = if a[i - 1] == b[j - 1] {
                table[at(i - 1, j - 1)] + 1
            } else {
                table[at(i - 1, j)].max(table[at(i, j - 1)])
            };
        }
    }
    let mut seq = Vec::with_capacity(table[at(a.len(), b.len())] as usize);
    let mut matches = Vec::new();
    let mut run: Option<Match> = None;
    let (mut i, mut j) = (a.len(), b.len());
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            seq.push(a[i - 1]);
            match &mut run {
                None => {
                    run = Some(Match {
                        a: (i - 1, i - 1),
                        b: (j - 1, j - 1),
                    })
                }
                Some(m) if m.a.0 == i && m.b.0 == j => {
                    m.a.0 -= 1;
                    m.b.0 -= 1;
                }
                Some(_) => emit = true,
            }
            if run.as_ref().is_some_and(|m| m.a.0 == 0 || m.b.0 == 0) {
                emit = true;
            }
            i -= 1;
            j -= 1;
        } else {
            if table[at(i - 1, j)] > table[at(i, j - 1)] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = run.is_some();
        }
        if emit {
            matches.extend(run.take());
        }
    }
    seq.reverse();
    (seq, matches)
}

fn lcs(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let now = ctx.now;
    let slots = [ctx.slot_of(&args[1]), ctx.slot_of(&args[2])];
    let (a, b) = {
        let mut locked = ctx.store.lock_many(&slots);
        let mut value = |key: &[u8], s: Slot| -> Result<Vec<u8>, CmdError> {
            let Some(mut slot) = locked.slot(s) else {
                return Ok(Vec::new());
            };
            match slot.read(key, now) {
                None => Ok(Vec::new()),
                Some(e) => e.as_str().map(<[u8]>::to_vec).ok_or(CmdError::WrongType),
            }
        };
        // Both keys are looked up (counted) before the type is checked, as in Redis.
        let (a, b) = (value(&args[1], slots[0]), value(&args[2], slots[1]));
        match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(CmdError::Other("The specified keys must contain string values".into())),
        }
    };
    let (mut len_only, mut idx, mut with_len, mut min_len) = (false, false, false, 0i64);
    let mut j = 3;
    while j < args.len() {
        let opt = &args[j];
        if is(opt, "IDX") {
            idx = true;
        } else if is(opt, "LEN") {
            len_only = true;
        } else if is(opt, "WITHMATCHLEN") {
            with_len = true;
        } else if is(opt, "MINMATCHLEN") && j + 1 < args.len() {
            min_len = int(&args[j + 1])?.max(0);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if len_only && idx {
        return Err(CmdError::Other(
            "If you want both the length and indexes, please just use IDX.".into(),
        ));
    }
    if a.len() >= u32::MAX as usize - 1 || b.len() >= u32::MAX as usize - 1 {
        return Err(CmdError::Other("String too long for LCS".into()));
    }
    let cells = (a.len() as u64 + 1) * (b.len() as u64 + 1);
    if cells.saturating_mul(4) > ctx.server.access.limits.max_bulk_len as u64 {
        return Err(CmdError::Other(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len".into(),
        ));
    }
    let mut table = Vec::new();
    if table.try_reserve_exact(cells as usize).is_err() {
        return Err(CmdError::Other(
            "Insufficient memory, failed allocating transient memory for LCS".into(),
        ));
    }
    let (seq, matches) = longest_common_subsequence(&a, &b, &mut table);
    if idx {
        let shown: Vec<&Match> = matches.iter().filter(|m| m.len() as i64 >= min_len).collect();
        ctx.out.map(2);
        ctx.out.bulk(b"matches");
        ctx.out.array(shown.len());
        for m in shown {
            ctx.out.array(if with_len { 3 } else { 2 });
            for (s, e) in [m.a, m.b] {
                ctx.out.array(2);
                ctx.out.int(s as i64);
                ctx.out.int(e as i64);
            }
            if with_len {
                ctx.out.int(m.len() as i64);
            }
        }
        ctx.out.bulk(b"len");
        ctx.out.int(seq.len() as i64);
    } else if len_only {
        ctx.out.int(seq.len() as i64);
    } else {
        ctx.out.bulk(&seq);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfield_overflow_follows_redis() {
        assert_eq!(add_unsigned(250, 10, 8, Overflow::Wrap), Some(4));
        assert_eq!(add_unsigned(250, 10, 8, Overflow::Sat), Some(255));
        assert_eq!(add_unsigned(250, 10, 8, Overflow::Fail), None);
        assert_eq!(add_unsigned(3, -5, 8, Overflow::Sat), Some(0));
        assert_eq!(add_unsigned(3, -5, 8, Overflow::Wrap), Some(254));
        assert_eq!(add_unsigned(-1i64 as u64, 0, 8, Overflow::Wrap), Some(255));
        assert_eq!(add_signed(127, 1, 8, Overflow::Wrap), Some(-128));
        assert_eq!(add_signed(-128, -1, 8, Overflow::Sat), Some(-128));
        assert_eq!(add_signed(i64::MAX, 1, 64, Overflow::Wrap), Some(i64::MIN));
        assert_eq!(add_signed(i64::MAX, 1, 64, Overflow::Sat), Some(i64::MAX));
        assert_eq!(add_signed(300, 0, 8, Overflow::Wrap), Some(44));
        assert_eq!(add_signed(5, -3, 4, Overflow::Fail), Some(2));
    }

    #[test]
    fn bit_counts_and_positions_respect_range_edges() {
        let v = [0b1010_1010u8, 0xff, 0x00];
        assert_eq!(count_bits(&v, 0, 23), 12);
        assert_eq!(count_bits(&v, 1, 6), 3);
        assert_eq!(count_bits(&v, 7, 9), 2);
        assert_eq!(find_bit(&v, 8, 23, false), Some(16));
        assert_eq!(find_bit(&v, 1, 1, true), None);
        assert_eq!(find_bit(&v, 0, 23, true), Some(0));
    }

    #[test]
    fn lcs_finds_redis_example() {
        let mut t = Vec::new();
        let (seq, m) = longest_common_subsequence(b"ohmytext", b"mynewtext", &mut t);
        assert_eq!(seq, b"mytext");
        let ranges: Vec<_> = m.iter().map(|m| (m.a, m.b)).collect();
        assert_eq!(ranges, vec![((4, 7), (5, 8)), ((2, 3), (0, 1))]);
    }
}
