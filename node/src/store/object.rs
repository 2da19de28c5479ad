//! Values other than strings: one variant per type, each type in its own file
//! (`hash.rs`, …). This file is the dispatch every type goes through: its Redis `TYPE`
//! name, its memory charge, and its wire form, which replication and slot handover
//! ship (`ROBJ <offset> <key> <expire_at> <type> <element>…`).

use bytes::Bytes;

use super::bloom::Bloom;
use super::hash::Hash;
use super::list::List;
use super::set::Set;
use super::zset::{self, ZSet};

/// RedisBloom's `TYPE` name for a Bloom filter.
pub const BLOOM_TYPE: &str = "MBbloom--";

/// A non-string value.
#[derive(Debug, Clone)]
pub enum Object {
    Hash(Hash),
    ZSet(ZSet),
    Set(Set),
    List(List),
    Bloom(Bloom),
}

/// A collection as the store keeps it: the value and its change count (see
/// [`super::changes`]).
pub struct Stored {
    pub object: Object,
    pub changes: super::Changes,
}

/// Why a wire form does not make a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown value type {0:?}")]
    UnknownType(String),
    #[error("malformed {kind} value: {why}")]
    Malformed { kind: &'static str, why: &'static str },
}

impl Object {
    /// The Redis `TYPE` name of this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::Hash(_) => "hash",
            Object::ZSet(_) => "zset",
            Object::Set(_) => "set",
            Object::List(_) => "list",
            Object::Bloom(_) => BLOOM_TYPE,
        }
    }

    /// How the value is stored, as `OBJECT ENCODING` names it (Redis' names: `listpack`,
    /// `intset` for compact forms; `hashtable`, `quicklist`, `skiplist` for full ones).
    pub fn encoding(&self) -> &'static str {
        match self {
            Object::Hash(h) => h.encoding(),
            Object::ZSet(z) => z.encoding(),
            Object::Set(s) => s.encoding(),
            Object::List(_) => "quicklist",
            // A module type: Redis names its encoding "raw".
            Object::Bloom(_) => "raw",
        }
    }

    /// Bytes charged for the value beyond the entry block.
    pub fn mem_size(&self) -> usize {
        match self {
            Object::Hash(h) => h.mem_size(),
            Object::ZSet(z) => z.mem_size(),
            Object::Set(s) => s.mem_size(),
            Object::List(l) => l.mem_size(),
            Object::Bloom(b) => b.mem_size(),
        }
    }

    /// Whether the collection is empty (a key with an empty collection does not exist).
    pub fn is_empty(&self) -> bool {
        match self {
            Object::Hash(h) => h.is_empty(),
            Object::ZSet(z) => z.is_empty(),
            Object::Set(s) => s.is_empty(),
            Object::List(l) => l.is_empty(),
            Object::Bloom(b) => b.is_empty(),
        }
    }

    /// Number of elements in the wire form.
    pub fn wire_len(&self) -> usize {
        match self {
            Object::Hash(h) => 2 * h.len(),
            Object::ZSet(z) => 2 * z.len(),
            Object::Set(s) => s.len(),
            Object::List(l) => l.len(),
            Object::Bloom(b) => b.wire_len(),
        }
    }

    /// Calls `f` with each element of the wire form, in the order [`Object::decode`]
    /// reads them back. A hash: field, value, field, value, … A sorted set: member,
    /// score as text (Redis' "%.17g", which reads back to the same double), … A set:
    /// its members. A list: its elements from the head. A Bloom filter: its
    /// parameters, then each sub-filter's parameters and bits (store/bloom.rs).
    pub fn for_each_wire(&self, mut f: impl FnMut(&[u8])) {
        match self {
            Object::Hash(h) => {
                for (field, value) in h.iter() {
                    f(field);
                    f(value);
                }
            }
            Object::ZSet(z) => {
                for (member, score) in z.iter(0) {
                    f(member);
                    f(zset::format_score(score).as_bytes());
                }
            }
            Object::Set(s) => s.iter().for_each(|m| f(&m)),
            Object::List(l) => l.iter().for_each(f),
            Object::Bloom(b) => b.for_each_wire(f),
        }
    }

    /// Rebuilds a value from its `TYPE` name and wire elements; `None` when the
    /// collection is empty (the key does not exist).
    pub fn decode(type_name: &[u8], elements: &[Bytes]) -> Result<Option<Object>, DecodeError> {
        let object = match type_name {
            b"hash" => {
                if !elements.len().is_multiple_of(2) {
                    return Err(DecodeError::Malformed {
                        kind: "hash",
                        why: "odd number of elements",
                    });
                }
                let mut h = Hash::default();
                for pair in elements.chunks_exact(2) {
                    h.insert(&pair[0], &pair[1]);
                }
                Object::Hash(h)
            }
            b"zset" => {
                let malformed = |why| DecodeError::Malformed { kind: "zset", why };
                if !elements.len().is_multiple_of(2) {
                    return Err(malformed("odd number of elements"));
                }
                let mut z = ZSet::default();
                for pair in elements.chunks_exact(2) {
                    let score = zset::parse_score(&pair[1]).ok_or_else(|| malformed("score is not a float"))?;
                    z.insert(&pair[0], score);
                }
                Object::ZSet(z)
            }
            b"set" => {
                let mut s = Set::default();
                for m in elements {
                    s.insert(m);
                }
                Object::Set(s)
            }
            b"list" => {
                let mut l = List::default();
                for e in elements {
                    l.push_back(e);
                }
                Object::List(l)
            }
            b"MBbloom--" => {
                Object::Bloom(Bloom::decode(elements).map_err(|why| DecodeError::Malformed { kind: BLOOM_TYPE, why })?)
            }
            other => return Err(DecodeError::UnknownType(String::from_utf8_lossy(other).into_owned())),
        };
        Ok((!object.is_empty()).then_some(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::bloom::BloomParams;

    /// Every type's wire form decodes to the same contents.
    #[test]
    fn wire_forms_round_trip() {
        let mut h = Hash::default();
        h.insert(b"f", b"v");
        h.insert(b"", b"\r\n");
        let mut z = ZSet::default();
        for (i, score) in [0.1, -0.0, f64::INFINITY, f64::NEG_INFINITY, 1e-300, 1.0 / 3.0]
            .into_iter()
            .enumerate()
        {
            z.insert(format!("m{i}").as_bytes(), score);
        }
        z.insert(b"", 2.5);
        let mut small = Set::default();
        small.insert(b"7");
        small.insert(b"-3");
        let mut big = Set::default();
        for m in [&b"m"[..], b"", b"\r\n", b"12"] {
            big.insert(m);
        }
        let mut l = List::default();
        l.push_back(b"x");
        l.push_front(b"");
        l.push_back(b"\r\n");
        let mut b = Bloom::new(
            BloomParams {
                capacity: 3,
                ..BloomParams::default()
            },
            usize::MAX,
        )
        .expect("valid");
        for item in [&b"a"[..], b"b", b"", b"c", b"d"] {
            b.add(item, usize::MAX).expect("adds");
        }
        let objects = [
            Object::Hash(h),
            Object::ZSet(z),
            Object::Set(small),
            Object::Set(big),
            Object::List(l),
            Object::Bloom(b),
        ];
        for o in objects {
            let mut wire = Vec::new();
            o.for_each_wire(|e| wire.push(Bytes::copy_from_slice(e)));
            assert_eq!(wire.len(), o.wire_len());
            let back = Object::decode(o.type_name().as_bytes(), &wire)
                .expect("decodes")
                .expect("not empty");
            let mut again = Vec::new();
            back.for_each_wire(|e| again.push(Bytes::copy_from_slice(e)));
            assert_eq!(wire, again, "{}", o.type_name());
            assert_eq!(back.mem_size(), o.mem_size());
        }
    }

    #[test]
    fn bad_wire_forms_are_errors_and_empty_ones_are_no_key() {
        assert!(matches!(
            Object::decode(b"nosuch", &[]),
            Err(DecodeError::UnknownType(_))
        ));
        let odd = [Bytes::from_static(b"f")];
        assert!(matches!(
            Object::decode(b"hash", &odd),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(Object::decode(b"hash", &[]), Ok(None)));
    }
}
