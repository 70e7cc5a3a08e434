//! The pack-quantized layout against what llm-compressor wrote
//! (shared/reference/formats, copied into tests/data/formats): the library's
//! codes, unpacked with our unpacker, re-pack to the same bytes; zero points
//! packed along dim 0 likewise; `weight_shape` is `[out, in]`.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use quantscope_engine::checkpoint::Checkpoint;
use quantscope_engine::ct::bitpack::{
    bytes_to_words, pack_cols, pack_rows, unpack_cols, unpack_rows, words_per_line, words_to_bytes,
};
use safetensors::Dtype;

fn open(file: &str) -> Checkpoint {
    Checkpoint::open(format!("{}/tests/data/formats/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// (file stem, bits, groups per row, asymmetric)
const PACKED: [(&str, u8, usize, bool); 6] = [
    ("w8a16", 8, 2, false),
    ("w8a16_asym", 8, 2, true),
    ("w4a16", 4, 2, false),
    ("w4a16_asym", 4, 2, true),
    ("w4a16_channel", 4, 1, false),
    ("w4a16_asym_channel", 4, 1, true),
];

#[test]
fn reference_packed_codes_and_zero_points_repack_byte_for_byte() {
    let (out, inp) = (64usize, 256usize);
    let mut repacked = 0;
    for (stem, bits, groups, asym) in PACKED {
        for d in ["f32", "bf16"] {
            let file = format!("{stem}_{d}.safetensors");
            let ck = open(&file);
            let p = ck.tensor("weight_packed").unwrap();
            assert_eq!(p.dtype, Dtype::I32, "{file}");
            assert_eq!(p.shape, [out, words_per_line(inp, bits)], "{file}");
            let codes = unpack_rows(&bytes_to_words(ck.bytes(p)), out, inp, bits);
            let lo = -(1i32 << (bits - 1));
            assert!(codes.iter().all(|&q| (lo..-lo).contains(&i32::from(q))), "{file}");
            assert_eq!(words_to_bytes(&pack_rows(&codes, out, inp, bits)), ck.bytes(p), "{file}");
            repacked += 1;
            let s = ck.tensor("weight_shape").unwrap();
            assert_eq!((s.dtype, s.shape.as_slice()), (Dtype::I64, &[2usize][..]), "{file}");
            let shape: Vec<i64> =
                ck.bytes(s).chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
            assert_eq!(shape, [64, 256], "{file}");
            assert_eq!(ck.tensor("weight_scale").unwrap().shape, [out, groups], "{file}");
            match ck.tensor("weight_zero_point") {
                Ok(z) if asym => {
                    assert_eq!(
                        (z.dtype, z.shape.clone()),
                        (Dtype::I32, vec![words_per_line(out, bits), groups])
                    );
                    let zs = unpack_cols(&bytes_to_words(ck.bytes(z)), out, groups, bits);
                    assert_eq!(words_to_bytes(&pack_cols(&zs, out, groups, bits)), ck.bytes(z), "{file}");
                    repacked += 1;
                }
                Ok(_) => panic!("{file}: a symmetric scheme has a zero point"),
                Err(_) => assert!(!asym, "{file}: no zero point"),
            }
        }
    }
    assert_eq!(repacked, 18);
}

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use quantscope_engine::Scheme;
use quantscope_engine::export::{self, Activations, ExportMode, ExportOptions, ExportSummary};
use quantscope_engine::recipe::Resolved;
use serde_json::Value;

fn save(model: &Path, scheme: &str, acts: Activations, out: &Path) -> ExportSummary {
    let ckpt = Checkpoint::open(model).unwrap();
    let recipe = Resolved { scheme: scheme.parse().unwrap(), layers: BTreeMap::new() };
    let decisions = export::plan(ckpt.tensors(), &recipe, &|_| false);
    let opts = ExportOptions { mode: ExportMode::Packed, activations: acts, ..ExportOptions::default() };
    export::export(&ckpt, &decisions, out, &opts, &|_, _| {}, &AtomicBool::new(false)).unwrap()
}

/// A one-Linear model `proj` holding the reference input in `dtype`.
fn one_linear(dir: &Path, d: &str) -> std::path::PathBuf {
    let input = open("input_weights.safetensors");
    let w = input.tensor(&format!("weight_{d}")).unwrap();
    let view = safetensors::tensor::TensorView::new(w.dtype, w.shape.clone(), input.bytes(w)).unwrap();
    let path = dir.join(format!("proj_{d}.safetensors"));
    safetensors::serialize_to_file([("proj.weight", view)], None, &path).unwrap();
    path
}

/// (reference key, file stem, quantscope scheme, declared activations)
const PRESETS: [(&str, &str, &str, Activations); 13] = [
    ("W8A16", "w8a16", "int8:group128", Activations::None),
    ("W8A16_ASYM", "w8a16_asym", "int8:group128:minmax:asym", Activations::None),
    ("W4A16", "w4a16", "int4:group128", Activations::None),
    ("W4A16_ASYM", "w4a16_asym", "int4:group128:minmax:asym", Activations::None),
    ("W4A16_CHANNEL", "w4a16_channel", "int4:channel", Activations::None),
    ("W4A16_ASYM_CHANNEL", "w4a16_asym_channel", "int4:channel:minmax:asym", Activations::None),
    ("W8A8", "w8a8", "int8:channel", Activations::Int8Dynamic),
    ("FP8_DYNAMIC", "fp8_dynamic", "e4m3:channel", Activations::Fp8Dynamic),
    ("FP8_WEIGHT_ONLY", "fp8_weight_only", "e4m3:channel", Activations::None),
    ("FP8_BLOCK", "fp8_block", "e4m3:block128", Activations::Fp8Dynamic),
    ("NVFP4A16", "nvfp4a16", "nvfp4", Activations::None),
    ("MXFP4A16", "mxfp4a16", "mxfp4", Activations::None),
    ("MXFP8A16", "mxfp8a16", "mxfp8", Activations::None),
];

/// The fields of a config group FORMATS.md §7 says matter.
fn group_fields(g: &Value) -> Value {
    let args = |a: &Value| {
        if a.is_null() {
            return Value::Null;
        }
        let keys =
            ["num_bits", "type", "symmetric", "strategy", "group_size", "dynamic", "scale_dtype", "zp_dtype"];
        Value::Object(keys.iter().map(|k| (k.to_string(), a[*k].clone())).collect())
    };
    serde_json::json!({
        "format": g["format"], "targets": g["targets"],
        "weights": args(&g["weights"]), "input_activations": args(&g["input_activations"]),
    })
}

#[test]
fn one_linear_saves_match_the_reference_layout_and_config() {
    let configs: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/data/formats/configs_ct019.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (mut tensors, mut identical) = (0, 0);
    for (key, stem, scheme, acts) in PRESETS {
        for d in ["f32", "bf16"] {
            let model = one_linear(tmp.path(), d);
            let out = tmp.path().join(format!("{stem}_{d}"));
            let summary = save(&model, scheme, acts, &out);
            assert_eq!(summary.verified_tensors, Some(1), "{key} {d}");
            let ours = Checkpoint::open(out.join("model.safetensors")).unwrap();
            let reference = open(&format!("{stem}_{d}.safetensors"));
            let mut names: Vec<String> =
                ours.tensors().iter().map(|t| t.name.trim_start_matches("proj.").to_string()).collect();
            let mut want: Vec<String> =
                reference.tensors().iter().map(|t| t.name.clone()).filter(|n| n != "dequantized").collect();
            names.sort();
            want.sort();
            assert_eq!(names, want, "{key} {d}");
            for n in &want {
                let (a, b) = (ours.tensor(&format!("proj.{n}")).unwrap(), reference.tensor(n).unwrap());
                assert_eq!((a.dtype, &a.shape), (b.dtype, &b.shape), "{key} {d} {n}");
                tensors += 1;
                let same = ours.bytes(a) == reference.bytes(b);
                identical += usize::from(same);
                eprintln!("{key} {d} {n}: {}", if same { "identical" } else { "differs" });
                if n == "weight_shape" {
                    assert_eq!(ours.bytes(a), reference.bytes(b), "{key} {d}");
                }
            }
            let config: Value =
                serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
            let (q, r) = (&config["quantization_config"], &configs[key]);
            for k in ["quant_method", "format", "quantization_status", "ignore", "version"] {
                assert_eq!(q[k], r[k], "{key}: {k}");
            }
            assert_eq!(
                group_fields(&q["config_groups"]["group_0"]),
                group_fields(&r["config_groups"]["group_0"]),
                "{key}"
            );
        }
    }
    eprintln!("byte-identical to llm-compressor: {identical} of {tensors} tensors");
    assert_eq!(tensors, 72);
    assert_eq!(identical, tensors, "every stored tensor byte for byte");
}

fn teaching() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-models/teaching.safetensors")
}

#[test]
fn stored_bytes_equal_the_bytes_a_save_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Checkpoint::open(teaching()).unwrap();
    let schemes = [
        "int8:group128",
        "int4:group128",
        "int4:group128:minmax:asym",
        "e4m3:channel",
        "int3:channel:minmax:asym",
        "int8:tensor:minmax:asym",
        "int2:group64",
        "nvfp4",
        "mxfp4",
        "mxfp8",
        "e4m3:block128",
    ];
    for scheme in schemes {
        let out = tmp.path().join(scheme.replace(':', "_"));
        let summary = save(&teaching(), scheme, Activations::None, &out);
        let saved = Checkpoint::open(&out).unwrap();
        let s: Scheme = scheme.parse().unwrap();
        let (mut predicted, mut written) = (0u64, 0u64);
        for l in &summary.layers {
            let t = src.tensor(&l.name).unwrap();
            predicted += quantscope_engine::sweep::stored_bytes(t, &s);
            written += saved
                .tensors()
                .iter()
                .filter(|o| {
                    o.name
                        .strip_prefix(l.name.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
                })
                .map(|o| o.size_bytes as u64)
                .sum::<u64>();
        }
        assert!(!summary.layers.is_empty(), "{scheme}");
        assert_eq!(predicted, written, "{scheme}");
    }
}

#[test]
fn partial_groups_are_left_unquantized_listed_and_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Checkpoint::open(teaching()).unwrap();
    let out = tmp.path().join("o");
    let summary = save(&teaching(), "int4:group128", Activations::None, &out);
    let partial: Vec<&str> = src
        .tensors()
        .iter()
        .filter(|t| {
            export::default_exclusion(t).is_none() && t.shape[1..].iter().product::<usize>() % 128 != 0
        })
        .map(|t| t.name.as_str())
        .collect();
    assert!(!partial.is_empty(), "the teaching sample has a layer with in % 128 != 0");
    let config: Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let ignore = &config["quantization_config"]["ignore"];
    for name in partial {
        assert!(summary.layers.iter().all(|l| l.name != name), "{name}");
        assert!(summary.notes.iter().any(|n| n.starts_with(&format!("{name}: group size 128"))), "{name}");
        let module = name.strip_suffix(".weight").unwrap();
        assert!(ignore.as_array().unwrap().iter().any(|v| v == module), "{module} in {ignore}");
        let saved = Checkpoint::open(&out).unwrap();
        assert_eq!(saved.bytes(saved.tensor(name).unwrap()), src.bytes(src.tensor(name).unwrap()));
    }
}

#[test]
fn declared_activations_refuse_other_weight_schemes_naming_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = Checkpoint::open(teaching()).unwrap();
    for (scheme, acts) in [
        ("int4:group128", Activations::Int8Dynamic),
        ("int8:channel", Activations::Fp8Dynamic),
        ("e4m3:tensor", Activations::Fp8Dynamic),
    ] {
        let recipe = Resolved { scheme: scheme.parse().unwrap(), layers: BTreeMap::new() };
        let decisions = export::plan(ckpt.tensors(), &recipe, &|_| false);
        let opts = ExportOptions { activations: acts, ..ExportOptions::default() };
        let out = tmp.path().join("refused");
        let e =
            export::export(&ckpt, &decisions, &out, &opts, &|_, _| {}, &AtomicBool::new(false)).unwrap_err();
        let msg = e.to_string();
        assert!(
            !msg.contains('\n') && msg.contains(".weight") && msg.contains(&format!("--activations {acts}")),
            "{msg}"
        );
        assert!(!out.exists());
    }
}

