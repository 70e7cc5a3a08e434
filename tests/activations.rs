//! `quantscope activations` (issue 16): a capture saved once is used by `report
//! --activations` exactly as a fresh run over `--inputs`, the sweep (`--compare`)
//! gains the output SQNR, and bad or foreign files are one-line errors.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::{quantscope, stdout_json};

#[test]
fn a_saved_capture_reports_as_a_fresh_run_and_the_sweep_gains_output_sqnr() {
    let Some(dir) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let inputs = common::builtin_inputs(tmp.path(), 6);
    let file = tmp.path().join("acts.safetensors");
    let (d, i, f) = (dir.to_str().unwrap(), inputs.to_str().unwrap(), file.to_str().unwrap());
    let run = quantscope(&["activations", d, "--inputs", i, "--max-samples", "5", "-o", f]);
    let line = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(line.contains("36 Linear layers") && line.contains("5 samples"), "{line}");
    let re = r"encoder\.layer\.1\..*";
    let fresh =
        stdout_json(&quantscope(&["report", d, "--inputs", i, "--max-samples", "5", "--tensors", re]));
    let saved = stdout_json(&quantscope(&["report", d, "--activations", f, "--tensors", re]));
    assert_eq!(fresh["tensors"], saved["tensors"], "same output SQNR, to the last digit");
    let with_output =
        saved["tensors"].as_array().unwrap().iter().filter(|t| t["metrics"]["output_sqnr_db"].is_f64());
    assert_eq!(with_output.count(), 6);

    let compare =
        ["report", d, "--activations", f, "--tensors", re, "--compare", "int8:channel", "int4:group128"];
    let doc = stdout_json(&quantscope(&compare));
    let mut linear = 0;
    for row in doc["rows"].as_array().unwrap() {
        let cells = row["cells"].as_array().unwrap();
        let out: Vec<f64> = cells.iter().filter_map(|c| c["metrics"]["output_sqnr_db"].as_f64()).collect();
        if row["name"].as_str().unwrap().contains("LayerNorm")
            || row["name"].as_str().unwrap().ends_with("bias")
        {
            assert!(out.is_empty(), "{}: not a Linear weight", row["name"]);
            continue;
        }
        linear += 1;
        // INT4 hurts the layer's output more than INT8, and the sweep's number is report's.
        assert!(out[0] > out[1] + 10.0, "{}: {out:?}", row["name"]);
        let one = saved["tensors"].as_array().unwrap().iter().find(|t| t["name"] == row["name"]).unwrap();
        assert_eq!(one["metrics"]["output_sqnr_db"].as_f64(), Some(out[0]), "{}", row["name"]);
    }
    assert_eq!(linear, 6);
    let csv = quantscope(&[&compare[..], &["--output", "csv"]].concat());
    let csv = String::from_utf8(csv.stdout).unwrap();
    let head = csv.lines().next().unwrap();
    assert!(head.ends_with(",output:int8:channel:minmax,output:int4:group128:minmax"), "{head}");
    let dense = csv.lines().find(|l| l.starts_with("encoder.layer.1.output.dense.weight,")).unwrap();
    assert_eq!(dense.split(',').count(), 6, "{dense}");
    assert!(dense.split(',').all(|f| !f.is_empty()), "{dense}");
}

#[test]
fn bad_or_foreign_activation_files_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let teaching = common::teaching();
    let t = teaching.to_str().unwrap();
    let garbage = tmp.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"\x10\0\0\0\0\0\0\0{not json}      ").unwrap();
    // A model file is a valid safetensors file but not a capture.
    for (file, needle) in [
        (garbage.as_path(), "garbage.safetensors"),
        (teaching.as_path(), "not a quantscope activations file"),
    ] {
        let out = quantscope(&["report", t, "--activations", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(needle) && err.trim().lines().count() == 1 && !err.contains("panicked"),
            "{err}"
        );
    }
    let Some(dir) = common::minilm() else { return };
    let file = tmp.path().join("minilm.safetensors");
    let run = quantscope(&[
        "activations",
        dir.to_str().unwrap(),
        "--inputs",
        "builtin",
        "--max-samples",
        "2",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let out = quantscope(&["report", t, "--activations", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("minilm.safetensors")
            && err.contains("tensor 'encoder.layer.0")
            && err.trim().lines().count() == 1,
        "{err}"
    );
}
