//! What a plan looks like to a reader (the GUI's Plan view, reports): user
//! pins, the uniform plans to compare against, why each layer got its option
//! (its neighbours one step up and down), bytes by scheme, and the units the
//! budget is shown in. Numbers only; the words are the caller's.

use super::{LayerOption, Objective, Plan, Problem};
use crate::rank::relative_cost;
use crate::sweep::Sweep;

/// A user's constraint on one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pin {
    /// Only this sweep column.
    Scheme(usize),
    /// Kept as stored (excluded from quantization).
    Keep,
}

/// A move from a layer's chosen option to another one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Move {
    /// Index into the layer's options.
    pub option: usize,
    /// Bytes added (negative: saved).
    pub bytes: i64,
    /// SQNR gained in dB (negative: lost; +∞ towards a lossless option).
    pub sqnr_db: f64,
}

/// Why a layer holds its option: the best-rate move up (more bytes, less
/// error) and down (fewer bytes, more error) that the plan did not take.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Why {
    pub up: Option<Move>,
    pub down: Option<Move>,
}

impl Problem {
    /// Restricts `layer` to what `pin` allows. A pin to a scheme the layer
    /// cannot take leaves it with no option, so no plan exists (the caller says so).
    pub fn pin(&mut self, layer: usize, pin: Pin) {
        if let Some(opts) = self.layers.get_mut(layer) {
            let keep = |o: &LayerOption| match pin {
                Pin::Scheme(k) => o.scheme == Some(k),
                Pin::Keep => o.scheme.is_none(),
            };
            opts.retain(keep);
        }
    }

    /// Every layer under sweep column `col` (kept as stored where that scheme
    /// is no option for it): the uniform plan to compare against.
    pub fn uniform(&self, col: usize, objective: Objective) -> Plan {
        let choice: Vec<usize> = self
            .layers
            .iter()
            .map(|o| {
                o.iter()
                    .position(|x| x.scheme == Some(col))
                    .or_else(|| o.iter().position(|x| x.scheme.is_none()))
                    .unwrap_or(0)
            })
            .collect();
        let (total_bytes, objective_value) = self.evaluate(&choice, objective);
        Plan { choice, total_bytes, objective_value }
    }

    /// Sweep column `col` as a point (total bytes, `relative` value): the
    /// uniform plan where some layer can take its scheme; otherwise (a column
    /// that names no scheme, as a compared checkpoint's published one) the
    /// cells as measured, a layer without a cell counted as kept. `s` is the
    /// sweep this problem was built from (rows in the same order).
    pub fn column_point(&self, s: &Sweep, col: usize) -> (u64, f64) {
        if self.layers.iter().flatten().any(|o| o.scheme == Some(col)) {
            let u = self.uniform(col, Objective::Relative);
            return (u.total_bytes, u.objective_value);
        }
        s.rows.iter().fold((0, 0.0), |(bytes, cost), row| match row.cells.get(col) {
            Some(Ok(c)) => (bytes + c.stored_bytes, cost + relative_cost(row.params, c.metrics.sqnr_db)),
            _ => (bytes + row.source_bytes, cost),
        })
    }

    /// The total bytes and objective value of one option per layer.
    pub fn evaluate(&self, choice: &[usize], objective: Objective) -> (u64, f64) {
        let picked = self.layers.iter().zip(choice).map(|(o, &c)| &o[c]);
        let bytes = picked.clone().map(|o| o.bytes).sum();
        let value = match objective {
            Objective::Relative | Objective::Output => picked.map(|o| o.cost).sum(),
            Objective::Worst => picked.map(|o| o.sqnr_db).fold(f64::INFINITY, f64::min),
        };
        (bytes, value)
    }

    /// The moves `layer` did not make from option `chosen`: up, the option
    /// saving the most error per added byte; down, the one losing the least
    /// error per saved byte.
    pub fn why(&self, layer: usize, chosen: usize) -> Why {
        let opts = &self.layers[layer];
        let at = &opts[chosen];
        let mv = |k: usize| Move {
            option: k,
            bytes: opts[k].bytes as i64 - at.bytes as i64,
            sqnr_db: if opts[k].sqnr_db == at.sqnr_db { 0.0 } else { opts[k].sqnr_db - at.sqnr_db },
        };
        let rate = |k: usize| (at.cost - opts[k].cost) / (opts[k].bytes as f64 - at.bytes as f64);
        let best = |up: bool| {
            (0..opts.len())
                .filter(|&k| if up { opts[k].bytes > at.bytes } else { opts[k].bytes < at.bytes })
                .filter(|&k| if up { opts[k].cost < at.cost } else { opts[k].cost >= at.cost })
                .max_by(|&a, &b| {
                    // Up: most saved per byte; down: least lost per byte (rates are ≥ 0 both ways).
                    if up { rate(a).total_cmp(&rate(b)) } else { rate(b).total_cmp(&rate(a)) }
                })
        };
        Why { up: best(true).map(mv), down: best(false).map(mv) }
    }

