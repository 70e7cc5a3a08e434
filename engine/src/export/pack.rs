//! Quantizing one tensor for saving: scales rounded to their stored dtype
//! first, then codes and R′ with exactly those, the metrics of what is stored,
//! and the bytes of each output part.

use rayon::prelude::*;
use safetensors::Dtype;

use super::layout::{Entry, Part, round_to, scale_dtype};
use crate::analyze::{Options, analyze};
use crate::ct::bitpack::{pack_cols, pack_rows, words_to_bytes};
use crate::decode;
use crate::dequant::{Decoded, SliceMap};
use crate::error::{Error, Result};
use crate::format::{Fp8Format, NumberFormat, SliceParams, WithFormat, WorkDtype, dispatch_in, e8m0_byte};
use crate::measure::metrics_against;
use crate::metrics::{ErrorSums, Metrics, error_sums, error_sums_scalar};
use crate::scheme::Scheme;
use crate::slicing::{row_layout, slice_indexer};

/// Elements per verification digest: R′ is compared chunk by chunk.
const DIGEST_CHUNK: usize = 1 << 16;

/// A quantized tensor, ready to write.
pub(super) struct Packed {
    pub params: Vec<SliceParams>,
    pub codes: Vec<u8>,
    /// R′ as a reader of the output sees it (fake-quant: after rounding to the dtype).
    pub dequantized: Vec<f32>,
    pub metrics: Metrics,
    /// A two-level format's global scale.
    pub global: Option<f32>,
}

/// What one tensor is packed from.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    /// R, the original values: the slice parameters and the metrics are theirs.
    pub values: &'a [f32],
    /// An R′ a method computed beyond the weight alone (GPTQ), already on the
    /// scheme's grid: the codes are taken from it instead of from R.
    pub solved: Option<&'a [f32]>,
}

/// `global_amax`: the amax fused siblings share for a two-level format's global
/// scale (None = this tensor's own).
pub(super) fn pack(
    src: Source<'_>,
    shape: &[usize],
    scheme: &Scheme,
    dtype: Dtype,
    global_amax: Option<f32>,
) -> Result<Packed> {
    struct Run<'a>(Source<'a>, &'a [usize], &'a Scheme, Dtype, Option<f32>);
    impl WithFormat for Run<'_> {
        type Out = Result<Packed>;
        fn run<F: NumberFormat>(self, f: F) -> Result<Packed> {
            pack_with(f, self.0, self.1, self.2, self.3, self.4)
        }
    }
    if src.solved.is_some_and(|s| s.len() != src.values.len()) {
        return Err(Error::Plan {
            tensor: None,
            reason: "the solved R′ does not match the tensor's size".into(),
        });
    }
    dispatch_in(scheme.format, WorkDtype::of(dtype), Run(src, shape, scheme, dtype, global_amax))?
}

fn pack_with<F: NumberFormat>(
    fmt: F,
    src: Source<'_>,
    shape: &[usize],
    scheme: &Scheme,
    dtype: Dtype,
    global_amax: Option<f32>,
) -> Result<Packed> {
    let values = src.values;
    let opts = Options { work: fmt.work(), global_amax, ..Options::default() };
    let r = analyze(values, shape, &scheme.range_scheme(), &opts)?;
    let fmt = match r.global_scale {
        Some(gs) => fmt.with_global(gs),
        None => fmt,
    };
    let sd = scale_dtype(dtype);
    let params: Vec<SliceParams> =
        r.params.iter().map(|p| fmt.stored_params(p, scheme.mapping, |x| round_to(sd, x))).collect();
    if let Some(p) = params.iter().find(|p| !p.scale.is_finite() || !p.offset.is_finite()) {
        return Err(Error::Plan {
            tensor: None,
            reason: format!("scale {} does not fit in {sd:?}", p.scale),
        });
    }
    let slice = slice_indexer(shape, r.granularity);
    let mut codes = vec![0u8; values.len()];
    let mut deq = vec![0f32; values.len()];
    src.solved
        .unwrap_or(values)
        .par_chunks(DIGEST_CHUNK)
        .zip(codes.par_chunks_mut(DIGEST_CHUNK))
        .zip(deq.par_chunks_mut(DIGEST_CHUNK))
        .enumerate()
        .for_each(|(ci, ((xs, cs), ds))| {
            for (k, ((&x, c), d)) in xs.iter().zip(cs.iter_mut()).zip(ds.iter_mut()).enumerate() {
                let p = &params[slice(ci * DIGEST_CHUNK + k)];
                let q = fmt.quantize(x, p);
                *c = fmt.code_to_byte(q);
                *d = fmt.dequantize(q, p);
            }
        });
    if src.solved.is_some() {
        // R against the stored R′, which the fused pass below cannot recompute from R.
        let d = Decoded {
            values: deq,
            params,
            map: SliceMap::of(r.granularity),
            cols: shape.last().copied().unwrap_or(1),
            work: fmt.work(),
            global: r.global_scale,
        };
        let metrics = metrics_against(values, &d);
        return Ok(Packed {
            params: d.params,
            codes,
            dequantized: d.values,
            metrics,
            global: r.global_scale,
        });
    }
    // Metrics of the stored parameters: slice by slice through the same fused
    // pass as `analyze` where slices are row runs; element by element for a
    // channel axis other than 0 (fake-quant only).
    let parts: Vec<ErrorSums> = match row_layout(shape, r.granularity) {
        Some((row_len, group)) => values
            .par_chunks(row_len)
            .enumerate()
            .map(|(row, xs)| {
                xs.chunks(group).enumerate().fold(ErrorSums::default(), |acc, (g, gx)| {
                    let p = &params[row * row_len.div_ceil(group) + g];
                    acc.merge(&error_sums::<F, false>(fmt, gx, p, &mut []))
                })
            })
            .collect(),
        None => values
            .par_chunks(DIGEST_CHUNK)
            .enumerate()
            .map(|(ci, xs)| {
                xs.iter().enumerate().fold(ErrorSums::default(), |acc, (k, x)| {
                    let p = &params[slice(ci * DIGEST_CHUNK + k)];
                    acc.merge(&error_sums_scalar::<F, false>(fmt, std::slice::from_ref(x), p, &mut []))
                })
            })
            .collect(),
    };
    let sums = parts.iter().fold(ErrorSums::default(), ErrorSums::merge).with_signal(r.stats.sum_sq);
    Ok(Packed { params, codes, dequantized: deq, metrics: sums.metrics(), global: r.global_scale })
}

