//! The recompute path on a 4096×4096 tensor stored as BF16 and as F32 (decode,
//! calibrate, quantize, dequantize, every metric), per format × granularity ×
//! calibration, and the whole-model sweep, against a floor measured in the same
//! run: one plain read pass over the same bytes.
//!
//! `cargo bench -p quantscope-engine --bench quantize`
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::ArrayView1;
use ndarray_stats::QuantileExt;
use std::sync::atomic::AtomicBool;

use quantscope_engine::decode::{decode, decode_into, encode};
use quantscope_engine::export::default_exclusion;
use quantscope_engine::sweep::{default_schemes, sweep};
use quantscope_engine::write::OwnedTensor;
use quantscope_engine::{
    Calibration, Checkpoint, Dtype, FormatKind, Granularity, Mapping, Options, Scheme, TensorStats,
    WorkDtype, analyze, analyze_stored,
};
use rayon::prelude::*;

const ROWS: usize = 4096;
const COLS: usize = 4096;

/// Deterministic weight-like values (a sum of uniforms ≈ Gaussian, a few outliers).
fn weights() -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..ROWS * COLS)
        .map(|i| {
            let g = (next() + next() + next() + next()) * 0.02;
            if i % 100_003 == 0 { g * 40.0 } else { g }
        })
        .collect()
}

/// The floor: sum every 8-byte word once (what "read the bytes" costs here).
fn read_pass(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(8).fold(0u64, |a, c| a.wrapping_add(u64::from_le_bytes(c.try_into().unwrap())))
}

fn benches(c: &mut Criterion) {
    let values = weights();
    let bf16 = encode(Dtype::BF16, &values).unwrap();
    let f32_bytes = encode(Dtype::F32, &values).unwrap();
    let decoded = decode(Dtype::BF16, &bf16).unwrap();
    let shape = [ROWS, COLS];

    let mut g = c.benchmark_group("floor");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(bf16.len() as u64));
    g.bench_function("read_bf16_1thread", |b| b.iter(|| read_pass(black_box(&bf16))));
    g.bench_function("read_bf16_parallel", |b| {
        b.iter(|| bf16.par_chunks(1 << 20).map(read_pass).reduce(|| 0, u64::wrapping_add));
    });
    g.throughput(Throughput::Bytes(f32_bytes.len() as u64));
    g.bench_function("read_f32_1thread", |b| b.iter(|| read_pass(black_box(&f32_bytes))));
    g.finish();

    // Why TensorStats is a fused hand loop: ndarray / ndarray-stats need one pass
    // per statistic (and min/max skipping NaN go through a comparison per element).
    let mut g = c.benchmark_group("stats");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bf16.len() as u64));
    g.bench_function("fused_hand_loop", |b| b.iter(|| TensorStats::of(black_box(&decoded))));
    g.bench_function("ndarray_stats", |b| {
        b.iter(|| {
            let a = ArrayView1::from(black_box(&decoded[..]));
            let min = *a.min_skipnan();
            let max = *a.max_skipnan();
            let mean = a.mean().unwrap();
            let std = a.std(0.0);
            (min, max, mean, std)
        });
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bf16.len() as u64));
    g.bench_function("bf16_to_f32", |b| b.iter(|| decode(Dtype::BF16, black_box(&bf16)).unwrap()));
    g.finish();

    let opts = Options::default();
    // Analysis alone, on the decoded tensor (what the app redoes when only the
    // scheme changes: it keeps the decoded layer).
    let mut g = c.benchmark_group("analyze_only");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bf16.len() as u64));
    for s in ["int8:tensor:minmax", "int8:channel:minmax", "int8:group128:minmax"] {
        let s: Scheme = s.parse().unwrap();
        g.bench_function(format!("{s}"), |b| {
            b.iter(|| analyze(black_box(&decoded), &shape, &s, &opts).unwrap());
        });
    }
    g.finish();

    // Microscaled formats against the INT8 group-128 baseline, and the cost of
    // computing in BF16 (as the saved model does) against F32, from BF16 bytes.
    let mut g = c.benchmark_group("microscaling");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(3));
    g.throughput(Throughput::Bytes(bf16.len() as u64));
    let mut buf = Vec::new();
    let cases = [
        ("int8:group128:minmax", WorkDtype::F32),
        ("int8:group128:minmax", WorkDtype::BF16),
        ("int8:group32:minmax", WorkDtype::BF16),
        ("int8:group16:minmax", WorkDtype::BF16),
        ("nvfp4", WorkDtype::BF16),
        ("mxfp4", WorkDtype::BF16),
        ("mxfp8", WorkDtype::BF16),
        ("e4m3:block128", WorkDtype::BF16),
        ("e4m3:channel", WorkDtype::F32),
        ("e4m3:channel", WorkDtype::BF16),
    ];
    for (s, work) in cases {
        let s: Scheme = s.parse().unwrap();
        let opts = Options { work, ..Options::default() };
        g.bench_function(format!("{s}/{work:?}"), |b| {
            b.iter(|| {
                decode_into(Dtype::BF16, black_box(&bf16), &mut buf).unwrap();
                analyze(&buf, &shape, &s, &opts).unwrap()
            });
        });
    }
    g.finish();

    recompute(c, &bf16, &f32_bytes);
    io_paths(c, &values);
    sweeps(c, &values);
}

