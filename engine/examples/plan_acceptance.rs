//! Issue 15's acceptance figures: on MODEL, at the size of uniform
//! `int4:group128:minmax` over the layers a save quantizes, the `relative`
//! plan against every uniform candidate, with 3–8 bits, groups 32–128 and per
//! channel, min-max and MSE. Also splits the gain: the best plan using 4-bit
//! schemes only (calibration and granularity, no mixing of bit widths) against
//! the full plan. Prints Markdown.
//!
//! `cargo run -p quantscope-engine --example plan_acceptance -- MODEL`

use std::sync::atomic::AtomicBool;

use quantscope_engine::planner::{Objective, Problem, bits_per_weight, relative_as_db};
use quantscope_engine::{Checkpoint, Scheme, export, sweep};

const BASE: &str = "int4:group128:minmax";

fn candidates() -> Vec<Scheme> {
    let mut out = Vec::new();
    for bits in 3..=8 {
        for g in ["group32", "group64", "group128", "channel"] {
            for c in ["minmax", "mse"] {
                out.push(format!("int{bits}:{g}:{c}").parse().unwrap_or_else(|e| panic!("{e}")));
            }
        }
    }
    out
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: plan_acceptance MODEL");
        std::process::exit(2);
    };
    let ckpt = Checkpoint::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<usize> = ckpt
        .tensors()
        .iter()
        .enumerate()
        .filter(|(_, t)| export::quantized_on_save(t, None))
        .map(|(i, _)| i)
        .collect();
    let schemes = candidates();
    let t0 = std::time::Instant::now();
    let s = sweep::sweep(&ckpt, &rows, &schemes, &|_, _| {}, &AtomicBool::new(false))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "sweep: {} layers x {} schemes in {:.1} s",
        rows.len(),
        schemes.len(),
        t0.elapsed().as_secs_f64()
    );
    let shapes: Vec<&[usize]> = rows.iter().map(|&i| &ckpt.tensors()[i].shape[..]).collect();
    let saves = |r: usize, k: usize| export::saves_quantized(shapes[r], &schemes[k]);
    let problem = Problem::from_sweep(&s, true, &saves);
    let params: u64 = s.rows.iter().map(|r| r.params).sum();
    let base = s.schemes.iter().position(|x| x == BASE).expect("the base scheme is a candidate");
    let uniform = problem.uniform(base, Objective::Relative);
    let budget = uniform.total_bytes;
    let t1 = std::time::Instant::now();
    let plan = problem.solve(budget, Objective::Relative).expect("the uniform plan fits, so a plan does");
    let solve_ms = t1.elapsed().as_secs_f64() * 1e3;
    let bound = problem.lower_bound(budget).unwrap_or(f64::NAN);
    let db = |v: f64| relative_as_db(v, params);
    println!(
        "{} layers, {} params, {} candidates + keep; budget {budget} bytes",
        rows.len(),
        params,
        schemes.len()
    );
    println!(
        "\nplan: {} bytes ({:.4} bits/weight), relative {:.6e} = {:.2} dB (bound {:.2} dB), solved in {solve_ms:.1} ms",
        plan.total_bytes,
        bits_per_weight(plan.total_bytes, params),
        plan.objective_value,
        db(plan.objective_value),
        db(bound)
    );
    // Same budget, 4-bit schemes only: what calibration and granularity give without mixing widths.
    let mut four = Problem::from_sweep(&s, false, &|r, k| saves(r, k) && s.schemes[k].starts_with("int4:"));
    four.layers.iter_mut().for_each(|o| o.retain(|x| x.scheme.is_some()));
    if let Some(p4) = four.solve(budget, Objective::Relative) {
        println!(
            "4-bit only (no mixing of widths): {} bytes, {:.2} dB",
            p4.total_bytes,
            db(p4.objective_value)
        );
    }
    println!("\n| uniform scheme | bytes | bits/weight | relative | dB |\n|---|---:|---:|---:|---:|");
    let mut us: Vec<(usize, _)> =
        (0..s.schemes.len()).map(|k| (k, problem.uniform(k, Objective::Relative))).collect();
    us.sort_by_key(|(_, u)| u.total_bytes);
    for (k, u) in &us {
        let mark = if u.total_bytes <= budget { " (fits)" } else { "" };
        println!(
            "| {}{mark} | {} | {:.3} | {:.4e} | {:.2} |",
            s.schemes[*k],
            u.total_bytes,
            bits_per_weight(u.total_bytes, params),
            u.objective_value,
            db(u.objective_value)
        );
    }
    println!("\n| layer | params | plan scheme | SQNR dB | under {BASE} dB |\n|---|---:|---|---:|---:|");
    for (r, row) in s.rows.iter().enumerate() {
        let o = &problem.layers[r][plan.choice[r]];
        let b = &problem.layers[r][uniform.choice[r]];
        let name = o.scheme.map_or("keep", |k| s.schemes[k].as_str());
        println!("| {} | {} | {name} | {:.2} | {:.2} |", row.name, row.params, o.sqnr_db, b.sqnr_db);
    }
}
