//! The right-hand inspector (scheme controls, error metrics, teaching panel) and
//! the bottom error plots. Each `*_ui` reads the app state, draws, and records
//! what the user changed; all numbers come from the engine's results.

use eframe::egui::{self, Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints, Points};
use quantscope_engine::explain::{Steps, WorkedExample, fp8_side_by_side, worked_example};
use quantscope_engine::{Calibration, FormatKind, Granularity, ManualRange, Mapping, Metrics, Scheme};

use super::browser::{format_sqnr, sqnr_color};
use super::{QuantscopeApp, calibration_label, granularity_label};

const FORMATS: [(FormatKind, &str); 4] = [
    (FormatKind::Int(8), "INT8"),
    (FormatKind::Int(4), "INT4"),
    (FormatKind::E4M3, "FP8 E4M3"),
    (FormatKind::E5M2, "FP8 E5M2"),
];

fn format_label(f: FormatKind) -> String {
    FORMATS
        .iter()
        .find(|(k, _)| *k == f)
        .map_or_else(|| f.to_string().to_uppercase(), |(_, l)| (*l).to_string())
}

/// Mapping, granularity, calibration and format, for the model or one layer.
pub fn controls_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui) {
    ui.heading("Scheme");
    let selected = app.selected.clone();
    let mut layer_only = selected.as_ref().is_some_and(|n| app.settings.overrides.contains_key(n));
    ui.horizontal(|ui| {
        ui.label("Applies to");
        ui.radio_value(&mut layer_only, false, "whole model");
        ui.add_enabled_ui(selected.is_some(), |ui| ui.radio_value(&mut layer_only, true, "this layer only"));
    });
    match (&selected, layer_only) {
        (Some(n), true) if !app.settings.overrides.contains_key(n) => {
            let s = app.settings.scheme;
            app.settings.overrides.insert(n.clone(), s);
        }
        (Some(n), false) => {
            app.settings.overrides.remove(n);
        }
        _ => {}
    }
    let ndim = selected
        .as_ref()
        .and_then(|n| {
            app.model.as_ref()?.summary.tensors.iter().find(|t| &t.name == n).map(|t| t.shape.len())
        })
        .unwrap_or(2);
    let mut scheme = match (&selected, layer_only) {
        (Some(n), true) => app.scheme_for(n),
        _ => app.settings.scheme,
    };
    let before = scheme;
    scheme_widgets_ui(ui, &mut scheme, ndim, &mut app.settings.percentile);
    if scheme != before {
        match (&selected, layer_only) {
            (Some(n), true) => {
                app.settings.overrides.insert(n.clone(), scheme);
            }
            _ => app.settings.scheme = scheme,
        }
    }
    if !app.settings.overrides.is_empty() {
        ui.horizontal(|ui| {
            ui.weak(format!("{} layer override(s) (*)", app.settings.overrides.len()));
            if ui.small_button("Clear all").clicked() {
                app.settings.overrides.clear();
            }
        });
    }
    ui.separator();
}

