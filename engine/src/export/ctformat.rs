//! Which compressed-tensors format each quantized layer is saved in
//! (FORMATS.md §6): weight-only INT → `pack-quantized`, INT8 with dynamic INT8
//! activations → `int-quantized` (W8A8), E4M3 weight-only → `naive-quantized`,
//! E4M3 with dynamic FP8 activations → `float-quantized` (FP8_DYNAMIC, and
//! FP8_BLOCK with 128×128 weight blocks), NVFP4 → `nvfp4-pack-quantized`,
//! MXFP4 → `mxfp4-pack-quantized`, MXFP8 → `mxfp8-quantized`. Also the
//! declared activations, and the layers a loadable save must leave unquantized
//! (groups that do not divide the input dimension, §1).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::plan::Decision;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::format::spec;
use crate::scheme::{FormatKind, Granularity, Mapping, Scheme};

/// Activation quantization declared in the config (no calibration data needed:
/// dynamic per-token scales are computed by the runtime).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activations {
    #[default]
    None,
    /// Dynamic per-token INT8 inputs (W8A8, `int-quantized`).
    Int8Dynamic,
    /// Dynamic per-token FP8 inputs (FP8_DYNAMIC, `float-quantized`).
    Fp8Dynamic,
}

impl fmt::Display for Activations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Int8Dynamic => "int8-dynamic",
            Self::Fp8Dynamic => "fp8-dynamic",
        })
    }
}

impl FromStr for Activations {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "int8-dynamic" => Ok(Self::Int8Dynamic),
            "fp8-dynamic" => Ok(Self::Fp8Dynamic),
            _ => Err(format!("unknown activations '{s}' (none, int8-dynamic, fp8-dynamic)")),
        }
    }
}

/// A compressed-tensors storage format.
#[allow(clippy::enum_variant_names)] // the names compressed-tensors uses
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CtFormat {
    PackQuantized,
    IntQuantized,
    FloatQuantized,
    NaiveQuantized,
    Nvfp4PackQuantized,
    Mxfp4PackQuantized,
    Mxfp8Quantized,
}

impl CtFormat {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::PackQuantized => "pack-quantized",
            Self::IntQuantized => "int-quantized",
            Self::FloatQuantized => "float-quantized",
            Self::NaiveQuantized => "naive-quantized",
            Self::Nvfp4PackQuantized => "nvfp4-pack-quantized",
            Self::Mxfp4PackQuantized => "mxfp4-pack-quantized",
            Self::Mxfp8Quantized => "mxfp8-quantized",
        }
    }
}

/// The format a layer is saved in, or None when no runtime loads the scheme
/// (E5M2, asymmetric FP8). Assumes [`check_activations`] passed.
pub(crate) fn ct_format(s: &Scheme, acts: Activations) -> Option<CtFormat> {
    let f = spec(s.format).ok()?;
    if !f.runtime_loadable(s.mapping) {
        return None;
    }
    Some(match (s.format, acts) {
        (FormatKind::Nvfp4, _) => CtFormat::Nvfp4PackQuantized,
        (FormatKind::Mxfp4, _) => CtFormat::Mxfp4PackQuantized,
        (FormatKind::Mxfp8, _) => CtFormat::Mxfp8Quantized,
        (FormatKind::Int(_), Activations::None) => CtFormat::PackQuantized,
        (FormatKind::Int(_), _) => CtFormat::IntQuantized,
        (_, Activations::None) => CtFormat::NaiveQuantized,
        (_, _) => CtFormat::FloatQuantized,
    })
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

/// Whether a packed save quantizes a tensor of this shape under `s`: a group size
/// must divide the input dimension (FORMATS §1), otherwise the layer is kept.
pub fn saves_quantized(shape: &[usize], s: &Scheme) -> bool {
    !matches!(s.granularity, Granularity::Group { size } if !input_dim(shape).is_multiple_of(size))
}

/// Leaves unquantized the layers whose group size does not divide the input
/// dimension (compressed-tensors cannot load them); returns the new decisions
/// and one note per such layer.
pub(super) fn drop_partial_groups(ckpt: &Checkpoint, decisions: &[Decision]) -> (Vec<Decision>, Vec<String>) {
    let mut notes = Vec::new();
    let out = ckpt
        .tensors()
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

/// Elements per row of the `[out, in]` view.
pub(crate) fn input_dim(shape: &[usize]) -> usize {
    shape[1..].iter().product()
}
