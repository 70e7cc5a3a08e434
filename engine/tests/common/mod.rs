//! Helpers the engine's integration tests share: tiny random checkpoints
//! written to a folder, and the real MiniLM when it is fetched.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

/// Deterministic values in [−scale, scale).
pub fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Writes `tensors` (name → shape; norms get 1 ± small) as model.safetensors + config.json.
pub fn write_model(dir: &Path, config: &str, shapes: &[(String, Vec<usize>)]) -> HashMap<String, Tensor> {
    let mut map = HashMap::new();
    let mut raw: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let norm = name.contains("norm") || name.contains("LayerNorm");
        let mut v = values(n, i as u64 + 1, if norm { 0.1 } else { 0.5 });
        if norm && name.ends_with("weight") {
            for x in &mut v {
                *x += 1.0;
            }
        }
        raw.push((name.clone(), bytemuck_bytes(&v), shape.clone()));
        map.insert(name.clone(), Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).expect("tensor"));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
    std::fs::write(dir.join("config.json"), config).expect("config");
    map
}

pub fn bytemuck_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn llama_config(kv: usize, tie: bool) -> String {
    format!(
        r#"{{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 40, "hidden_size": 32,
  "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": {kv},
  "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": {tie},
  "hidden_act": "silu"}}"#
    )
}

pub fn llama_shapes(kv: usize, tie: bool) -> Vec<(String, Vec<usize>)> {
    let (h, m, hd) = (32, 48, 8);
    let mut s = vec![
        ("model.embed_tokens.weight".to_string(), vec![40, h]),
        ("model.norm.weight".to_string(), vec![h]),
    ];
    if !tie {
        s.push(("lm_head.weight".to_string(), vec![40, h]));
    }
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        s.push((format!("{p}.input_layernorm.weight"), vec![h]));
        s.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        for (n, o, inp) in [
            ("self_attn.q_proj", 4 * hd, h),
            ("self_attn.k_proj", kv * hd, h),
            ("self_attn.v_proj", kv * hd, h),
            ("self_attn.o_proj", h, 4 * hd),
            ("mlp.gate_proj", m, h),
            ("mlp.up_proj", m, h),
            ("mlp.down_proj", h, m),
        ] {
            s.push((format!("{p}.{n}.weight"), vec![o, inp]));
        }
    }
    s
}

/// The real MiniLM, when `sample-models/fetch-minilm.sh` fetched it (CI
/// requires it through `QUANTSCOPE_REQUIRE_MINILM`).
pub fn minilm() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample-models/minilm");
    let found = dir.join("model.safetensors").is_file();
    assert!(
        found || std::env::var_os("QUANTSCOPE_REQUIRE_MINILM").is_none(),
        "MiniLM is required here: run sample-models/fetch-minilm.sh"
    );
    found.then_some(dir)
}
