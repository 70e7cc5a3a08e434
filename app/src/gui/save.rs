//! Saving: the "Save quantized model" window (output folder, layout, verify,
//! progress, summary) and the recipe file (every per-layer choice). The save
//! itself runs in the worker; this module only gathers choices and shows results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eframe::egui;
use quantscope_engine::TensorInfo;
use quantscope_engine::export::{ExportMode, ExportOptions, ExportSummary, quantized_on_save};
use quantscope_engine::recipe::{LayerChoice, Recipe, Resolved};

use super::QuantscopeApp;
use super::worker::Request;

/// The save window's state.
#[derive(Default)]
pub struct SaveDialog {
    pub open: bool,
    /// The output folder, as typed or chosen.
    pub out: String,
    pub fake_quant: bool,
    pub skip_verify: bool,
    pub force: bool,
    /// (bytes done, bytes in all) while a save runs.
    pub progress: Option<(u64, u64)>,
    cancel: Option<Arc<AtomicBool>>,
    pub result: Option<Result<ExportSummary, String>>,
}

impl SaveDialog {
    pub fn running(&self) -> bool {
        self.cancel.is_some()
    }

    /// Called when the worker reports the end of a save.
    pub fn finished(&mut self, result: Result<ExportSummary, String>) {
        self.cancel = None;
        self.progress = None;
        self.result = Some(result);
    }
}

impl QuantscopeApp {
    /// Whether `t` is quantized when the model is saved: the user's checkbox, or
    /// the default rule (float ≥2-D `*.weight`, not embeddings or lm_head).
    pub fn quantized_on_save(&self, t: &TensorInfo) -> bool {
        quantized_on_save(t, self.settings.save_choice.get(&t.name).copied())
    }

    /// Sets the "quantize when saving" checkbox of one layer.
    pub fn set_quantized_on_save(&mut self, t: &TensorInfo, on: bool) {
        if on == quantized_on_save(t, None) {
            self.settings.save_choice.remove(&t.name);
        } else {
            self.settings.save_choice.insert(t.name.clone(), on);
        }
    }

    /// Every choice made in the app, as the export and the recipe file take it.
    pub fn resolved_recipe(&self) -> Resolved {
        let mut layers: BTreeMap<String, LayerChoice> =
            self.settings.overrides.iter().map(|(n, s)| (n.clone(), LayerChoice::Quantize(*s))).collect();
        let tensors = self.model.as_ref().map_or(&[][..], |m| &m.summary.tensors[..]);
        for (name, &on) in &self.settings.save_choice {
            // Forcing a default-excluded layer in needs an explicit entry.
            let choice = if on { LayerChoice::Quantize(self.scheme_for(name)) } else { LayerChoice::Exclude };
            if tensors.iter().any(|t| &t.name == name) || !on {
                layers.insert(name.clone(), choice);
            }
        }
        Resolved { scheme: self.settings.scheme, layers }
    }

    pub fn save_recipe(&self, path: &Path) -> Result<(), String> {
        let r = self.resolved_recipe();
        Recipe::from_choices(&r.scheme, &r.overrides(), &r.excluded()).save(path).map_err(|e| e.to_string())
    }

    /// Replaces the model-wide scheme, overrides and save choices with a recipe's.
    pub fn load_recipe(&mut self, path: &Path) -> Result<(), String> {
        let r = Recipe::load(path).and_then(|r| r.resolve()).map_err(|e| e.to_string())?;
        self.settings.scheme = r.scheme;
        self.settings.overrides = r.overrides();
        self.settings.save_choice = r.excluded().into_iter().map(|n| (n, false)).collect();
        Ok(())
    }

    /// Starts saving to `out` in the worker.
    pub fn start_export(&mut self, out: PathBuf) {
        let cancel = Arc::new(AtomicBool::new(false));
        let d = &mut self.save;
        let options = ExportOptions {
            mode: if d.fake_quant { ExportMode::FakeQuant } else { ExportMode::Packed },
            verify: !d.skip_verify,
            force: d.force,
            fail_after_bytes: None,
        };
        d.cancel = Some(Arc::clone(&cancel));
        d.progress = Some((0, 1));
        d.result = None;
        let recipe = self.resolved_recipe();
        self.worker.send(Request::Export { recipe, out, options, cancel });
    }
}

