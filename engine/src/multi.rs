//! One decoded tensor under many schemes at once: the sweep's inner loop.
//!
//! What the schemes have in common is computed once instead of once per scheme:
//! - the tensor's statistics (per-tensor ranges, two-level global scales);
//! - per group size, one statistics pass per slice of a row, shared by every
//!   scheme that cuts rows that way (min-max and MSE, INT4 and INT8), all of them
//!   run on the row while it sits in cache;
//! - a range that does not depend on the format (min-max, percentile, entropy,
//!   manual) per slice, shared by schemes that differ only in format or width;
//! - per-tensor schemes' error passes over the same cache-sized chunks.
//!
//! Only what a sweep cell shows is kept, no per-slice records. Each scheme's
//! metrics equal [`analyze`] under that scheme alone, bit for bit: the same
//! chunks, slice statistics, parameters and fold order (tested over every
//! calibration, mapping, granularity and format).

use rayon::prelude::*;

use crate::analyze::{Options, analyze, check_input, resolve_for, with_global_from};
use crate::calibrate::{slice_params, slice_range};
use crate::error::Result;
use crate::format::{NumberFormat, SliceParams, WithFormat, WorkDtype, dispatch_in};
use crate::metrics::{ErrorSums, Metrics, TensorStats, error_sums, error_sums_with_stats};
use crate::scheme::{Calibration, Granularity, Mapping, Scheme};
use crate::slicing::{Layout, PAR_CHUNK, layout, parallel_stats};

/// What a sweep cell needs of one scheme's analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct Totals {
    pub metrics: Metrics,
    /// Number of (S, Z) slices.
    pub slices: usize,
    pub fallback: Option<String>,
}

/// How one scheme runs on this tensor.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    /// One slice over the whole tensor.
    Tensor,
    /// Runs of each row, `group` long (per-channel on axis 0: the whole row).
    Rows { group: usize },
    /// Strided channels and 2-D blocks: [`analyze`] alone.
    Alone,
}

/// One scheme, checked and bound to this tensor.
struct Plan {
    scheme: Scheme,
    route: Route,
    fallback: Option<String>,
    /// The amax a two-level format's global scale derives from (the shared one,
    /// or the tensor's own), set once as `analyze` sets it.
    amax: Option<f32>,
}

/// Every `(scheme, shared global amax)` of `schemes` on `values` (shape `shape`,
/// computing in `work`), in order; a scheme that cannot apply is an error.
pub fn analyze_many(
    values: &[f32],
    shape: &[usize],
    work: WorkDtype,
    schemes: &[(Scheme, Option<f32>)],
) -> Vec<Result<Totals>> {
    let stats = parallel_stats(values);
    let (lo, hi) = stats.range();
    let own_amax = (-lo).max(hi).max(0.0);
    let plans: Vec<Result<Plan>> =
        schemes.iter().map(|&(s, shared)| plan(values, shape, work, s, shared.or(Some(own_amax)))).collect();
    let ok = |route: fn(&Route) -> bool| -> Vec<usize> {
        (0..plans.len()).filter(|&k| plans[k].as_ref().is_ok_and(|p| route(&p.route))).collect()
    };
    let tensor = ok(|r| *r == Route::Tensor);
    let rows = ok(|r| matches!(r, Route::Rows { .. }));
    let alone = ok(|r| *r == Route::Alone);
    let get = |k: usize| plans[k].as_ref().expect("filtered to Ok plans");

    let mut sums: Vec<Option<ErrorSums>> = vec![None; plans.len()];
    let tensor_plans: Vec<&Plan> = tensor.iter().map(|&k| get(k)).collect();
    for (k, s) in tensor.iter().zip(per_tensor(values, work, &stats, &tensor_plans)) {
        sums[*k] = Some(s);
    }
    let row_plans: Vec<&Plan> = rows.iter().map(|&k| get(k)).collect();
    let row_len = values.len() / shape.first().copied().unwrap_or(1).max(1);
    for (k, s) in rows.iter().zip(per_row(values, row_len.max(1), work, &row_plans)) {
        sums[*k] = Some(s);
    }
    let alone: Vec<(usize, Result<Totals>)> = alone
        .par_iter()
        .map(|&k| {
            let p = get(k);
            let opts = Options { work, global_amax: schemes[k].1, ..Options::default() };
            let r = analyze(values, shape, &p.scheme, &opts).map(|r| Totals {
                metrics: r.metrics,
                slices: r.params.len(),
                fallback: r.fallback,
            });
            (k, r)
        })
        .collect();

    let n_rows = values.len() / row_len.max(1);
    let mut out: Vec<Result<Totals>> = plans
        .into_iter()
        .zip(sums)
        .map(|(p, s)| {
            let p = p?;
            let slices = match p.route {
                Route::Rows { group } => n_rows * row_len.max(1).div_ceil(group.max(1)),
                _ => 1,
            };
            let metrics = s.map(|s| s.metrics()).unwrap_or_default();
            Ok(Totals { metrics, slices, fallback: p.fallback })
        })
        .collect();
    for (k, r) in alone {
        out[k] = r;
    }
    out
}

