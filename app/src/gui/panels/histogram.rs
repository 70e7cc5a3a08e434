//! The centre view: the selected tensor's weight histogram with the clipping
//! range on top (draggable lines, shaded clipped tails, zero-point marker),
//! optionally the quantization grid and every calibration's clip points.
//!
//! egui_plot has no draggable item, so the plot's own pan/zoom is off and a drag
//! that starts near a range line moves that line (the pattern of rerun's time
//! cursor). The pure part, [`drag_calibration`], is unit-tested.

use eframe::egui::{self, Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Plot, Span, VLine};
use quantscope_engine::{Calibration, FormatKind, Granularity, ManualRange, Mapping, QuantResult, Scheme};

use super::{QuantscopeApp, calibration_label, granularity_label};

/// Which end of the clipping range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Lo,
    Hi,
}

/// Where the two range lines are drawn: the per-tensor range, or for per-channel
/// and per-group schemes the envelope of the slices' ranges (a manual ratio r
/// draws them at r × the tensor's extremes).
pub fn range_lines(scheme: &Scheme, r: &QuantResult) -> (f64, f64) {
    if r.granularity == Granularity::Tensor {
        return r.params.first().map_or((0.0, 0.0), |p| (f64::from(p.lo), f64::from(p.hi)));
    }
    let (mn, mx) = r.stats.range();
    if let Calibration::Manual(ManualRange::Ratio { r: ratio }) = scheme.calibration {
        return (f64::from(mn * ratio), f64::from(mx * ratio));
    }
    let lo = r.params.iter().map(|p| p.lo).fold(f32::INFINITY, f32::min);
    let hi = r.params.iter().map(|p| p.hi).fold(f32::NEG_INFINITY, f32::max);
    if lo.is_finite() && hi.is_finite() {
        (f64::from(lo), f64::from(hi))
    } else {
        (f64::from(mn), f64::from(mx))
    }
}

/// The manual calibration that puts `edge` at `x`. Per-tensor: a range (symmetric
/// mirrors it to ±|x|). Per-channel / per-group: a ratio of each slice's range.
pub fn drag_calibration(scheme: &Scheme, r: &QuantResult, edge: Edge, x: f64) -> Calibration {
    let (lo, hi) = range_lines(scheme, r);
    if r.granularity == Granularity::Tensor {
        let (lo, hi) = match (scheme.mapping, edge) {
            (Mapping::Symmetric, _) => (-x.abs(), x.abs()),
            (Mapping::Asymmetric, Edge::Lo) => (x.min(hi), hi),
            (Mapping::Asymmetric, Edge::Hi) => (lo, x.max(lo)),
        };
        return Calibration::Manual(ManualRange::Range { lo: lo as f32, hi: hi as f32 });
    }
    let (mn, mx) = r.stats.range();
    let extreme = match edge {
        Edge::Lo if mn < 0.0 => f64::from(mn),
        Edge::Hi if mx > 0.0 => f64::from(mx),
        _ => f64::from(mn.abs().max(mx.abs())),
    };
    let ratio = if extreme == 0.0 { 1.0 } else { (x / extreme).abs().clamp(0.001, 1.0) };
    Calibration::Manual(ManualRange::Ratio { r: ratio as f32 })
}

const CLIP_FILL: Color32 = Color32::from_rgba_premultiplied(120, 30, 30, 60);
const METHOD_COLORS: [Color32; 4] = [
    Color32::from_rgb(230, 159, 0),
    Color32::from_rgb(86, 180, 233),
    Color32::from_rgb(0, 158, 115),
    Color32::from_rgb(204, 121, 167),
];

struct PlotOutcome {
    hover_x: Option<f64>,
    drag_start_edge: Option<Edge>,
    drag_x: Option<f64>,
    clicked_x: Option<f64>,
}

