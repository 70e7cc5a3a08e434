//! Microscaling formats: small float values sharing a block scale that is itself
//! stored in 8 bits (docs/numerics.md, "Microscaling formats").
//!
//! - NVFP4: E2M1 values, groups of 16, an E4M3 block scale under one F32 global
//!   scale per tensor (the two-level scale: the block scale divided by the
//!   global one is the step the values use).
//! - MXFP4: E2M1 values, groups of 32, an E8M0 block scale (a power of two).
//! - MXFP8: E4M3 values, groups of 32, an E8M0 block scale.
//!
//! [`SliceParams::scale`] holds the block scale as stored (the E4M3 value, or
//! 2^(E−127)); the global scale lives in the format value itself
//! ([`NumberFormat::with_global`]), set once per tensor before slicing.
//! Quantizing divides in the working dtype D (NVFP4: in F32, against an F32
//! scale); R′ is always BF16, as compressed-tensors returns it.

use safetensors::Dtype;

use super::fp8::Fp8Format;
use super::{NumberFormat, OffsetKind, ScaleStorage, SliceParams, WorkDtype};
use crate::scheme::Mapping;

/// The E2M1 magnitudes, by 3-bit index.
pub const E2M1_VALUES: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// 448 · 6: the NVFP4 global scale maps the tensor's amax onto the largest
/// block scale times the largest E2M1 value.
const NVFP4_GLOBAL_NUMERATOR: f32 = 2688.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MicroKind {
    Nvfp4,
    Mxfp4,
    Mxfp8,
}

/// One microscaling format computing in a working dtype, with its global scale.
#[derive(Clone, Copy, Debug)]
pub struct MicroFormat {
    kind: MicroKind,
    work: WorkDtype,
    /// NVFP4's global scale gs (a multiplier); 1 for MX, which has none.
    global: f32,
}

/// E2M1 round-half-even of |v| ≤ 6 (the ties go to the even index: 0.25 → 0,
/// 0.75 → 1, 1.25 → 1, 1.75 → 2, 2.5 → 2, 3.5 → 4, 5 → 4).
#[inline]
fn e2m1_index(a: f32) -> u8 {
    u8::from(a > 0.25)
        + u8::from(a >= 0.75)
        + u8::from(a > 1.25)
        + u8::from(a >= 1.75)
        + u8::from(a > 2.5)
        + u8::from(a >= 3.5)
        + u8::from(a > 5.0)
}

/// v (already clamped to ±6) → the E2M1 nibble `sign << 3 | index`. A negative v
/// keeps its sign even when it rounds to zero (0x8), as compressed-tensors does.
#[inline]
pub fn e2m1_encode(v: f32) -> u8 {
    let sign = ((v.to_bits() >> 28) & 0x8) as u8;
    sign | e2m1_index(v.abs())
}

/// The value of an E2M1 nibble.
#[inline]
pub fn e2m1_value(nibble: u8) -> f32 {
    let m = E2M1_VALUES[usize::from(nibble & 7)];
    if nibble & 8 != 0 { -m } else { m }
}

/// The power of two an MX block scale rounds amax to: the exponent of amax,
/// plus one when its significand is ≥ 1.75 (adding 2^21 to the f32 bits carries
/// into the exponent exactly then). The same bits work for BF16 and F16 values,
/// whose mantissas are the top bits of f32's.
#[inline]
fn mx_exponent(amax: f32, elem_max_log2: i32) -> u8 {
    let p = (amax.to_bits().wrapping_add(0x0020_0000)) & 0x7F80_0000;
    let biased = (p >> 23) as i32;
    if biased == 0 {
        return 0;
    }
    (biased - elem_max_log2).clamp(0, 255) as u8
}

/// 2^(e − 127) as f32 (E8M0 decode; e = 0 gives 2^-127, a subnormal).
#[inline]
pub fn e8m0_value(e: u8) -> f32 {
    if e == 0 { f32::from_bits(0x0040_0000) } else { f32::from_bits(u32::from(e) << 23) }
}

/// An E8M0 byte from a power-of-two scale.
#[inline]
pub fn e8m0_byte(scale: f32) -> u8 {
    if scale.to_bits() == 0x0040_0000 { 0 } else { ((scale.to_bits() >> 23) & 0xFF) as u8 }
}

