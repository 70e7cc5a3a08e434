//! `quantscope report` end to end: JSON for every flag combination on both sample
//! models, CSV, the error paths and the MSE ≤ min-max acceptance check on MiniLM.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::{minilm, quantscope, stdout_json, teaching};
use serde_json::Value;

const METRIC_KEYS: [&str; 10] = [
    "count",
    "mse",
    "rmse",
    "sqnr_db",
    "max_abs_err",
    "cosine",
    "clipped_fraction",
    "clip_error",
    "round_error",
    "nonfinite",
];

/// Checks the documented schema and that no metric is NaN/absent.
fn check_doc(doc: &Value, expect_tensors: usize) {
    for key in ["model", "scheme", "tensors"] {
        assert!(doc.get(key).is_some(), "missing {key}");
    }
    let tensors = doc["tensors"].as_array().expect("tensors array");
    assert_eq!(tensors.len(), expect_tensors);
    for t in tensors {
        for key in ["name", "dtype", "shape", "numel", "quantized", "reason", "fallback", "metrics"] {
            assert!(t.get(key).is_some(), "{t}: missing {key}");
        }
        if t["quantized"] == true {
            let m = &t["metrics"];
            for key in METRIC_KEYS {
                let v = &m[key];
                assert!(v.is_number() || (key == "sqnr_db" && v.is_null()), "{}: {key} = {v}", t["name"]);
            }
            assert!(m["mse"].as_f64().unwrap() >= 0.0);
            let split = m["clip_error"].as_f64().unwrap() + m["round_error"].as_f64().unwrap();
            assert!((split - m["mse"].as_f64().unwrap()).abs() <= 1e-12 + 1e-9 * split);
        } else {
            assert!(t["reason"].is_string(), "{t}");
        }
    }
}

fn all_flag_combinations() -> Vec<Vec<&'static str>> {
    let mut out = Vec::new();
    for format in ["int8", "int4", "e4m3", "e5m2"] {
        for mapping in ["symmetric", "asymmetric"] {
            for granularity in ["tensor", "channel", "group"] {
                for calibration in ["minmax", "percentile", "mse", "entropy"] {
                    out.push(vec![
                        "--format",
                        format,
                        "--mapping",
                        mapping,
                        "--granularity",
                        granularity,
                        "--calibration",
                        calibration,
                    ]);
                }
            }
        }
    }
    out
}

fn run_all_combinations(model: &str, tensors: usize, filter: Option<&str>) {
    let combos = all_flag_combinations();
    assert_eq!(combos.len(), 96);
    std::thread::scope(|s| {
        for chunk in combos.chunks(24) {
            s.spawn(move || {
                for flags in chunk {
                    let mut args = vec!["report", model];
                    args.extend(flags.iter().copied());
                    if let Some(f) = filter {
                        args.extend(["--tensors", f]);
                    }
                    let doc = stdout_json(&quantscope(&args));
                    check_doc(&doc, tensors);
                    assert_eq!(doc["scheme"]["format"], flags[1]);
                }
            });
        }
    });
}

#[test]
fn teaching_sample_every_flag_combination_is_valid_json() {
    run_all_combinations(teaching().to_str().unwrap(), 11, None);
}

#[test]
fn minilm_every_flag_combination_is_valid_json() {
    let Some(dir) = minilm() else {
        eprintln!("MiniLM not fetched; skipping (run sample-models/fetch-minilm.sh)");
        return;
    };
    let tensors = quantscope_engine::Checkpoint::open(&dir).unwrap().tensors().len();
    run_all_combinations(dir.to_str().unwrap(), tensors, None);
}

