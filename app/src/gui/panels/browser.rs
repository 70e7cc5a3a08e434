//! The layer browser: tensors grouped by module path, a filter box, sortable
//! columns (shape, dtype, params, SQNR under the current scheme as a coloured
//! cell) and keyboard up/down.

use eframe::egui::{self, Color32, RichText};
use quantscope_engine::TensorInfo;

use super::QuantscopeApp;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Name,
    Shape,
    Dtype,
    Params,
    Sqnr,
}

#[derive(Default)]
pub struct BrowserState {
    pub filter: String,
    pub sort: SortKey,
    pub descending: bool,
}

/// Colour for an SQNR cell: green is safe, red hurts.
pub fn sqnr_color(db: f64) -> Color32 {
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

pub fn format_sqnr(db: Option<f64>) -> String {
    match db {
        Some(v) if v.is_infinite() => "∞".into(),
        Some(v) => format!("{v:.1}"),
        None => "—".into(),
    }
}

/// The tensors the browser shows, filtered and sorted.
fn visible(app: &QuantscopeApp) -> Vec<TensorInfo> {
    let Some(m) = &app.model else { return Vec::new() };
    let filter = app.browser.filter.to_lowercase();
    let mut rows: Vec<TensorInfo> =
        m.summary.tensors.iter().filter(|t| t.name.to_lowercase().contains(&filter)).cloned().collect();
    let sqnr = |t: &TensorInfo| m.sqnr.get(&t.name).copied().flatten().unwrap_or(f64::NAN);
    match app.browser.sort {
        SortKey::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        SortKey::Shape => rows.sort_by(|a, b| a.shape.cmp(&b.shape)),
        SortKey::Dtype => rows.sort_by_key(TensorInfo::dtype_name),
        SortKey::Params => rows.sort_by_key(TensorInfo::numel),
        SortKey::Sqnr => rows.sort_by(|a, b| sqnr(a).total_cmp(&sqnr(b))),
    }
    if app.browser.descending {
        rows.reverse();
    }
    rows
}

fn module_of(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(m, _)| m)
}

fn header_button(app: &mut QuantscopeApp, ui: &mut egui::Ui, key: SortKey, label: &str) {
    let arrow = if app.browser.sort == key { if app.browser.descending { " v" } else { " ^" } } else { "" };
    if ui.button(RichText::new(format!("{label}{arrow}")).strong()).clicked() {
        if app.browser.sort == key {
            app.browser.descending = !app.browser.descending;
        } else {
            app.browser.sort = key;
            app.browser.descending = false;
        }
    }
}

pub fn browser_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        let label = ui.label("Filter");
        ui.text_edit_singleline(&mut app.browser.filter).labelled_by(label.id);
    });
    ui.horizontal(|ui| {
        ui.label("Sort by");
        header_button(app, ui, SortKey::Name, "name");
        header_button(app, ui, SortKey::Shape, "shape");
        header_button(app, ui, SortKey::Dtype, "dtype");
        header_button(app, ui, SortKey::Params, "params");
        header_button(app, ui, SortKey::Sqnr, "SQNR");
    });
    ui.separator();
    let rows = visible(app);
    keyboard_navigation(app, ui, &rows);
    let tree = app.browser.sort == SortKey::Name;
    egui::ScrollArea::vertical().auto_shrink(false).show(ui, |ui| {
        if tree {
            let mut start = 0;
            while start < rows.len() {
                let module = module_of(&rows[start].name).to_string();
                let end = rows[start..]
                    .iter()
                    .position(|t| module_of(&t.name) != module)
                    .map_or(rows.len(), |k| start + k);
                let title = if module.is_empty() { "(top level)".to_string() } else { module.clone() };
                egui::CollapsingHeader::new(title).id_salt(&module).default_open(true).show(ui, |ui| {
                    rows_ui(app, ui, &rows[start..end], true);
                });
                start = end;
            }
        } else {
            rows_ui(app, ui, &rows, false);
        }
    });
}

fn rows_ui(app: &mut QuantscopeApp, ui: &mut egui::Ui, rows: &[TensorInfo], short_names: bool) {
    egui::Grid::new(ui.next_auto_id()).striped(true).num_columns(6).show(ui, |ui| {
        for t in rows {
            if t.is_quantizable() && t.shape.len() >= 2 {
                let mut on = app.quantized_on_save(t);
                let hover = "Quantize this layer when saving (unticked: copied unchanged)";
                if ui.checkbox(&mut on, "").on_hover_text(hover).changed() {
                    app.set_quantized_on_save(t, on);
                }
            } else {
                ui.label("");
            }
            let label =
                if short_names { t.name.rsplit('.').next().unwrap_or(&t.name) } else { t.name.as_str() };
            let selected = app.selected.as_deref() == Some(t.name.as_str());
            let overridden = app.settings.overrides.contains_key(&t.name);
            let text = if overridden { format!("{label} *") } else { label.to_string() };
            let resp = ui.selectable_label(selected, text).on_hover_text(&t.name);
            if resp.clicked() {
                app.select(&t.name);
            }
            if selected && resp.gained_focus() {
                resp.scroll_to_me(None);
            }
            ui.monospace(format!("{:?}", t.shape));
            ui.monospace(t.dtype_name());
            ui.monospace(human_count(t.numel()));
            let sqnr = app.model.as_ref().and_then(|m| m.sqnr.get(&t.name).copied()).flatten();
            match (&t.not_quantizable, sqnr) {
                (Some(reason), _) => {
                    ui.weak("n/a").on_hover_text(reason);
                }
                (None, Some(db)) => {
                    let cell = egui::Button::new(
                        RichText::new(format_sqnr(Some(db))).color(Color32::BLACK).monospace(),
                    )
                    .fill(sqnr_color(db));
                    if ui.add(cell).on_hover_text("SQNR in dB under this tensor's scheme").clicked() {
                        app.select(&t.name);
                    }
                }
                (None, None) => {
                    ui.weak("…");
                }
            }
            ui.end_row();
        }
    });
}

fn human_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// Up/down move the selection through the visible rows (unless a text box has focus).
fn keyboard_navigation(app: &mut QuantscopeApp, ui: &egui::Ui, rows: &[TensorInfo]) {
    if ui.memory(|m| m.focused().is_some()) && ui.ctx().text_edit_focused() {
        return;
    }
    let (up, down) = ui.input(|i| (i.key_pressed(egui::Key::ArrowUp), i.key_pressed(egui::Key::ArrowDown)));
    if !(up || down) || rows.is_empty() {
        return;
    }
    let current = app.selected.as_ref().and_then(|s| rows.iter().position(|t| &t.name == s));
    let next = match (current, down) {
        (None, _) => 0,
        (Some(i), true) => (i + 1).min(rows.len() - 1),
        (Some(i), false) => i.saturating_sub(1),
    };
    let name = rows[next].name.clone();
    app.select(&name);
}
