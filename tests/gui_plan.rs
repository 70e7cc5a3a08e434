//! The Plan view under egui_kittest: the budget slider changes the plan (and it
//! is the engine's plan for that budget), pins and exclusions hold in the plan
//! and in what "Apply to save" sends, and in the whole app one Ctrl+Z takes an
//! applied plan back while the Save window's groups follow it.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use eframe::egui;
use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use quantscope::gui::command::Command;
use quantscope::gui::panels::plan::{PinChoice, PlanPanel};
use quantscope::gui::state::{AppState, Model, View};
use quantscope::gui::worker::ModelSummary;
use quantscope::gui::{QuantscopeApp, SAMPLE_BYTES};
use quantscope_engine::planner::output::OutputSqnr;
use quantscope_engine::planner::{Objective, Pin, Problem, budget_bytes};
use quantscope_engine::sweep::Sweep;
use quantscope_engine::{Checkpoint, Scheme, export, sweep};

const SCHEMES: [&str; 4] =
    ["int8:channel:minmax", "int4:channel:minmax", "int4:channel:mse", "int8:tensor:minmax"];

fn schemes() -> Vec<Scheme> {
    SCHEMES.iter().map(|s| s.parse().unwrap()).collect()
}

/// The sample open, with the matrix over the layers the Plan view plans.
fn plan_state() -> AppState {
    plan_state_with(&schemes())
}

/// [`plan_state`] with the matrix under `candidates`.
fn plan_state_with(candidates: &[Scheme]) -> AppState {
    let ckpt = Checkpoint::from_bytes("sample", SAMPLE_BYTES.to_vec()).unwrap();
    let rows: Vec<usize> = ckpt
        .tensors()
        .iter()
        .enumerate()
        .filter(|(_, t)| export::quantized_on_save(t, None))
        .map(|(i, _)| i)
        .collect();
    let s = sweep::sweep(&ckpt, &rows, candidates, &|_, _| {}, &AtomicBool::new(false)).unwrap();
    let summary = ModelSummary {
        name: "sample".into(),
        path: None,
        identity: "sample".into(),
        tensors: ckpt.tensors().to_vec(),
        size_bytes: ckpt.size_bytes(),
        stored: None,
    };
    let mut state = AppState::default();
    state.doc.compare_schemes = candidates.to_vec();
    state.model = Some(Model { summary, sqnr: HashMap::new(), sqnr_done: 0, sqnr_total: 0 });
    state.view = View::Plan;
    state.sensitivity.result = Some(Arc::new(s));
    state
}

fn params(s: &Sweep) -> u64 {
    s.rows.iter().map(|r| r.params).sum()
}

/// The engine's own problem for the sample (no pins), built as the CLI does.
fn engine_problem(state: &AppState) -> Problem {
    let s = state.sensitivity.result.as_ref().unwrap();
    let model = state.model.as_ref().unwrap();
    let sc = schemes();
    Problem::from_sweep(s, true, &|r, k| {
        export::saves_quantized(&model.tensor(&s.rows[r].name).unwrap().shape, &sc[k])
    })
}

type PanelHarness = Harness<'static, (PlanPanel, AppState, Vec<Command>)>;

fn panel_harness(state: AppState, panel: PlanPanel) -> PanelHarness {
    Harness::builder().with_size(egui::vec2(1400.0, 900.0)).build_ui_state(
        |ui, (p, s, out): &mut (PlanPanel, AppState, Vec<Command>)| p.ui(s, ui, out),
        (panel, state, Vec::new()),
    )
}

#[test]
fn the_budget_slider_changes_the_plan_to_the_engines_plan_for_that_budget() {
    let mut h = panel_harness(plan_state(), PlanPanel::default());
    h.run_steps(2);
    let problem = engine_problem(&h.state().1);
    let n = params(h.state().1.sensitivity.result.as_ref().unwrap());
    let mut seen = Vec::new();
    for bits in [5.0, 9.0] {
        h.get_by_role(Role::Slider).set_value_accesskit(bits);
        h.run_steps(2);
        let panel = &h.state().0;
        assert!((panel.bits - bits).abs() < 1e-9, "the slider sets the budget: {}", panel.bits);
        let plan = panel.plan().expect("a plan fits").clone();
        let budget = budget_bytes(bits, n);
        assert!(plan.total_bytes <= budget);
        assert_eq!(Some(&plan), problem.solve(budget, Objective::Relative).as_ref(), "at {bits} bits");
        seen.push(plan);
    }
    assert!(seen[1].total_bytes > seen[0].total_bytes, "a larger budget buys more bytes");
    assert!(seen[1].objective_value < seen[0].objective_value, "and less error");
    // The summary line shows the plan's size.
    h.get_by_label_contains("bits per weight) of");
}

