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
