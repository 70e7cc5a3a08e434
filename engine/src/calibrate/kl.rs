//! KL-entropy calibration: TensorRT's threshold search (as ONNX Runtime
//! implements it), with three changes that keep it from collapsing.
//!
//! - **Bins grow with the slice.** A slice of n elements gets
//!   `128 · clamp(⌊n / 128⌋, 1, 16)` bins: n/128 rounded down to whole
//!   levels-worth, 128 at the least and 2048 (TensorRT's count) from 2048
//!   elements up. The cost per slice is then O(n), not O(2048) for a 128-element
//!   group. A slice with fewer than 256 elements has one candidate only, its
//!   full range: 128 bins cannot tell a tail from the body.
//! - **No collapsed candidates.** A candidate whose clipped distribution P has
//!   fewer than two non-empty bins (everything folded into one spike, where P and
//!   its quantized Q coincide and KL = 0) can never win.
//! - **Asymmetric mapping searches the data's own side.** Symmetric mapping
//!   searches a threshold t over a histogram of |x| on [0, max|x|] and returns
//!   [−t, t]. Asymmetric mapping bins x itself on [min, max] and searches both
//!   edges: first the upper edge with the lower at min, then the lower edge with
//!   that upper edge fixed (the same one-sided search on the mirrored
//!   histogram), then the upper edge once more with the new lower edge fixed.
//!   In each one-sided search the fixed side's tail is folded into its edge bin
//!   in P and Q alike, so only the moving side's clipping is charged.
//!
//! A threshold is the kept bins' edge plus half a bin (TensorRT's centre of the
//! last kept bin), never beyond the data's own range.

use rayon::prelude::*;
use std::sync::LazyLock;

use super::PAR_CHUNK;
use crate::metrics::TensorStats;
use crate::scheme::Mapping;

/// TensorRT's histogram size, reached from 2048 elements up.
pub(super) const KL_BINS: usize = 2048;
/// The levels Q is merged into (INT8's 128 per side).
pub(super) const KL_LEVELS: usize = 128;
/// Count given to a Q bin that is empty where P is not (ONNX Runtime's eps).
const KL_SMOOTHING: f64 = 1e-4;

/// The number of histogram bins for a slice of `len` elements (module docs).
pub(crate) fn kl_bins(len: usize) -> usize {
    KL_LEVELS * (len / KL_LEVELS).clamp(1, KL_BINS / KL_LEVELS)
}

/// The KL-entropy clip range of one slice.
pub(super) fn entropy_range(xs: &[f32], stats: &TensorStats, mapping: Mapping) -> (f32, f32) {
    let (mn, mx) = stats.range();
    let bins = kl_bins(xs.len());
    match mapping {
        Mapping::Symmetric => {
            let amax = mn.abs().max(mx.abs());
            if amax == 0.0 || !amax.is_finite() {
                return (0.0, 0.0);
            }
            let hist = histogram(xs, 0.0, amax, bins, true);
            let best = kl_best_bin(&hist);
            let t = edge(0.0, amax, bins, best as f32 + 0.5);
            (-t, t)
        }
        Mapping::Asymmetric => {
            if mx <= mn || !(mx - mn).is_finite() {
                return (mn, mx);
            }
            let hist = histogram(xs, mn, mx, bins, false);
            let (lo_bin, hi_bin) = two_sided(&hist);
            let lo = if lo_bin == 0 { mn } else { edge(mn, mx, bins, lo_bin as f32 - 0.5).max(mn) };
            let hi = edge(mn, mx, bins, hi_bin as f32 + 0.5);
            (lo, hi)
        }
    }
}

/// lo + k bin widths on [lo, hi] cut into `bins`, saturated at hi (and at
/// f32::MAX, which the half-bin past the last edge can overflow).
fn edge(lo: f32, hi: f32, bins: usize, k: f32) -> f32 {
    let width = (hi - lo) / bins as f32;
    (lo + k * width).min(hi).min(f32::MAX)
}

/// The kept bins [lo, hi) of the two-sided search (module docs).
fn two_sided(hist: &[u64]) -> (usize, usize) {
    let n = hist.len();
    // Upper edge, lower edge at min.
    let hi = kl_best_bin(hist);
    // Lower edge: bins [0, hi) mirrored, the right tail folded into the fixed edge bin.
    let lo = lower_edge(hist, hi);
    // Upper edge again, with the left tail folded into bin lo.
    let mut right: Vec<u64> = hist[lo..].to_vec();
    right[0] += hist[..lo].iter().sum::<u64>();
    let hi = (lo + kl_best_bin(&right)).min(n);
    (lo, hi)
}

fn lower_edge(hist: &[u64], hi: usize) -> usize {
    let mut mirrored: Vec<u64> = hist[..hi].iter().rev().copied().collect();
    mirrored[0] += hist[hi..].iter().sum::<u64>();
    hi - kl_best_bin(&mirrored)
}

