//! The Plan view: mixed precision under a size budget. It reads the layers ×
//! schemes matrix the worker computed (the Sensitivity view's candidate
//! schemes, plus "keep as stored"), lets the engine's planner pick one option
//! per layer for the budget, and shows the frontier (size against error) with
//! every uniform scheme beside it, the bytes by scheme, and the per-layer table
//! with why each layer holds its option. Pins and exclusions constrain the
//! plan; "Apply to save" turns it into per-layer choices as one undo step.
//!
//! The solve runs here, on the frame, only when its inputs change: the planner
//! takes ≤ 14 ms on 1,000 layers × 10 schemes (BENCHMARKS.md), so a slider drag
//! keeps its pace without a round trip through the worker. The `output`
//! objective's costs (output SQNR per cell) come from the worker once the model
//! has run; the candidates are edited here (`candidates`).

mod candidates;

use std::collections::BTreeMap;
use std::sync::Arc;

use eframe::egui::{self, Color32, RichText};
use egui_extras::{Column, TableBuilder};
use egui_plot::{HoverPosition, Line, Plot, PlotPoint, PlotPoints, Points, Text, VLine};
use quantscope_engine::Scheme;
use quantscope_engine::planner::output::OutputSqnr;
use quantscope_engine::planner::{
    self, FrontierPoint, Objective, Pin, Plan, Problem, Why, bits_per_weight, budget_bytes, relative_as_db,
};
use quantscope_engine::sweep::Sweep;

use super::{Swatch, format_sqnr, legend_item};
use crate::gui::command::Command;
use crate::gui::state::AppState;

/// The unit the budget is set in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BudgetUnit {
    #[default]
    BitsPerWeight,
    Bytes,
}

/// A user's constraint on one layer, by scheme name (stable when the
/// candidate set changes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PinChoice {
    Scheme(String),
    /// Excluded: kept as stored.
    Keep,
}

/// The problem and the plan for the current inputs.
struct Solved {
    sweep: Arc<Sweep>,
    /// The output SQNRs the costs came from (the `output` objective), else weight costs.
    output: Option<Arc<OutputSqnr>>,
    pins: BTreeMap<String, PinChoice>,
    problem: Problem,
    params: u64,
    frontier: Vec<FrontierPoint>,
    /// Every candidate scheme applied to the whole model.
    /// Each sweep column as (bytes, relative value): [`Problem::column_point`].
    uniform: Vec<(u64, f64)>,
    budget: u64,
    objective: Objective,
    plan: Option<Plan>,
}

pub struct PlanPanel {
    pub unit: BudgetUnit,
    /// The budget in bits per weight (used when `unit` is bits per weight).
    pub bits: f64,
    /// The budget in bytes (used when `unit` is bytes; follows the bits otherwise).
    pub bytes: u64,
    pub objective: Objective,
    pub pins: BTreeMap<String, PinChoice>,
    pub candidates: candidates::CandidateEditor,
    solved: Option<Solved>,
    /// Where the scheme labels were drawn last frame (tests: none overlap).
    pub label_rects: Vec<egui::Rect>,
}

impl Default for PlanPanel {
    fn default() -> Self {
        Self {
            unit: BudgetUnit::BitsPerWeight,
            bits: 4.5,
            bytes: 0,
            objective: Objective::Relative,
            pins: BTreeMap::new(),
            candidates: candidates::CandidateEditor::default(),
            solved: None,
            label_rects: Vec::new(),
        }
    }
}

/// Colours of the stacked bar, by position in the candidate list (keep is grey).
const PALETTE: [Color32; 8] = [
    Color32::from_rgb(86, 180, 233),
    Color32::from_rgb(230, 159, 0),
    Color32::from_rgb(0, 158, 115),
    Color32::from_rgb(204, 121, 167),
    Color32::from_rgb(240, 228, 66),
    Color32::from_rgb(213, 94, 0),
    Color32::from_rgb(0, 114, 178),
    Color32::from_rgb(170, 120, 220),
];

fn scheme_color(col: Option<usize>) -> Color32 {
    col.map_or(Color32::from_gray(140), |k| PALETTE[k % PALETTE.len()])
}

fn scheme_name(s: &Sweep, col: Option<usize>) -> String {
    col.and_then(|k| s.schemes.get(k)).cloned().unwrap_or_else(|| "keep".into())
}

