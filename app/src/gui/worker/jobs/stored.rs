//! One stored layer of an open quantized model, alone: its stored scheme, the
//! codes it uses, its scales, and its dequantized values.

use std::sync::Arc;

use quantscope_engine::quantized::view::{self, StoredView};

use super::super::{AppCx, Cx, Deps, Job, Turn, WorkerState};
use crate::gui::state::AppState;

/// Bins of a stored layer's R′ histogram.
const STORED_BINS: usize = 400;

/// The selected stored layer's view.
pub struct Stored;

impl Job for Stored {
    /// The stored layer, by its original weight's name.
    type Request = String;
    type Answer = Arc<StoredView>;
    type Progress = ();
    type Key = String;
    const DEPENDS: Deps = Deps::MODEL;
    const DOING: &'static str = "reading";

    fn run(layer: &mut String, worker: &mut WorkerState, _: &Cx<'_, Self>) -> Turn<Arc<StoredView>> {
        let Some(q) = worker.stored.as_ref() else {
            return Turn::Done(Err("the open model has no quantized layers".into()));
        };
        let Some(l) = q.layer(layer) else {
            return Turn::Done(Err(format!("{layer}: not a quantized layer")));
        };
        Turn::Done(view::stored_view(q, l, STORED_BINS).map(Arc::new).map_err(|e| e.to_string()))
    }

    fn wanted(state: &AppState, _: bool) -> Option<(String, String)> {
        let layer = state.selected_stored()?.name.clone();
        Some((layer.clone(), layer))
    }

    fn apply(answer: Result<Arc<StoredView>, String>, _: &String, cx: &mut AppCx<'_>) {
        match answer {
            Ok(v) => cx.state.stored_view = Some(v),
            Err(e) => cx.state.error = Some(e),
        }
    }

    fn forget(state: &mut AppState, _: Deps) {
        state.stored_view = None;
    }
}
