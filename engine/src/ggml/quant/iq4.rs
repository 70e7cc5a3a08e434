//! IQ4_NL (blocks of 32 on the 16-value non-linear grid under an FP16 scale)
//! and IQ4_XS (super-blocks of 256: eight such sub-blocks with 6-bit scales
//! under one FP16 d), as `quantize_iq4_nl` / `quantize_iq4_xs` in ggml-quants.c
//! (llama-cpp-python 0.3.36's vendored llama.cpp) write them. Both run
//! `quantize_row_iq4_nl_impl` with ntry 7, with or without an importance
//! matrix (without one the weights are x²). Sixteen blocks search in lanes.

use super::arith::{GROUP_MAX_EPS, fp16, nearest};
use super::kquants::pair_sum_squares;
use super::lanes::{F, I, LANES, from_fn, load, signed_max, splat, store, sum_squares};

/// ggml's `kvalues_iq4nl`.
const GRID: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// `best_index_int8(16, kvalues_iq4nl, x)` per lane, and the grid value there.
/// The binary search's answer is the number of k ≥ 1 with
/// `x − v[k−1] ≥ v[k] − x` (each test is monotone in x, and only the one at
/// the bracketing pair can go either way); NaN lands on 15 as in the C.
fn best_index(x: F) -> (I, F) {
    let mut idx = I::ZERO;
    let mut q = splat(f32::from(GRID[0]));
    for k in 1..16 {
        let (a, b) = (f32::from(GRID[k - 1]), f32::from(GRID[k]));
        let up = (x - splat(a)).simd_ge(splat(b) - x);
        idx -= bytemuck::cast::<F, I>(up);
        q += up & splat(b - a);
    }
    let nan = x.simd_ne(x);
    (nan.select(I::splat(15), idx), nan.select(splat(f32::from(GRID[15])), q))
}

