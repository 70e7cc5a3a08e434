//! MSE calibration: the clip that minimises the slice's own quantize error.

use rayon::prelude::*;
use wide::f32x8;

use super::PAR_CHUNK;
use crate::format::{NumberFormat, SliceParams};
use crate::metrics::{TensorStats, approx_slack, sum_sq_error, sum_sq_error_approx};
use crate::scheme::Mapping;

/// MSE search evaluates slices up to this length exactly, longer ones on a histogram.
const MSE_EXACT_MAX: usize = 8192;
const MSE_HIST_BINS: usize = 8192;

/// The clip grid: α_j = 1 − 0.008·(100 − j) for j = 0..=100, α ∈ [0.2, 1]
/// (α_100 = 1 is min-max). The "exhaustive" search evaluates all 101.
pub(crate) const GRID: usize = 100;
/// The coarse pass: every 25th grid point (α = 1, 0.8, 0.6, 0.4, 0.2) for INT.
/// FP8's error repeats with the binades (it is nearly scale-invariant), so its
/// curve has several basins: every 5th point there.
const COARSE_INT: usize = 25;
const COARSE_FP8: usize = 5;
/// The last pass: every grid point within this distance of the best.
const NEAR: usize = 2;
/// 1/φ, the golden-section ratio.
const INV_PHI: f64 = 0.618_033_988_749_895;

/// α of grid point j.
pub(crate) fn alpha(j: usize) -> f32 {
    if j >= GRID { 1.0 } else { 1.0 - 0.008 * (GRID - j) as f32 }
}

/// What the search asks of the grid points' costs. Points of one slot (the
/// same (S, Z, c), hence the same cost) are asked once.
trait Costs {
    /// The slot (< GRID + 1) of grid point j, asked once per point.
    fn slot(&mut self, j: usize) -> usize {
        j
    }
    /// Bounds (lo, hi) on the slot's cost, hi None when the evaluation stopped
    /// early because lo is already above `limit` (the caller needs no more).
    fn bounds(&mut self, slot: usize, limit: f64) -> (f64, Option<f64>);
    /// The cost itself (what the bounds bound); NaN counts as +∞.
    fn exact(&mut self, slot: usize) -> f64;
}

/// Costs given exactly by a function of α.
struct ExactCosts<C>(C);

impl<C: FnMut(f32) -> f64> Costs for ExactCosts<C> {
    fn bounds(&mut self, j: usize, _: f64) -> (f64, Option<f64>) {
        let c = self.exact(j);
        (c, Some(c))
    }
    fn exact(&mut self, j: usize) -> f64 {
        let c = (self.0)(alpha(j));
        if c.is_nan() { f64::INFINITY } else { c }
    }
}

/// What is known of one slot's cost.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Unknown,
    /// Only `lo` (the evaluation stopped early).
    Above,
    Bounds,
    Exact,
}

#[derive(Clone, Copy)]
struct Known {
    lo: f64,
    hi: f64,
    state: State,
}

/// The search's memory of the costs. Every comparison it answers is the one
/// exact costs would give: bounds decide where they are apart, else both costs
/// are evaluated exactly.
struct Memo<C> {
    costs: C,
    slot: [u8; GRID + 1],
    known: [Known; GRID + 1],
}

impl<C: Costs> Memo<C> {
    fn new(costs: C) -> Self {
        let unknown = Known { lo: 0.0, hi: f64::INFINITY, state: State::Unknown };
        Self { costs, slot: [u8::MAX; GRID + 1], known: [unknown; GRID + 1] }
    }

    fn slot(&mut self, j: usize) -> usize {
        if self.slot[j] == u8::MAX {
            self.slot[j] = self.costs.slot(j) as u8;
        }
        usize::from(self.slot[j])
    }

