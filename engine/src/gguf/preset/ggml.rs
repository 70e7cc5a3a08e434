//! The ggml types the rules name, looked up in `types::TYPES` at compile time (a
//! missing id fails the build, never a run), and ggml's `ggml_is_quantized`.

use crate::ggml::types::{GgmlType, TYPES};

const fn by_id(id: u32) -> GgmlType {
    let mut i = 0;
    while i < TYPES.len() {
        if TYPES[i].id == id {
            return TYPES[i];
        }
        i += 1;
    }
    panic!("ggml type id missing from types::TYPES")
}

pub(super) const F32: GgmlType = by_id(0);
pub(super) const F16: GgmlType = by_id(1);
pub(super) const Q4_0: GgmlType = by_id(2);
pub(super) const Q4_1: GgmlType = by_id(3);
pub(super) const Q5_0: GgmlType = by_id(6);
pub(super) const Q5_1: GgmlType = by_id(7);
pub(super) const Q8_0: GgmlType = by_id(8);
pub(super) const Q2_K: GgmlType = by_id(10);
pub(super) const Q3_K: GgmlType = by_id(11);
pub(super) const Q4_K: GgmlType = by_id(12);
pub(super) const Q5_K: GgmlType = by_id(13);
pub(super) const Q6_K: GgmlType = by_id(14);
pub(super) const IQ2_XXS: GgmlType = by_id(16);
pub(super) const IQ2_XS: GgmlType = by_id(17);
pub(super) const IQ3_XXS: GgmlType = by_id(18);
pub(super) const IQ1_S: GgmlType = by_id(19);
pub(super) const IQ4_NL: GgmlType = by_id(20);
pub(super) const IQ3_S: GgmlType = by_id(21);
pub(super) const IQ2_S: GgmlType = by_id(22);
pub(super) const IQ4_XS: GgmlType = by_id(23);
pub(super) const IQ1_M: GgmlType = by_id(29);
pub(super) const BF16: GgmlType = by_id(30);
pub(super) const TQ1_0: GgmlType = by_id(34);
pub(super) const TQ2_0: GgmlType = by_id(35);
pub(super) const MXFP4: GgmlType = by_id(39);
pub(super) const Q1_0: GgmlType = by_id(41);

/// `ggml_is_quantized`: every block type. The float and integer types (F32, F16,
/// BF16, F64, I8…I64) are the ones of one element per block.
pub(super) fn is_quantized(t: GgmlType) -> bool {
    t.block > 1
}

/// A ggml type by its name, any case (quantize.cpp's `parse_ggml_type` compares
/// with `ggml_type_name`, case-insensitively).
pub(super) fn by_name(name: &str) -> Option<GgmlType> {
    TYPES.iter().copied().find(|t| t.name.eq_ignore_ascii_case(name))
}
