//! Percentile calibration: the clip range at exact order statistics, with
//! numpy's default linear interpolation (the same numbers as a full quantile on
//! a sorted copy, tested against ndarray-stats).
//!
//! Three selections, each reading the slice a bounded number of times:
//! - ranks within 64 of either end of a slice up to 64 Ki elements (p99.9 of a
//!   channel or a group): one read keeping the few largest or smallest values
//!   in a small sorted buffer, no copy of the slice;
//! - other slices up to 64 Ki elements: the finite values (or magnitudes) are copied
//!   into a per-thread scratch buffer and `select_nth_unstable` finds each
//!   order statistic (expected linear time, no allocation per slice);
//! - longer slices: a radix select on the float bits. One pass counts the
//!   values by the top 11 bits of an order-preserving key (sign, exponent, two
//!   mantissa bits); a second pass copies out only the values in the buckets
//!   that hold the wanted ranks, and those few are selected exactly.

use std::cell::RefCell;

use rayon::prelude::*;

use super::PAR_CHUNK;
use crate::scheme::Mapping;

/// Key bits used by the radix pass: 2^11 buckets (16 KiB of u64 per thread).
const RADIX_BITS: u32 = 11;
const BUCKETS: usize = 1 << RADIX_BITS;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Asymmetric: [P(100−p), P(p)] of x; symmetric: ±P(p) of |x|.
pub(super) fn percentile_range(xs: &[f32], p: f64, mapping: Mapping) -> (f32, f32) {
    let q = p / 100.0;
    match mapping {
        Mapping::Symmetric => match order_statistics(xs, true, &[q]) {
            Some([amax, ..]) => (-amax, amax),
            None => (0.0, 0.0),
        },
        Mapping::Asymmetric => match order_statistics(xs, false, &[1.0 - q, q]) {
            Some([lo, hi, ..]) => (lo, hi),
            None => (0.0, 0.0),
        },
    }
}

/// The linear-interpolation quantiles `qs` (at most two) of the finite values of
/// `xs` (or of their magnitudes); `None` when no value is finite.
///
/// As ndarray-stats' `Linear` (and numpy's default): h = q·(n − 1),
/// v = x₍⌊h⌋₎ + (f32)(frac(h)·(x₍⌈h⌉₎ − x₍⌊h⌋₎)) with the difference in f64.
fn order_statistics(xs: &[f32], magnitude: bool, qs: &[f64]) -> Option<[f32; 2]> {
    let nr = 2 * qs.len();
    let ranks_of = |n: usize| -> [usize; 4] {
        let mut r = [0; 4];
        for (i, &q) in qs.iter().enumerate() {
            let h = q * (n - 1) as f64;
            (r[2 * i], r[2 * i + 1]) = (h.floor() as usize, h.ceil() as usize);
        }
        r
    };
    let to_array = |v: Vec<f32>| -> [f32; 4] {
        let mut a = [0f32; 4];
        a[..v.len()].copy_from_slice(&v);
        a
    };
    let (n, values) = if let Some(found) = edge_select(xs, magnitude, qs, ranks_of) {
        found
    } else if xs.len() <= PAR_CHUNK {
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend(xs.iter().filter(|x| x.is_finite()).map(|&x| if magnitude { x.abs() } else { x }));
            let n = buf.len();
            (n, if n == 0 { [0.0; 4] } else { to_array(select_in_place(buf, &ranks_of(n)[..nr])) })
        })
    } else {
        let radix = RadixCounts::of(xs, magnitude);
        let n = radix.total();
        (n, if n == 0 { [0.0; 4] } else { to_array(radix.select(xs, &ranks_of(n)[..nr])) })
    };
    if n == 0 {
        return None;
    }
    let mut out = [0f32; 2];
    for (i, &q) in qs.iter().enumerate() {
        let h = q * (n - 1) as f64;
        let (lower, higher) = (values[2 * i], values[2 * i + 1]);
        out[i] = lower + (h.fract() * (f64::from(higher) - f64::from(lower))) as f32;
    }
    Some(out)
}

/// At most this many values are kept at each end by [`edge_select`].
const EDGE: usize = 64;