    /// Bounds on j's cost, complete unless lo > `limit`.
    fn bounds(&mut self, j: usize, limit: f64) -> (f64, f64) {
        let k = self.slot(j);
        let m = self.known[k];
        let enough = match m.state {
            State::Unknown => false,
            State::Above => m.lo > limit,
            State::Bounds | State::Exact => true,
        };
        if !enough {
            let (lo, hi) = self.costs.bounds(k, limit);
            let state = if hi.is_some() { State::Bounds } else { State::Above };
            self.known[k] = Known { lo, hi: hi.unwrap_or(f64::INFINITY), state };
        }
        (self.known[k].lo, self.known[k].hi)
    }

    fn exact(&mut self, j: usize) -> f64 {
        let k = self.slot(j);
        if self.known[k].state != State::Exact {
            let c = self.costs.exact(k);
            self.known[k] = Known { lo: c, hi: c, state: State::Exact };
        }
        self.known[k].lo
    }

    /// Whether j is better than `best`: a lower cost, ties to the larger α.
    fn beats(&mut self, j: usize, best: usize) -> bool {
        let (blo, bhi) = self.bounds(best, f64::INFINITY);
        let (lo, hi) = self.bounds(j, bhi);
        if hi < blo {
            return true;
        }
        if lo > bhi {
            return false;
        }
        let (c, b) = (self.exact(j), self.exact(best));
        c < b || (c == b && j > best)
    }

    fn full(&mut self, j: usize) -> bool {
        let k = self.slot(j);
        matches!(self.known[k].state, State::Bounds | State::Exact)
    }

    /// Whether cost(x1) ≤ cost(x2), x1 < x2. The point known in full, else the
    /// larger α (less clipping, so likely the lower cost), is evaluated first:
    /// the other then only needs to be known up to it.
    fn at_most(&mut self, x1: usize, x2: usize) -> bool {
        let ((lo1, hi1), (lo2, hi2)) = if self.full(x1) && !self.full(x2) {
            let b1 = self.bounds(x1, f64::INFINITY);
            (b1, self.bounds(x2, b1.1))
        } else {
            let b2 = self.bounds(x2, f64::INFINITY);
            (self.bounds(x1, b2.1), b2)
        };
        if hi1 < lo2 {
            return true;
        }
        if lo1 > hi2 {
            return false;
        }
        self.exact(x1) <= self.exact(x2)
    }
}

/// The grid point the search picks with exact costs `cost(α)` ([`search`]).
pub(crate) fn grid_search(coarse: usize, cost: impl FnMut(f32) -> f64) -> usize {
    search(coarse, ExactCosts(cost))
}

/// The grid point the search picks: the coarse pass (every `coarse`-th point),
/// then a golden-section search on the grid points within ±`coarse` of the best
/// coarse one, then every point within ±2 of the best. ~14 points for INT
/// instead of 101, each class evaluated at most once (plus once exactly when
/// bounds cannot decide). Ties go to the larger α (less clipping). The pick is
/// the one exact costs give, whatever the bounds.
fn search<C: Costs>(coarse: usize, costs: C) -> usize {
    search_with(coarse, costs).0
}

/// [`search`], also returning the costs (for their counts).
fn search_with<C: Costs>(coarse: usize, costs: C) -> (usize, C) {
    let mut m = Memo::new(costs);
    // Largest α first: a low best early lets far points stop early.
    let mut best = GRID;
    for j in (0..GRID).step_by(coarse).rev() {
        if m.beats(j, best) {
            best = j;
        }
    }
    // Golden section on the integers of [a, b].
    let (mut a, mut b) = (best.saturating_sub(coarse), (best + coarse).min(GRID));
    let point = |a: usize, b: usize, from_b: bool| -> usize {
        let d = ((b - a) as f64 * INV_PHI).round() as usize;
        if from_b { b - d } else { a + d }
    };
    while b - a > 2 {
        let (x1, x2) = (point(a, b, true), point(a, b, false));
        let (x1, x2) = if x1 < x2 { (x1, x2) } else { (x1.min(b - 1), (x1 + 1).min(b)) };
        if m.at_most(x1, x2) {
            b = x2;
        } else {
            a = x1;
        }
    }
    for j in a..=b {
        if j != best && m.beats(j, best) {
            best = j;
        }
    }
    let centre = best;
    for j in centre.saturating_sub(NEAR)..=(centre + NEAR).min(GRID) {
        if j != best && m.beats(j, best) {
            best = j;
        }
    }
    (best, m.costs)
}

