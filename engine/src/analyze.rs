//! Tensor + scheme → [`QuantResult`]: slices the tensor by granularity, calibrates
//! each slice, fake-quantizes it and measures the error, in parallel (rayon).
//!
//! Per-channel (axis 0) rows and groups are processed whole by one thread each, so
//! calibration and the error pass read a slice that sits in cache. A per-tensor
//! scheme is split into chunks whose sums are merged.

use rayon::prelude::*;
use serde::Serialize;

use crate::calibrate::{compare_ranges, slice_params};
use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::error::{Error, Result};
use crate::format::{NumberFormat, SliceParams, WithFormat, WorkDtype, dispatch_in};
use crate::measure::Prime;
use crate::metrics::{ErrorSums, Metrics, TensorStats, error_sums_with_stats};
use crate::scheme::{Calibration, Granularity, ManualRange, Mapping, Scheme};
use crate::simd::{LeF32, Source};
use crate::slicing::{Layout, PAR_CHUNK, layout, parallel_stats, resolve};
use safetensors::Dtype;

/// What to compute beyond the parameters and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Options {
    /// Bins of the weight histogram over the finite range (0 = none).
    pub weight_bins: usize,
    /// Bins of the R − R′ histogram (0 = none).
    pub error_bins: usize,
    /// Keep R′ for the whole tensor.
    pub keep_dequantized: bool,
    /// The working dtype D (the tensor's own dtype, [`WorkDtype::of`]): every
    /// quantize/dequantize step is rounded to it, as a saved model computes.
    pub work: WorkDtype,
    /// The amax a two-level format's global scale derives from, when it is shared
    /// with fused sibling layers (q/k/v); None = this tensor's own amax.
    pub global_amax: Option<f32>,
}

/// Equal-width bins over [lo, hi].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn bin_width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len().max(1) as f64
    }

    /// Bins `xs` (non-finite skipped). A zero-width range is widened so that the
    /// single value sits in the middle.
    pub fn of(xs: &[f32], lo: f64, hi: f64, bins: usize) -> Self {
        let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) };
        let inv = bins as f64 / (hi - lo);
        let fill = |chunk: &[f32]| {
            let mut c = vec![0u64; bins];
            add_to_bins(&mut c, chunk, lo, inv);
            c
        };
        let counts = xs.par_chunks(PAR_CHUNK).map(fill).reduce(|| vec![0; bins], add_counts);
        Self { lo, hi, counts }
    }
}

/// Counts finite values into equal-width bins from `lo` (width 1/inv).
///
/// Bin indices are computed 8 lanes at a time in f32 (a display histogram needs
/// no more); non-finite lanes go to a spare slot instead of branching. Weights
/// crowd into a few central bins, so consecutive increments of one counter
/// would wait on each other (store → load): four interleaved copies of the
/// counts break that chain.
struct Binner {
    lo: wide::f32x8,
    inv: wide::f32x8,
    last: wide::f32x8,
    spare: wide::f32x8,
    lane: wide::i32x8,
    stride: usize,
    sub: Vec<u64>,
}

impl Binner {
    fn new(bins: usize, lo: f64, inv: f64) -> Self {
        use wide::{f32x8, i32x8};
        let stride = bins + 1; // the spare slot for non-finite values
        let s = stride as i32;
        Self {
            lo: f32x8::splat(lo as f32),
            inv: f32x8::splat(inv as f32),
            last: f32x8::splat((bins - 1) as f32),
            spare: f32x8::splat(bins as f32),
            lane: i32x8::new([0, s, 2 * s, 3 * s, 0, s, 2 * s, 3 * s]),
            stride,
            sub: vec![0u64; 4 * stride],
        }
    }

    #[inline]
    fn add8(&mut self, x: wide::f32x8) {
        let t = ((x - self.lo) * self.inv).max(wide::f32x8::ZERO).min(self.last);
        let ix = (x.is_finite().select(t, self.spare).trunc_int() + self.lane).to_array();
        for i in ix {
            // In [0, 4·stride): a lane offset plus a bin in [0, bins].
            self.sub[i as usize] += 1;
        }
    }

    fn add(&mut self, xs: &[f32]) {
        let blocks = xs.chunks_exact(8);
        let rest = blocks.remainder();
        for blk in blocks {
            self.add8(wide::f32x8::new(blk.try_into().unwrap_or_default()));
        }
        if !rest.is_empty() {
            let mut tail = [f32::NAN; 8]; // NaN pads land in the spare slot
            tail[..rest.len()].copy_from_slice(rest);
            self.add8(wide::f32x8::new(tail));
        }
    }

    fn finish(&self, c: &mut [u64]) {
        let s = self.stride;
        for (i, ci) in c.iter_mut().enumerate() {
            *ci += self.sub[i] + self.sub[s + i] + self.sub[2 * s + i] + self.sub[3 * s + i];
        }
    }
}

/// Counts the finite values of `xs` into `c` (bins of width 1/inv from `lo`).
fn add_to_bins(c: &mut [u64], xs: &[f32], lo: f64, inv: f64) {
    let mut b = Binner::new(c.len(), lo, inv);
    b.add(xs);
    b.finish(c);
}

#[allow(clippy::needless_pass_by_value)] // rayon's reduce hands both sides over by value
fn add_counts(mut a: Vec<u64>, b: Vec<u64>) -> Vec<u64> {
    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
    a
}

/// Everything the engine reports for one tensor under one scheme.
#[derive(Clone, Debug)]
pub struct QuantResult {
    pub scheme: Scheme,
    /// The granularity actually used (per-tensor after a fallback).
    pub granularity: Granularity,
    /// Why the requested granularity was not used, if it was not.
    pub fallback: Option<String>,
    /// One entry per slice, in slice order (row-major over `[dim0, groups]` for groups).
    pub params: Vec<SliceParams>,
    pub slice_metrics: Vec<Metrics>,
    /// Each slice's finite (min, max), e.g. per output channel.
    pub slice_ranges: Vec<(f32, f32)>,
    pub metrics: Metrics,
    pub stats: TensorStats,
    pub histogram: Option<Histogram>,
    pub error_histogram: Option<Histogram>,
    /// Per-tensor schemes: the dequantized levels inside the viewed range.
    pub grid: Vec<f32>,
    pub dequantized: Option<Vec<f32>>,
    /// The working dtype D the numbers were computed in.
    pub work: WorkDtype,
    /// The global (per-tensor) scale of a two-level format (NVFP4).
    pub global_scale: Option<f32>,
    /// A llama.cpp type's blocks as ggml stored them (row order = slice
    /// order), for the teaching panel's super-block: d, dmin, sub-block scales.
    pub ggml_blocks: Option<std::sync::Arc<[u8]>>,
}

