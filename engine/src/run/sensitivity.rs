//! End-to-end sensitivity: quantize one Linear layer alone under a scheme, run
//! every sample, and measure how far the model's output moves from the float
//! model's (docs/numerics.md, "End-to-end sensitivity"); then every layer
//! quantized together. Encoders: cosine and MSE of the pooled embedding;
//! decoders: KL of the next-token distribution.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{D, Device, Tensor};
use serde::Serialize;

use super::{Hook, Kind, Model, NoHook};
use crate::analyze::{Options, analyze};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::format::WorkDtype;
use crate::scheme::Scheme;

/// How far the quantized model's output is from the float model's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct EndToEnd {
    /// Mean over samples of cos(pooled float, pooled quantized) (encoders).
    pub cosine: Option<f64>,
    /// Mean over samples and dimensions of the squared difference of the pooled embeddings (encoders).
    pub mse: Option<f64>,
    /// Mean over tokens of KL(float ‖ quantized) of the next-token distribution (decoders).
    pub kl: Option<f64>,
}

/// The float model's outputs, computed once.
pub struct Reference {
    kind: Kind,
    ids: Vec<Vec<u32>>,
    /// Per sample: the pooled embedding `[hidden]` (encoders) or log-probabilities `[tokens, vocab]`.
    outputs: Vec<Tensor>,
}

/// Replaces the weights of some layers.
struct Swap<'a>(&'a HashMap<String, Tensor>);

impl Hook for Swap<'_> {
    fn weight(&self, layer: &str) -> Option<&Tensor> {
        self.0.get(layer)
    }
}

fn measure(kind: Kind, out: &Tensor) -> candle_core::Result<Tensor> {
    match kind {
        Kind::Encoder => out.mean(0),
        Kind::Decoder => candle_nn::ops::log_softmax(out, D::Minus1),
    }
}

impl Reference {
    /// Runs the float model over `ids` once.
    pub fn new(model: &Model, ids: Vec<Vec<u32>>) -> Result<Self> {
        let kind = model.kind();
        let outputs = ids
            .iter()
            .map(|s| measure(kind, &model.forward(s, &mut NoHook)?).map_err(|e| model.error(&e)))
            .collect::<Result<_>>()?;
        Ok(Self { kind, ids, outputs })
    }

    pub fn samples(&self) -> usize {
        self.ids.len()
    }

    pub fn tokens(&self) -> usize {
        self.ids.iter().map(Vec::len).sum()
    }

    /// The output change with `weights` (layer → W′) in place of the float ones.
    pub fn compare(&self, model: &Model, weights: &HashMap<String, Tensor>, cancel: &AtomicBool) -> Result<EndToEnd> {
        let mut hook = Swap(weights);
        let (mut cos, mut sq, mut dims, mut kl, mut tokens) = (0f64, 0f64, 0usize, 0f64, 0usize);
        for (ids, reference) in self.ids.iter().zip(&self.outputs) {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let out = model.forward(ids, &mut hook)?;
            let q = measure(self.kind, &out).map_err(|e| model.error(&e))?;
            let (a, b) = (to_f64(reference, model)?, to_f64(&q, model)?);
            match self.kind {
                Kind::Encoder => {
                    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
                    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
                    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
                    cos += if na == 0.0 || nb == 0.0 { f64::from(u8::from(na == nb)) } else { dot / (na * nb) };
                    sq += a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
                    dims += a.len();
                }
                Kind::Decoder => {
                    // Σ_v p(v) (log p(v) − log q(v)), p from the float model's log-probabilities.
                    kl += a.iter().zip(&b).map(|(lp, lq)| if lp.is_finite() { lp.exp() * (lp - lq) } else { 0.0 }).sum::<f64>();
                    tokens += ids.len();
                }
            }
        }
        let n = self.ids.len().max(1) as f64;
        Ok(match self.kind {
            Kind::Encoder => EndToEnd { cosine: Some(cos / n), mse: Some(sq / dims.max(1) as f64), kl: None },
            Kind::Decoder => EndToEnd { cosine: None, mse: None, kl: Some(kl / tokens.max(1) as f64) },
        })
    }
}

fn to_f64(t: &Tensor, model: &Model) -> Result<Vec<f64>> {
    let v: Vec<f32> = t.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| model.error(&e))?;
    Ok(v.into_iter().map(f64::from).collect())
}

/// W′ of `layer` under `scheme` (in its working dtype, as `report` and a save compute it) as a tensor.
pub fn quantized_weight(ckpt: &Checkpoint, layer: &str, scheme: &Scheme) -> Result<(Tensor, crate::metrics::Metrics)> {
    let info = ckpt.tensor(layer)?;
    let w = ckpt.load_f32(layer)?;
    let opts = Options { keep_dequantized: true, work: WorkDtype::of(info.dtype), ..Options::default() };
    let res = analyze(&w, &info.shape, scheme, &opts)?;
    let metrics = res.metrics;
    let wq = res.dequantized.ok_or_else(|| Error::NotFound(format!("{layer} (no R')")))?;
    let t = Tensor::from_vec(wq, info.shape.as_slice(), &Device::Cpu).map_err(|e| Error::Tensor {
        path: ckpt.path.clone(),
        tensor: layer.to_string(),
        reason: e.to_string(),
    })?;
    Ok((t, metrics))
}
