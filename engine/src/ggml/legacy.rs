//! Dequantization of GGUF's plain and legacy types, bit for bit as ggml's
//! `dequantize_row_*` (ggml/src/ggml-quants.c) and gguf-py's numpy versions
//! compute them: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1. Scales are F16;
//! each value is one f32 multiply by d (and one add of m), never fused.

use half::f16;

use super::types::GgmlType;

/// Whether this module decodes `ty`.
pub fn decodes(ty: GgmlType) -> bool {
    matches!(ty.name, "F32" | "F16" | "BF16" | "Q8_0" | "Q4_0" | "Q4_1" | "Q5_0" | "Q5_1")
}

/// `bytes` (whole blocks of type `ty`) decoded into `out`; `None` for a type
/// this module does not decode.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> Option<()> {
    out.clear();
    let blocks = bytes.chunks_exact(ty.block_bytes as usize);
    match ty.name {
        "F32" => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        "F16" => out.extend(blocks.map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())),
        "BF16" => {
            out.extend(blocks.map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)));
        }
        "Q8_0" => blocks.for_each(|b| q8_0(b, out)),
        "Q4_0" => blocks.for_each(|b| q4(b, None, out)),
        "Q4_1" => blocks.for_each(|b| q4(b, Some(half(b, 2)), out)),
        "Q5_0" => blocks.for_each(|b| q5(b, None, out)),
        "Q5_1" => blocks.for_each(|b| q5(b, Some(half(b, 2)), out)),
        _ => return None,
    }
    Some(())
}

/// The F16 at byte `at` of a block, as f32.
fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q8_0: d, then 32 signed codes: x = q·d.
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half(b, 0);
    out.extend(b[2..34].iter().map(|&q| f32::from(q as i8) * d));
}

/// Q4_0 (d, 16 bytes: x = (q − 8)·d) and Q4_1 (d, m, 16 bytes: x = q·d + m).
/// The low nibbles are elements 0..16, the high nibbles 16..32.
fn q4(b: &[u8], m: Option<f32>, out: &mut Vec<f32>) {
    let d = half(b, 0);
    let qs = &b[if m.is_some() { 4 } else { 2 }..][..16];
    let value = |q: u8| match m {
        None => f32::from(q as i8 - 8) * d,
        Some(m) => f32::from(q) * d + m,
    };
    out.extend(qs.iter().map(|&q| value(q & 0x0F)));
    out.extend(qs.iter().map(|&q| value(q >> 4)));
}

/// Q5_0 (d, qh, 16 bytes: x = (q − 16)·d) and Q5_1 (d, m, qh, 16 bytes:
/// x = q·d + m); bit j of the 32-bit `qh` is element j's fifth bit.
fn q5(b: &[u8], m: Option<f32>, out: &mut Vec<f32>) {
    let d = half(b, 0);
    let at = if m.is_some() { 4 } else { 2 };
    let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let qs = &b[at + 4..][..16];
    let value = |q: u32| match m {
        None => (q as i32 - 16) as f32 * d,
        Some(m) => q as f32 * d + m,
    };
    let lo = qs.iter().enumerate().map(|(j, &q)| u32::from(q & 0x0F) | (((qh >> j) << 4) & 0x10));
    let hi = qs.iter().enumerate().map(|(j, &q)| u32::from(q >> 4) | ((qh >> (j + 12)) & 0x10));
    let (lo, hi): (Vec<u32>, Vec<u32>) = (lo.collect(), hi.collect());
    out.extend(lo.into_iter().map(value));
    out.extend(hi.into_iter().map(value));
}

/// One block's (S, m), R′ = S·v(q) − m (Q4_1 and Q5_1 add their min, so m is
/// its negation); false for a type not here.
pub fn sub_params(name: &str, b: &[u8], out: &mut Vec<(f32, f32)>) -> bool {
    match name {
        "Q8_0" | "Q4_0" | "Q5_0" => out.push((half(b, 0), 0.0)),
        "Q4_1" | "Q5_1" => out.push((half(b, 0), -half(b, 2))),
        _ => return false,
    }
    true
}

/// A block's stored scales (`dmin` holds Q4_1's and Q5_1's min); None for a
/// type not here.
pub fn scales(name: &str, b: &[u8]) -> Option<super::BlockScales> {
    let dmin = match name {
        "Q8_0" | "Q4_0" | "Q5_0" => None,
        "Q4_1" | "Q5_1" => Some(half(b, 2)),
        _ => return None,
    };
    Some(super::BlockScales { d: half(b, 0), dmin, sc: None, mn: None, sc_bits: 0 })
}
