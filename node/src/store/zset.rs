//! The sorted-set type: member → score, ordered by (score, member), with its own byte
//! count so that memory accounting stays exact without walking the value. Also the
//! text form of a score (Redis 7.0's "%.17g", which reads back to the same double).
//!
//! # Layout and costs
//!
//! Entries live in order in a list of *chunks*, each a packed run of at most
//! [`CHUNK_MAX`] entries: the scores in one vector, the member bytes back to back in
//! another, and each member's end offset in a third (12 bytes of overhead per entry,
//! close to Redis' listpack). A Fenwick tree over the chunk lengths turns a rank into a
//! chunk and back in O(log c) (c = number of chunks ≈ n / 64). Above [`SMALL`] members
//! a hash index member → score is kept as well (it repeats the member bytes), so a
//! member is found in O(1); at or below it the members are scanned, as Redis scans a
//! small listpack.
//!
//! | operation | cost |
//! |---|---|
//! | `score` (ZSCORE) | O(1) (O(n) scan when n ≤ 128) |
//! | `insert`, `remove` (ZADD, ZREM, ZINCRBY) | O(log n + chunk) where chunk ≤ 128 entries |
//! | `rank` (ZRANK) | O(log n + chunk) |
//! | `score_span`, `lex_span` (a range by score or lex, as ranks) | O(log n) (lex: O(n) when n ≤ 128, see below) |
//! | `iter`, `iter_rev` from a rank | O(log c) to start, then O(1) per entry |
//! | `remove_ranks` (ZREMRANGEBY*, ZPOP*) | O(k + c), k removed |
//!
//! Scores are never NaN; -0 is stored as 0 (what Redis' listpack encoding does).

use std::cmp::Ordering;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

/// Most entries in one chunk; a fuller chunk splits in two.
pub const CHUNK_MAX: usize = 128;
/// A chunk whose member bytes pass this splits too (when it has two entries or more),
/// which keeps offsets within u32 and insertions cheap.
const CHUNK_BYTES: usize = 32 * 1024;
/// Sets with at most this many members have no member index (Redis'
/// zset-max-listpack-entries).
pub const SMALL: usize = 128;

/// Fixed charge for an empty sorted set (the struct and its vector headers).
pub const ZSET_BASE: usize = 96;
/// Per-member charge in the ordered chunks beyond the member bytes: the score, the end
/// offset and a share of the chunk headers.
pub const ZSET_ENTRY: usize = 16;
/// Per-member charge of the member index (when the set has more than [`SMALL`]
/// members) beyond a second copy of the member bytes: the boxed member, its score and
/// a table slot.
pub const ZSET_INDEX_ENTRY: usize = 40;

/// One packed run of entries in (score, member) order.
#[derive(Debug, Clone, Default)]
struct Chunk {
    scores: Vec<f64>,
    /// `ends[i]`: end offset of member `i` in `data`.
    ends: Vec<u32>,
    data: Vec<u8>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.scores.len()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }

    fn member(&self, i: usize) -> &[u8] {
        &self.data[self.start(i)..self.ends[i] as usize]
    }

    fn entry(&self, i: usize) -> (&[u8], f64) {
        (self.member(i), self.scores[i])
    }

    fn last(&self) -> Option<(&[u8], f64)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    fn insert(&mut self, i: usize, member: &[u8], score: f64) {
        let at = self.start(i);
        self.data.splice(at..at, member.iter().copied());
        let n = member.len() as u32;
        for e in &mut self.ends[i..] {
            *e += n;
        }
        self.ends.insert(i, at as u32 + n);
        self.scores.insert(i, score);
    }

    /// Removes entries `a..b`.
    fn drain(&mut self, a: usize, b: usize) {
        let (from, to) = (self.start(a), self.start(b));
        self.data.drain(from..to);
        let n = (to - from) as u32;
        self.ends.drain(a..b);
        for e in &mut self.ends[a..] {
            *e -= n;
        }
        self.scores.drain(a..b);
        if self.data.capacity() > 2 * self.data.len() + 256 {
            self.data.shrink_to(self.data.len() + self.data.len() / 4);
        }
        if self.scores.capacity() > 2 * self.scores.len() + 8 {
            self.scores.shrink_to(self.scores.len() + 4);
            self.ends.shrink_to(self.ends.len() + 4);
        }
    }

    fn split_off(&mut self, at: usize) -> Chunk {
        let base = self.start(at);
        let data = self.data.split_off(base);
        let mut ends = self.ends.split_off(at);
        for e in &mut ends {
            *e -= base as u32;
        }
        Chunk {
            scores: self.scores.split_off(at),
            ends,
            data,
        }
    }

    fn append(&mut self, other: Chunk) {
        let base = self.data.len() as u32;
        self.data.extend_from_slice(&other.data);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        self.scores.extend_from_slice(&other.scores);
    }

    /// Number of entries (from the start) for which `below` holds, `below` being true
    /// on a prefix.
    fn partition_point(&self, below: impl Fn((&[u8], f64)) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if below(self.entry(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn too_big(&self) -> bool {
        self.len() > CHUNK_MAX || (self.len() > 1 && self.data.len() > CHUNK_BYTES)
    }
}

/// Total order of entries: by score, then by member bytes.
fn cmp_entry(a: (&[u8], f64), b: (&[u8], f64)) -> Ordering {
    a.1.partial_cmp(&b.1)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.0.cmp(b.0))
}

/// A score bound of a range: the value, and whether it is excluded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBound {
    pub value: f64,
    pub exclusive: bool,
}

