//! Mixed precision under a size budget: one option per layer (a scheme, or
//! keeping the layer as stored) so that the stored bytes fit the budget at the
//! least error. The inputs are the sensitivity sweep's cells (exact stored
//! bytes and metrics); the objectives are defined in docs/numerics.md,
//! "Sensitivity and stored bytes".
//!
//! `relative` is a multiple-choice knapsack. Small problems are solved exactly
//! by dynamic programming over the Pareto front of (bytes, cost) states, one
//! layer at a time: a state is kept only if no other state is both smaller and
//! cheaper. When the fronts would outgrow [`EXACT_WORK`], the [`hull`] path
//! takes over: a Lagrangian sweep over each layer's lower convex hull, then an
//! exact repair of the layers near the break point. `worst` maximizes the
//! lowest layer SQNR by bisection over the candidate SQNRs. `output` is the
//! same knapsack as `relative` over costs measured on the layers' outputs
//! ([`output`]: the problem is built with [`Problem::from_sweep_output`]).

mod hull;
pub mod output;
mod summary;

pub use crate::rank::{relative_as_db, relative_cost};
pub use summary::{Move, Pin, Why, bits_per_weight, budget_bytes};

use std::collections::HashMap;

use serde::Serialize;

use crate::checkpoint::TensorInfo;
use crate::scheme::Scheme;
use crate::sweep::Sweep;

/// State × option pairs the exact DP may visit over the whole problem; a
/// larger problem goes to the hull sweep (fast enough to follow a slider).
pub const EXACT_WORK: usize = 1_000_000;

/// What the plan minimizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Σ params × MSE / mean(R²): every layer's relative noise, weighted by size.
    #[default]
    Relative,
    /// The lowest layer SQNR, maximized.
    Worst,
    /// Σ params × 10^(−output SQNR/10): `relative` measured on each layer's
    /// output over captured inputs (the problem must come from
    /// [`Problem::from_sweep_output`]).
    Output,
}

