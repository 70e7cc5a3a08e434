//! The model facts the rules read, as llama.cpp's loader takes them from GGUF
//! metadata (`llama_model_base::load_hparams` in src/llama-model.cpp and each
//! architecture's `load_arch_hparams` in src/models/) and from its tensor list
//! (the guessed file type in src/llama-model-loader.cpp).

use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufTensor, Value};

use super::tensor::llama_order;

/// What llama-quantize's rules know about a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// `general.architecture` (`llama`, `qwen2`, `falcon`, …).
    pub arch: String,
    /// `{arch}.block_count`: llama.cpp's `n_layer_all`, the layer count of the
    /// `ffn_down`/`ffn_gate`/`ffn_up` rules.
    pub n_layer: u32,
    /// `{arch}.attention.head_count` of the first layer (a per-layer array's first value).
    pub n_head: u32,
    /// `{arch}.attention.head_count_kv` of the first layer; `n_head` when absent.
    pub n_head_kv: u32,
    /// `{arch}.expert_count`, 0 for a dense model.
    pub n_expert: u32,
    /// llama.cpp's `LLM_TYPE_70B`: the architectures that call 80 blocks (68 for
    /// jais2) a 70B model, whose `attn_v` gets more bits.
    pub is_70b: bool,
    /// The `general.file_type` COPY writes: the input's own, or llama.cpp's guess
    /// from its most common tensor type (with the `LLAMA_FTYPE_GUESSED` bit, 1024).
    pub input_file_type: u32,
}

impl ModelInfo {
    /// The facts of an opened GGUF file; `Err` names the file and the key.
    pub fn from_file(file: &GgufFile) -> Result<Self> {
        Self::from_metadata(&file.path, &file.metadata, &file.tensors)
    }

    /// From a file's metadata and tensors; `source` names them in messages, and
    /// `Err` names the missing or malformed key.
    pub fn from_metadata(
        source: impl AsRef<Path>,
        metadata: &[(String, Value)],
        tensors: &[GgufTensor],
    ) -> Result<Self> {
        Self::read(metadata, tensors).map_err(|why| Error::format(source.as_ref(), why))
    }

    fn read(metadata: &[(String, Value)], tensors: &[GgufTensor]) -> Result<Self, String> {
        let get = |key: &str| metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let arch = match get("general.architecture") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("general.architecture is not a string".into()),
            None => return Err("no general.architecture".into()),
        };
        // a scalar, or a per-layer array whose first value llama.cpp's n_gqa() reads
        let number = |suffix: &str| -> Result<Option<u32>, String> {
            let key = format!("{arch}.{suffix}");
            let value = match get(&key) {
                None => return Ok(None),
                Some(Value::Array(a)) => a.first(),
                Some(v) => Some(v),
            };
            value
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("{} is not a non-negative 32-bit integer", key.escape_debug()))
        };
        let n_layer =
            number("block_count")?.ok_or_else(|| format!("no {}.block_count", arch.escape_debug()))?;
        let n_head = number("attention.head_count")?.unwrap_or(0);
        let n_head_kv = number("attention.head_count_kv")?.unwrap_or(n_head);
        let n_expert = number("expert_count")?.unwrap_or(0);
        let n_layer_main = n_layer.saturating_sub(number("nextn_predict_layers")?.unwrap_or(0));
        let is_70b = match arch.as_str() {
            "llama" => n_expert != 8 && n_layer_main == 80 && n_head != n_head_kv,
            "deci" | "olmo" | "qwen2" => n_layer_main == 80,
            "jais2" => n_layer_main == 68,
            _ => false,
        };
        let input_file_type = match get("general.file_type").map(Value::as_u64) {
            Some(Some(n)) => n as u32,
            Some(None) => return Err("general.file_type is not an integer".into()),
            None => guessed_file_type(tensors),
        };
        Ok(Self { arch, n_layer, n_head, n_head_kv, n_expert, is_70b, input_file_type })
    }

    /// llama.cpp's `n_gqa()`: query heads per KV head (0 without KV heads).
    pub fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }
}

/// The loader's guess: the ftype of the most common tensor type (the first to
/// reach the top count, in llama.cpp's tensor order), marked as guessed.
fn guessed_file_type(tensors: &[GgufTensor]) -> u32 {
    const GUESSED: u32 = 1024;
    let mut sorted: Vec<&GgufTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| llama_order(&a.name, &b.name));
    let mut counts = std::collections::BTreeMap::new();
    let (mut top, mut top_type) = (0, 0);
    for t in sorted {
        let n = counts.entry(t.ggml_type.id).or_insert(0u32);
        *n += 1;
        if *n > top {
            (top, top_type) = (*n, t.ggml_type.id);
        }
    }
    ftype_of(top_type) | GUESSED
}

/// The `llama_ftype` the loader names after a tensor type (ALL_F32 when none).
fn ftype_of(type_id: u32) -> u32 {
    const BY_TYPE: [(u32, u32); 27] = [
        (0, 0),
        (1, 1),
        (30, 32),
        (2, 2),
        (3, 3),
        (6, 8),
        (7, 9),
        (8, 7),
        (10, 10),
        (11, 12),
        (12, 15),
        (13, 17),
        (14, 18),
        (34, 36),
        (35, 37),
        (16, 19),
        (17, 20),
        (22, 28),
        (18, 23),
        (19, 24),
        (29, 31),
        (20, 25),
        (23, 30),
        (21, 26),
        (40, 39),
        (41, 40),
        (42, 41),
    ];
    BY_TYPE.iter().find(|(t, _)| *t == type_id).map_or(0, |&(_, f)| f)
}
