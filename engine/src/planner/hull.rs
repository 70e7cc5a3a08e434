//! The large-problem path of the `relative` planner. Each layer's options are
//! reduced to their lower convex hull in (bytes, cost); the hull steps (one
//! option to the next larger one) are taken best rate first (cost saved per
//! byte) through a k-way merge of the layers' step lists (a heap), as long as
//! they fit: that is the Lagrangian solution at the break point. The layers
//! whose steps sit just before and after the break are then re-planned exactly
//! together by the Pareto DP (the "core"), with the bytes the others leave.
//!
//! Why this shape: a layer's hull rates fall step by step, so the merge never
//! sorts more than one step per layer at a time, and only the layers near the
//! break point can still change in an optimal plan of a large problem.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};

use super::{FrontierPoint, LayerOption, Problem};

/// Layers taken into the exact repair on each side of the break point.
const CORE_SIDE: usize = 12;
/// Work allowed to the repair DP (state × option pairs).
const CORE_WORK: usize = 300_000;
/// How often the core may double when the plan is still far from the bound.
const MAX_WIDENINGS: usize = 3;

/// The option indices on the lower convex hull of (bytes, cost), by bytes.
pub(super) fn lower_hull(opts: &[LayerOption]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..opts.len()).collect();
    idx.sort_by(|&a, &b| opts[a].bytes.cmp(&opts[b].bytes).then(opts[a].cost.total_cmp(&opts[b].cost)));
    let mut h: Vec<usize> = Vec::with_capacity(idx.len());
    for i in idx {
        if h.last().is_some_and(|&l| opts[i].cost >= opts[l].cost) {
            continue; // not cheaper than a smaller option
        }
        while let [.., a, b] = h[..] {
            // b stays only if a → b saves more per byte than a → i.
            let (oa, ob, oi) = (&opts[a], &opts[b], &opts[i]);
            let ab = (oa.cost - ob.cost) * (oi.bytes - oa.bytes) as f64;
            let ai = (oa.cost - oi.cost) * (ob.bytes - oa.bytes) as f64;
            if ab > ai {
                break;
            }
            h.pop();
        }
        h.push(i);
    }
    h
}

/// One layer's next hull step, ordered by its rate (cost saved per byte).
#[derive(Clone, Copy)]
struct Step {
    rate: f64,
    layer: usize,
}

impl PartialEq for Step {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Step {}
impl PartialOrd for Step {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Step {
    // Ties go to the lower layer index, so plans are deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        self.rate.total_cmp(&other.rate).then(other.layer.cmp(&self.layer))
    }
}

/// The hulls and a walk along them: every layer at a hull position.
struct Walk<'a> {
    p: &'a Problem,
    hulls: Vec<Vec<usize>>,
    pos: Vec<usize>,
    heap: BinaryHeap<Step>,
    bytes: u64,
    cost: f64,
}

impl<'a> Walk<'a> {
    fn new(p: &'a Problem) -> Self {
        let hulls: Vec<Vec<usize>> = p.layers.iter().map(|o| lower_hull(o)).collect();
        let mut w =
            Self { p, pos: vec![0; hulls.len()], hulls, heap: BinaryHeap::new(), bytes: 0, cost: 0.0 };
        for l in 0..w.hulls.len() {
            if let Some(o) = w.option(l) {
                w.bytes = w.bytes.saturating_add(o.bytes);
                w.cost += o.cost;
            }
            w.push_next(l);
        }
        w
    }

    fn option(&self, l: usize) -> Option<&'a LayerOption> {
        let p: &'a Problem = self.p;
        self.hulls[l].get(self.pos[l]).map(|&k| &p.layers[l][k])
    }

    /// (extra bytes, cost saved) of layer `l`'s next step.
    fn delta(&self, l: usize) -> (u64, f64) {
        let (h, at) = (&self.hulls[l], self.pos[l]);
        let (a, b) = (&self.p.layers[l][h[at]], &self.p.layers[l][h[at + 1]]);
        (b.bytes - a.bytes, a.cost - b.cost)
    }

    fn push_next(&mut self, l: usize) {
        if self.pos[l] + 1 < self.hulls[l].len() {
            let (db, dc) = self.delta(l);
            self.heap.push(Step { rate: dc / db as f64, layer: l });
        }
    }

    fn take(&mut self, l: usize) {
        let (db, dc) = self.delta(l);
        self.pos[l] += 1;
        self.bytes += db;
        self.cost -= dc;
        self.push_next(l);
    }

    fn choice(&self) -> Vec<usize> {
        self.hulls.iter().zip(&self.pos).map(|(h, &at)| h[at]).collect()
    }
}

