//! Reading quantized checkpoints (`quantized::QuantizedModel`): every
//! compressed-tensors vector in `data/formats/` (written by llm-compressor, with
//! compressed-tensors' own `decompress()` output beside it) read back bit for
//! bit, with and without its `quantization_config`; GPTQ (2, 3, 4, 8 bits, v1
//! and v2 zero points, act-order `g_idx`) and AWQ files packed by a literal
//! transcription of the reference packing loops; and the bad-input cases.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;

use half::f16;
use quantscope_engine::quantized::QuantizedModel;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

fn data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn write_model(dir: &Path, tensors: &Tensors, config: Option<serde_json::Value>) {
    let views: Vec<(String, TensorView<'_>)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    if let Some(q) = config {
        let cfg = serde_json::json!({"model_type": "test", "quantization_config": q});
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    }
}

/// A reference vector's stored tensors under `proj.`, and its `dequantized`.
fn reference(file: &str) -> (Tensors, Vec<u8>, Dtype) {
    let bytes = data(&format!("{file}.safetensors"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = Vec::new();
    let mut deq = (Vec::new(), Dtype::F32);
    for (name, t) in st.tensors() {
        if name == "dequantized" {
            deq = (t.data().to_vec(), t.dtype());
        } else {
            out.push((format!("proj.{name}"), t.dtype(), t.shape().to_vec(), t.data().to_vec()));
        }
    }
    (out, deq.0, deq.1)
}

fn f32_bits(d: Dtype, b: &[u8]) -> Vec<u32> {
    match d {
        Dtype::F32 => b.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::BF16 => b.chunks(2).map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])) << 16).collect(),
        d => panic!("{d:?}"),
    }
}