/// Quantizes `values` (shape `shape`, row-major) under `scheme` and measures it.
pub fn analyze(values: &[f32], shape: &[usize], scheme: &Scheme, opts: &Options) -> Result<QuantResult> {
    struct Run<'a>(&'a [f32], &'a [usize], &'a Scheme, &'a Options);
    impl WithFormat for Run<'_> {
        type Out = Result<QuantResult>;
        fn run<F: NumberFormat>(self, f: F) -> Result<QuantResult> {
            analyze_with(f, self.0, self.1, self.2, self.3)
        }
    }
    check_input(values, shape, scheme)?;
    if let Some(ty) = scheme.format.ggml() {
        return analyze_ggml(values, shape, ty, None, opts);
    }
    dispatch_in(scheme.format, opts.work, Run(values, shape, scheme, opts))?
}

/// R (`values`, row-major in `d`'s layout) against `d`'s R′, shown under
/// `scheme` and `granularity`: metrics, per-slice metrics, histograms (`bins`
/// for R, `error_bins` for R − R′), and R′'s histogram over R's bins. The
/// caller checks that the lengths agree.
pub fn against(
    values: &[f32],
    d: crate::dequant::Decoded,
    scheme: Scheme,
    granularity: Granularity,
    bins: usize,
    error_bins: usize,
) -> (QuantResult, Option<Histogram>) {
    let m = crate::measure::measure(values, &d);
    let (lo, hi) = m.stats.range();
    let dequantized_histogram =
        (bins > 0).then(|| Histogram::of(&d.values, f64::from(lo), f64::from(hi), bins));
    let cols = d.cols.max(1);
    let error_histogram = (error_bins > 0).then(|| {
        error_histogram_of(values, cols, Prime::Values(&d.values), m.metrics.max_abs_err, error_bins)
    });
    let r =
        from_measured(values, m, d.params, (scheme, granularity), bins, error_histogram, (d.work, d.global));
    (r, dequantized_histogram)
}

/// The result of R measured against an R′: `m`, the slices' `params`, R's
/// histogram over `bins` and the error histogram; the grid of a single slice.
fn from_measured(
    values: &[f32],
    m: crate::measure::Measured,
    params: Vec<SliceParams>,
    (scheme, granularity): (Scheme, Granularity),
    bins: usize,
    error_histogram: Option<Histogram>,
    (work, global_scale): (WorkDtype, Option<f32>),
) -> QuantResult {
    let (mn, mx) = m.stats.range();
    let histogram = (bins > 0).then(|| Histogram::of(values, f64::from(mn), f64::from(mx), bins));
    let grid = match params.as_slice() {
        [p] => crate::explain::slice_levels(scheme.format, p, work, global_scale)
            .into_iter()
            .filter(|&l| l >= mn.min(p.lo) && l <= mx.max(p.hi))
            .collect(),
        _ => Vec::new(),
    };
    QuantResult {
        scheme,
        granularity,
        fallback: None,
        params,
        slice_metrics: m.slice_metrics,
        slice_ranges: m.ranges,
        metrics: m.metrics,
        stats: m.stats,
        histogram,
        error_histogram,
        grid,
        dequantized: None,
        work,
        global_scale,
        ggml_blocks: None,
    }
}

/// The R − R′ histogram over ±`max_abs`, rows of R′ taken from `prime`
/// (decoded on the fly for llama.cpp's blocks); a non-finite R is skipped.
fn error_histogram_of(values: &[f32], cols: usize, prime: Prime, max_abs: f64, bins: usize) -> Histogram {
    let half = if max_abs > 0.0 { max_abs } else { f64::from(f32::EPSILON) };
    let (lo, hi) = (-half, half);
    let inv = bins as f64 / (hi - lo);
    let counts = values
        .par_chunks(cols)
        .enumerate()
        .fold(
            || (Binner::new(bins, lo, inv), Vec::new()),
            |(mut binner, mut buf), (r, x)| {
                let y = prime.row(r, cols, &mut buf);
                let (xb, yb) = (x.chunks_exact(8), y.chunks_exact(8));
                let tail: Vec<f32> = xb.remainder().iter().zip(yb.remainder()).map(|(a, b)| a - b).collect();
                for (a, b) in xb.zip(yb) {
                    binner.add8(wide::f32x8::from(a) - wide::f32x8::from(b));
                }
                binner.add(&tail);
                (binner, buf)
            },
        )
        .map(|(binner, _)| {
            let mut c = vec![0u64; bins];
            binner.finish(&mut c);
            c
        })
        .reduce(|| vec![0; bins], add_counts);
    Histogram { lo, hi, counts }
}

/// A llama.cpp type: ggml's own quantizer (weighted by `imatrix`, one weight
/// per column, when given) on rows of the last dimension, as llama.cpp
/// quantizes a tensor, then R against the decoded R′, decoded row by row
/// unless R′ is kept.
pub fn analyze_ggml(
    values: &[f32],
    shape: &[usize],
    ty: crate::ggml::GgmlType,
    imatrix: Option<&[f32]>,
    opts: &Options,
) -> Result<QuantResult> {
    use crate::dequant::ggml as dq;
    let cols = shape.last().copied().unwrap_or(values.len());
    let scheme = Scheme { format: crate::scheme::FormatKind::Ggml(ty), ..Scheme::default() }.fitted();
    check_input(values, shape, &scheme)?;
    let bytes = dq::quantize_rows(ty, values, cols, imatrix)?;
    let decode = |r: String| Error::decode(None, r);
    let kept = if opts.keep_dequantized {
        let mut v = Vec::new();
        crate::ggml::dequantize_into(ty, &bytes, &mut v).map_err(decode)?;
        Some(v)
    } else {
        None
    };
    let params = dq::params(ty, &bytes).map_err(decode)?;
    let prime = kept.as_deref().map_or(Prime::Blocks(ty, &bytes), Prime::Values);
    let m = crate::measure::measure_blocks(values, cols, ty, &params, prime);
    let error_histogram = (opts.error_bins > 0)
        .then(|| error_histogram_of(values, cols, prime, m.metrics.max_abs_err, opts.error_bins));
    let (shown, global) = ((scheme, scheme.granularity), (WorkDtype::F32, None));
    let mut r = from_measured(values, m, params, shown, opts.weight_bins, error_histogram, global);
    r.dequantized = kept;
    r.ggml_blocks = Some(bytes.into());
    Ok(r)
}

