//! `memcpy` and `memmove` for the static musl build on x86_64 (what the image ships).
//!
//! musl's x86_64 `memcpy` copies with `rep movsq` between byte loops. A `rep` instruction
//! has a start-up cost of dozens of cycles, and a request makes dozens of short copies
//! (tiny_http writes a response head in pieces, spans and requests are moved between
//! threads): callgrind counts 27 calls per request, most under 64 bytes, and `perf` found
//! `memcpy` the busiest function of the musl build. glibc's, tuned per CPU, is not.
//!
//! These copy up to 128 bytes with unaligned loads and stores of 1 to 16 bytes (every byte
//! loaded before any is stored, so an overlap is harmless), and longer blocks with
//! `rep movsb`. That is fast from the first byte on CPUs with FSRM (Intel since Ice Lake,
//! this machine's Xeon); older ones pay a start-up of some 30 cycles, and AMD's Zen 3 and 4
//! are known to be slow at it for a misaligned destination (not measured here). No loop is written here: LLVM may turn a copy loop into a call to `memcpy`,
//! which would be this function. `memmove` is defined as well: musl's calls into the object
//! file of its `memcpy`, which would then clash with this one at link time.
//!
//! The copies are plain functions, tested on every x86_64 target; only the musl build
//! exports them under the C names.

use std::arch::asm;
use std::ptr::{read_unaligned, write_unaligned};

/// Copies `n` bytes from `src` to `dst`, front to back.
#[cfg_attr(not(target_env = "musl"), allow(dead_code))] // Only the tests call it there.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes. They may overlap only if `dst` is at or
/// before `src`, or if `n` is at most 128.
#[inline(always)]
pub(crate) unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY (all blocks): within the `n` bytes the caller vouches for; every load of a
    // branch happens before its first store.
    unsafe {
        if n <= 16 {
            if n >= 8 {
                let (a, b) = (
                    read_unaligned(src.cast::<u64>()),
                    read_unaligned(src.add(n - 8).cast::<u64>()),
                );
                write_unaligned(dst.cast::<u64>(), a);
                write_unaligned(dst.add(n - 8).cast::<u64>(), b);
            } else if n >= 4 {
                let (a, b) = (
                    read_unaligned(src.cast::<u32>()),
                    read_unaligned(src.add(n - 4).cast::<u32>()),
                );
                write_unaligned(dst.cast::<u32>(), a);
                write_unaligned(dst.add(n - 4).cast::<u32>(), b);
            } else if n >= 2 {
                let (a, b) = (
                    read_unaligned(src.cast::<u16>()),
                    read_unaligned(src.add(n - 2).cast::<u16>()),
                );
                write_unaligned(dst.cast::<u16>(), a);
                write_unaligned(dst.add(n - 2).cast::<u16>(), b);
            } else if n == 1 {
                *dst = *src;
            }
        } else if n <= 32 {
            let (a, b) = (
                read_unaligned(src.cast::<u128>()),
                read_unaligned(src.add(n - 16).cast::<u128>()),
            );
            write_unaligned(dst.cast::<u128>(), a);
            write_unaligned(dst.add(n - 16).cast::<u128>(), b);
        } else if n <= 64 {
            let (a, b, c, d) = (
                read_unaligned(src.cast::<u128>()),
                read_unaligned(src.add(16).cast::<u128>()),
                read_unaligned(src.add(n - 32).cast::<u128>()),
                read_unaligned(src.add(n - 16).cast::<u128>()),
            );
            write_unaligned(dst.cast::<u128>(), a);
            write_unaligned(dst.add(16).cast::<u128>(), b);
            write_unaligned(dst.add(n - 32).cast::<u128>(), c);
            write_unaligned(dst.add(n - 16).cast::<u128>(), d);
        } else if n <= 128 {
            let (a, b, c, d) = (
                read_unaligned(src.cast::<u128>()),
                read_unaligned(src.add(16).cast::<u128>()),
                read_unaligned(src.add(32).cast::<u128>()),
                read_unaligned(src.add(48).cast::<u128>()),
            );
            let (e, f, g, h) = (
                read_unaligned(src.add(n - 64).cast::<u128>()),
                read_unaligned(src.add(n - 48).cast::<u128>()),
                read_unaligned(src.add(n - 32).cast::<u128>()),
                read_unaligned(src.add(n - 16).cast::<u128>()),
            );
            write_unaligned(dst.cast::<u128>(), a);
            write_unaligned(dst.add(16).cast::<u128>(), b);
            write_unaligned(dst.add(32).cast::<u128>(), c);
            write_unaligned(dst.add(48).cast::<u128>(), d);
            write_unaligned(dst.add(n - 64).cast::<u128>(), e);
            write_unaligned(dst.add(n - 48).cast::<u128>(), f);
            write_unaligned(dst.add(n - 32).cast::<u128>(), g);
            write_unaligned(dst.add(n - 16).cast::<u128>(), h);
        } else {
            // Byte by byte in order, architecturally (Intel SDM, REP): right for `dst`
            // before `src` too.
            asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dst => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags)
            );
        }
    }
}

