//! What the app shows of a quantized checkpoint's layer: alone (its R′ on the
//! stored grid, which of the format's codes it uses, its slices' scales), or
//! against its original (a [`QuantResult`] whose R′ is the published one, so
//! every panel and metric that shows quantscope's own schemes shows the
//! published quantization the same way). docs/numerics.md, "Reading quantized
//! checkpoints".

use rayon::prelude::*;

use super::{Layer, QuantizedModel, StoredScheme};
use crate::analyze::{Histogram, QuantResult};
use crate::dequant::Decoded;
use crate::error::{Error, Result};
use crate::format::{NumberFormat, SliceParams, WithFormat, dispatch_in};
use crate::metrics::TensorStats;
use crate::scheme::{FormatKind, Granularity, Scheme};

/// One of the format's codes and how many elements use it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CodeCount {
    /// The stored byte (INT: the signed code as i8; FP: its bits).
    pub byte: u8,
    /// The code as a number: q for INT, the element value for FP formats.
    pub value: f32,
    pub count: u64,
}

/// A quantized layer opened without its original.
#[derive(Clone, Debug)]
pub struct StoredView {
    pub name: String,
    pub shape: Vec<usize>,
    pub stored: StoredScheme,
    pub format: FormatKind,
    /// R′ over its own range.
    pub histogram: Histogram,
    pub stats: TensorStats,
    /// Every code the format can store, in code-value order, with its use count.
    pub codes: Vec<CodeCount>,
    /// Each slice's parameters (S, Z, representable range), in slice order.
    pub params: Vec<SliceParams>,
    pub work: crate::format::WorkDtype,
    pub global_scale: Option<f32>,
}

impl StoredView {
    /// How many of the format's codes the layer uses.
    pub fn codes_used(&self) -> usize {
        self.codes.iter().filter(|c| c.count > 0).count()
    }
}

/// The published quantization of one layer against its original.
#[derive(Clone, Debug)]
pub struct Published {
    pub stored: StoredScheme,
    /// R against the published R′: metrics, per-slice metrics, error histogram.
    pub result: QuantResult,
    /// The published R′ over the same bins as `result.histogram` (R).
    pub dequantized_histogram: Option<Histogram>,
}

/// The scheme a published layer is shown under: its RTN equivalent, or its
/// format at its granularity when quantscope has no such short form.
fn shown_scheme(layer: &Layer) -> Scheme {
    layer.stored.rtn_equivalent().unwrap_or(Scheme { format: layer.kind, ..Scheme::default() })
}

fn granularity(layer: &Layer) -> Granularity {
    match (layer.stored.granularity.as_str(), layer.stored.group_size, layer.stored.block) {
        ("channel", ..) => Granularity::Channel { axis: 0 },
        ("group", Some(size), _) => Granularity::Group { size },
        ("block", _, Some([b, _])) => Granularity::Block { size: b },
        _ => Granularity::Tensor,
    }
}

/// Opens `layer` alone: R′'s histogram (`bins` bins), its code use and its slices.
pub fn stored_view(q: &QuantizedModel, layer: &Layer, bins: usize) -> Result<StoredView> {
    let d = q.decode(layer)?;
    let stats = TensorStats::of(&d.values);
    let (lo, hi) = stats.range();
    let histogram = Histogram::of(&d.values, f64::from(lo), f64::from(hi), bins.max(1));
    let codes = code_counts(layer.kind, &d)
        .ok_or_else(|| tensor_error(q, layer, "its format has no code table".into()))?;
    Ok(StoredView {
        name: layer.name.clone(),
        shape: layer.shape.clone(),
        stored: layer.stored.clone(),
        format: layer.kind,
        histogram,
        stats,
        codes,
        params: d.params,
        work: d.work,
        global_scale: d.global,
    })
}

fn tensor_error(q: &QuantizedModel, layer: &Layer, reason: String) -> Error {
    Error::Tensor { path: q.ckpt.path.clone(), tensor: layer.name.clone(), reason }
}

/// Counts each stored code. R′ lies on its slice's grid, so quantizing it again
/// under the same parameters gives back the stored code.
fn code_counts(kind: FormatKind, d: &Decoded) -> Option<Vec<CodeCount>> {
    struct Count<'a>(&'a Decoded);
    impl WithFormat for Count<'_> {
        type Out = Vec<CodeCount>;
        fn run<F: NumberFormat>(self, f: F) -> Vec<CodeCount> {
            let d = self.0;
            let f = d.global.map_or(f, |gs| f.with_global(gs));
            let cols = d.cols.max(1);
            let counts = d
                .values
                .par_chunks(cols)
                .enumerate()
                .fold(
                    || vec![0u64; 256],
                    |mut acc, (r, row)| {
                        for (c, &x) in row.iter().enumerate() {
                            let p = &d.params[d.map.index(r, c, cols)];
                            acc[usize::from(f.code_to_byte(f.quantize(x, p)))] += 1;
                        }
                        acc
                    },
                )
                .reduce(|| vec![0u64; 256], |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect());
            let mut out: Vec<CodeCount> = f
                .storable_codes()
                .into_iter()
                .map(|byte| CodeCount {
                    byte,
                    value: f.code_value(f.code_from_byte(byte)),
                    count: counts[usize::from(byte)],
                })
                .filter(|c| c.value.is_finite())
                .collect();
            out.sort_by(|a, b| a.value.total_cmp(&b.value));
            out
        }
    }
    dispatch_in(kind, d.work, Count(d)).ok()
}

/// R (`values`, the original in the layer's `[out, in]` view) against the
/// published R′: the metrics `quantscope diff` gives, per slice too, and the
/// histograms (`bins` for R and R′, `error_bins` for R − R′).
pub fn published(
    q: &QuantizedModel,
    layer: &Layer,
    values: &[f32],
    bins: usize,
    error_bins: usize,
) -> Result<Published> {
    let d = q.decode(layer)?;
    if d.values.len() != values.len() {
        let reason = format!("{} stored values against {} in the original", d.values.len(), values.len());
        return Err(tensor_error(q, layer, reason));
    }
    let (result, dequantized_histogram) =
        crate::analyze::against(values, d, shown_scheme(layer), granularity(layer), bins, error_bins);
    Ok(Published { stored: layer.stored.clone(), result, dequantized_histogram })
}
