//! What the app does before its first histogram, timed: open the checkpoint
//! (mmap + headers), pick the first layer a save would quantize, decode it and
//! analyze it with the GUI's histogram options. Prints each step in ms.
//!
//! `cargo run --release -p quantscope-engine --example first_histogram -- MODEL`

use std::time::Instant;

use quantscope_engine::export::default_exclusion;
use quantscope_engine::{Checkpoint, Options, Scheme, analyze};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: first_histogram MODEL");
        std::process::exit(2);
    };
    let t0 = Instant::now();
    let ckpt = Checkpoint::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let opened = t0.elapsed();
    let first = ckpt
        .tensors()
        .iter()
        .filter(|t| default_exclusion(t).is_none())
        .min_by(|a, b| a.name.cmp(&b.name))
        .expect("a quantizable layer");
    let values = ckpt.load_f32(&first.name).unwrap_or_else(|e| panic!("{e}"));
    let decoded = t0.elapsed();
    let opts = Options { weight_bins: 400, error_bins: 120, ..Options::default() };
    let r = analyze(&values, &first.shape, &Scheme::default(), &opts).unwrap_or_else(|e| panic!("{e}"));
    let done = t0.elapsed();
    println!(
        "{} tensors, {:.2} GB: open {:.1} ms, decode {} {:?} {:.1} ms, analyze {:.1} ms, first histogram at {:.1} ms (SQNR {:.2} dB)",
        ckpt.tensors().len(),
        ckpt.size_bytes() as f64 / 1e9,
        opened.as_secs_f64() * 1e3,
        first.name,
        first.shape,
        decoded.saturating_sub(opened).as_secs_f64() * 1e3,
        done.saturating_sub(decoded).as_secs_f64() * 1e3,
        done.as_secs_f64() * 1e3,
        r.metrics.sqnr_db
    );
}