/// One slice's costs: Σe² under the clip α_j, ranked by the f32-lane sum
/// ([`sum_sq_error_approx`], within [`approx_slack`] of [`sum_sq_error`]),
/// exact where two are too close to call. Slots are the distinct (S, Z, c)
/// asked so far (fake-quant reads nothing else).
struct SliceCosts<'a, F, P> {
    fmt: F,
    xs: &'a [f32],
    params_at: P,
    params: [SliceParams; GRID + 1],
    slots: usize,
    /// The slice's finite min and max (elements of it), if any.
    extremes: Option<(f32, f32)>,
    /// Evaluations: f32-lane sums, of them stopped early or settled by the
    /// extremes alone, exact sums.
    counts: [usize; 3],
}

impl<'a, F: NumberFormat, P: Fn(f32) -> SliceParams> SliceCosts<'a, F, P> {
    fn new(fmt: F, xs: &'a [f32], stats: &TensorStats, params_at: P) -> Self {
        let none = SliceParams { scale: 0.0, zero_point: 0, offset: 0.0, lo: 0.0, hi: 0.0 };
        let extremes = (stats.finite > 0).then_some((stats.min, stats.max));
        Self { fmt, xs, params_at, params: [none; GRID + 1], slots: 0, extremes, counts: [0; 3] }
    }

    /// A lower bound on [`sum_sq_error`] under `p` from the min and max elements
    /// alone (two scalar fake-quants): at small α their clip error already
    /// exceeds the best cost. The f64 sum of n terms is at least (1 − n·2^−52)
    /// times their exact sum.
    fn extremes_floor(&self, p: &SliceParams) -> f64 {
        let Some((lo, hi)) = self.extremes else { return 0.0 };
        // Both through the vector fake-quant (the same bits as the scalar one, tested).
        let q = self.fmt.fake_quant_x8(f32x8::from([lo, hi, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]), p).to_array();
        let e2 = |x: f32, q: f32| (f64::from(x) - f64::from(q)).powi(2);
        // lo == hi may be one element.
        let sum = if lo == hi { e2(hi, q[1]) } else { e2(lo, q[0]) + e2(hi, q[1]) };
        sum * (1.0 - (self.xs.len() as f64 + 2.0) * f64::EPSILON)
    }
}

impl<F: NumberFormat, P: Fn(f32) -> SliceParams> Costs for SliceCosts<'_, F, P> {
    fn slot(&mut self, j: usize) -> usize {
        let p = (self.params_at)(alpha(j));
        let key = |q: &SliceParams| (q.scale.to_bits(), q.zero_point, q.offset.to_bits());
        if let Some(k) = self.params[..self.slots].iter().position(|q| key(q) == key(&p)) {
            return k;
        }
        // Each of the GRID + 1 points is asked at most once, so a slot is always free.
        self.params[self.slots] = p;
        self.slots += 1;
        self.slots - 1
    }
    fn bounds(&mut self, k: usize, limit: f64) -> (f64, Option<f64>) {
        let floor = if limit < f64::INFINITY { self.extremes_floor(&self.params[k]) } else { 0.0 };
        if floor > limit {
            self.counts[1] += 1;
            return (floor, None);
        }
        let (v, done) = sum_sq_error_approx(self.fmt, self.xs, &self.params[k], limit);
        self.counts[0] += usize::from(done);
        self.counts[1] += usize::from(!done);
        if !v.is_finite() {
            let c = self.exact(k);
            return (c, Some(c));
        }
        let slack = approx_slack(self.xs.len(), v);
        (v - slack, done.then_some(v + slack))
    }
    fn exact(&mut self, k: usize) -> f64 {
        let c = sum_sq_error(self.fmt, self.xs, &self.params[k]);
        self.counts[2] += 1;
        if c.is_nan() { f64::INFINITY } else { c }
    }
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

