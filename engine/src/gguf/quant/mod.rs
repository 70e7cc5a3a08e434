//! ggml's quantizers, byte for byte: a row of f32 values becomes the blocks of a
//! ggml type exactly as `ggml_quantize_chunk` writes them, with or without an
//! importance matrix (llama-imatrix's per-column weights).

use super::GgmlType;
use crate::error::Result;

/// The types this module quantizes.
pub fn quantizes(ty: GgmlType) -> bool {
    let _ = ty;
    false
}

/// `src` (rows of `n_per_row` values, row-major) as ggml's blocks of `ty`, the
/// bytes `ggml_quantize_chunk(ty, src, dst, 0, rows, n_per_row, imatrix)` writes.
/// `imatrix`, when given, holds one weight per column (`n_per_row` values).
pub fn quantize(ty: GgmlType, src: &[f32], n_per_row: usize, imatrix: Option<&[f32]>) -> Result<Vec<u8>> {
    let _ = (src, n_per_row, imatrix);
    Err(crate::error::Error::Scheme(format!("ggml type {} cannot be quantized yet", ty.name)))
}
