//! The worker's jobs for checkpoints someone else quantized: finding the stored
//! layers of an opened one, pairing one with the open original (File → Compare
//! with…), the published R′ of a layer against its original, and a stored
//! layer alone (its R′, codes and scales). The engine does the reading and the
//! numbers (`quantscope_engine::quantized`); this file only keeps the models.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quantscope_engine::Checkpoint;
use quantscope_engine::quantized::view::{self, Published, StoredView};
use quantscope_engine::quantized::{Failure, QuantizedModel, StoredScheme};
use quantscope_engine::sweep::Cell;

use super::{ModelSummary, WorkerState, open};

/// The sensitivity matrix's column label for the compared checkpoint.
pub const PUBLISHED_COLUMN: &str = "published";

/// Bins of a stored layer's R′ histogram.
const STORED_BINS: usize = 400;

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
    fn of(q: &QuantizedModel) -> Self {
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

/// An original paired with a quantized checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareSummary {
    /// The quantized checkpoint's name and path.
    pub name: String,
    pub path: PathBuf,
    pub stored: StoredSummary,
    /// Layers that pair with an original tensor, by the original's name.
    pub paired: Vec<String>,
    /// Layers that do not, each with the reason.
    pub unpaired: Vec<(String, String)>,
}

impl CompareSummary {
    pub fn stored_of(&self, tensor: &str) -> Option<&StoredScheme> {
        self.paired
            .iter()
            .any(|p| p == tensor)
            .then(|| self.stored.layer_of(tensor).map(|l| &l.stored))
            .flatten()
    }
}

/// File → Compare with…: the quantized checkpoint, and the original when it is
/// not the open model (Compare with original… while the quantized one is open).
pub struct CompareRequest {
    pub generation: u64,
    pub original: Option<PathBuf>,
    pub quantized: PathBuf,
}

/// One stored layer of the open (quantized) model, alone.
pub struct StoredRequest {
    pub generation: u64,
    pub layer: String,
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
    /// Pairs a quantized checkpoint with the original (opening the original first
    /// when asked). Returns the original's summary when it was newly opened.
    pub(super) fn compare(
        &mut self,
        r: &CompareRequest,
    ) -> Result<(Option<ModelSummary>, CompareSummary), String> {
        let q = QuantizedModel::open(&r.quantized).map_err(|e| e.to_string())?;
        if q.layers.is_empty() {
            let why = q.failed.first().map_or_else(String::new, |f| format!(": {} ({})", f.tensor, f.reason));
            return Err(format!("{}: no quantized layer could be read{why}", r.quantized.display()));
        }
        let opened = match &r.original {
            Some(p) => Some(open(super::Source::Path(p.clone()))?),
            None => None,
        };
        let orig: &Checkpoint = match &opened {
            Some((c, _)) => c,
            None => self.ckpt.as_deref().ok_or("no original model is open")?,
        };
        let (paired, unpaired) = quantscope_engine::diff::pairing(orig, &q, &|_| true);
        let paired: Vec<String> = paired.iter().map(|l| l.name.clone()).collect();
        let unpaired = unpaired.into_iter().map(|u| (u.name, u.reason)).collect();
        if paired.is_empty() {
            return Err(format!(
                "{}: none of its {} quantized layers pairs with a tensor of {}",
                r.quantized.display(),
                q.layers.len(),
                orig.path.display()
            ));
        }
        let name = r
            .quantized
            .file_name()
            .map_or_else(|| r.quantized.display().to_string(), |n| n.to_string_lossy().into_owned());
        let summary = CompareSummary {
            name,
            path: r.quantized.clone(),
            stored: StoredSummary::of(&q),
            paired,
            unpaired,
        };
        let model = opened.map(|(ckpt, s)| {
            self.replace_model(ckpt);
            s
        });
        self.published = Some(Arc::new(q));
        self.published_cache = None;
        Ok((model, summary))
    }

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

    /// A stored layer of the open quantized model, alone.
    pub(super) fn stored_view(&self, r: &StoredRequest) -> Result<Arc<StoredView>, String> {
        let q = self.stored.as_ref().ok_or("the open model has no quantized layers")?;
        let layer = q.layer(&r.layer).ok_or_else(|| format!("{}: not a quantized layer", r.layer))?;
        view::stored_view(q, layer, STORED_BINS).map(Arc::new).map_err(|e| e.to_string())
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