pub fn histogram_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui) {
    let Some(name) = app.selected.clone() else {
        ui.centered_and_justified(|ui| ui.label("Select a tensor on the left."));
        return;
    };
    let info = app.model.as_ref().and_then(|m| m.summary.tensors.iter().find(|t| t.name == name).cloned());
    if let Some(reason) = info.as_ref().and_then(|t| t.not_quantizable.clone()) {
        ui.heading(&name);
        ui.label(format!("Not quantizable: {reason}"));
        return;
    }
    let Some(a) = app.analysis.clone().filter(|a| a.tensor == name) else {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("Analyzing {name}…"));
        });
        return;
    };
    let scheme = app.scheme_for(&name);
    let r = &a.result;
    ui.horizontal(|ui| {
        ui.heading(&name);
        ui.label(format!("{:?} · {}", a.shape, granularity_label(&r.granularity)));
        if let Some(f) = &r.fallback {
            ui.colored_label(Color32::from_rgb(230, 160, 40), f);
        }
    });
    ui.horizontal(|ui| {
        ui.checkbox(&mut app.settings.log_counts, "log counts");
        ui.checkbox(&mut app.settings.show_grid, "quantization grid")
            .on_hover_text("the dequantized levels S·(Q − Z) (per-tensor schemes)");
        ui.checkbox(&mut app.settings.show_all_calibrations, "all calibration methods")
            .on_hover_text("where min-max, percentile, MSE and KL-entropy would clip this tensor");
        if let Some(rect) = app.plot_rects.histogram {
            super::png::save_button(ui, "histogram", rect, &app.png_status);
        }
    });
    let Some(hist) = r.histogram.clone() else { return };
    let (lo, hi) = range_lines(&scheme, r);
    let width = hist.bin_width();
    let log = app.settings.log_counts;
    let show_grid = app.settings.show_grid;
    let bars: Vec<Bar> = hist
        .counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let h = if log { (c as f64 + 1.0).log10() } else { c as f64 };
            Bar::new(hist.lo + (i as f64 + 0.5) * width, h).width(width)
        })
        .collect();
    let view_lo = hist.lo.min(lo);
    let view_hi = hist.hi.max(hi);
    let compare = a.compare.clone();
    let grid = r.grid.clone();
    let zero_marker = match (scheme.format, scheme.mapping) {
        (FormatKind::E4M3 | FormatKind::E5M2, Mapping::Asymmetric) => {
            r.params.first().map(|p| (f64::from(p.offset), "offset c".to_string()))
        }
        (_, Mapping::Asymmetric) => {
            r.params.first().map(|p| (0.0, format!("real 0.0 = code Z = {}", p.zero_point)))
        }
        _ => Some((0.0, "real 0.0 = code Z = 0".to_string())),
    };
    let dragging = app.dragging;

    let response = Plot::new("weights")
        .legend(Legend::default())
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .include_x(view_lo)
        .include_x(view_hi)
        .include_y(0.0)
        .x_axis_label("weight value R")
        .y_axis_label(if log { "log10(count + 1)" } else { "count" })
        .show(ui, |plot_ui| {
            plot_ui.bar_chart(BarChart::new("weights", bars).color(Color32::from_rgb(100, 140, 200)));
            if lo > view_lo {
                plot_ui.span(Span::new("clipped", view_lo..=lo).fill(CLIP_FILL));
            }
            if hi < view_hi {
                plot_ui.span(Span::new("clipped", hi..=view_hi).fill(CLIP_FILL));
            }
            if show_grid {
                for &g in &grid {
                    plot_ui.vline(
                        VLine::new("grid levels", f64::from(g)).color(Color32::from_gray(110)).width(0.5),
                    );
                }
            }
            for (k, (c, p)) in compare.iter().enumerate() {
                let color = METHOD_COLORS[k % METHOD_COLORS.len()];
                let label = calibration_label(c);
                plot_ui.vline(VLine::new(label.clone(), f64::from(p.lo)).color(color).width(1.5));
                plot_ui.vline(VLine::new(label, f64::from(p.hi)).color(color).width(1.5));
            }
            if let Some((x, label)) = &zero_marker {
                plot_ui
                    .vline(VLine::new(label.clone(), *x).color(Color32::from_rgb(240, 228, 66)).width(1.0));
            }
            let edge_color =
                |e| if dragging == Some(e) { Color32::WHITE } else { Color32::from_rgb(230, 80, 70) };
            plot_ui.vline(VLine::new("clip range (drag)", lo).color(edge_color(Edge::Lo)).width(2.5));
            plot_ui.vline(VLine::new("clip range (drag)", hi).color(edge_color(Edge::Hi)).width(2.5));

            let resp = plot_ui.response().clone();
            let pointer = plot_ui.pointer_coordinate();
            let mut out = PlotOutcome {
                hover_x: pointer.map(|p| p.x),
                drag_start_edge: None,
                drag_x: None,
                clicked_x: None,
            };
            if resp.drag_started()
                && let Some(pos) = resp.interact_pointer_pos()
            {
                let near =
                    |x: f64| (plot_ui.screen_from_plot(egui_plot::PlotPoint::new(x, 0.0)).x - pos.x).abs();
                let (dl, dh) = (near(lo), near(hi));
                if dl.min(dh) < 8.0 {
                    out.drag_start_edge = Some(if dl <= dh { Edge::Lo } else { Edge::Hi });
                }
            }
            if resp.dragged() {
                out.drag_x = pointer.map(|p| p.x);
            }
            if resp.clicked() {
                out.clicked_x = pointer.map(|p| p.x);
            }
            out
        });
    app.plot_rects.histogram = Some(response.response.rect);
    let out = response.inner;
    if let Some(e) = out.drag_start_edge {
        app.dragging = Some(e);
    }
    if let (Some(e), Some(x)) = (app.dragging, out.drag_x) {
        app.drag_range_to(e, x);
    }
    if response.response.drag_stopped() {
        app.dragging = None;
    }
    if let Some(x) = out.clicked_x {
        app.clicked_value = Some(x as f32);
    }
    ui.horizontal(|ui| {
        if let Some(x) = out.hover_x.filter(|x| *x >= hist.lo && *x <= hist.hi) {
            let bin = (((x - hist.lo) / width) as usize).min(hist.counts.len() - 1);
            ui.monospace(format!("R = {x:+.6}   count in bin = {}", hist.counts[bin]));
        } else {
            ui.weak("Hover for value and count · click a value for the worked example · drag a red line to clip by hand");
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.label(RichText::new(format!("clip [{lo:+.5}, {hi:+.5}]")).monospace());
        });
    });
    if !compare.is_empty() {
        ui.horizontal_wrapped(|ui| {
            for (k, (c, p)) in compare.iter().enumerate() {
                ui.colored_label(
                    METHOD_COLORS[k % 4],
                    format!("{}: [{:+.4}, {:+.4}]", calibration_label(c), p.lo, p.hi),
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantscope_engine::{Options, analyze};

    fn result(scheme: &Scheme) -> QuantResult {
        let v: Vec<f32> = (0..400).map(|i| (i as f32 - 200.0) / 100.0).collect();
        analyze(&v, &[4, 100], scheme, &Options::default()).unwrap()
    }

    #[test]
    fn per_tensor_drag_sets_a_manual_range() {
        let s = Scheme { granularity: Granularity::Tensor, ..Scheme::default() };
        let r = result(&s);
        assert_eq!(range_lines(&s, &r), (-2.0, 2.0));
        let c = drag_calibration(&s, &r, Edge::Hi, 1.0);
        assert_eq!(c, Calibration::Manual(ManualRange::Range { lo: -1.0, hi: 1.0 }));
        let asym = Scheme { mapping: Mapping::Asymmetric, ..s };
        let r = result(&asym);
        let c = drag_calibration(&asym, &r, Edge::Lo, -0.5);
        let Calibration::Manual(ManualRange::Range { lo, hi }) = c else { panic!("range") };
        assert_eq!(lo, -0.5);
        assert!(hi > 1.9);
        // Dragging past the other edge cannot invert the range.
        let c = drag_calibration(&asym, &r, Edge::Lo, 5.0);
        let Calibration::Manual(ManualRange::Range { lo, hi }) = c else { panic!("range") };
        assert!(lo <= hi);
    }

    #[test]
    fn per_channel_drag_sets_a_ratio_and_lines_follow_it() {
        let s = Scheme::default();
        let r = result(&s);
        let c = drag_calibration(&s, &r, Edge::Hi, 0.5);
        let Calibration::Manual(ManualRange::Ratio { r: ratio }) = c else { panic!("ratio") };
        assert!((ratio - 0.5 / 1.99).abs() < 1e-6, "{ratio}");
        let s2 = Scheme { calibration: c, ..s };
        let (lo, hi) = range_lines(&s2, &result(&s2));
        assert!((hi - 0.5).abs() < 1e-6 && lo < 0.0);
    }
}
