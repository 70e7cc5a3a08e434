//! `quantscope sensitivity`: every Linear layer quantized alone, the model run
//! over the inputs, the output compared with the float model's; then every
//! layer together. The engine runs; this parses, shows progress and prints.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use quantscope_engine::export::quantized_on_save;
use quantscope_engine::run::sensitivity::{EndToEnd, Job, Reference, SensitivityReport, rankings};
use quantscope_engine::{Checkpoint, Scheme};

use super::args::parse_scheme;
use super::model_run;
use super::output::{self, Align, OutputArg, Table};
use super::progress::Console;

#[derive(clap::Args, Debug)]
pub struct SensitivityArgs {
    /// A Hugging Face folder (config.json, tokenizer.json, safetensors).
    pub model: PathBuf,
    /// Text file, one sample per line; `builtin` = the shipped calibration text.
    #[arg(long, value_name = "FILE", default_value = "builtin")]
    pub inputs: PathBuf,
    /// The scheme every layer is quantized under (short form).
    #[arg(long, default_value = "int8:channel:minmax", value_parser = parse_scheme)]
    pub scheme: Scheme,
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_samples: usize,
    /// Only layers whose name matches this regular expression.
    #[arg(long)]
    pub tensors: Option<regex::Regex>,
    /// table (on a terminal), json (when piped) or csv.
    #[arg(long, value_enum)]
    pub output: Option<OutputArg>,
}

#[derive(serde::Serialize)]
struct SensitivityDoc<'a> {
    model: String,
    scheme: String,
    inputs: String,
    #[serde(flatten)]
    report: &'a SensitivityReport,
}

pub fn run(args: &SensitivityArgs, out: &mut dyn Write, console: &Console) -> anyhow::Result<()> {
    let ckpt = Checkpoint::open(&args.model)?;
    let model = model_run::load(&ckpt, console)?;
    let (samples, source) = model_run::samples(&args.inputs, args.max_samples)?;
    let acts = model_run::capture_samples(&model, &samples, &source, console)?;
    let ids = samples.iter().map(|s| model.tokenize(s)).collect::<Result<Vec<_>, _>>()?;
    let reference = {
        let _spin = console.spinner("Reference");
        Reference::new(&model, ids)?
    };
    let layers: Vec<String> = model
        .linears()
        .into_iter()
        .filter(|l| ckpt.tensor(l).is_ok_and(|t| quantized_on_save(t, None)))
        .filter(|l| args.tensors.as_ref().is_none_or(|re| re.is_match(l)))
        .collect();
    let job = Job { ckpt: &ckpt, model: &model, acts: &acts, reference: &reference, scheme: &args.scheme };
    let report = {
        let bar = console.bar("Layers", layers.len() + 1);
        bar.message(format!("each quantized alone under {}, then all", args.scheme));
        job.run(&layers, &AtomicBool::new(false), &mut bar.callback())?
    };
    match OutputArg::resolve(args.output, console.stdout_terminal, OutputArg::Json) {
        OutputArg::Json => {
            let doc = SensitivityDoc {
                model: args.model.display().to_string(),
                scheme: args.scheme.to_string(),
                inputs: source,
                report: &report,
            };
            output::write_json(out, &doc)?;
        }
        OutputArg::Csv => write!(out, "{}", quantscope_engine::csv::end_to_end(&report))?,
        OutputArg::Table => {
            let mut t = table(&report);
            t.caption(format!(
                "{} under {}: {} samples, {} tokens; Spearman ρ, weight SQNR vs end to end: {}",
                args.model.display(),
                args.scheme,
                report.samples,
                report.tokens,
                report.spearman_weight_vs_end_to_end.map_or_else(|| "—".into(), |r| format!("{r:.2}"))
            ));
            t.write(out)?;
        }
    }
    Ok(())
}

/// The layers, most damaging end to end first; every layer together last.
fn table(r: &SensitivityReport) -> Table {
    let encoder = r.layers.iter().any(|l| l.end_to_end.cosine.is_some()) || r.all_layers.cosine.is_some();
    let mut head = vec![("#", Align::Right), ("layer", Align::Left)];
    if encoder {
        head.extend([("cosine", Align::Right), ("MSE", Align::Right)]);
    } else {
        head.push(("KL", Align::Right));
    }
    head.extend([
        ("weight SQNR dB", Align::Right),
        ("output SQNR dB", Align::Right),
        ("weight rank", Align::Right),
    ]);
    let mut t = Table::new(head);
    let e2e = |e: &EndToEnd| {
        if encoder { vec![output::cosine(e.cosine), output::sci(e.mse)] } else { vec![output::sci(e.kl)] }
    };
    let ranks = rankings(r);
    let mut order: Vec<usize> = (0..r.layers.len()).collect();
    order.sort_by_key(|&i| ranks[i].end_to_end);
    for i in order {
        let l = &r.layers[i];
        let mut cells = vec![ranks[i].end_to_end.to_string(), l.name.clone()];
        cells.extend(e2e(&l.end_to_end));
        cells.extend([
            output::db(Some(l.weight_sqnr_db)),
            output::db(Some(l.output_sqnr_db)),
            ranks[i].weight.to_string(),
        ]);
        t.row(cells);
    }
    let mut all = vec![String::new(), format!("all {} layers together", r.layers.len())];
    all.extend(e2e(&r.all_layers));
    all.extend([String::new(), String::new(), String::new()]);
    t.total(all);
    t
}
