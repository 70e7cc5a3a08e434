//! The forwards of `engine/src/run` against candle-transformers' own models (same
//! weights, same ids), and the output-aware error against a direct sum over the
//! captured inputs. Tiny random BERT and Llama checkpoints are written here; the
//! real MiniLM is used when `sample-models/minilm` is present.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use quantscope_engine::run::{Hook, Model, NoHook, output_error};
use quantscope_engine::{Checkpoint, Scheme};

mod common;
use common::{llama_config, llama_shapes, minilm, write_model};

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a.flatten_all().expect("flat").to_vec1().expect("vec");
    let b: Vec<f32> = b.flatten_all().expect("flat").to_vec1().expect("vec");
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

const BERT_CONFIG: &str = r#"{"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 50,
  "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 24,
  "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "max_position_embeddings": 32, "type_vocab_size": 2,
  "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}"#;

fn bert_shapes() -> Vec<(String, Vec<usize>)> {
    let (h, m) = (16, 24);
    let mut s = vec![
        ("embeddings.word_embeddings.weight".to_string(), vec![50, h]),
        ("embeddings.position_embeddings.weight".to_string(), vec![32, h]),
        ("embeddings.token_type_embeddings.weight".to_string(), vec![2, h]),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for i in 0..2 {
        let p = format!("encoder.layer.{i}");
        for (n, o, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", m, h),
            ("output.dense", h, m),
        ] {
            s.push((format!("{p}.{n}.weight"), vec![o, inp]));
            s.push((format!("{p}.{n}.bias"), vec![o]));
        }
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            s.push((format!("{p}.{n}.weight"), vec![h]));
            s.push((format!("{p}.{n}.bias"), vec![h]));
        }
    }
    s
}

fn candle_bert(map: HashMap<String, Tensor>, config: &str, ids: &[u32]) -> Tensor {
    use candle_transformers::models::bert::{BertModel, Config};
    let cfg: Config = serde_json::from_str(config).expect("config");
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    let model = BertModel::load(vb, &cfg).expect("load");
    let ids = Tensor::new(ids, &Device::Cpu).expect("ids").unsqueeze(0).expect("batch");
    let types = ids.zeros_like().expect("types");
    model.forward(&ids, &types, None).expect("forward").squeeze(0).expect("squeeze")
}

#[test]
fn bert_forward_equals_candle_transformers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let map = write_model(dir.path(), BERT_CONFIG, &bert_shapes());
    let ckpt = Checkpoint::open(dir.path()).expect("open");
    let model = Model::load(&ckpt).expect("load");
    assert_eq!(model.linears().len(), 12);
    let ids = [1u32, 7, 3, 49, 0, 12, 2];
    let ours = model.forward(&ids, &mut NoHook).expect("forward");
    let theirs = candle_bert(map, BERT_CONFIG, &ids);
    assert_eq!(ours.dims(), &[7, 16]);
    let d = max_rel_diff(&ours, &theirs);
    assert!(d < 1e-5, "relative difference {d}");
}

