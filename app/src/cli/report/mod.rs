//! `quantscope report`: every tensor quantized under one scheme, its error
//! per tensor; with `--compare`, the layers × schemes matrix ([`compare`]).
//! Parsing, ordering and printing only; every number comes from the engine.

mod compare;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use quantscope_engine::quantized::QuantizedModel;
use quantscope_engine::rank::SqnrSummary;
use quantscope_engine::rank::{self, Item, RankKey};
use quantscope_engine::report::{SchemeSummary, TensorReport, attach_stored, report_tensor};
use quantscope_engine::{Checkpoint, Scheme, csv, export, run};
use regex::Regex;

use super::args::{SchemeArgs, parse_scheme};
use super::model_run;
use super::output::{self, Align, OutputArg, Table};
use super::progress::Console;

pub const REPORT_SCHEMA: &str = "\
JSON OUTPUT (stable schema):
  {\"model\": PATH, \"scheme\": {format, mapping, granularity, axis, group_size, calibration,
   percentile, short}, \"tensors\": [RECORD...]}
  RECORD: name, dtype, shape, numel, quantized (bool), reason (why not, or null),
          fallback (granularity note, or null), metrics (null when not quantized),
          params (only with --params: [{scale, zero_point, offset, lo, hi}] per slice),
          stored (only in a quantized checkpoint, on each stored part of a quantized layer:
          {format, bits, granularity, group_size, block, symmetric, scale_dtype, act_order, short})
  metrics: count, mse, rmse, sqnr_db, max_abs_err, cosine, clipped_fraction,
           clip_error, round_error, nonfinite,
           output_sqnr_db (only with --inputs or --activations, Linear layers: 10 log10(sum|Wx|^2 / sum|(W-W')x|^2)
           over every token of the inputs run through the float model; null when lossless)
  sqnr_db is null when the tensor is exactly lossless (SQNR = +inf); no field is ever NaN.
  clip_error + round_error = mse (the clipped elements' and the rest's share of it).
CSV OUTPUT: the same fields, one row per tensor (one row per slice with --params).

EXIT CODES: 0 ok, 1 error (one line on stderr), 2 usage.";

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A .safetensors file, a model.safetensors.index.json, or a folder holding either.
    pub model: PathBuf,
    #[command(flatten)]
    pub scheme: SchemeArgs,
    /// Only tensors whose name matches this regular expression.
    #[arg(long)]
    pub tensors: Option<Regex>,
    /// table (on a terminal), json (when piped) or csv.
    #[arg(long, value_enum)]
    pub output: Option<OutputArg>,
    /// Add each slice's S, Z (or FP8 offset), lo and hi.
    #[arg(long)]
    pub params: bool,
    /// Compare schemes (short forms) instead: the layers × schemes matrix and each
    /// scheme's model totals. Rows are the layers a save would quantize (float
    /// *.weight of 2+ dimensions, not embeddings or lm_head), or --tensors' matches.
    #[arg(long, value_name = "SCHEME", num_args = 1.., value_parser = parse_scheme)]
    pub compare: Vec<Scheme>,
    /// Order the rows: sqnr (worst first), mse (worst first) or name. With --compare,
    /// by the first scheme. A table is ordered by sqnr unless told.
    #[arg(long, value_enum)]
    pub sort: Option<SortArg>,
    /// Keep only the first N rows (after --sort; alone it sorts by SQNR).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Add each tensor's decode + analyze time in ms (`elapsed_ms`).
    #[arg(long)]
    pub timing: bool,
    /// Run the model on this text file (one sample per line; `builtin` = the shipped
    /// calibration text) and add metrics.output_sqnr_db to each Linear layer.
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Like --inputs, from a capture saved by `quantscope activations` (no model run).
    #[arg(long, value_name = "FILE.safetensors", conflicts_with = "inputs")]
    pub activations: Option<PathBuf>,
    /// At most this many samples of --inputs.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_samples: usize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortArg {
    Sqnr,
    Mse,
    Name,
}

/// Orders `items` by the engine's ranking (worst first; failed rows last), then
/// keeps the first `top`.
fn order<T>(
    items: &mut Vec<T>,
    sort: Option<SortArg>,
    top: Option<usize>,
    item: impl for<'a> Fn(&'a T) -> Item<'a>,
) {
    let sort = sort.or(top.map(|_| SortArg::Sqnr));
    if let Some(sort) = sort {
        let key = match sort {
            SortArg::Sqnr => RankKey::Sqnr,
            SortArg::Mse => RankKey::Mse,
            SortArg::Name => RankKey::Name,
        };
        let order = rank::worst_first(items.iter().map(&item), key, false);
        let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
        items.extend(order.into_iter().filter_map(|i| slots[i].take()));
    }
    if let Some(n) = top {
        items.truncate(n);
    }
}

#[derive(serde::Serialize)]
struct ReportDoc<'a> {
    model: String,
    scheme: SchemeSummary,
    tensors: &'a [TensorReport],
}

