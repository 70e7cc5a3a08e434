//! The Plan view's `output` objective: every planned layer × candidate scheme's
//! output SQNR over the captured activations (`planner::output`), one layer per
//! turn so that analyses interleave, like the sensitivity matrix. It is asked
//! in the Plan view once the model has run, so the objective is ready when
//! picked.

use std::sync::Arc;

use quantscope_engine::planner::output::{OutputSqnr, output_row};

use super::super::{AppCx, Cx, Deps, Job, Runs, Turn, WorkerState};
use super::matrix::MatrixKey;
use crate::gui::state::{AppState, PlanOutputState, View};

pub struct OutputRequest {
    key: MatrixKey,
    rows: Vec<Vec<Option<f64>>>,
}

/// Output SQNR of the planned layers × candidates under the current capture.
pub struct PlanOutput;

impl Job for PlanOutput {
    type Request = OutputRequest;
    type Answer = Arc<OutputSqnr>;
    /// (layers done, in all).
    type Progress = (usize, usize);
    type Key = MatrixKey;
    const DEPENDS: Deps = Deps::MODEL.and(Deps::ACTIVATIONS);
    const RUNS: Runs = Runs::Stream { rank: 1 };
    const DOING: &'static str = "measuring the output SQNR";

    fn run(job: &mut OutputRequest, worker: &mut WorkerState, cx: &Cx<'_, Self>) -> Turn<Arc<OutputSqnr>> {
        let (Some(ckpt), Some(acts)) = (&worker.ckpt, &worker.activations) else {
            return Turn::Done(Err("run the model first (a layer's input activations tab)".into()));
        };
        let MatrixKey { tensors: layers, schemes } = &job.key;
        let total = layers.len();
        if let Some(name) = layers.get(job.rows.len()) {
            let info = match ckpt.tensor(name) {
                Ok(info) => info,
                Err(e) => return Turn::Done(Err(e.to_string())),
            };
            let row = match acts.site(name) {
                Some(site) => output_row(ckpt, info, (acts.samples, site), schemes, &mut worker.scratch),
                None => Ok(vec![None; schemes.len()]),
            };
            ckpt.release(info);
            match row {
                Ok(row) => job.rows.push(row),
                Err(e) => return Turn::Done(Err(e.to_string())),
            }
            cx.progress((job.rows.len(), total));
        }
        if job.rows.len() < total {
            return Turn::More;
        }
        let schemes = schemes.iter().map(ToString::to_string).collect();
        let out = OutputSqnr { layers: layers.clone(), schemes, db: std::mem::take(&mut job.rows) };
        Turn::Done(Ok(Arc::new(out)))
    }

    fn wanted(state: &AppState, _: bool) -> Option<(MatrixKey, OutputRequest)> {
        if state.view != View::Plan || state.activations.capture.is_none() {
            return None;
        }
        let key = MatrixKey { tensors: state.plan_layers(), schemes: state.doc.compare_schemes.clone() };
        Some((key.clone(), OutputRequest { key, rows: Vec::new() }))
    }

    fn asked(job: &OutputRequest, cx: &mut AppCx<'_>) {
        let o = &mut cx.state.plan_output;
        (o.progress, o.error) = (Some((0, job.key.tensors.len())), None);
    }

    fn progress(progress: (usize, usize), state: &mut AppState) {
        state.plan_output.progress = Some(progress);
    }

    fn apply(answer: Result<Arc<OutputSqnr>, String>, _: &MatrixKey, cx: &mut AppCx<'_>) {
        let o = &mut cx.state.plan_output;
        o.progress = None;
        (o.result, o.error) = match answer {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
    }

    fn forget(state: &mut AppState, _: Deps) {
        state.plan_output = PlanOutputState::default();
    }
}
