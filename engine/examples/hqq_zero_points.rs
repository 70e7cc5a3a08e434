//! HQQ's per-slice zero points for every floating-point tensor of a safetensors
//! file, as JSON, for `tests/python/hqq_reference.py` to compare with the
//! reference implementation: `{ tensor: [{scale, zero_point, zero_real,
//! zero_rounded, zero_start, iterations, sse_real_zero, sse_rounded_zero,
//! sse_saved}, ...] }`. `scale` and `zero_point` are the saved parameters (Z an
//! integer near `zero_real`, S refit for it); `zero_rounded` is `zero_real`
//! rounded as the reference's `round_zero`.
//!
//! `cargo run -p quantscope-engine --example hqq_zero_points -- FILE int4:group64:hqq:asym`

use quantscope_engine::calibrate::hqq::hqq_tensor;
use quantscope_engine::{Checkpoint, Scheme};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(scheme)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: hqq_zero_points FILE SCHEME");
        std::process::exit(2);
    };
    let scheme: Scheme = scheme.parse().unwrap_or_else(|e| panic!("{e}"));
    let ckpt = Checkpoint::open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut out = serde_json::Map::new();
    for t in ckpt.tensors() {
        // Integer tensors (e.g. position ids) are not quantized: skipped.
        let Ok(values) = ckpt.load_f32(&t.name) else { continue };
        let slices = hqq_tensor(&values, &t.shape, &scheme).unwrap_or_else(|e| panic!("{}: {e}", t.name));
        let rows: Vec<serde_json::Value> = slices
            .iter()
            .map(|s| {
                serde_json::json!({
                    "scale": s.params.scale,
                    "zero_point": s.params.zero_point,
                    "zero_real": s.zero_real,
                    "zero_rounded": s.zero_rounded,
                    "zero_start": s.zero_start,
                    "iterations": s.iterations,
                    "sse_real_zero": s.sse_real_zero,
                    "sse_rounded_zero": s.sse_rounded_zero,
                    "sse_saved": s.sse_saved,
                })
            })
            .collect();
        out.insert(t.name.clone(), serde_json::Value::Array(rows));
    }
    println!("{}", serde_json::Value::Object(out));
}
