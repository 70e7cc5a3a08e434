//! A `pack-quantized` tensor's codes and zero points, read from a checkpoint:
//! the reader decodes the rows in place, the save's read-back compares codes.

use safetensors::Dtype;

use super::bitpack::{bytes_to_words, unpack_cols, words_per_line};
use crate::checkpoint::Checkpoint;
use crate::dequant::Codes;

/// A `pack-quantized` tensor `base` (`X.weight`) of `[rows, cols]` at `bits`:
/// its packed rows, read in place.
pub(crate) fn packed_codes<'a>(
    ckpt: &'a Checkpoint,
    base: &str,
    (rows, cols): (usize, usize),
    bits: u8,
) -> Result<Codes<'a>, String> {
    let p = ckpt.tensor(&format!("{base}_packed")).map_err(|e| e.to_string())?;
    let wpl = words_per_line(cols, bits);
    if p.dtype != Dtype::I32 || p.shape != [rows, wpl] {
        return Err(format!("_packed stored as {:?} {:?}", p.dtype, p.shape));
    }
    Ok(Codes::Biased { bytes: ckpt.bytes(p), stride: 4 * wpl, bits })
}

/// Zero points of a `pack-quantized` tensor, packed down the columns of a
/// `[zr, zc]` grid.
pub(crate) fn packed_zero_points(
    ckpt: &Checkpoint,
    base: &str,
    bits: u8,
    (zr, zc): (usize, usize),
) -> Result<Vec<i32>, String> {
    let z = ckpt.tensor(&format!("{base}_zero_point")).map_err(|e| e.to_string())?;
    let words = bytes_to_words(ckpt.bytes(z));
    if z.dtype != Dtype::I32
        || z.shape.first() != Some(&words_per_line(zr, bits))
        || words.len() != words_per_line(zr, bits) * zc
    {
        return Err(format!("_zero_point stored as {:?} {:?}", z.dtype, z.shape));
    }
    Ok(unpack_cols(&words, zr, zc, bits).into_iter().map(i32::from).collect())
}

/// Codes (one byte each, i8 for INT) and zero points of a `pack-quantized`
/// tensor `base` (`X.weight`) of `[rows, cols]` at `bits`; zero points packed
/// down the columns of a `zp` = `[zr, zc]` grid when asymmetric. (The save's
/// read-back compares codes; the reader decodes the packed rows in place.)
pub fn unpack_pack_quantized(
    ckpt: &Checkpoint,
    base: &str,
    shape: (usize, usize),
    bits: u8,
    zp: Option<(usize, usize)>,
) -> Result<(Vec<u8>, Vec<i32>), String> {
    let codes = packed_codes(ckpt, base, shape, bits)?.to_code_bytes(shape.0, shape.1)?;
    let zps = match zp {
        None => Vec::new(),
        Some(grid) => packed_zero_points(ckpt, base, bits, grid)?,
    };
    Ok((codes, zps))
}
