//! Ranking layers worst first. The CLI's `--sort`, the sweep totals' worst
//! layer and the GUI's ranked table all order layers here, so they agree.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::sweep::Sweep;

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

/// The metrics of row `row` under scheme column `col`, if that cell succeeded.
pub fn cell_metrics(s: &Sweep, row: usize, col: usize) -> Option<&Metrics> {
    s.rows.get(row)?.cells.get(col)?.as_ref().ok().map(|c| &c.metrics)
}

/// Row order of a sweep under scheme column `col` (the GUI's table and matrix).
pub fn ranked(s: &Sweep, col: usize, key: RankKey, reversed: bool) -> Vec<usize> {
    let items = s.rows.iter().enumerate().map(|(i, r)| Item {
        name: &r.name,
        params: r.params,
        metrics: cell_metrics(s, i, col),
    });
    worst_first(items, key, reversed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::{Cell, Row};

    fn row(name: &str, params: u64, sqnr_db: Option<f64>) -> Row {
        let cell = sqnr_db.map_or_else(
            || Err("no channel axis 1".to_string()),
            |db| {
                let metrics = Metrics { sqnr_db: db, mse: 1.0 / (1.0 + db.abs()), ..Metrics::default() };
                Ok(Cell { metrics, stored_bytes: 0, slices: 1, fallback: None })
            },
        );
        Row { name: name.into(), params, source_bytes: 0, cells: vec![cell] }
    }

    fn sweep() -> Sweep {
        Sweep {
            schemes: vec!["int8:tensor:minmax".into()],
            rows: vec![
                row("c", 10, Some(30.0)),
                row("a", 30, None),
                row("b", 20, Some(f64::INFINITY)),
                row("d", 20, Some(12.0)),
                row("e", 5, Some(30.0)),
            ],
            totals: Vec::new(),
        }
    }

    #[test]
    fn natural_order_is_worst_first_with_failures_last() {
        let s = sweep();
        let names = |o: Vec<usize>| o.iter().map(|&i| s.rows[i].name.as_str()).collect::<String>();
        assert_eq!(names(ranked(&s, 0, RankKey::Sqnr, false)), "dceba");
        assert_eq!(names(ranked(&s, 0, RankKey::Sqnr, true)), "abecd");
        assert_eq!(names(ranked(&s, 0, RankKey::Name, false)), "abcde");
        assert_eq!(names(ranked(&s, 0, RankKey::Params, false)), "abdce");
        // Highest MSE first (lowest SQNR here), failed last.
        assert_eq!(names(ranked(&s, 0, RankKey::Mse, false)), "dceba");
    }
}
