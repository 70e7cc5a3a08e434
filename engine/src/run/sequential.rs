//! GPTQ through the model, block by block, as llm-compressor's sequential
//! pipeline runs it (docs/numerics.md, "GPTQ"): every sample goes through
//! block b with the float weights while each Linear's Hessian is summed; the
//! block's layers are solved; then the samples go through the block again with
//! the solved weights, and those outputs are the next block's inputs. So a
//! block is calibrated on what the already-quantized blocks before it produce.
//! The layers after the last block (`lm_head`, BERT's pooler) belong to the
//! last block's stage, as llm-compressor's graph partition leaves them there:
//! their inputs come from that block's float run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{Hook, Model, PACK_TOKENS, Pack};
use crate::analyze::{Options, analyze};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::format::WorkDtype;
use crate::gptq::{GptqOptions, gptq};
use crate::scheme::Scheme;

/// The scheme each layer is saved under (None: kept).
pub type SchemeOf<'a> = &'a (dyn Fn(&str) -> Option<Scheme> + Sync);

/// One layer GPTQ solved.
#[derive(Clone, Debug)]
pub struct SolvedLayer {
    pub scheme: Scheme,
    /// R′, `[out, in]` row-major.
    pub dequantized: Vec<f32>,
    /// llm-compressor's loss (Σ e²/2, see `gptq::Gptq::loss`).
    pub loss: f64,
    /// The Hessian was not positive definite: round-to-nearest was kept.
    pub fallback: bool,
    /// When measured: the output SQNR (dB) over the calibration inputs this
    /// layer saw, tr(W H Wᵀ) / tr(ΔW H ΔWᵀ), of GPTQ's R′ and of round-to-nearest's.
    pub output_sqnr_db: Option<f64>,
    pub rtn_output_sqnr_db: Option<f64>,
}

/// Every layer a run solved, by weight name.
#[derive(Clone, Debug, Default)]
pub struct Solved {
    pub layers: BTreeMap<String, SolvedLayer>,
    pub samples: usize,
    pub tokens: usize,
}

/// Runs GPTQ on every Linear layer `scheme_of` gives a GPTQ scheme, over the
/// samples `ids`, block by block. With `measure`, each layer's output SQNR is
/// measured too (three f64 products per layer: as long as the rest of a save).
/// `progress(done, total)` counts blocks; `cancel` stops between packs.
pub fn gptq_model(
    model: &Model,
    ckpt: &Checkpoint,
    ids: &[Vec<u32>],
    scheme_of: SchemeOf<'_>,
    measure: bool,
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<Solved> {
    let wanted = |l: &String| scheme_of(l).filter(|s| s.calibration == crate::scheme::Calibration::Gptq);
    let all: Vec<String> = model.linears().into_iter().chain(model.tail_linears()).collect();
    let blocks = model.blocks();
    let mut stages: Vec<Vec<(String, Scheme)>> = vec![Vec::new(); blocks.max(1)];
    for l in &all {
        if let Some(s) = wanted(l) {
            stages[model.block_of(l).min(blocks.max(1) - 1)].push((l.clone(), s));
        }
    }
    let packs = Pack::split(ids, PACK_TOKENS);
    let mut xs = packs.par_iter().map(|(_, p)| model.embed(p)).collect::<Result<Vec<_>>>()?;
    let mut solved =
        Solved { samples: ids.len(), tokens: ids.iter().map(Vec::len).sum(), ..Solved::default() };
    let total = stages.len();
    for (b, stage) in stages.iter().enumerate() {
        let last = b + 1 == stages.len();
        if !stage.is_empty() {
            let names: Vec<&str> = stage.iter().map(|(n, _)| n.as_str()).collect();
            let sums = hessian_sums(model, b, &xs, &packs, &names, cancel)?;
            for (name, scheme) in stage {
                let sum = sums.get(name.as_str()).ok_or_else(|| Error::Tensor {
                    path: ckpt.path.clone(),
                    tensor: name.clone(),
                    reason: "the model run never feeds this layer, so GPTQ has no inputs for it".into(),
                })?;
                let layer = solve(model, ckpt, (name, scheme, scheme_of), sum, (ids.len(), measure))?;
                solved.layers.insert(name.clone(), layer);
            }
        }
        if !last {
            let swap = Swap(stage_weights(model, stage, &solved)?);
            xs = run_block(model, b, &xs, &packs, &swap, cancel)?;
        }
        progress(b + 1, total);
    }
    Ok(solved)
}

/// Σ over every token of x xᵀ (f64, `[in, in]`) for each layer in `names`, with
/// block `b` run in float on `xs`, and after the last block the tail.
fn hessian_sums(
    model: &Model,
    b: usize,
    xs: &[Tensor],
    packs: &[(std::ops::Range<usize>, Pack)],
    names: &[&str],
    cancel: &AtomicBool,
) -> Result<HashMap<String, Vec<f64>>> {
    let per_pack = packs
        .par_iter()
        .zip(xs.par_iter())
        .map(|((_, pack), x)| {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let mut hook = Grams { names, sums: HashMap::new() };
            if b < model.blocks() {
                let y = model.block(b, x, pack, &mut hook)?;
                if b + 1 == model.blocks() {
                    model.tail(&y, pack, &mut hook)?;
                }
            } else {
                model.tail(x, pack, &mut hook)?;
            }
            Ok(hook.sums)
        })
        .collect::<Result<Vec<_>>>()?;
    // Packs added in order, so the sums do not depend on the thread count.
    let mut total: HashMap<String, Vec<f64>> = HashMap::new();
    for sums in per_pack {
        for (name, g) in sums {
            let acc = total.entry(name).or_insert_with(|| vec![0.0; g.len()]);
            acc.iter_mut().zip(&g).for_each(|(a, v)| *a += f64::from(*v));
        }
    }
    Ok(total)
}

/// Sums xᵀx (f32, one matmul per input) for the wanted layers of one pack.
struct Grams<'a> {
    names: &'a [&'a str],
    sums: HashMap<String, Vec<f32>>,
}

