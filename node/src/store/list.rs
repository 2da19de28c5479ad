//! The list type: a sequence of byte strings, cheap at both ends, packed so that a
//! list of short elements costs little more than its payload.
//!
//! # Layout and cost
//! The elements' bytes lie back to back in one buffer, with room kept free in front
//! of the first one so that pushing at the head is as cheap as pushing at the tail;
//! a second deque holds each element's length (4 bytes). So one element costs its
//! length plus [`LIST_ELEMENT_OVERHEAD`] (4) bytes, and a list [`LIST_BASE`] bytes
//! more: a feed of 100 ids of 12 bytes is charged 1,600 + 72 bytes, against 1,200 of
//! payload. That is the charge [`List::mem_size`] reports, kept exact incrementally
//! (the buffers' spare capacity is not counted, as for hashes; it is given back after
//! large removals).
//!
//! # Complexity
//! Pushing and popping at either end: O(1) amortised (plus the element's length).
//! Finding element `i`: O(min(i, len - i)) additions of lengths, no element bytes
//! read. Changing the middle (LSET with a new length, LINSERT, LREM): O(bytes after
//! the change), as Redis documents O(N) for those.

use std::collections::VecDeque;

/// Bytes charged per element beyond its own length: its entry in the length deque.
pub const LIST_ELEMENT_OVERHEAD: usize = 4;

/// Fixed charge for a list (the struct, the headers of its two buffers).
pub const LIST_BASE: usize = 72;

/// Longest element a list holds (its length is kept in 32 bits).
pub const LIST_MAX_ELEMENT: usize = u32::MAX as usize;

/// Free room made in front of the first element when the head needs more, at least.
const MIN_FRONT_ROOM: usize = 16;

/// A Redis list.
#[derive(Debug, Clone, Default)]
pub struct List {
    /// The elements' bytes are `buf[head..]`; `buf[..head]` is free room for pushes
    /// at the head.
    buf: Vec<u8>,
    head: usize,
    lens: VecDeque<u32>,
}

impl List {
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Bytes of all elements together.
    fn payload(&self) -> usize {
        self.buf.len() - self.head
    }

    /// The charge: elements' bytes, their lengths, and the base.
    pub fn mem_size(&self) -> usize {
        LIST_BASE + self.payload() + LIST_ELEMENT_OVERHEAD * self.lens.len()
    }

    fn len_at(&self, i: usize) -> usize {
        self.lens.get(i).map_or(0, |&l| l as usize)
    }

    /// Offset in `buf` where element `i` (0..=len) starts, summing lengths from the
    /// nearer end.
    fn offset(&self, i: usize) -> usize {
        if i <= self.lens.len() / 2 {
            self.head + self.lens.iter().take(i).map(|&l| l as usize).sum::<usize>()
        } else {
            self.buf.len() - self.lens.iter().skip(i).map(|&l| l as usize).sum::<usize>()
        }
    }

    fn length_of(value: &[u8]) -> u32 {
        u32::try_from(value.len()).unwrap_or(u32::MAX)
    }

    /// `value`, cut to the longest element a list holds, so that the lengths always
    /// match the bytes. Commands refuse longer elements before they get here.
    fn clip(value: &[u8]) -> &[u8] {
        &value[..value.len().min(LIST_MAX_ELEMENT)]
    }

    pub fn push_back(&mut self, value: &[u8]) {
        let value = Self::clip(value);
        self.buf.extend_from_slice(value);
        self.lens.push_back(Self::length_of(value));
    }

