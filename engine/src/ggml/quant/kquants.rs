//! Q4_K and Q5_K (super-blocks of 256 in eight sub-blocks of 32, each with a
//! 6-bit scale and min under the FP16 d and dmin) as ggml-quants.c
//! (llama-cpp-python 0.3.36's vendored llama.cpp) writes them:
//! `quantize_row_q{4,5}_K_ref` without an importance matrix (`make_qkx2_quants`
//! per sub-block, scales quantized against their maximum) and
//! `quantize_row_q{4,5}_K_impl` with one (`make_qkx3_quants`, then
//! `make_qp_quants` for the scales). Two super-blocks' sixteen sub-blocks are
//! the lanes of one search. Also the steps every K-quant shares.

use super::arith::{fp16, fp16_f32, nearest};
use super::lanes::{F, I, clamp, from_fn, load, nearest as nearest8, pick_int, splat, store, sum_squares};
use super::search::{Grid, qkx, qp};

pub(super) const QK_K: usize = 256;

/// `Σ x²` of a whole super-block in element order (the impl paths' σ² is of
/// the super-block, not of a sub-block).
pub(super) fn super_block_sum_squares(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |s, &v| s + v * v)
}

/// `super_block_sum_squares` of each of the (one or two) super-blocks in `x`.
pub(super) fn pair_sum_squares(x: &[f32]) -> [f32; 2] {
    [0, 1].map(|s| x.chunks_exact(QK_K).nth(s).map_or(0.0, super_block_sum_squares))
}

/// Per-lane `Σ w` in element order (`sw[j]`).
pub(super) fn weight_sums<const N: usize>(w: &[F; N]) -> F {
    w.iter().fold(F::ZERO, |s, &v| s + v)
}

/// The K-quants' final pass: with the stored scales `d` and offsets `dm` (per
/// lane), codes `clamp(nearest((x + dm) / d), lo, hi) − lo`; lanes whose `d` is
/// zero keep the search's codes (the C's `if (!d) continue`).
pub(super) fn requantize<const N: usize>(x: &[F; N], d: F, dm: F, lo: i32, hi: i32, codes: &mut [I; N]) {
    let live = d.simd_ne(F::ZERO);
    for (c, &v) in codes.iter_mut().zip(x) {
        let l = clamp(nearest8((v + dm) / d), lo, hi) - I::splat(lo);
        *c = pick_int(live, l, *c);
    }
}