/// Order statistics near the ends of a slice (p99.9 of a channel or a group
/// wants the few largest values) in one read, with no copy and no allocation:
/// the K largest (or smallest) keys are kept in a small sorted array, K bounded
/// from the slice length. `(n, values of the ranks)` (the ranks of at most two
/// quantiles), or None when a rank lies too deep.
fn edge_select(
    xs: &[f32],
    magnitude: bool,
    qs: &[f64],
    ranks_of: impl Fn(usize) -> [usize; 4],
) -> Option<(usize, [f32; 4])> {
    if xs.len() > PAR_CHUNK {
        return None; // a single-threaded pass; the radix select runs in parallel
    }
    // n ≤ len, so a rank's distance from its end is at most this (+1 for rounding).
    let depth = |q: f64| (q.min(1.0 - q).max(0.0) * xs.len().saturating_sub(1) as f64).ceil() as usize + 2;
    let (mut top, mut bottom) = (Kept::new(0), Kept::new(0));
    for &q in qs {
        let side = if q >= 0.5 { &mut top } else { &mut bottom };
        side.cap = side.cap.max(depth(q));
    }
    if top.cap.max(bottom.cap) > EDGE {
        return None;
    }
    let mut n = 0;
    let one = |x: f32, n: &mut usize, top: &mut Kept, bottom: &mut Kept| {
        if x.is_finite() {
            *n += 1;
            let k = key(if magnitude { x.abs() } else { x });
            top.push_top(k);
            bottom.push_bottom(k);
        }
    };
    let (seed_hi, seed_lo) = seeds(xs, magnitude, top.cap, bottom.cap);
    let blocks = xs.chunks_exact(8);
    let tail = blocks.remainder();
    for b in blocks {
        // Most blocks hold no candidate: 8 lanes tested against both thresholds at
        // once (≥ / ≤, so ties and ±0 take the exact scalar path), all finite.
        let v = wide::f32x8::new(b.try_into().unwrap_or_default());
        let v = if magnitude { v.abs() } else { v };
        let hi = wide::f32x8::splat(top.threshold_top().max(seed_hi));
        let lo = wide::f32x8::splat(bottom.threshold_bottom().min(seed_lo));
        if (!v.is_finite() | v.simd_ge(hi) | v.simd_le(lo)).any() {
            for &x in b {
                one(x, &mut n, &mut top, &mut bottom);
            }
        } else {
            n += 8;
        }
    }
    for &x in tail {
        one(x, &mut n, &mut top, &mut bottom);
    }
    let mut out = [0f32; 4];
    if n == 0 {
        return Some((0, out));
    }
    let (top, bottom) = (top.keys(), bottom.keys());
    for (o, r) in out.iter_mut().zip(&ranks_of(n)[..2 * qs.len()]) {
        // `top` holds ranks n − len..n; `bottom` ranks 0..len.
        *o = from_key(if r + top.len() >= n {
            top[r + top.len() - n]
        } else if *r < bottom.len() {
            bottom[*r]
        } else {
            return None;
        });
    }
    Some((n, out))
}

/// Starting bounds, so that filling the buffers does not send the first blocks
/// down the scalar path: each of the 8 lanes' largest (smallest) finite value,
/// one vector pass; the K-th largest of those 8 (K ≤ 8) has K distinct elements
/// at or beyond it, so anything strictly inside can be in neither buffer.
fn seeds(xs: &[f32], magnitude: bool, k_top: usize, k_bottom: usize) -> (f32, f32) {
    use wide::f32x8;
    let (mut mx, mut mn) = (f32x8::splat(f32::NEG_INFINITY), f32x8::splat(f32::INFINITY));
    for b in xs.chunks_exact(8) {
        let v = f32x8::new(b.try_into().unwrap_or_default());
        let v = if magnitude { v.abs() } else { v };
        let fin = v.is_finite();
        mx = mx.max(fin.select(v, f32x8::splat(f32::NEG_INFINITY)));
        mn = mn.min(fin.select(v, f32x8::splat(f32::INFINITY)));
    }
    let (mut mx, mut mn) = (mx.to_array(), mn.to_array());
    mx.sort_unstable_by(|a, b| b.total_cmp(a));
    mn.sort_unstable_by(f32::total_cmp);
    // An infinite seed (a lane with no finite value) bounds nothing: it is skipped.
    let hi = if (1..=8).contains(&k_top) { mx[k_top - 1] } else { f32::NEG_INFINITY };
    let lo = if (1..=8).contains(&k_bottom) { mn[k_bottom - 1] } else { f32::INFINITY };
    (hi, lo)
}

/// Up to `cap` (≤ [`EDGE`]) keys, ascending, in a fixed array.
struct Kept {
    keys: [u32; EDGE],
    len: usize,
    cap: usize,
}

impl Kept {
    fn new(cap: usize) -> Self {
        Self { keys: [0; EDGE], len: 0, cap }
    }

    fn keys(&self) -> &[u32] {
        &self.keys[..self.len]
    }

    /// A value below which nothing enters the top buffer (−∞ while it fills).
    fn threshold_top(&self) -> f32 {
        match (self.cap, self.len < self.cap) {
            (0, _) => f32::INFINITY,
            (_, true) => f32::NEG_INFINITY,
            _ => from_key(self.keys[0]),
        }
    }