/// A per-layer recipe giving `a` W4A16 and `b` NVFP4A16 is saved as
/// llm-compressor's mixed-precision reference: the same tensors, byte for byte,
/// and a `mixed-precision` config with one group (and format) per scheme.
#[test]
fn mixed_precision_matches_the_reference() {
    use quantscope_engine::recipe::LayerChoice;
    let tmp = tempfile::tempdir().unwrap();
    let input = open("input_weights.safetensors");
    let w = input.tensor("weight_f32").unwrap();
    let view = || safetensors::tensor::TensorView::new(w.dtype, w.shape.clone(), input.bytes(w)).unwrap();
    let model = tmp.path().join("ab.safetensors");
    safetensors::serialize_to_file([("a.weight", view()), ("b.weight", view())], None, &model).unwrap();
    let ckpt = Checkpoint::open(&model).unwrap();
    let layers = BTreeMap::from([
        ("a.weight".to_string(), LayerChoice::Quantize("int4:group128".parse().unwrap())),
        ("b.weight".to_string(), LayerChoice::Quantize("nvfp4".parse().unwrap())),
    ]);
    let recipe = Resolved { scheme: "int8".parse().unwrap(), layers };
    let decisions = export::plan(ckpt.tensors(), &recipe, &|_| false);
    let out = tmp.path().join("out");
    let opts = ExportOptions { mode: ExportMode::Packed, ..ExportOptions::default() };
    export::export(&ckpt, &decisions, &out, &opts, &|_, _| {}, &AtomicBool::new(false)).unwrap();
    let ours = Checkpoint::open(out.join("model.safetensors")).unwrap();
    let reference = open("mixed_w4a16_nvfp4a16_f32.safetensors");
    let want: Vec<&str> =
        reference.tensors().iter().map(|t| t.name.as_str()).filter(|n| !n.ends_with("dequantized")).collect();
    assert_eq!(ours.tensors().len(), want.len());
    for n in want {
        let (a, b) = (ours.tensor(n).unwrap(), reference.tensor(n).unwrap());
        assert_eq!((a.dtype, &a.shape), (b.dtype, &b.shape), "{n}");
        assert!(ours.bytes(a) == reference.bytes(b), "{n} differs from llm-compressor's");
    }
    let configs: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/data/formats/configs_ct019.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let r = &configs["MIXED(a:W4A16,b:NVFP4A16)"];
    let config: Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let q = &config["quantization_config"];
    assert_eq!(q["format"], r["format"]);
    for g in ["group_0", "group_1"] {
        assert_eq!(group_fields(&q["config_groups"][g]), group_fields(&r["config_groups"][g]), "{g}");
    }
}

