//! The global allocator: mimalloc (see README, "Performance"), except for blocks of
//! `DIRECT` bytes and more, which are mapped straight from the kernel.
//!
//! Why: tiny_http drains an unread request body into one zeroed buffer of the whole declared
//! length (`vec![0; remaining]`, see `server`). A fresh anonymous mapping is zero already and
//! costs no memory until written; mimalloc may instead hand out reused arena memory and zero
//! it by writing, which made a declared 1 GiB body cost 1 GiB of RSS. Nothing else of ours
//! allocates such blocks often, so the kernel's price (a system call each) does not matter.
//!
//! Blocks aligned to a word at most go to mimalloc's plain `mi_malloc`, `mi_zalloc` and
//! `mi_realloc`: every mimalloc block is word-aligned. The mimalloc crate calls the
//! `_aligned` entry points for every block, which check and search more (callgrind: about
//! 35 instructions more per call, and 38 such calls per traced request, reallocations
//! apart). (Only
//! mimalloc's debugging option `MIMALLOC_GUARDED_PRECISE`, in a build with its `debug`
//! feature, which this is not, places blocks off the word.)

use libmimalloc_sys::{mi_malloc, mi_realloc, mi_zalloc};
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};

/// Blocks this large and larger are mapped, not taken from mimalloc.
const DIRECT: usize = 1 << 20;
/// What a mapping is aligned to (the page size on every target we build for).
const PAGE: usize = 4096;
/// What every mimalloc block is aligned to.
const WORD: usize = std::mem::size_of::<usize>();

pub struct Allocator;

impl Allocator {
    fn direct(layout: Layout) -> bool {
        layout.size() >= DIRECT && layout.align() <= PAGE
    }
}

// SAFETY: every block is either mimalloc's or a mapping of exactly `layout.size()` bytes,
// told apart by the layout the caller must pass back unchanged.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::direct(layout) {
            return map(layout.size());
        }
        if layout.align() <= WORD {
            // SAFETY: any size; the block is word-aligned (see the module comment).
            return unsafe { mi_malloc(layout.size()) }.cast();
        }
        // SAFETY: forwarded as received.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::direct(layout) {
            // A fresh anonymous mapping reads as zeros.
            return map(layout.size());
        }
        if layout.align() <= WORD {
            // SAFETY: as in `alloc`.
            return unsafe { mi_zalloc(layout.size()) }.cast();
        }
        // SAFETY: forwarded as received.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if Self::direct(layout) {
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by `map`.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // SAFETY: forwarded as received.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, with `layout.align()`, is a valid layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !Self::direct(layout) && !Self::direct(new) {
            if layout.align() <= WORD {
                // SAFETY: `ptr` is mimalloc's (`alloc` or `alloc_zeroed` of a word-aligned
                // layout); the new block is word-aligned too.
                return unsafe { mi_realloc(ptr.cast(), new_size) }.cast();
            }
            // SAFETY: forwarded as received.
            return unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        }
        // Across the boundary, or between mappings: a new block, the bytes, the old freed.
        // SAFETY: as GlobalAlloc's own default `realloc`.
        unsafe {
            let moved = self.alloc(new);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

/// A private anonymous mapping of `size` bytes, or null.
fn map(size: usize) -> *mut u8 {
    // SAFETY: a new anonymous mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    #[test]
    fn blocks_on_both_sides_of_the_boundary_keep_their_bytes() {
        let a = Allocator;
        for (from, to) in [
            (16, 64),
            (DIRECT - 8, DIRECT + 8),
            (DIRECT + 8, DIRECT - 8),
            (DIRECT, 3 * DIRECT),
            (3 * DIRECT, 8),
        ] {
            let layout = Layout::from_size_align(from, 8).unwrap();
            // SAFETY: a non-zero layout; the block is written within its size, grown with a
            // valid size, read within the smaller size, and freed with its layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                for i in 0..from {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = a.realloc(p, layout, to);
                assert!(!q.is_null());
                for i in 0..from.min(to) {
                    assert_eq!(*q.add(i), (i % 251) as u8, "{from} -> {to} at {i}");
                }
                a.dealloc(q, Layout::from_size_align(to, 8).unwrap());
            }
        }
    }

    /// Plain entry points for word alignment and less, the aligned ones above: every block,
    /// fresh, zeroed or grown, has its alignment.
    #[test]
    fn every_block_has_its_alignment() {
        let a = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..200).chain([1000, 5000, 70_000]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero layouts, each block freed with the layout it has then.
                unsafe {
                    let p = a.alloc(layout);
                    let z = a.alloc_zeroed(layout);
                    assert!(!p.is_null() && !z.is_null());
                    assert_eq!(p as usize % align, 0, "alloc {size} aligned {align}");
                    assert_eq!(z as usize % align, 0, "alloc_zeroed {size} aligned {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0), "zeroed {size}");
                    let grown = a.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "realloc {size} aligned {align}");
                    // Below half its size, a block moves.
                    let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                    let shrunk = a.realloc(grown, grown_layout, size.div_ceil(3));
                    assert_eq!(shrunk as usize % align, 0, "shrunk {size} aligned {align}");
                    a.dealloc(
                        shrunk,
                        Layout::from_size_align(size.div_ceil(3), align).unwrap(),
                    );
                    a.dealloc(z, layout);
                }
            }
        }
    }

    #[test]
    fn a_large_zeroed_block_costs_no_memory_until_written() {
        let a = Allocator;
        let layout = Layout::from_size_align(1 << 30, 1).unwrap();
        let before = resident_kib();
        // SAFETY: a non-zero layout, read within its size, freed with it.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(*p.add((1 << 30) - 1), 0);
            let grown = resident_kib().saturating_sub(before);
            assert!(grown < 16 * 1024, "1 GiB zeroed cost {grown} KiB");
            a.dealloc(p, layout);
        }
    }
}
