//! The command line: the parser ([`Cli`]) and one module per command, each
//! standing on the shared floor and never on another command:
//!
//! - [`args`]: the scheme flags and the one short-form parser, worded by the
//!   engine's vocabulary;
//! - [`output`]: `--output table|json|csv` and the table;
//! - [`progress`]: progress bars, warnings and `--quiet` on stderr;
//! - [`model_run`]: `--inputs` and the captured activations.
//!
//! Parsing and printing only; every number comes from the engine.

pub mod activations;
pub mod args;
pub mod diff;
pub mod model_run;
pub mod output;
pub mod plan;
pub mod progress;
pub mod quantize;
mod quantize_gguf;
pub mod report;
pub mod sensitivity;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use progress::Console;

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
    /// No progress bars and no warnings on stderr (errors still print).
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Quantize every tensor under one scheme and print the error per tensor.
    #[command(after_long_help = report::REPORT_SCHEMA)]
    Report(report::ReportArgs),
    /// Save the quantized model (compressed-tensors safetensors, or fake-quant).
    #[command(after_long_help = quantize::QUANTIZE_HELP)]
    Quantize(quantize::QuantizeArgs),
    /// Mixed precision under a size budget: one scheme per layer (or keep it as
    /// stored) at the least error; prints the plan (a table, JSON) or a recipe.
    #[command(after_long_help = plan::PLAN_HELP)]
    Plan(plan::PlanArgs),
    /// Measure a published quantization (compressed-tensors, FP8 blocks, GPTQ,
    /// AWQ) against its original, layer by layer, beside quantscope's schemes.
    #[command(after_long_help = diff::DIFF_HELP)]
    Diff(diff::DiffArgs),
    /// Run the model with each Linear layer quantized alone (then all together) and
    /// measure the output against the float model: cosine and MSE of the pooled
    /// embedding (encoders), KL of the next-token distribution (decoders).
    Sensitivity(sensitivity::SensitivityArgs),
    /// Run the model over the inputs once and save every Linear layer's input
    /// statistics (histogram, absmax, second moments, a token sample) as safetensors,
    /// for `report --activations` and the app's File > Load activations.
    Activations(activations::ActivationsArgs),
}

impl Command {
    /// Runs the command, its output on `out`, progress and warnings through `console`.
    pub fn run(&self, out: &mut dyn Write, console: &Console) -> anyhow::Result<()> {
        match self {
            Self::Report(a) => report::run(a, out, console),
            // GGUF in, GGUF out is llama-quantize's path.
            Self::Quantize(a) if quantscope_engine::gguf::is_gguf(&a.model) => {
                quantize_gguf::run(a, out, console)
            }
            Self::Quantize(a) => quantize::run(a, out, console),
            Self::Plan(a) => plan::run(a, out, console),
            Self::Diff(a) => diff::run(a, out, console),
            Self::Sensitivity(a) => sensitivity::run(a, out, console),
            Self::Activations(a) => activations::run(a, out, console),
        }
    }
}
