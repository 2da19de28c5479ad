//! The set type: distinct byte-string members, with its own byte count so that memory
//! accounting stays exact without walking the value.
//!
//! Two forms, chosen by content like Redis 7.0's encodings:
//! - compact: a sorted vector of `i64` while every member is an integer in canonical
//!   form (Redis' intset) and there are at most `max_intset` of them (Redis'
//!   `set-max-intset-entries`, [`SET_MAX_INTSET_ENTRIES`] by default); 8 bytes a
//!   member, binary search for membership (9 probes at the default limit);
//! - table: members in a dense vector indexed by a hash table of positions (removal
//!   swaps the last member into the hole), as in `hash.rs`.
//!
//! A table goes back to the compact form when removals leave it all-integer with at
//! most half of `max_intset` members (half, so that adding and removing
//! around the limit does not convert back and forth). Either way, membership is O(1)
//! and a uniformly random member is one index away ([`Set::at`]).

use std::hash::BuildHasher;
use std::ops::Deref;

use hashbrown::{DefaultHashBuilder, HashTable};

/// Default largest number of members of the compact form (Redis'
/// `set-max-intset-entries`).
pub const SET_MAX_INTSET_ENTRIES: usize = 512;

/// Bytes charged per member of the compact form.
const INT_MEMBER: usize = 8;

/// Per-member overhead charged in the table form (a boxed slice, its allocation's
/// rounding and a table slot).
const SET_MEMBER_OVERHEAD: usize = 32;

/// Fixed charge for a set (the struct and its vectors' and table's headers).
const SET_BASE: usize = 64;

/// A member as bytes: borrowed from the table form, or an integer of the compact form
/// rendered in place (at most 20 characters: `-9223372036854775808`).
#[derive(Debug, Clone, Copy)]
pub enum SetMember<'a> {
    Bytes(&'a [u8]),
    Int { text: [u8; 20], len: u8 },
}

impl SetMember<'_> {
    fn int(n: i64) -> SetMember<'static> {
        let mut text = [0u8; 20];
        let mut digits = [0u8; 20];
        let mut v = n.unsigned_abs();
        let mut d = 0;
        loop {
            digits[d] = b'0' + (v % 10) as u8;
            d += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let mut len = 0;
        if n < 0 {
            text[0] = b'-';
            len = 1;
        }
        for &c in digits[..d].iter().rev() {
            text[len] = c;
            len += 1;
        }
        SetMember::Int { text, len: len as u8 }
    }
}

impl Deref for SetMember<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SetMember::Bytes(b) => b,
            SetMember::Int { text, len } => &text[..usize::from(*len)],
        }
    }
}

/// The member as an integer when it is one in canonical form (what Redis' intset
/// holds): no sign but a leading '-', no leading zeros, no "-0", within `i64`.
fn as_int(m: &[u8]) -> Option<i64> {
    let digits = m.strip_prefix(b"-").unwrap_or(m);
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == m.len(),
        [first, ..] => *first != b'0' && digits.len() <= 19,
    };
    if !canonical || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(m).ok()?.parse().ok()
}

/// The table form.
#[derive(Debug, Clone, Default)]
struct Table {
    members: Vec<Box<[u8]>>,
    index: HashTable<usize>,
    hasher: DefaultHashBuilder,
    /// Sum of member lengths plus the per-member overhead.
    bytes: usize,
    /// Members that are not canonical integers.
    non_ints: usize,
}

impl Table {
    fn position(&self, m: &[u8]) -> Option<usize> {
        let members = &self.members;
        self.index
            .find(self.hasher.hash_one(m), |&i| &*members[i] == m)
            .copied()
    }

    fn insert(&mut self, m: &[u8]) -> bool {
        if self.position(m).is_some() {
            return false;
        }
        let h = self.hasher.hash_one(m);
        self.members.push(m.into());
        let (members, hasher) = (&self.members, &self.hasher);
        self.index
            .insert_unique(h, members.len() - 1, |&j| hasher.hash_one(&*members[j]));
        self.bytes += m.len() + SET_MEMBER_OVERHEAD;
        self.non_ints += usize::from(as_int(m).is_none());
        true
    }

    fn remove(&mut self, m: &[u8]) -> bool {
        let h = self.hasher.hash_one(m);
        let members = &self.members;
        let Ok(found) = self.index.find_entry(h, |&i| &*members[i] == m) else {
            return false;
        };
        let (i, _) = found.remove();
        let gone = self.members.swap_remove(i);
        self.bytes -= gone.len() + SET_MEMBER_OVERHEAD;
        self.non_ints -= usize::from(as_int(&gone).is_none());
        if let Some(moved) = self.members.get(i) {
            // The former last member now lives at `i`.
            let last = self.members.len();
            if let Some(pos) = self.index.find_mut(self.hasher.hash_one(&**moved), |&j| j == last) {
                *pos = i;
            }
        }
        let len = self.members.len();
        if self.members.capacity() > 64 && len < self.members.capacity() / 4 {
            self.members.shrink_to(len * 2);
            let (members, hasher) = (&self.members, &self.hasher);
            self.index.shrink_to(len * 2, |&j| hasher.hash_one(&*members[j]));
        }
        true
    }
}