/// The full recompute from the stored bytes: decode (into a reused buffer) +
/// calibrate + quantize + dequantize + every metric, per dtype × format ×
/// granularity × calibration.
fn recompute(c: &mut Criterion, bf16: &[u8], f32_bytes: &[u8]) {
    let shape = [ROWS, COLS];
    let opts = Options::default();
    let mut g = c.benchmark_group("recompute");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(2));
    for (dtype, name, bytes) in [(Dtype::BF16, "bf16", bf16), (Dtype::F32, "f32", f32_bytes)] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut buf = Vec::new();
        for format in [FormatKind::INT8, FormatKind::E4M3, FormatKind::E5M2] {
            for gran in
                [Granularity::Tensor, Granularity::Channel { axis: 0 }, Granularity::Group { size: 128 }]
            {
                for cal in [
                    Calibration::MinMax,
                    Calibration::Percentile { p: 99.9 },
                    Calibration::Mse,
                    Calibration::Entropy,
                ] {
                    let s =
                        Scheme { format, mapping: Mapping::Symmetric, granularity: gran, calibration: cal };
                    g.bench_function(format!("{name}/{s}"), |b| {
                        b.iter(|| {
                            decode_into(dtype, black_box(bytes), &mut buf).unwrap();
                            analyze(&buf, &shape, &s, &opts).unwrap()
                        });
                    });
                }
            }
        }
        // Asymmetric percentile (both ends of x: two brackets per tensor, both ends
        // kept per group) against asymmetric INT8 min-max; HQQ, which optimizes an
        // integer Z, as asymmetric INT4 (its common use) against min-max and MSE;
        // asymmetric KL (three one-sided searches per slice) per channel, BF16 only.
        let (tensor, channel, group) =
            (Granularity::Tensor, Granularity::Channel { axis: 0 }, Granularity::Group { size: 128 });
        let asymmetric: [(FormatKind, &[Granularity], &[Calibration], bool); 3] = [
            (
                FormatKind::INT8,
                &[tensor, group],
                &[Calibration::MinMax, Calibration::Percentile { p: 99.9 }],
                true,
            ),
            (
                FormatKind::Int(4),
                &[channel, group],
                &[Calibration::MinMax, Calibration::Mse, Calibration::Hqq],
                true,
            ),
            (
                FormatKind::INT8,
                &[channel],
                &[Calibration::MinMax, Calibration::Entropy],
                dtype == Dtype::BF16,
            ),
        ];
        for (format, grans, cals, _) in asymmetric.into_iter().filter(|a| a.3) {
            for (&gran, &cal) in grans.iter().flat_map(|g| cals.iter().map(move |c| (g, c))) {
                let s = Scheme { format, mapping: Mapping::Asymmetric, granularity: gran, calibration: cal };
                g.bench_function(format!("{name}/{s}"), |b| {
                    b.iter(|| {
                        decode_into(dtype, black_box(bytes), &mut buf).unwrap();
                        analyze(&buf, &shape, &s, &opts).unwrap()
                    });
                });
            }
        }
    }
    g.finish();
}

/// The 4096² tensor stored `pad` bytes into the data section (pad 1: unaligned F32).
fn file_with(dtype: &str, data: &[u8], pad: usize) -> Vec<u8> {
    quantscope_engine::checkpoint::padded_file(dtype, &[ROWS, COLS], data, pad)
}

