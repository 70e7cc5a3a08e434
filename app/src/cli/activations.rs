//! `quantscope activations`: run the model over the inputs once and save what
//! every Linear layer's input looked like, for `report --activations` and the
//! app's File > Load activations.

use std::io::Write;
use std::path::PathBuf;

use quantscope_engine::{Checkpoint, run};

use super::model_run;
use super::progress::Console;

#[derive(clap::Args, Debug)]
pub struct ActivationsArgs {
    /// A Hugging Face folder (config.json, tokenizer.json, safetensors).
    pub model: PathBuf,
    /// Text file, one sample per line; `builtin` = the shipped calibration text.
    #[arg(long, value_name = "FILE")]
    pub inputs: PathBuf,
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_samples: usize,
    /// The safetensors file to write (atomically).
    #[arg(short = 'o', long = "output", value_name = "OUT.safetensors")]
    pub out: PathBuf,
}

pub fn run(args: &ActivationsArgs, out: &mut dyn Write, console: &Console) -> anyhow::Result<()> {
    let ckpt = Checkpoint::open(&args.model)?;
    let acts = model_run::capture(&ckpt, &args.inputs, args.max_samples, console)?;
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
