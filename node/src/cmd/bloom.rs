//! Bloom filter commands, compatible with RedisBloom: BF.RESERVE BF.ADD BF.MADD
//! BF.INSERT BF.EXISTS BF.MEXISTS BF.INFO BF.CARD.
//!
//! Arguments, replies and error strings are RedisBloom's (src/rebloom.c), including
//! its quirks: some errors carry no `ERR` code ("Bad error rate", "Nonscaling filters
//! cannot expand"), BF.EXISTS answers 0 for a key of another type, BF.INSERT reads
//! only the first letters of its option names, and BF.RESERVE finds `NONSCALING` and
//! `EXPANSION` anywhere among its arguments. RESP3 clients get booleans and maps, as
//! from RedisBloom. A filter `BF.ADD` creates takes the node's `--bf-*` defaults.
//! The filter itself lives in store/bloom.rs. Not implemented: BF.SCANDUMP,
//! BF.LOADCHUNK, BF.DEBUG.

use bytes::Bytes;

use super::args::{is, parse_f64, parse_i64};
use super::flag::*;
use super::{CmdError, CmdResult, CommandSpec, Ctx};
use crate::store::bloom::{AddError, BloomError, CAPACITY_MAX, ERROR_RATE_CAP, EXPANSION_MAX};
use crate::store::{Bloom, BloomParams, Entry, Object};

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "bf.reserve",
        arity: -4,
        flags: WRITE | DENYOOM,
        keys: (1, 1, 1),
        group: "bf",
        summary: "Creates a new Bloom Filter.",
        handler: bf_reserve,
    },
    CommandSpec {
        name: "bf.add",
        arity: 3,
        flags: WRITE | DENYOOM,
        keys: (1, 1, 1),
        group: "bf",
        summary: "Adds an item to a Bloom Filter.",
        handler: bf_add,
    },
    CommandSpec {
        name: "bf.madd",
        arity: -3,
        flags: WRITE | DENYOOM,
        keys: (1, 1, 1),
        group: "bf",
        summary: "Adds one or more items to a Bloom Filter. A filter will be created if it does not exist.",
        handler: bf_madd,
    },
    CommandSpec {
        name: "bf.insert",
        arity: -4,
        flags: WRITE | DENYOOM,
        keys: (1, 1, 1),
        group: "bf",
        summary: "Adds one or more items to a Bloom Filter. A filter will be created if it does not exist.",
        handler: bf_insert,
    },
    CommandSpec {
        name: "bf.exists",
        arity: 3,
        flags: READONLY | FAST,
        keys: (1, 1, 1),
        group: "bf",
        summary: "Checks whether an item exists in a Bloom Filter.",
        handler: bf_exists,
    },
    CommandSpec {
        name: "bf.mexists",
        arity: -3,
        flags: READONLY | FAST,
        keys: (1, 1, 1),
        group: "bf",
        summary: "Checks whether one or more items exist in a Bloom Filter.",
        handler: bf_mexists,
    },
    CommandSpec {
        name: "bf.info",
        arity: -2,
        flags: READONLY | FAST,
        keys: (1, 1, 1),
        group: "bf",
        summary: "Returns information about a Bloom Filter.",
        handler: bf_info,
    },
    CommandSpec {
        name: "bf.card",
        arity: 2,
        flags: READONLY | FAST,
        keys: (1, 1, 1),
        group: "bf",
        summary: "Returns the cardinality of a Bloom filter.",
        handler: bf_card,
    },
];

/// An error line without the `ERR` code, as RedisBloom sends several.
fn bare(msg: &str) -> CmdError {
    CmdError::Coded(msg.to_string())
}

/// `ERR not found`: the filter does not exist.
fn not_found() -> CmdError {
    CmdError::Other("not found".into())
}

/// The most bytes a new sub-filter may take: the node's memory limit, if it has one.
fn byte_budget(ctx: &Ctx<'_>) -> usize {
    match ctx.store.mem.max() {
        0 => usize::MAX,
        max => max,
    }
}

