//! Error metrics (docs/numerics.md, "Metrics") and the fused per-element loop that
//! produces them. Sums are f64; the loop keeps `LANES` independent accumulators
//! so that LLVM can vectorise the reduction without reassociating a single sum.

use serde::{Serialize, Serializer};

use wide::{f32x8, f64x4};

use crate::format::{NumberFormat, SliceParams};
use crate::simd::{self, Source};

/// What quantization did to one slice or one tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Finite elements measured.
    pub count: u64,
    pub mse: f64,
    pub rmse: f64,
    /// 10·log10(ΣR² / Σ(R − R′)²); +∞ when lossless (JSON: null).
    #[serde(serialize_with = "finite_or_null")]
    pub sqnr_db: f64,
    pub max_abs_err: f64,
    pub cosine: f64,
    /// Share of finite elements outside the clipping range.
    pub clipped_fraction: f64,
    /// The part of `mse` from clipped elements: Σ_clipped (R − R′)² / count.
    pub clip_error: f64,
    /// The rest of `mse` (rounding): clip_error + round_error = mse.
    pub round_error: f64,
    /// NaN/Inf elements, excluded from everything above.
    pub nonfinite: u64,
    /// 10·log10(Σ‖Wx‖² / Σ‖(W − W′)x‖²) over captured inputs (docs/numerics.md,
    /// "Output SQNR"); absent when no activations are loaded, null when lossless.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "some_finite_or_null")]
    pub output_sqnr_db: Option<f64>,
}

#[allow(clippy::ref_option)] // serde passes fields by reference
fn some_finite_or_null<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    finite_or_null(&v.unwrap_or(f64::NAN), s)
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes fields by reference
fn finite_or_null<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
}

/// Raw sums; merged across chunks and slices, turned into [`Metrics`] at the end.
///
/// The cosine's ⟨R, R′⟩ and ‖R′‖² follow from R′ = R − e:
/// ⟨R, R′⟩ = ΣR² − ΣRe and ‖R′‖² = ΣR² − 2ΣRe + Σe², so the hot loop sums only
/// e², R·e and the clipped e²; ΣR² comes from the slice's [`TensorStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ErrorSums {
    pub count: u64,
    pub nonfinite: u64,
    pub clipped: u64,
    pub sum_r2: f64,
    pub sum_e2: f64,
    pub sum_re: f64,
    pub sum_clip_e2: f64,
    pub max_abs_err: f64,
}

impl ErrorSums {
    #[must_use]
    pub fn merge(mut self, o: &Self) -> Self {
        self.count += o.count;
        self.nonfinite += o.nonfinite;
        self.clipped += o.clipped;
        self.sum_r2 += o.sum_r2;
        self.sum_e2 += o.sum_e2;
        self.sum_re += o.sum_re;
        self.sum_clip_e2 += o.sum_clip_e2;
        self.max_abs_err = self.max_abs_err.max(o.max_abs_err);
        self
    }

    /// Adds ΣR² (from the slice's statistics).
    #[must_use]
    pub fn with_signal(mut self, sum_r2: f64) -> Self {
        self.sum_r2 = sum_r2;
        self
    }

    pub fn metrics(&self) -> Metrics {
        let n = self.count as f64;
        let per = |v: f64| if self.count == 0 { 0.0 } else { v / n };
        let mse = per(self.sum_e2);
        let sqnr_db =
            if self.sum_e2 == 0.0 { f64::INFINITY } else { 10.0 * (self.sum_r2 / self.sum_e2).log10() };
        let sum_rq = self.sum_r2 - self.sum_re;
        let sum_q2 = (self.sum_r2 - 2.0 * self.sum_re + self.sum_e2).max(0.0);
        let cosine = if self.sum_r2 == 0.0 && sum_q2 == 0.0 {
            1.0
        } else if self.sum_r2 == 0.0 || sum_q2 == 0.0 {
            0.0
        } else {
            (sum_rq / (self.sum_r2.sqrt() * sum_q2.sqrt())).clamp(-1.0, 1.0)
        };
        let clip_error = per(self.sum_clip_e2);
        Metrics {
            count: self.count,
            mse,
            rmse: mse.sqrt(),
            sqnr_db,
            max_abs_err: self.max_abs_err,
            cosine,
            clipped_fraction: per(self.clipped as f64),
            clip_error,
            round_error: (mse - clip_error).max(0.0),
            nonfinite: self.nonfinite,
            output_sqnr_db: None,
        }
    }
}

