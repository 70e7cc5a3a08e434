//! The KL-entropy search as it stood before the per-channel speed-up (issue 13),
//! kept verbatim for tests only: the fast search in `kl.rs` must pick exactly the
//! same thresholds on any slice.

use rayon::prelude::*;
use std::sync::LazyLock;

use super::{KL_LEVELS, KL_SMOOTHING, kl_bins};
use crate::calibrate::PAR_CHUNK;
use crate::metrics::TensorStats;
use crate::scheme::Mapping;

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
pub(super) fn kl_best_bin(hist: &[u64]) -> usize {
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
