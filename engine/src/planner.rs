//! Mixed precision under a size budget: one option per layer (a scheme, or
//! keeping the layer as stored) so that the stored bytes fit the budget at the
//! least error. The inputs are the sensitivity sweep's cells (exact stored
//! bytes and metrics); the objectives are defined in docs/numerics.md,
//! "Sensitivity and stored bytes".
//!
//! `relative` is a multiple-choice knapsack, solved by dynamic programming over
//! the Pareto front of (bytes, cost) states, one layer at a time: a state is
//! kept only if no other state is both smaller and cheaper. That is exact; on
//! very large problems each front is thinned to [`MAX_WORK`] / (layers × options) states
//! (each kept state stays exact, so the plan always fits the budget). `worst`
//! maximizes the lowest layer SQNR by bisection over the candidate SQNRs.

use serde::Serialize;

use crate::sweep::Sweep;

/// State × option pairs the DP may visit over the whole problem; beyond it each
/// layer's front is thinned (small problems stay exact).
pub const MAX_WORK: usize = 4_000_000;

/// What the plan minimizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Σ params × MSE / mean(R²): every layer's relative noise, weighted by size.
    #[default]
    Relative,
    /// The lowest layer SQNR, maximized.
    Worst,
}

/// One way to store one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerOption {
    /// Column of the sweep, or `None` for "keep as stored".
    pub scheme: Option<usize>,
    pub bytes: u64,
    /// params × MSE / mean(R²); 0 when kept or lossless.
    pub cost: f64,
    /// SQNR in dB (+∞ when kept or lossless).
    pub sqnr_db: f64,
}

/// The options of every layer.
#[derive(Clone, Debug, Default)]
pub struct Problem {
    pub layers: Vec<Vec<LayerOption>>,
}

/// One point of the size-vs-objective trade-off.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FrontierPoint {
    pub bytes: u64,
    pub objective_value: f64,
}

/// The chosen option per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub choice: Vec<usize>,
    pub total_bytes: u64,
    pub objective_value: f64,
}

