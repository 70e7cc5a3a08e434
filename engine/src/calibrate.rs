//! Calibration: how each slice's clipping range [lo, hi] is chosen, then turned
//! into (S, Z) by the format. One function per method, all per slice
//! (docs/numerics.md, "Calibration").

use ndarray::{Array1, Axis};
use ndarray_stats::QuantileExt;
use ndarray_stats::interpolate::Linear;
use noisy_float::types::n64;
use std::sync::LazyLock;

use rayon::prelude::*;

use crate::format::{NumberFormat, SliceParams};
use crate::metrics::{TensorStats, sum_sq_error};
use crate::scheme::{Calibration, ManualRange, Mapping};
use crate::slicing::PAR_CHUNK;

/// MSE search evaluates slices up to this length exactly, longer ones on a histogram.
const MSE_EXACT_MAX: usize = 8192;
const MSE_HIST_BINS: usize = 8192;
const KL_BINS: usize = 2048;
const KL_LEVELS: usize = 128;
/// Count given to a Q bin that is empty where P is not (ONNX Runtime's eps).
const KL_SMOOTHING: f64 = 1e-4;

/// Chooses one slice's range with `calibration` and returns its parameters.
pub(crate) fn slice_params<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    stats: &TensorStats,
    mapping: Mapping,
    calibration: &Calibration,
) -> SliceParams {
    let (lo, hi) = match *calibration {
        Calibration::MinMax => stats.range(),
        Calibration::Percentile { p } => percentile_range(xs, p, mapping),
        Calibration::Entropy => entropy_range(xs, stats, mapping),
        Calibration::Mse => return mse_params(fmt, xs, stats, mapping),
        Calibration::Manual(ManualRange::Range { lo, hi }) => (lo, hi),
        Calibration::Manual(ManualRange::Ratio { r }) => {
            let (lo, hi) = stats.range();
            (lo * r, hi * r)
        }
    };
    fmt.params(lo, hi, mapping)
}

/// The clip range each automatic method picks for one slice, for showing them
/// side by side. Order: min-max, percentile(p), MSE, entropy.
pub fn compare_ranges<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    mapping: Mapping,
    percentile: f64,
) -> [(Calibration, SliceParams); 4] {
    let stats = crate::slicing::parallel_stats(xs);
    [Calibration::MinMax, Calibration::Percentile { p: percentile }, Calibration::Mse, Calibration::Entropy]
        .map(|c| (c, slice_params(fmt, xs, &stats, mapping, &c)))
}

/// Exact order statistics with numpy's default linear interpolation.
/// Asymmetric: [P(100−p), P(p)] of x; symmetric: ±P(p) of |x|.
fn percentile_range(xs: &[f32], p: f64, mapping: Mapping) -> (f32, f32) {
    let q = n64(p / 100.0);
    let quantile = |values: Vec<f32>, q| -> f32 {
        let mut arr = Array1::from(values);
        arr.quantile_axis_skipnan_mut(Axis(0), q, &Linear)
            .ok()
            .and_then(|a| a.into_scalar().into())
            .unwrap_or(0.0)
    };
    match mapping {
        Mapping::Symmetric => {
            let abs: Vec<f32> = xs.iter().filter(|x| x.is_finite()).map(|x| x.abs()).collect();
            if abs.is_empty() {
                return (0.0, 0.0);
            }
            let amax = quantile(abs, q);
            (-amax, amax)
        }
        Mapping::Asymmetric => {
            let finite: Vec<f32> = xs.iter().copied().filter(|x| x.is_finite()).collect();
            if finite.is_empty() {
                return (0.0, 0.0);
            }
            let hi = quantile(finite.clone(), q);
            let lo = quantile(finite, n64(1.0) - q);
            (lo, hi)
        }
    }
}

/// The MSE search grid: a coarse pass over α ∈ [0.2, 1] in steps of 0.04, then a
/// fine pass (0.008) around the best: 100-step resolution for ~29 evaluations.
fn mse_search(mut cost: impl FnMut(f32) -> f64) -> f32 {
    let mut best = (1.0f32, cost(1.0));
    let mut try_alpha = |a: f32, best: &mut (f32, f64)| {
        let c = cost(a);
        if c < best.1 {
            *best = (a, c);
        }
    };
    for k in 1..=20 {
        try_alpha(1.0 - 0.04 * k as f32, &mut best);
    }
    let centre = best.0;
    for k in [-4i32, -3, -2, -1, 1, 2, 3, 4] {
        let a = centre + 0.008 * k as f32;
        if (0.2..1.0).contains(&a) {
            try_alpha(a, &mut best);
        }
    }
    best.0
}

