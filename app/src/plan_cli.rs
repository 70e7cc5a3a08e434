//! `quantscope plan`: mixed precision under a size budget. Sweeps the layers a
//! save would quantize under the candidate schemes, lets the engine's planner
//! pick one option per layer (or keep it as stored), and prints the plan as
//! JSON or as a recipe that `quantscope quantize --recipe` saves.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Args, ValueEnum};
use quantscope_engine::metrics::Metrics;
use quantscope_engine::planner::output::output_sqnr;
use quantscope_engine::planner::{self, FrontierPoint, Objective, Problem};
use quantscope_engine::recipe::Recipe;
use quantscope_engine::{Checkpoint, Scheme, export, sweep};
use serde::Serialize;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("budget").required(true).args(["bits_per_weight", "max_bytes"])))]
pub struct PlanArgs {
    /// A .safetensors file, a model.safetensors.index.json, or a folder holding either.
    pub model: PathBuf,
    /// Budget in bits per weight over the layers the plan covers (e.g. 4.5).
    #[arg(long, value_name = "B")]
    pub bits_per_weight: Option<f64>,
    /// Budget in bytes over the layers the plan covers, as stored.
    #[arg(long, value_name = "N")]
    pub max_bytes: Option<u64>,
    /// Candidate schemes (short forms); "keep as stored" is always a candidate.
    #[arg(long, value_name = "SCHEME", num_args = 1.., value_parser = parse_scheme,
          default_values_t = default_candidates())]
    pub schemes: Vec<Scheme>,
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Relative)]
    pub objective: ObjectiveArg,
    /// With `--objective output`: text file, one sample per line, run through the
    /// model to weigh each layer's error by its inputs (`builtin` = the shipped text).
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// At most this many samples of --inputs.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_samples: usize,
    #[arg(long, value_enum, default_value_t = PlanOutput::Json)]
    pub output: PlanOutput,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    /// Σ params × MSE / mean(R²) (each layer's relative noise, weighted by size).
    Relative,
    /// The lowest layer SQNR, maximized.
    Worst,
    /// Σ params × output noise / output energy over the captured inputs (needs --inputs).
    Output,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanOutput {
    Json,
    /// A recipe file for `quantscope quantize --recipe`.
    Recipe,
}

fn parse_scheme(s: &str) -> Result<Scheme, String> {
    s.parse().map_err(|e: quantscope_engine::Error| e.to_string())
}

fn default_candidates() -> Vec<Scheme> {
    [
        "int8:channel:minmax",
        "int8:group128:minmax",
        "int4:group128:minmax",
        "int4:group128:mse",
        "int4:group64:mse",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

#[derive(Serialize)]
struct PlanLayer<'a> {
    name: &'a str,
    params: u64,
    /// The short form, or "keep" for a layer stored unchanged.
    scheme: String,
    bytes: u64,
    /// The cell's weight metrics; with the output objective, `output_sqnr_db` too.
    metrics: Option<Metrics>,
}

#[derive(Serialize)]
struct PlanDoc<'a> {
    model: String,
    budget: u64,
    objective: Objective,
    objective_value: f64,
    total_bytes: u64,
    bits_per_weight: f64,
    layers: Vec<PlanLayer<'a>>,
    frontier: Vec<FrontierPoint>,
}

