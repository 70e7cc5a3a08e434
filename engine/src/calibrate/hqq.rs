//! HQQ, Half-Quadratic Quantization (Badri & Shaji, mobiusml/hqq): a data-free
//! method that optimizes a real-valued zero point z for min-max's step S; the
//! saved parameters are then an integer Z near it with S refit (below).
//!
//! Followed: `optimize_weights_proximal_legacy` in `hqq/core/optimize.py` at
//! mobiusml/hqq commit b21fe876dd71cad788471f3012efb70cf099072c (2024-05-13), the
//! last version whose loop grows β (commit a566c78961ea, May 2025, dropped the
//! `beta *= kappa` line; the pip release 0.2.8 has no growth).
//!
//! With the inverse step s = (Qmax − Qmin) / (max − min) and z in HQQ's unsigned
//! code space [0, Qmax − Qmin] (start: z = −min·s), each step is
//!
//! ```text
//! W_q = clamp(round(W·s + z), 0, Qmax − Qmin)      quantize with the current z
//! W_r = (W_q − z) / s                              dequantize
//! W_e = shrink_p(W − W_r, β)                       ℓp proximal step (p = 0.7)
//! z   = mean(W_q − (W − W_e)·s)                    closed-form z update
//! β   = 1.01·β                                     (β starts at 10)
//! ```
//!
//! with `shrink_p(x, β) = sign(x)·max(|x| − |x|^(p−1)/β, 0)`, for at most 20
//! steps, stopping at the first step whose mean |W − W_r| does not fall (the z
//! that step computed is kept, as the reference does). It minimises
//! Σ|W − dequant(quant(W))|^p, an error measure that, for p < 1, cares about the
//! many small errors more than the few large ones.
//!
//! Choices of this engine:
//! - **Early stop per slice.** The reference stops on the mean error of the whole
//!   tensor it is given; here every slice (channel or group) is optimized on its
//!   own, so a slice stops when its own error stops falling. The reference test
//!   (`tests/python/hqq_reference.py`) runs the reference step once per slice.
//! - **The saved parameters are fitted as saved: an integer Z, and S refit.** A
//!   saved model stores an integer Z. Rounding HQQ's real-valued z (as the
//!   package's `round_zero` does) loses what the loop gained (on MiniLM INT4
//!   group-64 it lands 0.02 dB below min-max). So the loop only proposes Z: for
//!   a fixed integer Z, S is refit by least squares, S = Σx·(q − Z) / Σ(q − Z)²,
//!   alternated with re-quantizing q at the new S (at most [`REFIT_ROUNDS`]
//!   updates, while Σ(x − x′)² falls), S rounded to the stored dtype each time.
//!   The candidates are round(z) and min-max's Z, each refit from min-max's S
//!   and from 0.9 of it (a local search needs a start on the clipping side
//!   too), then the best Z ± 1 from the best S. The least Σ(x − x′)², computed
//!   exactly as the engine dequantizes, wins, and min-max's own parameters
//!   whenever they are no worse: a slice is never worse than min-max. On MiniLM
//!   this is +0.38 dB over min-max (docs/numerics.md). [`hqq_slice`] also gives
//!   the real-valued z, its rounding with min-max's S, and the error with each:
//!   what the loop alone gives.
//!
//! The loop runs on min-max's S (the range widened to hold 0, as for every INT
//! scheme), so the reference's guards for tiny ranges (s = 1 when max − min ≤
//! 1e-4, s ≤ 2e4) do not apply: a slice whose range is empty or not finite keeps
//! min-max's parameters.

use rayon::prelude::*;

use super::PAR_CHUNK;
use crate::error::{Error, Result};
use crate::format::{NumberFormat, SliceParams, round_half_even};
use crate::metrics::{TensorStats, sum_sq_error};
use crate::scheme::{Calibration, FormatKind, Granularity, Mapping, Scheme};

/// The reference's defaults (`opt_params` of `optimize_weights_proximal_legacy`).
pub const LP_NORM: f32 = 0.7;
pub const BETA: f64 = 10.0;
pub const KAPPA: f64 = 1.01;
pub const ITERS: usize = 20;
/// p − 1 as the reference passes it to `pow` (a Python float cast to f32).
const P_MINUS_1: f32 = (0.7f64 - 1.0) as f32;

