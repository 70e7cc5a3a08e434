//! The teaching panel's numbers: one value R taken through quantize → dequantize
//! with every intermediate kept, computed by the same format code as everything
//! else (so the example always agrees with the metrics).

use serde::Serialize;

use crate::error::Result;
use crate::format::{
    NumberFormat, OffsetKind, SliceParams, WithFormat, WorkDtype, dispatch_in, e8m0_byte, round_half_even,
    spec,
};
use crate::scheme::{FormatKind, Mapping};

/// R → D(R/S) → D(· + Z) → round → clamp → Q → R′ for an integer format, in
/// the order a saved model computes (FORMATS.md §2: Z is added before rounding).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntSteps {
    pub qmin: f32,
    pub qmax: f32,
    /// The working dtype D each step is rounded to.
    pub work: WorkDtype,
    /// R / S in f32, before rounding to D
    pub quotient: f32,
    /// D(R / S)
    pub scaled: f32,
    /// D(scaled + Z)
    pub shifted: f32,
    /// round_half_even(shifted)
    pub rounded: f32,
    /// clamp(rounded, Qmin, Qmax) = Q
    pub q: i32,
    pub clamped: bool,
    /// (Q − Z) · S in f32, before rounding to D (R′ = D of it)
    pub product: f32,
}

/// R → D((R − c)/S) + 0 → clamp ±fmax → FP8 rounding → Q (bits) → R′ for an
/// FP8 format.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fp8Steps {
    pub fmax: f32,
    /// The working dtype D each step is rounded to.
    pub work: WorkDtype,
    /// (R − c) / S in f32, before rounding to D
    pub quotient: f32,
    /// D((R − c) / S) + 0 (the + 0 turns −0 into +0)
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
    /// The exponent bias: value = (−1)^sign · 2^(exponent − bias) · 1.mantissa.
    pub bias: i32,
    /// Exponent field 0: value = (−1)^sign · 2^(1 − bias) · 0.mantissa.
    pub is_subnormal: bool,
    /// The decode in words, e.g. "(−1)^0 · 2^(9−7) · 1.010₂ = 5.0".
    pub decoded: String,
    /// S · value(Q) in f32, before rounding to D
    pub product: f32,
}

/// A llama.cpp type's sub-block (docs/numerics.md, "llama.cpp's types"):
/// R′ = S·v(q) − m, S and m from the block's stored scales.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GgmlSteps {
    /// (R + m) / S: where R falls on the sub-block's code scale.
    pub position: f32,
    /// The stored code (an unsigned index) and the number it stands for.
    pub code: u8,
    pub value: f32,
    /// S · v(q), before m is subtracted.
    pub product: f32,
    /// The sub-block's S and m.
    pub step: f32,
    pub min: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Steps {
    Int(IntSteps),
    Fp8(Fp8Steps),
    Ggml(GgmlSteps),
}

/// The second level of a microscaled format: how a block's scale is chosen and
/// itself stored in 8 bits (docs/numerics.md, "Microscaling formats").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockScaleSteps {
    /// "E4M3" (NVFP4) or "E8M0" (MX).
    pub stored_as: &'static str,
    /// The block's amax the scale is derived from.
    pub amax: f32,
    /// NVFP4's global scale gs (per tensor); None for MX.
    pub global: Option<f32>,
    /// NVFP4: s = D(amax / 6), the scale the block would want; MX: amax rounded
    /// to a power of two, P.
    pub wanted: f32,
    /// NVFP4: gs · s, the value rounded to E4M3; MX: log2 P + 127 − k, the
    /// exponent before clamping to 0..255.
    pub lifted: f32,
    /// The stored byte: the E4M3 code or the E8M0 exponent E.
    pub code: u8,
    /// The stored byte read back, in words.
    pub decoded: String,
    /// The block scale min-max gives for `amax`.
    pub minmax_scale: f32,
    /// S: the block scale in use (another calibration may have moved it).
    pub scale: f32,
    /// What R is divided by: S / gs (NVFP4) or S (MX).
    pub step: f32,
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

/// Takes `r` through `format` with the slice parameters `p`, computing in the
/// working dtype `work` (the tensor's own dtype, as the analysis did); `global`
/// is a two-level format's global scale (`QuantResult::global_scale`).
pub fn worked_example(
    format: FormatKind,
    p: &SliceParams,
    r: f32,
    work: WorkDtype,
    global: Option<f32>,
) -> Result<WorkedExample> {
    let (steps, dequantized) = match format.ggml() {
        Some(ty) => ggml_steps(ty, p, r),
        None => dispatch_in(format, work, Example { p, r, global })?,
    };
    Ok(WorkedExample { format, r, params: *p, steps, dequantized, error: r - dequantized })
}

