//! Quantizes raw values to a ggml type with `ggml::quant::quantize`, for
//! `tests/python/gguf_quant_reference.py` to compare with ggml's own bytes.
//!
//! `gguf_quantize TYPE N_PER_ROW INPUT OUTPUT [IMATRIX]`: INPUT (and IMATRIX,
//! one weight per column) are little-endian f32; OUTPUT gets the blocks as
//! `ggml_quantize_chunk` writes them. `--time` after the arguments prints the
//! quantization time on stderr.

use std::process::exit;
use std::time::Instant;

use quantscope_engine::ggml::quant::quantize;
use quantscope_engine::ggml::types::TYPES;

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    if !bytes.len().is_multiple_of(4) {
        fail(&format!("{path}: {} bytes are not whole f32 values", bytes.len()));
    }
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn fail(msg: &str) -> ! {
    eprintln!("gguf_quantize: {msg}");
    exit(1)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let time = args.iter().position(|a| a == "--time").map(|i| args.remove(i)).is_some();
    if !(4..=5).contains(&args.len()) {
        eprintln!("usage: gguf_quantize TYPE N_PER_ROW INPUT OUTPUT [IMATRIX] [--time]");
        exit(2);
    }
    let ty = TYPES
        .iter()
        .copied()
        .find(|t| t.name.eq_ignore_ascii_case(&args[0]))
        .unwrap_or_else(|| fail(&format!("no ggml type named {}", args[0])));
    let n_per_row: usize = args[1].parse().unwrap_or_else(|_| fail(&format!("bad N_PER_ROW {}", args[1])));
    let src = read_f32(&args[2]);
    let imatrix = args.get(4).map(|p| read_f32(p));
    let t0 = Instant::now();
    let bytes = quantize(ty, &src, n_per_row, imatrix.as_deref()).unwrap_or_else(|e| fail(&e.to_string()));
    if time {
        eprintln!("{} {} values: {:.1} ms", ty.name, src.len(), t0.elapsed().as_secs_f64() * 1e3);
    }
    std::fs::write(&args[3], bytes).unwrap_or_else(|e| fail(&format!("{}: {e}", args[3])));
}
