//! The whole-model sensitivity view: the scheme set, per-scheme model totals,
//! then either the ranked layer table or the layers × schemes SQNR matrix, each
//! with a header that stays in view. A matrix cell opens that layer under that
//! scheme as a *preview*: nothing saved changes until "Keep" is pressed. All
//! numbers and the ranking come from the engine (`sweep`, `rank`).

use eframe::egui::{self, Color32, RichText, Sense};
use egui_extras::{Column, TableBuilder};
use quantscope_engine::Scheme;
use quantscope_engine::rank::RankKey;
use quantscope_engine::sweep::{self, Sweep};

use super::format_sqnr;
use crate::gui::command::{Command, CsvKind, DialogPurpose};
use crate::gui::panels::MODEL_SQNR_HELP;
use crate::gui::state::AppState;
use crate::gui::worker::PUBLISHED_COLUMN;

/// Which table the view shows under the totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Table {
    #[default]
    Ranked,
    Matrix,
}

pub struct SensitivityPanel {
    pub new_scheme: String,
    /// Column of the scheme the table ranks by.
    pub rank_scheme: usize,
    pub sort: RankKey,
    /// Reverse the natural order (natural = worst first).
    pub reversed: bool,
    pub top_n: usize,
    pub table: Table,
    /// A scheme that did not parse, shown under the field.
    parse_error: Option<String>,
    matrix_rect: Option<egui::Rect>,
    /// The matrix's vertical scroll, shared by the frozen names and the cells,
    /// and the offset either side must take next frame to follow the other.
    matrix_y: f32,
    sync_names: Option<f32>,
    sync_cells: Option<f32>,
    /// Where the first row's name was drawn last frame (tests: it stays in view).
    pub first_name_rect: Option<egui::Rect>,
}

impl Default for SensitivityPanel {
    fn default() -> Self {
        Self {
            new_scheme: String::new(),
            rank_scheme: 0,
            sort: RankKey::Sqnr,
            reversed: false,
            top_n: 5,
            table: Table::Ranked,
            parse_error: None,
            matrix_rect: None,
            matrix_y: 0.0,
            sync_names: None,
            sync_cells: None,
            first_name_rect: None,
        }
    }
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

impl SensitivityPanel {
    /// The rows in the order shown.
    pub fn order(&self, s: &Sweep, col: usize) -> Vec<usize> {
        s.ranked(col, self.sort, self.reversed)
    }

    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        ui.horizontal_wrapped(|ui| {
            ui.heading("Sensitivity");
            if let Some((done, total)) = state.sensitivity.progress {
                ui.add(
                    egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                        .desired_width(180.0)
                        .text(format!("{done}/{total} layers")),
                );
            }
        });
        self.schemes_ui(state, ui, out);
        if let Some(e) = &state.sensitivity.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let Some(s) = state.sensitivity.result.clone() else {
            ui.weak("Computing every layer a save quantizes under every scheme…");
            return;
        };
        totals_ui(&s, ui);
        ui.separator();
        ui.horizontal_wrapped(|ui| {
            ui.selectable_value(&mut self.table, Table::Ranked, "Ranked layers");
            ui.selectable_value(&mut self.table, Table::Matrix, "Layers × schemes");
            ui.separator();
            if ui.button("Export CSV…").on_hover_text("The SQNR matrix, then the per-scheme totals").clicked()
            {
                out.push(Command::ShowDialog(DialogPurpose::Csv(CsvKind::Matrix)));
            }
        });
        match self.table {
            Table::Ranked => self.ranked_ui(&s, ui, out),
            Table::Matrix => self.matrix_ui(&s, ui, out),
        }
    }