/// The File menu's recipe and save entries.
pub fn file_menu_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui) {
    if ui.button("Save quantized model…").clicked() {
        app.save.open = true;
        ui.close();
    }
    if ui.button("Save recipe…").clicked() {
        if let Some(p) =
            rfd::FileDialog::new().add_filter("recipe", &["json"]).set_file_name("recipe.json").save_file()
            && let Err(e) = app.save_recipe(&p)
        {
            app.error = Some(format!("Could not save the recipe: {e}"));
        }
        ui.close();
    }
    if ui.button("Load recipe…").clicked() {
        if let Some(p) = rfd::FileDialog::new().add_filter("recipe", &["json"]).pick_file()
            && let Err(e) = app.load_recipe(&p)
        {
            app.error = Some(format!("Could not load the recipe: {e}"));
        }
        ui.close();
    }
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The save window.
pub fn save_window(app: &mut QuantscopeApp, ctx: &egui::Context) {
    let mut open = app.save.open;
    let center = ctx.content_rect().center();
    let window = egui::Window::new("Save quantized model")
        .open(&mut open)
        .default_width(460.0)
        .pivot(egui::Align2::CENTER_CENTER)
        .default_pos(center);
    window.show(ctx, |ui| {
        let (quantized, kept) = app.model.as_ref().map_or((0, 0), |m| {
            let q = m.summary.tensors.iter().filter(|t| app.quantized_on_save(t)).count();
            (q, m.summary.tensors.len() - q)
        });
        ui.label(format!(
            "{quantized} layers quantized (each under its own scheme), {kept} tensors copied unchanged. \
             Untick a layer in the browser to keep it."
        ));
        ui.horizontal(|ui| {
            let label = ui.label("Output folder");
            ui.add(
                egui::TextEdit::singleline(&mut app.save.out).desired_width(260.0).hint_text("new folder"),
            )
            .labelled_by(label.id);
            if ui.button("Choose…").clicked()
                && let Some(p) = rfd::FileDialog::new().set_file_name("quantized").save_file()
            {
                app.save.out = p.display().to_string();
            }
        });
        ui.radio_value(&mut app.save.fake_quant, false, "compressed-tensors (I8 / FP8 codes + scales)")
            .on_hover_text("Loads in vLLM and llm-compressor (INT and symmetric E4M3).");
        ui.radio_value(&mut app.save.fake_quant, true, "fake-quant (R' in the original dtype)")
            .on_hover_text("Same layout as the source; any framework loads it.");
        ui.checkbox(&mut app.save.force, "Replace the folder if it is not empty");
        ui.checkbox(&mut app.save.skip_verify, "Skip verification (read back and compare bit for bit)");
        ui.separator();
        if let Some((done, total)) = app.save.progress {
            ui.add(egui::ProgressBar::new(done as f32 / total.max(1) as f32).text(format!(
                "{} of {}",
                mib(done),
                mib(total)
            )));
            if ui.button("Cancel").clicked()
                && let Some(c) = &app.save.cancel
            {
                c.store(true, Ordering::Relaxed);
            }
        } else {
            let ready = !app.save.out.trim().is_empty() && app.model.is_some();
            if ui.add_enabled(ready, egui::Button::new("Save")).clicked() {
                let out = PathBuf::from(app.save.out.trim());
                app.start_export(out);
            }
        }
        match &app.save.result {
            Some(Ok(s)) => summary_ui(ui, s),
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("Not saved: {e}"));
                ui.weak(
                    "Nothing was written: the output folder is only created once everything is in place.",
                );
            }
            None => {}
        }
    });
    app.save.open = open;
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
        if let (Some(mean), Some(worst)) = (s.mean_sqnr_db, s.worst_sqnr_db) {
            ui.label("SQNR");
            ui.label(format!(
                "mean {mean:.1} dB (params-weighted), worst {worst:.1} dB ({})",
                s.worst_layer.as_deref().unwrap_or("")
            ));
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
