//! The open model's activations: run the model over the inputs (with progress
//! and cancel) and keep every Linear input's statistics, or open a capture
//! saved by `quantscope activations` instead. Either replaces the activations,
//! so everything derived from the old ones is invalidated when it is asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quantscope_engine::run::{self, Activations, Model};

use super::super::{AppCx, Cx, Deps, Job, Turn, WorkerState};
use crate::gui::state::AppState;

/// Samples of a model run from the GUI (the CLI's default too).
pub const MAX_SAMPLES: usize = 256;

/// What the UI learns about a finished capture.
#[derive(Clone, Debug)]
pub struct CaptureSummary {
    pub source: String,
    pub samples: usize,
    pub tokens: u64,
    /// Every Linear layer with a captured input.
    pub layers: Vec<String>,
}

pub enum CaptureRequest {
    /// Run the model over an inputs file; None: the shipped calibration text.
    Run { inputs: Option<PathBuf>, max_samples: usize },
    /// Open a capture saved by `quantscope activations`.
    Load(PathBuf),
}

/// The open model's activations.
pub struct Capture;

impl Capture {
    /// Runs the model over `inputs` (None: the shipped text).
    pub fn run_model(inputs: Option<PathBuf>) -> (Option<PathBuf>, CaptureRequest) {
        (inputs.clone(), CaptureRequest::Run { inputs, max_samples: MAX_SAMPLES })
    }

    /// Uses the capture saved at `path`.
    pub fn load(path: PathBuf) -> (Option<PathBuf>, CaptureRequest) {
        (Some(path.clone()), CaptureRequest::Load(path))
    }
}

impl Job for Capture {
    type Request = CaptureRequest;
    type Answer = CaptureSummary;
    /// (samples done, in all).
    type Progress = (usize, usize);
    /// The inputs file, or the saved capture.
    type Key = Option<PathBuf>;
    const DEPENDS: Deps = Deps::MODEL.and(Deps::ACTIVATIONS);
    const DOING: &'static str = "running the model";

    fn run(r: &mut CaptureRequest, worker: &mut WorkerState, cx: &Cx<'_, Self>) -> Turn<CaptureSummary> {
        Turn::Done(match r {
            CaptureRequest::Run { inputs, max_samples } => {
                worker.capture(inputs.as_deref(), *max_samples, cx)
            }
            CaptureRequest::Load(path) => worker.load_activations(path),
        })
    }

    fn asked(r: &CaptureRequest, cx: &mut AppCx<'_>) {
        cx.invalidate(Deps::ACTIVATIONS);
        cx.state.activations.progress = Some(match r {
            CaptureRequest::Run { max_samples, .. } => (0, *max_samples),
            CaptureRequest::Load(_) => (0, 1),
        });
    }

    fn progress(progress: (usize, usize), state: &mut AppState) {
        if state.activations.progress.is_some() {
            state.activations.progress = Some(progress);
        }
    }

    fn apply(answer: Result<CaptureSummary, String>, _: &Option<PathBuf>, cx: &mut AppCx<'_>) {
        let a = &mut cx.state.activations;
        a.progress = None;
        match answer {
            Ok(c) => a.capture = Some(c),
            Err(e) => a.error = Some(e),
        }
    }

    fn forget(state: &mut AppState, _: Deps) {
        let a = &mut state.activations;
        (a.progress, a.capture, a.error) = (None, None, None);
    }
}

impl WorkerState {
    fn capture(
        &mut self,
        inputs: Option<&Path>,
        max_samples: usize,
        cx: &Cx<'_, Capture>,
    ) -> Result<CaptureSummary, String> {
        let ckpt = self.ckpt.clone().ok_or("no model is open")?;
        let model = Model::load(&ckpt).map_err(|e| e.to_string())?;
        let (samples, source) = match inputs {
            Some(p) => {
                (run::read_samples(p, max_samples).map_err(|e| e.to_string())?, p.display().to_string())
            }
            None => (
                run::inputs::samples_of(run::BUILTIN_TEXT, max_samples),
                run::inputs::BUILTIN_NAME.to_string(),
            ),
        };
        let total = samples.len();
        let mut progress = |done: usize| cx.progress((done, total));
        let acts =
            run::capture(&model, &samples, &source, cx.cancel(), &mut progress).map_err(|e| e.to_string())?;
        Ok(self.keep(acts))
    }

    fn load_activations(&mut self, path: &Path) -> Result<CaptureSummary, String> {
        let ckpt = self.ckpt.clone().ok_or("no model is open")?;
        let acts = run::store::load(path).map_err(|e| e.to_string())?;
        run::store::check_model(&acts, &ckpt, path).map_err(|e| e.to_string())?;
        Ok(self.keep(acts))
    }

    /// Makes `acts` the open model's activations; what was derived from the old ones goes.
    fn keep(&mut self, acts: Activations) -> CaptureSummary {
        let layers = acts.sites.iter().flat_map(|s| s.layers.iter().cloned()).collect();
        let summary = CaptureSummary {
            source: acts.source.clone(),
            samples: acts.samples,
            tokens: acts.tokens,
            layers,
        };
        self.activations = Some(Arc::new(acts));
        self.run_cache = None;
        self.invalidated = self.invalidated.and(Deps::ACTIVATIONS);
        summary
    }
}