pub fn run_plan(args: &PlanArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let objective = match args.objective {
        ObjectiveArg::Relative => Objective::Relative,
        ObjectiveArg::Worst => Objective::Worst,
        ObjectiveArg::Output => Objective::Output,
    };
    let model = args.model.display();
    match (&args.inputs, objective) {
        (None, Objective::Output) => {
            anyhow::bail!("--objective output needs --inputs FILE (or --inputs builtin) to run {model} on")
        }
        (Some(_), Objective::Relative | Objective::Worst) => {
            anyhow::bail!("--inputs is only used by --objective output")
        }
        _ => {}
    }
    let ckpt = Checkpoint::open(&args.model)?;
    let names: Vec<String> = ckpt
        .tensors()
        .iter()
        .filter(|t| export::quantized_on_save(t, None))
        .map(|t| t.name.clone())
        .collect();
    anyhow::ensure!(!names.is_empty(), "{model}: no layer a save would quantize");
    // Run the model first: a model that cannot run fails before the sweep.
    let acts = match &args.inputs {
        Some(inputs) => Some(
            crate::run_cli::capture(&ckpt, inputs, args.max_samples)
                .with_context(|| format!("{model}: the output objective runs the model"))?,
        ),
        None => None,
    };
    let rows: Vec<usize> =
        names.iter().filter_map(|n| ckpt.tensors().iter().position(|t| &t.name == n)).collect();
    let s = sweep::sweep(&ckpt, &rows, &args.schemes, &|_, _| {}, &AtomicBool::new(false))?;
    // A scheme the save would not apply to a layer (a group size that does not
    // divide it) is no option for that layer.
    let shapes: Vec<&[usize]> = rows.iter().map(|&i| &ckpt.tensors()[i].shape[..]).collect();
    let saves = |r: usize, k: usize| export::saves_quantized(shapes[r], &args.schemes[k]);
    let out_db = match &acts {
        Some(acts) => {
            let o = output_sqnr(&ckpt, acts, &names, &args.schemes, &mut |_, _| {}, &AtomicBool::new(false))?;
            for layer in o.missing() {
                eprintln!(
                    "{model}: {layer}: no captured input; its weight SQNR stands in for the output SQNR"
                );
            }
            Some(o)
        }
        None => None,
    };
    let problem = match &out_db {
        Some(o) => Problem::from_sweep_output(&s, true, &saves, o),
        None => Problem::from_sweep(&s, true, &saves),
    };
    let params: u64 = s.rows.iter().map(|r| r.params).sum();
    let budget = match (args.max_bytes, args.bits_per_weight) {
        (Some(b), _) => b,
        (None, Some(bpw)) => planner::budget_bytes(bpw, params),
        (None, None) => unreachable!("clap requires a budget"),
    };
    let (smallest, _) = problem.byte_range();
    let plan = problem
        .solve(budget, objective)
        .with_context(|| format!("{model}: no plan fits {budget} bytes (the smallest takes {smallest})"))?;
    let layers = plan_layers(&s, &problem, &plan, out_db.as_ref());
    match args.output {
        PlanOutput::Json => {
            let doc = PlanDoc {
                model: model.to_string(),
                budget,
                objective,
                objective_value: plan.objective_value,
                total_bytes: plan.total_bytes,
                bits_per_weight: planner::bits_per_weight(plan.total_bytes, params),
                frontier: problem.frontier(),
                layers,
            };
            serde_json::to_writer_pretty(&mut *out, &doc).context("writing JSON")?;
            writeln!(out)?;
        }
        PlanOutput::Recipe => write_recipe(&layers, out)?,
    }
    Ok(())
}

/// Each layer's option in `plan`, with the cell's metrics (and output SQNR).
fn plan_layers<'a>(
    s: &'a sweep::Sweep,
    problem: &Problem,
    plan: &planner::Plan,
    out_db: Option<&planner::output::OutputSqnr>,
) -> Vec<PlanLayer<'a>> {
    s.rows
        .iter()
        .enumerate()
        .zip(&plan.choice)
        .zip(&problem.layers)
        .map(|(((r, row), &c), opts)| {
            let o = &opts[c];
            let metrics = o.scheme.and_then(|k| row.cells[k].as_ref().ok()).map(|cell| {
                let mut m = cell.metrics;
                m.output_sqnr_db = o.scheme.and_then(|k| out_db?.db(r, k));
                m
            });
            PlanLayer {
                name: &row.name,
                params: row.params,
                scheme: o.scheme.map_or_else(|| "keep".into(), |k| s.schemes[k].clone()),
                bytes: o.bytes,
                metrics,
            }
        })
        .collect()
}

/// The plan as a recipe: the most common scheme model-wide, the rest per layer,
/// kept layers excluded.
fn write_recipe(layers: &[PlanLayer<'_>], out: &mut dyn Write) -> anyhow::Result<()> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in layers.iter().filter(|l| l.scheme != "keep") {
        *counts.entry(&l.scheme).or_default() += 1;
    }
    let base: Scheme = match counts.iter().max_by_key(|(_, n)| **n) {
        Some((s, _)) => s.parse()?,
        None => Scheme::default(),
    };
    let mut overrides = BTreeMap::new();
    let mut excluded = BTreeSet::new();
    for l in layers {
        if l.scheme == "keep" {
            excluded.insert(l.name.to_string());
        } else {
            let s: Scheme = l.scheme.parse()?;
            if s != base {
                overrides.insert(l.name.to_string(), s);
            }
        }
    }
    let recipe = Recipe::from_choices(&base, &overrides, &excluded);
    serde_json::to_writer_pretty(&mut *out, &recipe).context("writing the recipe")?;
    writeln!(out)?;
    Ok(())
}