#[test]
fn pins_and_exclusions_hold_in_the_plan_and_in_what_apply_sends() {
    let state = plan_state();
    let s = state.sensitivity.result.clone().unwrap();
    let names: Vec<String> = s.rows.iter().map(|r| r.name.clone()).collect();
    let (excluded, pinned) = (names[0].clone(), names[1].clone());
    // At 9 bits per weight the free plan quantizes both (checked first).
    let mut free = PlanPanel::default();
    free.bits = 9.0;
    let mut h = panel_harness(plan_state(), free);
    h.run_steps(2);
    let plan = h.state().0.plan().unwrap().clone();
    let problem = engine_problem(&h.state().1);
    let col = |r: usize, c: usize| problem.layers[r][c].scheme;
    assert!(col(0, plan.choice[0]).is_some(), "unpinned, {excluded} is quantized");
    assert_ne!(col(1, plan.choice[1]), Some(1), "unpinned, {pinned} is not int4:channel:minmax");

    // Pin and exclude through each row's scheme menu.
    for (layer, item) in [(&excluded, "exclude (keep as stored)"), (&pinned, "pin int4:channel:minmax")] {
        h.get_by_label(&format!("scheme of {layer}")).click();
        h.run_steps(2);
        h.get_by_label(item).click();
        h.run_steps(2);
    }
    let pins = &h.state().0.pins;
    assert_eq!(pins.get(&excluded), Some(&PinChoice::Keep));
    assert_eq!(pins.get(&pinned), Some(&PinChoice::Scheme("int4:channel:minmax".into())));
    let plan = h.state().0.plan().unwrap().clone();
    let mut pinned_problem = problem.clone();
    pinned_problem.pin(0, Pin::Keep);
    pinned_problem.pin(1, Pin::Scheme(1));
    let budget = budget_bytes(9.0, params(&s));
    assert_eq!(Some(&plan), pinned_problem.solve(budget, Objective::Relative).as_ref());
    assert_eq!(pinned_problem.layers[0][plan.choice[0]].scheme, None, "excluded: kept as stored");
    assert_eq!(pinned_problem.layers[1][plan.choice[1]].scheme, Some(1), "pinned: int4:channel:minmax");
    h.get_by_label("Apply to save").click();
    h.run_steps(2);
    let cmds = &h.state().2;
    let Some(Command::ApplyPlan { quantize, keep }) =
        cmds.iter().find(|c| matches!(c, Command::ApplyPlan { .. }))
    else {
        panic!("Apply to save sends ApplyPlan: {cmds:?}")
    };
    assert!(keep.contains(&excluded), "the excluded layer is kept: {keep:?}");
    assert!(!quantize.contains_key(&excluded));
    assert_eq!(quantize.get(&pinned).map(ToString::to_string).as_deref(), Some("int4:channel:minmax"));
    assert_eq!(quantize.len() + keep.len(), names.len(), "every planned layer gets a choice");
    h.get_by_label_contains("excluded by you");
    h.get_by_label_contains("pinned by you");
}

