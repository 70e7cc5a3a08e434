//! AWQ through a Llama-shaped decoder block by block (`run::awq`), as
//! `quantscope quantize --scheme int4:group128:awq:asym --inputs` runs it before
//! writing: a random F32 model with hidden 1024, MLP 2816, 4 layers, 16 query /
//! 8 key-value heads (so three mappings a block), 64 samples of 32 tokens.
//! `cargo bench -p quantscope-engine --bench awq`.

use std::sync::atomic::AtomicBool;

use criterion::{Criterion, criterion_group, criterion_main};
use quantscope_engine::run::Model;
use quantscope_engine::run::awq::awq_model;
use quantscope_engine::{Checkpoint, Scheme};
use serde_json::json;

const HIDDEN: usize = 1024;
const MLP: usize = 2816;
const LAYERS: usize = 4;
const VOCAB: usize = 1000;

fn shapes() -> Vec<(String, Vec<usize>)> {
    let kv = 512;
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![VOCAB, HIDDEN])];
    for l in 0..LAYERS {
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
            t.push((format!("model.layers.{l}.{name}"), shape));
        }
    }
    t.push(("model.norm.weight".to_string(), vec![HIDDEN]));
    t.push(("lm_head.weight".to_string(), vec![VOCAB, HIDDEN]));
    t
}

/// Norms 1 ± 0.1, weights uniform with a few loud input channels (as AWQ expects).
fn values(name: &str, n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..n)
        .map(|i| {
            if name.contains("norm") {
                1.0 + 0.2 * next() + if i % 97 == 0 { 4.0 } else { 0.0 }
            } else {
                0.04 * next()
            }
        })
        .flat_map(f32::to_le_bytes)
        .collect()
}

fn write_model(dir: &std::path::Path) {
    let list = shapes();
    let raw: Vec<(String, Vec<u8>, Vec<usize>)> = list
        .iter()
        .enumerate()
        .map(|(i, (n, s))| (n.clone(), values(n, s.iter().product(), 0x9e37 + i as u64 * 7919), s.clone()))
        .collect();
    let views = raw.iter().map(|(n, b, s)| {
        (
            n.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).expect("view"),
        )
    });
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
    let config = json!({"model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN,
        "intermediate_size": MLP, "num_hidden_layers": LAYERS, "num_attention_heads": 16,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-6, "hidden_act": "silu"});
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    write_model(dir.path());
    let ckpt = Checkpoint::open(dir.path()).expect("open");
    let model = Model::load(&ckpt).expect("model");
    let ids: Vec<Vec<u32>> =
        (0..64u32).map(|i| (0..32u32).map(|t| (i * 131 + t * 17) % VOCAB as u32).collect()).collect();
    let scheme: Scheme = "int4:group128:awq:asym".parse().expect("scheme");
    let want = |n: &str| (!n.starts_with("lm_head")).then_some(scheme);
    let mut g = c.benchmark_group("awq");
    g.sample_size(10);
    g.bench_function("llama-1024x2816x4/64x32", |b| {
        b.iter(|| {
            let s = awq_model(&model, &ckpt, &ids, &want, &mut |_, _| {}, &AtomicBool::new(false));
            assert_eq!(s.expect("awq").mappings.len(), 3 * LAYERS);
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