/// Bytes for reading: B, KB, MB or GB (decimal).
pub fn bytes_label(b: i64) -> String {
    let a = b.unsigned_abs() as f64;
    let sign = if b < 0 { "-" } else { "" };
    match a {
        x if x >= 1e9 => format!("{sign}{:.2} GB", x / 1e9),
        x if x >= 1e6 => format!("{sign}{:.2} MB", x / 1e6),
        x if x >= 1e3 => format!("{sign}{:.1} KB", x / 1e3),
        x => format!("{sign}{x} B"),
    }
}

/// The planner's problem for `s` (the engine's, as `quantscope plan` poses
/// it), costed by `output` when given; pins restrict it.
fn build_problem(
    state: &AppState,
    s: &Sweep,
    pins: &BTreeMap<String, PinChoice>,
    output: Option<&OutputSqnr>,
) -> Problem {
    let tensors = state.model.as_ref().map_or(&[][..], |m| &m.summary.tensors[..]);
    let mut p = Problem::for_sweep(s, tensors, output);
    for (r, row) in s.rows.iter().enumerate() {
        let pin = match pins.get(&row.name) {
            Some(PinChoice::Keep) => Some(Pin::Keep),
            Some(PinChoice::Scheme(name)) => s.schemes.iter().position(|x| x == name).map(Pin::Scheme),
            None => None,
        };
        if let Some(pin) = pin {
            p.pin(r, pin);
        }
    }
    p
}

impl PlanPanel {
    /// The plan shown now, if one fits.
    pub fn plan(&self) -> Option<&Plan> {
        self.solved.as_ref()?.plan.as_ref()
    }

    /// The budget in bytes over `params` weights.
    pub fn budget(&self, params: u64) -> u64 {
        match self.unit {
            BudgetUnit::BitsPerWeight => budget_bytes(self.bits, params),
            BudgetUnit::Bytes => self.bytes,
        }
    }