/// The scalar reference of the hot loop (also its tail): e = R − R′ computed,
/// squared and summed in f64 (exact: R and R′ are both f32).
#[inline]
pub(crate) fn error_sums_scalar<F: NumberFormat, const WRITE: bool>(
    fmt: F,
    xs: &[f32],
    p: &SliceParams,
    out: &mut [f32],
) -> ErrorSums {
    let mut s = ErrorSums::default();
    for (k, &x) in xs.iter().enumerate() {
        let q = fmt.fake_quant(x, p);
        if WRITE {
            out[k] = q;
        }
        if !x.is_finite() {
            s.nonfinite += 1;
            continue;
        }
        let ed = f64::from(x) - f64::from(q);
        s.count += 1;
        s.sum_e2 += ed * ed;
        s.sum_re += f64::from(x) * ed;
        if x < p.lo || x > p.hi {
            s.clipped += 1;
            s.sum_clip_e2 += ed * ed;
        }
        s.max_abs_err = s.max_abs_err.max(ed.abs());
    }
    s
}

/// The hot loop: fake-quantizes `xs` with `p` and accumulates every error sum in
/// one pass. With `WRITE`, R′ is also stored into `out` (same length as `xs`).
/// Vector body ([`crate::simd`]), scalar tail. ΣR² is left for the caller
/// ([`ErrorSums::with_signal`]).
#[inline]
pub(crate) fn error_sums<F: NumberFormat, const WRITE: bool>(
    fmt: F,
    xs: &[f32],
    p: &SliceParams,
    out: &mut [f32],
) -> ErrorSums {
    error_pass::<F, &[f32], WRITE, false>(fmt, xs, p, out).0
}

/// [`error_sums`] fused with the rest of the statistics: `stats` holds the
/// slice's min, max and counts ([`TensorStats::range_of`]) and gets ΣR and ΣR²
/// from this pass, bit for bit as [`TensorStats::of`] sums them (same lanes, same
/// order, the tail added one by one), so a min-max slice is read twice, not
/// three times, and the statistics pass does no f64 work.
#[inline]
pub(crate) fn error_sums_with_stats<F: NumberFormat, const WRITE: bool>(
    fmt: F,
    xs: impl Source,
    p: &SliceParams,
    out: &mut [f32],
    stats: &mut TensorStats,
) -> ErrorSums {
    let (sums, (sum, sum_sq)) = error_pass::<F, _, WRITE, true>(fmt, xs, p, out);
    (stats.sum, stats.sum_sq) = (sum, sum_sq);
    let (tail, n) = xs.tail();
    for &x in tail[..n].iter().filter(|x| x.is_finite()) {
        stats.sum += f64::from(x);
        stats.sum_sq += f64::from(x) * f64::from(x);
    }
    sums.with_signal(stats.sum_sq)
}

/// The error loop, with ΣR, ΣR² of the vector body when `SIGNAL`: the AVX-512
/// build of it where the CPU has AVX-512 ([`simd::avx512`]), else the baseline.
#[inline]
fn error_pass<F: NumberFormat, S: Source, const WRITE: bool, const SIGNAL: bool>(
    fmt: F,
    xs: S,
    p: &SliceParams,
    out: &mut [f32],
) -> (ErrorSums, (f64, f64)) {
    #[cfg(target_arch = "x86_64")]
    if simd::avx512() {
        // SAFETY: `simd::avx512` checked that this CPU has every feature
        // `error_pass_avx512` is compiled for.
        #[allow(unsafe_code)]
        return unsafe { error_pass_avx512::<F, S, WRITE, SIGNAL>(fmt, xs, p, out) };
    }
    error_pass_body::<F, S, WRITE, SIGNAL>(fmt, xs, p, out)
}

