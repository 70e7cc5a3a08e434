//! Saving quantized models end to end: round trips of every format × mapping ×
//! granularity on both sample models, config.json, recipes, and the safety rules
//! (no overwrite of the source, no partial output on a full or unwritable disk).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use common::{minilm, quantscope, stdout_json, teaching};
use quantscope_engine::ct::bitpack;
use quantscope_engine::export::{self, Decision, ExportMode, ExportOptions, ExportSummary, read_packed};
use quantscope_engine::recipe::{Recipe, Resolved};
use quantscope_engine::{Checkpoint, Dtype, Options, Scheme, analyze};
use serde_json::Value;

fn export_to(model: &Path, scheme: &Scheme, mode: ExportMode, out: &Path) -> ExportSummary {
    let ckpt = Checkpoint::open(model).unwrap();
    let recipe = Resolved { scheme: *scheme, layers: BTreeMap::new() };
    let decisions = export::plan(ckpt.tensors(), &recipe, &|_| false);
    let opts = ExportOptions { mode, ..ExportOptions::default() };
    export::export(&ckpt, &decisions, out, &opts, &|_, _| {}, &AtomicBool::new(false)).unwrap()
}

fn round_to(dtype: Dtype, xs: &[f32]) -> Vec<f32> {
    let bytes = quantscope_engine::decode::encode(dtype, xs).unwrap();
    quantscope_engine::decode::decode(dtype, &bytes).unwrap()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Packed and fake-quant exports of `model` under `scheme`, checked against each
/// other, against the engine's own R′ and against the source.
fn round_trip(model: &Path, scheme: &Scheme, tmp: &Path) {
    let (p_dir, f_dir) = (tmp.join("packed"), tmp.join("fake"));
    let p = export_to(model, scheme, ExportMode::Packed, &p_dir);
    let f = export_to(model, scheme, ExportMode::FakeQuant, &f_dir);
    assert_eq!(p.verified_tensors, Some(p.tensors_quantized), "{scheme}");
    assert_eq!(f.verified_tensors, Some(f.tensors_quantized), "{scheme}");
    assert!(p.tensors_quantized > 0);
    let (src, packed, fake) = (
        Checkpoint::open(model).unwrap(),
        Checkpoint::open(&p_dir).unwrap(),
        Checkpoint::open(&f_dir).unwrap(),
    );
    for t in src.tensors() {
        let Some(layer) = p.layers.iter().find(|l| l.name == t.name) else {
            // Copied tensors are byte-identical in both outputs; a group size that
            // does not divide the input dimension is kept only in the packed save.
            assert_eq!(packed.bytes(packed.tensor(&t.name).unwrap()), src.bytes(t), "{}", t.name);
            if f.layers.iter().any(|l| l.name == t.name) {
                let note = format!("{}: group size", t.name);
                assert!(p.notes.iter().any(|n| n.starts_with(&note)), "{}", t.name);
            } else {
                assert_eq!(fake.bytes(fake.tensor(&t.name).unwrap()), src.bytes(t), "{}", t.name);
            }
            continue;
        };
        assert_eq!(layer.scheme, scheme.to_string());
        check_code_layout(&packed, t, scheme);
        let scale = packed.tensor(&format!("{}_scale", t.name)).unwrap();
        let expected_scale_dtype = if t.dtype == Dtype::F32 { Dtype::F32 } else { t.dtype };
        assert_eq!(scale.dtype, expected_scale_dtype, "{}", t.name);
        let zp = packed.tensor(&format!("{}_zero_point", t.name));
        assert_eq!(
            zp.is_ok(),
            !scheme.format.is_fp8() && scheme.mapping == quantscope_engine::Mapping::Asymmetric
        );
        if let Ok(z) = zp {
            assert_eq!(z.dtype, Dtype::I32, "{}: zero points are packed", t.name);
        }

        let deq = read_packed(&packed, t, scheme).unwrap();
        let fake_vals = fake.load_f32(&t.name).unwrap();
        assert_eq!(fake.tensor(&t.name).unwrap().dtype, t.dtype);
        assert!(same_bits(&fake_vals, &round_to(t.dtype, &deq)), "{}: fake-quant ≠ packed R′", t.name);
        if matches!(t.dtype, Dtype::F32 | Dtype::BF16 | Dtype::F16) {
            // S is computed in the working dtype, which is the scale dtype, so R′ is
            // the engine's analyze() R′: the analysis shows what the save writes.
            let values = src.load_f32(&t.name).unwrap();
            let work = quantscope_engine::WorkDtype::of(t.dtype);
            let opts = Options { keep_dequantized: true, work, ..Options::default() };
            let r = analyze(&values, &t.shape, scheme, &opts).unwrap();
            assert!(same_bits(&deq, r.dequantized.as_ref().unwrap()), "{}: {scheme}", t.name);
            // Same errors, summed in another order.
            assert!((layer.metrics.mse - r.metrics.mse).abs() <= 1e-12 * r.metrics.mse, "{}", t.name);
        }
    }
    std::fs::remove_dir_all(&p_dir).unwrap();
    std::fs::remove_dir_all(&f_dir).unwrap();
}

/// Weight-only INT is pack-quantized (FORMATS.md §2); FP8 keeps `X.weight`.
fn check_code_layout(packed: &Checkpoint, t: &quantscope_engine::checkpoint::TensorInfo, scheme: &Scheme) {
    let cols: usize = t.shape[1..].iter().product();
    match scheme.format {
        quantscope_engine::FormatKind::Int(b) => {
            assert!(packed.tensor(&t.name).is_err(), "{}: no unpacked codes", t.name);
            let w = packed.tensor(&format!("{}_packed", t.name)).unwrap();
            let words = (cols * usize::from(b)).div_ceil(32);
            assert_eq!((w.dtype, w.shape.as_slice()), (Dtype::I32, &[t.shape[0], words][..]), "{}", t.name);
            let sh = packed.tensor(&format!("{}_shape", t.name)).unwrap();
            let dims: Vec<usize> = packed
                .bytes(sh)
                .chunks(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize)
                .collect();
            assert_eq!((sh.dtype, dims), (Dtype::I64, t.shape.clone()), "{}", t.name);
        }
        f => {
            let w = packed.tensor(&t.name).unwrap();
            let code = if f == quantscope_engine::FormatKind::E4M3 { Dtype::F8_E4M3 } else { Dtype::F8_E5M2 };
            assert_eq!((w.dtype, &w.shape), (code, &t.shape), "{}", t.name);
        }
    }
}

fn every_scheme() -> Vec<Scheme> {
    let mut out = Vec::new();
    for format in ["int8", "int4", "e4m3", "e5m2"] {
        for granularity in ["tensor", "channel", "group64"] {
            for mapping in ["sym", "asym"] {
                out.push(format!("{format}:{granularity}:minmax:{mapping}").parse().unwrap());
            }
        }
    }
    out
}

#[test]
fn round_trip_every_format_mapping_granularity_on_the_teaching_sample() {
    let tmp = tempfile::tempdir().unwrap();
    for scheme in every_scheme() {
        round_trip(&teaching(), &scheme, tmp.path());
    }
    // Calibrations leave no trace in the layout, but their ranges must survive.
    for s in ["int8:channel:mse:asym", "e4m3:group128:entropy", "int8:tensor:range-0.05,0.05"] {
        round_trip(&teaching(), &s.parse().unwrap(), tmp.path());
    }
}

#[test]
fn round_trip_every_format_mapping_granularity_on_minilm() {
    let Some(dir) = minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for scheme in every_scheme() {
        round_trip(&dir, &scheme, tmp.path());
    }
}

#[test]
fn acceptance_minilm_int8_channel_and_fp8_tensor_verified_with_configs() {
    let Some(dir) = minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (scheme, format, strategy) in [
        ("int8:channel:minmax", "pack-quantized", "channel"),
        ("e4m3:tensor:minmax", "naive-quantized", "tensor"),
    ] {
        let out = tmp.path().join(format);
        let o = quantscope(&["quantize", dir.to_str().unwrap(), out.to_str().unwrap(), "--scheme", scheme]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("verify: 37 tensors read back, R' bit-identical"), "{text}");
        assert!(text.contains("loads in vLLM / llm-compressor: yes"), "{text}");
        // The source config is kept and gains the block; companions are copied.
        let config: Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        let source: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["hidden_size"], source["hidden_size"]);
        assert_eq!(config["model_type"], source["model_type"]);
        for f in ["tokenizer.json", "vocab.txt", "1_Pooling/config.json"] {
            assert_eq!(std::fs::read(out.join(f)).unwrap(), std::fs::read(dir.join(f)).unwrap(), "{f}");
        }
        let q = &config["quantization_config"];
        let keys: Vec<&String> = q.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "config_groups",
                "format",
                "global_compression_ratio",
                "ignore",
                "kv_cache_scheme",
                "quant_method",
                "quantization_status",
                "sparsity_config",
                "transform_config",
                "version"
            ]
        );
        assert_eq!(q["quant_method"], "compressed-tensors");
        assert_eq!(q["format"], format);
        assert_eq!(q["quantization_status"], "compressed");
        let ignore: Vec<&str> = q["ignore"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(ignore.is_empty(), "embeddings are not Linear; llm-compressor lists none: {ignore:?}");
        let groups = q["config_groups"].as_object().unwrap();
        assert_eq!(groups.len(), 1);
        let g = &groups["group_0"];
        assert_eq!(g["targets"], serde_json::json!(["Linear"]));
        assert_eq!(g["input_activations"], Value::Null);
        let w = &g["weights"];
        let wkeys: Vec<&String> = w.as_object().unwrap().keys().collect();
        assert_eq!(
            wkeys,
            [
                "actorder",
                "block_structure",
                "dynamic",
                "group_size",
                "num_bits",
                "scale_dtype",
                "strategy",
                "symmetric",
                "type",
                "zp_dtype"
            ]
        );
        assert_eq!(g["format"], format);
        assert_eq!(w["num_bits"], 8);
        assert_eq!(w["type"], if format == "pack-quantized" { "int" } else { "float" });
        assert_eq!((&w["symmetric"], &w["strategy"]), (&Value::Bool(true), &Value::from(strategy)));
        assert_eq!(
            (&w["group_size"], &w["dynamic"], &w["actorder"]),
            (&Value::Null, &Value::Bool(false), &Value::Null)
        );
        // ~4x smaller quantized weights: 86.6 MiB of tensors → under 60.
        let model = std::fs::metadata(out.join("model.safetensors")).unwrap().len();
        assert!(model < 60 << 20, "{model}");
    }
}

