//! GPTQ (Frantar et al., 2022) as llm-compressor 0.14's GPTQModifier runs it
//! (`modifiers/gptq/gptq_quantize.py` and `helpers.py`), for one layer W
//! `[rows, cols]` and its normalised Hessian H = 2·Σ x xᵀ / samples (`cols²`).
//!
//! The scales and zero points are the scheme's own, chosen on the original W
//! first (llm-compressor's observer runs before GPTQ), in the original column
//! order. Columns are then quantized one at a time in decreasing order of
//! diag H ("static" activation order), and each column's rounding error is
//! spread over the columns not yet quantized through U, the upper Cholesky
//! factor of (H + λI)⁻¹: inside a block of 128 columns at once, and to the
//! columns after the block as one matrix product. Everything runs in f32, as
//! there (docs/numerics.md, "GPTQ").

use faer::linalg::solvers::DenseSolveCore;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;

use crate::analyze::{Options, QuantResult, against, analyze, with_tensor_global};
use crate::dequant::{Decoded, SliceMap};
use crate::error::{Error, Result};
use crate::format::{NumberFormat, SliceParams, WithFormat, dispatch_in};
use crate::scheme::{Granularity, Scheme};
use crate::slicing::slice_indexer;

/// GPTQModifier's settings; `Default` gives its 0.14 defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptqOptions {
    /// Columns whose updates to later columns are batched (`block_size`).
    pub block_size: usize,
    /// λ as this fraction of the mean of diag H (`dampening_frac`).
    pub dampening: f32,
    /// Columns in decreasing diag H ("static"); otherwise in column order.
    pub static_order: bool,
}

impl Default for GptqOptions {
    fn default() -> Self {
        Self { block_size: 128, dampening: 0.01, static_order: true }
    }
}

/// One layer after GPTQ.
#[derive(Clone, Debug)]
pub struct Gptq {
    /// R′ in the original layout `[rows, cols]`.
    pub dequantized: Vec<f32>,
    /// The slices' parameters (those of round-to-nearest under the scheme).
    pub params: Vec<SliceParams>,
    pub granularity: Granularity,
    /// Why the scheme's granularity was not used, if it was not.
    pub granularity_fallback: Option<String>,
    /// A two-level format's global scale.
    pub global_scale: Option<f32>,
    /// llm-compressor's "loss": Σ over rows and columns of e²/2, where
    /// e = (w − q)/U_cc is a column's rounding error scaled by its pivot.
    pub loss: f64,
    /// H + λI was not positive definite: U = I, so this is round-to-nearest
    /// (llm-compressor's RTN fallback).
    pub fallback: bool,
}

/// A layer under a GPTQ scheme, measured: R against GPTQ's R′ (histograms and
/// R′ as `opts` asks), with GPTQ's loss and whether it fell back.
#[derive(Clone, Debug)]
pub struct GptqResult {
    pub result: QuantResult,
    pub loss: f64,
    pub fallback: bool,
}

/// `values` under `scheme` (its calibration chooses the ranges; `gptq` means
/// min-max) with GPTQ's error compensation over `hessian`, measured as any
/// scheme is, in `opts.work`.
pub fn analyze_gptq(
    values: &[f32],
    shape: &[usize],
    scheme: &Scheme,
    hessian: &[f32],
    opts: &Options,
) -> Result<GptqResult> {
    let g = gptq(values, shape, scheme, hessian, &GptqOptions::default(), opts)?;
    let cols = shape.last().copied().unwrap_or(1);
    let keep = opts.keep_dequantized.then(|| g.dequantized.clone());
    let d = Decoded {
        values: g.dequantized,
        params: g.params,
        map: SliceMap::of(g.granularity),
        cols,
        work: opts.work,
        global: g.global_scale,
    };
    let (mut result, _) = against(values, d, *scheme, g.granularity, opts.weight_bins, opts.error_bins);
    result.fallback = g.granularity_fallback;
    result.dequantized = keep;
    Ok(GptqResult { result, loss: g.loss, fallback: g.fallback })
}

