//! R against a decoded R′, the sums behind `analyze::against` (a layer someone
//! else quantized, its stored codes and scales decoded; llama.cpp's types,
//! quantized by ggml's own search, then decoded): the same sums as
//! [`crate::analyze`], per-slice error sums in f64, row by row.

use rayon::prelude::*;

use crate::dequant::{Decoded, SliceMap};
use crate::format::SliceParams;
use crate::ggml::GgmlType;
use crate::metrics::{ErrorSums, Metrics, TensorStats, pair_sums};

/// What [`measure`] finds: the layer's metrics, and per slice (slice order) its
/// metrics and R's finite range; R's statistics.
pub(crate) struct Measured {
    pub metrics: Metrics,
    pub slice_metrics: Vec<Metrics>,
    pub ranges: Vec<(f32, f32)>,
    pub stats: TensorStats,
}

/// Where a row of R′ comes from: a decoded tensor, or llama.cpp's blocks,
/// decoded row by row into a buffer of the thread's own (a whole R′ is never
/// written out when nothing keeps it).
#[derive(Clone, Copy)]
pub(crate) enum Prime<'a> {
    Values(&'a [f32]),
    Blocks(GgmlType, &'a [u8]),
}

impl<'a> Prime<'a> {
    /// Row `r` (of `cols` values).
    pub(crate) fn row<'b>(self, r: usize, cols: usize, buf: &'b mut Vec<f32>) -> &'b [f32]
    where
        'a: 'b,
    {
        match self {
            Prime::Values(v) => &v[r * cols..(r + 1) * cols],
            Prime::Blocks(ty, bytes) => {
                let size = cols / ty.block as usize * ty.block_bytes as usize;
                if !crate::ggml::decode_blocks(ty, &bytes[r * size..(r + 1) * size], buf) {
                    buf.clear();
                    buf.resize(cols, f32::NAN);
                }
                buf
            }
        }
    }
}

/// The whole layer's metrics (the numbers `quantscope diff` prints), summed
/// as [`measure`] sums them.
pub fn metrics_against(values: &[f32], d: &Decoded) -> Metrics {
    match groups_of(values, d) {
        Some(g) => by_groups(values, d.cols, g, &d.params, Prime::Values(&d.values)).metrics,
        None => merged(&slice_sums(values, d)),
    }
}

fn merged(slices: &[ErrorSums]) -> Metrics {
    slices.iter().fold(ErrorSums::default(), ErrorSums::merge).metrics()
}

/// R against the decoded R′. Groups along whole rows (llama.cpp's sub-blocks,
/// most group schemes) take one pass, rows in parallel; other maps take
/// [`slice_sums`] (the same per-slice sums) and two passes more.
pub(crate) fn measure(values: &[f32], d: &Decoded) -> Measured {
    if let Some(g) = groups_of(values, d) {
        return by_groups(values, d.cols, g, &d.params, Prime::Values(&d.values));
    }
    let slices = slice_sums(values, d);
    Measured {
        metrics: merged(&slices),
        slice_metrics: slices.par_iter().map(ErrorSums::metrics).collect(),
        ranges: slice_value_ranges(values, d),
        stats: TensorStats::of(values),
    }
}

/// R against llama.cpp's blocks of `ty` (rows of `cols`, whole blocks), each
/// sub-block one slice with `params`, R′'s rows from `prime` (the blocks
/// themselves, or their decoded tensor): [`measure`] without a [`Decoded`].
pub(crate) fn measure_blocks(
    values: &[f32],
    cols: usize,
    ty: GgmlType,
    params: &[SliceParams],
    prime: Prime,
) -> Measured {
    by_groups(values, cols, ty.sub_block(), params, prime)
}

/// The group size when `d`'s slices are runs of it tiling every row in order.
fn groups_of(values: &[f32], d: &Decoded) -> Option<usize> {
    let cols = d.cols.max(1);
    let SliceMap::Groups(g) = d.map else { return None };
    let per_row = cols.checked_div(g).filter(|&n| n * g == cols)?;
    (values.len().is_multiple_of(cols) && d.params.len() == values.len() / cols * per_row).then_some(g)
}

