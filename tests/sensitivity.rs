//! Whole-model sensitivity from the CLI: `report --compare` equals single-scheme
//! reports, its JSON and CSV parse, the per-scheme totals match a hand
//! computation, and `--sort` / `--top` order the rows.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::{minilm, quantscope, stdout_json, teaching};
use serde_json::Value;

const SCHEMES: [&str; 8] = [
    "int8:tensor:minmax",
    "int8:tensor:mse",
    "int8:channel:minmax",
    "int8:channel:mse",
    "int8:group128:minmax",
    "int8:group128:mse",
    "e4m3:tensor:minmax",
    "e5m2:tensor:minmax",
];

fn compare(model: &str, schemes: &[&str], extra: &[&str]) -> Value {
    let mut args = vec!["report", model, "--compare"];
    args.extend_from_slice(schemes);
    args.extend_from_slice(extra);
    stdout_json(&quantscope(&args))
}

/// Every calibration, both mappings, every granularity, FP8 and the microscaled
/// formats, with schemes that share a range across widths (p99.9 under INT4 and
/// INT8) and a group size (INT4 / INT8 group-128).
const VARIED: [&str; 16] = [
    "int4:tensor:p99.9",
    "int8:tensor:p99.9",
    "int8:tensor:entropy:asym",
    "e5m2:tensor:mse",
    "int4:channel:hqq:asym",
    "int8:channel:p99.9",
    "e4m3:channel:entropy",
    "int8:channel:ratio0.9",
    "int4:group64:mse:asym",
    "int8:group128:p99.9:asym",
    "int4:group128:entropy",
    "int4:group128:minmax",
    "int8:group128:minmax",
    "e4m3:block128:minmax",
    "nvfp4",
    "mxfp4",
];

fn compare_agrees_with_reports(model: &str) {
    compare_set_agrees_with_reports(model, &SCHEMES);
}

