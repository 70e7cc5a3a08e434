//! Signed b-bit integers (INT8 by default), exactly as docs/numerics.md,
//! "Integer formats" writes them.

use safetensors::Dtype;

use super::{NumberFormat, OffsetKind, SliceParams, WorkDtype, nonzero_scale, round_half_even};
use crate::error::{Error, Result};
use crate::scheme::Mapping;

/// A signed integer format with `bits` bits: Qmin = −2^(b−1), Qmax = 2^(b−1) − 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntFormat {
    bits: u8,
    qmin: f32,
    qmax: f32,
    work: WorkDtype,
}

impl IntFormat {
    pub fn new(bits: u8) -> Result<Self> {
        if !(2..=8).contains(&bits) {
            return Err(Error::Scheme(format!("INT{bits} is not supported (2 to 8 bits)")));
        }
        let half = 1i32 << (bits - 1);
        Ok(Self { bits, qmin: -half as f32, qmax: (half - 1) as f32, work: WorkDtype::F32 })
    }

    /// The same format computing in the working dtype `work`.
    #[must_use]
    pub fn in_work(self, work: WorkDtype) -> Self {
        Self { work, ..self }
    }

    /// `Z = round_half_even(clamp(D(Qmin − D(lo / S)), Qmin, Qmax))` from the
    /// scale before its eps substitution (so an all-zero slice, 0/0, gets Z = 0).
    fn zero_point(&self, lo: f32, scale: f32) -> i32 {
        let d = self.work;
        let z = round_half_even(d.round(self.qmin - d.round(lo / scale)).clamp(self.qmin, self.qmax));
        if z.is_nan() { 0 } else { z as i32 }
    }
}

impl NumberFormat for IntFormat {
    type Code = i32;

    fn work(&self) -> WorkDtype {
        self.work
    }

    fn params(&self, lo: f32, hi: f32, mapping: Mapping) -> SliceParams {
        // Widen so that 0 is exactly representable.
        let lo = lo.min(0.0);
        let hi = hi.max(0.0);
        let levels = self.qmax - self.qmin;
        let d = self.work;
        match mapping {
            Mapping::Symmetric => {
                let amax = (-lo).max(hi);
                // Qmin·S = −amax·128/127.5 overflows f32 when amax is within 0.4% of
                // f32::MAX; capping S keeps every level finite (no effect otherwise).
                let scale = nonzero_scale(d.round((amax / (levels / 2.0)).min(f32::MAX / -self.qmin)), d);
                SliceParams { scale, zero_point: 0, offset: 0.0, lo: -amax, hi: amax }
            }
            Mapping::Asymmetric => {
                let span = d.round(hi - lo);
                let mut scale = d.round(span / levels);
                if span.is_infinite() {
                    // hi − lo overflowed (values near ±f32::MAX): split the division.
                    scale = d.round(hi / levels - lo / levels);
                }
                // |Q − Z|·S reaches hi − lo, which overflows past f32::MAX: cap S.
                let scale = d.round(scale.min(f32::MAX / levels));
                let zero_point = self.zero_point(lo, scale);
                SliceParams { scale: nonzero_scale(scale, d), zero_point, offset: 0.0, lo, hi }
            }
        }
    }

    #[inline]
    fn quantize(&self, x: f32, p: &SliceParams) -> i32 {
        // Z is added before rounding, each step rounded to D (FORMATS.md §2). Kept
        // in f32 so that ±Inf saturates instead of overflowing an integer; NaN
        // ends up as code 0 (the saturating cast).
        let d = self.work;
        let v = d.round(d.round(x / p.scale) + p.zero_point as f32);
        round_half_even(v).clamp(self.qmin, self.qmax) as i32
    }

    #[inline]
    fn dequantize(&self, q: i32, p: &SliceParams) -> f32 {
        let d = self.work;
        d.round(d.round(q as f32 - p.zero_point as f32) * p.scale)
    }

    #[inline]
    fn fake_quant(&self, x: f32, p: &SliceParams) -> f32 {
        // Same arithmetic as quantize + dequantize, without the int round trip,
        // so the loop stays in f32 lanes. |Q − Z| ≤ 255 is exact in every D.
        let d = self.work;
        let z = p.zero_point as f32;
        let q = round_half_even(d.round(d.round(x / p.scale) + z)).clamp(self.qmin, self.qmax);
        // NaN is code 0; + 0.0 makes a −0 code the integer 0, as the cast does.
        let q = if q.is_nan() { 0.0 } else { q + 0.0 };
        d.round((q - z) * p.scale)
    }

    #[allow(clippy::inline_always)] // a call here makes the hot loop spill
    #[inline(always)]
    fn fake_quant_x8(&self, x: wide::f32x8, p: &SliceParams) -> wide::f32x8 {
        crate::simd::int_fake_quant_x8(x, p, self.qmin, self.qmax, self.work)
    }

    fn levels(&self, p: &SliceParams) -> Vec<f32> {
        (self.qmin as i32..=self.qmax as i32).map(|q| self.dequantize(q, p)).collect()
    }

    fn qmax(&self) -> f32 {
        self.qmax
    }

    fn qmin(&self) -> f32 {
        self.qmin
    }

    fn code_dtype(&self) -> Dtype {
        Dtype::I8
    }

    fn label(&self) -> String {
        crate::scheme::FormatKind::Int(self.bits).label()
    }

    fn bits(&self) -> u8 {
        self.bits
    }

    fn is_float(&self) -> bool {
        false
    }

    fn exponent_bits(&self) -> u32 {
        0
    }

    fn mantissa_bits(&self) -> u32 {
        0
    }

    fn bias(&self) -> Option<i32> {
        None
    }

    fn fmax(&self) -> Option<f32> {
        None
    }

