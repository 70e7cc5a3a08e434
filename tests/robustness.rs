//! Bad input never crashes and nothing is lost: the malformed-file corpus through
//! the CLI, degenerate tensors through report and export, a killed save.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;
mod corpus;

use common::quantscope;

#[test]
fn every_corpus_file_gives_exit_1_and_one_line_naming_the_file_and_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = corpus::write_corpus(tmp.path());
    assert!(cases.len() >= 30, "{}", cases.len());
    let mut failures = Vec::new();
    for (case, path) in &cases {
        let o = quantscope(&["report", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        println!("{:32} {err}", case.name);
        let ok = o.status.code() == Some(1)
            && err.lines().count() == 1
            && err.contains(path.file_name().unwrap().to_str().unwrap())
            && case.expect.iter().all(|e| err.contains(e));
        if !ok {
            failures.push(format!("{}: exit {:?}: {err}", case.name, o.status.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[test]
fn a_file_without_read_permission_is_refused_in_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = tmp.path().join("locked.safetensors");
    std::fs::copy(common::teaching(), &file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    let o = if is_root() {
        // Root reads anything: run the binary as `nobody` (setpriv, util-linux).
        let bin = tmp.path().join("quantscope");
        std::fs::copy(env!("CARGO_BIN_EXE_quantscope"), &bin).unwrap();
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["report", file.to_str().unwrap()])
            .output()
            .unwrap()
    } else {
        quantscope(&["report", file.to_str().unwrap()])
    };
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("locked.safetensors") && err.contains("Permission denied"), "{err}");
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn degenerate_tensors_report_defined_numbers_and_export_under_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("degenerate.safetensors");
    common::degenerate_model(&model);
    let m = model.to_str().unwrap();
    for scheme in
        ["int8:channel:minmax", "int4:group8:mse:asym", "e4m3:tensor:entropy", "e5m2:channel:p99.9:asym"]
    {
        let doc = common::stdout_json(&quantscope(&["report", m, "--scheme", scheme]));
        for t in doc["tensors"].as_array().unwrap() {
            assert_eq!(t["quantized"], true, "{scheme}: {t}");
            // serde_json writes a NaN as null, so every other metric must be a number.
            for (k, v) in t["metrics"].as_object().unwrap() {
                assert!(v.is_number() || k == "sqnr_db", "{scheme}: {}: {k} = {v}", t["name"]);
            }
            let sqnr = &t["metrics"]["sqnr_db"];
            let lossless = ["all_nan.weight", "all_zero.weight", "empty_rows.weight", "empty_cols.weight"];
            if lossless.contains(&t["name"].as_str().unwrap()) {
                assert!(sqnr.is_null(), "{scheme}: {t}: SQNR = +inf is null");
            }
        }
        // Export: empty tensors are kept, the rest quantized and verified.
        let out = tmp.path().join(scheme.replace(':', "_"));
        let o = quantscope(&["quantize", m, out.to_str().unwrap(), "--scheme", scheme, "--json"]);
        let s = common::stdout_json(&o);
        // A group size that does not divide the input dimension (one.weight has
        // one column) cannot be loaded: that layer is left unquantized and listed.
        let quantized = if scheme.contains("group8") { 5 } else { 6 };
        assert_eq!(s["tensors_quantized"], quantized, "{scheme}: {s}");
        assert_eq!(s["verified_tensors"], quantized, "{scheme}");
        let notes = s["notes"].to_string();
        assert_eq!(notes.contains("one.weight: group size 8 does not divide"), quantized == 5, "{notes}");
        assert!(notes.contains("all_nan.weight: 64 NaN/Inf"), "{scheme}: {notes}");
    }
}

#[test]
fn killing_a_save_midway_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("big.safetensors");
    // 24 × 1M-element F32 layers: long enough to be caught in the middle.
    let layer: Vec<f32> = (0..1_048_576u32).map(|i| (i % 1000) as f32 * 1e-3 - 0.5).collect();
    let tensors: Vec<(String, quantscope_engine::write::OwnedTensor)> = (0..24)
        .map(|i| (format!("layers.{i}.weight"), common::f32_tensor(vec![1024, 1024], &layer)))
        .collect();
    quantscope_engine::write::write_safetensors(&model, &tensors, None).unwrap();
    let out = tmp.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args(["quantize", model.to_str().unwrap(), out.to_str().unwrap(), "--scheme", "int8:channel:mse"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the temp folder holds part of the model, then kill.
    let tmp_dir = quantscope_engine::export::temp_dir_for(&out)
        .with_file_name(format!(".out.quantscope-tmp-{}", child.id()));
    let started = std::time::Instant::now();
    while !std::fs::metadata(tmp_dir.join("model.safetensors")).is_ok_and(|m| m.len() > 1 << 20) {
        assert!(started.elapsed().as_secs() < 60, "the save never started writing");
        assert!(child.try_wait().unwrap().is_none(), "the save finished before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(!out.exists(), "a killed save must leave no OUT");
    // The next save of the same OUT works and is complete.
    let o = quantscope(&["quantize", model.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Each int8 layer is pack-quantized: weight_packed, weight_scale, weight_shape.
    assert_eq!(quantscope_engine::Checkpoint::open(&out).unwrap().tensors().len(), 72);
}