impl Problem {
    /// The options of every row of `s`: each scheme whose cell succeeded and that
    /// `saves(row, column)` accepts, plus (with `keep`) storing the layer unchanged.
    pub fn from_sweep(s: &Sweep, keep: bool, saves: &dyn Fn(usize, usize) -> bool) -> Self {
        let layers = s
            .rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let mut opts: Vec<LayerOption> = row
                    .cells
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| saves(r, *k))
                    .filter_map(|(k, c)| c.as_ref().ok().map(|c| (k, c)))
                    .map(|(k, c)| LayerOption {
                        scheme: Some(k),
                        bytes: c.stored_bytes,
                        cost: relative_cost(row.params, c.metrics.sqnr_db),
                        sqnr_db: c.metrics.sqnr_db,
                    })
                    .collect();
                if keep || opts.is_empty() {
                    opts.push(LayerOption {
                        scheme: None,
                        bytes: row.source_bytes,
                        cost: 0.0,
                        sqnr_db: f64::INFINITY,
                    });
                }
                opts
            })
            .collect();
        Self { layers }
    }

    /// The smallest and the largest total bytes any plan can have.
    pub fn byte_range(&self) -> (u64, u64) {
        let min = self.layers.iter().map(|o| o.iter().map(|x| x.bytes).min().unwrap_or(0)).sum();
        let max = self.layers.iter().map(|o| o.iter().map(|x| x.bytes).max().unwrap_or(0)).sum();
        (min, max)
    }

    fn evaluate(&self, choice: &[usize], objective: Objective) -> (u64, f64) {
        let picked = self.layers.iter().zip(choice).map(|(o, &c)| &o[c]);
        let bytes = picked.clone().map(|o| o.bytes).sum();
        let value = match objective {
            Objective::Relative => picked.map(|o| o.cost).sum(),
            Objective::Worst => picked.map(|o| o.sqnr_db).fold(f64::INFINITY, f64::min),
        };
        (bytes, value)
    }

    /// The best plan within `budget` bytes, or `None` when even the smallest
    /// options do not fit.
    pub fn solve(&self, budget: u64, objective: Objective) -> Option<Plan> {
        let choice = match objective {
            Objective::Relative => self.solve_relative(budget)?,
            Objective::Worst => self.solve_worst(budget)?,
        };
        let (total_bytes, objective_value) = self.evaluate(&choice, objective);
        Some(Plan { choice, total_bytes, objective_value })
    }

    /// The Pareto front of the relative objective: every size at which some
    /// plan is cheaper than all smaller ones.
    pub fn frontier(&self) -> Vec<FrontierPoint> {
        let (fronts, _) = self.pareto(u64::MAX);
        fronts
            .last()
            .map(|f| f.iter().map(|s| FrontierPoint { bytes: s.bytes, objective_value: s.cost }).collect())
            .unwrap_or_default()
    }

    fn solve_relative(&self, budget: u64) -> Option<Vec<usize>> {
        let (fronts, _) = self.pareto(budget);
        let last = fronts.last()?;
        let mut at = last
            .iter()
            .enumerate()
            .filter(|(_, s)| s.bytes <= budget)
            .min_by(|a, b| a.1.cost.total_cmp(&b.1.cost))?
            .0;
        let mut choice = vec![0; self.layers.len()];
        for (layer, front) in fronts.iter().enumerate().rev() {
            let s = &front[at];
            choice[layer] = s.option;
            at = s.prev;
        }
        Some(choice)
    }

    /// One front per layer (states after that layer), each sorted by bytes with
    /// strictly falling cost. States that cannot fit `budget` are dropped.
    fn pareto(&self, budget: u64) -> (Vec<Vec<State>>, bool) {
        let mut min_rest: Vec<u64> =
            self.layers.iter().map(|o| o.iter().map(|x| x.bytes).min().unwrap_or(0)).collect();
        for i in (0..min_rest.len().saturating_sub(1)).rev() {
            min_rest[i] += min_rest[i + 1];
        }
        let mut fronts: Vec<Vec<State>> = Vec::with_capacity(self.layers.len());
        let mut thinned = false;
        let start = [State { bytes: 0, cost: 0.0, prev: 0, option: 0 }];
        for (layer, opts) in self.layers.iter().enumerate() {
            let prev: &[State] = fronts.last().map_or(&start[..], |f| &f[..]);
            let rest = min_rest.get(layer + 1).copied().unwrap_or(0);
            let mut next: Vec<State> = Vec::with_capacity(prev.len() * opts.len());
            for (p, s) in prev.iter().enumerate() {
                for (k, o) in opts.iter().enumerate() {
                    let bytes = s.bytes.saturating_add(o.bytes);
                    if bytes.saturating_add(rest) <= budget {
                        next.push(State { bytes, cost: s.cost + o.cost, prev: p, option: k });
                    }
                }
            }
            let mut front = prune(next);
            let cap = (MAX_WORK / (opts.len().max(1) * self.layers.len())).max(256);
            if front.len() > cap {
                front = thin(&front, cap);
                thinned = true;
            }
            if front.is_empty() {
                return (Vec::new(), thinned);
            }
            fronts.push(front);
        }
        (fronts, thinned)
    }

    fn solve_worst(&self, budget: u64) -> Option<Vec<usize>> {
        // The cheapest option of each layer whose SQNR reaches t.
        let pick = |t: f64| -> Option<Vec<usize>> {
            self.layers
                .iter()
                .map(|o| {
                    o.iter()
                        .enumerate()
                        .filter(|(_, x)| x.sqnr_db >= t)
                        .min_by(|a, b| a.1.bytes.cmp(&b.1.bytes).then(a.1.cost.total_cmp(&b.1.cost)))
                        .map(|(k, _)| k)
                })
                .collect()
        };
        let fits = |c: &[usize]| self.evaluate(c, Objective::Worst).0 <= budget;
        let mut levels: Vec<f64> = self.layers.iter().flatten().map(|o| o.sqnr_db).collect();
        levels.sort_by(f64::total_cmp);
        levels.dedup();
        // The largest level t whose pick fits (feasibility only falls as t rises).
        let (mut lo, mut hi) = (0usize, levels.len());
        while lo < hi {
            let mid = usize::midpoint(lo, hi);
            if pick(levels[mid]).is_some_and(|c| fits(&c)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let best = pick(*levels.get(lo.checked_sub(1)?)?)?;
        fits(&best).then_some(best)
    }
}

/// A layer's share of the relative objective: params × 10^(−SQNR/10).
pub fn relative_cost(params: u64, sqnr_db: f64) -> f64 {
    if sqnr_db.is_infinite() && sqnr_db > 0.0 { 0.0 } else { params as f64 * 10f64.powf(-sqnr_db / 10.0) }
}

#[derive(Clone, Copy, Debug)]
struct State {
    bytes: u64,
    cost: f64,
    /// Index into the previous layer's front.
    prev: usize,
    /// The option taken for this layer.
    option: usize,
}

/// Sorted by bytes; keeps a state only when it is cheaper than every smaller one.
fn prune(mut states: Vec<State>) -> Vec<State> {
    states.sort_by(|a, b| a.bytes.cmp(&b.bytes).then(a.cost.total_cmp(&b.cost)));
    let mut out: Vec<State> = Vec::with_capacity(states.len());
    for s in states {
        if out.last().is_none_or(|l| s.cost < l.cost) {
            out.push(s);
        }
    }
    out
}

/// Keeps `cap` states spread evenly over the front (its ends included).
fn thin(front: &[State], cap: usize) -> Vec<State> {
    let n = front.len();
    (0..cap).map(|i| front[i * (n - 1) / (cap - 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute(p: &Problem, budget: u64, objective: Objective) -> Option<f64> {
        let n = p.layers.len();
        let mut choice = vec![0usize; n];
        let mut best: Option<f64> = None;
        loop {
            let (bytes, value) = p.evaluate(&choice, objective);
            if bytes <= budget {
                let better = match (best, objective) {
                    (None, _) => true,
                    (Some(b), Objective::Relative) => value < b,
                    (Some(b), Objective::Worst) => value > b,
                };
                if better {
                    best = Some(value);
                }
            }
            let mut i = 0;
            loop {
                if i == n {
                    return best;
                }
                choice[i] += 1;
                if choice[i] < p.layers[i].len() {
                    break;
                }
                choice[i] = 0;
                i += 1;
            }
        }
    }

    fn problem() -> impl Strategy<Value = Problem> {
        let option = (1u64..2000, 0.0f64..1000.0, 0.0f64..60.0)
            .prop_map(|(bytes, cost, sqnr_db)| LayerOption { scheme: Some(0), bytes, cost, sqnr_db });
        prop::collection::vec(prop::collection::vec(option, 1..=5), 1..=7)
            .prop_map(|layers| Problem { layers })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn the_plan_is_optimal_against_brute_force(p in problem(), share in 0.0f64..1.0) {
            let (lo, hi) = p.byte_range();
            let budget = lo + ((hi - lo) as f64 * share) as u64;
            for objective in [Objective::Relative, Objective::Worst] {
                let plan = p.solve(budget, objective).expect("the smallest plan fits");
                prop_assert!(plan.total_bytes <= budget);
                let best = brute(&p, budget, objective).expect("feasible");
                match objective {
                    Objective::Relative => prop_assert!(plan.objective_value <= best * (1.0 + 1e-3) + 1e-12,
                        "{} vs {best}", plan.objective_value),
                    Objective::Worst => prop_assert!(plan.objective_value >= best - 1e-12,
                        "{} vs {best}", plan.objective_value),
                }
            }
        }
    }

    #[test]
    fn a_budget_below_the_smallest_plan_has_no_plan_and_the_frontier_falls() {
        let o = |bytes, cost| LayerOption { scheme: Some(0), bytes, cost, sqnr_db: 30.0 };
        let p = Problem { layers: vec![vec![o(10, 5.0), o(20, 1.0)], vec![o(5, 3.0), o(15, 0.5)]] };
        assert!(p.solve(14, Objective::Relative).is_none());
        let plan = p.solve(30, Objective::Relative).unwrap();
        assert_eq!((plan.choice.clone(), plan.total_bytes), (vec![1, 0], 25));
        let f = p.frontier();
        assert_eq!(f.first().map(|x| x.bytes), Some(15));
        assert!(f.windows(2).all(|w| w[0].bytes < w[1].bytes && w[0].objective_value > w[1].objective_value));
    }

    #[test]
    fn relative_cost_is_params_times_relative_noise() {
        assert_eq!(relative_cost(1000, 30.0), 1.0);
        assert_eq!(relative_cost(10, f64::INFINITY), 0.0);
    }
}
