//! Where entries live: a per-shard slab arena addressed by 32-bit handles, and the
//! block type behind [`Entry`].
//!
//! This and `held.rs` are the only modules of the store with `unsafe` code.
//!
//! * **Arena.** Blocks of up to `SMALL_MAX` bytes are carved from 8 KiB chunks, one
//!   size class per chunk, classes every 8 bytes (an 87-byte entry takes 88 bytes, not
//!   the allocator's 96-byte bin). A handle is `chunk index << 10 | offset in 8-byte
//!   units`; larger blocks get their own allocation and a handle with the top bit set.
//!   Free blocks of a chunk form an intrusive list (a u16 offset in their first bytes);
//!   the chunks of a size class with a free block form an intrusive doubly linked list
//!   through their 24-byte descriptors (no per-class vectors: an arena costs a 4-byte
//!   list head per size class used); a chunk whose last block is freed goes back to
//!   the chunk pool, which returns a 2 MiB huge-page region to the OS once all its
//!   chunks are back, so memory returns after deletes. All chunk and large memory
//!   is zero-initialized when allocated, so every byte the arena hands out as a slice
//!   is initialized.
//!   Non-string values (`Object`) are owned by the arena in a side vector, and a block
//!   refers to its object by index, so no block ever holds a raw pointer.
//! * **Block.** An [`Entry`] is a block: either owned bytes (entries being built, or
//!   removed from the store; up to `INLINE` bytes inside the value itself, larger ones
//!   in a heap allocation), or a *view* of a block in an arena, for
//!   the `&mut Entry` / `&Entry` references the store hands out. A mutable view may
//!   move its block to a larger one (`set_expire_at` adds the 8-byte TTL field); it
//!   then updates the handle in the hash table through the pointer it was given.
//! * **ViewSlot.** Views are created only by [`ViewSlot`], whose methods borrow the
//!   arena and the handle for as long as the returned reference lives, so the borrow
//!   checker guarantees the pointers in a view are valid whenever the view can be
//!   used. Moving a view out of its `&mut Entry` (`mem::replace`/`mem::swap`) would
//!   let it outlive that borrow; the slot checks on every reuse and on drop that it
//!   still holds the view it created, and aborts the process otherwise.

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

use super::entry::Entry;
use super::object::Stored;

/// A block in an [`Arena`].
pub(super) type Handle = u32;

/// Size-class granularity and chunk offset unit, in bytes.
const UNIT: usize = 8;
/// Bytes per chunk: 256 of them fill a 2 MiB pool region exactly, and 93 blocks of 88
/// bytes leave 8 bytes of a chunk unused. (7 KiB chunks left 40 bytes of every chunk
/// unused.)
const CHUNK: usize = 8192;
const CHUNK_UNITS: usize = CHUNK / UNIT;
const OFFSET_BITS: u32 = 10;
const OFFSET_MASK: u32 = (1 << OFFSET_BITS) - 1;
/// Top handle bit: a large block (index into `Arena::large`).
const LARGE: u32 = 1 << 31;
const MAX_CHUNKS: usize = 1 << (31 - OFFSET_BITS);
/// Largest block kept in chunks.
pub(super) const SMALL_MAX: usize = 1024;
/// End of a chunk's free list.
const NIL: u16 = u16::MAX;
/// No chunk (end of a partial list).
const NO_CHUNK: u32 = u32::MAX;

const _: () = assert!(CHUNK_UNITS <= 1 << OFFSET_BITS);
const _: () = assert!(CHUNK_UNITS < NIL as usize);

/// Bytes a block of `len` bytes occupies in an arena (its size class).
pub(super) fn charged(len: usize) -> usize {
    if len <= SMALL_MAX {
        len.div_ceil(UNIT).max(1) * UNIT
    } else {
        len
    }
}

/// Blocks use alignment 1 (all reads are unaligned): mimalloc serves an over-aligned
/// request above 1 KiB from a larger size class.
fn bytes_layout(len: usize) -> Layout {
    match Layout::from_size_align(len.max(1), 1) {
        Ok(l) => l,
        Err(_) => handle_alloc_error(Layout::new::<u64>()),
    }
}

