//! Running the model in the app (issue 16), under egui_kittest: a capture saved
//! by `quantscope activations` opens through File > Load activations (no model
//! run), fills the browser's output-SQNR column, and the end-to-end ranking runs
//! in the worker with progress, is cancellable, is kept per scheme and shows the
//! numbers `quantscope sensitivity` prints for the same samples (to 1e-12).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::time::Duration;

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use quantscope::gui::QuantscopeApp;
use quantscope::gui::command::Command;
use quantscope::gui::panels::format_sqnr;
use quantscope_engine::Scheme;

fn wait_until(h: &mut Harness<'static, QuantscopeApp>, what: &str, done: impl Fn(&QuantscopeApp) -> bool) {
    for _ in 0..1200 {
        h.run_steps(1);
        if done(h.state()) {
            h.run_steps(2);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// `quantscope activations` over the first `n` built-in sentences; returns the file and the inputs.
fn saved_capture(dir: &std::path::Path, tmp: &std::path::Path, n: usize) -> (std::path::PathBuf, String) {
    let inputs = common::builtin_inputs(tmp, n);
    let out = tmp.join("acts.safetensors");
    let (d, i, o) = (dir.to_str().unwrap(), inputs.to_str().unwrap(), out.to_str().unwrap());
    let run = common::quantscope(&["activations", d, "--inputs", i, "-o", o]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    (out, i.to_string())
}

#[test]
fn loaded_activations_give_the_output_column_and_the_end_to_end_ranking() {
    let Some(dir) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (file, inputs) = saved_capture(&dir, tmp.path(), 8);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_eframe(|cc| QuantscopeApp::new(cc, Some(dir.clone())));
    wait_until(&mut h, "MiniLM", |a| a.state().model.is_some() && a.state().selected_analysis().is_some());
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Load activations…");
    h.state_mut().apply(Command::LoadActivations(file.clone()));
    wait_until(&mut h, "the capture", |a| a.state().activations.capture.is_some());
    let c = h.state().state().activations.capture.clone().unwrap();
    assert_eq!((c.samples, c.layers.len()), (8, 36));
    wait_until(&mut h, "the output column", |a| a.state().activations.output_sqnr.len() == 36);
    let s = h.state().state();
    let selected = s.selected.clone().unwrap();
    let out_db = s.activations.output_sqnr[&selected];
    let scheme = s.doc.scheme;
    // The same number `report --activations` gives for the layer.
    let ckpt = quantscope_engine::Checkpoint::open(&dir).unwrap();
    let acts = quantscope_engine::run::store::load(&file).unwrap();
    let engine = quantscope_engine::run::output_error::layer_output_error(&ckpt, &acts, &selected, &scheme);
    assert_eq!(out_db.to_bits(), engine.unwrap().sqnr_db().to_bits());
    let shown = format!("out {}", format_sqnr(Some(out_db)));
    assert!(h.query_all_by_label(&shown).next().is_some(), "{shown} in the browser");

    h.get_by_label("input activations").click();
    h.run_steps(2);
    h.get_by_label("end-to-end ranking (every layer)").click();
    h.run_steps(2);
    h.get_by_label("Run end to end").click();
    h.run_steps(1);
    assert!(h.state().state().activations.end_to_end.running.is_some(), "the progress bar shows at once");
    let key = scheme.to_string();
    wait_until(&mut h, "the ranking", |a| a.state().activations.end_to_end.results.contains_key(&key));
    let report = h.state().state().activations.end_to_end.results[&key].clone();
    assert_eq!((report.samples, report.layers.len()), (8, 36));

    // `quantscope sensitivity` on the same sentences: the same numbers and ranking.
    let cli = common::stdout_json(&common::quantscope(&[
        "sensitivity",
        dir.to_str().unwrap(),
        "--inputs",
        &inputs,
        "--scheme",
        &key,
    ]));
    let rho = cli["spearman_weight_vs_end_to_end"].as_f64().unwrap();
    assert_eq!(report.spearman_weight_vs_end_to_end, Some(rho));
    for (row, l) in report.layers.iter().zip(cli["layers"].as_array().unwrap()) {
        assert_eq!(row.name, l["name"].as_str().unwrap());
        // The worker's pool has one thread fewer than the CLI's: matmul sums split differently.
        let (gui, cli) = (row.end_to_end.cosine.unwrap(), l["end_to_end"]["cosine"].as_f64().unwrap());
        assert!((gui - cli).abs() <= 1e-12, "{}: {gui} vs {cli}", row.name);
    }
    h.get_by_label(&format!("{rho:.3}"));
    let ranks = quantscope_engine::run::sensitivity::rankings(&report);
    let worst = report.layers.iter().zip(&ranks).find(|(_, r)| r.end_to_end == 1).unwrap().0;
    assert!(h.query_all_by_label(&worst.name).next().is_some(), "{} is listed", worst.name);

    // Another scheme: cancelled midway, nothing kept; the first result stays.
    let int4: Scheme = "int4:channel".parse().unwrap();
    h.state_mut().apply(Command::RunEndToEnd(int4));
    h.run_steps(2);
    h.get_by_label("Cancel").click();
    wait_until(&mut h, "the cancel", |a| a.state().activations.end_to_end.running.is_none());
    let e = &h.state().state().activations.end_to_end;
    assert_eq!(e.error.as_deref(), Some("cancelled"));
    assert!(!e.results.contains_key(&int4.to_string()) && e.results.contains_key(&key));
}

#[test]
fn a_bad_activations_file_is_one_line_and_the_app_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_eframe(|cc| QuantscopeApp::new(cc, None));
    wait_until(&mut h, "the sample", |a| a.state().model.is_some());
    h.state_mut().apply(Command::LoadActivations(bad));
    wait_until(&mut h, "the refusal", |a| a.state().activations.error.is_some());
    let e = h.state().state().activations.error.clone().unwrap();
    assert!(e.contains("bad.safetensors") && !e.contains('\n'), "{e}");
    assert!(h.state().state().activations.capture.is_none());
    h.get_by_label("input activations").click();
    h.run_steps(2);
    h.get_by_label(&e);
}

/// MiniLM open with `method` greyed in the calibration menu, then a saved
/// capture of 8 samples loaded: where the GPTQ and AWQ views start.
fn greyed_then_captured(
    dir: &std::path::Path,
    tmp: &std::path::Path,
    method: &str,
) -> (Harness<'static, QuantscopeApp>, std::path::PathBuf) {
    let (file, _) = saved_capture(dir, tmp, 8);
    let dir = dir.to_path_buf();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_eframe(move |cc| QuantscopeApp::new(cc, Some(dir.clone())));
    wait_until(&mut h, "MiniLM", |a| a.state().model.is_some() && a.state().selected_analysis().is_some());
    h.get_by_label("Calibration").click();
    h.run_steps(2);
    assert!(h.get_by_label(method).accesskit_node().is_disabled(), "{method} is greyed before a capture");
    h.key_press(egui::Key::Escape);
    h.run_steps(2);
    h.state_mut().apply(Command::LoadActivations(file.clone()));
    wait_until(&mut h, "the capture", |a| a.state().activations.capture.is_some());
    (h, file)
}

/// GPTQ in the app: greyed without inputs; with a loaded capture the layer's
/// error panel shows round-to-nearest beside GPTQ (weight SQNR down, output SQNR
/// up) with the numbers the engine computes, and the histogram both R′ lines.
#[test]
fn gptq_needs_a_capture_then_shows_its_trade_beside_round_to_nearest() {
    let Some(dir) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (mut h, file) = greyed_then_captured(&dir, tmp.path(), "GPTQ");
    let layer = "encoder.layer.2.intermediate.dense.weight";
    h.state_mut().apply(Command::Select(layer.into()));
    let gptq: Scheme = "int4:group128:gptq".parse().unwrap();
    h.state_mut().apply(Command::SetModelScheme(gptq));
    wait_until(&mut h, "GPTQ's analysis", |a| {
        a.state().selected_analysis().is_some_and(|x| x.tensor == layer && x.gptq.is_some())
    });
    let view = h.state().state().selected_analysis().unwrap().gptq.clone().unwrap();
    assert!(view.gptq.metrics.sqnr_db < view.rtn.metrics.sqnr_db, "weight SQNR drops");
    assert!(view.output.sqnr_db() > view.rtn_output.sqnr_db(), "output SQNR rises");
    let ckpt = quantscope_engine::Checkpoint::open(&dir).unwrap();
    let acts = quantscope_engine::run::store::load(&file).unwrap();
    let engine =
        quantscope_engine::run::output_error::layer_output_error(&ckpt, &acts, layer, &gptq).unwrap();
    assert_eq!(view.output.sqnr_db().to_bits(), engine.sqnr_db().to_bits());
    for text in [format_sqnr(Some(view.output.sqnr_db())), format_sqnr(Some(view.rtn.metrics.sqnr_db))] {
        assert!(h.query_all_by_label(&text).next().is_some(), "{text} on screen");
    }
    h.get_by_label("nearest R'");
    h.get_by_label("GPTQ R'");
}

#[test]
fn awq_needs_a_capture_then_shows_its_choice_beside_round_to_nearest() {
    let Some(dir) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (mut h, _) = greyed_then_captured(&dir, tmp.path(), "AWQ");
    let awq: Scheme = "int4:group128:awq:asym".parse().unwrap();
    h.state_mut().apply(Command::SetModelScheme(awq));
    // A layer alone on its input: the search includes the identity (round-to-nearest), so it cannot lose.
    let alone = "encoder.layer.3.output.dense.weight";
    h.state_mut().apply(Command::Select(alone.into()));
    wait_until(&mut h, "AWQ's analysis", |a| {
        a.state().selected_analysis().is_some_and(|x| x.tensor == alone && x.awq.is_some())
    });
    let view = h.state().state().selected_analysis().unwrap().awq.clone().unwrap();
    assert_eq!(view.group, [alone]);
    assert!(view.output.sqnr_db() >= view.rtn_output.sqnr_db(), "the least output noise wins");
    assert_eq!(view.group_sqnr_db.len(), 20);
    h.get_by_label("nearest R'");
    h.get_by_label("AWQ R'");
    assert!(h.query_all_by_label(&format_sqnr(Some(view.output.sqnr_db()))).next().is_some());

    // q, k and v share their input: one search for the three.
    let query = "encoder.layer.1.attention.self.query.weight";
    h.state_mut().apply(Command::Select(query.into()));
    wait_until(&mut h, "the query's analysis", |a| {
        a.state().selected_analysis().is_some_and(|x| x.tensor == query && x.awq.is_some())
    });
    let view = h.state().state().selected_analysis().unwrap().awq.clone().unwrap();
    assert_eq!(view.group.len(), 3, "{:?}", view.group);
    let best = view.group_sqnr_db[view.best];
    assert!(view.group_sqnr_db.iter().all(|&d| d <= best), "the winner has the group's best output SQNR");
}

/// A scheme that needs the inputs, without a capture: the panels say why
/// instead of waiting, and the earlier scheme's picture is not left up.
#[test]
fn a_method_without_inputs_says_why_instead_of_waiting() {
    let Some(dir) = common::minilm() else { return };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_eframe(|cc| QuantscopeApp::new(cc, Some(dir.clone())));
    wait_until(&mut h, "MiniLM", |a| a.state().model.is_some() && a.state().selected_analysis().is_some());
    h.state_mut().apply(Command::SetModelScheme("int4:group128:awq:asym".parse().unwrap()));
    wait_until(&mut h, "the refusal", |a| a.state().analysis_failed.is_some());
    assert!(h.state().state().selected_analysis().is_none(), "the min-max picture is not kept");
    h.get_by_label_contains("Nothing to show under this scheme: AWQ needs the layer's inputs");
    assert!(h.query_by_label_contains("Analyzing").is_none(), "no spinner waits");
    h.state_mut().apply(Command::SetModelScheme("int4:group128:minmax:asym".parse().unwrap()));
    wait_until(&mut h, "min-max again", |a| a.state().selected_analysis().is_some());
}