    /// Re-solves when the matrix, the costs, the pins, the budget or the
    /// objective changed. `output`: the output SQNRs when that objective is on.
    fn refresh(&mut self, state: &AppState, s: &Arc<Sweep>, output: Option<Arc<OutputSqnr>>) {
        let same_output = |x: &Solved| match (&x.output, &output) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        let same_problem = self
            .solved
            .as_ref()
            .is_some_and(|x| Arc::ptr_eq(&x.sweep, s) && same_output(x) && x.pins == self.pins);
        // Without its costs the output objective waits; relative stands in.
        let objective = if self.objective == Objective::Output && output.is_none() {
            Objective::Relative
        } else {
            self.objective
        };
        if !same_problem {
            let problem = build_problem(state, s, &self.pins, output.as_deref());
            let params = s.rows.iter().map(|r| r.params).sum();
            let uniform = (0..s.schemes.len()).map(|k| problem.column_point(s, k)).collect();
            self.solved = Some(Solved {
                sweep: Arc::clone(s),
                output,
                pins: self.pins.clone(),
                frontier: problem.frontier(),
                problem,
                params,
                uniform,
                budget: u64::MAX,
                objective,
                plan: None,
            });
        }
        let Some(x) = self.solved.as_mut() else { return };
        let budget = match self.unit {
            BudgetUnit::BitsPerWeight => budget_bytes(self.bits, x.params),
            BudgetUnit::Bytes => self.bytes,
        };
        if !same_problem || x.budget != budget || x.objective != objective {
            x.plan = x.problem.solve(budget, objective);
            x.budget = budget;
            x.objective = objective;
        }
        if self.unit == BudgetUnit::BitsPerWeight {
            self.bytes = budget;
        }
    }

    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        ui.horizontal_wrapped(|ui| {
            ui.heading("Plan");
            ui.weak("Candidates are shared with the Sensitivity view.");
            if let Some((done, total)) = state.sensitivity.progress {
                ui.add(
                    egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                        .desired_width(180.0)
                        .text(format!("{done}/{total} layers")),
                );
            }
        });
        self.candidates.ui(ui, &state.doc.compare_schemes, &kept_label(state), out);
        if let Some(e) = &state.sensitivity.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let Some(s) = state.sensitivity.result.clone() else {
            ui.weak("Computing every layer a save quantizes under every candidate scheme...");
            return;
        };
        let output = output_costs(state, &s);
        let wanted = (self.objective == Objective::Output).then(|| output.clone().ok()).flatten();
        self.refresh(state, &s, wanted);
        self.controls_ui(ui, out, &s, output.as_ref().err());
        let Some(x) = self.solved.as_ref() else { return };
        summary_ui(ui, x);
        let h = (ui.available_height() * 0.4).clamp(160.0, 320.0);
        self.label_rects = ui.vertical(|ui| frontier_ui(ui, x, h)).inner;
        if let Some(plan) = &x.plan {
            stacked_bar_ui(ui, &s, &x.problem, plan);
        }
        ui.separator();
        self.table_ui(ui, &s);
    }

    /// `output_unavailable`: why the output objective cannot be picked now.
    fn controls_ui(
        &mut self,
        ui: &mut egui::Ui,
        out: &mut Vec<Command>,
        s: &Sweep,
        output_unavailable: Option<&String>,
    ) {
        let Some(x) = self.solved.as_ref() else { return };
        let (lo, hi) = x.problem.byte_range();
        let params = x.params;
        let has_plan = x.plan.is_some();
        let mut apply = false;
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().slider_width = (ui.available_width() * 0.3).clamp(160.0, 420.0);
            ui.label("Budget in");
            ui.selectable_value(&mut self.unit, BudgetUnit::BitsPerWeight, "bits per weight");
            ui.selectable_value(&mut self.unit, BudgetUnit::Bytes, "bytes");
            match self.unit {
                BudgetUnit::BitsPerWeight => {
                    let range = bits_per_weight(lo, params)..=bits_per_weight(hi, params).max(0.01);
                    let slider = egui::Slider::new(&mut self.bits, range)
                        .max_decimals(3)
                        .text("bits per weight (budget)");
                    ui.add(slider);
                }
                BudgetUnit::Bytes => {
                    let slider =
                        egui::Slider::new(&mut self.bytes, lo..=hi.max(lo + 1)).text("bytes (budget)");
                    ui.add(slider);
                }
            }
            objective_ui(ui, &mut self.objective, output_unavailable);
        });
        if let (Objective::Output, Some(why)) = (self.objective, output_unavailable) {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!("Output objective: {why}; showing relative."),
            );
        }
        ui.horizontal_wrapped(|ui| {
            let button = ui.add_enabled(has_plan, egui::Button::new("Apply to save"));
            let hover = "Give every planned layer its scheme (or keep it as stored); Ctrl+Z takes it back";
            apply = button.on_hover_text(hover).clicked();
            if ui.button("Open the Save window").clicked() {
                out.push(Command::ShowSaveWindow);
            }
            if !self.pins.is_empty() && ui.button(format!("Clear {} pin(s)", self.pins.len())).clicked() {
                self.pins.clear();
            }
        });
        if apply
            && let Some(x) = &self.solved
            && let Some(plan) = &x.plan
        {
            out.push(apply_command(s, &x.problem, plan));
        }
    }

    fn table_ui(&mut self, ui: &mut egui::Ui, s: &Sweep) {
        let Some(x) = self.solved.as_ref() else { return };
        let Some(plan) = x.plan.clone() else { return };
        let mut new_pin: Option<(String, PinEdit)> = None;
        // Fits the width (1000 px windows included): long names and reasons are
        // cut short, with the whole text on hover.
        let name_width = (ui.available_width() * 0.26).clamp(110.0, 340.0);
        {
            TableBuilder::new(ui)
                .id_salt("plan_table")
                .striped(true)
                .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
                .column(Column::initial(name_width).at_least(90.0).clip(true).resizable(true))
                .column(Column::exact(64.0))
                .column(Column::exact(178.0))
                .column(Column::exact(72.0))
                .column(Column::exact(62.0))
                .column(Column::remainder().at_least(120.0).clip(true))
                .header(22.0, |mut h| {
                    for t in ["layer", "params", "scheme (pin)", "bytes", "SQNR dB", "why"] {
                        h.col(|ui| {
                            ui.strong(t);
                        });
                    }
                })
                .body(|body| {
                    body.rows(22.0, s.rows.len(), |mut row| {
                        let r = row.index();
                        let (item, c) = (&s.rows[r], plan.choice[r]);
                        let opt = &x.problem.layers[r][c];
                        row.col(|ui| {
                            ui.add(egui::Label::new(&item.name).truncate());
                        });
                        row.col(|ui| {
                            ui.monospace(item.params.to_string());
                        });
                        row.col(|ui| {
                            let pinned = self.pins.get(&item.name);
                            let chosen = scheme_name(s, opt.scheme);
                            if let Some(p) = pin_combo(ui, &item.name, s, &chosen, pinned) {
                                new_pin = Some((item.name.clone(), p));
                            }
                        });
                        row.col(|ui| {
                            ui.monospace(bytes_label(opt.bytes as i64));
                        });
                        row.col(|ui| {
                            ui.monospace(format_sqnr(Some(opt.sqnr_db)));
                        });
                        row.col(|ui| {
                            let why = x.problem.why(r, c);
                            let (text, hover) = why_text(s, &x.problem, r, why, self.pins.get(&item.name));
                            let label = egui::Label::new(&text).truncate().show_tooltip_when_elided(false);
                            ui.add(label).on_hover_text(format!("{text}\n\n{hover}"));
                        });
                    });
                });
        }
        if let Some((layer, pin)) = new_pin {
            match pin {
                PinEdit::Pin(p) => self.pins.insert(layer, p),
                PinEdit::Unpin => self.pins.remove(&layer),
            };
        }
    }
}