/// Shrinks [lo, hi] by α about 0 when the range holds 0, else about its centre.
fn shrink(lo: f32, hi: f32, alpha: f32) -> (f32, f32) {
    if alpha == 1.0 {
        // Exactly min-max: anchor + (lo − anchor) need not round back to lo.
        return (lo, hi);
    }
    let anchor = if lo <= 0.0 && hi >= 0.0 { 0.0 } else { f32::midpoint(lo, hi) };
    (anchor + alpha * (lo - anchor), anchor + alpha * (hi - anchor))
}

/// MSE-optimal clip: minimises the slice's real quantize→dequantize error. The
/// result is never worse than min-max (α = 1 is always a candidate, and a
/// histogram estimate is confirmed exactly against it).
fn mse_params<F: NumberFormat>(fmt: F, xs: &[f32], stats: &TensorStats, mapping: Mapping) -> SliceParams {
    let (lo, hi) = stats.range();
    let params_at = |a: f32| {
        let (l, h) = shrink(lo, hi, a);
        fmt.params(l, h, mapping)
    };
    if xs.len() <= MSE_EXACT_MAX {
        return params_at(mse_search(|a| sum_sq_error(fmt, xs, &params_at(a))));
    }
    let hist = MomentHistogram::build(xs, lo, hi);
    let alpha = mse_search(|a| hist.estimate(fmt, &params_at(a)));
    let exact = |p: &SliceParams| -> f64 { xs.par_chunks(PAR_CHUNK).map(|c| sum_sq_error(fmt, c, p)).sum() };
    let (chosen, minmax) = (params_at(alpha), params_at(1.0));
    if alpha < 1.0 && exact(&chosen) <= exact(&minmax) { chosen } else { minmax }
}

/// Per-bin count, Σx and Σx²: the error of a bin whose elements all round to the
/// same level q is Σx² − 2qΣx + nq², which is exact; only bins that straddle a
/// rounding boundary are approximated (by their mean's level).
struct MomentHistogram {
    count: Vec<u64>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl MomentHistogram {
    fn build(xs: &[f32], lo: f32, hi: f32) -> Self {
        let width = f64::from(hi) - f64::from(lo);
        let inv = if width > 0.0 { MSE_HIST_BINS as f64 / width } else { 0.0 };
        let empty = || Self {
            count: vec![0; MSE_HIST_BINS],
            sum: vec![0.0; MSE_HIST_BINS],
            sum_sq: vec![0.0; MSE_HIST_BINS],
        };
        xs.par_chunks(PAR_CHUNK)
            .map(|chunk| {
                let mut h = empty();
                for &x in chunk.iter().filter(|x| x.is_finite()) {
                    let b = (((f64::from(x) - f64::from(lo)) * inv) as usize).min(MSE_HIST_BINS - 1);
                    h.count[b] += 1;
                    h.sum[b] += f64::from(x);
                    h.sum_sq[b] += f64::from(x) * f64::from(x);
                }
                h
            })
            .reduce(empty, |mut a, b| {
                for i in 0..MSE_HIST_BINS {
                    a.count[i] += b.count[i];
                    a.sum[i] += b.sum[i];
                    a.sum_sq[i] += b.sum_sq[i];
                }
                a
            })
    }

    fn estimate<F: NumberFormat>(&self, fmt: F, p: &SliceParams) -> f64 {
        let mut total = 0.0;
        for i in 0..MSE_HIST_BINS {
            let n = self.count[i];
            if n == 0 {
                continue;
            }
            let n = n as f64;
            let q = f64::from(fmt.fake_quant((self.sum[i] / n) as f32, p));
            total += (self.sum_sq[i] - 2.0 * q * self.sum[i] + n * q * q).max(0.0);
        }
        total
    }
}

/// TensorRT's KL-entropy threshold on a 2048-bin histogram of |x|.
fn entropy_range(xs: &[f32], stats: &TensorStats, mapping: Mapping) -> (f32, f32) {
    let (mn, mx) = stats.range();
    let amax = mn.abs().max(mx.abs());
    if amax == 0.0 {
        return (0.0, 0.0);
    }
    let hist = abs_histogram(xs, amax);
    let best = kl_best_bin(&hist);
    let width = amax / KL_BINS as f32;
    // Near f32::MAX the half-bin past the last edge overflows; saturate it.
    let t = ((best as f32 + 0.5) * width).min(f32::MAX);
    match mapping {
        Mapping::Symmetric => (-t, t),
        Mapping::Asymmetric => (mn.max(-t), mx.min(t)),
    }
}

fn abs_histogram(xs: &[f32], amax: f32) -> Vec<u64> {
    let scale = KL_BINS as f32 / amax;
    let fill = |chunk: &[f32]| {
        let mut h = vec![0u64; KL_BINS];
        for &x in chunk.iter().filter(|x| x.is_finite()) {
            h[((x.abs() * scale) as usize).min(KL_BINS - 1)] += 1;
        }
        h
    };
    if xs.len() <= PAR_CHUNK {
        return fill(xs);
    }
    xs.par_chunks(PAR_CHUNK).map(fill).reduce(
        || vec![0u64; KL_BINS],
        |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        },
    )
}

