//! What the panels read: the open model, the selection, the newest results, and
//! the user's document (every choice a save or a recipe records). Panels get a
//! `&AppState` and never change it; they send [`Command`](super::command::Command)s,
//! which the app applies in one place.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use quantscope_engine::ct::ConfigGroup;
use quantscope_engine::export::{SavePlan, quantized_on_save};
use quantscope_engine::planner::output::OutputSqnr;
use quantscope_engine::recipe::{LayerChoice, Resolved};
use quantscope_engine::run::sensitivity::SensitivityReport;
use quantscope_engine::sweep::Sweep;
use quantscope_engine::{Scheme, TensorInfo};
use serde::{Deserialize, Serialize};

use super::worker::{
    ActivationView, Analysis, CaptureSummary, CompareSummary, ModelSummary, StoredLayerInfo,
};
use quantscope_engine::export::ExportSummary;
use quantscope_engine::quantized::view::StoredView;

/// The undoable part of the state: what a save writes and a recipe records.
/// Undo and redo swap whole copies of it (it is small).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Doc {
    /// The scheme for the whole model.
    pub scheme: Scheme,
    /// Per-layer schemes, by tensor name.
    pub overrides: BTreeMap<String, Scheme>,
    /// "Quantize when saving" where the user changed the default rule.
    pub save_choice: BTreeMap<String, bool>,
    /// The sensitivity view's scheme set.
    pub compare_schemes: Vec<Scheme>,
    /// p used when calibration is percentile, and for the all-methods overlay.
    pub percentile: f64,
}

impl Default for Doc {
    fn default() -> Self {
        Self {
            scheme: Scheme::default(),
            overrides: BTreeMap::new(),
            save_choice: BTreeMap::new(),
            compare_schemes: quantscope_engine::sweep::default_schemes(),
            percentile: 99.9,
        }
    }
}

/// How things are drawn; not part of undo.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    pub log_counts: bool,
    pub show_grid: bool,
    pub show_all_calibrations: bool,
    /// The per-slice plot shows MSE instead of SQNR.
    pub slice_mse: bool,
    /// Always use the in-app file dialog.
    pub builtin_file_dialog: bool,
}

/// What persists across runs (eframe storage).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The model-wide parts; its per-layer maps stay empty (they are in `models`).
    pub doc: Doc,
    pub prefs: Prefs,
    pub recent: Vec<PathBuf>,
    /// Each model's own settings by `Checkpoint::identity`, most recent first.
    pub models: Vec<(String, LayerSettings)>,
}

/// How many models' own settings are kept.
pub const MAX_MODELS: usize = 32;

/// What belongs to one model: its per-layer schemes and save choices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LayerSettings {
    pub overrides: BTreeMap<String, Scheme>,
    pub save_choice: BTreeMap<String, bool>,
}

/// Files `own` under `identity`, most recent first; an empty one is dropped.
fn keep_model_settings(models: &mut Vec<(String, LayerSettings)>, identity: &str, own: LayerSettings) {
    models.retain(|(k, _)| k != identity);
    if own != LayerSettings::default() {
        models.insert(0, (identity.to_string(), own));
        models.truncate(MAX_MODELS);
    }
}

/// What the central area shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum View {
    /// One layer: histogram, controls, error plots.
    #[default]
    Layer,
    /// The whole model: ranked table and layers × schemes matrix.
    Sensitivity,
    /// Mixed precision under a size budget, from the same matrix.
    Plan,
}

/// Which side of the selected layer the centre shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LayerTab {
    #[default]
    Weights,
    /// Its input activations (needs a run of the model).
    Activations,
}

/// The model run: the capture's progress and summary, and the newest analysis of
/// the selected layer's input.
#[derive(Default)]
pub struct ActivationsState {
    pub tab: LayerTab,
    /// (samples done, samples in all) while the model runs.
    pub progress: Option<(usize, usize)>,
    pub capture: Option<CaptureSummary>,
    pub view: Option<Arc<ActivationView>>,
    pub error: Option<String>,
    pub end_to_end: EndToEndState,
    /// Output SQNR (dB) per captured layer under its scheme (the browser's column).
    pub output_sqnr: HashMap<String, f64>,
}