fn creation_error(e: BloomError) -> CmdError {
    match e {
        BloomError::TooLarge => CmdError::Other("Insufficient memory to create filter".into()),
        BloomError::Invalid => CmdError::Other("could not create filter".into()),
    }
}

fn bloom_ref(e: &Entry) -> Result<&Bloom, CmdError> {
    match e.as_object() {
        Some(Object::Bloom(b)) => Ok(b),
        _ => Err(CmdError::WrongType),
    }
}

/// Runs `f` on the filter at `key` for a write. A missing key is created from
/// `create` (`ERR not found` without it); `BF.RESERVE` passes `must_be_new`, for which
/// an existing filter is `ERR item exists`.
fn write_bloom<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    create: Option<BloomParams>,
    must_be_new: bool,
    f: impl FnOnce(&mut Bloom, usize) -> R,
) -> Result<R, CmdError> {
    let (now, budget) = (ctx.now, byte_budget(ctx));
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    if let Some(e) = slot.get(key, now) {
        bloom_ref(e)?;
        if must_be_new {
            return Err(CmdError::Other("item exists".into()));
        }
        let r = slot.modify(key, now, |e| match e.as_object_mut() {
            Some(Object::Bloom(b)) => Ok(f(b, budget)),
            _ => Err(CmdError::WrongType),
        });
        return r.unwrap_or_else(|| Err(not_found()));
    }
    let params = create.ok_or_else(not_found)?;
    let mut b = Bloom::new(params, budget).map_err(creation_error)?;
    let r = f(&mut b, budget);
    slot.insert(Entry::object(key, Object::Bloom(b), 0, 0), now);
    Ok(r)
}

/// Runs `f` on the filter at `key` for a read, counting a keyspace hit or miss.
fn read_bloom<R>(ctx: &mut Ctx<'_>, key: &[u8], f: impl FnOnce(Result<&Bloom, CmdError>) -> R) -> R {
    let mut locked = ctx.store.lock(ctx.slot_of(key));
    let mut slot = locked.slot();
    match slot.read(key, ctx.now) {
        None => f(Err(not_found())),
        Some(e) => f(bloom_ref(e)),
    }
}

/// Adds `items` in order, stopping after the first one a full non-scaling filter
/// refuses (RedisBloom's loop); each outcome is a reply element.
fn add_items(b: &mut Bloom, items: &[Bytes], budget: usize) -> Vec<Result<bool, AddError>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let r = b.add(item, budget);
        let full = r == Err(AddError::Full);
        out.push(r);
        if full {
            break;
        }
    }
    out
}

fn add_error(e: AddError) -> CmdError {
    match e {
        AddError::Full => CmdError::Other("non scaling filter is full".into()),
        AddError::Grow(_) => CmdError::Other("problem inserting into filter".into()),
    }
}

/// A 0/1 answer: an integer in RESP2, a boolean in RESP3.
fn reply_bool(ctx: &mut Ctx<'_>, v: bool) {
    ctx.out.boolean(v);
}

fn reply_adds(ctx: &mut Ctx<'_>, results: Vec<Result<bool, AddError>>) {
    ctx.out.array(results.len());
    for r in results {
        match r {
            Ok(v) => reply_bool(ctx, v),
            Err(e) => ctx.out.error(&add_error(e).to_string()),
        }
    }
}

/// Index of the first argument equal to `word` (any case), counting the command
/// name and key as RedisBloom's `RMUtil_ArgIndex` does.
fn arg_index(args: &[Bytes], word: &str) -> Option<usize> {
    args.iter().position(|a| is(a, word))
}

fn in_error_range(e: f64) -> bool {
    e > 0.0 && e < 1.0
}

fn in_capacity_range(c: i64) -> bool {
    (1..=CAPACITY_MAX).contains(&c)
}

fn in_expansion_range(x: i64) -> bool {
    (0..=EXPANSION_MAX).contains(&x)
}

