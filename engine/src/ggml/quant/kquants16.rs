//! Q2_K, Q3_K and Q6_K (super-blocks of 256 in sixteen sub-blocks of 16) as
//! ggml-quants.c (llama-cpp-python 0.3.36's vendored llama.cpp) writes them,
//! `quantize_row_*_ref` without an importance matrix and
//! `quantize_row_*_impl` with one. A super-block's sixteen sub-blocks are the
//! lanes of one search.

use super::arith::{GROUP_MAX_EPS, fp16, fp16_f32, nearest};
use super::kquants::{QK_K, requantize, super_block_sum_squares, weight_sums};
use super::lanes::{F, I, from_fn, load, splat, store};
use super::search::{Grid, q3, qkx, qp, qx};

/// Sub-block length.
const N: usize = 16;

/// Weights `qw·sqrt(σ² + x²)` of the imatrix paths.
fn imatrix_weights(xs: &[F; N], qw: &[f32], sigma2: f32) -> [F; N] {
    let qws = load::<N>(qw, 16);
    std::array::from_fn(|i| qws[i] * (splat(sigma2) + xs[i] * xs[i]).sqrt())
}

/// Q2_K's and Q3_K's 2-bit plane: byte 32c + l holds elements 128c + 32s + l
/// in bits 2s.
fn put_two_bits(codes: &[u8; QK_K], out: &mut [u8]) {
    for (c, q) in out[..64].chunks_exact_mut(32).enumerate() {
        for (l, q) in q.iter_mut().enumerate() {
            let at = |s: usize| (codes[128 * c + 32 * s + l] & 3) << (2 * s);
            *q = at(0) | at(1) | at(2) | at(3);
        }
    }
}

/// `quantize_q2_K`: 16 scale bytes (scale | min << 4), 64 bytes of 2-bit codes,
/// d, dmin.
pub(super) fn q2_k(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut codes = [0u8; QK_K];
    for (i, (sb, o)) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(84)).enumerate() {
        let xs = load::<N>(sb, 16);
        let mut lanes = [I::ZERO; N];
        let (scales, d, dmin) = match imatrix {
            Some(qw) => q2_k_scales_imatrix(sb, &xs, &qw[i * QK_K..][..QK_K], &mut lanes),
            None => q2_k_scales(&xs, &mut lanes),
        };
        let (df, mf) = (fp16_f32(d), fp16_f32(dmin));
        let dl = from_fn(|j| df * f32::from(scales[j] & 0x0F));
        let ml = from_fn(|j| mf * f32::from(scales[j] >> 4));
        requantize(&xs, dl, ml, 0, 3, &mut lanes);
        store(&lanes, &mut codes, 16);
        o[..16].copy_from_slice(&scales);
        put_two_bits(&codes, &mut o[16..80]);
        o[80..82].copy_from_slice(&d.to_le_bytes());
        o[82..84].copy_from_slice(&dmin.to_le_bytes());
    }
}

/// The larger of 0 and each value, first to last (`if (s > max) max = s`).
fn max_of(v: &[f32; 16]) -> f32 {
    v.iter().fold(0.0f32, |m, &s| if s > m { s } else { m })
}

/// `quantize_row_q2_K_ref`'s scales: `make_qkx2_quants` on |x| weights, then
/// 4-bit scales and mins against their maxima.
fn q2_k_scales(xs: &[F; N], lanes: &mut [I; N]) -> ([u8; 16], u16, u16) {
    let grid = Grid { rmin: -0.5, rdelta: 0.1, steps: 15 };
    let (scales, mins) = qkx(xs, &xs.map(F::abs), 3, grid, true, lanes);
    let (scales, mins) = (scales.to_array(), mins.to_array());
    let (max_scale, max_min) = (max_of(&scales), max_of(&mins));
    let mut bytes = [0u8; 16];
    let mut d = fp16(0.0);
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        bytes = scales.map(|s| nearest(iscale * s) as u8);
        d = fp16(max_scale / 15.0);
    }
    let mut dmin = fp16(0.0);
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (b, &m) in bytes.iter_mut().zip(&mins) {
            *b |= (nearest(iscale * m) << 4) as u8;
        }
        dmin = fp16(max_min / 15.0);
    }
    (bytes, d, dmin)
}