#[test]
fn every_compressed_tensors_vector_reads_back_bit_for_bit() {
    let configs: serde_json::Value = serde_json::from_slice(&data("configs_ct019.json")).unwrap();
    let cases = [
        ("w8a16", "W8A16", "int8:group128:minmax"),
        ("w8a16_asym", "W8A16_ASYM", "int8:group128:minmax:asym"),
        ("w4a16", "W4A16", "int4:group128:minmax"),
        ("w4a16_asym", "W4A16_ASYM", "int4:group128:minmax:asym"),
        ("w4a16_channel", "W4A16_CHANNEL", "int4:channel:minmax"),
        ("w4a16_asym_channel", "W4A16_ASYM_CHANNEL", "int4:channel:minmax:asym"),
        ("w8a8", "W8A8", "int8:channel:minmax"),
        ("fp8_dynamic", "FP8_DYNAMIC", "e4m3:channel:minmax"),
        ("fp8_weight_only", "FP8_WEIGHT_ONLY", "e4m3:channel:minmax"),
        ("fp8_block", "FP8_BLOCK", "e4m3:block128:minmax"),
    ];
    let mut checked = 0;
    for (file, key, short) in cases {
        for dt in ["f32", "bf16"] {
            let (tensors, deq, deq_dtype) = reference(&format!("{file}_{dt}"));
            for with_config in [true, false] {
                let dir = tempfile::tempdir().unwrap();
                write_model(dir.path(), &tensors, with_config.then(|| configs[key].clone()));
                let m = QuantizedModel::open(dir.path()).unwrap();
                assert!(m.failed.is_empty(), "{file}_{dt}: {:?}", m.failed);
                assert_eq!(m.layers.len(), 1, "{file}_{dt}");
                let l = &m.layers[0];
                assert_eq!((l.name.as_str(), l.shape.as_slice()), ("proj.weight", &[64usize, 256][..]));
                assert_eq!(l.stored.short, short, "{file}_{dt} config {with_config}");
                assert_eq!(l.stored.scale_dtype, if dt == "f32" { "F32" } else { "BF16" });
                let got: Vec<u32> = m.dequantize(l).unwrap().iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, f32_bits(deq_dtype, &deq), "{file}_{dt} config {with_config}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 40);
}

#[test]
fn mixed_precision_targets_choose_each_modules_group() {
    let configs: serde_json::Value = serde_json::from_slice(&data("configs_ct019.json")).unwrap();
    let (w4, deq4, _) = reference("w4a16_f32");
    let (w8, deq8, _) = reference("w8a8_f32");
    let mut tensors: Tensors =
        w4.into_iter().map(|(n, d, s, b)| (n.replace("proj.", "a."), d, s, b)).collect();
    tensors.extend(w8.into_iter().map(|(n, d, s, b)| (n.replace("proj.", "b."), d, s, b)));
    tensors.push(("b.bias".into(), Dtype::F32, vec![1], vec![0; 4]));
    let mut group_b = configs["W8A8"]["config_groups"]["group_0"].clone();
    group_b["targets"] = serde_json::json!(["re:^b$"]);
    let mut group_a = configs["W4A16"]["config_groups"]["group_0"].clone();
    group_a["targets"] = serde_json::json!(["re:^a$"]);
    let mut q = configs["W4A16"].clone();
    q["format"] = "mixed-precision".into();
    q["config_groups"] = serde_json::json!({"group_0": group_a, "group_1": group_b});
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &tensors, Some(q));
    let m = QuantizedModel::open(dir.path()).unwrap();
    let shorts: Vec<_> = m.layers.iter().map(|l| (l.name.as_str(), l.stored.format.as_str())).collect();
    assert_eq!(shorts, [("a.weight", "pack-quantized"), ("b.weight", "int-quantized")]);
    assert_eq!(m.plain, ["b.bias"]);
    for (l, deq) in m.layers.iter().zip([deq4, deq8]) {
        let got: Vec<u32> = m.dequantize(l).unwrap().iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, f32_bits(Dtype::F32, &deq), "{}", l.name);
    }
}

/// GPTQModel's `pack_original` loops for 2/4/8 bits and its 3-bit word
/// pattern, transcribed literally: codes `[in, out]` → `[ceil(in·b/32), out]`.
fn gptq_pack_rows(q: &[u32], inp: usize, out: usize, bits: usize) -> Vec<u32> {
    let rows = (inp * bits).div_ceil(32);
    let mut w = vec![0u32; rows * out];
    let at = |i: usize, o: usize| q[i * out + o];
    for o in 0..out {
        if bits == 3 {
            let (mut i, mut row) = (0, 0);
            while row < rows {
                for j in i..i + 10 {
                    w[row * out + o] |= at(j, o) << (3 * (j - i));
                }
                i += 10;
                w[row * out + o] |= at(i, o) << 30;
                row += 1;
                w[row * out + o] |= (at(i, o) >> 2) & 1;
                i += 1;
                for j in i..i + 10 {
                    w[row * out + o] |= at(j, o) << (3 * (j - i) + 1);
                }
                i += 10;
                w[row * out + o] |= at(i, o) << 31;
                row += 1;
                w[row * out + o] |= (at(i, o) >> 1) & 3;
                i += 1;
                for j in i..i + 10 {
                    w[row * out + o] |= at(j, o) << (3 * (j - i) + 2);
                }
                i += 10;
                row += 1;
            }
        } else {
            let pf = 32 / bits;
            for row in 0..rows {
                for j in 0..pf {
                    w[row * out + o] |= at(row * pf + j, o) << (bits * j);
                }
            }
        }
    }
    w
}

/// The same packing along each row (`qzeros`): transpose, pack, transpose.
fn gptq_pack_cols(z: &[u32], groups: usize, out: usize, bits: usize) -> Vec<u32> {
    let t: Vec<u32> = (0..out * groups).map(|k| z[(k % groups) * out + k / groups]).collect();
    let p = gptq_pack_rows(&t, out, groups, bits);
    let words = (out * bits).div_ceil(32);
    (0..groups * words).map(|k| p[(k % words) * groups + k / words]).collect()
}

/// AutoAWQ `from_linear`'s loop: column `8j + order[i]` into nibble i of word j.
fn awq_pack(q: &[u32], rows: usize, cols: usize) -> Vec<u32> {
    const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
    let mut w = vec![0u32; rows * cols / 8];
    for r in 0..rows {
        for j in 0..cols / 8 {
            for (i, &o) in ORDER.iter().enumerate() {
                w[r * cols / 8 + j] |= q[r * cols + 8 * j + o] << (4 * i);
            }
        }
    }
    w
}

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A deterministic pseudo-random stream.
fn lcg(seed: u64) -> impl FnMut() -> u32 {
    let mut s = seed;
    move || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (s >> 33) as u32
    }
}