    /// A value above which nothing enters the bottom buffer (+∞ while it fills).
    fn threshold_bottom(&self) -> f32 {
        match (self.cap, self.len < self.cap) {
            (0, _) => f32::NEG_INFINITY,
            (_, true) => f32::INFINITY,
            _ => from_key(self.keys[self.len - 1]),
        }
    }

    /// Inserts `k` in order while there is room.
    fn insert(&mut self, k: u32) {
        let at = self.keys().partition_point(|&t| t < k);
        self.keys.copy_within(at..self.len, at + 1);
        self.keys[at] = k;
        self.len += 1;
    }

    /// Keeps the `cap` largest keys. A key equal to the smallest kept is the
    /// same value, so it need not enter.
    #[inline]
    fn push_top(&mut self, k: u32) {
        if self.len < self.cap {
            self.insert(k);
        } else if self.cap > 0 && k > self.keys[0] {
            let at = self.keys().partition_point(|&t| t < k);
            self.keys.copy_within(1..at, 0);
            self.keys[at - 1] = k;
        }
    }

    /// Keeps the `cap` smallest keys.
    #[inline]
    fn push_bottom(&mut self, k: u32) {
        if self.len < self.cap {
            self.insert(k);
        } else if self.cap > 0 && k < self.keys[self.len - 1] {
            let at = self.keys().partition_point(|&t| t < k);
            self.keys.copy_within(at..self.len - 1, at + 1);
            self.keys[at] = k;
        }
    }
}

/// The value of a [`key`].
#[inline]
fn from_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

/// The values of rank `ranks` (0-based, ascending) of `buf`, which it reorders.
fn select_in_place(buf: &mut [f32], ranks: &[usize]) -> Vec<f32> {
    // Highest rank first: each selection leaves every smaller value to its left,
    // so the next one only searches there.
    let mut order: Vec<usize> = (0..ranks.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ranks[i]));
    let mut out = vec![0f32; ranks.len()];
    let mut end = buf.len();
    let mut bounded = false;
    for i in order {
        let r = ranks[i];
        // Once a rank is selected, buf[end − 1] is the largest of buf[..end].
        if !(bounded && r + 1 == end) {
            buf[..end].select_nth_unstable_by(r, f32::total_cmp);
        }
        bounded = true;
        out[i] = buf[r];
        end = r + 1;
    }
    out
}

/// An order-preserving u32 key of a float (total order of `f32::total_cmp`).
#[inline]
fn key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

/// The first radix pass over a long slice: finite values counted by the top
/// key bits (one histogram per worker-sized piece, not per 64 Ki chunk: merging
/// 2048 counters per chunk would cost as much as the counting).
struct RadixCounts {
    magnitude: bool,
    piece: usize,
    counts: Vec<u64>,
}

impl RadixCounts {
    fn value(&self, x: f32) -> f32 {
        if self.magnitude { x.abs() } else { x }
    }

    fn bucket(v: f32) -> usize {
        (key(v) >> (32 - RADIX_BITS)) as usize
    }

