//! What stdout gets: `--output table|json|csv`, a table by default on a
//! terminal and the machine format when piped (scripts and tests pipe, so that
//! stays what it always was); the table itself (aligned columns, rows worst
//! first, totals last) and how numbers read in it.

use std::io::Write;

use anyhow::Context;
use clap::ValueEnum;
use comfy_table::{CellAlignment, ContentArrangement, LineStyle, TableStyle};

/// The format of stdout. Without `--output`: a table on a terminal, else JSON.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// Aligned columns for reading: worst first, totals last.
    Table,
    Json,
    Csv,
}

impl OutputArg {
    /// The format asked for, else a table on a terminal and `piped` otherwise.
    pub fn resolve(asked: Option<Self>, terminal: bool, piped: Self) -> Self {
        asked.unwrap_or(if terminal { Self::Table } else { piped })
    }
}

/// `value` as pretty JSON and a newline: the documented machine format.
pub fn write_json<T: serde::Serialize>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).context("writing JSON")?;
    writeln!(out)?;
    Ok(())
}

/// How a column lines up: text to the left, numbers to the right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table for reading: a header, rows, then totals under a rule, and after a
/// blank line what the table is of.
pub struct Table {
    head: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
    totals: Vec<Vec<String>>,
    caption: Vec<String>,
}

/// No borders: a rule under the header (and over the totals), columns apart by two spaces.
const STYLE: TableStyle = TableStyle::new().header_separator(LineStyle::none().fill('─'));

impl Table {
    pub fn new<S: Into<String>>(head: impl IntoIterator<Item = (S, Align)>) -> Self {
        Self {
            head: head.into_iter().map(|(h, a)| (h.into(), a)).collect(),
            rows: Vec::new(),
            totals: Vec::new(),
            caption: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A line of the totals block, drawn last under its own rule.
    pub fn total(&mut self, cells: Vec<String>) {
        self.totals.push(cells);
    }

    /// A line under the table, after a blank one: what it is of.
    pub fn caption(&mut self, line: String) {
        self.caption.push(line);
    }

    /// The table's lines, each without trailing spaces.
    pub fn lines(&self) -> Vec<String> {
        let mut t = comfy_table::Table::new();
        t.load_style(STYLE).set_content_arrangement(ContentArrangement::Disabled);
        t.set_header(self.head.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>());
        for r in self.rows.iter().chain(&self.totals) {
            t.add_row(r.clone());
        }
        let last = self.head.len().saturating_sub(1);
        for (i, (_, align)) in self.head.iter().enumerate() {
            if let Some(c) = t.column_mut(i) {
                c.set_padding((0, if i == last { 0 } else { 2 }));
                c.set_cell_alignment(match align {
                    Align::Left => CellAlignment::Left,
                    Align::Right => CellAlignment::Right,
                });
            }
        }
        let mut lines: Vec<String> = t.lines().map(|l| l.trim_end().to_string()).collect();
        // The header's rule again over the totals.
        if !self.totals.is_empty() && lines.len() > 1 {
            let rule = lines[1].clone();
            lines.insert(lines.len() - self.totals.len(), rule);
        }
        lines
    }

    pub fn write(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        for l in self.lines() {
            writeln!(out, "{l}")?;
        }
        if !self.caption.is_empty() {
            writeln!(out)?;
        }
        for l in &self.caption {
            writeln!(out, "{l}")?;
        }
        Ok(())
    }
}

/// A dB figure: one decimal, ∞ when lossless, — when unknown.
pub fn db(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_infinite() && v > 0.0 => "∞".into(),
        Some(v) if v.is_finite() => format!("{v:.1}"),
        Some(_) => "nan".into(),
        None => "—".into(),
    }
}

/// A small positive quantity (MSE, KL) in three significant digits.
pub fn sci(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| if v == 0.0 { "0".into() } else { format!("{v:.3e}") })
}

/// A fraction as a percent with `decimals` decimals.
pub fn percent(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{:.decimals$}%", 100.0 * v))
}

/// A cosine close to 1: six decimals.
pub fn cosine(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.6}"))
}

/// A count in thousands or millions ("22.7M", "590K", "384").
pub fn count(n: u64) -> String {
    match n as f64 {
        x if x >= 1e9 => format!("{:.2}G", x / 1e9),
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e4 => format!("{:.0}K", x / 1e3),
        _ => n.to_string(),
    }
}

/// Bytes in decimal units ("12.34 MB", "590.0 KB", "384 B").
pub fn bytes(b: u64) -> String {
    match b as f64 {
        x if x >= 1e9 => format!("{:.2} GB", x / 1e9),
        x if x >= 1e6 => format!("{:.2} MB", x / 1e6),
        x if x >= 1e3 => format!("{:.1} KB", x / 1e3),
        _ => format!("{b} B"),
    }
}

/// A tensor shape as `[384, 1536]`.
pub fn shape(s: &[usize]) -> String {
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_totals_sit_under_a_rule() {
        let mut t = Table::new([("layer", Align::Left), ("SQNR dB", Align::Right)]);
        t.row(vec!["a.weight".into(), "12.5".into()]);
        t.row(vec!["longer.name.weight".into(), "130.0".into()]);
        t.total(vec!["total".into(), "40.1".into()]);
        let lines = t.lines();
        assert_eq!(lines.len(), 6, "{lines:#?}");
        assert!(lines[1].starts_with('─') && lines[4] == lines[1], "{lines:#?}");
        // Numbers end in one column; names start in one.
        let ends: Vec<usize> = [0, 2, 3, 5].iter().map(|&i| lines[i].chars().count()).collect();
        assert!(ends.iter().all(|&e| e == ends[0]), "{lines:#?}");
        assert!(lines[2].starts_with("a.weight ") && lines[5].starts_with("total "), "{lines:#?}");
    }

    #[test]
    fn numbers_read_as_the_app_shows_them() {
        assert_eq!(db(Some(f64::INFINITY)), "∞");
        assert_eq!(db(Some(41.26)), "41.3");
        assert_eq!(db(None), "—");
        assert_eq!(count(22_713_216), "22.71M");
        assert_eq!(bytes(12_345_678), "12.35 MB");
        assert_eq!(percent(Some(0.00123), 2), "0.12%");
        assert_eq!(OutputArg::resolve(None, true, OutputArg::Json), OutputArg::Table);
        assert_eq!(OutputArg::resolve(None, false, OutputArg::Json), OutputArg::Json);
        assert_eq!(OutputArg::resolve(Some(OutputArg::Csv), true, OutputArg::Json), OutputArg::Csv);
    }
}