    fn schemes_ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let schemes = &state.doc.compare_schemes;
        ui.horizontal_wrapped(|ui| {
            ui.label("Schemes:");
            for (i, s) in schemes.iter().enumerate() {
                ui.label(RichText::new(s.to_string()).monospace());
                if ui.small_button("x").on_hover_text("Remove this scheme").clicked() && schemes.len() > 1 {
                    let mut next = schemes.clone();
                    next.remove(i);
                    out.push(Command::SetCompareSchemes(next));
                }
            }
        });
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Add scheme");
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.new_scheme)
                    .hint_text("e.g. int4:group64:mse:asym")
                    .desired_width(200.0),
            );
            let edit = edit.labelled_by(label.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Add").clicked() || enter {
                match self.new_scheme.trim().parse::<Scheme>() {
                    Ok(s) => {
                        if !schemes.contains(&s) {
                            let mut next = schemes.clone();
                            next.push(s);
                            out.push(Command::SetCompareSchemes(next));
                        }
                        self.new_scheme.clear();
                        self.parse_error = None;
                    }
                    Err(e) => self.parse_error = Some(e.to_string()),
                }
            }
            if ui.button("Default set").clicked() {
                out.push(Command::SetCompareSchemes(sweep::default_schemes()));
            }
        });
        if let Some(e) = &self.parse_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }

    fn ranked_ui(&mut self, s: &Sweep, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let col = self.rank_scheme.min(s.schemes.len().saturating_sub(1));
        ui.horizontal_wrapped(|ui| {
            ui.label("Ranked under");
            egui::ComboBox::from_id_salt("rank_scheme").selected_text(&s.schemes[col]).show_ui(ui, |ui| {
                for (i, name) in s.schemes.iter().enumerate() {
                    ui.selectable_value(&mut self.rank_scheme, i, name);
                }
            });
            ui.label("highlight the worst");
            ui.add(egui::DragValue::new(&mut self.top_n).range(0..=1000));
            if ui.button("Export CSV…").on_hover_text("This table, in the order shown").clicked() {
                out.push(Command::ShowDialog(DialogPurpose::Csv(CsvKind::Ranked { col })));
            }
        });
        let order = self.order(s, col);
        let worst: Vec<usize> = s.ranked(col, RankKey::Sqnr, false).into_iter().take(self.top_n).collect();
        let max_mse =
            (0..s.rows.len()).filter_map(|r| s.cell_metrics(r, col)).map(|m| m.mse).fold(0.0, f64::max);
        let max_params = s.rows.iter().map(|r| r.params).max().unwrap_or(1).max(1);
        egui::ScrollArea::horizontal().id_salt("ranked_h").show(ui, |ui| {
            TableBuilder::new(ui)
                .id_salt("ranked")
                .striped(true)
                .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
                .column(Column::auto().at_least(220.0).clip(true).resizable(true))
                .columns(Column::exact(130.0), 5)
                .header(22.0, |mut h| {
                    for (key, text) in [
                        (RankKey::Name, "layer"),
                        (RankKey::Params, "size (params)"),
                        (RankKey::Sqnr, "SQNR dB"),
                        (RankKey::Mse, "mean sq. error"),
                        (RankKey::Cosine, "cosine"),
                        (RankKey::Clipped, "clipped %"),
                    ] {
                        h.col(|ui| self.header_ui(ui, key, text));
                    }
                })
                .body(|body| {
                    body.rows(20.0, order.len(), |mut row| {
                        let r = order[row.index()];
                        let item = &s.rows[r];
                        row.col(|ui| {
                            let mut name = RichText::new(&item.name);
                            if worst.contains(&r) {
                                name = name.color(Color32::from_rgb(240, 110, 100)).strong();
                            }
                            if ui.link(name).on_hover_text("Preview this layer under this scheme").clicked() {
                                out.extend(open_cell(&s.schemes[col], &item.name));
                            }
                        });
                        row.col(|ui| {
                            bar_cell(ui, item.params as f64 / max_params as f64, &item.params.to_string());
                        });
                        metric_cells(&mut row, s, r, col, max_mse);
                    });
                });
        });
    }

    fn header_ui(&mut self, ui: &mut egui::Ui, key: RankKey, text: &str) {
        let arrow = match (self.sort == key, self.reversed) {
            (true, false) => " v",
            (true, true) => " ^",
            _ => "",
        };
        if ui.button(format!("{text}{arrow}")).on_hover_text("Sort, worst first (again: reverse)").clicked() {
            if self.sort == key {
                self.reversed = !self.reversed;
            } else {
                self.sort = key;
                self.reversed = false;
            }
        }
    }

    fn matrix_ui(&mut self, s: &Sweep, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let col = self.rank_scheme.min(s.schemes.len().saturating_sub(1));
        let order = self.order(s, col);
        ui.horizontal_wrapped(|ui| {
            ui.label("SQNR (dB). Click a cell to preview that layer under that scheme.");
            if let Some(rect) = self.matrix_rect
                && ui.small_button("PNG…").on_hover_text("Save the matrix as a PNG image").clicked()
            {
                out.push(Command::ShowDialog(DialogPurpose::Png { what: "sensitivity matrix".into(), rect }));
            }
        });
        // The names are a table of their own beside the scrolled cells, so they
        // stay in view; the two share one vertical offset.
        let height = ui.available_height();
        // A side is scrolled by hand only when the other moved (setting the
        // offset every frame would fight the user's own scrolling).
        let (names_to, cells_to) = (self.sync_names.take(), self.sync_cells.take());
        let top = ui.cursor().min;
        let whole = egui::Rect::from_min_size(top, egui::vec2(ui.available_width(), height));
        let (left, right) = whole.split_left_right_at_x(top.x + NAME_WIDTH);
        let column = egui::Layout::top_down(egui::Align::Min);
        let names = ui
            .scope_builder(egui::UiBuilder::new().max_rect(left).layout(column), |ui| {
                self.names_ui(s, &order, names_to, ui)
            })
            .inner;
        let cells = ui
            .scope_builder(egui::UiBuilder::new().max_rect(right).layout(column), |ui| {
                egui::ScrollArea::horizontal()
                    .id_salt("matrix_h")
                    .show(ui, |ui| cells_ui(s, &order, cells_to, ui, out))
            })
            .inner;
        ui.advance_cursor_after_rect(whole);
        // Whichever side the user scrolled leads; the other follows next frame.
        let y = self.matrix_y;
        if (cells.inner - y).abs() > 0.5 {
            (self.matrix_y, self.sync_names) = (cells.inner, Some(cells.inner));
        } else if (names - y).abs() > 0.5 {
            (self.matrix_y, self.sync_cells) = (names, Some(names));
        }
        if self.sync_names.is_some() || self.sync_cells.is_some() {
            ui.ctx().request_repaint();
        }
        let right = cells.inner_rect.max;
        self.matrix_rect = Some(egui::Rect::from_min_max(top, right));
    }

    /// The frozen first column; returns its vertical offset after this frame.
    fn names_ui(&mut self, s: &Sweep, order: &[usize], to: Option<f32>, ui: &mut egui::Ui) -> f32 {
        let mut first = None;
        let out = synced_table(ui, "matrix_names", to)
            .scroll_bar_visibility(egui::scroll_area::ScrollBarVisibility::AlwaysHidden)
            .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
            .column(Column::exact(NAME_WIDTH - 8.0).clip(true))
            .header(36.0, |mut h| {
                h.col(|ui| {
                    ui.strong("layer");
                });
            })
            .body(|body| {
                body.rows(CELL.y + 2.0, order.len(), |mut row| {
                    let name = &s.rows[order[row.index()]].name;
                    let index = row.index();
                    row.col(|ui| {
                        let r = ui.label(name).on_hover_text(name);
                        if index == 0 {
                            first = Some(r.rect);
                        }
                    });
                });
            });
        self.first_name_rect = first;
        out.state.clamped_offset().y
    }
}

