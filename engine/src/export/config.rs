//! config.json: the compressed-tensors `quantization_config` block (one config
//! group per stored layout) for formats runtimes load, and the note for those
//! they do not (docs/numerics.md, "Saved layout").

use serde_json::{Value, json};

use super::plan::{Decision, default_exclusion};
use crate::checkpoint::Checkpoint;
use crate::ct::Activations;
use crate::ct::config::{groups, quantization_config};

/// The save's `quantization_config`: its config groups, and in `ignore` the
/// Linear weights it leaves unquantized.
fn config_block(ckpt: &Checkpoint, decisions: &[Decision], acts: Activations) -> Value {
    let tensors = ckpt.tensors();
    let quantized = tensors.iter().zip(decisions).filter_map(|(t, d)| match d {
        Decision::Quantize(s) => Some((t.name.as_str(), t.shape.as_slice(), *s)),
        Decision::Keep(_) => None,
    });
    let groups = groups(quantized);
    let ignore: Vec<String> = tensors
        .iter()
        .zip(decisions)
        .filter(|(t, d)| {
            // Embeddings are not Linear modules: compressed-tensors never targets
            // them, so llm-compressor does not list them either.
            let embedding = default_exclusion(t).is_some_and(|r| r.starts_with("embedding"));
            matches!(d, Decision::Keep(_))
                && t.is_quantizable()
                && t.shape.len() >= 2
                && t.name.ends_with(".weight")
                && !embedding
        })
        .map(|(t, _)| t.name.strip_suffix(".weight").unwrap_or(&t.name).to_string())
        .collect();
    quantization_config(&groups, &ignore, acts)
}

/// The config.json of a packed export: the source's config (folder input)
/// with a `quantization_config` when every quantized layer is loadable, else
/// without one (and none at all for a bare file). Also the note to show when
/// runtimes cannot load the model.
pub(super) fn config_json(
    ckpt: &Checkpoint,
    decisions: &[Decision],
    folder_input: bool,
    loadable: bool,
    acts: Activations,
) -> (Option<Value>, Option<String>) {
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
        config["quantization_config"] = config_block(ckpt, decisions, acts);
        return (Some(config), None);
    }
    if let Some(obj) = config.as_object_mut() {
        obj.remove("quantization_config");
    }
    let note = "E5M2 / asymmetric FP8 have no compressed-tensors form: the scheme is in each file's \
         __metadata__ and config.json has no quantization_config; vLLM and llm-compressor do not \
         load this model";
    (folder_input.then_some(config), Some(note.into()))
}
