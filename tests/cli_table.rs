//! The command line's reading habits end to end: `--output table` (aligned
//! columns, worst first, totals last) for report, report --compare, plan and
//! diff; piped output unchanged; the scheme flags worded by the engine's
//! vocabulary (`--calibration hqq`); the app and the CLI naming a calibration
//! alike.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::{quantscope, stdout_json, teaching};
use quantscope_engine::scheme::CALIBRATIONS;
use quantscope_engine::{Granularity, Scheme};

fn sample() -> String {
    teaching().to_str().unwrap().to_string()
}

fn stdout_text(args: &[&str]) -> String {
    let out = quantscope(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A table's lines: the header, its rule, the rows, the rule again, the totals
/// and, after a blank line, the caption.
struct Parsed<'a> {
    header: &'a str,
    rows: Vec<&'a str>,
    totals: Vec<&'a str>,
}

fn parse(text: &str) -> Parsed<'_> {
    let lines: Vec<&str> = text.lines().collect();
    let rules: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with('─')).collect();
    assert_eq!(rules.len(), 2, "a rule under the header and one over the totals:\n{text}");
    assert_eq!(rules[0], 1, "{text}");
    assert_eq!(lines[rules[0]], lines[rules[1]], "{text}");
    // Totals, then a blank line and the caption.
    let totals = lines[rules[1] + 1..].iter().take_while(|l| !l.is_empty()).copied().collect();
    Parsed { header: lines[0], rows: lines[2..rules[1]].to_vec(), totals }
}

/// Where a right-aligned column named `name` ends, in characters.
fn column_end(header: &str, name: &str) -> usize {
    let at = header.find(name).unwrap_or_else(|| panic!("no column {name} in {header}"));
    header[..at].chars().count() + name.chars().count()
}

/// The text of a right-aligned column that ends at `end`: the word before it.
fn cell_ending_at(line: &str, end: usize) -> &str {
    let byte_end = line.char_indices().nth(end).map_or(line.len(), |(b, _)| b);
    let head = &line[..byte_end];
    assert!(
        line[byte_end..].is_empty() || line[byte_end..].starts_with(' '),
        "a cell runs past its column's end in {line:?}"
    );
    head.rsplit(' ').next().unwrap()
}

fn sqnr(cell: &str) -> f64 {
    match cell {
        "∞" => f64::INFINITY,
        "—" => f64::NAN,
        x => x.parse().unwrap_or_else(|_| panic!("not a number: {x:?}")),
    }
}

