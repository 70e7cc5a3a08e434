//! Number formats behind one trait. Adding a format means one file with one
//! `impl NumberFormat`, plus one arm in [`dispatch`], the only place that turns a
//! [`FormatKind`] into a concrete format. Everything else (saved dtype, bits,
//! zero point or real offset, runtime support) is asked of the trait.
//!
//! The trait works on single values and is `#[inline]` all the way down; the hot
//! loops in [`crate::analyze`] are generic over it, so each format is compiled into
//! its own vectorisable loop and no call is dynamic.

mod fp8;
mod ggml;
mod int;
mod micro;
mod work;

pub use fp8::{Fp8Format, Fp8Kind};
pub use ggml::GgmlFormat;
pub use int::IntFormat;
pub use micro::{E2M1_VALUES, MicroFormat, MicroKind, e2m1_encode, e2m1_value, e8m0_byte, e8m0_value};
pub use work::WorkDtype;

use safetensors::Dtype;
use serde::Serialize;

use crate::error::Result;
use crate::scheme::{FormatKind, Mapping};

/// The quantization parameters of one slice (the tensor, a channel or a group).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SliceParams {
    /// S: the step size (INT) or the scale applied to the FP8 value.
    pub scale: f32,
    /// Z: the integer zero point (INT asymmetric); 0 otherwise.
    pub zero_point: i32,
    /// The real-valued centre c of asymmetric FP8; 0 otherwise.
    pub offset: f32,
    /// The clipping range actually applied: values outside count as clipped.
    pub lo: f32,
    pub hi: f32,
}

/// How an asymmetric mapping shifts the codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OffsetKind {
    /// An integer zero point Z (stored as I8).
    ZeroPoint,
    /// A real-valued centre c (stored like the scale).
    Real,
}

/// How a slice's scale is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ScaleStorage {
    /// In the weight's own float dtype (INT, FP8).
    Work,
    /// As an E4M3 byte (NVFP4's block scales).
    E4M3,
    /// As an E8M0 exponent byte, 2^(E − 127) (MX).
    E8M0,
}

/// A quantized number format: how a clipping range becomes (S, Z) and how a real
/// value maps to a code and back.
pub trait NumberFormat: Copy + Send + Sync {
    /// The stored code: the integer Q, or the FP8 bit pattern.
    type Code: Copy + std::fmt::Debug;

    /// The working dtype D every intermediate is rounded to.
    fn work(&self) -> WorkDtype;

    /// Derives S and Z (or the FP8 offset) from a calibrated range [lo, hi].
    fn params(&self, lo: f32, hi: f32, mapping: Mapping) -> SliceParams;

    /// R → Q.
    fn quantize(&self, x: f32, p: &SliceParams) -> Self::Code;

    /// Q → R′.
    fn dequantize(&self, q: Self::Code, p: &SliceParams) -> f32;

    /// R → R′ in one step (the fake-quant used for every metric).
    #[inline]
    fn fake_quant(&self, x: f32, p: &SliceParams) -> f32 {
        self.dequantize(self.quantize(x, p), p)
    }

    /// `fake_quant` on 8 lanes. The default goes lane by lane; formats override it
    /// with a vector version that must give identical bits (tested in `simd`).
    #[inline]
    fn fake_quant_x8(&self, x: wide::f32x8, p: &SliceParams) -> wide::f32x8 {
        let a = x.to_array();
        wide::f32x8::new(a.map(|v| self.fake_quant(v, p)))
    }

    /// The number a code stands for before any scale: Q for an integer, the
    /// float its bits encode otherwise.
    fn code_value(&self, code: Self::Code) -> f32 {
        self.dequantize(code, &SliceParams { scale: 1.0, zero_point: 0, offset: 0.0, lo: 0.0, hi: 0.0 })
    }

    /// Every finite dequantized level, ascending.
    fn levels(&self, p: &SliceParams) -> Vec<f32>;

    /// The largest representable code magnitude (Qmax for INT, fmax for FP8),
    /// shown by the teaching panel.
    fn qmax(&self) -> f32;

