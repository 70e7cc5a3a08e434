//! The scheme vocabulary every face shows: each mapping and granularity with
//! its name (the short form's word, the CLI's value), its label (how the app and
//! the tables name it) and a one-line description; formats and calibrations
//! have theirs beside their definitions (`format.rs`, `calibration.rs`). The
//! CLI's value parsers and help, the app's menus and legends read these lists,
//! so a new format or calibration is named in one file.

use super::{Granularity, Mapping, Scheme};

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
    use crate::scheme::{CALIBRATIONS, Calibration, FORMATS, FormatKind, ManualRange};

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
