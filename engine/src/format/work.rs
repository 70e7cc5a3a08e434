//! The working dtype D of a tensor (FORMATS.md §1): every quantize/dequantize
//! operation is done in f32 and its result rounded half-to-even to D, exactly as
//! compressed-tensors computes in the weight's own dtype. F32 rounding is the
//! identity, so an F32 model runs the plain f32 arithmetic.
//!
//! The scalar rounding goes through the `half` crate (the reference); the 8-lane
//! rounding ([`WorkDtype::round_x8`]) works on the bit patterns and is tested
//! equal to it bit for bit.

use half::{bf16, f16};
use safetensors::Dtype;
use serde::Serialize;
use wide::{f32x8, u32x8};

#[cfg(test)]
use super::round_half_even;

/// The dtype every intermediate of the quantizer is rounded to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum WorkDtype {
    #[default]
    F32,
    BF16,
    F16,
}

impl WorkDtype {
    /// A tensor's working dtype: its own dtype for F32, BF16 and F16; F32 for
    /// everything else (F64, FP8 inputs).
    pub fn of(dtype: Dtype) -> Self {
        match dtype {
            Dtype::BF16 => Self::BF16,
            Dtype::F16 => Self::F16,
            _ => Self::F32,
        }
    }

    /// The safetensors dtype D names.
    pub fn dtype(self) -> Dtype {
        match self {
            Self::F32 => Dtype::F32,
            Self::BF16 => Dtype::BF16,
            Self::F16 => Dtype::F16,
        }
    }

    /// D's machine epsilon: the scale that replaces a zero scale
    /// (F32 2^−23, BF16 2^−7, F16 2^−10).
    pub fn eps(self) -> f32 {
        match self {
            Self::F32 => f32::EPSILON,
            Self::BF16 => 0.007_812_5,
            Self::F16 => 0.000_976_562_5,
        }
    }

    /// D's smallest positive normal value (torch's `finfo(D).tiny`).
    pub fn tiny(self) -> f32 {
        match self {
            Self::F32 | Self::BF16 => f32::MIN_POSITIVE,
            Self::F16 => 6.103_515_6e-5,
        }
    }

    /// `x` rounded half-to-even to D (NaN stays NaN, overflow becomes ±Inf).
    #[inline]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Self::F32 => x,
            Self::BF16 => bf16::from_f32(x).to_f32(),
            Self::F16 => f16::from_f32(x).to_f32(),
        }
    }

    /// [`WorkDtype::round`] on 8 lanes, by bit tricks.
    #[inline]
    pub fn round_x8(self, x: f32x8) -> f32x8 {
        match self {
            Self::F32 => x,
            Self::BF16 => bf16_round_x8(x),
            Self::F16 => f16_round_x8(x),
        }
    }
}

/// Round the low `shift` mantissa bits of every lane away, ties to even (a carry
/// moves into the exponent; past the largest finite f32 it gives Inf).
#[inline]
fn round_mantissa_x8(x: f32x8, shift: u32) -> f32x8 {
    let bits = x.to_bits();
    let lsb = (bits >> shift) & u32x8::splat(1);
    let r = (bits + u32x8::splat((1 << (shift - 1)) - 1) + lsb) & u32x8::splat(!((1u32 << shift) - 1));
    f32x8::from_bits(r)
}

/// BF16: add 0x7FFF + lsb, clear the low 16 bits; NaN lanes are kept.
#[inline]
fn bf16_round_x8(x: f32x8) -> f32x8 {
    x.is_nan().select(x, round_mantissa_x8(x, 16))
}

/// F16: 10 mantissa bits in the normal range, a fixed step 2^−24 below 2^−14,
/// Inf past 65504 (the rounding boundary is 65520).
#[inline]
fn f16_round_x8(x: f32x8) -> f32x8 {
    let a = x.abs();
    let normal = round_mantissa_x8(a, 13);
    let sub = round_half_even_x8(a * f32x8::splat(16_777_216.0)) * f32x8::splat(1.0 / 16_777_216.0);
    let r = a.simd_lt(f32x8::splat(6.103_515_6e-5)).select(sub, normal);
    let r = f32x8::splat(65504.0).simd_lt(r).select(f32x8::splat(f32::INFINITY), r);
    x.is_nan().select(x, r.copysign(x))
}

#[inline]
fn round_half_even_x8(x: f32x8) -> f32x8 {
    let two23 = f32x8::splat(8_388_608.0);
    let a = x.abs();
    let r = (a + two23) - two23;
    a.simd_lt(two23).select(r, a).copysign(x)
}

/// Scalar twin of the vector trick, only for the tests below.
#[cfg(test)]
fn f16_by_bits(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 6.103_515_6e-5 {
        round_half_even(a * 16_777_216.0) / 16_777_216.0
    } else {
        let b = a.to_bits();
        f32::from_bits((b + 0xFFF + ((b >> 13) & 1)) & !0x1FFF)
    };
    if r > 65504.0 { f32::INFINITY.copysign(x) } else { r.copysign(x) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> =
            (0..200_000u32).map(|k| f32::from_bits(k.wrapping_mul(2_654_435_761))).collect();
        v.extend((-20_000..20_000).map(|k| k as f32 * 0.001_37));
        v.extend([0.0, -0.0, 65504.0, 65519.0, 65520.0, 65536.0, 3.39e38, f32::MAX, f32::INFINITY]);
        v.extend([6.1e-5, 6.103_515_6e-5, 2.98e-8, 5.96e-8, 1e-40, f32::NAN, 1.003_906_2, 1.011_718_8]);
        while !v.len().is_multiple_of(8) {
            v.push(0.5);
        }
        v
    }

    #[test]
    fn vector_rounding_equals_half_crate() {
        for d in [WorkDtype::F32, WorkDtype::BF16, WorkDtype::F16] {
            for c in inputs().chunks(8) {
                let r = d.round_x8(f32x8::from(c)).to_array();
                for (x, y) in c.iter().zip(r) {
                    let want = d.round(*x);
                    assert!(want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()), "{d:?} {x:e}");
                }
            }
        }
        for x in inputs() {
            let (a, b) = (WorkDtype::F16.round(x), f16_by_bits(x));
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{x:e}");
        }
    }

    #[test]
    fn eps_is_one_ulp_at_one() {
        for d in [WorkDtype::F32, WorkDtype::BF16, WorkDtype::F16] {
            assert_eq!(d.round(1.0 + d.eps()), 1.0 + d.eps());
            assert_eq!(d.round(1.0 + d.eps() / 2.0), 1.0);
        }
    }
}
