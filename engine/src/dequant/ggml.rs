//! llama.cpp's block types decoded for the views: R′ bit for bit as ggml gives
//! it, with each sub-block's (S, m) as the slices `format::GgmlFormat` reads
//! (docs/numerics.md, "llama.cpp's types").

use rayon::prelude::*;

use crate::format::{GgmlFormat, NumberFormat, SliceParams, WorkDtype};
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
    let bytes = quantize_rows(ty, values, cols, imatrix)?;
    let decoded = decode(ty, &bytes, cols, Vec::new()).map_err(|r| crate::Error::decode(None, r))?;
    Ok((bytes, decoded))
}

/// `values` (rows of `cols`) quantized to `ty` by ggml's own search: the
/// stored blocks, or a one-line error when a row is not whole blocks.
pub fn quantize_rows(
    ty: GgmlType,
    values: &[f32],
    cols: usize,
    imatrix: Option<&[f32]>,
) -> crate::Result<Vec<u8>> {
    if cols == 0 || !(cols as u64).is_multiple_of(ty.block) {
        return Err(crate::Error::Scheme(format!(
            "{} needs rows of whole {}-element blocks; these rows hold {cols} (llama.cpp picks another type here)",
            ty.name.to_ascii_lowercase(),
            ty.block
        )));
    }
    crate::ggml::quant::quantize(ty, values, cols, imatrix)
}

/// Stored blocks of `ty` (rows of `cols` values) decoded: R′ bit for bit as
/// ggml gives it (written into `values`' memory, kept from layer to layer),
/// with each sub-block's (S, m) as the slices.
pub fn decode(
    ty: GgmlType,
    bytes: &[u8],
    cols: usize,
    mut values: Vec<f32>,
) -> std::result::Result<super::Decoded, String> {
    dequantize_into(ty, bytes, &mut values)?;
    let params = params(ty, bytes)?;
    let map = super::SliceMap::Groups(ty.sub_block());
    Ok(super::Decoded { values, params, map, cols, work: WorkDtype::F32, global: None })
}

/// Each sub-block's (S, m) of stored blocks as slice parameters, with the
/// range of R′ it can reach as the clip range.
pub fn params(ty: GgmlType, bytes: &[u8]) -> std::result::Result<Vec<SliceParams>, String> {
    let f = GgmlFormat::new(ty);
    Ok(sub_params(ty, bytes)?
        .into_par_iter()
        .map(|(scale, offset)| {
            let (a, b) = (scale * f.qmin() - offset, scale * f.qmax() - offset);
            SliceParams { scale, zero_point: 0, offset, lo: a.min(b), hi: a.max(b) }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::WorkDtype;
    use crate::ggml::block_scales;

    /// The teaching panel's super-block reading agrees with the decoder's (S, m)
    /// for every sub-block, and a worked example on the grid gives R′ back.
    #[test]
    fn block_scales_give_each_sub_blocks_step_and_min() {
        let cols = 512;
        let values: Vec<f32> = (0..2 * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3).collect();
        for name in ["Q4_K", "Q2_K", "Q3_K", "Q5_K", "Q6_K", "IQ4_XS", "Q4_0", "Q4_1", "Q8_0", "IQ4_NL"] {
            let ty = GgmlType::from_name(name).unwrap();
            let (bytes, d) = quantize_decoded(ty, &values, cols, None).unwrap();
            for (k, p) in d.params.iter().enumerate() {
                let s = block_scales(ty, &bytes, cols, k).unwrap();
                let step = s.sc.map_or(s.d, |sc| s.d * sc as f32);
                assert_eq!(step.to_bits(), p.scale.to_bits(), "{name} slice {k}");
                let min = match (s.dmin, s.mn) {
                    (Some(dmin), Some(mn)) => dmin * mn as f32,
                    (Some(m), None) => -m,
                    _ => 0.0,
                };
                assert_eq!(min.to_bits(), p.offset.to_bits(), "{name} slice {k}");
            }
            assert!(block_scales(ty, &bytes, cols, d.params.len()).is_none());
            let on_grid = d.values[cols + 5];
            let p = d.params[d.map.index(1, 5, cols)];
            let ex = crate::explain::worked_example(
                crate::FormatKind::Ggml(ty),
                &p,
                on_grid,
                WorkDtype::F32,
                None,
            )
            .unwrap();
            assert_eq!(ex.dequantized.to_bits(), on_grid.to_bits(), "{name}");
        }
    }
}
