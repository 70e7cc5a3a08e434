//! Every change the user can make, as a value. Panels push [`Command`]s; the app
//! applies them in one place ([`super::app`]). Commands that change the
//! [`Doc`](super::state::Doc) are recorded in the [`History`], which is the undo /
//! redo stack.

use std::path::PathBuf;

use eframe::egui;
use quantscope_engine::Scheme;

use super::dialogs::DialogOutcome;
use super::requests::Ask;
use super::state::{Doc, LayerTab, Prefs, View};
use super::worker::Source;

/// What a finished file dialog was for.
#[derive(Clone, Debug, PartialEq)]
pub enum DialogPurpose {
    OpenFile,
    OpenFolder,
    /// The Save window's output folder.
    SaveOutput,
    SaveRecipe,
    LoadRecipe,
    /// A capture saved by `quantscope activations`.
    LoadActivations,
    Csv(CsvKind),
    /// A quantized checkpoint to compare with the open original: a folder, or
    /// a file (`.gguf`, `.safetensors`) when `file`.
    CompareQuantized {
        file: bool,
    },
    /// The original of the open quantized checkpoint (a folder, or a file).
    CompareOriginal {
        file: bool,
    },
    /// A screenshot of part of the window (`rect`, in points).
    Png {
        what: String,
        rect: egui::Rect,
    },
}

/// Which table a CSV export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvKind {
    /// The layers × schemes matrix, then the per-scheme totals.
    Matrix,
    /// The ranked table in its shown order.
    Ranked { col: usize },
}

/// Options of one save, gathered by the Save window.
#[derive(Clone, Debug, PartialEq)]
pub struct SaveRequest {
    pub out: PathBuf,
    pub fake_quant: bool,
    pub verify: bool,
    pub force: bool,
    /// Declared runtime activation quantization (W8A8 / FP8_DYNAMIC configs).
    pub activations: quantscope_engine::export::Activations,
}

/// One change. Those that edit the document can be undone.
#[derive(Clone, Debug)]
pub enum Command {
    // --- navigation (not undoable)
    Select(String),
    SetView(View),
    /// A value clicked on the histogram, for the worked example.
    PickValue(f32),
    SetTeachSlice(usize),
    SetPrefs(Prefs),
    DismissError,
    // --- the document (undoable)
    SetModelScheme(Scheme),
    /// Gives `layer` its own scheme. Commands with the same `gesture` (one drag)
    /// become one undo step.
    SetLayerScheme {
        layer: String,
        scheme: Scheme,
        gesture: Option<u64>,
    },
    /// Back to the model's scheme.
    ResetLayer(String),
    ResetAllLayers,
    SetSaveChoice {
        layer: String,
        on: bool,
    },
    SetCompareSchemes(Vec<Scheme>),
    /// A mixed-precision plan becomes per-layer choices, as one undo step:
    /// `quantize` layers get their scheme and are saved quantized, `keep`
    /// layers are saved as stored.
    ApplyPlan {
        quantize: std::collections::BTreeMap<String, Scheme>,
        keep: Vec<String>,
    },
    SetPercentile(f64),
    /// Every document setting back to its default.
    ResetDocument,
    LoadRecipe(PathBuf),
    // --- a sensitivity cell shown without changing the document
    Preview {
        layer: String,
        scheme: Scheme,
    },
    /// The previewed scheme becomes the layer's own (undoable).
    KeepPreview,
    EndPreview,
    Undo,
    Redo,
    // --- files and background work
    ShowDialog(DialogPurpose),
    DialogDone(DialogOutcome<DialogPurpose>),
    Open(Source),
    SaveRecipe(PathBuf),
    WriteCsv(CsvKind, PathBuf),
    ShowSaveWindow,
    StartSave(SaveRequest),
    CancelSave,
    /// Run the model over an inputs file (None: the shipped calibration text).
    RunModel(Option<PathBuf>),
    CancelRun,
    /// Use a saved capture as the open model's activations.
    LoadActivations(PathBuf),
    /// End-to-end sensitivity of every captured layer a save quantizes, under a scheme.
    RunEndToEnd(Scheme),
    CancelEndToEnd,
    SetLayerTab(LayerTab),
    /// Pair a quantized checkpoint with its original (None: the open model).
    Compare {
        original: Option<PathBuf>,
        quantized: PathBuf,
    },
    CloseComparison,
    /// The layer view shows the compared checkpoint's R′ (true) or the scheme's.
    ShowPublished(bool),
    /// Select `layer` and show its published quantization.
    OpenPublished(String),
    /// A request of a background job no command above starts.
    Ask(Ask),
    Quit,
}

