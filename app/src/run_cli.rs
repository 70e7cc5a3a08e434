//! The CLI's side of running the model: `--inputs FILE` (or `builtin`) to samples,
//! and the captured activations. Parsing and printing only; the engine runs.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use quantscope_engine::export::quantized_on_save;
use quantscope_engine::run::sensitivity::{Job, Reference, SensitivityReport};
use quantscope_engine::run::{self, Activations, Model};
use quantscope_engine::{Checkpoint, Scheme};

/// The samples named by `inputs`: a text file, or `builtin` for the shipped text.
/// Returns them with the name reports give their source.
pub fn samples(inputs: &Path, max: usize) -> anyhow::Result<(Vec<String>, String)> {
    if inputs.as_os_str() == "builtin" {
        return Ok((run::inputs::samples_of(run::BUILTIN_TEXT, max), run::inputs::BUILTIN_NAME.to_string()));
    }
    Ok((run::read_samples(inputs, max)?, inputs.display().to_string()))
}

/// Runs `ckpt`'s model over `inputs` once and returns every Linear input's statistics.
pub fn capture(ckpt: &Checkpoint, inputs: &Path, max: usize) -> anyhow::Result<Activations> {
    let model = Model::load(ckpt)?;
    let (samples, source) = samples(inputs, max)?;
    Ok(run::capture(&model, &samples, &source, &AtomicBool::new(false), &mut |_| {})?)
}

/// The activations `report` uses: a fresh run over `--inputs`, or a capture saved by
/// `quantscope activations` (`--activations FILE`, checked against the model).
pub fn activations_for(
    ckpt: &Checkpoint,
    inputs: Option<&Path>,
    saved: Option<&Path>,
    max: usize,
) -> anyhow::Result<Option<Activations>> {
    if let Some(file) = saved {
        let acts = run::store::load(file)?;
        run::store::check_model(&acts, ckpt, file)?;
        return Ok(Some(acts));
    }
    inputs.map(|i| capture(ckpt, i, max)).transpose()
}

/// `quantscope activations`: run the model once and save what every Linear layer's
/// input looked like.
#[derive(clap::Args, Debug)]
pub struct ActivationsArgs {
    /// A Hugging Face folder (config.json, tokenizer.json, safetensors).
    pub model: std::path::PathBuf,
    /// Text file, one sample per line; `builtin` = the shipped calibration text.
    #[arg(long, value_name = "FILE")]
    pub inputs: std::path::PathBuf,
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_samples: usize,
    /// The safetensors file to write (atomically).
    #[arg(short = 'o', long = "output", value_name = "OUT.safetensors")]
    pub out: std::path::PathBuf,
}

pub fn run_activations(args: &ActivationsArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let ckpt = Checkpoint::open(&args.model)?;
    let acts = capture(&ckpt, &args.inputs, args.max_samples)?;
    run::store::save(&acts, &ckpt, &args.out)?;
    let layers: usize = acts.sites.iter().map(|s| s.layers.len()).sum();
    writeln!(
        out,
        "wrote {}: the inputs of {layers} Linear layers ({} sites), {} samples, {} tokens",
        args.out.display(),
        acts.sites.len(),
        acts.samples,
        acts.tokens
    )?;
    Ok(())
}

/// `quantscope sensitivity`: every Linear layer quantized alone, the model run
/// over the inputs, the output compared with the float model's.
#[derive(clap::Args, Debug)]
pub struct SensitivityArgs {
    /// A Hugging Face folder (config.json, tokenizer.json, safetensors).
    pub model: std::path::PathBuf,
    /// Text file, one sample per line; `builtin` = the shipped calibration text.
    #[arg(long, value_name = "FILE", default_value = "builtin")]
    pub inputs: std::path::PathBuf,
    /// The scheme every layer is quantized under (short form).
    #[arg(long, default_value = "int8:channel:minmax", value_parser = parse_scheme)]
    pub scheme: Scheme,
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_samples: usize,
    /// Only layers whose name matches this regular expression.
    #[arg(long)]
    pub tensors: Option<regex::Regex>,
    #[arg(long, value_enum, default_value_t = crate::cli::OutputArg::Json)]
    pub output: crate::cli::OutputArg,
}

fn parse_scheme(s: &str) -> Result<Scheme, String> {
    s.parse().map_err(|e: quantscope_engine::Error| e.to_string())
}

#[derive(serde::Serialize)]
struct SensitivityDoc<'a> {
    model: String,
    scheme: String,
    inputs: String,
    #[serde(flatten)]
    report: &'a SensitivityReport,
}

pub fn run_sensitivity(args: &SensitivityArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let ckpt = Checkpoint::open(&args.model)?;
    let model = Model::load(&ckpt)?;
    let (samples, source) = samples(&args.inputs, args.max_samples)?;
    let cancel = AtomicBool::new(false);
    let acts = run::capture(&model, &samples, &source, &cancel, &mut |_| {})?;
    let ids = samples.iter().map(|s| model.tokenize(s)).collect::<Result<Vec<_>, _>>()?;
    let reference = Reference::new(&model, ids)?;
    let layers: Vec<String> = model
        .linears()
        .into_iter()
        .filter(|l| ckpt.tensor(l).is_ok_and(|t| quantized_on_save(t, None)))
        .filter(|l| args.tensors.as_ref().is_none_or(|re| re.is_match(l)))
        .collect();
    let job = Job { ckpt: &ckpt, model: &model, acts: &acts, reference: &reference, scheme: &args.scheme };
    let report = job.run(&layers, &cancel, &mut |done, total| eprint!("\rsensitivity: {done}/{total}"))?;
    eprintln!();
    match args.output {
        crate::cli::OutputArg::Json => {
            let doc = SensitivityDoc {
                model: args.model.display().to_string(),
                scheme: args.scheme.to_string(),
                inputs: source,
                report: &report,
            };
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)?;
        }
        crate::cli::OutputArg::Csv => write!(out, "{}", quantscope_engine::csv::end_to_end(&report))?,
    }
    Ok(())
}