fn scheme_widgets_ui(ui: &mut egui::Ui, s: &mut Scheme, ndim: usize, percentile: &mut f64) {
    egui::Grid::new("scheme_grid").num_columns(2).show(ui, |ui| {
        ui.label("");
        egui::ComboBox::from_label("Format").selected_text(format_label(s.format)).show_ui(ui, |ui| {
            for (k, l) in FORMATS {
                ui.selectable_value(&mut s.format, k, l);
            }
        });
        ui.end_row();

        ui.label("Mapping");
        ui.horizontal(|ui| {
            ui.radio_value(&mut s.mapping, Mapping::Symmetric, "symmetric");
            ui.radio_value(&mut s.mapping, Mapping::Asymmetric, "asymmetric");
        });
        ui.end_row();

        ui.label("Granularity");
        ui.horizontal(|ui| {
            let axis = match s.granularity {
                Granularity::Channel { axis } => axis,
                _ => 0,
            };
            let size = match s.granularity {
                Granularity::Group { size } => size,
                _ => 128,
            };
            ui.radio_value(&mut s.granularity, Granularity::Tensor, "per-tensor");
            ui.radio_value(&mut s.granularity, Granularity::Channel { axis }, "per-channel");
            ui.radio_value(&mut s.granularity, Granularity::Group { size }, "per-group");
        });
        ui.end_row();
        match &mut s.granularity {
            Granularity::Channel { axis } => {
                let label = ui.label("Axis");
                ui.add(egui::DragValue::new(axis).range(0..=ndim.saturating_sub(1))).labelled_by(label.id);
                ui.end_row();
            }
            Granularity::Group { size } => {
                let label = ui.label("Group size");
                ui.horizontal(|ui| {
                    ui.add(egui::DragValue::new(size).range(1..=65536)).labelled_by(label.id);
                    for g in [32, 64, 128] {
                        ui.selectable_value(size, g, g.to_string());
                    }
                });
                ui.end_row();
            }
            Granularity::Tensor => {}
        }

        ui.label("");
        let current = std::mem::discriminant(&s.calibration);
        egui::ComboBox::from_label("Calibration").selected_text(calibration_label(&s.calibration)).show_ui(
            ui,
            |ui| {
                let options = [
                    Calibration::MinMax,
                    Calibration::Percentile { p: *percentile },
                    Calibration::Mse,
                    Calibration::Entropy,
                    Calibration::Manual(ManualRange::Ratio { r: 1.0 }),
                ];
                for c in options {
                    let label = match c {
                        Calibration::Manual(_) => "manual (drag the lines)".to_string(),
                        Calibration::Percentile { .. } => "percentile".to_string(),
                        _ => calibration_label(&c),
                    };
                    if ui.selectable_label(std::mem::discriminant(&c) == current, label).clicked() {
                        s.calibration = c;
                    }
                }
            },
        );
        ui.end_row();
        if let Calibration::Percentile { p } = &mut s.calibration {
            let label = ui.label("p (%)");
            if ui
                .add(egui::DragValue::new(p).range(50.01..=100.0).speed(0.01).max_decimals(4))
                .labelled_by(label.id)
                .changed()
            {
                *percentile = *p;
            }
            ui.end_row();
        }
        if let Calibration::Manual(ManualRange::Ratio { r }) = &mut s.calibration {
            let label = ui.label("ratio r");
            ui.add(egui::Slider::new(r, 0.01..=1.0)).labelled_by(label.id);
            ui.end_row();
        }
    });
}

fn metric_row(ui: &mut egui::Ui, name: &str, value: String, help: &str) {
    ui.label(name).on_hover_text(help);
    ui.monospace(value).on_hover_text(help);
    ui.end_row();
}

/// The error of the selected tensor under its scheme.
pub fn metrics_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui) {
    ui.heading("Error");
    let Some(a) = app.analysis.clone().filter(|a| Some(&a.tensor) == app.selected.as_ref()) else {
        ui.weak("No result yet.");
        return;
    };
    let m: &Metrics = &a.result.metrics;
    let sqnr = format_sqnr(Some(m.sqnr_db));
    let color = sqnr_color(m.sqnr_db);
    ui.label(RichText::new(format!("SQNR: {sqnr} dB")).size(20.0).color(color)).on_hover_text(
        "Signal-to-quantization-noise ratio: 10·log10(ΣR² / Σ(R − R')²). +6 dB per extra bit.",
    );
    egui::Grid::new("metrics_grid").num_columns(2).striped(true).show(ui, |ui| {
        metric_row(ui, "MSE", format!("{:.4e}", m.mse), "mean((R − R')²) over finite elements");
        metric_row(ui, "RMSE", format!("{:.4e}", m.rmse), "√MSE, in the units of the weights");
        metric_row(ui, "max |error|", format!("{:.4e}", m.max_abs_err), "the worst single element");
        metric_row(ui, "cosine", format!("{:.6}", m.cosine), "<R, R'> / (|R|·|R'|): 1 means same direction");
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
            format!("{:.4e} ({:.1} %)", m.clip_error, share(m.clip_error)),
            "part of the MSE from clipped elements: a narrower range raises it",
        );
        metric_row(
            ui,
            "rounding error",
            format!("{:.4e} ({:.1} %)", m.round_error, share(m.round_error)),
            "part of the MSE from rounding inside the range: a wider range raises it (S grows)",
        );
        metric_row(ui, "NaN/Inf", m.nonfinite.to_string(), "non-finite elements, excluded from every metric");
        metric_row(
            ui,
            "slices",
            a.result.params.len().to_string(),
            "how many (S, Z) pairs this granularity uses",
        );
    });
    ui.separator();
}