    fn of(xs: &[f32], magnitude: bool) -> Self {
        let piece = xs.len().div_ceil(rayon::current_num_threads().max(1)).max(PAR_CHUNK);
        let counts = xs
            .par_chunks(piece)
            .map(|c| {
                let mut h = vec![0u64; BUCKETS];
                for &x in c.iter().filter(|x| x.is_finite()) {
                    h[Self::bucket(if magnitude { x.abs() } else { x })] += 1;
                }
                h
            })
            .reduce(
                || vec![0u64; BUCKETS],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        Self { magnitude, piece, counts }
    }

    fn total(&self) -> usize {
        self.counts.iter().sum::<u64>() as usize
    }

    /// The values of rank `ranks`: the second pass copies out the values of the
    /// buckets that hold those ranks, which are then selected exactly.
    fn select(&self, xs: &[f32], ranks: &[usize]) -> Vec<f32> {
        let counts = &self.counts;
        let mut start = vec![0u64; BUCKETS + 1];
        for b in 0..BUCKETS {
            start[b + 1] = start[b] + counts[b];
        }
        let bucket_of = |r: usize| start.partition_point(|&s| s <= r as u64) - 1;
        let mut wanted: Vec<usize> = ranks.iter().map(|&r| bucket_of(r)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut picked: Vec<f32> = xs
            .par_chunks(self.piece)
            .map(|c| {
                c.iter()
                    .filter(|x| x.is_finite())
                    .map(|&x| self.value(x))
                    .filter(|&v| wanted.binary_search(&Self::bucket(v)).is_ok())
                    .collect::<Vec<f32>>()
            })
            .flatten_iter()
            .collect();
        // A rank's position among the picked values: minus everything in lower
        // buckets that was not picked.
        let local: Vec<usize> = ranks
            .iter()
            .map(|&r| {
                let b = bucket_of(r);
                let skipped = start[b] - wanted.iter().filter(|&&w| w < b).map(|&w| counts[w]).sum::<u64>();
                r - skipped as usize
            })
            .collect();
        select_in_place(&mut picked, &local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Axis};
    use ndarray_stats::QuantileExt;
    use ndarray_stats::interpolate::Linear;
    use noisy_float::types::n64;

    /// The implementation this module replaced: a full quantile on a copy
    /// (ndarray-stats, numpy's linear interpolation).
    /// Asymmetric: [P(100−p), P(p)] of x; symmetric: ±P(p) of |x|.
    fn reference_range(xs: &[f32], p: f64, mapping: Mapping) -> (f32, f32) {
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

    /// xorshift values in a mix of shapes: ties, zeros of both signs, outliers,
    /// non-finite values.
    fn sample(n: usize, seed: u64, kind: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..n)
            .map(|i| {
                let u = (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                match kind {
                    0 => u,
                    1 => (u * 8.0).round() / 8.0, // many ties
                    2 => {
                        if i % 97 == 0 {
                            u * 300.0
                        } else {
                            u * 0.01
                        }
                    }
                    3 => {
                        if i % 11 == 0 {
                            -0.0
                        } else if i % 13 == 0 {
                            0.0
                        } else {
                            u + 2.0
                        }
                    }
                    _ => match i % 50 {
                        0 => f32::NAN,
                        1 => f32::INFINITY,
                        2 => f32::NEG_INFINITY,
                        _ => u * 1e-30,
                    },
                }
            })
            .collect()
    }

    #[test]
    fn selection_equals_the_full_quantile() {
        // ndarray-stats' quantile recurses deeply on many ties: a big stack.
        std::thread::Builder::new()
            .stack_size(1 << 28)
            .spawn(selection_equals_the_full_quantile_body)
            .unwrap()
            .join()
            .unwrap();
    }

    fn selection_equals_the_full_quantile_body() {
        let mut checked = 0;
        for n in [1usize, 2, 3, 7, 64, 128, 1000, 4096, 65_536, 65_537, 200_003] {
            for kind in 0..5 {
                let xs = sample(n, n as u64 + kind, kind);
                for p in [50.1, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0] {
                    for m in [Mapping::Symmetric, Mapping::Asymmetric] {
                        let (a, b) = (percentile_range(&xs, p, m), reference_range(&xs, p, m));
                        // == (not bits): ±0 may come out with either sign.
                        assert!(a == b, "n {n} kind {kind} p {p} {m:?}: {a:?} vs {b:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 11 * 5 * 7 * 2);
        assert_eq!(percentile_range(&[f32::NAN; 10], 99.0, Mapping::Asymmetric), (0.0, 0.0));
    }

    #[test]
    fn the_edge_read_equals_a_full_selection_near_both_ends() {
        let mut used = 0;
        for n in (1..300).step_by(7).chain([4096, 4099]) {
            for kind in 0..5 {
                let xs = sample(n, 3 * n as u64 + kind, kind);
                for q in [0.97, 0.99, 0.995, 0.999, 1.0] {
                    for (magnitude, qs) in [(true, vec![q]), (false, vec![1.0 - q, q])] {
                        let ranks_of = |m: usize| -> [usize; 4] {
                            let mut r = [0; 4];
                            for (i, &q) in qs.iter().enumerate() {
                                let h = q * (m - 1) as f64;
                                (r[2 * i], r[2 * i + 1]) = (h.floor() as usize, h.ceil() as usize);
                            }
                            r
                        };
                        let Some((m, got)) = edge_select(&xs, magnitude, &qs, ranks_of) else { continue };
                        let mut all: Vec<f32> = xs
                            .iter()
                            .filter(|x| x.is_finite())
                            .map(|&x| if magnitude { x.abs() } else { x })
                            .collect();
                        assert_eq!(m, all.len());
                        if m == 0 {
                            continue;
                        }
                        let want = select_in_place(&mut all, &ranks_of(m)[..2 * qs.len()]);
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&got[..want.len()]),
                            bits(&want),
                            "n {n} kind {kind} q {q} magnitude {magnitude}"
                        );
                        used += 1;
                    }
                }
            }
        }
        assert!(used > 1000, "{used}");
    }

    #[test]
    fn the_radix_path_handles_one_value_everywhere() {
        // Every value in one bucket: the second pass picks the whole slice.
        let xs = vec![0.25f32; 100_000];
        assert_eq!(percentile_range(&xs, 99.9, Mapping::Asymmetric), (0.25, 0.25));
        let mut ys = xs.clone();
        ys[5] = 7.0;
        assert_eq!(percentile_range(&ys, 100.0, Mapping::Symmetric), (-7.0, 7.0));
    }
}
