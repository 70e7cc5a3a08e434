//! The Plan view's candidate editor: the schemes the planner may pick from (the
//! document's scheme set, shared with the Sensitivity view) plus "keep as
//! stored", which is always a candidate. Schemes are typed in the short form
//! and parsed by the engine (`Scheme::from_str`); a change is one
//! `Command::SetCompareSchemes`, after which the worker recomputes the matrix.

use eframe::egui::{self, RichText};
use quantscope_engine::{Scheme, sweep};

use crate::gui::command::Command;

/// The text being typed and its last parse error.
#[derive(Default)]
pub struct CandidateEditor {
    pub new_scheme: String,
    parse_error: Option<String>,
}

impl CandidateEditor {
    /// `schemes` with a remove button each, "keep as stored (`kept`)" fixed,
    /// and a field to add a scheme. Changes go out as commands.
    pub fn ui(&mut self, ui: &mut egui::Ui, schemes: &[Scheme], kept: &str, out: &mut Vec<Command>) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Candidates:");
            for (i, s) in schemes.iter().enumerate() {
                ui.label(RichText::new(s.to_string()).monospace());
                let remove = ui.add_enabled(schemes.len() > 1, egui::Button::new("x").small());
                let name = format!("remove {s}");
                remove
                    .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, schemes.len() > 1, &name));
                if remove.on_hover_text(format!("Remove {s} from the candidates")).clicked() {
                    let mut next = schemes.to_vec();
                    next.remove(i);
                    out.push(Command::SetCompareSchemes(next));
                }
            }
            ui.label(RichText::new(format!("keep as stored ({kept})")).monospace())
                .on_hover_text("Always a candidate: the layer is saved unchanged");
        });
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Add candidate");
            let edit = egui::TextEdit::singleline(&mut self.new_scheme)
                .hint_text("e.g. int4:group64:mse")
                .desired_width(200.0);
            let edit = ui.add(edit).labelled_by(label.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Add").clicked() || enter {
                self.add(schemes, out);
            }
            if ui.button("Default set").on_hover_text("The Sensitivity view's default schemes").clicked() {
                out.push(Command::SetCompareSchemes(sweep::default_schemes()));
            }
        });
        if let Some(e) = &self.parse_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }

    fn add(&mut self, schemes: &[Scheme], out: &mut Vec<Command>) {
        match self.new_scheme.trim().parse::<Scheme>() {
            Ok(s) => {
                if !schemes.contains(&s) {
                    let mut next = schemes.to_vec();
                    next.push(s);
                    out.push(Command::SetCompareSchemes(next));
                }
                self.new_scheme.clear();
                self.parse_error = None;
            }
            Err(e) => self.parse_error = Some(format!("{}: {e}", self.new_scheme.trim())),
        }
    }
}