fn wait_until(h: &mut Harness<'static, QuantscopeApp>, what: &str, done: impl Fn(&QuantscopeApp) -> bool) {
    for _ in 0..3000 {
        h.run_steps(1);
        if done(h.state()) {
            h.run_steps(2);
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn apply_to_save_is_one_step_that_undo_takes_back_and_the_save_window_follows() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_eframe(|cc| QuantscopeApp::new(cc, None));
    wait_until(&mut h, "the sample to open", |a| a.state().model.is_some() && !a.state().busy);
    h.state_mut().apply(Command::SetCompareSchemes(schemes()));
    h.get_by_label("Plan").click();
    wait_until(&mut h, "the matrix", |a| {
        a.state().sensitivity.result.is_some() && a.state().sensitivity.progress.is_none()
    });
    h.get_by_role(Role::Slider).set_value_accesskit(6.0);
    h.run_steps(3);
    let plan = h.state().panels().plan.plan().expect("a plan at 6 bits").clone();
    let before = h.state().state().doc.clone();
    let groups_before = h.state().state().save_groups();
    h.get_by_label("Apply to save").click();
    h.run_steps(2);
    let s = h.state().state();
    assert_ne!(s.doc, before, "the plan changed what is saved");
    assert_eq!(s.undo_label.as_deref().map(|l| l.starts_with("apply plan")), Some(true));
    // What the save writes is the plan: each planned layer under its option.
    let sweep = s.sensitivity.result.clone().unwrap();
    let problem = {
        let model = s.model.as_ref().unwrap();
        let sc = schemes();
        Problem::from_sweep(&sweep, true, &|r, k| {
            export::saves_quantized(&model.tensor(&sweep.rows[r].name).unwrap().shape, &sc[k])
        })
    };
    let saved = s.saved_layers();
    for ((row, opts), &c) in sweep.rows.iter().zip(&problem.layers).zip(&plan.choice) {
        match opts[c].scheme {
            Some(k) => {
                assert!(saved.contains(&row.name), "{} is saved quantized", row.name);
                assert_eq!(s.saved_scheme_for(&row.name).to_string(), sweep.schemes[k]);
            }
            None => assert!(!saved.contains(&row.name), "{} is kept", row.name),
        }
    }
    let groups = s.save_groups();
    assert_ne!(groups, groups_before, "the Save window lists the plan's groups");
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().state().doc, before, "one undo takes the whole plan back");
    assert_eq!(h.state().state().save_groups(), groups_before);
}

/// The commands the panel sent, as candidate sets.
fn candidate_sets(cmds: &[Command]) -> Vec<Vec<String>> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::SetCompareSchemes(v) => Some(v.iter().map(ToString::to_string).collect()),
            _ => None,
        })
        .collect()
}

/// Types `text` into the "Add candidate" field and presses Add.
fn type_candidate<S>(h: &mut Harness<'static, S>, text: &str) {
    h.get_by_role_and_label(Role::TextInput, "Add candidate").focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Add candidate").type_text(text);
    h.run_steps(1);
    h.get_by_label("Add").click();
    h.run_steps(1);
}

#[test]
fn candidates_are_added_and_removed_in_the_plan_view_and_keep_is_always_one() {
    let mut h = panel_harness(plan_state(), PlanPanel::default());
    h.run_steps(2);
    h.get_by_label("keep as stored (BF16/F16/F32)");
    type_candidate(&mut h, "int4:group16:mse");
    let mut want: Vec<String> = SCHEMES.iter().map(ToString::to_string).collect();
    want.push("int4:group16:mse".into());
    assert_eq!(candidate_sets(&h.state().2), [want], "the engine's short form, appended");

    h.state_mut().2.clear();
    h.get_by_label("remove int4:channel:mse").click();
    h.run_steps(2);
    let want: Vec<String> =
        SCHEMES.iter().filter(|s| **s != "int4:channel:mse").map(ToString::to_string).collect();
    assert_eq!(candidate_sets(&h.state().2), [want]);

    // A typo is reported by the engine's parser and changes nothing.
    h.state_mut().2.clear();
    type_candidate(&mut h, "int9:chanel");
    assert!(candidate_sets(&h.state().2).is_empty());
    h.get_by_label_contains("int9:chanel:");
}