/// A scheme the weight alone decides: GPTQ also needs the layer's inputs
/// (`gptq::analyze_gptq` runs it with them).
pub(crate) fn check_weight_only(scheme: &Scheme, shape: &[usize]) -> Result<()> {
    if scheme.calibration == Calibration::Awq {
        return Err(Error::Scheme(format!(
            "{scheme} needs the model's inputs: a save runs it block by block (`quantize --inputs`), \
             the app shows one layer on a capture"
        )));
    }
    if scheme.calibration == Calibration::Gptq {
        return Err(Error::Scheme(if shape.len() == 2 {
            format!("{scheme} needs the layer's input activations (a model run or a saved capture)")
        } else {
            format!("GPTQ quantizes 2-D Linear weights; this tensor has shape {shape:?}")
        }));
    }
    Ok(())
}

/// A valid scheme, and as many values as `shape` holds: what every analysis
/// checks before it runs.
pub(crate) fn check_input(values: &[f32], shape: &[usize], scheme: &Scheme) -> Result<()> {
    scheme.validate()?;
    check_weight_only(scheme, shape)?;
    let numel: usize = shape.iter().product();
    if numel != values.len() {
        return Err(Error::Scheme(format!(
            "shape {shape:?} holds {numel} elements but {} were given",
            values.len()
        )));
    }
    Ok(())
}

/// The per-tensor clip range every automatic calibration picks for `values`
/// under `scheme`'s format and mapping, computing in `work`: min-max,
/// percentile(p), MSE, entropy. (The histogram draws them side by side.)
pub fn compare_calibrations(
    values: &[f32],
    scheme: &Scheme,
    percentile: f64,
    work: WorkDtype,
) -> Result<Vec<(Calibration, SliceParams)>> {
    struct Run<'a>(&'a [f32], Mapping, f64);
    impl WithFormat for Run<'_> {
        type Out = Vec<(Calibration, SliceParams)>;
        fn run<F: NumberFormat>(self, f: F) -> Self::Out {
            compare_ranges(f, self.0, self.1, self.2).to_vec()
        }
    }
    dispatch_in(scheme.format, work, Run(values, scheme.mapping, percentile))
}

/// One slice: its min and max (all any calibration reads of the statistics),
/// calibrate, then the fused error pass, which adds ΣR, ΣR²: two reads.
/// `values` are the same values for a calibration that reads them; empty when
/// it reads only the range ([`range_only`]).
fn run_slice<F: NumberFormat>(
    fmt: F,
    xs: impl Source,
    values: &[f32],
    scheme: &Scheme,
    out: Option<&mut [f32]>,
) -> (SliceParams, ErrorSums, TensorStats) {
    let mut stats = TensorStats::range_of(xs);
    let p = slice_params(fmt, values, &stats, scheme.mapping, &scheme.calibration);
    let sums = match out {
        Some(o) => error_sums_with_stats::<F, true>(fmt, xs, &p, o, &mut stats),
        None => error_sums_with_stats::<F, false>(fmt, xs, &p, &mut [], &mut stats),
    };
    (p, sums, stats)
}

type SliceOut = (SliceParams, ErrorSums, TensorStats);

fn analyze_with<F: NumberFormat>(
    fmt: F,
    values: &[f32],
    shape: &[usize],
    scheme: &Scheme,
    opts: &Options,
) -> Result<QuantResult> {
    let (granularity, fallback) = resolve_for(shape, scheme)?;
    let numel = values.len();
    let fmt = with_tensor_global(fmt, values, opts.global_amax);
    let rows_layout = matches!(layout(shape, granularity, numel), Layout::Rows { .. });
    // The error histogram recomputes R′ slice by slice where it can, instead of
    // allocating (and faulting in) a whole R′ tensor just to bin it.
    let need_deq = opts.keep_dequantized || (opts.error_bins > 0 && !rows_layout);
    let mut deq = if need_deq { vec![0f32; numel] } else { Vec::new() };

    let slices: Vec<SliceOut> = if granularity == Granularity::Tensor {
        vec![per_tensor(fmt, values, scheme, need_deq.then_some(deq.as_mut_slice()))]
    } else {
        match layout(shape, granularity, numel) {
            Layout::Rows { row_len, group } => {
                run_rows(fmt, values, row_len, group, scheme, need_deq.then_some(deq.as_mut_slice()))
            }
            l @ (Layout::Strided { .. } | Layout::Blocks { .. }) => {
                run_gathered(fmt, values, l, scheme, need_deq.then_some(deq.as_mut_slice()))
            }
        }
    };

    let Summary { stats, params, slice_metrics, slice_ranges, metrics } = summarize(&slices);
    let (mn, mx) = stats.range();

    let histogram =
        (opts.weight_bins > 0).then(|| Histogram::of(values, f64::from(mn), f64::from(mx), opts.weight_bins));
    let error_histogram = (opts.error_bins > 0).then(|| {
        if need_deq {
            error_histogram(values, &deq, metrics.max_abs_err, opts.error_bins)
        } else {
            let Layout::Rows { row_len, group } = layout(shape, granularity, numel) else {
                unreachable!("need_deq covers the strided layout")
            };
            error_histogram_rows(fmt, values, row_len, group, &params, metrics.max_abs_err, opts.error_bins)
        }
    });
    let grid = tensor_grid(fmt, granularity, &params, &stats);
    Ok(QuantResult {
        scheme: *scheme,
        granularity,
        fallback,
        params,
        slice_metrics,
        slice_ranges,
        metrics,
        stats,
        histogram,
        error_histogram,
        grid,
        dequantized: opts.keep_dequantized.then_some(deq),
        work: fmt.work(),
        global_scale: fmt.global(),
        ggml_blocks: None,
    })
}

/// The granularity used for `shape` (with its fallback note), refusing a manual
/// [lo, hi] range anywhere but per tensor.
pub(crate) fn resolve_for(shape: &[usize], scheme: &Scheme) -> Result<(Granularity, Option<String>)> {
    let (granularity, fallback) = resolve(shape, scheme.granularity)?;
    if granularity != Granularity::Tensor
        && matches!(scheme.calibration, Calibration::Manual(ManualRange::Range { .. }))
    {
        return Err(Error::Scheme(
            "a manual [lo, hi] range is per-tensor; use a ratio for per-channel or per-group".into(),
        ));
    }
    Ok((granularity, fallback))
}

/// Per-tensor schemes: the dequantized levels inside the viewed range (data and clip range).
fn tensor_grid<F: NumberFormat>(
    fmt: F,
    granularity: Granularity,
    params: &[SliceParams],
    stats: &TensorStats,
) -> Vec<f32> {
    match params {
        [p] if granularity == Granularity::Tensor => {
            let (mn, mx) = stats.range();
            let (view_lo, view_hi) = (mn.min(p.lo), mx.max(p.hi));
            fmt.levels(p).into_iter().filter(|&l| l >= view_lo && l <= view_hi).collect()
        }
        _ => Vec::new(),
    }
}

