//! llama.cpp's block types seen one sub-block at a time: every ggml type
//! decodes a sub-block as R′ = S·v(q) − m, with S the sub-block's effective
//! scale (d, or d·sc for a K-quant), m its effective min (0 without one; −min
//! for Q4_1/Q5_1, which add it) and v the type's code table (q − 8 for Q4_0,
//! the non-linear grid for IQ4). In that order ggml computes it, so R′ here is
//! bit-identical to `ggml::dequantize_into` (docs/numerics.md, "llama.cpp's
//! types"). The codes and scales themselves come from ggml's own search
//! (`ggml::quant`), not from [`NumberFormat::params`]: this view is what the
//! stored view, the teaching panel and the level grids read.

use safetensors::Dtype;

use super::{NumberFormat, OffsetKind, SliceParams, WorkDtype};
use crate::ggml::GgmlType;
use crate::scheme::Mapping;

/// IQ4_NL's and IQ4_XS's grid (ggml's `kvalues_iq4nl`).
const IQ4_GRID: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// A ggml type as a per-sub-block number format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlFormat {
    ty: GgmlType,
    /// Code bits and the value of code 0 (codes run 0..2^bits, step 1).
    bits: u8,
    first: i32,
    grid: bool,
}

impl GgmlFormat {
    pub fn new(ty: GgmlType) -> Self {
        let (bits, first, grid) = match ty.name {
            "Q8_0" => (8, -128, false),
            "Q6_K" => (6, -32, false),
            "Q5_0" => (5, -16, false),
            "Q5_1" | "Q5_K" => (5, 0, false),
            "Q4_0" => (4, -8, false),
            "Q3_K" => (3, -4, false),
            "Q2_K" => (2, 0, false),
            "IQ4_NL" | "IQ4_XS" => (4, 0, true),
            _ => (4, 0, false),
        };
        Self { ty, bits, first, grid }
    }

    /// v(q): the number code `q` stands for before the scale.
    #[inline]
    pub fn value(&self, q: u8) -> f32 {
        if self.grid { f32::from(IQ4_GRID[usize::from(q & 15)]) } else { (i32::from(q) + self.first) as f32 }
    }

    fn codes(&self) -> u8 {
        ((1u16 << self.bits) - 1) as u8
    }
}

impl NumberFormat for GgmlFormat {
    type Code = u8;

    fn work(&self) -> WorkDtype {
        WorkDtype::F32
    }

    /// A min-max affine fit, for views that ask for one; ggml's own search
    /// chooses the stored parameters.
    fn params(&self, lo: f32, hi: f32, mapping: Mapping) -> SliceParams {
        let (vmin, vmax) = (self.value(0), self.value(self.codes()));
        let (lo, hi) = if mapping == Mapping::Symmetric || !self.ty.has_min() {
            let a = lo.abs().max(hi.abs());
            (-a, a)
        } else {
            (lo.min(0.0), hi.max(0.0))
        };
        let scale = if self.ty.has_min() { (hi - lo) / (vmax - vmin) } else { hi / vmax.max(-vmin) };
        let scale = if scale > 0.0 && scale.is_finite() { scale } else { 1.0 };
        let offset = if self.ty.has_min() { -lo } else { 0.0 };
        SliceParams { scale, zero_point: 0, offset, lo: scale * vmin - offset, hi: scale * vmax - offset }
    }

    #[inline]
    fn quantize(&self, x: f32, p: &SliceParams) -> u8 {
        let t = (x + p.offset) / p.scale;
        if self.grid {
            (0..16u8)
                .min_by(|&a, &b| (self.value(a) - t).abs().total_cmp(&(self.value(b) - t).abs()))
                .unwrap_or(0)
        } else {
            let q = (t.round() as i32 - self.first).clamp(0, i32::from(self.codes()));
            q as u8
        }
    }

    #[inline]
    fn dequantize(&self, q: u8, p: &SliceParams) -> f32 {
        p.scale * self.value(q) - p.offset
    }

    fn levels(&self, p: &SliceParams) -> Vec<f32> {
        let mut v: Vec<f32> = (0..=self.codes()).map(|q| self.dequantize(q, p)).collect();
        v.sort_by(f32::total_cmp);
        v
    }

    fn qmax(&self) -> f32 {
        self.value(self.codes()).max(self.value(0))
    }

    fn qmin(&self) -> f32 {
        self.value(0).min(self.value(self.codes()))
    }

    fn code_dtype(&self) -> Dtype {
        Dtype::U8
    }

    fn label(&self) -> String {
        self.ty.name.to_string()
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
        OffsetKind::Real
    }

    /// GGUF files are llama.cpp's; no compressed-tensors runtime loads them.
    fn runtime_loadable(&self, _: Mapping) -> bool {
        false
    }

    fn code_to_byte(&self, q: u8) -> u8 {
        q
    }

    fn code_from_byte(&self, b: u8) -> u8 {
        b
    }

    fn stored_params(&self, p: &SliceParams, _: Mapping, _: impl Fn(f32) -> f32) -> SliceParams {
        *p
    }

    /// ggml's codes are unsigned indices 0..2^b.
    fn storable_codes(&self) -> Vec<u8> {
        (0..=self.codes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_tables_follow_the_types() {
        let f = |n| GgmlFormat::new(GgmlType::from_name(n).unwrap());
        assert_eq!((f("Q4_0").qmin(), f("Q4_0").qmax()), (-8.0, 7.0));
        assert_eq!((f("Q6_K").qmin(), f("Q6_K").qmax()), (-32.0, 31.0));
        assert_eq!((f("Q4_K").qmin(), f("Q4_K").qmax()), (0.0, 15.0));
        assert_eq!((f("IQ4_XS").qmin(), f("IQ4_XS").qmax()), (-127.0, 113.0));
        let p = SliceParams { scale: 0.5, zero_point: 0, offset: 0.25, lo: 0.0, hi: 0.0 };
        let q4k = f("Q4_K");
        for q in 0..16u8 {
            assert_eq!(q4k.quantize(q4k.dequantize(q, &p), &p), q, "R′ on the grid gives its code back");
        }
        let iq = f("IQ4_NL");
        assert_eq!(iq.quantize(iq.dequantize(3, &p), &p), 3);
    }
}
