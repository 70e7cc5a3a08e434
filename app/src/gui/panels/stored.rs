//! A layer of a checkpoint someone else quantized, opened without its original:
//! its stored scheme, R′ on the stored grid, how many of the format's codes it
//! uses, and its slices' scales (and zero points). File → Compare with
//! original… measures it against the original.

use eframe::egui::{self, Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints, VLine};
use quantscope_engine::explain;
use quantscope_engine::quantized::StoredScheme;
use quantscope_engine::quantized::view::StoredView;

use super::ticks;
use crate::gui::command::{Command, DialogPurpose};
use crate::gui::state::AppState;

/// Grids with more levels than this are drawn only when asked (they would fill the plot).
const MAX_AUTO_LEVELS: usize = 64;

#[derive(Default)]
pub struct StoredPanel {
    /// The slice whose grid the histogram draws.
    slice: usize,
}

/// The stored scheme in words, for the inspector and hover texts.
pub fn describe(s: &StoredScheme) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("format", s.format.clone()),
        ("bits", s.bits.to_string()),
        ("granularity", s.granularity.clone()),
        ("symmetric", if s.symmetric { "yes" } else { "no (zero points stored)" }.to_string()),
        ("scale dtype", s.scale_dtype.clone()),
        ("nearest quantscope scheme", s.short.clone()),
    ];
    if let Some(g) = s.group_size {
        rows.insert(3, ("group size", g.to_string()));
    }
    if let Some([h, w]) = s.block {
        rows.insert(3, ("block", format!("{h} x {w}")));
    }
    if s.act_order {
        rows.push(("act order", "columns in g_idx order".into()));
    }
    if let Some(bpw) = s.bits_per_weight {
        // A llama.cpp type: a sub-block's min is a real offset, not a zero point.
        if let Some(r) = rows.iter_mut().find(|r| r.0 == "symmetric" && !s.symmetric) {
            r.1 = "no (a min per sub-block)".into();
        }
        rows.insert(2, ("bits per weight", format!("{bpw:.4}")));
    }
    rows
}

impl StoredPanel {
    /// The inspector's part: what is stored, and the way to the original.
    pub fn inspector_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let Some(layer) = state.selected_stored() else { return };
        ui.heading("Stored scheme");
        egui::Grid::new("stored_scheme").num_columns(2).striped(true).show(ui, |ui| {
            for (k, v) in describe(&layer.stored) {
                ui.label(k);
                ui.monospace(v);
                ui.end_row();
            }
            ui.label("tensors");
            ui.monospace(layer.tensors.join("\n"));
            ui.end_row();
        });
        ui.separator();
        ui.label("This model was quantized elsewhere: its R' is what is stored.");
        if ui.button("Compare with original…").clicked() {
            out.push(Command::ShowDialog(DialogPurpose::CompareOriginal { file: false }));
        }
    }

    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let Some(layer) = state.selected_stored() else { return };
        let Some(v) = state.selected_stored_view().cloned() else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Reading {}…", layer.name));
            });
            return;
        };
        ui.horizontal_wrapped(|ui| {
            ui.heading(&v.name);
            ui.label(format!("{:?} · stored as {} ({})", v.shape, v.stored.short, v.stored.format));
        });
        let used = v.codes_used();
        ui.label(format!(
            "{used} of {} codes used · {} slices · R' in [{:.4e}, {:.4e}]",
            v.codes.len(),
            v.params.len(),
            v.stats.range().0,
            v.stats.range().1
        ));
        self.slice = self.slice.min(v.params.len().saturating_sub(1));
        let h = ui.available_height();
        egui::Panel::bottom("stored_plots").resizable(true).default_size((h * 0.4).max(150.0)).show(
            ui,
            |ui| {
                let w = (ui.available_width() - ui.spacing().item_spacing.x) / 2.0;
                let ph = (ui.available_height() - 24.0).max(80.0);
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| {
                        ui.set_width(w);
                        codes_ui(ui, &v, w, ph);
                    });
                    ui.vertical(|ui| {
                        ui.set_width(w);
                        scales_ui(ui, &v, w, ph);
                    });
                });
            },
        );
        self.histogram_ui(state, ui, &v, out);
    }

    fn histogram_ui(&mut self, state: &AppState, ui: &mut egui::Ui, v: &StoredView, out: &mut Vec<Command>) {
        let levels = v
            .params
            .get(self.slice)
            .map(|p| explain::slice_levels(v.format, p, v.work, v.global_scale))
            .unwrap_or_default();
        let show_grid = state.prefs.show_grid || levels.len() <= MAX_AUTO_LEVELS;
        ui.horizontal_wrapped(|ui| {
            if v.params.len() > 1 {
                let label = ui.label("grid of slice");
                ui.add(egui::DragValue::new(&mut self.slice).range(0..=v.params.len() - 1))
                    .labelled_by(label.id);
            }
            ui.label(format!("{} levels", levels.len()));
            if !show_grid {
                let mut p = state.prefs.clone();
                if ui.checkbox(&mut p.show_grid, "draw them").changed() {
                    out.push(Command::SetPrefs(p));
                }
            }
        });
        let h = &v.histogram;
        let bw = h.bin_width();
        let bars: Vec<Bar> = h
            .counts
            .iter()
            .enumerate()
            .map(|(i, &c)| Bar::new(h.lo + (i as f64 + 0.5) * bw, c as f64).width(bw))
            .collect();
        let x_axis = egui_plot::AxisHints::new_x().label("stored value R'").formatter(ticks::axis_label);
        Plot::new("stored_hist")
            .legend(Legend::default())
            .allow_scroll(false)
            .custom_x_axes(vec![x_axis])
            .y_axis_label("count")
            .show(ui, |p| {
                p.bar_chart(BarChart::new("R'", bars).color(Color32::from_rgb(100, 140, 200)));
                if show_grid {
                    for &l in levels.iter().filter(|&&l| f64::from(l) >= h.lo && f64::from(l) <= h.hi) {
                        p.vline(
                            VLine::new("grid levels", f64::from(l)).color(Color32::from_gray(110)).width(0.5),
                        );
                    }
                }
            });
    }
}