/// A two-level format with its global scale set from the tensor's amax (or the
/// shared one); other formats unchanged.
pub(crate) fn with_tensor_global<F: NumberFormat>(fmt: F, values: &[f32], shared: Option<f32>) -> F {
    with_global_from(fmt, shared, || parallel_stats(values))
}

/// [`with_tensor_global`] with the tensor's statistics computed only if needed.
pub(crate) fn with_global_from<F: NumberFormat>(
    fmt: F,
    shared: Option<f32>,
    stats: impl FnOnce() -> TensorStats,
) -> F {
    if fmt.global_from_amax(1.0).is_none() {
        return fmt;
    }
    let amax = shared.unwrap_or_else(|| {
        let (lo, hi) = stats().range();
        (-lo).max(hi).max(0.0)
    });
    match fmt.global_from_amax(amax) {
        Some(gs) => fmt.with_global(gs),
        None => fmt,
    }
}

/// Slices that are runs of rows (per-channel on axis 0, per-group): each row
/// by one thread, its groups in order; R′ into `deq` when given.
fn run_rows<F: NumberFormat>(
    fmt: F,
    values: &[f32],
    row_len: usize,
    group: usize,
    scheme: &Scheme,
    deq: Option<&mut [f32]>,
) -> Vec<SliceOut> {
    // One output vector written in place: with small groups (NVFP4's 16) the
    // per-slice records outweigh the data, so they are not built twice.
    let per_row = row_len.div_ceil(group.max(1));
    let rows = values.len() / row_len.max(1);
    let empty = (fmt.params(0.0, 0.0, scheme.mapping), ErrorSums::default(), TensorStats::default());
    let mut slices: Vec<SliceOut> = vec![empty; rows * per_row];
    match deq {
        Some(deq) => values
            .par_chunks(row_len)
            .zip(deq.par_chunks_mut(row_len))
            .zip(slices.par_chunks_mut(per_row))
            .for_each(|((r, o), dst)| {
                for ((g, og), d) in r.chunks(group).zip(o.chunks_mut(group)).zip(dst) {
                    *d = run_slice(fmt, g, g, scheme, Some(og));
                }
            }),
        None => values.par_chunks(row_len).zip(slices.par_chunks_mut(per_row)).for_each(|(r, dst)| {
            for (g, d) in r.chunks(group).zip(dst) {
                *d = run_slice(fmt, g, g, scheme, None);
            }
        }),
    }
    slices
}

/// Slices that are not row runs (per-channel on an inner axis, 2-D blocks):
/// each gathered into a buffer, run, and its R′ scattered back into `deq`.
fn run_gathered<F: NumberFormat>(
    fmt: F,
    values: &[f32],
    l: Layout,
    scheme: &Scheme,
    deq: Option<&mut [f32]>,
) -> Vec<SliceOut> {
    let need_deq = deq.is_some();
    let gather = |c: usize| -> Vec<f32> {
        let mut buf = Vec::new();
        for r in slice_ranges(l, c) {
            buf.extend_from_slice(&values[r]);
        }
        buf
    };
    let results: Vec<(SliceOut, Vec<f32>)> = (0..l.slices())
        .into_par_iter()
        .map(|c| {
            let buf = gather(c);
            let mut out = if need_deq { vec![0f32; buf.len()] } else { Vec::new() };
            let r = run_slice(fmt, &buf[..], &buf, scheme, need_deq.then_some(out.as_mut_slice()));
            (r, out)
        })
        .collect();
    if let Some(deq) = deq {
        for (c, (_, out)) in results.iter().enumerate() {
            let mut at = 0;
            for r in slice_ranges(l, c) {
                deq[r.clone()].copy_from_slice(&out[at..at + r.len()]);
                at += r.len();
            }
        }
    }
    results.into_iter().map(|(r, _)| r).collect()
}

/// The contiguous runs of slice `c` of a strided or block layout.
fn slice_ranges(l: Layout, c: usize) -> Vec<std::ops::Range<usize>> {
    match l {
        Layout::Strided { outer, dim, inner } => {
            (0..outer).map(|o| (o * dim + c) * inner..(o * dim + c + 1) * inner).collect()
        }
        Layout::Blocks { .. } => l.tile(c).collect(),
        Layout::Rows { .. } => Vec::new(),
    }
}

/// The per-slice results folded into the tensor's.
struct Summary {
    stats: TensorStats,
    params: Vec<SliceParams>,
    slice_metrics: Vec<Metrics>,
    slice_ranges: Vec<(f32, f32)>,
    metrics: Metrics,
}

fn summarize(slices: &[SliceOut]) -> Summary {
    // The sums fold in slice order (the same bits on every run); the per-slice
    // lists are order-preserving parallel maps.
    let stats = slices.iter().fold(TensorStats::default(), |a, s| a.merge(&s.2));
    let total = slices.iter().fold(ErrorSums::default(), |a, s| a.merge(&s.1));
    Summary {
        stats,
        params: slices.par_iter().map(|s| s.0).collect(),
        slice_metrics: slices.par_iter().map(|s| s.1.metrics()).collect(),
        slice_ranges: slices.par_iter().map(|s| s.2.range()).collect(),
        metrics: total.metrics(),
    }
}

/// [`analyze`] straight from a tensor's stored bytes (any quantizable dtype, any
/// alignment), without a tensor-sized f32 buffer where the scheme allows: row-local
/// schemes (per-channel on axis 0, per-group) decode each row into a small
/// per-thread buffer and analyze it while it sits in cache; per-tensor min-max or
/// manual ranges (which need only the statistics) stream cache-sized chunks twice,
/// statistics then error sums. A two-level format's global amax is a streamed
/// statistics pass first. No histograms, no R′ (the report's and the sweep's
/// path). The numbers equal `analyze(decode(bytes))`, which every other case runs.
pub fn analyze_encoded(dtype: Dtype, bytes: &[u8], shape: &[usize], scheme: &Scheme) -> Result<QuantResult> {
    struct Run<'a>(Dtype, &'a [u8], &'a [usize], &'a Scheme, (Granularity, Option<String>));
    impl WithFormat for Run<'_> {
        type Out = QuantResult;
        fn run<F: NumberFormat>(self, f: F) -> QuantResult {
            encoded_with(f, self.0, self.1, self.2, self.3, self.4)
        }
    }
    let whole = || -> Result<QuantResult> {
        let values = crate::decode::decode(dtype, bytes).map_err(|r| Error::decode(None, r))?;
        analyze(&values, shape, scheme, &Options { work: WorkDtype::of(dtype), ..Options::default() })
    };
    scheme.validate()?;
    check_weight_only(scheme, shape)?;
    if scheme.format.ggml().is_some() {
        return whole();
    }
    let (granularity, fallback) = resolve_for(shape, scheme)?;
    let numel: usize = shape.iter().product();
    let size = dtype.bitsize() / 8;
    let row_local = matches!(granularity, Granularity::Channel { axis: 0 } | Granularity::Group { .. });
    // Below one chunk the per-tensor path is a single slice anyway.
    let chunked = granularity == Granularity::Tensor && range_only(&scheme.calibration) && numel > PAR_CHUNK;
    if !(row_local || chunked)
        || crate::decode::quantizable(dtype).is_err()
        || numel == 0
        || bytes.len() != numel * size
    {
        return whole();
    }
    let resolved = (granularity, fallback);
    dispatch_in(scheme.format, WorkDtype::of(dtype), Run(dtype, bytes, shape, scheme, resolved))
}