#[test]
fn a_report_table_is_aligned_worst_first_with_totals_last() {
    let text = stdout_text(&["report", &sample(), "--output", "table"]);
    let t = parse(&text);
    let end = column_end(t.header, "SQNR dB");
    let values: Vec<f64> = t.rows.iter().map(|l| sqnr(cell_ending_at(l, end))).collect();
    let measured: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    assert!(measured.len() >= 5, "{text}");
    assert!(measured.windows(2).all(|w| w[0] <= w[1]), "worst (lowest SQNR) first:\n{text}");
    // Unmeasured tensors (— in the column) come after every measured one.
    let first_gap = values.iter().position(|v| v.is_nan()).unwrap_or(values.len());
    assert!(values[first_gap..].iter().all(|v| v.is_nan()), "{text}");
    // Every row's name starts at column 0 and its SQNR ends under the header's.
    let report = stdout_json(&quantscope(&["report", &sample()]));
    let worst = report["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| Some((t["name"].as_str()?, t["metrics"]["sqnr_db"].as_f64()?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(t.rows[0].starts_with(worst.0), "{text}");
    assert_eq!(cell_ending_at(t.rows[0], end), format!("{:.1}", worst.1));
    assert!(t.totals[0].starts_with("model SQNR"), "{text}");
    assert!(t.totals[1].starts_with("mean layer SQNR"), "{text}");
    assert!(t.totals[2].starts_with("worst") && t.totals[2].ends_with(worst.0), "{text}");
    assert!(text.trim_end().ends_with("(INT8, symmetric, per-channel (axis 0), min-max)"), "{text}");
}

#[test]
fn piped_output_is_json_as_before_and_table_only_when_asked() {
    let piped = quantscope(&["report", &sample()]);
    let json = quantscope(&["report", &sample(), "--output", "json"]);
    assert_eq!(piped.stdout, json.stdout);
    assert!(piped.stderr.is_empty(), "no bars on a pipe: {}", String::from_utf8_lossy(&piped.stderr));
    let quiet = quantscope(&["report", "-q", &sample()]);
    assert_eq!(quiet.stdout, json.stdout);
    let quiet_after = quantscope(&["report", &sample(), "--quiet"]);
    assert_eq!(quiet_after.stdout, json.stdout);
}

#[test]
fn compare_plan_and_diff_tables_rank_and_total() {
    let s = sample();
    let text =
        stdout_text(&["report", &s, "--compare", "int8:tensor", "int4:group32:mse", "--output", "table"]);
    let t = parse(&text);
    let end = column_end(t.header, "int8:tensor:minmax dB");
    let first: Vec<f64> = t.rows.iter().map(|l| sqnr(cell_ending_at(l, end))).collect();
    assert!(first.windows(2).all(|w| w[0] <= w[1]), "{text}");
    assert!(t.totals.iter().any(|l| l.starts_with("model SQNR")), "{text}");
    assert!(t.totals.iter().any(|l| l.starts_with("mean layer SQNR")), "{text}");
    assert!(t.totals.iter().any(|l| l.starts_with("model size")), "{text}");

    let text = stdout_text(&["plan", &s, "--bits-per-weight", "6", "--output", "table"]);
    let t = parse(&text);
    assert!(t.totals[0].starts_with("total, "), "{text}");
    assert!(text.contains("budget"), "{text}");
    let plan = stdout_json(&quantscope(&["plan", &s, "--bits-per-weight", "6"]));
    assert_eq!(t.rows.len(), plan["layers"].as_array().unwrap().len(), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("saved");
    let saved = saved.to_str().unwrap();
    stdout_text(&["quantize", &s, saved, "--scheme", "int4:group32:minmax:asym"]);
    let text = stdout_text(&["diff", &s, saved, "--compare", "int8:channel", "--output", "table"]);
    let t = parse(&text);
    let end = column_end(t.header, "published dB");
    let published: Vec<f64> = t.rows.iter().map(|l| sqnr(cell_ending_at(l, end))).collect();
    assert!(!published.is_empty() && published.windows(2).all(|w| w[0] <= w[1]), "{text}");
    assert!(t.totals[0].starts_with("model SQNR"), "{text}");
}

#[test]
fn calibration_hqq_is_a_flag_value_like_the_others() {
    let flags = stdout_json(&quantscope(&["report", &sample(), "--calibration", "hqq"]));
    let short = stdout_json(&quantscope(&["report", &sample(), "--scheme", "int8:channel:hqq:asym"]));
    assert_eq!(flags["scheme"]["short"], "int8:channel:hqq:asym");
    assert_eq!(flags, short);
    let four = stdout_json(&quantscope(&[
        "report",
        &sample(),
        "--format",
        "int4",
        "--granularity",
        "group",
        "--group-size",
        "32",
        "--calibration",
        "hqq",
    ]));
    assert_eq!(four["scheme"]["short"], "int4:group32:hqq:asym");
    // A mapping that HQQ cannot take is refused in one line.
    let out = quantscope(&["report", &sample(), "--calibration", "hqq", "--mapping", "symmetric"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("asymmetric") && err.lines().count() == 1, "{err}");
}

#[test]
fn the_app_and_the_cli_name_every_calibration_alike() {
    for c in CALIBRATIONS {
        let scheme = Scheme {
            mapping: c.mapping.unwrap_or_default(),
            granularity: Granularity::Tensor,
            calibration: c.default,
            ..Scheme::default()
        };
        let short = scheme.to_string();
        let text = stdout_text(&["report", &sample(), "--scheme", &short, "--output", "table"]);
        let app = quantscope::gui::panels::calibration_label(&c.default);
        let caption = text.lines().last().unwrap();
        assert!(
            caption.ends_with(&format!(", {app})")),
            "{short}: the app says {app:?}, the CLI {caption:?}"
        );
    }
}

#[test]
fn a_sensitivity_table_ranks_by_end_to_end_damage() {
    let Some(dir) = common::minilm() else { return };
    let text = stdout_text(&[
        "sensitivity",
        dir.to_str().unwrap(),
        "--max-samples",
        "4",
        "--tensors",
        r"layer\.0\.(attention\.self\.query|output\.dense)",
        "--output",
        "table",
    ]);
    let t = parse(&text);
    assert_eq!(t.rows.len(), 2, "{text}");
    let end = column_end(t.header, "cosine");
    let cos: Vec<f64> = t.rows.iter().map(|l| sqnr(cell_ending_at(l, end))).collect();
    assert!(cos[0] <= cos[1], "lowest cosine (most damage) first:\n{text}");
    assert!(t.totals[0].contains("all 2 layers together"), "{text}");
}
