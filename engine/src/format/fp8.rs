//! OCP FP8: E4M3FN (no Inf, NaN = S.1111.111) and E5M2 (IEEE-like)
//! (docs/numerics.md, "FP8 formats").
//!
//! Encoding is round-to-nearest-even done on the f32 bit pattern, after the value
//! has been clamped to ±fmax (quantscope always saturates). Decoding is a 256-entry
//! table built from the bit layout and checked against ml_dtypes' tables in tests.

use std::sync::LazyLock;

use safetensors::Dtype;

use super::{NumberFormat, OffsetKind, SliceParams, WorkDtype, nonzero_scale, round_half_even};
use crate::scheme::Mapping;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fp8Kind {
    E4M3,
    E5M2,
}

/// One FP8 variant: its bit layout and its decode table.
#[derive(Clone, Copy, Debug)]
pub struct Fp8Format {
    kind: Fp8Kind,
    man_bits: u32,
    bias: u32,
    fmax: f32,
    min_normal: f32,
    /// 2^(bias − 1 + mantissa bits): maps the subnormal range onto integers.
    subnormal_scale: f32,
    nan_code: u8,
    /// The working dtype D every intermediate is rounded to.
    work: WorkDtype,
}

static E4M3_TABLE: LazyLock<[f32; 256]> = LazyLock::new(|| build_table(4, 3, 7, true));
static E5M2_TABLE: LazyLock<[f32; 256]> = LazyLock::new(|| build_table(5, 2, 15, false));

/// Value of every code. `finite_only` is E4M3FN's rule: the all-ones exponent is
/// still a normal binade, and only S.1111.111 is NaN.
fn build_table(exp_bits: u32, man_bits: u32, bias: i32, finite_only: bool) -> [f32; 256] {
    let mut table = [0.0f32; 256];
    let exp_max = (1u32 << exp_bits) - 1;
    let man_max = (1u32 << man_bits) - 1;
    for (code, slot) in table.iter_mut().enumerate() {
        let code = code as u32;
        let sign = if code & 0x80 != 0 { -1.0f32 } else { 1.0 };
        let e = (code >> man_bits) & exp_max;
        let m = code & man_max;
        let frac = m as f32 / (1u32 << man_bits) as f32;
        *slot = if finite_only && e == exp_max && m == man_max {
            f32::NAN
        } else if !finite_only && e == exp_max {
            if m == 0 { sign * f32::INFINITY } else { f32::NAN }
        } else if e == 0 {
            sign * frac * 2f32.powi(1 - bias)
        } else {
            sign * (1.0 + frac) * 2f32.powi(e as i32 - bias)
        };
    }
    table
}

impl Fp8Format {
    pub const E4M3: Self = Self::new(Fp8Kind::E4M3);
    pub const E5M2: Self = Self::new(Fp8Kind::E5M2);

    const fn new(kind: Fp8Kind) -> Self {
        match kind {
            Fp8Kind::E4M3 => Self {
                kind,
                man_bits: 3,
                bias: 7,
                fmax: 448.0,
                min_normal: 0.015_625,
                subnormal_scale: 512.0,
                nan_code: 0x7F,
                work: WorkDtype::F32,
            },
            Fp8Kind::E5M2 => Self {
                kind,
                man_bits: 2,
                bias: 15,
                fmax: 57344.0,
                min_normal: 6.103_515_6e-5,
                subnormal_scale: 65536.0,
                nan_code: 0x7E,
                work: WorkDtype::F32,
            },
        }
    }

    /// The same format computing in the working dtype `work`.
    #[must_use]
    pub const fn in_work(self, work: WorkDtype) -> Self {
        Self { work, ..self }
    }

    pub fn kind(&self) -> Fp8Kind {
        self.kind
    }

    fn table(&self) -> &'static [f32; 256] {
        match self.kind {
            Fp8Kind::E4M3 => &E4M3_TABLE,
            Fp8Kind::E5M2 => &E5M2_TABLE,
        }
    }

    /// The value a code stands for (NaN and ±Inf included).
    #[inline]
    pub fn value(&self, code: u8) -> f32 {
        self.table()[code as usize]
    }

    /// f32 → FP8 code with round-half-to-even. Inputs beyond ±fmax must already
    /// be clamped (quantize does); NaN keeps its sign.
    #[inline]
    pub fn encode(&self, y: f32) -> u8 {
        let bits = y.to_bits();
        let sign = ((bits >> 24) & 0x80) as u8;
        if y.is_nan() {
            return sign | self.nan_code;
        }
        let a = y.abs();
        if a < self.min_normal {
            // Subnormal: scaling by a power of two is exact, so this rounds exactly.
            return sign | round_half_even(a * self.subnormal_scale) as u8;
        }
        let shift = 23 - self.man_bits;
        let rebased = (bits & 0x7FFF_FFFF) - ((127 - self.bias) << 23);
        let lsb = (rebased >> shift) & 1;
        let rounded = (rebased + (1 << (shift - 1)) - 1 + lsb) >> shift;
        sign | rounded as u8
    }
}

impl NumberFormat for Fp8Format {
    type Code = u8;

    fn work(&self) -> WorkDtype {
        self.work
    }

