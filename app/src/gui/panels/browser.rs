//! The layer browser: tensors grouped by module path, a filter box, sortable
//! columns (SQNR under the tensor's scheme as a coloured cell, params, shape,
//! dtype), a "quantize when saving" checkbox per layer, and keyboard up/down.
//! With activations loaded, each Linear layer also shows its output SQNR.
//!
//! Sorting by SQNR ranks the layers a save quantizes, worst first; tensors a
//! save leaves alone (biases, norms, embeddings) follow, so the top of the list
//! is always a layer that matters.

use eframe::egui::{self, Color32, RichText};
use quantscope_engine::TensorInfo;

use super::{format_sqnr, sqnr_color};
use crate::gui::command::Command;
use crate::gui::state::AppState;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Name,
    Sqnr,
    Params,
    Shape,
    Dtype,
}

#[derive(Default)]
pub struct BrowserPanel {
    pub filter: String,
    pub sort: SortKey,
    pub descending: bool,
    /// The selection the list last showed: a new one (a matrix cell, the plan
    /// table) clears a filter that hides it and scrolls to it.
    pub shown: Option<String>,
}

/// The tensors to list, filtered and sorted.
pub fn visible(state: &AppState, filter: &str, sort: SortKey, descending: bool) -> Vec<TensorInfo> {
    let Some(m) = &state.model else { return Vec::new() };
    let filter = filter.to_lowercase();
    let mut rows: Vec<TensorInfo> =
        m.summary.tensors.iter().filter(|t| t.name.to_lowercase().contains(&filter)).cloned().collect();
    let sqnr = |t: &TensorInfo| m.sqnr.get(&t.name).copied().flatten().unwrap_or(f64::INFINITY);
    match sort {
        SortKey::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        SortKey::Shape => rows.sort_by(|a, b| a.shape.cmp(&b.shape)),
        SortKey::Dtype => rows.sort_by_key(TensorInfo::dtype_name),
        SortKey::Params => rows.sort_by_key(TensorInfo::numel),
        SortKey::Sqnr => {
            // Saved layers first (worst first), the rest after; reversing keeps that split.
            rows.sort_by(|a, b| {
                let (sa, sb) = (state.quantized_on_save(a), state.quantized_on_save(b));
                sb.cmp(&sa).then(sqnr(a).total_cmp(&sqnr(b))).then(a.name.cmp(&b.name))
            });
            if descending {
                let split = rows.iter().position(|t| !state.quantized_on_save(t)).unwrap_or(rows.len());
                rows[..split].reverse();
            }
            return rows;
        }
    }
    if descending {
        rows.reverse();
    }
    rows
}

fn module_of(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(m, _)| m)
}

impl BrowserPanel {
    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        if state.model.is_none() {
            ui.add_space(8.0);
            ui.label(if state.opening.is_some() { "Opening…" } else { "No model open." });
            ui.weak("File > Open file… / Open folder…, or drop a .safetensors file here.");
            return;
        }
        ui.horizontal(|ui| {
            let label = ui.label("Filter");
            ui.add(egui::TextEdit::singleline(&mut self.filter).desired_width(f32::INFINITY))
                .labelled_by(label.id);
        });
        ui.horizontal_wrapped(|ui| {
            ui.label("Sort");
            for (key, label) in [
                (SortKey::Name, "name"),
                (SortKey::Sqnr, "SQNR"),
                (SortKey::Params, "params"),
                (SortKey::Shape, "shape"),
                (SortKey::Dtype, "dtype"),
            ] {
                self.header_button(ui, key, label);
            }
        });
        ui.separator();
        let moved = state.selected != self.shown;
        if moved {
            self.shown.clone_from(&state.selected);
            let hidden = |n: &String| !n.to_lowercase().contains(&self.filter.to_lowercase());
            if state.selected.as_ref().is_some_and(hidden) {
                self.filter.clear();
            }
        }
        let rows = visible(state, &self.filter, self.sort, self.descending);
        keyboard_navigation(state, ui, &rows, out);
        let tree = self.sort == SortKey::Name;
        egui::ScrollArea::both().auto_shrink(false).show(ui, |ui| {
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
                        rows_ui(state, ui, &rows[start..end], (true, moved), out);
                    });
                    start = end;
                }
            } else {
                rows_ui(state, ui, &rows, (false, moved), out);
            }
        });
    }

    fn header_button(&mut self, ui: &mut egui::Ui, key: SortKey, label: &str) {
        let arrow = match (self.sort == key, self.descending) {
            (true, false) => " ^",
            (true, true) => " v",
            _ => "",
        };
        let hover = if key == SortKey::Sqnr {
            "Layers a save quantizes, worst first; the others after"
        } else {
            "Sort (again: reverse)"
        };
        if ui.selectable_label(self.sort == key, format!("{label}{arrow}")).on_hover_text(hover).clicked() {
            if self.sort == key {
                self.descending = !self.descending;
            } else {
                self.sort = key;
                self.descending = false;
            }
        }
    }
}

