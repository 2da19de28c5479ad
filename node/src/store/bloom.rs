//! The Bloom filter type, RedisBloom's `MBbloom--`: a scalable chain of Bloom filters.
//!
//! A filter starts with one sub-filter sized for `capacity` items at the requested
//! error rate. When the newest sub-filter holds as many items as it was sized for, a
//! scaling filter adds one `expansion` times larger whose error rate is half the
//! previous one (RedisBloom's tightening ratio 0.5), so the chain's combined error
//! rate stays under what was asked; a `NONSCALING` filter refuses the item instead.
//! A scaling filter's first sub-filter is already sized for half the requested rate,
//! as RedisBloom does.
//!
//! Sizing follows RedisBloom's (`bloom_init` without rounding to a power of two):
//! `bits = capacity × ln(1/error) / ln(2)²`, rounded up to whole 64-bit words, and
//! `ceil(ln 2 × bits per item)` hash functions. Positions come from double hashing
//! of a 64-bit MurmurHash64A (the hash RedisBloom uses), so a filter's bits do not
//! depend on the node that computed them.
//!
//! Memory is charged as RedisBloom's `BF.INFO Size` counts it: a 32-byte chain, 64
//! bytes per sub-filter and the bit arrays (our structs are no larger; a test checks).

/// RedisBloom's error-tightening ratio between consecutive sub-filters.
pub const ERROR_TIGHTENING_RATIO: f64 = 0.5;
/// Error rates above this are used as this (RedisBloom's `BF_ERROR_RATE_CAP`).
pub const ERROR_RATE_CAP: f64 = 0.25;
/// Largest initial capacity (RedisBloom's `bf-initial-size` maximum).
pub const CAPACITY_MAX: i64 = 1 << 30;
/// Largest expansion factor (RedisBloom's `bf-expansion-factor` maximum).
pub const EXPANSION_MAX: i64 = 32768;

/// Charge for the chain itself (RedisBloom's `sizeof(SBChain)`).
const CHAIN_BYTES: usize = 32;
/// Charge per sub-filter besides its bits (RedisBloom's `sizeof(SBLink)`).
const LINK_BYTES: usize = 64;

const LN2: f64 = std::f64::consts::LN_2;
const MURMUR_M: u64 = 0xc6a4_a793_5bd1_e995;

/// How a new filter is made: `BF.RESERVE`'s and `BF.INSERT`'s arguments, or the
/// node's defaults for a filter `BF.ADD` creates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BloomParams {
    /// Requested false-positive rate, in (0, 1).
    pub error_rate: f64,
    /// Items the first sub-filter holds.
    pub capacity: u64,
    /// Size factor between consecutive sub-filters.
    pub expansion: u32,
    /// Refuse items once the first sub-filter is full instead of adding another.
    pub nonscaling: bool,
}

impl Default for BloomParams {
    /// RedisBloom's defaults: 1 % error, 100 items, expansion 2, scaling.
    fn default() -> Self {
        BloomParams {
            error_rate: 0.01,
            capacity: 100,
            expansion: 2,
            nonscaling: false,
        }
    }
}

/// Why a filter could not be made or grown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BloomError {
    /// Parameters no filter can have (zero capacity, an error rate outside (0, 1)).
    Invalid,
    /// The bit array would exceed the byte budget, or could not be allocated.
    TooLarge,
}

/// Why an item was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddError {
    /// A `NONSCALING` filter holds its capacity.
    Full,
    /// A new sub-filter was needed and could not be made ([`BloomError`]).
    Grow(BloomError),
}

/// The two hash values an item's bit positions derive from.
#[derive(Debug, Clone, Copy)]
struct ItemHash {
    a: u64,
    b: u64,
}

