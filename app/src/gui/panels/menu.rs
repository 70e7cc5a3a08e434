//! The menu bar: File (open, recent, save, recipes), Edit (undo, redo, resets),
//! View (drawing options) and the Layer / Sensitivity tabs. It also knows what
//! each file dialog looks like ([`dialog_spec`]).

use eframe::egui;

use crate::gui::command::{Command, CsvKind, DialogPurpose};
use crate::gui::dialogs::{DialogKind, DialogSpec};
use crate::gui::state::{AppState, Prefs, View};
use crate::gui::worker::Source;
use crate::gui::{SAMPLE_BYTES, SAMPLE_NAME};

#[derive(Default)]
pub struct MenuPanel {}

impl MenuPanel {
    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let Self {} = self;
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| file_menu_ui(state, ui, out));
            ui.menu_button("Edit", |ui| edit_menu_ui(state, ui, out));
            ui.menu_button("View", |ui| view_menu_ui(state, ui, out));
            ui.separator();
            for (view, label) in
                [(View::Layer, "Layer"), (View::Sensitivity, "Sensitivity"), (View::Plan, "Plan")]
            {
                if ui.selectable_label(state.view == view, label).clicked() {
                    out.push(Command::SetView(view));
                }
            }
        });
    }
}

fn item(ui: &mut egui::Ui, out: &mut Vec<Command>, label: &str, cmd: Command) {
    if ui.button(label).clicked() {
        out.push(cmd);
        ui.close();
    }
}

fn file_menu_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    item(ui, out, "Open file…", Command::ShowDialog(DialogPurpose::OpenFile));
    item(ui, out, "Open folder…", Command::ShowDialog(DialogPurpose::OpenFolder));
    item(
        ui,
        out,
        "Open bundled sample",
        Command::Open(Source::Bytes { name: SAMPLE_NAME.into(), bytes: SAMPLE_BYTES.to_vec() }),
    );
    ui.menu_button("Recent", |ui| {
        if state.recent.is_empty() {
            ui.weak("(none yet)");
        }
        for p in &state.recent {
            item(ui, out, &p.display().to_string(), Command::Open(Source::Path(p.clone())));
        }
    });
    ui.separator();
    compare_items_ui(state, ui, out);
    ui.separator();
    ui.add_enabled_ui(state.model.is_some(), |ui| {
        item(ui, out, "Save quantized model…", Command::ShowSaveWindow);
        item(ui, out, "Save recipe…", Command::ShowDialog(DialogPurpose::SaveRecipe));
        item(ui, out, "Load recipe…", Command::ShowDialog(DialogPurpose::LoadRecipe));
        item(ui, out, "Load activations…", Command::ShowDialog(DialogPurpose::LoadActivations));
    });
    ui.separator();
    item(ui, out, "Quit (Ctrl+Q)", Command::Quit);
}

/// Compare a published quantization with its original, from either side.
fn compare_items_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    let quantized_open = state.model.as_ref().is_some_and(|m| m.summary.stored.is_some());
    ui.add_enabled_ui(state.model.is_some() && !quantized_open, |ui| {
        item(
            ui,
            out,
            "Compare with quantized folder…",
            Command::ShowDialog(DialogPurpose::CompareQuantized { file: false }),
        );
        item(
            ui,
            out,
            "Compare with quantized file (GGUF)…",
            Command::ShowDialog(DialogPurpose::CompareQuantized { file: true }),
        );
    });
    ui.add_enabled_ui(quantized_open, |ui| {
        item(
            ui,
            out,
            "Compare with original folder…",
            Command::ShowDialog(DialogPurpose::CompareOriginal { file: false }),
        );
        item(
            ui,
            out,
            "Compare with original file…",
            Command::ShowDialog(DialogPurpose::CompareOriginal { file: true }),
        );
    });
    ui.add_enabled_ui(state.compare.summary.is_some(), |ui| {
        item(ui, out, "Close comparison", Command::CloseComparison);
    });
}