/// Zeroed memory for `layout`, or the global allocation-failure handler.
fn zeroed(layout: Layout) -> NonNull<u8> {
    // SAFETY: every layout used here has a non-zero size.
    let raw = unsafe { alloc_zeroed(layout) };
    match NonNull::new(raw) {
        Some(p) => p,
        None => handle_alloc_error(layout),
    }
}

/// Turns transparent huge pages back on for this process when the host hands them
/// out only on request (`madvise` mode), so the chunk regions below get them. The
/// allocator (built with `no_thp`) switched them off for the whole process at start,
/// and it never requests them for its own memory, so nothing else is affected. Returns
/// whether huge pages are now allowed. Call before the store fills.
pub fn allow_huge_pages() -> bool {
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if !mode.contains("[madvise]") {
        return false;
    }
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0) == 0 }
}

/// Where chunks come from: 2 MiB regions shared by every shard's arena, each aligned
/// and advised as one transparent huge page, so the TLB covers a region's 256 chunks
/// with one entry (with 4 KiB pages a lookup at pipeline depth 1 paid TLB misses for
/// the entry after the kernel's network path evicted them). A region whose chunks have
/// all come back is freed, keeping at most one empty region for reuse.
mod pool {
    use super::{handle_alloc_error, Layout, NonNull, CHUNK};
    use std::collections::HashMap;
    use std::sync::Mutex;

    pub(super) const REGION: usize = 2 << 20;
    const PER_REGION: usize = REGION / CHUNK;
    const _: () = assert!(REGION.is_multiple_of(CHUNK) && PER_REGION <= u16::MAX as usize);

    struct Region {
        /// Address of the region (its pointer's provenance is exposed).
        base: usize,
        /// Chunks from this index on were never handed out (still zero: fresh
        /// anonymous memory).
        fresh: usize,
        /// Chunks handed out and given back (to be zeroed when taken again).
        free: Vec<u16>,
        used: usize,
    }

    #[derive(Default)]
    struct Pool {
        regions: Vec<Region>,
        by_base: HashMap<usize, usize>,
        /// Regions with no chunk handed out.
        empty: usize,
        /// A region that had room at the last `take` (checked before scanning).
        hint: usize,
    }

    static POOL: Mutex<Option<Pool>> = Mutex::new(None);

