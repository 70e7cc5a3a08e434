//! The per-tensor record that `quantscope report` prints and the GUI shows: one
//! stable, documented shape for both (see README "Report schema").

use serde::Serialize;

use crate::analyze::analyze_stored;
use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::format::SliceParams;
use crate::metrics::Metrics;
use crate::quantized::{QuantizedModel, StoredScheme};
use crate::scheme::{Calibration, Granularity, Scheme};

/// The scheme, flattened for scripts: every key always present, null when unused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SchemeSummary {
    pub format: String,
    pub mapping: String,
    pub granularity: &'static str,
    pub axis: Option<usize>,
    pub group_size: Option<usize>,
    pub calibration: &'static str,
    pub percentile: Option<f64>,
    /// The short form, e.g. `int8:channel:minmax`.
    pub short: String,
}

impl From<&Scheme> for SchemeSummary {
    fn from(s: &Scheme) -> Self {
        let (axis, group_size) = match s.granularity {
            Granularity::Tensor => (None, None),
            Granularity::Channel { axis } => (Some(axis), None),
            Granularity::Group { size } | Granularity::Block { size } => (None, Some(size)),
        };
        let percentile = match s.calibration {
            Calibration::Percentile { p } => Some(p),
            _ => None,
        };
        Self {
            format: s.format.to_string(),
            mapping: s.mapping.to_string(),
            granularity: s.granularity.info().name,
            axis,
            group_size,
            calibration: s.calibration.info().name,
            percentile,
            short: s.to_string(),
        }
    }
}

/// One tensor's line in the report.
#[derive(Clone, Debug, Serialize)]
pub struct TensorReport {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub numel: usize,
    pub quantized: bool,
    /// Why not, when `quantized` is false.
    pub reason: Option<String>,
    /// The granularity fallback note (e.g. a 1-D bias under per-channel).
    pub fallback: Option<String>,
    pub metrics: Option<Metrics>,
    /// Per-slice S, Z, offset, lo, hi (only with `--params`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<SliceParams>>,
    /// Decode + analyze time in ms (only with `--timing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<f64>,
    /// In a quantized checkpoint, the stored scheme of the layer this tensor
    /// belongs to (`weight_packed`, `qweight`, `weight_scale`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredScheme>,
}

/// Gives every stored part of a quantized layer its layer's scheme.
pub fn attach_stored(records: &mut [TensorReport], q: &QuantizedModel) {
    for l in &q.layers {
        for r in records.iter_mut().filter(|r| l.tensors.contains(&r.name)) {
            r.stored = Some(l.stored.clone());
        }
    }
}

/// Decodes and analyzes one tensor. Failures become `quantized: false` with the
/// reason, so one odd tensor never stops a whole-model report.
pub fn report_tensor(
    ckpt: &Checkpoint,
    info: &TensorInfo,
    scheme: &Scheme,
    with_params: bool,
) -> TensorReport {
    let mut rec = TensorReport {
        name: info.name.clone(),
        dtype: info.dtype_name(),
        shape: info.shape.clone(),
        numel: info.numel(),
        quantized: false,
        reason: info.not_quantizable.clone(),
        fallback: None,
        metrics: None,
        params: None,
        elapsed_ms: None,
        stored: None,
    };
    if rec.reason.is_some() {
        return rec;
    }
    let started = std::time::Instant::now();
    // Streamed from the stored bytes: no fresh tensor-sized buffer (its page
    // faults cost more than the analysis).
    let result = analyze_stored(ckpt, info, scheme);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(r) => {
            rec.quantized = true;
            rec.fallback = r.fallback;
            rec.metrics = Some(r.metrics);
            rec.params = with_params.then_some(r.params);
            rec.elapsed_ms = Some(elapsed_ms);
        }
        Err(e) => rec.reason = Some(e.to_string()),
    }
    rec
}
