//! The sensitivity view's layers × schemes matrix (the Plan view's too), one
//! tensor per turn so that analyses interleave, with the compared checkpoint's
//! quantization as one more column.

use std::sync::Arc;

use quantscope_engine::{Scheme, sweep};

use super::super::published::{self, PUBLISHED_COLUMN};
use super::super::{AppCx, Cx, Deps, Job, Runs, Turn, WorkerState};
use crate::gui::state::{AppState, SensitivityState, View};

/// What the sensitivity matrix covers.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixKey {
    pub tensors: Vec<String>,
    pub schemes: Vec<Scheme>,
}

impl MatrixKey {
    /// The layers the view shows, under the document's scheme set.
    pub fn of(state: &AppState) -> Self {
        let tensors = if state.view == View::Plan { state.plan_layers() } else { state.saved_layers() };
        Self { tensors, schemes: state.doc.compare_schemes.clone() }
    }
}

pub struct MatrixRequest {
    key: MatrixKey,
    /// The tensors' catalogue indices (found on the first turn) and the rows done.
    found: Option<Vec<usize>>,
    rows: Vec<sweep::Row>,
}

/// The layers × schemes matrix.
pub struct Matrix;

impl Job for Matrix {
    type Request = MatrixRequest;
    type Answer = Arc<sweep::Sweep>;
    /// (tensors done, in all).
    type Progress = (usize, usize);
    type Key = MatrixKey;
    const DEPENDS: Deps = Deps::MODEL.and(Deps::COMPARED);
    const RUNS: Runs = Runs::Stream { rank: 0 };
    const DOING: &'static str = "comparing schemes";

    fn run(job: &mut MatrixRequest, worker: &mut WorkerState, cx: &Cx<'_, Self>) -> Turn<Arc<sweep::Sweep>> {
        let Some(ckpt) = worker.ckpt.clone() else { return Turn::Done(Err("no model is open".into())) };
        let tensors = job.found.get_or_insert_with(|| {
            let all = ckpt.tensors();
            job.key.tensors.iter().filter_map(|n| all.iter().position(|t| &t.name == n)).collect()
        });
        let compared = worker.published.clone();
        let total = tensors.len();
        if let Some(&i) = tensors.get(job.rows.len()) {
            let info = &ckpt.tensors()[i];
            let scratch = &mut worker.scratch;
            let mut row = sweep::sweep_tensor(&ckpt, info, &job.key.schemes, scratch);
            // The compared checkpoint's quantization is one more column.
            if let Some(q) = &compared {
                let values = ckpt.values(info, scratch).map_err(|e| e.to_string());
                row.cells.push(values.and_then(|v| published::published_cell(q, &info.name, v)));
            }
            job.rows.push(row);
            ckpt.release(info);
            cx.progress((job.rows.len(), total));
        }
        if job.rows.len() < total {
            return Turn::More;
        }
        let mut labels: Vec<String> = job.key.schemes.iter().map(ToString::to_string).collect();
        if compared.is_some() {
            labels.push(PUBLISHED_COLUMN.to_string());
        }
        let rows = std::mem::take(&mut job.rows);
        Turn::Done(Ok(Arc::new(sweep::finish_labelled(&ckpt, tensors, &labels, rows))))
    }

    fn wanted(state: &AppState, _: bool) -> Option<(MatrixKey, MatrixRequest)> {
        if !matches!(state.view, View::Sensitivity | View::Plan) {
            return None;
        }
        let key = MatrixKey::of(state);
        Some((key.clone(), MatrixRequest { key, found: None, rows: Vec::new() }))
    }

    fn asked(job: &MatrixRequest, cx: &mut AppCx<'_>) {
        cx.state.sensitivity.progress = Some((0, job.key.tensors.len()));
    }

    fn progress(progress: (usize, usize), state: &mut AppState) {
        state.sensitivity.progress = Some(progress);
    }

    fn apply(answer: Result<Arc<sweep::Sweep>, String>, _: &MatrixKey, cx: &mut AppCx<'_>) {
        let s = &mut cx.state.sensitivity;
        s.progress = None;
        match answer {
            Ok(m) => (s.result, s.error) = (Some(m), None),
            Err(e) => s.error = Some(e),
        }
    }

    fn forget(state: &mut AppState, _: Deps) {
        state.sensitivity = SensitivityState::default();
    }
}