    pub fn push_front(&mut self, value: &[u8]) {
        let value = Self::clip(value);
        if self.head < value.len() {
            // Make room in front: as much as the list holds, so that a run of pushes
            // at the head costs O(1) each, amortised.
            let room = value.len().max(self.payload()).max(MIN_FRONT_ROOM);
            let mut buf = Vec::with_capacity(room + self.payload());
            buf.resize(room, 0);
            buf.extend_from_slice(&self.buf[self.head..]);
            self.buf = buf;
            self.head = room;
        }
        let start = self.head - value.len();
        self.buf[start..self.head].copy_from_slice(value);
        self.head = start;
        self.lens.push_front(Self::length_of(value));
    }

    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        let l = self.lens.pop_front()? as usize;
        let v = self.buf[self.head..self.head + l].to_vec();
        self.head += l;
        self.settle();
        Some(v)
    }

    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        let l = self.lens.pop_back()? as usize;
        let start = self.buf.len() - l;
        let v = self.buf[start..].to_vec();
        self.buf.truncate(start);
        self.settle();
        Some(v)
    }

    /// Removes the first `n` elements (all if fewer).
    pub fn drain_front(&mut self, n: usize) {
        let n = n.min(self.len());
        let bytes: usize = self.lens.drain(..n).map(|l| l as usize).sum();
        self.head += bytes;
        self.settle();
    }

    /// Removes the last `n` elements (all if fewer).
    pub fn drain_back(&mut self, n: usize) {
        let n = n.min(self.len());
        let keep = self.len() - n;
        let bytes: usize = self.lens.drain(keep..).map(|l| l as usize).sum();
        self.buf.truncate(self.buf.len() - bytes);
        self.settle();
    }

    /// Element `i` (0 is the head).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len() {
            return None;
        }
        let start = self.offset(i);
        Some(&self.buf[start..start + self.len_at(i)])
    }

    /// Replaces element `i`; false when out of range.
    pub fn set(&mut self, i: usize, value: &[u8]) -> bool {
        let value = Self::clip(value);
        if i >= self.len() {
            return false;
        }
        let start = self.offset(i);
        let old = self.len_at(i);
        self.buf.splice(start..start + old, value.iter().copied());
        self.lens[i] = Self::length_of(value);
        self.settle();
        true
    }

    /// Inserts `value` so that it becomes element `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, value: &[u8]) {
        let value = Self::clip(value);
        if i == 0 {
            return self.push_front(value);
        }
        if i >= self.len() {
            return self.push_back(value);
        }
        let start = self.offset(i);
        self.buf.splice(start..start, value.iter().copied());
        self.lens.insert(i, Self::length_of(value));
    }

    /// Removes up to `count` elements equal to `value` (all when `count` is 0),
    /// searching from the tail when `from_tail`; returns how many were removed.
    pub fn remove_equal(&mut self, value: &[u8], count: usize, from_tail: bool) -> usize {
        let n = self.len();
        let mut remove = vec![false; n];
        let mut removed = 0;
        let mut visit = |i: usize, e: &[u8]| {
            if (count == 0 || removed < count) && e == value {
                remove[i] = true;
                removed += 1;
            }
        };
        if from_tail {
            for (i, e) in self.iter().enumerate().rev() {
                visit(i, e);
            }
        } else {
            for (i, e) in self.iter().enumerate() {
                visit(i, e);
            }
        }
        if removed == 0 {
            return 0;
        }
        let mut buf = Vec::with_capacity(self.payload());
        let mut lens = VecDeque::with_capacity(n - removed);
        for (e, gone) in self.iter().zip(&remove) {
            if !gone {
                buf.extend_from_slice(e);
                lens.push_back(Self::length_of(e));
            }
        }
        self.buf = buf;
        self.head = 0;
        self.lens = lens;
        removed
    }

    /// The elements from the head.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            buf: &self.buf,
            front: self.head,
            back: self.buf.len(),
            lens: self.lens.iter(),
        }
    }

    /// Elements `start..end` (clamped to the list), from the head.
    pub fn range(&self, start: usize, end: usize) -> Iter<'_> {
        let end = end.min(self.len());
        let start = start.min(end);
        Iter {
            buf: &self.buf,
            front: self.offset(start),
            back: self.offset(end),
            lens: self.lens.range(start..end),
        }
    }

    /// Gives memory back: drops the room in front once it outgrows the elements, and
    /// spare capacity after large removals.
    fn settle(&mut self) {
        if self.lens.is_empty() {
            *self = List::default();
            return;
        }
        let payload = self.payload();
        if self.head > MIN_FRONT_ROOM && self.head > payload {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        if self.buf.capacity() > 64 && self.buf.capacity() > 4 * self.buf.len() {
            self.buf.shrink_to(2 * self.buf.len());
        }
        if self.lens.capacity() > 64 && self.lens.capacity() > 4 * self.lens.len() {
            self.lens.shrink_to(2 * self.lens.len());
        }
    }
}