/// MSE-optimal clip on the α grid ([`grid_search`]): minimises the slice's real quantize→dequantize error. The
/// result is never worse than min-max (α = 1 is always a candidate, and a
/// histogram estimate is confirmed exactly against it).
pub(super) fn mse_params<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    stats: &TensorStats,
    mapping: Mapping,
) -> SliceParams {
    let (lo, hi) = stats.range();
    let params_at = |a: f32| {
        let (l, h) = shrink(lo, hi, a);
        fmt.params(l, h, mapping)
    };
    let coarse = if fmt.code_dtype() == safetensors::Dtype::I8 { COARSE_INT } else { COARSE_FP8 };
    if xs.len() <= MSE_EXACT_MAX {
        return params_at(alpha(search(coarse, SliceCosts::new(fmt, xs, stats, params_at))));
    }
    let hist = MomentHistogram::build(xs, lo, hi);
    let j = grid_search(coarse, |a| hist.estimate(fmt, &params_at(a)));
    let (chosen, minmax) = (params_at(alpha(j)), params_at(1.0));
    if j == GRID {
        return minmax;
    }
    // The estimate's pick against min-max: decided by the histogram's bounds on
    // both costs when they are apart, else both exact in one pass over the
    // slice (chunk sums added in chunk order: deterministic).
    if let (Some(a), Some(b)) = (hist.bounds(fmt, &chosen), hist.bounds(fmt, &minmax)) {
        // The exact sums lie within n·2^−52 of the true costs the bounds bound.
        let eps = xs.len() as f64 * f64::EPSILON + 2f64.powi(-38);
        if a.1 * (1.0 + eps) < b.0 * (1.0 - eps) {
            return chosen;
        }
        if a.0 * (1.0 - eps) > b.1 * (1.0 + eps) {
            return minmax;
        }
    }
    let parts: Vec<(f64, f64)> = xs
        .par_chunks(PAR_CHUNK)
        .map(|c| (sum_sq_error(fmt, c, &chosen), sum_sq_error(fmt, c, &minmax)))
        .collect();
    let (a, b) = parts.iter().fold((0.0, 0.0), |s, p| (s.0 + p.0, s.1 + p.1));
    if a <= b { chosen } else { minmax }
}

/// Per-bin count, Σx and Σx²: the error of a bin whose elements all round to the
/// same level q is Σx² − 2qΣx + nq², which is exact; only bins that straddle a
/// rounding boundary are approximated (by their mean's level).
struct MomentHistogram {
    bins: Vec<Bin>,
    /// The slice's finite range and bins per unit of it.
    lo: f32,
    hi: f32,
    inv: f64,
}

/// One bin: count, Σx, Σx² (one cache line for the three updates).
#[derive(Clone, Copy, Default)]
struct Bin {
    n: u64,
    sum: f64,
    sum_sq: f64,
}

/// The histogram is built in this many parts at most, merged in order: the
/// sums do not depend on the thread count.
const HIST_PARTS: usize = 16;

impl MomentHistogram {
    fn build(xs: &[f32], lo: f32, hi: f32) -> Self {
        let width = f64::from(hi) - f64::from(lo);
        let inv = if width > 0.0 { MSE_HIST_BINS as f64 / width } else { 0.0 };
        let part = xs.len().div_ceil(HIST_PARTS).max(PAR_CHUNK);
        let parts: Vec<Vec<Bin>> = xs
            .par_chunks(part)
            .map(|chunk| {
                let mut bins = vec![Bin::default(); MSE_HIST_BINS];
                for &x in chunk.iter().filter(|x| x.is_finite()) {
                    let x = f64::from(x);
                    let b = (((x - f64::from(lo)) * inv) as usize).min(MSE_HIST_BINS - 1);
                    let bin = &mut bins[b];
                    bin.n += 1;
                    bin.sum += x;
                    bin.sum_sq += x * x;
                }
                bins
            })
            .collect();
        let mut bins = vec![Bin::default(); MSE_HIST_BINS];
        for p in &parts {
            for (a, b) in bins.iter_mut().zip(p) {
                a.n += b.n;
                a.sum += b.sum;
                a.sum_sq += b.sum_sq;
            }
        }
        Self { bins, lo, hi, inv }
    }

