//! Command-line interface: argument parsing (clap) and the `report` command.
//! Parsing and printing only; every number comes from the engine.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use quantscope_engine::report::{SchemeSummary, TensorReport, report_tensor};
use quantscope_engine::{Calibration, Checkpoint, FormatKind, Granularity, Mapping, Scheme};
use regex::Regex;

#[derive(Parser, Debug)]
#[command(
    name = "quantscope",
    version,
    about = "See what quantization does to a neural network's weights.",
    long_about = "See what quantization does to a neural network's weights.\n\n\
        With no command, opens MODEL (a .safetensors file, a model.safetensors.index.json or a \
        Hugging Face folder) in the desktop app, or the bundled teaching sample when MODEL is omitted.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Model to open in the app.
    pub model: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Quantize every tensor under one scheme and print the error per tensor.
    #[command(after_long_help = REPORT_SCHEMA)]
    Report(ReportArgs),
}

const REPORT_SCHEMA: &str = "\
JSON OUTPUT (stable schema):
  {\"model\": PATH, \"scheme\": {format, mapping, granularity, axis, group_size, calibration,
   percentile, short}, \"tensors\": [RECORD...]}
  RECORD: name, dtype, shape, numel, quantized (bool), reason (why not, or null),
          fallback (granularity note, or null), metrics (null when not quantized),
          params (only with --params: [{scale, zero_point, offset, lo, hi}] per slice)
  metrics: count, mse, rmse, sqnr_db, max_abs_err, cosine, clipped_fraction,
           clip_error, round_error, nonfinite
  sqnr_db is null when the tensor is exactly lossless (SQNR = +inf); no field is ever NaN.
  clip_error + round_error = mse (the clipped elements' and the rest's share of it).
CSV OUTPUT: the same fields, one row per tensor (one row per slice with --params).

EXIT CODES: 0 ok, 1 error (one line on stderr), 2 usage.";

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum MappingArg {
    Symmetric,
    Asymmetric,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GranularityArg {
    Tensor,
    Channel,
    Group,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CalibrationArg {
    Minmax,
    Percentile,
    Mse,
    Entropy,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Json,
    Csv,
}

/// The scheme flags, shared by every command that quantizes.
#[derive(Args, Debug, Clone)]
pub struct SchemeArgs {
    /// Number format: int8 (default), int2..int8, e4m3, e5m2.
    #[arg(long, default_value = "int8", value_parser = parse_format)]
    pub format: FormatKind,
    #[arg(long, value_enum, default_value_t = MappingArg::Symmetric)]
    pub mapping: MappingArg,
    #[arg(long, value_enum, default_value_t = GranularityArg::Channel)]
    pub granularity: GranularityArg,
    /// Channel axis for --granularity channel.
    #[arg(long, default_value_t = 0)]
    pub axis: usize,
    /// Group size for --granularity group.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub group_size: u64,
    #[arg(long, value_enum, default_value_t = CalibrationArg::Minmax)]
    pub calibration: CalibrationArg,
    /// p for --calibration percentile, in percent (50 < p ≤ 100).
    #[arg(long, default_value_t = 99.9)]
    pub percentile: f64,
}

fn parse_format(s: &str) -> Result<FormatKind, String> {
    s.parse().map_err(|e: quantscope_engine::Error| e.to_string())
}

impl SchemeArgs {
    pub fn scheme(&self) -> anyhow::Result<Scheme> {
        let scheme = Scheme {
            format: self.format,
            mapping: match self.mapping {
                MappingArg::Symmetric => Mapping::Symmetric,
                MappingArg::Asymmetric => Mapping::Asymmetric,
            },
            granularity: match self.granularity {
                GranularityArg::Tensor => Granularity::Tensor,
                GranularityArg::Channel => Granularity::Channel { axis: self.axis },
                GranularityArg::Group => Granularity::Group { size: self.group_size as usize },
            },
            calibration: match self.calibration {
                CalibrationArg::Minmax => Calibration::MinMax,
                CalibrationArg::Percentile => Calibration::Percentile { p: self.percentile },
                CalibrationArg::Mse => Calibration::Mse,
                CalibrationArg::Entropy => Calibration::Entropy,
            },
        };
        scheme.validate()?;
        Ok(scheme)
    }
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A .safetensors file, a model.safetensors.index.json, or a folder holding either.
    pub model: PathBuf,
    #[command(flatten)]
    pub scheme: SchemeArgs,
    /// Only tensors whose name matches this regular expression.
    #[arg(long)]
    pub tensors: Option<Regex>,
    #[arg(long, value_enum, default_value_t = OutputArg::Json)]
    pub output: OutputArg,
    /// Add each slice's S, Z (or FP8 offset), lo and hi.
    #[arg(long)]
    pub params: bool,
}

#[derive(serde::Serialize)]
struct ReportDoc<'a> {
    model: String,
    scheme: SchemeSummary,
    tensors: &'a [TensorReport],
}

pub fn run_report(args: &ReportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let scheme = args.scheme.scheme()?;
    let ckpt = Checkpoint::open(&args.model)?;
    let records: Vec<TensorReport> = ckpt
        .tensors()
        .iter()
        .filter(|t| args.tensors.as_ref().is_none_or(|re| re.is_match(&t.name)))
        .map(|t| report_tensor(&ckpt, t, &scheme, args.params))
        .collect();
    match args.output {
        OutputArg::Json => {
            let doc = ReportDoc {
                model: args.model.display().to_string(),
                scheme: SchemeSummary::from(&scheme),
                tensors: &records,
            };
            serde_json::to_writer_pretty(&mut *out, &doc).context("writing JSON")?;
            writeln!(out)?;
        }
        OutputArg::Csv => write_csv(&records, args.params, out)?,
    }
    Ok(())
}

const CSV_HEADER: &str = "name,dtype,shape,numel,quantized,reason,fallback,count,mse,rmse,sqnr_db,max_abs_err,cosine,clipped_fraction,clip_error,round_error,nonfinite";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn write_csv(records: &[TensorReport], with_params: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    write!(out, "{CSV_HEADER}")?;
    if with_params {
        write!(out, ",slice,scale,zero_point,offset,lo,hi")?;
    }
    writeln!(out)?;
    for r in records {
        let shape = r.shape.iter().map(ToString::to_string).collect::<Vec<_>>().join("x");
        let mut row = vec![
            csv_field(&r.name),
            r.dtype.clone(),
            shape,
            r.numel.to_string(),
            r.quantized.to_string(),
            csv_field(r.reason.as_deref().unwrap_or("")),
            csv_field(r.fallback.as_deref().unwrap_or("")),
        ];
        match &r.metrics {
            Some(m) => row.extend([
                m.count.to_string(),
                m.mse.to_string(),
                m.rmse.to_string(),
                if m.sqnr_db.is_finite() { m.sqnr_db.to_string() } else { String::new() },
                m.max_abs_err.to_string(),
                m.cosine.to_string(),
                m.clipped_fraction.to_string(),
                m.clip_error.to_string(),
                m.round_error.to_string(),
                m.nonfinite.to_string(),
            ]),
            None => row.extend(std::iter::repeat_n(String::new(), 10)),
        }
        let line = row.join(",");
        match (&r.params, with_params) {
            (Some(params), true) => {
                for (i, p) in params.iter().enumerate() {
                    writeln!(out, "{line},{i},{},{},{},{},{}", p.scale, p.zero_point, p.offset, p.lo, p.hi)?;
                }
            }
            (None, true) => writeln!(out, "{line},,,,,,")?,
            _ => writeln!(out, "{line}")?,
        }
    }
    Ok(())
}