    /// A fresh 2 MiB-aligned mapping of REGION bytes, advised as a huge page, zeroed.
    /// Mapped directly (not from the allocator) so no page of it was touched before the
    /// advice.
    fn new_region() -> Region {
        let len = 2 * REGION;
        // SAFETY: an anonymous private mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            handle_alloc_error(Layout::new::<[u8; REGION]>());
        }
        let start = p.cast::<u8>();
        let head = start.align_offset(REGION);
        if head >= REGION {
            // Cannot happen for a byte pointer; refuse rather than map out of bounds.
            // SAFETY: unmaps exactly the mapping made above.
            unsafe { libc::munmap(p, len) };
            handle_alloc_error(Layout::new::<[u8; REGION]>());
        }
        // SAFETY: `head < REGION`, so `start + head .. + REGION` lies inside the
        // 2 * REGION mapping; the unmapped head and tail are parts of it nobody uses,
        // and the advice only chooses the page size of the rest.
        let base = unsafe {
            let base = start.add(head);
            if head > 0 {
                libc::munmap(start.cast(), head);
            }
            let tail = REGION - head;
            if tail > 0 {
                libc::munmap(base.add(REGION).cast(), tail);
            }
            libc::madvise(base.cast(), REGION, libc::MADV_HUGEPAGE);
            base
        };
        Region {
            base: base.expose_provenance(),
            fresh: 0,
            free: Vec::new(),
            used: 0,
        }
    }

    /// A zeroed chunk of `CHUNK` bytes.
    pub(super) fn take() -> NonNull<u8> {
        let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let pool = guard.get_or_insert_with(Pool::default);
        let has_room = |r: &Region| r.used < PER_REGION;
        let ri = if pool.regions.get(pool.hint).is_some_and(has_room) {
            pool.hint
        } else {
            match pool.regions.iter().position(has_room) {
                Some(i) => i,
                None => {
                    let r = new_region();
                    pool.by_base.insert(r.base, pool.regions.len());
                    pool.regions.push(r);
                    pool.empty += 1;
                    pool.regions.len() - 1
                }
            }
        };
        pool.hint = ri;
        let r = &mut pool.regions[ri];
        if r.used == 0 {
            pool.empty -= 1;
        }
        let (index, dirty) = match r.free.pop() {
            Some(i) => (usize::from(i), true),
            None => {
                r.fresh += 1;
                (r.fresh - 1, false)
            }
        };
        r.used += 1;
        let p: *mut u8 = std::ptr::with_exposed_provenance_mut(r.base + index * CHUNK);
        if dirty {
            // SAFETY: chunk `index` lies inside the live region and is handed out to
            // no one else (it was on the free list).
            unsafe { std::ptr::write_bytes(p, 0, CHUNK) };
        }
        match NonNull::new(p) {
            Some(p) => p,
            None => handle_alloc_error(Layout::new::<u64>()),
        }
    }

    /// Gives back a chunk from [`take`]; its region is freed once all its chunks are
    /// back (one empty region is kept).
    pub(super) fn give(chunk: NonNull<u8>) {
        let addr = chunk.as_ptr().expose_provenance();
        let base = addr & !(REGION - 1);
        let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let Some(pool) = guard.as_mut() else { return };
        let Some(&ri) = pool.by_base.get(&base) else {
            // Not from this pool: leaking it is safe, freeing it would not be.
            return;
        };
        let r = &mut pool.regions[ri];
        r.free.push(((addr - base) / CHUNK) as u16);
        r.used -= 1;
        if r.used > 0 {
            return;
        }
        if pool.empty == 0 {
            pool.empty = 1;
            return;
        }
        let r = pool.regions.swap_remove(ri);
        pool.by_base.remove(&r.base);
        if let Some(moved) = pool.regions.get(ri) {
            pool.by_base.insert(moved.base, ri);
        }
        let p: *mut u8 = std::ptr::with_exposed_provenance_mut(r.base);
        // SAFETY: `p .. p + REGION` is the mapping made by `new_region`; every chunk of
        // it has been given back and the region is no longer in the pool.
        unsafe { libc::munmap(p.cast(), REGION) };
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn chunks_are_zeroed_distinct_and_come_back() {
            let mut taken: Vec<NonNull<u8>> = (0..PER_REGION + 10).map(|_| take()).collect();
            let mut addrs: Vec<usize> = taken.iter().map(|p| p.as_ptr() as usize).collect();
            addrs.sort_unstable();
            addrs.dedup();
            assert_eq!(addrs.len(), taken.len(), "every chunk is handed out once");
            for p in &taken {
                // SAFETY: each chunk is CHUNK bytes owned by this test until given back.
                let bytes = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), CHUNK) };
                assert!(bytes.iter().all(|&b| b == 0));
                bytes.fill(0xa5);
            }
            for p in taken.drain(..) {
                give(p);
            }
            let again: Vec<NonNull<u8>> = (0..PER_REGION + 10).map(|_| take()).collect();
            for p in &again {
                // SAFETY: as above.
                let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), CHUNK) };
                assert!(bytes.iter().all(|&b| b == 0), "a reused chunk is zeroed");
            }
            for p in again {
                give(p);
            }
        }
    }
}

struct Chunk {
    /// `CHUNK` zeroed bytes from `pool::take`; `None` once given back.
    mem: Option<NonNull<u8>>,
    /// Block size of this chunk's class, in units.
    units: u16,
    live: u16,
    /// Units handed out from the start of the chunk so far.
    bump: u16,
    /// Offset (units) of the first free block, or `NIL`.
    free: u16,
    /// Neighbours in the partial list of the chunk's class, or `NO_CHUNK`. A chunk is
    /// in that list (it has room for a block) iff it is the list's head or has a `prev`.
    prev: u32,
    next: u32,
}

/// Slab memory of one shard.
pub(super) struct Arena {
    chunks: Vec<Chunk>,
    /// Indices of released chunks, reused first.
    spare: Vec<u32>,
    /// Per size class (up to the largest class used so far, so an empty shard costs
    /// nothing): the first chunk with room for one more block, or `NO_CHUNK`.
    partial: Vec<u32>,
    /// Blocks over `SMALL_MAX` bytes: pointer and length (from `zeroed(bytes_layout(len))`).
    large: Vec<Option<(NonNull<u8>, usize)>>,
    large_spare: Vec<u32>,
    objects: Vec<Option<Box<Stored>>>,
    objects_spare: Vec<u32>,
}