struct Case {
    inp: usize,
    out: usize,
    bits: usize,
    group: usize,
    awq: bool,
    v2: bool,
    act_order: bool,
}

/// Writes a GPTQ/AWQ layer `m` and returns R′ computed as the reference does:
/// scales[g_idx] · (q − z) in F16 (z = stored + 1 for GPTQ v1).
fn gptq_case(dir: &Path, c: &Case) -> Vec<f32> {
    let mut rnd = lcg((c.inp * 31 + c.bits * 7 + usize::from(c.awq)) as u64);
    let groups = c.inp.div_ceil(c.group);
    let maxq = (1u32 << c.bits) - 1;
    let q: Vec<u32> = (0..c.inp * c.out).map(|_| rnd() & maxq).collect();
    let z: Vec<u32> = (0..groups * c.out).map(|_| rnd() & maxq).collect();
    let s: Vec<f16> = (0..groups * c.out).map(|_| f16::from_f32((rnd() % 1000 + 1) as f32 * 1e-4)).collect();
    let g_idx: Vec<i32> = (0..c.inp)
        .map(|i| if c.act_order { ((i * 7 + 3) % c.inp / c.group) as i32 } else { (i / c.group) as i32 })
        .collect();
    let offset = u32::from(!c.awq && !c.v2);
    // v1 stores z − 1 (z ≥ 1 here so the stored field stays in range).
    let z = z.iter().map(|&v| v.max(offset)).collect::<Vec<_>>();
    let stored_z: Vec<u32> = z.iter().map(|&v| v - offset).collect();
    let sb: Vec<u8> = s.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut t: Tensors = vec![("m.scales".into(), Dtype::F16, vec![groups, c.out], sb)];
    if c.awq {
        t.push(("m.qweight".into(), Dtype::I32, vec![c.inp, c.out / 8], words(&awq_pack(&q, c.inp, c.out))));
        t.push((
            "m.qzeros".into(),
            Dtype::I32,
            vec![groups, c.out / 8],
            words(&awq_pack(&stored_z, groups, c.out)),
        ));
    } else {
        let qw = gptq_pack_rows(&q, c.inp, c.out, c.bits);
        let qz = gptq_pack_cols(&stored_z, groups, c.out, c.bits);
        t.push(("m.qweight".into(), Dtype::I32, vec![(c.inp * c.bits).div_ceil(32), c.out], words(&qw)));
        t.push(("m.qzeros".into(), Dtype::I32, vec![groups, (c.out * c.bits).div_ceil(32)], words(&qz)));
        let gb = g_idx.iter().flat_map(|x| x.to_le_bytes()).collect();
        t.push(("m.g_idx".into(), Dtype::I32, vec![c.inp], gb));
    }
    t.push(("m.bias".into(), Dtype::F16, vec![c.out], vec![0; 2 * c.out]));
    let cfg = if c.awq {
        serde_json::json!({"quant_method": "awq", "bits": 4, "group_size": c.group, "version": "gemm", "zero_point": true})
    } else {
        let fmt = if c.v2 { "gptq_v2" } else { "gptq" };
        serde_json::json!({"quant_method": "gptq", "bits": c.bits, "group_size": c.group, "sym": false,
            "desc_act": c.act_order, "checkpoint_format": fmt})
    };
    write_model(dir, &t, Some(cfg));
    let mut want = vec![0.0f32; c.out * c.inp];
    for o in 0..c.out {
        for i in 0..c.inp {
            let g = if c.awq { i / c.group } else { g_idx[i] as usize };
            let diff = f16::from_f32(q[i * c.out + o] as f32 - z[g * c.out + o] as f32);
            want[o * c.inp + i] = (diff * s[g * c.out + o]).to_f32();
        }
    }
    want
}

