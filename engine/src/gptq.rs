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
//! columns after the block as matrix products (the next block's columns
//! first, the rest while that block runs). Everything runs in f32, as there
//! (docs/numerics.md, "GPTQ"), and every sum in the same order as a plain
//! loop would, so the result does not depend on the thread count.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::{Accum, Mat, MatMut, MatRef, Par, Spec};
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
    let (mut w, l, fallback) = prepare(values, hessian, rows, cols, &order, opts.dampening);
    let slices = Slices::new(rows, cols, base.granularity, &order);
    let block = opts.block_size.max(1);
    let run = Run {
        w: &mut w,
        l: l.as_ref(),
        u: (!u_in_place(rows, cols, block)).then(|| l.transpose().to_owned()),
        slices: &slices,
        params: &base.params,
        rows,
        block,
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

/// W row-major with its columns in `order`, and L with U = Lᵀ for H permuted
/// alike. A column H never saw (diag 0) gets diag 1 and its weights zeroed,
/// as llm-compressor's `factorize_hessian` does.
fn prepare(
    values: &[f32],
    hessian: &[f32],
    rows: usize,
    cols: usize,
    order: &[usize],
    dampening: f32,
) -> (Vec<f32>, Mat<f32>, bool) {
    let dead: Vec<bool> = order.iter().map(|&c| hessian[c * cols + c] == 0.0).collect();
    let mut w = vec![0.0; rows * cols];
    w.par_chunks_mut(cols).zip(values.par_chunks(cols)).for_each(|(out, row)| {
        for ((o, &c), &d) in out.iter_mut().zip(order).zip(&dead) {
            *o = if d { 0.0 } else { row[c] };
        }
    });
    let mut h = permuted_lower(hessian, cols, order);
    for c in (0..cols).filter(|&c| dead[c]) {
        h[(c, c)] = 1.0;
    }
    let (l, fallback) = inverse_lower_factor(h, dampening);
    (w, l, fallback)
}

/// Columns per tile of the permuted copy: a tile's rows stay in L1.
const COPY_TILE: usize = 64;

/// H with rows and columns in `order`: its lower triangle column-major, the
/// upper zero (what faer's `Llt::new` copies a matrix into).
fn permuted_lower(hessian: &[f32], n: usize, order: &[usize]) -> Mat<f32> {
    // Each row gathered along itself (the reads stay in one row of H), then
    // transposed tile by tile, so no read strides across all of H.
    let mut p = vec![0.0f32; n * n];
    p.par_chunks_mut(n.max(1)).zip(order).for_each(|(out, &i)| {
        let row = &hessian[i * n..(i + 1) * n];
        for (o, &j) in out.iter_mut().zip(order) {
            *o = row[j];
        }
    });
    let mut h = Mat::<f32>::zeros(n, n);
    h.par_col_chunks_mut(COPY_TILE).enumerate().for_each(|(t, mut block)| {
        let j0 = t * COPY_TILE;
        for i0 in (j0..n).step_by(COPY_TILE) {
            for jj in 0..block.ncols() {
                let j = j0 + jj;
                let mut col = block.as_mut().col_mut(jj);
                for i in i0.max(j)..(i0 + COPY_TILE).min(n) {
                    col[i] = p[i * n + j];
                }
            }
        }
    });
    h
}

/// L with (H + λI)⁻¹ = LLᵀ, so U = Lᵀ; λ = `dampening` × mean diag H; the
/// identity (and `true`) when a factorisation fails. The steps are
/// llm-compressor's (factor, invert, factor the inverse): a cheaper route to
/// the same U (one factorisation of the reversed H and a triangular inverse)
/// rounds differently enough to move 0.13 % of a 1536-wide layer's codes.
/// faer's in-place kernels are the ones `Llt` calls, with the same inputs,
/// without its copies.
fn inverse_lower_factor(mut h: Mat<f32>, dampening: f32) -> (Mat<f32>, bool) {
    let n = h.nrows();
    let mean = (0..n).map(|i| f64::from(h[(i, i)])).sum::<f64>() / n.max(1) as f64;
    let damp = dampening * mean as f32;
    for i in 0..n {
        h[(i, i)] += damp;
    }
    let par = faer::get_global_parallelism();
    if cholesky_lower(&mut h, par) {
        // `Llt::inverse` writes the lower triangle of a zeroed matrix; the
        // factorisation after it reads only that.
        let mut inv = Mat::<f32>::zeros(n, n);
        let mut mem = MemBuffer::new(llt::inverse::inverse_scratch::<f32>(n, par));
        llt::inverse::inverse(inv.as_mut(), h.as_ref(), par, MemStack::new(&mut mem));
        drop(h);
        if cholesky_lower(&mut inv, par) {
            return (inv, false);
        }
    }
    (Mat::identity(n, n), true)
}

/// `a`'s lower triangle factored in place into L, the rest zeroed, as
/// `Llt::new` leaves it; false when a pivot is not positive.
fn cholesky_lower(a: &mut Mat<f32>, par: Par) -> bool {
    // `Llt::new`'s settings: no regularisation, the default blocking.
    let n = a.nrows();
    let mut mem = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f32>(n, par, Spec::default()));
    let regularization = llt::factor::LltRegularization::default();
    let stack = MemStack::new(&mut mem);
    if llt::factor::cholesky_in_place(a.as_mut(), regularization, par, stack, Spec::default()).is_err() {
        return false;
    }
    a.par_col_iter_mut().enumerate().for_each(|(j, col)| col.subrows_mut(0, j).fill(0.0));
    true
}