/// `quantize_row_q2_K_impl`'s scales: `make_qkx3_quants`, then
/// `make_qp_quants` for scales and mins.
fn q2_k_scales_imatrix(x: &[f32], xs: &[F; N], qw: &[f32], lanes: &mut [I; N]) -> ([u8; 16], u16, u16) {
    let sigma2 = super_block_sum_squares(x) / QK_K as f32;
    let w = imatrix_weights(xs, qw, sigma2);
    let grid = Grid { rmin: -0.9, rdelta: 0.05, steps: 36 };
    let (scales, mins) = qkx(xs, &w, 3, grid, false, lanes);
    let sw = weight_sums(&w).to_array();
    let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
    let dm = qp(&scales.to_array(), 15, &sw, &mut ls);
    let mm = qp(&mins.to_array(), 15, &sw, &mut lm);
    let bytes = std::array::from_fn(|j| ls[j] | (lm[j] << 4));
    (bytes, fp16(dm), fp16(mm))
}

/// Q3_K's 6-bit scale j (stored + 32) into the 12 bytes: low nibbles in
/// bytes 0..8 (j ≥ 8 in the high nibble), the top two bits in bytes 8..12.
fn put_scale3(s: &mut [u8; 12], j: usize, l: i32) {
    if j < 8 {
        s[j] = (l & 0x0F) as u8;
    } else {
        s[j - 8] |= ((l & 0x0F) << 4) as u8;
    }
    s[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
}

fn scale3(s: &[u8; 12], j: usize) -> i8 {
    let low = if j < 8 { s[j] & 0x0F } else { s[j - 8] >> 4 };
    (low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8 - 32
}

/// `quantize_q3_K`: a 32-byte high-bit mask, 64 bytes of 2-bit codes, 12
/// scale bytes, d.
pub(super) fn q3_k(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut codes = [0u8; QK_K];
    for (i, (sb, o)) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(110)).enumerate() {
        let xs = load::<N>(sb, 16);
        let mut lanes = [I::ZERO; N];
        let (scales, d) = match imatrix {
            Some(qw) => q3_k_scales_imatrix(sb, &xs, &qw[i * QK_K..][..QK_K], &mut lanes),
            None => q3_k_scales(&xs, &mut lanes),
        };
        let df = fp16_f32(d);
        requantize(&xs, from_fn(|j| df * f32::from(scale3(&scales, j))), F::ZERO, -4, 3, &mut lanes);
        store(&lanes, &mut codes, 16);
        let hmask = &mut o[..32];
        hmask.fill(0);
        for (j, c) in codes.iter_mut().enumerate() {
            if *c > 3 {
                hmask[j % 32] |= 1 << (j / 32);
                *c -= 4;
            }
        }
        put_two_bits(&codes, &mut o[32..96]);
        o[96..108].copy_from_slice(&scales);
        o[108..110].copy_from_slice(&d.to_le_bytes());
    }
}

/// The value of largest magnitude, first on ties (`if (|s| > amax)`).
fn signed_max_of(v: &[f32; 16]) -> (f32, f32) {
    v.iter().fold((0.0f32, 0.0f32), |(amax, max), &s| if s.abs() > amax { (s.abs(), s) } else { (amax, max) })
}

/// `quantize_row_q3_K_ref`'s scales: `make_q3_quants` per sub-block, then
/// 6-bit signed scales against the one of largest magnitude.
fn q3_k_scales(xs: &[F; N], lanes: &mut [I; N]) -> ([u8; 12], u16) {
    let scales = q3(xs, 4, lanes).to_array();
    let max_scale = signed_max_of(&scales).1;
    let mut bytes = [0u8; 12];
    if max_scale == 0.0 {
        return (bytes, fp16(0.0));
    }
    let iscale = -32.0 / max_scale;
    for (j, &s) in scales.iter().enumerate() {
        let l = i32::from((nearest(iscale * s) as i8).clamp(-32, 31)) + 32;
        put_scale3(&mut bytes, j, l);
    }
    (bytes, fp16(1.0 / iscale))
}

/// `quantize_row_q3_K_impl`'s scales: `make_qx_quants` per sub-block, then
/// once more (nmax 32) over the sixteen scales weighted by the weight sums.
fn q3_k_scales_imatrix(x: &[f32], xs: &[F; N], qw: &[f32], lanes: &mut [I; N]) -> ([u8; 12], u16) {
    let sigma2 = 2.0 * super_block_sum_squares(x) / QK_K as f32;
    let w = imatrix_weights(xs, qw, sigma2);
    let scales = qx(xs, &w, 4, lanes).to_array();
    let sw = weight_sums(&w).to_array();
    let mut ls = [I::ZERO; N];
    let d_block = qx(&in_lane_0(&scales), &in_lane_0(&sw), 32, &mut ls).to_array()[0];
    let mut bytes = [0u8; 12];
    for (j, l) in ls.iter().enumerate() {
        put_scale3(&mut bytes, j, l.as_array()[0]);
    }
    (bytes, fp16(d_block))
}

/// One search's values in lane 0; the other lanes are all-zero blocks.
fn in_lane_0(v: &[f32; 16]) -> [F; N] {
    std::array::from_fn(|i| from_fn(|k| if k == 0 { v[i] } else { 0.0 }))
}

/// `quantize_q6_K`: 128 bytes of low nibbles, 64 bytes of high 2-bit parts,
/// 16 signed scale bytes, d. A super-block whose scales are all ~0 is zeros.
pub(super) fn q6_k(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    let mut codes = [0u8; QK_K];
    for (i, (sb, o)) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(210)).enumerate() {
        let xs = load::<N>(sb, 16);
        let w = match imatrix {
            Some(qw) => load::<N>(&qw[i * QK_K..][..QK_K], 16),
            None => xs.map(|v| v * v),
        };
        let mut lanes = [I::ZERO; N];
        let scales = qx(&xs, &w, 32, &mut lanes).to_array();
        let (amax, max_scale) = signed_max_of(&scales);
        if amax < GROUP_MAX_EPS {
            o.fill(0);
            continue;
        }
        let iscale = -128.0 / max_scale;
        let d = fp16(1.0 / iscale);
        let sc = scales.map(|s| nearest(iscale * s).min(127) as i8);
        let df = fp16_f32(d);
        requantize(&xs, from_fn(|j| df * f32::from(sc[j])), F::ZERO, -32, 31, &mut lanes);
        store(&lanes, &mut codes, 16);
        put_six_bits(&codes, o);
        o[192..208].copy_from_slice(&sc.map(|s| s as u8));
        o[208..210].copy_from_slice(&d.to_le_bytes());
    }
}

/// Q6_K's planes: for half c, byte 64c + l holds the low nibbles of elements
/// 128c + l (low) and + 64 (high), byte 64c + 32 + l those of + 32 and + 96;
/// byte 128 + 32c + l the top two bits of all four.
fn put_six_bits(codes: &[u8; QK_K], o: &mut [u8]) {
    for c in 0..2 {
        for l in 0..32 {
            let q = |s: usize| codes[128 * c + 32 * s + l];
            o[64 * c + l] = (q(0) & 0x0F) | ((q(2) & 0x0F) << 4);
            o[64 * c + 32 + l] = (q(1) & 0x0F) | ((q(3) & 0x0F) << 4);
            o[128 + 32 * c + l] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
}
