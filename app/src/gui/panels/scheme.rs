//! The scheme controls: format, mapping, granularity, calibration, for the whole
//! model or for the selected layer. The rows sit in a fixed grid: a row that does
//! not apply (axis, group size, p, ratio) is greyed out, not removed, so the
//! controls below it never move under the pointer.

use eframe::egui;
use quantscope_engine::scheme::{CALIBRATIONS, FORMATS, GRANULARITIES, MAPPINGS};
use quantscope_engine::{Calibration, FormatKind, Granularity, ManualRange, Scheme};

use super::calibration_label;
use crate::gui::command::Command;
use crate::gui::state::AppState;
use crate::gui::worker::jobs::analyze::{AWQ_NEEDS_INPUTS, GPTQ_NEEDS_INPUTS};

/// What the controls edit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    #[default]
    Model,
    Layer,
}

#[derive(Default)]
pub struct SchemePanel {
    pub target: Target,
    /// The selection the target was last chosen for.
    seen_selection: Option<String>,
}

/// A format's name as the engine gives it ("INT8", "FP8 E4M3").
pub fn format_label(f: FormatKind) -> String {
    f.label()
}

const COMBO_WIDTH: f32 = 130.0;

/// With a compared checkpoint: which R′ the layer view shows.
fn published_toggle_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    let Some(stored) = state.selected.as_deref().and_then(|n| state.published_scheme(n)) else { return };
    let mut show = state.compare.show_published;
    ui.horizontal_wrapped(|ui| {
        ui.label("Show");
        ui.selectable_value(&mut show, false, "this scheme");
        ui.selectable_value(&mut show, true, format!("published ({})", stored.short)).on_hover_text(format!(
            "The compared checkpoint's R' for this layer: {} {}-bit, {}{}, {} scales",
            stored.format,
            stored.bits,
            stored.granularity,
            stored.group_size.map_or(String::new(), |g| format!(" {g}")),
            stored.scale_dtype
        ));
    });
    if show != state.compare.show_published {
        out.push(Command::ShowPublished(show));
    }
}

impl SchemePanel {
    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        ui.heading("Scheme");
        published_toggle_ui(state, ui, out);
        let selected = state.selected.clone();
        if self.seen_selection != selected {
            // A layer with its own scheme opens on it; any other on the model's.
            let own = selected.as_ref().is_some_and(|n| state.doc.overrides.contains_key(n));
            self.target = if own { Target::Layer } else { Target::Model };
            self.seen_selection.clone_from(&selected);
        }
        if state.preview.is_some() {
            self.target = Target::Layer;
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("Applies to");
            ui.selectable_value(&mut self.target, Target::Model, "the model")
                .on_hover_text("The scheme of every layer without its own");
            ui.add_enabled_ui(selected.is_some(), |ui| {
                ui.selectable_value(&mut self.target, Target::Layer, "this layer")
                    .on_hover_text("Give the selected layer its own scheme");
            });
        });
        let layer = selected.filter(|_| self.target == Target::Layer);
        let mut scheme = match &layer {
            Some(n) => state.scheme_for(n),
            None => state.doc.scheme,
        };
        let before = scheme;
        let ndim = state.selected_info().map_or(2, |t| t.shape.len());
        let mut percentile = state.doc.percentile;
        let captured = state.activations.capture.is_some();
        scheme_grid_ui(ui, &mut scheme, ndim, &mut percentile, captured);
        if percentile != state.doc.percentile {
            out.push(Command::SetPercentile(percentile));
        }
        if scheme != before {
            out.push(match &layer {
                Some(n) => Command::SetLayerScheme { layer: n.clone(), scheme, gesture: None },
                None => Command::SetModelScheme(scheme),
            });
        }
        own_scheme_ui(state, ui, out);
    }
}

/// Which layers have their own scheme, and the way back to the model's.
fn own_scheme_ui(state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
    if let Some(n) = state.selected.as_ref().filter(|n| state.doc.overrides.contains_key(*n)) {
        ui.horizontal_wrapped(|ui| {
            ui.weak(format!("This layer: {}", state.saved_scheme_for(n)));
            if ui
                .small_button("Reset to the model's scheme")
                .on_hover_text(format!("Use {} for this layer (Ctrl+Z undoes)", state.doc.scheme))
                .clicked()
            {
                out.push(Command::ResetLayer(n.clone()));
            }
        });
    }
    let count = state.doc.overrides.len();
    if count > 0 {
        ui.horizontal_wrapped(|ui| {
            ui.weak(format!("{count} layer(s) with their own scheme (*)"));
            if ui.small_button("Reset all").on_hover_text("Every layer back to the model's scheme").clicked()
            {
                out.push(Command::ResetAllLayers);
            }
        });
    }
}

/// The grid of scheme widgets. Every row is always present.
/// `captured`: the model's inputs are captured, so GPTQ can run.
pub fn scheme_grid_ui(ui: &mut egui::Ui, s: &mut Scheme, ndim: usize, percentile: &mut f64, captured: bool) {
    // The label column is wider than any label, so no granularity moves the controls sideways.
    egui::Grid::new("scheme_grid").num_columns(2).spacing([8.0, 6.0]).min_col_width(80.0).show(ui, |ui| {
        let label = ui.label("Format");
        egui::ComboBox::from_id_salt("format")
            .width(COMBO_WIDTH)
            .selected_text(format_label(s.format))
            .show_ui(ui, |ui| {
                for f in FORMATS {
                    ui.selectable_value(&mut s.format, f.format, f.label).on_hover_text(f.description);
                }
            })
            .response
            .labelled_by(label.id);
        ui.end_row();

        // A microscaling format fixes its group and mapping: shown, not editable.
        let fixed = s.format.fixed_group().is_none();
        ui.label("Mapping");
        ui.add_enabled_ui(fixed, |ui| {
            ui.vertical(|ui| {
                for m in MAPPINGS {
                    ui.radio_value(&mut s.mapping, m.mapping, m.label).on_hover_text(m.description);
                }
            });
        });
        ui.end_row();

        granularity_rows_ui(ui, s, ndim);
        calibration_rows_ui(ui, s, percentile, captured);
    });
    *s = s.fitted();
}