/// One slice's HQQ result, with the real-valued zero point the optimizer found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HqqSlice {
    /// The parameters a save writes (integer Z, S refit for it); what every
    /// metric uses.
    pub params: SliceParams,
    /// The optimized real-valued Z in the engine's code space (Qmin..Qmax).
    pub zero_real: f64,
    /// `zero_real` rounded half to even, as the reference's `round_zero`:
    /// `round(zero_real − Qmin) + Qmin`.
    pub zero_rounded: i32,
    /// Min-max's real-valued Z, where the optimizer started.
    pub zero_start: f64,
    /// Steps run (1..=20).
    pub iterations: usize,
    /// Σ(x − x′)² with the real-valued Z (HQQ's own dequantization).
    pub sse_real_zero: f64,
    /// Σ(x − x′)² with min-max's S and `zero_rounded`: what rounding HQQ's Z
    /// alone gives.
    pub sse_rounded_zero: f64,
    /// Σ(x − x′)² with `params`: what the saved model gives.
    pub sse_saved: f64,
}

/// The slice's parameters under HQQ as saved, for `slice_params`.
pub(crate) fn hqq_params<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    stats: &TensorStats,
    mapping: Mapping,
) -> SliceParams {
    let (lo, hi) = stats.range();
    let start = fmt.params(lo, hi, mapping);
    match optimize(fmt, xs, stats, &start, mapping) {
        Some(o) => saved_params(fmt, xs, &start, o.rounded.zero_point).0,
        None => start,
    }
}

/// HQQ on one slice, with the real-valued Z and what rounding it costs. Falls
/// back to min-max (zero iterations) where HQQ does not apply: symmetric mapping,
/// a non-integer format, an empty or non-finite range.
pub fn hqq_slice<F: NumberFormat>(fmt: F, xs: &[f32], mapping: Mapping) -> HqqSlice {
    let stats = crate::slicing::parallel_stats(xs);
    let (lo, hi) = stats.range();
    let start = fmt.params(lo, hi, mapping);
    if let Some(o) = optimize(fmt, xs, &stats, &start, mapping) {
        let (params, sse_saved) = saved_params(fmt, xs, &start, o.rounded.zero_point);
        return HqqSlice {
            params,
            zero_real: o.zero_real(),
            zero_rounded: o.rounded.zero_point,
            zero_start: f64::from(o.z0) + f64::from(o.qmin),
            iterations: o.iterations,
            sse_real_zero: o.sse_real(xs),
            sse_rounded_zero: chunked_sse(fmt, xs, &o.rounded),
            sse_saved,
        };
    }
    let sse = chunked_sse(fmt, xs, &start);
    let z = f64::from(start.zero_point);
    HqqSlice {
        params: start,
        zero_real: z,
        zero_rounded: start.zero_point,
        zero_start: z,
        iterations: 0,
        sse_real_zero: sse,
        sse_rounded_zero: sse,
        sse_saved: sse,
    }
}

/// [`hqq_slice`] for every slice of a tensor (row-major `values` of `shape`)
/// under an HQQ scheme, in slice order: per tensor, per channel on axis 0, or
/// per group.
pub fn hqq_tensor(values: &[f32], shape: &[usize], scheme: &Scheme) -> Result<Vec<HqqSlice>> {
    scheme.validate()?;
    let FormatKind::Int(bits) = scheme.format else {
        return Err(Error::Scheme("hqq needs an INT format".into()));
    };
    if scheme.calibration != Calibration::Hqq {
        return Err(Error::Scheme(format!("{scheme} is not an hqq scheme")));
    }
    let fmt = crate::format::IntFormat::new(bits)?;
    let numel = values.len();
    let rows = shape.first().copied().unwrap_or(1).max(1);
    let (row_len, group) = match scheme.granularity {
        _ if shape.len() <= 1 => (numel.max(1), numel.max(1)),
        Granularity::Tensor => (numel.max(1), numel.max(1)),
        Granularity::Channel { axis: 0 } => (numel / rows, numel / rows),
        Granularity::Group { size } => (numel / rows, size),
        Granularity::Channel { .. } | Granularity::Block { .. } => {
            return Err(Error::Scheme("hqq_tensor: per-channel on axis 0 or per-group only".into()));
        }
    };
    if row_len == 0 {
        return Ok(Vec::new());
    }
    Ok(values
        .par_chunks(row_len)
        .map(|row| row.chunks(group).map(|g| hqq_slice(fmt, g, scheme.mapping)).collect::<Vec<_>>())
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect())
}