/// [`error_pass_body`] compiled for AVX-512. The operations and their order are
/// the same (the lanes stay 8 wide), so the sums are bit-identical; what the
/// features buy is 32 vector registers (no accumulator spills) and EVEX forms.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq")]
fn error_pass_avx512<F: NumberFormat, S: Source, const WRITE: bool, const SIGNAL: bool>(
    fmt: F,
    xs: S,
    p: &SliceParams,
    out: &mut [f32],
) -> (ErrorSums, (f64, f64)) {
    error_pass_body::<F, S, WRITE, SIGNAL>(fmt, xs, p, out)
}

#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
fn error_pass_body<F: NumberFormat, S: Source, const WRITE: bool, const SIGNAL: bool>(
    fmt: F,
    xs: S,
    p: &SliceParams,
    out: &mut [f32],
) -> (ErrorSums, (f64, f64)) {
    let body = xs.len() / simd::W * simd::W;
    let mut acc = simd::ErrorAcc::default();
    let (lo, hi) = (f32x8::splat(p.lo), f32x8::splat(p.hi));
    for k in 0..body / simd::W {
        let x = xs.block(k);
        let q = fmt.fake_quant_x8(x, p);
        if WRITE {
            out[k * simd::W..(k + 1) * simd::W].copy_from_slice(q.as_array());
        }
        acc.add::<SIGNAL>(x, q, lo, hi);
    }
    let tail_out: &mut [f32] = if WRITE { &mut out[body..] } else { &mut [] };
    let (rest, n) = xs.tail();
    let tail = error_sums_scalar::<F, WRITE>(fmt, &rest[..n], p, tail_out);
    (ErrorSums::of_lanes(&acc, body).merge(&tail), acc.signal())
}

impl ErrorSums {
    /// The sums a vector loop over `body` elements gathered in `acc`, with
    /// ΣR² left at 0.
    fn of_lanes(acc: &simd::ErrorAcc, body: usize) -> Self {
        let (sum_e2, sum_re, max_abs_err) = acc.sums();
        Self {
            count: body as u64 - acc.nonfinite,
            nonfinite: acc.nonfinite,
            clipped: acc.clipped,
            sum_r2: 0.0,
            sum_e2,
            sum_re,
            sum_clip_e2: acc.sum_clip_e2,
            max_abs_err,
        }
    }
}

/// R against an R′ someone else stored (`quantscope diff`, llama.cpp's types
/// decoded), over one slice clipped to `lo..=hi`: the error sums with ΣR² of
/// the pairs where both are finite (a non-finite R or R′ counts in
/// `nonfinite` only), and in `stats` ΣR and ΣR² of the finite R. Lanes and
/// order as the fake-quant pass ([`error_sums_with_stats`]), tail after.
pub(crate) fn pair_sums(xs: &[f32], ys: &[f32], lo: f32, hi: f32, stats: &mut TensorStats) -> ErrorSums {
    let body = xs.len() / simd::W * simd::W;
    let mut acc = simd::ErrorAcc::default();
    let (lov, hiv) = (f32x8::splat(lo), f32x8::splat(hi));
    // A finite R whose R′ is not: the signal then misses it, and ΣR, ΣR² are
    // summed again over R alone.
    let mut lost = false;
    for k in 0..body / simd::W {
        let (x, y) = (xs.block(k), ys.block(k));
        let fx = x.is_finite();
        let both = fx & y.is_finite();
        lost |= both.to_bitmask() != fx.to_bitmask();
        acc.add_masked::<true>(both, x, y, lov, hiv);
    }
    let (mut sum, mut sum_sq) = acc.signal();
    let body_sums = ErrorSums::of_lanes(&acc, body).with_signal(sum_sq);
    if lost {
        let t = TensorStats::of(&xs[..body]);
        (sum, sum_sq) = (t.sum, t.sum_sq);
    }
    let mut tail = ErrorSums::default();
    for (&x, &y) in xs[body..].iter().zip(&ys[body..]) {
        tail.add_pair(x, y, || (lo, hi));
        if x.is_finite() {
            sum += f64::from(x);
            sum_sq += f64::from(x) * f64::from(x);
        }
    }
    (stats.sum, stats.sum_sq) = (sum, sum_sq);
    body_sums.merge(&tail)
}