fn encoded_with<F: NumberFormat>(
    fmt: F,
    dtype: Dtype,
    bytes: &[u8],
    shape: &[usize],
    scheme: &Scheme,
    (granularity, fallback): (Granularity, Option<String>),
) -> QuantResult {
    let numel: usize = shape.iter().product();
    let size = dtype.bitsize() / 8;
    let fmt = with_global_from(fmt, None, || crate::slicing::parallel_stats_encoded(dtype, bytes));
    let slices: Vec<SliceOut> = match layout(shape, granularity, numel) {
        _ if granularity == Granularity::Tensor => vec![encoded_per_tensor(fmt, dtype, bytes, scheme)],
        Layout::Rows { row_len, group } => {
            let per_row = row_len.div_ceil(group.max(1));
            let empty = (fmt.params(0.0, 0.0, scheme.mapping), ErrorSums::default(), TensorStats::default());
            let mut slices: Vec<SliceOut> = vec![empty; numel / row_len * per_row];
            // F32 under a range-only calibration is read in place, at any alignment.
            let in_place = dtype == Dtype::F32 && range_only(&scheme.calibration);
            bytes.par_chunks(row_len * size).zip(slices.par_chunks_mut(per_row)).for_each_init(
                Vec::new,
                |buf: &mut Vec<f32>, (rb, dst)| {
                    if in_place {
                        for (g, d) in rb.chunks(group * size).zip(dst) {
                            *d = run_slice(fmt, LeF32(g), &[], scheme, None);
                        }
                        return;
                    }
                    crate::decode::decode_chunk_into(dtype, rb, buf);
                    for (g, d) in buf.chunks(group).zip(dst) {
                        *d = run_slice(fmt, g, g, scheme, None);
                    }
                },
            );
            slices
        }
        Layout::Strided { .. } | Layout::Blocks { .. } => unreachable!("analyze_encoded checked row-local"),
    };
    let Summary { stats, params, slice_metrics, slice_ranges, metrics } = summarize(&slices);
    let grid = tensor_grid(fmt, granularity, &params, &stats);
    QuantResult {
        scheme: *scheme,
        granularity,
        fallback,
        params,
        slice_metrics,
        slice_ranges,
        metrics,
        stats,
        histogram: None,
        error_histogram: None,
        grid,
        dequantized: None,
        work: fmt.work(),
        global_scale: fmt.global(),
        ggml_blocks: None,
    }
}

/// [`per_tensor_range_only`] from the stored bytes: the same `PAR_CHUNK` chunks
/// read twice (min/max, then error sums with ΣR, ΣR²): F32 in place at any
/// alignment, other dtypes decoded into per-thread buffers.
fn encoded_per_tensor<F: NumberFormat>(fmt: F, dtype: Dtype, bytes: &[u8], scheme: &Scheme) -> SliceOut {
    let chunk = PAR_CHUNK * dtype.bitsize() / 8;
    // Min-max and manual ranges never read the values themselves.
    let params = |ranges: &[TensorStats]| {
        let range = ranges.iter().fold(TensorStats::default(), TensorStats::merge);
        slice_params(fmt, &[], &range, scheme.mapping, &scheme.calibration)
    };
    let (p, parts): (SliceParams, Vec<(ErrorSums, TensorStats)>) = if dtype == Dtype::F32 {
        let ranges: Vec<TensorStats> =
            bytes.par_chunks(chunk).map(|b| TensorStats::range_of(LeF32(b))).collect();
        let p = params(&ranges);
        (p, bytes.par_chunks(chunk).zip(&ranges).map(|(b, st)| chunk_sums(fmt, LeF32(b), &p, st)).collect())
    } else {
        let ranges: Vec<TensorStats> = bytes
            .par_chunks(chunk)
            .map_init(Vec::new, |buf: &mut Vec<f32>, b| {
                crate::decode::decode_chunk_into(dtype, b, buf);
                TensorStats::range_of(&buf[..])
            })
            .collect();
        let p = params(&ranges);
        let parts = bytes.par_chunks(chunk).zip(&ranges).map_init(Vec::new, |buf: &mut Vec<f32>, (b, st)| {
            crate::decode::decode_chunk_into(dtype, b, buf);
            chunk_sums(fmt, &buf[..], &p, st)
        });
        (p, parts.collect())
    };
    merge_parts(p, &parts)
}

/// Whether `calibration` reads only a slice's range, never its values.
fn range_only(calibration: &Calibration) -> bool {
    matches!(calibration, Calibration::MinMax | Calibration::Manual(_))
}

/// One chunk's error sums, with its ΣR, ΣR² added to its statistics `st`.
fn chunk_sums<F: NumberFormat>(
    fmt: F,
    xs: impl Source,
    p: &SliceParams,
    st: &TensorStats,
) -> (ErrorSums, TensorStats) {
    let mut st = *st;
    (error_sums_with_stats::<F, false>(fmt, xs, p, &mut [], &mut st), st)
}

/// One stored tensor under `scheme`, for the single-tensor paths (`report`, the
/// one-scheme sweep): F32 read in place from the map when aligned, everything
/// else through [`analyze_encoded`], so no tensor-sized buffer is decoded where
/// the scheme allows. Errors name the file and the tensor.
pub fn analyze_stored(ckpt: &Checkpoint, info: &TensorInfo, scheme: &Scheme) -> Result<QuantResult> {
    let opts = Options { work: WorkDtype::of(info.dtype), ..Options::default() };
    ckpt.prefetch(info);
    let r = match ckpt.f32_view(info) {
        Some(values) => analyze(values, &info.shape, scheme, &opts),
        None => analyze_encoded(info.dtype, ckpt.bytes(info), &info.shape, scheme),
    };
    r.map_err(|e| match e {
        Error::Decode { file: None, tensor: None, reason } => Error::Decode {
            file: Some(ckpt.shard_path(info).to_path_buf()),
            tensor: Some(info.name.clone()),
            reason,
        },
        e => e,
    })
}