// SAFETY: the arena exclusively owns all memory its pointers refer to, like a Vec.
unsafe impl Send for Arena {}
// SAFETY: `&Arena` only allows reads.
unsafe impl Sync for Arena {}

impl Default for Arena {
    fn default() -> Self {
        Arena::new()
    }
}

/// Asks the CPU to start loading the cache line at `p`, so a lookup that reads it soon
/// does not stall (a batch of lookups overlaps its cache misses this way).
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86_64 baseline. PREFETCHT0 only hints the cache: it
    // never faults, even for an invalid address, and changes no program state.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Arena {
    /// Starts loading the first bytes of block `h` (see [`prefetch`]).
    pub(super) fn prefetch(&self, h: Handle) {
        if let Some((p, _)) = self.locate(h) {
            prefetch(p.as_ptr());
        }
    }

    pub(super) fn new() -> Arena {
        Arena {
            chunks: Vec::new(),
            spare: Vec::new(),
            partial: Vec::new(),
            large: Vec::new(),
            large_spare: Vec::new(),
            objects: Vec::new(),
            objects_spare: Vec::new(),
        }
    }

    /// A block of at least `len` bytes (exactly `charged(len)` for small blocks).
    /// Its content is unspecified (but initialized).
    pub(super) fn alloc(&mut self, len: usize) -> Handle {
        if len <= SMALL_MAX {
            if let Some(h) = self.alloc_small(len.div_ceil(UNIT).max(1)) {
                return h;
            }
        }
        self.alloc_large(len)
    }

    fn alloc_small(&mut self, units: usize) -> Option<Handle> {
        let class = units - 1;
        if self.partial.len() <= class {
            self.partial.resize(class + 1, NO_CHUNK);
        }
        let ci = match self.partial[class] {
            NO_CHUNK => self.new_chunk(units)?,
            ci => ci as usize,
        };
        let c = &mut self.chunks[ci];
        let mem = c.mem?;
        let off = if c.free != NIL {
            let off = c.free;
            // SAFETY: `off` is the offset of a free block of this live chunk, inside its
            // CHUNK bytes (offsets are < CHUNK_UNITS - units + 1); the block's first two
            // bytes hold the next free offset, written by `free`.
            let next = unsafe { mem.as_ptr().add(usize::from(off) * UNIT).cast::<u16>().read_unaligned() };
            c.free = next;
            off
        } else {
            let off = c.bump;
            c.bump += units as u16;
            off
        };
        c.live += 1;
        if c.free == NIL && usize::from(c.bump) + units > CHUNK_UNITS {
            self.unlink(ci);
        }
        Some(((ci as u32) << OFFSET_BITS) | u32::from(off))
    }

    fn new_chunk(&mut self, units: usize) -> Option<usize> {
        let ci = match self.spare.pop() {
            Some(i) => i as usize,
            None => {
                if self.chunks.len() >= MAX_CHUNKS {
                    return None;
                }
                self.chunks.push(Chunk {
                    mem: None,
                    units: 0,
                    live: 0,
                    bump: 0,
                    free: NIL,
                    prev: NO_CHUNK,
                    next: NO_CHUNK,
                });
                self.chunks.len() - 1
            }
        };
        self.chunks[ci] = Chunk {
            mem: Some(pool::take()),
            units: units as u16,
            live: 0,
            bump: 0,
            free: NIL,
            prev: NO_CHUNK,
            next: NO_CHUNK,
        };
        self.link(ci);
        Some(ci)
    }

    /// Whether chunk `ci` is in its class's partial list.
    fn is_linked(&self, ci: usize) -> bool {
        let c = &self.chunks[ci];
        c.prev != NO_CHUNK || self.partial.get(usize::from(c.units).wrapping_sub(1)) == Some(&(ci as u32))
    }

    /// Puts chunk `ci` (not in a list) at the head of its class's partial list.
    fn link(&mut self, ci: usize) {
        let class = usize::from(self.chunks[ci].units) - 1;
        if self.partial.len() <= class {
            self.partial.resize(class + 1, NO_CHUNK);
        }
        let next = self.partial[class];
        if let Some(n) = self.chunks.get_mut(next as usize) {
            n.prev = ci as u32;
        }
        let c = &mut self.chunks[ci];
        c.prev = NO_CHUNK;
        c.next = next;
        self.partial[class] = ci as u32;
    }

    /// Removes chunk `ci` from its class's partial list (if it is in it).
    fn unlink(&mut self, ci: usize) {
        if !self.is_linked(ci) {
            return;
        }
        let c = &mut self.chunks[ci];
        let (prev, next) = (c.prev, c.next);
        c.prev = NO_CHUNK;
        c.next = NO_CHUNK;
        let class = usize::from(c.units) - 1;
        match self.chunks.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.partial[class] = next,
        }
        if let Some(n) = self.chunks.get_mut(next as usize) {
            n.prev = prev;
        }
    }

    fn alloc_large(&mut self, len: usize) -> Handle {
        let layout = bytes_layout(len);
        let p = zeroed(layout);
        let i = match self.large_spare.pop() {
            Some(i) => i as usize,
            None => {
                self.large.push(None);
                self.large.len() - 1
            }
        };
        if i >= LARGE as usize {
            handle_alloc_error(layout);
        }
        self.large[i] = Some((p, len.max(1)));
        LARGE | i as u32
    }

    /// Frees block `h`. Unknown or already released handles are ignored.
    pub(super) fn free(&mut self, h: Handle) {
        if h & LARGE != 0 {
            let i = (h & !LARGE) as usize;
            if let Some((p, len)) = self.large.get_mut(i).and_then(Option::take) {
                // SAFETY: allocated by `alloc_large` with this layout, freed once (taken).
                unsafe { dealloc(p.as_ptr(), bytes_layout(len)) };
                self.large_spare.push(i as u32);
            }
            return;
        }
        let ci = (h >> OFFSET_BITS) as usize;
        let off = (h & OFFSET_MASK) as u16;
        let Some(c) = self.chunks.get_mut(ci) else {
            return;
        };
        let Some(mem) = c.mem else {
            return;
        };
        if usize::from(off) + usize::from(c.units) > CHUNK_UNITS || c.live == 0 {
            return;
        }
        // SAFETY: the block lies inside the chunk (checked above) and is at least 8
        // bytes long; it is free from now on, so its first bytes hold the list link.
        unsafe {
            mem.as_ptr()
                .add(usize::from(off) * UNIT)
                .cast::<u16>()
                .write_unaligned(c.free)
        };
        c.free = off;
        c.live -= 1;
        if c.live == 0 {
            self.unlink(ci);
            let c = &mut self.chunks[ci];
            c.mem = None;
            // `mem` is now None: the chunk goes back once and is never read again.
            pool::give(mem);
            self.spare.push(ci as u32);
        } else if !self.is_linked(ci) {
            self.link(ci);
        }
    }

    /// Start and length of block `h`, if it is in a live chunk or large allocation.
    fn locate(&self, h: Handle) -> Option<(NonNull<u8>, usize)> {
        if h & LARGE != 0 {
            return *self.large.get((h & !LARGE) as usize)?;
        }
        let c = self.chunks.get((h >> OFFSET_BITS) as usize)?;
        let mem = c.mem?;
        let off = (h & OFFSET_MASK) as usize;
        let units = usize::from(c.units);
        if off + units > CHUNK_UNITS {
            return None;
        }
        // SAFETY: off * UNIT + units * UNIT <= CHUNK, inside the chunk.
        let p = unsafe { mem.add(off * UNIT) };
        Some((p, units * UNIT))
    }

    /// The bytes of block `h` (its whole size class), empty for an unknown handle.
    pub(super) fn get(&self, h: Handle) -> &[u8] {
        match self.locate(h) {
            // SAFETY: `locate` returns a range inside live, initialized memory owned by
            // the arena; the slice borrows the arena, so it cannot be freed meanwhile.
            Some((p, n)) => unsafe { std::slice::from_raw_parts(p.as_ptr(), n) },
            None => &[],
        }
    }

    pub(super) fn get_mut(&mut self, h: Handle) -> &mut [u8] {
        match self.locate(h) {
            // SAFETY: as in `get`, and `&mut self` makes the access exclusive.
            Some((p, n)) => unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), n) },
            None => &mut [],
        }
    }

    /// Stores an object; returns its index.
    pub(super) fn put_object(&mut self, obj: Box<Stored>) -> u32 {
        match self.objects_spare.pop() {
            Some(i) => {
                self.objects[i as usize] = Some(obj);
                i
            }
            None => {
                self.objects.push(Some(obj));
                (self.objects.len() - 1) as u32
            }
        }
    }

    pub(super) fn take_object(&mut self, i: u32) -> Option<Box<Stored>> {
        let obj = self.objects.get_mut(i as usize)?.take()?;
        self.objects_spare.push(i);
        Some(obj)
    }

    pub(super) fn object(&self, i: u32) -> Option<&Stored> {
        self.objects.get(i as usize)?.as_deref()
    }

    pub(super) fn object_mut(&mut self, i: u32) -> Option<&mut Stored> {
        self.objects.get_mut(i as usize)?.as_deref_mut()
    }

    /// Checks that the partial lists hold exactly the live chunks with room for a
    /// block, each in its class's list, with consistent links (for tests).
    #[cfg(test)]
    fn check_partial_lists(&self) {
        let mut seen = vec![false; self.chunks.len()];
        for (class, &head) in self.partial.iter().enumerate() {
            let (mut prev, mut ci) = (NO_CHUNK, head);
            while ci != NO_CHUNK {
                let c = &self.chunks[ci as usize];
                assert!(!seen[ci as usize], "chunk {ci} listed twice");
                seen[ci as usize] = true;
                assert_eq!(usize::from(c.units), class + 1);
                assert_eq!(c.prev, prev);
                assert!(c.mem.is_some() && c.live > 0);
                (prev, ci) = (ci, c.next);
            }
        }
        for (ci, c) in self.chunks.iter().enumerate() {
            let room = c.free != NIL || usize::from(c.bump) + usize::from(c.units) <= CHUNK_UNITS;
            if c.mem.is_some() {
                assert_eq!(seen[ci], room, "chunk {ci}");
            } else {
                assert!(!seen[ci] && c.prev == NO_CHUNK && c.next == NO_CHUNK);
            }
        }
    }

    /// Bytes held in chunks and large blocks (for tests).
    #[cfg(test)]
    pub(super) fn reserved(&self) -> usize {
        let chunks = self.chunks.iter().filter(|c| c.mem.is_some()).count() * CHUNK;
        chunks + self.large.iter().flatten().map(|&(_, n)| n).sum::<usize>()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for c in &mut self.chunks {
            if let Some(mem) = c.mem.take() {
                pool::give(mem);
            }
        }
        for (p, len) in self.large.iter_mut().filter_map(Option::take) {
            // SAFETY: allocated by `alloc_large` with this layout; taken, so freed once.
            unsafe { dealloc(p.as_ptr(), bytes_layout(len)) };
        }
    }
}