/// How many elements use each code (x: the code's value for FP formats, q for INT).
fn codes_ui(ui: &mut egui::Ui, v: &StoredView, w: f32, h: f32) {
    ui.label(RichText::new(format!("Codes used: {} of {}", v.codes_used(), v.codes.len())).strong());
    let bars: Vec<Bar> = v
        .codes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Bar::new(i as f64, c.count as f64).width(0.8).name(format!("{} ({} uses)", c.value, c.count))
        })
        .collect();
    let labels: Vec<f32> = v.codes.iter().map(|c| c.value).collect();
    let x_axis = egui_plot::AxisHints::new_x().label("code").formatter(move |m, _| {
        let i = m.value.round();
        if (m.value - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        labels.get(i as usize).map_or_else(String::new, |v| format!("{v}"))
    });
    Plot::new("stored_codes").width(w).height(h).allow_scroll(false).custom_x_axes(vec![x_axis]).show(
        ui,
        |p| {
            p.bar_chart(BarChart::new("elements per code", bars).color(Color32::from_rgb(0, 158, 115)));
        },
    );
}

/// Each slice's scale (the zero points' range in words: another unit).
fn scales_ui(ui: &mut egui::Ui, v: &StoredView, w: f32, h: f32) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(format!("Scale S per slice ({})", v.params.len())).strong());
        if v.stored.bits_per_weight.is_some() && !v.stored.symmetric {
            // llama.cpp's types subtract a real min m per sub-block.
            let m = v.params.iter().map(|p| p.offset);
            let (lo, hi) = m.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
            ui.label(format!("min m from {lo:.3e} to {hi:.3e}"));
        } else if !v.stored.symmetric {
            let z = v.params.iter().map(|p| p.zero_point);
            let (lo, hi) = (z.clone().min().unwrap_or(0), z.max().unwrap_or(0));
            ui.label(format!("Z from {lo} to {hi}"));
        }
    });
    let scales: PlotPoints =
        v.params.iter().enumerate().map(|(i, p)| [i as f64, f64::from(p.scale)]).collect();
    Plot::new("stored_scales").width(w).height(h).allow_scroll(false).x_axis_label("slice").show(ui, |p| {
        p.line(Line::new("S", scales).color(Color32::from_rgb(230, 80, 70)));
    });
}
