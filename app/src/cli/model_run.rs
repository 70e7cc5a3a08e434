//! Running the model for the commands that weigh errors by real inputs:
//! `--inputs FILE` (or `builtin`) to samples, the captured activations with a
//! progress bar, or a capture saved by `quantscope activations`. Parsing and
//! progress only; the engine runs.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use quantscope_engine::Checkpoint;
use quantscope_engine::run::awq::{Smoothed, awq_model};
use quantscope_engine::run::sequential::{Solved, gptq_model};
use quantscope_engine::run::{self, Activations, Model};
use quantscope_engine::scheme::Scheme;

use super::progress::Console;

/// The samples named by `inputs`: a text file, or `builtin` for the shipped text.
/// Returns them with the name reports give their source.
pub fn samples(inputs: &Path, max: usize) -> anyhow::Result<(Vec<String>, String)> {
    if inputs.as_os_str() == "builtin" {
        return Ok((run::inputs::samples_of(run::BUILTIN_TEXT, max), run::inputs::BUILTIN_NAME.to_string()));
    }
    Ok((run::read_samples(inputs, max)?, inputs.display().to_string()))
}

/// The model of `ckpt`, loaded for running (a spinner while it loads).
pub fn load(ckpt: &Checkpoint, console: &Console) -> anyhow::Result<Model> {
    let _spin = console.spinner("Loading");
    Ok(Model::load(ckpt)?)
}

/// Runs `model` over `samples` once and returns every Linear input's statistics.
pub fn capture_samples(
    model: &Model,
    samples: &[String],
    source: &str,
    console: &Console,
) -> anyhow::Result<Activations> {
    let bar = console.bar("Capturing", samples.len());
    bar.message("samples through the float model");
    let n = samples.len();
    Ok(run::capture(model, samples, source, &AtomicBool::new(false), &mut |done| bar.set(done, n))?)
}

/// Runs `ckpt`'s model over `inputs` once and returns every Linear input's statistics.
pub fn capture(
    ckpt: &Checkpoint,
    inputs: &Path,
    max: usize,
    console: &Console,
) -> anyhow::Result<Activations> {
    let model = load(ckpt, console)?;
    let (samples, source) = samples(inputs, max)?;
    capture_samples(&model, &samples, &source, console)
}

/// The activations `report` uses: a fresh run over `--inputs`, or a capture saved by
/// `quantscope activations` (`--activations FILE`, checked against the model).
pub fn activations_for(
    ckpt: &Checkpoint,
    inputs: Option<&Path>,
    saved: Option<&Path>,
    max: usize,
    console: &Console,
) -> anyhow::Result<Option<Activations>> {
    if let Some(file) = saved {
        let acts = run::store::load(file)?;
        run::store::check_model(&acts, ckpt, file)?;
        return Ok(Some(acts));
    }
    inputs.map(|i| capture(ckpt, i, max, console)).transpose()
}

/// The model and the token ids of at most `max` samples of `inputs`.
fn tokenized(
    ckpt: &Checkpoint,
    inputs: &Path,
    max: usize,
    console: &Console,
) -> anyhow::Result<(Model, Vec<Vec<u32>>)> {
    let model = load(ckpt, console)?;
    let (samples, _) = samples(inputs, max)?;
    let ids = samples.iter().map(|s| model.tokenize(s)).collect::<quantscope_engine::Result<Vec<_>>>()?;
    Ok((model, ids))
}

/// Runs AWQ block by block over the samples of `inputs` for every mapping
/// whose balance layers `scheme_of` gives an AWQ scheme (a bar per block).
pub fn awq(
    ckpt: &Checkpoint,
    inputs: &Path,
    max: usize,
    scheme_of: &(dyn Fn(&str) -> Option<Scheme> + Sync),
    console: &Console,
) -> anyhow::Result<Smoothed> {
    let (model, ids) = tokenized(ckpt, inputs, max, console)?;
    let bar = console.bar("AWQ", model.blocks());
    bar.message(format!("{} samples, block by block", ids.len()));
    Ok(awq_model(
        &model,
        ckpt,
        &ids,
        scheme_of,
        &mut |done, total| bar.set(done, total),
        &AtomicBool::new(false),
    )?)
}

/// Runs GPTQ block by block over the samples of `inputs` for every layer
/// `scheme_of` gives a GPTQ scheme (a bar per block).
pub fn gptq(
    ckpt: &Checkpoint,
    inputs: &Path,
    max: usize,
    scheme_of: &(dyn Fn(&str) -> Option<Scheme> + Sync),
    console: &Console,
) -> anyhow::Result<Solved> {
    let (model, ids) = tokenized(ckpt, inputs, max, console)?;
    let bar = console.bar("GPTQ", model.blocks() + 1);
    bar.message(format!("{} samples, block by block", ids.len()));
    Ok(gptq_model(
        &model,
        ckpt,
        &ids,
        scheme_of,
        false,
        &mut |done, total| bar.set(done, total),
        &AtomicBool::new(false),
    )?)
}