/// Most S updates of one refit (it stops earlier once the error stops falling).
pub const REFIT_ROUNDS: usize = 6;
/// The S the first refits start from, as fractions of min-max's: min-max's own
/// (so min-max's S with each candidate Z is scored too) and a 10 % narrower one.
/// The refit is a local search, and from min-max's S it mostly stays in the
/// basin of the widest range; the second start reaches the clipping side.
const STARTS: [f64; 2] = [1.0, 0.9];

/// The saved parameters and their Σ(x − x′)² (as [`chunked_sse`] sums it, as
/// every metric does). S is refit for Z = `zero_rounded` (HQQ's) and for
/// min-max's Z, from each of [`STARTS`]; then for the best Z ± 1, from the best
/// S. The best refit is kept unless min-max's own `start` is no worse.
fn saved_params<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    start: &SliceParams,
    zero_rounded: i32,
) -> (SliceParams, f64) {
    let (qmin, qmax) = (fmt.qmin() as i32, fmt.qmax() as i32);
    let mut best = (*start, f64::INFINITY);
    let mut tried = [0i32; 4];
    let mut n = 0;
    let mut new_z = |z: i32| {
        let fresh = (qmin..=qmax).contains(&z) && !tried[..n].contains(&z);
        if fresh {
            tried[n] = z;
            n += 1;
        }
        fresh
    };
    for z in [zero_rounded, start.zero_point] {
        if new_z(z) {
            for a in STARTS {
                let r = refit(fmt, xs, a * f64::from(start.scale), z);
                best = if r.1 < best.1 { r } else { best };
            }
        }
    }
    let (s, z) = (f64::from(best.0.scale), best.0.zero_point);
    if best.1 < f64::INFINITY {
        for z in [z - 1, z + 1] {
            if new_z(z) {
                let r = refit(fmt, xs, s, z);
                best = if r.1 < best.1 { r } else { best };
            }
        }
    }
    let minmax = chunked_sse(fmt, xs, start);
    let sse = if best.1 < f64::INFINITY { chunked_sse(fmt, xs, &best.0) } else { f64::INFINITY };
    if sse < minmax { (best.0, sse) } else { (*start, minmax) }
}

/// (S, Z) as a slice's parameters: S rounded to the working dtype (which is the
/// stored one) and capped as [`NumberFormat::params`] does, lo/hi the range
/// the codes span. None when S is not a usable step.
fn fixed_zero<F: NumberFormat>(fmt: F, scale: f64, zero_point: i32) -> Option<SliceParams> {
    let (qmin, qmax) = (fmt.qmin(), fmt.qmax());
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    let scale = fmt.work().round((scale as f32).min(f32::MAX / (qmax - qmin)));
    if scale <= 0.0 {
        return None;
    }
    let z = zero_point as f32;
    Some(SliceParams { scale, zero_point, offset: 0.0, lo: scale * (qmin - z), hi: scale * (qmax - z) })
}

/// Least-squares S for the integer Z `zero_point`, from `scale`: alternately
/// re-quantize and set S = Σx·(q − Z) / Σ(q − Z)², while Σ(x − x′)² falls (each
/// half-step can only lower it, so it stops falling once the codes settle).
/// Returns the best S met and its Σ(x − x′)² (the same terms as
/// [`chunked_sse`], summed in another order).
fn refit<F: NumberFormat>(fmt: F, xs: &[f32], scale: f64, zero_point: i32) -> (SliceParams, f64) {
    let Some(mut p) = fixed_zero(fmt, scale, zero_point) else {
        return (SliceParams { scale: 0.0, zero_point, offset: 0.0, lo: 0.0, hi: 0.0 }, f64::INFINITY);
    };
    let (mut best, mut best_sse) = (p, f64::INFINITY);
    for round in 0..=REFIT_ROUNDS {
        let s = fold_chunks(xs, |c| fit_sums(fmt, c, &p));
        if s.sse.is_nan() || s.sse >= best_sse {
            break;
        }
        (best, best_sse) = (p, s.sse);
        // x′ = S·(q − Z) (up to the working dtype's rounding), so
        // Σx·(q − Z) / Σ(q − Z)² = S·Σx·x′ / Σx′².
        let next = (s.rr > 0.0).then(|| fixed_zero(fmt, f64::from(p.scale) * s.xr / s.rr, zero_point));
        match next.flatten() {
            Some(n) if round < REFIT_ROUNDS && n.scale != p.scale => p = n,
            _ => break,
        }
    }
    (best, best_sse)
}

