//! Which tensors one quantized layer becomes in a compressed-tensors file:
//! names, dtypes and shapes of its codes, scales, zero points or offsets,
//! global scale and `weight_shape` (FORMATS.md §2–§5). The writer lays these
//! out; [`stored_bytes`] adds them up for the sweep and the planner, so both
//! count exactly what a save writes.

use safetensors::Dtype;

use super::bitpack::words_per_line;
use super::format::{Activations, CtFormat, ct_format, input_dim};
use super::names::{GLOBAL_SCALE, OFFSET, PACKED, SCALE, SHAPE, ZERO_POINT, beside};
use crate::checkpoint::TensorInfo;
use crate::error::Result;
use crate::format::{OffsetKind, ScaleStorage, Spec, spec};
use crate::scheme::{Granularity, Mapping, Scheme};

/// What fills one output tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The source tensor as stored (a layer the save leaves alone).
    Copy,
    /// R′ in the source dtype (the fake-quant layout).
    Fake,
    /// One code per element, in place of the weight.
    Codes,
    Scale,
    ZeroPoint,
    Offset,
    /// pack-quantized codes: `[rows, cols]` b-bit codes packed row by row.
    PackedCodes {
        bits: u8,
        rows: usize,
        cols: usize,
    },
    /// pack-quantized zero points: `[rows, cols]` packed along dim 0.
    PackedZeroPoint {
        bits: u8,
        rows: usize,
        cols: usize,
    },
    /// `weight_shape`: the source shape as I64.
    Shape,
    /// FP4 codes two to a byte, the first element in the low nibble.
    Nibbles,
    /// A two-level format's F32 global scale.
    GlobalScale,
}

/// One tensor of a saved layer.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub part: Part,
}

impl StoredTensor {
    fn new(name: String, dtype: Dtype, shape: Vec<usize>, part: Part) -> Self {
        Self { name, dtype, shape, part }
    }

    /// Its size in the file.
    pub fn bytes(&self) -> u64 {
        byte_len(self.dtype, &self.shape)
    }
}

/// The bytes of a tensor of `dtype` and `shape`.
pub fn byte_len(dtype: Dtype, shape: &[usize]) -> u64 {
    (shape.iter().product::<usize>() * dtype.bitsize() / 8) as u64
}

/// The dtype scales are stored in: the weight's own float dtype.
pub fn scale_dtype(dtype: Dtype) -> Dtype {
    match dtype {
        Dtype::BF16 | Dtype::F16 | Dtype::F64 => dtype,
        _ => Dtype::F32,
    }
}

/// The dtype a format's block scales are stored in for a weight of `dtype`.
pub fn stored_scale_dtype(f: &Spec, dtype: Dtype) -> Dtype {
    match f.scale_storage {
        ScaleStorage::Work => scale_dtype(dtype),
        ScaleStorage::E4M3 => Dtype::F8_E4M3,
        ScaleStorage::E8M0 => Dtype::U8,
    }
}

/// The shape of the scale (and zero-point) grid of a weight of `shape`.
pub fn scale_shape(shape: &[usize], g: Granularity) -> Vec<usize> {
    let rows = shape[0];
    let rest: usize = shape[1..].iter().product();
    match g {
        Granularity::Tensor => vec![1],
        Granularity::Channel { .. } => vec![rows, 1],
        Granularity::Group { size } => vec![rows, rest.div_ceil(size)],
        Granularity::Block { size } => vec![rows.div_ceil(size), rest.div_ceil(size)],
    }
}

/// The tensors the weight `t` becomes when saved packed under `s`.
pub fn layer_tensors(t: &TensorInfo, s: &Scheme, acts: Activations) -> Result<Vec<StoredTensor>> {
    if ct_format(s, acts) == Some(CtFormat::PackQuantized) {
        return pack_quantized_tensors(t, s);
    }
    let f = spec(s.format)?;
    let ss = scale_shape(&t.shape, s.granularity);
    let sd = stored_scale_dtype(&f, t.dtype);
    let codes = if f.is_float && f.bits == 4 {
        let cols = input_dim(&t.shape);
        StoredTensor::new(
            beside(&t.name, PACKED),
            Dtype::U8,
            vec![t.shape[0], cols.div_ceil(2)],
            Part::Nibbles,
        )
    } else {
        StoredTensor::new(t.name.clone(), f.code_dtype, t.shape.clone(), Part::Codes)
    };
    let mut v = vec![codes, StoredTensor::new(beside(&t.name, SCALE), sd, ss.clone(), Part::Scale)];
    if f.two_level {
        v.push(StoredTensor::new(beside(&t.name, GLOBAL_SCALE), Dtype::F32, vec![1], Part::GlobalScale));
    }
    match (s.mapping, f.offset_kind) {
        (Mapping::Symmetric, _) => {}
        (Mapping::Asymmetric, OffsetKind::ZeroPoint) => {
            v.push(StoredTensor::new(beside(&t.name, ZERO_POINT), Dtype::I8, ss, Part::ZeroPoint));
        }
        (Mapping::Asymmetric, OffsetKind::Real) => {
            v.push(StoredTensor::new(beside(&t.name, OFFSET), sd, ss, Part::Offset));
        }
    }
    Ok(v)
}

/// The tensors of a `pack-quantized` layer (FORMATS.md §2).
fn pack_quantized_tensors(t: &TensorInfo, s: &Scheme) -> Result<Vec<StoredTensor>> {
    let bits = spec(s.format)?.bits;
    let (rows, cols) = (t.shape[0], input_dim(&t.shape));
    let ss = scale_shape(&t.shape, s.granularity);
    let mut v = vec![
        StoredTensor::new(
            beside(&t.name, PACKED),
            Dtype::I32,
            vec![rows, words_per_line(cols, bits)],
            Part::PackedCodes { bits, rows, cols },
        ),
        StoredTensor::new(beside(&t.name, SCALE), scale_dtype(t.dtype), ss.clone(), Part::Scale),
        StoredTensor::new(beside(&t.name, SHAPE), Dtype::I64, vec![t.shape.len()], Part::Shape),
    ];
    if s.mapping == Mapping::Asymmetric {
        let (zr, zc) = (ss[0], ss[1..].iter().product::<usize>());
        let mut zshape = vec![words_per_line(zr, bits)];
        zshape.extend_from_slice(&ss[1..]);
        v.push(StoredTensor::new(
            beside(&t.name, ZERO_POINT),
            Dtype::I32,
            zshape,
            Part::PackedZeroPoint { bits, rows: zr, cols: zc },
        ));
    }
    Ok(v)
}

/// Bytes a packed, weight-only save writes for `t` under `s`: the sum of its
/// output tensors (codes, block scales, zero points, global scale, shape).
/// Tensors a save would not quantize (1-D and 0-D) are counted as their
/// `[1, n]` view under the granularity analysis falls back to.
pub fn stored_bytes(t: &TensorInfo, s: &Scheme) -> u64 {
    let (g, _) = crate::slicing::resolve(&t.shape, s.granularity).unwrap_or((Granularity::Tensor, None));
    let mut view = t.clone();
    if t.shape.len() < 2 {
        view.shape = vec![1, t.numel()];
    }
    let s = Scheme { granularity: g, ..*s };
    layer_tensors(&view, &s, Activations::None).map_or(0, |v| v.iter().map(StoredTensor::bytes).sum())
}
