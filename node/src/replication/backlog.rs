//! The replication backlog of one primary: a bounded in-memory log of records, each
//! with an offset that grows by one per record. Old records are dropped once the log
//! holds more than its byte cap; a replica whose position was dropped needs a full copy.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::record::{Record, Tag};
use super::SlotSet;
use ringcache_core::slot::Slot;

/// Default byte cap of the backlog.
pub const DEFAULT_BACKLOG_BYTES: usize = 64 * 1024 * 1024;

/// Bytes charged per record beyond its body (queue slot, `Bytes` header).
const RECORD_OVERHEAD: usize = 48;

/// At most this many records are scanned per [`Backlog::read`] call, so the lock is
/// held briefly even when most records are filtered out.
const MAX_SCAN: usize = 16 * 1024;

struct Inner {
    records: VecDeque<(Slot, Record)>,
    /// Offset of `records[0]` (or of the next record when empty).
    first: u64,
    bytes: usize,
    cap: usize,
}

impl Inner {
    fn next(&self) -> u64 {
        self.first + self.records.len() as u64
    }
}

/// Records read from the backlog: those matching the filter, and the offset after the
/// last record scanned.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<(u64, Record)>,
    pub next: u64,
}

/// The position asked for is no longer (or not yet) in the backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offset {asked} is outside the backlog [{first}, {next}]")]
pub struct OutOfRange {
    pub asked: u64,
    pub first: u64,
    pub next: u64,
}

/// A bounded log of replication records. Offsets start at 1; 0 means "nothing".
pub struct Backlog {
    inner: Mutex<Inner>,
    /// The next offset to be assigned, published for senders waiting for records.
    next_tx: watch::Sender<u64>,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.inner.lock();
        f.debug_struct("Backlog")
            .field("first", &g.first)
            .field("next", &g.next())
            .field("bytes", &g.bytes)
            .finish()
    }
}

impl Backlog {
    pub fn new(cap: usize) -> Backlog {
        Backlog {
            inner: Mutex::new(Inner {
                records: VecDeque::new(),
                first: 1,
                bytes: 0,
                cap,
            }),
            next_tx: watch::Sender::new(1),
        }
    }

    /// Changes the byte cap (takes effect on the next append).
    pub fn set_cap(&self, cap: usize) {
        self.inner.lock().cap = cap;
    }

    /// Appends a record of `slot`; returns its offset. The newest record is always kept,
    /// even when it alone exceeds the cap.
    pub fn append(&self, slot: Slot, record: Record) -> u64 {
        let mut g = self.inner.lock();
        let offset = g.next();
        g.bytes += record.body.len() + RECORD_OVERHEAD;
        g.records.push_back((slot, record));
        while g.bytes > g.cap && g.records.len() > 1 {
            if let Some((_, old)) = g.records.pop_front() {
                g.bytes -= old.body.len() + RECORD_OVERHEAD;
                g.first += 1;
            }
        }
        let next = g.next();
        self.next_tx.send_replace(next);
        offset
    }

    /// The offset the next record will get (the last record's offset + 1).
    pub fn next_offset(&self) -> u64 {
        self.inner.lock().next()
    }

    /// (first offset held, next offset, bytes held).
    pub fn bounds(&self) -> (u64, u64, usize) {
        let g = self.inner.lock();
        (g.first, g.next(), g.bytes)
    }

    /// Whether a replica that wants `from` next can resume from the backlog.
    pub fn contains(&self, from: u64) -> bool {
        let g = self.inner.lock();
        from >= g.first && from <= g.next()
    }

    /// Records from offset `from` on whose slot is in `slots`, up to about `max_bytes`
    /// of bodies.
    pub fn read(&self, from: u64, max_bytes: usize, slots: &SlotSet) -> Result<Batch, OutOfRange> {
        let g = self.inner.lock();
        let next = g.next();
        if from < g.first || from > next {
            return Err(OutOfRange {
                asked: from,
                first: g.first,
                next,
            });
        }
        let start = (from - g.first) as usize;
        let mut batch = Batch {
            records: Vec::new(),
            next: from,
        };
        let mut bytes = 0;
        for (i, (slot, rec)) in g.records.iter().enumerate().skip(start).take(MAX_SCAN) {
            if bytes >= max_bytes {
                break;
            }
            let offset = g.first + i as u64;
            if slots.contains(*slot) || rec.tag == Tag::Flush {
                bytes += rec.body.len() + RECORD_OVERHEAD;
                batch.records.push((offset, rec.clone()));
            }
            batch.next = offset + 1;
        }
        Ok(batch)
    }

    /// A receiver of the next offset, to wait for new records.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.next_tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replication::record::Record;

    fn rec(n: usize) -> Record {
        Record::del(&vec![b'k'; n])
    }

    #[test]
    fn offsets_grow_and_old_records_are_dropped_by_bytes() {
        let b = Backlog::new(10 * (100 + RECORD_OVERHEAD + 8));
        let all = SlotSet::all();
        for i in 0..100u64 {
            assert_eq!(b.append(1, rec(100)), i + 1);
        }
        let (first, next, bytes) = b.bounds();
        assert_eq!(next, 101);
        assert!(first > 80 && first < 100, "{first}");
        assert!(bytes <= 10 * (100 + RECORD_OVERHEAD + 8));
        assert!(b.read(first - 1, usize::MAX, &all).is_err());
        assert!(b.read(next + 1, usize::MAX, &all).is_err());
        let batch = b.read(first, usize::MAX, &all).unwrap();
        assert_eq!(batch.records.len() as u64, next - first);
        assert_eq!(batch.records[0].0, first);
        assert_eq!(batch.next, next);
        let empty = b.read(next, usize::MAX, &all).unwrap();
        assert!(empty.records.is_empty());
        assert_eq!(empty.next, next);
    }

    #[test]
    fn reads_filter_by_slot_but_advance_over_everything() {
        let b = Backlog::new(usize::MAX);
        for i in 0..10u16 {
            b.append(i % 2, rec(4));
        }
        let mut odd = SlotSet::empty();
        odd.insert(1);
        let batch = b.read(1, usize::MAX, &odd).unwrap();
        assert_eq!(
            batch.records.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![2, 4, 6, 8, 10]
        );
        assert_eq!(batch.next, 11);
        let small = b.read(1, 1, &odd).unwrap();
        assert_eq!(small.records.len(), 1);
        assert_eq!(small.next, 3);
    }

    #[test]
    fn a_single_huge_record_is_kept() {
        let b = Backlog::new(10);
        b.append(0, rec(1000));
        b.append(0, rec(1000));
        let (first, next, _) = b.bounds();
        assert_eq!((first, next), (2, 3));
    }
}