/// A score range `min..max` (ZRANGEBYSCORE's arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRange {
    pub min: ScoreBound,
    pub max: ScoreBound,
}

impl ScoreRange {
    fn gte_min(&self, s: f64) -> bool {
        if self.min.exclusive {
            s > self.min.value
        } else {
            s >= self.min.value
        }
    }

    fn lte_max(&self, s: f64) -> bool {
        if self.max.exclusive {
            s < self.max.value
        } else {
            s <= self.max.value
        }
    }
}

/// One end of a lex range: `-`, `+`, `[member` or `(member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexBound {
    NegInf,
    PosInf,
    Inclusive(Vec<u8>),
    Exclusive(Vec<u8>),
}

/// A lex range `min..max` (ZRANGEBYLEX's arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

impl LexRange {
    pub fn gte_min(&self, m: &[u8]) -> bool {
        match &self.min {
            LexBound::NegInf => true,
            LexBound::PosInf => false,
            LexBound::Inclusive(b) => m >= &b[..],
            LexBound::Exclusive(b) => m > &b[..],
        }
    }

    pub fn lte_max(&self, m: &[u8]) -> bool {
        match &self.max {
            LexBound::NegInf => false,
            LexBound::PosInf => true,
            LexBound::Inclusive(b) => m <= &b[..],
            LexBound::Exclusive(b) => m < &b[..],
        }
    }

    /// Whether the range can hold anything at all (Redis' `zslIsInLexRange` test on
    /// the bounds alone).
    fn is_valid(&self) -> bool {
        use LexBound::*;
        match (&self.min, &self.max) {
            (PosInf, _) | (_, NegInf) => false,
            (NegInf, _) | (_, PosInf) => true,
            (Inclusive(a), Inclusive(b)) => a <= b,
            (Inclusive(a) | Exclusive(a), Inclusive(b) | Exclusive(b)) => a < b,
        }
    }
}

/// A Redis sorted set. See the module documentation for the layout and costs.
#[derive(Debug, Clone, Default)]
pub struct ZSet {
    chunks: Vec<Chunk>,
    /// Fenwick tree over `chunks[i].len()`.
    tree: Vec<usize>,
    index: Option<Box<Index>>,
    len: usize,
    bytes: usize,
}

/// Member → score, for sets above [`SMALL`] members.
#[derive(Debug, Clone, Default)]
struct Index {
    table: HashTable<(Box<[u8]>, f64)>,
    hasher: DefaultHashBuilder,
}

impl Index {
    fn get(&self, member: &[u8]) -> Option<f64> {
        self.table
            .find(self.hasher.hash_one(member), |(m, _)| &**m == member)
            .map(|(_, s)| *s)
    }

    fn set(&mut self, member: &[u8], score: f64) {
        let h = self.hasher.hash_one(member);
        match self.table.find_mut(h, |(m, _)| &**m == member) {
            Some(e) => e.1 = score,
            None => {
                let hasher = &self.hasher;
                self.table
                    .insert_unique(h, (member.into(), score), |(m, _)| hasher.hash_one(&**m));
            }
        }
    }