/// The best plan within `budget` found by the sweep and the exact repair, or
/// `None` when the smallest options do not fit. When the plan is still more than
/// 0.1 % above the Lagrangian lower bound, the repair is redone with a core twice
/// as wide (up to [`MAX_WIDENINGS`] times): the bound says when to stop.
pub(super) fn solve(p: &Problem, budget: u64) -> Option<Vec<usize>> {
    let bound = lower_bound(p, budget)?;
    let cost = |c: &[usize]| -> f64 { c.iter().enumerate().map(|(l, &k)| p.layers[l][k].cost).sum() };
    let mut best = sweep_and_repair(p, budget, CORE_SIDE)?;
    let mut side = CORE_SIDE;
    for _ in 0..MAX_WIDENINGS {
        if cost(&best) <= bound * (1.0 + 1e-3) + 1e-12 {
            break;
        }
        side *= 2;
        let wider = sweep_and_repair(p, budget, side)?;
        if cost(&wider) < cost(&best) {
            best = wider;
        }
    }
    Some(best)
}

/// The sweep to the break point, then the exact repair of `side` layers on each
/// side of it.
fn sweep_and_repair(p: &Problem, budget: u64, side: usize) -> Option<Vec<usize>> {
    let mut w = Walk::new(p);
    if w.bytes > budget || p.layers.iter().any(Vec::is_empty) {
        return None;
    }
    // The last layers stepped before the break and the first that did not fit.
    let mut before: Vec<usize> = Vec::new();
    let mut after: BTreeSet<usize> = BTreeSet::new();
    while let Some(s) = w.heap.pop() {
        let (db, _) = w.delta(s.layer);
        if after.is_empty() && w.bytes + db <= budget {
            w.take(s.layer);
            before.push(s.layer);
        } else {
            after.insert(s.layer);
            if after.len() >= side {
                break;
            }
        }
    }
    let mut core: BTreeSet<usize> = after;
    for &l in before.iter().rev() {
        if core.len() >= 2 * side {
            break;
        }
        core.insert(l);
    }
    let mut choice = w.choice();
    repair(p, budget, &core.into_iter().collect::<Vec<_>>(), &mut choice);
    Some(choice)
}

/// Re-plans the `core` layers exactly together within the bytes the other
/// layers leave; keeps the sweep's choice when the repair finds nothing better.
fn repair(p: &Problem, budget: u64, core: &[usize], choice: &mut [usize]) {
    if core.is_empty() {
        return;
    }
    let picked = |l: usize, c: &[usize]| &p.layers[l][c[l]];
    let fixed: u64 = (0..p.layers.len()).filter(|l| !core.contains(l)).map(|l| picked(l, choice).bytes).sum();
    let sub = Problem { layers: core.iter().map(|&l| p.layers[l].clone()).collect() };
    let Some(best) = sub.solve_dp(budget - fixed, CORE_WORK) else { return };
    let now: f64 = core.iter().map(|&l| picked(l, choice).cost).sum();
    let new: f64 = core.iter().zip(&best).map(|(&l, &k)| p.layers[l][k].cost).sum();
    if new < now {
        for (&l, &k) in core.iter().zip(&best) {
            choice[l] = k;
        }
    }
}

/// The lower convex frontier: the plan after each hull step, smallest first.
pub(super) fn frontier(p: &Problem) -> Vec<FrontierPoint> {
    let mut w = Walk::new(p);
    let mut out = vec![FrontierPoint { bytes: w.bytes, objective_value: w.cost }];
    while let Some(s) = w.heap.pop() {
        w.take(s.layer);
        out.push(FrontierPoint { bytes: w.bytes, objective_value: w.cost });
    }
    out
}

/// The Lagrangian (LP) lower bound on the optimum within `budget`: the walk up
/// to the break, plus the fitting share of the step that broke it.
pub(super) fn lower_bound(p: &Problem, budget: u64) -> Option<f64> {
    let mut w = Walk::new(p);
    if w.bytes > budget {
        return None;
    }
    while let Some(s) = w.heap.pop() {
        let (db, dc) = w.delta(s.layer);
        if w.bytes + db > budget {
            return Some(w.cost - dc * (budget - w.bytes) as f64 / db as f64);
        }
        w.take(s.layer);
    }
    Some(w.cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(bytes: u64, cost: f64) -> LayerOption {
        LayerOption { scheme: Some(0), bytes, cost, sqnr_db: 30.0 }
    }

    #[test]
    fn the_hull_drops_dominated_and_non_convex_options() {
        // (15, 6) is above the segment (10, 8) → (20, 2); (12, 9) is dominated.
        let opts = [o(20, 2.0), o(10, 8.0), o(15, 6.0), o(12, 9.0), o(30, 1.5), o(20, 3.0)];
        assert_eq!(lower_hull(&opts), vec![1, 0, 4]);
    }

    #[test]
    fn the_frontier_walks_from_the_smallest_to_the_cheapest_plan() {
        let p =
            Problem { layers: vec![vec![o(10, 8.0), o(20, 2.0)], vec![o(5, 3.0), o(15, 0.5), o(9, 1.75)]] };
        let f = frontier(&p);
        let pts: Vec<(u64, f64)> = f.iter().map(|x| (x.bytes, x.objective_value)).collect();
        // Rates: layer 0 saves 0.6 per byte, layer 1 0.3125 then 0.208: best rate first.
        assert_eq!(pts, vec![(15, 11.0), (25, 5.0), (29, 3.75), (35, 2.5)]);
        // At 27 bytes: half of layer 1's first step.
        assert_eq!(lower_bound(&p, 27), Some(4.375));
    }
}