/// A single slice over the whole tensor: stats and calibration see all of it, the
/// error pass runs on parallel chunks.
fn per_tensor<F: NumberFormat>(fmt: F, values: &[f32], scheme: &Scheme, out: Option<&mut [f32]>) -> SliceOut {
    if values.len() <= PAR_CHUNK {
        return run_slice(fmt, values, values, scheme, out);
    }
    per_tensor_range_only(fmt, values, scheme, out)
}

/// [`per_tensor`] past one chunk: a min/max pass per chunk (all any calibration
/// reads of the statistics), then the error pass that also sums ΣR, ΣR² per chunk. Chunk statistics merge in
/// chunk order, as [`parallel_stats`] merges them: the same bits.
fn per_tensor_range_only<F: NumberFormat>(
    fmt: F,
    values: &[f32],
    scheme: &Scheme,
    out: Option<&mut [f32]>,
) -> SliceOut {
    let ranges: Vec<TensorStats> = values.par_chunks(PAR_CHUNK).map(TensorStats::range_of).collect();
    let range = ranges.iter().fold(TensorStats::default(), TensorStats::merge);
    let p = slice_params(fmt, values, &range, scheme.mapping, &scheme.calibration);
    let parts: Vec<(ErrorSums, TensorStats)> = match out {
        Some(o) => values
            .par_chunks(PAR_CHUNK)
            .zip(o.par_chunks_mut(PAR_CHUNK))
            .zip(ranges.par_iter())
            .map(|((c, oc), st)| {
                let mut st = *st;
                (error_sums_with_stats::<F, true>(fmt, c, &p, oc, &mut st), st)
            })
            .collect(),
        None => values.par_chunks(PAR_CHUNK).zip(&ranges).map(|(c, st)| chunk_sums(fmt, c, &p, st)).collect(),
    };
    merge_parts(p, &parts)
}

/// Per-chunk (error sums, statistics) of one per-tensor slice, merged in chunk order.
fn merge_parts(p: SliceParams, parts: &[(ErrorSums, TensorStats)]) -> SliceOut {
    let stats = parts.iter().fold(TensorStats::default(), |a, s| a.merge(&s.1));
    let sums = parts.iter().fold(ErrorSums::default(), |a, s| a.merge(&s.0));
    (p, sums.with_signal(stats.sum_sq), stats)
}

/// The R − R′ histogram, recomputing R′ with each element's slice parameters
/// (a row-major `[rows, row_len]` view cut into groups), in parallel chunks.
fn error_histogram_rows<F: NumberFormat>(
    fmt: F,
    values: &[f32],
    row_len: usize,
    group: usize,
    params: &[SliceParams],
    max_abs: f64,
    bins: usize,
) -> Histogram {
    let half = if max_abs > 0.0 { max_abs } else { f64::from(f32::EPSILON) };
    let (lo, hi) = (-half, half);
    let inv = bins as f64 / (hi - lo);
    let per_row = row_len.div_ceil(group);
    let counts = values
        .par_chunks(PAR_CHUNK)
        .enumerate()
        .map(|(ci, chunk)| {
            let mut binner = Binner::new(bins, lo, inv);
            let mut k = ci * PAR_CHUNK;
            let mut rest = chunk;
            while !rest.is_empty() {
                // The run of elements that share k's slice.
                let col = k % row_len;
                let run = (group - col % group).min(row_len - col).min(rest.len());
                let p = &params[(k / row_len) * per_row + col / group];
                // 8 lanes at a time through the format's vector path (bit-identical
                // to the scalar one); a non-finite R gives a non-finite error,
                // which the binner skips.
                let xs = &rest[..run];
                let blocks = xs.chunks_exact(8);
                let tail = blocks.remainder();
                for b in blocks {
                    let x = wide::f32x8::new(b.try_into().unwrap_or_default());
                    binner.add8(x - fmt.fake_quant_x8(x, p));
                }
                let errors: Vec<f32> = tail.iter().map(|&x| x - fmt.fake_quant(x, p)).collect();
                binner.add(&errors);
                rest = &rest[run..];
                k += run;
            }
            let mut c = vec![0u64; bins];
            binner.finish(&mut c);
            c
        })
        .reduce(|| vec![0; bins], add_counts);
    Histogram { lo, hi, counts }
}

