//! The saved layout: which output tensors a source tensor becomes (codes,
//! scale, zero point or offset, or R′), their dtypes and shapes, and each
//! shard's header with every tensor at a precomputed offset.

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};
use safetensors::Dtype;
use serde_json::{Value, json};

use super::ExportMode;
use super::bitpack::words_per_line;
use super::ctformat::{Activations, CtFormat, ct_format, input_dim};
use super::plan::Decision;
use crate::checkpoint::TensorInfo;
use crate::error::{Error, Result};
use crate::format::{OffsetKind, ScaleStorage, Spec, spec};
use crate::scheme::{Granularity, Mapping, Scheme};

/// The dtype scales are stored in: the weight's own float dtype.
pub(crate) fn scale_dtype(dtype: Dtype) -> Dtype {
    match dtype {
        Dtype::BF16 | Dtype::F16 | Dtype::F64 => dtype,
        _ => Dtype::F32,
    }
}

/// The dtype a format's block scales are stored in for a weight of `dtype`.
pub(crate) fn stored_scale_dtype(f: &Spec, dtype: Dtype) -> Dtype {
    match f.scale_storage {
        ScaleStorage::Work => scale_dtype(dtype),
        ScaleStorage::E4M3 => Dtype::F8_E4M3,
        ScaleStorage::E8M0 => Dtype::U8,
    }
}

