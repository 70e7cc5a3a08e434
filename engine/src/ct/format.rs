//! The compressed-tensors format names and the scheme ↔ format table
//! (docs/numerics.md, "Saved layout"): weight-only INT → `pack-quantized`, INT8 with dynamic INT8
//! activations → `int-quantized` (W8A8), E4M3 weight-only → `naive-quantized`,
//! E4M3 with dynamic FP8 activations → `float-quantized` (FP8_DYNAMIC, and
//! FP8_BLOCK with 128×128 weight blocks), NVFP4 → `nvfp4-pack-quantized`,
//! MXFP4 → `mxfp4-pack-quantized`, MXFP8 → `mxfp8-quantized`. Also the
//! declared activations, and which shapes a loadable save can quantize (a group
//! size must divide the input dimension). The reader infers a format the same
//! way when a config group does not name one ([`infer`]).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::format::spec;
use crate::scheme::{FormatKind, Granularity, Scheme};

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
pub enum CtFormat {
    PackQuantized,
    IntQuantized,
    FloatQuantized,
    NaiveQuantized,
    Nvfp4PackQuantized,
    Mxfp4PackQuantized,
    Mxfp8Quantized,
}

impl CtFormat {
    /// Every format quantscope writes and reads.
    pub const ALL: [Self; 7] = [
        Self::PackQuantized,
        Self::IntQuantized,
        Self::FloatQuantized,
        Self::NaiveQuantized,
        Self::Nvfp4PackQuantized,
        Self::Mxfp4PackQuantized,
        Self::Mxfp8Quantized,
    ];

    /// The name compressed-tensors writes in `format`.
    pub fn name(self) -> &'static str {
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

impl fmt::Display for CtFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CtFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown compressed-tensors format '{s}'"))
    }
}

/// The `format` of a config group that names none (FORMATS.md §6), from its
/// weights' type, bits, group size and scale dtype and whether it declares
/// input activations.
pub fn infer(
    float: bool,
    bits: u64,
    group_size: Option<usize>,
    e8m0_scales: bool,
    has_input: bool,
) -> CtFormat {
    match (float, bits, group_size, has_input) {
        (true, 4, Some(32), _) => CtFormat::Mxfp4PackQuantized,
        (true, 8, Some(32), _) if e8m0_scales => CtFormat::Mxfp8Quantized,
        (true, 4, Some(16), _) => CtFormat::Nvfp4PackQuantized,
        (false, _, _, true) => CtFormat::IntQuantized,
        (false, _, _, false) => CtFormat::PackQuantized,
        (true, _, _, true) => CtFormat::FloatQuantized,
        (true, _, _, false) => CtFormat::NaiveQuantized,
    }
}

/// The compressed-tensors weight `type` ("int" or "float"), or None for
/// layouts no runtime loads.
pub fn weight_type(s: &Scheme) -> Option<&'static str> {
    let f = spec(s.format).ok()?;
    f.runtime_loadable(s.mapping).then_some(if f.is_float { "float" } else { "int" })
}

/// The format a layer is saved in, or None when no runtime loads the scheme
/// (E5M2, asymmetric FP8). Assumes the save checked its activations.
pub fn ct_format(s: &Scheme, acts: Activations) -> Option<CtFormat> {
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

/// Whether a packed save quantizes a tensor of this shape under `s`: a group size
/// must divide the input dimension (FORMATS §1), otherwise the layer is kept.
pub fn saves_quantized(shape: &[usize], s: &Scheme) -> bool {
    !matches!(s.granularity, Granularity::Group { size } if !input_dim(shape).is_multiple_of(size))
}

/// Elements per row of the `[out, in]` view.
pub fn input_dim(shape: &[usize]) -> usize {
    shape[1..].iter().product()
}
