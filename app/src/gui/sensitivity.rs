//! The whole-model sensitivity view: per-scheme model totals, a ranked layer
//! table with inline bars (top-N worst highlighted), and the layers × schemes
//! SQNR matrix, whose cells open that layer under that scheme. All numbers come
//! from the worker's sweep (`Request::Compare`); this module only lays them out.

use std::sync::Arc;

use eframe::egui::{self, Color32, RichText, Sense};
use quantscope_engine::Scheme;
use quantscope_engine::csv;
use quantscope_engine::rank::cell_metrics;
pub use quantscope_engine::rank::{RankKey, ranked};
use quantscope_engine::sweep::{self, Sweep};

use super::browser::format_sqnr;
use super::{QuantscopeApp, View, png};

/// The view's state; the result itself arrives from the worker.
#[derive(Default)]
pub struct SensitivityState {
    pub result: Option<Arc<Sweep>>,
    pub progress: Option<(usize, usize)>,
    pub error: Option<String>,
    /// (generation, tensors, schemes) of the request in flight or answered.
    pub(crate) sent: Option<(u64, Vec<String>, Vec<Scheme>)>,
    pub new_scheme: String,
    /// Column of the scheme the table ranks by.
    pub rank_scheme: usize,
    pub sort: RankKey,
    /// Reverse the natural order (natural = worst first).
    pub reversed: bool,
    pub top_n: usize,
}

/// Heat colour for a SQNR: red at 10 dB or less, green at 50 dB or more.
pub fn heat(db: f64) -> Color32 {
    if db.is_infinite() {
        return Color32::from_rgb(40, 130, 60);
    }
    let t = ((db - 10.0) / 40.0).clamp(0.0, 1.0) as f32;
    let lerp = |a: f32, b: f32| (a + (b - a) * t) as u8;
    Color32::from_rgb(lerp(200.0, 40.0), lerp(50.0, 150.0), lerp(50.0, 70.0))
}

impl QuantscopeApp {
    /// The layers the sensitivity view sweeps: those a save would quantize.
    pub fn sensitivity_tensors(&self) -> Vec<String> {
        self.model.as_ref().map_or_else(Vec::new, |m| {
            m.summary.tensors.iter().filter(|t| self.quantized_on_save(t)).map(|t| t.name.clone()).collect()
        })
    }

    /// Opens `layer` under `scheme` in the layer view (as that layer's override).
    pub fn open_cell(&mut self, layer: &str, scheme: Scheme) {
        self.select(layer);
        if scheme == self.settings.scheme {
            self.settings.overrides.remove(layer);
        } else {
            self.settings.overrides.insert(layer.to_string(), scheme);
        }
        self.view = View::Layer;
    }
}

pub fn sensitivity_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.heading("Sensitivity");
        if let Some((done, total)) = app.sensitivity.progress {
            ui.add(
                egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                    .desired_width(180.0)
                    .text(format!("{done}/{total} layers")),
            );
        }
        if let Some(s) = app.sensitivity.result.clone()
            && ui.button("Export CSV…").on_hover_text("The SQNR matrix, then the per-scheme totals").clicked()
            && let Some(p) = rfd::FileDialog::new()
                .add_filter("CSV", &["csv"])
                .set_file_name("sensitivity.csv")
                .save_file()
        {
            let text = format!("{}\n{}", csv::matrix(&s), csv::totals(&s));
            if let Err(e) = quantscope_engine::write::write_atomic(&p, text.as_bytes()) {
                app.error = Some(format!("CSV not saved: {e}"));
            }
        }
    });
    schemes_ui(app, ui);
    if let Some(e) = &app.sensitivity.error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    let Some(s) = app.sensitivity.result.clone() else {
        ui.weak("Computing every layer under every scheme…");
        return;
    };
    egui::ScrollArea::vertical().auto_shrink(false).show(ui, |ui| {
        totals_ui(&s, ui);
        ui.separator();
        ranked_ui(app, &s, ui);
        ui.separator();
        matrix_ui(app, &s, ui);
    });
}

fn schemes_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui) {
    ui.horizontal_wrapped(|ui| {
        ui.label("Schemes:");
        let mut remove = None;
        for (i, s) in app.settings.compare_schemes.iter().enumerate() {
            ui.label(RichText::new(s.to_string()).monospace());
            if ui.small_button("x").on_hover_text("Remove this scheme").clicked() {
                remove = Some(i);
            }
        }
        if let Some(i) = remove
            && app.settings.compare_schemes.len() > 1
        {
            app.settings.compare_schemes.remove(i);
        }
    });
    ui.horizontal(|ui| {
        let label = ui.label("Add scheme");
        let edit = ui.add(
            egui::TextEdit::singleline(&mut app.sensitivity.new_scheme)
                .hint_text("e.g. int4:group64:mse:asym")
                .desired_width(220.0),
        );
        let edit = edit.labelled_by(label.id);
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Add").clicked() || enter {
            match app.sensitivity.new_scheme.trim().parse::<Scheme>() {
                Ok(s) if !app.settings.compare_schemes.contains(&s) => {
                    app.settings.compare_schemes.push(s);
                    app.sensitivity.new_scheme.clear();
                }
                Ok(_) => app.sensitivity.new_scheme.clear(),
                Err(e) => app.error = Some(e.to_string()),
            }
        }
        if ui.button("Default set").clicked() {
            app.settings.compare_schemes = sweep::default_schemes();
        }
    });
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
}

