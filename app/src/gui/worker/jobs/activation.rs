//! The selected layer's input activations under its scheme (needs a capture):
//! their histogram, the activation quantization's error, and the layer's weight
//! error measured on its output.

use std::sync::Arc;

use quantscope_engine::run::Activations;
use quantscope_engine::run::act_quant::{ActivationAnalysis, analyze_activation};
use quantscope_engine::run::output_error::{OutputError, layer_output_error};
use quantscope_engine::{Histogram, Scheme};

use super::super::{AppCx, Cx, Deps, Job, Turn, WorkerState};
use crate::gui::state::{AppState, LayerTab, View};

/// Bins of the activation histograms.
const BINS: usize = 400;

/// What the selected layer's activation analysis asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationKey {
    pub layer: String,
    pub scheme: Scheme,
    pub percentile: f64,
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

/// The selected layer's input analysis.
pub struct Activation;

impl Job for Activation {
    type Request = ActivationKey;
    type Answer = Arc<ActivationView>;
    type Progress = ();
    type Key = ActivationKey;
    const DEPENDS: Deps = Deps::MODEL.and(Deps::ACTIVATIONS);
    const DOING: &'static str = "analyzing activations";

    fn run(r: &mut ActivationKey, worker: &mut WorkerState, _: &Cx<'_, Self>) -> Turn<Arc<ActivationView>> {
        Turn::Done(worker.analyze_activation(r))
    }

    /// When the layer's activations tab shows and the capture has its input.
    fn wanted(state: &AppState, _: bool) -> Option<(ActivationKey, ActivationKey)> {
        let a = &state.activations;
        let (layer, capture) = (state.selected.clone()?, a.capture.as_ref()?);
        if state.view != View::Layer || a.tab != LayerTab::Activations || !capture.layers.contains(&layer) {
            return None;
        }
        let key = ActivationKey { scheme: state.scheme_for(&layer), layer, percentile: state.doc.percentile };
        Some((key.clone(), key))
    }

    fn apply(answer: Result<Arc<ActivationView>, String>, _: &ActivationKey, cx: &mut AppCx<'_>) {
        match answer {
            Ok(v) => cx.state.activations.view = Some(v),
            Err(e) => cx.state.activations.error = Some(e),
        }
    }

    fn forget(state: &mut AppState, _: Deps) {
        state.activations.view = None;
    }
}

impl WorkerState {
    fn analyze_activation(&self, r: &ActivationKey) -> Result<Arc<ActivationView>, String> {
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