/// `get_scale_min_k4`: sub-block j's 6-bit scale and min from the 12 bytes.
fn scale_min(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// The 12 scale bytes of 8 (scale, min) pairs, as the quantizers pack them.
fn pack_scales(ls: [u8; 8], lm: [u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// A Q4_K/Q5_K super-block's header: d, dmin and the packed scales.
#[derive(Clone, Copy, Default)]
struct Header {
    d: u16,
    dmin: u16,
    scales: [u8; 12],
}

/// The 8 lanes of super-block `s` (of two in a vector).
fn eight(v: F, s: usize) -> [f32; 8] {
    let a = v.to_array();
    std::array::from_fn(|j| a[8 * s + j])
}

/// The `_ref` header: each sub-block's scale and min as `nearest(63·s/max)`.
fn header_from_max(scales: [f32; 8], mins: [f32; 8]) -> Header {
    let max_scale = scales.iter().fold(0.0f32, |m, &s| if s > m { s } else { m });
    let max_min = mins.iter().fold(0.0f32, |m, &s| if s > m { s } else { m });
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let ls = scales.map(|s| (nearest(inv_scale * s) as u8).min(63));
    let lm = mins.map(|m| (nearest(inv_min * m) as u8).min(63));
    Header { d: fp16(max_scale / 63.0), dmin: fp16(max_min / 63.0), scales: pack_scales(ls, lm) }
}

/// The `_impl` header: scales and mins each through `make_qp_quants` weighted
/// by the sub-blocks' weight sums; Q5_K caps the codes at 63, Q4_K does not.
fn header_from_qp(scales: [f32; 8], mins: [f32; 8], sw: [f32; 8], cap: bool) -> Header {
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let d = qp(&scales, 63, &sw, &mut ls);
    let m = qp(&mins, 63, &sw, &mut lm);
    if cap {
        ls = ls.map(|l| l.min(63));
        lm = lm.map(|l| l.min(63));
    }
    Header { d: fp16(d), dmin: fp16(m), scales: pack_scales(ls, lm) }
}

/// One or two Q4_K/Q5_K super-blocks (`x`, 256 or 512 values; their sixteen
/// sub-blocks are the lanes): codes (0..=nmax, row order) and headers.
fn super_blocks(x: &[f32], qw: Option<&[f32]>, nmax: i32, codes: &mut [u8]) -> [Header; 2] {
    let n = x.len() / QK_K;
    let xs = load::<32>(x, 8 * n);
    let mut lanes = [I::ZERO; 32];
    let mut headers = [Header::default(); 2];
    if let Some(qw) = qw {
        let sums = pair_sum_squares(x);
        let sigma2 = from_fn(|k| 2.0 * sums[k / 8] / QK_K as f32);
        let qws = load::<32>(qw, 8 * n);
        let w: [F; 32] = std::array::from_fn(|i| qws[i] * (sigma2 + xs[i] * xs[i]).sqrt());
        let grid = Grid { rmin: -0.9, rdelta: 0.05, steps: 36 };
        let (scales, mins) = qkx(&xs, &w, nmax, grid, false, &mut lanes);
        let sw = weight_sums(&w);
        for (s, h) in headers.iter_mut().enumerate().take(n) {
            *h = header_from_qp(eight(scales, s), eight(mins, s), eight(sw, s), nmax == 31);
        }
    } else {
        let av_x = (sum_squares(&xs) / splat(32.0)).sqrt();
        let w: [F; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let grid = if nmax == 15 {
            Grid { rmin: -1.0, rdelta: 0.1, steps: 20 }
        } else {
            Grid { rmin: -0.5, rdelta: 0.1, steps: 15 }
        };
        let (scales, mins) = qkx(&xs, &w, nmax, grid, false, &mut lanes);
        for (s, h) in headers.iter_mut().enumerate().take(n) {
            *h = header_from_max(eight(scales, s), eight(mins, s));
        }
    }
    let sm = |k: usize| scale_min(k % 8, &headers[k / 8].scales);
    let dl = from_fn(|k| fp16_f32(headers[k / 8].d) * f32::from(sm(k).0));
    let ml = from_fn(|k| fp16_f32(headers[k / 8].dmin) * f32::from(sm(k).1));
    requantize(&xs, dl, ml, 0, nmax, &mut lanes);
    store(&lanes, codes, 8 * n);
    headers
}

fn put_header(h: &Header, o: &mut [u8]) {
    o[0..2].copy_from_slice(&h.d.to_le_bytes());
    o[2..4].copy_from_slice(&h.dmin.to_le_bytes());
    o[4..16].copy_from_slice(&h.scales);
}

/// The row's super-blocks two at a time: each one's codes and header, and
/// its `block_bytes` of output, handed to `write`.
fn by_pairs(
    x: &[f32],
    qw: Option<&[f32]>,
    nmax: i32,
    block_bytes: usize,
    out: &mut [u8],
    write: impl Fn(&[u8], &Header, &mut [u8]),
) {
    let mut codes = [0u8; 2 * QK_K];
    let pairs = x.chunks(2 * QK_K).zip(out.chunks_mut(2 * block_bytes));
    for (p, (xp, op)) in pairs.enumerate() {
        let headers = super_blocks(xp, qw.map(|q| &q[p * 2 * QK_K..][..xp.len()]), nmax, &mut codes);
        for (s, o) in op.chunks_exact_mut(block_bytes).enumerate() {
            write(&codes[s * QK_K..][..QK_K], &headers[s], o);
        }
    }
}

/// `quantize_q4_K`: d, dmin, 12 scale bytes, 128 bytes of nibbles (sub-block
/// 2c in the low nibbles of bytes 32c.., 2c + 1 in the high).
pub(super) fn q4_k(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    by_pairs(x, imatrix, 15, 144, out, |codes, h, o| {
        put_header(h, o);
        for (c, q) in o[16..].chunks_exact_mut(32).enumerate() {
            for (l, q) in q.iter_mut().enumerate() {
                *q = codes[64 * c + l] | (codes[64 * c + l + 32] << 4);
            }
        }
    });
}

/// `quantize_q5_K`: as Q4_K with a 32-byte plane of fifth bits (bit 2c of
/// byte l for element 64c + l, bit 2c + 1 for 64c + 32 + l) before the nibbles.
pub(super) fn q5_k(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    by_pairs(x, imatrix, 31, 176, out, |codes, h, o| {
        put_header(h, o);
        let (qh, ql) = o[16..].split_at_mut(32);
        qh.fill(0);
        for (c, q) in ql.chunks_exact_mut(32).enumerate() {
            for (l, q) in q.iter_mut().enumerate() {
                let (lo, hi) = (codes[64 * c + l], codes[64 * c + l + 32]);
                qh[l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
                *q = (lo & 0x0F) | ((hi & 0x0F) << 4);
            }
        }
    });
}