/// Formulas with the live numbers, and the worked example R → Q → R′.
pub fn teach_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui) {
    ui.heading("How it works");
    let Some(a) = app.analysis.clone().filter(|a| Some(&a.tensor) == app.selected.as_ref()) else { return };
    let scheme = app.scheme_for(&a.tensor);
    let r = &a.result;
    if r.params.len() > 1 {
        ui.horizontal(|ui| {
            let label = ui.label("Slice");
            ui.add(egui::DragValue::new(&mut app.teach_slice).range(0..=r.params.len() - 1))
                .labelled_by(label.id);
            if ui.small_button("worst").on_hover_text("the slice with the lowest SQNR").clicked() {
                app.teach_slice = r
                    .slice_metrics
                    .iter()
                    .enumerate()
                    .min_by(|x, y| x.1.sqnr_db.total_cmp(&y.1.sqnr_db))
                    .map_or(0, |(i, _)| i);
            }
        });
    }
    let k = app.teach_slice.min(r.params.len().saturating_sub(1));
    let Some(p) = r.params.get(k).copied() else { return };
    let (rmin, rmax) = r.slice_ranges.get(k).copied().unwrap_or((0.0, 0.0));
    let mono = |ui: &mut egui::Ui, s: String| ui.label(RichText::new(s).monospace());
    ui.label(format!(
        "{} · {:?} mapping · {}",
        format_label(scheme.format),
        scheme.mapping,
        granularity_label(&r.granularity)
    ));
    mono(ui, format!("this slice: Rmin = {rmin:+.6}, Rmax = {rmax:+.6}"));
    mono(ui, format!("clipping range [lo, hi] = [{:+.6}, {:+.6}]", p.lo, p.hi));
    match scheme.format {
        FormatKind::Int(bits) => {
            let (qmin, qmax) = (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1);
            mono(ui, format!("Qmin = {qmin}, Qmax = {qmax}   ({bits}-bit signed)"));
            match scheme.mapping {
                Mapping::Symmetric => {
                    mono(ui, format!("S = max(|lo|, |hi|) / ((Qmax − Qmin)/2) = {:.6e}", p.scale));
                    mono(ui, "Z = 0: real 0.0 is code 0".into());
                }
                Mapping::Asymmetric => {
                    mono(ui, format!("S = (hi − lo) / (Qmax − Qmin) = {:.6e}", p.scale));
                    mono(ui, format!("Z = round(Qmin − lo/S) = {}: real 0.0 is code Z", p.zero_point));
                }
            }
            mono(ui, "Q = clamp(round(R/S) + Z, Qmin, Qmax)".into());
            mono(ui, "R′ = S · (Q − Z)".into());
        }
        FormatKind::E4M3 | FormatKind::E5M2 => {
            let fmax = if scheme.format == FormatKind::E4M3 { 448.0 } else { 57344.0 };
            mono(ui, format!("fmax = {fmax} (largest finite {})", format_label(scheme.format)));
            match scheme.mapping {
                Mapping::Symmetric => mono(ui, format!("S = max(|lo|, |hi|) / fmax = {:.6e}", p.scale)),
                Mapping::Asymmetric => mono(
                    ui,
                    format!("c = (hi + lo)/2 = {:+.6}, S = (hi − lo)/(2·fmax) = {:.6e}", p.offset, p.scale),
                ),
            };
            mono(ui, "Q = fp8(clamp((R − c)/S, ±fmax)),  R′ = S · value(Q) + c".into());
        }
    }
    ui.add_space(4.0);
    let value = app.clicked_value.unwrap_or(rmax * 0.37);
    ui.label(
        RichText::new(format!("Worked example (click the histogram to pick R): R = {value:+.6}")).strong(),
    );
    match worked_example(scheme.format, &p, value) {
        Ok(ex) => worked_example_ui(ui, &ex),
        Err(e) => {
            ui.label(e.to_string());
        }
    }
    if scheme.format.is_fp8() {
        ui.add_space(4.0);
        ui.label(RichText::new("E4M3 vs E5M2 for the same R and range").strong());
        ui.columns(2, |cols| {
            for (col, ex) in cols.iter_mut().zip(fp8_side_by_side(p.lo, p.hi, scheme.mapping, value)) {
                col.label(format_label(ex.format));
                fp8_bits_ui(col, &ex);
                col.monospace(format!("R′ = {:+.6}", ex.dequantized));
                col.monospace(format!("error = {:+.3e}", ex.error));
            }
        });
    }
}

