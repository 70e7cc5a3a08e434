//! llama.cpp's types on one 4096×4096 tensor (seeded weight-like values, no
//! file needed beyond a temp GGUF): reading a Q4_K GGUF tensor and decoding it,
//! and the `q4_k` analysis (ggml's search, decode, every metric) against
//! `int4:group32:minmax`, with and without an importance matrix.
//!
//! `cargo bench -p quantscope-engine --bench gguf`
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_distr::{Distribution, StudentT};

use quantscope_engine::analyze::analyze_ggml;
use quantscope_engine::ggml::GgmlType;
use quantscope_engine::gguf::write::{OutTensor, write};
use quantscope_engine::gguf::{GgufFile, Header};
use quantscope_engine::{Options, Scheme, analyze};

const N: usize = 4096;

/// Student-t (3 degrees of freedom) · 0.02: heavier-tailed than a Gaussian, as trained weights are.
fn weights() -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(4096);
    let t = StudentT::new(3.0f32).unwrap();
    (0..N * N).map(|_| t.sample(&mut rng) * 0.02).collect()
}

fn bench(c: &mut Criterion) {
    let values = weights();
    let shape = [N, N];
    let q4k = GgmlType::from_name("Q4_K").unwrap();
    let bytes = quantscope_engine::ggml::quant::quantize(q4k, &values, N, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q4k.gguf");
    let empty = Header { version: 3, metadata: vec![], kv_spans: vec![], alignment: 32, tensors: vec![] };
    let out = [OutTensor { name: "w.weight".into(), ne: vec![N as u64, N as u64], ty: q4k }];
    write(&path, &empty, &[], &[], &out, |_| Ok(Cow::Borrowed(&bytes[..]))).unwrap();

    let mut g = c.benchmark_group("gguf");
    g.throughput(Throughput::Elements((N * N) as u64));
    g.sample_size(10);
    let mut buf = Vec::new();
    g.bench_function("read+dequantize/q4_k", |b| {
        b.iter(|| {
            let f = GgufFile::open(&path).unwrap();
            let t = f.tensor("w.weight").unwrap();
            quantscope_engine::ggml::dequantize_into(t.ggml_type, f.bytes(t), &mut buf).unwrap();
            black_box(buf[N * N - 1])
        });
    });
    for s in ["int4:group32:minmax:asym", "q4_k"] {
        let scheme: Scheme = s.parse().unwrap();
        g.bench_function(format!("analyze/{s}"), |b| {
            b.iter(|| {
                analyze(black_box(&values), &shape, &scheme, &Options::default()).unwrap().metrics.sqnr_db
            });
        });
    }
    let imatrix: Vec<f32> = (0..N).map(|i| 0.5 + (i % 7) as f32).collect();
    g.bench_function("analyze/q4_k+imatrix", |b| {
        b.iter(|| {
            analyze_ggml(black_box(&values), &shape, q4k, Some(&imatrix), &Options::default())
                .unwrap()
                .metrics
                .sqnr_db
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