#[test]
fn e5m2_and_asymmetric_fp8_are_written_without_quantization_config() {
    let tmp = tempfile::tempdir().unwrap();
    for scheme in ["e5m2:channel:minmax", "e4m3:tensor:minmax:asym"] {
        let out = tmp.path().join(scheme.replace(':', "_"));
        let o = quantscope(&[
            "quantize",
            teaching().to_str().unwrap(),
            out.to_str().unwrap(),
            "--scheme",
            scheme,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("loads in vLLM / llm-compressor: no"), "{text}");
        assert!(text.contains("do not load this model"), "{text}");
        assert!(!out.join("config.json").exists(), "a bare-file input gets no config.json without the block");
        let ckpt = Checkpoint::open(&out).unwrap();
        let meta = &ckpt.shards[0].metadata;
        let schemes: BTreeMap<String, String> = serde_json::from_str(&meta["quantscope_schemes"]).unwrap();
        assert_eq!(schemes["gaussian.weight"], scheme);
        assert_eq!(meta["quantscope_mode"], "packed");
        assert_eq!(ckpt.tensor("gaussian.weight_offset").is_ok(), scheme.ends_with("asym"));
    }
}

#[test]
fn a_recipe_with_three_layer_schemes_round_trips_into_config_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe_path = tmp.path().join("recipe.json");
    let text = r#"{
      "quantscope_recipe": 1,
      "scheme": "int8:channel:minmax",
      "layers": {
        "gaussian.weight": {"scheme": "int8:group64:mse:asym"},
        "heavy_tailed.weight": {"scheme": "int4:tensor:range-0.5,0.5"},
        "outlier_channels.weight": {"scheme": "e4m3:channel"},
        "skewed_positive.weight": {"exclude": true}
      }
    }"#;
    std::fs::write(&recipe_path, text).unwrap();
    // The recipe survives a load → GUI state → save → load cycle unchanged.
    let resolved = Recipe::load(&recipe_path).unwrap().resolve().unwrap();
    let again = Recipe::from_choices(&resolved.scheme, &resolved.overrides(), &resolved.excluded());
    let saved = tmp.path().join("saved.json");
    again.save(&saved).unwrap();
    assert_eq!(Recipe::load(&saved).unwrap().resolve().unwrap(), resolved);

    let out = tmp.path().join("out");
    let o = quantscope(&[
        "quantize",
        teaching().to_str().unwrap(),
        out.to_str().unwrap(),
        "--recipe",
        saved.to_str().unwrap(),
        "--ignore",
        "^conv",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["verified_tensors"], summary["tensors_quantized"]);
    let config: Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let q = &config["quantization_config"];
    assert_eq!(q["format"], "mixed-precision", "INT and FP8 layers mix");
    let groups = q["config_groups"].as_object().unwrap();
    assert_eq!(groups.len(), 4, "{q}");
    let find = |target: &str| {
        groups
            .values()
            .find(|g| g["targets"].as_array().unwrap().iter().any(|t| t == target))
            .unwrap()
            .clone()
    };
    let g = find(r"re:^gaussian$");
    assert_eq!(g["targets"].as_array().unwrap().len(), 1);
    assert_eq!(
        (&g["weights"]["strategy"], &g["weights"]["group_size"]),
        (&Value::from("group"), &Value::from(64))
    );
    assert_eq!(g["weights"]["symmetric"], false);
    assert_eq!(g["format"], "pack-quantized");
    assert_eq!(g["weights"]["zp_dtype"], "torch.int8");
    let h = find(r"re:^heavy_tailed$");
    assert_eq!(
        (&h["weights"]["num_bits"], &h["weights"]["strategy"]),
        (&Value::from(4), &Value::from("tensor"))
    );
    let o = find(r"re:^outlier_channels$");
    assert_eq!(
        (&o["weights"]["type"], &o["format"]),
        (&Value::from("float"), &Value::from("naive-quantized"))
    );
    let rest = find(r"re:^gaussian$");
    assert!(rest.is_object());
    let default = find(r"re:^with_nan$");
    assert_eq!(default["weights"]["strategy"], "channel");
    let ignore: Vec<&str> = q["ignore"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ignore, ["conv3x3", "skewed_positive"]);

    // The stored layouts follow each layer's scheme; the manual range is used.
    let ckpt = Checkpoint::open(&out).unwrap();
    assert_eq!(ckpt.tensor("gaussian.weight_scale").unwrap().shape, [256, 8]);
    let zp = ckpt.tensor("gaussian.weight_zero_point").unwrap();
    assert_eq!(
        (zp.dtype, zp.shape.as_slice()),
        (Dtype::I32, &[64usize, 8][..]),
        "8-bit Z packed along dim 0"
    );
    assert_eq!(ckpt.tensor("heavy_tailed.weight_scale").unwrap().shape, [1]);
    let hs = ckpt.load_f32("heavy_tailed.weight_scale").unwrap();
    assert_eq!(hs, [0.5 / 7.5], "INT4 symmetric: S = amax / ((Qmax − Qmin) / 2)");
    assert_eq!(ckpt.tensor("outlier_channels.weight").unwrap().dtype, Dtype::F8_E4M3);
    assert_eq!(ckpt.tensor("skewed_positive.weight").unwrap().dtype, Dtype::F32);
    let layers = summary["layers"].as_array().unwrap();
    let scheme_of = |n: &str| layers.iter().find(|l| l["name"] == n).unwrap()["scheme"].clone();
    assert_eq!(scheme_of("heavy_tailed.weight"), "int4:tensor:range-0.5,0.5");
}

