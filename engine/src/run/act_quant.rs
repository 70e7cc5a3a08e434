//! The quantization error of a Linear layer's input activations under a scheme,
//! the two ways runtimes quantize activations: **static** per-tensor (one range
//! for every token, calibrated ahead of time) and **dynamic** per-token (each
//! token's own min-max range, computed at run time, as W8A8 / FP8 dynamic do).
//! Both run `analyze` on the captured token sample, so the numbers, clip lines
//! and calibration overlay are the weights' own.

use crate::analyze::{Options, QuantResult, analyze, compare_calibrations};
use crate::error::{Error, Result};
use crate::format::{SliceParams, WorkDtype};
use crate::scheme::{Calibration, Granularity, Scheme};

use super::capture::SiteStats;

/// One layer input under a scheme.
#[derive(Clone, Debug)]
pub struct ActivationAnalysis {
    /// Static per-tensor: the scheme's format, mapping and calibration, one range.
    pub per_tensor: QuantResult,
    /// Dynamic per-token: the scheme's format and mapping, each token's min-max.
    pub per_token: QuantResult,
    /// Where every calibration method would clip the static range.
    pub calibration_ranges: Vec<(Calibration, SliceParams)>,
    /// Tokens in the sample the two results were measured on.
    pub sample_tokens: usize,
}

/// Analyzes `site`'s token sample under `scheme` (activations are taken as F32).
pub fn analyze_activation(
    site: &SiteStats,
    scheme: &Scheme,
    bins: usize,
    percentile: f64,
) -> Result<ActivationAnalysis> {
    let rows = site.sample_rows();
    if rows == 0 {
        return Err(Error::NotFound(format!("{} (no captured tokens)", site.layers.join(", "))));
    }
    let shape = [rows, site.in_features];
    let opts = Options { weight_bins: bins, error_bins: bins, work: WorkDtype::F32, ..Options::default() };
    let per_tensor =
        analyze(&site.sample, &shape, &Scheme { granularity: Granularity::Tensor, ..*scheme }, &opts)?;
    let dynamic =
        Scheme { granularity: Granularity::Channel { axis: 0 }, calibration: Calibration::MinMax, ..*scheme };
    let per_token = analyze(&site.sample, &shape, &dynamic, &Options { weight_bins: 0, ..opts })?;
    let calibration_ranges = compare_calibrations(&site.sample, scheme, percentile, WorkDtype::F32)?;
    Ok(ActivationAnalysis { per_tensor, per_token, calibration_ranges, sample_tokens: rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_token_ranges_beat_one_range_when_tokens_differ_in_scale() {
        // Token t has values of magnitude 10^(t mod 4): one static range rounds the small tokens
        // to 0, so per-token ranges leave much less noise (3.7 dB less here).
        let n = 16;
        let mut site = crate::run::capture::tests_support::site(n);
        let x: Vec<f32> =
            (0..64 * n).map(|i| ((i % 7) as f32 - 3.0) * 10f32.powi(((i / n) % 4) as i32)).collect();
        crate::run::capture::tests_support::add(&mut site, &x, n);
        let scheme: Scheme = "int8:tensor:minmax".parse().expect("scheme");
        let a = analyze_activation(&site, &scheme, 64, 99.9).expect("analysis");
        assert_eq!(a.sample_tokens, 64);
        assert_eq!(a.per_token.params.len(), 64);
        assert!(
            a.per_token.metrics.sqnr_db > a.per_tensor.metrics.sqnr_db + 3.0,
            "{} vs {}",
            a.per_token.metrics.sqnr_db,
            a.per_tensor.metrics.sqnr_db
        );
        assert!(a.per_tensor.histogram.is_some() && !a.calibration_ranges.is_empty());
    }
}
