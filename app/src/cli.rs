//! Command-line interface: argument parsing (clap) and the `report` command.
//! Parsing and printing only; every number comes from the engine.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::sync::atomic::AtomicBool;

use quantscope_engine::csv;
use quantscope_engine::export::{self, Activations, ExportMode, ExportOptions, ExportSummary};
use quantscope_engine::quantized::QuantizedModel;
use quantscope_engine::rank::{self, Item, RankKey};
use quantscope_engine::recipe::{Recipe, Resolved};
use quantscope_engine::report::{SchemeSummary, TensorReport, attach_stored, report_tensor};
use quantscope_engine::run;
use quantscope_engine::sweep::{self, Sweep};
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
    /// Save the quantized model (compressed-tensors safetensors, or fake-quant).
    #[command(after_long_help = QUANTIZE_HELP)]
    Quantize(QuantizeArgs),
    /// Mixed precision under a size budget: one scheme per layer (or keep it as
    /// stored) at the least error; prints the plan (JSON) or a recipe.
    #[command(after_long_help = PLAN_HELP)]
    Plan(crate::plan_cli::PlanArgs),
    /// Measure a published quantization (compressed-tensors, FP8 blocks, GPTQ,
    /// AWQ) against its original, layer by layer, beside quantscope's schemes.
    #[command(after_long_help = crate::diff_cli::DIFF_HELP)]
    Diff(crate::diff_cli::DiffArgs),
    /// Run the model with each Linear layer quantized alone (then all together) and
    /// measure the output against the float model: cosine and MSE of the pooled
    /// embedding (encoders), KL of the next-token distribution (decoders).
    Sensitivity(crate::run_cli::SensitivityArgs),
    /// Run the model over the inputs once and save every Linear layer's input
    /// statistics (histogram, absmax, second moments, a token sample) as safetensors,
    /// for `report --activations` and the app's File > Load activations.
    Activations(crate::run_cli::ActivationsArgs),
}

const PLAN_HELP: &str = "\
JSON OUTPUT: {\"model\", \"budget\", \"objective\", \"objective_value\", \"total_bytes\",
  \"bits_per_weight\", \"layers\": [{\"name\", \"params\", \"scheme\" (short form or \"keep\"), \"bytes\",
  \"metrics\"}], \"frontier\": [{\"bytes\", \"objective_value\"}]}
  Bytes are the stored bytes of the covered layers (codes + scales + zero points), exactly as the
  sensitivity sweep counts them. The frontier is the relative objective's size-vs-error trade-off.
--output recipe writes a recipe file: quantscope quantize MODEL OUT --recipe FILE saves the plan.

EXIT CODES: 0 ok, 1 error (one line on stderr; also when no plan fits), 2 usage.";

