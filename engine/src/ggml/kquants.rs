//! Dequantization of the K-quants (Q2_K … Q6_K, super-blocks of 256 in 16 or 8
//! sub-blocks with their own scale and min), IQ4_NL / IQ4_XS (a 16-entry
//! non-linear grid) and MXFP4 (E2M1 under an E8M0 scale), bit for bit as ggml's `dequantize_row_*` and gguf-py's
//! numpy give them: each scale is d·(sub-block scale) in f32, then each value
//! one multiply (and one subtraction of dmin·(sub-block min)), never fused.

use half::f16;

/// IQ4_NL's and IQ4_XS's grid (ggml's `kvalues_iq4nl`).
const IQ4_GRID: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Whether this module decodes `ty`.
pub fn decodes(ty: super::GgmlType) -> bool {
    matches!(ty.name, "Q2_K" | "Q3_K" | "Q4_K" | "Q5_K" | "Q6_K" | "IQ4_NL" | "IQ4_XS" | "MXFP4")
}

/// `bytes` (whole blocks of type `ty`) decoded into `out`; `None` for a type
/// this module does not decode.
pub fn dequantize(ty: super::GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> Option<()> {
    out.clear();
    for b in bytes.chunks_exact(ty.block_bytes as usize) {
        if !block(ty.name, b, out) {
            return None;
        }
    }
    Some(())
}

/// One super-block of `name` appended to `out`; false for a type not here.
fn block(name: &str, b: &[u8], out: &mut Vec<f32>) -> bool {
    match name {
        "Q2_K" => q2_k(b, out),
        "Q3_K" => q3_k(b, out),
        "Q4_K" => q45_k(b, false, out),
        "Q5_K" => q45_k(b, true, out),
        "Q6_K" => q6_k(b, out),
        "IQ4_NL" => iq4_nl(b, out),
        "IQ4_XS" => iq4_xs(b, out),
        "MXFP4" => mxfp4(b, out),
        _ => return false,
    }
    true
}

/// Q2_K: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit
/// codes, d, dmin. Element e = 128c + 32s + i is bits 2s of byte 32c + i.
fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half(b, 80), half(b, 82));
    for e in 0..256 {
        let (c, s, i) = (e / 128, (e % 128) / 32, e % 32);
        let sc = b[e / 16];
        let q = f32::from((b[16 + 32 * c + i] >> (2 * s)) & 3);
        out.push(d * f32::from(sc & 0xF) * q - dmin * f32::from(sc >> 4));
    }
}

/// Q3_K: a 32-byte high-bit mask, 64 bytes of 2-bit codes, 12 bytes of 6-bit
/// scales (offset 32), d. A clear mask bit subtracts 4.
fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let d = half(b, 108);
    let scales: Vec<f32> = (0..16).map(|k| d * f32::from(q3_scale(b, k))).collect();
    for e in 0..256 {
        let (c, sh, i) = (e / 128, (e % 128) / 32, e % 32);
        let low = ((b[32 + 32 * c + i] >> (2 * sh)) & 3) as i8;
        let high = ((b[i] >> (e / 32)) & 1) ^ 1;
        out.push(scales[e / 16] * f32::from(low - ((high << 2) as i8)));
    }
}