/// Whether faer sends a product `rows`×`k` by `k`×`n` to its blocked gemm,
/// whose sum per element does not depend on the operands' strides or the
/// product's extent; matrix-vector, rank-1 and small (nano-gemm) products
/// choose their kernels by stride.
fn blocked_gemm(rows: usize, k: usize, n: usize) -> bool {
    rows > 1 && k > 1 && n > 1 && rows * k * n > 16 * 16 * 16
}

/// Whether every block's product is a `blocked_gemm`, so U can be read as Lᵀ
/// in place; otherwise U is copied column-major, as faer's `Llt` route gave it.
fn u_in_place(rows: usize, cols: usize, block: usize) -> bool {
    (0..cols).step_by(block).all(|i1| {
        let width = block.min(cols - i1);
        let rest = cols - i1 - width;
        rest == 0 || blocked_gemm(rows, width, rest)
    })
}

/// Each element's slice (the index into the parameters) as its row's part
/// plus its column's: every 2-D layout numbers slices so (per-tensor 0,
/// per-channel r, per-column c, groups r·G + c/g, blocks (r/s)·B + c/s), and
/// two lookups are cheaper than `slice_indexer`'s divisions per element.
struct Slices {
    row: Vec<usize>,
    /// By permuted column.
    col: Vec<usize>,
}

impl Slices {
    fn new(rows: usize, cols: usize, granularity: Granularity, order: &[usize]) -> Self {
        let shape = [rows, cols];
        let index = slice_indexer(&shape, granularity);
        Self {
            row: (0..rows).map(|r| index(r * cols)).collect(),
            col: order.iter().map(|&c| index(c)).collect(),
        }
    }
}

/// The column loop, generic over the scheme's number format.
struct Run<'a> {
    /// W, permuted, row-major; becomes R′.
    w: &'a mut [f32],
    /// L, with U = Lᵀ.
    l: MatRef<'a, f32>,
    /// U column-major, when the block products need it so (`u_in_place`).
    u: Option<Mat<f32>>,
    slices: &'a Slices,
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

    fn run<F: NumberFormat>(self, f: F) -> f64 {
        let fmt = with_tensor_global(f, self.values, self.global_amax);
        let (rows, cols, block) = (self.rows, self.l.nrows(), self.block);
        let factor = Factor { l: self.l, u: self.u.as_ref().map(Mat::as_ref) };
        let cx = Columns { fmt, l: self.l, slices: self.slices, params: self.params };
        let mut w = MatMut::from_row_major_slice_mut(self.w, rows, cols);
        let mut loss = 0.0;
        // The previous block's errors, not yet passed on to this block's columns and after.
        let mut pending: Option<(Vec<f32>, usize, usize)> = None;
        for i1 in (0..cols).step_by(block) {
            let width = block.min(cols - i1);
            let tail = w.as_mut().subcols_mut(i1, cols - i1);
            let (err, row_losses) = match pending.take() {
                None => cx.block(tail.subcols_mut(0, width), i1),
                Some((e, p1, pw)) if splits(rows, pw, width, cols - i1 - width) => {
                    // This block's columns first; the later ones while it runs.
                    let (mut cur, rest) = tail.split_at_col_mut(width);
                    update(cur.as_mut(), &e, factor.rhs(p1, pw, i1, width));
                    let rhs = factor.rhs(p1, pw, i1 + width, rest.ncols());
                    rayon::join(|| cx.block(cur, i1), || update(rest, &e, rhs)).0
                }
                Some((e, p1, pw)) => {
                    let mut tail = tail;
                    update(tail.as_mut(), &e, factor.rhs(p1, pw, i1, cols - i1));
                    cx.block(tail.subcols_mut(0, width), i1)
                }
            };
            loss += row_losses.iter().map(|&l| f64::from(l)).sum::<f64>();
            pending = Some((err, i1, width));
        }
        loss
    }
}