impl MicroFormat {
    pub const fn new(kind: MicroKind, work: WorkDtype) -> Self {
        Self { kind, work, global: 1.0 }
    }

    pub fn kind(self) -> MicroKind {
        self.kind
    }

    fn is_fp4(self) -> bool {
        matches!(self.kind, MicroKind::Nvfp4 | MicroKind::Mxfp4)
    }

    /// The largest element magnitude: 6 (E2M1) or 448 (E4M3).
    fn elem_max(self) -> f32 {
        if self.is_fp4() { 6.0 } else { 448.0 }
    }

    /// The step the element values are multiplied by: NVFP4's block scale over the
    /// global scale, in F32; the block scale itself for MX.
    #[inline]
    fn step(self, p: &SliceParams) -> f32 {
        match self.kind {
            MicroKind::Nvfp4 => p.scale / self.global,
            _ => p.scale,
        }
    }

    #[inline]
    fn encode(self, v: f32) -> u8 {
        if self.is_fp4() {
            e2m1_encode(v.clamp(-6.0, 6.0))
        } else {
            Fp8Format::E4M3.encode(v.clamp(-448.0, 448.0))
        }
    }

    #[inline]
    fn value(self, code: u8) -> f32 {
        if self.is_fp4() { e2m1_value(code) } else { Fp8Format::E4M3.value(code) }
    }
}

impl NumberFormat for MicroFormat {
    type Code = u8;

    fn work(&self) -> WorkDtype {
        self.work
    }

    fn params(&self, lo: f32, hi: f32, _mapping: Mapping) -> SliceParams {
        let amax = (-lo.min(0.0)).max(hi.max(0.0));
        let scale = match self.kind {
            MicroKind::Nvfp4 => {
                let s = self.work.round(amax / 6.0);
                let e4m3 = Fp8Format::E4M3;
                let q = e4m3.value(e4m3.encode((self.global * s).clamp(-448.0, 448.0)));
                // A zero block scale would divide by zero: E4M3's eps instead.
                if q == 0.0 { 0.125 } else { q }
            }
            MicroKind::Mxfp4 => e8m0_value(mx_exponent(amax, 2)),
            MicroKind::Mxfp8 => e8m0_value(mx_exponent(amax, 8)),
        };
        let p = SliceParams { scale, zero_point: 0, offset: 0.0, lo: 0.0, hi: 0.0 };
        let reach = self.elem_max() * self.step(&p);
        SliceParams { lo: -reach, hi: reach, ..p }
    }

    #[inline]
    fn quantize(&self, x: f32, p: &SliceParams) -> u8 {
        // + 0.0 turns −0.0 into +0.0 (code 0x00), as compressed-tensors adds Z = 0.
        let v = match self.kind {
            MicroKind::Nvfp4 => x / self.step(p) + 0.0,
            _ => self.work.round(x / p.scale) + 0.0,
        };
        self.encode(v)
    }

    #[inline]
    fn dequantize(&self, q: u8, p: &SliceParams) -> f32 {
        WorkDtype::BF16.round(self.value(q) * self.step(p))
    }

    #[inline]
    fn fake_quant_x8(&self, x: wide::f32x8, p: &SliceParams) -> wide::f32x8 {
        // NVFP4 divides by an F32 step; MX rounds the quotient to D.
        let quotient = if self.kind == MicroKind::Nvfp4 { WorkDtype::F32 } else { self.work };
        crate::simd::micro_fake_quant_x8(x, self.step(p), quotient, self.is_fp4())
    }

    fn code_value(&self, code: u8) -> f32 {
        self.value(code)
    }

    fn levels(&self, p: &SliceParams) -> Vec<f32> {
        let mut out: Vec<f32> = (0..=if self.is_fp4() { 15u8 } else { 255 })
            .filter(|&c| self.value(c).is_finite())
            .map(|c| self.dequantize(c, p))
            .collect();
        out.sort_by(f32::total_cmp);
        out.dedup();
        out
    }

    fn qmax(&self) -> f32 {
        self.elem_max()
    }

    fn qmin(&self) -> f32 {
        -self.elem_max()
    }

    fn code_dtype(&self) -> Dtype {
        if self.is_fp4() { Dtype::U8 } else { Dtype::F8_E4M3 }
    }