pub fn run(args: &ReportArgs, out: &mut dyn Write, console: &Console) -> anyhow::Result<()> {
    let scheme = args.scheme.scheme()?;
    let ckpt = Checkpoint::open(&args.model)?;
    let format = OutputArg::resolve(args.output, console.stdout_terminal, OutputArg::Json);
    // A table reads worst first.
    let sort = if format == OutputArg::Table { args.sort.or(Some(SortArg::Sqnr)) } else { args.sort };
    if !args.compare.is_empty() {
        return compare::run(args, &ckpt, format, sort, out, console);
    }
    let mut records = measure(args, &ckpt, &scheme, console);
    // A quantized checkpoint: each stored part names its layer's scheme.
    if let Ok(q) = QuantizedModel::open(&args.model) {
        attach_stored(&mut records, &q);
    }
    let (inputs, saved) = (args.inputs.as_deref(), args.activations.as_deref());
    if let Some(acts) = model_run::activations_for(&ckpt, inputs, saved, args.max_samples, console)? {
        let bar = console.bar("Output error", records.len());
        run::output_error::add_output_sqnr(&ckpt, &acts, &scheme, &mut records, &bar.callback())?;
    }
    // --top alone ranks what a save would quantize: a bias or a norm is never
    // saved quantized, so it is no candidate for "the worst layers".
    if args.top.is_some() && args.tensors.is_none() {
        records.retain(|r| ckpt.tensor(&r.name).is_ok_and(|t| export::quantized_on_save(t, None)));
    }
    order(&mut records, sort, args.top, |r| Item {
        name: &r.name,
        params: r.numel as u64,
        metrics: r.metrics.as_ref(),
    });
    match format {
        OutputArg::Json => {
            let doc = ReportDoc {
                model: args.model.display().to_string(),
                scheme: SchemeSummary::from(&scheme),
                tensors: &records,
            };
            output::write_json(out, &doc)?;
        }
        OutputArg::Csv => write!(out, "{}", csv::report_rows(&records, args.params))?,
        OutputArg::Table => {
            let covered = |r: &TensorReport| {
                let t = ckpt.tensor(&r.name).ok()?;
                export::quantized_on_save(t, None).then(|| export::saves_quantized(&t.shape, &scheme))
            };
            let mut t = table(&records, args.timing, &covered);
            t.caption(format!("{} under {} ({})", args.model.display(), scheme, scheme.label()));
            t.write(out)?;
        }
    }
    Ok(())
}

/// Every tensor `--tensors` keeps, analyzed under `scheme`, with a bar.
fn measure(args: &ReportArgs, ckpt: &Checkpoint, scheme: &Scheme, console: &Console) -> Vec<TensorReport> {
    let chosen: Vec<_> = ckpt
        .tensors()
        .iter()
        .filter(|t| args.tensors.as_ref().is_none_or(|re| re.is_match(&t.name)))
        .collect();
    let bar = console.bar("Measuring", chosen.len());
    bar.message(scheme.to_string());
    chosen
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut r = report_tensor(ckpt, t, scheme, args.params);
            if !args.timing {
                r.elapsed_ms = None;
            }
            bar.set(i + 1, chosen.len());
            r
        })
        .collect()
}

/// One row per tensor in the order given; the model SQNR (over the tensors a
/// save covers: `covered` is `Some(whether the save quantizes it)`),
/// the mean layer SQNR and the worst layer last.
fn table(records: &[TensorReport], timing: bool, covered: &dyn Fn(&TensorReport) -> Option<bool>) -> Table {
    let with_output = records.iter().any(|r| r.metrics.is_some_and(|m| m.output_sqnr_db.is_some()));
    let mut head = vec![
        ("tensor", Align::Left),
        ("shape", Align::Left),
        ("dtype", Align::Left),
        ("SQNR dB", Align::Right),
    ];
    if with_output {
        head.push(("output SQNR dB", Align::Right));
    }
    head.extend([("MSE", Align::Right), ("cosine", Align::Right), ("clipped", Align::Right)]);
    if timing {
        head.push(("ms", Align::Right));
    }
    head.push(("note", Align::Left));
    let width = head.len();
    let mut t = Table::new(head);
    for r in records {
        let m = r.metrics.as_ref();
        let mut cells =
            vec![r.name.clone(), output::shape(&r.shape), r.dtype.clone(), output::db(m.map(|m| m.sqnr_db))];
        if with_output {
            cells.push(output::db(m.and_then(|m| m.output_sqnr_db)));
        }
        cells.extend([
            output::sci(m.map(|m| m.mse)),
            output::cosine(m.map(|m| m.cosine)),
            output::percent(m.map(|m| m.clipped_fraction), 3),
        ]);
        if timing {
            cells.push(r.elapsed_ms.map_or_else(|| "—".into(), |ms| format!("{ms:.1}")));
        }
        let stored = r.stored.as_ref().map(|s| format!("stored {}", s.short));
        cells.push(r.reason.clone().or_else(|| r.fallback.clone()).or(stored).unwrap_or_default());
        t.row(cells);
    }
    let items =
        records.iter().map(|r| Item { name: &r.name, params: r.numel as u64, metrics: r.metrics.as_ref() });
    let summary = SqnrSummary::of(items);
    let saved = records.iter().filter_map(|r| {
        let metrics = r.metrics.as_ref().filter(|_| covered(r) == Some(true));
        covered(r).map(|_| Item { name: &r.name, params: r.numel as u64, metrics })
    });
    let model = SqnrSummary::of(saved);
    let quantized = records.iter().filter(|r| r.quantized).count();
    let params: u64 = records.iter().map(|r| r.numel as u64).sum();
    let line = |first: &str, second: String, db: Option<f64>, note: String| {
        let mut cells = vec![first.to_string(), second, String::new(), output::db(db)];
        cells.resize(width - 1, String::new());
        cells.push(note);
        cells
    };
    t.total(line(
        "model SQNR",
        String::new(),
        model.model_sqnr_db,
        "over the layers a save quantizes (noise-weighted)".into(),
    ));
    t.total(line(
        "mean layer SQNR",
        format!("{} params", output::count(params)),
        summary.mean_layer_sqnr_db,
        format!("{} tensors, {quantized} quantized (params-weighted mean of dB)", records.len()),
    ));
    t.total(line("worst", String::new(), summary.worst_sqnr_db, summary.worst_layer.unwrap_or_default()));
    t
}