impl ErrorSums {
    /// One element of [`pair_sums`]: R = `x` against R′ = `y`, clipped when R
    /// lies outside `range()`.
    #[inline]
    pub(crate) fn add_pair(&mut self, x: f32, y: f32, range: impl FnOnce() -> (f32, f32)) {
        if !x.is_finite() || !y.is_finite() {
            self.nonfinite += 1;
            return;
        }
        let (r, e) = (f64::from(x), f64::from(x) - f64::from(y));
        self.count += 1;
        self.sum_r2 += r * r;
        self.sum_e2 += e * e;
        self.sum_re += r * e;
        let (lo, hi) = range();
        if x < lo || x > hi {
            self.clipped += 1;
            self.sum_clip_e2 += e * e;
        }
        self.max_abs_err = self.max_abs_err.max(e.abs());
    }
}

/// Σ (R − R′)² over finite elements only: the objective of MSE calibration.
/// Same arithmetic and summation order as `error_sums`' Σe², so a candidate that
/// wins here has a reported MSE that is exactly as much lower.
#[inline]
pub(crate) fn sum_sq_error<F: NumberFormat>(fmt: F, xs: &[f32], p: &SliceParams) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if simd::avx512() {
        // SAFETY: `simd::avx512` checked the features `sum_sq_error_avx512` needs.
        #[allow(unsafe_code)]
        return unsafe { sum_sq_error_avx512(fmt, xs, p) };
    }
    sum_sq_error_body(fmt, xs, p)
}

/// [`sum_sq_error_body`] compiled for AVX-512 (same operations, same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq")]
fn sum_sq_error_avx512<F: NumberFormat>(fmt: F, xs: &[f32], p: &SliceParams) -> f64 {
    sum_sq_error_body(fmt, xs, p)
}

#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
fn sum_sq_error_body<F: NumberFormat>(fmt: F, xs: &[f32], p: &SliceParams) -> f64 {
    let body = xs.len() / simd::W * simd::W;
    let mut acc = [f64x4::ZERO; 2];
    for c in xs[..body].chunks_exact(simd::W) {
        let x = simd::load(c);
        simd::sq_error_x8(&mut acc, x, fmt.fake_quant_x8(x, p));
    }
    let body_sum = (acc[0] + acc[1]).reduce_add();
    let mut tail = 0.0;
    for &x in &xs[body..] {
        if x.is_finite() {
            let e = f64::from(x) - f64::from(fmt.fake_quant(x, p));
            tail += e * e;
        }
    }
    body_sum + tail
}

/// Terms each f32 lane of [`sum_sq_error_approx`] sums before it is widened.
const APPROX_BLOCK: usize = 16;
/// Elements between two checks of [`sum_sq_error_approx`]'s running sum against its limit.
const APPROX_CHECK: usize = 4 * APPROX_BLOCK * simd::W;

/// How far [`sum_sq_error_approx`]'s value `v` over `n` elements can lie from
/// [`sum_sq_error`]'s (docs/numerics.md, "MSE"). Each e² meets at most
/// `APPROX_BLOCK` + 3 roundings of 2^−24 (x − q, e·e and the lane's sums): γ₁₉ <
/// 1.14e−6 relative. The f64 sums on both sides add ≤ n·2^−53 each, and a
/// subnormal f32 result at most 2^−149 per element.
pub(crate) fn approx_slack(n: usize, v: f64) -> f64 {
    /// 2^−140, far above the 2^−149 a subnormal term can lose.
    const PER_ELEMENT: f64 = f64::from_bits((1023 - 140) << 52);
    let n = n as f64;
    (1.2e-6 + n * f64::EPSILON) * v + n * PER_ELEMENT
}