    /// The smallest code (Qmin for INT, −fmax for FP8).
    fn qmin(&self) -> f32;

    /// The safetensors dtype a saved model stores the codes in.
    fn code_dtype(&self) -> Dtype;

    /// The name people read: "INT8", "FP8 E4M3".
    fn label(&self) -> String;

    /// Bits per code as stored (INT4 codes are packed two to a byte).
    fn bits(&self) -> u8;

    /// Whether a code is a small float (sign, exponent, mantissa) rather than an integer.
    fn is_float(&self) -> bool;

    /// Exponent and mantissa widths of a float code; 0 for integers.
    fn exponent_bits(&self) -> u32;
    fn mantissa_bits(&self) -> u32;

    /// The exponent bias of a float code.
    fn bias(&self) -> Option<i32>;

    /// The largest finite float code magnitude.
    fn fmax(&self) -> Option<f32>;

    /// What an asymmetric slice stores besides S.
    fn offset_kind(&self) -> OffsetKind;

    /// Whether vLLM / llm-compressor load a save of this format under `mapping`
    /// (only then is a compressed-tensors `quantization_config` written).
    fn runtime_loadable(&self, mapping: Mapping) -> bool;

    /// A code as the byte a saved model stores, and back.
    fn code_to_byte(&self, q: Self::Code) -> u8;
    fn code_from_byte(&self, b: u8) -> Self::Code;

    /// The parameters a saved model can hold: S (and the FP8 offset) passed through
    /// `round` (the stored dtype), and Z re-derived from that S, so that quantizing
    /// with the result uses exactly the numbers a runtime reads back.
    fn stored_params(&self, p: &SliceParams, mapping: Mapping, round: impl Fn(f32) -> f32) -> SliceParams;

    /// Every code byte the format can store: the 2^b INT codes (signed), or
    /// every FP code (negative zero included: it is a distinct stored byte).
    fn storable_codes(&self) -> Vec<u8> {
        if self.is_float() {
            (0..=u8::MAX).take(1 << self.bits().min(8)).collect()
        } else {
            let half = 1i32 << (self.bits() - 1);
            (-half..half).map(|q| (q as i8).to_le_bytes()[0]).collect()
        }
    }

    /// How each slice's scale is stored.
    fn scale_storage(&self) -> ScaleStorage {
        ScaleStorage::Work
    }

    /// The tensor-level (global) scale of a two-level format, from the amax of
    /// the tensor (or of the fused siblings that share it); None when the format
    /// has one level only.
    fn global_from_amax(&self, _amax: f32) -> Option<f32> {
        None
    }

    /// The format with its global scale set; slices' parameters depend on it.
    #[must_use]
    fn with_global(self, _gs: f32) -> Self {
        self
    }

    /// The global scale in use, for two-level formats.
    fn global(&self) -> Option<f32> {
        None
    }
}

/// Code generic over the concrete format: [`dispatch`] calls `run` with the
/// format a [`FormatKind`] names.
pub trait WithFormat {
    type Out;
    fn run<F: NumberFormat>(self, f: F) -> Self::Out;
}

/// [`dispatch_in`] with the F32 working dtype (format facts, F32 tensors).
pub fn dispatch<V: WithFormat>(kind: FormatKind, v: V) -> Result<V::Out> {
    dispatch_in(kind, WorkDtype::F32, v)
}

/// The one place a [`FormatKind`] becomes a concrete [`NumberFormat`], computing
/// in the working dtype `work`. Fails only for an unsupported integer width.
pub fn dispatch_in<V: WithFormat>(kind: FormatKind, work: WorkDtype, v: V) -> Result<V::Out> {
    Ok(match kind {
        FormatKind::Int(bits) => v.run(IntFormat::new(bits)?.in_work(work)),
        FormatKind::E4M3 => v.run(Fp8Format::E4M3.in_work(work)),
        FormatKind::E5M2 => v.run(Fp8Format::E5M2.in_work(work)),
        FormatKind::Nvfp4 => v.run(MicroFormat::new(MicroKind::Nvfp4, work)),
        FormatKind::Mxfp4 => v.run(MicroFormat::new(MicroKind::Mxfp4, work)),
        FormatKind::Mxfp8 => v.run(MicroFormat::new(MicroKind::Mxfp8, work)),
        FormatKind::Ggml(t) => v.run(GgmlFormat::new(t)),
    })
}