/// Checks `scheme` on this tensor as [`analyze`] does, and picks its route.
fn plan(values: &[f32], shape: &[usize], work: WorkDtype, scheme: Scheme, amax: Option<f32>) -> Result<Plan> {
    struct Check;
    impl WithFormat for Check {
        type Out = ();
        fn run<F: NumberFormat>(self, _f: F) {}
    }
    check_input(values, shape, &scheme)?;
    dispatch_in(scheme.format, work, Check)?;
    let (granularity, fallback) = resolve_for(shape, &scheme)?;
    let route = if granularity == Granularity::Tensor {
        Route::Tensor
    } else {
        match layout(shape, granularity, values.len()) {
            Layout::Rows { group, .. } => Route::Rows { group },
            Layout::Strided { .. } | Layout::Blocks { .. } => Route::Alone,
        }
    };
    Ok(Plan { scheme, route, fallback, amax })
}

/// A format-independent range: which calibration under which mapping.
type RangeKey = (Calibration, Mapping);

fn range_key(s: &Scheme) -> Option<RangeKey> {
    // MSE and HQQ search the format's own grid: nothing to share.
    (!matches!(s.calibration, Calibration::Mse | Calibration::Hqq)).then_some((s.calibration, s.mapping))
}

/// Distinct range keys of `plans`, and each plan's index into them.
fn range_keys(plans: &[&Plan]) -> (Vec<RangeKey>, Vec<Option<usize>>) {
    let mut keys: Vec<RangeKey> = Vec::new();
    let of = plans
        .iter()
        .map(|p| {
            let key = range_key(&p.scheme)?;
            Some(keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                keys.len() - 1
            }))
        })
        .collect();
    (keys, of)
}

/// Per-tensor schemes: the tensor's statistics shared, each range computed once,
/// then every scheme's error pass over each `PAR_CHUNK` chunk while it is in cache.
fn per_tensor(values: &[f32], work: WorkDtype, stats: &TensorStats, plans: &[&Plan]) -> Vec<ErrorSums> {
    if plans.is_empty() {
        return Vec::new();
    }
    let (keys, key_of) = range_keys(plans);
    let ranges: Vec<(f32, f32)> = keys
        .par_iter()
        .map(|(c, m)| slice_range(values, stats, *m, c).unwrap_or_else(|| stats.range()))
        .collect();
    let params: Vec<SliceParams> = plans
        .par_iter()
        .zip(&key_of)
        .map(|(p, key)| {
            let range = key.map(|i| ranges[i]);
            bound(p, work, Calibrate { xs: values, stats, range, scheme: &p.scheme })
        })
        .collect();
    let parts: Vec<Vec<ErrorSums>> = values
        .par_chunks(PAR_CHUNK)
        .map(|c| {
            plans.iter().zip(&params).map(|(p, sp)| bound(p, work, ChunkSums { xs: c, p: sp })).collect()
        })
        .collect();
    (0..plans.len())
        .map(|k| {
            // As `analyze`: one slice below a chunk, else the chunks folded in order.
            let s = if values.len() <= PAR_CHUNK {
                parts.first().map(|p| p[k]).unwrap_or_default()
            } else {
                parts.iter().fold(ErrorSums::default(), |a, p| a.merge(&p[k]))
            };
            ErrorSums::default().merge(&s.with_signal(stats.sum_sq))
        })
        .collect()
}

