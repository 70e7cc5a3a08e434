//! What the user chooses: format, mapping, granularity and calibration, and the
//! short text form used by the CLI and recipes (`int8:channel:mse`). Each
//! format and calibration is named, with its label and description, in its own
//! file (`format.rs`, `calibration.rs`); mappings and granularities in
//! [`vocabulary`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod calibration;
mod format;
pub mod vocabulary;

pub use calibration::{CALIBRATIONS, Calibration, CalibrationInfo, ManualRange};
pub use format::{FORMATS, FormatInfo, FormatKind};
pub use vocabulary::{GRANULARITIES, GranularityInfo, MAPPINGS, MappingInfo};

/// The names of a vocabulary list, for error messages.
pub(crate) fn names<'a>(list: impl IntoIterator<Item = &'a str>) -> String {
    list.into_iter().collect::<Vec<_>>().join(", ")
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mapping {
    #[default]
    Symmetric,
    Asymmetric,
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Symmetric => "symmetric",
            Self::Asymmetric => "asymmetric",
        })
    }
}

/// Which elements share one (S, Z).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Granularity {
    Tensor,
    /// One (S, Z) per index along `axis` (0 = output channel).
    Channel {
        axis: usize,
    },
    /// Rows of the `[dim0, rest]` view cut into groups of `size`; the last may be short.
    Group {
        size: usize,
    },
    /// `size`×`size` tiles of the `[dim0, rest]` view (DeepSeek-style FP8 blocks);
    /// tiles at the bottom and right edges may be partial.
    Block {
        size: usize,
    },
}

/// A complete quantization scheme.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scheme {
    pub format: FormatKind,
    pub mapping: Mapping,
    pub granularity: Granularity,
    pub calibration: Calibration,
}

impl Default for Scheme {
    /// INT8, symmetric, per output channel, min-max: the common weight-only baseline.
    fn default() -> Self {
        Self {
            format: FormatKind::INT8,
            mapping: Mapping::Symmetric,
            granularity: Granularity::Channel { axis: 0 },
            calibration: Calibration::MinMax,
        }
    }
}

impl Scheme {
    /// Checks the parts that do not depend on a tensor's shape.
    pub fn validate(&self) -> Result<()> {
        if let FormatKind::Int(b) = self.format
            && !(2..=8).contains(&b)
        {
            return Err(Error::Scheme(format!("INT{b}: 2 to 8 bits are supported")));
        }
        if let Granularity::Group { size: 0 } | Granularity::Block { size: 0 } = self.granularity {
            return Err(Error::Scheme("group or block size must be at least 1".into()));
        }
        self.validate_layout()?;
        match self.calibration {
            Calibration::Percentile { p } if !(p > 50.0 && p <= 100.0) => {
                Err(Error::Scheme(format!("percentile {p} must be in (50, 100]")))
            }
            Calibration::Manual(ManualRange::Ratio { r }) if !(r > 0.0 && r <= 1.0) => {
                Err(Error::Scheme(format!("manual ratio {r} must be in (0, 1]")))
            }
            Calibration::Hqq
                if !(matches!(self.format, FormatKind::Int(_)) && self.mapping == Mapping::Asymmetric) =>
            {
                Err(Error::Scheme(format!(
                    "hqq optimizes an integer zero point: it needs an asymmetric INT scheme, e.g. {}:{}:hqq:asym",
                    if self.format.is_fp8() { FormatKind::Int(4) } else { self.format },
                    self.granularity
                )))
            }
            Calibration::Manual(ManualRange::Range { lo, hi })
                if !(lo.is_finite() && hi.is_finite() && lo <= hi) =>
            {
                Err(Error::Scheme(format!("manual range [{lo}, {hi}] must be finite with lo ≤ hi")))
            }
            _ => Ok(()),
        }
    }
}

impl Scheme {
    /// The scheme that chooses this one's slice parameters from the weight
    /// alone: GPTQ's are min-max's, and its error compensation then moves the
    /// codes (`gptq`); AWQ's are min-max's of the smoothed weight (`awq`).
    #[must_use]
    pub fn range_scheme(&self) -> Self {
        match self.calibration {
            Calibration::Gptq | Calibration::Awq => Self { calibration: Calibration::MinMax, ..*self },
            _ => *self,
        }
    }

    /// The nearest scheme [`Scheme::validate`] accepts after one part changed (the
    /// GUI edits one widget at a time): a microscaling format takes its group and
    /// the symmetric mapping, blocks fall back to per-channel outside FP8, HQQ to
    /// min-max outside INT and to the asymmetric mapping it needs.
    #[must_use]
    pub fn fitted(mut self) -> Self {
        if let Some(g) = self.format.fixed_group() {
            self.granularity = Granularity::Group { size: g };
            self.mapping = self.format.fixed_mapping().unwrap_or(Mapping::Symmetric);
            if self.format.ggml().is_some() {
                self.calibration = Calibration::MinMax;
            }
        } else if matches!(self.granularity, Granularity::Block { .. }) && !self.format.is_fp8() {
            self.granularity = Granularity::Channel { axis: 0 };
        }
        if self.calibration == Calibration::Hqq {
            if matches!(self.format, FormatKind::Int(_)) {
                self.mapping = Mapping::Asymmetric;
            } else {
                self.calibration = Calibration::MinMax;
            }
        }
        self
    }

