//! `config.json`'s `quantization_config`, read into what the layer readers need:
//! the method, and per module the stored scheme's parameters (bits, strategy,
//! group size, symmetry, block shape). Tensor names decide a layer's layout;
//! this decides the numbers that the names cannot tell.

use std::path::Path;

use regex::Regex;
use serde_json::Value;

use crate::error::{Error, Result};

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
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Inferred => "inferred",
            Self::CompressedTensors(_) => "compressed-tensors",
            Self::Fp8Block { .. } => "fp8",
            Self::Gptq(_) => "gptq",
            Self::Awq(_) => "awq",
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

/// One compressed-tensors config group's weight scheme.
#[derive(Clone, Debug, PartialEq)]
pub struct CtWeights {
    pub format: String,
    pub bits: u8,
    pub float: bool,
    pub symmetric: bool,
    /// "tensor", "channel", "group", "block", "tensor_group".
    pub strategy: String,
    pub group_size: Option<usize>,
    pub block: Option<[usize; 2]>,
}

#[derive(Clone, Debug)]
pub struct CtGroup {
    pub name: String,
    targets: Vec<Target>,
    pub weights: CtWeights,
}

#[derive(Clone, Debug)]
enum Target {
    /// A class name such as `Linear`: any module that stores quantized tensors.
    Class,
    Regex(Regex),
    Name(String),
}

impl Target {
    fn parse(s: &str) -> Result<Self, String> {
        if let Some(re) = s.strip_prefix("re:") {
            // Python's re.match: anchored at the start only.
            Regex::new(&format!("^(?:{re})")).map(Self::Regex).map_err(|e| format!("target '{s}': {e}"))
        } else if s.chars().next().is_some_and(char::is_uppercase) && !s.contains('.') {
            Ok(Self::Class)
        } else {
            Ok(Self::Name(s.to_string()))
        }
    }

    fn matches(&self, module: &str) -> bool {
        match self {
            Self::Class => true,
            Self::Regex(re) => re.is_match(module),
            Self::Name(n) => module == n || module.ends_with(&format!(".{n}")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CtConfig {
    pub format: String,
    pub groups: Vec<CtGroup>,
    ignore: Vec<Target>,
}

impl CtConfig {
    /// The group whose targets match `module`, unless `ignore` lists it.
    pub fn group_for(&self, module: &str) -> Option<&CtGroup> {
        if self.ignore.iter().any(|t| !matches!(t, Target::Class) && t.matches(module)) {
            return None;
        }
        // An explicit name or regex wins over a class target.
        let explicit =
            |g: &&CtGroup| g.targets.iter().any(|t| !matches!(t, Target::Class) && t.matches(module));
        self.groups
            .iter()
            .find(explicit)
            .or_else(|| self.groups.iter().find(|g| g.targets.iter().any(|t| t.matches(module))))
    }
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
        "compressed-tensors" => parse_ct(q).map(Method::CompressedTensors),
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

fn pair(v: &Value) -> Option<[usize; 2]> {
    let a = v.as_array()?;
    match a.as_slice() {
        [r, c] => Some([r.as_u64()? as usize, c.as_u64()? as usize]).filter(|b| b[0] > 0 && b[1] > 0),
        _ => None,
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

fn parse_ct(q: &Value) -> Result<CtConfig, String> {
    let format = q.get("format").and_then(Value::as_str).unwrap_or("").to_string();
    let targets = |v: Option<&Value>| -> Result<Vec<Target>, String> {
        v.and_then(Value::as_array)
            .map_or(Ok(Vec::new()), |a| a.iter().filter_map(Value::as_str).map(Target::parse).collect())
    };
    let ignore = targets(q.get("ignore"))?;
    let mut groups = Vec::new();
    for (name, g) in q.get("config_groups").and_then(Value::as_object).ok_or("no config_groups")? {
        let Some(w) = g.get("weights").filter(|w| !w.is_null()) else { continue };
        let has_input = g.get("input_activations").is_some_and(|a| !a.is_null());
        let weights = ct_weights(w, g.get("format").and_then(Value::as_str), &format, has_input)
            .map_err(|e| format!("{name}: {e}"))?;
        groups.push(CtGroup { name: name.clone(), targets: targets(g.get("targets"))?, weights });
    }
    Ok(CtConfig { format, groups, ignore })
}

fn ct_weights(
    w: &Value,
    group_format: Option<&str>,
    top: &str,
    has_input: bool,
) -> Result<CtWeights, String> {
    let bits = w.get("num_bits").and_then(Value::as_u64).ok_or("weights without num_bits")?;
    let float = w.get("type").and_then(Value::as_str) == Some("float");
    let strategy = w.get("strategy").and_then(Value::as_str).unwrap_or("tensor").to_string();
    let group_size = w.get("group_size").and_then(Value::as_u64).map(|g| g as usize).filter(|&g| g > 0);
    let block = w.get("block_structure").and_then(pair);
    // FORMATS.md §6: the group's format, else the top level's, else inferred.
    let format = match group_format.or(Some(top).filter(|f| !f.is_empty() && *f != "mixed-precision")) {
        Some(f) => f.to_string(),
        None => match (float, bits, group_size, has_input) {
            (true, 4, Some(32), _) => "mxfp4-pack-quantized".into(),
            (true, 8, Some(32), _) if w.get("scale_dtype").and_then(Value::as_str) == Some("torch.uint8") => {
                "mxfp8-quantized".into()
            }
            (true, 4, Some(16), _) => "nvfp4-pack-quantized".into(),
            (false, _, _, true) => "int-quantized".into(),
            (false, _, _, false) => "pack-quantized".into(),
            (true, _, _, true) => "float-quantized".into(),
            (true, _, _, false) => "naive-quantized".into(),
        },
    };
    Ok(CtWeights {
        format,
        bits: u8::try_from(bits).map_err(|_| format!("num_bits {bits}"))?,
        float,
        symmetric: w.get("symmetric").and_then(Value::as_bool).unwrap_or(true),
        strategy,
        group_size,
        block,
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