/// The i in 128..=2048 minimising KL(P‖Q) (TensorRT's method, as ONNX Runtime
/// implements it). P is the first i bins with the tail folded into bin i−1. Q is
/// the first i bins *without* the tail, merged into 128 levels and spread evenly
/// over P's non-empty bins; both are normalised. (Merging P itself would make
/// i = 128 score KL = 0 every time, since nothing is merged there.)
///
/// With N = ΣP, tail T, per-group P-sums G, Q-sums G′ and non-empty counts nz:
/// N·KL = Σ P ln P − Σ_groups G ln(G′ / nz) + N ln((N − T) / N).
/// Groups 0..127 depend only on the merge width m = i / 128, so they are summed
/// once per m (15 times) and each candidate costs O(1). Ties go to the larger
/// threshold (less clipping).
pub(crate) fn kl_best_bin(hist: &[u64]) -> usize {
    let n = hist.len();
    let mut count = vec![0u64; n + 1];
    let mut nonzero = vec![0u32; n + 1];
    for (b, &h) in hist.iter().enumerate() {
        count[b + 1] = count[b] + h;
        nonzero[b + 1] = nonzero[b] + u32::from(h > 0);
    }
    let total = count[n];
    if total == 0 {
        return n;
    }
    // ln of every count that can occur, so that the per-candidate work has no ln()
    // call (per-group entropy runs this once per group of G elements).
    let xlogx = |v: u64| if v > 0 { v as f64 * ln_int(v) } else { 0.0 };
    let mut plogp = vec![0f64; n + 1];
    for (b, &h) in hist.iter().enumerate() {
        plogp[b + 1] = plogp[b] + xlogx(h);
    }
    // G ln(G′ / nz) for one group. Where Q is empty but P is not (the folded tail
    // landing in an empty group), Q gets ONNX Runtime's smoothing count instead.
    let group_term = |g: u64, g_q: u64, nz: u32| -> f64 {
        match (g, g_q) {
            (0, _) => 0.0,
            (_, 0) => g as f64 * KL_SMOOTHING.ln(),
            _ => g as f64 * (ln_int(g_q) - ln_int(u64::from(nz))),
        }
    };
    let n_f = total as f64;
    let mut best = (n, f64::INFINITY);
    let mut fixed = (0usize, 0.0f64);
    let mut prev_kl = f64::INFINITY;
    for i in KL_LEVELS..=n {
        let m = i / KL_LEVELS;
        let same_m = fixed.0 == m;
        // With bins i−2 and i−1 both empty (same m), every input of the formula
        // equals candidate i−1's, so KL does too: skip the arithmetic.
        let kl = if same_m && i >= 2 && hist[i - 1] == 0 && hist[i - 2] == 0 {
            prev_kl
        } else {
            if !same_m {
                let sum = (0..KL_LEVELS - 1)
                    .map(|j| {
                        let (a, b) = (j * m, (j + 1) * m);
                        let g = count[b] - count[a];
                        group_term(g, g, nonzero[b] - nonzero[a])
                    })
                    .sum();
                fixed = (m, sum);
            }
            let tail = total - count[i];
            let last = hist[i - 1] + tail;
            let a = (KL_LEVELS - 1) * m;
            let g_q = count[i] - count[a];
            let nz = nonzero[i - 1] - nonzero[a] + u32::from(last > 0);
            let sum_plogp = plogp[i - 1] + xlogx(last);
            (sum_plogp - fixed.1 - group_term(g_q + tail, g_q, nz)) / n_f + ((n_f - tail as f64) / n_f).ln()
        };
        prev_kl = kl;
        if kl <= best.1 {
            best = (i, kl);
        }
    }
    best.0
}

