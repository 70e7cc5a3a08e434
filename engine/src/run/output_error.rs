//! Output-aware weight error: Σ‖(W − W′)x‖² over every captured token, from the
//! second moments alone (docs/numerics.md, "Output SQNR"):
//!
//! Σ_t ‖ΔW x_t‖² = tr(ΔW G ΔWᵀ) with G = Σ_t x_t x_tᵀ,
//!
//! exact for the inputs seen. Without G (in_features > 4096) the diagonal of G
//! (Σx_j²) gives the estimate that assumes uncorrelated channels, and says so.

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::capture::{Activations, SiteStats};
use crate::analyze::{Options, analyze};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::format::WorkDtype;
use crate::gptq::{GptqResult, analyze_gptq};
use crate::scheme::{Calibration, Scheme};

/// One layer's output signal and error over the captured tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OutputError {
    /// Σ‖W x‖².
    pub signal: f64,
    /// Σ‖(W − W′) x‖².
    pub noise: f64,
    /// From the full Σxxᵀ (true) or its diagonal (false).
    pub exact: bool,
}

impl OutputError {
    /// 10·log10(signal / noise); +∞ when W′ = W on every direction the inputs took.
    pub fn sqnr_db(&self) -> f64 {
        if self.noise == 0.0 { f64::INFINITY } else { 10.0 * (self.signal / self.noise).log10() }
    }
}

/// Σ over rows of w G wᵀ for `w` `[out, in]` (the planner's output costs use it too).
pub fn quadratic(w: Vec<f64>, site: &SiteStats) -> candle_core::Result<f64> {
    let n = site.in_features;
    if let Some(g) = &site.gram {
        let rows = w.len() / n;
        let w = Tensor::from_vec(w, (rows, n), &Device::Cpu)?;
        return w.matmul(g)?.mul(&w)?.sum_all()?.to_scalar::<f64>();
    }
    Ok(w.chunks_exact(n).map(|row| row.iter().zip(&site.sum_sq).map(|(v, s)| v * v * s).sum::<f64>()).sum())
}

/// The output error of replacing `w` by `w_q` (both `[out, in]`) under `site`'s inputs.
pub fn output_error(w: &[f32], w_q: &[f32], site: &SiteStats) -> candle_core::Result<OutputError> {
    let n = site.in_features;
    if n == 0 || w.len() != w_q.len() || !w.len().is_multiple_of(n) {
        candle_core::bail!("weight of {} elements does not fit inputs of width {n}", w.len());
    }
    // Widened before subtracting, so every ΔW element is exact.
    let delta = w.iter().zip(w_q).map(|(a, b)| f64::from(*a) - f64::from(*b)).collect();
    let signal = quadratic(w.iter().map(|&v| f64::from(v)).collect(), site)?;
    Ok(OutputError { signal, noise: quadratic(delta, site)?, exact: site.gram.is_some() })
}

/// `layer`'s float weight W, its R′ under `scheme` and the weight metrics, as
/// `report`, the sweep and a save compute them: the tensor's own working dtype,
/// and fused siblings sharing a two-level format's global scale.
pub fn quantized_layer(
    ckpt: &Checkpoint,
    layer: &str,
    scheme: &Scheme,
) -> Result<(Vec<f32>, Vec<f32>, crate::metrics::Metrics)> {
    let info = ckpt.tensor(layer)?;
    let w = ckpt.load_f32(layer)?;
    let global_amax = crate::fused::shared_global_amax(ckpt, layer, scheme, &|_| Some(*scheme))?;
    let opts = Options {
        keep_dequantized: true,
        work: WorkDtype::of(info.dtype),
        global_amax,
        ..Options::default()
    };
    let res = analyze(&w, &info.shape, scheme, &opts)?;
    let w_q = res.dequantized.ok_or_else(|| Error::NotFound(format!("{layer} (no R')")))?;
    Ok((w, w_q, res.metrics))
}

/// `layer` under a GPTQ scheme, solved alone on its captured input: the float
/// model's inputs, H = 2·Σxxᵀ / samples (a save runs block by block instead,
/// `sequential`). `opts` asks for histograms; R′ is always kept.
pub fn gptq_layer(
    ckpt: &Checkpoint,
    acts: &Activations,
    layer: &str,
    scheme: &Scheme,
    opts: &Options,
) -> Result<(Vec<f32>, GptqResult)> {
    let site = acts.site(layer).ok_or_else(|| Error::NotFound(format!("{layer} (no captured input)")))?;
    gptq_on(ckpt, layer, (acts.samples, site), scheme, opts)
}

