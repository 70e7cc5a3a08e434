//! AWQ through the model, block by block, as llm-compressor 0.14's
//! AWQModifier runs it in its sequential pipeline (docs/numerics.md, "AWQ"):
//! the samples go through block b once while the inputs of its mappings'
//! layers are kept; each mapping's scales are searched on those inputs, in
//! the block's order, and folded into the weights; then the samples go
//! through the smoothed block (float, not quantized) to give the next block's
//! inputs. The quantization after it is the scheme's plain round-to-nearest
//! of the smoothed weights, done by the save.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{Hook, Model, PACK_TOKENS, Pack};
use crate::awq::{
    activation_mean, candidate_scales, fake_quantized, grid, scale_columns, unscale_rows, weight_mean,
};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::format::WorkDtype;
use crate::scheme::{Calibration, Granularity, Scheme};

use super::sequential::SchemeOf;

/// The part of a block whose output a mapping's loss compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Self-attention, `o_proj` included, from the normed residual.
    Attention,
    /// The whole MLP from the normed residual.
    Mlp,
    /// One Linear layer (by weight name) on its input.
    Linear(String),
}

/// One smooth layer and the Linear layers its output feeds.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// The smooth layer's module name (`model.layers.0.input_layernorm`).
    pub smooth: String,
    /// The smooth layer's tensors the fold divides, with their columns
    /// (1 for a norm's weight or a bias).
    pub weights: Vec<(String, usize)>,
    /// The balance layers' weight names; the first one's input is the part's.
    pub balance: Vec<String>,
    pub parent: Part,
}

/// What the search chose for one mapping.
#[derive(Clone, Debug)]
pub struct Smoothing {
    pub smooth: String,
    pub balance: Vec<String>,
    /// s per input channel of the balance layers (W·s, smooth / s).
    pub scales: Vec<f64>,
    /// The winning grid index and its (ratio, duo).
    pub best: usize,
    pub candidate: (f64, bool),
    /// Every candidate's loss: mean squared error of the part's output.
    pub losses: Vec<f64>,
}

/// A finished run: the smoothed tensors by name and each mapping's choice.
#[derive(Clone, Debug, Default)]
pub struct Smoothed {
    pub tensors: BTreeMap<String, Vec<f32>>,
    pub mappings: Vec<Smoothing>,
    pub samples: usize,
    pub tokens: usize,
}

/// Runs AWQ over the samples `ids` for every mapping one of whose balance
/// layers `scheme_of` gives an AWQ scheme. `progress(done, total)` counts
/// blocks; `cancel` stops between packs.
pub fn awq_model(
    model: &Model,
    ckpt: &Checkpoint,
    ids: &[Vec<u32>],
    scheme_of: SchemeOf<'_>,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<Smoothed> {
    let awq = |l: &str| scheme_of(l).filter(|s| s.calibration == Calibration::Awq);
    if ids.iter().all(Vec::is_empty) {
        return Err(Error::format(&model.dir, "AWQ needs at least one sample with tokens"));
    }
    let packs = Pack::split(ids, PACK_TOKENS);
    let mut xs = packs.par_iter().map(|(_, p)| model.embed(p)).collect::<Result<Vec<_>>>()?;
    let mut state = State { model, ckpt, current: HashMap::new() };
    let mut out =
        Smoothed { samples: ids.len(), tokens: ids.iter().map(Vec::len).sum(), ..Smoothed::default() };
    let blocks = model.blocks();
    for b in 0..blocks {
        let maps: Vec<Mapping> = model
            .awq_mappings(b)?
            .into_iter()
            .filter(|m| m.balance.iter().any(|l| awq(l).is_some()))
            .collect();
        for m in &maps {
            state.check_balance(m, scheme_of)?;
        }
        if !maps.is_empty() {
            let keys: Vec<&str> = maps.iter().map(|m| m.balance[0].as_str()).collect();
            let mut inputs = state.capture(b, &xs, &packs, &keys, cancel)?;
            for m in &maps {
                let x = inputs.remove(m.balance[0].as_str()).unwrap_or_default();
                let chosen = state.search(b, m, &x, &packs, &awq, cancel)?;
                state.fold(m, &chosen.scales)?;
                out.mappings.push(chosen);
            }
        }
        if b + 1 < blocks {
            xs = state.run_block(b, &xs, &packs, cancel)?;
        }
        progress(b + 1, blocks);
    }
    for (name, t) in state.current {
        let v = t.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| model.error(&e))?;
        out.tensors.insert(name, v);
    }
    Ok(out)
}

type Packs = [(Range<usize>, Pack)];

/// The model with the tensors smoothed so far.
struct State<'a> {
    model: &'a Model,
    ckpt: &'a Checkpoint,
    current: HashMap<String, Tensor>,
}