fn totals_ui(s: &Sweep, ui: &mut egui::Ui) {
    ui.strong("Model under each scheme");
    egui::Grid::new("totals").striped(true).num_columns(6).show(ui, |ui| {
        for h in
            ["scheme", "stored size", "quantized params", "mean SQNR (weighted)", "worst SQNR", "worst layer"]
        {
            ui.strong(h);
        }
        ui.end_row();
        for t in &s.totals {
            ui.monospace(&t.scheme);
            ui.label(mib(t.model_bytes)).on_hover_text(format!(
                "{} bytes: quantized layers {} (codes + scales + zero points), the rest as stored",
                t.model_bytes, t.quantized_bytes
            ));
            ui.label(format!("{:.1} %", t.quantized_share * 100.0));
            ui.label(t.mean_sqnr_db.map_or("—".into(), |v| format!("{v:.1} dB")));
            ui.label(t.worst_sqnr_db.map_or("—".into(), |v| format!("{v:.1} dB")));
            ui.label(t.worst_layer.as_deref().unwrap_or("—"));
            ui.end_row();
        }
    });
}

fn header(app: &mut QuantscopeApp, ui: &mut egui::Ui, key: RankKey, text: &str) {
    let st = &mut app.sensitivity;
    let arrow = match (st.sort == key, st.reversed) {
        (true, false) => " v",
        (true, true) => " ^",
        _ => "",
    };
    if ui.button(format!("{text}{arrow}")).on_hover_text("Sort (again: reverse)").clicked() {
        if st.sort == key {
            st.reversed = !st.reversed;
        } else {
            st.sort = key;
            st.reversed = false;
        }
    }
}

fn ranked_ui(app: &mut QuantscopeApp, s: &Sweep, ui: &mut egui::Ui) {
    let col = app.sensitivity.rank_scheme.min(s.schemes.len().saturating_sub(1));
    ui.horizontal(|ui| {
        ui.strong("Layers ranked under");
        egui::ComboBox::from_id_salt("rank_scheme").selected_text(&s.schemes[col]).show_ui(ui, |ui| {
            for (i, name) in s.schemes.iter().enumerate() {
                ui.selectable_value(&mut app.sensitivity.rank_scheme, i, name);
            }
        });
        ui.label("highlight the worst");
        ui.add(egui::DragValue::new(&mut app.sensitivity.top_n).range(0..=1000));
        if ui.button("Export CSV…").clicked()
            && let Some(p) =
                rfd::FileDialog::new().add_filter("CSV", &["csv"]).set_file_name("ranked.csv").save_file()
        {
            let text = csv::ranked(s, col, &ranked(s, col, app.sensitivity.sort, app.sensitivity.reversed));
            if let Err(e) = quantscope_engine::write::write_atomic(&p, text.as_bytes()) {
                app.error = Some(format!("CSV not saved: {e}"));
            }
        }
    });
    let order = ranked(s, col, app.sensitivity.sort, app.sensitivity.reversed);
    let worst: Vec<usize> =
        ranked(s, col, RankKey::Sqnr, false).into_iter().take(app.sensitivity.top_n).collect();
    let max_mse = s
        .rows
        .iter()
        .enumerate()
        .filter_map(|(r, _)| cell_metrics(s, r, col))
        .map(|m| m.mse)
        .fold(0.0, f64::max);
    let max_params = s.rows.iter().map(|r| r.params).max().unwrap_or(1).max(1);
    let mut open = None;
    egui::Grid::new("ranked").striped(true).num_columns(6).show(ui, |ui| {
        header(app, ui, RankKey::Name, "layer");
        header(app, ui, RankKey::Params, "size (params)");
        header(app, ui, RankKey::Sqnr, "SQNR dB");
        header(app, ui, RankKey::Mse, "mean sq. error");
        header(app, ui, RankKey::Cosine, "cosine");
        header(app, ui, RankKey::Clipped, "clipped %");
        ui.end_row();
        for &r in &order {
            let row = &s.rows[r];
            let name = if worst.contains(&r) {
                RichText::new(&row.name).color(Color32::from_rgb(240, 110, 100)).strong()
            } else {
                RichText::new(&row.name)
            };
            if ui.link(name).on_hover_text("Open this layer under this scheme").clicked() {
                open = Some(row.name.clone());
            }
            let bar = |ui: &mut egui::Ui, frac: f64, text: String| {
                ui.add(egui::ProgressBar::new(frac.clamp(0.0, 1.0) as f32).desired_width(90.0).text(text));
            };
            bar(ui, row.params as f64 / max_params as f64, row.params.to_string());
            if let Some(m) = cell_metrics(s, r, col) {
                bar(
                    ui,
                    if m.sqnr_db.is_finite() { m.sqnr_db / 60.0 } else { 1.0 },
                    format!("{} dB", format_sqnr(Some(m.sqnr_db))),
                );
                bar(ui, if max_mse > 0.0 { m.mse / max_mse } else { 0.0 }, format!("{:.3e}", m.mse));
                bar(ui, m.cosine, format!("{:.6}", m.cosine));
                bar(ui, m.clipped_fraction * 20.0, format!("{:.3} %", m.clipped_fraction * 100.0));
            } else {
                let err = row.cells[col].as_ref().err().cloned().unwrap_or_default();
                ui.weak("n/a").on_hover_text(err);
                for _ in 0..3 {
                    ui.label("");
                }
            }
            ui.end_row();
        }
    });
    if let Some(name) = open
        && let Ok(scheme) = s.schemes[col].parse()
    {
        app.open_cell(&name, scheme);
    }
}