/// FNV-1a over the f32 bit patterns, one digest per chunk.
pub(super) fn chunk_digests(xs: &[f32]) -> Vec<u64> {
    xs.par_chunks(DIGEST_CHUNK)
        .map(|c| {
            c.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
                x.to_bits()
                    .to_le_bytes()
                    .iter()
                    .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
            })
        })
        .collect()
}

pub(super) fn encode_floats(dtype: Dtype, xs: &[f32], tensor: &str) -> Result<Vec<u8>> {
    decode::encode(dtype, xs).map_err(|r| Error::decode(Some(tensor), r))
}

/// The bytes of one output part of a quantized tensor. A fake-quant part also
/// rounds `packed.dequantized` to the stored dtype (what a reader gets back).
pub(super) fn part_bytes(e: &Entry, src_shape: &[usize], packed: &mut Packed) -> Result<Vec<u8>> {
    let as_i8 = |b: &[u8]| b.iter().map(|&x| i8::from_le_bytes([x])).collect::<Vec<i8>>();
    Ok(match e.part {
        Part::PackedCodes { bits, rows, cols } => {
            words_to_bytes(&pack_rows(&as_i8(&std::mem::take(&mut packed.codes)), rows, cols, bits))
        }
        Part::PackedZeroPoint { bits, rows, cols } => {
            let z: Vec<i8> = packed.params.iter().map(|p| p.zero_point as i8).collect();
            words_to_bytes(&pack_cols(&z, rows, cols, bits))
        }
        Part::Shape => src_shape.iter().flat_map(|&d| (d as i64).to_le_bytes()).collect(),
        Part::Codes => std::mem::take(&mut packed.codes),
        Part::Fake => {
            let b = encode_floats(e.dtype, &packed.dequantized, &e.name)?;
            packed.dequantized = decode::decode(e.dtype, &b).map_err(|r| Error::decode(Some(&e.name), r))?;
            b
        }
        Part::Scale => match e.dtype {
            // Block scales are already values of these dtypes (MicroFormat::params).
            Dtype::F8_E4M3 => packed.params.iter().map(|p| Fp8Format::E4M3.encode(p.scale)).collect(),
            Dtype::U8 => packed.params.iter().map(|p| e8m0_byte(p.scale)).collect(),
            _ => encode_floats(e.dtype, &packed.params.iter().map(|p| p.scale).collect::<Vec<_>>(), &e.name)?,
        },
        Part::Nibbles => {
            let cols = crate::ct::format::input_dim(src_shape);
            crate::ct::bitpack::pack_nibbles(&std::mem::take(&mut packed.codes), cols)
        }
        Part::GlobalScale => packed.global.unwrap_or(1.0).to_le_bytes().to_vec(),
        Part::Offset => {
            encode_floats(e.dtype, &packed.params.iter().map(|p| p.offset).collect::<Vec<_>>(), &e.name)?
        }
        Part::ZeroPoint => packed.params.iter().map(|p| (p.zero_point as i8).to_le_bytes()[0]).collect(),
        Part::Copy => {
            return Err(Error::Plan {
                tensor: Some(e.name.clone()),
                reason: "a copied tensor has no quantized bytes".into(),
            });
        }
    })
}
