//! The `output` objective's measurements: every layer × candidate scheme's
//! output SQNR over the captured inputs (docs/numerics.md, "Output SQNR" and
//! "Planner objectives"). Each cell's W′ is the sweep's: the tensor's working
//! dtype and the fused siblings' shared global scale, so the output error and
//! the weight metrics beside it describe the same quantized weight.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::analyze::{Options, analyze};
use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::error::{Error, Result};
use crate::format::WorkDtype;
use crate::run::capture::{Activations, SiteStats};
use crate::run::output_error::{gptq_layer, gptq_on, quadratic};
use crate::scheme::{Calibration, Scheme};
use crate::sweep::{Cell, Sweep};

/// Output SQNR (dB) per layer × scheme; `None` where a layer has no captured
/// input (or a scheme cannot take it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputSqnr {
    pub layers: Vec<String>,
    /// The schemes' short forms, in the sweep's column order.
    pub schemes: Vec<String>,
    pub db: Vec<Vec<Option<f64>>>,
}

impl OutputSqnr {
    /// The cell of row `r`, column `k`.
    pub fn db(&self, r: usize, k: usize) -> Option<f64> {
        self.db.get(r)?.get(k).copied().flatten()
    }

    /// Whether these rows and columns are those of `s` (same layers, same schemes).
    pub fn matches(&self, s: &crate::sweep::Sweep) -> bool {
        self.schemes == s.schemes
            && self.layers.len() == s.rows.len()
            && self.layers.iter().zip(&s.rows).all(|(a, r)| *a == r.name)
    }

    /// Layers without a captured input (their weight SQNR stands in).
    pub fn missing(&self) -> impl Iterator<Item = &str> {
        self.layers
            .iter()
            .zip(&self.db)
            .filter(|(_, d)| d.iter().all(Option::is_none))
            .map(|(l, _)| l.as_str())
    }
}

/// Every layer in `layers` under every scheme, measured on its input in `acts`.
/// `progress(done, total)` after each layer; `cancel` stops between layers.
pub fn output_sqnr(
    ckpt: &Checkpoint,
    acts: &Activations,
    layers: &[String],
    schemes: &[Scheme],
    progress: &mut dyn FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<OutputSqnr> {
    let mut db = Vec::with_capacity(layers.len());
    let mut buf = Vec::new();
    for (i, name) in layers.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let info = ckpt.tensor(name)?;
        let row = match acts.site(name) {
            Some(site) => output_row(ckpt, info, (acts.samples, site), schemes, &mut buf)?,
            None => vec![None; schemes.len()],
        };
        ckpt.release(info);
        db.push(row);
        progress(i + 1, layers.len());
    }
    Ok(OutputSqnr { layers: layers.to_vec(), schemes: schemes.iter().map(ToString::to_string).collect(), db })
}

/// One layer's output SQNR under each scheme (`None` where the scheme fails on
/// it, as its sweep cell does), on `site`, its input in a capture of `samples`
/// samples. The signal Σ‖W x‖² is computed once.
pub fn output_row(
    ckpt: &Checkpoint,
    info: &TensorInfo,
    (samples, site): (usize, &SiteStats),
    schemes: &[Scheme],
    buf: &mut Vec<f32>,
) -> Result<Vec<Option<f64>>> {
    let fail = |reason: String| Error::Tensor {
        path: ckpt.path.clone(),
        tensor: info.name.clone(),
        reason: format!("output error: {reason}"),
    };
    let n = site.in_features;
    if n == 0 || !info.numel().is_multiple_of(n) {
        return Err(fail(format!("a weight of {} elements does not fit inputs of width {n}", info.numel())));
    }
    let w = ckpt.values(info, buf)?;
    let signal =
        quadratic(w.iter().map(|&v| f64::from(v)).collect(), site).map_err(|e| fail(e.to_string()))?;
    let mut row = Vec::with_capacity(schemes.len());
    for s in schemes {
        let Some(w_q) = dequantized(ckpt, info, w, s, (samples, site)) else {
            row.push(None);
            continue;
        };
        // Widened before subtracting, so every ΔW element is exact.
        let delta = w.iter().zip(&w_q).map(|(a, b)| f64::from(*a) - f64::from(*b)).collect();
        let noise = quadratic(delta, site).map_err(|e| fail(e.to_string()))?;
        row.push(Some(if noise == 0.0 { f64::INFINITY } else { 10.0 * (signal / noise).log10() }));
    }
    Ok(row)
}

