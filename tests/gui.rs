//! The real app under egui_kittest (no display needed): open the sample, select a
//! layer by its label, switch every control, drag the range, open a bad file,
//! survive a worker panic. Every shown number is checked against the engine.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use eframe::egui;
use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use quantscope::gui::{Edge, QuantscopeApp, SAMPLE_BYTES};
use quantscope_engine::{
    Calibration, Checkpoint, FormatKind, Granularity, Mapping, Options, Scheme, analyze,
};

fn harness() -> Harness<'static, QuantscopeApp> {
    Harness::builder().with_size(egui::vec2(1600.0, 1000.0)).build_eframe(|cc| QuantscopeApp::new(cc, None))
}

/// Steps frames (the worker runs in real time) until `done` holds.
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

fn settled(app: &QuantscopeApp) -> bool {
    app.model.is_some() && !app.is_busy() && app.analysis.as_ref().map(|a| &a.tensor) == app.selected.as_ref()
}

/// The SQNR the engine gives for `tensor` of the bundled sample under `scheme`.
fn engine_sqnr(tensor: &str, scheme: &Scheme) -> f64 {
    let ckpt = Checkpoint::from_bytes("sample", SAMPLE_BYTES.to_vec()).unwrap();
    let info = ckpt.tensor(tensor).unwrap();
    let values = ckpt.load_f32(tensor).unwrap();
    analyze(&values, &info.shape, scheme, &Options::default()).unwrap().metrics.sqnr_db
}

/// The "SQNR: … dB" label as shown.
fn shown_sqnr(h: &Harness<'static, QuantscopeApp>) -> String {
    let node = h.get_by_label_contains("SQNR: ");
    node.accesskit_node().value().unwrap()
}

fn select_outlier_layer(h: &mut Harness<'static, QuantscopeApp>) {
    // Rows sorted by SQNR move while the column fills in; a click aimed at a row
    // could land on its neighbour. Wait for the whole column first.
    wait_until(h, "the sample and its SQNR column", |a| {
        settled(a) && a.model.as_ref().is_some_and(|m| m.sweep_total > 0 && m.sweep_done == m.sweep_total)
    });
    // Sorting by SQNR flattens the tree, so rows carry their full names.
    h.get_by_label("SQNR").click();
    h.run_steps(2);
    h.get_by_label("outlier_channels.weight").click();
    wait_until(h, "the outlier layer's result", |a| {
        settled(a) && a.selected.as_deref() == Some("outlier_channels.weight")
    });
}

fn check_shown_matches_engine(h: &Harness<'static, QuantscopeApp>) -> String {
    let app = h.state();
    let name = app.selected.clone().unwrap();
    let scheme = app.scheme_for(&name);
    let want = engine_sqnr(&name, &scheme);
    let got = app.analysis.as_ref().unwrap().result.metrics.sqnr_db;
    assert_eq!(got, want, "{name} under {scheme}");
    let label = shown_sqnr(h);
    assert_eq!(label, format!("SQNR: {want:.1} dB"), "{name} under {scheme}");
    label
}

/// Whether a control's change has reached the scheme.
type Applied = dyn Fn(&Scheme) -> bool;

#[test]
fn every_control_recomputes_and_matches_the_engine() {
    let mut h = harness();
    select_outlier_layer(&mut h);
    let mut seen = vec![check_shown_matches_engine(&h)];

    let steps: [(&str, &Applied); 4] = [
        ("per-tensor", &|s| s.granularity == Granularity::Tensor),
        ("asymmetric", &|s| s.mapping == Mapping::Asymmetric),
        ("per-group", &|s| matches!(s.granularity, Granularity::Group { size: 128 })),
        ("symmetric", &|s| s.mapping == Mapping::Symmetric),
    ];
    for (label, applied) in steps {
        h.get_by_label(label).click();
        wait_until(&mut h, label, |a| settled(a) && applied(&a.settings.scheme));
        seen.push(check_shown_matches_engine(&h));
    }
    // Format and calibration are combo boxes: open, then pick.
    let combos: [(&str, &str, &Applied); 4] = [
        ("Format", "FP8 E4M3", &|s| s.format == FormatKind::E4M3),
        ("Calibration", "MSE", &|s| s.calibration == Calibration::Mse),
        ("Format", "FP8 E5M2", &|s| s.format == FormatKind::E5M2),
        ("Calibration", "KL-entropy", &|s| s.calibration == Calibration::Entropy),
    ];
    for (combo, pick, applied) in combos {
        h.get_by_role_and_label(Role::ComboBox, combo).click();
        h.run_steps(2);
        // The popup's option, not a plain text label that happens to say the same.
        h.get_all_by_label(pick).find(|n| n.accesskit_node().role() != Role::Label).unwrap().click();
        wait_until(&mut h, pick, |a| settled(a) && applied(&a.settings.scheme));
        seen.push(check_shown_matches_engine(&h));
    }
    let s = h.state().settings.scheme;
    assert_eq!(s.to_string(), "e5m2:group128:entropy");
    // Per-tensor vs per-channel vs per-group on the outlier layer really differ.
    assert!(seen[0] != seen[1], "{seen:?}");
    let distinct: std::collections::HashSet<_> = seen.iter().collect();
    assert!(distinct.len() >= 5, "{seen:?}");
}

