//! The "input activations" side of a layer: run the model over the inputs, then
//! the selected layer's input histogram with the same clip lines and calibration
//! overlay as the weights, and the W8A8 picture side by side: the weight's
//! error, the input's error under static per-tensor and dynamic per-token
//! quantization, and the weight's error measured on the layer's output. Beside
//! the layer, the end-to-end ranking of every layer ([`super::end_to_end`]).

use eframe::egui;
use egui_plot::{AxisHints, Plot};
use quantscope_engine::Metrics;

use super::histogram::{PlotData, draw_items, methods_legend_ui, plot_legend_ui};
use super::{format_sqnr, sqnr_color, ticks};
use crate::gui::command::Command;
use crate::gui::state::AppState;
use crate::gui::worker::{ActivationView, MAX_SAMPLES};

#[derive(Default)]
pub struct ActivationsPanel {
    /// The typed inputs file; empty: the shipped calibration text.
    inputs: String,
    /// Show the end-to-end ranking of every layer instead of this layer's input.
    pub ranking: bool,
    pub end_to_end: super::end_to_end::EndToEndPanel,
}

impl ActivationsPanel {
    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        self.inputs_ui(state, ui, out);
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.ranking, false, "this layer's input");
            ui.selectable_value(&mut self.ranking, true, "end-to-end ranking (every layer)");
        });
        if self.ranking {
            self.end_to_end.ui(state, ui, out);
            return;
        }
        let a = &state.activations;
        let Some(name) = state.selected.clone() else { return };
        let Some(capture) = &a.capture else {
            if a.progress.is_none() {
                ui.label("Run the model to see what this layer's inputs look like.");
            }
            return;
        };
        if !capture.layers.contains(&name) {
            ui.label(format!("{name} is not the weight of a Linear layer the model runs."));
            return;
        }
        let Some(v) = state.selected_activation() else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Analyzing the input of {name}..."));
            });
            return;
        };
        ui.horizontal_wrapped(|ui| {
            ui.heading(format!("input of {name}"));
            ui.label(format!("{} channels, {} tokens", v.in_features, v.tokens));
        });
        if v.shared_with.len() > 1 {
            ui.weak(format!("shared by {}", v.shared_with.join(", ")));
        }
        errors_ui(state, ui, v);
        methods_legend_ui(
            ui,
            if state.prefs.show_all_calibrations { &v.analysis.calibration_ranges[..] } else { &[] },
        );
        plot_ui(state, ui, v);
    }

    fn inputs_ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let a = &state.activations;
        ui.horizontal_wrapped(|ui| {
            ui.label("Inputs");
            ui.add(
                egui::TextEdit::singleline(&mut self.inputs)
                    .hint_text(format!("built-in text, first {MAX_SAMPLES} sentences"))
                    .desired_width(260.0),
            )
            .on_hover_text(format!(
                "A text file, one sample per line; empty: the text shipped with quantscope. A run takes at \
                 most {MAX_SAMPLES} samples, the first lines."
            ));
            if let Some((done, total)) = a.progress {
                ui.add(
                    egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                        .desired_width(160.0)
                        .text(format!("running {done}/{total}")),
                );
                if ui.button("Cancel").clicked() {
                    out.push(Command::CancelRun);
                }
            } else if ui.button("Run model").clicked() {
                let path = self.inputs.trim();
                out.push(Command::RunModel((!path.is_empty()).then(|| path.into())));
            }
        });
        if let Some(c) = &a.capture {
            ui.weak(format!("{} samples, {} tokens from {}", c.samples, c.tokens, c.source));
        }
        if let Some(e) = &a.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }
}

/// The layer's weight and input errors side by side (W8A8), and its output SQNR.
fn errors_ui(state: &AppState, ui: &mut egui::Ui, v: &ActivationView) {
    let weight = state.selected_analysis().map(|w| w.result.metrics);
    let rows: [(&str, Option<Metrics>, &str); 3] = [
        ("weight", weight, "the weight under the layer's scheme"),
        (
            "input, static per-tensor",
            Some(v.analysis.per_tensor.metrics),
            "one range for every token, from the scheme's calibration",
        ),
        (
            "input, dynamic per-token",
            Some(v.analysis.per_token.metrics),
            "each token's own min-max range, as W8A8 runtimes do",
        ),
    ];
    egui::Grid::new("activation_errors").striped(true).show(ui, |ui| {
        for h in [format!("under {}", v.scheme), "SQNR dB".into(), "MSE".into(), "clipped".into()] {
            ui.strong(h);
        }
        ui.end_row();
        for (label, m, hint) in rows {
            ui.label(label).on_hover_text(hint);
            if let Some(m) = m {
                let db = m.sqnr_db;
                ui.colored_label(sqnr_color(db), format_sqnr(Some(db)));
                ui.monospace(format!("{:.3e}", m.mse));
                ui.monospace(format!("{:.3}%", m.clipped_fraction * 100.0));
            } else {
                ui.weak("-");
                ui.weak("-");
                ui.weak("-");
            }
            ui.end_row();
        }
        ui.label("layer output (weight error)").on_hover_text(
            "10 log10(sum |Wx|^2 / sum |(W - W')x|^2) over every captured token: the weight's error as the layer's output sees it",
        );
        if let Some(o) = v.output {
            let db = o.sqnr_db();
            ui.colored_label(sqnr_color(db), format_sqnr(Some(db)));
            ui.weak(if o.exact { "exact" } else { "diagonal estimate" });
        } else {
            ui.weak("-");
        }
        ui.end_row();
    });
    ui.weak(format!("input errors measured on a sample of {} tokens", v.analysis.sample_tokens));
}

fn plot_ui(state: &AppState, ui: &mut egui::Ui, v: &ActivationView) {
    let r = &v.analysis.per_tensor;
    let (lo, hi) = r.params.first().map_or((0.0, 0.0), |p| (f64::from(p.lo), f64::from(p.hi)));
    let hist = &v.histogram;
    let d = PlotData {
        hist,
        log: state.prefs.log_counts,
        lo,
        hi,
        view: (hist.lo.min(lo), hist.hi.max(hi)),
        grid: if state.prefs.show_grid { &r.grid[..] } else { &[] },
        methods: if state.prefs.show_all_calibrations { &v.analysis.calibration_ranges[..] } else { &[] },
        zero: None,
        dragging: None,
        what: "activations",
    };
    let x_axis = AxisHints::new_x().label("activation value x").formatter(ticks::axis_label);
    // The legend is a row above the plot: inside, it hid bars.
    plot_legend_ui(ui, &d, &[]);
    Plot::new("activations")
        .allow_drag(false)
        .allow_scroll(false)
        .include_x(d.view.0)
        .include_x(d.view.1)
        .include_y(0.0)
        .x_grid_spacer(ticks::grid_spacer)
        .custom_x_axes(vec![x_axis])
        .y_axis_label(if d.log { "log10(count + 1)" } else { "count" })
        .show(ui, |plot_ui| draw_items(plot_ui, &d));
}
