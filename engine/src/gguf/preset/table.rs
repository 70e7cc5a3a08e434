//! llama-quantize's presets: the names `QUANT_OPTIONS` lists in
//! tools/quantize/quantize.cpp, the `llama_ftype` each sets (include/llama.h, what
//! `general.file_type` becomes) and its base ggml type
//! (`llama_ftype_get_default_type` in src/llama-quant.cpp).

use std::fmt;
use std::str::FromStr;

use super::ggml;
use crate::error::Error;
use crate::gguf::GgmlType;

/// A llama-quantize preset (its `type` argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    Q1_0,
    Q4_0,
    Q4_1,
    Mxfp4Moe,
    Q5_0,
    Q5_1,
    Iq2Xxs,
    Iq2Xs,
    Iq2S,
    Iq2M,
    Iq1S,
    Iq1M,
    Tq1_0,
    Tq2_0,
    Q2K,
    Q2KS,
    Iq3Xxs,
    Iq3S,
    Iq3M,
    Iq3Xs,
    Q3KS,
    Q3KM,
    Q3KL,
    Iq4Nl,
    Iq4Xs,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
    Q8_0,
    F16,
    Bf16,
    F32,
    /// Every tensor copied as it is (`only_copy`).
    Copy,
}

/// One row of quantize.cpp's table: name, `llama_ftype`, base type.
struct Row(Preset, &'static str, u32, GgmlType);

/// In quantize.cpp's order (a numeric name takes the first row of its ftype, so
/// `0` is F32, not COPY). Q2_0 is left out: its ggml type is not in `types`.
static ROWS: [Row; 35] = [
    Row(Preset::Q1_0, "Q1_0", 40, ggml::Q1_0),
    Row(Preset::Q4_0, "Q4_0", 2, ggml::Q4_0),
    Row(Preset::Q4_1, "Q4_1", 3, ggml::Q4_1),
    Row(Preset::Mxfp4Moe, "MXFP4_MOE", 38, ggml::MXFP4),
    Row(Preset::Q5_0, "Q5_0", 8, ggml::Q5_0),
    Row(Preset::Q5_1, "Q5_1", 9, ggml::Q5_1),
    Row(Preset::Iq2Xxs, "IQ2_XXS", 19, ggml::IQ2_XXS),
    Row(Preset::Iq2Xs, "IQ2_XS", 20, ggml::IQ2_XS),
    Row(Preset::Iq2S, "IQ2_S", 28, ggml::IQ2_XS),
    Row(Preset::Iq2M, "IQ2_M", 29, ggml::IQ2_S),
    Row(Preset::Iq1S, "IQ1_S", 24, ggml::IQ1_S),
    Row(Preset::Iq1M, "IQ1_M", 31, ggml::IQ1_M),
    Row(Preset::Tq1_0, "TQ1_0", 36, ggml::TQ1_0),
    Row(Preset::Tq2_0, "TQ2_0", 37, ggml::TQ2_0),
    Row(Preset::Q2K, "Q2_K", 10, ggml::Q2_K),
    Row(Preset::Q2KS, "Q2_K_S", 21, ggml::Q2_K),
    Row(Preset::Iq3Xxs, "IQ3_XXS", 23, ggml::IQ3_XXS),
    Row(Preset::Iq3S, "IQ3_S", 26, ggml::IQ3_S),
    Row(Preset::Iq3M, "IQ3_M", 27, ggml::IQ3_S),
    Row(Preset::Iq3Xs, "IQ3_XS", 22, ggml::IQ3_S),
    Row(Preset::Q3KS, "Q3_K_S", 11, ggml::Q3_K),
    Row(Preset::Q3KM, "Q3_K_M", 12, ggml::Q3_K),
    Row(Preset::Q3KL, "Q3_K_L", 13, ggml::Q3_K),
    Row(Preset::Iq4Nl, "IQ4_NL", 25, ggml::IQ4_NL),
    Row(Preset::Iq4Xs, "IQ4_XS", 30, ggml::IQ4_XS),
    Row(Preset::Q4KS, "Q4_K_S", 14, ggml::Q4_K),
    Row(Preset::Q4KM, "Q4_K_M", 15, ggml::Q4_K),
    Row(Preset::Q5KS, "Q5_K_S", 16, ggml::Q5_K),
    Row(Preset::Q5KM, "Q5_K_M", 17, ggml::Q5_K),
    Row(Preset::Q6K, "Q6_K", 18, ggml::Q6_K),
    Row(Preset::Q8_0, "Q8_0", 7, ggml::Q8_0),
    Row(Preset::F16, "F16", 1, ggml::F16),
    Row(Preset::Bf16, "BF16", 32, ggml::BF16),
    Row(Preset::F32, "F32", 0, ggml::F32),
    Row(Preset::Copy, "COPY", 0, ggml::F32),
];

/// quantize.cpp's aliases: the K-quant family name alone is its `_M` preset.
static ALIASES: [(&str, Preset); 3] =
    [("Q3_K", Preset::Q3KM), ("Q4_K", Preset::Q4KM), ("Q5_K", Preset::Q5KM)];

impl Preset {
    /// Every preset, in llama-quantize's order.
    pub fn all() -> impl Iterator<Item = Preset> {
        ROWS.iter().map(|r| r.0)
    }

    fn row(self) -> &'static Row {
        // ROWS lists every variant in declaration order.
        &ROWS[self as usize]
    }

    /// The name llama-quantize prints and takes (`Q4_K_M`).
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Its `llama_ftype`, the value llama-quantize writes to `general.file_type`
    /// (COPY keeps the input's instead: `Options::file_type`).
    pub fn ftype(self) -> u32 {
        self.row().2
    }

    /// The type every quantized tensor gets unless a rule says otherwise.
    pub fn base_type(self) -> GgmlType {
        self.row().3
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = Error;

    /// A name in any case (`q4_k_m`), an alias (`Q4_K`), or an ftype number, as
    /// quantize.cpp's `try_parse_ftype` takes them.
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let by_name = ROWS.iter().find(|r| r.1.eq_ignore_ascii_case(s)).map(|r| r.0);
        let by_alias = || ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(s)).map(|a| a.1);
        let by_number = || s.parse::<u32>().ok().and_then(|n| ROWS.iter().find(|r| r.2 == n)).map(|r| r.0);
        by_name.or_else(by_alias).or_else(by_number).ok_or_else(|| {
            let names: Vec<&str> = ROWS.iter().map(|r| r.1).chain(ALIASES.iter().map(|a| a.0)).collect();
            Error::Scheme(format!(
                "unknown llama-quantize preset '{}'; valid: {}",
                s.escape_debug(),
                names.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_declaration_order() {
        for (i, r) in ROWS.iter().enumerate() {
            assert_eq!(r.0 as usize, i, "{}", r.1);
        }
    }

    #[test]
    fn names_aliases_and_numbers_parse() {
        assert_eq!("q4_k_m".parse::<Preset>().ok(), Some(Preset::Q4KM));
        assert_eq!("Q4_K".parse::<Preset>().ok(), Some(Preset::Q4KM));
        assert_eq!("15".parse::<Preset>().ok(), Some(Preset::Q4KM));
        assert_eq!("0".parse::<Preset>().ok(), Some(Preset::F32));
        assert_eq!(Preset::Iq2S.base_type().name, "IQ2_XS");
        assert_eq!(Preset::Mxfp4Moe.to_string(), "MXFP4_MOE");
    }
}