    /// Microscaling formats have one group size and no zero point; blocks are an
    /// FP8 layout.
    fn validate_layout(&self) -> Result<()> {
        if let Some(g) = self.format.fixed_group() {
            if self.granularity != (Granularity::Group { size: g }) {
                return Err(Error::Scheme(format!(
                    "{} is defined with groups of {g}: use {}:group{g} (or just {})",
                    self.format, self.format, self.format
                )));
            }
            if let Some(m) = self.format.fixed_mapping()
                && self.mapping != m
            {
                let why = if m == Mapping::Symmetric {
                    "has no zero point: symmetric only"
                } else {
                    "stores a min"
                };
                return Err(Error::Scheme(format!("{} {why}", self.format)));
            }
            if self.format.ggml().is_some() && self.calibration != Calibration::MinMax {
                return Err(Error::Scheme(format!(
                    "{} chooses its scales by llama.cpp's own search: it takes no calibration",
                    self.format
                )));
            }
        }
        if matches!(self.granularity, Granularity::Block { .. }) && !self.format.is_fp8() {
            return Err(Error::Scheme(format!(
                "block granularity is an FP8 layout (e4m3:block128); {} takes tensor, channel or group",
                self.format
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tensor => f.write_str("tensor"),
            Self::Channel { axis: 0 } => f.write_str("channel"),
            Self::Channel { axis } => write!(f, "channel{axis}"),
            Self::Group { size } => write!(f, "group{size}"),
            Self::Block { size } => write!(f, "block{size}"),
        }
    }
}

impl fmt::Display for Scheme {
    /// `format:granularity:calibration[:asym]`, the inverse of `FromStr`.
    /// A llama.cpp type is its name alone (`q4_k`): it has no other choice.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.format.ggml().is_some() {
            return write!(f, "{}", self.format);
        }
        write!(f, "{}:{}:{}", self.format, self.granularity, self.calibration)?;
        if self.mapping == Mapping::Asymmetric {
            f.write_str(":asym")?;
        }
        Ok(())
    }
}

impl FromStr for Granularity {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            let forms = GRANULARITIES
                .iter()
                .flat_map(|g| if g.name == g.short { vec![g.name] } else { vec![g.name, g.short] });
            let kinds = names(forms);
            Error::Scheme(format!("unknown granularity '{s}' ({kinds})"))
        };
        if s == "tensor" {
            Ok(Self::Tensor)
        } else if let Some(rest) = s.strip_prefix("channel") {
            let axis = if rest.is_empty() { 0 } else { rest.parse().map_err(|_| bad())? };
            Ok(Self::Channel { axis })
        } else if let Some(rest) = s.strip_prefix("group") {
            let size = if rest.is_empty() { 128 } else { rest.parse().map_err(|_| bad())? };
            Ok(Self::Group { size })
        } else if let Some(rest) = s.strip_prefix("block") {
            let size = if rest.is_empty() { 128 } else { rest.parse().map_err(|_| bad())? };
            Ok(Self::Block { size })
        } else {
            Err(bad())
        }
    }
}

impl FromStr for Mapping {
    type Err = Error;
    fn from_str(m: &str) -> Result<Self> {
        match m {
            "sym" | "symmetric" => Ok(Self::Symmetric),
            "asym" | "asymmetric" => Ok(Self::Asymmetric),
            _ => Err(Error::Scheme(format!("unknown mapping '{m}' ({})", names(MAPPINGS.map(|m| m.short))))),
        }
    }
}

impl Scheme {
    /// Parses the short form over `base`: parts left out keep `base`'s choice.
    pub fn parse_over(s: &str, base: &Self) -> Result<Self> {
        let mut parts = s.split(':');
        let mut scheme = Self { format: parts.next().unwrap_or_default().parse()?, ..*base };
        // A microscaling format brings its own group and mapping unless told
        // otherwise; a llama.cpp type brings everything.
        if let Some(g) = scheme.format.fixed_group() {
            scheme.granularity = Granularity::Group { size: g };
            scheme.mapping = scheme.format.fixed_mapping().unwrap_or(Mapping::Symmetric);
        }
        if scheme.format.ggml().is_some() {
            scheme.calibration = Calibration::MinMax;
            if parts.next().is_some() {
                return Err(Error::Scheme(format!(
                    "{} is a llama.cpp type: it takes no ':' parts",
                    scheme.format
                )));
            }
        }
        if let Some(g) = parts.next() {
            scheme.granularity = g.parse()?;
        }
        if let Some(c) = parts.next() {
            scheme.calibration = c.parse()?;
        }
        if let Some(m) = parts.next() {
            scheme.mapping = m.parse()?;
        }
        if parts.next().is_some() {
            return Err(Error::Scheme(format!("'{s}' has too many ':' parts")));
        }
        scheme.validate()?;
        Ok(scheme)
    }
}

