//! Raw little-endian tensor bytes → f32, in parallel chunks.
//! F16/BF16 go through `half`, F64 is narrowed, FP8 uses the format's table.

use half::{bf16, f16};
use rayon::prelude::*;
use safetensors::Dtype;

use crate::format::Fp8Format;

const CHUNK_ELEMS: usize = 1 << 16;

/// Whether quantscope can decode (and so quantize) this dtype; `Err` says why not.
pub fn quantizable(dtype: Dtype) -> Result<(), String> {
    match dtype {
        Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64 | Dtype::F8_E4M3 | Dtype::F8_E5M2 => Ok(()),
        Dtype::BOOL => Err("bool tensor: not a weight".into()),
        Dtype::I8
        | Dtype::U8
        | Dtype::I16
        | Dtype::U16
        | Dtype::I32
        | Dtype::U32
        | Dtype::I64
        | Dtype::U64 => Err(format!("integer tensor ({dtype:?}): already integer, not quantized")),
        other => Err(format!("unsupported dtype {other:?}")),
    }
}

/// Bytes per element for the dtypes [`decode`] accepts.
fn elem_size(dtype: Dtype) -> usize {
    dtype.bitsize() / 8
}

/// Decodes `bytes` into `out` on the calling thread (the caller checked `dtype`).
pub(crate) fn decode_chunk(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        // Little-endian hosts: a byte copy into the (aligned) output, whatever the
        // source's alignment (unaligned F32 tensors are legal safetensors).
        Dtype::F32 if cfg!(target_endian = "little") => {
            let n = out.len().min(bytes.len() / 4);
            bytemuck::cast_slice_mut::<f32, u8>(&mut out[..n]).copy_from_slice(&bytes[..n * 4]);
        }
        Dtype::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        Dtype::F64 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *o = f64::from_le_bytes(a) as f32;
            }
        }
        Dtype::F8_E4M3 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = Fp8Format::E4M3.value(b);
            }
        }
        Dtype::F8_E5M2 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = Fp8Format::E5M2.value(b);
            }
        }
        _ => unreachable!("decode() checks quantizable() first"),
    }
}

/// Decodes one cache-sized chunk into `buf` (resized to fit, memory reused): the
/// streamed paths decode a row or chunk at a time instead of the whole tensor.
pub(crate) fn decode_chunk_into(dtype: Dtype, bytes: &[u8], buf: &mut Vec<f32>) {
    buf.resize(bytes.len() / elem_size(dtype), 0.0);
    decode_chunk(dtype, bytes, buf);
}

/// Decodes a whole tensor. The caller has checked that `bytes` matches the shape.
pub fn decode(dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let mut out = Vec::new();
    decode_into(dtype, bytes, &mut out)?;
    Ok(out)
}

/// Decodes into `out`, reusing its memory: a sweep over many tensors then pays
/// the first-touch page faults of a fresh multi-MB buffer once, not per tensor
/// (they cost more than the decoding itself).
pub fn decode_into(dtype: Dtype, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
    quantizable(dtype)?;
    let size = elem_size(dtype);
    if !bytes.len().is_multiple_of(size) {
        return Err(format!("{} bytes is not a whole number of {dtype:?} elements", bytes.len()));
    }
    // Every element is overwritten below; resize only zero-fills growth.
    out.resize(bytes.len() / size, 0.0);
    out.par_chunks_mut(CHUNK_ELEMS)
        .zip(bytes.par_chunks(CHUNK_ELEMS * size))
        .for_each(|(o, b)| decode_chunk(dtype, b, o));
    Ok(())
}

/// f32 → the bytes of `dtype` (F32/F16/BF16/F64), for writing fake-quant output
/// and generated samples.
pub fn encode(dtype: Dtype, values: &[f32]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(values.len() * elem_size(dtype));
    match dtype {
        Dtype::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Dtype::F16 => values.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        Dtype::BF16 => values.iter().for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        Dtype::F64 => values.iter().for_each(|v| out.extend_from_slice(&f64::from(*v).to_le_bytes())),
        other => return Err(format!("cannot encode {other:?}")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_float_dtypes() {
        let v = [1.5f32, -2.25, 0.0, 65280.0];
        for dt in [Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::F64] {
            let bytes = encode(dt, &v).unwrap();
            assert_eq!(decode(dt, &bytes).unwrap(), v, "{dt:?}");
        }
    }

    #[test]
    fn fp8_uses_the_table_and_ints_are_refused() {
        assert_eq!(decode(Dtype::F8_E4M3, &[0x7E, 0x80]).unwrap(), [448.0, -0.0]);
        assert!(decode(Dtype::I64, &[0; 8]).unwrap_err().contains("integer"));
        assert!(decode(Dtype::F32, &[0; 5]).is_err());
    }

    #[test]
    fn f32_decodes_from_any_alignment() {
        let v: Vec<f32> = (0..1001).map(|i| i as f32 * -0.37).collect();
        let bytes = encode(Dtype::F32, &v).unwrap();
        let mut buf = Vec::new();
        for off in 0..4 {
            let mut shifted = vec![0u8; off];
            shifted.extend_from_slice(&bytes);
            decode_chunk_into(Dtype::F32, &shifted[off..], &mut buf);
            assert_eq!(buf, v, "offset {off}");
        }
        // A short final element is left out, never a panic.
        decode_chunk_into(Dtype::F32, &bytes[..4003], &mut buf);
        assert_eq!(buf, v[..1000]);
    }

    #[test]
    fn parallel_chunks_cover_everything() {
        let v: Vec<f32> = (0..200_003).map(|i| i as f32).collect();
        let back = decode(Dtype::F32, &encode(Dtype::F32, &v).unwrap()).unwrap();
        assert_eq!(back, v);
    }
}