    fn remove(&mut self, member: &[u8]) {
        if let Ok(e) = self
            .table
            .find_entry(self.hasher.hash_one(member), |(m, _)| &**m == member)
        {
            e.remove();
        }
        let len = self.table.len();
        if self.table.capacity() > 64 && len < self.table.capacity() / 4 {
            let hasher = &self.hasher;
            self.table.shrink_to(len * 2, |(m, _)| hasher.hash_one(&**m));
        }
    }
}

/// Where an entry is: chunk and position in it.
type Pos = (usize, usize);

impl ZSet {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The name Redis 7.0 would give this set's encoding under default settings
    /// (`OBJECT ENCODING`): `listpack` up to [`SMALL`] members of at most 64 bytes,
    /// `skiplist` beyond. (Redis keeps a set that once grew past the limits a skiplist
    /// after it shrinks; this name follows the current contents.)
    pub fn encoding(&self) -> &'static str {
        if self.len > SMALL || self.iter(0).any(|(m, _)| m.len() > 64) {
            "skiplist"
        } else {
            "listpack"
        }
    }

    /// Bytes charged for the set: [`ZSET_BASE`], plus member length + [`ZSET_ENTRY`]
    /// per member, plus member length + [`ZSET_INDEX_ENTRY`] per member when the set
    /// has more than [`SMALL`] members.
    pub fn mem_size(&self) -> usize {
        self.bytes + ZSET_BASE
    }

    fn entry_charge(&self, member_len: usize) -> usize {
        member_len + ZSET_ENTRY
    }

    // --- Fenwick tree over chunk lengths -------------------------------------------

    fn rebuild_tree(&mut self) {
        let n = self.chunks.len();
        self.tree = self.chunks.iter().map(Chunk::len).collect();
        for i in 0..n {
            let j = i | (i + 1);
            if j < n {
                self.tree[j] += self.tree[i];
            }
        }
    }

    fn tree_add(&mut self, mut i: usize, delta: isize) {
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i |= i + 1;
        }
    }

    /// Entries in chunks `0..ci`.
    fn before_chunk(&self, ci: usize) -> usize {
        let mut sum = 0;
        let mut i = ci;
        while i > 0 {
            sum += self.tree[i - 1];
            i &= i - 1;
        }
        sum
    }

    /// Chunk and position of the entry at `rank` (< len).
    fn select(&self, rank: usize) -> Pos {
        let n = self.tree.len();
        let mut pos = 0;
        let mut rem = rank;
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next - 1] <= rem {
                rem -= self.tree[next - 1];
                pos = next;
            }
            step >>= 1;
        }
        (pos, rem)
    }

    fn rank_of(&self, (ci, i): Pos) -> usize {
        self.before_chunk(ci) + i
    }

    // --- lookups ---------------------------------------------------------------------

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match &self.index {
            Some(ix) => ix.get(member),
            None => self.scan(member).map(|(ci, i)| self.chunks[ci].scores[i]),
        }
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.score(member).is_some()
    }

    fn scan(&self, member: &[u8]) -> Option<Pos> {
        for (ci, c) in self.chunks.iter().enumerate() {
            if let Some(i) = (0..c.len()).find(|&i| c.member(i) == member) {
                return Some((ci, i));
            }
        }
        None
    }

    /// Position of the first entry not below `(member, score)` (the end position of
    /// the last chunk when all are below).
    fn seek(&self, member: &[u8], score: f64) -> Pos {
        let key = (member, score);
        let below = |e: (&[u8], f64)| cmp_entry(e, key) == Ordering::Less;
        let ci = self
            .chunks
            .partition_point(|c| c.last().is_some_and(below))
            .min(self.chunks.len().saturating_sub(1));
        match self.chunks.get(ci) {
            None => (0, 0),
            Some(c) => (ci, c.partition_point(below)),
        }
    }

    /// Position of `member` (whose score is `score`).
    fn find(&self, member: &[u8], score: f64) -> Option<Pos> {
        let (ci, i) = self.seek(member, score);
        let c = self.chunks.get(ci)?;
        (i < c.len() && c.member(i) == member).then_some((ci, i))
    }

    fn locate(&self, member: &[u8]) -> Option<Pos> {
        match &self.index {
            Some(ix) => {
                let score = ix.get(member)?;
                self.find(member, score)
            }
            None => self.scan(member),
        }
    }

    /// 0-based rank of `member` in (score, member) order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        self.locate(member).map(|p| self.rank_of(p))
    }

    /// Member and score at `rank`.
    pub fn at(&self, rank: usize) -> Option<(&[u8], f64)> {
        if rank >= self.len {
            return None;
        }
        let (ci, i) = self.select(rank);
        Some(self.chunks[ci].entry(i))
    }

    // --- changes ---------------------------------------------------------------------

    /// Sets `member`'s score; returns its previous score (`None` when it is new).
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        let score = if score == 0.0 { 0.0 } else { score };
        let old = self.remove_inner(member, false);
        self.insert_new(member, score, old.is_none());
        old
    }

    fn insert_new(&mut self, member: &[u8], score: f64, new: bool) {
        let (ci, i) = self.seek(member, score);
        if self.chunks.is_empty() {
            self.chunks.push(Chunk::default());
            self.rebuild_tree();
        }
        self.chunks[ci].insert(i, member, score);
        self.len += 1;
        if new {
            self.bytes += self.entry_charge(member.len());
        }
        if self.chunks[ci].too_big() {
            let half = self.chunks[ci].len() / 2;
            let tail = self.chunks[ci].split_off(half);
            self.chunks.insert(ci + 1, tail);
            self.rebuild_tree();
        } else {
            self.tree_add(ci, 1);
        }
        match &mut self.index {
            Some(ix) => {
                if new {
                    self.bytes += member.len() + ZSET_INDEX_ENTRY;
                }
                ix.set(member, score);
            }
            None if self.len > SMALL => self.build_index(),
            None => {}
        }
    }

    fn build_index(&mut self) {
        let mut ix = Index::default();
        let mut charge = 0;
        for (m, s) in self.iter(0) {
            ix.set(m, s);
            charge += m.len() + ZSET_INDEX_ENTRY;
        }
        self.bytes += charge;
        self.index = Some(Box::new(ix));
    }

    fn drop_index_if_small(&mut self) {
        if self.len <= SMALL {
            if let Some(ix) = self.index.take() {
                for (m, _) in ix.table.iter() {
                    self.bytes -= m.len() + ZSET_INDEX_ENTRY;
                }
            }
        }
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        self.remove_inner(member, true)
    }

    /// Removes `member` from the ordered chunks; `fully` also takes it out of the index
    /// and its charge (an update re-inserts it right away and keeps both).
    fn remove_inner(&mut self, member: &[u8], fully: bool) -> Option<f64> {
        let (ci, i) = self.locate(member)?;
        let score = self.chunks[ci].scores[i];
        self.chunks[ci].drain(i, i + 1);
        self.len -= 1;
        self.after_chunk_shrank(ci, 1);
        if fully {
            self.bytes -= self.entry_charge(member.len());
            if let Some(ix) = &mut self.index {
                ix.remove(member);
                self.bytes -= member.len() + ZSET_INDEX_ENTRY;
            }
            self.drop_index_if_small();
        }
        Some(score)
    }

    /// Drops an emptied chunk or merges a small one with a neighbour, keeping the
    /// Fenwick tree right; `removed` entries left chunk `ci`.
    fn after_chunk_shrank(&mut self, ci: usize, removed: usize) {
        let n = self.chunks[ci].len();
        if n == 0 {
            self.chunks.remove(ci);
            self.rebuild_tree();
            return;
        }
        if n < CHUNK_MAX / 4 {
            let fits = |o: &Chunk| {
                n + o.len() <= CHUNK_MAX * 3 / 4 && o.data.len() + self.chunks[ci].data.len() <= CHUNK_BYTES
            };
            if self.chunks.get(ci + 1).is_some_and(fits) {
                let next = self.chunks.remove(ci + 1);
                self.chunks[ci].append(next);
                self.rebuild_tree();
                return;
            }
            if ci > 0 && fits(&self.chunks[ci - 1]) {
                let this = self.chunks.remove(ci);
                self.chunks[ci - 1].append(this);
                self.rebuild_tree();
                return;
            }
        }
        self.tree_add(ci, -(removed as isize));
    }

    /// Removes the entries with ranks `start..end`; returns how many went.
    pub fn remove_ranks(&mut self, start: usize, end: usize) -> usize {
        let end = end.min(self.len);
        if start >= end {
            return 0;
        }
        let (mut ci, mut i) = self.select(start);
        let mut left = end - start;
        while left > 0 && ci < self.chunks.len() {
            let take = (self.chunks[ci].len() - i).min(left);
            let mut freed = 0;
            for k in i..i + take {
                let m = self.chunks[ci].member(k);
                freed += self.entry_charge(m.len());
                if let Some(ix) = &mut self.index {
                    ix.remove(m);
                    freed += m.len() + ZSET_INDEX_ENTRY;
                }
            }
            self.bytes -= freed;
            self.chunks[ci].drain(i, i + take);
            left -= take;
            if self.chunks[ci].len() == 0 {
                self.chunks.remove(ci);
            } else {
                ci += 1;
            }
            i = 0;
        }
        self.len -= end - start;
        self.rebuild_tree();
        if let Some(ci) = self.chunks.iter().position(|c| c.len() < CHUNK_MAX / 4) {
            self.after_chunk_shrank(ci, 0);
        }
        self.drop_index_if_small();
        end - start
    }

    // --- ranges ----------------------------------------------------------------------

    /// Number of entries (from the start) for which `below` holds, `below` being true
    /// on a prefix of the order.
    fn partition(&self, below: impl Fn((&[u8], f64)) -> bool) -> usize {
        let ci = self.chunks.partition_point(|c| c.last().is_some_and(&below));
        match self.chunks.get(ci) {
            None => self.len,
            Some(c) => self.before_chunk(ci) + c.partition_point(below),
        }
    }

    /// Ranks `lo..hi` of the entries whose score is in `range`.
    pub fn score_span(&self, range: &ScoreRange) -> (usize, usize) {
        let lo = self.partition(|(_, s)| !range.gte_min(s));
        let hi = self.partition(|(_, s)| range.lte_max(s));
        (lo, hi.max(lo))
    }

    /// Ranks `lo..hi` of the entries in the lex `range`, read in the given direction.
    ///
    /// Lex ranges assume all scores are equal. When they are not, a set of at most
    /// [`SMALL`] members answers as Redis' listpack does (scan from the start, or from
    /// the end when `reverse`, for the first member in range, then take members while
    /// they stay in range); a larger one binary-searches the member order.
    pub fn lex_span(&self, range: &LexRange, reverse: bool) -> (usize, usize) {
        if self.len == 0 || !range.is_valid() {
            return (0, 0);
        }
        if self.len > SMALL {
            let lo = self.partition(|(m, _)| !range.gte_min(m));
            let hi = self.partition(|(m, _)| range.lte_max(m));
            return (lo, hi.max(lo));
        }
        let (first, last) = match (self.at(0), self.at(self.len - 1)) {
            (Some(f), Some(l)) => (f.0, l.0),
            _ => return (0, 0),
        };
        if !range.gte_min(last) || !range.lte_max(first) {
            return (0, 0);
        }
        if !reverse {
            let Some(lo) = self.iter(0).position(|(m, _)| range.gte_min(m)) else {
                return (0, 0);
            };
            let n = self.iter(lo).take_while(|(m, _)| range.lte_max(m)).count();
            (lo, lo + n)
        } else {
            let Some(back) = self.iter_rev(self.len).position(|(m, _)| range.lte_max(m)) else {
                return (0, 0);
            };
            let hi = self.len - back;
            let n = self.iter_rev(hi).take_while(|(m, _)| range.gte_min(m)).count();
            (hi - n, hi)
        }
    }

    /// Entries from rank `start` on, in order.
    pub fn iter(&self, start: usize) -> Iter<'_> {
        let (ci, i) = if start >= self.len {
            (self.chunks.len(), 0)
        } else {
            self.select(start)
        };
        Iter { z: self, ci, i }
    }

    /// Entries before rank `end`, from `end - 1` down to rank 0.
    pub fn iter_rev(&self, end: usize) -> IterRev<'_> {
        let end = end.min(self.len);
        let (ci, i) = if end == self.len {
            (self.chunks.len(), 0)
        } else {
            self.select(end)
        };
        IterRev { z: self, ci, i }
    }
}

