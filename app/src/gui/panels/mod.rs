//! The panels and the window layout. Each panel is a struct holding only its
//! own UI state (filter text, sort order, a drag in progress) with a
//! `ui(&mut self, state: &AppState, ui, out: &mut Vec<Command>)`: it reads the
//! state, draws, and pushes commands. No panel does numerics.
//!
//! Layout: the side panels are resizable within limits that leave the centre at
//! least half the window's width; the error plots sit inside the centre, under
//! the histogram, so no side panel can cover them.

pub mod activations;
pub mod browser;
pub mod end_to_end;
pub mod error_plots;
pub mod histogram;
pub mod menu;
pub mod metrics;
pub mod plan;
pub mod save;
pub mod scheme;
pub mod sensitivity;
pub mod stored;
pub mod teach;
pub mod ticks;

use std::path::PathBuf;

use eframe::egui;

use super::command::Command;
use super::state::{AppState, LayerTab, View};

/// Every panel, and the few things they hand to the shell.
#[derive(Default)]
pub struct Panels {
    pub menu: menu::MenuPanel,
    pub browser: browser::BrowserPanel,
    pub scheme: scheme::SchemePanel,
    pub metrics: metrics::MetricsPanel,
    pub teach: teach::TeachPanel,
    pub histogram: histogram::HistogramPanel,
    pub error_plots: error_plots::ErrorPlotsPanel,
    pub sensitivity: sensitivity::SensitivityPanel,
    pub stored: stored::StoredPanel,
    pub plan: plan::PlanPanel,
    pub activations: activations::ActivationsPanel,
    pub save: save::SaveWindow,
    /// A screenshot region and the file it goes to, once a PNG dialog finished.
    pub pending_png: Option<(egui::Rect, PathBuf)>,
    pub quit_requested: bool,
}

/// Side-panel widths as shares of the window: together at most half of it.
const LEFT_MAX_SHARE: f32 = 0.2;
const RIGHT_MAX_SHARE: f32 = 0.25;

impl Panels {
    pub fn is_dragging(&self) -> bool {
        self.histogram.is_dragging()
    }

    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let width = ui.ctx().content_rect().width();
        egui::Panel::top("menu").show(ui, |ui| {
            self.menu.ui(state, ui, out);
            banners_ui(state, ui, out);
        });
        egui::Panel::bottom("status").show(ui, |ui| status_ui(state, ui));
        let left_max = (width * LEFT_MAX_SHARE).max(180.0);
        egui::Panel::left("browser")
            .resizable(true)
            .default_size(left_max.min(380.0))
            .size_range(160.0..=left_max)
            .show(ui, |ui| self.browser.ui(state, ui, out));
        if state.view == View::Layer {
            let right_max = (width * RIGHT_MAX_SHARE).max(240.0);
            egui::Panel::right("inspector")
                .resizable(true)
                .default_size(right_max.min(420.0))
                .size_range(240.0..=right_max)
                .show(ui, |ui| {
                    // Too-wide content scrolls instead of widening the panel over the plot.
                    egui::ScrollArea::both().auto_shrink(false).show(ui, |ui| {
                        ui.set_max_width(ui.available_width());
                        if state.selected_stored().is_some() {
                            stored::StoredPanel::inspector_ui(state, ui, out);
                            return;
                        }
                        self.scheme.ui(state, ui, out);
                        ui.separator();
                        self.metrics.ui(state, ui, out);
                        ui.separator();
                        self.teach.ui(state, ui, out);
                    });
                });
        }
        egui::CentralPanel::default().show(ui, |ui| match state.view {
            View::Layer => {
                egui::Panel::top("layer_tabs")
                    .show_separator_line(false)
                    .show(ui, |ui| layer_tabs_ui(state, ui, out));
                if state.activations.tab == LayerTab::Activations {
                    self.activations.ui(state, ui, out);
                    return;
                }
                if state.selected_stored().is_some() {
                    self.stored.ui(state, ui, out);
                    return;
                }
                if state.selected_analysis().is_some() {
                    let h = ui.available_height();
                    egui::Panel::bottom("error_plots")
                        .resizable(true)
                        .default_size((h * 0.32).max(150.0))
                        .size_range(120.0..=(h * 0.6).max(130.0))
                        .show(ui, |ui| self.error_plots.ui(state, ui, out));
                }
                self.histogram.ui(state, ui, out);
            }
            View::Sensitivity => self.sensitivity.ui(state, ui, out),
            View::Plan => self.plan.ui(state, ui, out),
        });
        self.save.ui(state, ui.ctx(), out);
    }
}

/// "weights | input activations": which side of the layer the centre shows.
fn layer_tabs_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        for (tab, label) in [(LayerTab::Weights, "weights"), (LayerTab::Activations, "input activations")] {
            if ui.selectable_label(state.activations.tab == tab, label).clicked() {
                out.push(Command::SetLayerTab(tab));
            }
        }
    });
}

/// The error banner, the preview banner, and a hint for catastrophic results.
fn banners_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    if let Some(e) = &state.error {
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(ui.visuals().error_fg_color, format!("Error: {e}"));
            if ui.small_button("Dismiss").clicked() {
                out.push(Command::DismissError);
            }
        });
    }
    compare_banner_ui(state, ui, out);
    if let Some(p) = &state.preview {
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(
                egui::Color32::from_rgb(240, 200, 90),
                format!("Previewing {} under {} — nothing saved changes.", p.layer, p.scheme),
            );
            if ui.button("Keep this for the layer").clicked() {
                out.push(Command::KeepPreview);
            }
            let back = format!("Back to its scheme ({})", state.saved_scheme_for(&p.layer));
            if ui.button(back).clicked() {
                out.push(Command::EndPreview);
            }
        });
    }
}

