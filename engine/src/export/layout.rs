//! The saved layout: which output tensors a source tensor becomes (codes,
//! scale, zero point or offset, or R′), their dtypes and shapes, and each
//! shard's header with every tensor at a precomputed offset.

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};
use safetensors::Dtype;
use serde_json::{Value, json};

use super::ExportMode;
use super::plan::Decision;
use crate::checkpoint::TensorInfo;
use crate::ct::Activations;
pub(super) use crate::ct::layout::{Part, scale_dtype};
use crate::ct::layout::{byte_len, layer_tensors};
use crate::error::{Error, Result};

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
        byte_len(self.dtype, &self.shape)
    }
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
        (Decision::Quantize(s), ExportMode::Packed) => {
            layer_tensors(t, s, acts)?.into_iter().map(|st| e(st.name, st.dtype, st.shape, st.part)).collect()
        }
    })
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
