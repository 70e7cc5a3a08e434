//! Reading and dequantizing one 4096×4096 layer per stored format, issue 14's
//! target: ≥ 1 G params/s. Each iteration opens the checkpoint
//! (`QuantizedModel::open`: header + config) and decodes the layer, from a
//! warm page cache. Two groups: `reused buffer` (`dequantize_into` a buffer
//! kept across iterations, as `diff` does layer after layer) and `fresh
//! buffer` (`dequantize`, a new 64 MiB `Vec<f32>` each time: its first-touch
//! page faults are part of that figure). The files are written once into a
//! temp folder; codes are random words (every bit pattern is a valid code),
//! scales constant.
#![allow(clippy::unwrap_used)] // bench setup: a panic is the failure report

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quantscope_engine::quantized::QuantizedModel;
use rand::{Rng, SeedableRng};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

const N: usize = 4096;

fn random(bytes: usize, seed: u64) -> Vec<u8> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    (0..bytes).map(|_| r.random()).collect()
}

fn constant(dtype: Dtype, n: usize) -> Vec<u8> {
    match dtype {
        Dtype::F16 => 0x211Fu16.to_le_bytes().repeat(n),
        Dtype::BF16 => 0x3C24u16.to_le_bytes().repeat(n),
        _ => 0.01f32.to_le_bytes().repeat(n),
    }
}

type Spec = Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)>;

fn write(dir: &Path, tensors: &Spec, config: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (format!("m.{n}"), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(dir.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    std::fs::write(dir.join("config.json"), format!(r#"{{"quantization_config": {config}}}"#)).unwrap();
}

fn ct_config(format: &str, bits: u8, strategy: &str, group: &str, sym: bool, float: bool) -> String {
    let ty = if float { "float" } else { "int" };
    format!(
        r#"{{"quant_method": "compressed-tensors", "format": "{format}", "config_groups": {{"group_0": {{
        "targets": ["Linear"], "format": "{format}", "weights": {{"num_bits": {bits}, "type": "{ty}",
        "symmetric": {sym}, "strategy": "{strategy}", "group_size": {group}, "block_structure": [128, 128]}}}}}}}}"#
    )
}

fn cases() -> Vec<(&'static str, Spec, String)> {
    let shape = [N as i64, N as i64].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let g = N / 128;
    let packed =
        |bits: usize| ("weight_packed", Dtype::I32, vec![N, N * bits / 32], random(N * N * bits / 8, 1));
    let shape_t = ("weight_shape", Dtype::I64, vec![2], shape);
    let g_idx: Vec<u8> = (0..N as i32).flat_map(|i| (i / 128).to_le_bytes()).collect();
    // desc_act: columns quantized in a permuted order, so each column names its group.
    let act_order: Vec<u8> =
        (0..N as i32).flat_map(|i| ((i * 7 + 3) % N as i32 / 128).to_le_bytes()).collect();
    vec![
        (
            "pack-quantized int4 group128 bf16",
            vec![
                packed(4),
                shape_t.clone(),
                ("weight_scale", Dtype::BF16, vec![N, g], constant(Dtype::BF16, N * g)),
            ],
            ct_config("pack-quantized", 4, "group", "128", true, false),
        ),
        (
            "pack-quantized int4 group128 asym bf16",
            vec![
                packed(4),
                shape_t.clone(),
                ("weight_scale", Dtype::BF16, vec![N, g], constant(Dtype::BF16, N * g)),
                ("weight_zero_point", Dtype::I32, vec![N * 4 / 32, g], random(N / 8 * g * 4, 2)),
            ],
            ct_config("pack-quantized", 4, "group", "128", false, false),
        ),
        (
            "pack-quantized int8 channel bf16",
            vec![packed(8), shape_t, ("weight_scale", Dtype::BF16, vec![N, 1], constant(Dtype::BF16, N))],
            ct_config("pack-quantized", 8, "channel", "null", true, false),
        ),
        (
            "float-quantized e4m3 channel bf16",
            vec![
                ("weight", Dtype::F8_E4M3, vec![N, N], random(N * N, 3)),
                ("weight_scale", Dtype::BF16, vec![N, 1], constant(Dtype::BF16, N)),
            ],
            ct_config("float-quantized", 8, "channel", "null", true, true),
        ),
        (
            "fp8 block128 (weight_scale_inv f32)",
            vec![
                ("weight", Dtype::F8_E4M3, vec![N, N], random(N * N, 4)),
                ("weight_scale_inv", Dtype::F32, vec![N / 128, N / 128], constant(Dtype::F32, g * g)),
            ],
            r#"{"quant_method": "fp8", "weight_block_size": [128, 128]}"#.into(),
        ),
        (
            "gptq int4 group128",
            vec![
                ("qweight", Dtype::I32, vec![N / 8, N], random(N * N / 2, 5)),
                ("qzeros", Dtype::I32, vec![g, N / 8], random(g * N / 2, 6)),
                ("scales", Dtype::F16, vec![g, N], constant(Dtype::F16, g * N)),
                ("g_idx", Dtype::I32, vec![N], g_idx),
            ],
            r#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": true}"#.into(),
        ),
        (
            "gptq int4 group128 act-order",
            vec![
                ("qweight", Dtype::I32, vec![N / 8, N], random(N * N / 2, 5)),
                ("qzeros", Dtype::I32, vec![g, N / 8], random(g * N / 2, 6)),
                ("scales", Dtype::F16, vec![g, N], constant(Dtype::F16, g * N)),
                ("g_idx", Dtype::I32, vec![N], act_order),
            ],
            r#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": true, "desc_act": true}"#.into(),
        ),
        (
            "awq int4 group128",
            vec![
                ("qweight", Dtype::I32, vec![N, N / 8], random(N * N / 2, 7)),
                ("qzeros", Dtype::I32, vec![g, N / 8], random(g * N / 2, 8)),
                ("scales", Dtype::F16, vec![g, N], constant(Dtype::F16, g * N)),
            ],
            r#"{"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}"#.into(),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for (i, (name, spec, config)) in cases().into_iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        write(&dir, &spec, &config);
        dirs.push((name, dir));
    }
    for fresh in [false, true] {
        let label = if fresh { "fresh buffer" } else { "reused buffer" };
        let mut group = c.benchmark_group(format!("read+dequantize 4096x4096, {label}"));
        group.throughput(Throughput::Elements((N * N) as u64));
        group.sample_size(10);
        let mut buf = Vec::new();
        for (name, dir) in &dirs {
            group.bench_function(*name, |b| {
                b.iter(|| {
                    let m = QuantizedModel::open(dir).unwrap();
                    assert!(m.failed.is_empty(), "{name}: {:?}", m.failed);
                    if fresh {
                        buf = m.dequantize(&m.layers[0]).unwrap();
                    } else {
                        m.dequantize_into(&m.layers[0], &mut buf).unwrap();
                    }
                    buf.len()
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