/// Which checkpoint is compared with the open original, and what did not pair.
fn compare_banner_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    if let Some(name) = &state.compare.pending {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("Pairing {name} with the original…"));
        });
    }
    if let (Some(orig), Some(m)) = (&state.compare.offer_original, &state.model) {
        ui.horizontal_wrapped(|ui| {
            ui.label(format!("{} is a quantized checkpoint.", m.summary.name));
            let name =
                orig.file_name().map_or_else(|| orig.display().to_string(), |n| n.to_string_lossy().into());
            if ui.button(format!("Compare it with {name}")).clicked()
                && let Some(q) = m.summary.path.clone()
            {
                out.push(Command::Compare { original: Some(orig.clone()), quantized: q });
            }
        });
    }
    let Some(c) = &state.compare.summary else { return };
    ui.horizontal_wrapped(|ui| {
        ui.colored_label(
            egui::Color32::from_rgb(240, 150, 40),
            format!("Compared with {} ({}): {} layers paired", c.name, c.stored.method, c.paired.len()),
        );
        if !c.unpaired.is_empty() {
            ui.menu_button(format!("{} not paired…", c.unpaired.len()), |ui| {
                ui.label(
                    "Tensors the comparison leaves out: the quantized checkpoint stores them unquantized \
                     (as embeddings, norms and biases usually are) or lacks them, so there is no published \
                     quantization to set against the original.",
                );
                ui.separator();
                for (n, why) in &c.unpaired {
                    ui.monospace(format!("{n}: {why}"));
                }
            });
        }
        let mut show = state.compare.show_published;
        if ui.checkbox(&mut show, "show published R'").changed() {
            out.push(Command::ShowPublished(show));
        }
        if ui.small_button("Close comparison").clicked() {
            out.push(Command::CloseComparison);
        }
    });
}

fn status_ui(state: &AppState, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        if let Some(m) = &state.model {
            ui.label(format!(
                "{} · {} tensors · {:.1} MB",
                m.summary.name,
                m.summary.tensors.len(),
                m.summary.size_bytes as f64 / 1e6
            ));
            if m.sqnr_total > 0 && m.sqnr_done < m.sqnr_total {
                ui.add(
                    egui::ProgressBar::new(m.sqnr_done as f32 / m.sqnr_total as f32)
                        .desired_width(140.0)
                        .text(format!("SQNR {}/{}", m.sqnr_done, m.sqnr_total)),
                );
            }
        } else if state.opening.is_none() {
            ui.label("No model open");
        }
        if let Some(name) = &state.opening {
            ui.spinner();
            ui.label(format!("Opening {name}…"));
        }
        if state.busy {
            ui.spinner();
        }
        if let Some(a) = &state.analysis {
            ui.weak(format!("computed in {:.0} ms", a.elapsed_ms));
        }
        if let Some(line) = &state.status {
            ui.weak(line);
        }
    });
}

/// What "model SQNR" means, wherever it is shown (docs/numerics.md, "One model SQNR").
pub const MODEL_SQNR_HELP: &str = "Model SQNR: the SQNR of the whole model's relative noise, each quantized \
    layer's noise-to-signal ratio weighted by its params, layers kept as stored counting as noise-free. \
    The Plan view optimises this figure; Save, Sensitivity and `quantscope diff` report the same one.";

/// How a legend entry marks its series.
#[derive(Clone, Copy)]
pub enum Swatch {
    Line,
    Dot(f32),
    Rule,
    /// A filled box (bars, a shaded span).
    Block,
}

/// One legend entry: the series' mark, painted, and its name.
pub fn legend_item(ui: &mut egui::Ui, color: egui::Color32, swatch: Swatch, text: &str) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(16.0, 14.0), egui::Sense::hover());
    let c = rect.center();
    match swatch {
        Swatch::Line => {
            ui.painter()
                .line_segment([rect.left_center(), rect.right_center()], egui::Stroke::new(2.0, color));
        }
        Swatch::Dot(r) => {
            ui.painter().circle_filled(c, r, color);
        }
        Swatch::Rule => {
            ui.painter()
                .line_segment([rect.center_top(), rect.center_bottom()], egui::Stroke::new(1.5, color));
        }
        Swatch::Block => {
            ui.painter().rect_filled(rect.shrink(2.0), 1.0, color);
        }
    }
    ui.label(text);
}

/// A calibration's label, for legends and menus: the engine's, as the CLI's tables show it.
pub fn calibration_label(c: &quantscope_engine::Calibration) -> String {
    c.label()
}

/// A granularity's label: the engine's, as the CLI's tables show it.
pub fn granularity_label(g: &quantscope_engine::Granularity) -> String {
    g.label()
}

/// Colour for an SQNR: green is safe, red hurts.
pub fn sqnr_color(db: f64) -> egui::Color32 {
    use egui::Color32;
    if db >= 40.0 {
        Color32::from_rgb(46, 160, 67)
    } else if db >= 30.0 {
        Color32::from_rgb(150, 170, 40)
    } else if db >= 20.0 {
        Color32::from_rgb(220, 150, 30)
    } else {
        Color32::from_rgb(215, 58, 73)
    }
}

/// An SQNR as shown: one decimal, ∞ when lossless, — when unknown.
pub fn format_sqnr(db: Option<f64>) -> String {
    match db {
        Some(v) if v.is_infinite() => "∞".into(),
        Some(v) => format!("{v:.1}"),
        None => "—".into(),
    }
}