#[test]
fn llama_forward_equals_candle_transformers() {
    use candle_transformers::models::llama::{Cache, Llama, LlamaConfig};
    for (kv, tie) in [(2, false), (4, true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = llama_config(kv, tie);
        let map = write_model(dir.path(), &config, &llama_shapes(kv, tie));
        let ckpt = Checkpoint::open(dir.path()).expect("open");
        let model = Model::load(&ckpt).expect("load");
        let ids = [1u32, 17, 5, 39, 8, 8, 22, 3, 0];
        let ours = model.forward(&ids, &mut NoHook).expect("forward");
        assert_eq!(ours.dims(), &[9, 40]);

        let cfg: LlamaConfig = serde_json::from_str(&config).expect("config");
        let cfg = cfg.into_config(false);
        let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
        let llama = Llama::load(vb, &cfg).expect("load");
        // Their forward gives the last position's logits; run every prefix to see each row.
        for t in [1, 4, ids.len()] {
            let mut cache = Cache::new(false, DType::F32, &cfg, &Device::Cpu).expect("cache");
            let x = Tensor::new(&ids[..t], &Device::Cpu).expect("ids").unsqueeze(0).expect("batch");
            let theirs = llama.forward(&x, 0, &mut cache).expect("forward").squeeze(0).expect("row");
            let d = max_rel_diff(&ours.i(t - 1).expect("row"), &theirs);
            assert!(d < 1e-5, "kv {kv} tie {tie} position {t}: relative difference {d}");
        }
    }
}

/// Keeps every input of one layer, to sum ‖ΔW x‖² directly.
struct Keep {
    layer: String,
    xs: Vec<Vec<f32>>,
}

impl Hook for Keep {
    fn input(&mut self, layers: &[&str], x: &Tensor) -> candle_core::Result<()> {
        if layers.contains(&self.layer.as_str()) {
            self.xs.extend(x.to_vec2::<f32>()?);
        }
        Ok(())
    }
}

#[test]
fn output_error_from_moments_equals_the_direct_sum() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_model(dir.path(), BERT_CONFIG, &bert_shapes());
    let ckpt = Checkpoint::open(dir.path()).expect("open");
    let model = Model::load(&ckpt).expect("load");
    let samples: Vec<Vec<u32>> = vec![vec![1, 7, 3, 49], vec![2, 2, 9, 31, 44, 5], vec![0, 1]];
    let acts = quantscope_engine::run::capture::capture_ids(&model, &samples, "test").expect("capture");
    assert_eq!(acts.tokens, 12);
    for layer in ["encoder.layer.0.attention.self.key.weight", "encoder.layer.1.output.dense.weight"] {
        let scheme: Scheme = "int4:tensor:minmax".parse().expect("scheme");
        let got = output_error::layer_output_error(&ckpt, &acts, layer, &scheme).expect("output error");
        assert!(got.exact);
        let mut keep = Keep { layer: layer.to_string(), xs: Vec::new() };
        for ids in &samples {
            model.forward(ids, &mut keep).expect("forward");
        }
        assert_eq!(keep.xs.len(), 12);
        let w = ckpt.load_f32(layer).expect("w");
        let opts = quantscope_engine::Options { keep_dequantized: true, ..Default::default() };
        let info = ckpt.tensor(layer).expect("info");
        let wq = quantscope_engine::analyze(&w, &info.shape, &scheme, &opts)
            .expect("analyze")
            .dequantized
            .expect("R'");
        let n = info.shape[1];
        let (mut signal, mut noise) = (0f64, 0f64);
        for x in &keep.xs {
            for (row, row_q) in w.chunks(n).zip(wq.chunks(n)) {
                let y: f64 = row.iter().zip(x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                let e: f64 = row
                    .iter()
                    .zip(row_q)
                    .zip(x)
                    .map(|((a, q), b)| (f64::from(*a) - f64::from(*q)) * f64::from(*b))
                    .sum();
                signal += y * y;
                noise += e * e;
            }
        }
        assert!(noise > 0.0);
        // Σxxᵀ sums each batch of tokens in f32 (docs/numerics.md, "Activation statistics").
        assert!((got.signal - signal).abs() <= 1e-6 * signal, "{} vs {signal}", got.signal);
        assert!((got.noise - noise).abs() <= 1e-6 * noise, "{} vs {noise}", got.noise);
    }
}

/// A layer's end-to-end run started from the cached float input of its block gives
/// the same numbers, bit for bit, as the run from the embeddings; and the Job (which
/// starts each layer at its block) gives them too.
#[test]
fn a_run_started_at_the_layers_block_equals_the_whole_run() {
    use quantscope_engine::run::sensitivity::{Job, Reference};
    use std::sync::atomic::AtomicBool;
    let cases = [
        (BERT_CONFIG.to_string(), bert_shapes(), "encoder.layer.1.intermediate.dense.weight"),
        (llama_config(2, false), llama_shapes(2, false), "model.layers.1.self_attn.k_proj.weight"),
    ];
    for (config, shapes, layer) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        write_model(dir.path(), &config, &shapes);
        let ckpt = Checkpoint::open(dir.path()).expect("open");
        let model = Model::load(&ckpt).expect("load");
        let samples: Vec<Vec<u32>> = vec![vec![1, 7, 3, 19], vec![2, 2, 9, 31, 14, 5], vec![0, 1]];
        let acts = quantscope_engine::run::capture::capture_ids(&model, &samples, "test").expect("capture");
        let reference = Reference::new(&model, samples.clone()).expect("reference");
        let scheme: Scheme = "int4:tensor:minmax".parse().expect("scheme");
        let (_, wq, _) = output_error::quantized_layer(&ckpt, layer, &scheme).expect("W'");
        let shape = ckpt.tensor(layer).expect("info").shape.clone();
        let one = HashMap::from([(layer.to_string(), Tensor::from_vec(wq, shape, &Device::Cpu).expect("t"))]);
        let cancel = AtomicBool::new(false);
        let whole = reference.compare(&model, &one, &cancel).expect("whole run");
        let from = model.block_of(layer);
        assert_eq!(from, 1, "{layer}");
        let inputs = reference.inputs_at(&model, 1).expect("inputs of block 1");
        let started = reference.compare_from(&model, from, &inputs, &one, &cancel).expect("from block");
        assert_eq!(whole, started, "{layer}");
        assert!(whole.cosine.map_or(0.0, |c| 1.0 - c) + whole.kl.unwrap_or(0.0) > 0.0, "{whole:?}");
        let job = Job { ckpt: &ckpt, model: &model, acts: &acts, reference: &reference, scheme: &scheme };
        let layers: Vec<String> = model.linears().into_iter().filter(|l| !l.contains("embed")).collect();
        let report = job.run(&layers, &cancel, &mut |_, _| {}).expect("job");
        let row = report.layers.iter().find(|r| r.name == layer).expect("row");
        assert_eq!(row.end_to_end, whole, "{layer}");
    }
}

