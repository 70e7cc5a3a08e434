//! The number formats a scheme can name: `FormatKind`, its short-form word
//! (`int8`, `e4m3`, `nvfp4`) and its entry in [`FORMATS`] (label and
//! description). A new format is named here; its arithmetic is in `format/`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::names;
use crate::error::{Error, Result};

/// The target number format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum FormatKind {
    /// Signed integer with this many bits (2..=8).
    Int(u8),
    E4M3,
    E5M2,
    /// NVFP4: E2M1 values in groups of 16, E4M3 block scales under an F32 global scale.
    Nvfp4,
    /// MXFP4 (OCP microscaling): E2M1 values in groups of 32, E8M0 (power-of-two) scales.
    Mxfp4,
    /// MXFP8: E4M3 values in groups of 32, E8M0 scales.
    Mxfp8,
}

impl FormatKind {
    pub const INT8: Self = Self::Int(8);

    pub fn is_fp8(self) -> bool {
        matches!(self, Self::E4M3 | Self::E5M2)
    }

    /// The group size a microscaling format is defined with (its block scale
    /// covers exactly this many elements of a row); None for the others.
    pub fn fixed_group(self) -> Option<usize> {
        match self {
            Self::Nvfp4 => Some(16),
            Self::Mxfp4 | Self::Mxfp8 => Some(32),
            _ => None,
        }
    }
}

impl fmt::Display for FormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(b) => write!(f, "int{b}"),
            Self::E4M3 => f.write_str("e4m3"),
            Self::E5M2 => f.write_str("e5m2"),
            Self::Nvfp4 => f.write_str("nvfp4"),
            Self::Mxfp4 => f.write_str("mxfp4"),
            Self::Mxfp8 => f.write_str("mxfp8"),
        }
    }
}

impl FromStr for FormatKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "e4m3" | "fp8" | "fp8_e4m3" => Ok(Self::E4M3),
            "e5m2" | "fp8_e5m2" => Ok(Self::E5M2),
            "nvfp4" => Ok(Self::Nvfp4),
            "mxfp4" => Ok(Self::Mxfp4),
            "mxfp8" => Ok(Self::Mxfp8),
            other => {
                let bits = other
                    .strip_prefix("int")
                    .and_then(|b| b.parse::<u8>().ok())
                    .filter(|b| (2..=8).contains(b))
                    .ok_or_else(|| {
                        Error::Scheme(format!("unknown format '{s}' ({})", names(FORMATS.map(|f| f.name))))
                    })?;
                Ok(Self::Int(bits))
            }
        }
    }
}

impl From<FormatKind> for String {
    fn from(k: FormatKind) -> Self {
        k.to_string()
    }
}

impl TryFrom<String> for FormatKind {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

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
