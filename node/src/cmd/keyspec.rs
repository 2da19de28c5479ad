//! Keys counted by an argument (`ZUNIONSTORE dst 2 a b WEIGHTS …`, `LMPOP 2 a b LEFT`):
//! where each [`MOVABLEKEYS`](super::flag::MOVABLEKEYS) command keeps its `numkeys`.
//! Routing, the proxy's split, the handover step, replication and `COMMAND GETKEYS` all
//! read key positions through [`super::CommandSpec::key_positions`], which asks here.

use std::ops::Range;

use bytes::Bytes;

use super::args::parse_i64;

/// For each command with counted keys: the position of its `numkeys` argument; the
/// keys follow it.
pub const NUMKEYS_AT: &[(&str, usize)] = &[
    ("zunionstore", 2),
    ("zinterstore", 2),
    ("zdiffstore", 2),
    ("zunion", 1),
    ("zinter", 1),
    ("zdiff", 1),
    ("zintercard", 1),
    ("sintercard", 1),
    ("lmpop", 1),
    ("zmpop", 1),
    ("blmpop", 2),
    ("bzmpop", 2),
];

/// Positions of the counted keys of `name` in `args`; empty when the count is missing,
/// not a positive integer or larger than what follows (the command's handler then
/// answers the error Redis gives).
pub fn counted_keys(name: &str, args: &[Bytes]) -> Range<usize> {
    let Some(&(_, at)) = NUMKEYS_AT.iter().find(|(n, _)| *n == name) else {
        return 0..0;
    };
    let Some(count) = args.get(at).and_then(|a| parse_i64(a)) else {
        return 0..0;
    };
    let start = at + 1;
    match usize::try_from(count) {
        Ok(n) if n > 0 && n <= args.len().saturating_sub(start) => start..start + n,
        _ => 0..0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    #[test]
    fn counted_keys_follow_their_count_and_bad_counts_give_none() {
        let a = args(&["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"]);
        assert_eq!(counted_keys("zunionstore", &a), 3..5);
        assert_eq!(counted_keys("lmpop", &args(&["LMPOP", "1", "k", "LEFT"])), 2..3);
        for bad in [
            &["LMPOP"][..],
            &["LMPOP", "x", "k"],
            &["LMPOP", "0", "k"],
            &["LMPOP", "-1", "k"],
            &["LMPOP", "3", "k"],
        ] {
            assert_eq!(counted_keys("lmpop", &args(bad)), 0..0, "{bad:?}");
        }
        assert_eq!(counted_keys("get", &args(&["GET", "1", "k"])), 0..0);
    }

    #[test]
    fn every_movablekeys_command_has_a_count_position_and_no_other_does() {
        for c in &crate::cmd::registry().commands {
            let listed = NUMKEYS_AT.iter().any(|(n, _)| *n == c.name);
            let movable = c.flags & crate::cmd::flag::MOVABLEKEYS != 0;
            assert_eq!(
                listed, movable,
                "{}: listed in NUMKEYS_AT {listed}, MOVABLEKEYS {movable}",
                c.name
            );
        }
    }
}