/// [`gptq_layer`] on `site`, a capture of `samples` samples.
pub fn gptq_on(
    ckpt: &Checkpoint,
    layer: &str,
    (samples, site): (usize, &SiteStats),
    scheme: &Scheme,
    opts: &Options,
) -> Result<(Vec<f32>, GptqResult)> {
    let fail = |reason: String| Error::Tensor { path: ckpt.path.clone(), tensor: layer.to_string(), reason };
    let Some(gram) = &site.gram else {
        return Err(fail(format!(
            "GPTQ needs the full Σxxᵀ of the input; it is kept up to {} features, this one has {}",
            super::capture::GRAM_MAX,
            site.in_features
        )));
    };
    let g: Vec<f64> = gram.flatten_all().and_then(|t| t.to_vec1()).map_err(|e| fail(e.to_string()))?;
    let h: Vec<f32> = g.iter().map(|&v| (2.0 * v / samples.max(1) as f64) as f32).collect();
    let info = ckpt.tensor(layer)?;
    let w = ckpt.load_f32(layer)?;
    let global_amax = crate::fused::shared_global_amax(ckpt, layer, scheme, &|_| Some(*scheme))?;
    let opts = Options { keep_dequantized: true, work: WorkDtype::of(info.dtype), global_amax, ..*opts };
    let r = analyze_gptq(&w, &info.shape, scheme, &h, &opts).map_err(|e| fail(e.to_string()))?;
    Ok((w, r))
}

/// `layer` of `ckpt` quantized under `scheme` ([`quantized_layer`], or
/// [`gptq_layer`] for GPTQ), measured on its captured input.
pub fn layer_output_error(
    ckpt: &Checkpoint,
    acts: &Activations,
    layer: &str,
    scheme: &Scheme,
) -> Result<OutputError> {
    let site = acts.site(layer).ok_or_else(|| Error::NotFound(format!("{layer} (no captured input)")))?;
    let (w, w_q) = if scheme.calibration == Calibration::Gptq {
        let (w, g) = gptq_layer(ckpt, acts, layer, scheme, &Options::default())?;
        (w, g.result.dequantized.unwrap_or_default())
    } else {
        let (w, w_q, _) = quantized_layer(ckpt, layer, scheme)?;
        (w, w_q)
    };
    output_error(&w, &w_q, site).map_err(|e| Error::Tensor {
        path: ckpt.path.clone(),
        tensor: layer.to_string(),
        reason: format!("output error: {e}"),
    })
}

/// Sets `metrics.output_sqnr_db` of every sweep cell whose layer has a captured
/// input (`quantscope report --compare S... --inputs`); `schemes` are the
/// sweep's, in its column order. `progress(done, total)` after each row.
pub fn add_to_sweep(
    ckpt: &Checkpoint,
    acts: &Activations,
    schemes: &[Scheme],
    sweep: &mut crate::sweep::Sweep,
    progress: &dyn Fn(usize, usize),
) -> Result<()> {
    let total = sweep.rows.len();
    for (done, row) in sweep.rows.iter_mut().enumerate() {
        if acts.site(&row.name).is_some() {
            for (cell, scheme) in row.cells.iter_mut().zip(schemes) {
                if let Ok(c) = cell {
                    c.metrics.output_sqnr_db =
                        Some(layer_output_error(ckpt, acts, &row.name, scheme)?.sqnr_db());
                }
            }
        }
        progress(done + 1, total);
    }
    Ok(())
}

/// Sets `metrics.output_sqnr_db` of every analyzed record whose layer has a
/// captured input (`quantscope report --inputs`). `progress(done, total)`
/// after each record.
pub fn add_output_sqnr(
    ckpt: &Checkpoint,
    acts: &Activations,
    scheme: &Scheme,
    records: &mut [crate::report::TensorReport],
    progress: &dyn Fn(usize, usize),
) -> Result<()> {
    let total = records.len();
    for (done, r) in records.iter_mut().enumerate() {
        if scheme.calibration == Calibration::Gptq
            && let Some(site) = acts.site(&r.name)
        {
            // The weight alone could not be analysed: the record comes from GPTQ's R′.
            match gptq_layer(ckpt, acts, &r.name, scheme, &Options::default()) {
                Ok((w, g)) => {
                    let mut m = g.result.metrics;
                    let w_q = g.result.dequantized.unwrap_or_default();
                    m.output_sqnr_db = output_error(&w, &w_q, site).ok().map(|e| e.sqnr_db());
                    (r.quantized, r.reason, r.fallback, r.metrics) = (true, None, g.result.fallback, Some(m));
                }
                Err(e) => r.reason = Some(e.to_string()),
            }
        } else if let Some(m) = r.metrics.as_mut()
            && acts.site(&r.name).is_some()
        {
            m.output_sqnr_db = Some(layer_output_error(ckpt, acts, &r.name, scheme)?.sqnr_db());
        }
        progress(done + 1, total);
    }
    Ok(())
}
