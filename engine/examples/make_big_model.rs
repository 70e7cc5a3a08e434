//! Writes a synthetic sharded BF16 checkpoint shaped like an 8B-parameter
//! decoder (Llama-3-8B's shapes: hidden 4096, MLP 14336, GQA k/v 1024, a 128256 ×
//! 4096 embedding), streamed shard by shard so it needs little memory. With the
//! default 30 layers it is ~14 GB. For the speed measurements; never committed.
//!
//! `cargo run --release -p quantscope-engine --example make_big_model -- OUT_DIR [LAYERS=30]`

use std::io::{BufWriter, Write};
use std::path::Path;

use half::bf16;
use serde_json::json;

const SHARD_BYTES: u64 = 5 << 30;

fn tensors(layers: usize) -> Vec<(String, Vec<usize>)> {
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![128_256, 4096])];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![4096, 4096]),
            ("self_attn.k_proj.weight", vec![1024, 4096]),
            ("self_attn.v_proj.weight", vec![1024, 4096]),
            ("self_attn.o_proj.weight", vec![4096, 4096]),
            ("mlp.gate_proj.weight", vec![14336, 4096]),
            ("mlp.up_proj.weight", vec![14336, 4096]),
            ("mlp.down_proj.weight", vec![4096, 14336]),
            ("input_layernorm.weight", vec![4096]),
            ("post_attention_layernorm.weight", vec![4096]),
        ] {
            t.push((format!("{p}.{name}"), shape));
        }
    }
    t.push(("model.norm.weight".to_string(), vec![4096]));
    t
}

/// Weight-like BF16 bytes for `n` elements (xorshift; a sum of uniforms).
fn fill(n: usize, seed: u64, out: &mut Vec<u8>) {
    out.clear();
    let mut s = seed | 1;
    for _ in 0..n {
        let mut g = 0f32;
        for _ in 0..2 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            g += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        out.extend_from_slice(&bf16::from_f32(g * 0.03).to_le_bytes());
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: make_big_model OUT_DIR [LAYERS=30]");
        std::process::exit(2);
    };
    let layers = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(30);
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir)?;
    // Cut the list into shards of about SHARD_BYTES.
    let mut shards: Vec<Vec<(String, Vec<usize>)>> = vec![Vec::new()];
    let mut size = 0u64;
    for (name, shape) in tensors(layers) {
        let bytes = shape.iter().product::<usize>() as u64 * 2;
        if size + bytes > SHARD_BYTES && !shards.last().is_some_and(Vec::is_empty) {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        if let Some(s) = shards.last_mut() {
            s.push((name, shape));
        }
    }
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    let mut buf = Vec::new();
    for (k, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", k + 1);
        let mut header = serde_json::Map::new();
        let mut off = 0u64;
        for (name, shape) in shard {
            let len = shape.iter().product::<usize>() as u64 * 2;
            header.insert(
                name.clone(),
                json!({"dtype": "BF16", "shape": shape, "data_offsets": [off, off + len]}),
            );
            weight_map.insert(name.clone(), json!(file));
            off += len;
        }
        total += off;
        let mut head = serde_json::to_vec(&header)?;
        head.resize(head.len().next_multiple_of(8), b' ');
        let mut w = BufWriter::with_capacity(8 << 20, std::fs::File::create(dir.join(&file))?);
        w.write_all(&(head.len() as u64).to_le_bytes())?;
        w.write_all(&head)?;
        for (i, (_, shape)) in shard.iter().enumerate() {
            fill(shape.iter().product(), (k * 1000 + i) as u64, &mut buf);
            w.write_all(&buf)?;
        }
        w.flush()?;
        println!("wrote {file} ({:.2} GB)", off as f64 / 1e9);
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), serde_json::to_vec_pretty(&index)?)?;
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama", "hidden_size": 4096}"#)?;
    println!("{} shards, {:.2} GB of tensors in {}", n, total as f64 / 1e9, dir.display());
    Ok(())
}