impl Hook for Grams<'_> {
    fn input(&mut self, layers: &[&str], x: &Tensor) -> candle_core::Result<()> {
        let wanted: Vec<&str> = layers.iter().copied().filter(|l| self.names.contains(l)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let g = upper_gram(x)?;
        for l in wanted {
            self.sums.insert(l.to_string(), g.clone());
        }
        Ok(())
    }
}

/// Rows of xᵀx per product in [`upper_gram`].
const GRAM_ROWS: usize = 256;

/// xᵀx (`[n, n]` row-major) of `x` `[tokens, n]`, each block of rows from
/// its diagonal rightwards, the lower triangle mirrored: the matrix is
/// symmetric, so about half the products of the full one suffice.
fn upper_gram(x: &Tensor) -> candle_core::Result<Vec<f32>> {
    let n = x.dim(1)?;
    let mut g = vec![0.0f32; n * n];
    for r0 in (0..n).step_by(GRAM_ROWS) {
        let b = GRAM_ROWS.min(n - r0);
        let part: Vec<f32> =
            x.narrow(1, r0, b)?.t()?.matmul(&x.narrow(1, r0, n - r0)?)?.flatten_all()?.to_vec1()?;
        for (i, row) in part.chunks_exact(n - r0).enumerate() {
            g[(r0 + i) * n + r0..(r0 + i + 1) * n].copy_from_slice(row);
        }
    }
    for r in 0..n {
        for c in 0..r {
            g[r * n + c] = g[c * n + r];
        }
    }
    Ok(g)
}

