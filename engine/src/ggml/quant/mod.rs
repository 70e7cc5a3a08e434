//! ggml's quantizers, byte for byte: a row of f32 values becomes the blocks of a
//! ggml type exactly as `ggml_quantize_chunk` writes them, with or without an
//! importance matrix (llama-imatrix's per-column weights).
//!
//! Followed: ggml-quants.c of the llama.cpp vendored in llama-cpp-python 0.3.36
//! (and ggml.c's `ggml_quantize_chunk`, ggml-common.h's block layouts,
//! ggml-impl.h's FP16 conversion). Every sum runs in the C's order in f32 with
//! no fused multiply-add: that library's ggml-base (where these functions live)
//! is built without `-mfma`, and has no FMA instruction. Checked against the
//! library by `tests/python/gguf_quant_reference.py`.
//!
//! - `arith`: `nearest_int`, the FP16 conversion, C's float → int cast;
//! - `lanes`: sixteen blocks searched at once, each lane the scalar C;
//! - `search`: the shared searches (`make_qx_quants`, `make_q3_quants`,
//!   `make_qkx2/3_quants`, `make_qp_quants`);
//! - `legacy`: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, MXFP4;
//! - `kquants`: Q4_K, Q5_K (and the steps all K-quants share);
//! - `kquants16`: Q2_K, Q3_K, Q6_K (sub-blocks of 16);
//! - `iq4`: IQ4_NL, IQ4_XS.
//!
//! Rows are independent (each type's imatrix path works a row at a time, and
//! its `_ref` path block by block), so rows run in parallel and the bytes do
//! not depend on the thread count.

mod arith;
mod iq4;
mod kquants;
mod kquants16;
mod lanes;
mod legacy;
mod search;

use rayon::prelude::*;

use super::GgmlType;
use crate::error::{Error, Result};

/// One row of values (and the imatrix, one weight per column) into its bytes.
type RowFn = fn(&[f32], Option<&[f32]>, &mut [u8]);

fn row_fn(ty: GgmlType) -> Option<RowFn> {
    Some(match ty.name {
        "Q8_0" => legacy::q8_0,
        "Q4_0" => legacy::q4_0,
        "Q4_1" => legacy::q4_1,
        "Q5_0" => legacy::q5_0,
        "Q5_1" => legacy::q5_1,
        "MXFP4" => legacy::mxfp4,
        "Q2_K" => kquants16::q2_k,
        "Q3_K" => kquants16::q3_k,
        "Q4_K" => kquants::q4_k,
        "Q5_K" => kquants::q5_k,
        "Q6_K" => kquants16::q6_k,
        "IQ4_NL" => iq4::iq4_nl,
        "IQ4_XS" => iq4::iq4_xs,
        _ => return None,
    })
}

/// The types this module quantizes.
pub fn quantizes(ty: GgmlType) -> bool {
    row_fn(ty).is_some()
}

/// `src` (rows of `n_per_row` values, row-major) as ggml's blocks of `ty`, the
/// bytes `ggml_quantize_chunk(ty, src, dst, 0, rows, n_per_row, imatrix)` writes.
/// `imatrix`, when given, holds one weight per column (`n_per_row` values).
pub fn quantize(ty: GgmlType, src: &[f32], n_per_row: usize, imatrix: Option<&[f32]>) -> Result<Vec<u8>> {
    let row = row_fn(ty).ok_or_else(|| refuse(format!("ggml type {} cannot be quantized", ty.name)))?;
    let row_bytes = check(ty, src, n_per_row, imatrix)?;
    let mut out = vec![0u8; src.len() / n_per_row * row_bytes];
    // About 64 Ki values per task: enough work to outweigh the scheduling.
    let min_rows = (65_536 / n_per_row).max(1);
    out.par_chunks_mut(row_bytes)
        .zip(src.par_chunks(n_per_row))
        .with_min_len(min_rows)
        .for_each(|(o, x)| row(x, imatrix, o));
    Ok(out)
}

fn refuse(reason: String) -> Error {
    Error::Plan { tensor: None, reason }
}

/// The bytes of one row, once the shapes agree and every value is finite
/// (ggml does not check; with ±inf or NaN in a block it writes an infinite or
/// meaningless scale).
fn check(ty: GgmlType, src: &[f32], n_per_row: usize, imatrix: Option<&[f32]>) -> Result<usize> {
    let name = ty.name;
    let row_bytes = ty.row_bytes(n_per_row as u64).filter(|_| n_per_row > 0).ok_or_else(|| {
        refuse(format!("{name} rows of {n_per_row} values are not whole blocks of {}", ty.block))
    })?;
    if !src.len().is_multiple_of(n_per_row) {
        return Err(refuse(format!("{} values are not whole rows of {n_per_row}", src.len())));
    }
    if let Some(w) = imatrix {
        if w.len() != n_per_row {
            return Err(refuse(format!("the imatrix has {} weights for rows of {n_per_row}", w.len())));
        }
        if let Some(c) = w.iter().position(|v| !v.is_finite()) {
            return Err(refuse(format!("imatrix weight {c} is {}", w[c])));
        }
    }
    // A branch-free pass (it vectorizes); the position only once one is found.
    let finite = |c: &[f32]| c.iter().fold(true, |all, v| all & v.is_finite());
    if !src.par_chunks(1 << 16).all(finite) {
        let i = src.iter().position(|v| !v.is_finite()).unwrap_or_default();
        let (r, c) = (i / n_per_row, i % n_per_row);
        return Err(refuse(format!("value {} at row {r}, column {c} cannot be quantized", src[i])));
    }
    Ok(row_bytes as usize)
}
