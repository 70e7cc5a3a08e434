//! Degenerate tensors under every scheme: all-NaN, all-zero, constant, one
//! element, empty, 0-D, ±f32::MAX, ±Inf, and a `[1, 100_000_000]` row. Each must
//! give defined metrics (no NaN anywhere; a lossless result is SQNR = +∞, shown
//! as ∞ / `null`), never a panic.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use quantscope_engine::metrics::Metrics;
use quantscope_engine::{
    Calibration, FormatKind, Granularity, ManualRange, Mapping, Options, Scheme, analyze,
};

fn every_scheme() -> Vec<Scheme> {
    let mut out = Vec::new();
    for format in [FormatKind::INT8, FormatKind::Int(4), FormatKind::E4M3, FormatKind::E5M2] {
        for mapping in [Mapping::Symmetric, Mapping::Asymmetric] {
            for granularity in
                [Granularity::Tensor, Granularity::Channel { axis: 0 }, Granularity::Group { size: 32 }]
            {
                for calibration in [
                    Calibration::MinMax,
                    Calibration::Percentile { p: 99.9 },
                    Calibration::Mse,
                    Calibration::Entropy,
                    Calibration::Manual(ManualRange::Ratio { r: 0.5 }),
                ] {
                    out.push(Scheme { format, mapping, granularity, calibration });
                }
            }
        }
    }
    out
}

/// Every metric is a number in its range; SQNR is +∞ or finite, never NaN.
fn check_defined(m: &Metrics, what: &str) {
    for (name, v) in [
        ("mse", m.mse),
        ("rmse", m.rmse),
        ("max_abs_err", m.max_abs_err),
        ("cosine", m.cosine),
        ("clipped_fraction", m.clipped_fraction),
        ("clip_error", m.clip_error),
        ("round_error", m.round_error),
    ] {
        assert!(v.is_finite(), "{what}: {name} = {v}");
    }
    assert!(!m.sqnr_db.is_nan() && m.sqnr_db != f64::NEG_INFINITY, "{what}: sqnr = {}", m.sqnr_db);
    assert!((-1.0..=1.0).contains(&m.cosine), "{what}: cosine {}", m.cosine);
    assert!((0.0..=1.0).contains(&m.clipped_fraction), "{what}");
    // The report's JSON turns +∞ into null, never NaN.
    let json = serde_json::to_value(m).unwrap();
    assert!(json["sqnr_db"].is_null() == m.sqnr_db.is_infinite(), "{what}: {json}");
}

fn run_all(values: &[f32], shape: &[usize], case: &str) -> Vec<(Scheme, Metrics)> {
    every_scheme()
        .into_iter()
        .map(|s| {
            let r = analyze(
                values,
                shape,
                &s,
                &Options { weight_bins: 64, error_bins: 16, keep_dequantized: true, ..Options::default() },
            )
            .unwrap_or_else(|e| panic!("{case} under {s}: {e}"));
            check_defined(&r.metrics, &format!("{case} under {s}"));
            for (i, m) in r.slice_metrics.iter().enumerate() {
                check_defined(m, &format!("{case} under {s}, slice {i}"));
            }
            assert!(r.dequantized.unwrap().len() == values.len());
            (s, r.metrics)
        })
        .collect()
}

#[test]
fn all_nan_counts_every_element_as_nonfinite() {
    for (s, m) in run_all(&[f32::NAN; 128], &[4, 32], "all-NaN") {
        assert_eq!((m.count, m.nonfinite), (0, 128), "{s}");
        assert_eq!(m.mse, 0.0);
        assert_eq!(m.sqnr_db, f64::INFINITY, "{s}: nothing finite, nothing lost");
    }
}

#[test]
fn all_zero_is_lossless() {
    for (s, m) in run_all(&[0.0; 128], &[4, 32], "all-zero") {
        assert_eq!((m.mse, m.max_abs_err, m.cosine), (0.0, 0.0, 1.0), "{s}");
        assert_eq!(m.sqnr_db, f64::INFINITY, "{s}");
    }
}

#[test]
fn a_constant_tensor_is_defined_and_nearly_exact() {
    for (s, m) in run_all(&[0.37; 128], &[4, 32], "constant") {
        if matches!(s.calibration, Calibration::Manual(_)) {
            continue; // a ratio of 0.5 clips half the value away on purpose
        }
        assert!(m.sqnr_db > 15.0, "{s}: {}", m.sqnr_db);
        assert!(m.cosine > 0.999, "{s}");
    }
    // Negative constants and asymmetric mapping: 0 is still exactly representable.
    run_all(&[-2.5; 64], &[2, 32], "negative constant");
}

#[test]
fn one_element_empty_and_zero_d() {
    for (s, m) in run_all(&[0.7], &[1, 1], "[1, 1]") {
        assert_eq!(m.count, 1, "{s}");
    }
    for (s, m) in run_all(&[-0.7], &[], "0-D") {
        assert_eq!(m.count, 1, "{s}");
    }
    for shape in [vec![0, 64], vec![64, 0], vec![0]] {
        for (s, m) in run_all(&[], &shape, &format!("empty {shape:?}")) {
            assert_eq!((m.count, m.nonfinite, m.mse), (0, 0, 0.0), "{s}");
            assert_eq!(m.sqnr_db, f64::INFINITY);
        }
    }
}

#[test]
fn extreme_finite_values_and_infinities() {
    let mut v = vec![f32::MAX, -f32::MAX, 0.0, 1.0, -1.0, f32::MIN_POSITIVE, 1e-45];
    v.resize(64, 0.5);
    for (s, m) in run_all(&v, &[2, 32], "±f32::MAX") {
        assert_eq!(m.count, 64, "{s}");
    }
    let mut w = vec![f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    w.resize(64, 0.25);
    for (s, m) in run_all(&w, &[2, 32], "±Inf") {
        assert_eq!((m.count, m.nonfinite), (61, 3), "{s}");
    }
}

#[test]
fn a_hundred_million_element_row() {
    let n = 100_000_000;
    let v: Vec<f32> = (0..n).map(|i| ((i % 2001) as f32 - 1000.0) * 1e-3).collect();
    for s in ["int8:channel:minmax", "int8:group128:minmax:asym", "e4m3:tensor:mse", "int4:channel:entropy"] {
        let scheme: Scheme = s.parse().unwrap();
        let r = analyze(&v, &[1, n], &scheme, &Options::default()).unwrap();
        check_defined(&r.metrics, s);
        assert_eq!(r.metrics.count, n as u64);
        let slices = if s.contains("group128") { n.div_ceil(128) } else { 1 };
        assert_eq!(r.params.len(), slices, "{s}");
    }
}