impl State<'_> {
    /// A tensor as it stands now: smoothed, or the checkpoint's.
    fn values(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = match self.current.get(name) {
            Some(t) => t,
            None => self.model.parameter(name).ok_or_else(|| self.fail(name, "not a tensor of the model"))?,
        };
        let v = t.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| self.model.error(&e))?;
        Ok((v, t.dims().to_vec()))
    }

    fn work(&self, name: &str) -> Result<WorkDtype> {
        Ok(WorkDtype::of(self.ckpt.tensor(name)?.dtype))
    }

    fn fail(&self, name: &str, reason: &str) -> Error {
        Error::Tensor { path: self.ckpt.path.clone(), tensor: name.to_string(), reason: reason.to_string() }
    }

    fn tensor(&self, v: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(v, shape, &Device::Cpu).map_err(|e| self.model.error(&e))
    }

    /// The inputs of the layers `keys` for every pack, block `b` run as it stands.
    fn capture(
        &self,
        b: usize,
        xs: &[Tensor],
        packs: &Packs,
        keys: &[&str],
        cancel: &AtomicBool,
    ) -> Result<HashMap<String, Vec<Tensor>>> {
        let per_pack = packs
            .par_iter()
            .zip(xs)
            .map(|((_, pack), x)| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                let mut hook = Keep { keys, kept: HashMap::new(), swap: &self.current };
                self.model.block(b, x, pack, &mut hook)?;
                Ok(hook.kept)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut by_key: HashMap<String, Vec<Tensor>> = HashMap::new();
        for kept in per_pack {
            for (k, t) in kept {
                by_key.entry(k).or_default().push(t);
            }
        }
        for k in keys {
            if packs.is_empty() || by_key.get(*k).map_or(0, Vec::len) != packs.len() {
                return Err(self.fail(k, "the model run never feeds this layer, so AWQ has no inputs for it"));
            }
        }
        Ok(by_key)
    }

    /// A mapping's balance layers are all kept or all under one AWQ scheme:
    /// the search quantizes them with it. A format with a global scale is
    /// refused, since a save would take that scale from the unsmoothed weights.
    fn check_balance(&self, m: &Mapping, scheme_of: SchemeOf<'_>) -> Result<()> {
        let quantized: Vec<(&String, Scheme)> =
            m.balance.iter().filter_map(|n| scheme_of(n).map(|s| (n, s))).collect();
        let first = quantized.first().map(|q| q.1);
        for (name, s) in quantized {
            if Some(s) != first || s.calibration != Calibration::Awq {
                let all = m.balance.join(", ");
                return Err(self.fail(name, &format!("AWQ smooths {all} together: give them one AWQ scheme")));
            }
            if crate::format::spec(s.format).is_ok_and(|f| f.two_level) {
                return Err(
                    self.fail(name, &format!("AWQ under {s}: formats with a global scale are not supported"))
                );
            }
        }
        Ok(())
    }

    /// Block `b` over every pack with the smoothed weights: the next block's inputs.
    fn run_block(&self, b: usize, xs: &[Tensor], packs: &Packs, cancel: &AtomicBool) -> Result<Vec<Tensor>> {
        packs
            .par_iter()
            .zip(xs)
            .map(|((_, pack), x)| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled);
                }
                self.model.block(b, x, pack, &mut Swap { swap: &self.current, extra: None })
            })
            .collect()
    }

    /// The part's output for every pack, with `extra` tensors over the current ones.
    fn part_outputs(
        &self,
        b: usize,
        part: &Part,
        x: &[Tensor],
        packs: &Packs,
        extra: Option<&HashMap<String, Tensor>>,
    ) -> Result<Vec<Tensor>> {
        packs
            .par_iter()
            .zip(x)
            .map(|((_, pack), x)| self.model.part(b, part, x, pack, &mut Swap { swap: &self.current, extra }))
            .collect()
    }

    /// The grid search of one mapping (module docs of `crate::awq`).
    fn search(
        &self,
        b: usize,
        m: &Mapping,
        x: &[Tensor],
        packs: &Packs,
        awq: &dyn Fn(&str) -> Option<Scheme>,
        cancel: &AtomicBool,
    ) -> Result<Smoothing> {
        let balance: Vec<(Vec<f32>, Vec<usize>)> =
            m.balance.iter().map(|n| self.values(n)).collect::<Result<_>>()?;
        let cols = balance[0].1.get(1).copied().unwrap_or(0);
        let (x_mean, _) = column_abs_mean(x, packs).map_err(|e| self.model.error(&e))?;
        // w̄ over the balance layers that are quantized, under their scheme's slices.
        let schemes: Vec<Option<Scheme>> = m.balance.iter().map(|n| awq(n)).collect();
        let granularity = schemes.iter().flatten().next().map_or(Granularity::Tensor, |s| s.granularity);
        let quantized: Vec<(&[f32], usize)> = balance
            .iter()
            .zip(&schemes)
            .filter(|(_, s)| s.is_some())
            .map(|(w, _)| (w.0.as_slice(), cols))
            .collect();
        // `check_balance`: every quantized balance layer has this one scheme.
        let w_mean = weight_mean(&quantized, granularity);
        let reference = self.part_outputs(b, &m.parent, x, packs, None)?;
        let mut best: Option<(usize, f64, Vec<f64>)> = None;
        let mut losses = Vec::new();
        for (i, c) in grid().into_iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let s = candidate_scales(&x_mean, &w_mean, c);
            let mut tried = HashMap::new();
            for (name, (w, shape)) in m.balance.iter().zip(&balance) {
                if let Some(scheme) = awq(name) {
                    let q = fake_quantized(w, shape, &s, &scheme, self.work(name)?)
                        .map_err(|e| self.fail(name, &e.to_string()))?;
                    tried.insert(name.clone(), self.tensor(q, shape)?);
                }
            }
            let outs = self.part_outputs(b, &m.parent, x, packs, Some(&tried))?;
            let loss = mean_squared_error(&reference, &outs).map_err(|e| self.model.error(&e))?;
            losses.push(loss);
            // Strictly smaller: on a tie the earlier candidate stays.
            if loss < best.as_ref().map_or(f64::INFINITY, |b| b.1) {
                best = Some((i, loss, s));
            }
        }
        let (i, _, scales) = best
            .filter(|(_, l, _)| l.is_finite())
            .ok_or_else(|| self.fail(&m.balance[0], "every AWQ candidate gave a non-finite loss"))?;
        Ok(Smoothing {
            smooth: m.smooth.clone(),
            balance: m.balance.clone(),
            scales,
            best: i,
            candidate: grid()[i],
            losses,
        })
    }

    /// Folds `s` in: balance columns × s, the smooth layer's rows / s.
    fn fold(&mut self, m: &Mapping, s: &[f64]) -> Result<()> {
        let mut new = Vec::new();
        for name in &m.balance {
            let (w, shape) = self.values(name)?;
            new.push((name.clone(), scale_columns(&w, s, self.work(name)?), shape));
        }
        for (name, cols) in &m.weights {
            let (w, shape) = self.values(name)?;
            new.push((name.clone(), unscale_rows(&w, *cols, s, self.work(name)?), shape));
        }
        for (name, v, shape) in new {
            let t = self.tensor(v, &shape)?;
            self.current.insert(name, t);
        }
        Ok(())
    }
}