/// MurmurHash64A of `data` with `seed`.
fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(MURMUR_M);
    let mut chunks = data.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let mut k = u64::from_le_bytes(word).wrapping_mul(MURMUR_M);
        k ^= k >> R;
        k = k.wrapping_mul(MURMUR_M);
        h ^= k;
        h = h.wrapping_mul(MURMUR_M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate() {
            h ^= u64::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(MURMUR_M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(MURMUR_M);
    h ^ (h >> R)
}

fn item_hash(item: &[u8]) -> ItemHash {
    let a = murmur64a(item, MURMUR_M);
    ItemHash {
        a,
        b: murmur64a(item, a),
    }
}

/// Bits per item for an error rate.
fn bits_per_item(error: f64) -> f64 {
    (error.ln() / (LN2 * LN2)).abs()
}

/// One sub-filter of the chain.
#[derive(Debug, Clone)]
struct Link {
    bits: Box<[u8]>,
    /// Items it is sized for.
    entries: u64,
    /// Its own false-positive rate.
    error: f64,
    hashes: u32,
    /// Items added to it.
    items: u64,
}

impl Link {
    /// An empty sub-filter for `entries` items at `error`, of at most `max_bytes`.
    fn new(entries: u64, error: f64, max_bytes: usize) -> Result<Link, BloomError> {
        if entries == 0 || !(error > 0.0 && error < 1.0) {
            return Err(BloomError::Invalid);
        }
        let bpe = bits_per_item(error);
        let bits = (entries as f64 * bpe).max(1.0);
        // Whole 64-bit words, as RedisBloom allocates.
        let words = (bits / 64.0).ceil();
        if !words.is_finite() || words * 8.0 > max_bytes as f64 {
            return Err(BloomError::TooLarge);
        }
        let bytes = ((bits as u64).div_ceil(64) * 8) as usize;
        let mut v = Vec::new();
        v.try_reserve_exact(bytes).map_err(|_| BloomError::TooLarge)?;
        v.resize(bytes, 0);
        Ok(Link {
            bits: v.into_boxed_slice(),
            entries,
            error,
            hashes: (LN2 * bpe).ceil() as u32,
            items: 0,
        })
    }

    /// Byte index and bit mask of the `i`-th position of `h` (double hashing).
    fn position(&self, h: ItemHash, i: u64) -> (usize, u8) {
        let nbits = (self.bits.len() as u64) * 8;
        let x = h.a.wrapping_add(i.wrapping_mul(h.b)) % nbits.max(1);
        ((x / 8) as usize, 1u8 << (x % 8))
    }

    fn contains(&self, h: ItemHash) -> bool {
        (0..u64::from(self.hashes)).all(|i| {
            let (byte, mask) = self.position(h, i);
            self.bits.get(byte).is_some_and(|b| b & mask != 0)
        })
    }

    /// Sets the bits of `h`; true when at least one was not set.
    fn add(&mut self, h: ItemHash) -> bool {
        let mut changed = false;
        for i in 0..u64::from(self.hashes) {
            let (byte, mask) = self.position(h, i);
            if let Some(b) = self.bits.get_mut(byte) {
                changed |= *b & mask == 0;
                *b |= mask;
            }
        }
        changed
    }
}

/// A scalable Bloom filter (RedisBloom's `SBChain`).
#[derive(Debug, Clone)]
pub struct Bloom {
    /// Oldest first; never empty.
    links: Box<[Link]>,
    /// Items added (over all sub-filters).
    items: u64,
    /// Expansion factor between sub-filters.
    growth: u32,
    nonscaling: bool,
}

impl Bloom {
    /// An empty filter, its bit array at most `max_bytes`.
    pub fn new(p: BloomParams, max_bytes: usize) -> Result<Bloom, BloomError> {
        let nonscaling = p.nonscaling || p.expansion == 0;
        let tightening = if nonscaling { 1.0 } else { ERROR_TIGHTENING_RATIO };
        let link = Link::new(p.capacity, p.error_rate * tightening, max_bytes)?;
        Ok(Bloom {
            links: Box::new([link]),
            items: 0,
            growth: p.expansion,
            nonscaling,
        })
    }

    /// Whether `item` may have been added (false positives at the filter's rate).
    pub fn contains(&self, item: &[u8]) -> bool {
        let h = item_hash(item);
        self.links.iter().rev().any(|l| l.contains(h))
    }

    /// Adds `item`: `Ok(true)` when it was not (seemingly) there. A new sub-filter
    /// may take at most `max_bytes`.
    pub fn add(&mut self, item: &[u8], max_bytes: usize) -> Result<bool, AddError> {
        let h = item_hash(item);
        if self.links.iter().rev().any(|l| l.contains(h)) {
            return Ok(false);
        }
        let Some(cur) = self.links.last() else {
            return Err(AddError::Grow(BloomError::Invalid));
        };
        if cur.items >= cur.entries {
            if self.nonscaling {
                return Err(AddError::Full);
            }
            let entries = cur
                .entries
                .checked_mul(u64::from(self.growth))
                .ok_or(AddError::Grow(BloomError::TooLarge))?;
            let link = Link::new(entries, cur.error * ERROR_TIGHTENING_RATIO, max_bytes).map_err(AddError::Grow)?;
            let mut links = std::mem::take(&mut self.links).into_vec();
            links.reserve_exact(1);
            links.push(link);
            self.links = links.into_boxed_slice();
        }
        let Some(cur) = self.links.last_mut() else {
            return Err(AddError::Grow(BloomError::Invalid));
        };
        let added = cur.add(h);
        if added {
            cur.items += 1;
            self.items += 1;
        }
        Ok(added)
    }

    /// Items added (`BF.CARD`, `BF.INFO`'s "Number of items inserted").
    pub fn len(&self) -> u64 {
        self.items
    }

    /// Items the sub-filters are sized for, together.
    pub fn capacity(&self) -> u64 {
        self.links.iter().map(|l| l.entries).sum()
    }

    pub fn num_filters(&self) -> usize {
        self.links.len()
    }

    /// The expansion factor; `None` for a non-scaling filter.
    pub fn expansion(&self) -> Option<u32> {
        (!self.nonscaling).then_some(self.growth)
    }

    /// A filter always exists once made, even with no items.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes charged, as `BF.INFO Size` reports them.
    pub fn mem_size(&self) -> usize {
        CHAIN_BYTES + self.links.iter().map(|l| LINK_BYTES + l.bits.len()).sum::<usize>()
    }

    /// Elements of the wire form: the chain's parameters, then each sub-filter's
    /// parameters and bits.
    pub fn wire_len(&self) -> usize {
        1 + 2 * self.links.len()
    }

    /// Calls `f` with each wire element, in the order [`Bloom::decode`] reads them.
    pub fn for_each_wire(&self, mut f: impl FnMut(&[u8])) {
        let mut head = [0u8; CHAIN_WIRE];
        head[..8].copy_from_slice(&self.items.to_le_bytes());
        head[8..12].copy_from_slice(&self.growth.to_le_bytes());
        head[12] = u8::from(self.nonscaling);
        f(&head);
        for l in self.links.iter() {
            let mut lh = [0u8; LINK_WIRE];
            lh[..8].copy_from_slice(&l.entries.to_le_bytes());
            lh[8..16].copy_from_slice(&l.error.to_bits().to_le_bytes());
            lh[16..20].copy_from_slice(&l.hashes.to_le_bytes());
            lh[20..28].copy_from_slice(&l.items.to_le_bytes());
            f(&lh);
            f(&l.bits);
        }
    }

    /// Rebuilds a filter from its wire elements; why not, when they are malformed.
    pub fn decode(elements: &[impl AsRef<[u8]>]) -> Result<Bloom, &'static str> {
        let (head, rest) = elements.split_first().ok_or("no elements")?;
        let head = head.as_ref();
        if head.len() != CHAIN_WIRE || rest.is_empty() || !rest.len().is_multiple_of(2) {
            return Err("bad chain header or sub-filter count");
        }
        let items = le_u64(&head[..8]);
        let growth = le_u32(&head[8..12]);
        let nonscaling = match head[12] {
            0 => false,
            1 => true,
            _ => return Err("bad scaling flag"),
        };
        let mut links = Vec::with_capacity(rest.len() / 2);
        for pair in rest.chunks_exact(2) {
            let (lh, bits) = (pair[0].as_ref(), pair[1].as_ref());
            if lh.len() != LINK_WIRE {
                return Err("bad sub-filter header");
            }
            let link = Link {
                entries: le_u64(&lh[..8]),
                error: f64::from_bits(le_u64(&lh[8..16])),
                hashes: le_u32(&lh[16..20]),
                items: le_u64(&lh[20..28]),
                bits: bits.into(),
            };
            let sane = link.entries > 0
                && link.error > 0.0
                && link.error < 1.0
                && (1..=MAX_HASHES).contains(&link.hashes)
                && !link.bits.is_empty()
                && link.bits.len().is_multiple_of(8);
            if !sane {
                return Err("bad sub-filter parameters");
            }
            links.push(link);
        }
        if links.iter().map(|l| l.items).sum::<u64>() != items {
            return Err("item counts disagree");
        }
        Ok(Bloom {
            links: links.into_boxed_slice(),
            items,
            growth,
            nonscaling,
        })
    }
}

/// Wire bytes of the chain's parameters: items, expansion, non-scaling flag.
const CHAIN_WIRE: usize = 13;
/// Wire bytes of a sub-filter's parameters: entries, error, hashes, items.
const LINK_WIRE: usize = 28;
/// More hash functions than any error rate above f64's smallest value needs.
const MAX_HASHES: u32 = 2048;

fn le_u64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UNLIMITED: usize = usize::MAX;

    fn params(error_rate: f64, capacity: u64, expansion: u32, nonscaling: bool) -> BloomParams {
        BloomParams {
            error_rate,
            capacity,
            expansion,
            nonscaling,
        }
    }

    #[test]
    fn our_structs_fit_the_charge() {
        assert!(std::mem::size_of::<Bloom>() <= CHAIN_BYTES);
        assert!(std::mem::size_of::<Link>() <= LINK_BYTES);
    }

    #[test]
    fn murmur64a_known_values() {
        // The empty input with seed 0 hashes to 0 (every step multiplies or xors 0).
        assert_eq!(murmur64a(b"", 0), 0);
        assert_ne!(murmur64a(b"a", 0), murmur64a(b"b", 0));
        // Every tail length goes through the tail path without panicking.
        for n in 0..20 {
            let data = vec![7u8; n];
            let _ = murmur64a(&data, 1);
        }
    }

    #[test]
    fn sizing_follows_redisbloom() {
        // Default filter: 100 items at 1 % scaling → first link at 0.5 %.
        let b = Bloom::new(BloomParams::default(), UNLIMITED).expect("valid");
        let l = &b.links[0];
        // bpe = ln(200)/ln2² ≈ 11.03; 1102 bits → 18 words → 144 bytes; 8 hashes.
        assert_eq!(l.bits.len(), 144);
        assert_eq!(l.hashes, 8);
        assert_eq!(b.mem_size(), 32 + 64 + 144);
        assert_eq!(b.capacity(), 100);
        assert_eq!(b.expansion(), Some(2));
        let n = Bloom::new(params(0.01, 100, 2, true), UNLIMITED).expect("valid");
        // Non-scaling keeps the requested rate: 958 bits → 15 words → 120 bytes, 7 hashes.
        assert_eq!(n.links[0].bits.len(), 120);
        assert_eq!(n.links[0].hashes, 7);
        assert_eq!(n.expansion(), None);
    }

    #[test]
    fn scaling_adds_larger_tighter_links_and_nonscaling_fills() {
        let mut b = Bloom::new(params(0.01, 10, 3, false), UNLIMITED).expect("valid");
        let mut added = 0;
        for i in 0..200u32 {
            if b.add(format!("item{i}").as_bytes(), UNLIMITED).expect("scales") {
                added += 1;
            }
        }
        assert_eq!(b.len(), added);
        // 10 + 30 + 90 + 270 ≥ 200 items.
        assert_eq!(b.num_filters(), 4);
        assert_eq!(b.capacity(), 10 + 30 + 90 + 270);
        assert!((b.links[3].error - 0.01 * 0.5f64.powi(4)).abs() < 1e-15);
        for i in 0..200u32 {
            assert!(b.contains(format!("item{i}").as_bytes()));
        }
        let mut n = Bloom::new(params(0.01, 10, 2, true), UNLIMITED).expect("valid");
        let mut i = 0;
        let full = loop {
            match n.add(format!("x{i}").as_bytes(), UNLIMITED) {
                Ok(_) => i += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(full, AddError::Full);
        assert_eq!(n.len(), 10);
        assert_eq!(n.num_filters(), 1);
    }

    #[test]
    fn sizes_beyond_the_budget_are_refused() {
        assert_eq!(
            Bloom::new(params(0.01, 1 << 30, 2, false), 1 << 20).map(|_| ()),
            Err(BloomError::TooLarge)
        );
        assert_eq!(
            Bloom::new(params(0.0, 10, 2, false), UNLIMITED).map(|_| ()),
            Err(BloomError::Invalid)
        );
        let mut b = Bloom::new(params(0.01, 1, 32768, false), UNLIMITED).expect("valid");
        assert_eq!(b.add(b"a", UNLIMITED), Ok(true));
        assert_eq!(b.add(b"b", 100), Err(AddError::Grow(BloomError::TooLarge)));
        assert_eq!(b.num_filters(), 1);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn bad_wire_forms_are_refused() {
        let mut b = Bloom::new(params(0.01, 5, 2, false), UNLIMITED).expect("valid");
        for i in 0..12u8 {
            b.add(&[i], UNLIMITED).expect("adds");
        }
        let mut wire: Vec<Vec<u8>> = Vec::new();
        b.for_each_wire(|e| wire.push(e.to_vec()));
        assert_eq!(wire.len(), b.wire_len());
        assert!(Bloom::decode(&wire).is_ok());
        assert!(Bloom::decode(&wire[..2]).is_err());
        assert!(Bloom::decode(&[] as &[Vec<u8>]).is_err());
        let mut bad = wire.clone();
        bad[2] = vec![1, 2, 3];
        assert!(Bloom::decode(&bad).is_err());
        let mut bad = wire.clone();
        bad[1][16..20].copy_from_slice(&0u32.to_le_bytes());
        assert!(Bloom::decode(&bad).is_err());
        let mut bad = wire.clone();
        bad[0][..8].copy_from_slice(&999u64.to_le_bytes());
        assert!(Bloom::decode(&bad).is_err());
        let mut bad = wire;
        bad[0][12] = 7;
        assert!(Bloom::decode(&bad).is_err());
    }

    proptest! {
        /// Added items are always found, the item count matches a set of what was
        /// (seemingly) new, and the charge equals the sum of the parts.
        #[test]
        fn bloom_matches_a_model(items in proptest::collection::vec(0u16..2000, 0..600),
                                 capacity in 1u64..50, expansion in 1u32..5) {
            let mut b = Bloom::new(params(0.01, capacity, expansion, false), UNLIMITED).expect("valid");
            let mut seen = std::collections::HashSet::new();
            let mut new_items = 0u64;
            for i in items {
                let item = i.to_le_bytes();
                let was_there = b.contains(&item);
                let added = b.add(&item, UNLIMITED).expect("scales");
                prop_assert_eq!(added, !was_there);
                if !seen.insert(i) {
                    prop_assert!(!added);
                }
                new_items += u64::from(added);
                prop_assert!(b.contains(&item));
            }
            prop_assert_eq!(b.len(), new_items);
            for i in &seen {
                prop_assert!(b.contains(&i.to_le_bytes()));
            }
            let charge: usize = b.links.iter().map(|l| 64 + l.bits.len()).sum::<usize>() + 32;
            prop_assert_eq!(b.mem_size(), charge);
            let mut wire: Vec<Vec<u8>> = Vec::new();
            b.for_each_wire(|e| wire.push(e.to_vec()));
            let back = Bloom::decode(&wire).expect("decodes");
            prop_assert_eq!(back.mem_size(), b.mem_size());
            prop_assert_eq!(back.len(), b.len());
            for i in &seen {
                prop_assert!(back.contains(&i.to_le_bytes()));
            }
        }
    }
}
