//! The legacy 32-value blocks and MXFP4, as ggml-quants.c (llama-cpp-python
//! 0.3.36's vendored llama.cpp) writes them: `quantize_row_{q8_0,q4_0,q4_1,
//! q5_0,q5_1,mxfp4}_ref` without an importance matrix, and the
//! `quantize_row_q{4,5}_{0,1}_impl` searches with one (Q8_0 and MXFP4 ignore
//! it, as ggml does). The `_ref` paths are plain per-block arithmetic; the
//! `_impl` paths search sixteen blocks at once in lanes.

use super::arith::{fp16, trunc};
use super::lanes::{F, I, LANES, load, pick, pick_int, splat, store};
use super::search::{Grid, qkx, qx};

/// Blocks of 32 values.
const QK: usize = 32;

fn put_f16(out: &mut [u8], at: usize, v: f32) {
    out[at..at + 2].copy_from_slice(&fp16(v).to_le_bytes());
}

/// Codes 0..16 as 16 bytes: element j in the low nibble, j + 16 in the high.
fn put_nibbles(codes: &[u8], out: &mut [u8]) {
    for j in 0..QK / 2 {
        out[j] = (codes[j] & 0x0F) | ((codes[j + QK / 2] & 0x0F) << 4);
    }
}

/// Codes 0..32 as Q5's `qh` (bit j: element j's fifth bit) then the nibbles.
fn put_five_bits(codes: &[u8], out: &mut [u8]) {
    let qh = codes.iter().enumerate().fold(0u32, |qh, (j, &c)| qh | (u32::from(c & 0x10) >> 4) << j);
    out[..4].copy_from_slice(&qh.to_le_bytes());
    put_nibbles(codes, &mut out[4..]);
}

/// The value of largest magnitude, first on ties (`if (amax < fabsf(v))`).
fn signed_max(b: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in b {
        if amax < v.abs() {
            (amax, max) = (v.abs(), v);
        }
    }
    max
}

/// `(min, max)` from ±FLT_MAX, as `if (v < min) …; if (v > max) …`.
fn min_max(b: &[f32]) -> (f32, f32) {
    b.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    })
}

fn inverse(d: f32) -> f32 {
    if d == 0.0 { 0.0 } else { 1.0 / d }
}

/// `quantize_q8_0`: d = amax/127, then 32 codes round(x/d). The imatrix is unused.
pub(super) fn q8_0(x: &[f32], _imatrix: Option<&[f32]>, out: &mut [u8]) {
    for (b, o) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
        let amax = b.iter().fold(0.0f32, |a, &v| if a > v.abs() { a } else { v.abs() });
        let d = amax / 127.0;
        let id = inverse(d);
        put_f16(o, 0, d);
        for (q, &v) in o[2..].iter_mut().zip(b) {
            *q = trunc((v * id).round()) as u8;
        }
    }
}

/// `quantize_q4_0`: d = max/−8 (max the value of largest magnitude), codes x/d + 8.
pub(super) fn q4_0(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    if let Some(qw) = imatrix {
        return symmetric_in_lanes(x, qw, 8, out);
    }
    for (b, o) in x.chunks_exact(QK).zip(out.chunks_exact_mut(18)) {
        let d = signed_max(b) / -8.0;
        let id = inverse(d);
        put_f16(o, 0, d);
        let codes: [u8; QK] = std::array::from_fn(|j| 15.min(trunc(b[j] * id + 8.5) as i8 as i32) as u8);
        put_nibbles(&codes, &mut o[2..]);
    }
}

/// `quantize_q5_0`: d = max/−16, codes x/d + 16 with the fifth bits in `qh`.
pub(super) fn q5_0(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    if let Some(qw) = imatrix {
        return symmetric_in_lanes(x, qw, 16, out);
    }
    for (b, o) in x.chunks_exact(QK).zip(out.chunks_exact_mut(22)) {
        let d = signed_max(b) / -16.0;
        let id = inverse(d);
        put_f16(o, 0, d);
        let codes: [u8; QK] = std::array::from_fn(|j| 31.min(trunc(b[j] * id + 16.5) as i8 as i32) as u8);
        put_five_bits(&codes, &mut o[2..]);
    }
}

/// `quantize_q4_1`: d = (max − min)/15 and m = min, codes (x − m)/d.
pub(super) fn q4_1(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    if let Some(qw) = imatrix {
        return affine_in_lanes(x, qw, 15, out);
    }
    for (b, o) in x.chunks_exact(QK).zip(out.chunks_exact_mut(20)) {
        let (min, max) = min_max(b);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        put_f16(o, 0, d);
        put_f16(o, 2, min);
        let codes: [u8; QK] =
            std::array::from_fn(|j| 15.min(trunc((b[j] - min) * id + 0.5) as i8 as i32) as u8);
        put_nibbles(&codes, &mut o[4..]);
    }
}

/// `quantize_q5_1`: d = (max − min)/31 and m = min, codes (x − m)/d, `qh` as Q5_0.
pub(super) fn q5_1(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    if let Some(qw) = imatrix {
        return affine_in_lanes(x, qw, 31, out);
    }
    for (b, o) in x.chunks_exact(QK).zip(out.chunks_exact_mut(24)) {
        let (min, max) = min_max(b);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        put_f16(o, 0, d);
        put_f16(o, 2, min);
        let codes: [u8; QK] = std::array::from_fn(|j| trunc((b[j] - min) * id + 0.5) as u8);
        put_five_bits(&codes, &mut o[4..]);
    }
}

