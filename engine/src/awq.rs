//! AWQ's arithmetic (Lin et al., 2023) as llm-compressor 0.14's AWQModifier
//! computes it (`modifiers/transform/awq/base.py`), for one mapping: a smooth
//! layer (a norm or a Linear) whose output feeds the balance Linears.
//!
//! Each candidate of a grid gives per-input-channel scales s from the mean
//! |x| of the balance layers' inputs and the mean group-normalised |w| of
//! their weights; the balance weights are tried as Q(W·s)/s, and the one with
//! the least output error wins (the model forwards are in `run::awq`). The
//! winner is folded in: W·s into the balance layers, 1/s into the smooth
//! layer, so the float model computes the same function. docs/numerics.md,
//! "AWQ", gives every dtype and order this follows.

use crate::analyze::{Options, analyze};
use crate::error::Result;
use crate::format::WorkDtype;
use crate::scheme::{Granularity, Scheme};

/// Candidates of the default grid (`n_grid`).
pub const GRID: usize = 20;

/// The grid with duo scaling: the identity first, then ratios i/(GRID − 2)
/// for i = 0..=GRID − 2 with both activation and weight terms. `(ratio, duo)`.
#[must_use]
pub fn grid() -> Vec<(f64, bool)> {
    let steps = (GRID - 2) as f64;
    std::iter::once((0.0, false)).chain((0..GRID - 1).map(|i| (i as f64 / steps, true))).collect()
}

/// The mean over output rows (of every balance layer) of |w| divided by its
/// slice's largest |w| (+1e-6), per input column, summed in f64. A slice is
/// the scheme's group of columns, a whole row (channel) or the whole matrix.
#[must_use]
pub fn weight_mean(balance: &[(&[f32], usize)], granularity: Granularity) -> Vec<f64> {
    let cols = balance.first().map_or(0, |b| b.1);
    let mut total = vec![0.0f64; cols];
    let mut rows = 0usize;
    for &(w, c) in balance {
        let size = match granularity {
            Granularity::Group { size } => size.clamp(1, c.max(1)),
            _ => c.max(1),
        };
        let peak = |v: &[f32]| v.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let whole = if granularity == Granularity::Tensor { peak(w) } else { 0.0 };
        for row in w.chunks(c.max(1)) {
            for (k, piece) in row.chunks(size).enumerate() {
                let peak = match granularity {
                    Granularity::Tensor => whole,
                    _ => peak(piece),
                } + 1e-6;
                for (j, v) in piece.iter().enumerate() {
                    total[k * size + j] += f64::from(v.abs() / peak);
                }
            }
            rows += 1;
        }
    }
    for t in &mut total {
        *t /= rows.max(1) as f64;
    }
    total
}

/// The mean |x| per input column from the per-column sums over `count` rows.
#[must_use]
pub fn activation_mean(sums: &[f32], count: usize) -> Vec<f32> {
    sums.iter().map(|&s| s / count.max(1) as f32).collect()
}

/// One candidate's scales: (x̄^r / (w̄^(1−r) + 1e-4)) clamped at 1e-4 with duo
/// scaling, x̄^r clamped otherwise; then divided by √(max·min).
#[must_use]
pub fn candidate_scales(x_mean: &[f32], w_mean: &[f64], (ratio, duo): (f64, bool)) -> Vec<f64> {
    // torch raises an f32 tensor to an f32 exponent: the exponent is rounded first.
    let r = f64::from(ratio as f32);
    let xp = |x: f32| -> f64 {
        let p = if ratio == 0.0 {
            1.0
        } else if ratio == 1.0 {
            x
        } else {
            (f64::from(x).powf(r)) as f32
        };
        f64::from(p)
    };
    let mut s: Vec<f64> = if duo {
        x_mean.iter().zip(w_mean).map(|(&x, &w)| (xp(x) / (w.powf(1.0 - ratio) + 1e-4)).max(1e-4)).collect()
    } else {
        x_mean.iter().map(|&x| f64::from((xp(x) as f32).max(1e-4))).collect()
    };
    let (lo, hi) = s.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let norm = (hi * lo).sqrt();
    for v in &mut s {
        *v /= norm;
        if !v.is_finite() {
            *v = 1.0;
        }
    }
    s
}

/// W with column c multiplied by s[c], in f64, rounded once to the working dtype.
#[must_use]
pub fn scale_columns(w: &[f32], s: &[f64], work: WorkDtype) -> Vec<f32> {
    let cols = s.len().max(1);
    w.chunks(cols)
        .flat_map(|row| row.iter().zip(s).map(|(&v, &k)| work.round((f64::from(v) * k) as f32)))
        .collect()
}

