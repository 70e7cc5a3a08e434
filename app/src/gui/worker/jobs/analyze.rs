//! The selected tensor's analysis under its shown scheme: the histogram, the
//! error, the metrics, the all-methods overlay, HQQ's zero points, GPTQ beside
//! round-to-nearest (on the captured inputs), AWQ likewise, and the compared checkpoint's
//! published quantization. Only the newest request runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use quantscope_engine::calibrate::hqq::{HqqSlice, hqq_tensor};
use quantscope_engine::export::SavePlan;
use quantscope_engine::quantized::view::Published;
use quantscope_engine::recipe::Resolved;
use quantscope_engine::run::awq_view::{AwqView, awq_view};
use quantscope_engine::run::gptq_view::{GptqView, gptq_view};
use quantscope_engine::{
    Calibration, Metrics, Options, QuantResult, Scheme, SliceParams, WorkDtype, compare_calibrations,
};

use super::super::{AppCx, Cx, Deps, Job, Runs, Turn, WorkerState};
use crate::gui::state::AppState;

/// Why GPTQ shows nothing yet.
pub const GPTQ_NEEDS_INPUTS: &str =
    "GPTQ needs the layer's inputs: run the model (Input activations tab) or File > Load activations";

/// Why AWQ shows nothing yet.
pub const AWQ_NEEDS_INPUTS: &str =
    "AWQ needs the layer's inputs: run the model (Input activations tab) or File > Load activations";

const WEIGHT_BINS: usize = 400;
const ERROR_BINS: usize = 120;

/// What the selected tensor's analysis asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisKey {
    pub tensor: String,
    pub scheme: Scheme,
    pub all_calibrations: Option<f64>,
    /// Whether it shows the compared checkpoint's R′, and which checkpoint.
    pub published: Option<(PathBuf, bool)>,
    /// How the fused siblings are saved, which decides a two-level format's
    /// global scale: a change elsewhere in the save asks for nothing.
    pub siblings: Vec<Option<Scheme>>,
}

pub struct AnalyzeRequest {
    pub tensor: String,
    pub scheme: Scheme,
    pub options: Options,
    /// Also compute every calibration's clip range, percentile at this p.
    pub all_calibrations: Option<f64>,
    /// Show the compared checkpoint's published R′ instead of the scheme's.
    pub show_published: bool,
    /// The save's recipe: the layer is analyzed as this save writes it.
    pub save: Resolved,
}

/// One finished analysis.
pub struct Analysis {
    pub tensor: String,
    pub shape: Vec<usize>,
    pub result: QuantResult,
    /// Where every calibration method would clip (the all-methods overlay).
    pub calibration_ranges: Vec<(Calibration, SliceParams)>,
    /// Under HQQ: each slice's real-valued zero point and what rounding it costs.
    pub hqq: Vec<HqqSlice>,
    /// Under GPTQ: round-to-nearest beside it, weight and output SQNR, the loss.
    pub gptq: Option<Arc<GptqView>>,
    /// Under AWQ: round-to-nearest beside it, weight and output SQNR, the choice.
    pub awq: Option<Arc<AwqView>>,
    /// The compared checkpoint's quantization of this layer, when it has one.
    pub published: Option<Arc<Published>>,
    /// Whether `result` is the published quantization (else the scheme's).
    pub showing_published: bool,
    /// The scheme's metrics (equal to `result.metrics` unless it shows the published R′).
    pub scheme_metrics: Metrics,
    pub elapsed_ms: f64,
}

/// The analysis of the selected tensor.
pub struct Analyze;

impl Job for Analyze {
    type Request = AnalyzeRequest;
    type Answer = Arc<Analysis>;
    type Progress = ();
    type Key = AnalysisKey;
    // GPTQ runs on the captured inputs: a new capture asks again.
    const DEPENDS: Deps = Deps::MODEL.and(Deps::COMPARED).and(Deps::ACTIVATIONS);
    const RUNS: Runs = Runs::Newest;
    const DOING: &'static str = "analyzing";

    fn run(a: &mut AnalyzeRequest, worker: &mut WorkerState, _: &Cx<'_, Self>) -> Turn<Arc<Analysis>> {
        Turn::Done(worker.analyze(a))
    }

    fn wanted(state: &AppState, _: bool) -> Option<(AnalysisKey, AnalyzeRequest)> {
        let model = state.model.as_ref()?;
        let name = state.selected.clone()?;
        if !model.tensor(&name).is_some_and(quantscope_engine::TensorInfo::is_quantizable) {
            return None;
        }
        let save = state.resolved_recipe();
        let siblings = SavePlan::new(&model.summary.tensors, &save).sibling_schemes(&name);
        let key = AnalysisKey {
            scheme: state.scheme_for(&name),
            tensor: name,
            all_calibrations: state.prefs.show_all_calibrations.then_some(state.doc.percentile),
            published: state.compare.summary.as_ref().map(|c| (c.path.clone(), state.compare.show_published)),
            siblings,
        };
        let request = AnalyzeRequest {
            tensor: key.tensor.clone(),
            scheme: key.scheme,
            options: Options { weight_bins: WEIGHT_BINS, error_bins: ERROR_BINS, ..Options::default() },
            all_calibrations: key.all_calibrations,
            show_published: key.published.as_ref().is_some_and(|p| p.1),
            save,
        };
        Some((key, request))
    }