/// One way to store one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerOption {
    /// Column of the sweep, or `None` for "keep as stored".
    pub scheme: Option<usize>,
    pub bytes: u64,
    /// params × MSE / mean(R²) (with the output objective, params × output
    /// noise / output energy); 0 when kept or lossless.
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
    /// The planner's problem for a sweep of `tensors`' layers, as `quantscope
    /// plan` and the app's Plan view pose it: each layer's options are the
    /// columns a save would apply to it (a scheme whose group size divides the
    /// layer; a column that names no scheme is none), plus keeping it as
    /// stored; costed by the output SQNRs in `output` when given (the `output`
    /// objective), else by the weight SQNRs.
    pub fn for_sweep(s: &Sweep, tensors: &[TensorInfo], output: Option<&output::OutputSqnr>) -> Self {
        let schemes: Vec<Option<Scheme>> = s.schemes.iter().map(|x| x.parse().ok()).collect();
        let by_name: HashMap<&str, &[usize]> =
            tensors.iter().map(|t| (t.name.as_str(), &t.shape[..])).collect();
        let shapes: Vec<Option<&[usize]>> =
            s.rows.iter().map(|r| by_name.get(r.name.as_str()).copied()).collect();
        let saves = |r: usize, k: usize| match (shapes[r], &schemes[k]) {
            (Some(shape), Some(scheme)) => crate::export::saves_quantized(shape, scheme),
            _ => false,
        };
        match output {
            Some(o) => Self::from_sweep_output(s, true, &saves, o),
            None => Self::from_sweep(s, true, &saves),
        }
    }

    /// The options of every row of `s`: each scheme whose cell succeeded and that
    /// `saves(row, column)` accepts, plus (with `keep`) storing the layer unchanged.
    pub fn from_sweep(s: &Sweep, keep: bool, saves: &dyn Fn(usize, usize) -> bool) -> Self {
        Self::with_cost(s, keep, saves, &|row, _, _, c| relative_cost(row.params, c.metrics.sqnr_db))
    }

    /// As [`Self::from_sweep`], each option costed by its output SQNR in `out`
    /// (the `output` objective). A cell without one (no captured input) falls
    /// back to its weight SQNR: the output SQNR under isotropic inputs.
    pub fn from_sweep_output(
        s: &Sweep,
        keep: bool,
        saves: &dyn Fn(usize, usize) -> bool,
        out: &output::OutputSqnr,
    ) -> Self {
        Self::with_cost(s, keep, saves, &|row, r, k, c| {
            relative_cost(row.params, out.db(r, k).unwrap_or(c.metrics.sqnr_db))
        })
    }

    fn with_cost(
        s: &Sweep,
        keep: bool,
        saves: &dyn Fn(usize, usize) -> bool,
        cost: &dyn Fn(&crate::sweep::Row, usize, usize, &crate::sweep::Cell) -> f64,
    ) -> Self {
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
                        cost: cost(row, r, k, c),
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

    /// The best plan within `budget` bytes, or `None` when even the smallest
    /// options do not fit.
    pub fn solve(&self, budget: u64, objective: Objective) -> Option<Plan> {
        let choice = match objective {
            Objective::Relative | Objective::Output => self.solve_relative(budget)?,
            Objective::Worst => self.solve_worst(budget)?,
        };
        let (total_bytes, objective_value) = self.evaluate(&choice, objective);
        Some(Plan { choice, total_bytes, objective_value })
    }

    /// The Pareto front of the relative objective: every size at which some
    /// plan is cheaper than all smaller ones (on large problems, the lower
    /// convex part of it that the hull sweep walks).
    pub fn frontier(&self) -> Vec<FrontierPoint> {
        match self.pareto(u64::MAX, EXACT_WORK, Thin::Abort) {
            Some(fronts) => fronts
                .last()
                .map(|f| {
                    f.iter().map(|s| FrontierPoint { bytes: s.bytes, objective_value: s.cost }).collect()
                })
                .unwrap_or_default(),
            None => hull::frontier(self),
        }
    }

    /// A lower bound on the best `relative` value within `budget` (the
    /// Lagrangian relaxation): how far from optimal a plan can be at most.
    pub fn lower_bound(&self, budget: u64) -> Option<f64> {
        hull::lower_bound(self, budget)
    }

    fn solve_relative(&self, budget: u64) -> Option<Vec<usize>> {
        match self.pareto(budget, EXACT_WORK, Thin::Abort) {
            Some(fronts) => Self::trace(&fronts, budget),
            // Too large for the exact DP (or nothing fits: the sweep says so too).
            None => hull::solve(self, budget),
        }
    }

    /// The DP's plan within `budget`, its fronts thinned to fit `max_work`.
    fn solve_dp(&self, budget: u64, max_work: usize) -> Option<Vec<usize>> {
        Self::trace(&self.pareto(budget, max_work, Thin::Spread)?, budget)
    }

    /// The cheapest final state within `budget`, traced back to one option per layer.
    fn trace(fronts: &[Vec<State>], budget: u64) -> Option<Vec<usize>> {
        let last = fronts.last()?;
        let mut at = last
            .iter()
            .enumerate()
            .filter(|(_, s)| s.bytes <= budget)
            .min_by(|a, b| a.1.cost.total_cmp(&b.1.cost))?
            .0;
        let mut choice = vec![0; fronts.len()];
        for (layer, front) in fronts.iter().enumerate().rev() {
            let s = &front[at];
            choice[layer] = s.option;
            at = s.prev;
        }
        Some(choice)
    }

    /// One front per layer (states after that layer), each sorted by bytes with
    /// strictly falling cost. States that cannot fit `budget` are dropped. A
    /// front over `max_work` / (layers × options) states is thinned, or with
    /// [`Thin::Abort`] the DP gives up (`None`); `None` also when nothing fits.
    fn pareto(&self, budget: u64, max_work: usize, thin_policy: Thin) -> Option<Vec<Vec<State>>> {
        let mut min_rest: Vec<u64> =
            self.layers.iter().map(|o| o.iter().map(|x| x.bytes).min().unwrap_or(0)).collect();
        for i in (0..min_rest.len().saturating_sub(1)).rev() {
            min_rest[i] += min_rest[i + 1];
        }
        let mut fronts: Vec<Vec<State>> = Vec::with_capacity(self.layers.len());
        let start = [State { bytes: 0, cost: 0.0, prev: 0, option: 0 }];
        for (layer, opts) in self.layers.iter().enumerate() {
            let prev: &[State] = fronts.last().map_or(&start[..], |f| &f[..]);
            let rest = min_rest.get(layer + 1).copied().unwrap_or(0);
            let cap = (max_work / (opts.len().max(1) * self.layers.len())).max(256);
            let stop = if thin_policy == Thin::Abort { cap + 1 } else { usize::MAX };
            let mut front = merge_front(prev, opts, budget.saturating_sub(rest), stop);
            if front.len() > cap {
                match thin_policy {
                    Thin::Abort => return None,
                    Thin::Spread => front = thin(&front, cap),
                }
            }
            if front.is_empty() {
                return None;
            }
            fronts.push(front);
        }
        Some(fronts)
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

/// What the DP does with a front too large for its work limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Thin {
    /// Keep states spread evenly over the front (still feasible, maybe not optimal).
    Spread,
    /// Give up, so the caller takes another path.
    Abort,
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

/// The next front: `prev` (sorted by bytes) shifted by each option is one
/// sorted list per option; a k-way merge (a heap) walks them in (bytes, cost)
/// order up to `limit` bytes, keeping a state only when it is cheaper than
/// every smaller one. Stops once `stop` states are kept.
fn merge_front(prev: &[State], opts: &[LayerOption], limit: u64, stop: usize) -> Vec<State> {
    use std::cmp::Reverse;
    let head = |p: usize, k: usize| {
        let s = prev.get(p)?;
        let bytes = s.bytes.saturating_add(opts[k].bytes);
        (bytes <= limit).then_some(Reverse(Head { bytes, cost: s.cost + opts[k].cost, p, k }))
    };
    let mut heap: std::collections::BinaryHeap<Reverse<Head>> =
        (0..opts.len()).filter_map(|k| head(0, k)).collect();
    let mut out: Vec<State> = Vec::with_capacity(prev.len().max(16));
    while let Some(Reverse(h)) = heap.pop() {
        if out.last().is_none_or(|l| h.cost < l.cost) {
            out.push(State { bytes: h.bytes, cost: h.cost, prev: h.p, option: h.k });
            if out.len() >= stop {
                break;
            }
        }
        if let Some(next) = head(h.p + 1, h.k) {
            heap.push(next);
        }
    }
    out
}

/// The front of one option's list in [`merge_front`], ordered by (bytes, cost).
#[derive(Clone, Copy, Debug)]
struct Head {
    bytes: u64,
    cost: f64,
    p: usize,
    k: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes).then(self.cost.total_cmp(&other.cost)).then(self.k.cmp(&other.k))
    }
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
                    (Some(b), Objective::Relative | Objective::Output) => value < b,
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
            for objective in [Objective::Relative, Objective::Worst, Objective::Output] {
                let plan = p.solve(budget, objective).expect("the smallest plan fits");
                prop_assert!(plan.total_bytes <= budget);
                let best = brute(&p, budget, objective).expect("feasible");
                match objective {
                    Objective::Relative | Objective::Output =>
                        prop_assert!(plan.objective_value <= best * (1.0 + 1e-3) + 1e-12,
                        "{} vs {best}", plan.objective_value),
                    Objective::Worst => prop_assert!(plan.objective_value >= best - 1e-12,
                        "{} vs {best}", plan.objective_value),
                }
            }
        }
    }

    /// Problems too large for a test's brute force but not for the unthinned DP.
    fn larger_problem() -> impl Strategy<Value = Problem> {
        let option = (1u64..4000, 0.0f64..1000.0).prop_map(|(bytes, cost)| LayerOption {
            scheme: Some(0),
            bytes,
            cost,
            sqnr_db: 30.0,
        });
        prop::collection::vec(prop::collection::vec(option, 1..=5), 60..=80)
            .prop_map(|layers| Problem { layers })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn the_hull_sweep_is_within_a_tenth_of_a_percent_of_the_exact_plan(
            p in larger_problem(), share in 0.05f64..0.95,
        ) {
            let (lo, hi) = p.byte_range();
            let budget = lo + ((hi - lo) as f64 * share) as u64;
            let choice = hull::solve(&p, budget).expect("the smallest plan fits");
            let (bytes, value) = p.evaluate(&choice, Objective::Relative);
            prop_assert!(bytes <= budget);
            let exact = p.solve_dp(budget, usize::MAX).expect("feasible");
            let best = p.evaluate(&exact, Objective::Relative).1;
            let bound = p.lower_bound(budget).expect("feasible");
            prop_assert!(bound <= best * (1.0 + 1e-9) + 1e-9, "bound {bound} above the optimum {best}");
            prop_assert!(value <= best * (1.0 + 1e-3) + 1e-9, "hull {value} vs exact {best}");
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