    fn params(&self, lo: f32, hi: f32, mapping: Mapping) -> SliceParams {
        let d = self.work;
        match mapping {
            Mapping::Symmetric => {
                let amax = (-lo.min(0.0)).max(hi.max(0.0));
                SliceParams {
                    scale: nonzero_scale(d.round(amax / self.fmax), d),
                    zero_point: 0,
                    offset: 0.0,
                    lo: -amax,
                    hi: amax,
                }
            }
            Mapping::Asymmetric => {
                // quantscope's own definition: a real-valued centre, no widening.
                // midpoint rounds exactly like (hi + lo) / 2 but cannot overflow.
                let offset = d.round(f32::midpoint(hi, lo));
                let mut scale = d.round(d.round(hi - lo) / (2.0 * self.fmax));
                if scale.is_infinite() {
                    scale = d.round(hi / (2.0 * self.fmax) - lo / (2.0 * self.fmax));
                }
                SliceParams { scale: nonzero_scale(scale, d), zero_point: 0, offset, lo, hi }
            }
        }
    }

    #[inline]
    fn quantize(&self, x: f32, p: &SliceParams) -> u8 {
        // v = D(x / S) + Z with Z = 0: the + 0 turns −0.0 into +0.0 (code 0x00),
        // as compressed-tensors does; exact, so no further rounding.
        let d = self.work;
        let y = if p.offset == 0.0 { x } else { d.round(x - p.offset) };
        let v = d.round(y / p.scale) + 0.0;
        self.encode(v.clamp(-self.fmax, self.fmax))
    }

    #[inline]
    fn dequantize(&self, q: u8, p: &SliceParams) -> f32 {
        let d = self.work;
        let v = d.round(p.scale * self.value(q));
        if p.offset == 0.0 { v } else { d.round(v + p.offset) }
    }

    #[inline]
    fn fake_quant_x8(&self, x: wide::f32x8, p: &SliceParams) -> wide::f32x8 {
        let layout = crate::simd::Fp8Layout {
            man_bits: self.man_bits,
            fmax: self.fmax,
            min_normal: self.min_normal,
            subnormal_scale: self.subnormal_scale,
            work: self.work,
        };
        crate::simd::fp8_fake_quant_x8(x, p, layout)
    }

    fn levels(&self, p: &SliceParams) -> Vec<f32> {
        let mut out: Vec<f32> = (0..=255u8)
            .filter(|&c| self.value(c).is_finite() && c != 0x80)
            .map(|c| self.dequantize(c, p))
            .collect();
        out.sort_by(f32::total_cmp);
        out.dedup();
        out
    }

    fn qmax(&self) -> f32 {
        self.fmax
    }

    fn qmin(&self) -> f32 {
        -self.fmax
    }

    fn code_dtype(&self) -> Dtype {
        match self.kind() {
            Fp8Kind::E4M3 => Dtype::F8_E4M3,
            Fp8Kind::E5M2 => Dtype::F8_E5M2,
        }
    }

    fn label(&self) -> String {
        match self.kind {
            Fp8Kind::E4M3 => crate::scheme::FormatKind::E4M3.label(),
            Fp8Kind::E5M2 => crate::scheme::FormatKind::E5M2.label(),
        }
    }

    fn bits(&self) -> u8 {
        8
    }

    fn is_float(&self) -> bool {
        true
    }

    fn exponent_bits(&self) -> u32 {
        7 - self.man_bits
    }

    fn mantissa_bits(&self) -> u32 {
        self.man_bits
    }

    fn bias(&self) -> Option<i32> {
        Some(self.bias as i32)
    }

    fn fmax(&self) -> Option<f32> {
        Some(self.fmax)
    }

    fn offset_kind(&self) -> OffsetKind {
        OffsetKind::Real
    }

    fn runtime_loadable(&self, mapping: Mapping) -> bool {
        // vLLM / llm-compressor load symmetric E4M3 only.
        self.kind == Fp8Kind::E4M3 && mapping == Mapping::Symmetric
    }

    fn code_to_byte(&self, q: u8) -> u8 {
        q
    }

    fn code_from_byte(&self, b: u8) -> u8 {
        b
    }

    fn stored_params(&self, p: &SliceParams, _mapping: Mapping, round: impl Fn(f32) -> f32) -> SliceParams {
        SliceParams { scale: nonzero_scale(round(p.scale), self.work), offset: round(p.offset), ..*p }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        let f = Fp8Format::E4M3;
        assert_eq!(f.encode(448.0), 0x7E);
        assert_eq!(f.encode(-0.0), 0x80);
        assert_eq!(f.encode(f32::NAN), 0x7F);
        assert_eq!(f.encode(-f32::NAN), 0xFF);
        assert_eq!(f.encode(2f32.powi(-9)), 0x01);
        assert_eq!(f.value(0x7E), 448.0);
        assert!(f.value(0x7F).is_nan());
        let g = Fp8Format::E5M2;
        assert_eq!(g.encode(57344.0), 0x7B);
        assert_eq!(g.encode(f32::NAN), 0x7E);
        assert_eq!(g.value(0x7C), f32::INFINITY);
        assert_eq!(g.encode(2f32.powi(-16)), 0x01);
    }

    #[test]
    fn saturates_past_fmax() {
        let f = Fp8Format::E4M3;
        let p = f.params(-1.0, 1.0, Mapping::Symmetric);
        assert_eq!(f.quantize(1e9, &p), 0x7E);
        assert_eq!(f.quantize(f32::NEG_INFINITY, &p), 0xFE);
        assert_eq!(f.fake_quant(5.0, &p), 1.0);
    }

    #[test]
    fn asymmetric_uses_a_real_offset() {
        let f = Fp8Format::E4M3;
        let p = f.params(1.0, 3.0, Mapping::Asymmetric);
        assert_eq!(p.offset, 2.0);
        assert_eq!(p.scale, 2.0 / 896.0);
        assert_eq!(f.fake_quant(2.0, &p), 2.0);
        assert_eq!(f.fake_quant(3.0, &p), 3.0);
    }
}