#[test]
fn bf16_scales_are_rounded_before_quantizing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let s: Scheme = "int8:channel:minmax:asym".parse().unwrap();
    let summary = export_to(&teaching(), &s, ExportMode::Packed, &out);
    assert_eq!(summary.verified_tensors, Some(summary.tensors_quantized));
    let src = Checkpoint::open(teaching()).unwrap();
    let ckpt = Checkpoint::open(&out).unwrap();
    for name in ["bf16_linear.weight", "f16_linear.weight"] {
        let t = src.tensor(name).unwrap();
        let scales = ckpt.load_f32(&format!("{name}_scale")).unwrap();
        let (rows, row) = (t.shape[0], t.shape[1]);
        let words = |suffix: &str| {
            bitpack::bytes_to_words(ckpt.bytes(ckpt.tensor(&format!("{name}{suffix}")).unwrap()))
        };
        let zps = bitpack::unpack_cols(&words("_zero_point"), rows, 1, 8);
        let codes = bitpack::unpack_rows(&words("_packed"), rows, row, 8);
        let values = src.load_f32(name).unwrap();
        // Every code is exactly what the stored scale and zero point give, computed
        // in the tensor's own dtype D with Z added before rounding (FORMATS.md §2).
        let d = quantscope_engine::WorkDtype::of(t.dtype);
        for (k, &x) in values.iter().enumerate() {
            let (s, z) = (scales[k / row], f32::from(zps[k / row]));
            let q = d.round(d.round(x / s) + z).round_ties_even().clamp(-128.0, 127.0);
            assert_eq!(q as i8, codes[k], "{name}[{k}]");
        }
    }
}

