//! Which tensors a save quantizes: the default rule, the user's choice, and
//! the per-tensor decisions of a recipe (checked against the packed layout).

use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::error::{Error, Result};
use crate::recipe::{LayerChoice, Resolved};
use crate::scheme::{Granularity, Scheme};

/// What happens to one tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Quantize(Scheme),
    /// Copied unchanged, with the reason.
    Keep(String),
}

/// Why a tensor is not quantized by default, if it is not: only float `*.weight`
/// tensors of two or more dimensions are, except embeddings and `lm_head`.
pub fn default_exclusion(info: &TensorInfo) -> Option<String> {
    if let Some(r) = &info.not_quantizable {
        return Some(r.clone());
    }
    if info.shape.len() < 2 {
        return Some(format!("{}-D tensor", info.shape.len()));
    }
    if info.numel() == 0 {
        return Some("empty tensor".into());
    }
    let Some(module) = info.name.strip_suffix(".weight") else {
        return Some("not a .weight tensor".into());
    };
    let last = module.rsplit('.').next().unwrap_or(module);
    if last == "lm_head" {
        return Some("lm_head (excluded by default)".into());
    }
    if module.contains("embed") || matches!(last, "wte" | "wpe" | "shared") {
        return Some("embedding (excluded by default)".into());
    }
    None
}

/// Whether a save quantizes `info`, given the user's choice for it (`None` =
/// the default rule). Agrees with [`plan`] (tested on every tensor of the
/// teaching sample): a choice cannot quantize a 1-D, empty or non-float tensor.
pub fn quantized_on_save(info: &TensorInfo, choice: Option<bool>) -> bool {
    info.is_quantizable()
        && info.shape.len() >= 2
        && info.numel() > 0
        && choice.unwrap_or_else(|| default_exclusion(info).is_none())
}

/// One decision per tensor (same order, e.g. `Checkpoint::tensors()`): `ignore`
/// first, then the recipe's entry, then the default rule.
pub fn plan(tensors: &[TensorInfo], recipe: &Resolved, ignore: &dyn Fn(&str) -> bool) -> Vec<Decision> {
    tensors
        .iter()
        .map(|t| {
            if ignore(&t.name) {
                return Decision::Keep("ignored (--ignore)".into());
            }
            match recipe.layers.get(&t.name) {
                Some(LayerChoice::Exclude) => Decision::Keep("excluded by the recipe".into()),
                // A recipe may ask for a tensor the default rule skips (lm_head,
                // an embedding), but never for one that cannot be quantized.
                Some(LayerChoice::Quantize(s)) => match (&t.not_quantizable, t.shape.len()) {
                    (Some(r), _) => Decision::Keep(r.clone()),
                    (None, 0 | 1) => Decision::Keep(format!("{}-D tensor", t.shape.len())),
                    _ if t.numel() == 0 => Decision::Keep("empty tensor".into()),
                    _ => Decision::Quantize(*s),
                },
                None => match default_exclusion(t) {
                    Some(r) => Decision::Keep(r),
                    None => Decision::Quantize(recipe.scheme),
                },
            }
        })
        .collect()
}

/// Refuses, before anything is written, what the packed layout cannot hold.
pub(super) fn check_packable(ckpt: &Checkpoint, decisions: &[Decision]) -> Result<()> {
    for (t, d) in ckpt.tensors().iter().zip(decisions) {
        let Decision::Quantize(s) = d else { continue };
        if let Granularity::Channel { axis } = s.granularity
            && axis != 0
        {
            return Err(Error::Tensor {
                path: ckpt.shard_path(t).to_path_buf(),
                tensor: t.name.clone(),
                reason: format!(
                    "per-channel on axis {axis} has no compressed-tensors layout (scales are [out, 1]); \
                     use axis 0 or --fake-quant"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn quantized_on_save_agrees_with_plan_on_the_teaching_sample() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../sample-models/teaching.safetensors");
        let ckpt = Checkpoint::open(path).unwrap();
        let scheme = Scheme::default();
        for t in ckpt.tensors() {
            for choice in [None, Some(true), Some(false)] {
                let mut layers = BTreeMap::new();
                if let Some(on) = choice {
                    layers.insert(
                        t.name.clone(),
                        if on { LayerChoice::Quantize(scheme) } else { LayerChoice::Exclude },
                    );
                }
                let decisions = plan(std::slice::from_ref(t), &Resolved { scheme, layers }, &|_| false);
                let planned = matches!(decisions[0], Decision::Quantize(_));
                assert_eq!(quantized_on_save(t, choice), planned, "{} with choice {choice:?}", t.name);
            }
        }
    }
}