#[test]
fn dragging_the_range_changes_the_clipped_share() {
    let mut h = harness();
    select_outlier_layer(&mut h);
    h.get_by_label("per-tensor").click();
    wait_until(&mut h, "per-tensor", |a| settled(a) && a.settings.scheme.granularity == Granularity::Tensor);
    let before = h.state().analysis.as_ref().unwrap().result.metrics.clipped_fraction;
    assert_eq!(before, 0.0, "min-max clips nothing");
    let hi = h.state().analysis.as_ref().unwrap().result.params[0].hi;
    h.state_mut().drag_range_to(Edge::Hi, f64::from(hi) * 0.1);
    wait_until(&mut h, "the manual range", |a| {
        settled(a) && a.analysis.as_ref().unwrap().result.metrics.clipped_fraction > 0.0
    });
    let app = h.state();
    let after = app.analysis.as_ref().unwrap().result.metrics.clipped_fraction;
    assert!(after > 0.001, "{after}");
    assert!(
        app.settings.overrides.contains_key("outlier_channels.weight"),
        "the drag overrides only this layer"
    );
    assert_eq!(app.settings.scheme.granularity, Granularity::Tensor, "the model scheme is untouched");
    // The shown clipped share follows.
    h.get_by_label_contains(&format!("{:.4} %", after * 100.0));
    check_shown_matches_engine(&h);
}

#[test]
fn a_garbage_file_shows_an_error_and_keeps_the_model() {
    let mut h = harness();
    wait_until(&mut h, "the sample to open", settled);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("garbage.safetensors");
    std::fs::write(&bad, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a model").unwrap();
    h.state_mut().open_path(&bad);
    wait_until(&mut h, "the open error", |a| a.error.is_some());
    let err = h.state().error.clone().unwrap();
    assert!(err.contains("garbage.safetensors") && err.contains("header length"), "{err}");
    h.get_by_label_contains("Could not open");
    assert_eq!(h.state().model.as_ref().unwrap().summary.tensors.len(), 11, "the sample is still open");
    // And the app still works.
    h.get_by_label("per-tensor").click();
    wait_until(&mut h, "a recompute after the error", |a| {
        settled(a) && a.settings.scheme.granularity == Granularity::Tensor
    });
    check_shown_matches_engine(&h);
}

#[test]
fn a_worker_panic_is_shown_and_the_worker_lives_on() {
    let mut h = harness();
    wait_until(&mut h, "the sample to open", settled);
    h.state().inject_worker_panic();
    wait_until(&mut h, "the panic report", |a| a.error.is_some());
    assert!(h.state().error.clone().unwrap().contains("internal error"));
    h.get_by_label("asymmetric").click();
    wait_until(&mut h, "a result after the panic", |a| {
        settled(a) && a.settings.scheme.mapping == Mapping::Asymmetric
    });
    check_shown_matches_engine(&h);
}

#[test]
fn keyboard_moves_the_selection_and_the_sqnr_column_fills_in() {
    let mut h = harness();
    wait_until(&mut h, "the sample to open", settled);
    let first = h.state().selected.clone().unwrap();
    h.key_press(egui::Key::ArrowDown);
    h.run_steps(2);
    let second = h.state().selected.clone().unwrap();
    assert_ne!(first, second);
    wait_until(&mut h, "the SQNR column", |a| {
        a.model.as_ref().is_some_and(|m| m.sweep_total > 0 && m.sweep_done == m.sweep_total)
    });
    let m = h.state().model.as_ref().unwrap();
    let scheme = h.state().settings.scheme;
    assert_eq!(
        m.sqnr.get("heavy_tailed.weight").copied().flatten(),
        Some(engine_sqnr("heavy_tailed.weight", &scheme))
    );
    assert_eq!(m.sqnr.len(), 10, "every quantizable tensor");
}

#[test]
fn saving_from_the_window_writes_a_verified_model_and_honours_the_checkboxes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("saved");
    let mut h = harness();
    wait_until(&mut h, "the sample to open", settled);
    // Untick one layer; give another its own scheme.
    let info = h
        .state()
        .model
        .as_ref()
        .unwrap()
        .summary
        .tensors
        .iter()
        .find(|t| t.name == "gaussian.weight")
        .cloned();
    h.state_mut().set_quantized_on_save(&info.unwrap(), false);
    h.state_mut().settings.overrides.insert("heavy_tailed.weight".into(), "int8:tensor:mse".parse().unwrap());

    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Save quantized model…").click();
    h.run_steps(2);
    let field = h.get_by_role_and_label(Role::TextInput, "Output folder");
    field.focus();
    field.type_text(out.to_str().unwrap());
    h.run_steps(2);
    h.get_by_label("Save").click();
    wait_until(&mut h, "the save to finish", |a| a.save.result.is_some());
    let summary = h.state().save.result.clone().unwrap().unwrap();
    assert_eq!(summary.tensors_quantized, 8, "9 default layers minus the unticked one");
    assert_eq!(summary.verified_tensors, Some(8));
    h.get_by_label("8 tensors read back: bit-identical");
    let ckpt = Checkpoint::open(&out).unwrap();
    assert_eq!(ckpt.tensor("gaussian.weight").unwrap().dtype, quantscope_engine::Dtype::F32);
    assert_eq!(ckpt.tensor("heavy_tailed.weight_scale").unwrap().shape, [1]);
    assert_eq!(ckpt.tensor("outlier_channels.weight_scale").unwrap().shape, [256, 1]);

    // Saving again into the now non-empty folder is refused and changes nothing.
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    h.state_mut().settings.scheme = "e4m3:tensor:minmax".parse().unwrap();
    h.get_by_label("Save").click();
    wait_until(&mut h, "the refusal", |a| matches!(a.save.result, Some(Err(_))));
    h.get_by_label_contains("folder is not empty; use --force");
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), before);

    // The same choices round-trip through a recipe file.
    let recipe = tmp.path().join("recipe.json");
    h.state().save_recipe(&recipe).unwrap();
    let saved = h.state().resolved_recipe();
    h.state_mut().settings.overrides.clear();
    h.state_mut().settings.save_choice.clear();
    h.state_mut().load_recipe(&recipe).unwrap();
    assert_eq!(h.state().resolved_recipe(), saved);
}

