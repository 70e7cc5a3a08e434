//! One layer under an AWQ scheme beside round-to-nearest, on its captured
//! input (what the app's panels show). The layers fed by the same input (q, k
//! and v; gate and up; or the layer alone) are searched together, as AWQ's
//! balance layers are, with x̄ from the capture; a candidate's loss is their
//! summed output noise on the captured inputs, tr(ΔW Σxxᵀ ΔWᵀ). The save
//! (`run::awq`) measures the attention's or the MLP's output instead for the
//! norm mappings, so a choice may differ there (docs/numerics.md, "AWQ").

use super::capture::Activations;
use super::output_error::{OutputError, output_error};
use crate::analyze::{Histogram, Options, QuantResult, against, analyze};
use crate::awq::{candidate_scales, fake_quantized, grid, scale_columns, unscale_columns, weight_mean};
use crate::checkpoint::Checkpoint;
use crate::dequant::{Decoded, SliceMap};
use crate::error::{Error, Result};
use crate::format::WorkDtype;
use crate::scheme::Scheme;

/// An AWQ layer and its round-to-nearest twin.
#[derive(Clone, Debug)]
pub struct AwqView {
    /// R against Q(W·s)/s. Its slice parameters are round-to-nearest's, the
    /// weight's own ranges: every element of R′ is inside them, unclipped.
    pub awq: QuantResult,
    /// R against round-to-nearest's R′.
    pub rtn: QuantResult,
    pub output: OutputError,
    pub rtn_output: OutputError,
    /// The layers searched together (those fed by the same input).
    pub group: Vec<String>,
    /// The winning candidate (0 = the identity) and its (ratio, duo).
    pub best: usize,
    pub candidate: (f64, bool),
    /// Each candidate's summed output SQNR of the group (dB).
    pub group_sqnr_db: Vec<f64>,
    /// The smallest and largest scale s of the winner.
    pub scale_range: (f64, f64),
    /// Each R′ over R's bins (when `opts.weight_bins` > 0).
    pub awq_histogram: Option<Histogram>,
    pub rtn_histogram: Option<Histogram>,
}

/// `layer` under `scheme` (an AWQ scheme) and under min-max round-to-nearest,
/// both measured on `acts`' input of the layer.
pub fn awq_view(
    ckpt: &Checkpoint,
    acts: &Activations,
    layer: &str,
    scheme: &Scheme,
    opts: &Options,
) -> Result<AwqView> {
    let fail = |reason: String| Error::Tensor { path: ckpt.path.clone(), tensor: layer.to_string(), reason };
    let site = acts.site(layer).ok_or_else(|| Error::NotFound(format!("{layer} (no captured input)")))?;
    let sum_abs = site.sum_abs.as_ref().ok_or_else(|| {
        fail("this capture was saved before AWQ's activation scale was kept: run the model again".into())
    })?;
    let x_mean: Vec<f32> = sum_abs.iter().map(|&a| (a / site.tokens.max(1) as f64) as f32).collect();
    let mut group = Vec::new();
    for name in &site.layers {
        let info = ckpt.tensor(name)?;
        if info.shape.len() == 2 && info.shape[1] == site.in_features {
            group.push((name.clone(), ckpt.load_f32(name)?, info.shape.clone(), WorkDtype::of(info.dtype)));
        }
    }
    let me = group.iter().position(|g| g.0 == layer).ok_or_else(|| fail("not a 2-D Linear weight".into()))?;
    let balance: Vec<(&[f32], usize)> = group.iter().map(|g| (g.1.as_slice(), site.in_features)).collect();
    let w_mean = weight_mean(&balance, scheme.granularity);
    let noise_fail = |e: candle_core::Error| fail(format!("output error: {e}"));
    let (mut best, mut least, mut group_sqnr_db) = (0, f64::INFINITY, Vec::new());
    for (i, c) in grid().into_iter().enumerate() {
        let s = candidate_scales(&x_mean, &w_mean, c);
        let (mut signal, mut noise) = (0.0, 0.0);
        for (_, w, shape, work) in &group {
            let q = fake_quantized(w, shape, &s, scheme, *work)?;
            let e = output_error(w, &q, site).map_err(noise_fail)?;
            (signal, noise) = (signal + e.signal, noise + e.noise);
        }
        group_sqnr_db.push(OutputError { signal, noise, exact: site.gram.is_some() }.sqnr_db());
        // Strictly smaller: on a tie the earlier candidate stays.
        if noise < least {
            (best, least) = (i, noise);
        }
    }
    let candidate = grid()[best];
    let s = candidate_scales(&x_mean, &w_mean, candidate);
    let (_, w, shape, work) = &group[me];
    let view = Options { keep_dequantized: true, work: *work, ..*opts };
    let mut rtn = analyze(w, shape, &scheme.range_scheme(), &view)?;
    let scaled = analyze(&scale_columns(w, &s, *work), shape, &scheme.range_scheme(), &view)?;
    let q = unscale_columns(scaled.dequantized.as_deref().unwrap_or_default(), &s, *work);
    // Each element's step is S/s_c, which no slice parameter holds: the panels
    // show the weight's own slices, whose ranges AWQ's R′ stays inside.
    let d = Decoded {
        values: q.clone(),
        params: rtn.params.clone(),
        map: SliceMap::of(rtn.granularity),
        cols: site.in_features,
        work: *work,
        global: rtn.global_scale,
    };
    let (mut awq, _) = against(w, d, *scheme, rtn.granularity, opts.weight_bins, opts.error_bins);
    awq.fallback = scaled.fallback;
    let rq = rtn.dequantized.take().unwrap_or_default();
    let (output, rtn_output) =
        (output_error(w, &q, site).map_err(noise_fail)?, output_error(w, &rq, site).map_err(noise_fail)?);
    let over_r = |v: &[f32]| awq.histogram.as_ref().map(|h| Histogram::of(v, h.lo, h.hi, h.counts.len()));
    let (awq_histogram, rtn_histogram) = (over_r(&q), over_r(&rq));
    let scale_range = s.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    Ok(AwqView {
        awq,
        rtn,
        output,
        rtn_output,
        group: group.into_iter().map(|g| g.0).collect(),
        best,
        candidate,
        group_sqnr_db,
        scale_range,
        awq_histogram,
        rtn_histogram,
    })
}
