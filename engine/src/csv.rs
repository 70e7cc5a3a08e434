//! The one CSV writer: the sweep matrix and totals, the ranked table and the
//! per-tensor report. One rule for numbers everywhere: finite values as Rust
//! prints them, ∞ as `inf` / `-inf`, NaN as `nan`, and an empty field for "none".

use std::fmt::Write;

use crate::diff::Diff;
use crate::report::TensorReport;
use crate::sweep::Sweep;

/// Quotes a field when it holds a comma, a quote or a newline.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// A number: `inf`, `-inf`, `nan`, or the shortest text that reads back exactly.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        v.to_string()
    }
}

/// [`number`] for an f32 (printed as the f32 it is, not widened to f64 digits).
pub fn number_f32(v: f32) -> String {
    if v.is_finite() { v.to_string() } else { number(f64::from(v)) }
}

/// An optional number; empty when absent.
pub fn optional(v: Option<f64>) -> String {
    v.map(number).unwrap_or_default()
}

/// The SQNR matrix: `name,params,<scheme>...` (empty cell = the scheme failed).
/// When activations were loaded (output SQNR in some cell), `output:<scheme>...`
/// columns follow, empty for layers without a captured input.
pub fn matrix(s: &Sweep) -> String {
    let output = s
        .rows
        .iter()
        .flat_map(|r| &r.cells)
        .any(|c| c.as_ref().is_ok_and(|c| c.metrics.output_sqnr_db.is_some()));
    let mut head: Vec<String> = s.schemes.iter().map(|x| field(x)).collect();
    if output {
        head.extend(s.schemes.iter().map(|x| field(&format!("output:{x}"))));
    }
    let mut out = format!("name,params,{}\n", head.join(","));
    for (i, r) in s.rows.iter().enumerate() {
        let n = r.cells.len();
        let mut cells: Vec<String> =
            (0..n).map(|k| optional(s.cell_metrics(i, k).map(|m| m.sqnr_db))).collect();
        if output {
            cells.extend((0..n).map(|k| optional(s.cell_metrics(i, k).and_then(|m| m.output_sqnr_db))));
        }
        let _ = writeln!(out, "{},{},{}", field(&r.name), r.params, cells.join(","));
    }
    out
}

/// The end-to-end sensitivity table (`quantscope sensitivity --output csv`), then
/// the every-layer row as `(all layers)`.
pub fn end_to_end(r: &crate::run::sensitivity::SensitivityReport) -> String {
    let mut out = String::from("name,weight_sqnr_db,output_sqnr_db,cosine,mse,kl\n");
    let rows = r
        .layers
        .iter()
        .map(|l| (l.name.as_str(), Some(l.weight_sqnr_db), Some(l.output_sqnr_db), &l.end_to_end));
    for (name, w, o, e) in rows.chain(std::iter::once(("(all layers)", None, None, &r.all_layers))) {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            field(name),
            optional(w),
            optional(o),
            optional(e.cosine),
            optional(e.mse),
            optional(e.kl)
        );
    }
    out
}

/// The per-scheme totals.
pub fn totals(s: &Sweep) -> String {
    let mut out = String::from(
        "scheme,model_bytes,quantized_bytes,params_quantized,params_total,quantized_share,model_sqnr_db,mean_layer_sqnr_db,worst_sqnr_db,worst_layer\n",
    );
    for t in &s.totals {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            field(&t.scheme),
            t.model_bytes,
            t.quantized_bytes,
            t.params_quantized,
            t.params_total,
            number(t.quantized_share),
            optional(t.model_sqnr_db),
            optional(t.mean_layer_sqnr_db),
            optional(t.worst_sqnr_db),
            field(t.worst_layer.as_deref().unwrap_or(""))
        );
    }
    out
}

/// The ranked table under scheme column `col`, rows in `order` (as shown).
pub fn ranked(s: &Sweep, col: usize, order: &[usize]) -> String {
    let mut out = String::from("layer,params,scheme,sqnr_db,mse,cosine,clipped_fraction\n");
    let scheme = s.schemes.get(col).map(String::as_str).unwrap_or_default();
    for &r in order {
        let Some(row) = s.rows.get(r) else { continue };
        let m = s.cell_metrics(r, col);
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{}",
            field(&row.name),
            row.params,
            field(scheme),
            optional(m.map(|m| m.sqnr_db)),
            optional(m.map(|m| m.mse)),
            optional(m.map(|m| m.cosine)),
            optional(m.map(|m| m.clipped_fraction)),
        );
    }
    out
}

const REPORT_HEADER: &str = "name,dtype,shape,numel,quantized,reason,fallback,count,mse,rmse,sqnr_db,max_abs_err,cosine,clipped_fraction,clip_error,round_error,nonfinite";