/// `Σ w·q·x` and `Σ w·q²` with q the grid value nearest `id·x`.
fn grid_sums(x: &[F; 32], w: &[F; 32], id: F) -> (F, F) {
    let (mut sumqx, mut sumq2) = (F::ZERO, F::ZERO);
    for (&v, &w) in x.iter().zip(w) {
        let q = best_index(id * v).1;
        sumqx += w * q * v;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// The block scale of `quantize_row_iq4_nl_impl` (ntry 7): the least-squares
/// scale at the max-based start, then at 15 trial scales; 0 for ~zero blocks.
fn block_scale(x: &[F; 32], w: &[F; 32]) -> F {
    let (max, amax) = signed_max(x);
    let v0 = splat(f32::from(GRID[0]));
    let id = F::ONE / (-max / v0);
    let (sumqx, sumq2) = grid_sums(x, w, id);
    let mut d = sumq2.simd_gt(F::ZERO).select(sumqx / sumq2, F::ZERO);
    let mut best = d * sumqx;
    for itry in -7..=7 {
        let id = splat((itry + i32::from(GRID[0])) as f32) / max;
        let (sumqx, sumq2) = grid_sums(x, w, id);
        let better = sumq2.simd_gt(F::ZERO) & (sumqx * sumqx).simd_gt(best * sumq2);
        d = better.select(sumqx / sumq2, d);
        best = better.select(d * sumqx, best);
    }
    amax.simd_lt(splat(GROUP_MAX_EPS)).select(F::ZERO, d)
}

/// Weights: `qw·sqrt(σ² + x²)` with an importance matrix, else x².
fn weights(xs: &[F; 32], qw: Option<&[f32]>, blocks: usize, sigma2: F) -> [F; 32] {
    match qw {
        Some(qw) => {
            let qws = load::<32>(qw, blocks);
            std::array::from_fn(|i| qws[i] * (sigma2 + xs[i] * xs[i]).sqrt())
        }
        None => xs.map(|v| v * v),
    }
}

/// Codes of `id·x` per lane, as bytes in row order.
fn codes(xs: &[F; 32], id: F, blocks: usize, out: &mut [u8]) {
    let lanes: [I; 32] = std::array::from_fn(|i| best_index(id * xs[i]).0);
    store(&lanes, out, blocks);
}

/// 32 codes as 16 bytes: element j low, j + 16 high.
fn put_nibbles(codes: &[u8], out: &mut [u8]) {
    for j in 0..16 {
        out[j] = codes[j] | (codes[j + 16] << 4);
    }
}

fn inverse(d: F) -> F {
    d.simd_ne(F::ZERO).select(F::ONE / d, F::ZERO)
}

/// `quantize_iq4_nl`: per block of 32, the FP16 scale and 16 bytes of codes.
pub(super) fn iq4_nl(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0u8; LANES * 32];
    for (g, (xg, og)) in x.chunks(LANES * 32).zip(out.chunks_mut(LANES * 18)).enumerate() {
        let blocks = xg.len() / 32;
        let xs = load::<32>(xg, blocks);
        let sigma2 = sum_squares(&xs) * splat(2.0 / 32.0);
        let w = weights(&xs, imatrix.map(|q| &q[g * LANES * 32..]), blocks, sigma2);
        let d = block_scale(&xs, &w);
        codes(&xs, inverse(d), blocks, &mut l);
        for (k, o) in og.chunks_exact_mut(18).enumerate() {
            o[..2].copy_from_slice(&fp16(d.as_array()[k]).to_le_bytes());
            put_nibbles(&l[32 * k..][..32], &mut o[2..]);
        }
    }
}

/// `quantize_iq4_xs`: per super-block d, the scales' high bits (2 per
/// sub-block, a u16), their low nibbles (4 bytes), then 8 × 16 bytes of codes.
/// Two super-blocks search together (sixteen sub-blocks, sixteen lanes).
pub(super) fn iq4_xs(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0u8; 2 * 256];
    for (p, (xp, op)) in x.chunks(512).zip(out.chunks_mut(2 * 136)).enumerate() {
        let n = xp.len() / 256;
        let sums = pair_sum_squares(xp);
        let sigma2 = from_fn(|k| sums[k / 8] * (2.0 / 256.0));
        let xs = load::<32>(xp, 8 * n);
        let w = weights(&xs, imatrix.map(|q| &q[p * 512..]), 8 * n, sigma2);
        let scales = block_scale(&xs, &w).to_array();
        let mut idl = [0.0f32; LANES];
        let mut heads = [([0u8; 8], 0.0f32); 2];
        for (s, head) in heads.iter_mut().enumerate().take(n) {
            let sub: [f32; 8] = std::array::from_fn(|j| scales[8 * s + j]);
            let (levels, d) = sub_scales(&sub);
            for (j, &lv) in levels.iter().enumerate() {
                let dl = d * lv as f32;
                idl[8 * s + j] = if dl == 0.0 { 0.0 } else { 1.0 / dl };
            }
            *head = (levels.map(|lv| (lv + 32) as u8), d);
        }
        codes(&xs, F::new(idl), 8 * n, &mut l);
        for (s, o) in op.chunks_exact_mut(136).enumerate() {
            put_super_block(&heads[s], &l[256 * s..][..256], o);
        }
    }
}

/// A super-block's d (`−max/32`, max the sub-block scale of largest
/// magnitude) and each sub-block's 6-bit level of its scale under d.
fn sub_scales(scales: &[f32; 8]) -> ([i32; 8], f32) {
    let (mut amax, mut max_scale) = (0.0f32, 0.0f32);
    for &s in scales {
        if s.abs() > amax {
            (amax, max_scale) = (s.abs(), s);
        }
    }
    let d = -max_scale / 32.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    (scales.map(|s| nearest(id * s).clamp(-32, 31)), d)
}

/// One IQ4_XS block from its stored levels (+32), d and codes.
fn put_super_block((levels, d): &([u8; 8], f32), codes: &[u8], o: &mut [u8]) {
    o[..2].copy_from_slice(&fp16(*d).to_le_bytes());
    let mut high = 0u16;
    o[4..8].fill(0);
    for (ib, &l) in levels.iter().enumerate() {
        o[4 + ib / 2] |= (l & 0x0F) << (4 * (ib % 2));
        high |= u16::from(l >> 4) << (2 * ib);
    }
    o[2..4].copy_from_slice(&high.to_le_bytes());
    for (k, q) in o[8..].chunks_exact_mut(16).enumerate() {
        put_nibbles(&codes[32 * k..][..32], q);
    }
}