    fn asked(_: &AnalyzeRequest, cx: &mut AppCx<'_>) {
        cx.state.busy = true;
        cx.state.analysis_failed = None;
    }

    fn apply(answer: Result<Arc<Analysis>, String>, _: &AnalysisKey, cx: &mut AppCx<'_>) {
        cx.state.busy = false;
        match answer {
            Ok(a) => cx.state.analysis = Some(a),
            // The panels say why in place of the picture: no banner as well.
            Err(e) => cx.state.analysis_failed = Some(e),
        }
    }

    fn forget(state: &mut AppState, why: Deps) {
        state.busy = false;
        state.analysis_failed = None;
        // A new comparison keeps the old picture until the new one arrives.
        if why.meets(Deps::MODEL) {
            state.analysis = None;
        }
    }
}

/// A layer's view under a method that needs its inputs.
#[derive(Clone)]
pub enum MethodView {
    Gptq(Arc<GptqView>),
    Awq(Arc<AwqView>),
}

/// A layer's method view and the capture it was computed on.
pub struct MethodViewOf {
    acts: Arc<quantscope_engine::run::Activations>,
    view: MethodView,
}

/// Views kept (going back and forth between schemes computes nothing again).
const METHOD_VIEWS: usize = 8;

impl WorkerState {
    /// The GPTQ or AWQ view of the request's layer and scheme on the current
    /// capture, computed once.
    fn method_view(&mut self, a: &AnalyzeRequest) -> Result<MethodView, String> {
        let needs =
            if a.scheme.calibration == Calibration::Awq { AWQ_NEEDS_INPUTS } else { GPTQ_NEEDS_INPUTS };
        let acts = self.activations.clone().ok_or(needs)?;
        self.method_views.retain(|(_, _, v)| Arc::ptr_eq(&v.acts, &acts));
        if let Some((_, _, v)) = self.method_views.iter().find(|(t, s, _)| *t == a.tensor && *s == a.scheme) {
            return Ok(v.view.clone());
        }
        let ckpt = self.ckpt.as_ref().ok_or("no model is open")?;
        let (t, s, o) = (&a.tensor, &a.scheme, &a.options);
        let view = if a.scheme.calibration == Calibration::Awq {
            MethodView::Awq(Arc::new(awq_view(ckpt, &acts, t, s, o).map_err(|e| e.to_string())?))
        } else {
            MethodView::Gptq(Arc::new(gptq_view(ckpt, &acts, t, s, o).map_err(|e| e.to_string())?))
        };
        if self.method_views.len() >= METHOD_VIEWS {
            self.method_views.remove(0);
        }
        let kept = MethodViewOf { acts, view: view.clone() };
        self.method_views.push((a.tensor.clone(), a.scheme, Arc::new(kept)));
        Ok(view)
    }

    fn values(&mut self, name: &str) -> Result<Arc<Vec<f32>>, String> {
        if let Some((n, v)) = &self.decoded
            && n == name
        {
            return Ok(Arc::clone(v));
        }
        let ckpt = self.ckpt.as_ref().ok_or("no model is open")?;
        let v = Arc::new(ckpt.load_f32(name).map_err(|e| e.to_string())?);
        self.decoded = Some((name.to_string(), Arc::clone(&v)));
        Ok(v)
    }

    fn analyze(&mut self, a: &AnalyzeRequest) -> Result<Arc<Analysis>, String> {
        let started = Instant::now();
        let info =
            self.ckpt.as_ref().ok_or("no model is open")?.tensor(&a.tensor).map_err(|e| e.to_string())?;
        let (shape, work) = (info.shape.clone(), WorkDtype::of(info.dtype));
        let values = self.values(&a.tensor)?;
        let ckpt = self.ckpt.as_ref().ok_or("no model is open")?;
        let (result, gptq, awq) = if matches!(a.scheme.calibration, Calibration::Gptq | Calibration::Awq) {
            match self.method_view(a)? {
                MethodView::Gptq(v) => (v.gptq.clone(), Some(v), None),
                MethodView::Awq(v) => (v.awq.clone(), None, Some(v)),
            }
        } else {
            let r = SavePlan::new(ckpt.tensors(), &a.save)
                .analyze_layer(ckpt, &a.tensor, &values, &a.scheme, &a.options)
                .map_err(|e| e.to_string())?;
            (r, None, None)
        };
        let calibration_ranges = match a.all_calibrations {
            Some(p) => compare_calibrations(&values, &a.scheme, p, work).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let hqq = if a.scheme.calibration == Calibration::Hqq {
            hqq_tensor(&values, &shape, &a.scheme).map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        let published = self.published_of(&a.tensor, &values, a.options.weight_bins, a.options.error_bins)?;
        let scheme_metrics = result.metrics;
        let (result, showing_published) = match &published {
            Some(p) if a.show_published => (p.result.clone(), true),
            _ => (result, false),
        };
        Ok(Arc::new(Analysis {
            tensor: a.tensor.clone(),
            shape,
            result,
            calibration_ranges,
            hqq,
            gptq,
            awq,
            published,
            showing_published,
            scheme_metrics,
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        }))
    }
}
