//! The vector fast path (8 lanes, `wide`), apart from the scalar reference in
//! `format` and `metrics`. Every function here must give the same result as its
//! scalar twin; the tests at the bottom check that lane by lane.
//!
//! Without target features `wide` lowers to SSE2 pairs; with AVX2 it uses 256-bit
//! registers. Sums stay in f64 (two f64x4 halves per f32x8).

use wide::{f32x8, f64x4, u32x8};

use crate::format::{SliceParams, WorkDtype};

pub(crate) const W: usize = 8;

/// Whether the hot loops take their AVX-512 build (runtime dispatch; the
/// baseline build stays x86-64-v3). `QUANTSCOPE_NO_AVX512=1` turns it off, so
/// that benchmarks can time both paths on one machine.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("QUANTSCOPE_NO_AVX512").is_none()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
    })
}

#[inline]
pub(crate) fn load(xs: &[f32]) -> f32x8 {
    f32x8::from(xs)
}

/// Where a vector loop reads its values: an f32 slice, or a tensor's stored
/// little-endian F32 bytes at any alignment ([`LeF32`]). Both give the same
/// lanes in the same order, so a loop's sums are the same bits either way.
pub(crate) trait Source: Copy {
    /// The number of values.
    fn len(self) -> usize;
    /// Values 8k..8k+8 (k < len / 8). An index, not an iterator: the
    /// iterator's `Option` kept the error pass's accumulators on the stack.
    fn block(self, k: usize) -> f32x8;
    /// The values past the last whole block (fewer than [`W`]).
    fn tail(self) -> ([f32; W], usize);
}

impl Source for &[f32] {
    #[inline]
    fn len(self) -> usize {
        <[f32]>::len(self)
    }

    #[allow(clippy::inline_always)] // the hot loops' body
    #[inline(always)]
    fn block(self, k: usize) -> f32x8 {
        load(&self[k * W..k * W + W])
    }

    fn tail(self) -> ([f32; W], usize) {
        let rest = self.chunks_exact(W).remainder();
        let mut t = [0.0; W];
        t[..rest.len()].copy_from_slice(rest);
        (t, rest.len())
    }
}

/// Little-endian F32 bytes read in place with unaligned loads: a legal
/// safetensors file need not align its F32 data to 4 bytes, and copying each
/// chunk into an aligned buffer first costs a pass over memory.
#[derive(Clone, Copy)]
pub(crate) struct LeF32<'a>(pub &'a [u8]);

impl LeF32<'_> {
    #[inline]
    fn value(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl Source for LeF32<'_> {
    #[inline]
    fn len(self) -> usize {
        self.0.len() / 4
    }

    #[allow(clippy::inline_always)] // the hot loops' body
    #[inline(always)]
    fn block(self, k: usize) -> f32x8 {
        let b = &self.0[4 * W * k..4 * W * (k + 1)];
        if cfg!(target_endian = "little") {
            // One unaligned 32-byte load.
            f32x8::new(bytemuck::pod_read_unaligned::<[f32; W]>(b))
        } else {
            f32x8::new(std::array::from_fn(|i| Self::value(&b[4 * i..])))
        }
    }

    fn tail(self) -> ([f32; W], usize) {
        let rest = self.0[..self.len() * 4].chunks_exact(4 * W).remainder();
        let mut t = [0.0; W];
        for (o, b) in t.iter_mut().zip(rest.chunks_exact(4)) {
            *o = Self::value(b);
        }
        (t, rest.len() / 4)
    }
}

/// `round_half_even` on 8 lanes (the 2^23 trick).
#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
pub(crate) fn round_half_even_x8(x: f32x8) -> f32x8 {
    let two23 = f32x8::splat(8_388_608.0);
    let a = x.abs();
    let r = (a + two23) - two23;
    a.simd_lt(two23).select(r, a).copysign(x)
}

