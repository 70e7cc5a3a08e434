//! The end-to-end sensitivity ranking: every captured Linear layer a save
//! quantizes, quantized alone under one scheme and run through the model, ranked
//! by how far the model's output moves, beside its rank by weight SQNR and
//! Spearman's rho between the two orders. The run happens in the worker (progress,
//! Cancel); each scheme's result is kept, so going back to a scheme is instant.
//! Every number and both ranks come from the engine (`run::sensitivity`).

use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};
use quantscope_engine::Scheme;
use quantscope_engine::run::Kind;
use quantscope_engine::run::sensitivity::{EndToEnd, SensitivityReport, damage, rankings};

use super::{format_sqnr, sqnr_color};
use crate::gui::command::Command;
use crate::gui::state::AppState;

#[derive(Default)]
pub struct EndToEndPanel {
    /// The typed scheme (short form); empty: the model's scheme.
    scheme: String,
}

impl EndToEndPanel {
    /// The scheme the panel shows: the typed one, else the model's.
    fn scheme(&self, state: &AppState) -> Result<Scheme, String> {
        let text = self.scheme.trim();
        if text.is_empty() { Ok(state.doc.scheme) } else { text.parse().map_err(|e| format!("{e}")) }
    }

    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let e = &state.activations.end_to_end;
        if state.activations.capture.is_none() {
            ui.label("Run the model (or File > Load activations...) to rank the layers end to end.");
            return;
        }
        let scheme = self.scheme(state);
        ui.horizontal_wrapped(|ui| {
            ui.label("Scheme");
            ui.add(
                egui::TextEdit::singleline(&mut self.scheme)
                    .hint_text(state.doc.scheme.to_string())
                    .desired_width(180.0),
            )
            .on_hover_text("Short form, e.g. int8:channel or int4:group128; empty: the model's scheme");
            if let Some((s, done, total)) = e.running {
                ui.add(
                    egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                        .desired_width(180.0)
                        .text(format!("{s}: {done}/{total}")),
                );
                if ui.button("Cancel").clicked() {
                    out.push(Command::CancelEndToEnd);
                }
            } else if let Ok(s) = &scheme
                && !e.results.contains_key(&s.to_string())
                && ui.button("Run end to end").clicked()
            {
                out.push(Command::RunEndToEnd(*s));
            }
            for done in e.results.keys() {
                if ui.small_button(done).on_hover_text("a result kept for this scheme").clicked() {
                    self.scheme.clone_from(done);
                }
            }
        });
        if let Err(err) = &scheme {
            ui.colored_label(ui.visuals().error_fg_color, err);
        }
        if let Some(err) = &e.error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        }
        let Some(report) = scheme.ok().and_then(|s| e.results.get(&s.to_string())) else {
            if e.running.is_none() {
                ui.weak("Each layer a save quantizes is quantized alone and the samples are run again.");
            }
            return;
        };
        summary_ui(ui, report);
        table_ui(ui, report);
    }
}

fn kind(r: &SensitivityReport) -> Kind {
    if r.all_layers.kl.is_some() { Kind::Decoder } else { Kind::Encoder }
}

/// "1 - cos" for encoders, "KL" for decoders: the damage the table ranks by.
fn damage_text(e: &EndToEnd) -> String {
    let d = damage(e);
    if d.is_nan() { "-".into() } else { format!("{d:.3e}") }
}

fn summary_ui(ui: &mut egui::Ui, r: &SensitivityReport) {
    let measure = match kind(r) {
        Kind::Encoder => "1 - cosine of the mean-pooled embedding",
        Kind::Decoder => "KL of the next-token distribution",
    };
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("{} samples, {} tokens; damage = {measure}.", r.samples, r.tokens));
    });
    ui.horizontal_wrapped(|ui| {
        let rho = r.spearman_weight_vs_end_to_end.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
        ui.label("Spearman rho, weight-SQNR order vs end-to-end order:");
        ui.label(RichText::new(rho).strong()).on_hover_text(
            "1: the weight-only SQNR orders the layers as the model's output does; near 0: unrelated",
        );
        ui.separator();
        ui.label(format!("every layer together: {}", damage_text(&r.all_layers)));
    });
}

fn table_ui(ui: &mut egui::Ui, r: &SensitivityReport) {
    let ranks = rankings(r);
    let mut order: Vec<usize> = (0..r.layers.len()).collect();
    order.sort_by_key(|&i| ranks[i].end_to_end);
    let damage_head = match kind(r) {
        Kind::Encoder => "1 - cos",
        Kind::Decoder => "KL",
    };
    let heads = ["rank", "layer", damage_head, "output SQNR", "weight SQNR", "weight rank"];
    let hints = [
        "rank by end-to-end damage (1 = hurts the output most)",
        "the layer quantized alone",
        "how far the output moves with this layer quantized alone",
        "10 log10(sum |Wx|^2 / sum |(W - W')x|^2) on the captured inputs (dB)",
        "the plain weight SQNR (dB), as report gives it",
        "rank by weight SQNR (1 = lowest): compare with the first column",
    ];
    TableBuilder::new(ui)
        .striped(true)
        .column(Column::auto().at_least(40.0))
        .column(Column::remainder().at_least(180.0).clip(true))
        .columns(Column::auto().at_least(80.0), 4)
        .header(20.0, |mut row| {
            for (h, hint) in heads.iter().zip(hints) {
                row.col(|ui| {
                    ui.strong(*h).on_hover_text(hint);
                });
            }
        })
        .body(|body| {
            body.rows(18.0, order.len(), |mut row| {
                let i = order[row.index()];
                let (l, rk) = (&r.layers[i], ranks[i]);
                row.col(|ui| {
                    ui.monospace(rk.end_to_end.to_string());
                });
                row.col(|ui| {
                    ui.label(&l.name);
                });
                row.col(|ui| {
                    ui.monospace(damage_text(&l.end_to_end));
                });
                for db in [l.output_sqnr_db, l.weight_sqnr_db] {
                    row.col(|ui| {
                        ui.colored_label(sqnr_color(db), format_sqnr(Some(db)));
                    });
                }
                row.col(|ui| {
                    ui.monospace(rk.weight.to_string());
                });
            });
        });
}
