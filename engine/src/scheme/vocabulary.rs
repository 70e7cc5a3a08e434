//! The scheme vocabulary every face shows: each format, mapping, granularity
//! and calibration with its name (the short form's word, the CLI's value), its
//! label (how the app and the tables name it) and a one-line description. The
//! CLI's value parsers and help, the app's menus and legends read these lists,
//! so a new format or calibration is added here and nowhere else.

use super::{Calibration, FormatKind, Granularity, ManualRange, Mapping, Scheme};

/// A number format as the faces name it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FormatInfo {
    pub format: FormatKind,
    /// The short form's word and the CLI's value (`int8`, `e4m3`).
    pub name: &'static str,
    /// How the app and the tables name it (`INT8`, `FP8 E4M3`).
    pub label: &'static str,
    pub description: &'static str,
}

const fn int(bits: u8, name: &'static str, label: &'static str, description: &'static str) -> FormatInfo {
    FormatInfo { format: FormatKind::Int(bits), name, label, description }
}

/// Every format, widest integer first, then the floats.
pub const FORMATS: [FormatInfo; 12] = [
    int(8, "int8", "INT8", "8-bit signed integer codes: the common weight-only baseline"),
    int(7, "int7", "INT7", "7-bit signed integer codes"),
    int(6, "int6", "INT6", "6-bit signed integer codes"),
    int(5, "int5", "INT5", "5-bit signed integer codes"),
    int(4, "int4", "INT4", "4-bit signed integer codes (W4A16 with groups of 128)"),
    int(3, "int3", "INT3", "3-bit signed integer codes"),
    int(2, "int2", "INT2", "2-bit signed integer codes"),
    FormatInfo {
        format: FormatKind::E4M3,
        name: "e4m3",
        label: "FP8 E4M3",
        description: "8-bit float, 4 exponent and 3 mantissa bits, largest 448",
    },
    FormatInfo {
        format: FormatKind::E5M2,
        name: "e5m2",
        label: "FP8 E5M2",
        description: "8-bit float, 5 exponent and 2 mantissa bits, largest 57344",
    },
    FormatInfo {
        format: FormatKind::Nvfp4,
        name: "nvfp4",
        label: "NVFP4",
        description: "E2M1 values in groups of 16 with E4M3 scales under an F32 global scale",
    },
    FormatInfo {
        format: FormatKind::Mxfp4,
        name: "mxfp4",
        label: "MXFP4",
        description: "E2M1 values in groups of 32 with power-of-two (E8M0) scales",
    },
    FormatInfo {
        format: FormatKind::Mxfp8,
        name: "mxfp8",
        label: "MXFP8",
        description: "E4M3 values in groups of 32 with power-of-two (E8M0) scales",
    },
];

impl FormatKind {
    /// This format's entry in [`FORMATS`]; `None` for an integer width outside 2..=8.
    pub fn info(self) -> Option<&'static FormatInfo> {
        FORMATS.iter().find(|i| i.format == self)
    }

    /// How the app and the tables name it ("INT8", "FP8 E4M3").
    pub fn label(self) -> String {
        self.info().map_or_else(|| self.to_string().to_uppercase(), |i| i.label.to_string())
    }
}

/// A mapping as the faces name it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MappingInfo {
    pub mapping: Mapping,
    /// The CLI's value and the report's `mapping` (`symmetric`).
    pub name: &'static str,
    /// The short form's word (`sym`, `asym`).
    pub short: &'static str,
    pub label: &'static str,
    pub description: &'static str,
}

/// Both mappings.
pub const MAPPINGS: [MappingInfo; 2] = [
    MappingInfo {
        mapping: Mapping::Symmetric,
        name: "symmetric",
        short: "sym",
        label: "symmetric",
        description: "a range centred on zero: no zero point",
    },
    MappingInfo {
        mapping: Mapping::Asymmetric,
        name: "asymmetric",
        short: "asym",
        label: "asymmetric",
        description: "the range [lo, hi] as it is: an integer zero point (a real offset in FP8)",
    },
];

impl Mapping {
    pub fn info(self) -> &'static MappingInfo {
        match self {
            Self::Symmetric => &MAPPINGS[0],
            Self::Asymmetric => &MAPPINGS[1],
        }
    }
}

/// A kind of granularity as the faces name it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GranularityInfo {
    /// The kind's word: the CLI's value and the report's `granularity`.
    pub name: &'static str,
    /// The short form's pattern (`groupN`).
    pub short: &'static str,
    /// How the app and the tables name the kind (`per-group`).
    pub label: &'static str,
    /// What its number is, if it takes one.
    pub parameter: Option<&'static str>,
    pub description: &'static str,
    /// The granularity the name alone selects.
    pub default: Granularity,
}

