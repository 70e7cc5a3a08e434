//! Dumps what `engine/src/run` computes, for `tests/python/check_forward.py` to
//! compare with transformers: per sample its token ids, the model's output and
//! every Linear layer's input.
//!
//! `run_dump MODEL OUT.safetensors (--text FILE | --ids FILE)`; an ids file has one
//! sample per line, ids separated by spaces.

use std::collections::HashMap;

use candle_core::Tensor;
use quantscope_engine::Checkpoint;
use quantscope_engine::run::{Hook, Model};

/// Every Linear input of one sample, by layer name.
#[derive(Default)]
struct Inputs(HashMap<String, Vec<f32>>, HashMap<String, Vec<usize>>);

impl Hook for Inputs {
    fn input(&mut self, layers: &[&str], x: &Tensor) -> candle_core::Result<()> {
        for l in layers {
            self.0.insert((*l).to_string(), x.flatten_all()?.to_vec1()?);
            self.1.insert((*l).to_string(), x.dims().to_vec());
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_path, out, kind, file] = args.as_slice() else {
        anyhow::bail!("usage: run_dump MODEL OUT.safetensors (--text FILE | --ids FILE)");
    };
    let ckpt = Checkpoint::open(model_path)?;
    let model = Model::load(&ckpt)?;
    let lines = quantscope_engine::run::read_samples(std::path::Path::new(file), 64)?;
    let samples: Vec<Vec<u32>> = match kind.as_str() {
        "--text" => lines.iter().map(|l| model.tokenize(l)).collect::<Result<_, _>>()?,
        "--ids" => lines
            .iter()
            .map(|l| l.split_whitespace().map(str::parse).collect::<Result<_, _>>())
            .collect::<Result<_, _>>()?,
        other => anyhow::bail!("unknown option {other}"),
    };
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>, safetensors::Dtype)> = Vec::new();
    for (i, ids) in samples.iter().enumerate() {
        let mut hook = Inputs::default();
        let y = model.forward(ids, &mut hook)?;
        let bytes = ids.iter().flat_map(|&v| i64::from(v).to_le_bytes()).collect();
        tensors.push((format!("ids.{i}"), bytes, vec![ids.len()], safetensors::Dtype::I64));
        let v: Vec<f32> = y.flatten_all()?.to_vec1()?;
        tensors.push((format!("output.{i}"), f32_bytes(&v), y.dims().to_vec(), safetensors::Dtype::F32));
        for (name, v) in &hook.0 {
            tensors.push((
                format!("input.{i}.{name}"),
                f32_bytes(v),
                hook.1[name].clone(),
                safetensors::Dtype::F32,
            ));
        }
    }
    let views = tensors
        .iter()
        .map(|(n, b, s, d)| Ok((n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, std::path::Path::new(out))?;
    println!("{} samples written to {out}", samples.len());
    Ok(())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
