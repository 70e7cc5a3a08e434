//! Opening a model, from a path or from bytes, with its stored layers when
//! someone else quantized it. The current model stays until the new one opens;
//! then everything computed on the old one is invalidated.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use quantscope_engine::{Checkpoint, TensorInfo};

use super::super::published::{self, StoredSummary};
use super::super::{AppCx, Cx, Deps, Job, Turn, WorkerState};
use crate::gui::state::{AppState, Model};

/// Models on the Recent list.
const MAX_RECENT: usize = 8;

/// Where a model comes from.
#[derive(Clone, Debug)]
pub enum Source {
    Path(PathBuf),
    /// Bytes in memory (the embedded teaching sample), with a display name.
    Bytes {
        name: String,
        bytes: Vec<u8>,
    },
}

/// What the UI needs to know about an opened model.
pub struct ModelSummary {
    pub name: String,
    pub path: Option<PathBuf>,
    /// `Checkpoint::identity`: what the model's own settings are kept under.
    pub identity: String,
    pub tensors: Vec<TensorInfo>,
    pub size_bytes: usize,
    /// The model's quantized layers, when someone else quantized it.
    pub stored: Option<StoredSummary>,
}

/// Opens a model.
pub struct Open;

impl Open {
    /// The key and request that open `source`.
    pub fn ask(source: Source) -> (Option<PathBuf>, Source) {
        let path = match &source {
            Source::Path(p) => Some(p.clone()),
            Source::Bytes { .. } => None,
        };
        (path, source)
    }
}

impl Job for Open {
    type Request = Source;
    type Answer = ModelSummary;
    type Progress = ();
    /// The path, for the Recent list (bytes have none).
    type Key = Option<PathBuf>;
    const DEPENDS: Deps = Deps::NONE;
    const DOING: &'static str = "opening";

    fn run(source: &mut Source, worker: &mut WorkerState, _: &Cx<'_, Self>) -> Turn<ModelSummary> {
        let source = std::mem::replace(source, Source::Path(PathBuf::new()));
        Turn::Done(open(source).map(|(ckpt, mut summary)| {
            // Only a successful open replaces the current model.
            worker.replace_model(ckpt);
            if let Some((q, stored)) = summary.path.as_deref().and_then(published::detect) {
                summary.stored = Some(stored);
                worker.stored = Some(Arc::new(q));
            }
            summary
        }))
    }

    fn asked(source: &Source, cx: &mut AppCx<'_>) {
        cx.state.opening = Some(source_name(source));
    }

    fn apply(answer: Result<ModelSummary, String>, path: &Option<PathBuf>, cx: &mut AppCx<'_>) {
        cx.state.opening = None;
        match answer {
            Ok(summary) => show_model(summary, path.clone(), cx),
            Err(e) => cx.state.error = Some(format!("Could not open: {e}")),
        }
    }
}

/// Makes a model that opened the one the app shows (also when a comparison
/// opened the original): Recent list, first selection, and everything computed
/// on the old model invalidated.
pub(super) fn show_model(summary: ModelSummary, path: Option<PathBuf>, cx: &mut AppCx<'_>) {
    let state = &mut *cx.state;
    // Only a model that opened goes on the Recent list.
    if let Some(p) = path {
        state.recent.retain(|r| *r != p);
        state.recent.insert(0, p);
        state.recent.truncate(MAX_RECENT);
    }
    state.selected = first_layer(state, &summary);
    // Opening a quantized checkpoint over an original offers to compare them.
    let offer_original = state
        .model
        .as_ref()
        .filter(|m| m.summary.stored.is_none() && summary.stored.is_some())
        .and_then(|m| m.summary.path.clone());
    state.adopt_layer_settings(&summary.identity);
    state.model = Some(Model { summary, sqnr: HashMap::new(), sqnr_done: 0, sqnr_total: 0 });
    state.preview = None;
    state.clicked_value = None;
    state.teach_slice = 0;
    state.error = None;
    cx.invalidate(Deps::MODEL);
    cx.state.compare.offer_original = offer_original;
}

/// The layer to start on: the first a save would quantize, in name order (the
/// browser's), not a huge embedding; in a quantized checkpoint, its first
/// stored layer.
fn first_layer(state: &AppState, summary: &ModelSummary) -> Option<String> {
    let first = |pick: &dyn Fn(&TensorInfo) -> bool| {
        summary.tensors.iter().filter(|t| pick(t)).map(|t| t.name.clone()).min()
    };
    let stored_first = summary
        .stored
        .as_ref()
        .and_then(|s| s.layers.iter().filter_map(|l| l.tensors.first().cloned()).min());
    stored_first
        .or_else(|| first(&|t| state.quantized_on_save(t)))
        .or_else(|| first(&|t| t.is_quantizable() && t.shape.len() >= 2))
}

/// The checkpoint `source` holds, and what the UI shows of it.
pub(super) fn open(source: Source) -> Result<(Checkpoint, ModelSummary), String> {
    let (ckpt, name, path) = match source {
        Source::Path(p) => {
            let c = Checkpoint::open(&p).map_err(|e| e.to_string())?;
            let name =
                p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
            (c, name, Some(p))
        }
        Source::Bytes { name, bytes } => {
            (Checkpoint::from_bytes(&name, bytes).map_err(|e| e.to_string())?, name, None)
        }
    };
    let summary = ModelSummary {
        name,
        path,
        identity: ckpt.identity(),
        tensors: ckpt.tensors().to_vec(),
        size_bytes: ckpt.size_bytes(),
        stored: None,
    };
    Ok((ckpt, summary))
}

/// The name shown while a source opens.
pub fn source_name(source: &Source) -> String {
    match source {
        Source::Path(p) => {
            p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
        }
        Source::Bytes { name, .. } => name.clone(),
    }
}
