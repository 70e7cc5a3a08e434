//! A published quantization measured against its original (`quantscope diff`):
//! layers paired by the original weight's name (the quantized checkpoint's
//! `weight_packed`, `qweight`, … name it), the stored R′ compared with R under
//! the same metrics as `report`, and beside it what quantscope's own schemes
//! give on the same original (by default the stored scheme's round-to-nearest
//! min-max equivalent: "did GPTQ beat RTN here?"). Anything unpaired is
//! listed with the reason; the rest still compares.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::analyze::{Options, analyze};
use crate::checkpoint::Checkpoint;
use crate::format::WorkDtype;
use crate::metrics::Metrics;
use crate::quantized::{Layer, QuantizedModel, StoredScheme};
use crate::rank::Item;
use crate::rank::SqnrSummary;
use crate::scheme::Scheme;

/// One paired layer.
#[derive(Clone, Debug, Serialize)]
pub struct TensorDiff {
    /// The original's weight name.
    pub name: String,
    pub shape: Vec<usize>,
    pub stored: StoredScheme,
    /// The published R′ against the original R.
    pub metrics: Metrics,
    /// quantscope's schemes on the same original, by short form (an error
    /// message where a scheme does not apply).
    #[serde(serialize_with = "scheme_cells")]
    pub schemes: BTreeMap<String, Result<Metrics, String>>,
}

fn scheme_cells<S: serde::Serializer>(
    cells: &BTreeMap<String, Result<Metrics, String>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    #[derive(Serialize)]
    struct Failed<'a> {
        error: &'a str,
    }
    let mut m = s.serialize_map(Some(cells.len()))?;
    for (k, v) in cells {
        match v {
            Ok(metrics) => m.serialize_entry(k, metrics)?,
            Err(e) => m.serialize_entry(k, &Failed { error: e })?,
        }
    }
    m.end()
}

/// A layer that could not be compared, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unpaired {
    pub name: String,
    pub reason: String,
}

/// One column's SQNR (the published R′, or one scheme) over the paired layers
/// and the weights the quantized checkpoint stores unquantized where a
/// quantscope save would quantize them (kept: no noise).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ColumnTotals {
    pub layers: usize,
    pub params: u64,
    /// Of which weights kept unquantized (counted at no noise).
    pub kept_layers: usize,
    pub model_sqnr_db: Option<f64>,
    pub mean_layer_sqnr_db: Option<f64>,
    pub worst_sqnr_db: Option<f64>,
    pub worst_layer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Totals {
    pub published: ColumnTotals,
    pub schemes: BTreeMap<String, ColumnTotals>,
}

/// The whole comparison (`quantscope diff`'s JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Diff {
    pub original: String,
    pub quantized: String,
    /// The quantized checkpoint's `quant_method` ("inferred" without a config).
    pub method: String,
    pub tensors: Vec<TensorDiff>,
    pub unpaired: Vec<Unpaired>,
    pub totals: Totals,
}

/// What to compare.
#[derive(Clone, Debug, Default)]
pub struct DiffOptions {
    /// Extra quantscope schemes for every layer (besides each layer's own RTN).
    pub compare: Vec<Scheme>,
    /// Leave out each layer's RTN equivalent.
    pub no_rtn: bool,
}

/// The published R′ of `layer` against R (`values`, the original in the
/// layer's `[out, in]` view).
pub fn published_metrics(q: &QuantizedModel, layer: &Layer, values: &[f32]) -> crate::Result<Metrics> {
    published_metrics_reusing(q, layer, values, &mut Vec::new())
}

/// [`published_metrics`] with R′ decoded into `buf`, kept from layer to layer
/// (a fresh R′ buffer per layer costs more in page faults than the decoding).
pub fn published_metrics_reusing(
    q: &QuantizedModel,
    layer: &Layer,
    values: &[f32],
    buf: &mut Vec<f32>,
) -> crate::Result<Metrics> {
    let d = q.decode_reusing(layer, std::mem::take(buf))?;
    let m = crate::measure::metrics_against(values, &d);
    *buf = d.values;
    Ok(m)
}

/// Why a layer cannot be paired with the original's tensor, if it cannot.
fn pair_problem(orig: &Checkpoint, layer: &Layer) -> Option<String> {
    let Ok(t) = orig.tensor(&layer.name) else {
        return Some("not in the original".into());
    };
    let rest: usize = t.shape.iter().skip(1).product();
    if t.shape.first() != layer.shape.first() || rest != layer.shape[1] {
        return Some(format!("shape {:?} in the original, {:?} stored", t.shape, layer.shape));
    }
    t.not_quantizable.clone()
}

/// Which quantized layers (whose names `keep` accepts) pair with a tensor of
/// the original by name and shape, and why every other one, on either side,
/// does not.
pub fn pairing<'q>(
    orig: &Checkpoint,
    q: &'q QuantizedModel,
    keep: &dyn Fn(&str) -> bool,
) -> (Vec<&'q Layer>, Vec<Unpaired>) {
    let mut unpaired: Vec<Unpaired> = q
        .failed
        .iter()
        .filter(|f| keep(&f.tensor))
        .map(|f| Unpaired { name: f.tensor.clone(), reason: f.reason.clone() })
        .collect();
    let mut paired = Vec::new();
    for layer in q.layers.iter().filter(|l| keep(&l.name)) {
        match pair_problem(orig, layer) {
            Some(reason) => unpaired.push(Unpaired { name: layer.name.clone(), reason }),
            None => paired.push(layer),
        }
    }
    // Weights the original has that the quantized checkpoint does not quantize.
    for t in orig.tensors().iter().filter(|t| keep(&t.name) && t.shape.len() >= 2 && t.is_quantizable()) {
        if t.name.ends_with(".weight")
            && q.layer(&t.name).is_none()
            && !q.failed.iter().any(|f| f.tensor == t.name)
        {
            let reason = if q.plain.contains(&t.name) {
                "stored unquantized"
            } else {
                "not in the quantized checkpoint"
            };
            unpaired.push(Unpaired { name: t.name.clone(), reason: reason.into() });
        }
    }
    (paired, unpaired)
}