/// q/k/v of one attention block share one NVFP4 global scale, from the largest
/// amax of the three (llm-compressor fuses them); the sweep's numbers for each
/// equal what the save wrote.
#[test]
fn fused_siblings_share_the_nvfp4_global_scale() {
    use quantscope_engine::write::{OwnedTensor, write_safetensors};
    let tmp = tempfile::tempdir().unwrap();
    let names = ["q_proj", "k_proj", "v_proj", "o_proj"];
    let tensors: Vec<(String, OwnedTensor)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let amax = [0.5f32, 2.0, 0.25, 3.0][i];
            let v: Vec<f32> = (0..32 * 64).map(|k| amax * ((k * 37 % 101) as f32 / 50.0 - 1.0)).collect();
            let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (
                format!("model.layers.0.self_attn.{n}.weight"),
                OwnedTensor { dtype: Dtype::F32, shape: vec![32, 64], data },
            )
        })
        .collect();
    let model = tmp.path().join("attn.safetensors");
    write_safetensors(&model, &tensors, None).unwrap();
    let out = tmp.path().join("out");
    let summary = save(&model, "nvfp4", Activations::None, &out);
    let saved = Checkpoint::open(out.join("model.safetensors")).unwrap();
    let gs = |n: &str| {
        let t = saved.tensor(&format!("model.layers.0.self_attn.{n}.weight_global_scale")).unwrap();
        f32::from_le_bytes(saved.bytes(t).try_into().unwrap())
    };
    let amax_qkv = 2.0f32 * (100.0 / 50.0 - 1.0);
    let want = (1.0f32 / amax_qkv) * 2688.0;
    for n in ["q_proj", "k_proj", "v_proj"] {
        assert_eq!(gs(n), want, "{n} shares the global scale of k_proj's amax");
    }
    assert_ne!(gs("o_proj"), want, "o_proj is not fused");
    let src = Checkpoint::open(&model).unwrap();
    let s: Scheme = "nvfp4".parse().unwrap();
    for l in &summary.layers {
        let row =
            quantscope_engine::sweep::sweep_tensor(&src, src.tensor(&l.name).unwrap(), &[s], &mut Vec::new());
        let cell = row.cells[0].as_ref().unwrap();
        assert_eq!(cell.metrics.mse.to_bits(), l.metrics.mse.to_bits(), "{}", l.name);
    }
}
