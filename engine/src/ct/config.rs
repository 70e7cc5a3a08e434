//! The `quantization_config` block of config.json in both directions
//! (FORMATS.md §6, §7): the config groups a save writes (one per stored
//! layout, [`groups`]) and the block's JSON, and the parsed form the reader
//! matches modules against ([`CtConfig`]).

use regex::Regex;
use serde_json::{Value, json};

use super::format::{Activations, CtFormat, ct_format, infer, weight_type};
use crate::format::{ScaleStorage, spec};
use crate::scheme::{Calibration, FormatKind, Granularity, Mapping, Scheme};

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

/// Parses a compressed-tensors `quantization_config` block.
pub fn parse(q: &Value) -> Result<CtConfig, String> {
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
    let named = group_format.or(Some(top).filter(|f| !f.is_empty() && *f != "mixed-precision"));
    let format = if let Some(f) = named {
        f.to_string()
    } else {
        let e8m0 = w.get("scale_dtype").and_then(Value::as_str) == Some("torch.uint8");
        infer(float, bits, group_size, e8m0, has_input).name().to_string()
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

/// A `[rows, cols]` pair of positive sizes.
pub(crate) fn pair(v: &Value) -> Option<[usize; 2]> {
    let a = v.as_array()?;
    match a.as_slice() {
        [r, c] => Some([r.as_u64()? as usize, c.as_u64()? as usize]).filter(|b| b[0] > 0 && b[1] > 0),
        _ => None,
    }
}

/// Layers that share a stored layout: one config group of the save.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigGroup {
    /// Every scheme in the group, first seen first (calibrations may differ).
    pub schemes: Vec<Scheme>,
    /// The quantized modules (weight names without `.weight`), in file order.
    pub modules: Vec<String>,
    /// Whether every weight in it is 2-D (a plain Linear).
    pub all_2d: bool,
}

impl ConfigGroup {
    /// The stored layout as a short form: `format:granularity[:asym]`.
    pub fn layout(&self) -> String {
        let s = &self.schemes[0];
        let asym = if s.mapping == Mapping::Asymmetric { ":asym" } else { "" };
        format!("{}:{}{asym}", s.format, s.granularity)
    }
}

/// The config groups of a save from its quantized weights (name, shape,
/// scheme) in file order: one group per [`config_group_key`].
pub fn groups<'a>(layers: impl IntoIterator<Item = (&'a str, &'a [usize], Scheme)>) -> Vec<ConfigGroup> {
    let mut groups: Vec<ConfigGroup> = Vec::new();
    for (name, shape, s) in layers {
        let module = name.strip_suffix(".weight").unwrap_or(name).to_string();
        let key = config_group_key(&s);
        let i = if let Some(i) = groups.iter().position(|g| config_group_key(&g.schemes[0]) == key) {
            i
        } else {
            groups.push(ConfigGroup { schemes: vec![s], modules: Vec::new(), all_2d: true });
            groups.len() - 1
        };
        let g = &mut groups[i];
        if !g.schemes.contains(&s) {
            g.schemes.push(s);
        }
        g.modules.push(module);
        g.all_2d &= shape.len() == 2;
    }
    groups
}