/// Mean |x| per column over every row of every pack: each sample's column
/// sums rounded to f32, then added in sample order in f32, as llm-compressor
/// sums one batch of one sample at a time.
fn column_abs_mean(x: &[Tensor], packs: &Packs) -> candle_core::Result<(Vec<f32>, usize)> {
    let cols = x.first().map_or(Ok(0), |t| t.dim(1))?;
    let mut sums = vec![0.0f32; cols];
    let mut count = 0;
    for (t, (_, pack)) in x.iter().zip(packs) {
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        for rows in pack.ranges() {
            let mut acc = vec![0.0f64; cols];
            for row in v[rows.start * cols..rows.end * cols].chunks_exact(cols) {
                acc.iter_mut().zip(row).for_each(|(a, r)| *a += f64::from(r.abs()));
            }
            sums.iter_mut().zip(&acc).for_each(|(s, a)| *s += *a as f32);
            count += rows.len();
        }
    }
    Ok((activation_mean(&sums, count), count))
}

/// Σ (a − b)² over every element of every pack, divided by their number (f64).
fn mean_squared_error(a: &[Tensor], b: &[Tensor]) -> candle_core::Result<f64> {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (a, b) in a.iter().zip(b) {
        let d = (a - b)?.to_dtype(candle_core::DType::F64)?;
        sum += d.sqr()?.sum_all()?.to_scalar::<f64>()?;
        n += a.elem_count();
    }
    Ok(sum / n.max(1) as f64)
}

/// Keeps the inputs of the layers `keys` (by the first layer a tensor feeds),
/// with the smoothed tensors in place.
struct Keep<'a> {
    keys: &'a [&'a str],
    kept: HashMap<String, Tensor>,
    swap: &'a HashMap<String, Tensor>,
}

impl Hook for Keep<'_> {
    fn input(&mut self, layers: &[&str], x: &Tensor) -> candle_core::Result<()> {
        for l in layers {
            if self.keys.contains(l) {
                self.kept.insert((*l).to_string(), x.clone());
            }
        }
        Ok(())
    }
    fn weight(&self, name: &str) -> Option<&Tensor> {
        self.swap.get(name)
    }
}

/// The smoothed tensors, and a candidate's over them.
struct Swap<'a> {
    swap: &'a HashMap<String, Tensor>,
    extra: Option<&'a HashMap<String, Tensor>>,
}

impl Hook for Swap<'_> {
    fn weight(&self, name: &str) -> Option<&Tensor> {
        self.extra.and_then(|e| e.get(name)).or_else(|| self.swap.get(name))
    }
}