/// The schemes that cut rows into the same group size: one min/max pass per
/// slice serves them all (no calibration reads more of the statistics), and the
/// first one's error pass adds ΣR, ΣR² for the rest.
struct Class {
    group: usize,
    members: Vec<usize>,
    keys: Vec<RangeKey>,
    key_of: Vec<Option<usize>>,
}

fn classes(plans: &[&Plan]) -> Vec<Class> {
    let mut groups: Vec<usize> = plans
        .iter()
        .filter_map(|p| match p.route {
            Route::Rows { group } => Some(group),
            _ => None,
        })
        .collect();
    groups.dedup();
    groups.sort_unstable();
    groups.dedup();
    groups
        .into_iter()
        .map(|group| {
            let members: Vec<usize> =
                (0..plans.len()).filter(|&k| plans[k].route == Route::Rows { group }).collect();
            let mine: Vec<&Plan> = members.iter().map(|&k| plans[k]).collect();
            let (keys, key_of) = range_keys(&mine);
            Class { group, members, keys, key_of }
        })
        .collect()
}

/// Per-thread buffers of the row pass.
#[derive(Default)]
struct Scratch {
    stats: Vec<TensorStats>,
    ranges: Vec<Vec<(f32, f32)>>,
}

/// Row-local schemes: each row once, every class's slice statistics and shared
/// ranges, then every scheme's slices; per-slice sums folded in slice order.
fn per_row(values: &[f32], row_len: usize, work: WorkDtype, plans: &[&Plan]) -> Vec<ErrorSums> {
    if plans.is_empty() {
        return Vec::new();
    }
    let classes = classes(plans);
    let per_row = |k: usize| match plans[k].route {
        Route::Rows { group } => row_len.div_ceil(group.max(1)),
        _ => 0,
    };
    let mut offset = vec![0usize; plans.len() + 1];
    for k in 0..plans.len() {
        offset[k + 1] = offset[k] + per_row(k);
    }
    let slots = offset[plans.len()];
    let rows = values.len() / row_len;
    let mut out = vec![ErrorSums::default(); rows * slots];
    values.par_chunks(row_len).zip(out.par_chunks_mut(slots.max(1))).for_each_init(
        Scratch::default,
        |scr, (row, dst)| {
            for c in &classes {
                row_class(row, c, work, plans, &offset, scr, dst);
            }
        },
    );
    (0..plans.len())
        .into_par_iter()
        .map(|k| {
            (0..rows).fold(ErrorSums::default(), |a, r| {
                out[r * slots + offset[k]..r * slots + offset[k + 1]].iter().fold(a, ErrorSums::merge)
            })
        })
        .collect()
}