/// Forward iterator over (member, score).
pub struct Iter<'a> {
    z: &'a ZSet,
    ci: usize,
    i: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let c = self.z.chunks.get(self.ci)?;
            if self.i < c.len() {
                self.i += 1;
                return Some(c.entry(self.i - 1));
            }
            self.ci += 1;
            self.i = 0;
        }
    }
}

/// Backward iterator over (member, score); (ci, i) is one past the next entry.
pub struct IterRev<'a> {
    z: &'a ZSet,
    ci: usize,
    i: usize,
}

impl<'a> Iterator for IterRev<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        while self.i == 0 {
            if self.ci == 0 {
                return None;
            }
            self.ci -= 1;
            self.i = self.z.chunks[self.ci].len();
        }
        self.i -= 1;
        Some(self.z.chunks[self.ci].entry(self.i))
    }
}

/// A score as Redis 7.0 writes it ("%.17g"; `inf`, `-inf`). The text reads back
/// (with [`parse_score`]) to the same double.
pub fn format_score(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let mut buf = [0u8; 64];
    // SAFETY: the buffer is 64 bytes and snprintf writes at most that many, NUL
    // included; the format string is NUL-terminated and takes one double.
    let n = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), c"%.17g".as_ptr(), v) };
    let n = usize::try_from(n).unwrap_or(0).min(buf.len() - 1);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// C `strtod` over `s` up to its first NUL byte: the value, how many bytes it read and