/// Counts the finite values of `xs` (or their magnitudes) into `bins` equal
/// bins over [lo, hi].
fn histogram(xs: &[f32], lo: f32, hi: f32, bins: usize, magnitude: bool) -> Vec<u64> {
    let scale = bins as f32 / (hi - lo);
    let fill = |chunk: &[f32]| {
        let mut h = vec![0u64; bins];
        for &x in chunk.iter().filter(|x| x.is_finite()) {
            let v = if magnitude { x.abs() } else { x };
            // (v − lo)·scale ≥ 0 for v ≥ lo; `as usize` saturates a negative 0⁻ to 0.
            h[(((v - lo) * scale) as usize).min(bins - 1)] += 1;
        }
        h
    };
    if xs.len() <= PAR_CHUNK {
        return fill(xs);
    }
    xs.par_chunks(PAR_CHUNK).map(fill).reduce(
        || vec![0u64; bins],
        |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        },
    )
}

/// The i in 128..=n minimising KL(P‖Q) (TensorRT's method, as ONNX Runtime
/// implements it). P is the first i bins with the tail folded into bin i−1. Q is
/// the first i bins *without* the tail, merged into 128 levels and spread evenly
/// over P's non-empty bins; both are normalised. (Merging P itself would make
/// i = 128 score KL = 0 every time, since nothing is merged there.) A candidate
/// whose P has fewer than two non-empty bins is skipped; n when none is left.
///
/// With N = ΣP, tail T, per-group P-sums G, Q-sums G′ and non-empty counts nz:
/// N·KL = Σ P ln P − Σ_groups G ln(G′ / nz) + N ln((N − T) / N).
/// Groups 0..127 depend only on the merge width m = i / 128, so they are summed
/// once per m (n/128 times) and each candidate costs O(1). Ties go to the larger
/// threshold (less clipping).
pub(crate) fn kl_best_bin(hist: &[u64]) -> usize {
    let n = hist.len();
    if n < KL_LEVELS {
        return n;
    }
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
    // ln((N − T) / N) = ln(N − T) − ln N, both integers: table lookups, no ln() per candidate.
    let ln_n = ln_int(total);
    let mut best = (n, f64::INFINITY);
    let mut fixed = (0usize, 0.0f64);
    let mut prev_kl = f64::INFINITY;
    for i in KL_LEVELS..=n {
        let tail = total - count[i];
        let last = hist[i - 1] + tail;
        // The collapse guard: P must keep at least two non-empty bins. (When it
        // fails for i with bins i−2, i−1 empty it failed for i−1 too, so the
        // shortcut below never reads a skipped candidate's KL.)
        if nonzero[i - 1] + u32::from(last > 0) < 2 {
            continue;
        }
        let m = i / KL_LEVELS;
        let same_m = fixed.0 == m;
        // With bins i−2 and i−1 both empty (same m), every input of the formula
        // equals candidate i−1's, so KL does too: skip the arithmetic.
        let kl = if same_m && i >= 2 && hist[i - 1] == 0 && hist[i - 2] == 0 && prev_kl.is_finite() {
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
            let a = (KL_LEVELS - 1) * m;
            let g_q = count[i] - count[a];
            let nz = nonzero[i - 1] - nonzero[a] + u32::from(last > 0);
            let sum_plogp = plogp[i - 1] + xlogx(last);
            (sum_plogp - fixed.1 - group_term(g_q + tail, g_q, nz)) / n_f + (ln_int(count[i]) - ln_n)
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
    use crate::analyze::{Options, analyze};
    use crate::scheme::Scheme;

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
        // Both normalised (TensorRT): P by ΣP, Q by its own total.
        let (n, nq): (f64, f64) = (p.iter().sum(), q.iter().sum());
        p.iter()
            .zip(&q)
            .filter(|(pv, _)| **pv > 0.0)
            .map(|(pv, qv)| pv / n * ((pv / n) / (qv / nq)).ln())
            .sum()
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

    /// Deterministic pseudo-Gaussian values (a sum of four uniforms), mean 0, σ ≈ 1.
    pub(crate) fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        (0..n).map(|_| (next() + next() + next() + next()) * 1.73).collect()
    }

    fn run(xs: &[f32], shape: &[usize], s: &str) -> crate::metrics::Metrics {
        let s: Scheme = s.parse().unwrap();
        analyze(xs, shape, &s, &Options::default()).unwrap().metrics
    }

    /// Clipped share < 5 % and SQNR within 3 dB of min-max, per tensor and per
    /// channel, both mappings.
    fn assert_close_to_minmax(name: &str, xs: &[f32], shape: &[usize]) {
        for g in ["tensor", "channel"] {
            for m in ["sym", "asym"] {
                let kl = run(xs, shape, &format!("int8:{g}:entropy:{m}"));
                let mm = run(xs, shape, &format!("int8:{g}:minmax:{m}"));
                assert!(kl.clipped_fraction < 0.05, "{name} {g} {m}: clipped {}", kl.clipped_fraction);
                assert!(
                    kl.sqnr_db > mm.sqnr_db - 3.0,
                    "{name} {g} {m}: KL {:.2} dB vs min-max {:.2} dB",
                    kl.sqnr_db,
                    mm.sqnr_db
                );
            }
        }
    }

    #[test]
    fn entropy_keeps_one_sided_and_shifted_tensors() {
        let g = gaussian(64 * 4096, 7);
        let positive: Vec<f32> = g.iter().map(|x| x.abs() + 0.05).collect();
        let negative: Vec<f32> = positive.iter().map(|x| -x).collect();
        let shifted: Vec<f32> = g.iter().map(|x| 3.0 + 0.5 * x).collect();
        // Uniform on [0.2, 0.9]: a Gaussian's CDF-free stand-in, via the
        // fractional part of a sum of two of them (exactly uniform mod 1).
        let uniform_away: Vec<f32> = g.iter().map(|x| 0.2 + 0.7 * (x * 7.0).rem_euclid(1.0)).collect();
        for (name, xs) in [
            ("positive", &positive),
            ("negative", &negative),
            ("shifted", &shifted),
            ("uniform", &uniform_away),
        ] {
            assert_close_to_minmax(name, xs, &[64, 4096]);
        }
    }

    /// MiniLM's `embeddings.LayerNorm.weight`: 384 values in 0.145…0.917, most of
    /// them near 0.5–0.8 (the old search folded everything into one bin, clipped
    /// 99.7 % and gave 2.3 dB).
    #[test]
    fn entropy_on_a_layernorm_like_weight_does_not_collapse() {
        let g = gaussian(384, 11);
        let mut xs: Vec<f32> = g.iter().map(|x| (0.62 + 0.1 * x).clamp(0.3, 0.85)).collect();
        xs[3] = 0.145;
        xs[200] = 0.917;
        for s in ["int8:tensor:entropy", "int8:tensor:entropy:asym"] {
            let m = run(&xs, &[384], s);
            assert!(m.clipped_fraction < 0.05, "{s}: clipped {}", m.clipped_fraction);
            assert!(m.sqnr_db > 40.0, "{s}: {} dB", m.sqnr_db);
        }
    }

    #[test]
    fn a_candidate_folded_into_one_bin_never_wins() {
        // Everything sits in bins 1000..1100 of 2048: every candidate below 1001
        // folds it all into one bin (KL = 0 before the guard).
        let mut hist = vec![0u64; 2048];
        for (b, h) in hist.iter_mut().enumerate().skip(1000).take(100) {
            *h = 50 + (b as u64 % 7);
        }
        let best = kl_best_bin(&hist);
        assert!(best > 1001, "{best}");
        // Every eligible candidate agrees with the textbook form.
        let naive_best = (128..=2048)
            .filter(|&i| i > 1001)
            .map(|i| (i, kl_naive(&hist, i)))
            .fold((0, f64::INFINITY), |a, b| if b.1 <= a.1 { b } else { a });
        assert_eq!(best, naive_best.0);
        // A single spike has no eligible candidate: the full range.
        let mut spike = vec![0u64; 2048];
        spike[700] = 10;
        assert_eq!(kl_best_bin(&spike), 2048);
    }

    #[test]
    fn bins_grow_with_the_slice() {
        assert_eq!(kl_bins(1), 128);
        assert_eq!(kl_bins(128), 128);
        assert_eq!(kl_bins(300), 256);
        assert_eq!(kl_bins(2047), 1920);
        assert_eq!(kl_bins(2048), 2048);
        assert_eq!(kl_bins(1 << 24), 2048);
        // A 128-element group has one candidate: its own min-max.
        let xs = gaussian(128, 3);
        let stats = TensorStats::of(&xs);
        let (lo, hi) = entropy_range(&xs, &stats, Mapping::Asymmetric);
        assert_eq!((lo, hi), stats.range());
    }

    #[test]
    fn asymmetric_entropy_stays_on_the_data_side() {
        let xs: Vec<f32> = gaussian(50_000, 5).iter().map(|x| 2.0 + 0.1 * x).collect();
        let stats = TensorStats::of(&xs);
        let (lo, hi) = entropy_range(&xs, &stats, Mapping::Asymmetric);
        assert!(lo >= stats.min && hi <= stats.max, "[{lo}, {hi}] of {:?}", stats.range());
        assert!(lo > 1.5 && hi < 2.5 && hi - lo > 0.4, "[{lo}, {hi}]");
    }
}
