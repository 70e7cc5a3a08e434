//! Quantized checkpoints in the app (issue 14), under egui_kittest: a quantized
//! model opened alone shows its stored scheme, codes and scales; compared with
//! its original, the published R′ becomes what the layer view measures and one
//! more column of the sensitivity view, with the numbers `quantscope diff` gives.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use quantscope::gui::QuantscopeApp;
use quantscope::gui::command::Command;
use quantscope::gui::state::View;
use quantscope::gui::worker::PUBLISHED_COLUMN;

const SCHEME: &str = "int4:group32:minmax:asym";

fn harness(model: PathBuf) -> Harness<'static, QuantscopeApp> {
    Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_eframe(move |cc| QuantscopeApp::new(cc, Some(model.clone())))
}

/// The teaching sample saved by quantscope under [`SCHEME`], in `dir`.
fn quantized_sample(dir: &Path) -> PathBuf {
    let out = dir.join("q");
    let o = common::quantscope(&[
        "quantize",
        common::teaching().to_str().unwrap(),
        out.to_str().unwrap(),
        "--scheme",
        SCHEME,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// `quantscope diff` on the same pair: each layer's published SQNR, by name.
fn cli_sqnr(quantized: &Path) -> Vec<(String, Option<f64>)> {
    let o = common::quantscope(&["diff", common::teaching().to_str().unwrap(), quantized.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = common::stdout_json(&o);
    json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["metrics"]["sqnr_db"].as_f64()))
        .collect()
}

#[test]
fn a_quantized_model_alone_shows_its_stored_scheme_codes_and_scales() {
    let dir = tempfile::tempdir().unwrap();
    let q = quantized_sample(dir.path());
    let mut h = harness(q);
    common::wait_until(&mut h, "the first stored layer", |a| a.state().selected_stored_view().is_some());
    let s = h.state().state();
    let stored = s.model.as_ref().unwrap().summary.stored.as_ref().unwrap();
    assert!(stored.layers.len() >= 3, "{:?}", stored.layers);
    assert!(
        stored.layers.iter().all(|l| l.stored.short == "int4:group32:minmax:asym"),
        "{:?}",
        stored.layers
    );
    let v = s.selected_stored_view().unwrap();
    assert_eq!(v.codes.len(), 16);
    assert_eq!(v.params.len(), v.shape[0] * v.shape[1].div_ceil(32));
    let shown = format!("Codes used: {} of 16", v.codes_used());
    h.get_by_label(&shown);
    h.get_by_label("Stored scheme");
    h.get_by_label("Compare with original…");
}

#[test]
fn comparing_measures_the_published_quantization_as_diff_does() {
    let dir = tempfile::tempdir().unwrap();
    let q = quantized_sample(dir.path());
    let cli = cli_sqnr(&q);
    let mut h = harness(common::teaching());
    common::wait_until(&mut h, "the sample", |a| a.state().selected_analysis().is_some());
    h.state_mut().apply(Command::Compare { original: None, quantized: q.clone() });
    common::wait_until(&mut h, "the pairing", |a| a.state().compare.summary.is_some());
    let c = h.state().state().compare.summary.clone().unwrap();
    assert_eq!(c.paired.len(), cli.len(), "{c:?}");
    h.get_by_label_contains("Compared with q");

    // Every paired layer: the layer view's published SQNR equals the CLI's.
    for (name, db) in &cli {
        h.state_mut().apply(Command::OpenPublished(name.clone()));
        common::wait_until(&mut h, "the published analysis", |a| {
            a.state().selected_analysis().is_some_and(|x| x.showing_published && &x.tensor == name)
        });
        let a = h.state().state().selected_analysis().unwrap().clone();
        assert_eq!(Some(a.result.metrics.sqnr_db).filter(|v| v.is_finite()), *db, "{name}");
        assert_eq!(a.published.as_ref().unwrap().stored.short, SCHEME);
        assert!(a.published.as_ref().unwrap().dequantized_histogram.is_some());
    }
    h.get_by_label_contains("published: int4:group32");
    // What did not pair is a click away, with the reason.
    let n = h.state().state().compare.summary.as_ref().unwrap().unpaired.len();
    assert!(n > 0, "the sample's bias and norms stay unquantized");
    h.get_by_label(&format!("{n} not paired…")).click();
    h.run_steps(2);
    h.get_by_label_contains("Tensors the comparison leaves out");
    h.key_press(egui::Key::Escape);
    h.run_steps(2);

    // The sensitivity view gains a published column with the same numbers.
    h.state_mut().apply(Command::SetView(View::Sensitivity));
    common::wait_until(&mut h, "the matrix", |a| a.state().sensitivity.result.is_some());
    let m = h.state().state().sensitivity.result.clone().unwrap();
    let col = m.schemes.iter().position(|s| s == PUBLISHED_COLUMN).expect("a published column");
    for row in &m.rows {
        let want = cli.iter().find(|(n, _)| n == &row.name).and_then(|(_, db)| *db);
        let got = row.cells[col].as_ref().ok().map(|c| c.metrics.sqnr_db).filter(|v| v.is_finite());
        assert_eq!(got, want, "{}", row.name);
    }

    // Closing the comparison drops the column.
    h.state_mut().apply(Command::CloseComparison);
    common::wait_until(&mut h, "the matrix again", |a| a.state().sensitivity.result.is_some());
    let m = h.state().state().sensitivity.result.clone().unwrap();
    assert!(!m.schemes.iter().any(|s| s == PUBLISHED_COLUMN));
    // And the status bar no longer says it compares.
    let status = h.state().state().status.clone().unwrap_or_default();
    assert!(!status.contains("comparing with"), "{status}");
}

#[test]
fn a_checkpoint_that_pairs_nothing_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let q = quantized_sample(dir.path());
    // The quantized model as the "original": its tensors have other names.
    let mut h = harness(q.clone());
    common::wait_until(&mut h, "the quantized model", |a| a.state().model.is_some());
    h.state_mut().apply(Command::Compare { original: None, quantized: q });
    common::wait_until(&mut h, "the refusal", |a| a.state().error.is_some());
    let e = h.state().state().error.clone().unwrap();
    assert!(e.contains("pairs with"), "{e}");
    assert!(h.state().state().compare.summary.is_none());
}

#[test]
fn opening_a_quantized_checkpoint_over_its_original_offers_the_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let q = quantized_sample(dir.path());
    let mut h = harness(common::teaching());
    common::wait_until(&mut h, "the sample", |a| a.state().selected_analysis().is_some());
    h.state_mut().apply(Command::Open(quantscope::gui::worker::Source::Path(q)));
    common::wait_until(&mut h, "the quantized model", |a| a.state().compare.offer_original.is_some());
    h.get_by_label_contains("Compare it with").click();
    common::wait_until(&mut h, "the pairing", |a| a.state().compare.summary.is_some());
    let s = h.state().state();
    // The original is the open model again, and the quantized one is compared.
    assert!(s.model.as_ref().unwrap().summary.stored.is_none());
    assert_eq!(s.model.as_ref().unwrap().summary.path.as_deref(), Some(common::teaching().as_path()));
    assert!(!s.compare.summary.as_ref().unwrap().paired.is_empty());
}
