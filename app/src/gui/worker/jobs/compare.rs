//! File → Compare with…: pairing a quantized checkpoint with the open original
//! (or with an original opened first, Compare with original… while the
//! quantized one is open), and closing the comparison. Either changes what
//! the analysis and the matrix show: both invalidate [`Deps::COMPARED`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quantscope_engine::Checkpoint;
use quantscope_engine::quantized::{QuantizedModel, StoredScheme};

use super::super::published::StoredSummary;
use super::super::{AppCx, Cx, Deps, Job, Turn, WorkerState};
use super::open::{self, ModelSummary, Source, source_name};
use crate::gui::state::{AppState, CompareState};

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

pub enum CompareRequest {
    /// The quantized checkpoint, and the original when it is not the open model.
    Pair { original: Option<PathBuf>, quantized: PathBuf },
    /// Drop the compared checkpoint.
    Close,
}

/// A pairing, with the original's summary when it was newly opened; `None`
/// once closed.
pub type Paired = Option<(Option<ModelSummary>, CompareSummary)>;

/// The comparison with a quantized checkpoint.
pub struct Compare;

impl Compare {
    /// Pairs `quantized` with `original` (None: the open model).
    pub fn pair(original: Option<PathBuf>, quantized: PathBuf) -> (Option<PathBuf>, CompareRequest) {
        (Some(quantized.clone()), CompareRequest::Pair { original, quantized })
    }

    pub fn close() -> (Option<PathBuf>, CompareRequest) {
        (None, CompareRequest::Close)
    }
}

impl Job for Compare {
    type Request = CompareRequest;
    type Answer = Paired;
    type Progress = ();
    /// The quantized checkpoint (None: closing).
    type Key = Option<PathBuf>;
    const DEPENDS: Deps = Deps::MODEL;
    const DOING: &'static str = "comparing";

    fn run(r: &mut CompareRequest, worker: &mut WorkerState, _: &Cx<'_, Self>) -> Turn<Paired> {
        Turn::Done(match r {
            CompareRequest::Pair { original, quantized } => {
                worker.compare(original.as_deref(), quantized).map(Some)
            }
            CompareRequest::Close => {
                (worker.published, worker.published_cache) = (None, None);
                worker.invalidated = worker.invalidated.and(Deps::COMPARED);
                Ok(None)
            }
        })
    }

    fn asked(r: &CompareRequest, cx: &mut AppCx<'_>) {
        match r {
            CompareRequest::Pair { quantized, .. } => {
                cx.state.compare.pending = Some(source_name(&Source::Path(quantized.clone())));
            }
            // What shows the comparison goes at once.
            CompareRequest::Close => {
                if let Some(c) = &cx.state.compare.summary {
                    cx.state.status = Some(format!("closed the comparison with {}", c.name));
                }
                cx.state.compare = CompareState::default();
                cx.invalidate(Deps::COMPARED);
            }
        }
    }

    fn apply(answer: Result<Paired, String>, _: &Option<PathBuf>, cx: &mut AppCx<'_>) {
        cx.state.compare.pending = None;
        match answer {
            Ok(Some((model, summary))) => {
                match model {
                    // The original replaced the quantized model: a fresh open.
                    Some(m) => {
                        let path = m.path.clone();
                        open::show_model(m, path, cx);
                    }
                    None => cx.invalidate(Deps::COMPARED),
                }
                cx.state.status = Some(format!(
                    "comparing with {}: {} layers paired, {} not",
                    summary.name,
                    summary.paired.len(),
                    summary.unpaired.len()
                ));
                cx.state.compare.summary = Some(summary);
            }
            Ok(None) => {}
            Err(e) => cx.state.error = Some(format!("Could not compare: {e}")),
        }
    }

    fn forget(state: &mut AppState, _: Deps) {
        state.compare = CompareState::default();
    }
}

impl WorkerState {
    /// Pairs a quantized checkpoint with the original (opening the original first
    /// when asked). Returns the original's summary when it was newly opened.
    fn compare(
        &mut self,
        original: Option<&Path>,
        quantized: &Path,
    ) -> Result<(Option<ModelSummary>, CompareSummary), String> {
        let q = QuantizedModel::open(quantized).map_err(|e| e.to_string())?;
        if q.layers.is_empty() {
            let why = q.failed.first().map_or_else(String::new, |f| format!(": {} ({})", f.tensor, f.reason));
            return Err(format!("{}: no quantized layer could be read{why}", quantized.display()));
        }
        let opened = match original {
            Some(p) => Some(open::open(Source::Path(p.to_path_buf()))?),
            None => None,
        };
        let orig: &Checkpoint = match &opened {
            Some((c, _)) => c,
            None => self.ckpt.as_deref().ok_or("no original model is open")?,
        };
        // A GGUF file takes the original's names (and its row order).
        let q = q.aligned_to(orig);
        let (paired, unpaired) = quantscope_engine::diff::pairing(orig, &q, &|_| true);
        let paired: Vec<String> = paired.iter().map(|l| l.name.clone()).collect();
        let unpaired = unpaired.into_iter().map(|u| (u.name, u.reason)).collect();
        if paired.is_empty() {
            return Err(format!(
                "{}: none of its {} quantized layers pairs with a tensor of {}",
                quantized.display(),
                q.layers.len(),
                orig.path.display()
            ));
        }
        let name = quantized
            .file_name()
            .map_or_else(|| quantized.display().to_string(), |n| n.to_string_lossy().into_owned());
        let summary = CompareSummary {
            name,
            path: quantized.to_path_buf(),
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
        self.invalidated = self.invalidated.and(Deps::COMPARED);
        Ok((model, summary))
    }
}