/// `short`: names without their module (the tree shows it); `moved`: the
/// selection is new, so the list scrolls to it.
fn rows_ui(
    state: &AppState,
    ui: &mut egui::Ui,
    rows: &[TensorInfo],
    (short, moved): (bool, bool),
    out: &mut Vec<Command>,
) {
    egui::Grid::new(ui.next_auto_id()).striped(true).num_columns(6).show(ui, |ui| {
        for t in rows {
            let saved = state.quantized_on_save(t);
            if t.is_quantizable() && t.shape.len() >= 2 {
                let mut on = saved;
                let hover = "Quantize this layer when saving (unticked: copied unchanged)";
                if ui.checkbox(&mut on, "").on_hover_text(hover).changed() {
                    out.push(Command::SetSaveChoice { layer: t.name.clone(), on });
                }
            } else {
                ui.label("");
            }
            let label = if short { t.name.rsplit('.').next().unwrap_or(&t.name) } else { t.name.as_str() };
            let selected = state.selected.as_deref() == Some(t.name.as_str());
            let own = state.doc.overrides.contains_key(&t.name);
            let text = if own { format!("{label} *") } else { label.to_string() };
            let hover = if own { format!("{}\n* has its own scheme", t.name) } else { t.name.clone() };
            let resp = ui.selectable_label(selected, text).on_hover_text(hover);
            if resp.clicked() {
                out.push(Command::Select(t.name.clone()));
            }
            if selected && (moved || resp.gained_focus()) {
                resp.scroll_to_me(None);
            }
            sqnr_cell_ui(state, ui, t, saved, out);
            if !state.activations.output_sqnr.is_empty() {
                output_cell_ui(state, ui, t);
            }
            ui.monospace(human_count(t.numel()));
            ui.monospace(format!("{:?}", t.shape));
            ui.monospace(t.dtype_name());
            ui.end_row();
        }
    });
}

fn sqnr_cell_ui(state: &AppState, ui: &mut egui::Ui, t: &TensorInfo, saved: bool, out: &mut Vec<Command>) {
    // A quantized checkpoint's parts show the layer's stored scheme instead.
    if let Some(l) =
        state.model.as_ref().and_then(|m| m.summary.stored.as_ref()).and_then(|s| s.layer_of(&t.name))
    {
        let text = RichText::new(&l.stored.short).monospace().color(Color32::from_rgb(240, 150, 40));
        let hover: Vec<String> =
            super::stored::describe(&l.stored).into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
        if ui.add(egui::Button::new(text)).on_hover_text(hover.join("\n")).clicked() {
            out.push(Command::Select(t.name.clone()));
        }
        return;
    }
    let sqnr = state.model.as_ref().and_then(|m| m.sqnr.get(&t.name).copied()).flatten();
    match (&t.not_quantizable, sqnr) {
        (Some(reason), _) => {
            ui.weak("n/a").on_hover_text(reason);
        }
        (None, Some(db)) => {
            let fill = if saved { sqnr_color(db) } else { Color32::from_gray(90) };
            let cell =
                egui::Button::new(RichText::new(format_sqnr(Some(db))).color(Color32::BLACK).monospace())
                    .fill(fill);
            let hover = if saved {
                "SQNR in dB under this tensor's scheme"
            } else {
                "SQNR in dB if quantized; a save leaves this tensor unchanged"
            };
            if ui.add(cell).on_hover_text(hover).clicked() {
                out.push(Command::Select(t.name.clone()));
            }
        }
        (None, None) => {
            ui.weak("…");
        }
    }
}

/// With activations loaded: the layer's output SQNR under its scheme.
fn output_cell_ui(state: &AppState, ui: &mut egui::Ui, t: &TensorInfo) {
    match state.activations.output_sqnr.get(&t.name) {
        Some(&db) => {
            ui.colored_label(
                sqnr_color(db),
                RichText::new(format!("out {}", format_sqnr(Some(db)))).monospace(),
            )
            .on_hover_text(
                "output SQNR in dB: the weight's error on the layer's output, over the captured inputs",
            );
        }
        None => {
            ui.label("");
        }
    }
}

fn human_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// Up/down move the selection through the listed rows (unless a text box has focus).
fn keyboard_navigation(state: &AppState, ui: &egui::Ui, rows: &[TensorInfo], out: &mut Vec<Command>) {
    if ui.ctx().text_edit_focused() {
        return;
    }
    let (up, down) = ui.input(|i| (i.key_pressed(egui::Key::ArrowUp), i.key_pressed(egui::Key::ArrowDown)));
    if !(up || down) || rows.is_empty() {
        return;
    }
    let current = state.selected.as_ref().and_then(|s| rows.iter().position(|t| &t.name == s));
    let next = match (current, down) {
        (None, _) => 0,
        (Some(i), true) => (i + 1).min(rows.len() - 1),
        (Some(i), false) => i.saturating_sub(1),
    };
    out.push(Command::Select(rows[next].name.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_counts_are_short() {
        assert_eq!(human_count(12), "12");
        assert_eq!(human_count(1_500), "1.5k");
        assert_eq!(human_count(2_500_000), "2.5M");
    }
}
