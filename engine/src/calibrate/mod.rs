//! Calibration: how each slice's clipping range [lo, hi] is chosen, then turned
//! into (S, Z) by the format. One file per method, all per slice
//! (docs/numerics.md, "Calibration"): [`percentile`], [`mse`], [`kl`] (entropy) and
//! [`hqq`] (which optimizes Z, then fits an integer Z and S, instead of choosing a range).

pub mod hqq;
mod kl;
mod mse;
mod percentile;

use crate::format::{NumberFormat, SliceParams};
use crate::metrics::TensorStats;
use crate::scheme::{Calibration, ManualRange, Mapping};

pub(crate) use crate::slicing::PAR_CHUNK;

/// The xorshift stream the calibration tests draw their slices from.
#[cfg(test)]
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Chooses one slice's range with `calibration` and returns its parameters.
/// Every method reads only the min, max and counts of `stats` (and `xs`): the
/// analysis passes [`TensorStats::range_of`] and sums ΣR, ΣR² in its error pass.
pub(crate) fn slice_params<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    stats: &TensorStats,
    mapping: Mapping,
    calibration: &Calibration,
) -> SliceParams {
    match *calibration {
        Calibration::Mse => mse::mse_params(fmt, xs, stats, mapping),
        Calibration::Hqq => hqq::hqq_params(fmt, xs, stats, mapping),
        _ => {
            let (lo, hi) = slice_range(xs, stats, mapping, calibration).unwrap_or_else(|| stats.range());
            fmt.params(lo, hi, mapping)
        }
    }
}

/// The range a calibration that does not depend on the format picks for one
/// slice (min-max, percentile, entropy, manual); None for MSE and HQQ, which
/// search the format's own grid. Schemes that differ only in format (INT4 and
/// INT8, FP8 and INT) can share it: the sweep computes it once per slice.
pub(crate) fn slice_range(
    xs: &[f32],
    stats: &TensorStats,
    mapping: Mapping,
    calibration: &Calibration,
) -> Option<(f32, f32)> {
    Some(match *calibration {
        // GPTQ's scales are min-max's; its error compensation runs after (`gptq`).
        Calibration::MinMax | Calibration::Gptq | Calibration::Awq => stats.range(),
        Calibration::Percentile { p } => percentile::percentile_range(xs, stats, p, mapping),
        Calibration::Entropy => kl::entropy_range(xs, stats, mapping),
        Calibration::Mse | Calibration::Hqq => return None,
        Calibration::Manual(ManualRange::Range { lo, hi }) => (lo, hi),
        Calibration::Manual(ManualRange::Ratio { r }) => {
            let (lo, hi) = stats.range();
            (lo * r, hi * r)
        }
    })
}

/// The automatic methods [`compare_ranges`] shows side by side, in its order,
/// the percentile at `p`.
pub fn compared(p: f64) -> [Calibration; 4] {
    [Calibration::MinMax, Calibration::Percentile { p }, Calibration::Mse, Calibration::Entropy]
}

/// The clip range each automatic method picks for one slice, for showing them
/// side by side. Order: [`compared`].
pub fn compare_ranges<F: NumberFormat>(
    fmt: F,
    xs: &[f32],
    mapping: Mapping,
    percentile: f64,
) -> [(Calibration, SliceParams); 4] {
    let stats = crate::slicing::parallel_stats(xs);
    compared(percentile).map(|c| (c, slice_params(fmt, xs, &stats, mapping, &c)))
}
