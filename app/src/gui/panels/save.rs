//! The "Save quantized model" window: what will be written (layers, and the
//! config groups with their schemes), the output folder (typed, or chosen in a
//! dialog), layout and verify options, progress with Cancel, and the summary.
//! The save itself runs in the worker.

use std::path::Path;

use eframe::egui;
use quantscope_engine::export::{Activations, ExportMode, ExportSummary};

use crate::gui::command::{Command, DialogPurpose, SaveRequest};
use crate::gui::panels::MODEL_SQNR_HELP;
use crate::gui::state::AppState;

#[derive(Default)]
pub struct SaveWindow {
    pub open: bool,
    /// The output folder, as typed or chosen.
    pub out: String,
    pub fake_quant: bool,
    pub skip_verify: bool,
    pub force: bool,
    pub activations: Activations,
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
}

impl SaveWindow {
    pub fn set_output(&mut self, path: &Path) {
        self.out = path.display().to_string();
    }

    pub fn ui(&mut self, state: &AppState, ctx: &egui::Context, out: &mut Vec<Command>) {
        let mut open = self.open;
        egui::Window::new("Save quantized model")
            .open(&mut open)
            .default_width(480.0)
            .max_width((ctx.content_rect().width() - 40.0).max(300.0))
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(ctx.content_rect().center())
            .show(ctx, |ui| {
                egui::ScrollArea::vertical().max_height(ctx.content_rect().height() * 0.8).show(ui, |ui| {
                    self.contents_ui(state, ui, out);
                });
            });
        self.open = open;
    }

    fn contents_ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let Some(model) = &state.model else {
            ui.label("No model is open: open one first (File > Open…).");
            return;
        };
        what_is_written_ui(state, model.summary.tensors.len(), ui);
        ui.separator();
        ui.horizontal(|ui| {
            let label = ui.label("Output folder");
            ui.add(egui::TextEdit::singleline(&mut self.out).desired_width(260.0).hint_text("a new folder"))
                .labelled_by(label.id);
            if ui.button("Choose…").clicked() {
                out.push(Command::ShowDialog(DialogPurpose::SaveOutput));
            }
        });
        ui.radio_value(&mut self.fake_quant, false, "compressed-tensors (packed INT / FP8 codes + scales)")
            .on_hover_text("pack-quantized INT, naive-quantized FP8 (or W8A8 / FP8_DYNAMIC with activations): loads in vLLM, transformers and llm-compressor.");
        ui.radio_value(&mut self.fake_quant, true, "fake-quant (R' in the original dtype)")
            .on_hover_text("Same layout as the source; any framework loads it.");
        ui.add_enabled_ui(!self.fake_quant, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label("Activations at run time").on_hover_text(
                    "Declared in the config for vLLM's fast kernels; dynamic, so no calibration data is needed",
                );
                ui.radio_value(&mut self.activations, Activations::None, "none (weight-only)");
                ui.radio_value(&mut self.activations, Activations::Int8Dynamic, "INT8 dynamic (W8A8)")
                    .on_hover_text("Needs int8 per-channel symmetric weights");
                ui.radio_value(&mut self.activations, Activations::Fp8Dynamic, "FP8 dynamic (FP8_DYNAMIC)")
                    .on_hover_text("Needs e4m3 per-channel symmetric weights");
            });
        });
        ui.checkbox(&mut self.force, "Replace the folder if it is not empty");
        ui.checkbox(&mut self.skip_verify, "Skip verification (read back and compare bit for bit)");
        ui.separator();
        self.progress_or_button_ui(state, ui, out);
        match &state.save.result {
            Some(Ok(s)) => summary_ui(ui, s),
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Not saved: {e}"));
                ui.weak(
                    "Nothing was written: the output folder is only created once everything is in place.",
                );
            }
            None => {}
        }
    }

    fn progress_or_button_ui(&self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        if let Some((done, total)) = state.save.progress {
            ui.add(egui::ProgressBar::new(done as f32 / total.max(1) as f32).text(format!(
                "{} of {}",
                mib(done),
                mib(total)
            )));
            if ui.button("Cancel").clicked() {
                out.push(Command::CancelSave);
            }
            return;
        }
        let ready = !self.out.trim().is_empty();
        let button = ui.add_enabled(ready, egui::Button::new("Save"));
        let button =
            if ready { button } else { button.on_disabled_hover_text("Type or choose an output folder") };
        if button.clicked() {
            out.push(Command::StartSave(SaveRequest {
                out: self.out.trim().into(),
                fake_quant: self.fake_quant,
                verify: !self.skip_verify,
                force: self.force,
                activations: if self.fake_quant { Activations::None } else { self.activations },
            }));
        }
    }
}

/// How many layers are quantized, and the schemes (config groups) written.
fn what_is_written_ui(state: &AppState, tensors: usize, ui: &mut egui::Ui) {
    let groups = state.save_groups();
    let quantized: usize = groups.iter().map(|g| g.modules.len()).sum();
    ui.label(format!(
        "{quantized} layers quantized, {} tensors copied unchanged. Untick a layer in the browser to keep it.",
        tensors - quantized
    ));
    if groups.is_empty() {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            "No layer is quantized: the copy would equal the source.",
        );
        return;
    }
    ui.label(format!(
        "Schemes written ({} config group{}):",
        groups.len(),
        if groups.len() == 1 { "" } else { "s" }
    ));
    egui::Grid::new("save_groups").striped(true).num_columns(3).show(ui, |ui| {
        for g in &groups {
            ui.monospace(g.layout());
            let n = g.modules.len();
            ui.label(format!("{n} layer{}", if n == 1 { "" } else { "s" }));
            let schemes: Vec<String> = g.schemes.iter().map(ToString::to_string).collect();
            ui.weak(schemes.join(", "))
                .on_hover_text("Calibrations differ per layer but share one stored layout");
            ui.end_row();
        }
    });
    if let Some(p) = &state.preview {
        ui.weak(format!("The preview of {} under {} is not saved unless you keep it.", p.layer, p.scheme));
    }
}

fn summary_ui(ui: &mut egui::Ui, s: &ExportSummary) {
    ui.strong(format!("Saved to {}", s.out.display()));
    egui::Grid::new("save_summary").num_columns(2).show(ui, |ui| {
        ui.label("Tensor bytes");
        ui.label(format!("{} -> {}", mib(s.bytes_before), mib(s.bytes_after)));
        ui.end_row();
        ui.label("Quantized");
        ui.label(format!(
            "{} tensors, {:.1}% of the params; {} copied",
            s.tensors_quantized,
            100.0 * s.params_quantized as f64 / s.params_total.max(1) as f64,
            s.tensors_copied
        ));
        ui.end_row();
        if let (Some(model), Some(worst)) = (s.model_sqnr_db, s.worst_sqnr_db) {
            ui.label("model SQNR");
            ui.label(format!(
                "{model:.1} dB; worst layer {worst:.1} dB ({})",
                s.worst_layer.as_deref().unwrap_or("")
            ))
            .on_hover_text(MODEL_SQNR_HELP);
            ui.end_row();
        }
        ui.label("Verify");
        ui.label(match s.verified_tensors {
            Some(n) => format!("{n} tensors read back: bit-identical"),
            None => "skipped".into(),
        });
        ui.end_row();
        if s.mode == ExportMode::Packed {
            ui.label("Runtimes");
            ui.label(if s.runtime_loadable {
                "loads in vLLM / llm-compressor"
            } else {
                "no quantization_config: vLLM and llm-compressor do not load this"
            });
            ui.end_row();
        }
    });
    for n in &s.notes {
        ui.weak(n);
    }
}
