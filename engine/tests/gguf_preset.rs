//! llama-quantize's per-tensor type choice (`gguf::preset`) against the real
//! library: every fixture in `tests/data/gguf/preset/` holds a small model's
//! metadata and tensors and, per case (a preset with its options), the type
//! llama.cpp's `llama_model_quantize` (llama-cpp-python 0.3.36) wrote for each
//! tensor and its `general.file_type`, or its refusal
//! (`tests/python/gguf_preset_reference.py`). The Rust choice must equal it for
//! every tensor. Then the errors: a bad preset name, pattern or type is a
//! one-line `Err`, never a panic.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;

use quantscope_engine::gguf::preset::{self, ModelInfo, Options, Preset, TensorType};
use quantscope_engine::gguf::{GgufTensor, Value};
use serde_json::Value as Json;

fn fixtures() -> Vec<(String, Json)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf/preset");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        })
        .collect()
}

/// A JSON metadata value as the GGUF reader gives it (gguf-py wrote integers as
/// UINT32, floats as FLOAT32).
fn value(j: &Json) -> Value {
    match j {
        Json::Bool(b) => Value::Bool(*b),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(value).collect()),
        Json::Number(n) if n.is_u64() => Value::U32(n.as_u64().unwrap() as u32),
        Json::Number(n) => Value::F32(n.as_f64().unwrap() as f32),
        Json::Null | Json::Object(_) => panic!("unexpected metadata value {j}"),
    }
}

fn model(f: &Json) -> (ModelInfo, Vec<GgufTensor>) {
    let metadata: Vec<(String, Value)> =
        f["metadata"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), value(v))).collect();
    let tensors: Vec<GgufTensor> = f["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| GgufTensor {
            name: t[0].as_str().unwrap().to_string(),
            ne: t[1].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect(),
            ggml_type: preset::ggml_type_named(t[2].as_str().unwrap()).unwrap(),
            byte_range: (0, 0),
        })
        .collect();
    (ModelInfo::from_metadata("fixture", &metadata, &tensors).unwrap(), tensors)
}

fn options(case: &Json) -> Options {
    let mut o = Options::new(case["preset"].as_str().unwrap().parse().unwrap());
    let flag = |k: &str| case.get(k).and_then(Json::as_bool).unwrap_or(false);
    let ty = |k: &str| case.get(k).and_then(Json::as_str).map(|t| preset::ggml_type_named(t).unwrap());
    o.pure = flag("pure");
    o.imatrix = flag("imatrix");
    o.leave_output_tensor = flag("leave_output_tensor");
    o.output_tensor_type = ty("output_tensor_type");
    o.token_embedding_type = ty("token_embedding_type");
    for spec in case.get("tensor_types").and_then(Json::as_array).into_iter().flatten() {
        o.tensor_types.push(TensorType::parse(spec.as_str().unwrap()).unwrap());
    }
    o
}

#[test]
fn every_tensor_gets_the_type_llama_quantize_gave_it() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 7, "fixtures missing: run tests/python/gguf_preset_reference.py");
    let (mut cases, mut tensors_equal, mut refusals) = (0, 0, 0);
    let mut presets_seen = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for (model_name, f) in &fixtures {
        let (info, tensors) = model(f);
        for case in f["cases"].as_array().unwrap() {
            cases += 1;
            let opts = options(case);
            presets_seen.insert(opts.preset.name());
            let mut shown = case.clone();
            for k in ["types", "file_type", "error"] {
                shown.as_object_mut().unwrap().remove(k);
            }
            let label = format!("{model_name} {shown}");
            let got = preset::choose(&info, &tensors, &opts);
            if let Some(error) = case.get("error") {
                match got {
                    Err(e) if !e.to_string().contains('\n') => refusals += 1,
                    Err(e) => failures.push(format!("{label}: message spans lines: {e}")),
                    Ok(_) => {
                        failures.push(format!("{label}: llama-quantize refused ({error}), Rust did not"));
                    }
                }
                continue;
            }
            let choices = match got {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{label}: {e}"));
                    continue;
                }
            };
            let want_file_type = case["file_type"].as_u64().unwrap();
            if u64::from(opts.file_type(&info)) != want_file_type {
                failures.push(format!("{label}: file_type {} ≠ {want_file_type}", opts.file_type(&info)));
            }
            for (c, want) in choices.iter().zip(case["types"].as_array().unwrap()) {
                if c.to.name == want.as_str().unwrap() {
                    tensors_equal += 1;
                } else {
                    failures.push(format!(
                        "{label}: {} got {} ({}), llama-quantize {want}",
                        c.name, c.to.name, c.reason
                    ));
                }
            }
        }
    }
    eprintln!(
        "{} fixtures, {cases} cases ({refusals} refused by both), {tensors_equal} tensor choices equal",
        fixtures.len()
    );
    assert!(
        failures.is_empty(),
        "{} differences, first:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    let all: Vec<&str> = Preset::all().map(Preset::name).collect();
    let missing: Vec<&&str> = all.iter().filter(|p| !presets_seen.contains(*p)).collect();
    assert!(missing.is_empty(), "presets never compared: {missing:?}");
}

