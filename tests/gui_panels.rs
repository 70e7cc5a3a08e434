//! Each panel alone, under egui_kittest, with a hand-built `AppState` and no
//! worker: what it draws from the state and which commands it sends.
// Test code: a panic is the failure report, and one closure shape for every
// panel keeps the harness calls alike.
#![allow(clippy::unwrap_used, clippy::redundant_closure_for_method_calls, clippy::redundant_closure)]

use std::collections::HashMap;
use std::sync::Arc;

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use quantscope::gui::command::Command;
use quantscope::gui::panels::browser::{BrowserPanel, SortKey, visible};
use quantscope::gui::panels::histogram::HistogramPanel;
use quantscope::gui::panels::metrics::MetricsPanel;
use quantscope::gui::panels::save::SaveWindow;
use quantscope::gui::panels::scheme::SchemePanel;
use quantscope::gui::panels::sensitivity::{SensitivityPanel, Table};
use quantscope::gui::panels::teach::TeachPanel;
use quantscope::gui::state::{AppState, Model};
use quantscope::gui::worker::{Analysis, ModelSummary};
use quantscope::gui::{Edge, SAMPLE_BYTES};
use quantscope_engine::{Calibration, Checkpoint, ManualRange, Mapping, Options, Scheme, analyze, sweep};

const OUTLIER: &str = "outlier_channels.weight";

/// The sample as an open model, `selected` analyzed under `scheme`.
fn state_with(selected: &str, scheme: Scheme) -> AppState {
    let ckpt = Checkpoint::from_bytes("sample", SAMPLE_BYTES.to_vec()).unwrap();
    let info = ckpt.tensor(selected).unwrap().clone();
    let values = ckpt.load_f32(selected).unwrap();
    let opts = Options { weight_bins: 200, error_bins: 50, ..Options::default() };
    let result = analyze(&values, &info.shape, &scheme, &opts).unwrap();
    let hqq = if scheme.calibration == quantscope_engine::Calibration::Hqq {
        quantscope_engine::calibrate::hqq::hqq_tensor(&values, &info.shape, &scheme).unwrap()
    } else {
        Vec::new()
    };
    let sqnr: HashMap<String, Option<f64>> = ckpt
        .tensors()
        .iter()
        .filter(|t| t.is_quantizable())
        .map(|t| {
            let v = ckpt.load_f32(&t.name).unwrap();
            let db = analyze(&v, &t.shape, &"int2:tensor:minmax".parse().unwrap(), &Options::default())
                .ok()
                .map(|r| r.metrics.sqnr_db);
            (t.name.clone(), db)
        })
        .collect();
    let summary = ModelSummary {
        name: "sample".into(),
        path: None,
        identity: "sample".into(),
        tensors: ckpt.tensors().to_vec(),
        size_bytes: ckpt.size_bytes(),
        stored: None,
    };
    let mut state = AppState::default();
    state.doc.scheme = scheme;
    state.model = Some(Model { summary, sqnr, sqnr_done: 10, sqnr_total: 10 });
    state.selected = Some(selected.into());
    state.analysis = Some(Arc::new(Analysis {
        tensor: selected.into(),
        shape: info.shape,
        scheme_metrics: result.metrics,
        result,
        calibration_ranges: Vec::new(),
        hqq,
        gptq: None,
        awq: None,
        published: None,
        showing_published: false,
        elapsed_ms: 1.0,
    }));
    state
}

/// A harness drawing one panel from `state`; the commands land in the harness state.
fn panel_harness<P: 'static>(
    state: AppState,
    panel: P,
    draw: impl Fn(&mut P, &AppState, &mut egui::Ui, &mut Vec<Command>) + 'static,
) -> Harness<'static, (P, AppState, Vec<Command>)> {
    Harness::builder().with_size(egui::vec2(900.0, 700.0)).build_ui_state(
        move |ui, (p, s, out): &mut (P, AppState, Vec<Command>)| draw(p, s, ui, out),
        (panel, state, Vec::new()),
    )
}

