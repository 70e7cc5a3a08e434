//! Writes a runnable 1B-parameter Llama-shaped checkpoint with random weights, for
//! the speed figures of `quantscope activations` / `sensitivity` on a model of that
//! size (BENCHMARKS.md, "Running the model"). Llama-3.2-1B's shapes (hidden 2048,
//! MLP 8192, 16 layers, 32 query / 8 key-value heads of 64, tied embeddings) with
//! MiniLM's tokenizer and vocabulary (30522), so 1.04 B parameters, 2.1 GB in
//! BF16. Never committed: delete OUT_DIR after measuring.
//!
//! `cargo run --release -p quantscope-engine --example make_llama_1b -- OUT_DIR [TOKENIZER_JSON]`

use std::io::{BufWriter, Write};
use std::path::Path;

use half::bf16;
use serde_json::json;

const HIDDEN: usize = 2048;
const MLP: usize = 8192;
const LAYERS: usize = 16;
const HEADS: usize = 32;
const KV_HEADS: usize = 8;
const HEAD_DIM: usize = 64;
const VOCAB: usize = 30522;

fn tensors() -> Vec<(String, Vec<usize>)> {
    let kv = KV_HEADS * HEAD_DIM;
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![VOCAB, HIDDEN])];
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("input_layernorm.weight", vec![HIDDEN]),
            ("self_attn.q_proj.weight", vec![HIDDEN, HIDDEN]),
            ("self_attn.k_proj.weight", vec![kv, HIDDEN]),
            ("self_attn.v_proj.weight", vec![kv, HIDDEN]),
            ("self_attn.o_proj.weight", vec![HIDDEN, HIDDEN]),
            ("post_attention_layernorm.weight", vec![HIDDEN]),
            ("mlp.gate_proj.weight", vec![MLP, HIDDEN]),
            ("mlp.up_proj.weight", vec![MLP, HIDDEN]),
            ("mlp.down_proj.weight", vec![HIDDEN, MLP]),
        ] {
            t.push((format!("{p}.{name}"), shape));
        }
    }
    t.push(("model.norm.weight".to_string(), vec![HIDDEN]));
    t
}

/// BF16 bytes of `n` elements: 1 for norms, else ~N(0, 0.02²) as transformers
/// initialises (xorshift; a sum of four uniforms).
fn fill(name: &str, n: usize, seed: u64, out: &mut impl Write) -> std::io::Result<()> {
    let norm = name.contains("norm");
    let mut s = seed | 1;
    let mut buf = Vec::with_capacity(1 << 20);
    for _ in 0..n {
        let v = if norm {
            1.0
        } else {
            let mut g = 0f32;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                g += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            // The sum of four U(−½, ½) has variance 1/3.
            g * 0.02 * 3f32.sqrt()
        };
        buf.extend_from_slice(&bf16::from_f32(v).to_le_bytes());
        if buf.len() >= 1 << 20 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: make_llama_1b OUT_DIR [TOKENIZER_JSON]");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir)?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tokenizer =
        args.get(1).map_or_else(|| manifest.join("../sample-models/minilm/tokenizer.json"), Into::into);
    std::fs::copy(&tokenizer, dir.join("tokenizer.json"))?;
    let list = tensors();
    // The header first (offsets follow from the shapes), then the data in order.
    let mut header = serde_json::Map::new();
    let mut at = 0usize;
    for (name, shape) in &list {
        let bytes = shape.iter().product::<usize>() * 2;
        header
            .insert(name.clone(), json!({"dtype": "BF16", "shape": shape, "data_offsets": [at, at + bytes]}));
        at += bytes;
    }
    let mut text = serde_json::to_string(&header)?;
    while !(text.len() + 8).is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = BufWriter::new(std::fs::File::create(dir.join("model.safetensors"))?);
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(text.as_bytes())?;
    for (i, (name, shape)) in list.iter().enumerate() {
        fill(name, shape.iter().product(), 0x9e37_79b9 + i as u64 * 7919, &mut out)?;
    }
    out.flush()?;
    let config = json!({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": VOCAB,
        "hidden_size": HIDDEN, "intermediate_size": MLP, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
        "rms_norm_eps": 1e-5, "rope_theta": 500_000.0, "max_position_embeddings": 2048,
        "tie_word_embeddings": true, "hidden_act": "silu", "torch_dtype": "bfloat16"
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    let params: usize = list.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    println!("wrote {}: {params} parameters, {at} bytes of BF16", dir.display());
    Ok(())
}
