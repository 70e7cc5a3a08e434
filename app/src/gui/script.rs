//! A start-up script for documentation screenshots and demos: the environment
//! variable `QUANTSCOPE_SCRIPT` holds `;`-separated steps that run once the
//! model has opened, each turned into ordinary [`Command`]s (so a script can do
//! nothing a user cannot).
//!
//! Steps: `select NAME`, `scheme SHORT` (the model's), `layer SHORT` (the
//! selected layer's own), `preview NAME SHORT`, `view layer|sensitivity|plan`,
//! `schemes SHORT,SHORT,...` (the Sensitivity view's set, the Plan view's candidates),
//! `matrix` (the sensitivity view's matrix table), `all-calibrations`, `grid`,
//! `log`, `pick VALUE` (the worked example's R), `save-window`, `compare PATH`
//! (pair a quantized checkpoint with the open model), `published` (show its R′),
//! `activations PATH` (load a saved capture).

use quantscope_engine::Scheme;

use super::command::Command;
use super::state::{Prefs, View};

/// One parsed step.
#[derive(Clone, Debug)]
pub enum Step {
    Command(Command),
    /// Turn a drawing option on.
    Pref(fn(&mut Prefs)),
    /// Show the matrix table in the sensitivity view.
    Matrix,
    /// Give the selected layer its own scheme.
    LayerScheme(Scheme),
}

fn scheme(s: &str) -> Result<Scheme, String> {
    s.parse::<Scheme>().map_err(|e| e.to_string())
}

/// Parses a script; an unknown step is an error naming it.
pub fn parse(script: &str) -> Result<Vec<Step>, String> {
    script
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|step| {
            let (verb, arg) = step.split_once(' ').map_or((step, ""), |(v, a)| (v, a.trim()));
            Ok(match verb {
                "select" => Step::Command(Command::Select(arg.into())),
                "scheme" => Step::Command(Command::SetModelScheme(scheme(arg)?)),
                "layer" => Step::LayerScheme(scheme(arg)?),
                "preview" => {
                    let (layer, s) = arg.split_once(' ').ok_or("preview needs NAME SHORT")?;
                    Step::Command(Command::Preview { layer: layer.into(), scheme: scheme(s.trim())? })
                }
                "view" if arg == "sensitivity" => Step::Command(Command::SetView(View::Sensitivity)),
                "view" if arg == "layer" => Step::Command(Command::SetView(View::Layer)),
                "view" if arg == "plan" => Step::Command(Command::SetView(View::Plan)),
                "matrix" => Step::Matrix,
                "schemes" => Step::Command(Command::SetCompareSchemes(
                    arg.split(',').map(|x| scheme(x.trim())).collect::<Result<_, _>>()?,
                )),
                "all-calibrations" => Step::Pref(|p| p.show_all_calibrations = true),
                "grid" => Step::Pref(|p| p.show_grid = true),
                "log" => Step::Pref(|p| p.log_counts = true),
                "pick" => Step::Command(Command::PickValue(arg.parse().map_err(|_| format!("pick: {arg}"))?)),
                "save-window" => Step::Command(Command::ShowSaveWindow),
                "compare" => Step::Command(Command::Compare { original: None, quantized: arg.into() }),
                "published" => Step::Command(Command::ShowPublished(true)),
                "activations" => Step::Command(Command::LoadActivations(arg.into())),
                _ => return Err(format!("QUANTSCOPE_SCRIPT: unknown step '{step}'")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_step_and_names_a_bad_one() {
        let steps = parse("select a.weight; scheme int8:tensor:minmax; layer e4m3:channel:mse; view sensitivity; matrix; all-calibrations; pick 0.25; save-window; view plan; schemes int4:channel:mse,int8:channel; activations a.safetensors").unwrap();
        assert_eq!(steps.len(), 11);
        assert!(
            matches!(&steps[10], Step::Command(Command::LoadActivations(p)) if p.ends_with("a.safetensors"))
        );
        assert!(matches!(&steps[9], Step::Command(Command::SetCompareSchemes(s)) if s.len() == 2));
        assert!(matches!(&steps[0], Step::Command(Command::Select(n)) if n == "a.weight"));
        let err = parse("select x; dance").unwrap_err();
        assert!(err.contains("'dance'"), "{err}");
        assert!(parse("scheme int9:tensor").is_err());
    }
}
