//! Layers that share one global scale. llm-compressor gives fused sibling
//! projections (q/k/v of one attention block, gate/up of one MLP, …) a single
//! NVFP4 global scale, the one of their largest amax, so that a runtime can
//! fuse them into one matrix (docs/numerics.md, "Microscaling formats").
//! Analysis, reports and the save all ask this module, so they agree.

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::format::spec;
use crate::scheme::Scheme;
use crate::slicing::parallel_stats;

/// Sibling module names that share a global scale under one parent
/// (llm-compressor's `update_fused_layer_weight_global_scales`).
const FUSED: &[&[&str]] = &[
    &["q_proj", "k_proj", "v_proj"],
    &["gate_proj", "up_proj"],
    &["q_a_proj", "kv_a_proj_with_mqa"],
    &["w1", "w3"],
];

/// The weight names fused with `name` (itself included), when it is one of a
/// complete sibling group; None otherwise.
pub fn siblings(ckpt: &Checkpoint, name: &str) -> Option<Vec<String>> {
    sibling_names(name).filter(|names| names.iter().all(|n| ckpt.tensor(n).is_ok()))
}

/// The names a sibling group of `name` would have (itself included), whether
/// the model holds them or not; None for a layer outside every group.
pub fn sibling_names(name: &str) -> Option<Vec<String>> {
    let module = name.strip_suffix(".weight")?;
    let (parent, last) = module.rsplit_once('.')?;
    let group = FUSED.iter().find(|g| g.contains(&last))?;
    Some(group.iter().map(|m| format!("{parent}.{m}.weight")).collect())
}

/// The amax `name`'s global scale derives from under `scheme`: the largest finite
/// |x| over its fused siblings, each quantized with `scheme_of` a two-level
/// format. None when the format has no global scale or the layer is not fused
/// (then its own amax is used).
pub fn shared_global_amax(
    ckpt: &Checkpoint,
    name: &str,
    scheme: &Scheme,
    scheme_of: &dyn Fn(&str) -> Option<Scheme>,
) -> Result<Option<f32>> {
    if !spec(scheme.format)?.two_level {
        return Ok(None);
    }
    let Some(names) = siblings(ckpt, name) else { return Ok(None) };
    if !names.iter().all(|n| scheme_of(n).is_some_and(|s| s.format == scheme.format)) {
        return Ok(None);
    }
    let mut amax = 0f32;
    let mut buf = Vec::new();
    for n in &names {
        let info = ckpt.tensor(n)?;
        let (lo, hi) = parallel_stats(ckpt.values(info, &mut buf)?).range();
        amax = amax.max(-lo).max(hi);
    }
    Ok(Some(amax))
}