#[test]
fn browser_sorts_saved_layers_first_and_a_click_selects() {
    let mut state = state_with(OUTLIER, Scheme::default());
    // The bias gets the lowest SQNR of all, yet a save never quantizes it.
    state.model.as_mut().unwrap().sqnr.insert("gaussian.bias".into(), Some(-5.0));
    let rows = visible(&state, "", SortKey::Sqnr, false);
    assert!(state.quantized_on_save(&rows[0]), "{}", rows[0].name);
    assert!(rows.iter().any(|t| t.name == "gaussian.bias"), "the bias is still listed");
    let reversed = visible(&state, "", SortKey::Sqnr, true);
    assert!(state.quantized_on_save(&reversed[0]), "best first still starts with a saved layer");
    assert_eq!(reversed.last().map(|t| t.name.as_str()), rows.last().map(|t| t.name.as_str()));
    let panel = BrowserPanel { sort: SortKey::Sqnr, ..BrowserPanel::default() };
    let mut h = panel_harness(state, panel, |p, s, ui, out| p.ui(s, ui, out));
    h.run();
    h.get_by_label("heavy_tailed.weight").click();
    h.run();
    let out = &h.state().2;
    assert!(matches!(out.last(), Some(Command::Select(n)) if n == "heavy_tailed.weight"), "{out:?}");
}

#[test]
fn scheme_panel_edits_the_model_or_the_layer() {
    let mut h =
        panel_harness(state_with(OUTLIER, Scheme::default()), SchemePanel::default(), |p, s, ui, out| {
            p.ui(s, ui, out);
        });
    h.run();
    h.get_by_label("asymmetric").click();
    h.run();
    let asym = Scheme { mapping: Mapping::Asymmetric, ..Scheme::default() };
    assert!(matches!(h.state().2.last(), Some(Command::SetModelScheme(s)) if *s == asym));
    h.get_by_label("this layer").click();
    h.run();
    h.get_by_label("per-tensor").click();
    h.run();
    let Some(Command::SetLayerScheme { layer, scheme, gesture: None }) = h.state().2.last() else {
        panic!("{:?}", h.state().2)
    };
    assert_eq!(layer, OUTLIER);
    assert_eq!(scheme.to_string(), "int8:tensor:minmax");
}

/// At 1000×700 the controls below the granularity stay where they are whichever
/// granularity is chosen (a click aimed at them must not miss).
#[test]
fn scheme_controls_do_not_move_between_granularities() {
    let mut places = Vec::new();
    for g in ["int8:tensor:minmax", "int8:channel:minmax", "int8:group128:minmax"] {
        let scheme: Scheme = g.parse().unwrap();
        let mut state = state_with(OUTLIER, scheme);
        state.doc.scheme = scheme;
        let mut h = Harness::builder().with_size(egui::vec2(1000.0, 700.0)).build_ui_state(
            |ui, (p, s, out): &mut (SchemePanel, AppState, Vec<Command>)| p.ui(s, ui, out),
            (SchemePanel::default(), state, Vec::new()),
        );
        h.run();
        places.push((g, h.get_by_label("Calibration").rect().min));
    }
    assert!(places.windows(2).all(|w| (w[0].1 - w[1].1).length() < 0.5), "{places:?}");
}

/// The calibration a panel sent last.
fn last_calibration(out: &[Command]) -> Calibration {
    match out.iter().rev().find(|c| matches!(c, Command::SetLayerScheme { .. })) {
        Some(Command::SetLayerScheme { scheme, .. }) => scheme.calibration,
        other => panic!("no scheme change: {other:?}"),
    }
}

