//! Replays the fuzzer's kept inputs (`fuzz/regressions/checkpoint/`, the
//! minimized corpus of `cargo fuzz run checkpoint`) through the same path the
//! fuzz target drives: header parsing, catalogue, decoding, small analyses.
//! A panic on any input fails the test; the valid seeds must still decode.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use quantscope_engine::untrusted::{exercise_untrusted, exercise_untrusted_gguf};

#[test]
fn every_kept_fuzz_input_runs_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/checkpoint");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() > 100, "only {} inputs in {}", files.len(), dir.display());
    let mut decoded_somewhere = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| exercise_untrusted(&bytes));
        let n = r.unwrap_or_else(|_| panic!("{} panicked", f.display()));
        decoded_somewhere += usize::from(n > 0);
    }
    // The corpus grew from valid seeds: many inputs still parse and decode.
    assert!(decoded_somewhere > 10, "{decoded_somewhere}");
}

/// The GGUF corpus (`fuzz/regressions/gguf/`: the fixtures, truncations and
/// byte flips in their headers) through `cargo fuzz run gguf`'s path.
#[test]
fn every_kept_gguf_input_runs_without_panicking() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/gguf");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 100, "only {} inputs in {}", files.len(), dir.display());
    let mut decoded_somewhere = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| exercise_untrusted_gguf(&bytes));
        decoded_somewhere += usize::from(r.unwrap_or_else(|_| panic!("{} panicked", f.display())) > 0);
    }
    assert!(decoded_somewhere >= 2, "the seeds decode: {decoded_somewhere}");
}