#[derive(Debug, Clone)]
enum Form {
    Compact(Vec<i64>),
    Table(Table),
}

/// A Redis set.
#[derive(Debug, Clone)]
pub struct Set {
    form: Form,
}

impl Default for Set {
    fn default() -> Set {
        Set {
            form: Form::Compact(Vec::new()),
        }
    }
}

impl Set {
    pub fn len(&self) -> usize {
        match &self.form {
            Form::Compact(v) => v.len(),
            Form::Table(t) => t.members.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the set is in its compact (all-integer) form.
    pub fn is_compact(&self) -> bool {
        matches!(self.form, Form::Compact(_))
    }

    /// The form, as Redis' `OBJECT ENCODING` names it.
    pub fn encoding(&self) -> &'static str {
        if self.is_compact() {
            "intset"
        } else {
            "hashtable"
        }
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        match &self.form {
            Form::Compact(v) => as_int(m).is_some_and(|n| v.binary_search(&n).is_ok()),
            Form::Table(t) => t.position(m).is_some(),
        }
    }

    /// The member at position `i` (0..len), in no particular order; used to pick
    /// random members.
    pub fn at(&self, i: usize) -> Option<SetMember<'_>> {
        match &self.form {
            Form::Compact(v) => v.get(i).map(|&n| SetMember::int(n)),
            Form::Table(t) => t.members.get(i).map(|m| SetMember::Bytes(m)),
        }
    }

    /// Adds a member; returns true when it is new.
    pub fn insert(&mut self, m: &[u8]) -> bool {
        self.insert_within(m, SET_MAX_INTSET_ENTRIES)
    }

    /// Adds a member, with at most `max_intset` members in the compact form; returns
    /// true when it is new.
    pub fn insert_within(&mut self, m: &[u8], max_intset: usize) -> bool {
        if let Form::Compact(v) = &mut self.form {
            if let Some(n) = as_int(m) {
                match v.binary_search(&n) {
                    Ok(_) => return false,
                    Err(at) if v.len() < max_intset => {
                        v.insert(at, n);
                        return true;
                    }
                    Err(_) => {}
                }
            }
            self.convert_to_table();
        }
        match &mut self.form {
            Form::Table(t) => t.insert(m),
            Form::Compact(_) => false,
        }
    }