/// End-to-end sensitivity of the captured model: results cached per scheme, and
/// the run in progress.
#[derive(Default)]
pub struct EndToEndState {
    /// By the scheme's short form.
    pub results: BTreeMap<String, Arc<SensitivityReport>>,
    /// The scheme being run and (layer runs done, in all).
    pub running: Option<(Scheme, usize, usize)>,
    pub error: Option<String>,
}

/// The open model as the UI sees it.
pub struct Model {
    pub summary: ModelSummary,
    /// SQNR per tensor under its current scheme, filled in by the SQNR column's requests.
    pub sqnr: HashMap<String, Option<f64>>,
    pub sqnr_done: usize,
    pub sqnr_total: usize,
}

impl Model {
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.summary.tensors.iter().find(|t| t.name == name)
    }
}

/// A layer shown under another scheme without changing what is saved (a
/// sensitivity-matrix cell). "Keep" turns it into the layer's own scheme.
#[derive(Clone, Debug, PartialEq)]
pub struct Preview {
    pub layer: String,
    pub scheme: Scheme,
}

/// The sensitivity matrix and its progress.
#[derive(Default)]
pub struct SensitivityState {
    pub result: Option<Arc<Sweep>>,
    pub progress: Option<(usize, usize)>,
    pub error: Option<String>,
}

/// A quantized checkpoint paired with the open original (File → Compare with…).
#[derive(Default)]
pub struct CompareState {
    pub summary: Option<CompareSummary>,
    /// The name of a checkpoint being paired, until it pairs or fails.
    pub pending: Option<String>,
    /// The layer view shows the published R′ instead of the scheme's.
    pub show_published: bool,
    /// A quantized checkpoint was opened over an original: the original's
    /// path, offered for comparison.
    pub offer_original: Option<std::path::PathBuf>,
}

/// The Plan view's `output` objective: each planned layer × candidate's output
/// SQNR over the capture, and its progress.
#[derive(Default)]
pub struct PlanOutputState {
    pub result: Option<Arc<OutputSqnr>>,
    pub progress: Option<(usize, usize)>,
    pub error: Option<String>,
}

/// A save in progress or finished.
#[derive(Default)]
pub struct SaveState {
    /// (bytes done, bytes in all) while a save runs.
    pub progress: Option<(u64, u64)>,
    pub running: bool,
    pub result: Option<Result<ExportSummary, String>>,
}

/// Everything the panels read.
#[derive(Default)]
pub struct AppState {
    pub doc: Doc,
    pub prefs: Prefs,
    pub recent: Vec<PathBuf>,
    /// Other models' own settings ([`Settings::models`]); the open model's are in `doc`.
    pub models: Vec<(String, LayerSettings)>,
    pub model: Option<Model>,
    /// The name of a model being opened, until it opens or fails.
    pub opening: Option<String>,
    pub selected: Option<String>,
    pub preview: Option<Preview>,
    /// The newest result for the selected tensor (kept while a new one computes).
    pub analysis: Option<Arc<Analysis>>,
    /// Whether a result for the current selection and scheme is still computing.
    pub busy: bool,
    /// Why the current selection and scheme gave no result (the panels say
    /// it instead of waiting).
    pub analysis_failed: Option<String>,
    pub view: View,
    /// Value clicked on the histogram, for the worked example.
    pub clicked_value: Option<f32>,
    /// Slice shown by the teaching panel (per-channel / per-group).
    pub teach_slice: usize,
    /// The last error, shown in a banner until dismissed.
    pub error: Option<String>,
    /// The last completed action (file written, …), shown in the status bar.
    pub status: Option<String>,
    pub sensitivity: SensitivityState,
    pub plan_output: PlanOutputState,
    pub save: SaveState,
    pub activations: ActivationsState,
    pub compare: CompareState,
    /// The selected stored layer of an open quantized model, alone.
    pub stored_view: Option<Arc<StoredView>>,
    /// What Undo / Redo would do, for the Edit menu.
    pub undo_label: Option<String>,
    pub redo_label: Option<String>,
    pub last_frame_ms: f32,
}