/// GPTQ of one layer with H = 2·Σxxᵀ / samples, as llm-compressor normalises it.
fn solve(
    model: &Model,
    ckpt: &Checkpoint,
    (name, scheme, scheme_of): (&str, &Scheme, SchemeOf<'_>),
    sum: &[f64],
    (samples, measure): (usize, bool),
) -> Result<SolvedLayer> {
    let info = ckpt.tensor(name)?;
    // Fused siblings' shared global scale (NVFP4), as the save computes it.
    let global_amax = crate::fused::shared_global_amax(ckpt, name, scheme, scheme_of)?;
    let fail = |reason: String| Error::Tensor { path: ckpt.path.clone(), tensor: name.to_string(), reason };
    let w = model.weight(name).ok_or_else(|| fail("not a Linear layer of the model".into()))?;
    let values: Vec<f32> = w.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| fail(e.to_string()))?;
    let shape = w.dims().to_vec();
    let h: Vec<f32> = sum.iter().map(|&v| (2.0 * v / samples.max(1) as f64) as f32).collect();
    let base = Options { work: WorkDtype::of(info.dtype), global_amax, ..Options::default() };
    let g =
        gptq(&values, &shape, scheme, &h, &GptqOptions::default(), &base).map_err(|e| fail(e.to_string()))?;
    let (mut gptq_db, mut rtn_db) = (None, None);
    if measure {
        let rtn =
            analyze(&values, &shape, &scheme.range_scheme(), &Options { keep_dequantized: true, ..base })?;
        let cols = shape.last().copied().unwrap_or(1);
        let sqnr = |q: &[f32]| Some(output_sqnr_db(&values, q, sum, cols));
        (gptq_db, rtn_db) = (sqnr(&g.dequantized), sqnr(&rtn.dequantized.unwrap_or_default()));
    }
    Ok(SolvedLayer {
        scheme: *scheme,
        output_sqnr_db: gptq_db,
        rtn_output_sqnr_db: rtn_db,
        dequantized: g.dequantized,
        loss: g.loss,
        fallback: g.fallback,
    })
}

/// 10·log10(tr(W G Wᵀ) / tr(ΔW G ΔWᵀ)) for G = `sum` (`cols²`).
fn output_sqnr_db(w: &[f32], q: &[f32], sum: &[f64], cols: usize) -> f64 {
    let quad = |m: Vec<f64>| -> f64 {
        let rows = m.len() / cols.max(1);
        let (Ok(m), Ok(g)) = (
            Tensor::from_vec(m, (rows, cols), &Device::Cpu),
            Tensor::from_slice(sum, (cols, cols), &Device::Cpu),
        ) else {
            return f64::NAN;
        };
        m.matmul(&g)
            .and_then(|mg| mg.mul(&m))
            .and_then(|p| p.sum_all())
            .and_then(|s| s.to_scalar())
            .unwrap_or(f64::NAN)
    };
    let signal = quad(w.iter().map(|&v| f64::from(v)).collect());
    let noise = quad(w.iter().zip(q).map(|(a, b)| f64::from(*a) - f64::from(*b)).collect());
    if noise == 0.0 { f64::INFINITY } else { 10.0 * (signal / noise).log10() }
}

/// The solved weights of one stage as candle tensors, for the propagation run.
fn stage_weights(
    model: &Model,
    stage: &[(String, Scheme)],
    solved: &Solved,
) -> Result<HashMap<String, Tensor>> {
    stage
        .iter()
        .map(|(name, _)| {
            let w = model.weight(name).map(|w| w.dims().to_vec()).unwrap_or_default();
            let t = Tensor::from_slice(&solved.layers[name].dequantized, w, &Device::Cpu)
                .map_err(|e| model.error(&e))?;
            Ok((name.clone(), t))
        })
        .collect()
}

/// Replaces the solved layers' weights.
struct Swap(HashMap<String, Tensor>);

impl Hook for Swap {
    fn weight(&self, layer: &str) -> Option<&Tensor> {
        self.0.get(layer)
    }
}

/// Block `b` over every pack with the solved weights: the next block's inputs.
fn run_block(
    model: &Model,
    b: usize,
    xs: &[Tensor],
    packs: &[(std::ops::Range<usize>, Pack)],
    swap: &Swap,
    cancel: &AtomicBool,
) -> Result<Vec<Tensor>> {
    packs
        .par_iter()
        .zip(xs.par_iter())
        .map(|((_, pack), x)| {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            model.block(b, x, pack, &mut SwapRef(swap))
        })
        .collect()
}

/// A shared [`Swap`] as the `&mut dyn Hook` a forward takes.
struct SwapRef<'a>(&'a Swap);

impl Hook for SwapRef<'_> {
    fn weight(&self, layer: &str) -> Option<&Tensor> {
        self.0.weight(layer)
    }
}
