//! `quantscope diff ORIGINAL QUANTIZED`: a published quantization (compressed-
//! tensors, FP8 blocks, GPTQ, AWQ) measured layer by layer against its
//! original, beside quantscope's own schemes. Parsing and printing only; the
//! pairing and every number come from the engine's `diff`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use quantscope_engine::diff::{DiffOptions, diff};
use quantscope_engine::quantized::QuantizedModel;
use quantscope_engine::{Checkpoint, Scheme, csv};
use regex::Regex;

use crate::cli::OutputArg;

pub const DIFF_HELP: &str = "\
JSON OUTPUT: {\"original\", \"quantized\", \"method\", \"tensors\": [{\"name\", \"shape\",
  \"stored\": {\"format\", \"bits\", \"granularity\", \"group_size\", \"block\", \"symmetric\",
  \"scale_dtype\", \"act_order\", \"short\"}, \"metrics\": {same keys as report},
  \"schemes\": {SHORT: metrics | {\"error\"}}}], \"unpaired\": [{\"name\", \"reason\"}],
  \"totals\": {\"published\": T, \"schemes\": {SHORT: T}}}
  T = {\"layers\", \"params\", \"mean_sqnr_db\", \"worst_sqnr_db\", \"worst_layer\"}.
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
    #[arg(long, value_enum, default_value_t = OutputArg::Json)]
    pub output: OutputArg,
}

fn parse_scheme(s: &str) -> Result<Scheme, String> {
    s.parse().map_err(|e: quantscope_engine::Error| e.to_string())
}

pub fn run_diff(args: &DiffArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let filter = args.tensors.as_deref().map(Regex::new).transpose().with_context(|| {
        format!("--tensors {:?} is not a valid regex", args.tensors.as_deref().unwrap_or(""))
    })?;
    let orig = Checkpoint::open(&args.original)?;
    let q = QuantizedModel::open(&args.quantized)?;
    let keep = |name: &str| filter.as_ref().is_none_or(|r| r.is_match(name));
    let opts = DiffOptions { compare: args.compare.clone(), no_rtn: false };
    let d = diff(&orig, &q, &keep, &opts);
    // Layers that could not be read: one line each on stderr (also in "unpaired").
    for f in q.failed.iter().filter(|f| keep(&f.tensor)) {
        eprintln!("quantscope: warning: {}: tensor '{}': {}", q.ckpt.path.display(), f.tensor, f.reason);
    }
    match args.output {
        OutputArg::Json => {
            serde_json::to_writer_pretty(&mut *out, &d)?;
            writeln!(out)?;
        }
        OutputArg::Csv => out.write_all(csv::diff_rows(&d).as_bytes())?,
    }
    Ok(())
}