impl FromStr for Scheme {
    type Err = Error;
    /// Parses `format[:granularity[:calibration[:sym|asym]]]`, e.g. `int8:channel:mse`,
    /// `e4m3:tensor:minmax`, `int4:group128:p99.9:asym`. Missing parts take the defaults.
    fn from_str(s: &str) -> Result<Self> {
        Self::parse_over(s, &Self::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_syntax_round_trips() {
        for s in [
            "int8:channel:minmax",
            "e4m3:tensor:mse",
            "int4:group128:p99.9:asym",
            "e5m2:channel1:entropy",
            "int8:tensor:ratio0.5",
            "int8:tensor:range-0.25,0.5",
            "int4:group64:hqq:asym",
            "int8:channel:hqq:asym",
            "int4:group128:gptq",
            "nvfp4:group16:gptq",
            "nvfp4:group16:minmax",
            "mxfp4:group32:mse",
            "mxfp8:group32:minmax",
            "e4m3:block128:minmax",
            "q4_k",
            "iq4_xs",
            "q8_0",
        ] {
            let scheme: Scheme = s.parse().unwrap();
            assert_eq!(scheme.to_string(), s);
        }
        let s: Scheme = "int8".parse().unwrap();
        assert_eq!(s, Scheme::default());
    }

    #[test]
    fn rejects_bad_parts() {
        assert!("int9:tensor".parse::<Scheme>().is_err());
        assert!("int8:rows".parse::<Scheme>().is_err());
        assert!("int8:group0".parse::<Scheme>().is_err());
        assert!("int8:tensor:p20".parse::<Scheme>().is_err());
        assert!("int8:tensor:minmax:sym:x".parse::<Scheme>().is_err());
        // HQQ optimizes an integer Z: symmetric or FP8 has none.
        let e = "int4:group64:hqq".parse::<Scheme>().unwrap_err().to_string();
        assert!(e.contains("int4:group64:hqq:asym"), "{e}");
        assert!("e4m3:channel:hqq:asym".parse::<Scheme>().is_err());
        // Microscaling formats keep their group; blocks are FP8 only.
        assert!("nvfp4:group32".parse::<Scheme>().is_err());
        assert!("mxfp4:group32:minmax:asym".parse::<Scheme>().is_err());
        assert!("int8:block128".parse::<Scheme>().is_err());
        // A llama.cpp type has no parts to choose.
        assert!("q4_k:group32".parse::<Scheme>().is_err());
        let q4k: Scheme = "Q4_K".parse().unwrap();
        assert_eq!((q4k.mapping, q4k.granularity), (Mapping::Asymmetric, Granularity::Group { size: 32 }));
        assert!(Scheme { calibration: Calibration::Mse, ..q4k }.validate().is_err());
    }

    #[test]
    fn fitted_schemes_validate() {
        for f in ["int4", "int8", "e4m3", "e5m2", "nvfp4", "mxfp4", "mxfp8", "q4_k", "q6_k", "q4_0"] {
            for g in ["tensor", "channel", "group64", "block128"] {
                for c in ["minmax", "hqq", "mse"] {
                    for m in [Mapping::Symmetric, Mapping::Asymmetric] {
                        let s = Scheme {
                            format: f.parse().unwrap(),
                            granularity: g.parse().unwrap(),
                            calibration: c.parse().unwrap(),
                            mapping: m,
                        };
                        let fit = s.fitted();
                        assert!(fit.validate().is_ok(), "{s} -> {fit}");
                        if s.validate().is_ok() {
                            assert_eq!(fit, s, "a valid scheme is left alone");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn microscaling_short_forms_take_their_group() {
        let s: Scheme = "nvfp4".parse().unwrap();
        assert_eq!(s.granularity, Granularity::Group { size: 16 });
        assert_eq!(s.to_string(), "nvfp4:group16:minmax");
        let s: Scheme = "mxfp8".parse().unwrap();
        assert_eq!(s.granularity, Granularity::Group { size: 32 });
        let s: Scheme = "e4m3:block".parse().unwrap();
        assert_eq!(s.granularity, Granularity::Block { size: 128 });
    }

    #[test]
    fn serde_uses_readable_names() {
        let json = serde_json::to_string(&Scheme::default()).unwrap();
        assert!(json.contains("\"int8\""), "{json}");
        let back: Scheme = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Scheme::default());
    }
}