/// Every kind of granularity, coarsest first.
pub const GRANULARITIES: [GranularityInfo; 4] = [
    GranularityInfo {
        name: "tensor",
        short: "tensor",
        label: "per-tensor",
        parameter: None,
        description: "one scale for the whole tensor",
        default: Granularity::Tensor,
    },
    GranularityInfo {
        name: "channel",
        short: "channelN",
        label: "per-channel",
        parameter: Some("axis"),
        description: "one scale per index along an axis (0 = output channel)",
        default: Granularity::Channel { axis: 0 },
    },
    GranularityInfo {
        name: "group",
        short: "groupN",
        label: "per-group",
        parameter: Some("group size"),
        description: "rows cut into groups of N elements, one scale each",
        default: Granularity::Group { size: 128 },
    },
    GranularityInfo {
        name: "block",
        short: "blockN",
        label: "per-block",
        parameter: Some("block side"),
        description: "N×N tiles, one scale each (FP8 only, DeepSeek-style)",
        default: Granularity::Block { size: 128 },
    },
];

impl Granularity {
    pub fn info(&self) -> &'static GranularityInfo {
        match self {
            Self::Tensor => &GRANULARITIES[0],
            Self::Channel { .. } => &GRANULARITIES[1],
            Self::Group { .. } => &GRANULARITIES[2],
            Self::Block { .. } => &GRANULARITIES[3],
        }
    }

    /// The kind's label with its number: "per-channel (axis 0)", "per-group (128)".
    pub fn label(&self) -> String {
        let kind = self.info().label;
        match self {
            Self::Tensor => kind.to_string(),
            Self::Channel { axis } => format!("{kind} (axis {axis})"),
            Self::Group { size } => format!("{kind} ({size})"),
            Self::Block { size } => format!("{kind} ({size}x{size})"),
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
pub const CALIBRATIONS: [CalibrationInfo; 6] = [
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
        description: "S from min-max, Z optimized under an lp norm (asymmetric INT only)",
        default: Calibration::Hqq,
        mapping: Some(Mapping::Asymmetric),
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
            Self::Manual(_) => 5,
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

impl Scheme {
    /// Whether `g` may replace this scheme's granularity (blocks are FP8 only;
    /// a microscaling format keeps its own group).
    pub fn allows(&self, g: Granularity) -> bool {
        Self { granularity: g, ..*self }.validate_layout().is_ok()
    }

    /// The scheme in words: "INT8, symmetric, per-channel (axis 0), min-max".
    pub fn label(&self) -> String {
        format!(
            "{}, {}, {}, {}",
            self.format.label(),
            self.mapping.info().label,
            self.granularity.label(),
            self.calibration.label()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_parses_and_displays_back() {
        for f in FORMATS {
            assert_eq!(f.name.parse::<FormatKind>().unwrap(), f.format);
            assert_eq!(f.format.to_string(), f.name);
            assert_eq!(f.format.info(), Some(&f));
        }
        for m in MAPPINGS {
            assert_eq!(m.name.parse::<Mapping>().unwrap(), m.mapping);
            assert_eq!(m.short.parse::<Mapping>().unwrap(), m.mapping);
            assert_eq!(m.mapping.to_string(), m.name);
            assert_eq!(m.mapping.info(), &m);
        }
        for g in GRANULARITIES {
            assert_eq!(g.name.parse::<Granularity>().unwrap(), g.default);
            assert_eq!(g.default.to_string().parse::<Granularity>().unwrap(), g.default);
            assert_eq!(g.default.info(), &g);
        }
        for c in CALIBRATIONS {
            assert_eq!(Calibration::parse_name_or_short(c.name).unwrap(), c.default);
            assert_eq!(c.default.to_string().parse::<Calibration>().unwrap(), c.default);
            assert_eq!(c.default.info(), &c);
        }
    }

    #[test]
    fn labels_name_the_parameter() {
        assert_eq!(Calibration::Percentile { p: 99.5 }.label(), "percentile 99.5");
        assert_eq!(Calibration::Manual(ManualRange::Ratio { r: 0.5 }).label(), "manual ×0.500");
        assert_eq!(Calibration::Manual(ManualRange::Range { lo: -1.0, hi: 1.0 }).label(), "manual range");
        assert_eq!(Granularity::Block { size: 64 }.label(), "per-block (64x64)");
        assert_eq!(FormatKind::Int(9).label(), "INT9");
        let s: Scheme = "int4:group64:hqq:asym".parse().unwrap();
        assert_eq!(s.label(), "INT4, asymmetric, per-group (64), HQQ (zero point)");
    }

    #[test]
    fn allows_follows_validate() {
        let e4m3: Scheme = "e4m3:channel".parse().unwrap();
        assert!(e4m3.allows(Granularity::Block { size: 128 }));
        assert!(!Scheme::default().allows(Granularity::Block { size: 128 }));
        let nvfp4: Scheme = "nvfp4".parse().unwrap();
        assert!(!nvfp4.allows(Granularity::Tensor));
    }
}