/// One refit pass's sums at `p` over the finite values, x′ as the engine
/// dequantizes: Σ(x − x′)², Σx·x′, Σx′².
#[derive(Clone, Copy, Default)]
struct FitSums {
    sse: f64,
    xr: f64,
    rr: f64,
}

impl std::ops::Add for FitSums {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self { sse: self.sse + o.sse, xr: self.xr + o.xr, rr: self.rr + o.rr }
    }
}

/// Two f64x4 halves of 8 f32 lanes.
#[inline]
fn widen(v: wide::f32x8) -> (wide::f64x4, wide::f64x4) {
    let a = v.to_array();
    (
        wide::f64x4::new([f64::from(a[0]), f64::from(a[1]), f64::from(a[2]), f64::from(a[3])]),
        wide::f64x4::new([f64::from(a[4]), f64::from(a[5]), f64::from(a[6]), f64::from(a[7])]),
    )
}

/// [`FitSums`] 8 lanes at a time (the format's own `fake_quant_x8`).
fn fit_sums<F: NumberFormat>(fmt: F, xs: &[f32], p: &SliceParams) -> FitSums {
    use wide::{f32x8, f64x4};
    let body = xs.len() / 8 * 8;
    let mut acc = [f64x4::ZERO; 3];
    for c in xs[..body].chunks_exact(8) {
        let x = f32x8::from(c);
        let finite = x.is_finite();
        let (x0, x1) = widen(finite.select(x, f32x8::ZERO));
        let (r0, r1) = widen(finite.select(fmt.fake_quant_x8(x, p), f32x8::ZERO));
        let (e0, e1) = (x0 - r0, x1 - r1);
        acc[0] += e0 * e0 + e1 * e1;
        acc[1] += x0 * r0 + x1 * r1;
        acc[2] += r0 * r0 + r1 * r1;
    }
    let mut s = FitSums { sse: acc[0].reduce_add(), xr: acc[1].reduce_add(), rr: acc[2].reduce_add() };
    for &x in xs[body..].iter().filter(|x| x.is_finite()) {
        let (x, r) = (f64::from(x), f64::from(fmt.fake_quant(x, p)));
        s = s + FitSums { sse: (x - r) * (x - r), xr: x * r, rr: r * r };
    }
    s
}

/// The optimizer's state after the loop.
struct Optimized {
    /// Min-max's S with z rounded half to even.
    rounded: SliceParams,
    /// Inverse step and final z, in HQQ's unsigned code space.
    inv: f32,
    z: f32,
    z0: f32,
    qmin: f32,
    levels: f32,
    iterations: usize,
}

impl Optimized {
    fn zero_real(&self) -> f64 {
        f64::from(self.z) + f64::from(self.qmin)
    }

    /// Σ(x − x′)² with HQQ's dequantization at the real-valued z.
    fn sse_real(&self, xs: &[f32]) -> f64 {
        let (inv, z, levels) = (self.inv, self.z, self.levels);
        let part = |c: &[f32]| -> f64 {
            c.iter()
                .filter(|x| x.is_finite())
                .map(|&x| {
                    let q = round_half_even(x * inv + z).clamp(0.0, levels);
                    let e = f64::from(x) - f64::from((q - z) / inv);
                    e * e
                })
                .sum()
        };
        fold_chunks(xs, part)
    }
}

