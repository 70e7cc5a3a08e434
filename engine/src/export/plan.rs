//! Which tensors a save quantizes: the default rule, the user's choice, and
//! the per-tensor decisions of a recipe (checked against the packed layout).

use std::collections::HashMap;

use crate::analyze::{Options, QuantResult, analyze};
use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::ct::Activations;
use crate::ct::config::{ConfigGroup, groups};
use crate::ct::format::{input_dim, saves_quantized};
use crate::error::{Error, Result};
use crate::format::WorkDtype;
use crate::fused::{shared_global_amax, sibling_names};
use crate::recipe::{LayerChoice, Resolved};
use crate::scheme::{FormatKind, Granularity, Mapping, Scheme};

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

/// Refuses a declared activation scheme a quantized layer cannot pair with:
/// `int8-dynamic` needs INT8 per-channel (axis 0) symmetric weights,
/// `fp8-dynamic` E4M3 per-channel or 128×128-block symmetric weights.
pub(super) fn check_activations(ckpt: &Checkpoint, decisions: &[Decision], acts: Activations) -> Result<()> {
    let want = match acts {
        Activations::None => return Ok(()),
        Activations::Int8Dynamic => FormatKind::INT8,
        Activations::Fp8Dynamic => FormatKind::E4M3,
    };
    for (t, d) in ckpt.tensors().iter().zip(decisions) {
        let Decision::Quantize(s) = d else { continue };
        let block = acts == Activations::Fp8Dynamic && s.granularity == Granularity::Block { size: 128 };
        let ok = s.format == want
            && s.mapping == Mapping::Symmetric
            && (s.granularity == Granularity::Channel { axis: 0 } || block);
        if !ok {
            let also = if want == FormatKind::E4M3 { " (or e4m3:block128)" } else { "" };
            return Err(Error::Plan {
                tensor: Some(t.name.clone()),
                reason: format!(
                    "--activations {acts} needs {want}:channel{also} symmetric weights, this layer is {s}"
                ),
            });
        }
    }
    Ok(())
}

/// Leaves unquantized the layers whose group size does not divide the input
/// dimension (compressed-tensors cannot load them); returns the new decisions
/// and one note per such layer.
pub(super) fn drop_partial_groups(
    tensors: &[TensorInfo],
    decisions: &[Decision],
) -> (Vec<Decision>, Vec<String>) {
    let mut notes = Vec::new();
    let out = tensors
        .iter()
        .zip(decisions)
        .map(|(t, d)| match d {
            Decision::Quantize(s) if !saves_quantized(&t.shape, s) => {
                let size = if let Granularity::Group { size } = s.granularity { size } else { 0 };
                let why = format!(
                    "group size {size} does not divide the input dimension {}: left unquantized \
                     (compressed-tensors cannot load partial groups)",
                    input_dim(&t.shape)
                );
                notes.push(format!("{}: {why}", t.name));
                Decision::Keep(why)
            }
            Decision::Quantize(_) | Decision::Keep(_) => d.clone(),
        })
        .collect();
    (out, notes)
}

/// What a packed save of `ckpt` under `recipe` quantizes, by tensor: the
/// decisions the writer takes, for every face to show. The analysis of one
/// layer ([`SavePlan::analyze_layer`]) and the config groups
/// ([`SavePlan::groups`]) come from here, so a screen cannot show a layer
/// otherwise than the save writes it.
#[derive(Clone, Debug)]
pub struct SavePlan {
    decisions: Vec<Decision>,
    index: HashMap<String, usize>,
}

impl SavePlan {
    /// The save's decisions: the recipe, the default rule, and the layers a
    /// loadable file must keep (groups that do not divide the input dimension).
    /// `tensors` is the checkpoint's catalogue ([`Checkpoint::tensors`]).
    pub fn new(tensors: &[TensorInfo], recipe: &Resolved) -> Self {
        let planned = plan(tensors, recipe, &|_| false);
        let (decisions, _) = drop_partial_groups(tensors, &planned);
        let index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Self { decisions, index }
    }

    /// One decision per tensor, in the checkpoint's order.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The scheme `name` is saved under, or None when the save keeps it.
    pub fn scheme_of(&self, name: &str) -> Option<Scheme> {
        match self.index.get(name).map(|&i| &self.decisions[i]) {
            Some(Decision::Quantize(s)) => Some(*s),
            _ => None,
        }
    }

    /// How `name`'s fused siblings are saved (empty for a layer outside every
    /// sibling group): all of the plan that [`Self::analyze_layer`] reads
    /// besides the layer itself, so a face can tell when to ask again.
    pub fn sibling_schemes(&self, name: &str) -> Vec<Option<Scheme>> {
        sibling_names(name).map_or_else(Vec::new, |names| names.iter().map(|n| self.scheme_of(n)).collect())
    }

    /// The config groups the save writes (one per stored layout).
    pub fn groups(&self, tensors: &[TensorInfo]) -> Vec<ConfigGroup> {
        groups(tensors.iter().zip(&self.decisions).filter_map(|(t, d)| match d {
            Decision::Quantize(s) => Some((t.name.as_str(), t.shape.as_slice(), *s)),
            Decision::Keep(_) => None,
        }))
    }

    /// Tensor `name` (its decoded `values`) under `shown`, as the save computes
    /// it: in the tensor's own dtype, and with the global scale it shares with
    /// fused siblings, each of them under its own saved scheme. `opts` sets the
    /// histograms and R′; its dtype and global scale are replaced.
    pub fn analyze_layer(
        &self,
        ckpt: &Checkpoint,
        name: &str,
        values: &[f32],
        shown: &Scheme,
        opts: &Options,
    ) -> Result<QuantResult> {
        let info = ckpt.tensor(name)?;
        let scheme_of = |n: &str| if n == name { Some(*shown) } else { self.scheme_of(n) };
        let global_amax = shared_global_amax(ckpt, name, shown, &scheme_of)?;
        let opts = Options { work: WorkDtype::of(info.dtype), global_amax, ..*opts };
        analyze(values, &info.shape, shown, &opts)
    }
}