/// GPTQ of `values` (`shape` = `[rows, cols]`) under `scheme`, with the
/// normalised Hessian `hessian` (row-major `cols × cols`), in `base.work` and
/// with `base.global_amax` (a two-level format's amax shared with fused siblings).
pub fn gptq(
    values: &[f32],
    shape: &[usize],
    scheme: &Scheme,
    hessian: &[f32],
    opts: &GptqOptions,
    base: &Options,
) -> Result<Gptq> {
    let work = base.work;
    let &[rows, cols] = shape else {
        return Err(Error::Scheme(format!("GPTQ needs a 2-D weight; this one has shape {shape:?}")));
    };
    if hessian.len() != cols * cols || values.len() != rows * cols {
        return Err(Error::Scheme(format!(
            "GPTQ of a [{rows}, {cols}] weight needs a {cols}×{cols} Hessian; this one has {} values",
            hessian.len()
        )));
    }
    if let Some(k) = hessian.iter().position(|v| !v.is_finite()) {
        return Err(Error::Scheme(format!("Hessian value {k} is {}", hessian[k])));
    }
    // The parameters come from the original W, as llm-compressor's observer runs first.
    let ranges = Options { work, global_amax: base.global_amax, ..Options::default() };
    let base = analyze(values, shape, &scheme.range_scheme(), &ranges)?;
    let order = column_order(hessian, cols, opts.static_order);
    let (mut w, u, fallback) = prepare(values, hessian, rows, cols, &order, opts.dampening);
    let index = slice_indexer(shape, base.granularity);
    let slice = |r: usize, c: usize| index(r * cols + order[c]);
    let run = Run {
        w: &mut w,
        u: u.as_ref(),
        slice: &slice,
        params: &base.params,
        rows,
        block: opts.block_size.max(1),
        values,
        global_amax: ranges.global_amax,
    };
    let loss = dispatch_in(scheme.format, work, run)?;
    let mut dequantized = vec![0.0; rows * cols];
    dequantized.par_chunks_mut(cols).zip(w.par_chunks(cols)).for_each(|(out, row)| {
        for (&orig, &q) in order.iter().zip(row) {
            out[orig] = q;
        }
    });
    Ok(Gptq {
        dequantized,
        params: base.params,
        granularity: base.granularity,
        granularity_fallback: base.fallback,
        global_scale: base.global_scale,
        loss,
        fallback,
    })
}

/// The order columns are quantized in: decreasing diag H (ties in column
/// order) for "static", else 0..cols.
fn column_order(hessian: &[f32], cols: usize, static_order: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cols).collect();
    if static_order {
        order.sort_by(|&a, &b| hessian[b * cols + b].total_cmp(&hessian[a * cols + a]));
    }
    order
}

/// W row-major with its columns in `order`, and U for H permuted alike.
/// A column H never saw (diag 0) gets diag 1 and its weights zeroed, as
/// llm-compressor's `factorize_hessian` does.
fn prepare(
    values: &[f32],
    hessian: &[f32],
    rows: usize,
    cols: usize,
    order: &[usize],
    dampening: f32,
) -> (Vec<f32>, Mat<f32>, bool) {
    // Permuted H row-major (each row gathered along itself); faer copies it column-major.
    let p: Vec<f32> = order.iter().flat_map(|&i| order.iter().map(move |&j| hessian[i * cols + j])).collect();
    let mut h = MatRef::from_row_major_slice(&p, cols, cols).to_owned();
    let dead: Vec<bool> = (0..cols).map(|c| h[(c, c)] == 0.0).collect();
    let mut w = vec![0.0; rows * cols];
    w.par_chunks_mut(cols).zip(values.par_chunks(cols)).for_each(|(out, row)| {
        for ((o, &c), &d) in out.iter_mut().zip(order).zip(&dead) {
            *o = if d { 0.0 } else { row[c] };
        }
    });
    for c in (0..cols).filter(|&c| dead[c]) {
        h[(c, c)] = 1.0;
    }
    let (u, fallback) = inverse_upper_factor(h, dampening);
    (w, u, fallback)
}