/// Owned blocks up to this size are stored inside the `Entry` value itself, so building
/// an entry and moving one in or out of the arena needs no heap allocation.
const INLINE: usize = 112;

enum Repr {
    /// Owns `cap` bytes from `zeroed(bytes_layout(cap))`, `cap > INLINE`.
    Heap { ptr: NonNull<u8>, cap: usize },
    /// Owns `buf[..len]`.
    Inline { len: usize, buf: [u8; INLINE] },
    /// A block of `cap` bytes at `ptr` in a live arena; `handle` is where its handle is
    /// stored in a table.
    View {
        ptr: NonNull<u8>,
        cap: usize,
        arena: NonNull<Arena>,
        handle: NonNull<[u8; 4]>,
    },
    /// A read-only view of a block of a live arena.
    Shared {
        ptr: NonNull<u8>,
        cap: usize,
        arena: NonNull<Arena>,
    },
}

/// The bytes of an entry, owned or in an arena. See the module documentation.
pub(super) struct Block {
    repr: Repr,
    /// The object of an owned entry; arena blocks keep theirs in the arena.
    obj: Option<Box<Stored>>,
}

// SAFETY: an owned block owns its bytes like a Box<[u8]>. Views only exist inside a
// `ViewSlot` borrow, which holds the (lock-protected) arena borrow for as long.
unsafe impl Send for Block {}
// SAFETY: shared references only read.
unsafe impl Sync for Block {}