/// BF.RESERVE key error_rate capacity [EXPANSION expansion] [NONSCALING]
fn bf_reserve(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() > 7 {
        return Err(CmdError::WrongArity("bf.reserve".into()));
    }
    let defaults = ctx.server.bloom;
    let mut error_rate = parse_f64(&args[2]).ok_or_else(|| CmdError::Other("bad error rate".into()))?;
    if !in_error_range(error_rate) {
        return Err(CmdError::Other(
            "error rate must be in the range (0.000000, 1.000000)".into(),
        ));
    }
    error_rate = error_rate.min(ERROR_RATE_CAP);
    let capacity = parse_i64(&args[3]).ok_or_else(|| CmdError::Other("bad capacity".into()))?;
    if !in_capacity_range(capacity) {
        return Err(CmdError::Other(format!(
            "capacity must be in the range [1, {CAPACITY_MAX}]"
        )));
    }
    let mut nonscaling = defaults.nonscaling || defaults.expansion == 0 || arg_index(args, "NONSCALING").is_some();
    let mut expansion = i64::from(defaults.expansion);
    if let Some(at) = arg_index(args, "EXPANSION") {
        let value = args.get(at + 1).ok_or_else(|| CmdError::Other("no expansion".into()))?;
        expansion = parse_i64(value).ok_or_else(|| CmdError::Other("bad expansion".into()))?;
        if expansion == 0 {
            nonscaling = true;
        } else if nonscaling {
            return Err(bare("Nonscaling filters cannot expand"));
        }
        if !in_expansion_range(expansion) {
            return Err(CmdError::Other(format!(
                "expansion must be in the range [0, {EXPANSION_MAX}]"
            )));
        }
    }
    let params = BloomParams {
        error_rate,
        capacity: capacity as u64,
        expansion: expansion as u32,
        nonscaling,
    };
    write_bloom(ctx, &args[1], Some(params), true, |_, _| ())?;
    ctx.out.ok();
    Ok(())
}

fn bf_add(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let defaults = ctx.server.bloom;
    let results = write_bloom(ctx, &args[1], Some(defaults), false, |b, budget| {
        add_items(b, &args[2..3], budget)
    })?;
    match results.into_iter().next() {
        Some(Ok(v)) => reply_bool(ctx, v),
        Some(Err(e)) => return Err(add_error(e)),
        None => return Err(add_error(AddError::Grow(BloomError::Invalid))),
    }
    Ok(())
}

fn bf_madd(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let defaults = ctx.server.bloom;
    let items = &args[2..];
    let results = write_bloom(ctx, &args[1], Some(defaults), false, |b, budget| {
        add_items(b, items, budget)
    })?;
    reply_adds(ctx, results);
    Ok(())
}

/// BF.INSERT key [CAPACITY c] [ERROR e] [EXPANSION x] [NOCREATE] [NONSCALING] ITEMS item…
///
/// Options are told apart by their first letters, as RedisBloom does: `I…` starts
/// the items, `ER…` is the error rate, other `E…` the expansion, `C…` the capacity,
/// `N?C…` NOCREATE and other `N…` NONSCALING.
fn bf_insert(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let arity = || CmdError::WrongArity("bf.insert".into());
    let mut params = ctx.server.bloom;
    let mut create = true;
    let mut items_at = None;
    let mut pos = 2;
    while pos < args.len() && items_at.is_none() {
        let arg = &args[pos];
        let lower = |i: usize| arg.get(i).map(u8::to_ascii_lowercase);
        match lower(0) {
            Some(b'i') => {
                pos += 1;
                items_at = Some(pos);
            }
            Some(b'e') => {
                let value = args.get(pos + 1).ok_or_else(arity)?;
                if lower(1) == Some(b'r') {
                    let e = parse_f64(value)
                        .filter(|&e| in_error_range(e))
                        .ok_or_else(|| bare("Bad error rate"))?;
                    params.error_rate = e.min(ERROR_RATE_CAP);
                } else {
                    let x = parse_i64(value)
                        .filter(|&x| in_expansion_range(x))
                        .ok_or_else(|| bare("Bad expansion"))?;
                    params.expansion = x as u32;
                }
                pos += 2;
            }
            Some(b'c') => {
                let value = args.get(pos + 1).ok_or_else(arity)?;
                let c = parse_i64(value)
                    .filter(|&c| in_capacity_range(c))
                    .ok_or_else(|| bare("Bad capacity"))?;
                params.capacity = c as u64;
                pos += 2;
            }
            Some(b'n') => {
                if lower(2) == Some(b'c') {
                    create = false;
                } else {
                    params.nonscaling = true;
                }
                pos += 1;
            }
            _ => return Err(bare("Unknown argument received")),
        }
    }
    if params.expansion == 0 {
        params.nonscaling = true;
    }
    let items = match items_at {
        Some(at) if at < args.len() => &args[at..],
        _ => return Err(arity()),
    };
    let create = create.then_some(params);
    let results = write_bloom(ctx, &args[1], create, false, |b, budget| add_items(b, items, budget))?;
    reply_adds(ctx, results);
    Ok(())
}