/// A format's facts as plain data, read from its [`NumberFormat`] impl: what
/// code that stores, sizes or describes quantized tensors needs, without the
/// arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub label: String,
    pub bits: u8,
    pub is_float: bool,
    /// Qmin / Qmax for integers, ∓fmax for floats.
    pub qmin: f32,
    pub qmax: f32,
    pub fmax: Option<f32>,
    pub exponent_bits: u32,
    pub mantissa_bits: u32,
    pub bias: Option<i32>,
    pub code_dtype: Dtype,
    pub offset_kind: OffsetKind,
    /// `runtime_loadable` under the symmetric and the asymmetric mapping.
    pub loadable: [bool; 2],
    /// How block scales are stored.
    pub scale_storage: ScaleStorage,
    /// Whether a global (per-tensor) scale sits above the block scales.
    pub two_level: bool,
}

impl Spec {
    /// Whether vLLM / llm-compressor load this format under `mapping`.
    pub fn runtime_loadable(&self, mapping: Mapping) -> bool {
        self.loadable[usize::from(mapping == Mapping::Asymmetric)]
    }
}

/// The [`Spec`] of the format `kind` names.
pub fn spec(kind: FormatKind) -> Result<Spec> {
    struct Read;
    impl WithFormat for Read {
        type Out = Spec;
        fn run<F: NumberFormat>(self, f: F) -> Spec {
            Spec {
                label: f.label(),
                bits: f.bits(),
                is_float: f.is_float(),
                qmin: f.qmin(),
                qmax: f.qmax(),
                fmax: f.fmax(),
                exponent_bits: f.exponent_bits(),
                mantissa_bits: f.mantissa_bits(),
                bias: f.bias(),
                code_dtype: f.code_dtype(),
                offset_kind: f.offset_kind(),
                loadable: [f.runtime_loadable(Mapping::Symmetric), f.runtime_loadable(Mapping::Asymmetric)],
                scale_storage: f.scale_storage(),
                two_level: f.global_from_amax(1.0).is_some(),
            }
        }
    }
    dispatch(kind, Read)
}

/// Round half to even, bit-identical to `f32::round_ties_even` (tested on every
/// tie). Written with the 2^23 trick so that it vectorises on baseline x86-64,
/// where `round_ties_even` is a libm call per element (no SSE4.1 `roundps`).
#[inline]
pub fn round_half_even(x: f32) -> f32 {
    const TWO_23: f32 = 8_388_608.0;
    let a = x.abs();
    // Adding 2^23 leaves no fraction bits, so the FPU's default rounding
    // (nearest, ties to even) does the work; |x| ≥ 2^23 is already an integer.
    let r = if a < TWO_23 { (a + TWO_23) - TWO_23 } else { a };
    r.copysign(x)
}

/// PyTorch's guard for an all-equal slice: a zero step (after rounding to the
/// scale's dtype) would divide by zero, so it becomes that dtype's eps.
#[inline]
pub(crate) fn nonzero_scale(s: f32, work: WorkDtype) -> f32 {
    if s == 0.0 || s.is_nan() { work.eps() } else { s }
}

#[cfg(test)]
mod tests {
    use super::round_half_even;

    #[test]
    fn round_half_even_matches_std_bit_for_bit() {
        let mut inputs = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            8_388_607.5,
            8_388_608.0,
            4_194_303.5,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for k in -70_000..70_000 {
            inputs.push(k as f32 * 0.5);
            inputs.push(k as f32 * 0.5 + 0.25);
            inputs.push(f32::from_bits((k as u32).wrapping_mul(2_654_435_761)));
        }
        for x in inputs {
            let (a, b) = (round_half_even(x), x.round_ties_even());
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{x:e}: {a} vs {b}");
        }
    }
}