#[test]
fn a_typed_range_equals_a_dragged_one() {
    let scheme: Scheme = "int8:tensor:minmax:asym".parse().unwrap();
    let state = state_with(OUTLIER, scheme);
    let hi = f64::from(state.analysis.as_ref().unwrap().result.params[0].hi);
    let mut h = panel_harness(state, HistogramPanel::default(), |p, s, ui, out| p.ui(s, ui, out));
    h.run();
    let (from, to) = {
        let p = &h.state().0;
        (p.screen_pos(hi).unwrap(), p.screen_pos(hi * 0.4).unwrap())
    };
    h.hover_at(from);
    h.run();
    h.drag_at(from);
    h.run();
    for k in 1..=4 {
        h.hover_at(from + (to - from) * (k as f32 / 4.0));
        h.run();
    }
    h.drop_at(to);
    h.run();
    let dragged = last_calibration(&h.state().2);
    let Calibration::Manual(ManualRange::Range { hi: dragged_hi, .. }) = dragged else {
        panic!("{dragged:?}")
    };
    assert!((f64::from(dragged_hi) - hi * 0.4).abs() < hi * 0.05, "{dragged_hi} vs {}", hi * 0.4);
    assert!(!h.state().0.is_dragging());

    // Type the same value into the "hi" field: the same calibration results.
    let mut h = panel_harness(state_with(OUTLIER, scheme), HistogramPanel::default(), |p, s, ui, out| {
        p.ui(s, ui, out);
    });
    h.run();
    h.get_by_label("hi").focus();
    h.run();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run();
    h.get_by_label("hi").type_text(&format!("{dragged_hi:e}"));
    h.run();
    h.key_press(egui::Key::Enter);
    h.run();
    let typed = last_calibration(&h.state().2);
    let _ = Edge::Hi;
    assert_eq!(typed, dragged);
}

#[test]
fn histogram_labels_the_clip_lines_and_says_how_to_zoom() {
    let mut h = panel_harness(
        state_with("bf16_linear.weight", Scheme::default()),
        HistogramPanel::default(),
        |p, s, ui, out| {
            p.ui(s, ui, out);
        },
    );
    h.run();
    h.get_by_label_contains("scroll: zoom");
    h.get_by_label("Clip range");
}

/// A narrow clip range (KL on an outlier layer) at 1000×700: the lo and hi labels
/// never overlap.
#[test]
fn clip_labels_of_a_narrow_range_do_not_overlap() {
    let max = state_with(OUTLIER, Scheme::default()).analysis.unwrap().result.params[0].hi;
    for frac in [0.01f32, 0.03, 0.1, 0.5] {
        let mut scheme: Scheme = "int8:tensor:minmax".parse().unwrap();
        scheme.calibration = Calibration::Manual(ManualRange::Range { lo: -max * frac, hi: max * frac });
        let mut h = Harness::builder().with_size(egui::vec2(1000.0, 700.0)).build_ui_state(
            |ui, (p, s, out): &mut (HistogramPanel, AppState, Vec<Command>)| p.ui(s, ui, out),
            (HistogramPanel::default(), state_with(OUTLIER, scheme), Vec::new()),
        );
        h.run();
        let rects = h.state().0.clip_label_rects().to_vec();
        assert_eq!(rects.len(), 2);
        assert!(!rects[0].intersects(rects[1]), "{frac}: {rects:?}");
        let plot = h.state().0.plot_rect().unwrap();
        assert!(rects.iter().all(|r| plot.expand(1.0).contains_rect(*r)), "{frac}: {rects:?} in {plot:?}");
    }
}

#[test]
fn teach_panel_defines_c_and_decodes_fp8_bits() {
    let scheme: Scheme = "e4m3:tensor:minmax:asym".parse().unwrap();
    let mut h =
        panel_harness(state_with(OUTLIER, scheme), TeachPanel::default(), |p, s, ui, out| p.ui(s, ui, out));
    h.run();
    h.get_by_label_contains("c = (hi + lo)/2");
    h.get_by_label_contains("the centre of the range");
    assert!(h.get_all_by_label_contains("2^(").count() >= 2, "the bits decoded for both formats");
    h.get_by_label_contains("E4M3 vs E5M2");
}

