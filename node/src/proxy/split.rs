//! Splitting a keyed request by hash slot and merging the owners' replies. Pure
//! functions: the caller says which node serves a slot (`target_of`), and gets back
//! the sub-requests to send and, later, one merged reply.
//!
//! Sub-requests are grouped per *slot*, not per node: owners check that every key of a
//! request hashes to one slot (`-CROSSSLOT` otherwise), exactly like the main port.
//! Sub-requests for one owner travel pipelined on the same connection, so a split
//! costs one round trip per owner, not per slot.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::reply;
use crate::cmd::CommandSpec;
use ringcache_core::slot::{key_slot, Slot};

/// The error a request answers when its keys live in different slots and the proxy
/// cannot split it.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// How the replies of a split request are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `MGET`: one array, values in request order.
    Values,
    /// `MSET`: `+OK` when every part answered `+OK`.
    AllOk,
    /// `DEL`/`UNLINK`/`EXISTS`/`TOUCH`: the sum of the integer replies.
    Sum,
}

/// One sub-request: where it goes, its arguments, and which of the original keys
/// (indices in key order) it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<T> {
    pub target: T,
    pub args: Vec<Bytes>,
    pub keys: Vec<usize>,
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<T> {
    /// No keys: answer on this node.
    Keyless,
    /// Every key in one slot: send the request unchanged to `T`.
    Whole(T),
    /// Keys in several slots of a splittable command.
    Split {
        merge: Merge,
        keys: usize,
        parts: Vec<Part<T>>,
    },
    /// Keys in several slots of a command that cannot be split.
    CrossSlot,
}

/// How `name` (lowercase registry name) is split, if it can be.
fn merge_of(name: &str) -> Option<Merge> {
    match name {
        "mget" => Some(Merge::Values),
        "mset" => Some(Merge::AllOk),
        "del" | "unlink" | "exists" | "touch" => Some(Merge::Sum),
        _ => None,
    }
}

/// Plans `args` (a request whose arity was already checked against `spec`).
pub fn plan<T: Clone>(spec: &CommandSpec, args: &[Bytes], target_of: impl Fn(Slot) -> T) -> Plan<T> {
    if !spec.has_keys() {
        return Plan::Keyless;
    }
    let positions: Vec<usize> = spec.key_positions(args).filter(|&p| p < args.len()).collect();
    let Some(&first) = positions.first() else {
        return Plan::Keyless;
    };
    let first_slot = key_slot(&args[first]);
    if positions.iter().all(|&p| key_slot(&args[p]) == first_slot) {
        return Plan::Whole(target_of(first_slot));
    }
    let Some(merge) = merge_of(spec.name) else {
        return Plan::CrossSlot;
    };
    // Arguments that travel with each key: MSET's value.
    let step = usize::try_from(spec.keys.2.max(1)).unwrap_or(1);
    if merge == Merge::AllOk && !(args.len() - 1).is_multiple_of(2) {
        // Malformed MSET: let the owner-independent local path report it.
        return Plan::Keyless;
    }
    let mut by_slot: HashMap<Slot, usize> = HashMap::new();
    let mut parts: Vec<Part<T>> = Vec::new();
    for (key_index, &p) in positions.iter().enumerate() {
        let slot = key_slot(&args[p]);
        let i = *by_slot.entry(slot).or_insert_with(|| {
            parts.push(Part {
                target: target_of(slot),
                args: vec![args[0].clone()],
                keys: Vec::new(),
            });
            parts.len() - 1
        });
        let part = &mut parts[i];
        part.args.extend(args[p..(p + step).min(args.len())].iter().cloned());
        part.keys.push(key_index);
    }
    Plan::Split {
        merge,
        keys: positions.len(),
        parts,
    }
}

/// Merges the replies of a split request (`replies[i]` answers `parts[i]`, given as
/// the key indices each part carried) into `out`. The first error reply, in part
/// order, is the reply to the whole request.
pub fn merge(merge: Merge, keys: usize, parts: &[(&[usize], &[u8])], out: &mut BytesMut) {
    if let Some((_, err)) = parts.iter().find(|(_, r)| reply::is_error(r)) {
        out.put_slice(err);
        return;
    }
    match merge {
        Merge::Values => {
            let mut values: Vec<Option<&[u8]>> = vec![None; keys];
            for (key_indices, r) in parts {
                let Some(elements) = reply::array_elements(r).filter(|e| e.len() == key_indices.len()) else {
                    return unexpected(out, r);
                };
                for (&k, e) in key_indices.iter().zip(elements) {
                    if let Some(slot) = values.get_mut(k) {
                        *slot = Some(e);
                    }
                }
            }
            out.put_slice(format!("*{keys}\r\n").as_bytes());
            for v in values {
                out.put_slice(v.unwrap_or(b"$-1\r\n"));
            }
        }
        Merge::AllOk => {
            if let Some((_, r)) = parts.iter().find(|(_, r)| *r != b"+OK\r\n") {
                return unexpected(out, r);
            }
            out.put_slice(b"+OK\r\n");
        }
        Merge::Sum => {
            let mut sum: i64 = 0;
            for (_, r) in parts {
                let Some(n) = reply::integer(r) else {
                    return unexpected(out, r);
                };
                sum = sum.saturating_add(n);
            }
            out.put_slice(format!(":{sum}\r\n").as_bytes());
        }
    }
}

