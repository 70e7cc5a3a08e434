//! The planner's solve time once the layers × schemes matrix is known
//! (issue target: ≤ 50 ms for 1,000 layers × 10 schemes, to follow a slider).

use criterion::{Criterion, criterion_group, criterion_main};
use quantscope_engine::planner::{LayerOption, Objective, Problem};
use rand::{Rng, SeedableRng};

fn problem(layers: usize, schemes: usize) -> Problem {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let layers = (0..layers)
        .map(|_| {
            let params: u64 = rng.random_range(100_000..20_000_000);
            (0..schemes)
                .map(|k| {
                    let bits = 2.0 + 14.0 * k as f64 / schemes as f64 + rng.random_range(0.0..0.5);
                    let sqnr_db = 6.02 * bits + rng.random_range(-6.0..3.0);
                    LayerOption {
                        scheme: Some(k),
                        bytes: (params as f64 * bits / 8.0) as u64,
                        cost: params as f64 * 10f64.powf(-sqnr_db / 10.0),
                        sqnr_db,
                    }
                })
                .collect()
        })
        .collect();
    Problem { layers }
}

fn bench(c: &mut Criterion) {
    let p = problem(1000, 10);
    let (lo, hi) = p.byte_range();
    let budget = lo + (hi - lo) / 3;
    c.bench_function("plan relative 1000x10", |b| b.iter(|| p.solve(budget, Objective::Relative)));
    c.bench_function("plan worst 1000x10", |b| b.iter(|| p.solve(budget, Objective::Worst)));
    // The GUI draws the frontier once per matrix, then solves once per budget.
    c.bench_function("plan frontier 1000x10", |b| b.iter(|| p.frontier()));
    let small = problem(36, 10);
    let (lo, hi) = small.byte_range();
    let budget = lo + (hi - lo) / 3;
    c.bench_function("plan relative 36x10", |b| b.iter(|| small.solve(budget, Objective::Relative)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