/// The candidate a search tries for one balance layer: Q(W·s)/s, with Q the
/// scheme's round-to-nearest on W·s (min-max ranges of the scaled weight).
pub fn fake_quantized(
    w: &[f32],
    shape: &[usize],
    s: &[f64],
    scheme: &Scheme,
    work: WorkDtype,
) -> Result<Vec<f32>> {
    let scaled = scale_columns(w, s, work);
    let opts = Options { keep_dequantized: true, work, ..Options::default() };
    let q = analyze(&scaled, shape, &scheme.range_scheme(), &opts)?.dequantized.unwrap_or_default();
    Ok(unscale_columns(&q, s, work))
}

/// Q with column c divided by s[c], in f64, rounded once to the working dtype.
#[must_use]
pub fn unscale_columns(q: &[f32], s: &[f64], work: WorkDtype) -> Vec<f32> {
    let cols = s.len().max(1);
    q.chunks(cols)
        .flat_map(|row| row.iter().zip(s).map(|(&v, &k)| work.round((f64::from(v) / k) as f32)))
        .collect()
}

/// A smooth layer's weight after the fold: the last `s.len()` rows of
/// `[rows, cols]` divided by s (a norm or a bias has `cols` = 1).
#[must_use]
pub fn unscale_rows(w: &[f32], cols: usize, s: &[f64], work: WorkDtype) -> Vec<f32> {
    let cols = cols.max(1);
    let skip = w.len().saturating_sub(s.len() * cols);
    let mut out = w.to_vec();
    for (i, v) in out[skip..].iter_mut().enumerate() {
        *v = work.round((f64::from(*v) / s[i / cols]) as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_starts_at_the_identity_and_ends_at_ratio_one() {
        let g = grid();
        assert_eq!(g.len(), GRID);
        assert_eq!(g[0], (0.0, false));
        assert_eq!(g[1], (0.0, true));
        assert_eq!(g[GRID - 1], (1.0, true));
    }

    #[test]
    fn scales_are_normalised_so_max_times_min_is_one() {
        let x = [0.5f32, 2.0, 1.0, 4.0];
        let w = [0.3f64, 0.6, 0.9, 0.2];
        for c in grid() {
            let s = candidate_scales(&x, &w, c);
            let (lo, hi) = s.iter().fold((f64::MAX, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
            assert!((lo * hi - 1.0).abs() < 1e-12, "{c:?}: {lo} {hi}");
        }
        assert!(candidate_scales(&x, &w, grid()[0]).iter().all(|&v| v == 1.0));
        // Ratio 1: s ∝ x̄ / (1 + 1e-4).
        let s = candidate_scales(&x, &w, (1.0, true));
        assert!((s[3] / s[0] - 8.0).abs() < 1e-12);
    }

    #[test]
    fn weight_mean_normalises_each_group_by_its_peak() {
        // Two rows of four columns, groups of two.
        let w = [1.0f32, -2.0, 4.0, 1.0, 0.5, 0.5, -1.0, 3.0];
        let m = weight_mean(&[(&w, 4)], Granularity::Group { size: 2 });
        let p = |a: f32, b: f32| f64::from(a / (b + 1e-6));
        let expect = [
            f64::midpoint(p(1.0, 2.0), p(0.5, 0.5)),
            f64::midpoint(p(2.0, 2.0), p(0.5, 0.5)),
            f64::midpoint(p(4.0, 4.0), p(1.0, 3.0)),
            f64::midpoint(p(1.0, 4.0), p(3.0, 3.0)),
        ];
        for (a, b) in m.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12, "{m:?}");
        }
        let rows = weight_mean(&[(&w, 4)], Granularity::Channel { axis: 0 });
        assert!((rows[0] - f64::midpoint(p(1.0, 4.0), p(0.5, 3.0))).abs() < 1e-12);
    }

    #[test]
    fn folding_keeps_the_product_of_smooth_and_balance() {
        let s = [2.0f64, 0.5];
        let g = [3.0f32, 5.0];
        let w = [1.0f32, 1.0, 2.0, 2.0];
        let g2 = unscale_rows(&g, 1, &s, WorkDtype::F32);
        let w2 = scale_columns(&w, &s, WorkDtype::F32);
        assert_eq!(g2, [1.5, 10.0]);
        assert_eq!(w2, [2.0, 0.5, 4.0, 1.0]);
        // A Linear smooth layer: only its last len(s) rows change.
        let lin = [1.0f32, 1.0, 4.0, 4.0, 8.0, 8.0];
        assert_eq!(unscale_rows(&lin, 2, &s, WorkDtype::F32), [1.0, 1.0, 2.0, 2.0, 16.0, 16.0]);
    }
}