    fn offset_kind(&self) -> OffsetKind {
        OffsetKind::ZeroPoint
    }

    fn runtime_loadable(&self, _mapping: Mapping) -> bool {
        true
    }

    fn code_to_byte(&self, q: i32) -> u8 {
        // Codes lie in Qmin..=Qmax ⊂ i8 for every supported width.
        (q as i8).to_le_bytes()[0]
    }

    fn code_from_byte(&self, b: u8) -> i32 {
        i32::from(i8::from_le_bytes([b]))
    }

    fn stored_params(&self, p: &SliceParams, mapping: Mapping, round: impl Fn(f32) -> f32) -> SliceParams {
        let raw = round(p.scale);
        if raw == p.scale {
            // Already in the stored dtype (S is computed in D, which it is stored in).
            return *p;
        }
        let zero_point = match mapping {
            Mapping::Symmetric => 0,
            Mapping::Asymmetric => self.zero_point(p.lo, raw),
        };
        SliceParams { scale: nonzero_scale(raw, self.work), zero_point, ..*p }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int8() -> IntFormat {
        IntFormat::new(8).unwrap()
    }

    #[test]
    fn symmetric_scale_is_amax_over_127_5() {
        let p = int8().params(-2.0, 1.0, Mapping::Symmetric);
        assert_eq!(p.scale, 2.0 / 127.5);
        assert_eq!(p.zero_point, 0);
        // With amax = 127.5, S = 1: +amax ties to even 128 and clamps to 127,
        // −amax ties to −128, which fits.
        let p = int8().params(-127.5, 0.0, Mapping::Symmetric);
        assert_eq!(p.scale, 1.0);
        assert_eq!(int8().quantize(127.5, &p), 127);
        assert_eq!(int8().quantize(-127.5, &p), -128);
    }

    #[test]
    fn asymmetric_zero_point_and_widening() {
        // All-positive range widens to [0, 2.55]: S = 0.01, Z = −128.
        let p = int8().params(1.0, 2.55, Mapping::Asymmetric);
        assert_eq!(p.lo, 0.0);
        assert_eq!(p.scale, 2.55 / 255.0);
        assert_eq!(p.zero_point, -128);
        assert_eq!(int8().fake_quant(0.0, &p), 0.0);
    }

    #[test]
    fn adds_z_before_rounding() {
        let p = SliceParams { scale: 1.0, zero_point: 3, offset: 0.0, lo: -10.0, hi: 10.0 };
        // 2.5 + 3 = 5.5 → 6 (even); 3.5 + 3 = 6.5 → 6; −0.5 + 3 = 2.5 → 2.
        assert_eq!(int8().quantize(2.5, &p), 6);
        assert_eq!(int8().quantize(3.5, &p), 6);
        assert_eq!(int8().quantize(-0.5, &p), 2);
        // FORMATS.md §2's example: S = 0.125, Z = −3; 3.5 − 3 = 0.5 rounds to 0.
        let f = IntFormat::new(4).unwrap();
        let p = f.params(-0.625, 1.25, Mapping::Asymmetric);
        assert_eq!((p.scale, p.zero_point), (0.125, -3));
        let codes = [0.4375, 0.3125, -0.625, 1.25, 0.1875, -0.0625].map(|x| f.quantize(x, &p));
        assert_eq!(codes, [0, 0, -8, 7, -2, -4]);
    }

    #[test]
    fn zero_scale_is_the_working_dtypes_eps_and_z_is_0() {
        for d in [WorkDtype::F32, WorkDtype::BF16, WorkDtype::F16] {
            let f = int8().in_work(d);
            let p = f.params(0.0, 0.0, Mapping::Asymmetric);
            assert_eq!((p.scale, p.zero_point), (d.eps(), 0));
            assert_eq!(f.fake_quant(0.0, &p).to_bits(), 0);
            assert_eq!(f.fake_quant(-0.0, &p).to_bits(), 0);
        }
    }

    #[test]
    fn bf16_rounds_every_step() {
        // amax 1.0: S = D(1/127.5) = (1 + 2^−7)·2^−7 in BF16 (f32: 0.007843138);
        // 127·S = 0.99994 rounds to 1.0 in BF16.
        let f = int8().in_work(WorkDtype::BF16);
        let p = f.params(-1.0, 1.0, Mapping::Symmetric);
        assert_eq!(p.scale, (1.0 + 1.0 / 128.0) / 128.0);
        assert_eq!(f.quantize(1.0, &p), 127);
        assert_eq!(f.dequantize(127, &p), 1.0);
    }

    #[test]
    fn degenerate_range_uses_epsilon_and_inf_saturates() {
        let p = int8().params(0.0, 0.0, Mapping::Symmetric);
        assert_eq!(p.scale, f32::EPSILON);
        assert_eq!(int8().quantize(f32::INFINITY, &p), 127);
        assert_eq!(int8().quantize(f32::NEG_INFINITY, &p), -128);
        assert_eq!(int8().quantize(f32::NAN, &p), 0);
        assert!(int8().fake_quant(f32::NAN, &p).is_finite());
    }

    #[test]
    fn fake_quant_equals_quantize_then_dequantize() {
        let f = IntFormat::new(4).unwrap();
        let p = f.params(-0.7, 1.3, Mapping::Asymmetric);
        for i in -300..300 {
            let x = i as f32 * 0.01;
            assert_eq!(f.fake_quant(x, &p), f.dequantize(f.quantize(x, &p), &p));
        }
        assert_eq!(f.levels(&p).len(), 16);
    }

    #[test]
    fn rejects_unsupported_widths() {
        assert!(IntFormat::new(1).is_err());
        assert!(IntFormat::new(9).is_err());
    }
}