/// U with (H + λI)⁻¹ = UᵀU, λ = `dampening` × mean diag H; the identity (and
/// `true`) when a factorisation fails. The steps are llm-compressor's (factor,
/// invert, factor the inverse): a cheaper route to the same U (one
/// factorisation of the reversed H and a triangular inverse) rounds
/// differently enough to move 0.13 % of a 1536-wide layer's codes.
fn inverse_upper_factor(mut h: Mat<f32>, dampening: f32) -> (Mat<f32>, bool) {
    let n = h.nrows();
    let mean = (0..n).map(|i| f64::from(h[(i, i)])).sum::<f64>() / n.max(1) as f64;
    let damp = dampening * mean as f32;
    for i in 0..n {
        h[(i, i)] += damp;
    }
    let factor = h
        .llt(Side::Lower)
        .ok()
        .and_then(|l| l.inverse().llt(Side::Lower).ok())
        .map(|l| l.L().transpose().to_owned());
    match factor {
        Some(u) => (u, false),
        None => (Mat::identity(n, n), true),
    }
}

/// The column loop, generic over the scheme's number format.
struct Run<'a> {
    /// W, permuted, row-major; becomes R′.
    w: &'a mut [f32],
    u: MatRef<'a, f32>,
    /// The slice of row r, permuted column c.
    slice: &'a (dyn Fn(usize, usize) -> usize + Sync),
    params: &'a [SliceParams],
    rows: usize,
    block: usize,
    /// The original weights (a two-level format's global scale is theirs,
    /// unless fused siblings share `global_amax`).
    values: &'a [f32],
    global_amax: Option<f32>,
}

impl WithFormat for Run<'_> {
    type Out = f64;

    fn run<F: NumberFormat>(mut self, f: F) -> f64 {
        let fmt = with_tensor_global(f, self.values, self.global_amax);
        let (rows, cols) = (self.rows, self.u.nrows());
        let mut loss = 0.0;
        for i1 in (0..cols).step_by(self.block) {
            let width = self.block.min(cols - i1);
            let err = self.block_columns(fmt, i1, width, &mut loss);
            if i1 + width < cols {
                // The block's errors reach every later column at once.
                let tail = MatMut::from_row_major_slice_mut(self.w, rows, cols).submatrix_mut(
                    0,
                    i1 + width,
                    rows,
                    cols - i1 - width,
                );
                let lhs = MatRef::from_row_major_slice(&err, rows, width);
                let rhs = self.u.submatrix(i1, i1 + width, width, cols - i1 - width);
                faer::linalg::matmul::matmul(tail, Accum::Add, lhs, rhs, -1.0, Par::rayon(0));
            }
        }
        loss
    }
}