/// Copies `n` bytes from `src` to `dst`, which may overlap in any way.
#[cfg_attr(not(target_env = "musl"), allow(dead_code))]
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes.
#[inline(always)]
pub(crate) unsafe fn copy_any(dst: *mut u8, src: *const u8, n: usize) {
    // `dst` inside (src, src + n) is the one overlap a forward copy of more than 128 bytes
    // would spoil: then back to front (rare: slower, with the direction flag set).
    if dst.cast_const() == src {
        return;
    }
    if n <= 128 || (dst as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: as the caller vouches; no overlap `copy_forward` cannot take.
        unsafe { copy_forward(dst, src, n) }
    } else {
        // SAFETY: as the caller vouches; starts at the last byte of each, the direction
        // flag is cleared again as the ABI requires.
        unsafe {
            asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dst.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack)
            );
        }
    }
}

#[cfg(target_env = "musl")]
mod exported {
    use super::{copy_any, copy_forward};

    /// # Safety
    /// C's `memcpy`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: C's contract (no overlap) is stricter than `copy_forward`'s.
        unsafe { copy_forward(dst, src, n) };
        dst
    }

    /// # Safety
    /// C's `memmove`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: C's contract is `copy_any`'s.
        unsafe { copy_any(dst, src, n) };
        dst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test data: a byte of each index, no two neighbours alike. Expected buffers are
    /// computed from it, not copied: on the musl build a copy would be the code under test.
    fn byte(i: usize) -> u8 {
        (i * 7 + 3) as u8
    }

    /// Every length to 300 (each branch and its edges), at several offsets in a word.
    #[test]
    fn copies_every_length_and_alignment() {
        let src: Vec<u8> = (0..400).map(byte).collect();
        for n in 0..=300 {
            for (s, d) in [(0, 0), (1, 0), (0, 3), (5, 7), (15, 1)] {
                let mut dst = vec![0xEE; 400];
                // SAFETY: both in bounds (at most 15 + 300 < 400), no overlap.
                unsafe { copy_forward(dst.as_mut_ptr().add(d), src.as_ptr().add(s), n) };
                for (j, &got) in dst.iter().enumerate() {
                    let want = if (d..d + n).contains(&j) {
                        byte(s + j - d)
                    } else {
                        0xEE
                    };
                    assert_eq!(got, want, "n={n} s={s} d={d} at {j}");
                }
            }
        }
    }

    /// Overlaps both ways, and disjoint moves, through each branch.
    #[test]
    fn moves_overlapping_ranges_both_ways() {
        for n in [
            0, 1, 2, 3, 7, 8, 9, 16, 17, 31, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255,
        ] {
            for shift in [0usize, 1, 2, 7, 8, 16, 31, 64, 65, 130, 256] {
                for (from, to) in [(100, 100 + shift), (100 + shift, 100)] {
                    let mut buf: Vec<u8> = (0..700).map(byte).collect();
                    // SAFETY: both ranges inside the 700 bytes (at most 356 + 255).
                    unsafe { copy_any(buf.as_mut_ptr().add(to), buf.as_ptr().add(from), n) };
                    for (j, &got) in buf.iter().enumerate() {
                        let want = if (to..to + n).contains(&j) {
                            byte(from + j - to)
                        } else {
                            byte(j)
                        };
                        assert_eq!(got, want, "n={n} from={from} to={to} at {j}");
                    }
                }
            }
        }
    }

    /// The exported symbols themselves (what every caller in the musl build reaches), called
    /// through a pointer so that nothing is inlined into the test: `memcpy` at every length
    /// to 300 (one alignment), `memmove` across each branch, overlapping both ways and onto
    /// itself.
    #[cfg(target_env = "musl")]
    #[test]
    fn the_exported_functions_copy_and_move() {
        type Copy = unsafe extern "C" fn(*mut u8, *const u8, usize) -> *mut u8;
        let memcpy: Copy = std::hint::black_box(exported::memcpy);
        let memmove: Copy = std::hint::black_box(exported::memmove);
        let src: Vec<u8> = (0..400).map(byte).collect();
        for n in 0..=300 {
            let mut dst = vec![0xEE; 400];
            // SAFETY: both in bounds, no overlap.
            let ret = unsafe { memcpy(dst.as_mut_ptr().add(3), src.as_ptr().add(5), n) };
            assert_eq!(ret, dst.as_mut_ptr().wrapping_add(3));
            for (j, &got) in dst.iter().enumerate() {
                let want = if (3..3 + n).contains(&j) {
                    byte(5 + j - 3)
                } else {
                    0xEE
                };
                assert_eq!(got, want, "memcpy n={n} at {j}");
            }
        }
        for n in [0, 5, 64, 65, 128, 129, 255] {
            for (from, to) in [(100, 107), (107, 100), (100, 100)] {
                let mut buf: Vec<u8> = (0..500).map(byte).collect();
                // SAFETY: both ranges inside the 500 bytes.
                unsafe { memmove(buf.as_mut_ptr().add(to), buf.as_ptr().add(from), n) };
                for (j, &got) in buf.iter().enumerate() {
                    let want = if (to..to + n).contains(&j) {
                        byte(from + j - to)
                    } else {
                        byte(j)
                    };
                    assert_eq!(got, want, "memmove n={n} from={from} to={to} at {j}");
                }
            }
        }
    }
}
