//! The browser's output-SQNR column: every captured layer's weight error
//! measured on its output, each under its own scheme, once a capture is there.
//! It waits while a range is dragged.

use std::collections::HashMap;

use quantscope_engine::run::output_error::layer_output_error;

use super::super::{AppCx, Cx, Deps, Job, Turn, WorkerState};
use super::sqnr_column::ColumnKey;
use crate::gui::state::AppState;

/// The output-SQNR column.
pub struct OutputColumn;

impl Job for OutputColumn {
    type Request = ColumnKey;
    /// Output SQNR (dB) per captured layer; layers that fail are left out.
    type Answer = HashMap<String, f64>;
    type Progress = ();
    type Key = ColumnKey;
    const DEPENDS: Deps = Deps::MODEL.and(Deps::ACTIVATIONS);
    const DOING: &'static str = "measuring the output SQNR";

    fn run(r: &mut ColumnKey, worker: &mut WorkerState, _: &Cx<'_, Self>) -> Turn<HashMap<String, f64>> {
        let (Some(acts), Some(ckpt)) = (worker.activations.as_deref(), worker.ckpt.as_ref()) else {
            return Turn::Done(Err("no activations captured".into()));
        };
        let layers = acts.sites.iter().flat_map(|s| &s.layers);
        Turn::Done(Ok(layers
            .filter_map(|l| {
                let scheme = r.overrides.get(l).copied().unwrap_or(r.scheme);
                Some((l.clone(), layer_output_error(ckpt, acts, l, &scheme).ok()?.sqnr_db()))
            })
            .collect()))
    }

    fn wanted(state: &AppState, dragging: bool) -> Option<(ColumnKey, ColumnKey)> {
        if dragging || state.activations.capture.is_none() {
            return None;
        }
        let key = ColumnKey::of(state);
        Some((key.clone(), key))
    }

    fn apply(answer: Result<HashMap<String, f64>, String>, _: &ColumnKey, cx: &mut AppCx<'_>) {
        match answer {
            Ok(m) => cx.state.activations.output_sqnr = m,
            Err(e) => cx.state.activations.error = Some(e),
        }
    }

    fn forget(state: &mut AppState, _: Deps) {
        state.activations.output_sqnr.clear();
    }
}
