//! `quantscope plan`: mixed precision under a size budget. Sweeps the layers a
//! save would quantize under the candidate schemes, lets the engine's planner
//! pick one option per layer (or keep it as stored), and prints the plan as a
//! table, as JSON or as a recipe that `quantscope quantize --recipe` saves.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Args, ValueEnum};
use quantscope_engine::metrics::Metrics;
use quantscope_engine::planner::output::{OutputSqnr, output_sqnr};
use quantscope_engine::planner::{self, FrontierPoint, Objective, Problem};
use quantscope_engine::rank::{self, Item, RankKey, SqnrSummary};
use quantscope_engine::recipe::Recipe;
use quantscope_engine::sweep::{self, Sweep};
use quantscope_engine::{Calibration, Checkpoint, Scheme, export};
use serde::Serialize;

use super::args::parse_scheme;
use super::model_run;
use super::output::{self, Align, Table};
use super::progress::Console;

pub const PLAN_HELP: &str = "\
JSON OUTPUT: {\"model\", \"budget\", \"objective\", \"objective_value\", \"model_sqnr_db\",
  \"worst_sqnr_db\", \"total_bytes\",
  \"bits_per_weight\", \"layers\": [{\"name\", \"params\", \"scheme\" (short form or \"keep\"), \"bytes\",
  \"metrics\"}], \"frontier\": [{\"bytes\", \"objective_value\"}]}
  Bytes are the stored bytes of the covered layers (codes + scales + zero points), exactly as the
  sensitivity sweep counts them. The frontier is the relative objective's size-vs-error trade-off.
--output recipe writes a recipe file: quantscope quantize MODEL OUT --recipe FILE saves the plan.

EXIT CODES: 0 ok, 1 error (one line on stderr; also when no plan fits), 2 usage.";

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
    /// table (on a terminal), json (when piped) or recipe.
    #[arg(long, value_enum)]
    pub output: Option<PlanOutput>,
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
    /// Aligned columns for reading: worst first, totals last.
    Table,
    Json,
    /// A recipe file for `quantscope quantize --recipe`.
    Recipe,
    /// llama-quantize's `--tensor-type PATTERN=TYPE` options, one per line, for the layers
    /// planned to a llama.cpp type (q4_k, …).
    TensorTypes,
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
    /// The model SQNR of the plan's weights (docs/numerics.md), whatever the
    /// objective: what `diff` reports for its save.
    model_sqnr_db: Option<f64>,
    worst_sqnr_db: Option<f64>,
    total_bytes: u64,
    bits_per_weight: f64,
    layers: Vec<PlanLayer<'a>>,
    frontier: Vec<FrontierPoint>,
}

pub fn run(args: &PlanArgs, out: &mut dyn Write, console: &Console) -> anyhow::Result<()> {
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
    let rows: Vec<usize> =
        (0..ckpt.tensors().len()).filter(|&i| export::quantized_on_save(&ckpt.tensors()[i], None)).collect();
    anyhow::ensure!(!rows.is_empty(), "{model}: no layer a save would quantize");
    // Run the model first: a model that cannot run fails before the sweep.
    let acts = match &args.inputs {
        Some(inputs) => Some(
            model_run::capture(&ckpt, inputs, args.max_samples, console)
                .with_context(|| format!("{model}: the output objective runs the model"))?,
        ),
        None => None,
    };
    let s = {
        let bar = console.bar("Sweeping", rows.len());
        bar.message(format!("{} layers × {} schemes", rows.len(), args.schemes.len()));
        sweep::sweep(&ckpt, &rows, &args.schemes, &bar.callback(), &AtomicBool::new(false))?
    };
    let mut s = s;
    if let Some(acts) = &acts
        && args.schemes.iter().any(|x| x.calibration == Calibration::Gptq)
    {
        let bar = console.bar("GPTQ", s.rows.len());
        bar.message("each layer solved on its captured input");
        planner::output::gptq_cells(&ckpt, acts, &mut s, &args.schemes, &mut bar.callback())?;
    }
    let out_db = match &acts {
        Some(acts) => Some(output_costs(&ckpt, acts, &s, &args.schemes, console, &model.to_string())?),
        None => None,
    };
    let problem = Problem::for_sweep(&s, ckpt.tensors(), out_db.as_ref());
    let params: u64 = s.rows.iter().map(|r| r.params).sum();
    let budget = match (args.max_bytes, args.bits_per_weight) {
        (Some(b), _) => b,
        (None, Some(bpw)) => planner::budget_bytes(bpw, params),
        (None, None) => unreachable!("clap requires a budget"),
    };
    let (smallest, _) = problem.byte_range();
    let plan = problem.solve(budget, objective).with_context(|| {
        let bpw = |b: u64| planner::bits_per_weight(b, params);
        format!(
            "{model}: no plan fits {:.3} bits per weight ({budget} bytes); the smallest plan of these \
             candidates takes {:.3} bits per weight ({smallest} bytes): raise the budget or add a \
             smaller scheme (e.g. int4:group128 or int2:group64)",
            bpw(budget),
            bpw(smallest)
        )
    })?;
    let layers = plan_layers(&s, &problem, &plan, out_db.as_ref());
    let summary = SqnrSummary::of(layers.iter().map(|l| Item {
        name: l.name,
        params: l.params,
        metrics: l.metrics.as_ref(),
    }));
    let doc = PlanDoc {
        model: model.to_string(),
        budget,
        objective,
        objective_value: plan.objective_value,
        model_sqnr_db: summary.model_sqnr_db,
        worst_sqnr_db: summary.worst_sqnr_db,
        total_bytes: plan.total_bytes,
        bits_per_weight: planner::bits_per_weight(plan.total_bytes, params),
        frontier: problem.frontier(),
        layers,
    };
    let piped = if console.stdout_terminal { PlanOutput::Table } else { PlanOutput::Json };
    match args.output.unwrap_or(piped) {
        PlanOutput::Json => output::write_json(out, &doc)?,
        PlanOutput::Recipe => write_recipe(&doc.layers, out)?,
        PlanOutput::TensorTypes => write_tensor_types(&doc.layers, out)?,
        PlanOutput::Table => write_table(&doc, params, out)?,
    }
    Ok(())
}

