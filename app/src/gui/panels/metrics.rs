//! The error of the selected tensor under its scheme, and a hint when the result
//! is catastrophic: which part of the error dominates (clipping or rounding) and
//! the way back to the defaults.

use eframe::egui::{self, RichText};
use quantscope_engine::Metrics;

use super::{format_sqnr, sqnr_color};
use crate::gui::command::Command;
use crate::gui::state::AppState;

/// Below this SQNR a result is called catastrophic and gets a hint.
pub const CATASTROPHIC_DB: f64 = 10.0;

#[derive(Default)]
pub struct MetricsPanel {}

fn metric_row(ui: &mut egui::Ui, name: &str, value: String, help: &str) {
    ui.label(name).on_hover_text(help);
    ui.monospace(value).on_hover_text(help);
    ui.end_row();
}

impl MetricsPanel {
    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let Self {} = self;
        ui.heading("Error");
        let Some(a) = state.selected_analysis() else {
            ui.weak(if state.selected.is_some() { "Computing…" } else { "No layer selected." });
            return;
        };
        let m: &Metrics = &a.result.metrics;
        if a.showing_published {
            ui.colored_label(egui::Color32::from_rgb(240, 150, 40), "Published quantization");
        }
        ui.label(
            RichText::new(format!("SQNR: {} dB", format_sqnr(Some(m.sqnr_db))))
                .size(20.0)
                .color(sqnr_color(m.sqnr_db)),
        )
        .on_hover_text(
            "Signal-to-quantization-noise ratio: 10·log10(ΣR² / Σ(R − R')²). About +6 dB per extra bit.",
        );
        if m.sqnr_db < CATASTROPHIC_DB {
            catastrophe_hint_ui(state, m, ui, out);
        }
        if let Some(p) = &a.published {
            compare_grid_ui(
                ui,
                &a.scheme_metrics,
                &p.result.metrics,
                &state.scheme_for(&a.tensor).to_string(),
            );
            return;
        }
        egui::Grid::new("metrics_grid").num_columns(2).striped(true).show(ui, |ui| {
            metric_row(ui, "MSE", format!("{:.4e}", m.mse), "mean((R − R')²) over finite elements");
            metric_row(ui, "RMSE", format!("{:.4e}", m.rmse), "√MSE, in the units of the weights");
            metric_row(ui, "max |error|", format!("{:.4e}", m.max_abs_err), "the worst single element");
            metric_row(
                ui,
                "cosine",
                format!("{:.6}", m.cosine),
                "<R, R'> / (|R|·|R'|): 1 means same direction",
            );
            metric_row(
                ui,
                "clipped",
                format!("{:.4} %", m.clipped_fraction * 100.0),
                "share of finite weights outside the clipping range",
            );
            let share = |v: f64| if m.mse > 0.0 { v / m.mse * 100.0 } else { 0.0 };
            metric_row(
                ui,
                "clipping error",
                format!("{:.3e} ({:.1} %)", m.clip_error, share(m.clip_error)),
                "part of the MSE from clipped elements: a narrower range raises it",
            );
            metric_row(
                ui,
                "rounding error",
                format!("{:.3e} ({:.1} %)", m.round_error, share(m.round_error)),
                "part of the MSE from rounding inside the range: a wider range raises it (S grows)",
            );
            metric_row(
                ui,
                "NaN/Inf",
                m.nonfinite.to_string(),
                "non-finite elements, excluded from every metric",
            );
            metric_row(
                ui,
                "slices",
                a.result.params.len().to_string(),
                "how many (S, Z) pairs this granularity uses",
            );
        });
    }
}

/// One metric as text.
type MetricText = fn(&Metrics) -> String;

/// The scheme's metrics beside the compared checkpoint's published ones.
fn compare_grid_ui(ui: &mut egui::Ui, own: &Metrics, published: &Metrics, scheme: &str) {
    egui::Grid::new("metrics_compare").num_columns(3).striped(true).show(ui, |ui| {
        ui.label("");
        ui.strong(scheme).on_hover_text("quantscope's scheme for this layer");
        ui.strong("published").on_hover_text("the compared checkpoint's R' against this original");
        ui.end_row();
        let rows: [(&str, MetricText); 6] = [
            ("SQNR dB", |m| format_sqnr(Some(m.sqnr_db))),
            ("MSE", |m| format!("{:.4e}", m.mse)),
            ("max |error|", |m| format!("{:.4e}", m.max_abs_err)),
            ("cosine", |m| format!("{:.6}", m.cosine)),
            ("clipped", |m| format!("{:.4} %", m.clipped_fraction * 100.0)),
            ("rounding error", |m| format!("{:.3e}", m.round_error)),
        ];
        for (name, f) in rows {
            ui.label(name);
            ui.monospace(f(own));
            ui.monospace(f(published));
            ui.end_row();
        }
    });
}

/// Why the error is so large, in the user's terms, with the ways out.
fn catastrophe_hint_ui(state: &AppState, m: &Metrics, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    let clipping = m.mse > 0.0 && m.clip_error / m.mse > 0.5;
    let cause = if clipping {
        format!(
            "Almost all of the signal is lost, mostly to clipping ({:.1} % of the weights fall outside the range). \
             Widen the range: min-max calibration, or drag the red lines outwards.",
            m.clipped_fraction * 100.0
        )
    } else {
        "Almost all of the signal is lost, mostly to rounding: the step S is coarse for these values. \
         Use more bits, a finer granularity (per-channel or per-group), or symmetric mapping."
            .to_string()
    };
    egui::Frame::group(ui.style()).fill(ui.visuals().extreme_bg_color).show(ui, |ui| {
        ui.colored_label(ui.visuals().warn_fg_color, cause);
        ui.horizontal_wrapped(|ui| {
            if let Some(n) = state.selected.as_ref().filter(|n| state.doc.overrides.contains_key(*n))
                && ui.button("Reset this layer to the model's scheme").clicked()
            {
                out.push(Command::ResetLayer(n.clone()));
            }
            if ui
                .button("Reset settings to defaults")
                .on_hover_text(format!(
                    "The model's scheme becomes {}; Ctrl+Z undoes",
                    quantscope_engine::Scheme::default()
                ))
                .clicked()
            {
                out.push(Command::ResetDocument);
            }
        });
    });
}
