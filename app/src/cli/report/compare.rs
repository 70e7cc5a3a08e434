//! `quantscope report --compare S1 S2 …`: the layers a save would quantize ×
//! the schemes, and each scheme's model totals, from one engine sweep.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use quantscope_engine::rank::Item;
use quantscope_engine::sweep::{self, SchemeTotals, Sweep};
use quantscope_engine::{Checkpoint, csv, export, run};

use super::super::model_run;
use super::super::output::{self, Align, OutputArg, Table};
use super::super::progress::Console;
use super::{ReportArgs, SortArg, order};

#[derive(serde::Serialize)]
struct CompareDoc<'a> {
    model: String,
    #[serde(flatten)]
    sweep: &'a Sweep,
}

pub(super) fn run(
    args: &ReportArgs,
    ckpt: &Checkpoint,
    format: OutputArg,
    sort: Option<SortArg>,
    out: &mut dyn Write,
    console: &Console,
) -> anyhow::Result<()> {
    let rows: Vec<usize> = ckpt
        .tensors()
        .iter()
        .enumerate()
        .filter(|(_, t)| match &args.tensors {
            Some(re) => t.is_quantizable() && re.is_match(&t.name),
            None => export::quantized_on_save(t, None),
        })
        .map(|(i, _)| i)
        .collect();
    let mut result = {
        let bar = console.bar("Sweeping", rows.len());
        bar.message(format!("{} layers × {} schemes", rows.len(), args.compare.len()));
        sweep::sweep(ckpt, &rows, &args.compare, &bar.callback(), &AtomicBool::new(false))?
    };
    let (inputs, saved) = (args.inputs.as_deref(), args.activations.as_deref());
    if let Some(acts) = model_run::activations_for(ckpt, inputs, saved, args.max_samples, console)? {
        let bar = console.bar("Output error", result.rows.len());
        run::output_error::add_to_sweep(ckpt, &acts, &args.compare, &mut result, &bar.callback())?;
    }
    order(&mut result.rows, sort, args.top, |r| Item {
        name: &r.name,
        params: r.params,
        metrics: r.cells.first().and_then(|c| c.as_ref().ok()).map(|c| &c.metrics),
    });
    match format {
        OutputArg::Json => {
            let doc = CompareDoc { model: args.model.display().to_string(), sweep: &result };
            output::write_json(out, &doc)?;
        }
        OutputArg::Csv => write!(out, "{}", csv::matrix(&result))?,
        OutputArg::Table => {
            let mut t = table(&result);
            t.caption(format!(
                "{}: {} layers under {} schemes",
                args.model.display(),
                result.rows.len(),
                result.schemes.len()
            ));
            t.write(out)?;
        }
    }
    Ok(())
}

/// A totals line: its name and how it reads a scheme's totals.
type TotalsRow = (&'static str, fn(&SchemeTotals) -> String);

/// SQNR per layer (rows as ordered) × scheme, with the output SQNR beside it
/// when inputs were given; each scheme's totals last.
fn table(s: &Sweep) -> Table {
    let with_output = (0..s.rows.len()).any(|r| {
        (0..s.schemes.len()).any(|k| s.cell_metrics(r, k).is_some_and(|m| m.output_sqnr_db.is_some()))
    });
    let mut head = vec![("layer".to_string(), Align::Left), ("params".to_string(), Align::Right)];
    head.extend(s.schemes.iter().map(|x| (format!("{x} dB"), Align::Right)));
    if with_output {
        head.extend(s.schemes.iter().map(|x| (format!("output {x} dB"), Align::Right)));
    }
    let mut t = Table::new(head);
    for (r, row) in s.rows.iter().enumerate() {
        let mut cells = vec![row.name.clone(), output::count(row.params)];
        let cell = |k: usize| match &row.cells[k] {
            Ok(c) => output::db(Some(c.metrics.sqnr_db)),
            Err(_) => "n/a".into(),
        };
        cells.extend((0..s.schemes.len()).map(cell));
        if with_output {
            cells.extend(
                (0..s.schemes.len()).map(|k| output::db(s.cell_metrics(r, k).and_then(|m| m.output_sqnr_db))),
            );
        }
        t.row(cells);
    }
    let pad = if with_output { s.schemes.len() } else { 0 };
    let totals: [TotalsRow; 5] = [
        ("model SQNR", |x| output::db(x.model_sqnr_db)),
        ("mean layer SQNR", |x| output::db(x.mean_layer_sqnr_db)),
        ("worst SQNR", |x| output::db(x.worst_sqnr_db)),
        ("quantized share of the params", |x| output::percent(Some(x.quantized_share), 1)),
        ("model size", |x| output::bytes(x.model_bytes)),
    ];
    for (what, f) in totals {
        let mut cells = vec![what.to_string(), String::new()];
        cells.extend(s.totals.iter().map(f));
        cells.extend(std::iter::repeat_n(String::new(), pad));
        t.total(cells);
    }
    t
}