/// INT fake-quant on 8 lanes; equals `IntFormat::fake_quant` (each step
/// rounded to the working dtype `d`, Z added before rounding).
#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
pub(crate) fn int_fake_quant_x8(x: f32x8, p: &SliceParams, qmin: f32, qmax: f32, d: WorkDtype) -> f32x8 {
    let s = f32x8::splat(p.scale);
    let z = f32x8::splat(p.zero_point as f32);
    let q = int_code_x8(x, p, qmin, qmax, d);
    // |Q − Z| ≤ 255 is exact in every working dtype.
    d.round_x8((q - z) * s)
}

/// The INT code Q of 8 lanes (as f32), from a quotient `q` = D(R / S).
#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
fn code_of_quotient(q: f32x8, z: f32x8, qmin: f32, qmax: f32, d: WorkDtype) -> f32x8 {
    let v = d.round_x8(q + z);
    // vroundps: the same ties-to-even rounding as `round_half_even_x8` (sign of
    // zero kept; a NaN lane is replaced below), in one instruction.
    let c = v.round_ties_even().max(f32x8::splat(qmin)).min(f32x8::splat(qmax));
    // NaN becomes code 0, as the scalar path's saturating cast does.
    // + 0 makes a −0 code the integer 0, as the cast does.
    v.is_nan().select(f32x8::ZERO, c + f32x8::ZERO)
}

/// Whether `S` is a scale whose reciprocal R · (1/S) may stand in for R / S:
/// S and 1/S normal, so the product's error is relative (docs/numerics.md,
/// "True division").
#[inline]
pub(crate) fn reciprocal_ok(scale: f32) -> bool {
    scale.is_normal() && (1.0 / scale).is_normal()
}

/// The INT code of 8 lanes, bit-identical to `round_half_even(D(D(R / S) + Z))`
/// clamped, without a division in the common case: q̃ = R · (1/S) lies within
/// 2 ulps of R / S, so the code can differ only for lanes next to a boundary of
/// the step function R / S ↦ Q. Such lanes send the vector back through the true
/// division (docs/numerics.md, "True division").
#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
pub(crate) fn int_code_x8(x: f32x8, p: &SliceParams, qmin: f32, qmax: f32, d: WorkDtype) -> f32x8 {
    let s = f32x8::splat(p.scale);
    let z = f32x8::splat(p.zero_point as f32);
    // The F32 bound below assumes |Z| ≤ 128, which every INT format's Z meets.
    if !reciprocal_ok(p.scale) || p.zero_point.unsigned_abs() > 128 {
        return code_of_quotient(d.round_x8(x / s), z, qmin, qmax, d);
    }
    let approx = x * f32x8::splat(1.0 / p.scale);
    let near = match d {
        WorkDtype::F32 => {
            // The code changes where q + Z crosses k + ½. While |q̃ + Z| < 512 (so
            // |q̃| < 640), q̃ + Z is within 2^−12 of the true q + Z; past 512 both
            // clamp alike. A lane further than 2^−9 from every k + ½ is safe.
            let v = approx + z;
            let frac = (v - v.round_ties_even()).abs();
            frac.simd_ge(f32x8::splat(0.5 - 1.0 / 512.0))
        }
        // Everything after D(q) depends on D(q) only, which changes where q
        // crosses a midpoint between two D values (low mantissa bits 100…0); a
        // q̃ more than 8 f32 ulps from one has D(q̃) = D(R / S). (Below F16's
        // normal range D(q) may differ, but |q| < 2^−14 gives the code Z either way.)
        WorkDtype::BF16 => near_midpoint(approx, 16),
        WorkDtype::F16 => near_midpoint(approx, 13),
    };
    let q = if near.to_bitmask() == 0 { approx } else { x / s };
    code_of_quotient(d.round_x8(q), z, qmin, qmax, d)
}

/// Lanes whose low `shift` bits lie within ±8 of 100…0: the midpoint between two
/// values of a dtype with `23 − shift` mantissa bits.
#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
fn near_midpoint(a: f32x8, shift: u32) -> f32x8 {
    // (low − mid + 8) mod 2^32 ≤ 16 ⇔ low lies within ±8 of mid.
    let low = a.to_bits() & u32x8::splat((1 << shift) - 1);
    let off = low + u32x8::splat(8) - u32x8::splat(1 << (shift - 1));
    f32x8::from_bits(off.simd_lt(u32x8::splat(17)))
}