fn error_histogram(values: &[f32], deq: &[f32], max_abs: f64, bins: usize) -> Histogram {
    let errors: Vec<f32> = values
        .par_iter()
        .zip(deq.par_iter())
        .map(|(&x, &q)| if x.is_finite() { x - q } else { f32::NAN })
        .collect();
    let half = if max_abs > 0.0 { max_abs } else { f64::from(f32::EPSILON) };
    Histogram::of(&errors, -half, half, bins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::IntFormat;
    use crate::scheme::FormatKind;

    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * (1.0 + (i % 13) as f32)).collect()
    }

    fn scheme(g: Granularity, c: Calibration) -> Scheme {
        Scheme { granularity: g, calibration: c, ..Scheme::default() }
    }

    /// A llama.cpp type measured row by row from its blocks gives what
    /// measuring the whole decoded R′ gives, bit for bit (histograms too).
    #[test]
    fn ggml_blocks_measured_row_by_row_equal_the_decoded_tensor() {
        let (rows, cols) = (6, 512);
        let mut v = values(rows * cols);
        v[5] = f32::NAN;
        let finite: Vec<f32> = v.iter().map(|x| if x.is_finite() { *x } else { 0.0 }).collect();
        for name in ["Q4_K", "Q6_K", "Q5_0", "IQ4_XS"] {
            let ty = crate::ggml::GgmlType::from_name(name).unwrap();
            let opts = Options { weight_bins: 64, error_bins: 48, ..Options::default() };
            let kept = Options { keep_dequantized: true, ..opts };
            // R′ from the finite copy (ggml refuses NaN), measured against R with its NaN.
            let bytes = crate::dequant::ggml::quantize_rows(ty, &finite, cols, None).unwrap();
            let params = crate::dequant::ggml::params(ty, &bytes).unwrap();
            let m = crate::measure::measure_blocks(
                &v,
                cols,
                ty,
                &params,
                crate::measure::Prime::Blocks(ty, &bytes),
            );
            let d = crate::dequant::ggml::decode(ty, &bytes, cols, Vec::new()).unwrap();
            let whole = crate::measure::measure(&v, &d);
            assert_eq!(format!("{:?}", m.metrics), format!("{:?}", whole.metrics), "{name}");
            assert_eq!(
                format!("{:?}", (m.slice_metrics, m.ranges)),
                format!("{:?}", (whole.slice_metrics, whole.ranges)),
                "{name}"
            );
            let a = analyze_ggml(&finite, &[rows, cols], ty, None, &opts).unwrap();
            let b = analyze_ggml(&finite, &[rows, cols], ty, None, &kept).unwrap();
            assert_eq!(format!("{:?}", a.metrics), format!("{:?}", b.metrics), "{name}");
            assert_eq!(a.slice_metrics.len(), b.slice_metrics.len());
            assert_eq!(format!("{:?}", a.slice_metrics), format!("{:?}", b.slice_metrics), "{name}");
            assert_eq!((&a.histogram, &a.error_histogram), (&b.histogram, &b.error_histogram), "{name}");
            assert_eq!(a.error_histogram.as_ref().unwrap().counts.iter().sum::<u64>(), (rows * cols) as u64);
            assert!(a.dequantized.is_none() && b.dequantized.is_some());
        }
    }

    #[test]
    fn channel_axis_1_equals_axis_0_of_the_transpose() {
        let (r, c) = (6, 10);
        let v = values(r * c);
        let t: Vec<f32> = (0..c * r).map(|k| v[(k % r) * c + k / r]).collect();
        let a = analyze(
            &v,
            &[r, c],
            &scheme(Granularity::Channel { axis: 1 }, Calibration::MinMax),
            &Options::default(),
        )
        .unwrap();
        let b = analyze(
            &t,
            &[c, r],
            &scheme(Granularity::Channel { axis: 0 }, Calibration::MinMax),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(a.params, b.params);
        assert_eq!(a.params.len(), c);
        assert!((a.metrics.mse - b.metrics.mse).abs() < 1e-15);
    }

    #[test]
    fn groups_cut_each_row_and_the_last_is_short() {
        let v = values(20);
        let opts = Options { keep_dequantized: true, ..Options::default() };
        let r = analyze(&v, &[2, 10], &scheme(Granularity::Group { size: 4 }, Calibration::MinMax), &opts)
            .unwrap();
        assert_eq!(r.params.len(), 6);
        // The 3rd group of row 0 is elements 8..10 only.
        let last = &v[8..10];
        let amax = last.iter().fold(0f32, |a, x| a.max(x.abs()));
        assert_eq!(r.params[2].hi, amax);
        let deq = r.dequantized.unwrap();
        let f = IntFormat::new(8).unwrap();
        for (k, (&x, &q)) in v.iter().zip(&deq).enumerate() {
            let slice = (k / 10) * 3 + (k % 10) / 4;
            assert_eq!(q, f.fake_quant(x, &r.params[slice]), "element {k}");
        }
    }

    #[test]
    fn one_d_falls_back_and_manual_range_needs_per_tensor() {
        let v = values(50);
        let r = analyze(&v, &[50], &Scheme::default(), &Options::default()).unwrap();
        assert_eq!(r.granularity, Granularity::Tensor);
        assert!(r.fallback.unwrap().contains("1-D"));
        let manual = Calibration::Manual(ManualRange::Range { lo: -0.1, hi: 0.1 });
        assert!(
            analyze(&v, &[5, 10], &scheme(Granularity::Channel { axis: 0 }, manual), &Options::default())
                .is_err()
        );
        let t = analyze(&v, &[5, 10], &scheme(Granularity::Tensor, manual), &Options::default()).unwrap();
        assert_eq!((t.params[0].lo, t.params[0].hi), (-0.1, 0.1));
        assert!(t.metrics.clipped_fraction > 0.5);
        assert!(
            analyze(
                &v,
                &[5, 10],
                &scheme(Granularity::Channel { axis: 2 }, Calibration::MinMax),
                &Options::default()
            )
            .is_err()
        );
        assert!(analyze(&v, &[5, 11], &Scheme::default(), &Options::default()).is_err());
    }

    #[test]
    fn histograms_and_grid_cover_the_tensor() {
        let mut v = values(100_000);
        v[17] = f32::NAN;
        let opts = Options { weight_bins: 256, error_bins: 64, ..Options::default() };
        let r = analyze(&v, &[100, 1000], &scheme(Granularity::Tensor, Calibration::MinMax), &opts).unwrap();
        let h = r.histogram.unwrap();
        assert_eq!(h.counts.len(), 256);
        assert_eq!(h.counts.iter().sum::<u64>(), 99_999);
        assert_eq!((h.lo, h.hi), (f64::from(r.stats.min), f64::from(r.stats.max)));
        let e = r.error_histogram.unwrap();
        assert_eq!(e.counts.iter().sum::<u64>(), 99_999);
        assert!(e.hi >= r.metrics.max_abs_err);
        assert_eq!(r.metrics.nonfinite, 1);
        // Symmetric INT8 has 256 levels, 0 among them; all inside the view.
        assert!(r.grid.len() <= 256 && r.grid.len() > 250, "{}", r.grid.len());
        assert!(r.grid.contains(&0.0));
        assert!(r.dequantized.is_none());
    }

    #[test]
    fn analysis_from_encoded_rows_equals_decode_then_analyze() {
        let v = values(96 * 300);
        for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32] {
            let bytes = crate::decode::encode(dtype, &v).unwrap();
            let decoded = crate::decode::decode(dtype, &bytes).unwrap();
            for s in [
                "int8:channel:minmax",
                "int4:group64:mse:asym",
                "e4m3:channel:entropy",
                "int8:tensor:p99",
                "e5m2:group128:minmax",
            ] {
                let s: Scheme = s.parse().unwrap();
                for shape in [vec![96, 300], vec![96, 3, 100]] {
                    let a = analyze_encoded(dtype, &bytes, &shape, &s).unwrap();
                    let opts = Options { work: WorkDtype::of(dtype), ..Options::default() };
                    let b = analyze(&decoded, &shape, &s, &opts).unwrap();
                    assert_eq!(a.params, b.params, "{dtype:?} {s}");
                    assert_eq!(a.metrics, b.metrics, "{dtype:?} {s}");
                    assert_eq!(a.slice_metrics, b.slice_metrics);
                    assert_eq!(a.stats, b.stats);
                }
            }
        }
    }

    #[test]
    fn stored_tensors_at_any_alignment_equal_the_decoded_analysis() {
        // More than one PAR_CHUNK, so per-tensor schemes stream in several chunks.
        let (rows, cols) = (64, 1100);
        let mut v = values(rows * cols);
        v[5000] = f32::NAN;
        let manual = Scheme {
            granularity: Granularity::Tensor,
            calibration: Calibration::Manual(ManualRange::Range { lo: -0.5, hi: 0.75 }),
            ..Scheme::default()
        };
        let mut schemes: Vec<Scheme> = [
            "int8:channel:minmax",
            "int8:tensor:minmax",
            "int8:group128:minmax",
            "int4:group64:minmax:asym",
            "e4m3:tensor:ratio0.8",
            "int4:group64:mse:asym",
            "int8:tensor:mse",
            "nvfp4",
            "e4m3:block128:minmax",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        schemes.push(manual);
        for (dtype, name) in [(Dtype::F32, "F32"), (Dtype::BF16, "BF16")] {
            let data = crate::decode::encode(dtype, &v).unwrap();
            let decoded = crate::decode::decode(dtype, &data).unwrap();
            for pad in [4, 1, 2, 3] {
                let ckpt = Checkpoint::from_bytes(
                    "t.safetensors",
                    crate::checkpoint::padded_file(name, &[rows, cols], &data, pad),
                )
                .unwrap();
                let info = ckpt.tensor("w").unwrap();
                assert_eq!(ckpt.f32_view(info).is_some(), dtype == Dtype::F32 && pad == 4);
                for s in &schemes {
                    let a = analyze_stored(&ckpt, info, s).unwrap();
                    let opts = Options { work: WorkDtype::of(dtype), ..Options::default() };
                    let b = analyze(&decoded, &[rows, cols], s, &opts).unwrap();
                    assert_eq!(a.params, b.params, "{name} pad {pad} {s}");
                    assert_eq!(a.metrics, b.metrics, "{name} pad {pad} {s}");
                    assert_eq!(a.slice_metrics, b.slice_metrics, "{name} pad {pad} {s}");
                    assert_eq!(a.stats, b.stats, "{name} pad {pad} {s}");
                    assert_eq!(a.grid, b.grid, "{name} pad {pad} {s}");
                    assert_eq!(a.global_scale, b.global_scale, "{name} pad {pad} {s}");
                    assert_eq!(a.metrics.nonfinite, 1);
                }
            }
        }
    }

    #[test]
    fn a_one_d_tensor_streams_per_tensor_with_its_fallback_note() {
        let v = values(PAR_CHUNK * 2 + 13);
        let bytes = crate::decode::encode(Dtype::BF16, &v).unwrap();
        let s: Scheme = "int8:channel:minmax".parse().unwrap();
        let a = analyze_encoded(Dtype::BF16, &bytes, &[v.len()], &s).unwrap();
        let decoded = crate::decode::decode(Dtype::BF16, &bytes).unwrap();
        let opts = Options { work: WorkDtype::BF16, ..Options::default() };
        let b = analyze(&decoded, &[v.len()], &s, &opts).unwrap();
        assert_eq!(a.granularity, Granularity::Tensor);
        assert_eq!(a.fallback, b.fallback);
        assert!(a.fallback.is_some());
        assert_eq!((a.params, a.metrics), (b.params, b.metrics));
    }

    #[test]
    fn a_manual_range_is_refused_per_channel_from_bytes_too() {
        let v = values(64 * 100);
        let bytes = crate::decode::encode(Dtype::BF16, &v).unwrap();
        let s = Scheme {
            calibration: Calibration::Manual(ManualRange::Range { lo: -0.1, hi: 0.1 }),
            ..Scheme::default()
        };
        let e = analyze_encoded(Dtype::BF16, &bytes, &[64, 100], &s).unwrap_err();
        assert!(e.to_string().contains("manual"), "{e}");
    }

    #[test]
    fn the_recomputed_error_histogram_equals_the_one_from_r_prime() {
        let v = values(91 * 3297);
        for (shape, g) in [
            (vec![91 * 3297], Granularity::Tensor),
            (vec![91, 3297], Granularity::Channel { axis: 0 }),
            (vec![91, 3297], Granularity::Group { size: 128 }),
            (vec![7, 13, 3297], Granularity::Group { size: 100 }),
        ] {
            for format in [FormatKind::INT8, FormatKind::E4M3] {
                let s = Scheme { format, ..scheme(g, Calibration::MinMax) };
                let fast =
                    analyze(&v, &shape, &s, &Options { error_bins: 77, ..Options::default() }).unwrap();
                let full = Options { error_bins: 77, keep_dequantized: true, ..Options::default() };
                let slow = analyze(&v, &shape, &s, &full).unwrap();
                assert_eq!(fast.error_histogram, slow.error_histogram, "{s} {shape:?}");
                assert!(fast.dequantized.is_none());
            }
        }
    }

    #[test]
    fn per_tensor_parallel_chunks_equal_a_single_pass() {
        let v = values(300_000);
        let s = scheme(Granularity::Tensor, Calibration::MinMax);
        let r = analyze(&v, &[300, 1000], &s, &Options::default()).unwrap();
        let f = IntFormat::new(8).unwrap();
        let p = f.params(r.stats.min, r.stats.max, Mapping::Symmetric);
        assert_eq!(r.params[0], p);
        let stats = TensorStats::of(&v);
        let single =
            crate::metrics::error_sums::<_, false>(f, &v, &p, &mut []).with_signal(stats.sum_sq).metrics();
        assert!((r.metrics.mse - single.mse).abs() <= 1e-12 * single.mse);
        assert_eq!(r.metrics.max_abs_err, single.max_abs_err);
    }

    #[test]
    fn every_format_and_calibration_runs_on_every_granularity() {
        let v = values(4 * 300);
        for format in [FormatKind::INT8, FormatKind::Int(4), FormatKind::E4M3, FormatKind::E5M2] {
            for mapping in [Mapping::Symmetric, Mapping::Asymmetric] {
                for g in
                    [Granularity::Tensor, Granularity::Channel { axis: 0 }, Granularity::Group { size: 64 }]
                {
                    for c in [
                        Calibration::MinMax,
                        Calibration::Percentile { p: 99.0 },
                        Calibration::Mse,
                        Calibration::Entropy,
                    ] {
                        let s = Scheme { format, mapping, granularity: g, calibration: c };
                        let r = analyze(&v, &[4, 300], &s, &Options::default()).unwrap();
                        assert!(r.metrics.mse.is_finite() && r.metrics.mse > 0.0, "{s}");
                        assert!(r.metrics.sqnr_db > 5.0, "{s}: {}", r.metrics.sqnr_db);
                    }
                }
            }
        }
    }
}