const CELL: egui::Vec2 = egui::vec2(84.0, 20.0);

fn matrix_ui(app: &mut QuantscopeApp, s: &Sweep, ui: &mut egui::Ui) {
    let col = app.sensitivity.rank_scheme.min(s.schemes.len().saturating_sub(1));
    let order = ranked(s, col, app.sensitivity.sort, app.sensitivity.reversed);
    let mut open = None;
    let inner = ui.vertical(|ui| {
        ui.strong("SQNR (dB), layers × schemes — click a cell to open that layer under that scheme");
        egui::ScrollArea::horizontal().id_salt("matrix_scroll").show(ui, |ui| {
            egui::Grid::new("matrix").spacing([2.0, 2.0]).show(ui, |ui| {
                ui.label("");
                for name in &s.schemes {
                    let parts: Vec<&str> = name.splitn(3, ':').collect();
                    ui.add_sized(
                        CELL + egui::vec2(0.0, 14.0),
                        egui::Label::new(RichText::new(parts.join("\n")).small()),
                    );
                }
                ui.end_row();
                for &r in &order {
                    let row = &s.rows[r];
                    ui.label(&row.name);
                    for (c, scheme) in s.schemes.iter().enumerate() {
                        if cell_ui(ui, s, r, c, &format!("{} under {scheme}", row.name)).clicked() {
                            open = Some((row.name.clone(), scheme.clone()));
                        }
                    }
                    ui.end_row();
                }
            });
        });
    });
    png::save_button(ui, "sensitivity matrix", inner.response.rect, &app.png_status);
    if let Some((name, scheme)) = open
        && let Ok(scheme) = scheme.parse()
    {
        app.open_cell(&name, scheme);
    }
}

/// One coloured, clickable matrix cell; its accessible label names layer and scheme.
fn cell_ui(ui: &mut egui::Ui, s: &Sweep, r: usize, c: usize, label: &str) -> egui::Response {
    let (rect, resp) = ui.allocate_exact_size(CELL, Sense::click());
    let m = cell_metrics(s, r, c);
    let text = m.map_or("n/a".into(), |m| format_sqnr(Some(m.sqnr_db)));
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, label));
    let fill = m.map_or(Color32::from_gray(60), |m| heat(m.sqnr_db));
    let painter = ui.painter();
    painter.rect_filled(rect, 2.0, fill);
    if resp.hovered() {
        painter.rect_stroke(rect, 2.0, egui::Stroke::new(1.5, Color32::WHITE), egui::StrokeKind::Inside);
    }
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        text,
        egui::FontId::monospace(12.0),
        Color32::BLACK,
    );
    let hover = match &s.rows[r].cells[c] {
        Ok(cell) => format!(
            "{label}\nSQNR {} dB, MSE {:.3e}, cosine {:.6}, clipped {:.3} %\nstored {} bytes in {} slice(s){}",
            format_sqnr(Some(cell.metrics.sqnr_db)),
            cell.metrics.mse,
            cell.metrics.cosine,
            cell.metrics.clipped_fraction * 100.0,
            cell.stored_bytes,
            cell.slices,
            cell.fallback.as_deref().map(|f| format!("\n{f}")).unwrap_or_default()
        ),
        Err(e) => format!("{label}\n{e}"),
    };
    resp.on_hover_text(hover)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_runs_red_to_green_and_saturates() {
        let (lo, mid, hi) = (heat(5.0), heat(30.0), heat(60.0));
        assert_eq!(lo, heat(10.0));
        assert_eq!(hi, heat(50.0));
        assert!(lo.r() > mid.r() && mid.r() > hi.r());
        assert!(lo.g() < mid.g() && mid.g() < hi.g());
    }
}