impl Command {
    /// The Edit menu's name for this change, when it is undoable.
    pub fn undo_label(&self) -> Option<String> {
        Some(match self {
            Self::SetModelScheme(s) => format!("model scheme {s}"),
            Self::SetLayerScheme { layer, scheme, .. } => format!("{layer}: {scheme}"),
            Self::ResetLayer(l) => format!("reset {l}"),
            Self::ResetAllLayers => "reset every layer".into(),
            Self::SetSaveChoice { layer, on } => {
                format!("{} {layer} when saving", if *on { "quantize" } else { "keep" })
            }
            Self::SetCompareSchemes(_) => "sensitivity schemes".into(),
            Self::ApplyPlan { quantize, keep } => {
                format!("apply plan ({} quantized, {} kept)", quantize.len(), keep.len())
            }
            Self::SetPercentile(p) => format!("percentile {p}"),
            Self::ResetDocument => "reset settings".into(),
            Self::LoadRecipe(p) => format!("load recipe {}", p.display()),
            Self::KeepPreview => "keep previewed scheme".into(),
            _ => return None,
        })
    }
}

struct Entry {
    label: String,
    doc: Doc,
    gesture: Option<u64>,
}

/// Undo / redo of the document: each entry holds the document as it was before
/// (undo) or after (redo) one step.
#[derive(Default)]
pub struct History {
    undo: Vec<Entry>,
    redo: Vec<Entry>,
}

const MAX_STEPS: usize = 200;

impl History {
    /// Records that `before` was replaced by a change called `label`. A change
    /// from the same gesture as the last step extends that step.
    pub fn record(&mut self, label: String, before: Doc, gesture: Option<u64>) {
        self.redo.clear();
        if gesture.is_some() && self.undo.last().is_some_and(|e| e.gesture == gesture) {
            return;
        }
        self.undo.push(Entry { label, doc: before, gesture });
        if self.undo.len() > MAX_STEPS {
            self.undo.remove(0);
        }
    }

    /// The document one step back, given the current one; `None` when there is no step.
    pub fn undo(&mut self, current: &Doc) -> Option<Doc> {
        let e = self.undo.pop()?;
        self.redo.push(Entry { label: e.label, doc: current.clone(), gesture: None });
        Some(e.doc)
    }

    pub fn redo(&mut self, current: &Doc) -> Option<Doc> {
        let e = self.redo.pop()?;
        self.undo.push(Entry { label: e.label, doc: current.clone(), gesture: None });
        Some(e.doc)
    }

    pub fn undo_label(&self) -> Option<String> {
        self.undo.last().map(|e| e.label.clone())
    }

    pub fn redo_label(&self) -> Option<String> {
        self.redo.last().map(|e| e.label.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(p: f64) -> Doc {
        Doc { percentile: p, ..Doc::default() }
    }

    #[test]
    fn undo_and_redo_walk_the_steps_and_a_gesture_is_one_step() {
        let mut h = History::default();
        h.record("a".into(), doc(1.0), None);
        h.record("drag".into(), doc(2.0), Some(7));
        h.record("drag".into(), doc(3.0), Some(7));
        let current = doc(4.0);
        assert_eq!(h.undo(&current), Some(doc(2.0)), "the whole drag is undone at once");
        assert_eq!(h.redo_label().as_deref(), Some("drag"));
        assert_eq!(h.undo(&doc(2.0)), Some(doc(1.0)));
        assert_eq!(h.undo(&doc(1.0)), None);
        assert_eq!(h.redo(&doc(1.0)), Some(doc(2.0)));
        assert_eq!(h.redo(&doc(2.0)), Some(doc(4.0)));
        assert_eq!(h.redo(&doc(4.0)), None);
        // A new change drops the redo steps.
        h.undo(&doc(4.0));
        h.record("b".into(), doc(2.0), None);
        assert_eq!(h.redo_label(), None);
    }
}