/// Σ (R − R′)² as [`sum_sq_error`] (the same codes and R′), summed in f32 lanes of
/// `APPROX_BLOCK` terms that are then widened into f64: within
/// [`approx_slack`] of it, for ranking MSE candidates. Returns (sum, true); or,
/// once the running sum over a prefix is more than its slack above `limit`
/// (so the whole sum is too), (that partial sum, false). Non-finite when an f32
/// term overflowed: the caller then needs [`sum_sq_error`].
pub(crate) fn sum_sq_error_approx<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    p: &SliceParams,
    limit: f64,
) -> (f64, bool) {
    #[cfg(target_arch = "x86_64")]
    if simd::avx512() {
        // SAFETY: `simd::avx512` checked the features `sum_sq_error_approx_avx512` needs.
        #[allow(unsafe_code)]
        return unsafe { sum_sq_error_approx_avx512(fmt, xs, p, limit) };
    }
    sum_sq_error_approx_body(fmt, xs, p, limit)
}

/// [`sum_sq_error_approx_body`] compiled for AVX-512 (same operations, same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq")]
fn sum_sq_error_approx_avx512<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    p: &SliceParams,
    limit: f64,
) -> (f64, bool) {
    sum_sq_error_approx_body(fmt, xs, p, limit)
}

#[allow(clippy::inline_always)] // a call here makes the hot loop spill
#[inline(always)]
fn sum_sq_error_approx_body<F: NumberFormat>(fmt: F, xs: &[f32], p: &SliceParams, limit: f64) -> (f64, bool) {
    let mut tot = [f64x4::ZERO; 2];
    let checked = limit < f64::INFINITY;
    let mut steps = xs.chunks_exact(APPROX_CHECK);
    for step in steps.by_ref() {
        for b in step.chunks_exact(APPROX_BLOCK * simd::W) {
            approx_block(fmt, p, &mut tot, b);
        }
        let v = (tot[0] + tot[1]).reduce_add();
        if checked && v - approx_slack(xs.len(), v) > limit {
            return (v, false);
        }
    }
    let rest = steps.remainder();
    let body = rest.len() / simd::W * simd::W;
    for b in rest[..body].chunks(APPROX_BLOCK * simd::W) {
        approx_block(fmt, p, &mut tot, b);
    }
    let mut tail = 0.0;
    for &x in rest[body..].iter().filter(|x| x.is_finite()) {
        let e = f64::from(x) - f64::from(fmt.fake_quant(x, p));
        tail += e * e;
    }
    ((tot[0] + tot[1]).reduce_add() + tail, true)
}

/// One block of [`sum_sq_error_approx`]: up to `APPROX_BLOCK` vectors summed in
/// f32 lanes, then widened into `tot`.
#[allow(clippy::inline_always)] // must inline into the AVX-512 build
#[inline(always)]
fn approx_block<F: NumberFormat>(fmt: F, p: &SliceParams, tot: &mut [f64x4; 2], b: &[f32]) {
    let mut acc = f32x8::ZERO;
    for c in b.chunks_exact(simd::W) {
        let x = simd::load(c);
        acc = simd::sq_error_f32_x8(acc, x, fmt.fake_quant_x8(x, p));
    }
    simd::add_widened(tot, acc);
}

/// Finite min/max, mean and spread of a slice, plus its NaN/Inf count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TensorStats {
    pub min: f32,
    pub max: f32,
    pub finite: u64,
    pub nonfinite: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Default for TensorStats {
    fn default() -> Self {
        Self { min: f32::INFINITY, max: f32::NEG_INFINITY, finite: 0, nonfinite: 0, sum: 0.0, sum_sq: 0.0 }
    }
}

impl TensorStats {
    pub fn of(xs: &[f32]) -> Self {
        let body = xs.len() / simd::W * simd::W;
        let mut acc = simd::StatsAcc::default();
        for c in xs[..body].chunks_exact(simd::W) {
            acc.add(simd::load(c));
        }
        let (min, max, sum, sum_sq) = acc.parts();
        let mut s =
            Self { min, max, finite: body as u64 - acc.nonfinite, nonfinite: acc.nonfinite, sum, sum_sq };
        let (tail, n) = xs.tail();
        for &x in &tail[..n] {
            if x.is_finite() {
                s.min = s.min.min(x);
                s.max = s.max.max(x);
                s.finite += 1;
                s.sum += f64::from(x);
                s.sum_sq += f64::from(x) * f64::from(x);
            } else {
                s.nonfinite += 1;
            }
        }
        s
    }