fn edit_menu_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    let undo = state.undo_label.as_ref().map_or("Undo".into(), |l| format!("Undo {l}"));
    let redo = state.redo_label.as_ref().map_or("Redo".into(), |l| format!("Redo {l}"));
    ui.add_enabled_ui(state.undo_label.is_some(), |ui| {
        item(ui, out, &format!("{undo}   (Ctrl+Z)"), Command::Undo);
    });
    ui.add_enabled_ui(state.redo_label.is_some(), |ui| {
        item(ui, out, &format!("{redo}   (Ctrl+Shift+Z)"), Command::Redo);
    });
    ui.separator();
    let layer = state.selected.clone().filter(|n| state.doc.overrides.contains_key(n));
    ui.add_enabled_ui(layer.is_some(), |ui| {
        if let Some(n) = &layer {
            item(ui, out, "Reset this layer to the model's scheme", Command::ResetLayer(n.clone()));
        } else {
            let _ = ui.button("Reset this layer to the model's scheme");
        }
    });
    ui.add_enabled_ui(!state.doc.overrides.is_empty(), |ui| {
        item(ui, out, "Reset every layer to the model's scheme", Command::ResetAllLayers);
    });
    item(ui, out, "Reset settings to defaults", Command::ResetDocument);
}

fn view_menu_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    let mut p: Prefs = state.prefs.clone();
    ui.checkbox(&mut p.log_counts, "Log-scale counts");
    ui.checkbox(&mut p.show_grid, "Quantization grid");
    ui.checkbox(&mut p.show_all_calibrations, "All calibration methods");
    ui.separator();
    ui.checkbox(&mut p.builtin_file_dialog, "Use the built-in file dialog");
    if p != state.prefs {
        out.push(Command::SetPrefs(p));
    }
}

/// What the dialog for `purpose` looks like.
pub fn dialog_spec(purpose: &DialogPurpose) -> DialogSpec {
    let spec = |kind, title: &str, filters: &[(&str, &[&str])], file_name: Option<&str>| DialogSpec {
        kind,
        title: title.into(),
        filters: filters
            .iter()
            .map(|(n, exts)| ((*n).to_string(), exts.iter().map(|e| (*e).to_string()).collect()))
            .collect(),
        file_name: file_name.map(Into::into),
    };
    match purpose {
        DialogPurpose::OpenFile => spec(
            DialogKind::PickFile,
            "Open a model",
            &[("safetensors, index or GGUF", &["safetensors", "json", "gguf"])],
            None,
        ),
        DialogPurpose::OpenFolder => spec(DialogKind::PickFolder, "Open a model folder", &[], None),
        DialogPurpose::CompareQuantized { file: false } => {
            spec(DialogKind::PickFolder, "The quantized checkpoint to compare with", &[], None)
        }
        DialogPurpose::CompareQuantized { file: true } => spec(
            DialogKind::PickFile,
            "The quantized file to compare with",
            &[("GGUF or safetensors", &["gguf", "safetensors"])],
            None,
        ),
        DialogPurpose::CompareOriginal { file: false } => {
            spec(DialogKind::PickFolder, "The original (unquantized) checkpoint", &[], None)
        }
        DialogPurpose::CompareOriginal { file: true } => spec(
            DialogKind::PickFile,
            "The original (unquantized) file",
            &[("GGUF, safetensors or index", &["gguf", "safetensors", "json"])],
            None,
        ),
        DialogPurpose::SaveOutput => {
            spec(DialogKind::SaveFile, "Output folder for the quantized model", &[], Some("quantized"))
        }
        DialogPurpose::SaveRecipe => {
            spec(DialogKind::SaveFile, "Save recipe", &[("recipe", &["json"])], Some("recipe.json"))
        }
        DialogPurpose::LoadRecipe => {
            spec(DialogKind::PickFile, "Load recipe", &[("recipe", &["json"])], None)
        }
        DialogPurpose::LoadActivations => spec(
            DialogKind::PickFile,
            "Load activations (saved by quantscope activations)",
            &[("activations", &["safetensors"])],
            None,
        ),
        DialogPurpose::Csv(kind) => {
            let name = match kind {
                CsvKind::Matrix => "sensitivity.csv",
                CsvKind::Ranked { .. } => "ranked.csv",
            };
            spec(DialogKind::SaveFile, "Export CSV", &[("CSV", &["csv"])], Some(name))
        }
        DialogPurpose::Png { what, .. } => {
            let name = format!("{}.png", what.replace(' ', "-"));
            spec(
                DialogKind::SaveFile,
                &format!("Save the {what} as PNG"),
                &[("PNG image", &["png"])],
                Some(&name),
            )
        }
    }
}
