//! config.json: the compressed-tensors `quantization_config` block (one config
//! group per stored layout) for formats runtimes load, and the note for those
//! they do not (docs/numerics.md, "Saved layout").

use std::path::Path;

use serde_json::{Value, json};

use super::plan::Decision;
use super::write::{Budget, write_json};
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::format::spec;
use crate::scheme::{FormatKind, Granularity, Mapping, Scheme};

/// The compressed-tensors weight type, or None for layouts no runtime loads.
pub(super) fn ct_type(s: &Scheme) -> Option<&'static str> {
    let f = spec(s.format).ok()?;
    f.runtime_loadable(s.mapping).then_some(if f.is_float { "float" } else { "int" })
}

/// The compressed-tensors `quantization_config` block.
fn quantization_config(ckpt: &Checkpoint, decisions: &[Decision]) -> Value {
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
                if t.is_quantizable() && t.shape.len() >= 2 && t.name.ends_with(".weight") {
                    ignore.push(module);
                }
            }
        }
    }
    // One group of plain Linear weights is written as llm-compressor does;
    // otherwise each group names its layers exactly, so no two groups overlap.
    let exact = groups.len() > 1 || !all_2d;
    let types: Vec<&str> = groups.iter().filter_map(|(s, _)| ct_type(s)).collect();
    let format_of = |t: &str| if t == "int" { "int-quantized" } else { "float-quantized" };
    let mixed = types.windows(2).any(|w| w[0] != w[1]);
    let mut config_groups = serde_json::Map::new();
    for (i, (s, names)) in groups.iter().enumerate() {
        let targets: Vec<String> = if exact {
            names.iter().map(|n| format!("re:^{}$", regex_escape(n))).collect()
        } else {
            vec!["Linear".into()]
        };
        let (strategy, group_size) = match s.granularity {
            Granularity::Tensor => ("tensor", Value::Null),
            Granularity::Channel { .. } => ("channel", Value::Null),
            Granularity::Group { size } => ("group", json!(size)),
        };
        let ty = ct_type(s).unwrap_or("int");
        let mut g = json!({
            "targets": targets,
            "weights": {
                "num_bits": spec(s.format).map_or(8, |f| f.bits),
                "type": ty,
                "symmetric": s.mapping == Mapping::Symmetric,
                "strategy": strategy,
                "group_size": group_size,
                "dynamic": false,
                "actorder": null,
            },
            "input_activations": null,
        });
        if mixed {
            g["format"] = json!(format_of(ty));
        }
        config_groups.insert(format!("group_{i}"), g);
    }
    let format = if mixed { "mixed-precision" } else { format_of(types.first().copied().unwrap_or("int")) };
    json!({
        "quant_method": "compressed-tensors",
        "format": format,
        "quantization_status": "compressed",
        "ignore": ignore,
        "config_groups": config_groups,
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
        config["quantization_config"] = quantization_config(ckpt, decisions);
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