/// The plan as one undoable command.
fn apply_command(s: &Sweep, p: &Problem, plan: &Plan) -> Command {
    let mut quantize = BTreeMap::new();
    let mut keep = Vec::new();
    for ((row, opts), &c) in s.rows.iter().zip(&p.layers).zip(&plan.choice) {
        let scheme = opts[c].scheme.and_then(|k| s.schemes.get(k)).and_then(|n| n.parse::<Scheme>().ok());
        match scheme {
            Some(scheme) => {
                quantize.insert(row.name.clone(), scheme);
            }
            None => keep.push(row.name.clone()),
        }
    }
    Command::ApplyPlan { quantize, keep }
}

fn objective_label(o: Objective) -> &'static str {
    match o {
        Objective::Relative => "relative (least params-weighted noise)",
        Objective::Worst => "worst (highest lowest-layer SQNR)",
        Objective::Output => "output (least params-weighted output noise)",
    }
}

/// The objective picker; `output` is greyed out, saying why, while it cannot be used.
fn objective_ui(ui: &mut egui::Ui, objective: &mut Objective, output_unavailable: Option<&String>) {
    let label = ui.label("Objective");
    egui::ComboBox::from_id_salt("plan_objective")
        .selected_text(objective_label(*objective))
        .show_ui(ui, |ui| {
            for o in [Objective::Relative, Objective::Worst] {
                ui.selectable_value(objective, o, objective_label(o));
            }
            let item =
                egui::Button::selectable(*objective == Objective::Output, objective_label(Objective::Output));
            let r = ui.add_enabled(output_unavailable.is_none(), item);
            let r = match output_unavailable {
                Some(why) => r.on_disabled_hover_text(why.as_str()),
                None => {
                    r.on_hover_text("Each layer's error measured on its output over the model run's inputs")
                }
            };
            if r.clicked() {
                *objective = Objective::Output;
            }
        })
        .response
        .labelled_by(label.id);
}

/// The output SQNRs of `s`'s cells, or why the output objective cannot be used yet.
fn output_costs(state: &AppState, s: &Sweep) -> Result<Arc<OutputSqnr>, String> {
    let o = &state.plan_output;
    if let Some(r) = o.result.as_ref().filter(|r| r.matches(s)) {
        return Ok(Arc::clone(r));
    }
    if let Some((done, total)) = o.progress {
        return Err(format!("measuring each layer's output error ({done}/{total} layers)"));
    }
    if let Some(e) = &o.error {
        return Err(e.clone());
    }
    if state.activations.progress.is_some() {
        return Err("the model is running".into());
    }
    Err(if state.activations.capture.is_some() {
        "waiting for the output error of these candidates".into()
    } else {
        "needs a run of the model: a layer's input activations tab, Run model".into()
    })
}

/// How kept layers are stored (their source dtypes).
fn kept_label(state: &AppState) -> String {
    let Some(m) = &state.model else { return "16-bit".into() };
    let mut dtypes: Vec<String> =
        state.plan_layers().iter().filter_map(|n| m.tensor(n)).map(|t| format!("{:?}", t.dtype)).collect();
    dtypes.sort();
    dtypes.dedup();
    if dtypes.is_empty() { "16-bit".into() } else { dtypes.join("/") }
}

