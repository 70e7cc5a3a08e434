//! AWQ through a tiny random Llama block by block (`run::awq`): the mappings
//! llm-compressor resolves (v → o only without grouped key/value heads), each
//! search keeps its least loss with the identity as a candidate, the fold
//! leaves the float model's output unchanged, the result does not depend on
//! the thread count, and a BERT model is refused in one line.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use quantscope_engine::run::awq::{Smoothed, awq_model};
use quantscope_engine::run::{Hook, Model, NoHook};
use quantscope_engine::{Checkpoint, Scheme};

mod common;
use common::{llama_config, llama_shapes, minilm, values, write_model};

fn ids() -> Vec<Vec<u32>> {
    (0..8u64)
        .map(|i| values(5 + i as usize, 100 + i, 1.0).iter().map(|v| ((v + 1.0) * 19.9) as u32).collect())
        .collect()
}

fn run(model: &Model, ckpt: &Checkpoint) -> Smoothed {
    let scheme: Scheme = "int4:group16:awq:asym".parse().expect("scheme");
    let want = |n: &str| (!n.starts_with("lm_head")).then_some(scheme);
    awq_model(model, ckpt, &ids(), &want, &mut |_, _| {}, &AtomicBool::new(false)).expect("awq")
}

/// Every smoothed tensor in place of the checkpoint's.
struct Smooth(HashMap<String, Tensor>);

impl Hook for Smooth {
    fn weight(&self, name: &str) -> Option<&Tensor> {
        self.0.get(name)
    }
}

fn logits(model: &Model, hook: &mut dyn Hook) -> Vec<f32> {
    ids()
        .iter()
        .flat_map(|s| {
            model
                .forward(s, hook)
                .expect("forward")
                .flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("vec")
        })
        .collect()
}

