//! `quantscope quantize`: save the quantized model (compressed-tensors
//! safetensors, or fake-quant) under one scheme or a recipe. The engine's
//! `export` plans, writes and verifies; this parses, shows progress and prints
//! the summary.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Args;
use quantscope_engine::Checkpoint;
use quantscope_engine::Dtype;
use quantscope_engine::export::{self, Activations, Decision, ExportMode, ExportOptions, ExportSummary};
use quantscope_engine::recipe::{Recipe, Resolved};
use quantscope_engine::run::awq::{Smoothed, Smoothing};
use quantscope_engine::scheme::{Calibration, Scheme};
use quantscope_engine::write::{OwnedTensor, write_safetensors};
use regex::Regex;

use super::args::SchemeArgs;
use super::progress::Console;
use super::{model_run, output};

pub const QUANTIZE_HELP: &str = "\
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
GPTQ (a scheme ending in :gptq, e.g. int4:group128:gptq) first runs the model on --inputs block by
block, as llm-compressor's sequential pipeline: the same scales as round-to-nearest, GPTQ's codes,
\"actorder\": \"static\" in the config.
AWQ (an awq scheme, e.g. int4:group128:awq:asym; Llama, Qwen2, Mistral) runs the model on
--inputs block by block, as llm-compressor's AWQModifier: per-channel scales searched on each
block's inputs are folded into the norms and Linears before them, then the smoothed weights are
quantized with min-max ranges. The smoothed norms are saved; --awq-scales FILE keeps the scales.