/// The compressed-tensors `quantization_config` block, as compressed-tensors
/// 0.19 writes it (FORMATS.md §7): one group per stored layout, each with its
/// `format`; `mixed-precision` at the top when the groups' formats differ.
/// `ignore` lists the Linear modules left unquantized.
pub fn quantization_config(groups: &[ConfigGroup], ignore: &[String], acts: Activations) -> Value {
    // One group of plain Linear weights is written as llm-compressor does;
    // otherwise each group names its layers exactly, so no two groups overlap.
    let exact = groups.len() > 1 || groups.iter().any(|g| !g.all_2d);
    let formats: Vec<&str> = groups
        .iter()
        .map(|g| ct_format(&g.schemes[0], acts).map_or(CtFormat::NaiveQuantized.name(), CtFormat::name))
        .collect();
    let mixed = formats.windows(2).any(|w| w[0] != w[1]);
    let mut config_groups = serde_json::Map::new();
    for (i, (g, format)) in groups.iter().zip(&formats).enumerate() {
        let targets: Vec<String> = if exact {
            g.modules.iter().map(|n| format!("re:^{}$", regex_escape(n))).collect()
        } else {
            vec!["Linear".into()]
        };
        let s = &g.schemes[0];
        let g = json!({
            "format": format,
            "targets": targets,
            "weights": weights_args(s),
            "input_activations": input_activations(acts, s),
            "output_activations": null,
        });
        config_groups.insert(format!("group_{i}"), g);
    }
    let format = if mixed { "mixed-precision" } else { formats.first().copied().unwrap_or("pack-quantized") };
    json!({
        "quant_method": "compressed-tensors",
        "format": format,
        "quantization_status": "compressed",
        "ignore": ignore,
        "config_groups": config_groups,
        "global_compression_ratio": null,
        "kv_cache_scheme": null,
        "sparsity_config": {},
        "transform_config": {},
        "version": CT_VERSION,
    })
}

/// The compressed-tensors version whose serialization this block follows.
const CT_VERSION: &str = "0.19.0";

/// The `weights` arguments of one group (observer fields omitted, as 0.20 does).
fn weights_args(s: &Scheme) -> Value {
    let (strategy, group_size) = match s.granularity {
        Granularity::Tensor => ("tensor", Value::Null),
        Granularity::Channel { .. } => ("channel", Value::Null),
        // NVFP4's groups sit under a per-tensor global scale.
        Granularity::Group { size } if s.format == FormatKind::Nvfp4 => ("tensor_group", json!(size)),
        Granularity::Group { size } => ("group", json!(size)),
        Granularity::Block { .. } => ("block", Value::Null),
    };
    let block = match s.granularity {
        Granularity::Block { size } => json!([size, size]),
        _ => Value::Null,
    };
    let scale_dtype = match spec(s.format).map(|f| f.scale_storage) {
        Ok(ScaleStorage::E4M3) => json!("torch.float8_e4m3fn"),
        Ok(ScaleStorage::E8M0) => json!("torch.uint8"),
        _ => Value::Null,
    };
    let ty = weight_type(s).unwrap_or("int");
    let asym_int = ty == "int" && s.mapping == Mapping::Asymmetric;
    json!({
        "num_bits": spec(s.format).map_or(8, |f| f.bits),
        "type": ty,
        "symmetric": s.mapping == Mapping::Symmetric,
        "strategy": strategy,
        "group_size": group_size,
        "dynamic": false,
        // GPTQ's static order leaves the scales in column order: no g_idx.
        "actorder": if s.calibration == Calibration::Gptq { json!("static") } else { Value::Null },
        "block_structure": block,
        "scale_dtype": scale_dtype,
        "zp_dtype": if asym_int { json!("torch.int8") } else { Value::Null },
    })
}

/// The `input_activations` of a group: dynamic per-token, or null. With
/// 128×128 weight blocks (FP8_BLOCK) the inputs are scaled per group of 128.
fn input_activations(acts: Activations, s: &Scheme) -> Value {
    let ty = match acts {
        Activations::None => return Value::Null,
        Activations::Int8Dynamic => "int",
        Activations::Fp8Dynamic => "float",
    };
    let (strategy, group_size) = match s.granularity {
        Granularity::Block { size } => ("group", json!(size)),
        _ => ("token", Value::Null),
    };
    json!({
        "num_bits": 8, "type": ty, "symmetric": true, "strategy": strategy, "group_size": group_size,
        "dynamic": true, "actorder": null, "block_structure": null, "observer": null,
        "observer_kwargs": {}, "scale_dtype": null, "zp_dtype": null,
    })
}

/// Schemes that share a config group: the same stored layout (calibration and
/// manual ranges differ per layer but leave no trace in the layout).
pub fn config_group_key(s: &Scheme) -> (FormatKind, Mapping, Granularity) {
    (s.format, s.mapping, s.granularity)
}

fn regex_escape(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}
