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
//!
//! Speed (a 4096² tensor per channel is 4096 searches of 1921 candidates): buffers
//! are per thread, bin indices are computed 8 lanes at a time, and the candidate
//! scan computes every KL before picking (see [`best_bin`]). `kl/reference.rs` (tests
//! only) keeps the loop this replaced; the tests pin every threshold to it bit for
//! bit.

use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::LazyLock;
use wide::{f32x8, f64x4};

use super::PAR_CHUNK;
use crate::metrics::TensorStats;
use crate::scheme::Mapping;
use crate::simd;

#[cfg(test)]
mod reference;

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

/// Buffers reused from slice to slice on one thread: a per-channel analysis runs
/// thousands of slices, and fresh vectors for each cost as much as the search.
#[derive(Default)]
struct Scratch {
    /// The histogram, bins + 1 long: the extra bin takes the non-finite values.
    hist: Vec<u64>,
    /// The one-sided histograms of the asymmetric search (mirrored, re-folded).
    side: Vec<u64>,
    search: Search,
}

/// The threshold search's working arrays (see [`best_bin`]).
#[derive(Default)]
struct Search {
    /// Prefix sums of the histogram: count[b] = Σ hist[..b].
    count: Vec<u64>,
    /// Prefix counts of non-empty bins.
    nonzero: Vec<u32>,
    /// Per merge width m: Σ over groups 0..127 of G ln(G / nz).
    fixed: Vec<f64>,
    /// Per candidate i (from 128): KL, NaN if ruled out.
    kl: Vec<f64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's buffers; fresh ones when they are taken (a rayon job
/// stolen while the per-tensor histogram waits for its chunks).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// The KL-entropy clip range of one slice.
pub(super) fn entropy_range(xs: &[f32], stats: &TensorStats, mapping: Mapping) -> (f32, f32) {
    let (mn, mx) = stats.range();
    let bins = kl_bins(xs.len());
    with_scratch(|s| match mapping {
        Mapping::Symmetric => {
            let amax = mn.abs().max(mx.abs());
            if amax == 0.0 || !amax.is_finite() {
                return (0.0, 0.0);
            }
            histogram(&mut s.hist, xs, 0.0, amax, bins, true);
            let best = best_bin(&s.hist[..bins], &mut s.search);
            let t = edge(0.0, amax, bins, best as f32 + 0.5);
            (-t, t)
        }
        Mapping::Asymmetric => {
            if mx <= mn || !(mx - mn).is_finite() {
                return (mn, mx);
            }
            histogram(&mut s.hist, xs, mn, mx, bins, false);
            let (lo_bin, hi_bin) = two_sided(&s.hist[..bins], &mut s.side, &mut s.search);
            let lo = if lo_bin == 0 { mn } else { edge(mn, mx, bins, lo_bin as f32 - 0.5).max(mn) };
            let hi = edge(mn, mx, bins, hi_bin as f32 + 0.5);
            (lo, hi)
        }
    })
}

/// lo + k bin widths on [lo, hi] cut into `bins`, saturated at hi (and at
/// f32::MAX, which the half-bin past the last edge can overflow).
fn edge(lo: f32, hi: f32, bins: usize, k: f32) -> f32 {
    let width = (hi - lo) / bins as f32;
    (lo + k * width).min(hi).min(f32::MAX)
}

/// The kept bins [lo, hi) of the two-sided search (module docs).
fn two_sided(hist: &[u64], side: &mut Vec<u64>, s: &mut Search) -> (usize, usize) {
    let n = hist.len();
    // Upper edge, lower edge at min.
    let hi = best_bin(hist, s);
    // Lower edge: bins [0, hi) mirrored, the right tail folded into the fixed edge bin.
    side.clear();
    side.extend(hist[..hi].iter().rev());
    side[0] += hist[hi..].iter().sum::<u64>();
    let lo = hi - best_bin(side, s);
    // Upper edge again, with the left tail folded into bin lo.
    side.clear();
    side.extend_from_slice(&hist[lo..]);
    side[0] += hist[..lo].iter().sum::<u64>();
    let hi = (lo + best_bin(side, s)).min(n);
    (lo, hi)
}

/// Counts the finite values of `xs` (or their magnitudes) into `bins` equal bins
/// over [lo, hi]: `out` becomes bins + 1 long, its last bin the non-finite ones.
fn histogram(out: &mut Vec<u64>, xs: &[f32], lo: f32, hi: f32, bins: usize, magnitude: bool) {
    let scale = bins as f32 / (hi - lo);
    out.clear();
    out.resize(bins + 1, 0);
    if xs.len() <= PAR_CHUNK {
        fill(out, xs, lo, scale, magnitude);
        return;
    }
    let parts = xs
        .par_chunks(PAR_CHUNK)
        .map(|chunk| {
            let mut h = vec![0u64; bins + 1];
            fill(&mut h, chunk, lo, scale, magnitude);
            h
        })
        .reduce(
            || vec![0u64; bins + 1],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    out.copy_from_slice(&parts);
}

/// Adds `xs` to `h` (bins + 1 long): a finite value v (or |v|) to bin
/// min(⌊(v − lo)·scale⌋, bins − 1), the rest to bin `bins`. The bin index is
/// computed 8 lanes at a time; the counting stays scalar.
fn fill(h: &mut [u64], xs: &[f32], lo: f32, scale: f32, magnitude: bool) {
    let bins = h.len() - 1;
    let mut body = xs.len() / simd::W * simd::W;
    // An infinite scale (a range of a few subnormals) would make 0·∞ = NaN, which
    // the scalar `as usize` sends to bin 0: leave that case to the scalar loop.
    if !scale.is_finite() {
        body = 0;
    }
    let (lo8, scale8) = (f32x8::splat(lo), f32x8::splat(scale));
    let (top, dump) = (f32x8::splat((bins - 1) as f32), f32x8::splat(bins as f32));
    // Bin indices of 64 values at a time, stored as vectors, then counted: cheaper
    // than extracting each lane from a register.
    let mut idx = [0i32; 64];
    for block in xs[..body].chunks(idx.len()) {
        for (c, out) in block.chunks_exact(simd::W).zip(idx.chunks_exact_mut(simd::W)) {
            let x = simd::load(c);
            let v = if magnitude { x.abs() } else { x };
            // v ≥ lo and a finite scale: (v − lo)·scale is finite and ≥ 0 for finite v,
            // so clamping to [0, bins − 1] before truncating equals truncating first.
            let f = ((v - lo8) * scale8).fast_max(f32x8::ZERO).fast_min(top);
            out.copy_from_slice(&x.is_finite().select(f, dump).fast_trunc_int().to_array());
        }
        for &k in &idx[..block.len()] {
            h[k as usize] += 1;
        }
    }
    for &x in &xs[body..] {
        let b = if x.is_finite() {
            let v = if magnitude { x.abs() } else { x };
            // (v − lo)·scale ≥ 0 for v ≥ lo; `as usize` saturates a negative 0⁻ to 0.
            (((v - lo) * scale) as usize).min(bins - 1)
        } else {
            bins
        };
        h[b] += 1;
    }
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
///
/// Every KL value is computed with the same operations in the same order as the
/// straightforward loop (`kl/reference.rs`, tested equal); all of them first,
/// without its shortcuts or running pick (branches that mispredict on sparse
/// tails), then the pick.
fn best_bin(hist: &[u64], s: &mut Search) -> usize {
    let n = hist.len();
    if n < KL_LEVELS {
        return n;
    }
    prefix_sums(hist, s);
    let total = s.count[n];
    if total == 0 {
        return n;
    }
    // Every count the search takes a log of is ≤ N. When N is within the table the
    // lookup needs neither a fallback (whose `ln()` call would make the loops spill
    // registers) nor a bounds check (the mask keeps the index in the array).
    let table = ln_table();
    match <&[f64; LN_TABLE]>::try_from(table) {
        Ok(t) if total < LN_TABLE as u64 => {
            let ln = |k: u64| t[k as usize & (LN_TABLE - 1)];
            fixed_sums(s, n / KL_LEVELS, ln);
            kl_values(hist, s, total, ln);
        }
        _ => {
            let ln = |k: u64| ln_of(table, k);
            fixed_sums(s, n / KL_LEVELS, ln);
            kl_values(hist, s, total, ln);
        }
    }
    KL_LEVELS + pick(&s.kl).unwrap_or(n - KL_LEVELS)
}

/// count and nonzero: prefix sums of the counts and of the non-empty bins.
fn prefix_sums(hist: &[u64], s: &mut Search) {
    let n = hist.len();
    s.count.resize(n + 1, 0);
    s.nonzero.resize(n + 1, 0);
    let (mut c, mut z) = (0u64, 0u32);
    for ((&h, count), nonzero) in hist.iter().zip(&mut s.count[1..=n]).zip(&mut s.nonzero[1..=n]) {
        c += h;
        z += u32::from(h > 0);
        (*count, *nonzero) = (c, z);
    }
    (s.count[0], s.nonzero[0]) = (0, 0);
}

/// fixed[m] = Σ_{j < 127} G_j ln(G_j / nz_j) over groups [j·m, (j+1)·m), for
/// m = 1..=m_max. Empty groups add +0.0 and every term is ≥ +0.0, so summing
/// from 0.0 in group order equals the reference's `sum()` of all 127 terms. The
/// m sums run side by side: 16 independent chains of additions, not one.
fn fixed_sums(s: &mut Search, m_max: usize, ln: impl Fn(u64) -> f64) {
    s.fixed.clear();
    s.fixed.resize(m_max + 1, 0.0);
    // Four widths at a time, their sums and left edges in registers. A lane past
    // m_max repeats m_max and its sum is dropped.
    for m0 in (1..=m_max).step_by(4) {
        let ms: [usize; 4] = std::array::from_fn(|l| (m0 + l).min(m_max));
        let mut sums = [0.0f64; 4];
        let mut left = [(0u64, 0u32); 4];
        for j in 1..KL_LEVELS {
            for l in 0..4 {
                let right = (s.count[j * ms[l]], s.nonzero[j * ms[l]]);
                let g = right.0 - left[l].0;
                // ln(0) reads as 0 here, so an empty group's term is 0·(0 − 0) = +0.0.
                sums[l] += to_f64(g) * (ln(g) - ln(u64::from(right.1 - left[l].1)));
                left[l] = right;
            }
        }
        for (l, sum) in sums.into_iter().enumerate().take(m_max + 1 - m0) {
            s.fixed[m0 + l] = sum;
        }
    }
}

/// kl[i − 128] = KL(i) for every candidate i, NaN for the ones the collapse guard
/// rules out. The division has no loop-carried dependency, so it overlaps the rest.
fn kl_values(hist: &[u64], s: &mut Search, total: u64, ln: impl Fn(u64) -> f64 + Copy) {
    let n = hist.len();
    let xlogx = |v: u64| to_f64(v) * ln(v);
    let (ln_n, n_f) = (ln(total), total as f64);
    let ln_eps = KL_SMOOTHING.ln();
    s.kl.resize(n + 1 - KL_LEVELS, 0.0);
    // Σ P ln P over bins 0..i−1, carried along the candidates.
    let mut plogp = hist[..KL_LEVELS - 1].iter().fold(0.0f64, |p, &h| p + xlogx(h));
    for m in 1..=n / KL_LEVELS {
        let a = (KL_LEVELS - 1) * m;
        let (c_a, z_a, fixed) = (s.count[a], s.nonzero[a], s.fixed[m]);
        // The last group's P-sum: its Q-sum plus the tail, i.e. N − count[a].
        let g = to_f64(total - c_a);
        // Q empty where P is not: ONNX Runtime's smoothing count (0 for an empty group).
        let smoothed = if total == c_a { 0.0 } else { g * ln_eps };
        let block = KL_LEVELS * m..(KL_LEVELS * (m + 1)).min(n + 1);
        let (k0, k1) = (block.start - KL_LEVELS, block.end - KL_LEVELS);
        let (prev, cur) = (block.start - 1..block.end - 1, block);
        let bins =
            s.count[cur].iter().zip(&s.count[prev.clone()]).zip(&s.nonzero[prev.clone()]).zip(&hist[prev]);
        for ((((&c_i, &c_p), &z_p), &h_p), out) in bins.zip(&mut s.kl[k0..k1]) {
            // The folded last bin: hist[i − 1] + tail = N − count[i − 1].
            let last = total - c_p;
            let nz_last = u32::from(last > 0);
            let g_q = c_i - c_a;
            let nz = z_p - z_a + nz_last;
            let term = if g_q == 0 { smoothed } else { g * (ln(g_q) - ln(u64::from(nz))) };
            let kl = (plogp + xlogx(last) - fixed - term) / n_f + (ln(c_i) - ln_n);
            // The collapse guard: P must keep at least two non-empty bins.
            *out = if z_p + nz_last >= 2 { kl } else { f64::NAN };
            plogp += xlogx(h_p);
        }
    }
}

/// A count as f64 through i64 (one instruction on x86-64-v3; the same value as
/// `as f64`, both being the correctly rounded conversion, for counts < 2⁶³).
#[inline]
fn to_f64(v: u64) -> f64 {
    v as i64 as f64
}

/// The last k minimising kl[k] (ties to the larger threshold, NaN never), None
/// when every candidate is NaN. The minimum over 4 lanes involves no arithmetic,
/// so it equals the sequential one whatever the order.
fn pick(kl: &[f64]) -> Option<usize> {
    let mut lane_min = f64x4::splat(f64::INFINITY);
    let body = kl.len() / 4 * 4;
    for c in kl[..body].chunks_exact(4) {
        let k = f64x4::from([c[0], c[1], c[2], c[3]]);
        lane_min = k.simd_lt(lane_min).select(k, lane_min);
    }
    // `k < min` is false for NaN: an ineligible candidate never becomes the minimum.
    let min = lane_min
        .to_array()
        .into_iter()
        .chain(kl[body..].iter().copied())
        .fold(f64::INFINITY, |min, k| if k < min { k } else { min });
    kl.iter().rposition(|&k| k == min)
}

const LN_TABLE: usize = 1 << 16;
/// ln k for k < 2¹⁶, with ln 0 read as 0 (so that 0·ln 0 = 0 needs no branch).
static LN_SMALL: LazyLock<Vec<f64>> =
    LazyLock::new(|| (0..LN_TABLE).map(|k| if k == 0 { 0.0 } else { (k as f64).ln() }).collect());

fn ln_table() -> &'static [f64] {
    &LN_SMALL
}

/// ln(k) for an integer k (0 for k = 0): the table for small k, `ln()` beyond.
#[inline]
fn ln_of(table: &[f64], k: u64) -> f64 {
    match table.get(k as usize) {
        Some(&v) => v,
        None => to_f64(k).ln(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{Options, analyze};
    use crate::scheme::Scheme;

    fn kl_best_bin(hist: &[u64]) -> usize {
        best_bin(hist, &mut Search::default())
    }

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

    /// A slice of `n` values of one of the kinds the search meets (and some it
    /// should survive), from a deterministic seed.
    fn varied_slice(kind: usize, n: usize, seed: u64) -> Vec<f32> {
        let mut next = crate::calibrate::xorshift(seed);
        let mut unit = move || (next() >> 40) as f32 / (1u64 << 24) as f32;
        (0..n)
            .map(|i| {
                let u = unit();
                let g = (u + unit() + unit() + unit() - 2.0) * 1.73;
                match kind {
                    1 => g.abs() + 0.05,          // all positive
                    2 => -(g.abs() + 0.05),       // all negative
                    3 => 3.0 + 0.5 * g,           // shifted
                    4 if i % 97 == 0 => g * 60.0, // rare outliers
                    4 => g * 0.02,
                    5 => (g * 3.0).round() / 3.0, // ties: a few levels
                    6 if u < 0.7 => 0.0,          // mostly zeros
                    7 => -(1.0 - u).ln() * 0.1,   // exponential tail
                    8 if i % 31 == 0 => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3],
                    9 => 1.0 + f32::EPSILON * (u * 4.0).floor(), // a range of a few ulps
                    10 => f32::from_bits(1 + (u * 8.0) as u32),  // subnormals
                    11 => 0.75,                                  // constant
                    12 => (u - 0.5) * 6.0e37 * 10.0,             // near f32::MAX
                    13 => u,                                     // uniform
                    // 0, and the rest of 6 (zeros) and 8 (non-finite): Gaussian.
                    _ => g,
                }
            })
            .collect()
    }

    /// The search picks exactly the thresholds of the straightforward loop it
    /// replaced (`kl/reference.rs`) on slices of every kind, size and mapping.
    #[test]
    fn the_fast_search_picks_the_reference_thresholds_bit_for_bit() {
        let sizes = [1, 7, 100, 128, 200, 255, 256, 300, 1000, 2047, 2048, 3000, 4096, 5000];
        let mut compared = 0;
        for kind in 0..14 {
            for (s, &n) in sizes.iter().enumerate() {
                for seed in 0..3u64 {
                    let xs = varied_slice(kind, n, 100 * kind as u64 + 10 * s as u64 + seed);
                    for stats in [TensorStats::of(&xs), TensorStats::range_of(&xs[..])] {
                        for mapping in [Mapping::Symmetric, Mapping::Asymmetric] {
                            let (lo, hi) = entropy_range(&xs, &stats, mapping);
                            let (rlo, rhi) = reference::entropy_range(&xs, &stats, mapping);
                            assert_eq!(
                                (lo.to_bits(), hi.to_bits()),
                                (rlo.to_bits(), rhi.to_bits()),
                                "kind {kind}, n {n}, seed {seed}, {mapping:?}: [{lo}, {hi}] vs [{rlo}, {rhi}]"
                            );
                            compared += 1;
                        }
                    }
                }
            }
        }
        // Beyond one parallel chunk (the per-tensor path fills chunks on rayon).
        for kind in [0, 3, 4, 5, 8] {
            let xs = varied_slice(kind, 3 * PAR_CHUNK + 5, kind as u64);
            let stats = TensorStats::of(&xs);
            for mapping in [Mapping::Symmetric, Mapping::Asymmetric] {
                assert_eq!(
                    entropy_range(&xs, &stats, mapping),
                    reference::entropy_range(&xs, &stats, mapping)
                );
                compared += 1;
            }
        }
        assert_eq!(compared, 14 * 14 * 3 * 2 * 2 + 10);
    }

    /// The same on histograms built directly: sparse, spiky, with counts beyond
    /// the ln table (2¹⁶) and of every length from 1 to 2048.
    #[test]
    fn the_fast_search_picks_the_reference_bin_on_varied_histograms() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut search = Search::default();
        for case in 0..400 {
            let n = [1, 127, 128, 129, 255, 256, 640, 1920, 2048][case % 9];
            let hist: Vec<u64> = (0..n)
                .map(|_| {
                    let r = next();
                    match case % 5 {
                        0 => r % 3,                             // sparse: many empty bins
                        1 => (r % 100 == 0) as u64 * (r >> 40), // rare huge spikes
                        2 => r % 70_000 + 60_000,               // counts around the table edge
                        3 => u64::from(r % 10 < 2),             // ones and zeros
                        _ => (r % 1000).saturating_sub(900),    // zero-heavy with a tail
                    }
                })
                .collect();
            assert_eq!(best_bin(&hist, &mut search), reference::kl_best_bin(&hist), "case {case}, n {n}");
        }
    }
}
