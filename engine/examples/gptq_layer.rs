//! GPTQ of one layer with a Hessian supplied from outside, for
//! `tests/python/gptq_reference.py` to compare with llm-compressor's own
//! `quantize_weight` on the same H. Reads H as raw little-endian f32
//! (`cols × cols`, row-major), writes R′ the same way (`[rows, cols]`), and
//! prints `{loss, fallback, scales, zero_points}` (one entry per slice).
//!
//! `cargo run -p quantscope-engine --example gptq_layer -- MODEL TENSOR H.f32 SCHEME OUT.f32`

use quantscope_engine::gptq::{GptqOptions, gptq};
use quantscope_engine::{Checkpoint, Options, Scheme};

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, tensor, hessian, scheme, out] = args.as_slice() else {
        eprintln!("usage: gptq_layer MODEL TENSOR H.f32 SCHEME OUT.f32");
        std::process::exit(2);
    };
    let scheme: Scheme = scheme.parse().unwrap_or_else(|e| panic!("{e}"));
    let ckpt = Checkpoint::open(model).unwrap_or_else(|e| panic!("{e}"));
    let info = ckpt.tensor(tensor).unwrap_or_else(|e| panic!("{e}"));
    let values = ckpt.load_f32(tensor).unwrap_or_else(|e| panic!("{e}"));
    let h = f32s(&std::fs::read(hessian).unwrap_or_else(|e| panic!("{hessian}: {e}")));
    let g = gptq(&values, &info.shape, &scheme, &h, &GptqOptions::default(), &Options::default())
        .unwrap_or_else(|e| panic!("{tensor}: {e}"));
    let bytes: Vec<u8> = g.dequantized.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out, bytes).unwrap_or_else(|e| panic!("{out}: {e}"));
    let scales: Vec<f32> = g.params.iter().map(|p| p.scale).collect();
    let zero_points: Vec<i32> = g.params.iter().map(|p| p.zero_point).collect();
    let json = serde_json::json!({ "loss": g.loss, "fallback": g.fallback, "scales": scales, "zero_points": zero_points });
    println!("{json}");
}
