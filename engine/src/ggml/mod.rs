//! ggml's tensor types as numbers: every type's block layout (`types`), and
//! the arithmetic of the block types llama.cpp stores weights in, bit for bit
//! as ggml computes it: decoding (`legacy`, `kquants`) and ggml's own
//! quantizers (`quant`). Nothing here knows a file; GGUF, the file format, is
//! `crate::gguf`.

mod kquants;
mod legacy;
pub mod quant;
pub mod types;

pub use types::GgmlType;

use rayon::prelude::*;

/// Blocks one parallel decoding task takes (256 K elements of a K-quant).
const DECODE_CHUNK_BLOCKS: usize = 1024;

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
    if !decodes(ty) {
        return Err(format!("ggml type {} is listed but not decoded yet", ty.name));
    }
    // Blocks are independent: chunks of them decode in parallel, each into
    // its own place in `out`.
    let (block, size) = (ty.block as usize, ty.block_bytes as usize);
    let n = bytes.len() / size * block;
    // A buffer reused at the same size is written over, not zeroed first.
    if out.len() != n {
        out.clear();
        out.resize(n, 0.0);
    }
    out.par_chunks_mut(DECODE_CHUNK_BLOCKS * block)
        .zip(bytes.par_chunks(DECODE_CHUNK_BLOCKS * size))
        .for_each_init(Vec::new, |tmp, (dst, src)| {
            if decode_blocks(ty, src, tmp) {
                dst.copy_from_slice(tmp);
            }
        });
    Ok(())
}

/// Whole blocks of a decodable `ty` decoded into `out` on this thread (false
/// for a type without a decoder; [`dequantize_into`] checks the rest).
pub(crate) fn decode_blocks(ty: GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> bool {
    legacy::dequantize(ty, bytes, out).or_else(|| kquants::dequantize(ty, bytes, out)).is_some()
}

/// Each sub-block's effective scale S and min m (R′ = S·v(q) − m, the
/// `format::GgmlFormat` view) of `bytes`, whole blocks of `ty`, in element order.
pub fn sub_params(ty: GgmlType, bytes: &[u8]) -> std::result::Result<Vec<(f32, f32)>, String> {
    let size = ty.block_bytes as usize;
    let per_block = (ty.block as usize / ty.sub_block()).max(1);
    let mut out = vec![(0.0, 0.0); bytes.len() / size * per_block];
    let ok = out
        .par_chunks_mut(DECODE_CHUNK_BLOCKS * per_block)
        .zip(bytes.par_chunks(DECODE_CHUNK_BLOCKS * size))
        .all(|(dst, src)| {
            let mut tmp = Vec::with_capacity(dst.len());
            let done = src.chunks_exact(size).all(|b| {
                legacy::sub_params(ty.name, b, &mut tmp) || kquants::sub_params(ty.name, b, &mut tmp)
            });
            done && tmp.len() == dst.len() && {
                dst.copy_from_slice(&tmp);
                true
            }
        });
    if ok { Ok(out) } else { Err(format!("ggml type {} has no sub-block view", ty.name)) }
}

/// One sub-block's scales as a block stores them: the F16 `d` (and `dmin`:
/// a K-quant's min scale, or Q4_1's / Q5_1's min itself), and a K-quant's
/// integer sub-block scale and min (`sc_bits` wide; IQ4_XS and Q3_K less 32).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockScales {
    pub d: f32,
    pub dmin: Option<f32>,
    pub sc: Option<i32>,
    pub mn: Option<i32>,
    pub sc_bits: u8,
}

/// The scales of slice `slice` (a sub-block: row-major over rows of `cols`)
/// in `bytes`, whole blocks of `ty`; None when it is out of range.
pub fn block_scales(ty: GgmlType, bytes: &[u8], cols: usize, slice: usize) -> Option<BlockScales> {
    let (block, sub) = (usize::try_from(ty.block).ok()?, ty.sub_block());
    let per_row = cols / sub.max(1);
    let (row, g) = (slice / per_row.max(1), slice % per_row.max(1));
    let index = row * (cols / block.max(1)) + g * sub / block.max(1);
    let size = usize::try_from(ty.block_bytes).ok()?;
    let b = bytes.get(index * size..(index + 1) * size)?;
    let j = (g * sub % block) / sub;
    legacy::scales(ty.name, b).or_else(|| kquants::scales(ty.name, b, j))
}