#[test]
fn report_gives_the_mse_of_what_the_save_writes_on_bf16_and_f16_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        ("int8:channel:minmax", &[]),
        (
            "int4:group64:minmax:asym",
            &["--format", "int4", "--granularity", "group", "--group-size", "64", "--mapping", "asymmetric"],
        ),
        ("e4m3:channel:minmax", &["--format", "e4m3"]),
    ];
    for (short, flags) in cases {
        let s: Scheme = short.parse().unwrap();
        let out = tmp.path().join(short.replace(':', "_"));
        export_to(&teaching(), &s, ExportMode::Packed, &out);
        let (src, saved) = (Checkpoint::open(teaching()).unwrap(), Checkpoint::open(&out).unwrap());
        let model = teaching();
        let mut args = vec!["report", model.to_str().unwrap()];
        args.extend(flags);
        let doc = stdout_json(&quantscope(&args));
        for name in ["bf16_linear.weight", "f16_linear.weight"] {
            let t = src.tensor(name).unwrap();
            let (x, r) = (src.load_f32(name).unwrap(), read_packed(&saved, t, &s).unwrap());
            let mse = x.iter().zip(&r).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum::<f64>()
                / x.len() as f64;
            let rec = doc["tensors"].as_array().unwrap().iter().find(|v| v["name"] == name).unwrap();
            let shown = rec["metrics"]["mse"].as_f64().unwrap();
            assert!(
                (shown - mse).abs() <= 1e-9 * mse,
                "{name} under {short}: report {shown:e}, saved {mse:e}"
            );
        }
    }
}

