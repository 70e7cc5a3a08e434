//! HQQ against min-max on one MiniLM-shaped 384×1536 tensor (seeded synthetic
//! weights, no file needed), INT4 group-64 asymmetric: the whole `analyze`
//! (calibrate, quantize, every metric).
//!
//! `cargo bench -p quantscope-engine --bench hqq`
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_distr::{Distribution, StudentT};

use quantscope_engine::{Options, Scheme, analyze};

const ROWS: usize = 384;
const COLS: usize = 1536;

/// Weight-like values: Student-t (3 degrees of freedom) · 0.02, heavier-tailed
/// than a Gaussian as trained weights are.
fn weights() -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(384);
    let t = StudentT::new(3.0f32).unwrap();
    (0..ROWS * COLS).map(|_| t.sample(&mut rng) * 0.02).collect()
}

fn bench(c: &mut Criterion) {
    let values = weights();
    let shape = [ROWS, COLS];
    let mut g = c.benchmark_group("hqq");
    g.throughput(Throughput::Elements(values.len() as u64));
    for s in ["int4:group64:minmax:asym", "int4:group64:hqq:asym"] {
        let scheme: Scheme = s.parse().unwrap();
        let db = analyze(&values, &shape, &scheme, &Options::default()).unwrap().metrics.sqnr_db;
        eprintln!("{s}: SQNR {db:.3} dB");
        g.bench_function(s, |b| {
            b.iter(|| {
                analyze(black_box(&values), &shape, &scheme, &Options::default()).unwrap().metrics.sqnr_db
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
