//! llama.cpp's block types decoded for the views: R′ bit for bit as ggml gives
//! it, with each sub-block's (S, m) as the slices `format::GgmlFormat` reads
//! (docs/numerics.md, "llama.cpp's types").

use crate::ggml::{GgmlType, dequantize_into, sub_params};

/// `values` (rows of `cols`, row-major) quantized to `ty` by ggml's own search
/// (weighted by `imatrix`, one weight per column, when given), and that
/// quantization decoded: R′ bit for bit as ggml gives it, with each
/// sub-block's (S, m) as slices of `cols / sub_block` per row.
pub fn quantize_decoded(
    ty: GgmlType,
    values: &[f32],
    cols: usize,
    imatrix: Option<&[f32]>,
) -> crate::Result<(Vec<u8>, super::Decoded)> {
    if cols == 0 || !(cols as u64).is_multiple_of(ty.block) {
        return Err(crate::Error::Scheme(format!(
            "{} needs rows of whole {}-element blocks; these rows hold {cols} (llama.cpp picks another type here)",
            ty.name.to_ascii_lowercase(),
            ty.block
        )));
    }
    let bytes = crate::ggml::quant::quantize(ty, values, cols, imatrix)?;
    let decoded = decode(ty, &bytes, cols).map_err(|r| crate::Error::decode(None, r))?;
    Ok((bytes, decoded))
}

/// Stored blocks of `ty` (rows of `cols` values) decoded: R′ bit for bit as
/// ggml gives it, with each sub-block's (S, m) as the slices.
pub fn decode(ty: GgmlType, bytes: &[u8], cols: usize) -> std::result::Result<super::Decoded, String> {
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
    let map = super::SliceMap::Groups(ty.sub_block());
    Ok(super::Decoded { values, params, map, cols, work: WorkDtype::F32, global: None })
}
