//! The worker's jobs that run the model: capturing the activations of the open
//! model over the inputs (or loading a saved capture), analyzing one layer's
//! input under a scheme, and the end-to-end sensitivity of every layer. They run
//! on the worker thread like every other job; the UI only sends requests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;

use quantscope_engine::run::act_quant::{ActivationAnalysis, analyze_activation};
use quantscope_engine::run::output_error::{OutputError, layer_output_error};
use quantscope_engine::run::sensitivity::{Job, Reference, SensitivityReport};
use quantscope_engine::run::{self, Activations, Model};
use quantscope_engine::{Histogram, Scheme};

use super::{Response, WorkerState};

/// Bins of the activation histograms.
const BINS: usize = 400;

/// What the UI learns about a finished capture.
#[derive(Clone, Debug)]
pub struct CaptureSummary {
    pub source: String,
    pub samples: usize,
    pub tokens: u64,
    /// Every Linear layer with a captured input.
    pub layers: Vec<String>,
}

/// One layer's input under a scheme.
pub struct ActivationView {
    pub layer: String,
    pub scheme: Scheme,
    /// The Linear layers that share this input.
    pub shared_with: Vec<String>,
    pub in_features: usize,
    pub tokens: u64,
    /// Every captured element (the growing histogram).
    pub histogram: Histogram,
    pub analysis: ActivationAnalysis,
    /// The layer's weight error measured on its output; None when its weight is not 2-D.
    pub output: Option<OutputError>,
}

pub struct CaptureRequest {
    pub generation: u64,
    /// The inputs file; None: the shipped calibration text.
    pub inputs: Option<PathBuf>,
    pub max_samples: usize,
    pub cancel: Arc<AtomicBool>,
}

/// A capture saved by `quantscope activations`, opened instead of running the model.
pub struct LoadActivationsRequest {
    pub generation: u64,
    pub path: PathBuf,
}

/// Every layer in `layers` quantized alone under `scheme`, then all together.
pub struct EndToEndRequest {
    pub generation: u64,
    pub scheme: Scheme,
    pub layers: Vec<String>,
    pub cancel: Arc<AtomicBool>,
}

/// The browser's output-SQNR column: every captured layer under its own scheme.
pub struct OutputColumnRequest {
    pub generation: u64,
    pub schemes: std::collections::BTreeMap<String, Scheme>,
    pub default: Scheme,
}

/// What the end-to-end runs of the current activations share: the loaded model
/// and the float model's outputs on the captured samples.
pub(super) struct RunCache {
    model: Model,
    reference: Reference,
}

pub struct ActivationRequest {
    pub generation: u64,
    pub layer: String,
    pub scheme: Scheme,
    pub percentile: f64,
}

impl WorkerState {
    pub(super) fn capture(
        &mut self,
        r: &CaptureRequest,
        responses: &SyncSender<Response>,
    ) -> Result<CaptureSummary, String> {
        let ckpt = self.ckpt.clone().ok_or("no model is open")?;
        let model = Model::load(&ckpt).map_err(|e| e.to_string())?;
        let (samples, source) = match &r.inputs {
            Some(p) => {
                (run::read_samples(p, r.max_samples).map_err(|e| e.to_string())?, p.display().to_string())
            }
            None => (
                run::inputs::samples_of(run::BUILTIN_TEXT, r.max_samples),
                run::inputs::BUILTIN_NAME.to_string(),
            ),
        };
        let total = samples.len();
        let mut progress = |done: usize| {
            let _ = responses.try_send(Response::Capturing { done, total });
        };
        let acts =
            run::capture(&model, &samples, &source, &r.cancel, &mut progress).map_err(|e| e.to_string())?;
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
        summary
    }

    pub(super) fn load_activations(&mut self, r: &LoadActivationsRequest) -> Result<CaptureSummary, String> {
        let ckpt = self.ckpt.clone().ok_or("no model is open")?;
        let acts = run::store::load(&r.path).map_err(|e| e.to_string())?;
        run::store::check_model(&acts, &ckpt, &r.path).map_err(|e| e.to_string())?;
        Ok(self.keep(acts))
    }

    /// Output SQNR (dB) of every captured layer under its scheme; layers that fail are left out.
    pub(super) fn output_column(&self, r: &OutputColumnRequest) -> Result<HashMap<String, f64>, String> {
        let acts = self.activations.as_deref().ok_or("no activations captured")?;
        let ckpt = self.ckpt.as_ref().ok_or("no model is open")?;
        let layers = acts.sites.iter().flat_map(|s| &s.layers);
        Ok(layers
            .filter_map(|l| {
                let scheme = r.schemes.get(l).copied().unwrap_or(r.default);
                Some((l.clone(), layer_output_error(ckpt, acts, l, &scheme).ok()?.sqnr_db()))
            })
            .collect())
    }

    pub(super) fn end_to_end(
        &mut self,
        r: &EndToEndRequest,
        responses: &SyncSender<Response>,
    ) -> Result<Arc<SensitivityReport>, String> {
        let ckpt = self.ckpt.clone().ok_or("no model is open")?;
        let acts = self.activations.clone().ok_or("no activations captured")?;
        let total = r.layers.len() + 1;
        let _ = responses.try_send(Response::EndToEndProgress { generation: r.generation, done: 0, total });
        if self.run_cache.is_none() {
            let model = Model::load(&ckpt).map_err(|e| e.to_string())?;
            let reference = Reference::new(&model, acts.ids.clone()).map_err(|e| e.to_string())?;
            self.run_cache = Some(RunCache { model, reference });
        }
        let cache = self.run_cache.as_ref().ok_or("no model run")?;
        let job = Job {
            ckpt: &ckpt,
            model: &cache.model,
            acts: &acts,
            reference: &cache.reference,
            scheme: &r.scheme,
        };
        let mut progress = |done: usize, total: usize| {
            let _ = responses.try_send(Response::EndToEndProgress { generation: r.generation, done, total });
        };
        job.run(&r.layers, &r.cancel, &mut progress).map(Arc::new).map_err(|e| e.to_string())
    }

    pub(super) fn analyze_activation(&self, r: &ActivationRequest) -> Result<Arc<ActivationView>, String> {
        let acts: &Activations = self.activations.as_deref().ok_or("no activations captured")?;
        let ckpt = self.ckpt.as_ref().ok_or("no model is open")?;
        let site = acts.site(&r.layer).ok_or_else(|| format!("{}: no captured input", r.layer))?;
        let analysis = analyze_activation(site, &r.scheme, BINS, r.percentile).map_err(|e| e.to_string())?;
        let output = layer_output_error(ckpt, acts, &r.layer, &r.scheme).ok();
        Ok(Arc::new(ActivationView {
            layer: r.layer.clone(),
            scheme: r.scheme,
            shared_with: site.layers.clone(),
            in_features: site.in_features,
            tokens: site.tokens,
            histogram: site.histogram.histogram(),
            analysis,
            output,
        }))
    }
}