/// The worked example, generic over the format.
struct Example<'a> {
    p: &'a SliceParams,
    r: f32,
    global: Option<f32>,
}

impl WithFormat for Example<'_> {
    type Out = (Steps, f32);
    fn run<F: NumberFormat>(self, f: F) -> (Steps, f32) {
        let Self { p, r, global } = self;
        let f = global.map_or(f, |gs| f.with_global(gs));
        let code = f.quantize(r, p);
        let steps = if f.is_float() {
            Steps::Fp8(float_steps(&f, p, r, code))
        } else {
            Steps::Int(int_steps(&f, p, r, code))
        };
        (steps, f.dequantize(code, p))
    }
}

/// R through one sub-block of a llama.cpp type. The code is the one nearest to
/// R on the stored sub-block grid (ggml's search chose the grid, not R alone).
fn ggml_steps(ty: crate::ggml::GgmlType, p: &SliceParams, r: f32) -> (Steps, f32) {
    let f = crate::format::GgmlFormat::new(ty);
    let code = f.quantize(r, p);
    let value = f.value(code);
    let steps = GgmlSteps {
        position: (r + p.offset) / p.scale,
        code,
        value,
        product: p.scale * value,
        step: p.scale,
        min: p.offset,
    };
    (Steps::Ggml(steps), f.dequantize(code, p))
}

/// The code's own value (Q, or the float its bits encode).
fn code_value<F: NumberFormat>(f: &F, code: F::Code) -> f32 {
    f.code_value(code)
}

fn int_steps<F: NumberFormat>(f: &F, p: &SliceParams, r: f32, code: F::Code) -> IntSteps {
    let d = f.work();
    let quotient = r / p.scale;
    let scaled = d.round(quotient);
    let shifted = d.round(scaled + p.zero_point as f32);
    let rounded = round_half_even(shifted);
    let q = code_value(f, code) as i32;
    IntSteps {
        qmin: f.qmin(),
        qmax: f.qmax(),
        work: d,
        quotient,
        scaled,
        shifted,
        rounded,
        q,
        clamped: rounded < f.qmin() || rounded > f.qmax(),
        product: (q - p.zero_point) as f32 * p.scale,
    }
}

fn float_steps<F: NumberFormat>(f: &F, p: &SliceParams, r: f32, code: F::Code) -> Fp8Steps {
    let d = f.work();
    let fmax = f.qmax();
    // NVFP4 divides by S / gs in F32 (an F32 scale), the others by S in D.
    let (divisor, round) = match f.global() {
        Some(gs) => (p.scale / gs, WorkDtype::F32),
        None => (p.scale, d),
    };
    let quotient = if p.offset == 0.0 { r } else { d.round(r - p.offset) } / divisor;
    let scaled = round.round(quotient) + 0.0;
    let byte = f.code_to_byte(code);
    let (e_bits, m) = (f.exponent_bits(), f.mantissa_bits());
    let exponent = (byte >> m) & ((1 << e_bits) - 1);
    let mantissa = byte & ((1 << m) - 1);
    let bias = f.bias().unwrap_or(0);
    let value = code_value(f, code);
    Fp8Steps {
        fmax,
        work: round,
        quotient,
        scaled,
        clamped_value: scaled.clamp(-fmax, fmax),
        clamped: scaled.abs() > fmax,
        code: byte,
        sign: byte >> (e_bits + m),
        exponent,
        mantissa,
        exponent_bits: e_bits,
        mantissa_bits: m,
        value,
        bias,
        is_subnormal: exponent == 0,
        decoded: decode_text(byte >> (e_bits + m), exponent, mantissa, m, bias, value),
        product: divisor * value,
    }
}

