//! ggml's scalar arithmetic helpers as its C code computes them (llama-cpp-python
//! 0.3.36's vendored llama.cpp: `nearest_int` in ggml-quants.c, the FP16
//! conversions in ggml-impl.h). ggml-base is compiled without F16C and without
//! FMA, so the conversion is the portable bit recipe and every `a*b + c` is two
//! roundings; nothing here (or anywhere in `quant/`) uses `mul_add`.

/// Values the C code treats as zero: `GROUP_MAX_EPS`.
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// `nearest_int`: round half to even by adding 1.5·2^23 and reading the
/// mantissa. Outside ±2^22 the result wraps exactly as the C does.
pub(super) fn nearest(v: f32) -> i32 {
    ((v + 12_582_912.0).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// `GGML_FP32_TO_FP16` (`ggml_compute_fp32_to_fp16`): round to nearest even,
/// overflow to infinity, NaN to 0x7E00 with the sign kept.
pub(super) fn fp16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let nonsign = ((bits >> 13) & 0x7C00) + (bits & 0x0FFF);
    let magnitude = if shl1_w > 0xFF00_0000 { 0x7E00 } else { nonsign };
    ((sign >> 16) | magnitude) as u16
}

/// `GGML_FP16_TO_FP32`: exact, as half's conversion is.
pub(super) fn fp16_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// C's float → narrow integer cast on x86-64 (`cvttss2si`, then the low bits):
/// truncation toward zero; NaN and out-of-range values give `i32::MIN`.
pub(super) fn trunc(v: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&v) { v as i32 } else { i32::MIN }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rounds_half_to_even_and_wraps_like_the_c() {
        assert_eq!([nearest(0.5), nearest(1.5), nearest(-2.5), nearest(2.4999)], [0, 2, -2, 2]);
        assert_eq!(nearest(-0.0), 0);
        // Past 2^22 the mantissa trick wraps; the C does the same.
        assert_eq!(nearest(4_194_304.0), -4_194_304);
        assert_eq!(nearest(f32::NAN), 0);
    }

    #[test]
    fn fp16_matches_half_on_finite_values_and_keeps_the_nan_rule() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let f = f32::from_bits((state >> 32) as u32);
            if f.is_finite() {
                assert_eq!(fp16(f), half::f16::from_f32(f).to_bits(), "{f:e}");
            }
        }
        for f in [0.0, -0.0, 65504.0, 65520.0, 6.0e-8, 2.9e-8, 3.0e-8, -1.0e-40] {
            assert_eq!(fp16(f), half::f16::from_f32(f).to_bits(), "{f:e}");
        }
        assert_eq!(fp16(f32::NAN), 0x7E00);
        assert_eq!(fp16(-f32::INFINITY), 0xFC00);
    }

    #[test]
    fn trunc_is_cvttss2si() {
        assert_eq!([trunc(8.9), trunc(-0.7), trunc(f32::NAN), trunc(3.0e9)], [8, 0, i32::MIN, i32::MIN]);
    }
}