/// A change made in a row's pin menu.
enum PinEdit {
    Unpin,
    Pin(PinChoice),
}

/// A row's scheme and its pin menu; returns the change, if any.
fn pin_combo(
    ui: &mut egui::Ui,
    layer: &str,
    s: &Sweep,
    chosen: &str,
    pinned: Option<&PinChoice>,
) -> Option<PinEdit> {
    let mut changed = None;
    let text = if pinned.is_some() { format!("{chosen} (pinned)") } else { chosen.to_string() };
    let combo = egui::ComboBox::from_id_salt(("plan_pin", layer)).selected_text(text).width(168.0);
    let inner = combo.show_ui(ui, |ui| {
        if ui.selectable_label(pinned.is_none(), "auto (the planner picks)").clicked() {
            changed = Some(PinEdit::Unpin);
        }
        for name in &s.schemes {
            let on = pinned == Some(&PinChoice::Scheme(name.clone()));
            if ui.selectable_label(on, format!("pin {name}")).clicked() {
                changed = Some(PinEdit::Pin(PinChoice::Scheme(name.clone())));
            }
        }
        if ui.selectable_label(pinned == Some(&PinChoice::Keep), "exclude (keep as stored)").clicked() {
            changed = Some(PinEdit::Pin(PinChoice::Keep));
        }
    });
    let name = format!("scheme of {layer}");
    inner.response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::ComboBox, true, &name));
    changed
}

/// Why a layer holds its option: short text and a longer hover.
fn why_text(s: &Sweep, p: &Problem, r: usize, why: Why, pin: Option<&PinChoice>) -> (String, String) {
    let name = |k: usize| scheme_name(s, p.layers[r][k].scheme);
    let step = |m: planner::Move| {
        let db =
            if m.sqnr_db.is_infinite() { "lossless".to_string() } else { format!("{:+.1} dB", m.sqnr_db) };
        let plus = if m.bytes > 0 { "+" } else { "" };
        format!("{} {plus}{} for {db}", name(m.option), bytes_label(m.bytes))
    };
    let text = match (pin, why.up, why.down) {
        (Some(PinChoice::Keep), ..) => "excluded by you (kept as stored)".to_string(),
        (Some(PinChoice::Scheme(_)), ..) => "pinned by you".to_string(),
        (None, None, _) => "least error of its options".to_string(),
        (None, Some(up), None) => format!("smallest option; up: {}", step(up)),
        (None, Some(up), Some(down)) => format!("up: {}; down: {}", step(up), step(down)),
    };
    let hover = "The plan spends bytes where they remove the most error per byte. 'up' is this layer's best \
                 step to more bytes: it removes less error per byte than the steps the budget went to. 'down' \
                 is its cheapest step to fewer bytes: it would add more error per byte saved than steps taken \
                 elsewhere."
        .to_string();
    (text, hover)
}

/// Size, objective and the comparison with the uniform schemes of no larger size.
fn summary_ui(ui: &mut egui::Ui, x: &Solved) {
    let Some(plan) = &x.plan else {
        let (lo, _) = x.problem.byte_range();
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!(
                "No plan fits {} (the smallest takes {}); raise the budget or remove pins.",
                bytes_label(x.budget as i64),
                bytes_label(lo as i64)
            ),
        );
        return;
    };
    let (_, rel) = x.problem.evaluate(&plan.choice, Objective::Relative);
    let (_, worst) = x.problem.evaluate(&plan.choice, Objective::Worst);
    let measure = if x.output.is_some() { "model output SQNR" } else { "model SQNR" };
    ui.label(format!(
        "Plan: {} ({:.3} bits per weight) of {} budget; {measure} {} dB, worst layer SQNR {} dB.",
        bytes_label(plan.total_bytes as i64),
        bits_per_weight(plan.total_bytes, x.params),
        bytes_label(x.budget as i64),
        format_sqnr(Some(relative_as_db(rel, x.params))),
        format_sqnr(Some(worst)),
    ));
}

