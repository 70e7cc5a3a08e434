//! GGUF in, GGUF out (`quantscope quantize MODEL.gguf OUT.gguf`): each
//! tensor's type chosen as llama-quantize chooses it (`preset`), or taken from
//! a plan, quantized by ggml's own quantizers (with the importance matrix's
//! weights for the tensors it names) and written as llama-quantize writes a
//! file (`write`): tensors in name order (its loader's map), every metadata
//! entry copied, then `general.quantization_version` and `general.file_type`,
//! then the importance matrix's keys as its command line sets them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::imatrix::Imatrix;
use super::preset::{self, Choice, ModelInfo};
use super::write::{OutTensor, write};
use super::{GgmlType, GgufFile, Value};
use crate::error::{Error, Result};

/// ggml's `GGML_QNT_VERSION`.
const QNT_VERSION: u32 = 2;

/// What a GGUF save does.
#[derive(Clone, Debug)]
pub struct GgufSave {
    pub options: preset::Options,
    /// Types for named tensors that override the preset's choice (a plan).
    pub types: BTreeMap<String, GgmlType>,
    pub imatrix: Option<(std::path::PathBuf, Imatrix)>,
}

/// One tensor of a save, as the summary lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Saved {
    pub name: String,
    pub from: &'static str,
    pub to: &'static str,
    pub reason: String,
    /// Whether the importance matrix weighted it.
    pub imatrix: bool,
}

/// The types every tensor of `g` gets under `save` (preset, then the plan's
/// types), in the file's order.
pub fn choices(g: &GgufFile, save: &GgufSave) -> Result<Vec<Choice>> {
    let info = ModelInfo::from_file(g)?;
    let mut choices = preset::choose(&info, &g.tensors, &save.options)?;
    for c in &mut choices {
        if let Some(&ty) = save.types.get(&c.name) {
            c.reason = format!("plan: {}", ty.name);
            c.to = ty;
        }
    }
    Ok(choices)
}

/// Writes `out` from the GGUF file at `src` under `save`; `progress(done,
/// total)` after each tensor. The source is never overwritten.
pub fn save(src: &Path, out: &Path, save: &GgufSave, progress: &dyn Fn(usize, usize)) -> Result<Vec<Saved>> {
    if same_file(src, out) {
        return Err(Error::format(out, "is the source model: a save never overwrites its source"));
    }
    let g = GgufFile::open(src)?;
    let info = ModelInfo::from_file(&g)?;
    let choices = choices(&g, save)?;
    // llama-quantize walks its loader's map: tensors by name.
    let mut order: Vec<usize> = (0..choices.len()).collect();
    order.sort_by(|&a, &b| choices[a].name.as_bytes().cmp(choices[b].name.as_bytes()));
    let tensors: Vec<OutTensor> = order
        .iter()
        .map(|&i| OutTensor { name: choices[i].name.clone(), ne: g.tensors[i].ne.clone(), ty: choices[i].to })
        .collect();
    let mut set = vec![
        ("general.quantization_version".to_string(), Value::U32(QNT_VERSION)),
        ("general.file_type".to_string(), Value::U32(save.options.file_type(&info))),
    ];
    if let Some((path, m)) = &save.imatrix {
        set.extend(imatrix_keys(path, m));
    }
    let src_bytes = g.raw_bytes();
    let total = order.len();
    write(out, &g.header, src_bytes, &set, &tensors, |k| {
        let bytes = tensor_bytes(&g, &choices[order[k]], save)?;
        progress(k + 1, total);
        Ok(bytes)
    })?;
    Ok(order
        .iter()
        .map(|&i| {
            let c = &choices[i];
            let weighted = c.converted() && weights(save, &c.name, &g.tensors[i].ne).is_some();
            Saved {
                name: c.name.clone(),
                from: c.from.name,
                to: c.to.name,
                reason: c.reason.clone(),
                imatrix: weighted,
            }
        })
        .collect())
}

/// The keys llama-quantize's command line adds with an importance matrix
/// (strings cut to its 127-byte override field).
fn imatrix_keys(path: &Path, m: &Imatrix) -> Vec<(String, Value)> {
    let cut = |s: &str| {
        let mut end = s.len().min(127);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Value::String(s[..end].to_string())
    };
    let mut keys = vec![("quantize.imatrix.file".to_string(), cut(&path.display().to_string()))];
    if let Some(d) = m.datasets.first() {
        keys.push(("quantize.imatrix.dataset".into(), cut(d)));
    }
    keys.push(("quantize.imatrix.entries_count".into(), Value::U32(m.entries.len() as u32)));
    if m.chunk_count > 0 {
        keys.push(("quantize.imatrix.chunks_count".into(), Value::U32(m.chunk_count)));
    }
    keys
}

fn weights<'a>(save: &'a GgufSave, name: &str, ne: &[u64]) -> Option<&'a [f32]> {
    let cols = usize::try_from(*ne.first()?).ok()?;
    save.imatrix.as_ref()?.1.weights(name, cols)
}

/// One tensor's output bytes: the source's when its type stays, else decoded
/// and quantized by ggml's quantizer.
fn tensor_bytes<'g>(g: &'g GgufFile, c: &Choice, save: &GgufSave) -> Result<Cow<'g, [u8]>> {
    let t = g.tensor(&c.name)?;
    if !c.converted() {
        return Ok(Cow::Borrowed(g.bytes(t)));
    }
    let fail = |reason: String| Error::Tensor { path: g.path.clone(), tensor: c.name.clone(), reason };
    if !crate::ggml::is_plain(t.ggml_type) {
        return Err(fail(format!("already {}: quantscope does not requantize", t.ggml_type.name)));
    }
    let values = g.dequantize(&c.name)?;
    let cols = t.ne.first().copied().unwrap_or(1) as usize;
    if c.to.name == "F32" || c.to.name == "F16" || c.to.name == "BF16" {
        return Ok(Cow::Owned(plain_bytes(c.to, &values)));
    }
    let w = weights(save, &c.name, &t.ne);
    crate::ggml::quant::quantize(c.to, &values, cols, w).map(Cow::Owned).map_err(|e| fail(e.to_string()))
}

/// Values as F32, F16 or BF16 bytes (round to nearest even, as ggml converts).
fn plain_bytes(ty: GgmlType, values: &[f32]) -> Vec<u8> {
    match ty.name {
        "F16" => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        "BF16" => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
