//! One layer under a GPTQ scheme beside round-to-nearest, on its captured
//! input: the weight SQNR GPTQ gives up, the output SQNR it gains, its loss,
//! and both R′ histograms over R's bins (what the app's panels show).

use super::capture::Activations;
use super::output_error::{OutputError, gptq_layer, output_error};
use crate::analyze::{Histogram, Options, QuantResult, analyze};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::format::WorkDtype;
use crate::scheme::Scheme;

/// A GPTQ layer and its round-to-nearest twin (the same slice parameters).
#[derive(Clone, Debug)]
pub struct GptqView {
    /// R against GPTQ's R′ (histograms as asked).
    pub gptq: QuantResult,
    /// R against round-to-nearest's R′ under the same parameters.
    pub rtn: QuantResult,
    pub output: OutputError,
    pub rtn_output: OutputError,
    /// llm-compressor's unnormalised loss (Σ e²/2).
    pub loss: f64,
    /// H + λI was not positive definite: GPTQ kept round-to-nearest.
    pub fallback: bool,
    /// Each R′ over R's bins (when `opts.weight_bins` > 0).
    pub gptq_histogram: Option<Histogram>,
    pub rtn_histogram: Option<Histogram>,
}

/// `layer` under `scheme` (a GPTQ scheme) and under its round-to-nearest twin,
/// both measured on `acts`' input of the layer. R′ is not kept.
pub fn gptq_view(
    ckpt: &Checkpoint,
    acts: &Activations,
    layer: &str,
    scheme: &Scheme,
    opts: &Options,
) -> Result<GptqView> {
    let site = acts.site(layer).ok_or_else(|| Error::NotFound(format!("{layer} (no captured input)")))?;
    let (w, g) = gptq_layer(ckpt, acts, layer, scheme, opts)?;
    let info = ckpt.tensor(layer)?;
    let twin = Options { keep_dequantized: true, work: WorkDtype::of(info.dtype), ..*opts };
    let mut rtn = analyze(&w, &info.shape, &scheme.range_scheme(), &twin)?;
    let mut gptq = g.result;
    let (gq, rq) = (gptq.dequantized.take().unwrap_or_default(), rtn.dequantized.take().unwrap_or_default());
    let fail = |e: candle_core::Error| Error::Tensor {
        path: ckpt.path.clone(),
        tensor: layer.to_string(),
        reason: format!("output error: {e}"),
    };
    let (output, rtn_output) =
        (output_error(&w, &gq, site).map_err(fail)?, output_error(&w, &rq, site).map_err(fail)?);
    let over_r = |q: &[f32]| gptq.histogram.as_ref().map(|h| Histogram::of(q, h.lo, h.hi, h.counts.len()));
    let (gptq_histogram, rtn_histogram) = (over_r(&gq), over_r(&rq));
    Ok(GptqView {
        gptq,
        rtn,
        output,
        rtn_output,
        loss: g.loss,
        fallback: g.fallback,
        gptq_histogram,
        rtn_histogram,
    })
}
