//! Property tests (proptest) of the numerics that every view relies on.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use proptest::prelude::*;
use quantscope_engine::{
    Calibration, FormatKind, Fp8Format, Granularity, IntFormat, Mapping, NumberFormat, Options, Scheme,
    analyze,
};

fn tensor() -> impl Strategy<Value = Vec<f32>> {
    (1usize..5, prop::collection::vec(-100.0f32..100.0, 64..512)).prop_map(|(scale, mut v)| {
        let n = v.len() / 8 * 8;
        v.truncate(n);
        for x in &mut v {
            *x /= scale as f32 * 10.0;
        }
        v
    })
}

fn mapping() -> impl Strategy<Value = Mapping> {
    prop_oneof![Just(Mapping::Symmetric), Just(Mapping::Asymmetric)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Inside the grid's span, INT rounding error is at most S/2.
    #[test]
    fn int_error_within_half_a_step(lo in -10.0f32..0.0, hi in 0.0f32..10.0, bits in 2u8..=8,
                                    m in mapping(), t in 0.0f32..1.0) {
        let f = IntFormat::new(bits).unwrap();
        let p = f.params(lo, hi, m);
        let (glo, ghi) = (p.scale * (f.qmin() - p.zero_point as f32), p.scale * (f.qmax() - p.zero_point as f32));
        let x = glo + t * (ghi - glo);
        let err = (x - f.fake_quant(x, &p)).abs();
        prop_assert!(err <= p.scale / 2.0 * (1.0 + 1e-5) + f32::EPSILON * x.abs(), "x {x} err {err} S {}", p.scale);
    }

    /// Symmetric mapping represents 0 exactly, in every format.
    #[test]
    fn symmetric_keeps_zero_exact(lo in -1e4f32..0.0, hi in 0.0f32..1e4, bits in 2u8..=8) {
        let i = IntFormat::new(bits).unwrap();
        prop_assert_eq!(i.fake_quant(0.0, &i.params(lo, hi, Mapping::Symmetric)), 0.0);
        for f in [Fp8Format::E4M3, Fp8Format::E5M2] {
            prop_assert_eq!(f.fake_quant(0.0, &f.params(lo, hi, Mapping::Symmetric)), 0.0);
        }
    }

    /// MSE calibration is never worse than min-max, per tensor, channel and group.
    #[test]
    fn mse_calibration_never_worse_than_minmax(v in tensor(), m in mapping(),
                                               fmt in prop_oneof![Just(FormatKind::INT8), Just(FormatKind::Int(4)), Just(FormatKind::E4M3)],
                                               g in prop_oneof![Just(Granularity::Tensor), Just(Granularity::Channel { axis: 0 }), Just(Granularity::Group { size: 16 })]) {
        let shape = [8, v.len() / 8];
        let run = |c| analyze(&v, &shape, &Scheme { format: fmt, mapping: m, granularity: g, calibration: c }, &Options::default()).unwrap();
        let (mse, minmax) = (run(Calibration::Mse), run(Calibration::MinMax));
        prop_assert!(mse.metrics.mse <= minmax.metrics.mse, "{} > {}", mse.metrics.mse, minmax.metrics.mse);
        for (a, b) in mse.slice_metrics.iter().zip(&minmax.slice_metrics) {
            prop_assert!(a.mse <= b.mse);
        }
    }

    /// The reported SQNR is 10·log10(ΣR² / Σ(R − R′)²) of the dequantized tensor.
    #[test]
    fn sqnr_equals_its_definition(v in tensor(), m in mapping(),
                                  fmt in prop_oneof![Just(FormatKind::INT8), Just(FormatKind::E5M2)]) {
        let s = Scheme { format: fmt, mapping: m, granularity: Granularity::Tensor, calibration: Calibration::MinMax };
        let r = analyze(&v, &[v.len()], &s, &Options { keep_dequantized: true, ..Options::default() }).unwrap();
        let deq = r.dequantized.unwrap();
        let signal: f64 = v.iter().map(|&x| f64::from(x).powi(2)).sum();
        let noise: f64 = v.iter().zip(&deq).map(|(&x, &q)| (f64::from(x) - f64::from(q)).powi(2)).sum();
        if noise == 0.0 {
            prop_assert_eq!(r.metrics.sqnr_db, f64::INFINITY);
        } else {
            let want = 10.0 * (signal / noise).log10();
            prop_assert!((r.metrics.sqnr_db - want).abs() < 1e-9 * want.abs().max(1.0), "{} vs {want}", r.metrics.sqnr_db);
        }
        let mse = noise / v.len() as f64;
        prop_assert!((r.metrics.mse - mse).abs() <= 1e-12 * mse.max(1e-30));
    }
}