/// One side of the matrix: unstriped, scrolled to `to` when the other side moved.
fn synced_table<'a>(ui: &'a mut egui::Ui, id: &str, to: Option<f32>) -> TableBuilder<'a> {
    let table = TableBuilder::new(ui).id_salt(id).striped(false).animate_scrolling(false);
    match to {
        Some(y) => table.vertical_scroll_offset(y),
        None => table,
    }
}

/// The cells beside the frozen names; returns the vertical offset after this frame.
fn cells_ui(s: &Sweep, order: &[usize], to: Option<f32>, ui: &mut egui::Ui, out: &mut Vec<Command>) -> f32 {
    let output = synced_table(ui, "matrix", to)
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .columns(Column::exact(CELL.x), s.schemes.len())
        .header(36.0, |mut h| {
            for name in &s.schemes {
                h.col(|ui| {
                    // Two full lines; table cells would otherwise truncate at the line break.
                    let text = RichText::new(header_text(name)).strong();
                    ui.add(egui::Label::new(text).wrap_mode(egui::TextWrapMode::Extend)).on_hover_text(name);
                });
            }
        })
        .body(|body| {
            body.rows(CELL.y + 2.0, order.len(), |mut row| {
                let r = order[row.index()];
                let name = &s.rows[r].name;
                for (c, scheme) in s.schemes.iter().enumerate() {
                    row.col(|ui| {
                        if cell_ui(ui, s, r, c, &format!("{name} under {scheme}")).clicked() {
                            out.extend(open_cell(scheme, name));
                        }
                    });
                }
            });
        });
    output.state.clamped_offset().y
}

/// The frozen names column's width.
const NAME_WIDTH: f32 = 240.0;

/// What clicking a layer under a column does: preview the layer under that
/// scheme, or show the compared checkpoint's published quantization of it.
fn open_cell(column: &str, layer: &str) -> Option<Command> {
    if column == PUBLISHED_COLUMN {
        return Some(Command::OpenPublished(layer.to_string()));
    }
    column.parse().ok().map(|scheme| Command::Preview { layer: layer.to_string(), scheme })
}

