//! The CLI's side of running the model: `--inputs FILE` (or `builtin`) to samples,
//! and the captured activations. Parsing and printing only; the engine runs.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use quantscope_engine::Checkpoint;
use quantscope_engine::run::{self, Activations, Model};

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