/// Whether the product of a block's errors (`k` wide) with the later columns
/// may run as two (the next block's `width` columns, then `rest`) with the
/// same sums: when both are a `blocked_gemm`.
fn splits(rows: usize, k: usize, width: usize, rest: usize) -> bool {
    rest > 0 && blocked_gemm(rows, k, width) && blocked_gemm(rows, k, rest)
}

/// U's rows `i1..i1 + k`, columns `c..c + n`: Lᵀ in place, or the copy.
struct Factor<'a> {
    l: MatRef<'a, f32>,
    u: Option<MatRef<'a, f32>>,
}

impl<'a> Factor<'a> {
    fn rhs(&self, i1: usize, k: usize, c: usize, n: usize) -> MatRef<'a, f32> {
        match self.u {
            Some(u) => u.submatrix(i1, c, k, n),
            None => self.l.submatrix(c, i1, n, k).transpose(),
        }
    }
}

/// `dst` −= E·`rhs`, E the errors row-major: a block's errors reaching later columns.
fn update(dst: MatMut<'_, f32>, err: &[f32], rhs: MatRef<'_, f32>) {
    let lhs = MatRef::from_row_major_slice(err, dst.nrows(), rhs.nrows());
    faer::linalg::matmul::matmul(dst, Accum::Add, lhs, rhs, -1.0, Par::rayon(0));
}

/// Rows a tile of the column loop runs across in vector lanes.
const TILE: usize = 16;

/// What a block's column loop reads besides W.
struct Columns<'a, F> {
    fmt: F,
    l: MatRef<'a, f32>,
    slices: &'a Slices,
    params: &'a [SliceParams],
}

impl<F: NumberFormat> Columns<'_, F> {
    /// Columns `i1..` (`w`, the block's columns of every row) quantized in
    /// order, tiles of rows in parallel: each column's q replaces it, and its
    /// error e = (w − q)/U_ii updates the block's later columns by −e·U_ij.
    /// Returns the errors (row-major) and each row's Σ e²/2.
    fn block(&self, w: MatMut<'_, f32>, i1: usize) -> (Vec<f32>, Vec<f32>) {
        let (rows, width) = (w.nrows(), w.ncols());
        // U's diagonal block row-major: its row i is L's column i1 + i.
        let mut u = vec![0.0f32; width * width];
        for (i, row) in u.chunks_mut(width).enumerate() {
            for (j, v) in row.iter_mut().enumerate().skip(i) {
                *v = self.l[(i1 + j, i1 + i)];
            }
        }
        let mut e = vec![0.0f32; rows * width];
        let tile = Tile { fmt: self.fmt, u: &u, slices: self.slices, params: self.params, i1, width };
        let row_losses: Vec<f32> = w
            .par_row_chunks_mut(TILE)
            .zip(e.par_chunks_mut(width * TILE))
            .enumerate()
            .flat_map_iter(|(t, (w, e))| tile.columns(t * TILE, w, e))
            .collect();
        (e, row_losses)
    }
}

/// One block's column loop over up to `TILE` rows, transposed so that a
/// column's update of the later ones runs across the rows in vector lanes;
/// each row sees the same operations in the same order as one at a time.
struct Tile<'a, F> {
    fmt: F,
    /// U's diagonal block, row-major (upper triangle).
    u: &'a [f32],
    slices: &'a Slices,
    params: &'a [SliceParams],
    i1: usize,
    width: usize,
}