/// whether it set ERANGE.
fn strtod(s: &[u8]) -> (f64, usize, bool) {
    let text = s.split(|&b| b == 0).next().unwrap_or_default();
    let mut c = Vec::with_capacity(text.len() + 1);
    c.extend_from_slice(text);
    c.push(0);
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // SAFETY: `c` is NUL-terminated and outlives the call; strtod only reads it and
    // stores a pointer into it in `end`; errno is this thread's.
    unsafe {
        *libc::__errno_location() = 0;
        let v = libc::strtod(c.as_ptr().cast(), &mut end);
        let erange = *libc::__errno_location() == libc::ERANGE;
        let read = (end as usize).saturating_sub(c.as_ptr() as usize);
        (v, read, erange)
    }
}

/// A score argument by Redis' `getDoubleFromObject`: all of `s` is a C double, no
/// leading space, no overflow, no underflow to zero, not NaN.
pub fn parse_score(s: &[u8]) -> Option<f64> {
    if s.is_empty() || matches!(s[0], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        return None;
    }
    let (v, read, erange) = strtod(s);
    if read != s.len() || (erange && (v.is_infinite() || v == 0.0)) || v.is_nan() {
        return None;
    }
    Some(v)
}

/// One end of a score range by Redis' `zslParseRange`: an optional `(`, then a C
/// double that runs to the end of the text (up to a NUL byte); not NaN.
fn parse_bound(s: &[u8]) -> Option<ScoreBound> {
    let (exclusive, rest) = match s.first() {
        Some(b'(') => (true, &s[1..]),
        _ => (false, s),
    };
    let text = rest.split(|&b| b == 0).next().unwrap_or_default();
    let (value, read, _) = strtod(text);
    (read == text.len() && !value.is_nan()).then_some(ScoreBound { value, exclusive })
}

