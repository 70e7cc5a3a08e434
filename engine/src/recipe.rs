//! The per-layer recipe: a JSON file that records every choice made for a model
//! (the model-wide scheme, per-layer schemes and manual ranges, excluded layers),
//! so that the GUI can save and reload it and the export can apply it.
//!
//! ```json
//! {
//!   "quantscope_recipe": 1,
//!   "scheme": "int8:channel:minmax",
//!   "layers": {
//!     "encoder.layer.0.attention.self.query.weight": { "scheme": "int8:group64:mse:asym" },
//!     "encoder.layer.3.output.dense.weight": { "scheme": "int8:tensor:range-0.12,0.12" },
//!     "encoder.layer.5.output.dense.weight": { "calibration": "ratio0.8" },
//!     "pooler.dense.weight": { "exclude": true }
//!   }
//! }
//! ```
//!
//! A layer's `scheme` is the short form (`format:granularity:calibration[:asym]`,
//! missing parts take the model-wide scheme's). The single fields `format`,
//! `granularity`, `calibration` and `mapping` override one part each.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::scheme::{Mapping, Scheme};

/// The recipe file's version; a newer file is refused instead of misread.
pub const RECIPE_VERSION: u32 = 1;

/// One layer's entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LayerRecipe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping: Option<Mapping>,
    /// Leave this layer unquantized.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exclude: bool,
}

/// The whole recipe file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub quantscope_recipe: u32,
    /// The model-wide scheme, short form.
    pub scheme: String,
    #[serde(default)]
    pub layers: BTreeMap<String, LayerRecipe>,
}

/// What the recipe says about one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerChoice {
    Quantize(Scheme),
    Exclude,
}

/// A recipe with every scheme parsed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub scheme: Scheme,
    pub layers: BTreeMap<String, LayerChoice>,
}

impl Resolved {
    /// This tensor's choice: its own entry, else the model-wide scheme.
    pub fn choice(&self, name: &str) -> LayerChoice {
        self.layers.get(name).copied().unwrap_or(LayerChoice::Quantize(self.scheme))
    }

    /// Per-layer schemes that differ from the model-wide one.
    pub fn overrides(&self) -> BTreeMap<String, Scheme> {
        self.layers
            .iter()
            .filter_map(|(n, c)| match c {
                LayerChoice::Quantize(s) => Some((n.clone(), *s)),
                LayerChoice::Exclude => None,
            })
            .collect()
    }

    pub fn excluded(&self) -> BTreeSet<String> {
        self.layers.iter().filter(|(_, c)| **c == LayerChoice::Exclude).map(|(n, _)| n.clone()).collect()
    }
}

impl Recipe {
    /// The recipe for the GUI's state.
    pub fn from_choices(
        scheme: &Scheme,
        overrides: &BTreeMap<String, Scheme>,
        excluded: &BTreeSet<String>,
    ) -> Self {
        let mut layers: BTreeMap<String, LayerRecipe> = overrides
            .iter()
            .map(|(n, s)| (n.clone(), LayerRecipe { scheme: Some(s.to_string()), ..LayerRecipe::default() }))
            .collect();
        for n in excluded {
            layers.entry(n.clone()).or_default().exclude = true;
        }
        Self { quantscope_recipe: RECIPE_VERSION, scheme: scheme.to_string(), layers }
    }

    /// Parses every scheme; an error names the layer and the fault.
    pub fn resolve(&self) -> Result<Resolved> {
        if self.quantscope_recipe != RECIPE_VERSION {
            return Err(Error::Scheme(format!(
                "recipe version {} is not supported (this quantscope reads version {RECIPE_VERSION})",
                self.quantscope_recipe
            )));
        }
        let scheme: Scheme =
            self.scheme.parse().map_err(|e| Error::Scheme(format!("recipe \"scheme\": {e}")))?;
        let mut layers = BTreeMap::new();
        for (name, l) in &self.layers {
            let choice = if l.exclude {
                LayerChoice::Exclude
            } else {
                LayerChoice::Quantize(
                    l.scheme_over(&scheme).map_err(|e| Error::Scheme(format!("{name}: {e}")))?,
                )
            };
            layers.insert(name.clone(), choice);
        }
        Ok(Resolved { scheme, layers })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a quantscope recipe: {e}")))
    }