impl Run<'_> {
    /// Columns `i1..i1 + width` quantized in order, rows in parallel: each
    /// column's q replaces it, and its error e = (w − q)/U_ii updates the
    /// block's later columns by −e·U_ij. Returns the errors (row-major) and
    /// adds Σ e²/2 to `loss`.
    fn block_columns<F: NumberFormat>(
        &mut self,
        fmt: F,
        i1: usize,
        width: usize,
        loss: &mut f64,
    ) -> Vec<f32> {
        let (rows, cols) = (self.rows, self.u.nrows());
        let u: Vec<f32> = (0..width * width).map(|k| self.u[(i1 + k / width, i1 + k % width)]).collect();
        let mut e = vec![0.0f32; rows * width];
        let (slice, params) = (self.slice, self.params);
        let row_losses: Vec<f32> = self
            .w
            .par_chunks_mut(cols)
            .zip(e.par_chunks_mut(width))
            .enumerate()
            .map(|(r, (row, e))| {
                let x = &mut row[i1..i1 + width];
                let mut sq = 0.0f32;
                for i in 0..width {
                    let p = &params[slice(r, i1 + i)];
                    let q = fmt.fake_quant(x[i], p);
                    let ei = (x[i] - q) / u[i * width + i];
                    x[i] = q;
                    e[i] = ei;
                    sq += ei * ei;
                    for j in i + 1..width {
                        x[j] -= ei * u[i * width + j];
                    }
                }
                sq / 2.0
            })
            .collect();
        *loss += row_losses.iter().map(|&l| f64::from(l)).sum::<f64>();
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1).collect();
        // H = 2·XᵀX/n from a fixed X with correlated columns.
        let n = 4 * cols;
        let x: Vec<f32> = (0..n * cols)
            .map(|i| (((i * 2_654_435_761) % 1009) as f32 / 1009.0 - 0.5) + ((i / cols) % 7) as f32 * 0.1)
            .collect();
        let mut h = vec![0.0f32; cols * cols];
        for s in 0..n {
            for a in 0..cols {
                for b in 0..cols {
                    h[a * cols + b] += 2.0 * x[s * cols + a] * x[s * cols + b] / n as f32;
                }
            }
        }
        (w, h)
    }

    /// Output error ‖(W − W′)X‖² against H: GPTQ beats round-to-nearest on
    /// it, while round-to-nearest has the lower weight error.
    #[test]
    fn gptq_trades_weight_error_for_output_error() {
        let (rows, cols) = (16, 64);
        let (w, h) = layer(rows, cols);
        let scheme: Scheme = "int4:group32:minmax".parse().unwrap();
        let g = gptq(
            &w,
            &[rows, cols],
            &scheme,
            &h,
            &GptqOptions { block_size: 16, ..Default::default() },
            &Options::default(),
        )
        .unwrap();
        let rtn =
            analyze(&w, &[rows, cols], &scheme, &Options { keep_dequantized: true, ..Options::default() })
                .unwrap();
        let rtn_q = rtn.dequantized.unwrap();
        let out_err = |q: &[f32]| {
            (0..rows)
                .map(|r| {
                    let d: Vec<f32> = (0..cols).map(|c| w[r * cols + c] - q[r * cols + c]).collect();
                    (0..cols)
                        .flat_map(|a| (0..cols).map(move |b| (a, b)))
                        .map(|(a, b)| f64::from(d[a] * h[a * cols + b] * d[b]))
                        .sum::<f64>()
                })
                .sum::<f64>()
        };
        let w_err = |q: &[f32]| w.iter().zip(q).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>();
        assert!(!g.fallback);
        assert!(
            out_err(&g.dequantized) < 0.8 * out_err(&rtn_q),
            "{} vs {}",
            out_err(&g.dequantized),
            out_err(&rtn_q)
        );
        assert!(w_err(&g.dequantized) > w_err(&rtn_q));
        // Every R′ is on its slice's grid: the scales are round-to-nearest's.
        assert_eq!(g.params, rtn.params);
        assert!(g.loss > 0.0);
    }

    /// The identity Hessian makes GPTQ round-to-nearest exactly; a Hessian
    /// that is not positive definite falls back to it.
    #[test]
    fn identity_hessian_is_round_to_nearest_and_a_bad_one_falls_back() {
        let (rows, cols) = (8, 32);
        let (w, _) = layer(rows, cols);
        let scheme: Scheme = "int4:channel:minmax".parse().unwrap();
        let rtn =
            analyze(&w, &[rows, cols], &scheme, &Options { keep_dequantized: true, ..Options::default() })
                .unwrap();
        let eye: Vec<f32> = (0..cols * cols).map(|k| if k / cols == k % cols { 1.0 } else { 0.0 }).collect();
        let g = gptq(&w, &[rows, cols], &scheme, &eye, &GptqOptions::default(), &Options::default()).unwrap();
        assert_eq!(g.dequantized, rtn.dequantized.clone().unwrap());
        let mut bad = eye.clone();
        bad[1] = 5.0;
        bad[cols] = 5.0;
        let g = gptq(&w, &[rows, cols], &scheme, &bad, &GptqOptions::default(), &Options::default()).unwrap();
        assert!(g.fallback);
        assert_eq!(g.dequantized, rtn.dequantized.unwrap());
        let err = gptq(&w, &[rows, cols], &scheme, &eye[1..], &GptqOptions::default(), &Options::default())
            .unwrap_err();
        assert!(err.to_string().contains("32×32 Hessian"), "{err}");
    }
}
