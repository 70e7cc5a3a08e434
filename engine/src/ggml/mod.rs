//! ggml's tensor types as numbers: every type's block layout (`types`), and
//! the arithmetic of the block types llama.cpp stores weights in, bit for bit
//! as ggml computes it: decoding (`legacy`, `kquants`). Nothing here knows a
//! file; GGUF, the file format, is `crate::gguf`.

mod kquants;
mod legacy;
pub mod types;

pub use types::GgmlType;

/// Whether `ty` is a plain dtype (one value per element, no blocks).
pub fn is_plain(ty: GgmlType) -> bool {
    ty.block == 1
}

/// Whether values of type `ty` can be decoded.
pub fn decodes(ty: GgmlType) -> bool {
    legacy::decodes(ty) || kquants::decodes(ty)
}

/// `bytes` (whole blocks of `ty`) decoded into `out` as ggml dequantizes them.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> std::result::Result<(), String> {
    if !(bytes.len() as u64).is_multiple_of(ty.block_bytes) {
        return Err(format!("{} bytes are not whole {} blocks", bytes.len(), ty.name));
    }
    if is_plain(ty) && !legacy::decodes(ty) {
        return Err(format!("{} values are not weights", ty.name));
    }
    legacy::dequantize(ty, bytes, out)
        .or_else(|| kquants::dequantize(ty, bytes, out))
        .ok_or_else(|| format!("ggml type {} is listed but not decoded yet", ty.name))
}

/// Each sub-block's effective scale S and min m (R′ = S·v(q) − m, the
/// `format::GgmlFormat` view) of `bytes`, whole blocks of `ty`, in element order.
pub fn sub_params(ty: GgmlType, bytes: &[u8]) -> std::result::Result<Vec<(f32, f32)>, String> {
    let mut out = Vec::with_capacity(bytes.len() / ty.block_bytes.max(1) as usize * 8);
    for b in bytes.chunks_exact(ty.block_bytes as usize) {
        if !(legacy::sub_params(ty.name, b, &mut out) || kquants::sub_params(ty.name, b, &mut out)) {
            return Err(format!("ggml type {} has no sub-block view", ty.name));
        }
    }
    Ok(out)
}

/// `values` (rows of `cols`, row-major) quantized to `ty` by ggml's own search
/// (weighted by `imatrix`, one weight per column, when given), and that
/// quantization decoded: R′ bit for bit as ggml gives it, with each
/// sub-block's (S, m) as slices of `cols / sub_block` per row.
pub fn quantize_decoded(
    ty: GgmlType,
    values: &[f32],
    cols: usize,
    imatrix: Option<&[f32]>,
) -> crate::Result<(Vec<u8>, crate::dequant::Decoded)> {
    if cols == 0 || !(cols as u64).is_multiple_of(ty.block) {
        return Err(crate::Error::Scheme(format!(
            "{} needs rows of whole {}-element blocks; these rows hold {cols} (llama.cpp picks another type here)",
            ty.name.to_ascii_lowercase(),
            ty.block
        )));
    }
    let bytes = crate::gguf::quant::quantize(ty, values, cols, imatrix)?;
    let decoded = decode(ty, &bytes, cols).map_err(|r| crate::Error::decode(None, r))?;
    Ok((bytes, decoded))
}

/// Stored blocks of `ty` (rows of `cols` values) decoded: R′ bit for bit as
/// ggml gives it, with each sub-block's (S, m) as the slices.
pub fn decode(ty: GgmlType, bytes: &[u8], cols: usize) -> std::result::Result<crate::dequant::Decoded, String> {
    use crate::format::{GgmlFormat, NumberFormat, SliceParams, WorkDtype};
    let mut values = Vec::new();
    dequantize_into(ty, bytes, &mut values)?;
    let f = GgmlFormat::new(ty);
    let params = sub_params(ty, bytes)?
        .into_iter()
        .map(|(scale, offset)| {
            let (a, b) = (scale * f.qmin() - offset, scale * f.qmax() - offset);
            SliceParams { scale, zero_point: 0, offset, lo: a.min(b), hi: a.max(b) }
        })
        .collect();
    let map = crate::dequant::SliceMap::Groups(ty.sub_block());
    Ok(crate::dequant::Decoded { values, params, map, cols, work: WorkDtype::F32, global: None })
}