const QUANTIZE_HELP: &str = "\
OUTPUT: OUT is a folder, written as a hidden temp folder beside it and renamed at the end, so a
failure leaves no partial OUT. OUT may not be the input, hold it, or lie in the input's folder.
  packed (default): compressed-tensors layout, as llm-compressor writes it. Weight-only INT is
    pack-quantized: X.weight_packed I32 [out, ceil(in*b/32)] (codes + 2^(b-1), little-endian bit
    stream per row), X.weight_shape I64, X.weight_zero_point (asymmetric only) packed down the
    columns, I32 [ceil(out*b/32), in/G]. E4M3 weight-only is naive-quantized (X.weight F8_E4M3).
    With --activations int8-dynamic (int8:channel) X.weight is I8 (int-quantized, W8A8); with
    fp8-dynamic (e4m3:channel) it is float-quantized (FP8_DYNAMIC). X.weight_scale has the
    weight's dtype and shape [1], [out,1] or [out,in/G]. Layers whose group size does not divide
    the input dimension are left unquantized (listed in the notes and the config's ignore).
    config.json gets a quantization_config block (vLLM, llm-compressor, transformers).
    E5M2 and asymmetric FP8 are written with the scheme in __metadata__ and no
    quantization_config: no runtime loads them.
  --fake-quant: R' in each tensor's original dtype; any framework loads it.
Quantized by default: float *.weight tensors of 2+ dimensions, except embeddings and lm_head.

RECIPE (--recipe FILE.json; the GUI's File > Save recipe writes one):
  {\"quantscope_recipe\": 1, \"scheme\": \"int8:channel:minmax\",
   \"layers\": {\"NAME.weight\": {\"scheme\": \"int8:group64:mse:asym\"},
              \"NAME2.weight\": {\"scheme\": \"int8:tensor:range-0.1,0.1\"},
              \"NAME3.weight\": {\"calibration\": \"ratio0.8\"},
              \"NAME4.weight\": {\"exclude\": true}}}
  The recipe's scheme replaces the scheme flags. Layers with different layouts become separate
  config_groups targeting re:^NAME$.

EXIT CODES: 0 ok, 1 error (one line on stderr; nothing is left behind), 2 usage.";

const REPORT_SCHEMA: &str = "\
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
    /// 128×128 tiles (FP8 only; --block-size changes the side).
    Block,
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
    /// Number format: int8 (default), int2..int8, e4m3, e5m2, nvfp4, mxfp4, mxfp8 (the last three
    /// bring their own group of 16 or 32 and the symmetric mapping).
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
    /// Tile side for --granularity block.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub block_size: u64,
    #[arg(long, value_enum, default_value_t = CalibrationArg::Minmax)]
    pub calibration: CalibrationArg,
    /// p for --calibration percentile, in percent (50 < p ≤ 100).
    #[arg(long, default_value_t = 99.9)]
    pub percentile: f64,
    /// The whole scheme in short form, replacing the flags above:
    /// format[:granularity[:calibration[:sym|asym]]], e.g. int8:channel:mse, e4m3:tensor:minmax,
    /// int4:group128:p99.9:asym, nvfp4, mxfp4, mxfp8, e4m3:block128 (granularity: tensor, channel,
    /// channelN, groupN, blockN; calibration: minmax, mse, entropy, hqq, pNN.N, ratioR, rangeLO,HI).
    #[arg(long, value_name = "SHORT")]
    pub scheme: Option<String>,
}

fn parse_format(s: &str) -> Result<FormatKind, String> {
    s.parse().map_err(|e: quantscope_engine::Error| e.to_string())
}

impl SchemeArgs {
    pub fn scheme(&self) -> anyhow::Result<Scheme> {
        if let Some(short) = &self.scheme {
            return Ok(short.parse()?);
        }
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
                GranularityArg::Block => Granularity::Block { size: self.block_size as usize },
            },
            calibration: match self.calibration {
                CalibrationArg::Minmax => Calibration::MinMax,
                CalibrationArg::Percentile => Calibration::Percentile { p: self.percentile },
                CalibrationArg::Mse => Calibration::Mse,
                CalibrationArg::Entropy => Calibration::Entropy,
            },
        };
        // A microscaled format's group and mapping are part of the format.
        let scheme = if self.format.fixed_group().is_some() { scheme.fitted() } else { scheme };
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
    /// Compare schemes (short forms) instead: the layers × schemes matrix and each
    /// scheme's model totals. Rows are the layers a save would quantize (float
    /// *.weight of 2+ dimensions, not embeddings or lm_head), or --tensors' matches.
    #[arg(long, value_name = "SCHEME", num_args = 1.., value_parser = parse_scheme)]
    pub compare: Vec<Scheme>,
    /// Order the rows: sqnr (worst first), mse (worst first) or name. With --compare,
    /// by the first scheme.
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

fn parse_scheme(s: &str) -> Result<Scheme, String> {
    s.parse().map_err(|e: quantscope_engine::Error| e.to_string())
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

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// A .safetensors file, a model.safetensors.index.json, or a folder holding either.
    pub model: PathBuf,
    /// The output folder.
    pub out: PathBuf,
    #[command(flatten)]
    pub scheme: SchemeArgs,
    /// Write R' in the original dtype instead of codes + scales.
    #[arg(long)]
    pub fake_quant: bool,
    /// Leave tensors whose name matches this regular expression unquantized (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub ignore: Vec<Regex>,
    /// Per-layer schemes, manual ranges and exclusions (JSON, see below).
    #[arg(long, value_name = "FILE.json")]
    pub recipe: Option<PathBuf>,
    /// Replace OUT if it is a non-empty folder.
    #[arg(long)]
    pub force: bool,
    /// Declare dynamic per-token activation quantization in the config: none, int8-dynamic
    /// (W8A8: int8:channel symmetric weights) or fp8-dynamic (FP8_DYNAMIC: e4m3:channel).
    #[arg(long, value_name = "none|int8-dynamic|fp8-dynamic", default_value = "none")]
    pub activations: Activations,
    /// Skip reading the output back and comparing it with the engine's R'.
    #[arg(long)]
    pub no_verify: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_quantize(args: &QuantizeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let recipe = match &args.recipe {
        Some(path) => Recipe::load(path)?.resolve()?,
        None => Resolved { scheme: args.scheme.scheme()?, layers: std::collections::BTreeMap::new() },
    };
    let ckpt = Checkpoint::open(&args.model)?;
    let unknown: Vec<&String> = recipe.layers.keys().filter(|n| ckpt.tensor(n).is_err()).collect();
    if !unknown.is_empty() {
        anyhow::bail!("the recipe names tensors this model does not have: {unknown:?}");
    }
    let ignore = |name: &str| args.ignore.iter().any(|re| re.is_match(name));
    let decisions = export::plan(ckpt.tensors(), &recipe, &ignore);
    let opts = ExportOptions {
        mode: if args.fake_quant { ExportMode::FakeQuant } else { ExportMode::Packed },
        verify: !args.no_verify,
        force: args.force,
        activations: args.activations,
        fail_after_bytes: None,
    };
    let summary = export::export(&ckpt, &decisions, &args.out, &opts, &|_, _| {}, &AtomicBool::new(false))?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &summary).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write_summary(&summary, out)?;
    }
    Ok(())
}

fn write_summary(s: &ExportSummary, out: &mut dyn Write) -> anyhow::Result<()> {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    writeln!(out, "saved {}", s.out.display())?;
    writeln!(
        out,
        "  {} tensors quantized ({:.1}% of {} params), {} copied",
        s.tensors_quantized,
        100.0 * s.params_quantized as f64 / s.params_total.max(1) as f64,
        s.params_total,
        s.tensors_copied
    )?;
    writeln!(out, "  tensor bytes: {:.2} MiB -> {:.2} MiB", mib(s.bytes_before), mib(s.bytes_after))?;
    if let (Some(mean), Some(worst), Some(layer)) = (s.mean_sqnr_db, s.worst_sqnr_db, &s.worst_layer) {
        writeln!(out, "  SQNR: mean {mean:.2} dB (params-weighted), worst {worst:.2} dB ({layer})")?;
    }
    match s.verified_tensors {
        Some(n) => writeln!(out, "  verify: {n} tensors read back, R' bit-identical to the engine's")?,
        None => writeln!(out, "  verify: skipped (--no-verify)")?,
    }
    if s.mode == ExportMode::Packed {
        let loadable = if s.runtime_loadable { "yes (quantization_config written)" } else { "no" };
        writeln!(out, "  loads in vLLM / llm-compressor: {loadable}")?;
    }
    for n in &s.notes {
        writeln!(out, "  note: {n}")?;
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct ReportDoc<'a> {
    model: String,
    scheme: SchemeSummary,
    tensors: &'a [TensorReport],
}

#[derive(serde::Serialize)]
struct CompareDoc<'a> {
    model: String,
    #[serde(flatten)]
    sweep: &'a Sweep,
}

fn run_compare(args: &ReportArgs, ckpt: &Checkpoint, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<usize> = ckpt
        .tensors()
        .iter()
        .enumerate()
        .filter(|(_, t)| match &args.tensors {
            Some(re) => t.is_quantizable() && re.is_match(&t.name),
            None => export::quantized_on_save(t, None),
        })
        .map(|(i, _)| i)
        .collect();
    let mut result = sweep::sweep(ckpt, &rows, &args.compare, &|_, _| {}, &AtomicBool::new(false))?;
    let (inputs, saved) = (args.inputs.as_deref(), args.activations.as_deref());
    if let Some(acts) = crate::run_cli::activations_for(ckpt, inputs, saved, args.max_samples)? {
        run::output_error::add_to_sweep(ckpt, &acts, &args.compare, &mut result)?;
    }
    order(&mut result.rows, args.sort, args.top, |r| Item {
        name: &r.name,
        params: r.params,
        metrics: r.cells.first().and_then(|c| c.as_ref().ok()).map(|c| &c.metrics),
    });
    match args.output {
        OutputArg::Json => {
            let doc = CompareDoc { model: args.model.display().to_string(), sweep: &result };
            serde_json::to_writer_pretty(&mut *out, &doc).context("writing JSON")?;
            writeln!(out)?;
        }
        OutputArg::Csv => write!(out, "{}", csv::matrix(&result))?,
    }
    Ok(())
}

pub fn run_report(args: &ReportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let scheme = args.scheme.scheme()?;
    let ckpt = Checkpoint::open(&args.model)?;
    if !args.compare.is_empty() {
        return run_compare(args, &ckpt, out);
    }
    let mut records: Vec<TensorReport> = ckpt
        .tensors()
        .iter()
        .filter(|t| args.tensors.as_ref().is_none_or(|re| re.is_match(&t.name)))
        .map(|t| report_tensor(&ckpt, t, &scheme, args.params))
        .map(|mut r| {
            if !args.timing {
                r.elapsed_ms = None;
            }
            r
        })
        .collect();
    // A quantized checkpoint: each stored part names its layer's scheme.
    if let Ok(q) = QuantizedModel::open(&args.model) {
        attach_stored(&mut records, &q);
    }
    let (inputs, saved) = (args.inputs.as_deref(), args.activations.as_deref());
    if let Some(acts) = crate::run_cli::activations_for(&ckpt, inputs, saved, args.max_samples)? {
        run::output_error::add_output_sqnr(&ckpt, &acts, &scheme, &mut records)?;
    }
    order(&mut records, args.sort, args.top, |r| Item {
        name: &r.name,
        params: r.numel as u64,
        metrics: r.metrics.as_ref(),
    });
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
        OutputArg::Csv => write!(out, "{}", csv::report_rows(&records, args.params))?,
    }
    Ok(())
}
