//! The worker's jobs that run the model: capturing the activations of the open
//! model over the inputs, and analyzing one layer's input under a scheme. They
//! run on the worker thread like every other job; the UI only sends requests.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;

use quantscope_engine::run::act_quant::{ActivationAnalysis, analyze_activation};
use quantscope_engine::run::output_error::{OutputError, layer_output_error};
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
        let layers = acts.sites.iter().flat_map(|s| s.layers.iter().cloned()).collect();
        let summary = CaptureSummary { source, samples: acts.samples, tokens: acts.tokens, layers };
        self.activations = Some(Arc::new(acts));
        Ok(summary)
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