/// The frontier, the uniform schemes, the budget and the plan. The view opens
/// on the uniform schemes and the plan (the frontier runs on to "keep
/// everything", far to the right); a new matrix opens a new view.
/// Returns the scheme labels' screen rectangles.
fn frontier_ui(ui: &mut egui::Ui, x: &Solved, h: f32) -> Vec<egui::Rect> {
    let bpw = |b: u64| bits_per_weight(b, x.params);
    let db = |v: f64| relative_as_db(v, x.params).min(200.0);
    let line: PlotPoints =
        x.frontier.iter().map(|f| [bpw(f.bytes), db(f.objective_value)]).collect::<Vec<_>>().into();
    let plan_at = x
        .plan
        .as_ref()
        .map(|p| [bpw(p.total_bytes), db(x.problem.evaluate(&p.choice, Objective::Relative).1)]);
    // A lossless point (+∞ dB, drawn at 200) never sets an axis.
    let marks: Vec<[f64; 2]> = x
        .uniform
        .iter()
        .map(|&(bytes, value)| [bpw(bytes), db(value)])
        .chain(plan_at)
        .chain(x.frontier.first().map(|f| [bpw(f.bytes), db(f.objective_value)]))
        .filter(|m| m[1] < 200.0)
        .collect();
    let span = |i: usize, pad: (f64, f64)| {
        let lo = marks.iter().map(|m| m[i]).fold(f64::INFINITY, f64::min);
        let hi = marks.iter().map(|m| m[i]).fold(f64::NEG_INFINITY, f64::max).max(if i == 0 {
            bpw(x.budget)
        } else {
            lo
        });
        if lo.is_finite() && hi.is_finite() { (lo - pad.0, hi + pad.1) } else { (0.0, 1.0) }
    };
    let ((x0, x1), (y0, y1)) = (span(0, (0.25, 1.0)), span(1, (2.0, 4.0)));
    let frontier_color = Color32::from_rgb(86, 180, 233);
    let (uniform_color, plan_color) = (Color32::from_rgb(230, 159, 0), Color32::from_rgb(213, 94, 0));
    let plot = Plot::new(("plan_frontier", Arc::as_ptr(&x.sweep) as usize))
        .height(h - LEGEND_HEIGHT)
        .width(ui.available_width())
        .default_x_bounds(x0, x1.max(x0 + 0.5))
        .default_y_bounds(y0, y1.max(y0 + 1.0))
        .x_axis_label("stored bits per weight")
        .y_axis_label(if x.output.is_some() { "model output SQNR (dB)" } else { "model SQNR (dB)" })
        .allow_scroll(false)
        .label_formatter(hover_label(x.sweep.schemes.clone()));
    let shown = plot.show(ui, |p| {
        p.line(Line::new("frontier (best plan per size)", line).color(frontier_color));
        let at: Vec<[f64; 2]> = x.uniform.iter().map(|&(bytes, value)| [bpw(bytes), db(value)]).collect();
        p.points(Points::new("uniform schemes", at.clone()).radius(4.0).color(uniform_color));
        p.vline(VLine::new("budget", bpw(x.budget)).color(Color32::from_gray(150)));
        if let Some(at) = plan_at {
            p.points(Points::new("this plan", vec![at]).radius(7.0).color(plan_color));
        }
        // Each name beside its point where it overlaps no other name or point.
        let t = *p.transform();
        let screen: Vec<egui::Pos2> =
            at.iter().map(|a| t.position_from_point(&PlotPoint::new(a[0], a[1]))).collect();
        let names: Vec<String> =
            (0..at.len()).map(|k| x.sweep.schemes.get(k).cloned().unwrap_or_default()).collect();
        let widths: Vec<f32> =
            names.iter().map(|n| n.chars().count() as f32 * PLOT_CHAR_WIDTH + 4.0).collect();
        let places = place_labels(&screen, &widths, *t.frame());
        for (name, place) in names.iter().zip(&places) {
            if let Some((anchor, rect)) = place {
                let pos = t.value_from_position(anchor.pos_in_rect(rect));
                p.text(
                    Text::new("uniform schemes", pos, name.as_str())
                        .anchor(*anchor)
                        .color(Color32::from_gray(200)),
                );
            }
        }
        places.into_iter().flatten().map(|(_, r)| r).collect::<Vec<_>>()
    });
    ui.horizontal_wrapped(|ui| {
        legend_item(ui, frontier_color, Swatch::Line, "frontier (best plan per size)");
        legend_item(ui, uniform_color, Swatch::Dot(4.0), "uniform schemes");
        legend_item(ui, plan_color, Swatch::Dot(6.0), "this plan");
        legend_item(ui, Color32::from_gray(150), Swatch::Rule, "budget");
    });
    shown.inner
}