/// The bit layout an FP8 fake-quant needs, and the working dtype.
#[derive(Clone, Copy)]
pub(crate) struct Fp8Layout {
    pub man_bits: u32,
    pub fmax: f32,
    pub min_normal: f32,
    pub subnormal_scale: f32,
    pub work: WorkDtype,
}

/// FP8 fake-quant on 8 lanes: rounds v = D(D(x − c)/S) + 0 to the FP8 grid
/// directly in f32 bits (no table), so it equals `D(D(S · value(encode(v))) + c)`.
#[inline]
pub(crate) fn fp8_fake_quant_x8(x: f32x8, p: &SliceParams, l: Fp8Layout) -> f32x8 {
    let d = l.work;
    let s = f32x8::splat(p.scale);
    let shifted = if p.offset == 0.0 { x } else { d.round_x8(x - f32x8::splat(p.offset)) };
    let unclamped = d.round_x8(shifted / s) + f32x8::ZERO;
    let v = fp8_round_x8(unclamped, l);
    let r = d.round_x8(s * v);
    if p.offset == 0.0 { r } else { d.round_x8(r + f32x8::splat(p.offset)) }
}

/// Clamps v to ±fmax and rounds it to the FP8 grid of `l` (NaN stays NaN).
#[inline]
fn fp8_round_x8(unclamped: f32x8, l: Fp8Layout) -> f32x8 {
    let nan = unclamped.is_nan();
    let y = unclamped.max(f32x8::splat(-l.fmax)).min(f32x8::splat(l.fmax));
    let a = y.abs();
    // Normal range: round the f32 mantissa to `man_bits` bits, ties to even.
    let shift = 23 - l.man_bits;
    let bits = a.to_bits();
    let lsb = (bits >> shift) & u32x8::splat(1);
    let rounded = (bits + u32x8::splat((1 << (shift - 1)) - 1) + lsb) & u32x8::splat(!((1u32 << shift) - 1));
    let normal = f32x8::from_bits(rounded);
    // Subnormal range: a fixed step, so scale to integers and round.
    let sub = round_half_even_x8(a * f32x8::splat(l.subnormal_scale)) * f32x8::splat(1.0 / l.subnormal_scale);
    let v = a.simd_lt(f32x8::splat(l.min_normal)).select(sub, normal).copysign(y);
    nan.select(unclamped, v)
}

/// E2M1 rounding of v on 8 lanes: clamp to ±6, then the nearest of 0, 0.5, 1,
/// 1.5, 2, 3, 4, 6 with ties to the even index, the sign kept (NaN gives ±0, as
/// the scalar encoder's comparisons do).
#[inline]
fn e2m1_round_x8(v: f32x8) -> f32x8 {
    let y = v.max(f32x8::splat(-6.0)).min(f32x8::splat(6.0));
    let a = y.abs();
    let step = |m: f32x8, by: f32| m.select(f32x8::splat(by), f32x8::ZERO);
    let mag = step(a.simd_gt(f32x8::splat(0.25)), 0.5)
        + step(a.simd_ge(f32x8::splat(0.75)), 0.5)
        + step(a.simd_gt(f32x8::splat(1.25)), 0.5)
        + step(a.simd_ge(f32x8::splat(1.75)), 0.5)
        + step(a.simd_gt(f32x8::splat(2.5)), 1.0)
        + step(a.simd_ge(f32x8::splat(3.5)), 1.0)
        + step(a.simd_gt(f32x8::splat(5.0)), 2.0);
    v.is_nan().select(f32x8::ZERO.copysign(v), mag.copysign(y))
}

/// Microscaled fake-quant on 8 lanes: v = D_q(x / step) + 0 rounded to E2M1
/// (`fp4`) or E4M3, then R′ = BF16(value · step). Equals `MicroFormat::fake_quant`.
#[inline]
pub(crate) fn micro_fake_quant_x8(x: f32x8, step: f32, quotient: WorkDtype, fp4: bool) -> f32x8 {
    let s = f32x8::splat(step);
    let v = quotient.round_x8(x / s) + f32x8::ZERO;
    let q = if fp4 {
        e2m1_round_x8(v)
    } else {
        let l = Fp8Layout {
            man_bits: 3,
            fmax: 448.0,
            min_normal: 0.015_625,
            subnormal_scale: 512.0,
            work: WorkDtype::F32,
        };
        fp8_round_x8(v, l)
    };
    WorkDtype::BF16.round_x8(s * q)
}

