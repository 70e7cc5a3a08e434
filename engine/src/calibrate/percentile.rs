//! Percentile calibration: the clip range at exact order statistics, with
//! numpy's default linear interpolation (the same numbers as a full quantile on
//! a sorted copy, tested against ndarray-stats and, bit for bit, a sorted copy).
//!
//! Selections, each reading the slice a bounded number of times (docs/numerics.md,
//! "Calibration"):
//! - ranks within 4 of either end of a slice up to 64 Ki elements (p99.9 of a
//!   group): one vector pass in which each lane keeps its K extremes through a
//!   compare-exchange network on integer keys, no copy, no branch per element;
//! - ranks within 64 of an end (p99.9 of a channel): one read keeping the few
//!   largest or smallest values in a small sorted buffer;
//! - other slices up to 64 Ki elements: the finite values (or magnitudes) are copied
//!   into a per-thread scratch buffer and `select_nth_unstable` finds each
//!   order statistic (expected linear time, no allocation per slice);
//! - longer slices (per tensor): a sample of 2048 evenly spaced 8-element blocks
//!   brackets each wanted rank with a key range, and one exact pass counts the
//!   values below each range and copies out only those inside, which are selected
//!   exactly. When the count shows a rank outside its range (a sample unlike the
//!   slice), a radix select on the float bits runs instead: one pass counts the
//!   values by the top 11 bits of an order-preserving key, a second copies out
//!   the buckets holding the wanted ranks.
//!
//! The slice's finite count (from its statistics) only picks the selection; each
//! selection counts the finite values itself and the result uses that count.

use std::cell::RefCell;
use std::cmp::Ordering;

use rayon::prelude::*;
use wide::{f32x8, i32x8};

use super::PAR_CHUNK;
use crate::metrics::TensorStats;
use crate::scheme::Mapping;

/// Key bits used by the radix pass: 2^11 buckets (16 KiB of u64 per thread).
const RADIX_BITS: u32 = 11;
const BUCKETS: usize = 1 << RADIX_BITS;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Asymmetric: [P(100−p), P(p)] of x; symmetric: ±P(p) of |x|. `stats` (the
/// slice's) only sizes the work: its finite count is a hint, every result is
/// checked against the count the selection itself makes.
pub(super) fn percentile_range(xs: &[f32], stats: &TensorStats, p: f64, mapping: Mapping) -> (f32, f32) {
    let q = p / 100.0;
    let hint = usize::try_from(stats.finite).unwrap_or(usize::MAX).min(xs.len());
    match mapping {
        Mapping::Symmetric => match order_statistics(xs, hint, true, &[q]) {
            Some([amax, ..]) => (-amax, amax),
            None => (0.0, 0.0),
        },
        Mapping::Asymmetric => match order_statistics(xs, hint, false, &[1.0 - q, q]) {
            Some([lo, hi, ..]) => (lo, hi),
            None => (0.0, 0.0),
        },
    }
}

/// The 0-based ranks ⌊h⌋, ⌈h⌉ (h = q·(n − 1)) of each quantile of `qs` (at most two).
fn ranks(n: usize, qs: &[f64]) -> [usize; 4] {
    let mut r = [0; 4];
    for (i, &q) in qs.iter().enumerate() {
        let h = q * n.saturating_sub(1) as f64;
        (r[2 * i], r[2 * i + 1]) = (h.floor() as usize, h.ceil() as usize);
    }
    r
}

/// The linear-interpolation quantiles `qs` (at most two) of the finite values of
/// `xs` (or of their magnitudes); `None` when no value is finite. `hint`: the
/// expected finite count (picks the selection; never trusted for the result).
///
/// As ndarray-stats' `Linear` (and numpy's default): h = q·(n − 1),
/// v = x₍⌊h⌋₎ + (f32)(frac(h)·(x₍⌈h⌉₎ − x₍⌊h⌋₎)) with the difference in f64.
fn order_statistics(xs: &[f32], hint: usize, magnitude: bool, qs: &[f64]) -> Option<[f32; 2]> {
    let (n, values) = lane_select(xs, hint, magnitude, qs)
        .or_else(|| edge_select(xs, magnitude, qs, |n| ranks(n, qs)))
        .or_else(|| (xs.len() > PAR_CHUNK).then(|| bracket_select(xs, hint, magnitude, qs)).flatten())
        .unwrap_or_else(|| general_select(xs, magnitude, qs));
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

/// The selections for any rank: a copy of the finite values into the per-thread
/// scratch buffer (slices up to `PAR_CHUNK`), else the radix select.
fn general_select(xs: &[f32], magnitude: bool, qs: &[f64]) -> (usize, [f32; 4]) {
    let nr = 2 * qs.len();
    if xs.len() <= PAR_CHUNK {
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend(xs.iter().filter(|x| x.is_finite()).map(|&x| if magnitude { x.abs() } else { x }));
            let n = buf.len();
            (n, if n == 0 { [0.0; 4] } else { select_in_place(buf, &ranks(n, qs)[..nr], f32::total_cmp) })
        })
    } else {
        let radix = RadixCounts::of(xs, magnitude);
        let n = radix.total();
        (n, if n == 0 { [0.0; 4] } else { radix.select(xs, &ranks(n, qs)[..nr]) })
    }
}

