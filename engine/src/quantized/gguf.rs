//! A GGUF file's quantized tensors as layers: every tensor ggml stores as a
//! block type (Q4_K, IQ4_XS, …), in the Hugging Face shape `[rows, cols]`
//! (cols = GGUF's `ne[0]`, the row ggml quantizes), decoded by
//! [`crate::dequant::ggml::decode`]. Plain F32/F16/BF16 tensors are the plain ones.

use super::{Failure, Layer, Layout, Method, QuantizedModel, StoredScheme};
use crate::checkpoint::Checkpoint;
use crate::dequant::Decoded;
use crate::error::{Error, Result};
use crate::ggml::{self, GgmlType};
use crate::scheme::FormatKind;

/// The model's layers, failures and plain tensors.
pub(super) fn model(ckpt: Checkpoint, method: Method) -> QuantizedModel {
    let (mut layers, mut failed, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for t in ckpt.tensors() {
        match t.ggml {
            Some(ty) if !ggml::is_plain(ty) && ggml::decodes(ty) => layers.push(layer(&t.name, &t.shape, ty)),
            Some(ty) if !ggml::is_plain(ty) => failed.push(Failure {
                tensor: t.name.clone(),
                reason: format!("stored as {}, which quantscope lists but does not decode", ty.name),
            }),
            _ => plain.push(t.name.clone()),
        }
    }
    QuantizedModel { ckpt, method, layers, failed, plain }
}

/// How a type is shown: its name, code bits, sub-block and bits per weight.
pub(crate) fn stored_scheme(ty: GgmlType) -> StoredScheme {
    let kind = FormatKind::Ggml(ty);
    StoredScheme {
        format: ty.name.to_string(),
        bits: crate::format::spec(kind).map_or(0, |s| s.bits),
        granularity: "group".into(),
        group_size: Some(ty.sub_block()),
        block: None,
        symmetric: !ty.has_min(),
        scale_dtype: "F16".into(),
        act_order: false,
        short: kind.to_string(),
        bits_per_weight: Some(ty.bits_per_weight()),
    }
}

fn layer(name: &str, shape: &[usize], ty: GgmlType) -> Layer {
    let cols = shape.last().copied().unwrap_or(1);
    let rows = shape.iter().product::<usize>() / cols.max(1);
    Layer {
        name: name.to_string(),
        module: name.strip_suffix(".weight").unwrap_or(name).to_string(),
        shape: vec![rows, cols],
        stored: stored_scheme(ty),
        tensors: vec![name.to_string()],
        layout: Layout::Ggml { ty, rope_heads: None },
        kind: FormatKind::Ggml(ty),
    }
}

/// R′ of one GGUF layer with its sub-blocks' (S, m), rows back in the Hugging
/// Face order when the converter permuted them; R′ is written into `buf`'s
/// memory.
pub(super) fn decode(
    ckpt: &Checkpoint,
    layer: &Layer,
    ty: GgmlType,
    rope_heads: Option<usize>,
    buf: Vec<f32>,
) -> Result<Decoded> {
    let fail = |reason: String| Error::Tensor { path: ckpt.path.clone(), tensor: layer.name.clone(), reason };
    let info = ckpt.tensor(&layer.tensors[0])?;
    let mut d = crate::dequant::ggml::decode(ty, ckpt.bytes(info), layer.shape[1], buf).map_err(fail)?;
    if let Some(heads) = rope_heads {
        let [rows, cols] = [layer.shape[0], layer.shape[1]];
        let groups = d.params.len() / rows.max(1);
        let split = || fail(format!("{heads} heads do not split {rows} rows"));
        d.values = crate::gguf::rope::unpermute_rows(&d.values, rows, cols, heads).ok_or_else(split)?;
        // The sub-blocks move with their rows.
        d.params = crate::gguf::rope::unpermute_rows(&d.params, rows, groups, heads).ok_or_else(split)?;
    }
    Ok(d)
}

/// [`QuantizedModel::aligned_to`] for a GGUF model and a Hugging Face original.
pub(super) fn aligned_to(mut q: QuantizedModel, orig: &Checkpoint) -> QuantizedModel {
    let Some(header) = q.ckpt.gguf().cloned() else { return q };
    let arch = header.arch().unwrap_or_default().to_string();
    let hf = |name: &str| -> Option<String> {
        let n = crate::gguf::names::to_hf(&arch, name)?;
        [n.clone(), format!("bert.{n}")].into_iter().find(|c| orig.tensor(c).is_ok()).or(Some(n))
    };
    for layer in &mut q.layers {
        if let Some(name) = hf(&layer.name) {
            if let Layout::Ggml { rope_heads, .. } = &mut layer.layout {
                *rope_heads = crate::gguf::names::rope_heads(&header, &layer.name);
            }
            layer.module = name.strip_suffix(".weight").unwrap_or(&name).to_string();
            layer.name = name;
        }
    }
    for f in &mut q.failed {
        f.tensor = hf(&f.tensor).unwrap_or_else(|| f.tensor.clone());
    }
    for p in &mut q.plain {
        *p = hf(p).unwrap_or_else(|| p.clone());
    }
    q
}
