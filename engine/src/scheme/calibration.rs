//! The calibration methods a scheme can name: `Calibration`, its short form
//! (`minmax`, `p99.9`, `ratio0.8`) and its entry in [`CALIBRATIONS`] (label,
//! parameter, description). A new method is named here; it runs in
//! `calibrate/`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Mapping, names};
use crate::error::{Error, Result};

/// How each slice's clipping range is chosen (see `calibrate`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Calibration {
    MinMax,
    /// p in percent, e.g. 99.9.
    Percentile {
        p: f64,
    },
    Mse,
    Entropy,
    /// Half-Quadratic Quantization (mobiusml/hqq): Z optimized under an ℓp norm
    /// (p = 0.7) for min-max's S, saved as an integer Z near it with S refit by
    /// least squares. Asymmetric INT only (see `calibrate::hqq`).
    Hqq,
    Manual(ManualRange),
    /// GPTQ (Frantar et al.): min-max ranges, then the columns quantized one at
    /// a time, each one's rounding error moved onto the columns not yet done
    /// through the layer's input second moments (see `gptq`). Needs the
    /// layer's inputs: a weight alone cannot be analysed under it.
    Gptq,
    /// AWQ (Lin et al.): per-input-channel scales searched on the layer's
    /// inputs, folded into the layer before it, then min-max ranges of the
    /// scaled weight (see `awq`). Needs a model run: decoders only.
    Awq,
}

/// A hand-set clipping range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManualRange {
    /// Per-tensor: exactly [lo, hi] (±max(|lo|, |hi|) when symmetric).
    Range { lo: f32, hi: f32 },
    /// Any granularity: each slice's min-max range times `r` ∈ (0, 1].
    Ratio { r: f32 },
}

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MinMax => f.write_str("minmax"),
            Self::Percentile { p } => write!(f, "p{p}"),
            Self::Mse => f.write_str("mse"),
            Self::Entropy => f.write_str("entropy"),
            Self::Hqq => f.write_str("hqq"),
            Self::Gptq => f.write_str("gptq"),
            Self::Awq => f.write_str("awq"),
            Self::Manual(ManualRange::Ratio { r }) => write!(f, "ratio{r}"),
            Self::Manual(ManualRange::Range { lo, hi }) => write!(f, "range{lo},{hi}"),
        }
    }
}

