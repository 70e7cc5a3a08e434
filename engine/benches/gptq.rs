//! GPTQ of one 4096×4096 layer with its 4096² Hessian (H = 2·XᵀX/n from
//! seeded correlated inputs), W4A16's `int4:group128:minmax`: the Cholesky
//! factors, the column loop and the block products, on every core.
//!
//! `cargo bench -p quantscope-engine --bench gptq`
#![allow(clippy::unwrap_used)] // bench code: a panic is the failure report

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use faer::{Accum, Mat, Par};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, StudentT};

use quantscope_engine::gptq::{GptqOptions, gptq};
use quantscope_engine::{Options, Scheme};

const N: usize = 4096;

fn bench(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(25);
    let t = StudentT::new(3.0f32).unwrap();
    let w: Vec<f32> = (0..N * N).map(|_| t.sample(&mut rng) * 0.02).collect();
    // Inputs with a shared component per sample, so that H is not diagonal.
    let n = 2048;
    let g = Normal::new(0.0f32, 1.0).unwrap();
    let shared: Vec<f32> = (0..n).map(|_| g.sample(&mut rng)).collect();
    let x = Mat::<f32>::from_fn(n, N, |s, _| shared[s] * 0.5);
    let x = Mat::<f32>::from_fn(n, N, |s, j| x[(s, j)] + g.sample(&mut rng));
    let mut h = Mat::<f32>::zeros(N, N);
    faer::linalg::matmul::matmul(
        h.as_mut(),
        Accum::Replace,
        x.transpose(),
        x.as_ref(),
        2.0 / n as f32,
        Par::rayon(0),
    );
    let h: Vec<f32> = (0..N * N).map(|k| h[(k / N, k % N)]).collect();
    let scheme: Scheme = "int4:group128:minmax".parse().unwrap();

    let mut group = c.benchmark_group("gptq");
    group.sample_size(10);
    group.bench_function("4096x4096/int4:group128", |b| {
        b.iter(|| {
            gptq(black_box(&w), &[N, N], &scheme, &h, &GptqOptions::default(), &Options::default())
                .unwrap()
                .loss
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
