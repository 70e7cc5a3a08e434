//! config.json: the compressed-tensors `quantization_config` block (one config
//! group per stored layout) for formats runtimes load, and the note for those
//! they do not (docs/numerics.md, "Saved layout").

use std::path::Path;

use serde_json::{Value, json};

use super::ctformat::{Activations, CtFormat, ct_format};
use super::plan::{Decision, default_exclusion};
use super::write::{Budget, write_json};
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::format::{ScaleStorage, spec};
use crate::scheme::{FormatKind, Granularity, Mapping, Scheme};

/// The compressed-tensors weight type, or None for layouts no runtime loads.
pub(super) fn ct_type(s: &Scheme) -> Option<&'static str> {
    let f = spec(s.format).ok()?;
    f.runtime_loadable(s.mapping).then_some(if f.is_float { "float" } else { "int" })
}

/// The compressed-tensors `quantization_config` block, as compressed-tensors
/// 0.19 writes it (FORMATS.md §7): one group per stored layout, each with its
/// `format`; `mixed-precision` at the top when the groups' formats differ.
fn quantization_config(ckpt: &Checkpoint, decisions: &[Decision], acts: Activations) -> Value {
    let mut groups: Vec<(Scheme, Vec<String>)> = Vec::new();
    let mut ignore = Vec::new();
    let mut all_2d = true;
    for (t, d) in ckpt.tensors().iter().zip(decisions) {
        let module = t.name.strip_suffix(".weight").unwrap_or(&t.name).to_string();
        match d {
            Decision::Quantize(s) => {
                all_2d &= t.shape.len() == 2;
                let key = config_group_key(s);
                match groups.iter_mut().find(|(g, _)| config_group_key(g) == key) {
                    Some((_, names)) => names.push(module),
                    None => groups.push((*s, vec![module])),
                }
            }
            Decision::Keep(_) => {
                // Embeddings are not Linear modules: compressed-tensors never targets
                // them, so llm-compressor does not list them either.
                let embedding = default_exclusion(t).is_some_and(|r| r.starts_with("embedding"));
                if t.is_quantizable() && t.shape.len() >= 2 && t.name.ends_with(".weight") && !embedding {
                    ignore.push(module);
                }
            }
        }
    }
    // One group of plain Linear weights is written as llm-compressor does;
    // otherwise each group names its layers exactly, so no two groups overlap.
    let exact = groups.len() > 1 || !all_2d;
    let formats: Vec<&str> =
        groups.iter().map(|(s, _)| ct_format(s, acts).map_or("naive-quantized", CtFormat::name)).collect();
    let mixed = formats.windows(2).any(|w| w[0] != w[1]);
    let mut config_groups = serde_json::Map::new();
    for (i, ((s, names), format)) in groups.iter().zip(&formats).enumerate() {
        let targets: Vec<String> = if exact {
            names.iter().map(|n| format!("re:^{}$", regex_escape(n))).collect()
        } else {
            vec!["Linear".into()]
        };
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
    let ty = ct_type(s).unwrap_or("int");
    let asym_int = ty == "int" && s.mapping == Mapping::Asymmetric;
    json!({
        "num_bits": spec(s.format).map_or(8, |f| f.bits),
        "type": ty,
        "symmetric": s.mapping == Mapping::Symmetric,
        "strategy": strategy,
        "group_size": group_size,
        "dynamic": false,
        "actorder": null,
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

/// Writes config.json of a packed export: the source's config (folder input)
/// with a `quantization_config` when every quantized layer is loadable, else
/// without one. Returns the note to show when runtimes cannot load the model.
pub(super) fn write_config(
    ckpt: &Checkpoint,
    decisions: &[Decision],
    tmp: &Path,
    folder_input: bool,
    loadable: bool,
    acts: Activations,
    budget: &mut Budget,
) -> Result<Option<String>> {
    let config_path = tmp.join("config.json");
    let mut config = if folder_input {
        std::fs::read_to_string(ckpt.dir.join("config.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}))
    } else {
        json!({})
    };
    if loadable {
        config["quantization_config"] = quantization_config(ckpt, decisions, acts);
        write_json(&config_path, &config, budget)?;
        return Ok(None);
    }
    if folder_input {
        if let Some(obj) = config.as_object_mut() {
            obj.remove("quantization_config");
        }
        write_json(&config_path, &config, budget)?;
    }
    Ok(Some(
        "E5M2 / asymmetric FP8 have no compressed-tensors form: the scheme is in each file's \
         __metadata__ and config.json has no quantization_config; vLLM and llm-compressor do not \
         load this model"
            .into(),
    ))
}