#[test]
fn the_output_objective_is_disabled_until_the_model_has_run_then_plans_on_output_costs() {
    let mut panel = PlanPanel::default();
    panel.bits = 6.0;
    let mut h = panel_harness(plan_state(), panel);
    h.run_steps(2);
    h.get_by_label("Objective").click();
    h.run_steps(2);
    let item = h.get_by_label("output (least params-weighted output noise)");
    assert!(item.accesskit_node().is_disabled(), "no capture: output cannot be picked");
    item.click();
    h.run_steps(2);
    assert_eq!(h.state().0.objective, Objective::Relative);

    // Output SQNRs for every cell (as the worker sends them after a run): the
    // layer the relative plan keeps at 8 bits measures far better on its output,
    // one it gives 4 bits far worse, so the plan moves.
    let s = h.state().1.sensitivity.result.clone().unwrap();
    let db: Vec<Vec<Option<f64>>> = s
        .rows
        .iter()
        .map(|row| {
            let shift = match row.name.as_str() {
                "heavy_tailed.weight" => 30.0,
                "gaussian.weight" => -30.0,
                _ => 0.0,
            };
            row.cells.iter().map(|c| c.as_ref().ok().map(|c| c.metrics.sqnr_db + shift)).collect()
        })
        .collect();
    let out = OutputSqnr {
        layers: s.rows.iter().map(|r| r.name.clone()).collect(),
        schemes: s.schemes.clone(),
        db,
    };
    h.state_mut().1.plan_output.result = Some(Arc::new(out.clone()));
    h.run_steps(2);
    h.get_by_label("Objective").click();
    h.run_steps(2);
    h.get_by_label("output (least params-weighted output noise)").click();
    h.run_steps(3);
    assert_eq!(h.state().0.objective, Objective::Output);
    let plan = h.state().0.plan().expect("a plan fits").clone();
    let model = h.state().1.model.as_ref().unwrap();
    let sc = schemes();
    let saves =
        |r: usize, k: usize| export::saves_quantized(&model.tensor(&s.rows[r].name).unwrap().shape, &sc[k]);
    let budget = budget_bytes(6.0, params(&s));
    let expected = Problem::from_sweep_output(&s, true, &saves, &out).solve(budget, Objective::Output);
    assert_eq!(Some(&plan), expected.as_ref());
    let relative = Problem::from_sweep(&s, true, &saves).solve(budget, Objective::Relative).unwrap();
    assert_ne!(plan.choice, relative.choice, "output costs change the plan");
    h.get_by_label_contains("model output SQNR");
}

#[test]
fn changing_the_candidates_in_the_plan_view_recomputes_the_matrix_with_progress() {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_eframe(|cc| QuantscopeApp::new(cc, None));
    wait_until(&mut h, "the sample to open", |a| a.state().model.is_some() && !a.state().busy);
    h.state_mut().apply(Command::SetCompareSchemes(schemes()));
    h.get_by_label("Plan").click();
    wait_until(&mut h, "the matrix", |a| {
        a.state().sensitivity.result.as_ref().is_some_and(|s| s.schemes.len() == SCHEMES.len())
            && a.state().sensitivity.progress.is_none()
    });
    type_candidate(&mut h, "int4:group16:mse");
    assert!(h.state().state().sensitivity.progress.is_some(), "the matrix recomputes, with progress");
    wait_until(&mut h, "the new matrix", |a| {
        a.state()
            .sensitivity
            .result
            .as_ref()
            .is_some_and(|s| s.schemes.last().map(String::as_str) == Some("int4:group16:mse"))
    });
    // The new candidate is an option of the plan (pinnable in every row) and undo takes it away.
    let layer = h.state().state().sensitivity.result.as_ref().unwrap().rows[0].name.clone();
    h.get_by_label(&format!("scheme of {layer}")).click();
    h.run_steps(2);
    h.get_by_label("pin int4:group16:mse");
    h.key_press(egui::Key::Escape);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().state().doc.compare_schemes, schemes());
}

/// At 1000×700 under the default eleven candidates the scheme labels never
/// overlap each other (a name that cannot be placed is left out, not stacked).
#[test]
fn plan_plot_labels_do_not_overlap_at_1000_by_700() {
    let defaults = sweep::default_schemes();
    let state = plan_state_with(&defaults);
    let mut h = Harness::builder().with_size(egui::vec2(1000.0, 700.0)).build_ui_state(
        |ui, (p, s, out): &mut (PlanPanel, AppState, Vec<Command>)| p.ui(s, ui, out),
        (PlanPanel::default(), state, Vec::new()),
    );
    h.run_steps(3);
    let rects = h.state().0.label_rects.clone();
    assert!(rects.len() >= defaults.len() / 2, "most schemes are named: {rects:?}");
    for (i, a) in rects.iter().enumerate() {
        assert!(a.right() <= 1000.0 && a.left() >= 0.0, "{a:?}");
        for b in &rects[i + 1..] {
            assert!(!a.intersects(*b), "{a:?} overlaps {b:?}");
        }
    }
}
