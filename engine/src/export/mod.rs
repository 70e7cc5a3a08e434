//! Saving a quantized model, as docs/numerics.md, "Saved layout" fixes it:
//!
//! - **packed** (compressed-tensors, shared/FORMATS.md §2, §3, §6, §7): weight-only
//!   INT is `pack-quantized` (`X.weight_packed` I32 bit streams, `X.weight_shape`,
//!   `X.weight_scale` in the weight's dtype, `X.weight_zero_point` packed along
//!   dim 0 when asymmetric); INT8 with declared dynamic INT8 activations is
//!   `int-quantized` (I8 `X.weight`); E4M3 is `naive-quantized` (weight-only) or
//!   `float-quantized` (dynamic FP8 activations), F8 `X.weight`. Layers whose
//!   group size does not divide the input dimension are left unquantized. A
//!   `quantization_config` block goes in `config.json`. E5M2 and
//!   asymmetric FP8 have no compressed-tensors form: they are written with the
//!   scheme in `__metadata__` and no `quantization_config`.
//! - **fake-quant**: R′ in the original dtype and layout, loadable anywhere.
//!
//! Safety: everything is written into a hidden temp folder beside OUT, verified,
//! and only then renamed to OUT, so a failure (disk full, unwritable, killed) never
//! leaves a partial OUT, and OUT can never be (or contain, or sit in) the source.
//! Tensors are processed one at a time and written at precomputed offsets, so peak
//! memory follows the largest tensor, not the model.
//!
//! Modules: [`plan`](self::plan()) (which tensors), `layout` (output tensors and
//! headers), `pack` (quantizing for the file), `config` (config.json), `write`
//! (streamed writes, temp folder, rename) and `verify` (read-back).

mod config;
mod layout;
mod pack;
mod plan;
mod verify;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

pub use crate::ct::{Activations, config_group_key, saves_quantized};
use plan::check_packable;
pub use plan::{Decision, SavePlan, default_exclusion, plan, quantized_on_save};
pub use verify::read_packed;
pub use write::temp_dir_for;
use write::{check_paths, is_folder_input, swap_into_place, sync_dir, write_model};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportMode {
    /// compressed-tensors codes + scales (+ zero points).
    Packed,
    /// R′ in the original dtype.
    FakeQuant,
}

#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub mode: ExportMode,
    /// Re-open the output and compare every dequantized tensor with the engine's R′.
    pub verify: bool,
    /// Replace a non-empty OUT.
    pub force: bool,
    /// Activation quantization declared in the config (packed saves only).
    pub activations: Activations,
    /// R′ that a method needing more than the weight computed (GPTQ, through
    /// the model on inputs), by tensor name: those layers' codes come from it.
    pub solved: Arc<HashMap<String, Vec<f32>>>,
    /// Values a transform changed before quantization (AWQ's smoothing), by
    /// tensor name: a quantized tensor is quantized from them (its metrics are
    /// against them), a kept one is written from them in its own dtype.
    pub replaced: Arc<HashMap<String, Vec<f32>>>,
    /// AWQ has run: `replaced` holds what it changed, and an AWQ layer it left
    /// alone (no mapping reaches it) is quantized as stored.
    pub smoothed: bool,
    /// Test hook: fail as a full disk would after this many bytes.
    #[doc(hidden)]
    pub fail_after_bytes: Option<u64>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            mode: ExportMode::Packed,
            verify: true,
            force: false,
            activations: Activations::None,
            solved: Arc::default(),
            replaced: Arc::default(),
            smoothed: false,
            fail_after_bytes: None,
        }
    }
}

/// One quantized layer in the summary.
#[derive(Clone, Debug, Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub scheme: String,
    pub params: u64,
    pub metrics: Metrics,
}

/// What a finished export reports.
#[derive(Clone, Debug, Serialize)]
pub struct ExportSummary {
    pub out: PathBuf,
    pub mode: ExportMode,
    /// Tensor data bytes of the source and of the output.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub tensors_quantized: usize,
    pub tensors_copied: usize,
    pub params_total: u64,
    pub params_quantized: u64,
    /// The model SQNR over the layers a save covers (quantized, or kept where
    /// the default rule would quantize them). See [`crate::rank::SqnrSummary`].
    pub model_sqnr_db: Option<f64>,
    /// Params-weighted mean SQNR over the quantized layers with finite SQNR.
    pub mean_layer_sqnr_db: Option<f64>,
    pub worst_sqnr_db: Option<f64>,
    pub worst_layer: Option<String>,
    /// Tensors checked bit for bit after writing; None when skipped.
    pub verified_tensors: Option<usize>,
    /// Whether `config.json` has a `quantization_config` a runtime loads.
    pub runtime_loadable: bool,
    /// Things the user should know (non-standard formats, NaN codes, …).
    pub notes: Vec<String>,
    pub layers: Vec<LayerSummary>,
}

/// Progress: (source bytes done, source bytes in all).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// The checks on OUT that [`export`] makes before writing, for a caller that
/// runs the model first (GPTQ, AWQ) and should fail before that, not after.
pub fn check_out(ckpt: &Checkpoint, out: &Path, force: bool) -> Result<()> {
    match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The save creates missing parents; nothing there can clash yet.
        Some(p) if !p.exists() => Ok(()),
        _ => check_paths(ckpt, out, force, is_folder_input(ckpt)),
    }
}

/// Writes the model to `out` (a folder). See the module docs.
pub fn export(
    ckpt: &Checkpoint,
    decisions: &[Decision],
    out: &Path,
    opts: &ExportOptions,
    progress: ProgressFn<'_>,
    cancel: &AtomicBool,
) -> Result<ExportSummary> {
    if decisions.len() != ckpt.tensors().len() {
        return Err(Error::Plan {
            tensor: None,
            reason: format!("{} decisions for {} tensors", decisions.len(), ckpt.tensors().len()),
        });
    }
    let folder_input = is_folder_input(ckpt);
    // Missing parent folders are created, like `mkdir -p`; OUT itself only
    // appears at the final rename.
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    check_paths(ckpt, out, opts.force, folder_input)?;
    let (decisions, partial_notes) = match opts.mode {
        ExportMode::Packed => {
            check_packable(ckpt, decisions)?;
            plan::check_activations(ckpt, decisions, opts.activations)?;
            plan::drop_partial_groups(ckpt.tensors(), decisions)
        }
        ExportMode::FakeQuant if opts.activations != Activations::None => {
            return Err(Error::Plan {
                tensor: None,
                reason: "declared activations need the packed layout, not fake-quant".into(),
            });
        }
        ExportMode::FakeQuant => (decisions.to_vec(), Vec::new()),
    };
    let decisions = decisions.as_slice();
    let tmp = temp_dir_for(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = (|| {
        let (mut summary, digests) =
            write_model(ckpt, decisions, &tmp, opts, progress, cancel, folder_input)?;
        summary.notes.extend(partial_notes);
        if opts.verify {
            summary.verified_tensors = Some(verify::verify(ckpt, decisions, &tmp, opts, &digests)?);
        }
        sync_dir(&tmp)?;
        swap_into_place(&tmp, out)?;
        summary.out = out.to_path_buf();
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}