impl<F: NumberFormat> Tile<'_, F> {
    /// Rows `r0..` (`w` their block columns; `e` their errors, row-major):
    /// R′ in place, the errors written, each row's Σ e²/2 returned.
    fn columns(&self, r0: usize, mut w: MatMut<'_, f32>, e: &mut [f32]) -> Vec<f32> {
        let (i1, width) = (self.i1, self.width);
        let n = w.nrows();
        let mut x = vec![[0.0f32; TILE]; width];
        for r in 0..n {
            for (xi, &v) in x.iter_mut().zip(w.as_ref().row(r).iter()) {
                xi[r] = v;
            }
        }
        let row_slices = &self.slices.row[r0..r0 + n];
        let mut sq = [0.0f32; TILE];
        for i in 0..width {
            let (xi, later) = x[i..].split_first_mut().expect("i < width");
            let d = self.u[i * width + i];
            let col_slice = self.slices.col[i1 + i];
            let mut ei = [0.0f32; TILE];
            for (r, &row_slice) in row_slices.iter().enumerate() {
                let q = self.fmt.fake_quant(xi[r], &self.params[row_slice + col_slice]);
                ei[r] = (xi[r] - q) / d;
                xi[r] = q;
                sq[r] += ei[r] * ei[r];
                e[r * width + i] = ei[r];
            }
            for (xj, &uij) in later.iter_mut().zip(&self.u[i * width + i + 1..(i + 1) * width]) {
                for (v, &er) in xj.iter_mut().zip(&ei) {
                    *v -= er * uij;
                }
            }
        }
        for r in 0..n {
            for (v, xi) in w.as_mut().row_mut(r).iter_mut().zip(&x) {
                *v = xi[r];
            }
        }
        sq[..n].iter().map(|s| s / 2.0).collect()
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

    /// A row's part plus a column's is `slice_indexer`'s slice for every
    /// element under every granularity of a 2-D weight.
    #[test]
    fn slices_split_into_row_and_column_parts() {
        let shape = [37, 70];
        let [rows, cols] = shape;
        let order: Vec<usize> = (0..cols).rev().collect();
        for g in ["tensor", "channel", "channel1", "group", "group16", "group32", "block", "block16"] {
            let g: Granularity = g.parse().unwrap();
            let index = slice_indexer(&shape, g);
            let s = Slices::new(rows, cols, g, &order);
            for r in 0..rows {
                for (c, &o) in order.iter().enumerate() {
                    assert_eq!(s.row[r] + s.col[c], index(r * cols + o), "{g:?} ({r}, {c})");
                }
            }
        }
    }

    /// The plain route the fast one must equal bit for bit: faer's `Llt` with
    /// its copies, U copied column-major, one row at a time, and each block's
    /// product over all later columns at once.
    struct Reference<'a> {
        w: &'a mut [f32],
        u: MatRef<'a, f32>,
        slice: &'a dyn Fn(usize, usize) -> usize,
        params: &'a [SliceParams],
        values: &'a [f32],
        rows: usize,
        block: usize,
    }

    impl WithFormat for Reference<'_> {
        type Out = f64;

        fn run<F: NumberFormat>(self, f: F) -> f64 {
            let fmt = with_tensor_global(f, self.values, None);
            let (rows, cols, u) = (self.rows, self.u.nrows(), self.u);
            let mut loss = 0.0;
            for i1 in (0..cols).step_by(self.block) {
                let width = self.block.min(cols - i1);
                let mut e = vec![0.0f32; rows * width];
                let mut row_losses = vec![0.0f32; rows];
                for r in 0..rows {
                    let x = &mut self.w[r * cols + i1..r * cols + i1 + width];
                    for i in 0..width {
                        let q = fmt.fake_quant(x[i], &self.params[(self.slice)(r, i1 + i)]);
                        let ei = (x[i] - q) / u[(i1 + i, i1 + i)];
                        (x[i], e[r * width + i]) = (q, ei);
                        row_losses[r] += ei * ei;
                        for j in i + 1..width {
                            x[j] -= ei * u[(i1 + i, i1 + j)];
                        }
                    }
                }
                loss += row_losses.iter().map(|&l| f64::from(l / 2.0)).sum::<f64>();
                let rest = cols - i1 - width;
                let tail = MatMut::from_row_major_slice_mut(self.w, rows, cols).subcols_mut(i1 + width, rest);
                let lhs = MatRef::from_row_major_slice(&e, rows, width);
                let rhs = u.submatrix(i1, i1 + width, width, rest);
                faer::linalg::matmul::matmul(tail, Accum::Add, lhs, rhs, -1.0, Par::rayon(0));
            }
            loss
        }
    }

    fn reference(w: &[f32], shape: [usize; 2], scheme: &Scheme, h: &[f32], block: usize) -> (Vec<f32>, f64) {
        use faer::linalg::solvers::DenseSolveCore;
        let [rows, cols] = shape;
        let base = analyze(w, &shape, &scheme.range_scheme(), &Options::default()).unwrap();
        let order = column_order(h, cols, true);
        let p: Vec<f32> = order.iter().flat_map(|&i| order.iter().map(move |&j| h[i * cols + j])).collect();
        let mut hp = MatRef::from_row_major_slice(&p, cols, cols).to_owned();
        let dead: Vec<bool> = (0..cols).map(|c| hp[(c, c)] == 0.0).collect();
        let mut wp: Vec<f32> = (0..rows * cols)
            .map(|k| if dead[k % cols] { 0.0 } else { w[k - k % cols + order[k % cols]] })
            .collect();
        let mean =
            (0..cols).map(|c| if dead[c] { 1.0 } else { f64::from(hp[(c, c)]) }).sum::<f64>() / cols as f64;
        for c in 0..cols {
            hp[(c, c)] = if dead[c] { 1.0 } else { hp[(c, c)] } + 0.01 * mean as f32;
        }
        let u = (hp.llt(faer::Side::Lower).ok())
            .and_then(|l| l.inverse().llt(faer::Side::Lower).ok())
            .map_or_else(|| Mat::identity(cols, cols), |l| l.L().transpose().to_owned());
        let index = slice_indexer(&shape, base.granularity);
        let slice = |r: usize, c: usize| index(r * cols + order[c]);
        let run = Reference {
            w: &mut wp,
            u: u.as_ref(),
            slice: &slice,
            params: &base.params,
            values: w,
            rows,
            block,
        };
        let loss = dispatch_in(scheme.format, crate::format::WorkDtype::F32, run).unwrap();
        let mut out = vec![0.0; rows * cols];
        for (k, &q) in wp.iter().enumerate() {
            out[k - k % cols + order[k % cols]] = q;
        }
        (out, loss)
    }

    /// Tiles of rows, products split and overlapped, U read in place or
    /// copied, the factorisations without copies: the same bits as the plain
    /// route, for shapes that take each kind of product (several blocks, a
    /// 1-column product whole or as the split's rest, a 1-row product,
    /// 1-wide blocks, small products), a column H never saw, and a Hessian
    /// that is not positive definite.
    #[test]
    fn gptq_equals_the_plain_route_bit_for_bit() {
        let (w, h) = layer(40, 300);
        let (g32, ch8) = ("int4:group32:minmax", "int8:channel:minmax");
        // (rows, cols, block, scheme, column 5 unseen, H negated)
        let cases = [
            (40, 300, 64, g32, false, false),
            (37, 300, 128, ch8, true, false),
            (50, 129, 128, g32, false, false),
            (50, 257, 128, ch8, false, false),
            (1, 300, 128, g32, false, false),
            (20, 40, 1, g32, false, false),
            (3, 40, 8, ch8, false, false),
            (17, 300, 16, g32, false, false),
            (16, 200, 64, g32, false, true),
        ];
        for (k, &(rows, cols, block, scheme, unseen, negated)) in cases.iter().enumerate() {
            let scheme: Scheme = scheme.parse().unwrap();
            let w: Vec<f32> =
                (0..rows * cols).map(|i| w[i % w.len()] * (1.0 + (i % 13) as f32 * 0.01)).collect();
            let mut h: Vec<f32> = (0..cols * cols).map(|i| h[(i / cols) * 300 + i % cols]).collect();
            for i in (0..cols).filter(|_| unseen) {
                (h[i * cols + 5], h[5 * cols + i]) = (0.0, 0.0);
            }
            for v in h.iter_mut().filter(|_| negated) {
                *v = -*v;
            }
            let opts = GptqOptions { block_size: block, ..Default::default() };
            let g = gptq(&w, &[rows, cols], &scheme, &h, &opts, &Options::default()).unwrap();
            let (want, loss) = reference(&w, [rows, cols], &scheme, &h, block);
            assert_eq!(g.fallback, negated, "case {k}");
            assert!(g.dequantized.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "case {k}");
            assert_eq!(g.loss.to_bits(), loss.to_bits(), "case {k}");
        }
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
