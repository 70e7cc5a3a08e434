//! Number formats behind one trait. Adding a format means one file with one
//! `impl NumberFormat`, plus one arm in [`crate::scheme::FormatKind`]'s dispatch.
//!
//! The trait works on single values and is `#[inline]` all the way down; the hot
//! loops in [`crate::analyze`] are generic over it, so each format is compiled into
//! its own vectorisable loop and no call is dynamic.

mod fp8;
mod int;

pub use fp8::{Fp8Format, Fp8Kind};
pub use int::IntFormat;

use serde::Serialize;

use crate::scheme::Mapping;

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

/// A quantized number format: how a clipping range becomes (S, Z) and how a real
/// value maps to a code and back.
pub trait NumberFormat: Copy + Send + Sync {
    /// The stored code: the integer Q, or the FP8 bit pattern.
    type Code: Copy + std::fmt::Debug;

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

    /// Every finite dequantized level, ascending.
    fn levels(&self, p: &SliceParams) -> Vec<f32>;

    /// The largest representable code magnitude (Qmax for INT, fmax for FP8),
    /// shown by the teaching panel.
    fn qmax(&self) -> f32;

    /// The smallest code (Qmin for INT, −fmax for FP8).
    fn qmin(&self) -> f32;
}

/// PyTorch's guard for an all-equal slice: a zero step would divide by zero.
#[inline]
pub(crate) fn nonzero_scale(s: f32) -> f32 {
    if s == 0.0 || s.is_nan() { f32::EPSILON } else { s }
}