/// W′ of `info` under `s` as the sweep computes it (GPTQ's on the input
/// `site` of a capture, as [`gptq_cells`]), or `None` when the scheme fails on it.
fn dequantized(
    ckpt: &Checkpoint,
    info: &TensorInfo,
    w: &[f32],
    s: &Scheme,
    site: (usize, &SiteStats),
) -> Option<Vec<f32>> {
    if s.calibration == Calibration::Gptq {
        return gptq_on(ckpt, &info.name, site, s, &Options::default()).ok()?.1.result.dequantized;
    }
    let global_amax = crate::fused::shared_global_amax(ckpt, &info.name, s, &|_| Some(*s)).ok()?;
    let opts = Options {
        work: WorkDtype::of(info.dtype),
        global_amax,
        keep_dequantized: true,
        ..Options::default()
    };
    analyze(w, &info.shape, s, &opts).ok()?.dequantized
}

/// Fills the cells of `sweep`'s GPTQ columns (`schemes` in its column order),
/// which the weight-only sweep cannot compute: each layer with a captured input
/// solved alone on it (`gptq_layer`), its weight metrics and stored bytes (those
/// of round-to-nearest's layout). A layer without an input keeps its reason.
pub fn gptq_cells(
    ckpt: &Checkpoint,
    acts: &Activations,
    sweep: &mut Sweep,
    schemes: &[Scheme],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let total = sweep.rows.len();
    for (done, row) in sweep.rows.iter_mut().enumerate() {
        for (cell, s) in row.cells.iter_mut().zip(schemes) {
            if s.calibration != Calibration::Gptq || acts.site(&row.name).is_none() {
                continue;
            }
            let info = ckpt.tensor(&row.name)?;
            *cell = gptq_layer(ckpt, acts, &row.name, s, &Options::default())
                .map(|(_, g)| Cell {
                    metrics: g.result.metrics,
                    stored_bytes: crate::sweep::stored_bytes(info, s),
                    slices: g.result.params.len(),
                    fallback: g.result.fallback,
                })
                .map_err(|e| e.to_string());
        }
        progress(done + 1, total);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{Objective, Problem, relative_cost};
    use crate::run::capture::tests_support;
    use crate::sweep;

    /// A two-layer F32 checkpoint: `layer.weight` [6, 8] and `other.weight` [4, 8].
    fn checkpoint() -> (Checkpoint, Vec<f32>) {
        let w: Vec<f32> =
            (0..48).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0 + if i == 5 { 4.0 } else { 0.0 }).collect();
        let v: Vec<f32> = (0..32).map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0).collect();
        let bytes = |x: &[f32]| x.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
        let (wb, vb) = (bytes(&w), bytes(&v));
        let views = [
            ("layer.weight", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![6, 8], &wb)),
            ("other.weight", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 8], &vb)),
        ];
        let views: Vec<_> = views.into_iter().map(|(n, t)| (n, t.expect("view"))).collect();
        let file = safetensors::serialize(views, None).expect("serialize");
        (Checkpoint::from_bytes("t.safetensors", file).expect("open"), w)
    }

    #[test]
    fn the_output_objective_is_params_times_output_noise_over_energy_summed() {
        let (ckpt, w) = checkpoint();
        // Correlated inputs with one loud channel: the output error differs from the weight error.
        let x: Vec<f32> =
            (0..40 * 8).map(|i| ((i * 7 % 11) as f32 - 5.0) * if i % 8 == 3 { 6.0 } else { 1.0 }).collect();
        let mut site = tests_support::site(8);
        tests_support::add(&mut site, &x, 8);
        let schemes: Vec<Scheme> =
            ["int4:channel:minmax", "int8:channel:minmax"].map(|s| s.parse().unwrap()).to_vec();
        let rows = [
            ckpt.tensors().iter().position(|t| t.name == "layer.weight").unwrap(),
            ckpt.tensors().iter().position(|t| t.name == "other.weight").unwrap(),
        ];
        let s = sweep::sweep(&ckpt, &rows, &schemes, &|_, _| {}, &AtomicBool::new(false)).unwrap();
        let info = ckpt.tensor("layer.weight").unwrap();
        let first = output_row(&ckpt, info, (1, &site), &schemes, &mut Vec::new()).unwrap();
        // "other.weight" has no captured input: its weight SQNR stands in.
        let out = OutputSqnr {
            layers: s.rows.iter().map(|r| r.name.clone()).collect(),
            schemes: s.schemes.clone(),
            db: s
                .rows
                .iter()
                .map(|r| if r.name == "layer.weight" { first.clone() } else { vec![None, None] })
                .collect(),
        };
        assert!(out.matches(&s));
        assert_eq!(out.missing().collect::<Vec<_>>(), ["other.weight"]);

        // By hand: Σ_t ‖(W − W′) x_t‖² over the tokens, W′ from the analysis.
        let direct = |k: usize| {
            let wq = dequantized(&ckpt, info, &w, &schemes[k], (1, &site)).unwrap();
            let (mut sig, mut noise) = (0f64, 0f64);
            for t in x.chunks(8) {
                for o in 0..6 {
                    let dot = |m: &dyn Fn(usize) -> f64| (0..8).map(|j| m(j) * f64::from(t[j])).sum::<f64>();
                    sig += dot(&|j| f64::from(w[o * 8 + j])).powi(2);
                    noise += dot(&|j| f64::from(w[o * 8 + j]) - f64::from(wq[o * 8 + j])).powi(2);
                }
            }
            10.0 * (sig / noise).log10()
        };
        for (k, got) in first.iter().enumerate() {
            let got = got.unwrap();
            assert!((got - direct(k)).abs() < 1e-9, "{got} vs {}", direct(k));
        }
        let weight_db = s.rows[0].cells[0].as_ref().unwrap().metrics.sqnr_db;
        assert!((first[0].unwrap() - weight_db).abs() > 0.1, "the inputs weight the error");

        let p = Problem::from_sweep_output(&s, true, &|_, _| true, &out);
        // Budget: int4 on the first layer, int8 on the second (both below keeping).
        let choice = [0usize, 1];
        let (bytes, value) = p.evaluate(&choice, Objective::Output);
        let other_db = s.rows[1].cells[1].as_ref().unwrap().metrics.sqnr_db;
        let by_hand = 48.0 * 10f64.powf(-direct(0) / 10.0) + 32.0 * 10f64.powf(-other_db / 10.0);
        assert!((value - by_hand).abs() <= 1e-9 * by_hand, "{value} vs {by_hand}");
        assert_eq!(p.layers[0][0].cost, relative_cost(48, first[0].unwrap()));
        let plan = p.solve(bytes, Objective::Output).unwrap();
        assert!(plan.total_bytes <= bytes && plan.objective_value <= value);
    }

    #[test]
    fn a_weight_that_does_not_fit_the_input_width_is_an_error_naming_it() {
        let (ckpt, _) = checkpoint();
        let site = tests_support::site(5);
        let info = ckpt.tensor("layer.weight").unwrap();
        let schemes: Vec<Scheme> = vec!["int8:channel".parse().unwrap()];
        let e = output_row(&ckpt, info, (1, &site), &schemes, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("layer.weight") && e.contains("width 5"), "{e}");
    }
}