fn unexpected(out: &mut BytesMut, r: &[u8]) {
    tracing::warn!(reply = %String::from_utf8_lossy(&r[..r.len().min(64)]), "proxy: unexpected reply to a split request");
    out.put_slice(b"-ERR proxy: unexpected reply from a key owner\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::registry;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    fn spec(name: &str) -> &'static CommandSpec {
        registry().lookup(name.as_bytes()).expect("known command").1
    }

    /// Owner of a slot: two fake nodes split at slot 8192.
    fn owner(slot: Slot) -> &'static str {
        if slot < 8192 {
            "a"
        } else {
            "b"
        }
    }

    #[test]
    fn single_slot_and_keyless_requests_go_whole() {
        assert_eq!(plan(spec("ping"), &args(&["PING"]), owner), Plan::Keyless);
        let get = args(&["GET", "foo"]);
        assert_eq!(plan(spec("get"), &get, owner), Plan::Whole(owner(key_slot(b"foo"))));
        let mget = args(&["MGET", "{u}1", "{u}2"]);
        assert_eq!(plan(spec("mget"), &mget, owner), Plan::Whole(owner(key_slot(b"u"))));
    }

    #[test]
    fn unsplittable_multi_slot_requests_are_crossslot() {
        assert_eq!(
            plan(spec("rename"), &args(&["RENAME", "a", "b"]), owner),
            Plan::CrossSlot
        );
        assert_eq!(
            plan(spec("msetnx"), &args(&["MSETNX", "a", "1", "b", "2"]), owner),
            Plan::CrossSlot
        );
    }

    #[test]
    fn mget_splits_per_slot_and_merges_in_request_order() {
        // key_slot("a") = 15495, "b" = 3300, "c" = 7365.
        let req = args(&["MGET", "a", "b", "a", "c"]);
        let Plan::Split { merge: m, keys, parts } = plan(spec("mget"), &req, owner) else {
            panic!("split")
        };
        assert_eq!((m, keys), (Merge::Values, 4));
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].args, args(&["MGET", "a", "a"]));
        assert_eq!(parts[0].keys, vec![0, 2]);
        assert_eq!(parts[0].target, "b");
        assert_eq!(parts[1].args, args(&["MGET", "b"]));
        assert_eq!(parts[2].keys, vec![3]);
        let replies: Vec<&[u8]> = vec![
            b"*2\r\n$2\r\nva\r\n$2\r\nva\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$2\r\nvc\r\n",
        ];
        let merged: Vec<(&[usize], &[u8])> = parts.iter().map(|p| &p.keys[..]).zip(replies).collect();
        let mut out = BytesMut::new();
        merge(m, keys, &merged, &mut out);
        assert_eq!(&out[..], b"*4\r\n$2\r\nva\r\n$-1\r\n$2\r\nva\r\n$2\r\nvc\r\n");
    }

    #[test]
    fn mset_carries_values_and_needs_every_ok() {
        let req = args(&["MSET", "a", "1", "b", "2"]);
        let Plan::Split { merge: m, keys, parts } = plan(spec("mset"), &req, owner) else {
            panic!("split")
        };
        assert_eq!(parts[0].args, args(&["MSET", "a", "1"]));
        assert_eq!(parts[1].args, args(&["MSET", "b", "2"]));
        let mut out = BytesMut::new();
        merge(m, keys, &[(&[0], b"+OK\r\n"), (&[1], b"+OK\r\n")], &mut out);
        assert_eq!(&out[..], b"+OK\r\n");
        let mut out = BytesMut::new();
        merge(m, keys, &[(&[0], b"+OK\r\n"), (&[1], b"-CLUSTERDOWN x\r\n")], &mut out);
        assert_eq!(&out[..], b"-CLUSTERDOWN x\r\n");
        assert_eq!(
            plan(spec("mset"), &args(&["MSET", "a", "1", "b"]), owner),
            Plan::Keyless
        );
    }

    #[test]
    fn counting_commands_sum() {
        let req = args(&["DEL", "a", "b", "c"]);
        let Plan::Split { merge: m, keys, parts } = plan(spec("del"), &req, owner) else {
            panic!("split")
        };
        assert_eq!(m, Merge::Sum);
        assert_eq!(parts.len(), 3);
        let mut out = BytesMut::new();
        merge(
            m,
            keys,
            &[(&[0], b":1\r\n"), (&[1], b":0\r\n"), (&[2], b":1\r\n")],
            &mut out,
        );
        assert_eq!(&out[..], b":2\r\n");
        let mut out = BytesMut::new();
        merge(m, keys, &[(&[0], b":1\r\n"), (&[1], b"+OK\r\n")], &mut out);
        assert!(out.starts_with(b"-ERR proxy"));
    }

    #[test]
    fn a_short_mget_reply_is_an_error_not_a_panic() {
        let mut out = BytesMut::new();
        merge(Merge::Values, 2, &[(&[0, 1], b"*1\r\n$1\r\nx\r\n")], &mut out);
        assert!(out.starts_with(b"-ERR proxy"));
    }
}