#[test]
fn llama_mappings_searches_and_fold() {
    for kv in [2, 4] {
        let dir = tempfile::tempdir().expect("tmp");
        write_model(dir.path(), &llama_config(kv, false), &llama_shapes(kv, false));
        let ckpt = Checkpoint::open(dir.path()).expect("open");
        let model = Model::load(&ckpt).expect("load");
        let s = run(&model, &ckpt);
        let per_block = if kv == 4 { 4 } else { 3 };
        assert_eq!(s.mappings.len(), 2 * per_block, "kv heads {kv}");
        assert_eq!(s.mappings[0].smooth, "model.layers.0.input_layernorm");
        assert_eq!(s.mappings.iter().any(|m| m.smooth.ends_with("v_proj")), kv == 4);
        for m in &s.mappings {
            assert_eq!(m.losses.len(), 20);
            let least = m.losses.iter().copied().fold(f64::INFINITY, f64::min);
            assert_eq!(m.losses[m.best], least, "{}", m.smooth);
            assert_eq!(m.losses.iter().position(|&l| l == least), Some(m.best), "the first of equals wins");
            let (lo, hi) = m.scales.iter().fold((f64::MAX, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
            assert!((lo * hi - 1.0).abs() < 1e-9, "scales normalised: {lo} {hi}");
        }
        assert!(s.mappings.iter().any(|m| m.best != 0), "some search must move off the identity");
        // The norms and every balance layer are saved smoothed (o_proj too when v → o applies).
        assert!(s.tensors.contains_key("model.layers.1.post_attention_layernorm.weight"));
        assert_eq!(s.tensors.contains_key("model.layers.0.self_attn.o_proj.weight"), kv == 4);

        // W·s after the norm's g/s: the float model computes the same function.
        let smoothed: HashMap<String, Tensor> = s
            .tensors
            .iter()
            .map(|(n, v)| {
                let shape = ckpt.tensor(n).expect("tensor").shape.clone();
                (n.clone(), Tensor::from_vec(v.clone(), shape, &Device::Cpu).expect("t"))
            })
            .collect();
        let (a, b) = (logits(&model, &mut NoHook), logits(&model, &mut Smooth(smoothed)));
        let peak = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= 1e-4 * peak, "kv {kv}: the fold changed the output by {worst} (peak {peak})");
    }
}

#[test]
fn the_result_does_not_depend_on_the_thread_count() {
    let dir = tempfile::tempdir().expect("tmp");
    write_model(dir.path(), &llama_config(2, false), &llama_shapes(2, false));
    let ckpt = Checkpoint::open(dir.path()).expect("open");
    let model = Model::load(&ckpt).expect("load");
    let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("pool");
    let one = pool(1).install(|| run(&model, &ckpt));
    let two = pool(2).install(|| run(&model, &ckpt));
    for (a, b) in one.mappings.iter().zip(&two.mappings) {
        assert_eq!(a.scales, b.scales, "{}", a.smooth);
        assert_eq!(a.losses, b.losses, "{}", a.smooth);
    }
    assert_eq!(one.tensors, two.tensors);
}

#[test]
fn bert_is_refused_in_one_line() {
    let Some(dir) = minilm() else { return };
    let ckpt = Checkpoint::open(&dir).expect("open");
    let model = Model::load(&ckpt).expect("load");
    let scheme: Scheme = "int4:group128:awq:asym".parse().expect("scheme");
    let e = awq_model(
        &model,
        &ckpt,
        &[vec![101, 102]],
        &|_| Some(scheme),
        &mut |_, _| {},
        &AtomicBool::new(false),
    )
    .expect_err("refused")
    .to_string();
    assert!(e.contains("config.json") && e.contains("Llama") && !e.contains('\n'), "{e}");
}

#[test]
fn a_save_quantizes_the_smoothed_weights_and_writes_the_smoothed_norms() {
    use quantscope_engine::export::{self, ExportOptions};
    use quantscope_engine::recipe::Resolved;
    let dir = tempfile::tempdir().expect("tmp");
    write_model(dir.path(), &llama_config(2, false), &llama_shapes(2, false));
    let ckpt = Checkpoint::open(dir.path()).expect("open");
    let model = Model::load(&ckpt).expect("load");
    let s = run(&model, &ckpt);
    let recipe = Resolved {
        scheme: "int4:group16:awq:asym".parse().expect("scheme"),
        layers: std::collections::BTreeMap::default(),
    };
    let decisions = export::plan(ckpt.tensors(), &recipe, &|_| false);
    let save = |out: &std::path::Path, replaced: HashMap<String, Vec<f32>>| {
        let smoothed = !replaced.is_empty();
        let opts = ExportOptions { replaced: replaced.into(), smoothed, ..ExportOptions::default() };
        export::export(&ckpt, &decisions, out, &opts, &|_, _| {}, &AtomicBool::new(false))
    };
    let outs = tempfile::tempdir().expect("tmp");
    let e = save(&outs.path().join("none"), HashMap::new()).expect_err("needs the run").to_string();
    assert!(e.contains("AWQ run") && !e.contains('\n'), "{e}");
    let out = outs.path().join("awq");
    let summary = save(&out, s.tensors.clone().into_iter().collect()).expect("save");
    assert_eq!(summary.verified_tensors, Some(14));
    let saved = Checkpoint::open(&out).expect("saved");
    let norm = "model.layers.0.input_layernorm.weight";
    assert_eq!(saved.load_f32(norm).expect("norm"), s.tensors[norm], "the smoothed norm is written");
    assert_ne!(saved.load_f32(norm).expect("norm"), ckpt.load_f32(norm).expect("norm"));
    // The codes are min-max round-to-nearest of the smoothed weight.
    let q = "model.layers.0.mlp.gate_proj.weight";
    let rtn = quantscope_engine::analyze(
        &s.tensors[q],
        &[48, 32],
        &"int4:group16:minmax:asym".parse().expect("scheme"),
        &quantscope_engine::Options { keep_dequantized: true, ..Default::default() },
    )
    .expect("rtn");
    let info = ckpt.tensor(q).expect("info");
    let back = export::read_packed(&saved, info, &recipe.scheme).expect("read");
    assert_eq!(back, rtn.dequantized.expect("deq"));
}

#[test]
fn refusals_are_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    write_model(dir.path(), &llama_config(2, false), &llama_shapes(2, false));
    let ckpt = Checkpoint::open(dir.path()).expect("open");
    let model = Model::load(&ckpt).expect("load");
    let awq: Scheme = "int4:group16:awq:asym".parse().expect("scheme");
    let refuse = |ids: &[Vec<u32>], scheme_of: &(dyn Fn(&str) -> Option<Scheme> + Sync)| {
        let e = awq_model(&model, &ckpt, ids, scheme_of, &mut |_, _| {}, &AtomicBool::new(false))
            .expect_err("refused")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        e
    };
    let e = refuse(&[vec![]], &|_| Some(awq));
    assert!(e.contains("at least one sample"), "{e}");
    // q under AWQ, k under another scheme: one search cannot quantize both.
    let rtn: Scheme = "int8:channel".parse().expect("scheme");
    let e = refuse(&ids(), &|n: &str| Some(if n.contains("k_proj") { rtn } else { awq }));
    assert!(e.contains("k_proj") && e.contains("one AWQ scheme"), "{e}");
    let nvfp4: Scheme = "nvfp4:group16:awq".parse().expect("scheme");
    let e = refuse(&ids(), &|n: &str| (!n.starts_with("lm_head")).then_some(nvfp4));
    assert!(e.contains("global scale"), "{e}");
}