/// How a block scale comes from the block's `amax` (its min-max range) and is
/// itself stored in 8 bits, for NVFP4 and MX; `p` is the slice's parameters in
/// use (another calibration may have moved S). None for other formats.
pub fn block_scale_steps(
    format: FormatKind,
    amax: f32,
    p: &SliceParams,
    work: WorkDtype,
    global: Option<f32>,
) -> Option<BlockScaleSteps> {
    let minmax = params(format, -amax, amax, Mapping::Symmetric, work).ok();
    let minmax = match (format, global) {
        // The block scale depends on gs: recompute it with the tensor's.
        (FormatKind::Nvfp4, Some(gs)) => {
            let f = crate::format::MicroFormat::new(crate::format::MicroKind::Nvfp4, work).with_global(gs);
            f.params(-amax, amax, Mapping::Symmetric)
        }
        _ => minmax?,
    };
    let (stored_as, wanted, lifted, code, decoded, step) = match format {
        FormatKind::Nvfp4 => {
            let gs = global?;
            let wanted = work.round(amax / 6.0);
            let ex = worked_example(FormatKind::E4M3, &unit(), p.scale, WorkDtype::F32, None).ok()?;
            let Steps::Fp8(s) = ex.steps else { return None };
            ("E4M3", wanted, gs * wanted, s.code, s.decoded, p.scale / gs)
        }
        FormatKind::Mxfp4 | FormatKind::Mxfp8 => {
            let k = if format == FormatKind::Mxfp4 { 2 } else { 8 };
            let pow2 = f32::from_bits(amax.to_bits().wrapping_add(0x0020_0000) & 0x7F80_0000);
            let e = e8m0_byte(p.scale);
            let text = format!("2^(E - 127) = 2^({e} - 127) = {:?}", p.scale);
            ("E8M0", pow2, ((pow2.to_bits() >> 23) as i32 - k) as f32, e, text, p.scale)
        }
        _ => return None,
    };
    Some(BlockScaleSteps {
        stored_as,
        amax,
        global,
        wanted,
        lifted,
        code,
        decoded,
        minmax_scale: minmax.scale,
        scale: p.scale,
        step,
    })
}

/// Unit parameters: S = 1, no shift.
fn unit() -> SliceParams {
    SliceParams { scale: 1.0, zero_point: 0, offset: 0.0, lo: -448.0, hi: 448.0 }
}

/// Every level slice `p` can reproduce (the grid the histogram draws for the
/// selected slice), with a two-level format's global scale.
pub fn slice_levels(format: FormatKind, p: &SliceParams, work: WorkDtype, global: Option<f32>) -> Vec<f32> {
    struct Levels<'a>(&'a SliceParams, Option<f32>);
    impl WithFormat for Levels<'_> {
        type Out = Vec<f32>;
        fn run<F: NumberFormat>(self, f: F) -> Vec<f32> {
            self.1.map_or(f, |gs| f.with_global(gs)).levels(self.0)
        }
    }
    dispatch_in(format, work, Levels(p, global)).unwrap_or_default()
}

/// "(−1)^s · 2^(e−bias) · 1.m₂ = value", or 2^(1−bias) · 0.m₂ for a subnormal;
/// NaN and ±∞ codes are named instead.
fn decode_text(sign: u8, exponent: u8, mantissa: u8, man_bits: u32, bias: i32, value: f32) -> String {
    if value.is_nan() {
        return "NaN (a reserved code)".into();
    }
    if value.is_infinite() {
        return format!("{}∞ (a reserved code)", if sign == 1 { "−" } else { "+" });
    }
    let bits = format!("{mantissa:0width$b}", width = man_bits as usize);
    if exponent == 0 {
        format!("(−1)^{sign} · 2^(1−{bias}) · 0.{bits}₂ = {value:?}")
    } else {
        format!("(−1)^{sign} · 2^({exponent}−{bias}) · 1.{bits}₂ = {value:?}")
    }
}

/// The same R in E4M3 and in E5M2, each with its own S for the range [lo, hi],
/// computing in `work`.
pub fn fp8_side_by_side(lo: f32, hi: f32, mapping: Mapping, r: f32, work: WorkDtype) -> [WorkedExample; 2] {
    [FormatKind::E4M3, FormatKind::E5M2].map(|kind| {
        let p = params(kind, lo, hi, mapping, work);
        // FP8 kinds never fail: only INT widths are validated.
        p.and_then(|p| worked_example(kind, &p, r, work, None))
            .unwrap_or_else(|_| unreachable!("FP8 formats are always valid"))
    })
}

/// `NumberFormat::params` for a format named by its kind, in `work`.
pub fn params(kind: FormatKind, lo: f32, hi: f32, mapping: Mapping, work: WorkDtype) -> Result<SliceParams> {
    struct Params(f32, f32, Mapping);
    impl WithFormat for Params {
        type Out = SliceParams;
        fn run<F: NumberFormat>(self, f: F) -> SliceParams {
            f.params(self.0, self.1, self.2)
        }
    }
    dispatch_in(kind, work, Params(lo, hi, mapping))
}