/// BF.EXISTS and BF.MEXISTS: a missing key, or one of another type, holds nothing.
fn check_items(ctx: &mut Ctx<'_>, key: &[u8], items: &[Bytes], multi: bool) {
    let found: Vec<bool> = read_bloom(ctx, key, |b| {
        items.iter().map(|i| b.as_ref().is_ok_and(|b| b.contains(i))).collect()
    });
    if multi {
        ctx.out.array(found.len());
    }
    for f in found {
        reply_bool(ctx, f);
    }
}

fn bf_exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    check_items(ctx, &args[1], &args[2..], false);
    Ok(())
}

fn bf_mexists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    check_items(ctx, &args[1], &args[2..], true);
    Ok(())
}

/// One BF.INFO field: its name and value (`None`: the expansion of a non-scaling
/// filter, a null).
type Field = (&'static str, Option<i64>);

fn info_fields(b: &Bloom) -> [Field; 5] {
    [
        ("Capacity", Some(b.capacity() as i64)),
        ("Size", Some(b.mem_size() as i64)),
        ("Number of filters", Some(b.num_filters() as i64)),
        ("Number of items inserted", Some(b.len() as i64)),
        ("Expansion rate", b.expansion().map(i64::from)),
    ]
}

fn bf_info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::WrongArity("bf.info".into()));
    }
    let fields = read_bloom(ctx, &args[1], |b| b.map(info_fields))?;
    let put = |ctx: &mut Ctx<'_>, v: Option<i64>| match v {
        Some(n) => ctx.out.int(n),
        None => ctx.out.null(),
    };
    let Some(which) = args.get(2) else {
        ctx.out.map(fields.len());
        for (name, v) in fields {
            ctx.out.simple(name);
            put(ctx, v);
        }
        return Ok(());
    };
    const NAMES: [&str; 5] = ["capacity", "size", "filters", "items", "expansion"];
    let i = NAMES
        .iter()
        .position(|n| is(which, n))
        .ok_or_else(|| bare("Invalid information value"))?;
    let (name, v) = fields[i];
    // One value: a map of one pair in RESP3, an array of the value alone in RESP2.
    if ctx.out.resp3 {
        ctx.out.map(1);
        ctx.out.simple(name);
    } else {
        ctx.out.array(1);
    }
    put(ctx, v);
    Ok(())
}

fn bf_card(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let n = read_bloom(ctx, &args[1], |b| match b {
        Ok(b) => Ok(b.len() as i64),
        Err(CmdError::WrongType) => Err(CmdError::WrongType),
        Err(_) => Ok(0),
    })?;
    ctx.out.int(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_index_counts_from_the_command_name() {
        let args: Vec<Bytes> = ["BF.RESERVE", "k", "0.01", "100", "nonscaling"]
            .iter()
            .map(|s| Bytes::from(s.to_string()))
            .collect();
        assert_eq!(arg_index(&args, "NONSCALING"), Some(4));
        assert_eq!(arg_index(&args, "EXPANSION"), None);
    }
}
