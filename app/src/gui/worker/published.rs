//! What several jobs share about checkpoints someone else quantized: the
//! stored layers of an opened one (`open`, `compare`), the published R′ of a
//! layer against its original (`analyze`, cached on the worker) and its
//! sensitivity-matrix cell (`matrix`). The engine does the reading and the
//! numbers (`quantscope_engine::quantized`).

use std::path::Path;
use std::sync::Arc;

use quantscope_engine::quantized::view::{self, Published};
use quantscope_engine::quantized::{Failure, QuantizedModel, StoredScheme};
use quantscope_engine::sweep::Cell;

use super::WorkerState;

/// The sensitivity matrix's column label for the compared checkpoint.
pub const PUBLISHED_COLUMN: &str = "published";

/// One stored layer, as the browser and the sensitivity view list it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredLayerInfo {
    /// The original weight's name, `<module>.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub stored: StoredScheme,
    /// The stored tensors that hold it (`weight_packed`, `weight_scale`, …).
    pub tensors: Vec<String>,
}

/// The quantized layers of a checkpoint, and those that could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredSummary {
    /// `compressed-tensors`, `gptq`, `awq`, `fp8`, …
    pub method: String,
    pub layers: Vec<StoredLayerInfo>,
    pub failed: Vec<Failure>,
}

impl StoredSummary {
    pub(super) fn of(q: &QuantizedModel) -> Self {
        let layers = q
            .layers
            .iter()
            .map(|l| StoredLayerInfo {
                name: l.name.clone(),
                shape: l.shape.clone(),
                stored: l.stored.clone(),
                tensors: l.tensors.clone(),
            })
            .collect();
        Self { method: q.method.name().to_string(), layers, failed: q.failed.clone() }
    }

    /// The stored layer `tensor` is, or is one of the parts of.
    pub fn layer_of(&self, tensor: &str) -> Option<&StoredLayerInfo> {
        self.layers.iter().find(|l| l.name == tensor || l.tensors.iter().any(|t| t == tensor))
    }
}

/// The quantized layers of the checkpoint at `path`, if it has any.
pub(super) fn detect(path: &Path) -> Option<(QuantizedModel, StoredSummary)> {
    let q = QuantizedModel::open(path).ok()?;
    if q.layers.is_empty() && q.failed.is_empty() {
        return None;
    }
    let s = StoredSummary::of(&q);
    Some((q, s))
}

impl WorkerState {
    /// The published quantization of `tensor` against the open original, if the
    /// compared checkpoint pairs it (cached: it does not depend on the scheme).
    pub(super) fn published_of(
        &mut self,
        tensor: &str,
        values: &[f32],
        bins: usize,
        error_bins: usize,
    ) -> Result<Option<Arc<Published>>, String> {
        if let Some((n, p)) = &self.published_cache
            && n == tensor
        {
            return Ok(Some(Arc::clone(p)));
        }
        let Some(q) = self.published.clone() else { return Ok(None) };
        let Some(layer) = q.layer(tensor) else { return Ok(None) };
        let p = Arc::new(view::published(&q, layer, values, bins, error_bins).map_err(|e| e.to_string())?);
        self.published_cache = Some((tensor.to_string(), Arc::clone(&p)));
        Ok(Some(p))
    }
}

/// The sensitivity matrix's published cell of `tensor` (an error when the
/// compared checkpoint does not pair it).
pub(super) fn published_cell(q: &QuantizedModel, tensor: &str, values: &[f32]) -> Result<Cell, String> {
    let layer = q.layer(tensor).ok_or("not in the compared checkpoint")?;
    let p = view::published(q, layer, values, 0, 0).map_err(|e| e.to_string())?;
    let stored_bytes =
        layer.tensors.iter().filter_map(|t| q.ckpt.tensor(t).ok()).map(|t| t.size_bytes as u64).sum();
    Ok(Cell { metrics: p.result.metrics, stored_bytes, slices: p.result.params.len(), fallback: None })
}