/// In the narrowest inspector (250 px, a 1000 px window) the FP8 side-by-side
/// comparison's texts do not overlap each other (two columns once did).
#[test]
fn teach_panel_fp8_comparison_fits_a_narrow_inspector() {
    let scheme: Scheme = "e4m3:tensor:minmax:asym".parse().unwrap();
    let mut h = Harness::builder().with_size(egui::vec2(250.0, 1600.0)).build_ui_state(
        |ui, (p, s, out): &mut (TeachPanel, AppState, Vec<Command>)| p.ui(s, ui, out),
        (TeachPanel::default(), state_with(OUTLIER, scheme), Vec::new()),
    );
    h.run();
    h.get_by_label_contains("E4M3 vs E5M2");
    let rects: Vec<egui::Rect> = h
        .get_all_by_role(egui::accesskit::Role::Label)
        .map(|n| n.rect())
        .filter(|r| r.area() > 0.0)
        .collect();
    assert!(rects.len() > 10);
    for (i, a) in rects.iter().enumerate() {
        for b in &rects[i + 1..] {
            assert!(a.intersect(*b).area() < 1.0, "{a:?} overlaps {b:?}");
        }
    }
}

#[test]
fn teach_panel_shows_what_rounding_hqqs_zero_point_costs() {
    let scheme: Scheme = "int4:group64:hqq:asym".parse().unwrap();
    let mut h =
        panel_harness(state_with(OUTLIER, scheme), TeachPanel::default(), |p, s, ui, out| p.ui(s, ui, out));
    h.run();
    h.get_by_label_contains("half-quadratic splitting");
    h.get_by_label_contains("Z (real)");
    h.get_by_label_contains("with rounded Z");
}

#[test]
fn metrics_panel_hints_at_the_cause_of_a_catastrophe() {
    let tiny = Scheme {
        granularity: quantscope_engine::Granularity::Tensor,
        calibration: Calibration::Manual(ManualRange::Range { lo: -1e-6, hi: 1e-6 }),
        ..Scheme::default()
    };
    let mut h =
        panel_harness(state_with(OUTLIER, tiny), MetricsPanel::default(), |p, s, ui, out| p.ui(s, ui, out));
    h.run();
    h.get_by_label_contains("mostly to clipping");
    h.get_by_label("Reset settings to defaults").click();
    h.run();
    assert!(matches!(h.state().2.last(), Some(Command::ResetDocument)));

    let mut h =
        panel_harness(state_with(OUTLIER, Scheme::default()), MetricsPanel::default(), |p, s, ui, out| {
            p.ui(s, ui, out);
        });
    h.run();
    assert!(h.query_by_label_contains("Almost all of the signal").is_none(), "no hint on a good result");
}

/// The sample with its whole matrix under the default schemes.
fn matrix_state() -> AppState {
    let mut state = state_with(OUTLIER, Scheme::default());
    let ckpt = Checkpoint::from_bytes("sample", SAMPLE_BYTES.to_vec()).unwrap();
    let names: Vec<usize> =
        (0..ckpt.tensors().len()).filter(|&i| state.quantized_on_save(&ckpt.tensors()[i])).collect();
    let schemes = sweep::default_schemes();
    let rows = names
        .iter()
        .map(|&i| sweep::sweep_tensor(&ckpt, &ckpt.tensors()[i], &schemes, &mut Vec::new()))
        .collect();
    state.sensitivity.result = Some(Arc::new(sweep::finish(&ckpt, &names, &schemes, rows)));
    state
}

#[test]
fn a_matrix_cell_sends_a_preview_not_a_change() {
    let mut panel = SensitivityPanel::default();
    panel.table = Table::Matrix;
    let mut h = panel_harness(matrix_state(), panel, |p, s, ui, out| p.ui(s, ui, out));
    h.run();
    h.get_by_label(&format!("{OUTLIER} under int8:tensor:minmax")).click();
    h.run();
    let out = &h.state().2;
    assert!(
        matches!(out.last(), Some(Command::Preview { layer, scheme }) if layer == OUTLIER && scheme.to_string() == "int8:tensor:minmax"),
        "{out:?}"
    );
    assert!(!out.iter().any(|c| c.undo_label().is_some()), "nothing saved changes: {out:?}");
}