/// What the teaching panel says about a format, all asked of [`NumberFormat`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FormatFacts {
    /// "INT8", "FP8 E4M3".
    pub label: String,
    /// Bits per code.
    pub bits: u8,
    pub is_float: bool,
    /// Integer code range (0 and 0 for float formats).
    pub qmin: i32,
    pub qmax: i32,
    /// Largest finite magnitude of a float code.
    pub fmax: Option<f32>,
    /// Exponent and mantissa widths (0 for integers).
    pub exponent_bits: u32,
    pub mantissa_bits: u32,
    pub bias: Option<i32>,
    /// Asymmetric INT stores an integer zero point Z.
    pub has_zero_point: bool,
    /// Asymmetric FP8 shifts by a real-valued offset c.
    pub offset_is_real: bool,
    /// The safetensors dtype the codes are saved in ("I8", "F8_E4M3", …).
    pub code_dtype: String,
}

/// The facts of one format.
pub fn facts(format: FormatKind) -> Result<FormatFacts> {
    let f = spec(format)?;
    let int = |v: f32| if f.is_float { 0 } else { v as i32 };
    Ok(FormatFacts {
        label: f.label.clone(),
        bits: f.bits,
        is_float: f.is_float,
        qmin: int(f.qmin),
        qmax: int(f.qmax),
        fmax: f.fmax,
        exponent_bits: f.exponent_bits,
        mantissa_bits: f.mantissa_bits,
        bias: f.bias,
        has_zero_point: f.offset_kind == OffsetKind::ZeroPoint,
        offset_is_real: f.offset_kind == OffsetKind::Real,
        code_dtype: format!("{:?}", f.code_dtype),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::IntFormat;

    #[test]
    fn int_steps_follow_the_formula() {
        let f = IntFormat::new(8).unwrap();
        let p = f.params(-1.0, 3.0, Mapping::Asymmetric);
        let ex = worked_example(FormatKind::INT8, &p, 0.7, WorkDtype::F32, None).unwrap();
        let Steps::Int(s) = &ex.steps else { panic!("int steps") };
        assert_eq!(s.scaled, 0.7 / p.scale);
        assert_eq!(s.shifted, s.scaled + p.zero_point as f32);
        assert_eq!(s.q, f.quantize(0.7, &p));
        assert_eq!(ex.dequantized, f.fake_quant(0.7, &p));
        assert!(!s.clamped);
        let far = worked_example(FormatKind::INT8, &p, 10.0, WorkDtype::F32, None).unwrap();
        let Steps::Int(s) = far.steps else { panic!("int steps") };
        assert!(s.clamped);
        assert_eq!(s.q, 127);
    }

    #[test]
    fn bf16_steps_round_each_result_and_agree_with_the_format() {
        let f = IntFormat::new(4).unwrap().in_work(WorkDtype::BF16);
        let p = f.params(-0.625, 1.25, Mapping::Asymmetric);
        for r in [0.4375f32, 0.3125, 0.123_456, -0.61, 2.0] {
            let ex = worked_example(FormatKind::Int(4), &p, r, WorkDtype::BF16, None).unwrap();
            let Steps::Int(s) = &ex.steps else { panic!("int steps") };
            assert_eq!(s.scaled, WorkDtype::BF16.round(r / p.scale));
            assert_eq!(s.q, f.quantize(r, &p), "{r}");
            assert_eq!(ex.dequantized, WorkDtype::BF16.round(s.product));
            assert_eq!(ex.dequantized, f.fake_quant(r, &p));
        }
        // 3.5 − 3 = 0.5 rounds to 0 (Z before rounding).
        let ex = worked_example(FormatKind::Int(4), &p, 0.4375, WorkDtype::BF16, None).unwrap();
        let Steps::Int(s) = &ex.steps else { panic!("int steps") };
        assert_eq!((s.scaled, s.shifted, s.rounded, s.q), (3.5, 0.5, 0.0, 0));
    }

    #[test]
    fn facts_come_from_the_format() {
        let int4 = facts(FormatKind::Int(4)).unwrap();
        assert_eq!((int4.label.as_str(), int4.bits, int4.qmin, int4.qmax), ("INT4", 4, -8, 7));
        assert!(int4.has_zero_point && !int4.offset_is_real && !int4.is_float);
        let e4m3 = facts(FormatKind::E4M3).unwrap();
        assert_eq!((e4m3.label.as_str(), e4m3.fmax, e4m3.bias), ("FP8 E4M3", Some(448.0), Some(7)));
        assert_eq!((e4m3.exponent_bits, e4m3.mantissa_bits, e4m3.code_dtype.as_str()), (4, 3, "F8_E4M3"));
        assert!(e4m3.offset_is_real && !e4m3.has_zero_point && e4m3.is_float);
        assert_eq!(facts(FormatKind::E5M2).unwrap().bias, Some(15));
        assert!(facts(FormatKind::Int(9)).is_err());
    }

    #[test]
    fn two_level_steps_agree_with_the_format() {
        use crate::format::{MicroFormat, MicroKind};
        let gs = 2048.0;
        let f = MicroFormat::new(MicroKind::Nvfp4, WorkDtype::F32).with_global(gs);
        let p = f.params(-0.09, 0.09, Mapping::Symmetric);
        let b = block_scale_steps(FormatKind::Nvfp4, 0.09, &p, WorkDtype::F32, Some(gs)).unwrap();
        assert_eq!(b.scale, p.scale);
        assert_eq!(b.minmax_scale, p.scale);
        assert_eq!(b.wanted, 0.09f32 / 6.0);
        assert_eq!(crate::format::Fp8Format::E4M3.value(b.code), p.scale);
        assert_eq!(b.step, p.scale / gs);
        let ex = worked_example(FormatKind::Nvfp4, &p, 0.05, WorkDtype::F32, Some(gs)).unwrap();
        let Steps::Fp8(s) = &ex.steps else { panic!("float steps") };
        assert_eq!(s.scaled, 0.05 / b.step);
        assert_eq!(ex.dequantized, f.fake_quant(0.05, &p));
        assert_eq!((s.exponent_bits, s.mantissa_bits, s.bias), (2, 1, 1));
        // The code's value is the E2M1 number itself, not scaled by the global scale.
        assert!(crate::format::E2M1_VALUES.contains(&s.value.abs()), "{}", s.value);
        assert_eq!(ex.dequantized, WorkDtype::BF16.round(s.value * b.step));
        assert_eq!(s.code, s.sign << 3 | s.exponent << 1 | s.mantissa);
        // MX: 1.75·2^-3 rounds up to P = 2^-2, so E = 125 − 2 = 123 for MXFP4.
        let m = MicroFormat::new(MicroKind::Mxfp4, WorkDtype::F32);
        let p = m.params(-0.21875, 0.21875, Mapping::Symmetric);
        let b = block_scale_steps(FormatKind::Mxfp4, 0.21875, &p, WorkDtype::F32, None).unwrap();
        assert_eq!((b.code, b.wanted, b.lifted), (123, 0.25, 123.0));
    }

    #[test]
    fn fp8_decode_reads_as_a_formula() {
        let unit = SliceParams { scale: 1.0, zero_point: 0, offset: 0.0, lo: -448.0, hi: 448.0 };
        let ex = worked_example(FormatKind::E4M3, &unit, 5.0, WorkDtype::F32, None).unwrap();
        let Steps::Fp8(s) = &ex.steps else { panic!("fp8 steps") };
        assert_eq!(s.decoded, "(−1)^0 · 2^(9−7) · 1.010₂ = 5.0");
        assert!(!s.is_subnormal);
        let ex = worked_example(FormatKind::E4M3, &unit, -0.005_859_375, WorkDtype::F32, None).unwrap();
        let Steps::Fp8(s) = &ex.steps else { panic!("fp8 steps") };
        assert!(s.is_subnormal);
        assert_eq!(s.decoded, "(−1)^1 · 2^(1−7) · 0.011₂ = -0.005859375");
    }

    #[test]
    fn fp8_bits_recompose_the_code() {
        for ex in fp8_side_by_side(-2.0, 2.0, Mapping::Symmetric, 0.3, WorkDtype::BF16) {
            let Steps::Fp8(s) = &ex.steps else { panic!("fp8 steps") };
            let code = (s.sign << 7) | (s.exponent << s.mantissa_bits) | s.mantissa;
            assert_eq!(code, s.code);
            assert_eq!(s.exponent_bits + s.mantissa_bits, 7);
            assert!((ex.error).abs() < 0.3 * 0.07, "{ex:?}");
        }
    }
}