/// Compares every quantized layer whose name `keep` accepts with the original.
/// `progress(done, total)` is called after each paired layer.
pub fn diff(
    orig: &Checkpoint,
    q: &QuantizedModel,
    keep: &dyn Fn(&str) -> bool,
    opts: &DiffOptions,
    progress: &dyn Fn(usize, usize),
) -> Diff {
    let (paired, mut unpaired) = pairing(orig, q, keep);
    let mut tensors = Vec::new();
    // The original's values and the published R′, reused layer after layer.
    let (mut buf, mut published) = (Vec::new(), Vec::new());
    let total = paired.len();
    for (done, layer) in paired.into_iter().enumerate() {
        match compare_layer(orig, q, layer, opts, &mut buf, &mut published) {
            Ok(t) => tensors.push(t),
            Err(e) => unpaired.push(Unpaired { name: layer.name.clone(), reason: e.to_string() }),
        }
        progress(done + 1, total);
    }
    let totals = totals(&tensors, &kept_weights(orig, q, keep));
    Diff {
        original: orig.path.display().to_string(),
        quantized: q.ckpt.path.display().to_string(),
        method: q.method.name().into(),
        tensors,
        unpaired,
        totals,
    }
}

fn compare_layer(
    orig: &Checkpoint,
    q: &QuantizedModel,
    layer: &Layer,
    opts: &DiffOptions,
    buf: &mut Vec<f32>,
    published: &mut Vec<f32>,
) -> crate::Result<TensorDiff> {
    let info = orig.tensor(&layer.name)?;
    let values = orig.values(info, buf)?;
    let metrics = published_metrics_reusing(q, layer, values, published)?;
    let mut schemes: Vec<Scheme> = opts.compare.clone();
    if !opts.no_rtn
        && let Some(s) = layer.stored.rtn_equivalent()
        && !schemes.contains(&s)
    {
        schemes.insert(0, s);
    }
    let run = |s: &Scheme| {
        let o = Options {
            weight_bins: 0,
            error_bins: 0,
            keep_dequantized: false,
            work: WorkDtype::of(info.dtype),
            global_amax: None,
        };
        (s.to_string(), analyze(values, &info.shape, s, &o).map(|r| r.metrics).map_err(|e| e.to_string()))
    };
    let schemes = schemes.par_iter().map(run).collect();
    orig.release(info);
    Ok(TensorDiff {
        name: layer.name.clone(),
        shape: info.shape.clone(),
        stored: layer.stored.clone(),
        metrics,
        schemes,
    })
}

fn column(items: &[Item<'_>], kept: &[(String, u64)]) -> ColumnTotals {
    let kept_items = kept.iter().map(|(name, params)| Item { name, params: *params, metrics: None });
    let s = SqnrSummary::of(items.iter().copied().chain(kept_items));
    ColumnTotals {
        layers: items.len() + kept.len(),
        params: items.iter().map(|i| i.params).sum::<u64>() + kept.iter().map(|k| k.1).sum::<u64>(),
        kept_layers: kept.len(),
        model_sqnr_db: s.model_sqnr_db,
        mean_layer_sqnr_db: s.mean_layer_sqnr_db,
        worst_sqnr_db: s.worst_sqnr_db,
        worst_layer: s.worst_layer,
    }
}

/// The original's weights (whose names `keep` accepts) that a quantscope save
/// quantizes by default but `q` stores unquantized, with their params.
fn kept_weights(orig: &Checkpoint, q: &QuantizedModel, keep: &dyn Fn(&str) -> bool) -> Vec<(String, u64)> {
    orig.tensors()
        .iter()
        .filter(|t| keep(&t.name) && crate::export::quantized_on_save(t, None))
        .filter(|t| q.layer(&t.name).is_none() && q.plain.contains(&t.name))
        .map(|t| (t.name.clone(), t.numel() as u64))
        .collect()
}

fn totals(tensors: &[TensorDiff], kept: &[(String, u64)]) -> Totals {
    let params = |t: &TensorDiff| t.shape.iter().product::<usize>() as u64;
    let published: Vec<Item<'_>> = tensors
        .iter()
        .map(|t| Item { name: &t.name, params: params(t), metrics: Some(&t.metrics) })
        .collect();
    let mut by_scheme: BTreeMap<&str, Vec<Item<'_>>> = BTreeMap::new();
    for t in tensors {
        for (k, m) in &t.schemes {
            if let Ok(m) = m {
                by_scheme.entry(k).or_default().push(Item {
                    name: &t.name,
                    params: params(t),
                    metrics: Some(m),
                });
            }
        }
    }
    Totals {
        published: column(&published, kept),
        schemes: by_scheme.into_iter().map(|(k, v)| (k.to_string(), column(&v, kept))).collect(),
    }
}