#[test]
fn save_window_lists_the_config_groups_or_says_no_model() {
    let mut state = state_with(OUTLIER, Scheme::default());
    state.doc.overrides.insert(OUTLIER.into(), "e4m3:tensor:minmax".parse().unwrap());
    // Another calibration of the model's layout shares its config group.
    state.doc.overrides.insert("heavy_tailed.weight".into(), "int8:channel:mse".parse().unwrap());
    let window = SaveWindow { open: true, ..SaveWindow::default() };
    let mut h = panel_harness(state, window, |p, s, ui, out| p.ui(s, ui.ctx(), out));
    h.run();
    h.get_by_label_contains("2 config groups");
    h.get_by_label("e4m3:tensor");
    h.get_by_label("1 layer");
    h.get_by_label("int8:channel");
    h.get_by_label("8 layers");
    h.get_by_label("int8:channel:minmax, int8:channel:mse");

    let window = SaveWindow { open: true, ..SaveWindow::default() };
    let mut h = panel_harness(AppState::default(), window, |p, s, ui, out| p.ui(s, ui.ctx(), out));
    h.run();
    h.get_by_label_contains("No model is open");
    assert!(h.query_by_label("Save").is_none());
}

#[test]
fn save_window_sends_the_declared_activations() {
    let window = SaveWindow { open: true, out: "/tmp/out".into(), ..SaveWindow::default() };
    let mut h =
        panel_harness(state_with(OUTLIER, Scheme::default()), window, |p, s, ui, out| p.ui(s, ui.ctx(), out));
    h.run();
    h.get_by_label("INT8 dynamic (W8A8)").click();
    h.run();
    h.get_by_label("Save").click();
    h.run();
    let Some(Command::StartSave(r)) = h.state().2.last() else { panic!("{:?}", h.state().2) };
    assert_eq!(r.activations, quantscope_engine::export::Activations::Int8Dynamic);
    assert!(!r.fake_quant && r.verify);
}

/// At 1000×700 the matrix scrolls sideways, and the layer names stay in view.
#[test]
fn the_matrix_keeps_its_layer_names_in_view_when_scrolled_sideways() {
    let mut panel = SensitivityPanel::default();
    panel.table = Table::Matrix;
    let mut h = Harness::builder().with_size(egui::vec2(1000.0, 700.0)).build_ui_state(
        |ui, (p, s, out): &mut (SensitivityPanel, AppState, Vec<Command>)| p.ui(s, ui, out),
        (panel, matrix_state(), Vec::new()),
    );
    h.run();
    let last = sweep::default_schemes().last().unwrap().to_string();
    let cell = h.get_by_label(&format!("{OUTLIER} under {last}")).rect();
    let before = h.state().0.first_name_rect.unwrap();
    // Scroll right over the cells until the last column shows.
    h.hover_at(cell.center().min(egui::pos2(990.0, 600.0)) - egui::vec2(300.0, 0.0));
    for _ in 0..20 {
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(-200.0, 0.0),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
            modifiers: egui::Modifiers::NONE,
        });
        // Wheel scrolling is smoothed over a few frames.
        h.run_steps(8);
    }
    let after = h.get_by_label(&format!("{OUTLIER} under {last}")).rect();
    assert!(
        after.right() <= 1000.0 && after.left() < cell.left(),
        "the cells scrolled: {cell:?} → {after:?}"
    );
    let name = h.state().0.first_name_rect.unwrap();
    assert_eq!(name.left(), before.left(), "the names did not move sideways");
    assert!(name.left() >= 0.0 && name.right() <= 1000.0, "{name:?}");
}