/// `quantscope report --output csv`: one row per tensor, or one per slice with
/// `quantscope diff` as CSV: one row per paired layer with its stored scheme,
/// the published R′'s metrics, then `sqnr_db@<scheme>` per compared scheme
/// (empty where it failed or the layer did not have it).
pub fn diff_rows(d: &Diff) -> String {
    let mut cols: Vec<&str> = d.tensors.iter().flat_map(|t| t.schemes.keys().map(String::as_str)).collect();
    cols.sort_unstable();
    cols.dedup();
    let mut out = String::from(
        "name,shape,format,bits,group_size,symmetric,scale_dtype,short,count,mse,rmse,sqnr_db,max_abs_err,cosine,clipped_fraction,clip_error,round_error,nonfinite",
    );
    for c in &cols {
        let _ = write!(out, ",{}", field(&format!("sqnr_db@{c}")));
    }
    out.push('\n');
    for t in &d.tensors {
        let (s, m) = (&t.stored, &t.metrics);
        let shape = t.shape.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        let _ = write!(
            out,
            "{},{shape},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            field(&t.name),
            field(&s.format),
            s.bits,
            s.group_size.map(|g| g.to_string()).unwrap_or_default(),
            s.symmetric,
            s.scale_dtype,
            field(&s.short),
            m.count,
            number(m.mse),
            number(m.rmse),
            number(m.sqnr_db),
            number(m.max_abs_err),
            number(m.cosine),
            number(m.clipped_fraction),
            number(m.clip_error),
            number(m.round_error),
            m.nonfinite
        );
        for c in &cols {
            let v = t.schemes.get(*c).and_then(|r| r.as_ref().ok()).map(|m| m.sqnr_db);
            let _ = write!(out, ",{}", optional(v));
        }
        out.push('\n');
    }
    out
}

/// `with_params` (adding slice, scale, zero_point, offset, lo, hi).
pub fn report_rows(records: &[TensorReport], with_params: bool) -> String {
    let mut out = String::from(REPORT_HEADER);
    if with_params {
        out.push_str(",slice,scale,zero_point,offset,lo,hi");
    }
    out.push('\n');
    for r in records {
        let line = report_line(r);
        match (&r.params, with_params) {
            (Some(params), true) => {
                for (i, p) in params.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{line},{i},{},{},{},{},{}",
                        number_f32(p.scale),
                        p.zero_point,
                        number_f32(p.offset),
                        number_f32(p.lo),
                        number_f32(p.hi)
                    );
                }
            }
            (None, true) => {
                let _ = writeln!(out, "{line},,,,,,");
            }
            _ => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

/// The per-tensor fields of one report row.
fn report_line(r: &TensorReport) -> String {
    let shape = r.shape.iter().map(ToString::to_string).collect::<Vec<_>>().join("x");
    let mut row = vec![
        field(&r.name),
        field(&r.dtype),
        shape,
        r.numel.to_string(),
        r.quantized.to_string(),
        field(r.reason.as_deref().unwrap_or("")),
        field(r.fallback.as_deref().unwrap_or("")),
    ];
    match &r.metrics {
        Some(m) => row.extend([
            m.count.to_string(),
            number(m.mse),
            number(m.rmse),
            number(m.sqnr_db),
            number(m.max_abs_err),
            number(m.cosine),
            number(m.clipped_fraction),
            number(m.clip_error),
            number(m.round_error),
            m.nonfinite.to_string(),
        ]),
        None => row.extend(std::iter::repeat_n(String::new(), 10)),
    }
    row.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::sweep::{Cell, Row, SchemeTotals};

    #[test]
    fn one_rule_for_numbers() {
        assert_eq!(number(f64::INFINITY), "inf");
        assert_eq!(number(f64::NEG_INFINITY), "-inf");
        assert_eq!(number(f64::NAN), "nan");
        assert_eq!(number(-0.25), "-0.25");
        assert_eq!(number_f32(0.1), "0.1");
        assert_eq!(number_f32(f32::NEG_INFINITY), "-inf");
        assert_eq!(optional(None), "");
    }

    #[test]
    fn fields_are_quoted_when_needed() {
        assert_eq!(field("a.weight"), "a.weight");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn every_writer_prints_infinity_the_same_way() {
        let lossless = Metrics { sqnr_db: f64::INFINITY, cosine: 1.0, ..Metrics::default() };
        let cell = Cell { metrics: lossless, stored_bytes: 4, slices: 1, fallback: None };
        let s = Sweep {
            schemes: vec!["int8:tensor:minmax".into()],
            rows: vec![
                Row { name: "x,y".into(), params: 4, source_bytes: 16, cells: vec![Ok(cell)] },
                Row { name: "z".into(), params: 4, source_bytes: 16, cells: vec![Err("no axis".into())] },
            ],
            totals: vec![SchemeTotals {
                scheme: "int8:tensor:minmax".into(),
                model_bytes: 20,
                quantized_bytes: 4,
                params_quantized: 4,
                params_total: 8,
                quantized_share: 0.5,
                model_sqnr_db: None,
                mean_layer_sqnr_db: None,
                worst_sqnr_db: Some(f64::INFINITY),
                worst_layer: None,
            }],
        };
        assert_eq!(matrix(&s), "name,params,int8:tensor:minmax\n\"x,y\",4,inf\nz,4,\n");
        assert_eq!(ranked(&s, 0, &[1, 0]).lines().nth(2), Some("\"x,y\",4,int8:tensor:minmax,inf,0,1,0"));
        assert!(totals(&s).ends_with("0.5,,,inf,\n"), "{}", totals(&s));
        let rec = TensorReport {
            name: "x".into(),
            dtype: "F32".into(),
            shape: vec![2, 2],
            numel: 4,
            quantized: true,
            reason: None,
            fallback: None,
            metrics: Some(lossless),
            params: None,
            elapsed_ms: None,
            stored: None,
        };
        let text = report_rows(&[rec], false);
        assert_eq!(text.lines().nth(1), Some("x,F32,2x2,4,true,,,0,0,0,inf,0,1,0,0,0,0"));
    }
}
