//! HQQ, Half-Quadratic Quantization (Badri & Shaji, mobiusml/hqq): a data-free
//! method that keeps min-max's step S and optimizes the zero point Z.
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
//! Two choices of this engine:
//! - **Early stop per slice.** The reference stops on the mean error of the whole
//!   tensor it is given; here every slice (channel or group) is optimized on its
//!   own, so a slice stops when its own error stops falling. The reference test
//!   (`tests/python/hqq_reference.py`) runs the reference step once per slice.
//! - **A saved model stores an integer Z.** The result used for every metric and
//!   for export has Z rounded half to even (as the package's `round_zero` does),
//!   `zero_point = round(z) + Qmin`; [`hqq_slice`] also gives the real-valued z and
//!   the error with each, which is what the rounding costs.
//!
//! S is min-max's own (the range widened to hold 0, as for every INT scheme), so
//! the reference's guards for tiny ranges (s = 1 when max − min ≤ 1e-4, s ≤ 2e4)
//! do not apply: a slice whose range is empty or not finite keeps min-max's Z.

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
    /// The parameters a save writes (Z rounded); what every metric uses.
    pub params: SliceParams,
    /// The optimized real-valued Z in the engine's code space (Qmin..Qmax),
    /// before rounding: `params.zero_point` is `round(zero_real − Qmin) + Qmin`.
    pub zero_real: f64,
    /// Min-max's real-valued Z, where the optimizer started.
    pub zero_start: f64,
    /// Steps run (1..=20).
    pub iterations: usize,
    /// Σ(x − x′)² with the real-valued Z (HQQ's own dequantization).
    pub sse_real_zero: f64,
    /// Σ(x − x′)² with the rounded Z: what the saved model gives.
    pub sse_rounded_zero: f64,
}

/// The slice's parameters under HQQ (Z rounded), for `slice_params`.
pub(crate) fn hqq_params<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    stats: &TensorStats,
    mapping: Mapping,
) -> SliceParams {
    if let Some(o) = optimize(fmt, xs, stats, mapping) {
        o.params
    } else {
        let (lo, hi) = stats.range();
        fmt.params(lo, hi, mapping)
    }
}

/// HQQ on one slice, with the real-valued Z and what rounding it costs. Falls
/// back to min-max (zero iterations) where HQQ does not apply: symmetric mapping,
/// a non-integer format, an empty or non-finite range.
pub fn hqq_slice<F: NumberFormat>(fmt: F, xs: &[f32], mapping: Mapping) -> HqqSlice {
    let stats = crate::slicing::parallel_stats(xs);
    if let Some(o) = optimize(fmt, xs, &stats, mapping) {
        let sse_real_zero = o.sse_real(xs);
        return HqqSlice {
            params: o.params,
            zero_real: o.zero_real(),
            zero_start: f64::from(o.z0) + f64::from(o.qmin),
            iterations: o.iterations,
            sse_real_zero,
            sse_rounded_zero: chunked_sse(fmt, xs, &o.params),
        };
    }
    let (lo, hi) = stats.range();
    let params = fmt.params(lo, hi, mapping);
    let sse = chunked_sse(fmt, xs, &params);
    let z = f64::from(params.zero_point);
    HqqSlice { params, zero_real: z, zero_start: z, iterations: 0, sse_real_zero: sse, sse_rounded_zero: sse }
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

/// The optimizer's state after the loop.
struct Optimized {
    params: SliceParams,
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
    let widen = |v: f32x8| {
        let a = v.to_array();
        (
            f64x4::new([f64::from(a[0]), f64::from(a[1]), f64::from(a[2]), f64::from(a[3])]),
            f64x4::new([f64::from(a[4]), f64::from(a[5]), f64::from(a[6]), f64::from(a[7])]),
        )
    };
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

fn optimize<F: NumberFormat>(fmt: F, xs: &[f32], stats: &TensorStats, mapping: Mapping) -> Option<Optimized> {
    if mapping != Mapping::Asymmetric || fmt.code_dtype() != safetensors::Dtype::I8 {
        return None;
    }
    let (lo, hi) = stats.range();
    let start = fmt.params(lo, hi, mapping);
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
    let params = SliceParams {
        scale,
        zero_point: zero_point as i32,
        offset: 0.0,
        lo: scale * (qmin - zero_point),
        hi: scale * (qmax - zero_point),
    };
    Some(Optimized { params, inv, z, z0, qmin, levels, iterations })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{Options, analyze};
    use crate::format::IntFormat;

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
                assert_eq!(s.params.zero_point, (f64::from(z).round_ties_even() as i32 + f.qmin() as i32));
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
        let rounded: f64 = slices.iter().map(|s| s.sse_rounded_zero).sum();
        assert!((rounded - sse).abs() <= 1e-9 * sse, "{rounded} vs {sse}");
        // A save re-derives Z from lo and the stored S: it gets the same Z back.
        for sl in &slices {
            assert_eq!(f.stored_params(&sl.params, Mapping::Asymmetric, |x| x), sl.params);
        }
        // What the rounding costs: real-valued Z is usually no worse.
        let real: f64 = slices.iter().map(|s| s.sse_real_zero).sum();
        assert!(real.is_finite() && real > 0.0 && (real - rounded).abs() < 0.5 * rounded);
        // HQQ moved Z away from min-max's start on most groups.
        let moved = slices.iter().filter(|s| (s.zero_real - s.zero_start).abs() > 1e-3).count();
        assert!(moved > slices.len() / 2, "{moved} of {}", slices.len());
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