    /// Min, max and counts, with ΣR and ΣR² left at 0 for
    /// [`error_sums_with_stats`] to fill.
    pub(crate) fn range_of(xs: impl Source) -> Self {
        let body = xs.len() / simd::W * simd::W;
        let mut acc = simd::StatsAcc::default();
        for k in 0..body / simd::W {
            acc.add_range(xs.block(k));
        }
        let (min, max, _, _) = acc.parts();
        let mut s = Self {
            min,
            max,
            finite: body as u64 - acc.nonfinite,
            nonfinite: acc.nonfinite,
            sum: 0.0,
            sum_sq: 0.0,
        };
        let (tail, n) = xs.tail();
        for &x in &tail[..n] {
            if x.is_finite() {
                s.min = s.min.min(x);
                s.max = s.max.max(x);
                s.finite += 1;
            } else {
                s.nonfinite += 1;
            }
        }
        s
    }

    #[must_use]
    pub fn merge(mut self, o: &Self) -> Self {
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.finite += o.finite;
        self.nonfinite += o.nonfinite;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self
    }

    /// (min, max) of the finite values, or (0, 0) when there are none.
    pub fn range(&self) -> (f32, f32) {
        if self.finite == 0 { (0.0, 0.0) } else { (self.min, self.max) }
    }

    pub fn mean(&self) -> f64 {
        if self.finite == 0 { 0.0 } else { self.sum / self.finite as f64 }
    }

