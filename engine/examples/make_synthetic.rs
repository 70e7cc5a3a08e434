//! Writes a synthetic checkpoint for speed measurements: `layers` tensors of
//! `rows × cols` weight-like values (`layers.N.weight`) in BF16, F16 or F32.
//! Not committed; regenerate as needed.
//!
//! `cargo run --release -p quantscope-engine --example make_synthetic -- OUT [ROWS] [COLS] [LAYERS] [DTYPE]`

use quantscope_engine::Dtype;
use quantscope_engine::decode::encode;
use quantscope_engine::write::{OwnedTensor, write_safetensors};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: make_synthetic OUT [ROWS=4096] [COLS=4096] [LAYERS=1] [DTYPE=bf16]");
        std::process::exit(2);
    };
    let num = |i: usize, d: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (rows, cols, layers) = (num(1, 4096), num(2, 4096), num(3, 1));
    let dtype = match args.get(4).map_or("bf16", String::as_str) {
        "f32" => Dtype::F32,
        "f16" => Dtype::F16,
        _ => Dtype::BF16,
    };
    let mut rng = StdRng::seed_from_u64(7);
    let tensors: Vec<(String, OwnedTensor)> = (0..layers)
        .map(|l| {
            // A sum of uniforms is close enough to Gaussian; a few wide rows add outliers.
            let values: Vec<f32> = (0..rows * cols)
                .map(|i| {
                    let g: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * 0.02;
                    if (i / cols) % 97 == 0 { g * 20.0 } else { g }
                })
                .collect();
            let data = encode(dtype, &values).expect("float dtype");
            (format!("layers.{l}.weight"), OwnedTensor { dtype, shape: vec![rows, cols], data })
        })
        .collect();
    write_safetensors(std::path::Path::new(out), &tensors, None).expect("write");
    println!("wrote {out}: {layers} × [{rows}, {cols}] {dtype:?}");
}
