//! `config.json`'s `quantization_config`, read into what the layer readers need:
//! the method, and per module the stored scheme's parameters (bits, strategy,
//! group size, symmetry, block shape). Tensor names decide a layer's layout;
//! this decides the numbers that the names cannot tell.

use std::path::Path;

use serde_json::Value;

use crate::ct::{self, config::pair};
use crate::error::{Error, Result};

pub use crate::ct::config::{CtConfig, CtGroup, CtWeights};

/// The quantization method a checkpoint declares (or none: inferred from names).
#[derive(Clone, Debug)]
pub enum Method {
    /// No `quantization_config`: everything inferred from tensor names and shapes.
    Inferred,
    CompressedTensors(CtConfig),
    /// `quant_method: "fp8"` with `weight_block_size` (DeepSeek-V3, Qwen3-FP8).
    Fp8Block {
        block: [usize; 2],
    },
    Gptq(GptqConfig),
    Awq(GptqConfig),
    /// A GGUF file: each tensor names its ggml type; `file_type` is llama.cpp's
    /// `general.file_type` (the preset that made it).
    Gguf {
        file_type: Option<u64>,
    },
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Inferred => "inferred",
            Self::CompressedTensors(_) => "compressed-tensors",
            Self::Fp8Block { .. } => "fp8",
            Self::Gptq(_) => "gptq",
            Self::Awq(_) => "awq",
            Self::Gguf { .. } => "gguf",
        }
    }
}

/// GPTQ / AWQ parameters (one scheme for every layer).
#[derive(Clone, Debug, PartialEq)]
pub struct GptqConfig {
    pub bits: u8,
    /// None: one group per input row (`group_size: -1`).
    pub group_size: Option<usize>,
    pub sym: bool,
    pub desc_act: bool,
    /// GPTQ v1 (AutoGPTQ, GPTQModel `checkpoint_format: "gptq"`) stores zero − 1.
    pub zero_offset: i32,
}

/// Reads `dir/config.json`'s `quantization_config` (none, or no config: inferred).
pub fn read(dir: &Path) -> Result<Method> {
    let path = dir.join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(Method::Inferred) };
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&path, format!("config.json is not valid JSON: {e}")))?;
    match json.get("quantization_config") {
        None | Some(Value::Null) => Ok(Method::Inferred),
        Some(q) => parse(q).map_err(|reason| Error::format(&path, format!("quantization_config: {reason}"))),
    }
}

/// Parses a `quantization_config` block.
pub fn parse(q: &Value) -> Result<Method, String> {
    let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
    match method {
        "compressed-tensors" => ct::config::parse(q).map(Method::CompressedTensors),
        "fp8" => {
            let block = q
                .get("weight_block_size")
                .ok_or("fp8 without weight_block_size (only block-scaled FP8 is read)")?;
            Ok(Method::Fp8Block { block: pair(block).ok_or("weight_block_size is not [rows, cols]")? })
        }
        "gptq" => parse_gptq(q, true).map(Method::Gptq),
        "awq" => {
            let version = q.get("version").and_then(Value::as_str).unwrap_or("gemm").to_ascii_lowercase();
            if version != "gemm" {
                return Err(format!("AWQ version '{version}' is not read (only GEMM)"));
            }
            parse_gptq(q, false).map(Method::Awq)
        }
        other => Err(format!("unknown quant_method '{other}'")),
    }
}

fn parse_gptq(q: &Value, gptq: bool) -> Result<GptqConfig, String> {
    let bits = q.get("bits").or_else(|| q.get("w_bit")).and_then(Value::as_u64).unwrap_or(4);
    let allowed: &[u64] = if gptq { &[2, 3, 4, 8] } else { &[4] };
    if !allowed.contains(&bits) {
        return Err(format!("{bits}-bit {} is not a stored layout", if gptq { "GPTQ" } else { "AWQ" }));
    }
    let group = q.get("group_size").or_else(|| q.get("q_group_size")).and_then(Value::as_i64).unwrap_or(128);
    let format =
        q.get("checkpoint_format").or_else(|| q.get("format")).and_then(Value::as_str).unwrap_or("gptq");
    Ok(GptqConfig {
        bits: bits as u8,
        group_size: usize::try_from(group).ok().filter(|&g| g > 0),
        // AWQ stores zero points always (`zero_point: true`); GPTQ says `sym`.
        sym: gptq && q.get("sym").and_then(Value::as_bool).unwrap_or(true),
        desc_act: q.get("desc_act").and_then(Value::as_bool).unwrap_or(false),
        zero_offset: i32::from(gptq && format != "gptq_v2"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_python_re_match_and_ignore_wins() {
        let q: Value = serde_json::json!({
            "quant_method": "compressed-tensors", "format": "mixed-precision",
            "ignore": ["lm_head", "re:.*pooler.*"],
            "config_groups": {
                "group_0": {"targets": ["re:^a$"], "format": "pack-quantized",
                    "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": 128}},
                "group_1": {"targets": ["Linear"],
                    "weights": {"num_bits": 8, "type": "float", "symmetric": true, "strategy": "channel"},
                    "input_activations": {"num_bits": 8}}}});
        let Ok(Method::CompressedTensors(c)) = parse(&q) else { panic!("not compressed-tensors") };
        assert_eq!(c.group_for("a").map(|g| g.name.as_str()), Some("group_0"));
        assert_eq!(c.group_for("ab").map(|g| g.weights.format.as_str()), Some("float-quantized"));
        assert!(c.group_for("lm_head").is_none());
        assert!(c.group_for("bert.pooler.dense").is_none());
    }

    #[test]
    fn gptq_v1_has_the_zero_offset_and_unknown_methods_are_refused() {
        let v1 =
            parse(&serde_json::json!({"quant_method": "gptq", "bits": 3, "group_size": -1, "sym": false}));
        let Ok(Method::Gptq(g)) = v1 else { panic!("not gptq") };
        assert_eq!((g.bits, g.group_size, g.sym, g.zero_offset), (3, None, false, 1));
        let v2 = parse(&serde_json::json!({"quant_method": "gptq", "checkpoint_format": "gptq_v2"}));
        assert!(matches!(v2, Ok(Method::Gptq(GptqConfig { zero_offset: 0, .. }))));
        let e = parse(&serde_json::json!({"quant_method": "bitsandbytes"})).unwrap_err();
        assert_eq!(e, "unknown quant_method 'bitsandbytes'");
        assert!(parse(&serde_json::json!({"quant_method": "gptq", "bits": 5})).is_err());
    }
}
