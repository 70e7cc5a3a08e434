//! R against a decoded R′, the sums behind `analyze::against` (a layer someone
//! else quantized, its stored codes and scales decoded; llama.cpp's types,
//! quantized by ggml's own search, then decoded): the same sums as
//! [`crate::analyze`], per-slice error sums in f64, row by row.

use rayon::prelude::*;

use crate::dequant::{Decoded, SliceMap};
use crate::metrics::{ErrorSums, Metrics, pair_sums};

/// The whole layer's metrics, summed row by row in row order (the numbers
/// `quantscope diff` prints).
pub fn metrics_against(values: &[f32], d: &Decoded) -> Metrics {
    let cols = d.cols.max(1);
    let sums = values
        .par_chunks(cols)
        .zip(d.values.par_chunks(cols))
        .enumerate()
        .map(|(r, (x, y))| {
            pair_sums(x, y, |c| {
                let p = d.params_of(r * cols + c);
                (p.lo, p.hi)
            })
        })
        .collect::<Vec<_>>();
    sums.iter().fold(ErrorSums::default(), ErrorSums::merge).metrics()
}

/// [`metrics_against`] and [`slice_sums`] in one pass over the layer, each
/// sum added in the same order as there (so the same bits): for groups of a
/// power-of-two size along whole rows (llama.cpp's sub-blocks, most group
/// schemes); otherwise the two passes.
pub(crate) fn metrics_and_slice_sums(values: &[f32], d: &Decoded) -> (Metrics, Vec<ErrorSums>) {
    let cols = d.cols.max(1);
    let Some((shift, per_row)) = pow2_groups(d, cols) else {
        return (metrics_against(values, d), slice_sums(values, d));
    };
    let g = 1usize << shift;
    let rows: Vec<(ErrorSums, Vec<ErrorSums>)> = values
        .par_chunks(cols)
        .zip(d.values.par_chunks(cols))
        .enumerate()
        .map(|(r, (x, y))| {
            let mut row = ErrorSums::default();
            let groups = x
                .chunks(g)
                .zip(y.chunks(g))
                .enumerate()
                .map(|(k, (a, b))| {
                    let p = &d.params[r * per_row + k];
                    let mut s = ErrorSums::default();
                    for (&xv, &yv) in a.iter().zip(b) {
                        row.add_pair(xv, yv, || (p.lo, p.hi));
                        s.add_pair(xv, yv, || (p.lo, p.hi));
                    }
                    ErrorSums::default().merge(&s)
                })
                .collect();
            (row, groups)
        })
        .collect();
    let metrics = rows.iter().fold(ErrorSums::default(), |acc, (row, _)| acc.merge(row)).metrics();
    (metrics, rows.into_iter().flat_map(|(_, g)| g).collect())
}

/// For groups of a power-of-two size along whole rows: the shift that takes
/// a column to its group, and the groups per row.
fn pow2_groups(d: &Decoded, cols: usize) -> Option<(u32, usize)> {
    match d.map {
        SliceMap::Groups(g) if g.is_power_of_two() && cols.is_multiple_of(g) => {
            Some((g.trailing_zeros(), cols / g))
        }
        _ => None,
    }
}

/// Which of the slices a row touches column `c` falls in (runs of columns in
/// the same one are summed together).
fn local_slice(map: &SliceMap, c: usize) -> usize {
    match map {
        SliceMap::Tensor | SliceMap::Rows => 0,
        SliceMap::Groups(g) => c / (*g).max(1),
        SliceMap::Blocks { bw, .. } => c / (*bw).max(1),
        SliceMap::GIdx { g_idx, .. } => g_idx.get(c).map_or(0, |&g| g as usize),
    }
}

/// Per-slice error sums (slice order), whatever the map.
pub(crate) fn slice_sums(values: &[f32], d: &Decoded) -> Vec<ErrorSums> {
    let cols = d.cols.max(1);
    let per_row: Vec<Vec<(usize, ErrorSums)>> = values
        .par_chunks(cols)
        .zip(d.values.par_chunks(cols))
        .enumerate()
        .map(|(r, (x, y))| {
            let mut out: Vec<(usize, ErrorSums)> = Vec::new();
            let mut c = 0;
            while c < x.len() {
                let local = local_slice(&d.map, c);
                let mut end = c + 1;
                while end < x.len() && local_slice(&d.map, end) == local {
                    end += 1;
                }
                let slice = d.map.index(r, c, cols);
                let p = &d.params[slice];
                let s = pair_sums(&x[c..end], &y[c..end], |_| (p.lo, p.hi));
                match out.iter_mut().find(|(k, _)| *k == slice) {
                    Some((_, acc)) => *acc = acc.merge(&s),
                    None => out.push((slice, s)),
                }
                c = end;
            }
            out
        })
        .collect();
    let mut all = vec![ErrorSums::default(); d.params.len()];
    for (slice, s) in per_row.into_iter().flatten() {
        all[slice] = all[slice].merge(&s);
    }
    all
}

/// Each slice's finite (min, max) of R.
pub fn slice_value_ranges(values: &[f32], d: &Decoded) -> Vec<(f32, f32)> {
    let cols = d.cols.max(1);
    let finite = |lo: f32, hi: f32| if lo <= hi { (lo, hi) } else { (0.0, 0.0) };
    // Groups along rows: each row's slices are its own run of the slice
    // order, so rows go in parallel.
    if let SliceMap::Groups(g) = d.map
        && g > 0
        && d.params.len() == values.len() / cols * cols.div_ceil(g)
    {
        return values
            .par_chunks(cols)
            .flat_map_iter(|row| {
                row.chunks(g).map(move |c| {
                    let (lo, hi) = c
                        .iter()
                        .filter(|x| x.is_finite())
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
                    finite(lo, hi)
                })
            })
            .collect();
    }
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); d.params.len()];
    for (k, &x) in values.iter().enumerate() {
        if x.is_finite() {
            let r = &mut ranges[d.map.index(k / cols, k % cols, cols)];
            *r = (r.0.min(x), r.1.max(x));
        }
    }
    ranges.iter().map(|&(lo, hi)| finite(lo, hi)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ggml::GgmlType;

    /// The one-pass sums are the two-pass sums, bit for bit (so `diff`'s
    /// numbers equal the app's published ones).
    #[test]
    fn one_pass_equals_metrics_against_and_slice_sums() {
        let cols = 256;
        let mut values: Vec<f32> = (0..3 * cols).map(|i| ((i * 53 % 97) as f32 - 48.0) * 1e-2).collect();
        // ggml's quantizers refuse NaN: R′ comes from a finite copy, R keeps it.
        let finite = values.clone();
        values[7] = f32::NAN;
        for name in ["Q4_K", "Q6_K", "Q8_0"] {
            let ty = GgmlType::from_name(name).unwrap();
            let (_, d) = crate::dequant::ggml::quantize_decoded(ty, &finite, cols, None).unwrap();
            let (m, s) = metrics_and_slice_sums(&values, &d);
            let m2 = metrics_against(&values, &d);
            assert_eq!(format!("{m:?}"), format!("{m2:?}"), "{name}");
            assert_eq!(s, slice_sums(&values, &d), "{name}");
        }
    }
}
