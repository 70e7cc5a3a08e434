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

/// A model's SQNR in two figures: the params-weighted mean of the layers' finite
/// SQNRs (a lossless layer, +∞, is left out) and the worst layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SqnrSummary {
    pub mean_sqnr_db: Option<f64>,
    pub worst_sqnr_db: Option<f64>,
    pub worst_layer: Option<String>,
}

impl SqnrSummary {
    /// From each layer's name, params and metrics; the worst layer is the first
    /// of [`worst_first`] by SQNR among the finite ones.
    pub fn of<'a>(layers: impl IntoIterator<Item = Item<'a>>) -> Self {
        let finite: Vec<Item<'a>> =
            layers.into_iter().filter(|l| l.metrics.is_some_and(|m| m.sqnr_db.is_finite())).collect();
        let sqnr = |l: &Item<'_>| l.metrics.map_or(0.0, |m| m.sqnr_db);
        let weight: u64 = finite.iter().map(|l| l.params).sum();
        let mean_sqnr_db = (weight > 0)
            .then(|| finite.iter().map(|l| sqnr(l) * l.params as f64).sum::<f64>() / weight as f64);
        let worst = worst_first(finite.iter().copied(), RankKey::Sqnr, false).first().map(|&i| finite[i]);
        Self {
            mean_sqnr_db,
            worst_sqnr_db: worst.map(|w| sqnr(&w)),
            worst_layer: worst.map(|w| w.name.to_string()),
        }
    }
}
