//! The browser's SQNR column: every quantizable tensor under its own scheme,
//! one tensor per turn (a stream), each cell sent as it is measured. It waits
//! while a range is dragged.

use std::collections::BTreeMap;

use quantscope_engine::run::awq_view::awq_view;
use quantscope_engine::run::output_error::gptq_layer;
use quantscope_engine::{Calibration, Options, Scheme, sweep};

use super::super::{AppCx, Cx, Deps, Job, Runs, Turn, WorkerState};
use crate::gui::state::AppState;

/// What the browser's SQNR column is computed under.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnKey {
    pub scheme: Scheme,
    pub overrides: BTreeMap<String, Scheme>,
}

impl ColumnKey {
    pub fn of(state: &AppState) -> Self {
        Self { scheme: state.doc.scheme, overrides: state.doc.overrides.clone() }
    }
}

pub struct ColumnRequest {
    schemes: BTreeMap<String, Scheme>,
    default: Scheme,
    /// The tensors to measure (on the first turn) and how many are done.
    names: Option<Vec<String>>,
    next: usize,
}

/// One measured cell.
pub struct Cell {
    pub tensor: String,
    pub sqnr_db: Option<f64>,
    pub done: usize,
    pub total: usize,
}

/// The browser's SQNR column.
pub struct SqnrColumn;

impl Job for SqnrColumn {
    type Request = ColumnRequest;
    type Answer = ();
    type Progress = Cell;
    type Key = ColumnKey;
    // A GPTQ scheme's cells come from the captured inputs.
    const DEPENDS: Deps = Deps::MODEL.and(Deps::ACTIVATIONS);
    const RUNS: Runs = Runs::Stream { rank: 2 };
    const DOING: &'static str = "measuring the SQNR column";

    fn run(job: &mut ColumnRequest, worker: &mut WorkerState, cx: &Cx<'_, Self>) -> Turn<()> {
        let Some(ckpt) = worker.ckpt.clone() else { return Turn::Done(Err("no model is open".into())) };
        let names = job.names.get_or_insert_with(|| {
            ckpt.tensors().iter().filter(|t| t.is_quantizable()).map(|t| t.name.clone()).collect()
        });
        let Some(name) = names.get(job.next).cloned() else { return Turn::Done(Ok(())) };
        job.next += 1;
        let scheme = job.schemes.get(&name).copied().unwrap_or(job.default);
        let needs_inputs = matches!(scheme.calibration, Calibration::Gptq | Calibration::Awq);
        let acts = worker.activations.clone().filter(|_| needs_inputs);
        let sqnr_db = ckpt.tensor(&name).ok().and_then(|info| {
            if let Some(acts) = &acts {
                let o = Options::default();
                if scheme.calibration == Calibration::Awq {
                    return Some(awq_view(&ckpt, acts, &name, &scheme, &o).ok()?.awq.metrics.sqnr_db);
                }
                let (_, g) = gptq_layer(&ckpt, acts, &name, &scheme, &o).ok()?;
                return Some(g.result.metrics.sqnr_db);
            }
            // The same single-scheme path as the sensitivity sweep.
            let row = sweep::sweep_tensor(&ckpt, info, &[scheme], &mut worker.scratch);
            ckpt.release(info);
            row.cells.into_iter().next()?.ok().map(|c| c.metrics.sqnr_db)
        });
        cx.progress(Cell { tensor: name, sqnr_db, done: job.next, total: names.len() });
        Turn::More
    }

    fn wanted(state: &AppState, dragging: bool) -> Option<(ColumnKey, ColumnRequest)> {
        if dragging {
            return None;
        }
        let key = ColumnKey::of(state);
        let request =
            ColumnRequest { schemes: key.overrides.clone(), default: key.scheme, names: None, next: 0 };
        Some((key, request))
    }

    fn asked(_: &ColumnRequest, cx: &mut AppCx<'_>) {
        if let Some(m) = &mut cx.state.model {
            m.sqnr_done = 0;
            m.sqnr_total = m.summary.tensors.iter().filter(|t| t.is_quantizable()).count();
        }
    }

    fn progress(cell: Cell, state: &mut AppState) {
        if let Some(m) = &mut state.model {
            m.sqnr.insert(cell.tensor, cell.sqnr_db);
            m.sqnr_done = cell.done;
            m.sqnr_total = cell.total;
        }
    }

    fn apply(answer: Result<(), String>, _: &ColumnKey, cx: &mut AppCx<'_>) {
        if let Err(e) = answer {
            // The column stops where it failed; no spinner waits for the rest.
            if let Some(m) = &mut cx.state.model {
                m.sqnr_total = m.sqnr_done;
            }
            cx.state.error = Some(e);
        }
    }
}