impl AppState {
    /// The state at start-up: per-layer settings wait for their model to open
    /// (settings saved before they were kept per model belong to none).
    pub fn from_settings(settings: Settings) -> Self {
        let mut doc = settings.doc;
        doc.overrides.clear();
        doc.save_choice.clear();
        Self {
            doc,
            prefs: settings.prefs,
            recent: settings.recent,
            models: settings.models,
            ..Self::default()
        }
    }

    pub fn settings(&self) -> Settings {
        let mut doc = self.doc.clone();
        let own = LayerSettings {
            overrides: std::mem::take(&mut doc.overrides),
            save_choice: std::mem::take(&mut doc.save_choice),
        };
        let mut models = self.models.clone();
        if let Some(m) = &self.model {
            keep_model_settings(&mut models, &m.summary.identity, own);
        }
        Settings { doc, prefs: self.prefs.clone(), recent: self.recent.clone(), models }
    }

    /// Keeps the open model's per-layer settings, then takes `identity`'s into
    /// the document (none kept: a clean start).
    pub fn adopt_layer_settings(&mut self, identity: &str) {
        let own = LayerSettings {
            overrides: std::mem::take(&mut self.doc.overrides),
            save_choice: std::mem::take(&mut self.doc.save_choice),
        };
        if let Some(m) = &self.model {
            keep_model_settings(&mut self.models, &m.summary.identity, own);
        }
        if let Some((_, s)) = self.models.iter().find(|(k, _)| k == identity) {
            self.doc.overrides = s.overrides.clone();
            self.doc.save_choice = s.save_choice.clone();
        }
    }

    /// The scheme `tensor` is saved under: its own, or the model's.
    pub fn saved_scheme_for(&self, tensor: &str) -> Scheme {
        self.doc.overrides.get(tensor).copied().unwrap_or(self.doc.scheme)
    }

    /// The scheme `tensor` is shown under: a preview of it, else the saved one.
    pub fn scheme_for(&self, tensor: &str) -> Scheme {
        match &self.preview {
            Some(p) if p.layer == tensor => p.scheme,
            _ => self.saved_scheme_for(tensor),
        }
    }

    /// The stored layer the selection is (or is a part of), when the open model
    /// is a quantized checkpoint.
    pub fn selected_stored(&self) -> Option<&StoredLayerInfo> {
        self.model.as_ref()?.summary.stored.as_ref()?.layer_of(self.selected.as_deref()?)
    }

    /// The selected stored layer's view, if it has arrived.
    pub fn selected_stored_view(&self) -> Option<&Arc<StoredView>> {
        let layer = self.selected_stored()?;
        self.stored_view.as_ref().filter(|v| v.name == layer.name)
    }

    /// The compared checkpoint's stored scheme for `tensor`, when it pairs it.
    pub fn published_scheme(&self, tensor: &str) -> Option<&quantscope_engine::quantized::StoredScheme> {
        self.compare.summary.as_ref()?.stored_of(tensor)
    }

    /// The scheme `a` was computed under: the published layer's stored one when
    /// it shows a compared checkpoint's R′, else the layer's shown scheme.
    pub fn analysis_scheme(&self, a: &Analysis) -> Scheme {
        if a.showing_published { a.result.scheme } else { self.scheme_for(&a.tensor) }
    }

    pub fn selected_info(&self) -> Option<&TensorInfo> {
        self.model.as_ref()?.tensor(self.selected.as_deref()?)
    }

    /// The analysis of the selected tensor, if it has arrived.
    pub fn selected_analysis(&self) -> Option<&Arc<Analysis>> {
        // A failed request outdates the analysis kept while it computed.
        let current = self.analysis_failed.is_none();
        self.analysis.as_ref().filter(|a| current && Some(&a.tensor) == self.selected.as_ref())
    }

    /// The selected layer's input analysis under its shown scheme, if it has arrived.
    pub fn selected_activation(&self) -> Option<&Arc<ActivationView>> {
        let name = self.selected.as_ref()?;
        self.activations.view.as_ref().filter(|v| &v.layer == name && v.scheme == self.scheme_for(name))
    }