impl Block {
    /// An owned block of `len` zero bytes.
    pub(super) fn heap(len: usize) -> Block {
        let repr = if len <= INLINE {
            Repr::Inline { len, buf: [0; INLINE] }
        } else {
            Repr::Heap {
                ptr: zeroed(bytes_layout(len)),
                cap: len,
            }
        };
        Block { repr, obj: None }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        match &self.repr {
            Repr::Inline { len, buf } => buf.get(..*len).unwrap_or_default(),
            // SAFETY: `ptr` points to `cap` initialized bytes: an owned allocation, or an
            // arena block that stays valid while the view is reachable (module docs).
            Repr::Heap { ptr, cap } | Repr::View { ptr, cap, .. } | Repr::Shared { ptr, cap, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *cap)
            },
        }
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.repr {
            Repr::Inline { len, buf } => buf.get_mut(..*len).unwrap_or_default(),
            // SAFETY: as in `bytes`; `&mut self` of an owned block or of a mutable view
            // (whose slot borrow is exclusive) makes the access exclusive.
            Repr::Heap { ptr, cap } | Repr::View { ptr, cap, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *cap)
            },
            Repr::Shared { .. } => &mut [],
        }
    }

    /// Takes the owned object of an owned block.
    pub(super) fn take_own_object(&mut self) -> Option<Box<Stored>> {
        self.obj.take()
    }

    pub(super) fn set_own_object(&mut self, obj: Option<Box<Stored>>) {
        self.obj = obj;
    }

    /// The object with index `i` (arena views) or the owned object (owned blocks).
    pub(super) fn object(&self, i: u32) -> Option<&Stored> {
        match &self.repr {
            Repr::Heap { .. } | Repr::Inline { .. } => self.obj.as_deref(),
            // SAFETY: the arena outlives the view (module docs); shared access.
            Repr::View { arena, .. } | Repr::Shared { arena, .. } => unsafe { arena.as_ref() }.object(i),
        }
    }

    pub(super) fn object_mut(&mut self, i: u32) -> Option<&mut Stored> {
        match &mut self.repr {
            Repr::Heap { .. } | Repr::Inline { .. } => self.obj.as_deref_mut(),
            // SAFETY: a mutable view's slot borrow of the arena is exclusive.
            Repr::View { arena, .. } => unsafe { arena.as_mut() }.object_mut(i),
            Repr::Shared { .. } => None,
        }
    }

    /// Moves the block to fresh storage of `new_len` bytes, contents unspecified (the
    /// caller rewrites them; copy anything needed first). An arena view keeps its block
    /// when the size class does not change, and otherwise updates its table handle.
    pub(super) fn reallocate(&mut self, new_len: usize) {
        match &mut self.repr {
            Repr::Heap { .. } | Repr::Inline { .. } => {
                let obj = self.obj.take();
                *self = Block::heap(new_len);
                self.obj = obj;
            }
            Repr::View {
                ptr,
                cap,
                arena,
                handle,
            } => {
                if new_len <= *cap && charged(new_len) == *cap {
                    return;
                }
                // SAFETY: the view's slot borrows the arena and the handle exclusively
                // for as long as this `&mut self` exists (module docs).
                let (arena, handle) = unsafe { (arena.as_mut(), handle.as_mut()) };
                let h = arena.alloc(new_len);
                arena.free(Handle::from_le_bytes(*handle));
                *handle = h.to_le_bytes();
                if let Some((p, n)) = arena.locate(h) {
                    *ptr = p;
                    *cap = n;
                }
            }
            Repr::Shared { .. } => {}
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Repr::Heap { ptr, cap } = self.repr {
            // SAFETY: allocated by `Block::heap` with this layout; dropped once.
            unsafe { dealloc(ptr.as_ptr(), bytes_layout(cap)) };
        }
    }
}