/// A signed order-preserving key of float bits: the order of `f32::total_cmp`
/// (which computes the same key). Its own inverse.
#[inline]
fn skey(bits: u32) -> i32 {
    let b = bits as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

/// The float of a [`skey`].
#[inline]
fn from_skey(k: i32) -> f32 {
    f32::from_bits(skey(k as u32) as u32)
}

/// The key of the finite value `x` (of |x| with `magnitude`); None for NaN/±∞.
#[inline]
fn finite_key(x: f32, magnitude: bool) -> Option<i32> {
    x.is_finite().then(|| skey(if magnitude { x.abs() } else { x }.to_bits()))
}

/// [`finite_key`] of 8 lanes: (keys, finite mask).
#[inline]
fn keys8(v: f32x8, magnitude: bool) -> (i32x8, i32x8) {
    let b = v.to_bits().cast_signed();
    let abs = b & i32x8::splat(0x7fff_ffff);
    // |x| bits below the exponent-all-ones pattern: finite.
    let finite = i32x8::splat(0x7f80_0000).simd_gt(abs);
    let k = if magnitude { abs } else { b ^ (b.simd_lt(i32x8::ZERO) & i32x8::splat(0x7fff_ffff)) };
    (k, finite)
}

/// The keys of the finite values in a bracket: [`skey`] of ∓`f32::MAX`.
const MIN_FINITE_KEY: i32 = (0xff7f_ffffu32 ^ 0x7fff_ffff) as i32;
const MAX_FINITE_KEY: i32 = 0x7f7f_ffff;

/// The K largest (and, with `BOTTOM`, the K smallest) finite keys of `xs` in
/// one vector pass with no copy: each lane keeps its own K extremes through a
/// compare-exchange network, the lanes are merged at the end. The global K
/// largest are among the lanes' K largest. Returns (finite count, top keys
/// descending, bottom keys ascending); missing entries are i32::MIN / i32::MAX.
fn lane_edges<const K: usize, const BOTTOM: bool>(
    xs: &[f32],
    magnitude: bool,
) -> (usize, [i32; K], [i32; K]) {
    let (mut top, mut bottom) = ([i32x8::splat(i32::MIN); K], [i32x8::splat(i32::MAX); K]);
    let mut nonfinite = i32x8::ZERO;
    let blocks = xs.chunks_exact(8);
    let tail = blocks.remainder();
    for b in blocks {
        let (k, finite) = keys8(f32x8::new(b.try_into().unwrap_or_default()), magnitude);
        nonfinite -= !finite; // a mask lane is −1
        let mut v = finite.bitselect(k, i32x8::splat(i32::MIN));
        for t in &mut top {
            (*t, v) = (t.max(v), t.min(v));
        }
        if BOTTOM {
            let mut v = finite.bitselect(k, i32x8::splat(i32::MAX));
            for t in &mut bottom {
                (*t, v) = (t.min(v), t.max(v));
            }
        }
    }
    let (mut t, mut u) = ([i32::MIN; K], [i32::MAX; K]);
    for i in 0..K {
        top[i].to_array().iter().for_each(|&k| push_top(&mut t, k));
        if BOTTOM {
            bottom[i].to_array().iter().for_each(|&k| push_bottom(&mut u, k));
        }
    }
    let mut n = xs.len() - tail.len() - nonfinite.to_array().iter().map(|&c| c as usize).sum::<usize>();
    for k in tail.iter().filter_map(|&x| finite_key(x, magnitude)) {
        n += 1;
        push_top(&mut t, k);
        if BOTTOM {
            push_bottom(&mut u, k);
        }
    }
    (n, t, u)
}

/// Keeps the K largest keys of those pushed, descending (branch-free).
#[inline]
fn push_top<const K: usize>(t: &mut [i32; K], mut k: i32) {
    for x in t {
        (*x, k) = ((*x).max(k), (*x).min(k));
    }
}

/// Keeps the K smallest keys of those pushed, ascending.
#[inline]
fn push_bottom<const K: usize>(u: &mut [i32; K], mut k: i32) {
    for x in u {
        (*x, k) = ((*x).min(k), (*x).max(k));
    }
}

/// The most ranks from one end [`lane_select`] serves: p99.9 (and p99) of a group
/// of up to a few hundred elements.
const LANE_K: usize = 4;

/// Ranks within [`LANE_K`] of the ends of a slice up to `PAR_CHUNK` (p99.9 of a
/// group): [`lane_edges`] with K from the hinted count, checked against the
/// counted one. `(n, values of the ranks)`, or None to use another selection.
fn lane_select(xs: &[f32], hint: usize, magnitude: bool, qs: &[f64]) -> Option<(usize, [f32; 4])> {
    if xs.len() > PAR_CHUNK || hint == 0 {
        return None;
    }
    let r = ranks(hint, qs);
    let (mut need_top, mut need_bottom) = (0, 0);
    for (i, &q) in qs.iter().enumerate() {
        if q >= 0.5 {
            need_top = need_top.max(hint - r[2 * i]);
        } else {
            need_bottom = need_bottom.max(r[2 * i + 1] + 1);
        }
    }
    let k = need_top.max(need_bottom);
    let bottom = need_bottom > 0;
    let (n, top, low) = match (k, bottom) {
        (0..=2, false) => widen(lane_edges::<2, false>(xs, magnitude)),
        (0..=2, true) => widen(lane_edges::<2, true>(xs, magnitude)),
        (3, false) => widen(lane_edges::<3, false>(xs, magnitude)),
        (3, true) => widen(lane_edges::<3, true>(xs, magnitude)),
        (4, false) => widen(lane_edges::<4, false>(xs, magnitude)),
        (4, true) => widen(lane_edges::<4, true>(xs, magnitude)),
        _ => return None,
    };
    let mut out = [0f32; 4];
    if n == 0 {
        return Some((0, out));
    }
    for (j, (o, &r)) in out.iter_mut().zip(&ranks(n, qs)).take(2 * qs.len()).enumerate() {
        // Ranks are counted from the end the kept keys belong to.
        let (at, side) = if qs[j / 2] >= 0.5 { (n - 1 - r, &top) } else { (r, &low) };
        if at >= k.max(2) {
            return None; // the count differs from the hint: too deep for the kept keys
        }
        *o = from_skey(side[at]);
    }
    Some((n, out))
}

/// [`lane_edges`]' arrays padded to [`LANE_K`] (one type for every K).
fn widen<const K: usize>((n, t, u): (usize, [i32; K], [i32; K])) -> (usize, [i32; LANE_K], [i32; LANE_K]) {
    let (mut top, mut bottom) = ([i32::MIN; LANE_K], [i32::MAX; LANE_K]);
    top[..K].copy_from_slice(&t);
    bottom[..K].copy_from_slice(&u);
    (n, top, bottom)
}

/// Sampled 8-element blocks for [`bracket_select`]: 16 Ki values at most.
const SAMPLE_BLOCKS: usize = 2048;

/// Long slices (per tensor): the wanted ranks bracketed from a sample, then one
/// exact pass. A sample of evenly spaced blocks gives, per quantile, a key range
/// [lo, hi] that should hold its ranks (the sample quantile ± 6 standard errors
/// and a margin); the pass counts the finite values below each range and copies
/// out only the keys inside, which are selected exactly. None (the radix select
/// then runs) when the count shows a rank outside its range: the sample only
/// decides the speed, never the result.
fn bracket_select(xs: &[f32], hint: usize, magnitude: bool, qs: &[f64]) -> Option<(usize, [f32; 4])> {
    if hint == 0 {
        return None;
    }
    let step = xs.len() / SAMPLE_BLOCKS;
    let mut sample: Vec<i32> = (0..SAMPLE_BLOCKS)
        .flat_map(|i| &xs[i * step..(i * step + 8).min(xs.len())])
        .filter_map(|&x| finite_key(x, magnitude))
        .collect();
    if sample.is_empty() {
        return None;
    }
    let mut brackets: Vec<(i32, i32)> = qs.iter().map(|&q| bracket_of(&mut sample, q)).collect();
    // Asymmetric p near 50: overlapping ranges become one (each value counted once).
    brackets.sort_unstable();
    if let [a, b] = brackets[..]
        && b.0 <= a.1
    {
        brackets = vec![(a.0, a.1.max(b.1))];
    }
    let counted = match brackets[..] {
        [a] => {
            bracket_pass::<1>(xs, magnitude, [a]).map(|(n, below, hits)| (n, below.to_vec(), Vec::from(hits)))
        }
        [a, b] => bracket_pass::<2>(xs, magnitude, [a, b])
            .map(|(n, below, hits)| (n, below.to_vec(), Vec::from(hits))),
        _ => None,
    };
    let (n, below, mut hits) = counted?;
    let mut out = [0f32; 4];
    for (j, &r) in ranks(n, qs).iter().take(2 * qs.len()).enumerate() {
        // The bracket holding rank r: below ≤ r < below + its hits.
        let b = (0..below.len()).find(|&b| below[b] <= r && r < below[b] + hits[b].len())?;
        out[j] = from_skey(select_in_place(&mut hits[b], &[r - below[b]], Ord::cmp)[0]);
    }
    Some((n, out))
}

/// Per quantile, the key range around the sample's own quantile q: ±(6σ + 32)
/// sample ranks, σ the binomial standard error of a rank in the sample.
fn bracket_of(sample: &mut [i32], q: f64) -> (i32, i32) {
    let m = sample.len();
    let j = q * (m - 1) as f64;
    let d = (6.0 * (m as f64 * q * (1.0 - q)).sqrt()).ceil() as usize + 32;
    let lo = (j.floor() as usize).checked_sub(d).map_or(MIN_FINITE_KEY, |i| *sample.select_nth_unstable(i).1);
    let hi = j.ceil() as usize + d;
    let hi = if hi < m { *sample.select_nth_unstable(hi).1 } else { MAX_FINITE_KEY };
    (lo, hi)
}

/// The exact pass of [`bracket_select`], chunk by chunk in parallel: (finite
/// count, per bracket the finite values below it and the keys inside it). None
/// when the brackets hold more than a quarter of the slice (ties on a few
/// values): the radix select copies less.
fn bracket_pass<const B: usize>(
    xs: &[f32],
    magnitude: bool,
    brackets: [(i32, i32); B],
) -> Option<(usize, [usize; B], [Vec<i32>; B])> {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let (limit, copied) = (xs.len() / 4, AtomicUsize::new(0));
    let parts: Vec<Part<B>> = xs
        .par_chunks(PAR_CHUNK)
        .map(|c| {
            let mut part = (0, [0; B], std::array::from_fn(|_| Vec::new()));
            // Past the limit every later chunk is skipped: the result is dropped.
            if copied.load(Relaxed) <= limit {
                count_chunk(c, magnitude, &brackets, &mut part);
                copied.fetch_add(part.2.iter().map(Vec::len).sum(), Relaxed);
            }
            part
        })
        .collect();
    if copied.into_inner() > limit {
        return None;
    }
    let mut total: Part<B> =
        (0, [0; B], std::array::from_fn(|b| Vec::with_capacity(parts.iter().map(|p| p.2[b].len()).sum())));
    for (n, below, hits) in parts {
        total.0 += n;
        for b in 0..B {
            total.1[b] += below[b];
            total.2[b].extend_from_slice(&hits[b]);
        }
    }
    Some(total)
}

/// (finite count, values below each bracket, keys inside each bracket).
type Part<const B: usize> = (usize, [usize; B], [Vec<i32>; B]);

/// One chunk (≤ `PAR_CHUNK`) of [`bracket_pass`]. The vector loop only counts and
/// records, per 8 keys, which lanes fall inside each bracket (no call, so its
/// counters stay in registers); the few marked blocks are then read again and
/// their hits copied.
fn count_chunk<const B: usize>(xs: &[f32], magnitude: bool, brackets: &[(i32, i32); B], part: &mut Part<B>) {
    let (n, below, hits) = part;
    let mut marks = [[0u8; PAR_CHUNK / 8]; B];
    let (mut finite_n, mut under) = (i32x8::ZERO, [i32x8::ZERO; B]);
    let blocks = xs.chunks_exact(8);
    let tail = blocks.remainder();
    let bounds = brackets.map(|(lo, hi)| (i32x8::splat(lo), i32x8::splat(hi)));
    for (i, blk) in blocks.clone().enumerate() {
        let (k, finite) = keys8(f32x8::new(blk.try_into().unwrap_or_default()), magnitude);
        finite_n -= finite; // a mask lane is −1
        for b in 0..B {
            let (lo, hi) = bounds[b];
            let low = lo.simd_gt(k);
            under[b] -= low & finite;
            // lo ≤ k ≤ hi: finite, since the bounds are finite keys.
            marks[b][i] = (!(low | k.simd_gt(hi))).to_bitmask() as u8;
        }
    }
    let sum = |v: i32x8| v.to_array().iter().map(|&c| c as usize).sum::<usize>();
    *n += sum(finite_n);
    for b in 0..B {
        below[b] += sum(under[b]);
        for (i, &m) in marks[b].iter().enumerate().filter(|(_, m)| **m != 0) {
            let mut m = m;
            while m != 0 {
                let x = xs[8 * i + m.trailing_zeros() as usize];
                hits[b].extend(finite_key(x, magnitude));
                m &= m - 1;
            }
        }
    }
    for k in tail.iter().filter_map(|&x| finite_key(x, magnitude)) {
        *n += 1;
        for (b, &(lo, hi)) in brackets.iter().enumerate() {
            if k < lo {
                below[b] += 1;
            } else if k <= hi {
                hits[b].push(k);
            }
        }
    }
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

/// The values of rank `ranks` (0-based, ascending, at most four) of `buf` in
/// the order `cmp`, which it reorders.
fn select_in_place<T: Copy + Default>(
    buf: &mut [T],
    ranks: &[usize],
    cmp: impl Fn(&T, &T) -> Ordering,
) -> [T; 4] {
    // Highest rank first: each selection leaves every smaller value to its left,
    // so the next one only searches there.
    let mut order = [0, 1, 2, 3];
    let order = &mut order[..ranks.len()];
    order.sort_by_key(|&i| std::cmp::Reverse(ranks[i]));
    let mut out = [T::default(); 4];
    let mut end = buf.len();
    let mut bounded = false;
    for &mut i in order {
        let r = ranks[i];
        // Once a rank is selected, buf[end − 1] is the largest of buf[..end].
        if !(bounded && r + 1 == end) {
            buf[..end].select_nth_unstable_by(r, &cmp);
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
    fn select(&self, xs: &[f32], ranks: &[usize]) -> [f32; 4] {
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
        select_in_place(&mut picked, &local, f32::total_cmp)
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

    /// [`percentile_range`] with the slice's own statistics (as the analysis passes them).
    fn pct(xs: &[f32], p: f64, m: Mapping) -> (f32, f32) {
        percentile_range(xs, &TensorStats::of(xs), p, m)
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile(np.arange(1, 101), 99) = 99.01
        let xs: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        let (lo, hi) = pct(&xs, 99.0, Mapping::Asymmetric);
        assert!((hi - 99.01).abs() < 1e-4, "{hi}");
        assert!((lo - 1.99).abs() < 1e-4, "{lo}");
        let (slo, shi) = pct(&xs, 99.0, Mapping::Symmetric);
        assert_eq!(slo, -shi);
    }

    /// xorshift values in a mix of shapes: ties, zeros of both signs, outliers,
    /// non-finite values.
    fn sample(n: usize, seed: u64, kind: u64) -> Vec<f32> {
        let mut next = crate::calibrate::xorshift(seed);
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
                    4 => match i % 50 {
                        0 => f32::NAN,
                        1 => f32::INFINITY,
                        2 => f32::NEG_INFINITY,
                        _ => u * 1e-30,
                    },
                    // Weight-like: a sum of uniforms, outliers, ties on a grid, ±0.
                    5 => {
                        let g = (u + unit(next()) + unit(next()) + unit(next())) * 0.02;
                        match i % 1009 {
                            0 => g * 40.0,
                            1 => -0.0,
                            2 => 0.0,
                            3..=150 => (g * 256.0).round() / 256.0,
                            _ => g,
                        }
                    }
                    // The blocks `bracket_select` samples hold small (6) or large (7)
                    // values only: its bracket misses and the radix select runs.
                    6 | 7 => {
                        let sampled = i % (n / SAMPLE_BLOCKS).max(1) < 8;
                        match (sampled, kind) {
                            (true, 6) => u * 1e-3,
                            (true, _) => u * 1e3,
                            _ => u,
                        }
                    }
                    // Mostly non-finite: the finite count is far below the length.
                    _ => match i % 5 {
                        0 => u - 0.25,
                        1 => f32::NEG_INFINITY,
                        2 => -f32::NAN,
                        _ => f32::NAN,
                    },
                }
            })
            .collect()
    }

    fn unit(r: u64) -> f32 {
        (r >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    /// The order statistics the selections must reproduce: a sorted copy (total
    /// order), then the same interpolation.
    fn sorted_range(xs: &[f32], p: f64, m: Mapping) -> (f32, f32) {
        let magnitude = m == Mapping::Symmetric;
        let mut all: Vec<f32> =
            xs.iter().filter(|x| x.is_finite()).map(|&x| if magnitude { x.abs() } else { x }).collect();
        all.sort_unstable_by(f32::total_cmp);
        let at = |q: f64| -> f32 {
            let h = q * (all.len() - 1) as f64;
            let (lower, higher) = (all[h.floor() as usize], all[h.ceil() as usize]);
            lower + (h.fract() * (f64::from(higher) - f64::from(lower))) as f32
        };
        let q = p / 100.0;
        match (all.is_empty(), magnitude) {
            (true, _) => (0.0, 0.0),
            (false, true) => (-at(q), at(q)),
            (false, false) => (at(1.0 - q), at(q)),
        }
    }

    const SIZES: [usize; 23] = [
        0, 1, 2, 3, 5, 8, 9, 15, 16, 17, 31, 64, 127, 128, 129, 200, 256, 1000, 4096, 65_536, 65_537, 70_001,
        200_003,
    ];
    const PS: [f64; 7] = [50.1, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0];

    #[test]
    fn every_path_equals_a_sorted_copy_bit_for_bit() {
        let bits = |(a, b): (f32, f32)| (a.to_bits(), b.to_bits());
        let mut checked = 0;
        for n in SIZES {
            for kind in 0..9 {
                let xs = sample(n, 7 * n as u64 + kind, kind);
                let stats = TensorStats::of(&xs);
                // A wrong finite count only costs speed: it must not change a bit.
                let wrong = TensorStats { finite: stats.finite / 2 + 3, ..stats };
                for p in PS {
                    for m in [Mapping::Symmetric, Mapping::Asymmetric] {
                        let want = bits(sorted_range(&xs, p, m));
                        assert_eq!(
                            bits(percentile_range(&xs, &stats, p, m)),
                            want,
                            "n {n} kind {kind} p {p} {m:?}"
                        );
                        assert_eq!(
                            bits(percentile_range(&xs, &wrong, p, m)),
                            want,
                            "hint: n {n} kind {kind} p {p}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, SIZES.len() * 9 * PS.len() * 2);
    }

    /// The ranks' values through one selection, if it serves them, against a sorted copy.
    fn check_path(
        select: impl Fn(&[f32], usize, bool, &[f64]) -> Option<(usize, [f32; 4])>,
        xs: &[f32],
        magnitude: bool,
        qs: &[f64],
    ) -> bool {
        let Some((n, got)) = select(xs, TensorStats::of(xs).finite as usize, magnitude, qs) else {
            return false;
        };
        let mut all: Vec<f32> =
            xs.iter().filter(|x| x.is_finite()).map(|&x| if magnitude { x.abs() } else { x }).collect();
        assert_eq!(n, all.len());
        all.sort_unstable_by(f32::total_cmp);
        for (j, &r) in ranks(n, qs).iter().take(2 * qs.len()).enumerate() {
            assert_eq!(got[j].to_bits(), all[r].to_bits(), "len {} rank {r} of {n} q {qs:?}", xs.len());
        }
        true
    }

    #[test]
    fn the_lane_and_bracket_selections_are_taken_and_exact() {
        let (mut lane, mut bracket, mut fell_back) = (0, 0, 0);
        for n in SIZES {
            for kind in 0..9 {
                let xs = sample(n, 11 * n as u64 + kind, kind);
                for q in PS.map(|p| p / 100.0) {
                    for (magnitude, qs) in [(true, vec![q]), (false, vec![1.0 - q, q])] {
                        lane += usize::from(check_path(lane_select, &xs, magnitude, &qs));
                        if n > PAR_CHUNK {
                            let hit = check_path(bracket_select, &xs, magnitude, &qs);
                            bracket += usize::from(hit);
                            fell_back += usize::from(!hit && (6..=7).contains(&kind));
                        }
                    }
                }
            }
        }
        // Each path serves many cases; the fooled sample sends some to the radix select.
        assert!(lane > 200, "{lane}");
        assert!(bracket > 200, "{bracket}");
        assert!(fell_back > 10, "{fell_back}");
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
                        let (a, b) = (pct(&xs, p, m), reference_range(&xs, p, m));
                        // == (not bits): ±0 may come out with either sign.
                        assert!(a == b, "n {n} kind {kind} p {p} {m:?}: {a:?} vs {b:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 11 * 5 * 7 * 2);
        assert_eq!(pct(&[f32::NAN; 10], 99.0, Mapping::Asymmetric), (0.0, 0.0));
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
                        let nr = 2 * qs.len();
                        let want = select_in_place(&mut all, &ranks_of(m)[..nr], f32::total_cmp);
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&got[..nr]),
                            bits(&want[..nr]),
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
        assert_eq!(pct(&xs, 99.9, Mapping::Asymmetric), (0.25, 0.25));
        let mut ys = xs.clone();
        ys[5] = 7.0;
        assert_eq!(pct(&ys, 100.0, Mapping::Symmetric), (-7.0, 7.0));
    }
}