#[inline]
fn widen(x: f32x8) -> (f64x4, f64x4) {
    let a = x.to_array();
    (
        f64x4::new([f64::from(a[0]), f64::from(a[1]), f64::from(a[2]), f64::from(a[3])]),
        f64x4::new([f64::from(a[4]), f64::from(a[5]), f64::from(a[6]), f64::from(a[7])]),
    )
}

/// Vector accumulators of the error sums (two f64x4 halves each).
#[derive(Clone, Copy)]
pub(crate) struct ErrorAcc {
    e2: [f64x4; 2],
    re: [f64x4; 2],
    maxe: [f64x4; 2],
    /// ΣR and ΣR² when the loop also gathers the signal (`add::<true>`), lane for
    /// lane as [`StatsAcc`] sums them.
    sum: [f64x4; 2],
    sum_sq: [f64x4; 2],
    pub sum_clip_e2: f64,
    pub clipped: u64,
    pub nonfinite: u64,
}

impl Default for ErrorAcc {
    fn default() -> Self {
        let z = [f64x4::ZERO; 2];
        Self { e2: z, re: z, maxe: z, sum: z, sum_sq: z, sum_clip_e2: 0.0, clipped: 0, nonfinite: 0 }
    }
}

/// R − R′ in f64 (exact: both are f32) for the finite lanes, 0 elsewhere.
#[inline]
fn error_f64(finite: f32x8, x: f32x8, q: f32x8) -> ([f64x4; 2], [f64x4; 2]) {
    let (xl, xh) = widen(finite.select(x, f32x8::ZERO));
    let (ql, qh) = widen(finite.select(q, f32x8::ZERO));
    ([xl, xh], [xl - ql, xh - qh])
}

impl ErrorAcc {
    /// Same arithmetic as `metrics::error_sums_scalar`, 8 lanes at a time. With
    /// `SIGNAL`, also ΣR and ΣR² from the same widened R (the statistics pass then
    /// needs no f64 work: it only finds min and max).
    #[inline]
    pub fn add<const SIGNAL: bool>(&mut self, x: f32x8, q: f32x8, lo: f32x8, hi: f32x8) {
        self.add_masked::<SIGNAL>(x.is_finite(), x, q, lo, hi);
    }

    /// [`Self::add`] over the lanes of `finite` only (R against a stored R′:
    /// the lanes where both are finite); the rest count as non-finite.
    #[inline]
    pub fn add_masked<const SIGNAL: bool>(
        &mut self,
        finite: f32x8,
        x: f32x8,
        q: f32x8,
        lo: f32x8,
        hi: f32x8,
    ) {
        self.nonfinite += u64::from(8 - finite.to_bitmask().count_ones());
        let (xd, e) = error_f64(finite, x, q);
        for k in 0..2 {
            self.e2[k] += e[k] * e[k];
            self.re[k] += xd[k] * e[k];
            self.maxe[k] = self.maxe[k].max(e[k].abs());
            if SIGNAL {
                self.sum[k] += xd[k];
                self.sum_sq[k] += xd[k] * xd[k];
            }
        }
        let clipped = (finite & (x.simd_lt(lo) | hi.simd_lt(x))).to_bitmask();
        // Clipping is rare under most calibrations: lane by lane, only when it happens.
        if clipped != 0 {
            self.clipped += u64::from(clipped.count_ones());
            let (xa, qa) = (x.to_array(), q.to_array());
            for j in (0..8).filter(|j| clipped & (1 << j) != 0) {
                let e = f64::from(xa[j]) - f64::from(qa[j]);
                self.sum_clip_e2 += e * e;
            }
        }
    }

    /// (ΣR, ΣR²) gathered by `add::<true>`, reduced as `StatsAcc::parts` does.
    pub fn signal(&self) -> (f64, f64) {
        ((self.sum[0] + self.sum[1]).reduce_add(), (self.sum_sq[0] + self.sum_sq[1]).reduce_add())
    }

