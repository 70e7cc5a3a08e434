//! The tensor names of a compressed-tensors layer, beside its `X.weight`
//! (FORMATS.md §2–§5): the writer appends them, the reader looks them up.

/// Codes stored in place of the weight (`int-quantized`, FP8, MXFP8).
pub const WEIGHT: &str = "weight";
/// Bit-packed codes (`pack-quantized` I32, FP4 U8 nibbles).
pub const PACKED: &str = "weight_packed";
/// The original `[rows, cols]` of a packed weight, I64.
pub const SHAPE: &str = "weight_shape";
/// Per-slice scales.
pub const SCALE: &str = "weight_scale";
/// Block-scaled FP8 (`quant_method: "fp8"`) stores 1/S under this name.
pub const SCALE_INV: &str = "weight_scale_inv";
/// Asymmetric INT zero points.
pub const ZERO_POINT: &str = "weight_zero_point";
/// A real-valued offset (asymmetric mappings without an integer zero point).
pub const OFFSET: &str = "weight_offset";
/// NVFP4's F32 per-tensor global scale.
pub const GLOBAL_SCALE: &str = "weight_global_scale";

/// The name of part `part` (one of the constants) of the weight `weight`
/// (`X.weight` → `X.weight_packed`); a weight not named `.weight` keeps its
/// name as the stem.
pub fn beside(weight: &str, part: &str) -> String {
    format!("{weight}{}", part.strip_prefix(WEIGHT).unwrap_or(part))
}

/// The name of part `part` of module `module` (`X` → `X.weight_scale`).
pub fn of_module(module: &str, part: &str) -> String {
    format!("{module}.{part}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_names_agree() {
        for part in [PACKED, SHAPE, SCALE, ZERO_POINT, OFFSET, GLOBAL_SCALE, WEIGHT] {
            assert_eq!(beside("m.q.weight", part), of_module("m.q", part));
        }
        assert_eq!(beside("bias_like", SCALE), "bias_like_scale");
    }
}
