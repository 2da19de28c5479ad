//! Memory accounting against `maxmemory`: exact usage in per-thread counter stripes,
//! the limit and the eviction policy, and the `-OOM` condition.

use std::sync::atomic::{AtomicIsize, AtomicU8, AtomicUsize, Ordering};

use super::eviction::Policy;

/// `-OOM` condition: memory is over the limit and nothing can be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("OOM command not allowed when used memory > 'maxmemory'.")]
pub struct OutOfMemory;

/// Counter stripes: a thread updates its own stripe, so writers on different cores do
/// not bounce one cache line. A power of two.
const STRIPES: usize = 16;
/// A stripe adds its change to [`Memory::approx`] once the change reaches this many
/// bytes, so `approx` is within `STRIPES * PUBLISH_AT` bytes of the exact sum.
const PUBLISH_AT: isize = 64 * 1024;
const SLACK: usize = STRIPES * PUBLISH_AT as usize;

#[repr(align(128))]
#[derive(Debug, Default)]
struct Stripe {
    used: AtomicIsize,
    small: AtomicIsize,
    unpublished: AtomicIsize,
}

#[repr(align(128))]
#[derive(Debug, Default)]
struct Approx(AtomicIsize);

/// The stripe of the calling thread (threads take stripes in turn).
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// Memory limit, policy and usage counters shared by all shards. Usage is exact: the
/// sum of per-thread stripes. The limit check reads one rarely written approximate
/// total and sums the stripes only when that total is within `SLACK` of the limit.
#[derive(Debug)]
pub struct Memory {
    max: AtomicUsize,
    policy: AtomicU8,
    approx: Approx,
    stripes: Box<[Stripe]>,
}

impl Memory {
    pub(super) fn new(max: usize, policy: Policy) -> Memory {
        Memory {
            max: AtomicUsize::new(max),
            policy: AtomicU8::new(policy as u8),
            approx: Approx::default(),
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }
    /// Bytes of all entries (exact).
    pub fn used(&self) -> usize {
        let sum: isize = self.stripes.iter().map(|s| s.used.load(Ordering::Relaxed)).sum();
        sum.max(0) as usize
    }
    /// Bytes of entries in the S3-FIFO small queue.
    pub fn small(&self) -> usize {
        let sum: isize = self.stripes.iter().map(|s| s.small.load(Ordering::Relaxed)).sum();
        sum.max(0) as usize
    }
    /// Whether `used()` exceeds `max` (cheap unless usage is near the limit).
    pub(super) fn over(&self, max: usize) -> bool {
        let approx = self.approx.0.load(Ordering::Relaxed).max(0) as usize;
        approx.saturating_add(SLACK) > max && self.used() > max
    }
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }
    pub fn set_max(&self, bytes: usize) {
        self.max.store(bytes, Ordering::Relaxed);
    }
    pub fn policy(&self) -> Policy {
        Policy::from_u8(self.policy.load(Ordering::Relaxed))
    }
    pub fn set_policy(&self, p: Policy) {
        self.policy.store(p as u8, Ordering::Relaxed);
    }
    pub(super) fn change(&self, bytes: isize, small: isize) {
        let s = &self.stripes[stripe_index()];
        s.used.fetch_add(bytes, Ordering::Relaxed);
        if small != 0 {
            s.small.fetch_add(small, Ordering::Relaxed);
        }
        let pending = s.unpublished.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if pending.abs() >= PUBLISH_AT {
            let pending = s.unpublished.swap(0, Ordering::Relaxed);
            self.approx.0.fetch_add(pending, Ordering::Relaxed);
        }
    }
    pub(super) fn add(&self, bytes: usize, small: bool) {
        let b = bytes as isize;
        self.change(b, if small { b } else { 0 });
    }
    pub(super) fn sub(&self, bytes: usize, small: bool) {
        let b = bytes as isize;
        self.change(-b, if small { -b } else { 0 });
    }
    /// Removes `bytes` of which `small` were in the small queue.
    pub(super) fn sub_both(&self, bytes: usize, small: usize) {
        self.change(-(bytes as isize), -(small as isize));
    }
}