/// Sums `part` over fixed chunks of `xs`, in parallel for long slices, always
/// adding the partial sums in chunk order (deterministic).
fn fold_chunks<T: Send + Default + std::ops::Add<Output = T>>(
    xs: &[f32],
    part: impl Fn(&[f32]) -> T + Sync + Send,
) -> T {
    if xs.len() <= PAR_CHUNK {
        return part(xs);
    }
    let parts: Vec<T> = xs.par_chunks(PAR_CHUNK).map(part).collect();
    parts.into_iter().fold(T::default(), |a, b| a + b)
}

fn chunked_sse<F: NumberFormat>(fmt: F, xs: &[f32], p: &SliceParams) -> f64 {
    fold_chunks(xs, |c| sum_sq_error(fmt, c, p))
}

/// One step's sums: Σ|W − W_r|, Σ(W_q − (W − W_e)·s), finite count.
#[derive(Clone, Copy, Default)]
struct StepSums {
    abs_err: f64,
    zero: f64,
    n: u64,
}

impl std::ops::Add for StepSums {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self { abs_err: self.abs_err + o.abs_err, zero: self.zero + o.zero, n: self.n + o.n }
    }
}

/// The ℓp shrinkage of the reference (`shrink_lp_op`), in f32 as it runs on CPU.
#[inline]
fn shrink(x: f32, inv_beta: f32) -> f32 {
    let a = x.abs();
    // |x|^(p−1) is +∞ at x = 0, which the max() turns into 0.
    (a - inv_beta * a.powf(P_MINUS_1)).max(0.0).copysign(x)
}

fn step_scalar(xs: &[f32], inv: f32, z: f32, levels: f32, inv_beta: f32) -> StepSums {
    let mut s = StepSums::default();
    for &x in xs.iter().filter(|x| x.is_finite()) {
        let q = round_half_even(x * inv + z).clamp(0.0, levels);
        let r = (q - z) / inv;
        let d = x - r;
        s.abs_err += f64::from(d.abs());
        let e = shrink(d, inv_beta);
        s.zero += f64::from(q - (x - e) * inv);
        s.n += 1;
    }
    s
}

/// One step's sums, 8 lanes at a time. Where every |W − W_r| of a block lies
/// below `quiet` the shrinkage is exactly 0 (see [`quiet_threshold`]), so
/// W − W_e = W bit for bit and no `powf` is needed; other blocks (and blocks
/// with a non-finite value) go through the scalar step.
fn step(xs: &[f32], inv: f32, z: f32, levels: f32, inv_beta: f32, quiet: f32) -> StepSums {
    use wide::{f32x8, f64x4};
    let (vinv, vz, vlev, vquiet) =
        (f32x8::splat(inv), f32x8::splat(z), f32x8::splat(levels), f32x8::splat(quiet));
    let body = xs.len() / 8 * 8;
    let mut s = StepSums::default();
    let (mut abs_acc, mut zero_acc) = ([f64x4::ZERO; 2], [f64x4::ZERO; 2]);
    for c in xs[..body].chunks_exact(8) {
        let x = f32x8::from(c);
        let q = crate::simd::round_half_even_x8(x * vinv + vz).max(f32x8::ZERO).min(vlev);
        let d = x - (q - vz) / vinv;
        let a = d.abs();
        // (NaN lanes fail the comparison too.)
        if a.simd_lt(vquiet).to_bitmask() != 0xff {
            s = s + step_scalar(c, inv, z, levels, inv_beta);
            continue;
        }
        let (a0, a1) = widen(a);
        let (z0, z1) = widen(q - x * vinv);
        abs_acc[0] += a0;
        abs_acc[1] += a1;
        zero_acc[0] += z0;
        zero_acc[1] += z1;
        s.n += 8;
    }
    s.abs_err += (abs_acc[0] + abs_acc[1]).reduce_add();
    s.zero += (zero_acc[0] + zero_acc[1]).reduce_add();
    s + step_scalar(&xs[body..], inv, z, levels, inv_beta)
}

/// Below this |x| the shrinkage is exactly 0: |x| − |x|^(p−1)/β < 0 ⟺
/// |x| < β^(−1/(2−p)); 1 % under that bound the difference is negative by far
/// more than f32 rounding, so `shrink` returns ±0.
fn quiet_threshold(inv_beta: f32) -> f32 {
    (0.99 * f64::from(inv_beta).powf(1.0 / (2.0 - f64::from(LP_NORM)))) as f32
}