fn tree_hash(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn refuses_the_source_and_a_non_empty_out_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(teaching(), model.join("model.safetensors")).unwrap();
    std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
    let before = tree_hash(&model);
    let m = model.to_str().unwrap();
    let file = model.join("model.safetensors");
    for (out, why) in [
        (m.to_string(), "source"),
        (file.to_str().unwrap().to_string(), "source"),
        (model.join("inside").to_str().unwrap().to_string(), "inside"),
        (tmp.path().to_str().unwrap().to_string(), "source"),
    ] {
        let o = quantscope(&["quantize", m, &out, "--force"]);
        assert_eq!(o.status.code(), Some(1), "{out}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why) && err.lines().count() == 1, "{out}: {err}");
    }
    assert_eq!(tree_hash(&model), before, "the source is untouched");

    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "user data").unwrap();
    let o = quantscope(&["quantize", m, out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty; use --force"));
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "user data");
    // An empty OUT is fine; --force replaces a full one as a whole.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(quantscope(&["quantize", m, empty.to_str().unwrap()]).status.success());
    let o = quantscope(&["quantize", m, out.to_str().unwrap(), "--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("keep.txt").exists() && out.join("model.safetensors").is_file());
    assert_eq!(std::fs::read_to_string(out.join("tokenizer.json")).unwrap(), "{}");
    assert_eq!(tree_hash(&model), before);
    let leftovers: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// No OUT and no temp folder may be left in `parent` after a failed export.
fn assert_nothing_left(parent: &Path, out: &Path) {
    assert!(!out.exists(), "{} exists after a failure", out.display());
    let left: Vec<String> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("quantscope-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_full_disk_at_any_point_leaves_no_partial_output() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = Checkpoint::open(teaching()).unwrap();
    let recipe = Resolved { scheme: Scheme::default(), layers: BTreeMap::new() };
    let decisions = export::plan(ckpt.tensors(), &recipe, &|_| false);
    let out = tmp.path().join("out");
    let no_cancel = AtomicBool::new(false);
    let opts = ExportOptions::default();
    export::export(&ckpt, &decisions, &out, &opts, &|_, _| {}, &no_cancel).unwrap();
    let total: u64 = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    std::fs::remove_dir_all(&out).unwrap();
    // Fail at the header, in the middle of the data and at the very last byte.
    for fail_after in [0, 100, total / 2, total - 1] {
        let opts = ExportOptions { fail_after_bytes: Some(fail_after), ..ExportOptions::default() };
        let err =
            export::export(&ckpt, &decisions, &out, &opts, &|_, _| {}, &AtomicBool::new(false)).unwrap_err();
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert_nothing_left(tmp.path(), &out);
    }
    assert!(decisions.iter().any(|d| matches!(d, Decision::Quantize(_))));
}

/// Mounts a tmpfs (root only); `None` where mounting is not allowed.
fn mount_tmpfs(dir: &Path, opts: &str) -> Option<()> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs", dir.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(())
}

fn umount(dir: &Path) {
    let _ = std::process::Command::new("umount").arg(dir).status();
}

#[test]
fn a_real_tiny_filesystem_and_an_unwritable_folder_give_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = teaching();
    let m = model.to_str().unwrap();
    let tiny = tmp.path().join("tiny");
    if mount_tmpfs(&tiny, "size=128k").is_some() {
        let out = tiny.join("out");
        let o = quantscope(&["quantize", m, out.to_str().unwrap()]);
        umount_after(&tiny, || {
            assert_eq!(o.status.code(), Some(1));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("No space left on device") && err.lines().count() == 1, "{err}");
            assert_nothing_left(&tiny, &out);
        });
    } else {
        eprintln!("cannot mount a tmpfs here (not root); the simulated full disk test covers ENOSPC");
    }
    // Unwritable: a read-only mount as root, a 0o555 folder otherwise.
    let ro = tmp.path().join("ro");
    let mounted = mount_tmpfs(&ro, "size=1m,ro").is_some();
    if !mounted {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let out = ro.join("out");
    let o = quantscope(&["quantize", m, out.to_str().unwrap()]);
    let check = || {
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            (err.contains("Read-only file system") || err.contains("Permission denied"))
                && err.lines().count() == 1,
            "{err}"
        );
        assert_nothing_left(&ro, &out);
    };
    if mounted {
        umount_after(&ro, check);
    } else {
        check();
    }
    // A parent that is a file.
    let o = quantscope(&["quantize", m, &format!("{m}/out")]);
    assert_eq!(o.status.code(), Some(1));
}

/// Runs `f`, unmounting `dir` whatever happens.
fn umount_after(dir: &Path, f: impl FnOnce()) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    umount(dir);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn fake_quant_on_an_inner_channel_axis_follows_that_axis() {
    let tmp = tempfile::tempdir().unwrap();
    let scheme: Scheme = "int8:channel1:minmax:asym".parse().unwrap();
    let out = tmp.path().join("fake");
    let summary = export_to(&teaching(), &scheme, ExportMode::FakeQuant, &out);
    assert_eq!(summary.verified_tensors, Some(summary.tensors_quantized));
    let (src, fake) = (Checkpoint::open(teaching()).unwrap(), Checkpoint::open(&out).unwrap());
    for layer in &summary.layers {
        let t = src.tensor(&layer.name).unwrap();
        if !matches!(t.dtype, Dtype::F32 | Dtype::BF16 | Dtype::F16) {
            continue;
        }
        let work = quantscope_engine::WorkDtype::of(t.dtype);
        let opts = Options { keep_dequantized: true, work, ..Options::default() };
        let values = src.load_f32(&t.name).unwrap();
        let r = analyze(&values, &t.shape, &scheme, &opts).unwrap();
        assert!(same_bits(&fake.load_f32(&t.name).unwrap(), r.dequantized.as_ref().unwrap()), "{}", t.name);
        assert!((layer.metrics.mse - r.metrics.mse).abs() <= 1e-12 * r.metrics.mse, "{}", t.name);
    }
    // The packed layout has no place for inner-axis scales and says so.
    let o = quantscope(&[
        "quantize",
        teaching().to_str().unwrap(),
        tmp.path().join("packed").to_str().unwrap(),
        "--scheme",
        "int8:channel1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("axis 1 has no compressed-tensors layout"));
}

#[test]
fn cli_saves_the_issue_12_short_forms_in_their_compressed_tensors_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Checkpoint::open(teaching()).unwrap();
    for (scheme, acts, format) in [
        ("int8:group128", "none", "pack-quantized"),
        ("int4:group128", "none", "pack-quantized"),
        ("int4:group128:minmax:asym", "none", "pack-quantized"),
        ("e4m3:channel", "none", "naive-quantized"),
        ("int8:channel", "int8-dynamic", "int-quantized"),
        ("e4m3:channel", "fp8-dynamic", "float-quantized"),
    ] {
        let out = tmp.path().join(format!("{}_{acts}", scheme.replace(':', "_")));
        let o = quantscope(&[
            "quantize",
            teaching().to_str().unwrap(),
            out.to_str().unwrap(),
            "--scheme",
            scheme,
            "--activations",
            acts,
            "--json",
        ]);
        assert!(o.status.success(), "{scheme}: {}", String::from_utf8_lossy(&o.stderr));
        let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(summary["verified_tensors"], summary["tensors_quantized"], "{scheme}");
        let config: Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        let q = &config["quantization_config"];
        assert_eq!(
            (&q["format"], &q["config_groups"]["group_0"]["format"]),
            (&Value::from(format), &Value::from(format))
        );
        let saved = Checkpoint::open(&out).unwrap();
        let s: Scheme = scheme.parse().unwrap();
        for l in summary["layers"].as_array().unwrap() {
            let t = src.tensor(l["name"].as_str().unwrap()).unwrap();
            check_code_layout_for(&saved, t, &s, format);
        }
        if acts != "none" {
            let ia = &q["config_groups"]["group_0"]["input_activations"];
            assert_eq!((&ia["strategy"], &ia["dynamic"]), (&Value::from("token"), &Value::Bool(true)));
        }
    }
    let o = quantscope(&[
        "quantize",
        teaching().to_str().unwrap(),
        tmp.path().join("refused").to_str().unwrap(),
        "--scheme",
        "int4:group128",
        "--activations",
        "int8-dynamic",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(".weight") && err.contains("int8-dynamic"), "{err}");
}

/// Names, dtypes and shapes of one saved layer in `format`.
fn check_code_layout_for(
    saved: &Checkpoint,
    t: &quantscope_engine::checkpoint::TensorInfo,
    s: &Scheme,
    format: &str,
) {
    let dims = |n: &str| saved.tensor(&format!("{}{n}", t.name)).map(|o| (o.dtype, o.shape.clone()));
    if format == "pack-quantized" {
        check_code_layout(saved, t, s);
    } else {
        let code = if format == "int-quantized" { Dtype::I8 } else { Dtype::F8_E4M3 };
        assert_eq!(dims("").unwrap(), (code, t.shape.clone()), "{}", t.name);
        assert!(dims("_packed").is_err() && dims("_shape").is_err(), "{}", t.name);
    }
    let sd = if t.dtype == Dtype::F32 { Dtype::F32 } else { t.dtype };
    let ss = match s.granularity {
        quantscope_engine::Granularity::Group { size } => {
            vec![t.shape[0], t.shape[1..].iter().product::<usize>() / size]
        }
        _ => vec![t.shape[0], 1],
    };
    assert_eq!(dims("_scale").unwrap(), (sd, ss), "{}", t.name);
    assert_eq!(
        dims("_zero_point").is_ok(),
        s.mapping == quantscope_engine::Mapping::Asymmetric,
        "{}",
        t.name
    );
}

/// `…:gptq` runs the model on inputs: without them it is a one-line error, as
/// is a weight-only report under it; with them the save holds GPTQ's codes
/// (other than round-to-nearest's, on the same scales) and says `actorder: static`.
#[test]
fn cli_gptq_saves_need_inputs_and_differ_from_round_to_nearest() {
    let tmp = tempfile::tempdir().unwrap();
    let t = teaching();
    let out = tmp.path().join("t");
    let o = quantscope(&[
        "quantize",
        t.to_str().unwrap(),
        out.to_str().unwrap(),
        "--scheme",
        "int4:group32:gptq",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--inputs") && err.lines().count() == 1, "{err}");
    assert!(!out.exists());
    let o = quantscope(&["report", t.to_str().unwrap(), "--scheme", "int4:group32:gptq", "--output", "json"]);
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("input activations"), "{text}");

    let Some(dir) = minilm() else { return };
    let inputs = common::builtin_inputs(tmp.path(), 16);
    let (m, i) = (dir.to_str().unwrap(), inputs.to_str().unwrap());
    let (g, r) = (tmp.path().join("gptq"), tmp.path().join("rtn"));
    let o =
        quantscope(&["quantize", m, g.to_str().unwrap(), "--scheme", "int4:group128:gptq", "--inputs", i]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = quantscope(&["quantize", m, r.to_str().unwrap(), "--scheme", "int4:group128"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(g.join("config.json")).unwrap()).unwrap();
    let weights = &config["quantization_config"]["config_groups"]["group_0"]["weights"];
    assert_eq!(weights["actorder"], "static");
    let (gc, rc) = (Checkpoint::open(&g).unwrap(), Checkpoint::open(&r).unwrap());
    let name = "encoder.layer.3.output.dense.weight";
    let bytes =
        |c: &Checkpoint, suffix: &str| c.bytes(c.tensor(&format!("{name}{suffix}")).unwrap()).to_vec();
    assert_eq!(bytes(&gc, "_scale"), bytes(&rc, "_scale"), "GPTQ keeps min-max's scales");
    assert_ne!(bytes(&gc, "_packed"), bytes(&rc, "_packed"), "and moves the codes");
}

#[test]
fn cli_awq_needs_inputs_and_a_decoder() {
    let tmp = tempfile::tempdir().unwrap();
    let t = teaching();
    let out = tmp.path().join("t");
    let (t, o) = (t.to_str().unwrap(), out.to_str().unwrap());
    let run = |extra: &[&str]| {
        let mut args = vec!["quantize", t, o];
        args.extend_from_slice(extra);
        let r = quantscope(&args);
        assert_eq!(r.status.code(), Some(1));
        String::from_utf8_lossy(&r.stderr).to_string()
    };
    let err = run(&["--scheme", "int4:group32:awq:asym"]);
    assert!(err.contains("--inputs") && err.lines().count() == 1, "{err}");
    let err = run(&["--scheme", "int4:group32", "--awq-scales", "s.safetensors"]);
    assert!(err.contains(":awq") && err.lines().count() == 1, "{err}");
    // The scales may not land beside the model, where a loader would take them for a shard.
    let beside = std::path::Path::new(t).with_file_name("scales.safetensors");
    let awq = ["--scheme", "int4:group32:awq:asym", "--inputs", "builtin", "--awq-scales"];
    let err = run(&[&awq[..], &[beside.to_str().unwrap()]].concat());
    assert!(err.contains("outside the model's folder") && err.lines().count() == 1, "{err}");
    assert!(!beside.exists());
    let taken = tmp.path().join("taken.safetensors");
    std::fs::write(&taken, b"x").unwrap();
    let err = run(&[&awq[..], &[taken.to_str().unwrap()]].concat());
    assert!(err.contains("--force") && err.lines().count() == 1, "{err}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"x");
    assert!(!out.exists());

    let Some(dir) = minilm() else { return };
    let inputs = common::builtin_inputs(tmp.path(), 4);
    let (m, i) = (dir.to_str().unwrap(), inputs.to_str().unwrap());
    let r = quantscope(&["quantize", m, o, "--scheme", "int4:group128:awq:asym", "--inputs", i]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("Llama") && err.contains("config.json") && err.lines().count() == 1, "{err}");
    assert!(!out.exists());
}