/// The pointer's readout: a uniform point's scheme (a label left out where
/// points crowd is still a hover away), else the position.
fn hover_label(names: Vec<String>) -> impl Fn(&HoverPosition<'_>) -> Option<String> {
    move |pos| match pos {
        HoverPosition::NearDataPoint { plot_name: "uniform schemes", position, index } => Some(format!(
            "{}\n{:.3} bits per weight, {:.1} dB",
            names.get(*index).map_or("", String::as_str),
            position.x,
            position.y
        )),
        HoverPosition::NearDataPoint { position, .. } | HoverPosition::Elsewhere { position } => {
            Some(format!("{:.3} bits per weight, {:.1} dB", position.x, position.y))
        }
    }
}

/// The legend row under the plan plot (outside it, so it hides no point).
const LEGEND_HEIGHT: f32 = 22.0;
/// Width of one character of a plot label, estimated (egui's body font).
const PLOT_CHAR_WIDTH: f32 = 7.2;

/// Places a label of `widths[k]` beside each point (screen coordinates),
/// trying right, left, above and below; a label that would overlap another
/// label or point, or leave `frame`, is left out. Returns its anchor and rect.
pub fn place_labels(
    points: &[egui::Pos2],
    widths: &[f32],
    frame: egui::Rect,
) -> Vec<Option<(egui::Align2, egui::Rect)>> {
    const H: f32 = 16.0;
    const GAP: f32 = 7.0;
    let dots: Vec<egui::Rect> =
        points.iter().map(|p| egui::Rect::from_center_size(*p, egui::vec2(8.0, 8.0))).collect();
    let mut placed: Vec<egui::Rect> = Vec::new();
    let mut out = Vec::with_capacity(points.len());
    for (k, (p, &w)) in points.iter().zip(widths).enumerate() {
        let tries = [
            (
                egui::Align2::LEFT_CENTER,
                egui::Rect::from_min_size(egui::pos2(p.x + GAP, p.y - H / 2.0), egui::vec2(w, H)),
            ),
            (
                egui::Align2::RIGHT_CENTER,
                egui::Rect::from_min_size(egui::pos2(p.x - GAP - w, p.y - H / 2.0), egui::vec2(w, H)),
            ),
            (
                egui::Align2::CENTER_BOTTOM,
                egui::Rect::from_min_size(egui::pos2(p.x - w / 2.0, p.y - GAP - H), egui::vec2(w, H)),
            ),
            (
                egui::Align2::CENTER_TOP,
                egui::Rect::from_min_size(egui::pos2(p.x - w / 2.0, p.y + GAP), egui::vec2(w, H)),
            ),
        ];
        let free = |r: &egui::Rect| {
            frame.contains_rect(*r)
                && !placed.iter().any(|q| q.intersects(*r))
                && !dots.iter().enumerate().any(|(j, d)| j != k && d.intersects(*r))
        };
        let pick = tries.into_iter().find(|(_, r)| free(r));
        if let Some((_, r)) = pick {
            placed.push(r);
        }
        out.push(pick);
    }
    out
}

/// One bar, its width the plan's bytes, in a segment per scheme; a legend under it.
fn stacked_bar_ui(ui: &mut egui::Ui, s: &Sweep, p: &Problem, plan: &Plan) {
    let parts = p.bytes_by_scheme(&plan.choice);
    let total = plan.total_bytes.max(1) as f32;
    let (rect, _) = ui.allocate_exact_size(egui::vec2(ui.available_width(), 18.0), egui::Sense::hover());
    let mut x0 = rect.left();
    for &(col, b) in &parts {
        let w = rect.width() * b as f32 / total;
        let seg = egui::Rect::from_min_size(egui::pos2(x0, rect.top()), egui::vec2(w, rect.height()));
        ui.painter().rect_filled(seg, 0.0, scheme_color(col));
        let resp = ui.interact(seg, ui.scope_id().with(("plan_bar", col)), egui::Sense::hover());
        resp.on_hover_text(format!("{}: {}", scheme_name(s, col), bytes_label(b as i64)));
        x0 += w;
    }
    ui.horizontal_wrapped(|ui| {
        ui.label("Bytes by scheme:");
        for &(col, b) in &parts {
            ui.label(RichText::new("#").color(scheme_color(col)).strong());
            ui.label(format!("{} {}", scheme_name(s, col), bytes_label(b as i64)));
        }
    });
}