    /// (Σe², ΣRe, max|e|)
    pub fn sums(&self) -> (f64, f64, f64) {
        let s = |a: [f64x4; 2]| (a[0] + a[1]).reduce_add();
        let m = self.maxe[0].max(self.maxe[1]).to_array().into_iter().fold(0.0, f64::max);
        (s(self.e2), s(self.re), m)
    }
}

/// Σ(x − q)² over finite lanes, with exactly the arithmetic of `ErrorAcc::add`'s
/// Σe², so that MSE calibration's objective and the reported MSE agree to the bit.
#[inline]
pub(crate) fn sq_error_x8(acc: &mut [f64x4; 2], x: f32x8, q: f32x8) {
    let (_, e) = error_f64(x.is_finite(), x, q);
    acc[0] += e[0] * e[0];
    acc[1] += e[1] * e[1];
}

/// Σ(x − q)² of 8 lanes into f32 lanes (finite lanes only), one fused
/// multiply-add per lane: MSE calibration's ranking sum
/// (`metrics::sum_sq_error_approx`), several times cheaper than widening each
/// e to f64 as [`sq_error_x8`] does.
#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
pub(crate) fn sq_error_f32_x8(acc: f32x8, x: f32x8, q: f32x8) -> f32x8 {
    let e = x.is_finite().select(x - q, f32x8::ZERO);
    e.mul_add(e, acc)
}

/// Adds 8 f32 lanes, widened exactly, into two f64x4 accumulators.
#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
pub(crate) fn add_widened(tot: &mut [f64x4; 2], acc: f32x8) {
    let (l, h) = widen(acc);
    tot[0] += l;
    tot[1] += h;
}

/// Finite min/max, Σx, Σx² and the non-finite count of 8 lanes at a time.
#[derive(Clone, Copy)]
pub(crate) struct StatsAcc {
    min: f32x8,
    max: f32x8,
    sum: [f64x4; 2],
    sum_sq: [f64x4; 2],
    pub nonfinite: u64,
}

impl Default for StatsAcc {
    fn default() -> Self {
        Self {
            min: f32x8::splat(f32::INFINITY),
            max: f32x8::splat(f32::NEG_INFINITY),
            sum: [f64x4::ZERO; 2],
            sum_sq: [f64x4::ZERO; 2],
            nonfinite: 0,
        }
    }
}

impl StatsAcc {
    /// Min, max and the non-finite count only (ΣR, ΣR² come from the error pass).
    #[inline]
    pub fn add_range(&mut self, x: f32x8) -> wide::f32x8 {
        let finite = x.is_finite();
        self.nonfinite += u64::from(8 - finite.to_bitmask().count_ones());
        self.min = self.min.min(finite.select(x, f32x8::splat(f32::INFINITY)));
        self.max = self.max.max(finite.select(x, f32x8::splat(f32::NEG_INFINITY)));
        finite
    }

    #[inline]
    pub fn add(&mut self, x: f32x8) {
        let finite = self.add_range(x);
        let (l, h) = widen(finite.select(x, f32x8::ZERO));
        self.sum[0] += l;
        self.sum[1] += h;
        self.sum_sq[0] += l * l;
        self.sum_sq[1] += h * h;
    }