    /// Removes a member; returns true when it was there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        self.remove_within(m, SET_MAX_INTSET_ENTRIES)
    }

    /// Removes a member; a table left all-integer with at most half of `max_intset`
    /// members becomes compact. Returns true when the member was there.
    pub fn remove_within(&mut self, m: &[u8], max_intset: usize) -> bool {
        match &mut self.form {
            Form::Compact(v) => {
                let Some(Ok(at)) = as_int(m).map(|n| v.binary_search(&n)) else {
                    return false;
                };
                v.remove(at);
                if v.capacity() > 64 && v.len() < v.capacity() / 4 {
                    v.shrink_to(v.len() * 2);
                }
                true
            }
            Form::Table(t) => {
                if !t.remove(m) {
                    return false;
                }
                if t.non_ints == 0 && t.members.len() <= max_intset / 2 {
                    let mut ints: Vec<i64> = t.members.iter().filter_map(|m| as_int(m)).collect();
                    ints.sort_unstable();
                    self.form = Form::Compact(ints);
                }
                true
            }
        }
    }

    fn convert_to_table(&mut self) {
        if let Form::Compact(v) = &self.form {
            let mut t = Table::default();
            t.members.reserve(v.len() + 1);
            for &n in v {
                t.insert(&SetMember::int(n));
            }
            self.form = Form::Table(t);
        }
    }

    /// The members, in no particular order (ascending for the compact form).
    pub fn iter(&self) -> impl Iterator<Item = SetMember<'_>> {
        (0..self.len()).filter_map(|i| self.at(i))
    }

    pub fn mem_size(&self) -> usize {
        SET_BASE
            + match &self.form {
                Form::Compact(v) => INT_MEMBER * v.len(),
                Form::Table(t) => t.bytes,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// What the model's contents cost in the form `s` is in.
    fn charge(s: &Set, model: &HashSet<Vec<u8>>) -> usize {
        SET_BASE
            + if s.is_compact() {
                INT_MEMBER * model.len()
            } else {
                model.iter().map(|m| m.len() + SET_MEMBER_OVERHEAD).sum()
            }
    }

    fn member() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            // Mostly integers, so that sets stay compact and cross the limit.
            4 => (0u16..700).prop_map(|n| n.to_string().into_bytes()),
            1 => proptest::sample::select(&["-0", "01", "+1", "", "a", "1.0", "-5", "9223372036854775808"][..])
                .prop_map(|s| s.as_bytes().to_vec()),
        ]
    }

    proptest! {
        /// Any sequence of inserts and removes agrees with a plain set, the form follows
        /// the content, and the byte charge always equals what the model's contents cost.
        #[test]
        fn set_matches_a_model(
            limit in proptest::sample::select(&[0usize, 1, 4, 100, SET_MAX_INTSET_ENTRIES][..]),
            ops in proptest::collection::vec((0u8..3, member()), 0..1500),
        ) {
            let mut s = Set::default();
            let mut model = HashSet::<Vec<u8>>::new();
            for (op, m) in ops {
                if op < 2 {
                    prop_assert_eq!(s.insert_within(&m, limit), model.insert(m.clone()));
                } else {
                    prop_assert_eq!(s.remove_within(&m, limit), model.remove(&m));
                }
                prop_assert_eq!(s.len(), model.len());
                prop_assert_eq!(s.mem_size(), charge(&s, &model));
                let all_ints = model.iter().all(|m| as_int(m).is_some());
                if s.is_compact() {
                    prop_assert!(all_ints && model.len() <= limit);
                } else {
                    prop_assert!(!all_ints || model.len() > limit / 2);
                }
            }
            for m in &model {
                prop_assert!(s.contains(m));
            }
            let listed: HashSet<Vec<u8>> = s.iter().map(|m| m.to_vec()).collect();
            prop_assert_eq!(&listed, &model);
            prop_assert_eq!(s.iter().count(), model.len());
            prop_assert!(s.at(s.len()).is_none());
        }
    }

    #[test]
    fn canonical_integers_only_are_compact() {
        for good in ["0", "-1", "9223372036854775807", "-9223372036854775808", "10"] {
            assert_eq!(as_int(good.as_bytes()).map(|n| n.to_string()), Some(good.to_string()));
            assert_eq!(&*SetMember::int(good.parse().expect("an i64")), good.as_bytes());
        }
        for bad in [
            "",
            "-",
            "-0",
            "01",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "9223372036854775808",
            "0x1",
            "-01",
        ] {
            assert_eq!(as_int(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_set_converts_to_a_table_and_back_with_exact_charges() {
        let mut s = Set::default();
        let empty = s.mem_size();
        for i in 0..100u32 {
            assert!(s.insert((1_000_000 + i).to_string().as_bytes()));
        }
        assert!(s.is_compact());
        let compact = s.mem_size();
        assert_eq!(compact, empty + 100 * INT_MEMBER);
        assert!(s.insert(b"x"));
        assert!(!s.is_compact());
        assert_eq!(
            s.mem_size(),
            empty + 100 * (7 + SET_MEMBER_OVERHEAD) + 1 + SET_MEMBER_OVERHEAD
        );
        assert!(s.contains(b"1000042") && s.contains(b"x") && !s.contains(b"y"));
        assert!(s.remove(b"x"));
        assert!(s.is_compact());
        assert_eq!(s.mem_size(), compact);
        for i in 0..SET_MAX_INTSET_ENTRIES as i64 {
            s.insert(i.to_string().as_bytes());
        }
        assert!(!s.is_compact(), "more than {SET_MAX_INTSET_ENTRIES} members");
        for i in 0..SET_MAX_INTSET_ENTRIES as i64 {
            assert!(s.remove(i.to_string().as_bytes()));
        }
        assert!(s.is_compact());
        assert_eq!(s.mem_size(), compact);
        for i in 0..100u32 {
            assert!(s.remove((1_000_000 + i).to_string().as_bytes()));
        }
        assert!(s.is_empty());
        assert_eq!(s.mem_size(), empty);
    }

    #[test]
    fn the_compact_limit_is_a_parameter_and_the_form_has_redis_name() {
        let mut s = Set::default();
        assert_eq!(s.encoding(), "intset");
        for i in 0..4 {
            assert!(s.insert_within(i.to_string().as_bytes(), 4));
        }
        assert_eq!(s.encoding(), "intset");
        assert!(s.insert_within(b"4", 4));
        assert_eq!(s.encoding(), "hashtable");
        assert!(s.remove_within(b"4", 4) && s.remove_within(b"3", 4));
        assert_eq!(s.encoding(), "hashtable", "3 members: more than half of 4");
        assert!(s.remove_within(b"2", 4));
        assert_eq!(s.encoding(), "intset");
        let mut none = Set::default();
        assert!(none.insert_within(b"1", 0));
        assert_eq!(none.encoding(), "hashtable", "set-max-intset-entries 0");
    }
}
