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