    /// The f32 interval holding every element of bin i: the bin's edges
    /// widened by a thousandth of a bin (far more than the rounding of the
    /// f64 bin index), rounded outwards, and clamped to [lo, hi].
    fn edges(&self, i: usize) -> (f32, f32) {
        let at = |k: f64| f64::from(self.lo) + k / self.inv;
        let (a, b) = (at(i as f64 - 1e-3), at(i as f64 + 1.001));
        let down = |v: f64| if f64::from(v as f32) > v { (v as f32).next_down() } else { v as f32 };
        let up = |v: f64| if f64::from(v as f32) < v { (v as f32).next_up() } else { v as f32 };
        let last = i + 1 == MSE_HIST_BINS;
        (down(a).max(self.lo), if last { self.hi } else { up(b).min(self.hi) })
    }

    /// Bounds (lo, hi) on the true Σe² under `p` (None when they cannot be
    /// had). A bin whose edges give one level q holds elements that all round
    /// to q (fake-quant is monotone): its error Σx² − 2qΣx + nq² is exact up
    /// to the f64 sums' rounding, which is added as slack. A bin across a
    /// rounding boundary has each e within [edge₀ − q₁, edge₁ − q₀].
    fn bounds<F: NumberFormat>(&self, fmt: F, p: &SliceParams) -> Option<(f64, f64)> {
        if !(self.inv > 0.0 && self.inv.is_finite()) {
            return None;
        }
        let (mut lo, mut hi) = (0.0, 0.0);
        for (i, bin) in self.bins.iter().enumerate().filter(|(_, b)| b.n > 0) {
            let n = bin.n as f64;
            let (a, b) = self.edges(i);
            let (qa, qb) = (fmt.fake_quant(a, p), fmt.fake_quant(b, p));
            if !(qa.is_finite() && qb.is_finite()) {
                return None;
            }
            let (a, b, qa, qb) = (f64::from(a), f64::from(b), f64::from(qa), f64::from(qb));
            if qa == qb {
                let e = bin.sum_sq - 2.0 * qa * bin.sum + n * qa * qa;
                let mag = bin.sum_sq + 2.0 * qa.abs() * n * a.abs().max(b.abs()) + n * qa * qa;
                let slack = (n + 4.0) * f64::EPSILON * mag;
                lo += (e - slack).max(0.0);
                hi += e + slack;
            } else {
                let (e0, e1) = (a - qb, b - qa);
                let top = e0.powi(2).max(e1.powi(2));
                let bottom = if e0 <= 0.0 && e1 >= 0.0 { 0.0 } else { e0.powi(2).min(e1.powi(2)) };
                lo += n * bottom * (1.0 - 4.0 * f64::EPSILON);
                hi += n * top * (1.0 + 4.0 * f64::EPSILON);
            }
        }
        Some((lo, hi))
    }