/// f32 → the nearest value of `dtype` (what the file will hold).
pub(super) fn round_to(dtype: Dtype, x: f32) -> f32 {
    match dtype {
        Dtype::BF16 => bf16::from_f32(x).to_f32(),
        Dtype::F16 => f16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// The output dtype of a fake-quant tensor.
pub(super) fn fake_dtype(dtype: Dtype) -> Dtype {
    match dtype {
        Dtype::BF16 | Dtype::F16 | Dtype::F64 | Dtype::F32 => dtype,
        _ => Dtype::F32,
    }
}

pub(super) fn scale_shape(shape: &[usize], g: Granularity) -> Vec<usize> {
    let rows = shape[0];
    let rest: usize = shape[1..].iter().product();
    match g {
        Granularity::Tensor => vec![1],
        Granularity::Channel { .. } => vec![rows, 1],
        Granularity::Group { size } => vec![rows, rest.div_ceil(size)],
        Granularity::Block { size } => vec![rows.div_ceil(size), rest.div_ceil(size)],
    }
}

/// What fills one output tensor.
#[derive(Clone, Copy, Debug)]
pub(super) enum Part {
    Copy,
    Fake,
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

/// One output tensor: where its bytes come from and where they go.
pub(super) struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Index of the source tensor.
    pub source: usize,
    pub part: Part,
    /// Byte offset in the shard's data section.
    pub offset: u64,
}

impl Entry {
    pub(super) fn len(&self) -> u64 {
        (self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8) as u64
    }
}

/// Bytes a packed, weight-only save writes for `t` under `s`: the sum of its
/// output tensors (codes, block scales, zero points, global scale, shape), so the
/// sweep and the planner count exactly what the save writes. Tensors a save
/// would not quantize (1-D and 0-D) are counted as their `[1, n]` view under the
/// granularity analysis falls back to.
pub fn stored_bytes(t: &TensorInfo, s: &Scheme) -> u64 {
    let (g, _) = crate::slicing::resolve(&t.shape, s.granularity).unwrap_or((Granularity::Tensor, None));
    let mut view = t.clone();
    if t.shape.len() < 2 {
        view.shape = vec![1, t.numel()];
    }
    let s = Scheme { granularity: g, ..*s };
    let entries = entries_for(&view, 0, &Decision::Quantize(s), ExportMode::Packed, Activations::None);
    entries.map_or(0, |v| v.iter().map(Entry::len).sum())
}

/// The output tensors of one source tensor.
pub(super) fn entries_for(
    t: &TensorInfo,
    idx: usize,
    d: &Decision,
    mode: ExportMode,
    acts: Activations,
) -> Result<Vec<Entry>> {
    let e = |name: String, dtype, shape: Vec<usize>, part| Entry {
        name,
        dtype,
        shape,
        source: idx,
        part,
        offset: 0,
    };
    Ok(match (d, mode) {
        (Decision::Keep(_), _) => vec![e(t.name.clone(), t.dtype, t.shape.clone(), Part::Copy)],
        (Decision::Quantize(_), ExportMode::FakeQuant) => {
            vec![e(t.name.clone(), fake_dtype(t.dtype), t.shape.clone(), Part::Fake)]
        }
        (Decision::Quantize(s), ExportMode::Packed)
            if ct_format(s, acts) == Some(CtFormat::PackQuantized) =>
        {
            pack_quantized_entries(t, s)?.into_iter().map(|(n, dt, sh, p)| e(n, dt, sh, p)).collect()
        }
        (Decision::Quantize(s), ExportMode::Packed) => {
            let f = spec(s.format)?;
            let ss = scale_shape(&t.shape, s.granularity);
            let sd = stored_scale_dtype(&f, t.dtype);
            let codes = if f.is_float && f.bits == 4 {
                let cols = input_dim(&t.shape);
                e(format!("{}_packed", t.name), Dtype::U8, vec![t.shape[0], cols.div_ceil(2)], Part::Nibbles)
            } else {
                e(t.name.clone(), f.code_dtype, t.shape.clone(), Part::Codes)
            };
            let mut v = vec![codes, e(format!("{}_scale", t.name), sd, ss.clone(), Part::Scale)];
            if f.two_level {
                v.push(e(format!("{}_global_scale", t.name), Dtype::F32, vec![1], Part::GlobalScale));
            }
            match (s.mapping, f.offset_kind) {
                (Mapping::Symmetric, _) => {}
                (Mapping::Asymmetric, OffsetKind::ZeroPoint) => {
                    v.push(e(format!("{}_zero_point", t.name), Dtype::I8, ss, Part::ZeroPoint));
                }
                (Mapping::Asymmetric, OffsetKind::Real) => {
                    v.push(e(format!("{}_offset", t.name), sd, ss, Part::Offset));
                }
            }
            v
        }
    })
}

/// The tensors of a `pack-quantized` layer (FORMATS.md §2): name, dtype, shape, part.
/// An output tensor before its offset is known: name, dtype, shape, part.
type Planned = (String, Dtype, Vec<usize>, Part);

fn pack_quantized_entries(t: &TensorInfo, s: &Scheme) -> Result<Vec<Planned>> {
    let bits = spec(s.format)?.bits;
    let (rows, cols) = (t.shape[0], input_dim(&t.shape));
    let ss = scale_shape(&t.shape, s.granularity);
    let mut v = vec![
        (
            format!("{}_packed", t.name),
            Dtype::I32,
            vec![rows, words_per_line(cols, bits)],
            Part::PackedCodes { bits, rows, cols },
        ),
        (format!("{}_scale", t.name), scale_dtype(t.dtype), ss.clone(), Part::Scale),
        (format!("{}_shape", t.name), Dtype::I64, vec![t.shape.len()], Part::Shape),
    ];
    if s.mapping == Mapping::Asymmetric {
        let (zr, zc) = (ss[0], ss[1..].iter().product::<usize>());
        let mut zshape = vec![words_per_line(zr, bits)];
        zshape.extend_from_slice(&ss[1..]);
        v.push((
            format!("{}_zero_point", t.name),
            Dtype::I32,
            zshape,
            Part::PackedZeroPoint { bits, rows: zr, cols: zc },
        ));
    }
    Ok(v)
}

/// One shard's output tensors at their offsets and its header (length prefix
/// included, padded to 8 bytes); tensors are sorted largest alignment first, as
/// the safetensors crate orders them, so each starts at a multiple of its
/// element size.
pub(super) fn shard_layout(
    tensors: &[TensorInfo],
    decisions: &[Decision],
    shard: usize,
    mode: ExportMode,
    acts: Activations,
    path: &Path,
) -> Result<(Vec<Entry>, Vec<u8>, u64)> {
    let mut entries: Vec<Entry> = Vec::new();
    for (i, t) in tensors.iter().enumerate().filter(|(_, t)| t.shard == shard) {
        entries.extend(entries_for(t, i, &decisions[i], mode, acts)?);
    }
    entries.sort_by(|a, b| b.dtype.bitsize().cmp(&a.dtype.bitsize()).then_with(|| a.name.cmp(&b.name)));
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    let mut schemes = BTreeMap::new();
    for e in &mut entries {
        e.offset = offset;
        let end = offset + e.len();
        header.insert(
            e.name.clone(),
            json!({"dtype": format!("{:?}", e.dtype), "shape": e.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
        if let Decision::Quantize(s) = &decisions[e.source] {
            schemes.insert(tensors[e.source].name.clone(), s.to_string());
        }
    }
    header.insert("__metadata__".into(), Value::Object(metadata(&schemes, mode)));
    let mut head = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::format(path, format!("cannot encode header: {e}")))?;
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut prefix = (head.len() as u64).to_le_bytes().to_vec();
    prefix.extend_from_slice(&head);
    Ok((entries, prefix, offset))
}

/// The `__metadata__` block: format, quantscope version, and the scheme of each
/// quantized tensor (the only record of schemes no runtime config can name).
fn metadata(schemes: &BTreeMap<String, String>, mode: ExportMode) -> serde_json::Map<String, Value> {
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), json!("pt"));
    meta.insert("quantscope_version".into(), json!(env!("CARGO_PKG_VERSION")));
    if !schemes.is_empty() {
        let mode = match mode {
            ExportMode::Packed => "packed",
            ExportMode::FakeQuant => "fake-quant",
        };
        meta.insert("quantscope_mode".into(), json!(mode));
        meta.insert("quantscope_schemes".into(), json!(serde_json::to_string(schemes).unwrap_or_default()));
    }
    meta
}
