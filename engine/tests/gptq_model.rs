//! GPTQ through MiniLM block by block (`run::sequential`): block 0 sees the
//! float capture's inputs, later blocks the quantized blocks' outputs, the
//! pooler is solved too, the result does not depend on the thread count, and
//! GPTQ's R′ beats round-to-nearest on the output while losing on the weight.

use std::sync::atomic::AtomicBool;

use quantscope_engine::run::sequential::{Solved, gptq_model};
use quantscope_engine::run::{Model, capture, inputs::samples_of, output_error};
use quantscope_engine::{Checkpoint, Scheme};

mod common;
use common::minilm;

fn run(model: &Model, ckpt: &Checkpoint, ids: &[Vec<u32>], only: Option<&str>) -> Solved {
    let scheme: Scheme = "int4:group128:gptq".parse().expect("scheme");
    let want = |n: &str| only.is_none_or(|o| o == n).then_some(scheme);
    gptq_model(model, ckpt, ids, &want, true, &mut |_, _| {}, &AtomicBool::new(false)).expect("gptq")
}

#[test]
fn minilm_block_by_block() {
    let Some(dir) = minilm() else { return };
    let ckpt = Checkpoint::open(&dir).expect("open");
    let model = Model::load(&ckpt).expect("load");
    let samples = samples_of(quantscope_engine::run::BUILTIN_TEXT, 24);
    let ids: Vec<Vec<u32>> = samples.iter().map(|s| model.tokenize(s).expect("tokenize")).collect();
    let all = run(&model, &ckpt, &ids, None);
    assert_eq!(all.layers.len(), 37, "36 encoder Linear layers and the pooler");
    assert!(all.layers.contains_key("pooler.dense.weight"));

    // Block 0's inputs are the float model's: its output SQNR, from the
    // pipeline's Hessian, equals the one from the float capture's Σxxᵀ.
    let acts = capture(&model, &samples, "builtin", &AtomicBool::new(false), &mut |_| {}).expect("capture");
    let q = "encoder.layer.0.attention.self.query.weight";
    let w = ckpt.load_f32(q).expect("weight");
    let from_capture =
        output_error::output_error(&w, &all.layers[q].dequantized, acts.site(q).expect("site"))
            .expect("error");
    let ours = all.layers[q].output_sqnr_db.expect("measured");
    assert!(
        (from_capture.sqnr_db() - ours).abs() < 1e-6 * ours.abs(),
        "{} vs {ours}",
        from_capture.sqnr_db()
    );

    // Block 1 is calibrated on block 0 quantized: solving it alone (block 0
    // float) gives other codes.
    let l1 = "encoder.layer.1.intermediate.dense.weight";
    let alone = run(&model, &ckpt, &ids, Some(l1));
    assert_eq!(alone.layers.len(), 1);
    assert_ne!(alone.layers[l1].dequantized, all.layers[l1].dequantized);

    // GPTQ's trade, on the inputs it was solved on.
    assert!(all.layers.values().all(|l| l.output_sqnr_db.is_some() && l.rtn_output_sqnr_db.is_some()));
    let better = all.layers.values().filter(|l| l.output_sqnr_db > l.rtn_output_sqnr_db).count();
    assert_eq!(better, all.layers.len(), "GPTQ beats round-to-nearest on every layer's output");
    assert!(all.layers.values().all(|l| !l.fallback && l.loss > 0.0));

    // One thread or two: the same R′, bit for bit.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let one = pool.install(|| run(&model, &ckpt, &ids, None));
    for (name, l) in &all.layers {
        assert_eq!(l.dequantized, one.layers[name].dequantized, "{name}");
    }
}