    /// Writes the recipe (pretty JSON) atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::format(path, format!("cannot encode: {e}")))?;
        text.push('\n');
        crate::write::write_atomic(path, text.as_bytes())
    }
}

impl LayerRecipe {
    /// This layer's scheme over the model-wide one.
    fn scheme_over(&self, base: &Scheme) -> Result<Scheme> {
        let mut s = match &self.scheme {
            Some(text) => Scheme::parse_over(text, base)?,
            None => *base,
        };
        if let Some(f) = &self.format {
            s.format = f.parse()?;
        }
        if let Some(g) = &self.granularity {
            s.granularity = g.parse()?;
        }
        if let Some(c) = &self.calibration {
            s.calibration = c.parse()?;
        }
        if let Some(m) = self.mapping {
            s.mapping = m;
        }
        s.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::{Calibration, FormatKind, Granularity, ManualRange};

    #[test]
    fn round_trips_through_json_and_the_gui_state() {
        let base: Scheme = "int8:channel:minmax".parse().unwrap();
        let overrides = BTreeMap::from([
            ("a.weight".to_string(), "int4:group64:mse:asym".parse().unwrap()),
            ("b.weight".to_string(), "e4m3:tensor:range-0.5,0.25".parse().unwrap()),
            ("c.weight".to_string(), "int8:channel:ratio0.75".parse().unwrap()),
        ]);
        let excluded = BTreeSet::from(["d.weight".to_string()]);
        let recipe = Recipe::from_choices(&base, &overrides, &excluded);
        let json = serde_json::to_string(&recipe).unwrap();
        let back: Recipe = serde_json::from_str(&json).unwrap();
        let resolved = back.resolve().unwrap();
        assert_eq!(resolved.scheme, base);
        assert_eq!(resolved.overrides(), overrides);
        assert_eq!(resolved.excluded(), excluded);
        assert_eq!(resolved.choice("other.weight"), LayerChoice::Quantize(base));
        let b = overrides["b.weight"];
        assert_eq!(b.calibration, Calibration::Manual(ManualRange::Range { lo: -0.5, hi: 0.25 }));
    }

    #[test]
    fn single_fields_override_one_part_and_errors_name_the_layer() {
        let text = r#"{"quantscope_recipe": 1, "scheme": "int8:channel:mse",
            "layers": {"x.weight": {"calibration": "p99.9", "mapping": "asymmetric"},
                       "y.weight": {"scheme": "e5m2"}}}"#;
        let r: Recipe = serde_json::from_str(text).unwrap();
        let res = r.resolve().unwrap();
        let LayerChoice::Quantize(x) = res.choice("x.weight") else { panic!() };
        assert_eq!(x.calibration, Calibration::Percentile { p: 99.9 });
        assert_eq!((x.mapping, x.granularity), (Mapping::Asymmetric, Granularity::Channel { axis: 0 }));
        let LayerChoice::Quantize(y) = res.choice("y.weight") else { panic!() };
        assert_eq!((y.format, y.calibration), (FormatKind::E5M2, Calibration::Mse));

        let bad = r#"{"quantscope_recipe": 1, "scheme": "int8", "layers": {"z.weight": {"scheme": "int9"}}}"#;
        let err = serde_json::from_str::<Recipe>(bad).unwrap().resolve().unwrap_err().to_string();
        assert!(err.contains("z.weight") && err.contains("int9"), "{err}");
        let typo = r#"{"quantscope_recipe": 1, "scheme": "int8", "layers": {"z.weight": {"exclued": true}}}"#;
        assert!(serde_json::from_str::<Recipe>(typo).is_err());
        let future = r#"{"quantscope_recipe": 2, "scheme": "int8"}"#;
        assert!(serde_json::from_str::<Recipe>(future).unwrap().resolve().is_err());
    }
}