    /// Bytes of a plan by the scheme column its layers took (`None`: kept),
    /// largest first.
    pub fn bytes_by_scheme(&self, choice: &[usize]) -> Vec<(Option<usize>, u64)> {
        let mut out: Vec<(Option<usize>, u64)> = Vec::new();
        for (o, &c) in self.layers.iter().zip(choice) {
            let x = &o[c];
            match out.iter_mut().find(|(s, _)| *s == x.scheme) {
                Some((_, b)) => *b += x.bytes,
                None => out.push((x.scheme, x.bytes)),
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

/// Stored bits per weight of `bytes` over `params` weights.
pub fn bits_per_weight(bytes: u64, params: u64) -> f64 {
    bytes as f64 * 8.0 / params.max(1) as f64
}

/// The byte budget of `bits` per weight over `params` weights (rounded down).
pub fn budget_bytes(bits: f64, params: u64) -> u64 {
    (bits * params as f64 / 8.0).floor() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::relative_as_db;

    fn o(scheme: Option<usize>, bytes: u64, cost: f64, sqnr_db: f64) -> LayerOption {
        LayerOption { scheme, bytes, cost, sqnr_db }
    }

    fn problem() -> Problem {
        Problem {
            layers: vec![
                vec![o(Some(0), 10, 8.0, 20.0), o(Some(1), 20, 2.0, 26.0), o(None, 40, 0.0, f64::INFINITY)],
                vec![o(Some(0), 5, 3.0, 18.0), o(None, 20, 0.0, f64::INFINITY)],
            ],
        }
    }

    #[test]
    fn pins_leave_only_the_pinned_option_and_the_solve_follows() {
        let mut p = problem();
        p.pin(0, Pin::Keep);
        p.pin(1, Pin::Scheme(0));
        assert_eq!(p.layers[0].len(), 1);
        let plan = p.solve(1000, Objective::Relative).unwrap();
        assert_eq!(plan.total_bytes, 45);
        let mut q = problem();
        q.pin(1, Pin::Scheme(1)); // not an option of layer 1
        assert!(q.solve(1000, Objective::Relative).is_none());
    }

    #[test]
    fn uniform_plans_keep_layers_the_scheme_cannot_take() {
        let p = problem();
        let u = p.uniform(1, Objective::Relative);
        assert_eq!((u.choice, u.total_bytes, u.objective_value), (vec![1, 1], 40, 2.0));
        assert_eq!(p.bytes_by_scheme(&[1, 1]), vec![(None, 20), (Some(1), 20)]);
    }

    #[test]
    fn why_names_the_best_move_each_way() {
        let p = problem();
        let w = p.why(0, 1);
        let up = w.up.unwrap();
        assert_eq!((up.option, up.bytes, up.sqnr_db), (2, 20, f64::INFINITY));
        let down = w.down.unwrap();
        assert_eq!((down.option, down.bytes, down.sqnr_db), (0, -10, -6.0));
        assert_eq!(p.why(1, 1).up, None, "nothing has less error than keeping");
    }

    #[test]
    fn a_column_no_layer_can_take_is_measured_from_its_cells() {
        use crate::metrics::Metrics;
        use crate::sweep::{Cell, Row};
        let cell = |stored_bytes, sqnr_db| {
            let metrics = Metrics { sqnr_db, ..Metrics::default() };
            Ok(Cell { metrics, stored_bytes, slices: 1, fallback: None })
        };
        let row =
            |name: &str, source_bytes, cells| Row { name: name.into(), params: 10, source_bytes, cells };
        let s = Sweep {
            schemes: vec!["a".into(), "b".into(), "published".into()],
            rows: vec![
                row("x", 40, vec![cell(10, 20.0), cell(20, 26.0), cell(12, 10.0)]),
                row("y", 20, vec![cell(5, 18.0), Err("no".into()), Err("not paired".into())]),
            ],
            totals: Vec::new(),
        };
        let p = problem();
        // Published: layer x as measured (12 bytes, 10 × 10^−1), layer y kept.
        let (bytes, cost) = p.column_point(&s, 2);
        assert_eq!(bytes, 32);
        assert!((cost - 1.0).abs() < 1e-12, "{cost}");
        // A scheme column is its uniform plan.
        assert_eq!(p.column_point(&s, 1), (40, 2.0));
    }

    #[test]
    fn units_round_trip() {
        assert_eq!(budget_bytes(4.5, 1000), 562);
        assert_eq!(bits_per_weight(562, 1000), 4.496);
        assert_eq!(relative_as_db(1.0, 1000), 30.0);
        assert_eq!(relative_as_db(0.0, 1000), f64::INFINITY);
    }
}
