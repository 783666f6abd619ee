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
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes. They may overlap only if `dst` is at or
/// before `src`, or if `n` is at most 128.
#[cfg_attr(not(target_env = "musl"), allow(dead_code))] // Only the tests call it there.
#[inline(always)]
pub(crate) unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY (all arms): within the `n` bytes the caller vouches for, each arm's type at
    // most `n` bytes long.
    unsafe {
        match n {
            0 => {}
            1 => *dst = *src,
            2..=3 => ends::<u16>(dst, src, n),
            4..=7 => ends::<u32>(dst, src, n),
            8..=16 => ends::<u64>(dst, src, n),
            17..=32 => ends::<u128>(dst, src, n),
            33..=64 => ends::<[u128; 2]>(dst, src, n),
            65..=128 => ends::<[u128; 4]>(dst, src, n),
            _ => {
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
}

/// Copies the first and the last `size_of::<T>()` of `n` bytes, both loaded before either
/// is stored (so an overlap is harmless): all of them when `n` is one to two times that size.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes, `n` at least `size_of::<T>()`.
#[inline(always)]
unsafe fn ends<T>(dst: *mut u8, src: *const u8, n: usize) {
    let size = std::mem::size_of::<T>();
    // SAFETY: both reads and both writes within the `n` bytes.
    unsafe {
        let (first, last) = (
            read_unaligned(src.cast::<T>()),
            read_unaligned(src.add(n - size).cast::<T>()),
        );
        write_unaligned(dst.cast::<T>(), first);
        write_unaligned(dst.add(n - size).cast::<T>(), last);
    }
}

/// Copies `n` bytes from `src` to `dst`, which may overlap in any way.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes.
#[cfg_attr(not(target_env = "musl"), allow(dead_code))]
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

    /// Asserts that `got` holds the test data's bytes `from..from + n` at `to`, and
    /// `around(j)` at every other index `j`.
    fn assert_moved(got: &[u8], (from, to, n): (usize, usize, usize), around: fn(usize) -> u8) {
        for (j, &b) in got.iter().enumerate() {
            let want = if (to..to + n).contains(&j) {
                byte(from + j - to)
            } else {
                around(j)
            };
            assert_eq!(b, want, "n={n} from={from} to={to} at {j}");
        }
    }

    /// Every length to 300 (each branch and its edges) at five alignments, into another
    /// buffer.
    fn check_copies(copy: impl Fn(*mut u8, *const u8, usize)) {
        let src: Vec<u8> = (0..400).map(byte).collect();
        for n in 0..=300 {
            for (s, d) in [(0, 0), (1, 0), (0, 3), (5, 7), (15, 1)] {
                let mut dst = vec![0xEE; 400];
                // Both in bounds (at most 15 + 300 < 400), no overlap.
                copy(
                    dst.as_mut_ptr().wrapping_add(d),
                    src.as_ptr().wrapping_add(s),
                    n,
                );
                assert_moved(&dst, (s, d, n), |_| 0xEE);
            }
        }
    }

    /// Lengths across the branches, moved within one buffer both ways, by shifts from none
    /// to more than the length.
    fn check_moves(mv: impl Fn(*mut u8, *const u8, usize)) {
        for n in [
            0, 1, 2, 3, 7, 8, 9, 16, 17, 31, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255,
        ] {
            for shift in [0usize, 1, 2, 7, 8, 16, 31, 64, 65, 130, 256] {
                for (from, to) in [(100, 100 + shift), (100 + shift, 100)] {
                    let mut buf: Vec<u8> = (0..700).map(byte).collect();
                    // Both ranges inside the 700 bytes (at most 356 + 255).
                    let p = buf.as_mut_ptr();
                    mv(p.wrapping_add(to), p.wrapping_add(from).cast_const(), n);
                    assert_moved(&buf, (from, to, n), byte);
                }
            }
        }
    }

    #[test]
    fn copies_every_length_and_alignment() {
        // SAFETY: `check_copies` passes ranges in bounds that do not overlap.
        check_copies(|d, s, n| unsafe { copy_forward(d, s, n) });
    }

    #[test]
    fn moves_overlapping_ranges_both_ways() {
        // SAFETY: `check_moves` passes ranges in bounds.
        check_moves(|d, s, n| unsafe { copy_any(d, s, n) });
    }

    /// The exported symbols themselves (what every caller in the musl build reaches), called
    /// through a pointer so that nothing is inlined into the test: the same cases.
    #[cfg(target_env = "musl")]
    #[test]
    fn the_exported_functions_copy_and_move() {
        type Copy = unsafe extern "C" fn(*mut u8, *const u8, usize) -> *mut u8;
        let memcpy: Copy = std::hint::black_box(exported::memcpy);
        let memmove: Copy = std::hint::black_box(exported::memmove);
        // SAFETY (all three): as the checks pass them, disjoint ranges for `memcpy`.
        check_copies(|d, s, n| assert_eq!(unsafe { memcpy(d, s, n) }, d));
        check_copies(|d, s, n| assert_eq!(unsafe { memmove(d, s, n) }, d));
        check_moves(|d, s, n| assert_eq!(unsafe { memmove(d, s, n) }, d));
    }
}