    /// (min, max, Σx, Σx²)
    pub fn parts(&self) -> (f32, f32, f64, f64) {
        (
            self.min.to_array().into_iter().fold(f32::INFINITY, f32::min),
            self.max.to_array().into_iter().fold(f32::NEG_INFINITY, f32::max),
            (self.sum[0] + self.sum[1]).reduce_add(),
            (self.sum_sq[0] + self.sum_sq[1]).reduce_add(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Fp8Format, IntFormat, MicroFormat, MicroKind, NumberFormat, round_half_even};
    use crate::scheme::Mapping;

    #[test]
    fn bytes_at_any_alignment_give_the_slices_lanes() {
        fn bits(s: impl Source) -> Vec<u32> {
            let mut v = Vec::new();
            for k in 0..s.len() / W {
                v.extend(s.block(k).to_array().map(f32::to_bits));
            }
            v
        }
        let xs: Vec<f32> = (0..37).map(|k| f32::from_bits(0x3f80_0000 ^ (k * 7_919))).collect();
        let le: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        for n in [0, 5, 8, 16, 37] {
            for offset in 0..4 {
                let mut padded = vec![0xa5u8; offset];
                padded.extend_from_slice(&le[..4 * n]);
                let (src, slice) = (LeF32(&padded[offset..]), &xs[..n]);
                assert_eq!(src.len(), n);
                let lanes = bits(src);
                assert_eq!(lanes, bits(slice), "n {n} offset {offset}");
                assert_eq!(lanes.len(), n / W * W);
                let ((a, na), (b, nb)) = (src.tail(), slice.tail());
                assert_eq!((na, nb), (n % W, n % W));
                assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
            }
        }
    }

    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> =
            (0..40_000).map(|k| f32::from_bits((k as u32).wrapping_mul(2_654_435_761))).collect();
        v.extend((-5000..5000).map(|k| k as f32 * 0.013_7));
        v.extend([
            0.0,
            -0.0,
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.5,
            1.5,
            -2.5,
            f32::MAX,
        ]);
        while !v.len().is_multiple_of(W) {
            v.push(0.25);
        }
        v
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn vector_rounding_equals_scalar() {
        for c in inputs().chunks(W) {
            let r = round_half_even_x8(load(c)).to_array();
            for (x, y) in c.iter().zip(r) {
                assert!(same(round_half_even(*x), y), "{x:e}");
            }
        }
    }

    #[test]
    fn vector_fake_quant_equals_scalar_for_every_format() {
        let xs = inputs();
        for d in [WorkDtype::F32, WorkDtype::BF16, WorkDtype::F16] {
            for mapping in [Mapping::Symmetric, Mapping::Asymmetric] {
                for (lo, hi) in
                    [(-1.0f32, 1.0), (-3e-3, 7e-2), (0.5, 2.0), (-1e30, 1e30), (0.0, 0.0), (-0.625, 1.25)]
                {
                    for bits in [8u8, 4, 2] {
                        let f = IntFormat::new(bits).unwrap().in_work(d);
                        check_lanes(f, &f.params(lo, hi, mapping), &xs, &format!("int{bits} {d:?}"));
                    }
                    for f in [Fp8Format::E4M3, Fp8Format::E5M2] {
                        let f = f.in_work(d);
                        let p = f.params(lo, hi, mapping);
                        check_lanes(f, &p, &xs, &format!("{:?} {d:?} {mapping:?} [{lo},{hi}]", f.kind()));
                    }
                    for kind in [MicroKind::Nvfp4, MicroKind::Mxfp4, MicroKind::Mxfp8] {
                        for gs in [1.0f32, 2048.0, 2576.0, 3.0e-3] {
                            let f = MicroFormat::new(kind, d).with_global(gs);
                            let p = f.params(lo, hi, Mapping::Symmetric);
                            check_lanes(f, &p, &xs, &format!("{kind:?} gs {gs} {d:?} [{lo},{hi}]"));
                        }
                    }
                }
            }
        }
    }

    fn check_lanes<F: NumberFormat>(f: F, p: &SliceParams, xs: &[f32], what: &str) {
        for c in xs.chunks(W) {
            let v = f.fake_quant_x8(load(c), p).to_array();
            for (x, y) in c.iter().zip(v) {
                let want = f.fake_quant(*x, p);
                assert!(same(want, y), "{what} {x:e}: {want:e} vs {y:e}");
                let q = f.dequantize(f.quantize(*x, p), p);
                assert!(
                    same(want, q) || (want == 0.0 && q == 0.0 && p.offset != 0.0),
                    "{what} {x:e}: {want:e} vs {q:e}"
                );
            }
        }
    }

    /// The codes from [`int_code_x8`] (reciprocal with fix-up) against the scalar
    /// `IntFormat::quantize` (true division), lane by lane, for every dtype, Z and
    /// bit width; also counts the lanes that needed the fix-up.
    fn codes_match(xs: &[f32], scale: f32, zero_point: i32) -> Result<(), String> {
        let mut padded = xs.to_vec();
        padded.resize(xs.len().next_multiple_of(W), 0.0);
        for d in [WorkDtype::F32, WorkDtype::BF16, WorkDtype::F16] {
            for bits in [8u8, 4, 2] {
                let f = IntFormat::new(bits).unwrap().in_work(d);
                let half = 1i32 << (bits - 1);
                let p = SliceParams {
                    scale,
                    zero_point: zero_point.clamp(-half, half - 1),
                    offset: 0.0,
                    lo: -1.0,
                    hi: 1.0,
                };
                for c in padded.chunks(W) {
                    let got = int_code_x8(load(c), &p, f.qmin(), f.qmax(), d).to_array();
                    for (x, g) in c.iter().zip(got) {
                        let want = f.quantize(*x, &p);
                        if g.to_bits() != (want as f32).to_bits() {
                            return Err(format!(
                                "{d:?} int{bits} x {x:e} S {scale:e} Z {}: {g} vs {want}",
                                p.zero_point
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn every_bf16() -> Vec<f32> {
        (0..=u16::MAX).map(|b| f32::from_bits(u32::from(b) << 16)).collect()
    }

    #[test]
    fn reciprocal_codes_equal_the_division_for_every_bf16_value() {
        let xs = every_bf16();
        // Scales of the kinds calibration gives: amax/127.5 of BF16 values, a
        // power of two, a BF16-rounded one, and the extremes the guard covers.
        let scales = [
            0.02f32 / 127.5,
            0.917 / 127.5,
            3.5 / 7.5,
            1.0 / 1024.0,
            WorkDtype::BF16.round(0.0371 / 127.5),
            0.1,
            3.0,
            1e-30,
            f32::MIN_POSITIVE,
            1e-44,
            2.5e38,
        ];
        for s in scales {
            for z in [0, -3, 1, 77, -128] {
                codes_match(&xs, s, z).unwrap();
            }
        }
    }

    /// Inputs that sit exactly on or one ulp from a rounding boundary of R / S.
    #[test]
    fn reciprocal_codes_equal_the_division_next_to_every_boundary() {
        for s in [0.013_7f32, 1.0 / 127.5, 0.3, 7.0 / 255.0, 1.0e-3] {
            let mut xs = Vec::new();
            for k in -300..300 {
                let edge = (k as f32 + 0.5) * s;
                for u in -3i32..=3 {
                    xs.push(f32::from_bits(edge.to_bits().wrapping_add_signed(u)));
                }
                xs.push(k as f32 * s);
            }
            for z in [0, 5, -128] {
                codes_match(&xs, s, z).unwrap();
            }
            // These inputs do tell the two apart: without the fix-up, the bare
            // product gives another code for some of them.
            let (f, r) = (IntFormat::new(8).unwrap(), 1.0 / s);
            let p = SliceParams { scale: s, zero_point: 0, offset: 0.0, lo: -1.0, hi: 1.0 };
            let differ = xs
                .iter()
                .filter(|&&x| round_half_even(x * r).clamp(-128.0, 127.0) as i32 != f.quantize(x, &p));
            assert!(differ.count() > 0, "S {s:e}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn reciprocal_codes_equal_the_division(
            bits in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..40),
            near in proptest::collection::vec((-200i32..200, -4i32..=4), 0..40),
            scale_bits in proptest::prelude::any::<u32>(),
            scale in 1e-6f32..10.0,
            z in -128i32..128,
            use_bits in proptest::prelude::any::<bool>(),
        ) {
            let s = if use_bits { f32::from_bits(scale_bits & 0x7FFF_FFFF) } else { scale };
            // Arbitrary f32 patterns (NaN, Inf, subnormals included) and values
            // a few ulps from (k + ½)·S.
            let mut xs: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
            xs.extend(near.iter().map(|&(k, u)| f32::from_bits(((k as f32 + 0.5) * s).to_bits().wrapping_add_signed(u))));
            if s > 0.0 && s.is_finite() {
                codes_match(&xs, s, z).map_err(proptest::test_runner::TestCaseError::fail)?;
            }
        }
    }
}