    fn label(&self) -> String {
        use crate::scheme::FormatKind;
        match self.kind {
            MicroKind::Nvfp4 => FormatKind::Nvfp4.label(),
            MicroKind::Mxfp4 => FormatKind::Mxfp4.label(),
            MicroKind::Mxfp8 => FormatKind::Mxfp8.label(),
        }
    }

    fn bits(&self) -> u8 {
        if self.is_fp4() { 4 } else { 8 }
    }

    fn is_float(&self) -> bool {
        true
    }

    fn exponent_bits(&self) -> u32 {
        if self.is_fp4() { 2 } else { 4 }
    }

    fn mantissa_bits(&self) -> u32 {
        if self.is_fp4() { 1 } else { 3 }
    }

    fn bias(&self) -> Option<i32> {
        Some(if self.is_fp4() { 1 } else { 7 })
    }

    fn fmax(&self) -> Option<f32> {
        Some(self.elem_max())
    }

    fn offset_kind(&self) -> OffsetKind {
        OffsetKind::Real
    }

    fn runtime_loadable(&self, mapping: Mapping) -> bool {
        mapping == Mapping::Symmetric
    }

    fn code_to_byte(&self, q: u8) -> u8 {
        q
    }

    fn code_from_byte(&self, b: u8) -> u8 {
        b
    }

    /// Block scales are already values of their stored dtype (E4M3 or E8M0).
    fn stored_params(&self, p: &SliceParams, _mapping: Mapping, _round: impl Fn(f32) -> f32) -> SliceParams {
        *p
    }

    fn scale_storage(&self) -> ScaleStorage {
        match self.kind {
            MicroKind::Nvfp4 => ScaleStorage::E4M3,
            _ => ScaleStorage::E8M0,
        }
    }

    fn global_from_amax(&self, amax: f32) -> Option<f32> {
        if self.kind != MicroKind::Nvfp4 {
            return None;
        }
        // gs = D(D(1 / max(amax, tiny)) · 2688), the reciprocal first as torch
        // evaluates `2688 / amax`; a non-finite gs becomes 1.
        let d = self.work;
        let m = amax.max(d.tiny());
        let gs = d.round(d.round(1.0 / m) * NVFP4_GLOBAL_NUMERATOR);
        Some(if gs.is_finite() { gs } else { 1.0 })
    }

    fn with_global(self, gs: f32) -> Self {
        Self { global: gs, ..self }
    }

    fn global(&self) -> Option<f32> {
        (self.kind == MicroKind::Nvfp4).then_some(self.global)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2m1_ties_round_to_even_and_keep_the_sign() {
        let cases = [
            (0.25, 0x0),
            (0.250_000_1, 0x1),
            (0.75, 0x2),
            (1.25, 0x2),
            (1.75, 0x4),
            (2.5, 0x4),
            (3.5, 0x6),
            (5.0, 0x6),
            (5.0001, 0x7),
            (6.0, 0x7),
            (-0.5, 0x9),
            (-1e-30, 0x8),
            (0.0, 0x0),
        ];
        for (v, want) in cases {
            assert_eq!(e2m1_encode(v), want, "{v}");
        }
        assert_eq!(e2m1_value(0xB), -1.5);
    }

    #[test]
    fn mx_exponent_rounds_at_one_point_seven_five() {
        // FORMATS' examples: 1.74·2^-3 → E = 122, 1.75·2^-3 → E = 123 (MXFP4).
        assert_eq!(mx_exponent(1.74 * 0.125, 2), 122);
        assert_eq!(mx_exponent(1.75 * 0.125, 2), 123);
        assert_eq!(mx_exponent(0.0, 2), 0);
        for e in [0u8, 1, 100, 127, 254] {
            assert_eq!(e8m0_byte(e8m0_value(e)), e);
        }
    }

    #[test]
    fn nvfp4_global_scale_of_a_known_amax() {
        let f = MicroFormat::new(MicroKind::Nvfp4, WorkDtype::F32);
        // 1.3125 is the reference input's amax: gs = 2048 exactly.
        assert_eq!(f.global_from_amax(1.3125), Some(2048.0));
        assert_eq!(f.global_from_amax(0.0).map(f32::is_finite), Some(true));
    }
}