/// The reference loop on one slice, from min-max's parameters `start`.
fn optimize<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    stats: &TensorStats,
    start: &SliceParams,
    mapping: Mapping,
) -> Option<Optimized> {
    if mapping != Mapping::Asymmetric || fmt.code_dtype() != safetensors::Dtype::I8 {
        return None;
    }
    let (lo, hi) = stats.range();
    let (qmin, qmax) = (fmt.qmin(), fmt.qmax());
    let levels = qmax - qmin;
    // min-max's own range (widened to hold 0, as `params` does).
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let inv = levels / (hi - lo);
    if !(inv.is_finite() && inv > 0.0) {
        return None;
    }
    let z0 = -lo * inv;
    let mut z = z0;
    let mut beta = BETA;
    let mut best = f64::INFINITY;
    let mut iterations = 0;
    for _ in 0..ITERS {
        iterations += 1;
        let inv_beta = (1.0 / beta) as f32;
        let quiet = quiet_threshold(inv_beta);
        let s = fold_chunks(xs, |c| step(c, inv, z, levels, inv_beta, quiet));
        if s.n == 0 {
            return None;
        }
        let n = s.n as f64;
        z = (s.zero / n) as f32;
        beta *= KAPPA;
        let err = s.abs_err / n;
        if err < best {
            best = err;
        } else {
            break;
        }
    }
    if !z.is_finite() {
        return None;
    }
    let zero_point = (round_half_even(z) + qmin).clamp(qmin, qmax);
    let scale = start.scale;
    let rounded = SliceParams {
        scale,
        zero_point: zero_point as i32,
        offset: 0.0,
        lo: scale * (qmin - zero_point),
        hi: scale * (qmax - zero_point),
    };
    Some(Optimized { rounded, inv, z, z0, qmin, levels, iterations })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{Options, analyze};
    use crate::format::{IntFormat, WorkDtype};

    fn weights(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        let mut u = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 + 0.5) / (1u64 << 24) as f32 - 0.5
        };
        (0..n).map(|i| (u() + u() + u() + u()) * 0.05 + if i % 301 == 0 { 0.3 } else { 0.0 }).collect()
    }

    /// The reference loop written out literally (one array op per line of
    /// `optimize_weights_proximal_legacy`, f32 arrays, f64 means), for one slice.
    fn reference(w: &[f32], levels: f32) -> (f32, usize) {
        let (mn, mx) = w.iter().fold((0f32, 0f32), |(a, b), &x| (a.min(x), b.max(x)));
        let scale = levels / (mx - mn);
        let mut zero = -mn * scale;
        let (mut beta, mut best) = (10.0f64, f64::INFINITY);
        let n = w.len() as f64;
        for i in 0..20 {
            let w_q: Vec<f32> =
                w.iter().map(|&x| (x * scale + zero).round_ties_even().clamp(0.0, levels)).collect();
            let w_r: Vec<f32> = w_q.iter().map(|&q| (q - zero) / scale).collect();
            let d: Vec<f32> = w.iter().zip(&w_r).map(|(&x, &r)| x - r).collect();
            let w_e: Vec<f32> = d
                .iter()
                .map(|&x| {
                    let a = x.abs();
                    let s = if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                    (a - (1.0 / beta) as f32 * a.powf((0.7f64 - 1.0) as f32)).max(0.0) * s
                })
                .collect();
            let z: f64 =
                w_q.iter().zip(w).zip(&w_e).map(|((&q, &x), &e)| f64::from(q - (x - e) * scale)).sum();
            zero = (z / n) as f32;
            beta *= 1.01;
            let err = d.iter().map(|x| f64::from(x.abs())).sum::<f64>() / n;
            if err < best {
                best = err;
            } else {
                return (zero, i + 1);
            }
        }
        (zero, 20)
    }

    #[test]
    fn follows_the_reference_loop_step_by_step() {
        for bits in [2u8, 3, 4, 8] {
            let f = IntFormat::new(bits).unwrap();
            let levels = f.qmax() - f.qmin();
            for (n, seed) in [(64usize, 1u64), (128, 2), (4096, 3), (100_000, 4)] {
                let w = weights(n, seed);
                let s = hqq_slice(f, &w, Mapping::Asymmetric);
                let (z, iters) = reference(&w, levels);
                let got = s.zero_real - f64::from(f.qmin());
                assert!(
                    (got - f64::from(z)).abs() <= 1e-5 * f64::from(z).abs(),
                    "int{bits} n {n}: {got} vs {z}"
                );
                assert_eq!(s.iterations, iters, "int{bits} n {n}");
                assert_eq!(s.zero_rounded, (f64::from(z).round_ties_even() as i32 + f.qmin() as i32));
            }
        }
    }

    #[test]
    fn the_vector_step_equals_the_scalar_one() {
        // Weights scaled up so that some errors exceed the quiet threshold
        // (the scalar fallback inside a block), plus non-finite values.
        let mut w: Vec<f32> = weights(4099, 5).iter().map(|x| x * 40.0).collect();
        w[17] = f32::NAN;
        w[800] = f32::INFINITY;
        for (inv, z, levels, beta) in
            [(2.0f32, 7.3f32, 15.0f32, 10.0f64), (0.5, 1.2, 3.0, 12.0), (40.0, 100.0, 255.0, 10.0)]
        {
            let ib = (1.0 / beta) as f32;
            let a = step(&w, inv, z, levels, ib, quiet_threshold(ib));
            let b = step_scalar(&w, inv, z, levels, ib);
            assert_eq!(a.n, b.n);
            assert!((a.abs_err - b.abs_err).abs() <= 1e-12 * b.abs_err, "{} {}", a.abs_err, b.abs_err);
            assert!((a.zero - b.zero).abs() <= 1e-12 * b.zero.abs().max(1.0), "{} {}", a.zero, b.zero);
        }
        // Just under the threshold the exact shrinkage is 0.
        for beta in [10.0f64, 12.2] {
            let ib = (1.0 / beta) as f32;
            let t = quiet_threshold(ib);
            for k in 0..1000 {
                let x = t * (k as f32 / 1000.0);
                assert_eq!(shrink(x, ib), 0.0);
                assert_eq!(shrink(-x, ib), 0.0);
            }
        }
    }

    #[test]
    fn the_reported_error_is_the_saved_models() {
        let w = weights(64 * 256, 9);
        let s: Scheme = "int4:group64:hqq:asym".parse().unwrap();
        let r =
            analyze(&w, &[64, 256], &s, &Options { keep_dequantized: true, ..Options::default() }).unwrap();
        let slices = hqq_tensor(&w, &[64, 256], &s).unwrap();
        assert_eq!(slices.len(), r.params.len());
        let f = IntFormat::new(4).unwrap();
        let deq = r.dequantized.unwrap();
        let mut sse = 0.0;
        for (k, (&x, &q)) in w.iter().zip(&deq).enumerate() {
            let p = &slices[k / 64].params;
            assert_eq!(p, &r.params[k / 64]);
            // Integer codes with the rounded Z, as a save stores them.
            let code = f.quantize(x, p);
            assert_eq!(q, f.dequantize(code, p));
            sse += (f64::from(x) - f64::from(q)).powi(2);
        }
        assert!((r.metrics.mse - sse / w.len() as f64).abs() <= 1e-12 * r.metrics.mse);
        let saved: f64 = slices.iter().map(|s| s.sse_saved).sum();
        assert!((saved - sse).abs() <= 1e-9 * sse, "{saved} vs {sse}");
        // A save re-derives Z from lo and the stored S: it gets the same Z back.
        for sl in &slices {
            assert_eq!(f.stored_params(&sl.params, Mapping::Asymmetric, |x| x), sl.params);
        }
        // What the rounding costs: real-valued Z is usually no worse.
        let real: f64 = slices.iter().map(|s| s.sse_real_zero).sum();
        let rounded: f64 = slices.iter().map(|s| s.sse_rounded_zero).sum();
        assert!(real.is_finite() && real > 0.0 && (real - rounded).abs() < 0.5 * rounded);
        // The refit parameters beat the rounded Z with min-max's S.
        assert!(saved < rounded, "{saved} vs {rounded}");
        // HQQ moved Z away from min-max's start on most groups.
        let moved = slices.iter().filter(|s| (s.zero_real - s.zero_start).abs() > 1e-3).count();
        assert!(moved > slices.len() / 2, "{moved} of {}", slices.len());
    }

    /// A random slice: Gaussian-like, uniform, skewed or one-sided, with or
    /// without outliers.
    fn random_slice(next: &mut impl FnMut() -> u64, n: usize) -> Vec<f32> {
        let mut u = || ((*next)() >> 40) as f32 / (1u64 << 24) as f32;
        let (kind, spread) = ((u() * 4.0) as u32, 10f32.powf(u() * 4.0 - 3.0));
        let outliers = u() < 0.5;
        (0..n)
            .map(|_| {
                let v = match kind {
                    0 => u() + u() + u() + u() - 2.0,
                    1 => u() - 0.5,
                    2 => u() * u() - 0.2,
                    _ => u() + 0.1,
                };
                let big = if outliers && u() < 0.03 { 8.0 } else { 1.0 };
                v * spread * big
            })
            .collect()
    }

    #[test]
    fn the_saved_params_are_never_worse_than_minmax_and_round_trip() {
        let mut next = crate::calibrate::xorshift(21);
        let (mut hqq_sum, mut mm_sum) = (0.0, 0.0);
        for k in 0..1500 {
            let bits = [2u8, 3, 4, 4, 8][k % 5];
            let work = [WorkDtype::F32, WorkDtype::BF16, WorkDtype::F16][k / 5 % 3];
            let f = IntFormat::new(bits).unwrap().in_work(work);
            let n = [64usize, 64, 128, 32, 7, 1000][k / 15 % 6];
            let xs = random_slice(&mut next, n);
            let stats = crate::slicing::parallel_stats(&xs);
            let (lo, hi) = stats.range();
            let mm = f.params(lo, hi, Mapping::Asymmetric);
            let p = hqq_params(f, &xs, &stats, Mapping::Asymmetric);
            let (e_hqq, e_mm) = (chunked_sse(f, &xs, &p), chunked_sse(f, &xs, &mm));
            assert!(e_hqq <= e_mm, "slice {k} int{bits} {work:?}: {e_hqq} vs min-max {e_mm}");
            // S is in the stored dtype, Z in the code range and re-derived from lo.
            let round = |x: f32| work.round(x);
            assert_eq!(f.stored_params(&p, Mapping::Asymmetric, round), p, "slice {k}");
            assert_eq!(
                f.stored_params(&p, Mapping::Asymmetric, |x| x * (1.0 + 1e-7)).zero_point,
                p.zero_point
            );
            assert!((f.qmin()..=f.qmax()).contains(&(p.zero_point as f32)));
            // What hqq_slice reports is what analysis uses.
            if work == WorkDtype::F32 {
                let sl = hqq_slice(f, &xs, Mapping::Asymmetric);
                assert_eq!(sl.params, p);
                assert_eq!(sl.sse_saved, e_hqq);
            }
            if bits == 4 && n == 64 {
                (hqq_sum, mm_sum) = (hqq_sum + e_hqq / e_mm, mm_sum + 1.0);
            }
        }
        // On average well below min-max (a ratio of SSEs, per slice).
        assert!(hqq_sum < 0.95 * mm_sum, "{hqq_sum} vs {mm_sum}");
    }

    #[test]
    fn symmetric_or_fp8_is_refused_and_degenerate_slices_keep_minmax() {
        assert!("int4:group64:hqq".parse::<Scheme>().is_err());
        assert!("e4m3:group64:hqq:asym".parse::<Scheme>().is_err());
        let f = IntFormat::new(4).unwrap();
        let s = hqq_slice(f, &[0.0; 64], Mapping::Asymmetric);
        assert_eq!(s.iterations, 0);
        assert_eq!(s.params, f.params(0.0, 0.0, Mapping::Asymmetric));
        let s = hqq_slice(f, &[f32::NAN; 8], Mapping::Asymmetric);
        assert_eq!(s.iterations, 0);
    }
}