    fn estimate<F: NumberFormat>(&self, fmt: F, p: &SliceParams) -> f64 {
        let mut total = 0.0;
        for bin in self.bins.iter().filter(|b| b.n > 0) {
            let n = bin.n as f64;
            let q = f64::from(fmt.fake_quant((bin.sum / n) as f32, p));
            total += (bin.sum_sq - 2.0 * q * bin.sum + n * q * q).max(0.0);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::IntFormat;

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

    /// Deterministic slices of several shapes: Gaussian-like, heavy-tailed,
    /// outliers, bimodal, uniform.
    fn slice(n: usize, seed: u64, kind: u64) -> Vec<f32> {
        let mut next = crate::calibrate::xorshift(seed);
        let mut u = move || ((next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32;
        (0..n)
            .map(|i| {
                let g = (u() + u() + u() + u() - 2.0) * 1.73;
                match kind {
                    0 => g,
                    1 => -(u().ln()) * if u() < 0.5 { -1.0 } else { 1.0 }, // Laplace
                    2 => g / (u() + 0.05),                                 // heavy tail
                    3 => {
                        if i % 500 == 0 {
                            40.0 * g
                        } else {
                            g
                        }
                    }
                    4 => g + if u() < 0.5 { 4.0 } else { -4.0 },
                    _ => u() - 0.5,
                }
            })
            .collect()
    }

    fn exhaustive<F: NumberFormat>(fmt: F, xs: &[f32], m: Mapping) -> f64 {
        let s = TensorStats::of(xs);
        (0..=GRID)
            .map(|j| {
                let (l, h) = shrink(s.min, s.max, alpha(j));
                sum_sq_error(fmt, xs, &fmt.params(l, h, m))
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// The histogram's bounds hold the exact Σe² for clips from 0.2 to 1, on
    /// every kind of slice, and are tight enough to decide a heavy tail.
    #[test]
    fn histogram_bounds_hold_the_exact_cost() {
        use crate::format::{Fp8Format, WorkDtype};
        fn check<F: NumberFormat>(fmt: F) -> usize {
            let mut tight = 0;
            for kind in 0..6 {
                for m in [Mapping::Symmetric, Mapping::Asymmetric] {
                    let mut xs = slice(20_000, kind * 5 + 1, kind);
                    xs[3] = f32::NAN;
                    let st = TensorStats::of(&xs);
                    let hist = MomentHistogram::build(&xs, st.min, st.max);
                    for j in (0..=GRID).step_by(7) {
                        let (l, h) = shrink(st.min, st.max, alpha(j));
                        let p = fmt.params(l, h, m);
                        let exact = sum_sq_error(fmt, &xs, &p);
                        let (lo, hi) = hist.bounds(fmt, &p).unwrap();
                        // The bounds hold the true cost; the f64 sum lies within n·2^−52 of it.
                        let eps = xs.len() as f64 * f64::EPSILON;
                        assert!(
                            lo * (1.0 - eps) <= exact && exact <= hi * (1.0 + eps),
                            "{} kind {kind} {m:?} j {j}: {exact} not in [{lo}, {hi}]",
                            fmt.label()
                        );
                        tight += usize::from(hi < 1.5 * lo);
                    }
                }
            }
            tight
        }
        for d in [WorkDtype::F32, WorkDtype::BF16] {
            assert!(check(IntFormat::new(8).unwrap().in_work(d)) > 100);
            check(IntFormat::new(4).unwrap().in_work(d));
            check(Fp8Format::E4M3.in_work(d));
        }
        // A few outliers: the clip the histogram picks beats min-max by far
        // more than the bounds' width, so no exact pass decides it.
        let xs = slice(40_000, 9, 2);
        let st = TensorStats::of(&xs);
        let (f, m) = (IntFormat::new(4).unwrap(), Mapping::Symmetric);
        let hist = MomentHistogram::build(&xs, st.min, st.max);
        let pick = mse_params(f, &xs, &st, m);
        let (a, b) = (hist.bounds(f, &pick), hist.bounds(f, &f.params(st.min, st.max, m)));
        assert!(a.unwrap().1 < b.unwrap().0, "{a:?} vs {b:?}");
    }

    /// Ranking by the f32-lane bounds picks exactly what exact costs pick (the
    /// search before them), on every kind of slice, format, dtype and mapping,
    /// and needs an exact sum for few points.
    #[test]
    fn bounded_search_picks_what_exact_costs_pick() {
        fn check<F: NumberFormat>(fmt: F, totals: &mut [usize; 5]) {
            let coarse = if fmt.code_dtype() == safetensors::Dtype::I8 { COARSE_INT } else { COARSE_FP8 };
            for kind in 0..6 {
                for m in [Mapping::Symmetric, Mapping::Asymmetric] {
                    for n in [32usize, 128, 1000, 4096] {
                        for seed in 0..4 {
                            let xs = slice(n, kind * 131 + seed * 17 + n as u64, kind);
                            let (lo, hi) = TensorStats::of(&xs).range();
                            let params_at = |a: f32| {
                                let (l, h) = shrink(lo, hi, a);
                                fmt.params(l, h, m)
                            };
                            let want = grid_search(coarse, |a| sum_sq_error(fmt, &xs, &params_at(a)));
                            let (got, costs) = search_with(
                                coarse,
                                SliceCosts::new(fmt, &xs, &TensorStats::of(&xs), params_at),
                            );
                            assert_eq!(got, want, "{} kind {kind} n {n} {m:?}", fmt.label());
                            totals[0] += 1;
                            for (t, c) in totals[1..4].iter_mut().zip(costs.counts) {
                                *t += c;
                            }
                            totals[4] += costs.slots;
                        }
                    }
                }
            }
        }
        use crate::format::{Fp8Format, WorkDtype};
        for d in [WorkDtype::F32, WorkDtype::BF16] {
            let mut t = [0; 5];
            check(IntFormat::new(8).unwrap().in_work(d), &mut t);
            check(IntFormat::new(4).unwrap().in_work(d), &mut t);
            check(Fp8Format::E4M3.in_work(d), &mut t);
            eprintln!(
                "{d:?}: {} slices, {} points: {} full f32-lane sums, {} stopped early or settled by the floor, {} exact",
                t[0], t[4], t[1], t[2], t[3]
            );
            assert!(t[3] * 20 < t[1], "{d:?}: {} exact sums for {} ranking sums", t[3], t[1]);
            // Early stops and floors spare a full pass for a good share of the points.
            assert!(t[1] * 10 < t[4] * 8, "{d:?}: {} full sums for {} points", t[1], t[4]);
        }
    }

    /// Issue 13: the search's choice is within 0.1 % of the exhaustive 101-point
    /// grid's MSE (INT8; INT4 0.25 %, FP8 0.5 %) and never worse than min-max. Per slice for long slices (the
    /// histogram path and per-channel lengths); summed over a tensor's slices for
    /// short groups, whose error curve is too jagged for any search of a dozen
    /// points to land on the luckiest grid point every time.
    #[test]
    fn search_is_within_a_thousandth_of_the_exhaustive_grid() {
        fn check<F: NumberFormat>(fmt: F, name: &str, tol: f64) {
            for kind in 0..6 {
                for m in [Mapping::Symmetric, Mapping::Asymmetric] {
                    // Long slices, one by one.
                    for n in [4096usize, 20_000] {
                        let xs = slice(n, kind * 31 + n as u64, kind);
                        let stats = TensorStats::of(&xs);
                        let got = sum_sq_error(fmt, &xs, &mse_params(fmt, &xs, &stats, m));
                        let best = exhaustive(fmt, &xs, m);
                        let minmax = sum_sq_error(fmt, &xs, &fmt.params(stats.min, stats.max, m));
                        assert!(got <= best * tol, "{name} kind {kind} n {n} {m:?}: {got} vs {best}");
                        assert!(got <= minmax, "{name} kind {kind} n {n} {m:?}");
                    }
                    // Short groups, summed over 256 of them.
                    for g in [32usize, 128, 512] {
                        let xs = slice(g * 256, kind * 7 + g as u64, kind);
                        let (mut got, mut best) = (0.0, 0.0);
                        for c in xs.chunks(g) {
                            let stats = TensorStats::of(c);
                            let e = sum_sq_error(fmt, c, &mse_params(fmt, c, &stats, m));
                            let minmax = sum_sq_error(fmt, c, &fmt.params(stats.min, stats.max, m));
                            assert!(e <= minmax, "{name} kind {kind} group {g} {m:?}");
                            got += e;
                            best += exhaustive(fmt, c, m);
                        }
                        assert!(got <= best * tol, "{name} kind {kind} group {g} {m:?}: {got} vs {best}");
                    }
                }
            }
        }
        check(IntFormat::new(8).unwrap(), "int8", 1.001);
        // INT4's 15 levels and FP8's 3 mantissa bits make the curve jagged at
        // the 0.1 % scale: the exhaustive grid finds a lucky point (INT4 ≤ 0.13 %,
        // FP8 ≤ 0.4 %) below the search's on some short groups.
        check(crate::format::Fp8Format::E4M3, "e4m3", 1.005);
        check(IntFormat::new(4).unwrap(), "int4", 1.0025);
    }
}
