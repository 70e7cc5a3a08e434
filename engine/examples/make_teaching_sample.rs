//! Writes `sample-models/teaching.safetensors`: small tensors, each named after
//! the quantization case it shows. Deterministic (fixed seed), so re-running it
//! reproduces the committed file byte for byte.
//!
//! `cargo run -p quantscope-engine --example make_teaching_sample [OUT]`

use quantscope_engine::Dtype;
use quantscope_engine::decode::encode;
use quantscope_engine::write::{OwnedTensor, write_safetensors};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, Normal, StudentT};

fn tensor(dtype: Dtype, shape: &[usize], values: &[f32]) -> OwnedTensor {
    OwnedTensor { dtype, shape: shape.to_vec(), data: encode(dtype, values).expect("float dtype") }
}

fn sample(rng: &mut StdRng, n: usize, d: impl Distribution<f32>) -> Vec<f32> {
    (0..n).map(|_| d.sample(rng)).collect()
}

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| "sample-models/teaching.safetensors".into());
    let mut rng = StdRng::seed_from_u64(0x5eed_2026);
    let normal = |s: f32| Normal::new(0.0f32, s).expect("valid sigma");
    let mut t: Vec<(String, OwnedTensor)> = Vec::new();

    // A well-behaved Linear layer: per-tensor INT8 already does well.
    let g = sample(&mut rng, 256 * 512, normal(0.02));
    t.push(("gaussian.weight".into(), tensor(Dtype::F32, &[256, 512], &g)));
    let b = sample(&mut rng, 256, normal(0.01));
    t.push(("gaussian.bias".into(), tensor(Dtype::F32, &[256], &b)));

    // A few output channels 30x wider than the rest, as in LLM weights: per-tensor
    // wastes its range on them, per-channel fixes it.
    let mut o = sample(&mut rng, 256 * 512, normal(0.02));
    for row in [3usize, 77, 200] {
        o[row * 512..(row + 1) * 512].iter_mut().for_each(|v| *v *= 30.0);
    }
    t.push(("outlier_channels.weight".into(), tensor(Dtype::F32, &[256, 512], &o)));

    // Student-t with 3 degrees of freedom: long tails where clipping (MSE,
    // percentile, entropy) beats min-max.
    let st = StudentT::new(3.0f32).expect("valid dof");
    let h: Vec<f32> = (0..256 * 512).map(|_| st.sample(&mut rng) * 0.01).collect();
    t.push(("heavy_tailed.weight".into(), tensor(Dtype::F32, &[256, 512], &h)));

    // All positive and skewed: symmetric mapping wastes half its codes.
    let e = Exp::new(40.0f32).expect("valid rate");
    let s = sample(&mut rng, 128 * 256, e);
    t.push(("skewed_positive.weight".into(), tensor(Dtype::F32, &[128, 256], &s)));

    // A conv kernel [out, in, kh, kw]: per-channel is over axis 0.
    let c = sample(&mut rng, 64 * 32 * 9, normal(0.05));
    t.push(("conv3x3.weight".into(), tensor(Dtype::F32, &[64, 32, 3, 3], &c)));

    // The half-precision storage types real checkpoints use.
    let bf = sample(&mut rng, 256 * 256, normal(0.02));
    t.push(("bf16_linear.weight".into(), tensor(Dtype::BF16, &[256, 256], &bf)));
    let hf = sample(&mut rng, 256 * 256, normal(0.02));
    t.push(("f16_linear.weight".into(), tensor(Dtype::F16, &[256, 256], &hf)));

    // Degenerate: every value equal (S falls back to ε for asymmetric ranges).
    t.push(("constant.weight".into(), tensor(Dtype::F32, &[64, 64], &[0.25; 64 * 64])));

    // A few NaN: excluded from every metric and counted.
    let mut n = sample(&mut rng, 64 * 64, normal(0.02));
    for _ in 0..5 {
        let i = rng.random_range(0..n.len());
        n[i] = f32::NAN;
    }
    t.push(("with_nan.weight".into(), tensor(Dtype::F32, &[64, 64], &n)));

    // An integer tensor: listed, but not quantizable.
    let ids: Vec<u8> = (0..512i64).flat_map(i64::to_le_bytes).collect();
    t.push(("position_ids".into(), OwnedTensor { dtype: Dtype::I64, shape: vec![1, 512], data: ids }));

    let mut meta = std::collections::HashMap::new();
    meta.insert("generator".to_string(), "quantscope make_teaching_sample".to_string());
    write_safetensors(std::path::Path::new(&out), &t, Some(meta)).expect("write sample");
    println!("wrote {out}");
}