const LN_TABLE_MAX: u64 = 1 << 16;
static LN_SMALL: LazyLock<Vec<f64>> = LazyLock::new(|| (0..=LN_TABLE_MAX).map(|k| (k as f64).ln()).collect());

/// ln(k) for an integer k: a table for small k, `ln()` beyond.
#[inline]
fn ln_int(k: u64) -> f64 {
    if k <= LN_TABLE_MAX { LN_SMALL[k as usize] } else { (k as f64).ln() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::IntFormat;

    /// The textbook KL computation, bin by bin, for checking the prefix-sum one.
    fn kl_naive(hist: &[u64], i: usize) -> f64 {
        let unfolded: Vec<f64> = hist[..i].iter().map(|&h| h as f64).collect();
        let mut p = unfolded.clone();
        p[i - 1] += hist[i..].iter().sum::<u64>() as f64;
        let m = i / KL_LEVELS;
        let mut q = vec![0.0; i];
        for j in 0..KL_LEVELS {
            let a = j * m;
            let b = if j + 1 < KL_LEVELS { a + m } else { i };
            let g: f64 = unfolded[a..b].iter().sum();
            let nz = p[a..b].iter().filter(|&&v| v > 0.0).count();
            for k in a..b {
                if p[k] > 0.0 {
                    q[k] = g / nz as f64;
                }
            }
        }
        let n: f64 = p.iter().sum();
        p.iter().zip(&q).filter(|(pv, _)| **pv > 0.0).map(|(pv, qv)| pv / n * (pv / qv).ln()).sum()
    }

    #[test]
    fn kl_prefix_sums_match_the_naive_form() {
        let hist: Vec<u64> = (0..2048u64)
            .map(|b| (5000.0 * (-(b as f64) / 150.0).exp()) as u64 + (b % 7 == 0) as u64)
            .collect();
        let total: u64 = hist.iter().sum();
        let best = kl_best_bin(&hist);
        let naive_best = (128..=2048)
            .map(|i| (i, kl_naive(&hist, i)))
            .fold((0, f64::INFINITY), |a, b| if b.1 <= a.1 { b } else { a });
        assert_eq!(best, naive_best.0);
        assert!((kl_naive(&hist, best) - naive_best.1).abs() < 1e-12);
        assert!((128..=2048).contains(&best), "{best} of {total}");
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile(np.arange(1, 101), 99) = 99.01
        let xs: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        let (lo, hi) = percentile_range(&xs, 99.0, Mapping::Asymmetric);
        assert!((hi - 99.01).abs() < 1e-4, "{hi}");
        assert!((lo - 1.99).abs() < 1e-4, "{lo}");
        let (slo, shi) = percentile_range(&xs, 99.0, Mapping::Symmetric);
        assert_eq!(slo, -shi);
    }

    #[test]
    fn mse_never_loses_to_minmax_on_large_slices() {
        let f = IntFormat::new(4).unwrap();
        // Heavy tail: a few large values make min-max wasteful.
        let xs: Vec<f32> = (0..40_000)
            .map(|i| {
                let u = (i as f32 * 0.618_034).fract() - 0.5;
                if i % 997 == 0 { u * 5.0 } else { u }
            })
            .collect();
        let stats = TensorStats::of(&xs);
        let mse = mse_params(f, &xs, &stats, Mapping::Symmetric);
        let minmax = f.params(stats.min, stats.max, Mapping::Symmetric);
        let (a, b) = (sum_sq_error(f, &xs, &mse), sum_sq_error(f, &xs, &minmax));
        assert!(a < b * 0.5, "mse {a} vs minmax {b}");
    }

    #[test]
    fn entropy_clips_a_heavy_tail() {
        let xs: Vec<f32> = (0..100_000)
            .map(|i| {
                let u = (i as f32 * 0.618_034).fract() - 0.5;
                if i % 5000 == 0 { 50.0 } else { u }
            })
            .collect();
        let stats = TensorStats::of(&xs);
        let (lo, hi) = entropy_range(&xs, &stats, Mapping::Symmetric);
        assert_eq!(lo, -hi);
        assert!(hi < 10.0 && hi > 0.4, "{hi}");
    }
}
