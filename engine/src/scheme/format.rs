//! The number formats a scheme can name: `FormatKind`, its short-form word
//! (`int8`, `e4m3`, `nvfp4`) and its entry in [`FORMATS`] (label and
//! description). A new format is named here; its arithmetic is in `format/`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::names;
use crate::error::{Error, Result};
use crate::ggml::GgmlType;
use crate::ggml::types::SCHEME_TYPES;

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
    /// One of llama.cpp's block types (`q4_k`, `iq4_xs`, …; see
    /// `ggml::types::SCHEME_TYPES`), quantized by ggml's own search.
    Ggml(GgmlType),
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
            Self::Ggml(t) => Some(t.sub_block()),
            _ => None,
        }
    }

    /// The mapping a format is defined with, when it has only one.
    pub fn fixed_mapping(self) -> Option<super::Mapping> {
        use super::Mapping;
        match self {
            Self::Ggml(t) => Some(if t.has_min() { Mapping::Asymmetric } else { Mapping::Symmetric }),
            Self::Nvfp4 | Self::Mxfp4 | Self::Mxfp8 => Some(Mapping::Symmetric),
            _ => None,
        }
    }

    /// The ggml type of a llama.cpp scheme.
    pub fn ggml(self) -> Option<GgmlType> {
        match self {
            Self::Ggml(t) => Some(t),
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
            Self::Ggml(t) => f.write_str(&t.name.to_ascii_lowercase()),
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
            other if SCHEME_TYPES.iter().any(|t| t.eq_ignore_ascii_case(other)) => {
                GgmlType::from_name(other).map(Self::Ggml).ok_or_else(|| Error::Scheme(other.into()))
            }
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

const fn ggml(name: &'static str, label: &'static str, description: &'static str) -> FormatInfo {
    let Some(t) = crate::ggml::types::by_name(label) else { panic!("not a ggml type") };
    FormatInfo { format: FormatKind::Ggml(t), name, label, description }
}

/// Every format, widest integer first, then the floats, then llama.cpp's types.
pub const FORMATS: [FormatInfo; 24] = [
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
    ggml("q8_0", "Q8_0", "llama.cpp: 8-bit codes, one F16 scale per 32 (8.5 bits per weight)"),
    ggml("q6_k", "Q6_K", "llama.cpp K-quant: 6-bit codes, 8-bit scales per 16, F16 per 256 (6.56 bpw)"),
    ggml("q5_1", "Q5_1", "llama.cpp: 5-bit codes, F16 scale and min per 32 (6 bpw)"),
    ggml("q5_k", "Q5_K", "llama.cpp K-quant: 5-bit codes, 6-bit scales and mins per 32 (5.5 bpw)"),
    ggml("q5_0", "Q5_0", "llama.cpp: 5-bit codes, one F16 scale per 32 (5.5 bpw)"),
    ggml("q4_1", "Q4_1", "llama.cpp: 4-bit codes, F16 scale and min per 32 (5 bpw)"),
    ggml("iq4_nl", "IQ4_NL", "llama.cpp: a 16-level non-linear grid, one F16 scale per 32 (4.5 bpw)"),
    ggml("q4_k", "Q4_K", "llama.cpp K-quant: 4-bit codes, 6-bit scales and mins per 32 (4.5 bpw)"),
    ggml("q4_0", "Q4_0", "llama.cpp: 4-bit codes, one F16 scale per 32 (4.5 bpw)"),
    ggml("iq4_xs", "IQ4_XS", "llama.cpp: the IQ4_NL grid, 6-bit scales per 32, F16 per 256 (4.25 bpw)"),
    ggml("q3_k", "Q3_K", "llama.cpp K-quant: 3-bit codes, 6-bit scales per 16 (3.44 bpw)"),
    ggml("q2_k", "Q2_K", "llama.cpp K-quant: 2-bit codes, 4-bit scales and mins per 16 (2.63 bpw)"),
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