#[test]
fn unsupported_architectures_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_model(dir.path(), r#"{"model_type": "gpt2"}"#, &[("w".to_string(), vec![2, 2])]);
    let ckpt = Checkpoint::open(dir.path()).expect("open");
    let e = Model::load(&ckpt).err().expect("refused").to_string();
    assert!(e.contains("config.json") && e.contains("gpt2") && !e.contains('\n'), "{e}");
    // A config that does not match the weights names the tensor.
    std::fs::write(dir.path().join("config.json"), BERT_CONFIG).expect("config");
    let e = Model::load(&ckpt).err().expect("refused").to_string();
    assert!(e.contains("embeddings.word_embeddings.weight") && !e.contains('\n'), "{e}");
}

#[test]
fn minilm_tokens_and_output_equal_candle_transformers() {
    let Some(dir) = minilm() else { return };
    let ckpt = Checkpoint::open(&dir).expect("open");
    let model = Model::load(&ckpt).expect("load");
    // [CLS] hello world ! [SEP], no padding to 128.
    assert_eq!(model.tokenize("Hello world!").expect("ids"), [101, 7592, 2088, 999, 102]);
    let long = "word ".repeat(400);
    assert_eq!(model.tokenize(&long).expect("ids").len(), 128);
    let map: HashMap<String, Tensor> = ckpt
        .tensors()
        .iter()
        .filter(|t| t.is_quantizable())
        .map(|t| {
            let v = ckpt.load_f32(&t.name).expect("load");
            (t.name.clone(), Tensor::from_vec(v, t.shape.as_slice(), &Device::Cpu).expect("tensor"))
        })
        .collect();
    let config = std::fs::read_to_string(dir.join("config.json")).expect("config");
    let ids = model.tokenize("The kettle clicked off just as the phone began to ring.").expect("ids");
    let ours = model.forward(&ids, &mut NoHook).expect("forward");
    let d = max_rel_diff(&ours, &candle_bert(map, &config, &ids));
    assert!(d < 1e-5, "relative difference {d}");
}

#[test]
fn minilm_capture_covers_every_linear_and_gives_output_sqnr() {
    let Some(dir) = minilm() else { return };
    let ckpt = Checkpoint::open(&dir).expect("open");
    let model = Model::load(&ckpt).expect("load");
    let samples = quantscope_engine::run::inputs::samples_of(quantscope_engine::run::BUILTIN_TEXT, 16);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let mut seen = 0;
    let acts = quantscope_engine::run::capture(&model, &samples, "builtin", &cancel, &mut |d| seen = d)
        .expect("capture");
    assert_eq!((acts.samples, seen), (16, 16));
    // q/k/v share one input: 4 inputs per layer, 36 Linear layers.
    assert_eq!(acts.sites.len(), 24);
    assert_eq!(model.linears().len(), 36);
    let scheme: Scheme = "int8:channel:minmax".parse().expect("scheme");
    for layer in model.linears() {
        let site = acts.site(&layer).expect("captured");
        assert_eq!(site.tokens, acts.tokens);
        let e = output_error::layer_output_error(&ckpt, &acts, &layer, &scheme).expect("output error");
        let db = e.sqnr_db();
        assert!(e.exact && db.is_finite() && db > 20.0 && db < 80.0, "{layer}: {db}");
    }
}

