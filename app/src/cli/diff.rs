//! `quantscope diff ORIGINAL QUANTIZED`: a published quantization (compressed-
//! tensors, FP8 blocks, GPTQ, AWQ) measured layer by layer against its
//! original, beside quantscope's own schemes. Parsing and printing only; the
//! pairing and every number come from the engine's `diff`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use quantscope_engine::diff::{ColumnTotals, Diff, DiffOptions, diff};
use quantscope_engine::quantized::QuantizedModel;
use quantscope_engine::rank::{self, Item, RankKey};
use quantscope_engine::{Checkpoint, Scheme, csv};
use regex::Regex;

use super::args::parse_scheme;
use super::output::{self, Align, OutputArg, Table};
use super::progress::Console;

pub const DIFF_HELP: &str = "\
JSON OUTPUT: {\"original\", \"quantized\", \"method\", \"tensors\": [{\"name\", \"shape\",
  \"stored\": {\"format\", \"bits\", \"granularity\", \"group_size\", \"block\", \"symmetric\",
  \"scale_dtype\", \"act_order\", \"short\"}, \"metrics\": {same keys as report},
  \"schemes\": {SHORT: metrics | {\"error\"}}}], \"unpaired\": [{\"name\", \"reason\"}],
  \"totals\": {\"published\": T, \"schemes\": {SHORT: T}}}
  T = {\"layers\", \"params\", \"kept_layers\", \"model_sqnr_db\", \"mean_layer_sqnr_db\", \"worst_sqnr_db\", \"worst_layer\"}.
  name is the original's weight name; metrics is the published R' against the original;
  schemes holds each layer's own round-to-nearest min-max equivalent (the stored short
  form) plus every --compare scheme. clipped = outside the slice's representable range.
CSV OUTPUT: one row per layer, the published metrics, then sqnr_db@SCHEME columns.

EXIT CODES: 0 ok, 1 error (one line on stderr), 2 usage.";

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The original model (file, index or folder).
    pub original: PathBuf,
    /// The quantized checkpoint (compressed-tensors, fp8 block, GPTQ, AWQ).
    pub quantized: PathBuf,
    /// Only the layers whose original weight name matches this regex.
    #[arg(long, value_name = "REGEX")]
    pub tensors: Option<String>,
    /// quantscope schemes to compare besides each layer's RTN equivalent.
    #[arg(long, value_name = "SCHEME", num_args = 1.., value_parser = parse_scheme)]
    pub compare: Vec<Scheme>,
    /// table (on a terminal), json (when piped) or csv.
    #[arg(long, value_enum)]
    pub output: Option<OutputArg>,
}

pub fn run(args: &DiffArgs, out: &mut dyn Write, console: &Console) -> anyhow::Result<()> {
    let filter = args.tensors.as_deref().map(Regex::new).transpose().with_context(|| {
        format!("--tensors {:?} is not a valid regex", args.tensors.as_deref().unwrap_or(""))
    })?;
    let orig = Checkpoint::open(&args.original)?;
    let q = QuantizedModel::open(&args.quantized)?.aligned_to(&orig);
    let keep = |name: &str| filter.as_ref().is_none_or(|r| r.is_match(name));
    let opts = DiffOptions { compare: args.compare.clone(), no_rtn: false };
    let d = {
        let bar = console.bar("Comparing", 0);
        diff(&orig, &q, &keep, &opts, &bar.callback())
    };
    // Layers that could not be read: one line each on stderr (also in "unpaired").
    for f in q.failed.iter().filter(|f| keep(&f.tensor)) {
        console.warn(&format!("{}: tensor '{}': {}", q.ckpt.path.display(), f.tensor, f.reason));
    }
    match OutputArg::resolve(args.output, console.stdout_terminal, OutputArg::Json) {
        OutputArg::Json => output::write_json(out, &d)?,
        OutputArg::Csv => out.write_all(csv::diff_rows(&d).as_bytes())?,
        OutputArg::Table => write_table(&d, out)?,
    }
    Ok(())
}

/// A totals line: its name and the figure it takes of each column.
type TotalsRow = (&'static str, fn(&ColumnTotals) -> Option<f64>);

/// The layers, worst published SQNR first, each scheme's SQNR beside it; the
/// columns' totals last, then what did not pair.
fn write_table(d: &Diff, out: &mut dyn Write) -> anyhow::Result<()> {
    let schemes: Vec<&String> = d.totals.schemes.keys().collect();
    let mut head = vec![("layer", Align::Left), ("stored", Align::Left), ("published dB", Align::Right)];
    head.extend(schemes.iter().map(|s| (s.as_str(), Align::Right)));
    let mut t = Table::new(head);
    let params = |i: usize| d.tensors[i].shape.iter().product::<usize>() as u64;
    let items = (0..d.tensors.len()).map(|i| Item {
        name: &d.tensors[i].name,
        params: params(i),
        metrics: Some(&d.tensors[i].metrics),
    });
    for i in rank::worst_first(items, RankKey::Sqnr, false) {
        let l = &d.tensors[i];
        let mut cells = vec![l.name.clone(), l.stored.short.clone(), output::db(Some(l.metrics.sqnr_db))];
        cells.extend(schemes.iter().map(|s| match l.schemes.get(*s) {
            Some(Ok(m)) => output::db(Some(m.sqnr_db)),
            Some(Err(_)) => "n/a".into(),
            None => String::new(),
        }));
        t.row(cells);
    }
    let totals: [TotalsRow; 3] = [
        ("model SQNR", |c| c.model_sqnr_db),
        ("mean layer SQNR", |c| c.mean_layer_sqnr_db),
        ("worst SQNR", |c| c.worst_sqnr_db),
    ];
    for (what, f) in totals {
        let mut cells = vec![format!("{what} ({} layers)", d.totals.published.layers), String::new()];
        cells.push(output::db(f(&d.totals.published)));
        cells.extend(schemes.iter().map(|s| output::db(f(&d.totals.schemes[*s]))));
        t.total(cells);
    }
    t.caption(format!("{} ({}) against {}", d.quantized, d.method, d.original));
    for u in &d.unpaired {
        t.caption(format!("not paired: {}: {}", u.name, u.reason));
    }
    t.write(out)
}