/// Holder of the view behind a `&mut Entry` or `&Entry` handed out by the store.
#[derive(Default)]
pub(super) struct ViewSlot {
    entry: Option<Entry>,
    /// The handle location the current mutable view was created for.
    placed: Option<NonNull<[u8; 4]>>,
}

impl ViewSlot {
    pub(super) fn new() -> ViewSlot {
        ViewSlot::default()
    }

    /// Aborts if a mutable view was moved out of this slot (see the module docs):
    /// continuing could let it read freed memory.
    pub(super) fn check(&self) {
        let (Some(e), Some(placed)) = (&self.entry, self.placed) else {
            return;
        };
        let ok = matches!(e.block().repr, Repr::View { handle, .. } if handle == placed);
        if !ok {
            eprintln!("ringcache: an entry view was moved out of the store; aborting");
            std::process::abort();
        }
    }

    /// A mutable view of the block of `arena` whose handle is stored (little endian)
    /// in `handle`.
    pub(super) fn view<'a>(&'a mut self, arena: &'a mut Arena, handle: &'a mut [u8; 4]) -> &'a mut Entry {
        self.check();
        let (ptr, cap) = arena
            .locate(Handle::from_le_bytes(*handle))
            .unwrap_or((NonNull::dangling(), 0));
        let handle = NonNull::from(handle);
        self.placed = Some(handle);
        let block = Block {
            repr: Repr::View {
                ptr,
                cap,
                arena: NonNull::from(arena),
                handle,
            },
            obj: None,
        };
        self.entry.insert(Entry::from_block(block))
    }

    /// A read-only view of block `handle` of `arena`.
    pub(super) fn show<'a>(&'a mut self, arena: &'a Arena, handle: Handle) -> &'a Entry {
        self.check();
        let (ptr, cap) = arena.locate(handle).unwrap_or((NonNull::dangling(), 0));
        self.placed = None;
        let block = Block {
            repr: Repr::Shared {
                ptr,
                cap,
                arena: NonNull::from(arena),
            },
            obj: None,
        };
        self.entry.insert(Entry::from_block(block))
    }
}