#[test]
fn degenerate_tensors_show_defined_numbers_and_infinity_as_the_symbol() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("degenerate.safetensors");
    common::degenerate_model(&path);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_eframe(move |cc| QuantscopeApp::new(cc, Some(path.clone())));
    wait_until(&mut h, "the model to open", settled);
    for (name, lossless) in [
        ("all_nan.weight", true),
        ("all_zero.weight", true),
        ("empty_rows.weight", true),
        ("empty_cols.weight", true),
        ("constant.weight", false),
        ("extreme.weight", false),
        ("infinite.weight", false),
    ] {
        h.state_mut().select(name);
        wait_until(&mut h, name, |a| settled(a) && a.selected.as_deref() == Some(name));
        let label = shown_sqnr(&h);
        if lossless {
            assert_eq!(label, "SQNR: ∞ dB", "{name}");
        } else {
            assert!(
                label.trim_end_matches(" dB").trim_start_matches("SQNR: ").parse::<f64>().is_ok(),
                "{label}"
            );
        }
        assert!(h.state().error.is_none(), "{name}: {:?}", h.state().error);
    }
}

#[test]
fn the_sensitivity_view_ranks_sorts_and_opens_a_cell() {
    use quantscope::gui::View;
    use quantscope::gui::sensitivity::{RankKey, ranked};
    let mut h = harness();
    wait_until(&mut h, "the sample to open", settled);
    h.get_by_label("Sensitivity").click();
    wait_until(&mut h, "the sweep", |a| a.sensitivity.result.is_some() && a.sensitivity.progress.is_none());
    let s = h.state().sensitivity.result.clone().unwrap();
    assert_eq!(s.schemes.len(), 8);
    assert_eq!(s.rows.len(), 9, "the layers a save would quantize");
    // Every cell equals the engine's own analysis of that tensor.
    for row in &s.rows {
        for (k, scheme) in s.schemes.iter().enumerate() {
            let want = engine_sqnr(&row.name, &scheme.parse().unwrap());
            assert_eq!(row.cells[k].as_ref().unwrap().metrics.sqnr_db, want, "{} under {scheme}", row.name);
        }
    }
    // Sort by params, then by SQNR (worst first) with a click each.
    h.get_by_label("size (params)").click();
    h.run_steps(2);
    assert_eq!(h.state().sensitivity.sort, RankKey::Params);
    h.get_by_label("SQNR dB").click();
    h.run_steps(2);
    assert_eq!(h.state().sensitivity.sort, RankKey::Sqnr);
    let order = ranked(&s, 0, RankKey::Sqnr, false);
    let dbs: Vec<f64> = order.iter().map(|&r| s.rows[r].cells[0].as_ref().unwrap().metrics.sqnr_db).collect();
    assert!(dbs.windows(2).all(|w| w[0] <= w[1]), "{dbs:?}");
    assert_eq!(
        s.rows[order[0]].name, "outlier_channels.weight",
        "per-tensor INT8 hurts the outlier layer most"
    );
    // A cell opens that layer under that scheme.
    h.get_by_label("outlier_channels.weight under int8:tensor:minmax").click();
    wait_until(&mut h, "the layer view", |a| a.view == View::Layer && settled(a));
    let app = h.state();
    assert_eq!(app.selected.as_deref(), Some("outlier_channels.weight"));
    assert_eq!(app.scheme_for("outlier_channels.weight").to_string(), "int8:tensor:minmax");
    let want =
        s.rows.iter().find(|r| r.name == "outlier_channels.weight").unwrap().cells[0].as_ref().unwrap();
    assert_eq!(shown_sqnr(&h), format!("SQNR: {:.1} dB", want.metrics.sqnr_db));
}