/// Several samples packed into one forward give each sample's rows as its own run
/// does (attention within the sample, positions restarting; a sliding window too),
/// and the hook sees every token once, in sample order.
#[test]
fn a_packed_forward_equals_each_sample_alone() {
    use quantscope_engine::run::Pack;
    let window = llama_config(2, false).replace(r#""hidden_act""#, r#""sliding_window": 3, "hidden_act""#);
    let cases = [
        (BERT_CONFIG.to_string(), bert_shapes()),
        (llama_config(2, false), llama_shapes(2, false)),
        (window, llama_shapes(2, false)),
    ];
    let samples: Vec<Vec<u32>> = vec![vec![1, 7, 3, 19], vec![2, 2, 9, 31, 14, 5], vec![0], vec![4, 4, 8]];
    for (config, shapes) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        write_model(dir.path(), &config, &shapes);
        let ckpt = Checkpoint::open(dir.path()).expect("open");
        let model = Model::load(&ckpt).expect("load");
        let pack = Pack::of(&samples);
        let mut seen = Keep { layer: model.linears()[0].clone(), xs: Vec::new() };
        let packed = model.forward_pack(&pack, &mut seen).expect("packed");
        assert_eq!(seen.xs.len(), 14);
        for (ids, rows) in samples.iter().zip(pack.ranges()) {
            let mut alone_in = Keep { layer: model.linears()[0].clone(), xs: Vec::new() };
            let alone = model.forward(ids, &mut alone_in).expect("alone");
            let d = max_rel_diff(&packed.narrow(0, rows.start, rows.len()).expect("rows"), &alone);
            assert!(d < 1e-6, "{config}: sample {ids:?} differs by {d}");
            assert_eq!(alone_in.xs.len(), ids.len());
        }
    }
}

/// Σxxᵀ summed in f64 over every token, as a reference for the capture's f32 batch sums.
#[derive(Default)]
struct Gram64(HashMap<String, Tensor>);

impl Hook for Gram64 {
    fn input(&mut self, layers: &[&str], x: &Tensor) -> candle_core::Result<()> {
        let x = x.to_dtype(DType::F64)?;
        let g = x.t()?.matmul(&x)?;
        let key = layers[0].to_string();
        let sum = match self.0.remove(&key) {
            Some(acc) => acc.add(&g)?,
            None => g,
        };
        self.0.insert(key, sum);
        Ok(())
    }
}

/// The capture sums Σxxᵀ in f32 within each batch of tokens: on MiniLM the output
/// SQNR of every Linear layer stays within 1e-6 relative of the one from an f64 Σxxᵀ.
#[test]
fn minilm_output_sqnr_of_the_f32_gram_equals_f64() {
    use quantscope_engine::run::{PACK_TOKENS, Pack};
    let Some(dir) = minilm() else { return };
    let ckpt = Checkpoint::open(&dir).expect("open");
    let model = Model::load(&ckpt).expect("load");
    let samples = quantscope_engine::run::inputs::samples_of(quantscope_engine::run::BUILTIN_TEXT, 64);
    let ids: Vec<Vec<u32>> = samples.iter().map(|s| model.tokenize(s).expect("ids")).collect();
    let acts = quantscope_engine::run::capture::capture_ids(&model, &ids, "test").expect("capture");
    let mut exact = Gram64::default();
    for (_, pack) in Pack::split(&ids, PACK_TOKENS) {
        model.forward_pack(&pack, &mut exact).expect("forward");
    }
    let scheme: Scheme = "int8:channel:minmax".parse().expect("scheme");
    let mut worst = 0f64;
    for layer in model.linears() {
        let site = acts.site(&layer).expect("captured");
        let mut reference = site.clone();
        reference.gram = Some(exact.0[&site.layers[0]].clone());
        let (w, wq, _) = output_error::quantized_layer(&ckpt, &layer, &scheme).expect("W'");
        let got = output_error::output_error(&w, &wq, site).expect("f32 gram").sqnr_db();
        let want = output_error::output_error(&w, &wq, &reference).expect("f64 gram").sqnr_db();
        assert!(got.is_finite() && got > 20.0, "{layer}: {got} dB");
        worst = worst.max(((got - want) / want).abs());
    }
    eprintln!("worst relative difference of the output SQNR: {worst:e}");
    assert!(worst <= 1e-6, "{worst}");
}