fn compare_set_agrees_with_reports(model: &str, schemes: &[&str]) {
    let doc = compare(model, schemes, &[]);
    let rows = doc["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert_eq!(doc["schemes"].as_array().unwrap().len(), schemes.len());
    for (k, s) in schemes.iter().enumerate() {
        let single = stdout_json(&quantscope(&["report", model, "--scheme", s]));
        for row in rows {
            let name = row["name"].as_str().unwrap();
            let rec = single["tensors"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap();
            assert_eq!(row["cells"][k]["metrics"], rec["metrics"], "{name} under {s}");
        }
    }
}

#[test]
fn compare_equals_single_scheme_reports_on_the_teaching_sample() {
    compare_agrees_with_reports(teaching().to_str().unwrap());
}

#[test]
fn a_varied_compare_equals_single_scheme_reports_on_the_teaching_sample() {
    compare_set_agrees_with_reports(teaching().to_str().unwrap(), &VARIED);
}

#[test]
fn compare_equals_single_scheme_reports_on_minilm() {
    let Some(dir) = minilm() else { return };
    let doc = compare(dir.to_str().unwrap(), &SCHEMES, &[]);
    // The 36 encoder Linear weights and the pooler: no embeddings, no 1-D.
    assert_eq!(doc["rows"].as_array().unwrap().len(), 37);
    compare_agrees_with_reports(dir.to_str().unwrap());
}

#[test]
fn the_matrix_csv_and_json_parse() {
    let t = teaching();
    let m = t.to_str().unwrap();
    let o =
        quantscope(&["report", m, "--compare", "int8:channel:minmax", "e4m3:tensor:mse", "--output", "csv"]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines[0], ["name", "params", "int8:channel:minmax", "e4m3:tensor:mse"]);
    assert_eq!(lines.len(), 1 + 9, "header + the 9 default layers");
    for l in &lines[1..] {
        assert_eq!(l.len(), 4);
        assert!(l[1].parse::<u64>().is_ok());
        for v in &l[2..] {
            assert!(*v == "inf" || v.parse::<f64>().is_ok_and(f64::is_finite), "{v}");
        }
    }
    let doc = compare(m, &["int8:channel0:minmax", "int8:channel3:minmax"], &["--tensors", "conv3x3"]);
    let cells = doc["rows"][0]["cells"].as_array().unwrap();
    assert!(cells[0]["metrics"].is_object());
    assert!(cells[1]["metrics"].is_object(), "axis 3 exists on the 4-D conv");
    let doc = compare(m, &["int8:channel2:minmax"], &["--tensors", "gaussian.weight"]);
    assert!(doc["rows"][0]["cells"][0]["error"].as_str().unwrap().contains("axis 2"));
    assert!(quantscope(&["report", m, "--compare", "int9:tensor"]).status.code() == Some(2));
}

#[test]
fn totals_match_a_hand_computation_on_the_teaching_sample() {
    let t = teaching();
    let m = t.to_str().unwrap();
    let doc = compare(m, &["int8:channel:minmax", "int4:group32:minmax:asym", "e4m3:tensor:minmax"], &[]);
    // The 9 default layers: (name, rows, cols, bytes per scale: F32 4, BF16/F16 2).
    let layers = [
        ("constant.weight", 64, 64, 4),
        ("conv3x3.weight", 64, 32 * 9, 4),
        ("gaussian.weight", 256, 512, 4),
        ("heavy_tailed.weight", 256, 512, 4),
        ("outlier_channels.weight", 256, 512, 4),
        ("skewed_positive.weight", 128, 256, 4),
        ("with_nan.weight", 64, 64, 4),
        ("bf16_linear.weight", 256, 256, 2),
        ("f16_linear.weight", 256, 256, 2),
    ];
    // Not swept: gaussian.bias (256 F32) and position_ids (512 I64).
    let others = 256 * 4 + 512 * 8;
    let params_total: u64 = layers.iter().map(|l| (l.1 * l.2) as u64).sum::<u64>() + 256 + 512;
    // INT is pack-quantized (FORMATS.md §2): codes bit-packed in I32 words per
    // row (every width here fills whole words), plus `weight_shape` as I64 per
    // dimension (conv3x3 is 4-D).
    let shape_bytes = |name: &str| if name == "conv3x3.weight" { 32 } else { 16 };
    // int8 per-channel: one byte per weight, one scale per row.
    let int8: u64 = layers.iter().map(|&(n, r, c, sb)| (r * c + r * sb + shape_bytes(n)) as u64).sum();
    // int4 groups of 32, asymmetric: half a byte per weight, a scale per group, and
    // the zero points packed down each column of groups (half a byte each).
    let int4: u64 = layers
        .iter()
        .map(|&(n, r, c, sb)| (r * c / 2 + r * (c / 32) * sb + r / 2 * (c / 32) + shape_bytes(n)) as u64)
        .sum();
    // e4m3 per-tensor: one byte per weight, one scale.
    let e4m3: u64 = layers.iter().map(|&(_, r, c, sb)| (r * c + sb) as u64).sum();
    let totals = doc["totals"].as_array().unwrap();
    for (k, (want, scheme)) in
        [(int8, "int8:channel:minmax"), (int4, "int4:group32:minmax:asym"), (e4m3, "e4m3:tensor:minmax")]
            .into_iter()
            .enumerate()
    {
        let tot = &totals[k];
        assert_eq!(tot["scheme"], scheme);
        assert_eq!(tot["quantized_bytes"], want, "{scheme}");
        assert_eq!(tot["model_bytes"], want + others, "{scheme}");
        assert_eq!(tot["params_total"], params_total);
        assert_eq!(tot["params_quantized"], params_total - 256 - 512);
        // Params-weighted mean and worst, from the single-scheme report.
        let single = stdout_json(&quantscope(&["report", m, "--scheme", scheme]));
        let (mut num, mut den, mut worst) = (0.0, 0.0, f64::INFINITY);
        for &(name, r, c, _) in &layers {
            let rec = single["tensors"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap();
            if let Some(db) = rec["metrics"]["sqnr_db"].as_f64() {
                num += db * (r * c) as f64;
                den += (r * c) as f64;
                worst = worst.min(db);
            }
        }
        let mean = tot["mean_layer_sqnr_db"].as_f64().unwrap();
        assert!((mean - num / den).abs() < 1e-9, "{scheme}: {mean} vs {}", num / den);
        assert_eq!(tot["worst_sqnr_db"].as_f64().unwrap(), worst);
    }
}

#[test]
fn sort_and_top_order_the_rows() {
    let t = teaching();
    let m = t.to_str().unwrap();
    let doc = stdout_json(&quantscope(&["report", m, "--top", "3"]));
    let dbs: Vec<f64> = doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["metrics"]["sqnr_db"].as_f64().unwrap())
        .collect();
    assert_eq!(dbs.len(), 3);
    assert!(dbs.windows(2).all(|w| w[0] <= w[1]), "{dbs:?}");
    let all = stdout_json(&quantscope(&["report", m]));
    let min = all["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["metrics"]["sqnr_db"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(dbs[0], min, "the worst layer comes first");
    let doc = stdout_json(&quantscope(&["report", m, "--sort", "mse"]));
    let mses: Vec<f64> =
        doc["tensors"].as_array().unwrap().iter().filter_map(|t| t["metrics"]["mse"].as_f64()).collect();
    assert!(mses.windows(2).all(|w| w[0] >= w[1]), "{mses:?}");
    let doc = stdout_json(&quantscope(&["report", m, "--sort", "name"]));
    let names: Vec<&str> =
        doc["tensors"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");
    let doc = compare(m, &["int8:tensor:minmax", "int8:channel:minmax"], &["--top", "2"]);
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "outlier_channels.weight", "per-tensor hurts the outlier layer most");
}
