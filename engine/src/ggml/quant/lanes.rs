//! Sixteen blocks searched at once: lane k of every vector belongs to block k,
//! and each lane runs the C code's operations in the C code's order, so a lane
//! is bit for bit the scalar search of its block (IEEE add, mul, div and sqrt
//! are exact per lane; branches become selects). This is how the searches of
//! ggml-quants.c run fast without reordering a single sum. Sixteen, not eight:
//! with AVX2 a vector is two independent halves, so the long dependent sums
//! of one half overlap those of the other.

use wide::{f32x16, i32x16};

pub(super) type F = f32x16;
pub(super) type I = i32x16;

pub(super) const LANES: usize = 16;

pub(super) fn splat(v: f32) -> F {
    F::splat(v)
}

/// `nearest_int` in every lane (see `arith::nearest`).
pub(super) fn nearest(v: F) -> I {
    let bits: I = bytemuck::cast(v + F::splat(12_582_912.0));
    (bits & I::splat(0x007f_ffff)) - I::splat(0x0040_0000)
}

/// C's `MAX(lo, MIN(hi, l))` on ints.
pub(super) fn clamp(l: I, lo: i32, hi: i32) -> I {
    l.min(I::splat(hi)).max(I::splat(lo))
}

pub(super) fn to_f(l: I) -> F {
    F::from_i32x16(l)
}

/// Whole-number lanes back to integers.
pub(super) fn to_i(v: F) -> I {
    v.fast_trunc_int()
}

/// Lanes from per-lane values.
pub(super) fn from_fn(f: impl FnMut(usize) -> f32) -> F {
    F::new(std::array::from_fn(f))
}

/// C's `if (a < b) v = a;`-style update: `if_true` where `mask`, else `v`.
pub(super) fn pick(mask: F, if_true: F, v: F) -> F {
    mask.select(if_true, v)
}

/// The integer lanes of `if_true` where `mask`, else those of `v`.
pub(super) fn pick_int(mask: F, if_true: I, v: I) -> I {
    mask.select(if_true, v)
}

/// `blocks` (≤ 16) consecutive blocks of `N` values as `N` vectors, block k in
/// lane k; missing lanes are zero (their results are never read).
pub(super) fn load<const N: usize>(x: &[f32], blocks: usize) -> [F; N] {
    std::array::from_fn(|i| {
        let mut v = [0.0; LANES];
        for (k, lane) in v.iter_mut().enumerate().take(blocks) {
            *lane = x[k * N + i];
        }
        F::new(v)
    })
}

/// The inverse of `load` for codes: block k's `N` codes in `out[k*N..]`.
pub(super) fn store<const N: usize>(l: &[I; N], out: &mut [u8], blocks: usize) {
    for (i, v) in l.iter().enumerate() {
        for (k, &q) in v.as_array().iter().enumerate().take(blocks) {
            out[k * N + i] = q as u8;
        }
    }
}

/// Per-lane sums `Σ x²` in element order (the C's running sum per block).
pub(super) fn sum_squares<const N: usize>(x: &[F; N]) -> F {
    x.iter().fold(F::ZERO, |s, &v| s + v * v)
}

/// Per-lane `max` and `amax`: the value of largest magnitude (first one on
/// ties, as `if (ax > amax)`) and that magnitude.
pub(super) fn signed_max<const N: usize>(x: &[F; N]) -> (F, F) {
    let (mut max, mut amax) = (F::ZERO, F::ZERO);
    for &v in x {
        let ax = v.abs();
        let bigger = ax.simd_gt(amax);
        amax = pick(bigger, ax, amax);
        max = pick(bigger, v, max);
    }
    (max, amax)
}