#[test]
fn gptq_and_awq_decode_as_the_reference_dequantizes() {
    let mut cases = Vec::new();
    for bits in [2, 3, 4, 8] {
        for (v2, act_order) in [(false, false), (true, false), (false, true)] {
            cases.push(Case { inp: 192, out: 64, bits, group: 64, awq: false, v2, act_order });
        }
    }
    cases.push(Case { inp: 256, out: 64, bits: 4, group: 128, awq: true, v2: false, act_order: false });
    for c in &cases {
        let dir = tempfile::tempdir().unwrap();
        let want = gptq_case(dir.path(), c);
        let m = QuantizedModel::open(dir.path()).unwrap();
        assert!(m.failed.is_empty(), "{:?}", m.failed);
        let l = m.layer("m.weight").unwrap();
        assert_eq!(l.shape, [c.out, c.inp]);
        assert_eq!(l.stored.format, if c.awq { "awq" } else { "gptq" });
        assert_eq!((l.stored.bits, l.stored.group_size), (c.bits as u8, Some(c.group)));
        assert_eq!(m.plain, ["m.bias"]);
        let got = m.dequantize(l).unwrap();
        let bad = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(bad, 0, "{} bits, awq {}, v2 {}, act_order {}", c.bits, c.awq, c.v2, c.act_order);
    }
}

#[test]
fn a_sharded_index_and_a_bare_file_read_the_same() {
    let configs: serde_json::Value = serde_json::from_slice(&data("configs_ct019.json")).unwrap();
    let (tensors, deq, deq_dtype) = reference("w4a16_asym_bf16");
    // Codes in one shard, scales and zero points in the other, an index naming them.
    let dir = tempfile::tempdir().unwrap();
    let (a, b): (Tensors, Tensors) =
        tensors.iter().cloned().partition(|t| t.0.ends_with("_packed") || t.0.ends_with("_shape"));
    let mut map = serde_json::Map::new();
    for (shard, part) in [("model-00001-of-00002.safetensors", &a), ("model-00002-of-00002.safetensors", &b)]
    {
        let sub = tempfile::tempdir().unwrap();
        write_model(sub.path(), part, None);
        std::fs::rename(sub.path().join("model.safetensors"), dir.path().join(shard)).unwrap();
        for t in part {
            map.insert(t.0.clone(), shard.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let cfg = serde_json::json!({"quantization_config": configs["W4A16_ASYM"]});
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let want = f32_bits(deq_dtype, &deq);
    for path in [dir.path().to_path_buf(), dir.path().join("model.safetensors.index.json")] {
        let m = QuantizedModel::open(&path).unwrap();
        assert_eq!(m.method.name(), "compressed-tensors");
        let got: Vec<u32> = m.dequantize(&m.layers[0]).unwrap().iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "{}", path.display());
    }
    // A bare file with config.json beside it.
    let single = tempfile::tempdir().unwrap();
    write_model(single.path(), &tensors, Some(configs["W4A16_ASYM"].clone()));
    let m = QuantizedModel::open(single.path().join("model.safetensors")).unwrap();
    assert_eq!(
        (m.method.name(), m.layers[0].stored.short.as_str()),
        ("compressed-tensors", "int4:group128:minmax:asym")
    );
    let got: Vec<u32> = m.dequantize(&m.layers[0]).unwrap().iter().map(|x| x.to_bits()).collect();
    assert_eq!(got, want);
}

/// NVFP4, MXFP4 and MXFP8 vectors llm-compressor wrote read back as
/// compressed-tensors decompresses them (BF16), with and without the config.
#[test]
fn microscaled_vectors_read_back_bit_for_bit() {
    let configs: serde_json::Value = serde_json::from_slice(&data("configs_ct019.json")).unwrap();
    let cases = [
        ("nvfp4a16", "NVFP4A16", "nvfp4:group16:minmax", "F8_E4M3"),
        ("mxfp4a16", "MXFP4A16", "mxfp4:group32:minmax", "U8"),
        ("mxfp8a16", "MXFP8A16", "mxfp8:group32:minmax", "U8"),
    ];
    let mut checked = 0;
    for (file, key, short, scale_dtype) in cases {
        for dt in ["f32", "bf16"] {
            let (tensors, deq, deq_dtype) = reference(&format!("{file}_{dt}"));
            for with_config in [true, false] {
                let dir = tempfile::tempdir().unwrap();
                write_model(dir.path(), &tensors, with_config.then(|| configs[key].clone()));
                let m = QuantizedModel::open(dir.path()).unwrap();
                assert!(m.failed.is_empty(), "{file}_{dt}: {:?}", m.failed);
                let l = &m.layers[0];
                assert_eq!((l.stored.short.as_str(), l.stored.scale_dtype.as_str()), (short, scale_dtype));
                let got: Vec<u32> = m.dequantize(l).unwrap().iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, f32_bits(deq_dtype, &deq), "{file}_{dt} config {with_config}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 12);
}
