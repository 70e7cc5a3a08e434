//! What a face shows for a layer is what the save writes: an NVFP4 attention
//! block whose q has its own scheme and whose k is excluded. The save then
//! gives q no shared global scale (its siblings are not all NVFP4), and the
//! one-layer analysis every face calls must agree to the bit: the global
//! scale, R′ as the saved file decompresses, and the metrics.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use quantscope_engine::export::{self, ExportMode, ExportOptions, SavePlan};
use quantscope_engine::quantized::QuantizedModel;
use quantscope_engine::recipe::{LayerChoice, Resolved};
use quantscope_engine::write::{OwnedTensor, write_safetensors};
use quantscope_engine::{Checkpoint, Dtype, Options, Scheme, analyze};

const BLOCK: &str = "model.layers.0.self_attn";

fn model(dir: &std::path::Path) -> std::path::PathBuf {
    let tensors: Vec<(String, OwnedTensor)> = ["q_proj", "k_proj", "v_proj"]
        .iter()
        .zip([0.5f32, 1.7, 0.25])
        .map(|(n, amax)| {
            let v: Vec<f32> = (0..32 * 64).map(|k| amax * ((k * 37 % 101) as f32 / 50.0 - 1.0)).collect();
            let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (format!("{BLOCK}.{n}.weight"), OwnedTensor { dtype: Dtype::F32, shape: vec![32, 64], data })
        })
        .collect();
    let path = dir.join("attn.safetensors");
    write_safetensors(&path, &tensors, None).expect("write the model");
    path
}

#[test]
fn a_layer_shows_the_global_scale_and_metrics_its_save_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = Checkpoint::open(model(tmp.path())).unwrap();
    let q = format!("{BLOCK}.q_proj.weight");
    let q_scheme: Scheme = "nvfp4:group16:mse".parse().unwrap();
    let mut layers = BTreeMap::new();
    layers.insert(q.clone(), LayerChoice::Quantize(q_scheme));
    layers.insert(format!("{BLOCK}.k_proj.weight"), LayerChoice::Exclude);
    let recipe = Resolved { scheme: "nvfp4".parse().unwrap(), layers };
    let plan = SavePlan::new(ckpt.tensors(), &recipe);
    let nvfp4: Scheme = "nvfp4".parse().unwrap();
    assert_eq!(plan.sibling_schemes(&q), vec![Some(q_scheme), None, Some(nvfp4)], "q, k, v as saved");
    assert!(plan.sibling_schemes("model.norm.weight").is_empty());

    let values = ckpt.load_f32(&q).unwrap();
    let opts = Options { keep_dequantized: true, ..Options::default() };
    let shown = plan.analyze_layer(&ckpt, &q, &values, &q_scheme, &opts).unwrap();

    let out = tmp.path().join("out");
    let export_opts = ExportOptions { mode: ExportMode::Packed, ..ExportOptions::default() };
    let summary =
        export::export(&ckpt, plan.decisions(), &out, &export_opts, &|_, _| {}, &AtomicBool::new(false))
            .unwrap();
    let saved = Checkpoint::open(out.join("model.safetensors")).unwrap();
    let gs = saved.tensor(&format!("{q}_global_scale")).unwrap();
    let stored_global = f32::from_le_bytes(saved.bytes(gs).try_into().unwrap());
    assert_eq!(shown.global_scale.map(f32::to_bits), Some(stored_global.to_bits()), "global scale");

    let published = QuantizedModel::open(&out).unwrap();
    let layer = published.layers.iter().find(|l| l.name == q).unwrap();
    let decoded = published.decode(layer).unwrap();
    let shown_r = shown.dequantized.as_ref().unwrap();
    assert!(decoded.values.iter().zip(shown_r).all(|(a, b)| a.to_bits() == b.to_bits()), "R′ differs");
    let written = summary.layers.iter().find(|l| l.name == q).unwrap();
    assert_eq!(written.metrics.mse.to_bits(), shown.metrics.mse.to_bits(), "MSE");
    assert_eq!(written.metrics.sqnr_db.to_bits(), shown.metrics.sqnr_db.to_bits(), "SQNR");

    // The one-scheme-for-every-sibling shortcut would have shared k's amax.
    let global_amax =
        quantscope_engine::fused::shared_global_amax(&ckpt, &q, &q_scheme, &|_| Some(q_scheme)).unwrap();
    let naive = analyze(&values, &[32, 64], &q_scheme, &Options { global_amax, ..opts }).unwrap();
    assert_ne!(naive.global_scale, shown.global_scale, "the case must tell the two apart");
    eprintln!(
        "q global scale: shown/saved {:?}, all-siblings shortcut {:?}; SQNR {:?} vs {:?} dB",
        shown.global_scale, naive.global_scale, shown.metrics.sqnr_db, naive.metrics.sqnr_db
    );
}

#[test]
fn save_groups_follow_the_stored_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = Checkpoint::open(model(tmp.path())).unwrap();
    let mut layers = BTreeMap::new();
    layers.insert(
        format!("{BLOCK}.q_proj.weight"),
        LayerChoice::Quantize("int4:group16:mse:asym".parse().unwrap()),
    );
    layers.insert(
        format!("{BLOCK}.k_proj.weight"),
        LayerChoice::Quantize("int4:group16:minmax:asym".parse().unwrap()),
    );
    let recipe = Resolved { scheme: "nvfp4".parse().unwrap(), layers };
    let groups = SavePlan::new(ckpt.tensors(), &recipe).groups(ckpt.tensors());
    let layouts: Vec<(String, usize, usize)> =
        groups.iter().map(|g| (g.layout(), g.modules.len(), g.schemes.len())).collect();
    assert_eq!(layouts, vec![("int4:group16:asym".into(), 2, 2), ("nvfp4:group16".into(), 1, 1)]);
}
