//! Values other than strings: one variant per type, each type in its own file
//! (`hash.rs`, …). This file is the dispatch every type goes through: its Redis `TYPE`
//! name, its memory charge, and its wire form, which replication and slot handover
//! ship (`ROBJ <offset> <key> <expire_at> <type> <element>…`).

use bytes::Bytes;

use super::bloom::Bloom;
use super::hash::Hash;

/// RedisBloom's `TYPE` name for a Bloom filter.
pub const BLOOM_TYPE: &str = "MBbloom--";

/// A non-string value.
#[derive(Debug, Clone)]
pub enum Object {
    Hash(Hash),
    Bloom(Bloom),
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
            Object::Bloom(_) => BLOOM_TYPE,
        }
    }

    /// Bytes charged for the value beyond the entry block.
    pub fn mem_size(&self) -> usize {
        match self {
            Object::Hash(h) => h.mem_size(),
            Object::Bloom(b) => b.mem_size(),
        }
    }

    /// Whether the collection is empty (a key with an empty collection does not exist).
    pub fn is_empty(&self) -> bool {
        match self {
            Object::Hash(h) => h.is_empty(),
            Object::Bloom(b) => b.is_empty(),
        }
    }

    /// Number of elements in the wire form.
    pub fn wire_len(&self) -> usize {
        match self {
            Object::Hash(h) => 2 * h.len(),
            Object::Bloom(b) => b.wire_len(),
        }
    }

    /// Calls `f` with each element of the wire form, in the order [`Object::decode`]
    /// reads them back. A hash: field, value, field, value, … A Bloom filter: its
    /// parameters, then each sub-filter's parameters and bits (store/bloom.rs).
    pub fn for_each_wire(&self, mut f: impl FnMut(&[u8])) {
        match self {
            Object::Hash(h) => {
                for (field, value) in h.iter() {
                    f(field);
                    f(value);
                }
            }
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
        let objects = [Object::Hash(h), Object::Bloom(b)];
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