#[test]
fn teaching_sample_records_show_each_case() {
    let doc = stdout_json(&quantscope(&["report", teaching().to_str().unwrap(), "--params"]));
    let by_name =
        |n: &str| doc["tensors"].as_array().unwrap().iter().find(|t| t["name"] == n).cloned().unwrap();
    let ids = by_name("position_ids");
    assert_eq!(ids["quantized"], false);
    assert!(ids["reason"].as_str().unwrap().contains("integer"));
    let bias = by_name("gaussian.bias");
    assert!(bias["fallback"].as_str().unwrap().contains("per-tensor"));
    assert_eq!(bias["params"].as_array().unwrap().len(), 1);
    let w = by_name("gaussian.weight");
    assert_eq!(w["params"].as_array().unwrap().len(), 256);
    assert_eq!(by_name("with_nan.weight")["metrics"]["nonfinite"], 5);
    // Per-channel absorbs the outlier rows: per-tensor must be clearly worse there.
    let per_tensor = stdout_json(&quantscope(&[
        "report",
        teaching().to_str().unwrap(),
        "--granularity",
        "tensor",
        "--tensors",
        "^outlier_channels",
    ]));
    let sqnr_t = per_tensor["tensors"][0]["metrics"]["sqnr_db"].as_f64().unwrap();
    let sqnr_c = w["metrics"]["sqnr_db"].as_f64().unwrap();
    let sqnr_oc = by_name("outlier_channels.weight")["metrics"]["sqnr_db"].as_f64().unwrap();
    assert!(sqnr_oc > sqnr_t + 10.0, "per-channel {sqnr_oc} vs per-tensor {sqnr_t}");
    assert!(sqnr_c > 30.0);
}