    /// Population standard deviation.
    pub fn std(&self) -> f64 {
        if self.finite == 0 {
            return 0.0;
        }
        let m = self.mean();
        (self.sum_sq / self.finite as f64 - m * m).max(0.0).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::IntFormat;
    use crate::scheme::Mapping;

    #[test]
    fn sums_match_a_naive_loop_and_split_adds_up() {
        let f = IntFormat::new(8).unwrap();
        let xs: Vec<f32> = (0..1003).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let p = f.params(-0.4, 0.4, Mapping::Asymmetric);
        let mut out = vec![0.0; xs.len()];
        let s = error_sums::<_, true>(f, &xs, &p, &mut out);
        let mut e2 = 0.0f64;
        let mut clip = 0;
        for (x, q) in xs.iter().zip(&out) {
            assert_eq!(*q, f.fake_quant(*x, &p));
            e2 += (f64::from(*x) - f64::from(*q)).powi(2);
            clip += usize::from(*x < p.lo || *x > p.hi);
        }
        assert!((s.sum_e2 - e2).abs() <= 1e-12 * e2.max(1.0));
        assert_eq!(s.clipped as usize, clip);
        assert!(clip > 0);
        let m = s.metrics();
        assert!((m.clip_error + m.round_error - m.mse).abs() < 1e-15);
        assert!((sum_sq_error(f, &xs, &p) - e2).abs() <= 1e-12 * e2);
    }

    #[test]
    fn vector_sums_equal_the_scalar_reference() {
        let f = crate::format::Fp8Format::E4M3;
        let mut xs: Vec<f32> = (0..10_007).map(|i| ((i * 7919 % 2003) as f32 - 1000.0) * 1e-3).collect();
        xs[5] = f32::NAN;
        xs[77] = f32::INFINITY;
        let p = f.params(-0.6, 0.7, Mapping::Asymmetric);
        let (mut a, mut b) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        let v = error_sums::<_, true>(f, &xs, &p, &mut a);
        let s = error_sums_scalar::<_, true>(f, &xs, &p, &mut b);
        assert_eq!(
            a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(
            (v.count, v.nonfinite, v.clipped, v.max_abs_err),
            (s.count, s.nonfinite, s.clipped, s.max_abs_err)
        );
        for (x, y) in [(v.sum_e2, s.sum_e2), (v.sum_re, s.sum_re), (v.sum_clip_e2, s.sum_clip_e2)] {
            assert!((x - y).abs() <= 1e-12 * y.abs(), "{x} vs {y}");
        }
        assert!(v.clipped > 0 && v.nonfinite == 2);
        let st = TensorStats::of(&xs);
        assert_eq!((st.finite, st.nonfinite), (10_005, 2));
        assert_eq!(st.min, xs.iter().copied().filter(|x| x.is_finite()).fold(f32::INFINITY, f32::min));
    }

    #[test]
    fn the_fused_statistics_equal_a_separate_pass_bit_for_bit() {
        let f = IntFormat::new(8).unwrap();
        for n in [0, 5, 8, 1003, 4096, 4099] {
            let mut xs: Vec<f32> = (0..n).map(|i| ((i * 7919 % 2003) as f32 - 1000.0) * 1.3e-3).collect();
            if n > 10 {
                xs[3] = f32::NAN;
                xs[n - 1] = f32::NEG_INFINITY;
                xs[n - 2] = 0.123_456_7;
            }
            let full = TensorStats::of(&xs);
            let mut fused = TensorStats::range_of(&xs[..]);
            assert_eq!((fused.sum, fused.sum_sq), (0.0, 0.0));
            let p = f.params(full.min, full.max, Mapping::Symmetric);
            let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
            let s = error_sums_with_stats::<_, true>(f, &xs[..], &p, &mut a, &mut fused);
            let t = error_sums::<_, true>(f, &xs, &p, &mut b).with_signal(full.sum_sq);
            assert_eq!(fused.sum.to_bits(), full.sum.to_bits(), "n {n}");
            assert_eq!(fused.sum_sq.to_bits(), full.sum_sq.to_bits(), "n {n}");
            assert_eq!(fused, full, "n {n}");
            assert_eq!(s, t, "n {n}");
            assert_eq!(a, b);
        }
    }

    /// The AVX-512 build of the hot loops against the baseline build: the same
    /// codes, R′ and sums to the bit, for INT, FP8 and microscaled formats in
    /// every working dtype (skipped, with a note, on a CPU without AVX-512).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_and_baseline_paths_agree_bit_for_bit() {
        use crate::format::{Fp8Format, MicroFormat, MicroKind, WorkDtype};
        fn both<F: NumberFormat>(f: F, xs: &[f32], p: &SliceParams) {
            let (mut a, mut b) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
            let base = error_pass_body::<F, _, true, true>(f, xs, p, &mut a);
            // SAFETY: `simd::avx512` said the CPU has the features.
            #[allow(unsafe_code)]
            let fast = unsafe { error_pass_avx512::<F, _, true, true>(f, xs, p, &mut b) };
            assert_eq!(format!("{base:?}"), format!("{fast:?}"), "{}", f.label());
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{}", f.label());
            #[allow(unsafe_code)]
            let sq = unsafe { sum_sq_error_avx512(f, xs, p) };
            assert_eq!(sum_sq_error_body(f, xs, p).to_bits(), sq.to_bits(), "{}", f.label());
            for limit in [f64::INFINITY, 1e-3] {
                #[allow(unsafe_code)]
                let fast = unsafe { sum_sq_error_approx_avx512(f, xs, p, limit) };
                let base = sum_sq_error_approx_body(f, xs, p, limit);
                assert_eq!((base.0.to_bits(), base.1), (fast.0.to_bits(), fast.1), "{}", f.label());
            }
        }
        if !crate::simd::avx512() {
            eprintln!("no AVX-512 on this CPU: only the baseline path runs");
            return;
        }
        let mut xs: Vec<f32> = (0..4099).map(|i| ((i * 7919 % 2003) as f32 - 1000.0) * 1.3e-3).collect();
        xs.extend((0..2000u32).map(|k| f32::from_bits(k.wrapping_mul(2_654_435_761))));
        xs.extend([f32::NAN, f32::INFINITY, -0.0, 0.5, 1.5, 3.0]);
        for d in [WorkDtype::F32, WorkDtype::BF16, WorkDtype::F16] {
            for (lo, hi) in [(-1.3f32, 1.3), (-0.2, 0.9), (-1e-3, 2e-3)] {
                for m in [Mapping::Symmetric, Mapping::Asymmetric] {
                    for bits in [8, 4] {
                        let f = IntFormat::new(bits).unwrap().in_work(d);
                        both(f, &xs, &f.params(lo, hi, m));
                    }
                    let f = Fp8Format::E4M3.in_work(d);
                    both(f, &xs, &f.params(lo, hi, m));
                }
                let f = MicroFormat::new(MicroKind::Nvfp4, d).with_global(2048.0);
                both(f, &xs, &f.params(lo, hi, Mapping::Symmetric));
            }
        }
    }

    /// The f32-lane sum lies within its slack of the f64 one, on lengths that
    /// leave partial blocks and tails, values from 1e−30 to 1e15 and NaN/Inf; an
    /// early stop happens only when the whole sum is above the limit.
    #[test]
    fn approx_sum_is_within_its_slack_and_stops_only_above_the_limit() {
        use crate::format::{Fp8Format, WorkDtype};
        fn check<F: NumberFormat>(f: F, xs: &[f32], p: &SliceParams) {
            let exact = sum_sq_error(f, xs, p);
            let (v, done) = sum_sq_error_approx(f, xs, p, f64::INFINITY);
            assert!(done);
            let slack = approx_slack(xs.len(), v);
            assert!((v - exact).abs() <= slack, "{}: {v} vs {exact}", f.label());
            // The bound is not vacuous: f32 sums do differ from the f64 one.
            if exact > 1e-20 {
                assert!(slack < 1e-5 * exact, "{}", f.label());
            }
            for limit in [exact * 0.5, exact * 0.999, exact * 1.001, exact * 2.0, 0.0] {
                let (part, done) = sum_sq_error_approx(f, xs, p, limit);
                if done {
                    assert_eq!(part.to_bits(), v.to_bits());
                } else {
                    assert!(part - approx_slack(xs.len(), part) > limit, "{}", f.label());
                    assert!(
                        exact > limit,
                        "{}: stopped at {part} but the sum is {exact} ≤ {limit}",
                        f.label()
                    );
                }
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut u = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut stopped = 0;
        for (n, scale) in [(7usize, 1.0f32), (128, 1e-30), (4099, 0.02), (20_000, 3.0), (1000, 1e15)] {
            let mut xs: Vec<f32> =
                (0..n).map(|i| u() * scale * if i % 97 == 0 { 30.0 } else { 1.0 }).collect();
            if n > 1000 {
                xs[5] = f32::NAN;
                xs[6] = f32::INFINITY;
            }
            let s = TensorStats::of(&xs);
            for d in [WorkDtype::F32, WorkDtype::BF16] {
                for m in [Mapping::Symmetric, Mapping::Asymmetric] {
                    for alpha in [1.0f32, 0.5, 0.05] {
                        let (lo, hi) = (s.min * alpha, s.max * alpha);
                        let f = IntFormat::new(8).unwrap().in_work(d);
                        check(f, &xs, &f.params(lo, hi, m));
                        let f = IntFormat::new(4).unwrap().in_work(d);
                        check(f, &xs, &f.params(lo, hi, m));
                        let f = Fp8Format::E4M3.in_work(d);
                        check(f, &xs, &f.params(lo, hi, m));
                        let p = f.params(lo, hi, m);
                        stopped += usize::from(!sum_sq_error_approx(f, &xs, &p, 0.0).1);
                    }
                }
            }
        }
        assert!(stopped > 0, "no early stop was exercised");
    }

    #[test]
    fn lossless_and_empty_are_defined() {
        let m = ErrorSums::default().metrics();
        assert_eq!(m.sqnr_db, f64::INFINITY);
        assert_eq!(m.cosine, 1.0);
        assert_eq!(m.mse, 0.0);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"sqnr_db\":null"), "{json}");
    }

    #[test]
    fn stats_skip_nonfinite() {
        let s = TensorStats::of(&[1.0, f32::NAN, -2.0, f32::INFINITY, 3.0]);
        assert_eq!((s.min, s.max, s.finite, s.nonfinite), (-2.0, 3.0, 3, 2));
        assert!((s.mean() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(TensorStats::of(&[f32::NAN]).range(), (0.0, 0.0));
    }
}
