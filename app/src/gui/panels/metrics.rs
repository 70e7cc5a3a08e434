//! The error of the selected tensor under its scheme, and a hint when the result
//! is catastrophic (or mostly clipping by a calibration that clips): which part
//! of the error dominates, the ways out not already taken, and the way back to
//! the defaults.

use eframe::egui::{self, RichText};
use quantscope_engine::{Calibration, FormatKind, Granularity, Mapping, Metrics, Scheme};

use quantscope_engine::awq::GRID;
use quantscope_engine::run::awq_view::AwqView;
use quantscope_engine::run::gptq_view::GptqView;

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
        let failed = state.analysis_failed.is_some();
        let Some(a) = state.selected_analysis() else {
            ui.weak(match (&state.selected, failed) {
                (Some(_), true) => "—",
                (Some(_), false) => "Computing…",
                (None, _) => "No layer selected.",
            });
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
        let (values, vector) = state.selected_info().map_or((0, false), |t| (t.numel(), t.shape.len() <= 1));
        if let Some(cause) = hint_text(&state.analysis_scheme(a), m, values, vector) {
            catastrophe_hint_ui(state, cause, ui, out);
        }
        if let Some(g) = &a.gptq {
            gptq_grid_ui(ui, g);
        }
        if let Some(w) = &a.awq {
            awq_grid_ui(ui, w);
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

/// A method that needs the inputs beside round-to-nearest: weight and output
/// SQNR (dB) as `[(nearest, method); 2]`. `labels`: the method's name, what
/// "nearest" is, the weight SQNR's hover.
fn method_grid_ui(ui: &mut egui::Ui, labels: (&str, &str, &str), [weight, output]: [(f64, f64); 2]) {
    let db = |v: f64| format_sqnr(Some(v));
    let (method, nearest, weight_help) = labels;
    egui::Grid::new(("method_compare", method)).num_columns(3).striped(true).show(ui, |ui| {
        ui.label("");
        ui.strong("nearest").on_hover_text(nearest);
        ui.strong(method);
        ui.end_row();
        ui.label("weight SQNR dB").on_hover_text(weight_help);
        ui.monospace(db(weight.0));
        ui.monospace(db(weight.1));
        ui.end_row();
        ui.label("output SQNR dB").on_hover_text(OUTPUT_SQNR_HELP);
        ui.monospace(db(output.0));
        ui.monospace(db(output.1));
        ui.end_row();
    });
}

/// GPTQ beside round-to-nearest on the captured inputs: the weight error it
/// accepts, the output error it saves, and its loss made readable.
fn gptq_grid_ui(ui: &mut egui::Ui, g: &GptqView) {
    let pairs =
        [(g.rtn.metrics.sqnr_db, g.gptq.metrics.sqnr_db), (g.rtn_output.sqnr_db(), g.output.sqnr_db())];
    method_grid_ui(
        ui,
        ("GPTQ", "round-to-nearest under the same scales", "10·log10(ΣR² / Σ(R − R')²): the weights alone"),
        pairs,
    );
    ui.horizontal_wrapped(|ui| {
        ui.weak(format!("GPTQ loss {:.4e}", g.loss)).on_hover_text(
            "the figure llm-compressor logs per layer: Σ e²/2 over the columns' rounding errors, scaled by \
             the inputs' energy, so it grows with the layer's width and the data and compares nothing; \
             the output SQNR above is the same quantity made relative to the output's power",
        );
        if g.fallback {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "H was not positive definite: round-to-nearest kept",
            );
        }
    });
    ui.weak(
        "Output SQNR: the output's power over the output noise the quantized weights add, on the captured \
         inputs. GPTQ trades weight accuracy for it.",
    );
    ui.separator();
}

/// AWQ beside round-to-nearest on the captured inputs: its scales' effect on
/// the weight and on the output, and which candidate won.
fn awq_grid_ui(ui: &mut egui::Ui, w: &AwqView) {
    let pairs =
        [(w.rtn.metrics.sqnr_db, w.awq.metrics.sqnr_db), (w.rtn_output.sqnr_db(), w.output.sqnr_db())];
    method_grid_ui(
        ui,
        (
            "AWQ",
            "min-max round-to-nearest of the weight as it is",
            "10·log10(ΣR² / Σ(R − R')²), R' = Q(W·s)/s",
        ),
        pairs,
    );
    let choice = if w.candidate.1 {
        format!("ratio {:.3} (candidate {} of 0–{}, 0 the identity)", w.candidate.0, w.best, GRID - 1)
    } else {
        "the identity: no scaling helped".to_string()
    };
    let short = |n: &String| {
        let parts: Vec<&str> = n.trim_end_matches(".weight").rsplit('.').take(2).collect();
        parts.into_iter().rev().collect::<Vec<_>>().join(".")
    };
    let group = if w.group.len() > 1 {
        format!("searched with {}", w.group.iter().map(short).collect::<Vec<_>>().join(", "))
    } else {
        "searched alone on its input".to_string()
    };
    ui.weak(format!("{choice}; s from {:.3} to {:.3}, {group}", w.scale_range.0, w.scale_range.1))
        .on_hover_text(
            "s = x̄^r / w̄^(1−r) per input channel (x̄: mean |x| on the capture, w̄: mean |w| over its group's \
             peak), normalised; the layers fed by the same input share it. The winner gives their outputs \
             the least noise on the captured inputs. A save measures the attention's or the MLP's output \
             instead, and folds 1/s into the norm before",
        );
    ui.weak(
        "AWQ scales up the input channels that carry the most activation before rounding, so their weights \
         round more finely, and the layer before divides them back out.",
    );
    ui.separator();
}

const OUTPUT_SQNR_HELP: &str = "10·log10(Σ‖Wx‖² / Σ‖(W − W')x‖²) over every captured token: the layer's \
     output signal over its output noise (from Σxxᵀ, exact for these inputs)";

/// One metric as text.
type MetricText = fn(&Metrics) -> String;

/// The scheme's metrics beside the compared checkpoint's published ones: short
/// labels and numbers, so three columns fit the narrowest inspector (1000 px).
fn compare_grid_ui(ui: &mut egui::Ui, own: &Metrics, published: &Metrics, scheme: &str) {
    ui.weak(format!("scheme: {scheme}"));
    egui::Grid::new("metrics_compare").num_columns(3).striped(true).show(ui, |ui| {
        ui.label("");
        ui.strong("scheme").on_hover_text(format!("quantscope's scheme for this layer, {scheme}"));
        ui.strong("published").on_hover_text("the compared checkpoint's R' against this original");
        ui.end_row();
        let rows: [(&str, MetricText); 6] = [
            ("SQNR dB", |m| format_sqnr(Some(m.sqnr_db))),
            ("MSE", |m| format!("{:.2e}", m.mse)),
            ("max |err|", |m| format!("{:.2e}", m.max_abs_err)),
            ("cosine", |m| format!("{:.5}", m.cosine)),
            ("clipped %", |m| format!("{:.3}", m.clipped_fraction * 100.0)),
            ("rounding", |m| format!("{:.2e}", m.round_error)),
        ];
        for (name, f) in rows {
            ui.label(name);
            ui.monospace(f(own));
            ui.monospace(f(published));
            ui.end_row();
        }
    });
}

/// Below this SQNR a layer whose error is mostly clipping gets the clipping
/// hint even when not catastrophic (KL on a short bias or norm vector).
pub const CLIPPING_HINT_DB: f64 = 20.0;

/// The hint for a result, if it needs one: which part of the error dominates
/// and the ways out that the scheme has not already taken. `values` is the
/// tensor's element count, `vector` whether it is 1-D (a bias or a norm).
pub fn hint_text(scheme: &Scheme, m: &Metrics, values: usize, vector: bool) -> Option<String> {
    let clipping = m.mse > 0.0 && m.clip_error / m.mse > 0.5;
    let clips_by_design = !matches!(scheme.calibration, Calibration::MinMax | Calibration::Hqq);
    if m.sqnr_db >= CATASTROPHIC_DB && !(clipping && clips_by_design && m.sqnr_db < CLIPPING_HINT_DB) {
        return None;
    }
    let lost = if m.sqnr_db < CATASTROPHIC_DB {
        "Almost all of the signal is lost"
    } else {
        "Much of the signal is lost"
    };
    if clipping {
        let why = match (scheme.calibration, vector) {
            (Calibration::Entropy, true) => format!(
                " KL calibration fits the range to the histogram's bulk, and a {values}-value bias or norm \
                 vector is too short to have one: its few large values carry the signal and are clipped."
            ),
            (Calibration::Entropy, false) => {
                " KL calibration trades the tails for resolution in the bulk.".into()
            }
            _ => String::new(),
        };
        return Some(format!(
            "{lost}, mostly to clipping ({:.4} % of the values fall outside the range).{why} Widen the \
             range: min-max calibration, or drag the red lines outwards.",
            m.clipped_fraction * 100.0
        ));
    }
    let mut ways = Vec::new();
    if matches!(scheme.format, FormatKind::Int(b) if b < 8) {
        ways.push("more bits".to_string());
    }
    match scheme.granularity {
        Granularity::Tensor => ways.push("a finer granularity (per-channel or per-group)".into()),
        Granularity::Channel { .. } => ways.push("per-group granularity".into()),
        _ => {}
    }
    if matches!(scheme.format, FormatKind::Int(_)) && scheme.mapping == Mapping::Symmetric {
        ways.push("asymmetric mapping (all codes on the values' own range)".into());
    }
    let ways = if ways.is_empty() {
        "This scheme has no finer step to offer: look at the values themselves (a few huge ones, NaN).".into()
    } else {
        format!("Use {}.", ways.join(", or "))
    };
    Some(format!("{lost}, mostly to rounding: the step S is coarse for these values. {ways}"))
}

/// Why the error is so large, in the user's terms, with the ways out.
fn catastrophe_hint_ui(state: &AppState, cause: String, ui: &mut egui::Ui, out: &mut Vec<Command>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(sqnr_db: f64, clip_share: f64) -> Metrics {
        Metrics { sqnr_db, mse: 1.0, clip_error: clip_share, clipped_fraction: 0.02, ..Metrics::default() }
    }

    #[test]
    fn a_hint_never_names_what_is_selected() {
        let s: Scheme = "int4:tensor:mse".parse().unwrap();
        let text = hint_text(&s, &metrics(4.6, 0.1), 1000, false).unwrap();
        assert!(text.contains("asymmetric mapping"), "{text}");
        assert!(!text.contains(" symmetric mapping"), "{text}");
        let a: Scheme = "int4:tensor:mse:asym".parse().unwrap();
        let text = hint_text(&a, &metrics(4.6, 0.1), 1000, false).unwrap();
        assert!(!text.contains("symmetric"), "asymmetric is selected: {text}");
        let g: Scheme = "int8:group32:minmax:asym".parse().unwrap();
        let text = hint_text(&g, &metrics(4.6, 0.1), 1000, false).unwrap();
        assert!(!text.contains("more bits") && !text.contains("granularity"), "{text}");
    }

    #[test]
    fn kl_clipping_a_vector_names_the_cause() {
        let s: Scheme = "int8:tensor:entropy".parse().unwrap();
        let text = hint_text(&s, &metrics(11.5, 0.9), 384, true).unwrap();
        assert!(text.contains("KL calibration") && text.contains("384-value"), "{text}");
        // Min-max does not clip by design: no hint above the catastrophic line.
        let mm: Scheme = "int8:tensor:minmax".parse().unwrap();
        assert_eq!(hint_text(&mm, &metrics(11.5, 0.9), 384, true), None);
        assert_eq!(hint_text(&s, &metrics(25.0, 0.9), 384, true), None);
    }
}