    /// Whether `t` is quantized when the model is saved (the engine's rule).
    pub fn quantized_on_save(&self, t: &TensorInfo) -> bool {
        quantized_on_save(t, self.doc.save_choice.get(&t.name).copied())
    }

    /// The layers a save would quantize, in catalogue order.
    pub fn saved_layers(&self) -> Vec<String> {
        self.model.as_ref().map_or_else(Vec::new, |m| {
            m.summary.tensors.iter().filter(|t| self.quantized_on_save(t)).map(|t| t.name.clone()).collect()
        })
    }

    /// The layers the Plan view plans: those a save quantizes by the engine's
    /// default rule (as `quantscope plan`), whatever the checkboxes say now,
    /// so that applying a plan that keeps some layers does not change the set.
    pub fn plan_layers(&self) -> Vec<String> {
        self.model.as_ref().map_or_else(Vec::new, |m| {
            m.summary.tensors.iter().filter(|t| quantized_on_save(t, None)).map(|t| t.name.clone()).collect()
        })
    }

    /// Every choice in the document, as the export and the recipe file take it.
    pub fn resolved_recipe(&self) -> Resolved {
        let mut layers: BTreeMap<String, LayerChoice> =
            self.doc.overrides.iter().map(|(n, s)| (n.clone(), LayerChoice::Quantize(*s))).collect();
        let known = |name: &str| self.model.as_ref().is_some_and(|m| m.tensor(name).is_some());
        for (name, &on) in &self.doc.save_choice {
            // Forcing a default-excluded layer in needs an explicit entry.
            let choice =
                if on { LayerChoice::Quantize(self.saved_scheme_for(name)) } else { LayerChoice::Exclude };
            if known(name) || !on {
                layers.insert(name.clone(), choice);
            }
        }
        Resolved { scheme: self.doc.scheme, layers }
    }

    /// The config groups a save writes: one per stored layout (the engine's
    /// rule), with how many layers and which schemes fall in each.
    pub fn save_groups(&self) -> Vec<ConfigGroup> {
        self.model.as_ref().map_or_else(Vec::new, |m| {
            SavePlan::new(&m.summary.tensors, &self.resolved_recipe()).groups(&m.summary.tensors)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(identity: &str) -> Model {
        let summary = ModelSummary {
            name: identity.into(),
            path: None,
            identity: identity.into(),
            tensors: Vec::new(),
            size_bytes: 0,
            stored: None,
        };
        Model { summary, sqnr: HashMap::new(), sqnr_done: 0, sqnr_total: 0 }
    }

    /// Opens `identity` as `show_model` does.
    fn open(s: &mut AppState, identity: &str) {
        s.adopt_layer_settings(identity);
        s.model = Some(model(identity));
    }

    #[test]
    fn per_layer_settings_stay_with_their_model() {
        let mut s = AppState::default();
        open(&mut s, "minilm#1");
        s.doc.overrides.insert("l0.weight".into(), "int4:group64".parse().unwrap());
        s.doc.save_choice.insert("l0.bias".into(), true);
        s.doc.percentile = 99.0;
        open(&mut s, "sample#2");
        assert!(s.doc.overrides.is_empty() && s.doc.save_choice.is_empty(), "another model opens clean");
        assert_eq!(s.doc.percentile, 99.0, "model-wide settings carry over");
        // Across a restart: the stored doc holds no per-layer map, the model's do.
        let saved = s.settings();
        assert!(saved.doc.overrides.is_empty());
        let mut again = AppState::from_settings(saved);
        open(&mut again, "sample#2");
        assert!(again.doc.overrides.is_empty());
        open(&mut again, "minilm#1");
        assert_eq!(again.doc.overrides.len(), 1);
        assert_eq!(again.doc.save_choice.get("l0.bias"), Some(&true));
        // The same path with another header is another model.
        open(&mut again, "minilm#3");
        assert!(again.doc.overrides.is_empty());
    }
}