/// `Σ x² / n` over the whole row: the imatrix paths' σ².
fn mean_square(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |s, &v| s + v * v) / x.len() as f32
}

/// The imatrix paths' groups: up to sixteen blocks of the row in lanes with their
/// weights `qw·sqrt(σ² + x²)`, handed to `block` with the group's output.
fn in_lanes(
    x: &[f32],
    qw: &[f32],
    block_bytes: usize,
    out: &mut [u8],
    block: impl Fn(&[F; QK], &[F; QK], usize, &mut [u8]),
) {
    let sigma2 = splat(mean_square(x));
    let group = LANES * QK;
    for ((xg, wg), og) in x.chunks(group).zip(qw.chunks(group)).zip(out.chunks_mut(LANES * block_bytes)) {
        let blocks = xg.len() / QK;
        let xs = load::<QK>(xg, blocks);
        let qws = load::<QK>(wg, blocks);
        let w: [F; QK] = std::array::from_fn(|i| qws[i] * (sigma2 + xs[i] * xs[i]).sqrt());
        block(&xs, &w, blocks, og);
    }
}

/// `quantize_row_q4_0_impl` (nmax 8) and `quantize_row_q5_0_impl` (nmax 16).
fn symmetric_in_lanes(x: &[f32], qw: &[f32], nmax: i32, out: &mut [u8]) {
    let block_bytes = if nmax == 8 { 18 } else { 22 };
    in_lanes(x, qw, block_bytes, out, |xs, w, blocks, out| {
        let mut codes = [I::ZERO; QK];
        let d = qx(xs, w, nmax, &mut codes);
        let mut l = [0u8; LANES * QK];
        store(&codes, &mut l, blocks);
        for (k, o) in out.chunks_exact_mut(block_bytes).enumerate() {
            put_f16(o, 0, d.as_array()[k]);
            let codes = &l[k * QK..][..QK];
            if nmax == 8 { put_nibbles(codes, &mut o[2..]) } else { put_five_bits(codes, &mut o[2..]) }
        }
    });
}

/// `quantize_row_q4_1_impl` (nmax 15) and `quantize_row_q5_1_impl` (nmax 31):
/// `make_qkx3_quants` per block; the block keeps d and −(−min).
fn affine_in_lanes(x: &[f32], qw: &[f32], nmax: i32, out: &mut [u8]) {
    let block_bytes = if nmax == 15 { 20 } else { 24 };
    let grid = Grid { rmin: -0.9, rdelta: 0.05, steps: 36 };
    in_lanes(x, qw, block_bytes, out, |xs, w, blocks, out| {
        let mut codes = [I::ZERO; QK];
        let (d, the_min) = qkx(xs, w, nmax, grid, false, &mut codes);
        let mut l = [0u8; LANES * QK];
        store(&codes, &mut l, blocks);
        for (k, o) in out.chunks_exact_mut(block_bytes).enumerate() {
            put_f16(o, 0, d.as_array()[k]);
            put_f16(o, 2, -the_min.as_array()[k]);
            let codes = &l[k * QK..][..QK];
            if nmax == 15 { put_nibbles(codes, &mut o[4..]) } else { put_five_bits(codes, &mut o[4..]) }
        }
    });
}

/// E2M1 values doubled (ggml's `kvalues_mxfp4`).
const E2M1_DOUBLED: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// `quantize_row_mxfp4_ref`: an E8M0 exponent from the block's amax, then each
/// value's nearest doubled E2M1 code under half that scale (first on ties).
pub(super) fn mxfp4(x: &[f32], _imatrix: Option<&[f32]>, out: &mut [u8]) {
    for (b, o) in x.chunks_exact(QK).zip(out.chunks_exact_mut(17)) {
        let amax = b.iter().fold(0.0f32, |a, &v| if a < v.abs() { v.abs() } else { a });
        let e = if amax > 0.0 { trunc(amax.log2().floor() - 2.0 + 127.0) as u8 } else { 0 };
        let d = splat(f32::from_bits(if e < 2 { 0x0020_0000 << e } else { u32::from(e - 1) << 23 }));
        o[0] = e;
        let lo = nearest_e2m1(F::new(std::array::from_fn(|j| b[j])), d).to_array();
        let hi = nearest_e2m1(F::new(std::array::from_fn(|j| b[j + 16])), d).to_array();
        for (j, q) in o[1..].iter_mut().enumerate() {
            *q = lo[j] as u8 | ((hi[j] as u8) << 4);
        }
    }
}

/// `best_index_mxfp4` per lane: the first code of least `|k·d − x|`.
fn nearest_e2m1(x: F, d: F) -> I {
    let mut best = (I::ZERO, (splat(f32::from(E2M1_DOUBLED[0])) * d - x).abs());
    for (i, &k) in E2M1_DOUBLED.iter().enumerate().skip(1) {
        let err = (splat(f32::from(k)) * d - x).abs();
        let better = err.simd_lt(best.1);
        best = (pick_int(better, I::splat(i as i32), best.0), pick(better, err, best.1));
    }
    best.0
}