fn worked_example_ui(ui: &mut egui::Ui, ex: &WorkedExample) {
    let line = |ui: &mut egui::Ui, s: String| {
        ui.monospace(s);
    };
    match &ex.steps {
        Steps::Int(s) => {
            line(ui, format!("R / S            = {:+.4}", s.scaled));
            line(ui, format!("round (half-even) = {:+.0}", s.rounded));
            line(ui, format!("+ Z              = {:+.0}", s.shifted));
            let clamp_note = if s.clamped { "  ← clipped" } else { "" };
            line(ui, format!("clamp to [{}, {}] → Q = {}{clamp_note}", s.qmin, s.qmax, s.q));
        }
        Steps::Fp8(s) => {
            line(ui, format!("(R − c) / S      = {:+.6}", s.scaled));
            let clamp_note = if s.clamped { "  ← saturated" } else { "" };
            line(ui, format!("clamp ±{}     = {:+.6}{clamp_note}", s.fmax, s.clamped_value));
            line(ui, format!("round to FP8     = {:+.6} (code 0x{:02X})", s.value, s.code));
            fp8_bits_ui(ui, ex);
        }
    }
    line(ui, format!("R′ = {:+.6}", ex.dequantized));
    ui.label(
        RichText::new(format!("error R − R′ = {:+.3e}", ex.error))
            .monospace()
            .color(Color32::from_rgb(230, 120, 90)),
    );
}

fn fp8_bits_ui(ui: &mut egui::Ui, ex: &WorkedExample) {
    if let Steps::Fp8(s) = &ex.steps {
        let e = format!("{:0w$b}", s.exponent, w = s.exponent_bits as usize);
        let m = format!("{:0w$b}", s.mantissa, w = s.mantissa_bits as usize);
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("{}", s.sign)).monospace().color(Color32::from_rgb(215, 58, 73)));
            ui.label(RichText::new(e).monospace().color(Color32::from_rgb(86, 180, 233)));
            ui.label(RichText::new(m).monospace().color(Color32::from_rgb(0, 158, 115)));
            ui.weak("sign · exponent · mantissa");
        });
    }
}

/// Error histogram, and for per-channel / per-group schemes each slice's range and SQNR.
pub fn error_plots_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui) {
    let Some(a) = app.analysis.clone().filter(|a| Some(&a.tensor) == app.selected.as_ref()) else { return };
    let r = &a.result;
    let multi = r.params.len() > 1;
    ui.columns(if multi { 3 } else { 1 }, |cols| {
        if let Some(h) = &r.error_histogram {
            let w = h.bin_width();
            let bars: Vec<Bar> = h
                .counts
                .iter()
                .enumerate()
                .map(|(i, &c)| Bar::new(h.lo + (i as f64 + 0.5) * w, c as f64).width(w))
                .collect();
            cols[0].label("Error R − R' (count)");
            Plot::new("error_hist").allow_drag(false).allow_scroll(false).show(&mut cols[0], |p| {
                p.bar_chart(BarChart::new("R − R'", bars).color(Color32::from_rgb(230, 120, 90)));
            });
        }
        if multi {
            let what = if matches!(r.granularity, Granularity::Group { .. }) { "group" } else { "channel" };
            cols[1].label(format!("Range per {what} (min / max)"));
            let mins: PlotPoints =
                r.slice_ranges.iter().enumerate().map(|(i, s)| [i as f64, f64::from(s.0)]).collect();
            let maxs: PlotPoints =
                r.slice_ranges.iter().enumerate().map(|(i, s)| [i as f64, f64::from(s.1)]).collect();
            Plot::new("slice_ranges").legend(Legend::default()).allow_scroll(false).show(&mut cols[1], |p| {
                p.line(Line::new("max", maxs).color(Color32::from_rgb(230, 80, 70)));
                p.line(Line::new("min", mins).color(Color32::from_rgb(86, 180, 233)));
            });
            let mse = app.settings.slice_mse;
            cols[2].horizontal(|ui| {
                ui.label(format!("Error per {what}:"));
                ui.selectable_value(&mut app.settings.slice_mse, false, "show SQNR")
                    .on_hover_text("SQNR in dB per slice");
                ui.selectable_value(&mut app.settings.slice_mse, true, "show MSE");
                if let Some(rect) = app.plot_rects.per_slice {
                    super::png::save_button(ui, &format!("per-{what} error"), rect, &app.png_status);
                }
            });
            let pts: PlotPoints = r
                .slice_metrics
                .iter()
                .enumerate()
                .map(|(i, m)| (i, if mse { m.mse } else { m.sqnr_db }))
                .filter(|(_, v)| v.is_finite())
                .map(|(i, v)| [i as f64, v])
                .collect();
            let name = if mse { "MSE" } else { "SQNR" };
            let plot = Plot::new("slice_sqnr").allow_scroll(false).show(&mut cols[2], |p| {
                p.points(Points::new(name, pts).radius(1.5).color(Color32::from_rgb(0, 158, 115)));
            });
            app.plot_rects.per_slice = Some(plot.response.rect);
        }
    });
}
