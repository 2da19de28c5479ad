//! Redis 7.0's encoding parameters (`CONFIG GET/SET hash-max-listpack-entries`, …):
//! their names, old `ziplist` aliases, defaults and current values. Client libraries
//! and Redis users' tooling read and set them; a value type that has a compact form
//! reads its threshold here, the others only store and report them (the README's
//! "Encodings" lists which is which). Also how `OBJECT ENCODING` names a string.

use std::sync::atomic::{AtomicI64, Ordering};

/// One encoding parameter.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    /// The Redis 6 name, still accepted by Redis 7.0.
    pub alias: Option<&'static str>,
    pub default: i64,
    pub min: i64,
    pub max: i64,
    /// A size: takes units (`1kb`, `2mb`) like Redis' memory parameters.
    pub memory: bool,
}

/// The parameters, as Redis 7.0.15 declares them (config.c).
pub const PARAMS: &[Param] = &[
    Param {
        name: "hash-max-listpack-entries",
        alias: Some("hash-max-ziplist-entries"),
        default: 512,
        min: 0,
        max: i64::MAX,
        memory: false,
    },
    Param {
        name: "hash-max-listpack-value",
        alias: Some("hash-max-ziplist-value"),
        default: 64,
        min: 0,
        max: i64::MAX,
        memory: true,
    },
    Param {
        name: "list-max-listpack-size",
        alias: Some("list-max-ziplist-size"),
        default: -2,
        min: i32::MIN as i64,
        max: i32::MAX as i64,
        memory: false,
    },
    Param {
        name: "list-compress-depth",
        alias: None,
        default: 0,
        min: 0,
        max: i32::MAX as i64,
        memory: false,
    },
    Param {
        name: "set-max-intset-entries",
        alias: None,
        default: 512,
        min: 0,
        max: i64::MAX,
        memory: false,
    },
    Param {
        name: "zset-max-listpack-entries",
        alias: Some("zset-max-ziplist-entries"),
        default: 128,
        min: 0,
        max: i64::MAX,
        memory: false,
    },
    Param {
        name: "zset-max-listpack-value",
        alias: Some("zset-max-ziplist-value"),
        default: 64,
        min: 0,
        max: i64::MAX,
        memory: true,
    },
    Param {
        name: "hll-sparse-max-bytes",
        alias: None,
        default: 3000,
        min: 0,
        max: i64::MAX,
        memory: true,
    },
];

/// The current values of [`PARAMS`], one per entry.
#[derive(Debug)]
pub struct Encodings {
    values: Vec<AtomicI64>,
}

impl Default for Encodings {
    fn default() -> Encodings {
        Encodings {
            values: PARAMS.iter().map(|p| AtomicI64::new(p.default)).collect(),
        }
    }
}

/// Why a value does not fit a parameter (the text after Redis' "CONFIG SET failed …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    #[error("argument couldn't be parsed into an integer")]
    NotInteger,
    #[error("argument must be between {min} and {max} inclusive")]
    OutOfRange { min: i64, max: i64 },
}

/// The index in [`PARAMS`] of `name` (or its alias), any case.
pub fn find(name: &str) -> Option<usize> {
    PARAMS
        .iter()
        .position(|p| p.name.eq_ignore_ascii_case(name) || p.alias.is_some_and(|a| a.eq_ignore_ascii_case(name)))
}

impl Encodings {
    pub fn get(&self, i: usize) -> i64 {
        self.values.get(i).map_or(0, |v| v.load(Ordering::Relaxed))
    }

    /// The value of the parameter called `name`; its default when unknown.
    pub fn by_name(&self, name: &str) -> i64 {
        find(name).map_or(0, |i| self.get(i))
    }

    /// Checks `value` for parameter `i`.
    pub fn parse(i: usize, value: &str) -> Result<i64, EncodingError> {
        let p = &PARAMS[i.min(PARAMS.len() - 1)];
        let v: i64 = match value.parse() {
            Ok(v) => v,
            Err(_) if p.memory => crate::util::size::parse_bytes(value)
                .ok()
                .and_then(|v| i64::try_from(v).ok())
                .ok_or(EncodingError::NotInteger)?,
            Err(_) => return Err(EncodingError::NotInteger),
        };
        if v < p.min || v > p.max {
            return Err(EncodingError::OutOfRange { min: p.min, max: p.max });
        }
        Ok(v)
    }

    pub fn set(&self, i: usize, v: i64) {
        if let Some(slot) = self.values.get(i) {
            slot.store(v, Ordering::Relaxed);
        }
    }
}

/// How Redis 7.0 encodes a string value, as `OBJECT ENCODING` names it: `int` for the
/// canonical text of a 64-bit integer (at most 20 bytes), `embstr` up to 44 bytes,
/// `raw` beyond. (Redis also turns a string `raw` once APPEND or SETRANGE changed it;
/// ringcache keeps no such history and names it by its contents.)
pub fn string_encoding(value: &[u8]) -> &'static str {
    let canonical_int = value.len() <= 20
        && std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .is_some_and(|n| n.to_string().as_bytes() == value);
    if canonical_int {
        "int"
    } else if value.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_defaults_and_ranges() {
        let e = Encodings::default();
        let i = find("HASH-MAX-ZIPLIST-ENTRIES").expect("alias");
        assert_eq!(PARAMS[i].name, "hash-max-listpack-entries");
        assert_eq!(e.get(i), 512);
        assert_eq!(
            Encodings::parse(find("hll-sparse-max-bytes").expect("known"), "1kb"),
            Ok(1024)
        );
        assert_eq!(e.by_name("list-max-listpack-size"), -2);
        assert_eq!(Encodings::parse(i, "x"), Err(EncodingError::NotInteger));
        assert!(matches!(
            Encodings::parse(i, "-1"),
            Err(EncodingError::OutOfRange { .. })
        ));
        e.set(i, 7);
        assert_eq!(e.by_name("hash-max-listpack-entries"), 7);
        assert!(find("nosuch").is_none());
    }

    #[test]
    fn string_encodings_follow_redis() {
        assert_eq!(string_encoding(b"12345"), "int");
        assert_eq!(string_encoding(b"-9223372036854775808"), "int");
        assert_eq!(string_encoding(b"012"), "embstr");
        assert_eq!(string_encoding(b"9223372036854775808"), "embstr");
        assert_eq!(string_encoding(&[b'a'; 44]), "embstr");
        assert_eq!(string_encoding(&[b'a'; 45]), "raw");
    }
}