/// Q4_K and Q5_K: d, dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks
/// of 32, (Q5_K: a 32-byte fifth-bit plane,) then 128 bytes of nibbles: sub-block
/// j is the low (j even) or high nibbles of bytes 32·(j/2)…
fn q45_k(b: &[u8], five: bool, out: &mut Vec<f32>) {
    let (d, dmin) = (half(b, 0), half(b, 2));
    let scale_min = |j: usize| q45_scale_min(b, j);
    let (qh, qs) = if five { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
    for j in 0..8 {
        let (sc, mn) = scale_min(j);
        let (dj, mj) = (d * f32::from(sc), dmin * f32::from(mn));
        for i in 0..32 {
            let mut q = (qs[32 * (j / 2) + i] >> (4 * (j % 2))) & 0x0F;
            if five {
                q |= ((qh[i] >> j) & 1) << 4;
            }
            out.push(dj * f32::from(q) - mj);
        }
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 signed
/// scales, d; q − 32. Element e = 128c + 64h + i takes nibble h of byte
/// 64c + i, and bits 2s of byte 32c + i' where e = 128c + 32s + i'.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let d = half(b, 208);
    for e in 0..256 {
        let c = e / 128;
        let low = (b[64 * c + e % 64] >> (4 * ((e % 128) / 64))) & 0x0F;
        let high = (b[128 + 32 * c + e % 32] >> (2 * ((e % 128) / 32))) & 3;
        let q = (low | (high << 4)) as i8 - 32;
        out.push(d * f32::from(b[192 + e / 16] as i8) * f32::from(q));
    }
}

/// IQ4_NL: d, 16 bytes: low nibbles are elements 0..16, high 16..32.
fn iq4_nl(b: &[u8], out: &mut Vec<f32>) {
    let d = half(b, 0);
    let qs = &b[2..18];
    out.extend(qs.iter().map(|&q| d * f32::from(IQ4_GRID[usize::from(q & 0x0F)])));
    out.extend(qs.iter().map(|&q| d * f32::from(IQ4_GRID[usize::from(q >> 4)])));
}

/// IQ4_XS: d, 2 bytes of high scale bits, 4 bytes of low scale nibbles, then
/// 8 sub-blocks of 16 bytes laid out as IQ4_NL's; scale − 32.
fn iq4_xs(b: &[u8], out: &mut Vec<f32>) {
    let d = half(b, 0);
    for k in 0..8 {
        let dl = d * f32::from(iq4_xs_scale(b, k));
        let qs = &b[8 + 16 * k..][..16];
        out.extend(qs.iter().map(|&q| dl * f32::from(IQ4_GRID[usize::from(q & 0x0F)])));
        out.extend(qs.iter().map(|&q| dl * f32::from(IQ4_GRID[usize::from(q >> 4)])));
    }
}

/// E2M1's values doubled (ggml's `kvalues_mxfp4`); the scale is halved to match.
const E2M1_DOUBLED: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// MXFP4: an E8M0 exponent, 16 bytes of E2M1 codes (low nibbles first). The
/// scale is 2^(e − 127) / 2 (ggml's `ggml_e8m0_to_fp32_half`; e < 2 is subnormal).
fn mxfp4(b: &[u8], out: &mut Vec<f32>) {
    let e = u32::from(b[0]);
    let d = f32::from_bits(if e < 2 { 0x0020_0000 << e } else { (e - 1) << 23 });
    let qs = &b[1..17];
    out.extend(qs.iter().map(|&q| d * f32::from(E2M1_DOUBLED[usize::from(q & 0x0F)])));
    out.extend(qs.iter().map(|&q| d * f32::from(E2M1_DOUBLED[usize::from(q >> 4)])));
}

/// Q3_K's sub-block `k` scale: 6 bits (low nibble, 2 high bits) less 32.
fn q3_scale(b: &[u8], k: usize) -> i8 {
    let s = &b[96..108];
    let low = (s[k % 8] >> (4 * (k / 8))) & 0x0F;
    let high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
    (low | (high << 4)) as i8 - 32
}

/// Q4_K's and Q5_K's sub-block `j` 6-bit scale and min (bytes 4..16).
fn q45_scale_min(b: &[u8], j: usize) -> (u8, u8) {
    let s = &b[4..16];
    if j < 4 {
        (s[j] & 0x3F, s[4 + j] & 0x3F)
    } else {
        ((s[j + 4] & 0x0F) | ((s[j - 4] >> 2) & 0x30), (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30))
    }
}

/// IQ4_XS's sub-block `k` scale: 6 bits less 32.
fn iq4_xs_scale(b: &[u8], k: usize) -> i8 {
    let high = u16::from_le_bytes([b[2], b[3]]);
    let low = (b[4 + k / 2] >> (4 * (k % 2))) & 0x0F;
    let h = ((high >> (2 * k)) & 3) as u8;
    (low | (h << 4)) as i8 - 32
}

/// One super-block's sub-blocks as (S, m), R′ = S·v(q) − m, computed as the
/// decoder computes them; false for a type not here.
pub fn sub_params(name: &str, b: &[u8], out: &mut Vec<(f32, f32)>) -> bool {
    match name {
        "Q2_K" => {
            let (d, dmin) = (half(b, 80), half(b, 82));
            out.extend(b[..16].iter().map(|&sc| (d * f32::from(sc & 0xF), dmin * f32::from(sc >> 4))));
        }
        "Q3_K" => {
            let d = half(b, 108);
            out.extend((0..16).map(|k| (d * f32::from(q3_scale(b, k)), 0.0)));
        }
        "Q4_K" | "Q5_K" => {
            let (d, dmin) = (half(b, 0), half(b, 2));
            out.extend(
                (0..8).map(|j| q45_scale_min(b, j)).map(|(sc, m)| (d * f32::from(sc), dmin * f32::from(m))),
            );
        }
        "Q6_K" => {
            let d = half(b, 208);
            out.extend(b[192..208].iter().map(|&sc| (d * f32::from(sc as i8), 0.0)));
        }
        "IQ4_NL" => out.push((half(b, 0), 0.0)),
        "IQ4_XS" => {
            let d = half(b, 0);
            out.extend((0..8).map(|k| (d * f32::from(iq4_xs_scale(b, k)), 0.0)));
        }
        _ => return false,
    }
    true
}

/// Sub-block `j`'s stored scales in one super-block; None for a type not here.
pub fn scales(name: &str, b: &[u8], j: usize) -> Option<super::BlockScales> {
    let k = |d, dmin, sc: i32, mn, sc_bits| super::BlockScales { d, dmin, sc: Some(sc), mn, sc_bits };
    Some(match name {
        "Q2_K" => k(half(b, 80), Some(half(b, 82)), i32::from(b[j] & 0xF), Some(i32::from(b[j] >> 4)), 4),
        "Q3_K" => k(half(b, 108), None, i32::from(q3_scale(b, j)), None, 6),
        "Q4_K" | "Q5_K" => {
            let (sc, mn) = q45_scale_min(b, j);
            k(half(b, 0), Some(half(b, 2)), i32::from(sc), Some(i32::from(mn)), 6)
        }
        "Q6_K" => k(half(b, 208), None, i32::from(b[192 + j] as i8), None, 8),
        "IQ4_XS" => k(half(b, 0), None, i32::from(iq4_xs_scale(b, j)), None, 6),
        "IQ4_NL" => super::BlockScales { d: half(b, 0), dmin: None, sc: None, mn: None, sc_bits: 0 },
        _ => return None,
    })
}
