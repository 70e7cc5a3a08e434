//! Malformed quantized checkpoints (issue 14): each breaks one layer (`a`) of a
//! small model that quantscope saved (`a`, `b`: pack-quantized INT4 group-32
//! asymmetric) or of a hand-built GPTQ model, and names the words the one-line
//! reason for `a.weight` must contain. Layer `b` must still compare.

use std::path::{Path, PathBuf};

use quantscope_engine::Checkpoint;
use quantscope_engine::write::{OwnedTensor, write_safetensors};

/// A broken quantized model and what its reader must say.
pub struct QCase {
    pub name: &'static str,
    pub expect: &'static [&'static str],
    /// Whether the whole checkpoint is refused (a config-level fault).
    pub fatal: bool,
}

fn f32s(shape: Vec<usize>, n: usize, seed: u32) -> OwnedTensor {
    let data = (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
        .flat_map(f32::to_le_bytes)
        .collect();
    OwnedTensor { dtype: quantscope_engine::Dtype::F32, shape, data }
}

/// The original: `a.weight`, `b.weight` `[16, 64]` F32 and a bias.
pub fn write_original(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let t = vec![
        ("a.weight".to_string(), f32s(vec![16, 64], 1024, 1)),
        ("b.weight".to_string(), f32s(vec![16, 64], 1024, 2)),
        ("b.bias".to_string(), f32s(vec![16], 16, 3)),
    ];
    write_safetensors(&dir.join("model.safetensors"), &t, None).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "test"}"#).unwrap();
    dir.to_path_buf()
}

/// Every tensor of a saved model, as owned tensors.
fn tensors(dir: &Path) -> Vec<(String, OwnedTensor)> {
    let c = Checkpoint::open(dir).unwrap();
    c.tensors()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                OwnedTensor { dtype: t.dtype, shape: t.shape.clone(), data: c.bytes(t).to_vec() },
            )
        })
        .collect()
}

/// Writes `good` (a saved folder) with `edit` applied to its tensors and config into `dir/name`.
fn variant(
    good: &Path,
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut Vec<(String, OwnedTensor)>, &mut serde_json::Value),
) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let mut t = tensors(good);
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(good.join("config.json")).unwrap()).unwrap();
    edit(&mut t, &mut cfg);
    write_safetensors(&out.join("model.safetensors"), &t, None).unwrap();
    std::fs::write(out.join("config.json"), cfg.to_string()).unwrap();
    out
}

fn drop(t: &mut Vec<(String, OwnedTensor)>, name: &str) {
    t.retain(|(n, _)| n != name);
}

fn replace(t: &mut [(String, OwnedTensor)], name: &str, new: OwnedTensor) {
    if let Some((_, v)) = t.iter_mut().find(|(n, _)| n == name) {
        *v = new;
    }
}

fn i32s(shape: Vec<usize>, v: &[i32]) -> OwnedTensor {
    OwnedTensor {
        dtype: quantscope_engine::Dtype::I32,
        shape,
        data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// A valid GPTQ v1 model of `a` and `b` ([16, 64] as 4-bit, group 32), with
/// `a`'s `g_idx` set to `g_idx_a`.
fn gptq(dir: &Path, g_idx_a: &[i32], qzeros_rows: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let (out, inp, groups) = (16usize, 64usize, 2usize);
    let mut t = Vec::new();
    for m in ["a", "b"] {
        let g_idx: Vec<i32> =
            if m == "a" { g_idx_a.to_vec() } else { (0..inp as i32).map(|i| i / 32).collect() };
        let qweight =
            (0..inp * 4 / 32 * out).map(|i| (i as i32).wrapping_mul(0x1234_5677)).collect::<Vec<_>>();
        let zr = if m == "a" { qzeros_rows } else { groups };
        t.push((format!("{m}.qweight"), i32s(vec![inp * 4 / 32, out], &qweight)));
        t.push((format!("{m}.qzeros"), i32s(vec![zr, out * 4 / 32], &vec![0x7777_7777; zr * out * 4 / 32])));
        // 0x211F is 0.01 in F16.
        let scales = 0x211Fu16.to_le_bytes().repeat(groups * out);
        t.push((
            format!("{m}.scales"),
            OwnedTensor { dtype: quantscope_engine::Dtype::F16, shape: vec![groups, out], data: scales },
        ));
        t.push((format!("{m}.g_idx"), i32s(vec![inp], &g_idx)));
    }
    write_safetensors(&dir.join("model.safetensors"), &t, None).unwrap();
    let cfg = r#"{"quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": true, "desc_act": false}}"#;
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    dir.to_path_buf()
}

/// Writes every case under `dir`, given `good`, a quantscope save of the
/// original under `int4:group32:minmax:asym`.
pub fn write_quantized_corpus(good: &Path, dir: &Path) -> Vec<(QCase, PathBuf)> {
    let case = |name, expect, fatal| QCase { name, expect, fatal };
    let mut out = vec![
        (
            case("ct-missing-scale", &["weight_scale is missing"], false),
            variant(good, dir, "ct-missing-scale", |t, _| drop(t, "a.weight_scale")),
        ),
        (
            case("ct-wrong-scale-shape", &["weight_scale has shape [3, 1]", "need [16, 2]"], false),
            variant(good, dir, "ct-wrong-scale-shape", |t, _| {
                replace(t, "a.weight_scale", f32s(vec![3, 1], 3, 0));
            }),
        ),
        (
            case(
                "ct-packed-size-mismatch",
                &["weight_packed is I32 [16, 8]", "weight_shape [16, 128]"],
                false,
            ),
            variant(good, dir, "ct-packed-size-mismatch", |t, _| {
                let shape = [16i64, 128].iter().flat_map(|x| x.to_le_bytes()).collect();
                replace(
                    t,
                    "a.weight_shape",
                    OwnedTensor { dtype: quantscope_engine::Dtype::I64, shape: vec![2], data: shape },
                );
            }),
        ),
        (
            case("ct-missing-zero-point", &["weight_zero_point is missing"], false),
            variant(good, dir, "ct-missing-zero-point", |t, _| drop(t, "a.weight_zero_point")),
        ),
        (
            case("ct-unknown-format", &["unknown compressed-tensors format 'sparse-24-bitmask'"], false),
            variant(good, dir, "ct-unknown-format", |_, c| {
                let q = &mut c["quantization_config"];
                let g = q["config_groups"]["group_0"].clone();
                let mut ga = g.clone();
                ga["targets"] = serde_json::json!(["re:^a$"]);
                ga["format"] = "sparse-24-bitmask".into();
                q["config_groups"] = serde_json::json!({"group_0": ga, "group_1": g});
            }),
        ),
        (
            case("ct-unknown-quant-method", &["config.json", "unknown quant_method 'bitsandbytes'"], true),
            variant(good, dir, "ct-unknown-quant-method", |_, c| {
                c["quantization_config"]["quant_method"] = "bitsandbytes".into();
            }),
        ),
    ];
    let mut g_idx: Vec<i32> = (0..64).map(|i| i / 32).collect();
    g_idx[9] = 99;
    out.push((
        case("gptq-g-idx-out-of-range", &["g_idx[9] = 99 is out of range (0..2)"], false),
        gptq(&dir.join("gptq-g-idx"), &g_idx, 2),
    ));
    let g_idx: Vec<i32> = (0..64).map(|i| i / 32).collect();
    out.push((
        case("gptq-wrong-qzeros", &["qzeros is [3, 2], expected [2, 2]"], false),
        gptq(&dir.join("gptq-qzeros"), &g_idx, 3),
    ));
    out
}