/// A score range (`min max` of ZRANGEBYSCORE); `None` is "min or max is not a float".
pub fn parse_score_range(min: &[u8], max: &[u8]) -> Option<ScoreRange> {
    Some(ScoreRange {
        min: parse_bound(min)?,
        max: parse_bound(max)?,
    })
}

fn parse_lex_bound(s: &[u8]) -> Option<LexBound> {
    let plain = s.len() == 1 || s.get(1) == Some(&0);
    match s.first()? {
        b'+' if plain => Some(LexBound::PosInf),
        b'-' if plain => Some(LexBound::NegInf),
        b'(' => Some(LexBound::Exclusive(s[1..].to_vec())),
        b'[' => Some(LexBound::Inclusive(s[1..].to_vec())),
        _ => None,
    }
}

/// A lex range (`min max` of ZRANGEBYLEX); `None` is "min or max not valid string
/// range item".
pub fn parse_lex_range(min: &[u8], max: &[u8]) -> Option<LexRange> {
    Some(LexRange {
        min: parse_lex_bound(min)?,
        max: parse_lex_bound(max)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    type Model = HashMap<Vec<u8>, f64>;

    fn sorted(model: &Model) -> Vec<(Vec<u8>, f64)> {
        let mut v: Vec<(Vec<u8>, f64)> = model.iter().map(|(m, s)| (m.clone(), *s)).collect();
        v.sort_by(|a, b| cmp_entry((&a.0, a.1), (&b.0, b.1)));
        v
    }

    fn charge(model: &Model) -> usize {
        let entries: usize = model.keys().map(|m| m.len() + ZSET_ENTRY).sum();
        let index: usize = if model.len() > SMALL {
            model.keys().map(|m| m.len() + ZSET_INDEX_ENTRY).sum()
        } else {
            0
        };
        ZSET_BASE + entries + index
    }

    fn check(z: &ZSet, model: &Model) -> Result<(), TestCaseError> {
        let want = sorted(model);
        prop_assert_eq!(z.len(), want.len());
        prop_assert_eq!(z.mem_size(), charge(model));
        let got: Vec<(Vec<u8>, f64)> = z.iter(0).map(|(m, s)| (m.to_vec(), s)).collect();
        prop_assert_eq!(&got, &want);
        let mut back: Vec<(Vec<u8>, f64)> = z.iter_rev(z.len()).map(|(m, s)| (m.to_vec(), s)).collect();
        back.reverse();
        prop_assert_eq!(&back, &want);
        for (r, (m, s)) in want.iter().enumerate() {
            prop_assert_eq!(z.score(m), Some(*s));
            prop_assert_eq!(z.rank(m), Some(r));
            prop_assert_eq!(z.at(r).map(|(m, s)| (m.to_vec(), s)), Some((m.clone(), *s)));
        }
        Ok(())
    }

    fn member(n: u16) -> Vec<u8> {
        // Varied lengths, so byte counts and chunk splits by size are exercised.
        let mut m = format!("m{n}").into_bytes();
        m.resize(m.len() + usize::from(n % 7) * 3, b'x');
        m
    }

    proptest! {
        /// Inserts, removes and rank-range removals agree with a plain map, in order,
        /// rank and byte charge, on both sides of the index threshold.
        #[test]
        fn zset_matches_a_model(ops in proptest::collection::vec((0u8..10, 0u16..400, -5i8..5), 0..700)) {
            let mut z = ZSet::default();
            let mut model = Model::new();
            for (op, n, s) in ops {
                let m = member(n);
                let score = f64::from(s) / 2.0;
                match op {
                    0..=6 => prop_assert_eq!(z.insert(&m, score), model.insert(m, score)),
                    7 | 8 => prop_assert_eq!(z.remove(&m), model.remove(&m)),
                    _ => {
                        let want = sorted(&model);
                        let start = usize::from(n) % (want.len() + 1);
                        let end = start + usize::from(s.unsigned_abs()) * 7;
                        let removed = z.remove_ranks(start, end);
                        prop_assert_eq!(removed, end.min(want.len()) - start);
                        for (m, _) in want.iter().skip(start).take(removed) {
                            model.remove(m);
                        }
                    }
                }
                prop_assert_eq!(z.len(), model.len());
                prop_assert_eq!(z.mem_size(), charge(&model));
            }
            check(&z, &model)?;
        }

        /// Score and lex spans select exactly the entries a filter over the model does.
        #[test]
        fn spans_match_a_filter(members in proptest::collection::btree_set(0u16..600, 0..300),
                                lo in -4i8..4, hi in -4i8..4, lox: bool, hix: bool,
                                a in 0u16..600, b in 0u16..600) {
            let mut z = ZSet::default();
            let mut model = Model::new();
            for n in &members {
                let s = f64::from(*n % 5);
                z.insert(&member(*n), s);
                model.insert(member(*n), s);
            }
            let want = sorted(&model);
            let range = ScoreRange {
                min: ScoreBound { value: f64::from(lo), exclusive: lox },
                max: ScoreBound { value: f64::from(hi), exclusive: hix },
            };
            let (l, h) = z.score_span(&range);
            let inside: Vec<usize> = (0..want.len()).filter(|&i| range.gte_min(want[i].1) && range.lte_max(want[i].1)).collect();
            prop_assert_eq!((l..h).collect::<Vec<_>>(), inside);
            // Lex ranges on equal scores.
            let mut eq = ZSet::default();
            let names: BTreeSet<Vec<u8>> = members.iter().map(|n| member(*n)).collect();
            for m in &names {
                eq.insert(m, 1.0);
            }
            let range = LexRange {
                min: if lox { LexBound::Exclusive(member(a)) } else { LexBound::Inclusive(member(a)) },
                max: if hix { LexBound::Exclusive(member(b)) } else { LexBound::PosInf },
            };
            let names: Vec<&Vec<u8>> = names.iter().collect();
            let inside: Vec<usize> = (0..names.len()).filter(|&i| range.gte_min(names[i]) && range.lte_max(names[i])).collect();
            for reverse in [false, true] {
                let (l, h) = eq.lex_span(&range, reverse);
                prop_assert_eq!((l..h).collect::<Vec<_>>(), inside.clone());
            }
        }
    }

    #[test]
    fn scores_print_as_redis_and_read_back() {
        for (v, text) in [
            (0.1, "0.10000000000000001"),
            (1.5, "1.5"),
            (3.0, "3"),
            (1e20, "1e+20"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (-2.5, "-2.5"),
        ] {
            assert_eq!(format_score(v), text);
            assert_eq!(parse_score(text.as_bytes()), Some(v));
        }
        for v in [f64::MIN_POSITIVE, 5e-324, f64::MAX, 1.0 / 3.0, -123456.789e-30] {
            assert_eq!(parse_score(format_score(v).as_bytes()), Some(v));
        }
        for bad in [&b""[..], b" 1", b"nan", b"1e400", b"1e-400", b"1x", b"1\0", b"abc"] {
            assert_eq!(parse_score(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_score(b"0x10"), Some(16.0));
        assert_eq!(parse_score(b"+inf"), Some(f64::INFINITY));
        let r = parse_score_range(b"(1", b"").expect("valid");
        assert!(r.min.exclusive && r.min.value == 1.0 && r.max.value == 0.0);
        assert!(parse_score_range(b"(nan", b"1").is_none());
        assert!(parse_score_range(b"1e400", b" 2").is_some());
        assert!(parse_score_range(b"1 ", b"2").is_none());
        assert_eq!(
            parse_lex_range(b"-", b"+"),
            Some(LexRange {
                min: LexBound::NegInf,
                max: LexBound::PosInf
            })
        );
        assert!(parse_lex_range(b"a", b"+").is_none());
        assert!(parse_lex_range(b"[a", b"++").is_none());
    }

    #[test]
    fn a_hundred_ids_cost_close_to_their_payload() {
        let mut z = ZSet::default();
        let mut payload = 0;
        for i in 0..100u64 {
            let id = format!("post:{:010}", 1_700_000_000 + i);
            payload += id.len() + 8;
            z.insert(id.as_bytes(), i as f64);
        }
        assert!(z.mem_size() < payload * 3 / 2, "{} for {payload}", z.mem_size());
    }

    #[test]
    fn encoding_names_follow_redis_limits() {
        let mut z = ZSet::default();
        z.insert(b"a", 1.0);
        assert_eq!(z.encoding(), "listpack");
        z.insert(&[b'x'; 65], 1.0);
        assert_eq!(z.encoding(), "skiplist");
        z.remove(&[b'x'; 65]);
        for i in 0..SMALL as u32 {
            z.insert(&i.to_be_bytes(), 0.0);
        }
        assert_eq!(z.encoding(), "skiplist");
        z.remove(b"a");
        assert_eq!(z.encoding(), "listpack");
    }

    #[test]
    fn negative_zero_is_stored_as_zero_and_large_sets_split() {
        let mut z = ZSet::default();
        z.insert(b"a", -0.0);
        assert!(z.score(b"a").is_some_and(|s| s.is_sign_positive()));
        for i in 0..10_000u32 {
            z.insert(format!("{i:05}").as_bytes(), f64::from(i % 100));
        }
        assert!(z.chunks.len() > 10_000 / CHUNK_MAX);
        assert_eq!(z.rank(b"00100"), Some(1));
        assert_eq!(z.rank(b"00001"), Some(101));
        assert_eq!(z.remove_ranks(0, 10_001), 10_001);
        assert!(z.is_empty());
        assert_eq!(z.mem_size(), ZSET_BASE);
    }
}