fn granularity_rows_ui(ui: &mut egui::Ui, s: &mut Scheme, ndim: usize) {
    ui.label("Granularity");
    ui.add_enabled_ui(s.format.fixed_group().is_none(), |ui| {
        ui.vertical(|ui| {
            let current = s.granularity;
            for g in GRANULARITIES {
                // The current kind keeps its number; another starts at its default.
                let value = if current.info() == &g { current } else { g.default };
                // A kind the format does not take (blocks outside FP8) is greyed,
                // not hidden, so the rows do not jump.
                ui.add_enabled_ui(s.allows(value), |ui| {
                    let selected = current.info() == &g;
                    if ui.radio(selected, g.label).on_hover_text(g.description).clicked() && !selected {
                        s.granularity = value;
                    }
                });
            }
        });
    });
    ui.end_row();

    // One row for the axis or the group size, always there and always as tall,
    // so switching granularity moves no control below it.
    let row = |ui: &mut egui::Ui, add: &mut dyn FnMut(&mut egui::Ui)| {
        ui.horizontal(|ui| {
            ui.set_min_height(GRANULARITY_ROW_HEIGHT);
            add(ui);
        });
    };
    let fixed = s.format.fixed_group().is_none();
    match &mut s.granularity {
        Granularity::Channel { axis } => {
            let label = ui.label("Axis");
            row(ui, &mut |ui| {
                ui.add(egui::DragValue::new(axis).range(0..=ndim.saturating_sub(1))).labelled_by(label.id);
            });
        }
        Granularity::Group { size } => {
            let label = ui.label("Group size");
            // A microscaled format's group is part of the format.
            row(ui, &mut |ui| {
                ui.add_enabled_ui(fixed, |ui| {
                    ui.add(egui::DragValue::new(size).range(1..=65536)).labelled_by(label.id);
                    for g in [32, 64, 128] {
                        ui.selectable_value(size, g, g.to_string());
                    }
                });
            });
        }
        Granularity::Block { size } => {
            let label = ui.label("Block size");
            row(ui, &mut |ui| {
                ui.add(egui::DragValue::new(size).range(1..=4096)).labelled_by(label.id);
            });
        }
        Granularity::Tensor => {
            ui.add_enabled(false, egui::Label::new("Axis / group"));
            row(ui, &mut |ui| {
                ui.add_enabled(false, egui::Label::new("—"));
            });
        }
    }
    ui.end_row();
}

/// The axis / group row's height: the tallest of its forms (a drag value
/// beside three size buttons) with room to spare.
const GRANULARITY_ROW_HEIGHT: f32 = 24.0;

fn calibration_rows_ui(ui: &mut egui::Ui, s: &mut Scheme, percentile: &mut f64, captured: bool) {
    let label = ui.label("Calibration");
    let current = std::mem::discriminant(&s.calibration);
    egui::ComboBox::from_id_salt("calibration")
        .width(COMBO_WIDTH)
        .selected_text(calibration_label(&s.calibration))
        .show_ui(ui, |ui| {
            for c in CALIBRATIONS {
                // The percentile comes back at the p last set here.
                let pick = match c.default {
                    Calibration::Percentile { .. } => Calibration::Percentile { p: *percentile },
                    other => other,
                };
                let hover = c
                    .parameter
                    .map_or_else(|| c.description.to_string(), |p| format!("{}: {p}", c.description));
                let chosen = std::mem::discriminant(&pick) == current;
                // GPTQ and AWQ need the layer's inputs: greyed, with the way to them.
                let (runs, why) = match pick {
                    Calibration::Gptq => (captured, GPTQ_NEEDS_INPUTS),
                    Calibration::Awq => (captured, AWQ_NEEDS_INPUTS),
                    _ => (true, ""),
                };
                let label = ui
                    .add_enabled(runs || chosen, egui::Button::selectable(chosen, c.label))
                    .on_hover_text(&hover)
                    .on_disabled_hover_text(format!("{hover}. {why}"));
                if label.clicked() {
                    // `fitted` below gives HQQ the asymmetric mapping it needs.
                    s.calibration = pick;
                }
            }
        })
        .response
        .labelled_by(label.id);
    ui.end_row();

    // One row for the method's parameter, always there.
    match &mut s.calibration {
        Calibration::Percentile { p } => {
            let label = ui.label("p (%)");
            if ui
                .add(egui::DragValue::new(p).range(50.01..=100.0).speed(0.01).max_decimals(4))
                .labelled_by(label.id)
                .changed()
            {
                *percentile = *p;
            }
        }
        Calibration::Manual(ManualRange::Ratio { r }) => {
            let label = ui.label("ratio r");
            ui.add(egui::Slider::new(r, 0.001..=1.0)).labelled_by(label.id);
        }
        Calibration::Manual(ManualRange::Range { lo, hi }) => {
            ui.label("range");
            ui.monospace(format!("[{lo:+.4e}, {hi:+.4e}]"));
        }
        _ => {
            ui.add_enabled(false, egui::Label::new("parameter"));
            ui.add_enabled(false, egui::Label::new("—"));
        }
    }
    ui.end_row();
}