impl Drop for ViewSlot {
    fn drop(&mut self) {
        self.check();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn size_classes() {
        assert_eq!(charged(1), 8);
        assert_eq!(charged(87), 88);
        assert_eq!(charged(88), 88);
        assert_eq!(charged(SMALL_MAX), SMALL_MAX);
        assert_eq!(charged(SMALL_MAX + 1), SMALL_MAX + 1);
    }

    #[test]
    fn blocks_are_distinct_and_chunks_are_released() {
        let mut a = Arena::new();
        let hs: Vec<Handle> = (0..1000).map(|_| a.alloc(87)).collect();
        for (i, &h) in hs.iter().enumerate() {
            assert_eq!(a.get(h).len(), 88);
            a.get_mut(h).fill(i as u8);
        }
        for (i, &h) in hs.iter().enumerate() {
            assert!(a.get(h).iter().all(|&b| b == i as u8));
        }
        // 93 blocks of 88 bytes per 8 KiB chunk.
        assert_eq!(a.reserved(), 1000usize.div_ceil(CHUNK / 88) * CHUNK);
        a.check_partial_lists();
        for &h in hs.iter().step_by(2) {
            a.free(h);
        }
        a.check_partial_lists();
        for &h in hs.iter().skip(1).step_by(2) {
            a.free(h);
        }
        a.check_partial_lists();
        assert_eq!(a.reserved(), 0);
        let big = a.alloc(100_000);
        assert_eq!(a.get(big).len(), 100_000);
        a.free(big);
        a.free(big);
        assert_eq!(a.reserved(), 0);
        assert!(a.get(big).is_empty());
    }

    proptest! {
        /// Random allocations and frees never overlap, keep their contents, and give
        /// all memory back.
        #[test]
        fn arena_matches_a_model(ops in proptest::collection::vec((any::<bool>(), 1usize..1500, any::<u16>()), 0..600)) {
            let mut a = Arena::new();
            let mut live: Vec<(Handle, usize, u8)> = Vec::new();
            for (n, (alloc, len, pick)) in ops.into_iter().enumerate() {
                if alloc || live.is_empty() {
                    let h = a.alloc(len);
                    prop_assert!(a.get(h).len() >= len);
                    a.get_mut(h)[..len].fill(n as u8);
                    live.push((h, len, n as u8));
                } else {
                    let (h, _, _) = live.swap_remove(usize::from(pick) % live.len());
                    a.free(h);
                }
                for &(h, len, v) in &live {
                    prop_assert!(a.get(h)[..len].iter().all(|&b| b == v));
                }
                a.check_partial_lists();
            }
            for (h, _, _) in live {
                a.free(h);
            }
            prop_assert_eq!(a.reserved(), 0);
        }
    }
}
