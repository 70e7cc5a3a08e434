//! The teaching panel's numbers: one value R taken through quantize → dequantize
//! with every intermediate kept, computed by the same format code as everything
//! else (so the example always agrees with the metrics).

use serde::Serialize;

use crate::error::Result;
use crate::format::{Fp8Format, IntFormat, NumberFormat, SliceParams, round_half_even};
use crate::scheme::{FormatKind, Mapping};

/// R → R/S → round → +Z → clamp → Q → R′ for an integer format.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntSteps {
    pub qmin: f32,
    pub qmax: f32,
    /// R / S
    pub scaled: f32,
    /// round_half_even(R / S)
    pub rounded: f32,
    /// rounded + Z
    pub shifted: f32,
    /// clamp(shifted, Qmin, Qmax) = Q
    pub q: i32,
    pub clamped: bool,
}

/// R → (R − c)/S → clamp ±fmax → FP8 rounding → Q (bits) → R′ for an FP8 format.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fp8Steps {
    pub fmax: f32,
    /// (R − c) / S
    pub scaled: f32,
    /// clamped to ±fmax (saturation)
    pub clamped_value: f32,
    pub clamped: bool,
    /// The FP8 code and its fields.
    pub code: u8,
    pub sign: u8,
    pub exponent: u8,
    pub mantissa: u8,
    pub exponent_bits: u32,
    pub mantissa_bits: u32,
    /// value(Q): the FP8 number the code stands for.
    pub value: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Steps {
    Int(IntSteps),
    Fp8(Fp8Steps),
}

/// One worked example.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkedExample {
    pub format: FormatKind,
    pub r: f32,
    pub params: SliceParams,
    pub steps: Steps,
    /// R′
    pub dequantized: f32,
    /// R − R′
    pub error: f32,
}

/// Takes `r` through `format` with the slice parameters `p`.
pub fn worked_example(format: FormatKind, p: &SliceParams, r: f32) -> Result<WorkedExample> {
    let (steps, dequantized) = match format {
        FormatKind::Int(bits) => {
            let f = IntFormat::new(bits)?;
            let scaled = r / p.scale;
            let rounded = round_half_even(scaled);
            let shifted = rounded + p.zero_point as f32;
            let q = f.quantize(r, p);
            let steps = IntSteps {
                qmin: f.qmin(),
                qmax: f.qmax(),
                scaled,
                rounded,
                shifted,
                q,
                clamped: shifted < f.qmin() || shifted > f.qmax(),
            };
            (Steps::Int(steps), f.dequantize(q, p))
        }
        FormatKind::E4M3 | FormatKind::E5M2 => {
            let f = if format == FormatKind::E4M3 { Fp8Format::E4M3 } else { Fp8Format::E5M2 };
            let scaled = if p.offset == 0.0 { r } else { r - p.offset } / p.scale;
            let clamped_value = scaled.clamp(-f.fmax(), f.fmax());
            let code = f.quantize(r, p);
            let m = f.mantissa_bits();
            let steps = Fp8Steps {
                fmax: f.fmax(),
                scaled,
                clamped_value,
                clamped: scaled.abs() > f.fmax(),
                code,
                sign: code >> 7,
                exponent: (code >> m) & ((1 << f.exponent_bits()) - 1),
                mantissa: code & ((1 << m) - 1),
                exponent_bits: f.exponent_bits(),
                mantissa_bits: m,
                value: f.value(code),
            };
            (Steps::Fp8(steps), f.dequantize(code, p))
        }
    };
    Ok(WorkedExample { format, r, params: *p, steps, dequantized, error: r - dequantized })
}

/// The same R in E4M3 and in E5M2, each with its own S for the range [lo, hi].
pub fn fp8_side_by_side(lo: f32, hi: f32, mapping: Mapping, r: f32) -> [WorkedExample; 2] {
    [(FormatKind::E4M3, Fp8Format::E4M3), (FormatKind::E5M2, Fp8Format::E5M2)].map(|(kind, f)| {
        let p = f.params(lo, hi, mapping);
        // FP8 kinds never fail: only INT widths are validated.
        worked_example(kind, &p, r).unwrap_or_else(|_| unreachable!("FP8 formats are always valid"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_steps_follow_the_formula() {
        let f = IntFormat::new(8).unwrap();
        let p = f.params(-1.0, 3.0, Mapping::Asymmetric);
        let ex = worked_example(FormatKind::INT8, &p, 0.7).unwrap();
        let Steps::Int(s) = &ex.steps else { panic!("int steps") };
        assert_eq!(s.scaled, 0.7 / p.scale);
        assert_eq!(s.q, f.quantize(0.7, &p));
        assert_eq!(ex.dequantized, f.fake_quant(0.7, &p));
        assert!(!s.clamped);
        let far = worked_example(FormatKind::INT8, &p, 10.0).unwrap();
        let Steps::Int(s) = far.steps else { panic!("int steps") };
        assert!(s.clamped);
        assert_eq!(s.q, 127);
    }

    #[test]
    fn fp8_bits_recompose_the_code() {
        for ex in fp8_side_by_side(-2.0, 2.0, Mapping::Symmetric, 0.3) {
            let Steps::Fp8(s) = &ex.steps else { panic!("fp8 steps") };
            let code = (s.sign << 7) | (s.exponent << s.mantissa_bits) | s.mantissa;
            assert_eq!(code, s.code);
            assert_eq!(s.exponent_bits + s.mantissa_bits, 7);
            assert!((ex.error).abs() < 0.3 * 0.07, "{ex:?}");
        }
    }
}
