//! Ranking layers worst first. The CLI's `--sort`, the sweep totals' worst
//! layer and the GUI's ranked table all order layers here, so they agree (a
//! sweep's rows through [`crate::sweep::Sweep::ranked`]).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// What layers are ranked by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RankKey {
    Name,
    Params,
    #[default]
    Sqnr,
    Mse,
    Cosine,
    Clipped,
}

/// One layer to rank: its name, size and metrics (`None` when its analysis failed).
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    pub name: &'a str,
    pub params: u64,
    pub metrics: Option<&'a Metrics>,
}

/// The number a metric key sorts on, oriented so that smaller is worse (lowest
/// SQNR, highest MSE, lowest cosine, most clipped); +∞ for a failed layer.
pub fn badness(key: RankKey, m: Option<&Metrics>) -> f64 {
    let Some(m) = m else { return f64::INFINITY };
    match key {
        RankKey::Name | RankKey::Params => 0.0,
        RankKey::Sqnr => m.sqnr_db,
        RankKey::Mse => -m.mse,
        RankKey::Cosine => m.cosine,
        RankKey::Clipped => -m.clipped_fraction,
    }
}

/// `a` before `b` in the natural order: worst first for metrics, name ascending,
/// params descending; ties broken by name.
pub fn compare(key: RankKey, a: &Item<'_>, b: &Item<'_>) -> Ordering {
    let by_name = a.name.cmp(b.name);
    match key {
        RankKey::Name => by_name,
        RankKey::Params => b.params.cmp(&a.params).then(by_name),
        // A failed layer goes after every measured one, even a lossless (+∞) one.
        _ => (a.metrics.is_none().cmp(&b.metrics.is_none()))
            .then(badness(key, a.metrics).total_cmp(&badness(key, b.metrics)))
            .then(by_name),
    }
}

/// Indices of `items` in the natural order under `key` (worst first), or the
/// reverse of it.
pub fn worst_first<'a>(
    items: impl IntoIterator<Item = Item<'a>>,
    key: RankKey,
    reversed: bool,
) -> Vec<usize> {
    let items: Vec<Item<'a>> = items.into_iter().collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| compare(key, &items[a], &items[b]));
    if reversed {
        order.reverse();
    }
    order
}

/// A model's SQNR (docs/numerics.md, "One model SQNR"), with the mean layer
/// SQNR and the worst layer beside it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SqnrSummary {
    /// The model SQNR: the SQNR of the covered layers' relative noise, each
    /// layer weighted by its params ([`model_sqnr_db`]); +∞ (`None` in JSON)
    /// when nothing adds noise.
    pub model_sqnr_db: Option<f64>,
    /// The params-weighted mean of the quantized layers' finite SQNRs in dB (a
    /// lossless layer, +∞, is left out): a second, gentler figure.
    pub mean_layer_sqnr_db: Option<f64>,
    pub worst_sqnr_db: Option<f64>,
    pub worst_layer: Option<String>,
}

impl SqnrSummary {
    /// From each covered layer's name, params and metrics; `metrics: None` is a
    /// covered layer kept as stored (no noise). The worst layer is the first of
    /// [`worst_first`] by SQNR among the finite ones.
    pub fn of<'a>(layers: impl IntoIterator<Item = Item<'a>>) -> Self {
        let layers: Vec<Item<'a>> = layers.into_iter().collect();
        let model =
            model_sqnr_db(layers.iter().map(|l| (l.params, l.metrics.map_or(f64::INFINITY, |m| m.sqnr_db))));
        let finite: Vec<Item<'a>> =
            layers.into_iter().filter(|l| l.metrics.is_some_and(|m| m.sqnr_db.is_finite())).collect();
        let sqnr = |l: &Item<'_>| l.metrics.map_or(0.0, |m| m.sqnr_db);
        let weight: u64 = finite.iter().map(|l| l.params).sum();
        let mean_layer_sqnr_db = (weight > 0)
            .then(|| finite.iter().map(|l| sqnr(l) * l.params as f64).sum::<f64>() / weight as f64);
        let worst = worst_first(finite.iter().copied(), RankKey::Sqnr, false).first().map(|&i| finite[i]);
        Self {
            model_sqnr_db: model.filter(|v| v.is_finite()),
            mean_layer_sqnr_db,
            worst_sqnr_db: worst.map(|w| sqnr(&w)),
            worst_layer: worst.map(|w| w.name.to_string()),
        }
    }
}

/// A layer's relative noise weighted by its size: params × 10^(−SQNR/10)
/// (noise power over signal power, times params). The `relative` planner
/// objective is the sum of these.
pub fn relative_cost(params: u64, sqnr_db: f64) -> f64 {
    if sqnr_db.is_infinite() && sqnr_db > 0.0 { 0.0 } else { params as f64 * 10f64.powf(-sqnr_db / 10.0) }
}

/// A sum of [`relative_cost`]s over layers of `params` weights in all, as an
/// SQNR in dB (+∞ when there is no noise).
pub fn relative_as_db(value: f64, params: u64) -> f64 {
    if value <= 0.0 { f64::INFINITY } else { -10.0 * (value / params.max(1) as f64).log10() }
}

/// The model SQNR of layers given as (params, SQNR dB), a kept layer at +∞:
/// 10·log10(Σ params / Σ params·10^(−SQNR/10)). `None` without params.
pub fn model_sqnr_db(layers: impl IntoIterator<Item = (u64, f64)>) -> Option<f64> {
    let (params, cost) =
        layers.into_iter().fold((0u64, 0.0), |(p, c), (n, db)| (p + n, c + relative_cost(n, db)));
    (params > 0).then(|| relative_as_db(cost, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(sqnr_db: f64) -> Metrics {
        Metrics { sqnr_db, ..Metrics::default() }
    }

    #[test]
    fn the_model_sqnr_weighs_noise_not_decibels() {
        // 1000 params at 30 dB and 1000 at 10 dB: relative noise 0.001 and 0.1,
        // mean 0.0505 → 12.97 dB, where the mean of the dB would say 20.
        let (a, b) = (m(30.0), m(10.0));
        let s = SqnrSummary::of([
            Item { name: "a", params: 1000, metrics: Some(&a) },
            Item { name: "b", params: 1000, metrics: Some(&b) },
        ]);
        let want = -10.0 * 0.0505f64.log10();
        assert!((s.model_sqnr_db.unwrap() - want).abs() < 1e-12);
        assert_eq!(s.mean_layer_sqnr_db, Some(20.0));
        assert_eq!(s.worst_layer.as_deref(), Some("b"));
        // A covered layer kept as stored adds params and no noise: +3.01 dB here.
        let kept = SqnrSummary::of([
            Item { name: "b", params: 1000, metrics: Some(&b) },
            Item { name: "k", params: 1000, metrics: None },
        ]);
        assert!((kept.model_sqnr_db.unwrap() - (10.0 + 10.0 * 2f64.log10())).abs() < 1e-12);
        assert_eq!(kept.mean_layer_sqnr_db, Some(10.0));
        // Nothing noisy: no finite model SQNR.
        let lossless = m(f64::INFINITY);
        assert_eq!(
            SqnrSummary::of([Item { name: "z", params: 5, metrics: Some(&lossless) }]).model_sqnr_db,
            None
        );
        assert_eq!(model_sqnr_db([]), None);
    }
}