/// The `output` objective's costs: every layer × scheme's output SQNR over the
/// captured inputs.
fn output_costs(
    ckpt: &Checkpoint,
    acts: &quantscope_engine::run::Activations,
    s: &Sweep,
    schemes: &[Scheme],
    console: &Console,
    model: &str,
) -> anyhow::Result<OutputSqnr> {
    let names: Vec<String> = s.rows.iter().map(|r| r.name.clone()).collect();
    let o = {
        let bar = console.bar("Output error", names.len());
        output_sqnr(ckpt, acts, &names, schemes, &mut bar.callback(), &AtomicBool::new(false))?
    };
    for layer in o.missing() {
        console.warn(&format!(
            "{model}: {layer}: no captured input; its weight SQNR stands in for the output SQNR"
        ));
    }
    Ok(o)
}

/// The plan's layers, worst SQNR first (kept layers last); totals and the
/// budget under them.
fn write_table(doc: &PlanDoc<'_>, params: u64, out: &mut dyn Write) -> anyhow::Result<()> {
    let with_output = doc.layers.iter().any(|l| l.metrics.is_some_and(|m| m.output_sqnr_db.is_some()));
    let mut head = vec![
        ("layer", Align::Left),
        ("params", Align::Right),
        ("scheme", Align::Left),
        ("bytes", Align::Right),
        ("SQNR dB", Align::Right),
    ];
    if with_output {
        head.push(("output SQNR dB", Align::Right));
    }
    let mut t = Table::new(head);
    let items =
        doc.layers.iter().map(|l| Item { name: l.name, params: l.params, metrics: l.metrics.as_ref() });
    for i in rank::worst_first(items, RankKey::Sqnr, false) {
        let l = &doc.layers[i];
        let mut cells = vec![
            l.name.to_string(),
            output::count(l.params),
            l.scheme.clone(),
            output::bytes(l.bytes),
            output::db(l.metrics.map_or(Some(f64::INFINITY), |m| Some(m.sqnr_db))),
        ];
        if with_output {
            cells.push(output::db(l.metrics.map_or(Some(f64::INFINITY), |m| m.output_sqnr_db)));
        }
        t.row(cells);
    }
    let kept = doc.layers.iter().filter(|l| l.scheme == "keep").count();
    let mut total = vec![
        format!("total, {} layers ({kept} kept)", doc.layers.len()),
        output::count(params),
        format!("{:.3} bits/weight", doc.bits_per_weight),
        output::bytes(doc.total_bytes),
        format!("model {}", output::db(doc.model_sqnr_db)),
    ];
    if with_output {
        total.push(String::new());
    }
    t.total(total);
    let value = match doc.objective {
        Objective::Worst => format!("worst layer {}", output::db(Some(doc.objective_value))),
        Objective::Relative => format!("{:.4e}", doc.objective_value),
        Objective::Output => format!(
            "{:.4e} (model output SQNR {} dB)",
            doc.objective_value,
            output::db(Some(planner::relative_as_db(doc.objective_value, params)))
        ),
    };
    let objective = serde_json::to_value(doc.objective).ok().and_then(|v| v.as_str().map(String::from));
    t.caption(format!(
        "{}: {} of a {} budget; {} objective {value}",
        doc.model,
        output::bytes(doc.total_bytes),
        output::bytes(doc.budget),
        objective.unwrap_or_default()
    ));
    t.write(out)
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
/// One `--tensor-type` per layer planned to a llama.cpp type: the name as an
/// anchored, escaped pattern (llama-quantize lowercases patterns; GGUF names
/// are lower case).
fn write_tensor_types(layers: &[PlanLayer<'_>], out: &mut dyn Write) -> anyhow::Result<()> {
    let mut any = false;
    for l in layers.iter().filter(|l| l.scheme != "keep") {
        let s: Scheme = l.scheme.parse()?;
        if let Some(ty) = s.format.ggml() {
            writeln!(out, "--tensor-type ^{}$={}", regex::escape(l.name), ty.name.to_ascii_lowercase())?;
            any = true;
        }
    }
    if !any {
        anyhow::bail!("the plan gives no layer a llama.cpp type: add candidates such as q4_k q6_k q8_0");
    }
    Ok(())
}

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
