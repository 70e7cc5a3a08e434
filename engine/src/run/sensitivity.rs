//! End-to-end sensitivity: quantize one Linear layer alone under a scheme, run
//! every sample, and measure how far the model's output moves from the float
//! model's (docs/numerics.md, "End-to-end sensitivity"); then every layer
//! quantized together. Encoders: cosine and MSE of the pooled embedding;
//! decoders: KL of the next-token distribution.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{D, Device, Tensor};
use serde::Serialize;

use super::{Hook, Kind, Model, NoHook, PACK_TOKENS, Pack};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::scheme::Scheme;
use rayon::prelude::*;

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
    /// The samples packed for the runs, each pack with its range of sample indices.
    packs: Vec<(Range<usize>, Pack)>,
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

/// What is compared of each sample of a pack's output: the mean over its tokens
/// (encoders) or its tokens' log-probabilities (decoders).
fn measure(kind: Kind, out: &Tensor, pack: &Pack) -> candle_core::Result<Vec<Tensor>> {
    let all = match kind {
        Kind::Encoder => out.clone(),
        // Row by row, so the whole pack at once equals each sample alone.
        Kind::Decoder => super::rows::map(out, |x| candle_nn::ops::log_softmax(x, D::Minus1))?,
    };
    pack.ranges()
        .map(|r| {
            let rows = all.narrow(0, r.start, r.len())?;
            match kind {
                Kind::Encoder => rows.mean(0),
                Kind::Decoder => Ok(rows),
            }
        })
        .collect()
}

impl Reference {
    /// Runs the float model over `ids` once.
    pub fn new(model: &Model, ids: Vec<Vec<u32>>) -> Result<Self> {
        let kind = model.kind();
        let packs = Pack::split(&ids, PACK_TOKENS);
        let outputs: Vec<Vec<Tensor>> = packs
            .par_iter()
            .map(|(_, p)| measure(kind, &model.forward_pack(p, &mut NoHook)?, p).map_err(|e| model.error(&e)))
            .collect::<Result<_>>()?;
        Ok(Self { kind, ids, packs, outputs: outputs.into_iter().flatten().collect() })
    }

    pub fn samples(&self) -> usize {
        self.ids.len()
    }

    pub fn tokens(&self) -> usize {
        self.ids.iter().map(Vec::len).sum()
    }

    /// The float input of block `block` for each of the runs' packs (what
    /// [`Self::compare_from`] takes).
    pub fn inputs_at(&self, model: &Model, block: usize) -> Result<Vec<Tensor>> {
        let mut starts = BlockInputs::new(model, self)?;
        Ok(starts.seek(model, self, block)?.to_vec())
    }

    /// The output change with `weights` (layer → W′) in place of the float ones.
    pub fn compare(
        &self,
        model: &Model,
        weights: &HashMap<String, Tensor>,
        cancel: &AtomicBool,
    ) -> Result<EndToEnd> {
        let inputs = self.packs.par_iter().map(|(_, p)| model.embed(p)).collect::<Result<Vec<_>>>()?;
        self.compare_from(model, 0, &inputs, weights, cancel)
    }

    /// [`Self::compare`] when every swapped layer lies in block `from` or later:
    /// the run starts from `inputs`, each pack's float input of that block ([`Self::inputs_at`]).
    pub fn compare_from(
        &self,
        model: &Model,
        from: usize,
        inputs: &[Tensor],
        weights: &HashMap<String, Tensor>,
        cancel: &AtomicBool,
    ) -> Result<EndToEnd> {
        if inputs.len() != self.packs.len() {
            return Err(Error::format(&model.dir, "block inputs do not match the reference's packs"));
        }
        // Packs in parallel (their element-wise ops stay on the calling thread,
        // `rows`); the samples' terms are summed in sample order, so the result does
        // not depend on the thread count.
        let terms = self
            .packs
            .par_iter()
            .zip(inputs.par_iter())
            .map(|((samples, pack), x)| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                let out = model.forward_from(from, x, pack, &mut Swap(weights))?;
                let q = measure(self.kind, &out, pack).map_err(|e| model.error(&e))?;
                samples
                    .clone()
                    .zip(q)
                    .map(|(i, q)| {
                        let (a, b) = (to_f64(&self.outputs[i], model)?, to_f64(&q, model)?);
                        Ok(self.terms(&a, &b, self.ids[i].len()))
                    })
                    .collect::<Result<Vec<Terms>>>()
            })
            .collect::<Result<Vec<Vec<Terms>>>>()?;
        let t = terms.iter().flatten().fold(Terms::default(), |a, b| Terms {
            cos: a.cos + b.cos,
            sq: a.sq + b.sq,
            dims: a.dims + b.dims,
            kl: a.kl + b.kl,
            tokens: a.tokens + b.tokens,
        });
        let n = self.ids.len().max(1) as f64;
        Ok(match self.kind {
            Kind::Encoder => {
                EndToEnd { cosine: Some(t.cos / n), mse: Some(t.sq / t.dims.max(1) as f64), kl: None }
            }
            Kind::Decoder => EndToEnd { cosine: None, mse: None, kl: Some(t.kl / t.tokens.max(1) as f64) },
        })
    }

    /// One sample's share of the measures: `a` the float output's measure, `b` the quantized one's.
    fn terms(&self, a: &[f64], b: &[f64], tokens: usize) -> Terms {
        match self.kind {
            Kind::Encoder => {
                let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
                let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
                let cos =
                    if na == 0.0 || nb == 0.0 { f64::from(u8::from(na == nb)) } else { dot / (na * nb) };
                let sq = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
                Terms { cos, sq, dims: a.len(), ..Terms::default() }
            }
            // Σ_v p(v) (log p(v) − log q(v)), p from the float model's log-probabilities.
            Kind::Decoder => Terms {
                kl: a
                    .iter()
                    .zip(b)
                    .map(|(lp, lq)| if lp.is_finite() { lp.exp() * (lp - lq) } else { 0.0 })
                    .sum(),
                tokens,
                ..Terms::default()
            },
        }
    }
}