/// A scheme's short form on two lines: format and granularity, then calibration.
fn header_text(short: &str) -> String {
    match short.split_once(':').and_then(|(f, rest)| rest.split_once(':').map(|(g, c)| (f, g, c))) {
        Some((f, g, c)) => format!("{f}:{g}\n{c}"),
        None => short.to_string(),
    }
}

const CELL: egui::Vec2 = egui::vec2(96.0, 20.0);

/// A number with a small bar beside it (not under it), so both stay readable.
fn bar_cell(ui: &mut egui::Ui, frac: f64, text: &str) {
    ui.add_sized([78.0, 18.0], egui::Label::new(RichText::new(text).monospace()).truncate());
    let (rect, _) = ui.allocate_exact_size(egui::vec2(40.0, 8.0), Sense::hover());
    let fill = egui::Rect::from_min_size(
        rect.min,
        egui::vec2(rect.width() * frac.clamp(0.0, 1.0) as f32, rect.height()),
    );
    ui.painter().rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    ui.painter().rect_filled(fill, 2.0, Color32::from_rgb(100, 140, 200));
}

fn metric_cells(row: &mut egui_extras::TableRow<'_, '_>, s: &Sweep, r: usize, col: usize, max_mse: f64) {
    if let Some(m) = s.cell_metrics(r, col) {
        let sqnr_frac = if m.sqnr_db.is_finite() { m.sqnr_db / 60.0 } else { 1.0 };
        row.col(|ui| bar_cell(ui, sqnr_frac, &format_sqnr(Some(m.sqnr_db))));
        row.col(|ui| {
            bar_cell(ui, if max_mse > 0.0 { m.mse / max_mse } else { 0.0 }, &format!("{:.3e}", m.mse));
        });
        row.col(|ui| bar_cell(ui, m.cosine, &format!("{:.6}", m.cosine)));
        row.col(|ui| bar_cell(ui, m.clipped_fraction * 20.0, &format!("{:.3}", m.clipped_fraction * 100.0)));
    } else {
        let err = s.rows[r].cells[col].as_ref().err().cloned().unwrap_or_default();
        row.col(|ui| {
            ui.weak("n/a").on_hover_text(err);
        });
        for _ in 0..3 {
            row.col(|_| {});
        }
    }
}

/// Totals of the model under each scheme.
fn totals_ui(s: &Sweep, ui: &mut egui::Ui) {
    ui.strong("Model under each scheme");
    // At most a third of the view, so the tables below keep their rows.
    let max = (ui.available_height() * 0.3).max(90.0);
    egui::ScrollArea::both().id_salt("totals_h").max_height(max).show(ui, |ui| {
        egui::Grid::new("totals").striped(true).num_columns(6).show(ui, |ui| {
            for h in ["scheme", "stored size", "quantized params", "model SQNR", "worst SQNR", "worst layer"]
            {
                ui.strong(h);
            }
            ui.end_row();
            // A compared checkpoint's published row first: it is what the rest are read against.
            let published = s.totals.iter().filter(|t| t.scheme == PUBLISHED_COLUMN);
            for t in published.chain(s.totals.iter().filter(|t| t.scheme != PUBLISHED_COLUMN)) {
                ui.monospace(&t.scheme);
                ui.label(format!("{:.2} MiB", t.model_bytes as f64 / (1024.0 * 1024.0))).on_hover_text(
                    format!(
                        "{} bytes: quantized layers {} (codes + scales + zero points), the rest as stored",
                        t.model_bytes, t.quantized_bytes
                    ),
                );
                ui.label(format!("{:.1} %", t.quantized_share * 100.0));
                ui.label(t.model_sqnr_db.map_or("—".into(), |v| format!("{v:.1} dB")))
                    .on_hover_text(MODEL_SQNR_HELP);
                ui.label(t.worst_sqnr_db.map_or("—".into(), |v| format!("{v:.1} dB")));
                ui.label(t.worst_layer.as_deref().unwrap_or("—"));
                ui.end_row();
            }
        });
    });
}

/// One coloured, clickable matrix cell; its accessible label names layer and scheme.
fn cell_ui(ui: &mut egui::Ui, s: &Sweep, r: usize, c: usize, label: &str) -> egui::Response {
    let (rect, resp) = ui.allocate_exact_size(CELL, Sense::click());
    let m = s.cell_metrics(r, c);
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

    #[test]
    fn headers_split_into_two_lines() {
        assert_eq!(header_text("int8:group128:minmax:asym"), "int8:group128\nminmax:asym");
        assert_eq!(header_text("e4m3:tensor:mse"), "e4m3:tensor\nmse");
    }
}