/// One row under one class: shared statistics and ranges, then each member.
fn row_class(
    row: &[f32],
    c: &Class,
    work: WorkDtype,
    plans: &[&Plan],
    offset: &[usize],
    scr: &mut Scratch,
    dst: &mut [ErrorSums],
) {
    let group = c.group.max(1);
    scr.stats.clear();
    scr.stats.extend(row.chunks(group).map(TensorStats::range_of));
    scr.ranges.resize_with(c.keys.len(), Vec::new);
    for ((cal, mapping), r) in c.keys.iter().zip(&mut scr.ranges) {
        r.clear();
        r.extend(
            row.chunks(group)
                .zip(&scr.stats)
                .map(|(xs, st)| slice_range(xs, st, *mapping, cal).unwrap_or_else(|| st.range())),
        );
    }
    for (i, (&k, key)) in c.members.iter().zip(&c.key_of).enumerate() {
        let job = RowSums {
            row,
            group,
            stats: &mut scr.stats,
            ranges: key.map(|r| scr.ranges[r].as_slice()),
            // The first scheme's error pass adds ΣR, ΣR² to the shared statistics.
            fill: i == 0,
            scheme: &plans[k].scheme,
            out: &mut dst[offset[k]..offset[k + 1]],
        };
        bound(plans[k], work, job);
    }
}

/// An operation generic over the concrete format.
trait FormatOp {
    type Out;
    fn run<F: NumberFormat>(self, fmt: F) -> Self::Out;
}

/// Runs `op` with `plan`'s format, its global scale set as `analyze` sets it.
fn bound<O: FormatOp>(plan: &Plan, work: WorkDtype, op: O) -> O::Out {
    struct Bind<'a, O>(O, &'a Plan);
    impl<O: FormatOp> WithFormat for Bind<'_, O> {
        type Out = O::Out;
        fn run<F: NumberFormat>(self, f: F) -> O::Out {
            let fmt = with_global_from(f, self.1.amax, TensorStats::default);
            self.0.run(fmt)
        }
    }
    dispatch_in(plan.scheme.format, work, Bind(op, plan)).expect("checked by plan()")
}

/// A per-tensor scheme's parameters.
struct Calibrate<'a> {
    xs: &'a [f32],
    stats: &'a TensorStats,
    range: Option<(f32, f32)>,
    scheme: &'a Scheme,
}

impl FormatOp for Calibrate<'_> {
    type Out = SliceParams;
    fn run<F: NumberFormat>(self, fmt: F) -> SliceParams {
        let s = self.scheme;
        match self.range {
            Some((lo, hi)) => fmt.params(lo, hi, s.mapping),
            None => slice_params(fmt, self.xs, self.stats, s.mapping, &s.calibration),
        }
    }
}

/// A per-tensor scheme's error sums over one chunk.
struct ChunkSums<'a> {
    xs: &'a [f32],
    p: &'a SliceParams,
}

impl FormatOp for ChunkSums<'_> {
    type Out = ErrorSums;
    fn run<F: NumberFormat>(self, fmt: F) -> ErrorSums {
        error_sums::<F, false>(fmt, self.xs, self.p, &mut [])
    }
}

/// A row-local scheme's slices of one row: parameters, then error sums.
struct RowSums<'a> {
    row: &'a [f32],
    group: usize,
    stats: &'a mut [TensorStats],
    ranges: Option<&'a [(f32, f32)]>,
    fill: bool,
    scheme: &'a Scheme,
    out: &'a mut [ErrorSums],
}