/// Sums over samples behind [`EndToEnd`].
#[derive(Default)]
struct Terms {
    cos: f64,
    sq: f64,
    dims: usize,
    kl: f64,
    tokens: usize,
}

/// Each pack's float input of one block, advanced block by block as the
/// layers are visited in forward order (memory: one block's inputs).
struct BlockInputs {
    at: usize,
    inputs: Vec<Tensor>,
}

impl BlockInputs {
    fn new(model: &Model, r: &Reference) -> Result<Self> {
        Ok(Self { at: 0, inputs: r.packs.par_iter().map(|(_, p)| model.embed(p)).collect::<Result<_>>()? })
    }

    /// The inputs of block `to` (from the embeddings again if `to` lies behind).
    fn seek(&mut self, model: &Model, r: &Reference, to: usize) -> Result<&[Tensor]> {
        if to < self.at {
            *self = Self::new(model, r)?;
        }
        while self.at < to.min(model.blocks()) {
            let b = self.at;
            self.inputs = r
                .packs
                .par_iter()
                .zip(self.inputs.par_iter())
                .map(|((_, p), x)| model.block(b, x, p, &mut NoHook))
                .collect::<Result<_>>()?;
            self.at += 1;
        }
        Ok(&self.inputs)
    }
}

fn to_f64(t: &Tensor, model: &Model) -> Result<Vec<f64>> {
    let v: Vec<f32> = t.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| model.error(&e))?;
    Ok(v.into_iter().map(f64::from).collect())
}

/// One layer's row of the sensitivity table.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    pub name: String,
    /// The plain weight SQNR, as `report` gives it (null when lossless).
    #[serde(serialize_with = "finite_or_null")]
    pub weight_sqnr_db: f64,
    /// From the captured moments (null when lossless).
    #[serde(serialize_with = "finite_or_null")]
    pub output_sqnr_db: f64,
    pub end_to_end: EndToEnd,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes fields by reference
fn finite_or_null<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
}

/// The whole experiment: every layer alone, then all together.
#[derive(Clone, Debug, Serialize)]
pub struct SensitivityReport {
    pub samples: usize,
    pub tokens: usize,
    pub layers: Vec<LayerRow>,
    pub all_layers: EndToEnd,
    /// Spearman's ρ between the end-to-end ranking and the weight-SQNR ranking.
    pub spearman_weight_vs_end_to_end: Option<f64>,
}

/// The end-to-end damage as one number, larger = worse: 1 − cosine or KL.
pub fn damage(e: &EndToEnd) -> f64 {
    e.kl.or(e.cosine.map(|c| 1.0 - c)).unwrap_or(f64::NAN)
}

/// What one sensitivity run needs: the model, its float activations and outputs, the scheme.
pub struct Job<'a> {
    pub ckpt: &'a Checkpoint,
    pub model: &'a Model,
    pub acts: &'a super::Activations,
    pub reference: &'a Reference,
    pub scheme: &'a Scheme,
}