/// Iterator over a list's elements (both ways).
pub struct Iter<'a> {
    buf: &'a [u8],
    front: usize,
    back: usize,
    lens: std::collections::vec_deque::Iter<'a, u32>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let l = *self.lens.next()? as usize;
        let e = &self.buf[self.front..self.front + l];
        self.front += l;
        Some(e)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.lens.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        let l = *self.lens.next_back()? as usize;
        self.back -= l;
        Some(&self.buf[self.back..self.back + l])
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        PushFront(Vec<u8>),
        PushBack(Vec<u8>),
        PopFront,
        PopBack,
        DrainFront(usize),
        DrainBack(usize),
        Set(usize, Vec<u8>),
        Insert(usize, Vec<u8>),
        RemoveEqual(u8, usize, bool),
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (0u8..4).prop_map(|b| vec![b; usize::from(b)]),
            proptest::collection::vec(0u8..4, 0..40),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => value().prop_map(Op::PushFront),
            3 => value().prop_map(Op::PushBack),
            1 => Just(Op::PopFront),
            1 => Just(Op::PopBack),
            1 => (0usize..5).prop_map(Op::DrainFront),
            1 => (0usize..5).prop_map(Op::DrainBack),
            1 => (0usize..30, value()).prop_map(|(i, v)| Op::Set(i, v)),
            1 => (0usize..30, value()).prop_map(|(i, v)| Op::Insert(i, v)),
            1 => (0u8..4, 0usize..3, any::<bool>()).prop_map(|(b, c, t)| Op::RemoveEqual(b, c, t)),
        ]
    }

    fn charge(model: &VecDeque<Vec<u8>>) -> usize {
        LIST_BASE + model.iter().map(|e| e.len() + LIST_ELEMENT_OVERHEAD).sum::<usize>()
    }

    proptest! {
        /// Any sequence of operations agrees with a `VecDeque` of vectors, and the
        /// charge always equals what the model's contents cost.
        #[test]
        fn list_matches_a_model(ops in proptest::collection::vec(op(), 0..300)) {
            let mut l = List::default();
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            for op in ops {
                match op {
                    Op::PushFront(v) => { l.push_front(&v); model.push_front(v); }
                    Op::PushBack(v) => { l.push_back(&v); model.push_back(v); }
                    Op::PopFront => prop_assert_eq!(l.pop_front(), model.pop_front()),
                    Op::PopBack => prop_assert_eq!(l.pop_back(), model.pop_back()),
                    Op::DrainFront(n) => { l.drain_front(n); model.drain(..n.min(model.len())); }
                    Op::DrainBack(n) => {
                        l.drain_back(n);
                        model.truncate(model.len() - n.min(model.len()));
                    }
                    Op::Set(i, v) => {
                        let ok = i < model.len();
                        prop_assert_eq!(l.set(i, &v), ok);
                        if ok { model[i] = v; }
                    }
                    Op::Insert(i, v) => {
                        let i = i.min(model.len());
                        l.insert(i, &v);
                        model.insert(i, v);
                    }
                    Op::RemoveEqual(b, count, from_tail) => {
                        let target = vec![b; usize::from(b)];
                        let mut removed = 0;
                        let idx: Vec<usize> = if from_tail {
                            (0..model.len()).rev().collect()
                        } else {
                            (0..model.len()).collect()
                        };
                        let mut gone = Vec::new();
                        for i in idx {
                            if (count == 0 || removed < count) && model[i] == target {
                                gone.push(i);
                                removed += 1;
                            }
                        }
                        gone.sort_unstable();
                        for i in gone.into_iter().rev() { model.remove(i); }
                        prop_assert_eq!(l.remove_equal(&target, count, from_tail), removed);
                    }
                }
                prop_assert_eq!(l.len(), model.len());
                prop_assert_eq!(l.mem_size(), charge(&model));
            }
            let all: Vec<&[u8]> = l.iter().collect();
            let want: Vec<&[u8]> = model.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(&all, &want);
            let rev: Vec<&[u8]> = l.iter().rev().collect();
            let want_rev: Vec<&[u8]> = model.iter().rev().map(Vec::as_slice).collect();
            prop_assert_eq!(rev, want_rev);
            for i in 0..=model.len() {
                prop_assert_eq!(l.get(i), model.get(i).map(Vec::as_slice));
                for j in i..=model.len() {
                    let got: Vec<&[u8]> = l.range(i, j).collect();
                    prop_assert_eq!(&got[..], &want[i..j]);
                }
            }
        }
    }

    #[test]
    fn a_queue_and_a_stack_stay_small_and_empty_lists_cost_the_base() {
        let mut l = List::default();
        assert_eq!(l.mem_size(), LIST_BASE);
        for i in 0..100_000u32 {
            l.push_back(format!("id:{i:08}").as_bytes());
            if i >= 100 {
                assert_eq!(l.pop_front(), Some(format!("id:{:08}", i - 100).into_bytes()));
            }
        }
        assert_eq!(l.len(), 100);
        assert_eq!(l.mem_size(), LIST_BASE + 100 * (11 + LIST_ELEMENT_OVERHEAD));
        assert!(l.buf.capacity() < 8 * 1100, "room kept: {}", l.buf.capacity());
        for i in 0..100_000u32 {
            l.push_front(format!("{i}").as_bytes());
            assert_eq!(l.pop_front(), Some(format!("{i}").into_bytes()));
        }
        assert!(l.buf.capacity() < 8 * 1100, "room kept: {}", l.buf.capacity());
        l.drain_back(1000);
        assert!(l.is_empty());
        assert_eq!(l.mem_size(), LIST_BASE);
    }
}
