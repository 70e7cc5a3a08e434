//! Saving the quantized model: the document's choices written by the engine's
//! export, one tensor at a time, with progress and cancel. It runs to the end
//! on the worker, so analyses asked for meanwhile wait for it.

use std::path::PathBuf;

use quantscope_engine::export::{self, ExportMode, ExportOptions, ExportSummary};
use quantscope_engine::recipe::Resolved;

use super::super::{AppCx, Cx, Deps, Job, Turn, WorkerState};
use crate::gui::command::SaveRequest;
use crate::gui::state::AppState;

pub struct Export {
    recipe: Resolved,
    out: PathBuf,
    options: ExportOptions,
}

/// Writes the quantized model.
pub struct Save;

impl Save {
    /// The request that saves the document's choices as `r` says.
    pub fn ask(state: &AppState, r: &SaveRequest) -> ((), Export) {
        let options = ExportOptions {
            mode: if r.fake_quant { ExportMode::FakeQuant } else { ExportMode::Packed },
            verify: r.verify,
            force: r.force,
            activations: r.activations,
            ..ExportOptions::default()
        };
        ((), Export { recipe: state.resolved_recipe(), out: r.out.clone(), options })
    }
}

impl Job for Save {
    type Request = Export;
    type Answer = ExportSummary;
    /// (bytes written, bytes in all).
    type Progress = (u64, u64);
    type Key = ();
    const DEPENDS: Deps = Deps::NONE;
    const DOING: &'static str = "saving";

    fn run(r: &mut Export, worker: &mut WorkerState, cx: &Cx<'_, Self>) -> Turn<ExportSummary> {
        let Some(ckpt) = worker.ckpt.as_ref() else { return Turn::Done(Err("no model is open".into())) };
        let decisions = export::plan(ckpt.tensors(), &r.recipe, &|_| false);
        let progress = |done, total| cx.progress((done, total));
        Turn::Done(
            export::export(ckpt, &decisions, &r.out, &r.options, &progress, cx.cancel())
                .map_err(|e| e.to_string()),
        )
    }

    fn asked(_: &Export, cx: &mut AppCx<'_>) {
        let save = &mut cx.state.save;
        (save.running, save.progress, save.result) = (true, Some((0, 1)), None);
    }

    fn progress(progress: (u64, u64), state: &mut AppState) {
        if state.save.running {
            state.save.progress = Some(progress);
        }
    }

    fn apply(answer: Result<ExportSummary, String>, (): &(), cx: &mut AppCx<'_>) {
        let state = &mut *cx.state;
        (state.save.running, state.save.progress) = (false, None);
        if let Ok(s) = &answer {
            state.status = Some(format!("saved {}", s.out.display()));
        }
        state.save.result = Some(answer);
    }
}