impl FromStr for Calibration {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad =
            || Error::Scheme(format!("unknown calibration '{s}' ({})", names(CALIBRATIONS.map(|c| c.short))));
        match s {
            "minmax" => Ok(Self::MinMax),
            "mse" => Ok(Self::Mse),
            "entropy" | "kl" => Ok(Self::Entropy),
            "hqq" => Ok(Self::Hqq),
            "gptq" => Ok(Self::Gptq),
            "awq" => Ok(Self::Awq),
            _ => {
                if let Some(p) = s.strip_prefix("percentile").or_else(|| s.strip_prefix('p')) {
                    Ok(Self::Percentile { p: p.parse().map_err(|_| bad())? })
                } else if let Some((lo, hi)) = s.strip_prefix("range").and_then(|r| r.split_once(',')) {
                    let (lo, hi) = (lo.parse().map_err(|_| bad())?, hi.parse().map_err(|_| bad())?);
                    Ok(Self::Manual(ManualRange::Range { lo, hi }))
                } else if let Some(r) = s.strip_prefix("ratio") {
                    Ok(Self::Manual(ManualRange::Ratio { r: r.parse().map_err(|_| bad())? }))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// A kind of calibration as the faces name it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CalibrationInfo {
    /// The kind's word: the CLI's `--calibration` value and the report's `calibration`.
    pub name: &'static str,
    /// The short form's pattern (`pNN.N`).
    pub short: &'static str,
    /// How the app and the tables name the kind (`KL-entropy`).
    pub label: &'static str,
    /// What its parameter is, if it takes one.
    pub parameter: Option<&'static str>,
    pub description: &'static str,
    /// The calibration the name alone selects (a parameter at its default).
    pub default: Calibration,
    /// The one mapping it works with, if it needs one (HQQ's zero point).
    pub mapping: Option<Mapping>,
}

/// Every kind of calibration: the automatic ones, then the hand-set range.
pub const CALIBRATIONS: [CalibrationInfo; 8] = [
    CalibrationInfo {
        name: "minmax",
        short: "minmax",
        label: "min-max",
        parameter: None,
        description: "each slice's min and max: nothing is clipped",
        default: Calibration::MinMax,
        mapping: None,
    },
    CalibrationInfo {
        name: "percentile",
        short: "pNN.N",
        label: "percentile",
        parameter: Some("p (%), in (50, 100]"),
        description: "clip at the p-th percentile of the magnitudes (of each end when asymmetric)",
        default: Calibration::Percentile { p: 99.9 },
        mapping: None,
    },
    CalibrationInfo {
        name: "mse",
        short: "mse",
        label: "MSE",
        parameter: None,
        description: "the clip range with the least mean squared error",
        default: Calibration::Mse,
        mapping: None,
    },
    CalibrationInfo {
        name: "entropy",
        short: "entropy",
        label: "KL-entropy",
        parameter: None,
        description: "TensorRT's threshold: the least KL divergence between the histograms",
        default: Calibration::Entropy,
        mapping: None,
    },
    CalibrationInfo {
        name: "hqq",
        short: "hqq",
        label: "HQQ (zero point)",
        parameter: None,
        description: "Z optimized under an lp norm, saved as an integer Z with S refit (asymmetric INT only)",
        default: Calibration::Hqq,
        mapping: Some(Mapping::Asymmetric),
    },
    CalibrationInfo {
        name: "gptq",
        short: "gptq",
        label: "GPTQ",
        parameter: None,
        description: "min-max ranges, then each column's rounding error moved onto the columns not yet \
                      quantized, weighted by the layer's inputs (needs activations)",
        default: Calibration::Gptq,
        mapping: None,
    },
    CalibrationInfo {
        name: "awq",
        short: "awq",
        label: "AWQ",
        parameter: None,
        description: "per-channel scales searched on the inputs and folded into the layer before, then \
                      min-max ranges (runs the model: Llama, Qwen2, Mistral)",
        default: Calibration::Awq,
        mapping: None,
    },
    CalibrationInfo {
        name: "manual",
        short: "ratioR or rangeLO,HI",
        label: "manual",
        parameter: Some("ratio r in (0, 1], or a range [lo, hi]"),
        description: "by hand: each slice's min-max range times r, or one [lo, hi] for the tensor",
        default: Calibration::Manual(ManualRange::Ratio { r: 1.0 }),
        mapping: None,
    },
];

impl Calibration {
    pub fn info(&self) -> &'static CalibrationInfo {
        let i = match self {
            Self::MinMax => 0,
            Self::Percentile { .. } => 1,
            Self::Mse => 2,
            Self::Entropy => 3,
            Self::Hqq => 4,
            Self::Gptq => 5,
            Self::Awq => 6,
            Self::Manual(_) => 7,
        };
        &CALIBRATIONS[i]
    }

    /// The kind's label with its parameter: "percentile 99.9", "manual ×0.500".
    pub fn label(&self) -> String {
        match self {
            Self::Percentile { p } => format!("{} {p}", self.info().label),
            Self::Manual(ManualRange::Range { .. }) => format!("{} range", self.info().label),
            Self::Manual(ManualRange::Ratio { r }) => format!("{} ×{r:.3}", self.info().label),
            _ => self.info().label.to_string(),
        }
    }

    /// A kind's name alone (`percentile`) or a short form (`p99.5`, `kl`).
    pub fn parse_name_or_short(s: &str) -> crate::Result<Self> {
        match CALIBRATIONS.iter().find(|i| i.name == s) {
            Some(i) => Ok(i.default),
            None => s.parse(),
        }
    }
}
