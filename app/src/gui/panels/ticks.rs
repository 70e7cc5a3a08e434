//! Axis ticks for value axes whose range can be anything from ±1e-6 to ±1e6:
//! round steps (1, 2, 5 × 10^k), several labelled ticks at every range, and
//! labels with just enough digits to tell neighbours apart. Pure functions,
//! plus the adapters egui_plot takes.

use egui_plot::{GridInput, GridMark};

/// egui_plot's `base_step_size` is this many points of the axis.
pub const GRID_SPACING_MIN_PX: f32 = 8.0;
/// Roughly one labelled tick per this many points.
const PX_PER_TICK: f64 = 110.0;

/// The round step (1, 2 or 5 × 10^k) nearest to `raw`, in log terms.
pub fn round_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 2f64.sqrt() {
        1.0
    } else if norm < 10f64.sqrt() {
        2.0
    } else if norm < 50f64.sqrt() {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The labelled step for `[lo, hi]` drawn over `width_px` points: at least
/// three ticks whatever the width, about one per [`PX_PER_TICK`] when wide.
pub fn major_step(lo: f64, hi: f64, width_px: f64) -> f64 {
    let span = (hi - lo).abs();
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let n = (width_px / PX_PER_TICK).clamp(5.0, 12.0);
    round_step(span / n)
}

/// Multiples of `step` inside `[lo, hi]`.
pub fn ticks_in(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    if !(step > 0.0 && lo.is_finite() && hi.is_finite()) || (hi - lo) / step > 10_000.0 {
        return Vec::new();
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A tick's text: as few digits as tell ticks `step` apart; scientific for
/// very small steps or very large values.
pub fn tick_label(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().max(step);
    if step < 1e-3 || mag >= 1e5 {
        let digits = ((mag / step).log10().ceil().max(0.0) as usize).min(6);
        return format!("{v:.digits$e}");
    }
    let decimals = (-step.log10() - 1e-9).ceil().max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// A single value (a clip line, a typed bound) with four significant digits.
pub fn value_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.3e}")
    }
}

/// The labelled ticks of `[lo, hi]` over `width_px` points, with their text.
pub fn labelled_ticks(lo: f64, hi: f64, width_px: f64) -> Vec<(f64, String)> {
    let step = major_step(lo, hi, width_px);
    ticks_in(lo, hi, step).into_iter().map(|v| (v, tick_label(v, step))).collect()
}

/// egui_plot grid spacer: labelled major ticks and unlabelled minor ones.
#[allow(clippy::needless_pass_by_value)] // egui_plot's spacer signature takes it by value
pub fn grid_spacer(input: GridInput) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    let per_px = input.base_step_size / f64::from(GRID_SPACING_MIN_PX);
    if per_px.is_nan() || per_px <= 0.0 {
        return Vec::new();
    }
    let major = major_step(lo, hi, (hi - lo) / per_px);
    let minor = major / 5.0;
    let mut marks: Vec<GridMark> =
        ticks_in(lo, hi, minor).into_iter().map(|value| GridMark { value, step_size: minor }).collect();
    for m in &mut marks {
        if ((m.value / major).round() * major - m.value).abs() < minor * 1e-3 {
            m.step_size = major;
        }
    }
    marks
}

/// egui_plot axis formatter: labels on major ticks only.
pub fn axis_label(mark: GridMark, _range: &std::ops::RangeInclusive<f64>) -> String {
    tick_label(mark.value, mark.step_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_from_1e_minus_6_to_1e6_gets_three_distinct_labels() {
        for exp in -6..=6 {
            for width in [300.0, 500.0, 800.0, 1600.0] {
                for (lo, hi) in [(-1.0, 1.0), (0.0, 1.0), (-0.77, 0.77), (0.145, 0.917), (-3.0, 0.2)] {
                    let s = 10f64.powi(exp);
                    let t = labelled_ticks(lo * s, hi * s, width);
                    assert!(t.len() >= 3, "{lo}e{exp}..{hi}e{exp} at {width}px: {t:?}");
                    let labels: std::collections::HashSet<_> = t.iter().map(|x| &x.1).collect();
                    assert_eq!(labels.len(), t.len(), "labels must differ: {t:?}");
                    assert!(t.iter().all(|(_, l)| l.len() <= 9), "short labels: {t:?}");
                }
            }
        }
    }

    #[test]
    fn labels_read_as_the_values() {
        for (lo, hi) in [(-0.77, 0.77), (-0.08, 0.08), (-1e-3, 1e-3), (-1e3, 1e3), (-2e-6, 2e-6)] {
            for (v, l) in labelled_ticks(lo, hi, 600.0) {
                let back: f64 = l.parse().unwrap();
                assert!((back - v).abs() <= (hi - lo) * 1e-9, "{l} for {v}");
            }
        }
        assert_eq!(tick_label(0.1 + 0.2 - 0.3, 0.1), "0");
        assert_eq!(tick_label(-0.25, 0.05), "-0.25");
    }

    #[test]
    fn single_values_keep_four_significant_digits() {
        assert_eq!(value_label(-2.068_189), "-2.068");
        assert_eq!(value_label(0.0779), "0.07790");
        assert_eq!(value_label(123.456), "123.5");
        assert_eq!(value_label(1.5e-6), "1.500e-6");
        assert_eq!(value_label(0.0), "0");
    }

    #[test]
    fn round_steps_are_1_2_5() {
        assert_eq!(round_step(0.013), 0.01);
        assert_eq!(round_step(0.018), 0.02);
        assert_eq!(round_step(0.04), 0.05);
        assert_eq!(round_step(8.0), 10.0);
    }
}