impl Job<'_> {
    /// Runs the experiment for `layers` (weight names of Linear layers).
    /// `progress(done, total)` counts layer runs (+1 for all together).
    pub fn run(
        &self,
        layers: &[String],
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SensitivityReport> {
        let Job { ckpt, model, acts, reference, scheme } = *self;
        let total = layers.len() + 1;
        let mut rows = Vec::with_capacity(layers.len());
        let mut all = HashMap::new();
        let mut starts = BlockInputs::new(model, reference)?;
        for (i, name) in layers.iter().enumerate() {
            // One quantization gives W′, the weight metrics and the output error.
            let (w, wq, metrics) = super::output_error::quantized_layer(ckpt, name, scheme)?;
            let fault =
                |reason: String| Error::Tensor { path: ckpt.path.clone(), tensor: name.clone(), reason };
            let site = acts.site(name).ok_or_else(|| fault("no captured input".into()))?;
            let output_sqnr_db =
                super::output_error::output_error(&w, &wq, site).map_err(|e| fault(e.to_string()))?.sqnr_db();
            let shape = ckpt.tensor(name)?.shape.clone();
            let wq = Tensor::from_vec(wq, shape, &Device::Cpu).map_err(|e| fault(e.to_string()))?;
            let one = HashMap::from([(name.clone(), wq.clone())]);
            // The float run up to this layer's block is the same for every layer: start there.
            let from = model.block_of(name);
            let inputs = starts.seek(model, reference, from)?;
            let end_to_end = reference.compare_from(model, from, inputs, &one, cancel)?;
            all.insert(name.clone(), wq);
            rows.push(LayerRow {
                name: name.clone(),
                weight_sqnr_db: metrics.sqnr_db,
                output_sqnr_db,
                end_to_end,
            });
            progress(i + 1, total);
        }
        let all_layers = reference.compare(model, &all, cancel)?;
        progress(total, total);
        let weight: Vec<f64> = rows.iter().map(|r| -r.weight_sqnr_db).collect();
        let e2e: Vec<f64> = rows.iter().map(|r| damage(&r.end_to_end)).collect();
        Ok(SensitivityReport {
            samples: reference.samples(),
            tokens: reference.tokens(),
            spearman_weight_vs_end_to_end: spearman(&weight, &e2e),
            layers: rows,
            all_layers,
        })
    }
}

/// A layer's place (1 = hurts most) in the two rankings shown side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranks {
    /// By end-to-end damage ([`damage`]), largest first.
    pub end_to_end: usize,
    /// By weight SQNR, lowest first.
    pub weight: usize,
}

/// Both ranks of every row of `r`, in row order; NaNs rank last, ties keep row order.
pub fn rankings(r: &SensitivityReport) -> Vec<Ranks> {
    let place = |key: &dyn Fn(&LayerRow) -> f64| {
        let mut idx: Vec<usize> = (0..r.layers.len()).collect();
        // A NaN key (of either sign) ranks after every number.
        let k = |i: usize| Some(key(&r.layers[i])).filter(|v| !v.is_nan()).unwrap_or(f64::INFINITY);
        idx.sort_by(|&i, &j| k(i).total_cmp(&k(j)));
        let mut rank = vec![0; idx.len()];
        for (k, &i) in idx.iter().enumerate() {
            rank[i] = k + 1;
        }
        rank
    };
    let e2e = place(&|l| -damage(&l.end_to_end));
    let weight = place(&|l| l.weight_sqnr_db);
    e2e.into_iter().zip(weight).map(|(end_to_end, weight)| Ranks { end_to_end, weight }).collect()
}

/// Spearman's rank correlation (average ranks for ties); None under 2 items or a NaN.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 || a.iter().chain(b).any(|v| v.is_nan()) {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let mean = f64::midpoint(n, 1.0);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - mean) * (y - mean)).sum();
    let va: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mean).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut k = 0;
    while k < idx.len() {
        let mut end = k;
        while end + 1 < idx.len() && v[idx[end + 1]] == v[idx[k]] {
            end += 1;
        }
        let avg = (k + end) as f64 / 2.0 + 1.0;
        for &i in &idx[k..=end] {
            r[i] = avg;
        }
        k = end + 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_known_rankings() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // d = (0, 1, 1, 0... ): ranks [1,2,3,4] vs [1,3,2,4] → 1 − 6·2/(4·15) = 0.8.
        let r = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).expect("rho");
        assert!((r - 0.8).abs() < 1e-12);
        assert_eq!(ranks(&[5.0, 1.0, 5.0]), [2.5, 1.0, 2.5]);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
    }

    #[test]
    fn rankings_put_the_worst_first_in_each_order() {
        let row = |name: &str, w: f64, cos: f64| LayerRow {
            name: name.into(),
            weight_sqnr_db: w,
            output_sqnr_db: w,
            end_to_end: EndToEnd { cosine: Some(cos), mse: Some(0.0), kl: None },
        };
        let report = SensitivityReport {
            samples: 1,
            tokens: 1,
            layers: vec![row("a", 30.0, 0.99), row("b", 20.0, 0.999), row("c", 40.0, f64::NAN)],
            all_layers: EndToEnd::default(),
            spearman_weight_vs_end_to_end: None,
        };
        let r = rankings(&report);
        assert_eq!(r.iter().map(|x| x.end_to_end).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(r.iter().map(|x| x.weight).collect::<Vec<_>>(), [2, 1, 3]);
    }
}