impl FormatOp for RowSums<'_> {
    type Out = ();
    fn run<F: NumberFormat>(self, fmt: F) {
        let s = self.scheme;
        for (j, xs) in self.row.chunks(self.group).enumerate() {
            let st = &mut self.stats[j];
            let p = match self.ranges {
                Some(r) => fmt.params(r[j].0, r[j].1, s.mapping),
                None => slice_params(fmt, xs, st, s.mapping, &s.calibration),
            };
            self.out[j] = if self.fill {
                error_sums_with_stats::<F, false>(fmt, xs, &p, &mut [], st)
            } else {
                error_sums::<F, false>(fmt, xs, &p, &mut []).with_signal(st.sum_sq)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weight-like values with a few outliers, a NaN and an infinity.
    fn values(n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n)
            .map(|i| {
                let u = ((i * 7919 + 13) % 1009) as f32 / 1009.0 - 0.45;
                let w = u * (1.0 + (i % 7) as f32 * 0.3);
                if i % 997 == 0 { w * 25.0 } else { w }
            })
            .collect();
        v[n / 3] = f32::NAN;
        v[n / 2] = f32::INFINITY;
        v
    }

    fn schemes() -> Vec<Scheme> {
        let mut s: Vec<Scheme> = [
            "int8:tensor:minmax",
            "int8:tensor:mse",
            "int8:tensor:p99.9",
            "int4:tensor:p99.9",
            "int8:tensor:entropy:asym",
            "e4m3:tensor:entropy:asym",
            "e5m2:tensor:minmax",
            "int8:tensor:ratio0.8",
            "int8:tensor:range-0.25,0.5",
            "int8:channel:minmax",
            "int8:channel:mse",
            "int4:channel:minmax:asym",
            "int4:channel:hqq:asym",
            "int8:channel:p99",
            "e4m3:channel:p99",
            "int8:channel:entropy",
            "int8:group128:minmax",
            "int8:group128:mse",
            "int4:group128:minmax",
            "int4:group64:hqq:asym",
            "int4:group64:p99.9:asym",
            "int8:group64:p99.9:asym",
            "int8:group128:entropy:asym",
            "int8:group32:ratio0.9",
            "e4m3:channel1:minmax",
            "e4m3:block128:minmax",
            "nvfp4",
            "mxfp4",
            "mxfp8",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        // A manual range per channel is refused, as `analyze` refuses it.
        s.push("int8:channel:range-0.1,0.1".parse().unwrap());
        s
    }

    #[test]
    fn every_cell_equals_the_scheme_analysed_alone_bit_for_bit() {
        let schemes = schemes();
        for (shape, work) in [
            (vec![96, 300], WorkDtype::F32),
            (vec![96, 300], WorkDtype::BF16),
            // Longer than one chunk: per-tensor sums over several chunks.
            (vec![130, 1100], WorkDtype::F32),
            (vec![6, 5, 40], WorkDtype::F16),
            (vec![700], WorkDtype::F32),
        ] {
            let n: usize = shape.iter().product();
            let v = values(n);
            let set: Vec<(Scheme, Option<f32>)> =
                schemes.iter().enumerate().map(|(i, s)| (*s, (i == 26).then_some(40.0))).collect();
            let many = analyze_many(&v, &shape, work, &set);
            assert_eq!(many.len(), set.len());
            for ((s, amax), got) in set.iter().zip(&many) {
                let opts = Options { work, global_amax: *amax, ..Options::default() };
                match (analyze(&v, &shape, s, &opts), got) {
                    (Ok(a), Ok(t)) => {
                        assert_eq!(t.metrics, a.metrics, "{s} {shape:?} {work:?}");
                        assert_eq!(t.slices, a.params.len(), "{s} {shape:?}");
                        assert_eq!(t.fallback, a.fallback, "{s} {shape:?}");
                    }
                    (Err(a), Err(t)) => assert_eq!(a.to_string(), t.to_string(), "{s}"),
                    (a, t) => panic!("{s} {shape:?}: alone {:?}, shared {:?}", a.is_ok(), t.is_ok()),
                }
            }
            assert!(many.iter().filter(|r| r.is_ok()).count() >= 20, "{shape:?}");
        }
    }

    #[test]
    fn a_wrong_shape_or_width_is_an_error_per_scheme() {
        let v = values(100);
        let set = [(Scheme::default(), None), ("int4:channel".parse().unwrap(), None)];
        let r = analyze_many(&v, &[10, 11], WorkDtype::F32, &set);
        assert!(r.iter().all(|c| c.as_ref().is_err_and(|e| e.to_string().contains("110 elements"))));
        let ok = analyze_many(&v, &[10, 10], WorkDtype::F32, &set);
        assert!(ok.iter().all(Result::is_ok));
        assert_eq!(ok[0].as_ref().unwrap().slices, 10);
    }
}
