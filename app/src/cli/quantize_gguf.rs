//! `quantscope quantize MODEL.gguf OUT.gguf`: GGUF in, GGUF out, as
//! llama-quantize does it. The engine's `gguf::quantize` chooses each tensor's
//! type (a llama-quantize preset, `--tensor-type`, `--pure`, or `--scheme
//! q4_k`: that type everywhere it applies), quantizes and writes; this parses,
//! shows progress and prints which type each tensor got and why.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use quantscope_engine::gguf::imatrix::Imatrix;
use quantscope_engine::gguf::preset::{self, Preset, TensorType};
use quantscope_engine::gguf::quantize::{GgufSave, Saved, save};
use quantscope_engine::recipe::{LayerChoice, Recipe};

use super::output;
use super::progress::Console;
use super::quantize::QuantizeArgs;

/// The save `args` ask for. A recipe (e.g. `plan --output recipe`) names a
/// llama.cpp type per tensor; its model-wide scheme stands for `--scheme`.
fn plan(args: &QuantizeArgs) -> anyhow::Result<GgufSave> {
    let recipe = args.recipe.as_ref().map(|p| Recipe::load(p)?.resolve()).transpose()?;
    let scheme = match &recipe {
        Some(r) => r.scheme,
        None => args.scheme.scheme()?,
    };
    let (preset, pure) = match (&args.preset, scheme.format.ggml()) {
        (Some(p), _) => (p.parse::<Preset>()?, args.pure),
        // One type everywhere it applies: llama-quantize's --pure under that type.
        (None, Some(ty)) => (ty.name.parse::<Preset>()?, true),
        (None, None) => anyhow::bail!(
            "a GGUF model takes --preset NAME (Q4_K_M, Q8_0, …) or a llama.cpp type as --scheme (q4_k, …), not {scheme}"
        ),
    };
    let mut options = preset::Options::new(preset);
    options.pure = pure;
    options.tensor_types = args.tensor_type.iter().map(|s| TensorType::parse(s)).collect::<Result<_, _>>()?;
    options.token_embedding_type =
        args.token_embedding_type.as_deref().map(preset::ggml_type_named).transpose()?;
    options.output_tensor_type =
        args.output_tensor_type.as_deref().map(preset::ggml_type_named).transpose()?;
    options.leave_output_tensor = args.leave_output_tensor;
    let imatrix = match &args.imatrix {
        Some(p) => Some((p.clone(), Imatrix::open(p)?)),
        None => None,
    };
    options.imatrix = imatrix.is_some();
    let mut types = BTreeMap::new();
    for (name, choice) in recipe.iter().flat_map(|r| &r.layers) {
        let ty = match choice {
            LayerChoice::Quantize(s) => s.format.ggml().with_context(|| {
                format!("the recipe gives '{name}' {s}, which is not a llama.cpp type (q4_k, q8_0, …)")
            })?,
            LayerChoice::Exclude => continue,
        };
        types.insert(name.clone(), ty);
    }
    Ok(GgufSave { options, types, imatrix })
}

pub fn run(args: &QuantizeArgs, out: &mut dyn Write, console: &Console) -> anyhow::Result<()> {
    let save_as = plan(args)?;
    if args.out.exists() && !args.force {
        anyhow::bail!("{}: exists (--force replaces it)", args.out.display());
    }
    let saved = {
        let bar = console.bar("Quantizing", 0);
        save(&args.model, &args.out, &save_as, &|done, total| bar.set(done, total))
            .with_context(|| format!("saving {}", args.out.display()))?
    };
    if args.json {
        output::write_json(out, &saved)?;
    } else {
        write_summary(args, &saved, out)?;
    }
    Ok(())
}

fn write_summary(args: &QuantizeArgs, saved: &[Saved], out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "saved {}", args.out.display())?;
    let converted = saved.iter().filter(|s| s.from != s.to).count();
    writeln!(out, "  {converted} tensors converted, {} copied", saved.len() - converted)?;
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for s in saved.iter().filter(|s| s.from != s.to) {
        *by_type.entry(s.to).or_default() += 1;
    }
    let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
    writeln!(out, "  types: {}", types.join(", "))?;
    for s in saved.iter().filter(|s| s.from != s.to && !s.reason.is_empty()) {
        let weighted = if s.imatrix { " (imatrix)" } else { "" };
        writeln!(out, "  {}: {} -> {}{weighted}: {}", s.name, s.from, s.to, s.reason)?;
    }
    Ok(())
}
