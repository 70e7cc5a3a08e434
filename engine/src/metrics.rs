//! Error metrics (NUMERICS.md "Metrics") and the fused per-element loop that
//! produces them. Sums are f64; the loop keeps `LANES` independent accumulators
//! so that LLVM can vectorise the reduction without reassociating a single sum.
#![allow(clippy::needless_range_loop)] // lane-indexed loops are the point

use serde::{Serialize, Serializer};

use crate::format::{NumberFormat, SliceParams};

pub(crate) const LANES: usize = 8;

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
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes fields by reference
fn finite_or_null<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
}

/// Raw sums; merged across chunks and slices, turned into [`Metrics`] at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ErrorSums {
    pub count: u64,
    pub nonfinite: u64,
    pub clipped: u64,
    pub sum_r2: f64,
    pub sum_e2: f64,
    pub sum_rq: f64,
    pub sum_q2: f64,
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
        self.sum_rq += o.sum_rq;
        self.sum_q2 += o.sum_q2;
        self.sum_clip_e2 += o.sum_clip_e2;
        self.max_abs_err = self.max_abs_err.max(o.max_abs_err);
        self
    }

    pub fn metrics(&self) -> Metrics {
        let n = self.count as f64;
        let per = |v: f64| if self.count == 0 { 0.0 } else { v / n };
        let mse = per(self.sum_e2);
        let sqnr_db =
            if self.sum_e2 == 0.0 { f64::INFINITY } else { 10.0 * (self.sum_r2 / self.sum_e2).log10() };
        let cosine = if self.sum_r2 == 0.0 && self.sum_q2 == 0.0 {
            1.0
        } else if self.sum_r2 == 0.0 || self.sum_q2 == 0.0 {
            0.0
        } else {
            (self.sum_rq / (self.sum_r2.sqrt() * self.sum_q2.sqrt())).clamp(-1.0, 1.0)
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
        }
    }
}

/// Per-lane partial sums of the hot loop.
#[derive(Default)]
struct Lanes {
    r2: [f64; LANES],
    e2: [f64; LANES],
    rq: [f64; LANES],
    q2: [f64; LANES],
    ce2: [f64; LANES],
    maxe: [f64; LANES],
    clipped: [u64; LANES],
    nonfinite: [u64; LANES],
}

impl Lanes {
    #[inline]
    fn add(&mut self, j: usize, x: f32, q: f32, p: &SliceParams) {
        let finite = x.is_finite();
        let xd = if finite { f64::from(x) } else { 0.0 };
        let qd = if finite { f64::from(q) } else { 0.0 };
        let e = xd - qd;
        let ee = e * e;
        let clip = finite && (x < p.lo || x > p.hi);
        self.r2[j] += xd * xd;
        self.e2[j] += ee;
        self.rq[j] += xd * qd;
        self.q2[j] += qd * qd;
        self.ce2[j] += if clip { ee } else { 0.0 };
        self.maxe[j] = self.maxe[j].max(e.abs());
        self.clipped[j] += u64::from(clip);
        self.nonfinite[j] += u64::from(!finite);
    }

    fn finish(&self, len: usize) -> ErrorSums {
        let nonfinite: u64 = self.nonfinite.iter().sum();
        ErrorSums {
            count: len as u64 - nonfinite,
            nonfinite,
            clipped: self.clipped.iter().sum(),
            sum_r2: self.r2.iter().sum(),
            sum_e2: self.e2.iter().sum(),
            sum_rq: self.rq.iter().sum(),
            sum_q2: self.q2.iter().sum(),
            sum_clip_e2: self.ce2.iter().sum(),
            max_abs_err: self.maxe.iter().copied().fold(0.0, f64::max),
        }
    }
}

/// The hot loop: fake-quantizes `xs` with `p` and accumulates every metric in one
/// pass. With `WRITE`, R′ is also stored into `out` (same length as `xs`).
#[inline]
pub(crate) fn error_sums<F: NumberFormat, const WRITE: bool>(
    fmt: F,
    xs: &[f32],
    p: &SliceParams,
    out: &mut [f32],
) -> ErrorSums {
    let mut acc = Lanes::default();
    let body = xs.len() / LANES * LANES;
    for (i, chunk) in xs[..body].chunks_exact(LANES).enumerate() {
        let mut qs = [0f32; LANES];
        for j in 0..LANES {
            qs[j] = fmt.fake_quant(chunk[j], p);
        }
        if WRITE {
            out[i * LANES..(i + 1) * LANES].copy_from_slice(&qs);
        }
        for j in 0..LANES {
            acc.add(j, chunk[j], qs[j], p);
        }
    }
    for (k, &x) in xs[body..].iter().enumerate() {
        let q = fmt.fake_quant(x, p);
        if WRITE {
            out[body + k] = q;
        }
        acc.add(k, x, q, p);
    }
    acc.finish(xs.len())
}

/// Σ (R − R′)² over finite elements only: the objective of MSE calibration.
#[inline]
pub(crate) fn sum_sq_error<F: NumberFormat>(fmt: F, xs: &[f32], p: &SliceParams) -> f64 {
    let mut e2 = [0f64; LANES];
    let body = xs.len() / LANES * LANES;
    for chunk in xs[..body].chunks_exact(LANES) {
        for j in 0..LANES {
            let x = chunk[j];
            let e = if x.is_finite() { f64::from(x) - f64::from(fmt.fake_quant(x, p)) } else { 0.0 };
            e2[j] += e * e;
        }
    }
    let mut tail = 0.0;
    for &x in &xs[body..] {
        if x.is_finite() {
            let e = f64::from(x) - f64::from(fmt.fake_quant(x, p));
            tail += e * e;
        }
    }
    e2.iter().sum::<f64>() + tail
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
        let mut mn = [f32::INFINITY; LANES];
        let mut mx = [f32::NEG_INFINITY; LANES];
        let mut s = [0f64; LANES];
        let mut s2 = [0f64; LANES];
        let mut bad = [0u64; LANES];
        let body = xs.len() / LANES * LANES;
        let mut visit = |j: usize, x: f32| {
            let finite = x.is_finite();
            let v = if finite { x } else { 0.0 };
            mn[j] = if finite { mn[j].min(x) } else { mn[j] };
            mx[j] = if finite { mx[j].max(x) } else { mx[j] };
            s[j] += f64::from(v);
            s2[j] += f64::from(v) * f64::from(v);
            bad[j] += u64::from(!finite);
        };
        for chunk in xs[..body].chunks_exact(LANES) {
            for j in 0..LANES {
                visit(j, chunk[j]);
            }
        }
        for (k, &x) in xs[body..].iter().enumerate() {
            visit(k, x);
        }
        let nonfinite: u64 = bad.iter().sum();
        Self {
            min: mn.iter().copied().fold(f32::INFINITY, f32::min),
            max: mx.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            finite: xs.len() as u64 - nonfinite,
            nonfinite,
            sum: s.iter().sum(),
            sum_sq: s2.iter().sum(),
        }
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