#[test]
fn csv_has_one_row_per_tensor_and_per_slice_with_params() {
    let out = quantscope(&["report", teaching().to_str().unwrap(), "--output", "csv"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "name");
    assert!(header.contains(&"sqnr_db"));
    assert_eq!(lines.count(), 11);
    let out = quantscope(&[
        "report",
        teaching().to_str().unwrap(),
        "--output",
        "csv",
        "--params",
        "--tensors",
        "^conv3x3",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1 + 64, "one row per output channel");
}

#[test]
fn minilm_mse_calibration_never_loses_to_minmax() {
    let Some(dir) = minilm() else {
        eprintln!("MiniLM not fetched; skipping");
        return;
    };
    let dir = dir.to_str().unwrap();
    for granularity in ["tensor", "channel"] {
        let run = |cal: &str| {
            stdout_json(&quantscope(&["report", dir, "--granularity", granularity, "--calibration", cal]))
        };
        let (mse, minmax) = (run("mse"), run("minmax"));
        let mut checked = 0;
        for (a, b) in mse["tensors"].as_array().unwrap().iter().zip(minmax["tensors"].as_array().unwrap()) {
            assert_eq!(a["name"], b["name"]);
            if a["quantized"] == true && a["shape"].as_array().unwrap().len() == 2 {
                let (ma, mb) = (a["metrics"]["mse"].as_f64().unwrap(), b["metrics"]["mse"].as_f64().unwrap());
                assert!(ma <= mb, "{} ({granularity}): mse {ma} > minmax {mb}", a["name"]);
                checked += 1;
            }
        }
        assert!(checked >= 36, "{checked} 2-D weights checked");
    }
}

#[test]
fn bad_files_exit_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(teaching()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a model at all, just text").unwrap();
    for (path, needle) in [(&truncated, "truncated"), (&garbage, "header length")] {
        let out = quantscope(&["report", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(path.file_name().unwrap().to_str().unwrap()), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("panicked"));
    }
    let missing = quantscope(&["report", "/no/such/model.safetensors"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["report"],
        vec!["report", "x.safetensors", "--format", "int9"],
        vec!["report", "x.safetensors", "--granularity", "rows"],
        vec!["report", "x.safetensors", "--tensors", "("],
    ] {
        assert_eq!(quantscope(&args).status.code(), Some(2), "{args:?}");
    }
}

/// Issue 16: `report --inputs` adds the output SQNR of each Linear layer, and
/// `sensitivity` measures each layer's end-to-end effect on the pooled embedding.
#[test]
fn minilm_inputs_give_output_sqnr_and_end_to_end_sensitivity() {
    let Some(dir) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let inputs = common::builtin_inputs(tmp.path(), 8);
    let (dir, inputs) = (dir.to_str().unwrap(), inputs.to_str().unwrap());
    let re = r"encoder\.layer\.0\..*";
    let doc = stdout_json(&quantscope(&[
        "report",
        dir,
        "--inputs",
        inputs,
        "--tensors",
        re,
        "--scheme",
        "int4:channel",
    ]));
    let mut linear = 0;
    for t in doc["tensors"].as_array().unwrap() {
        let m = &t["metrics"];
        if t["shape"].as_array().unwrap().len() == 2 {
            let (out, w) = (m["output_sqnr_db"].as_f64().unwrap(), m["sqnr_db"].as_f64().unwrap());
            assert!(out > 5.0 && out < 60.0 && (out - w).abs() > 1e-6, "{}: {out} vs {w}", t["name"]);
            linear += 1;
        } else {
            assert!(m.get("output_sqnr_db").is_none(), "{}", t["name"]);
        }
    }
    assert_eq!(linear, 6);

    let re = r"encoder\.layer\.[01]\..*";
    let doc = stdout_json(&quantscope(&[
        "sensitivity",
        dir,
        "--inputs",
        inputs,
        "--scheme",
        "int4:channel",
        "--tensors",
        re,
    ]));
    assert_eq!((doc["samples"].as_u64(), doc["scheme"].as_str()), (Some(8), Some("int4:channel:minmax")));
    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 12);
    let mut worst = 1.0f64;
    for l in layers {
        let e = &l["end_to_end"];
        let c = e["cosine"].as_f64().unwrap();
        assert!(c > 0.5 && c < 1.0 && e["mse"].as_f64().unwrap() > 0.0 && e["kl"].is_null(), "{l}");
        assert!(l["weight_sqnr_db"].as_f64().is_some() && l["output_sqnr_db"].as_f64().is_some());
        worst = worst.min(c);
    }
    // Every layer together moves the output further than the worst layer alone.
    assert!(doc["all_layers"]["cosine"].as_f64().unwrap() < worst);

    // A model that cannot run: one line naming the missing config.
    let teaching = common::teaching();
    let out = quantscope(&["sensitivity", teaching.to_str().unwrap(), "--inputs", inputs]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("config.json") && err.trim().lines().count() == 1, "{err}");
}

/// A one-tensor file (`w`, F32 `[rows, cols]`) whose data starts `pad` bytes into
/// the data section, after a U8 tensor: pad 1 leaves the F32 data unaligned.
fn f32_file_at(path: &std::path::Path, values: &[f32], rows: usize, cols: usize, pad: usize) {
    let data: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, quantscope_engine::checkpoint::padded_file("F32", &[rows, cols], &data, pad))
        .unwrap();
}

#[test]
fn unaligned_f32_reports_the_same_numbers_as_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, cols) = (64, 1100);
    let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 2003) as f32 - 1000.0) * 1e-3).collect();
    let (aligned, unaligned) = (dir.path().join("a.safetensors"), dir.path().join("u.safetensors"));
    f32_file_at(&aligned, &values, rows, cols, 4);
    f32_file_at(&unaligned, &values, rows, cols, 1);
    for scheme in ["int8:channel:minmax", "int8:tensor:minmax", "int4:group64:mse:asym"] {
        let w = |path: &std::path::Path| -> Value {
            let out = quantscope(&["report", path.to_str().unwrap(), "--scheme", scheme, "--params"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let doc = stdout_json(&out);
            doc["tensors"].as_array().unwrap().iter().find(|t| t["name"] == "w").unwrap().clone()
        };
        let (a, u) = (w(&aligned), w(&unaligned));
        assert_eq!(a["quantized"], Value::Bool(true), "{scheme}");
        assert_eq!(a["metrics"], u["metrics"], "{scheme}");
        assert_eq!(a["params"], u["params"], "{scheme}");
        assert!(a["metrics"]["sqnr_db"].as_f64().unwrap() > 10.0, "{scheme}");
    }
}