RECIPE (--recipe FILE.json; the GUI's File > Save recipe writes one):
  {\"quantscope_recipe\": 1, \"scheme\": \"int8:channel:minmax\",
   \"layers\": {\"NAME.weight\": {\"scheme\": \"int8:group64:mse:asym\"},
              \"NAME2.weight\": {\"scheme\": \"int8:tensor:range-0.1,0.1\"},
              \"NAME3.weight\": {\"calibration\": \"ratio0.8\"},
              \"NAME4.weight\": {\"exclude\": true}}}
  The recipe's scheme replaces the scheme flags. Layers with different layouts become separate
  config_groups targeting re:^NAME$.

EXIT CODES: 0 ok, 1 error (one line on stderr; nothing is left behind), 2 usage.";

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// A .safetensors file, a model.safetensors.index.json, a folder holding either, or a
    /// .gguf file (then OUT is a .gguf file, written as llama-quantize writes it).
    pub model: PathBuf,
    /// The output folder (the output .gguf file for a GGUF model).
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
    /// The text GPTQ or AWQ runs the model on (one sample per line; `builtin` = the
    /// shipped calibration text): needed by a `gptq` or `awq` scheme.
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// At most this many samples of --inputs (llm-compressor's default count).
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_samples: usize,
    /// AWQ: also write the smoothing scales chosen (F64, keyed by the smooth layer's name).
    #[arg(long, value_name = "FILE.safetensors")]
    pub awq_scales: Option<PathBuf>,
    /// GGUF: a llama-quantize preset (Q4_K_M, Q5_K_S, Q8_0, IQ4_XS, …) and its per-tensor rules.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// GGUF: PATTERN=TYPE, as llama-quantize: tensors whose name matches the regex take TYPE
    /// (repeatable; the first match wins).
    #[arg(long, value_name = "PATTERN=TYPE")]
    pub tensor_type: Vec<String>,
    /// GGUF: an importance matrix from llama-imatrix (its GGUF output or legacy .dat).
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// GGUF: the preset's base type everywhere (no mixture rules).
    #[arg(long)]
    pub pure: bool,
    /// GGUF: the type of token_embd.weight.
    #[arg(long, value_name = "TYPE")]
    pub token_embedding_type: Option<String>,
    /// GGUF: the type of output.weight.
    #[arg(long, value_name = "TYPE")]
    pub output_tensor_type: Option<String>,
    /// GGUF: copy output.weight as it is.
    #[arg(long)]
    pub leave_output_tensor: bool,
}

pub fn run(args: &QuantizeArgs, out: &mut dyn Write, console: &Console) -> anyhow::Result<()> {
    let recipe = match &args.recipe {
        Some(path) => Recipe::load(path)?.resolve()?,
        None => Resolved { scheme: args.scheme.scheme()?, layers: BTreeMap::new() },
    };
    let ckpt = Checkpoint::open(&args.model)?;
    let unknown: Vec<&String> = recipe.layers.keys().filter(|n| ckpt.tensor(n).is_err()).collect();
    if !unknown.is_empty() {
        anyhow::bail!("the recipe names tensors this model does not have: {unknown:?}");
    }
    let ignore = |name: &str| args.ignore.iter().any(|re| re.is_match(name));
    let decisions = export::plan(ckpt.tensors(), &recipe, &ignore);
    let run = model_run_for(&ckpt, &decisions, args, console)?;
    let opts = ExportOptions {
        mode: if args.fake_quant { ExportMode::FakeQuant } else { ExportMode::Packed },
        verify: !args.no_verify,
        force: args.force,
        activations: args.activations,
        solved: Arc::new(run.solved),
        replaced: Arc::new(run.replaced),
        smoothed: run.awq.is_some(),
        fail_after_bytes: None,
    };
    let summary = {
        let bar = console.bytes_bar("Writing", 0);
        let verify = opts.verify;
        let progress = |done: u64, total: u64| {
            bar.set_u64(done, total);
            if verify && done == total {
                bar.message("reading it back to verify");
            }
        };
        export::export(&ckpt, &decisions, &args.out, &opts, &progress, &AtomicBool::new(false))?
    };
    let mut summary = summary;
    summary.notes.extend(run.notes);
    // Written once the model is saved, so a failed save leaves no scales behind.
    if let (Some(path), Some(mappings)) = (&args.awq_scales, &run.awq) {
        write_awq_scales(path, mappings)?;
    }
    if args.json {
        output::write_json(out, &summary)?;
    } else {
        write_summary(&summary, out)?;
    }
    Ok(())
}

/// What the model run gives a save: GPTQ's R′ and AWQ's smoothed tensors, by name.
#[derive(Default)]
struct ModelRun {
    solved: HashMap<String, Vec<f32>>,
    replaced: HashMap<String, Vec<f32>>,
    /// AWQ ran: each mapping's choice.
    awq: Option<Vec<Smoothing>>,
    notes: Vec<String>,
}

/// Runs the model when a layer's scheme needs it (GPTQ or AWQ); nothing otherwise.
fn model_run_for(
    ckpt: &Checkpoint,
    decisions: &[Decision],
    args: &QuantizeArgs,
    console: &Console,
) -> anyhow::Result<ModelRun> {
    let with = |c: Calibration| -> HashMap<&str, Scheme> {
        let pairs = ckpt.tensors().iter().zip(decisions);
        pairs
            .filter_map(|(t, d)| match d {
                Decision::Quantize(s) if s.calibration == c => Some((t.name.as_str(), *s)),
                _ => None,
            })
            .collect()
    };
    let (gptq, awq) = (with(Calibration::Gptq), with(Calibration::Awq));
    if args.awq_scales.is_some() && awq.is_empty() {
        anyhow::bail!("--awq-scales needs a scheme ending in :awq");
    }
    let Some(first) = gptq.values().chain(awq.values()).next() else { return Ok(ModelRun::default()) };
    if !gptq.is_empty() && !awq.is_empty() {
        anyhow::bail!("one save runs GPTQ or AWQ, not both: give the layers one of the two");
    }
    let Some(inputs) = &args.inputs else {
        anyhow::bail!(
            "{first} runs the model on calibration text: give --inputs FILE (one sample per line) or --inputs builtin"
        );
    };
    // Whatever would stop the save stops it before the model runs.
    export::check_out(ckpt, &args.out, args.force)?;
    if let Some(path) = &args.awq_scales {
        check_scales_path(ckpt, path, args)?;
    }
    if !gptq.is_empty() {
        let solved = model_run::gptq(ckpt, inputs, args.max_samples, &|n| gptq.get(n).copied(), console)?;
        let solved = solved.layers.into_iter().map(|(n, l)| (n, l.dequantized)).collect();
        return Ok(ModelRun { solved, ..ModelRun::default() });
    }
    // Every saved scheme, so that AWQ can refuse a mapping mixing AWQ and others.
    let all = |n: &str| {
        let i = ckpt.tensors().iter().position(|t| t.name == n)?;
        if let Decision::Quantize(s) = &decisions[i] { Some(*s) } else { None }
    };
    let smoothed = model_run::awq(ckpt, inputs, args.max_samples, &all, console)?;
    let notes = vec![awq_note(&smoothed)];
    let replaced = smoothed.tensors.into_iter().collect();
    Ok(ModelRun { replaced, awq: Some(smoothed.mappings), notes, ..ModelRun::default() })
}

/// The scales file may not sit in the model's folder (a loader would read it
/// as a shard) or in OUT (the save replaces OUT), nor replace a file unasked.
fn check_scales_path(ckpt: &Checkpoint, path: &std::path::Path, args: &QuantizeArgs) -> anyhow::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let dir = parent.canonicalize().map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
    let inside = |d: &std::path::Path| d.canonicalize().is_ok_and(|d| dir.starts_with(d));
    if inside(&ckpt.dir) || inside(&args.out) {
        anyhow::bail!("{}: --awq-scales must lie outside the model's folder and OUT", path.display());
    }
    if path.exists() && !args.force {
        anyhow::bail!("{}: exists; use --force to replace it", path.display());
    }
    Ok(())
}

/// One line on what AWQ chose.
fn awq_note(s: &Smoothed) -> String {
    let ratios: Vec<String> = s
        .mappings
        .iter()
        .map(|m| if m.candidate.1 { format!("{:.3}", m.candidate.0) } else { "id".into() })
        .collect();
    format!(
        "AWQ smoothed {} mappings on {} samples ({} tokens); ratios chosen: {}",
        s.mappings.len(),
        s.samples,
        s.tokens,
        ratios.join(" ")
    )
}

/// The smoothing scales as F64 tensors keyed by the smooth layer's module name.
fn write_awq_scales(path: &std::path::Path, mappings: &[Smoothing]) -> anyhow::Result<()> {
    let tensors: Vec<(String, OwnedTensor)> = mappings
        .iter()
        .map(|m| {
            let data = m.scales.iter().flat_map(|v| v.to_le_bytes()).collect();
            (m.smooth.clone(), OwnedTensor { dtype: Dtype::F64, shape: vec![m.scales.len()], data })
        })
        .collect();
    write_safetensors(path, &tensors, None)?;
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
    if let (Some(model), Some(worst), Some(layer)) = (s.model_sqnr_db, s.worst_sqnr_db, &s.worst_layer) {
        writeln!(out, "  model SQNR {model:.2} dB, worst layer {worst:.2} dB ({layer})")?;
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
