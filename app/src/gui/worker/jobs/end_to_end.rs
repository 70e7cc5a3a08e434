//! End-to-end sensitivity of the captured model under one scheme: every layer
//! quantized alone, then all together, run over the captured samples (with
//! progress and cancel). Results are kept per scheme; the model and its float
//! outputs are kept on the worker for the next scheme.

use std::sync::Arc;

use quantscope_engine::Scheme;
use quantscope_engine::run::Model;
use quantscope_engine::run::sensitivity::{self, Reference, SensitivityReport};

use super::super::{AppCx, Cx, Deps, Job, Turn, WorkerState};
use crate::gui::state::{AppState, EndToEndState};

/// What the end-to-end runs of the current activations share: the loaded model
/// and the float model's outputs on the captured samples.
pub struct RunCache {
    model: Model,
    reference: Reference,
}

/// Every layer in `layers` quantized alone under `scheme`, then all together.
pub struct EndToEndRequest {
    scheme: Scheme,
    layers: Vec<String>,
}

/// The end-to-end ranking under one scheme.
pub struct EndToEnd;

impl EndToEnd {
    /// Every captured layer a save quantizes, under `scheme`; `None` when there
    /// is no capture, the scheme has already run, or a run is going.
    pub fn ask(state: &AppState, scheme: Scheme) -> Option<(Scheme, EndToEndRequest)> {
        let capture = state.activations.capture.as_ref()?;
        let e = &state.activations.end_to_end;
        if e.results.contains_key(&scheme.to_string()) || e.running.is_some() {
            return None;
        }
        let saved = state.saved_layers();
        let layers = capture.layers.iter().filter(|l| saved.contains(l)).cloned().collect();
        Some((scheme, EndToEndRequest { scheme, layers }))
    }
}

impl Job for EndToEnd {
    type Request = EndToEndRequest;
    type Answer = Arc<SensitivityReport>;
    /// (runs done, in all).
    type Progress = (usize, usize);
    type Key = Scheme;
    const DEPENDS: Deps = Deps::MODEL.and(Deps::ACTIVATIONS);
    const DOING: &'static str = "running";

    fn run(
        r: &mut EndToEndRequest,
        worker: &mut WorkerState,
        cx: &Cx<'_, Self>,
    ) -> Turn<Arc<SensitivityReport>> {
        Turn::Done(worker.end_to_end(r, cx))
    }

    fn asked(r: &EndToEndRequest, cx: &mut AppCx<'_>) {
        let e = &mut cx.state.activations.end_to_end;
        (e.running, e.error) = (Some((r.scheme, 0, r.layers.len() + 1)), None);
    }

    fn progress((done, total): (usize, usize), state: &mut AppState) {
        let e = &mut state.activations.end_to_end;
        if let Some((scheme, ..)) = e.running {
            e.running = Some((scheme, done, total));
        }
    }

    fn apply(answer: Result<Arc<SensitivityReport>, String>, scheme: &Scheme, cx: &mut AppCx<'_>) {
        let e = &mut cx.state.activations.end_to_end;
        e.running = None;
        match answer {
            Ok(r) => {
                e.results.insert(scheme.to_string(), r);
            }
            Err(err) => e.error = Some(err),
        }
    }

    fn forget(state: &mut AppState, _: Deps) {
        state.activations.end_to_end = EndToEndState::default();
    }
}

impl WorkerState {
    fn end_to_end(
        &mut self,
        r: &EndToEndRequest,
        cx: &Cx<'_, EndToEnd>,
    ) -> Result<Arc<SensitivityReport>, String> {
        let ckpt = self.ckpt.clone().ok_or("no model is open")?;
        let acts = self.activations.clone().ok_or("no activations captured")?;
        cx.progress((0, r.layers.len() + 1));
        if self.run_cache.is_none() {
            let model = Model::load(&ckpt).map_err(|e| e.to_string())?;
            let reference = Reference::new(&model, acts.ids.clone()).map_err(|e| e.to_string())?;
            self.run_cache = Some(RunCache { model, reference });
        }
        let cache = self.run_cache.as_ref().ok_or("no model run")?;
        let job = sensitivity::Job {
            ckpt: &ckpt,
            model: &cache.model,
            acts: &acts,
            reference: &cache.reference,
            scheme: &r.scheme,
        };
        let mut progress = |done: usize, total: usize| cx.progress((done, total));
        job.run(&r.layers, cx.cancel(), &mut progress).map(Arc::new).map_err(|e| e.to_string())
    }
}
