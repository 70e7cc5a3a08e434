//! The plots under the histogram: the error histogram and, for per-channel /
//! per-group schemes, each slice's range and error. They share the width of the
//! centre; below a minimum width each they scroll sideways instead of shrinking
//! out of sight.

use eframe::egui::{self, Color32};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints, Points};
use quantscope_engine::{Granularity, QuantResult};

use crate::gui::command::{Command, DialogPurpose};
use crate::gui::state::AppState;

const MIN_PLOT_WIDTH: f32 = 170.0;

#[derive(Default)]
pub struct ErrorPlotsPanel {
    /// Where the per-slice plot was drawn last frame (for "PNG…").
    per_slice_rect: Option<egui::Rect>,
    rect: Option<egui::Rect>,
}

/// Height kept free under the plots for the horizontal scroll bar.
const SCROLL_BAR_ROOM: f32 = 10.0;

impl ErrorPlotsPanel {
    /// Draws into exactly the space the panel gives: a panel grows to fit what
    /// it holds and keeps that size, so content even a little taller would grow
    /// it frame after frame (and squeeze the histogram above).
    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let rect = ui.available_rect_before_wrap();
        let mut child = ui.new_child(egui::UiBuilder::new().max_rect(rect).layout(*ui.layout()));
        child.shrink_clip_rect(rect);
        self.plots_ui(state, &mut child, out);
        self.rect = Some(rect);
        ui.advance_cursor_after_rect(rect);
    }

    /// Where the panel's content was laid out last frame (tests: it holds still).
    pub fn rect(&self) -> Option<egui::Rect> {
        self.rect
    }

    fn plots_ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let Some(a) = state.selected_analysis() else { return };
        let r = &a.result;
        let multi = r.params.len() > 1;
        let n = if multi { 3.0 } else { 1.0 };
        let spacing = ui.spacing().item_spacing;
        let w = ((ui.available_width() - spacing.x * (n - 1.0)) / n).max(MIN_PLOT_WIDTH);
        // Each plot sits under a one-line title (and the per-slice plot under a
        // toolbar too, taken off there); a horizontal scroll bar may need room.
        let title = ui.text_style_height(&egui::TextStyle::Body) + spacing.y;
        let h = (ui.available_height() - title - SCROLL_BAR_ROOM).max(60.0);
        egui::ScrollArea::horizontal().id_salt("error_plots_scroll").show(ui, |ui| {
            ui.horizontal_top(|ui| {
                ui.vertical(|ui| {
                    ui.set_width(w);
                    error_histogram_ui(ui, r, w, h);
                });
                if multi {
                    ui.vertical(|ui| {
                        ui.set_width(w);
                        slice_ranges_ui(ui, r, w, h);
                    });
                    ui.vertical(|ui| {
                        ui.set_width(w);
                        self.slice_error_ui(state, ui, r, (w, h), out);
                    });
                }
            });
        });
    }

    fn slice_error_ui(
        &mut self,
        state: &AppState,
        ui: &mut egui::Ui,
        r: &QuantResult,
        (w, h): (f32, f32),
        out: &mut Vec<Command>,
    ) {
        let what = slice_word(r);
        let mse = state.prefs.slice_mse;
        ui.label(format!("Error per {what}"));
        ui.horizontal(|ui| {
            let mut p = state.prefs.clone();
            ui.selectable_value(&mut p.slice_mse, false, "show SQNR").on_hover_text("SQNR in dB per slice");
            ui.selectable_value(&mut p.slice_mse, true, "show MSE");
            if p != state.prefs {
                out.push(Command::SetPrefs(p));
            }
            if let Some(rect) = self.per_slice_rect
                && ui.small_button("PNG…").on_hover_text("Save this plot as a PNG image").clicked()
            {
                out.push(Command::ShowDialog(DialogPurpose::Png { what: format!("per-{what} error"), rect }));
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
        let name = if mse { "MSE" } else { "SQNR (dB)" };
        let h = h - ui.spacing().interact_size.y - ui.spacing().item_spacing.y;
        let plot = Plot::new("slice_error").width(w).height(h).allow_scroll(false).x_axis_label(what).show(
            ui,
            |p| {
                p.points(Points::new(name, pts).radius(1.5).color(Color32::from_rgb(0, 158, 115)));
            },
        );
        self.per_slice_rect = Some(plot.response.rect);
    }
}

fn slice_word(r: &QuantResult) -> &'static str {
    if matches!(r.granularity, Granularity::Group { .. }) { "group" } else { "channel" }
}

fn error_histogram_ui(ui: &mut egui::Ui, r: &QuantResult, w: f32, h: f32) {
    ui.label("Error R − R' (count)");
    let Some(hist) = &r.error_histogram else { return };
    let bw = hist.bin_width();
    let bars: Vec<Bar> = hist
        .counts
        .iter()
        .enumerate()
        .map(|(i, &c)| Bar::new(hist.lo + (i as f64 + 0.5) * bw, c as f64).width(bw))
        .collect();
    let x_axis = egui_plot::AxisHints::new_x().formatter(super::ticks::axis_label).label_spacing(40.0..=60.0);
    Plot::new("error_hist")
        .width(w)
        .height(h)
        .allow_drag(false)
        .allow_scroll(false)
        .grid_spacing(super::ticks::GRID_SPACING_MIN_PX..=300.0)
        .x_grid_spacer(super::ticks::grid_spacer)
        .custom_x_axes(vec![x_axis])
        .show(ui, |p| {
            p.bar_chart(BarChart::new("R − R'", bars).color(Color32::from_rgb(230, 120, 90)));
        });
}

fn slice_ranges_ui(ui: &mut egui::Ui, r: &QuantResult, w: f32, h: f32) {
    let what = slice_word(r);
    ui.label(format!("Range per {what} (min / max)"));
    let mins: PlotPoints =
        r.slice_ranges.iter().enumerate().map(|(i, s)| [i as f64, f64::from(s.0)]).collect();
    let maxs: PlotPoints =
        r.slice_ranges.iter().enumerate().map(|(i, s)| [i as f64, f64::from(s.1)]).collect();
    Plot::new("slice_ranges")
        .width(w)
        .height(h)
        .legend(Legend::default())
        .allow_scroll(false)
        .x_axis_label(what)
        .show(ui, |p| {
            p.line(Line::new("max", maxs).color(Color32::from_rgb(230, 80, 70)));
            p.line(Line::new("min", mins).color(Color32::from_rgb(86, 180, 233)));
        });
}
