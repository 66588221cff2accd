//! Heap bytes in use, counted by the process's global allocator: the `tachyon` binary
//! wraps its allocator in [`CountingAllocator`], and `tachyon bench` reads
//! [`heap_bytes_in_use`] for the master's memory per file (resident memory alone misses
//! what an allocator serves from pages it already holds).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Counters threads spread over, so allocating threads rarely share a cache line.
const SHARDS: usize = 16;

/// One counter on its own cache line.
#[repr(align(64))]
struct Shard(AtomicIsize);

/// Bytes allocated minus bytes freed, by shard (a shard can go negative: a block freed by
/// another thread than the one that allocated it).
static IN_USE: [Shard; SHARDS] = [const { Shard(AtomicIsize::new(0)) }; SHARDS];
/// Hands each thread its shard, in turn.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard (`usize::MAX` until its first allocation); no destructor, so
    /// it is usable inside the allocator.
    static MY_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn count(delta: isize) {
    let shard = MY_SHARD
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS);
            }
            s.get()
        })
        .unwrap_or(0);
    IN_USE[shard].0.fetch_add(delta, Ordering::Relaxed);
}

/// A global allocator that counts the bytes `A` hands out and takes back.
pub struct CountingAllocator<A>(pub A);

// SAFETY: every call is passed to `A` unchanged; counting touches no allocation.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Heap bytes in use in this process, or `None` where the global allocator is not a
/// [`CountingAllocator`] (nothing was counted).
pub fn heap_bytes_in_use() -> Option<u64> {
    let total: isize = IN_USE.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    (total > 0).then_some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts through the system allocator directly (the test binary's global allocator
    /// is not the counting one).
    #[test]
    fn allocations_and_frees_are_counted_to_the_byte() {
        let a = CountingAllocator(std::alloc::System);
        let before = IN_USE.iter().map(|s| s.0.load(Ordering::Relaxed)).sum::<isize>();
        let layout = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: a valid layout; every block is freed with the layout it was made with.
        unsafe {
            let p = a.alloc(layout);
            let q = a.alloc_zeroed(layout);
            let sum = || IN_USE.iter().map(|s| s.0.load(Ordering::Relaxed)).sum::<isize>();
            assert_eq!(sum() - before, 2000);
            let p = a.realloc(p, layout, 3000);
            assert_eq!(sum() - before, 4000);
            a.dealloc(p, Layout::from_size_align(3000, 8).unwrap());
            a.dealloc(q, layout);
            assert_eq!(sum() - before, 0);
        }
    }
}
