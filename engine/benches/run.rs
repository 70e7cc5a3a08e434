//! Running MiniLM (issue 16 targets on 2 cores): activation capture over 256
//! sentences (≤ 5 s) and the end-to-end sensitivity of all 36 Linear layers over
//! the same 256 sentences (≤ 30 s; each layer's run starts at its block), and
//! GPTQ of all 37 Linear layers block by block over the 300 shipped sentences,
//! its Hessians captured on the way (issue 25: ≤ 10 s). Skips
//! when `sample-models/minilm` is absent. Slow per iteration (10 samples each):
//! `cargo bench -p quantscope-engine --bench run -- run/minilm --measurement-time 300`.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use criterion::{Criterion, criterion_group, criterion_main};
use quantscope_engine::Checkpoint;
use quantscope_engine::run::sensitivity::{Job, Reference};
use quantscope_engine::run::{self, Model};

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-models/minilm");
    if !dir.join("model.safetensors").is_file() {
        eprintln!("sample-models/minilm is absent: nothing to measure");
        return;
    }
    let ckpt = Checkpoint::open(&dir).expect("MiniLM");
    let model = Model::load(&ckpt).expect("model");
    let samples = run::inputs::samples_of(run::BUILTIN_TEXT, 256);
    let ids: Vec<Vec<u32>> = samples.iter().map(|s| model.tokenize(s).expect("ids")).collect();
    let cancel = AtomicBool::new(false);
    let mut g = c.benchmark_group("run/minilm");
    g.sample_size(10);
    g.bench_function("capture/256", |b| {
        b.iter(|| run::capture(&model, &samples, "bench", &cancel, &mut |_| {}).expect("capture"));
    });
    let acts = run::capture(&model, &samples, "bench", &cancel, &mut |_| {}).expect("capture");
    let scheme = "int8:channel:minmax".parse().expect("scheme");
    let layers = model.linears();
    assert_eq!(layers.len(), 36);
    // As the app and the CLI run it: the float outputs once, then every layer and all together.
    g.bench_function("end_to_end/36x256", |b| {
        b.iter(|| {
            let reference = Reference::new(&model, ids.clone()).expect("reference");
            let job = Job { ckpt: &ckpt, model: &model, acts: &acts, reference: &reference, scheme: &scheme };
            job.run(&layers, &cancel, &mut |_, _| {}).expect("sensitivity")
        });
    });
    // As `quantscope quantize --scheme int4:group128:gptq --inputs builtin` runs it (before writing).
    let all = run::inputs::samples_of(run::BUILTIN_TEXT, usize::MAX);
    let all_ids: Vec<Vec<u32>> = all.iter().map(|s| model.tokenize(s).expect("ids")).collect();
    let gptq: quantscope_engine::Scheme = "int4:group128:gptq".parse().expect("scheme");
    g.bench_function("gptq/37x300", |b| {
        b.iter(|| {
            let want = |_: &str| Some(gptq);
            let solved =
                run::sequential::gptq_model(&model, &ckpt, &all_ids, &want, false, &mut |_, _| {}, &cancel);
            assert_eq!(solved.expect("gptq").layers.len(), 37);
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