#[test]
fn reasons_say_why() {
    let f = fixtures().into_iter().find(|(n, _)| n == "bert-384").unwrap().1;
    let (info, tensors) = model(&f);
    let choices = preset::choose(&info, &tensors, &Options::new(Preset::Q4KM)).unwrap();
    let of = |name: &str| choices.iter().find(|c| c.name == name).unwrap();
    let q = of("blk.0.attn_q.weight");
    assert_eq!((q.to.name, q.quantizable), ("Q5_0", true));
    assert!(q.reason.contains("fallback: row 384 not a multiple of 256 (Q4_K) → Q5_0"), "{}", q.reason);
    let norm = of("blk.0.attn_output_norm.weight");
    assert!(!norm.quantizable && !norm.converted(), "{norm:?}");
    assert!(of("token_types.weight").reason.contains("position or token-type"));
    let cls = of("cls.weight");
    assert_eq!(cls.to.name, "F16", "{}", cls.reason);
    // tied embeddings: BERT has no output.weight, so token_embd follows the output rule
    assert!(of("token_embd.weight").reason.starts_with("token_embd (tied to the output)"));
}

#[test]
fn bad_preset_names_list_the_valid_ones() {
    let e = "Q4_K_X".parse::<Preset>().unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    assert!(
        e.contains("'Q4_K_X'") && e.contains("Q4_K_M") && e.contains("IQ4_XS") && e.contains("COPY"),
        "{e}"
    );
    assert!("".parse::<Preset>().is_err());
    assert_eq!("q5_k".parse::<Preset>().unwrap(), Preset::Q5KM);
}

#[test]
fn bad_tensor_types_name_the_pattern_or_type() {
    let e = TensorType::parse("attn_(v=q8_0").unwrap_err().to_string();
    assert!(!e.contains('\n') && e.contains("'attn_(v'"), "{e}");
    let e = TensorType::parse("attn_v=q9_k").unwrap_err().to_string();
    assert!(!e.contains('\n') && e.contains("'q9_k'") && e.contains("Q8_0"), "{e}");
    let e = TensorType::parse("attn_v").unwrap_err().to_string();
    assert!(!e.contains('\n') && e.contains("PATTERN=TYPE"), "{e}");
    assert!(TensorType::parse("=q8_0").is_err());
    let t = TensorType::parse(r"BLK\.0\.ffn=Q6_k").unwrap();
    assert_eq!((t.pattern(), t.ggml_type().name), (r"blk\.0\.ffn", "Q6_K"));
}

#[test]
fn metadata_without_a_block_count_is_refused() {
    let meta = vec![("general.architecture".to_string(), Value::String("llama".into()))];
    let e = ModelInfo::from_metadata("m.gguf", &meta, &[]).unwrap_err();
    assert_eq!(e.to_string(), "m.gguf: no llama.block_count");
    assert!(ModelInfo::from_metadata("m.gguf", &[], &[]).is_err());
}

#[test]
fn duplicated_names_and_unreadable_expert_layers_are_errors() {
    let f = fixtures().into_iter().find(|(n, _)| n == "mixtral-moe").unwrap().1;
    let (info, mut tensors) = model(&f);
    let mut odd = tensors.iter().find(|t| t.name.contains("ffn_down_exps")).unwrap().clone();
    odd.name = "extra.ffn_down_exps.weight".into();
    tensors.push(odd);
    let e = preset::choose(&info, &tensors, &Options::new(Preset::Q4KM)).unwrap_err().to_string();
    assert!(!e.contains('\n') && e.contains("extra.ffn_down_exps.weight"), "{e}");
    let dup = tensors[0].clone();
    tensors.push(dup);
    let e = preset::choose(&info, &tensors, &Options::new(Preset::Q8_0)).unwrap_err().to_string();
    assert!(e.contains("duplicated"), "{e}");
}