/// Slices that are runs of `g` columns tiling rows of `cols`, rows in
/// parallel: each slice's metrics and range written in place, and its sums
/// and statistics merged into its row's, in slice order; the rows' then merge
/// in row order (the same bits on every run and thread count).
fn by_groups(values: &[f32], cols: usize, g: usize, params: &[SliceParams], prime: Prime) -> Measured {
    let per_row = cols / g;
    let mut slice_metrics = vec![Metrics::default(); params.len()];
    let mut ranges = vec![(0.0, 0.0); params.len()];
    let rows: Vec<(ErrorSums, TensorStats)> = slice_metrics
        .par_chunks_mut(per_row)
        .zip(ranges.par_chunks_mut(per_row))
        .zip(values.par_chunks(cols).zip(params.par_chunks(per_row)))
        .enumerate()
        .map_init(Vec::new, |buf, (r, ((m, rg), (x, p)))| {
            let y = prime.row(r, cols, buf);
            let mut row = (ErrorSums::default(), TensorStats::default());
            for (k, ((a, b), p)) in x.chunks(g).zip(y.chunks(g)).zip(p).enumerate() {
                let mut stats = TensorStats::range_of(a);
                let s = pair_sums(a, b, p.lo, p.hi, &mut stats);
                (m[k], rg[k]) = (s.metrics(), stats.range());
                row = (row.0.merge(&s), row.1.merge(&stats));
            }
            row
        })
        .collect();
    let (sums, stats) = rows
        .iter()
        .fold((ErrorSums::default(), TensorStats::default()), |(a, b), (s, t)| (a.merge(s), b.merge(t)));
    Measured { metrics: sums.metrics(), slice_metrics, ranges, stats }
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
                let s = pair_sums(&x[c..end], &y[c..end], p.lo, p.hi, &mut TensorStats::default());
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

    /// The one pass over groups gives the generic per-slice sums bit for bit
    /// (so `diff`'s numbers equal the app's), the same ranges, and statistics
    /// that differ from one pass over the layer only in summation order.
    #[test]
    fn group_pass_equals_the_generic_sums() {
        let cols = 256;
        let mut values: Vec<f32> = (0..3 * cols).map(|i| ((i * 53 % 97) as f32 - 48.0) * 1e-2).collect();
        // ggml's quantizers refuse NaN: R′ comes from a finite copy, R keeps it.
        let finite = values.clone();
        values[7] = f32::NAN;
        for name in ["Q4_K", "Q6_K", "Q8_0"] {
            let ty = GgmlType::from_name(name).unwrap();
            let (_, d) = crate::dequant::ggml::quantize_decoded(ty, &finite, cols, None).unwrap();
            let m = measure(&values, &d);
            let generic: Vec<Metrics> = slice_sums(&values, &d).iter().map(ErrorSums::metrics).collect();
            assert_eq!(format!("{:?}", m.slice_metrics), format!("{generic:?}"), "{name}");
            assert_eq!(m.ranges, slice_value_ranges(&values, &d), "{name}");
            assert_eq!(format!("{:?}", m.metrics), format!("{:?}", metrics_against(&values, &d)), "{name}");
            let t = TensorStats::of(&values);
            assert_eq!(
                (m.stats.min, m.stats.max, m.stats.finite, m.stats.nonfinite),
                (t.min, t.max, t.finite, t.nonfinite)
            );
            assert!((m.stats.sum - t.sum).abs() <= 1e-9 * t.sum_sq.sqrt(), "{name}");
            assert!((m.stats.sum_sq / t.sum_sq - 1.0).abs() < 1e-12, "{name}");
        }
    }

    /// A non-finite R′ under a finite R: that pair leaves the error sums and
    /// ΣR², while R's statistics still hold R (as the scalar sums do).
    #[test]
    fn pair_sums_count_a_lost_value_apart() {
        let xs: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.1).collect();
        let mut ys: Vec<f32> = xs.iter().map(|x| (x * 4.0).round() / 4.0).collect();
        ys[3] = f32::NAN;
        ys[33] = f32::INFINITY;
        let mut stats = TensorStats::default();
        let s = pair_sums(&xs, &ys, -1.0, 1.0, &mut stats);
        let mut reference = ErrorSums::default();
        for (&x, &y) in xs.iter().zip(&ys) {
            reference.add_pair(x, y, || (-1.0, 1.0));
        }
        assert_eq!((s.count, s.nonfinite, s.clipped), (35, 2, reference.clipped));
        for (a, b) in
            [(s.sum_e2, reference.sum_e2), (s.sum_r2, reference.sum_r2), (s.sum_re, reference.sum_re)]
        {
            assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} vs {b}");
        }
        let t = TensorStats::of(&xs);
        assert_eq!((stats.sum, stats.sum_sq), (t.sum, t.sum_sq));
    }
}