/// The single-tensor path (`report`, `analyze_stored`) on one stored 4096² tensor:
/// F32 aligned (read in place) against unaligned (streamed a row or a chunk at a
/// time), and BF16 streamed against the old decode into a fresh tensor-sized buffer.
fn io_paths(c: &mut Criterion, values: &[f32]) {
    let f32_bytes = encode(Dtype::F32, values).unwrap();
    let bf16 = encode(Dtype::BF16, values).unwrap();
    let files = [
        ("f32-aligned", Checkpoint::from_bytes("a", file_with("F32", &f32_bytes, 4)).unwrap()),
        ("f32-unaligned", Checkpoint::from_bytes("u", file_with("F32", &f32_bytes, 1)).unwrap()),
        ("bf16", Checkpoint::from_bytes("b", file_with("BF16", &bf16, 2)).unwrap()),
    ];
    assert!(files[0].1.f32_view(files[0].1.tensor("w").unwrap()).is_some());
    assert!(files[1].1.f32_view(files[1].1.tensor("w").unwrap()).is_none());
    let mut g = c.benchmark_group("io");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(2));
    for s in ["int8:channel:minmax", "int8:tensor:minmax", "int8:group128:minmax"] {
        let s: Scheme = s.parse().unwrap();
        for (name, ckpt) in &files {
            let info = ckpt.tensor("w").unwrap();
            g.bench_function(format!("{name}/{s}"), |b| b.iter(|| analyze_stored(ckpt, info, &s).unwrap()));
        }
        // What `report` did before: decode into a fresh buffer, then analyze.
        let (ckpt, info) = (&files[2].1, files[2].1.tensor("w").unwrap());
        let opts = Options { work: WorkDtype::BF16, ..Options::default() };
        g.bench_function(format!("bf16-fresh-buffer/{s}"), |b| {
            b.iter(|| analyze(&ckpt.load_f32("w").unwrap(), &info.shape, &s, &opts).unwrap());
        });
    }
    g.finish();
}

/// The whole-model sweep (what the sensitivity view and `report --compare` do),
/// in params per second: an in-memory 8-layer BF16 model, and MiniLM if fetched.
fn sweeps(c: &mut Criterion, values: &[f32]) {
    let bf16 = encode(Dtype::BF16, values).unwrap();
    let tensors: Vec<(String, OwnedTensor)> = (0..8)
        .map(|i| {
            let t = OwnedTensor { dtype: Dtype::BF16, shape: vec![ROWS, COLS], data: bf16.clone() };
            (format!("layers.{i}.weight"), t)
        })
        .collect();
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None).unwrap();
    let synthetic = Checkpoint::from_bytes("synthetic", bytes).unwrap();
    let minilm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-models/minilm");
    let minilm = Checkpoint::open(&minilm).ok();
    let one: Vec<Scheme> = vec![Scheme::default()];
    let eight = default_schemes();
    let mut g = c.benchmark_group("sweep");
    g.sample_size(10);
    let no = AtomicBool::new(false);
    for (name, ckpt) in [("synthetic-8x4096x4096-bf16", Some(&synthetic)), ("minilm", minilm.as_ref())] {
        let Some(ckpt) = ckpt else { continue };
        let rows: Vec<usize> = ckpt
            .tensors()
            .iter()
            .enumerate()
            .filter(|(_, t)| default_exclusion(t).is_none())
            .map(|(i, _)| i)
            .collect();
        let params: u64 = rows.iter().map(|&i| ckpt.tensors()[i].numel() as u64).sum();
        g.throughput(Throughput::Elements(params));
        for (label, schemes) in [("1-scheme", &one), ("8-schemes", &eight)] {
            g.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| sweep(ckpt, &rows, schemes, &|_, _| {}, &no).unwrap());
            });
        }
        // The same default set, each scheme analysed alone on the shared decoded
        // tensor (the sweep before `multi`): what sharing across schemes saves.
        g.bench_function(format!("{name}/8-schemes-alone"), |b| {
            let mut buf = Vec::new();
            b.iter(|| {
                for &i in &rows {
                    let info = &ckpt.tensors()[i];
                    let values = ckpt.values(info, &mut buf).unwrap();
                    let opts = Options { work: WorkDtype::of(info.dtype), ..Options::default() };
                    let cells: Vec<_> = eight
                        .par_iter()
                        .map(|s| analyze(values, &info.shape, s, &opts).unwrap().metrics)
                        .collect();
                    black_box(cells);
                }
            });
        });
    }
    g.finish();
}

criterion_group!(quantize, benches);
criterion_main!(quantize);
