//! Helpers shared by the end-to-end tests: paths to the sample models and a
//! runner for the built binary.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn teaching() -> PathBuf {
    repo_root().join("sample-models/teaching.safetensors")
}

/// The MiniLM folder, when `sample-models/fetch-minilm.sh` has fetched it. CI
/// sets `QUANTSCOPE_REQUIRE_MINILM`, so a missing model fails there instead of
/// skipping.
pub fn minilm() -> Option<PathBuf> {
    let dir = repo_root().join("sample-models/minilm");
    let found = dir.join("model.safetensors").is_file();
    assert!(
        found || std::env::var_os("QUANTSCOPE_REQUIRE_MINILM").is_none(),
        "MiniLM is required here: run sample-models/fetch-minilm.sh"
    );
    found.then_some(dir)
}

pub fn quantscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantscope")).args(args).output().expect("run quantscope")
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// An F32 tensor ready to write.
/// `dir/inputs.txt` holding the first `n` built-in calibration sentences, one per line.
pub fn builtin_inputs(dir: &std::path::Path, n: usize) -> PathBuf {
    let inputs = dir.join("inputs.txt");
    let text = quantscope_engine::run::inputs::samples_of(quantscope_engine::run::BUILTIN_TEXT, n).join("\n");
    std::fs::write(&inputs, text).unwrap();
    inputs
}

pub fn f32_tensor(shape: Vec<usize>, values: &[f32]) -> quantscope_engine::write::OwnedTensor {
    quantscope_engine::write::OwnedTensor {
        dtype: quantscope_engine::Dtype::F32,
        shape,
        data: values.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// A model of degenerate tensors: all-NaN, all-zero, constant, one element,
/// empty (no rows, no columns), 0-D, ±f32::MAX, ±Inf.
pub fn degenerate_model(path: &std::path::Path) {
    let mut extreme = vec![f32::MAX, -f32::MAX, 0.0, 1.0];
    extreme.resize(64, 0.5);
    let mut inf = vec![f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    inf.resize(64, -0.25);
    let tensors = vec![
        ("all_nan.weight".to_string(), f32_tensor(vec![4, 16], &[f32::NAN; 64])),
        ("all_zero.weight".to_string(), f32_tensor(vec![4, 16], &[0.0; 64])),
        ("constant.weight".to_string(), f32_tensor(vec![4, 16], &[0.37; 64])),
        ("one.weight".to_string(), f32_tensor(vec![1, 1], &[0.7])),
        ("empty_rows.weight".to_string(), f32_tensor(vec![0, 16], &[])),
        ("empty_cols.weight".to_string(), f32_tensor(vec![16, 0], &[])),
        ("scalar".to_string(), f32_tensor(vec![], &[-0.7])),
        ("extreme.weight".to_string(), f32_tensor(vec![4, 16], &extreme)),
        ("infinite.weight".to_string(), f32_tensor(vec![4, 16], &inf)),
    ];
    quantscope_engine::write::write_safetensors(path, &tensors, None).unwrap();
}

/// Steps the app's frames (its worker runs in real time) until `done` holds.
pub fn wait_until(
    h: &mut egui_kittest::Harness<'static, quantscope::gui::QuantscopeApp>,
    what: &str,
    done: impl Fn(&quantscope::gui::QuantscopeApp) -> bool,
) {
    for _ in 0..3000 {
        h.run_steps(1);
        if done(h.state()) {
            h.run_steps(2);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}
