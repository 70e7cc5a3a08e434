//! compressed-tensors `pack-quantized` bit packing (FORMATS.md §2): signed
//! b-bit codes are stored as `u = q + 2^(b-1)` in one little-endian bit stream
//! per row of I32 words (element i at bits `i·b ..`, elements may straddle two
//! words), and zero points are packed the same way down each column (dim 0).

pub use crate::dequant::words_per_line;

/// Packs one line of signed codes into `out` (`words_per_line` words, zeroed).
fn pack_line(codes: impl Iterator<Item = i32>, bits: u8, out: &mut [u32]) {
    let b = u32::from(bits);
    let bias = 1i32 << (b - 1);
    let mask = (1u64 << b) - 1;
    for (i, q) in codes.enumerate() {
        let u = ((q + bias) as u64) & mask;
        let k = i * b as usize;
        let (w, s) = (k / 32, k % 32);
        let v = u << s;
        out[w] |= v as u32;
        if s + b as usize > 32 {
            out[w + 1] |= (v >> 32) as u32;
        }
    }
}

/// Reads element `i` of a packed line back as a signed code.
fn unpack_at(line: &[u32], i: usize, bits: u8) -> i32 {
    let b = usize::from(bits);
    let k = i * b;
    let (w, s) = (k / 32, k % 32);
    let lo = u64::from(line[w]);
    let hi = line.get(w + 1).map_or(0, |&x| u64::from(x));
    let u = ((lo | (hi << 32)) >> s) & ((1u64 << b) - 1);
    u as i32 - (1i32 << (b - 1))
}

/// Packs a row-major `[rows, cols]` matrix of codes row by row:
/// `[rows, words_per_line(cols)]` words.
pub fn pack_rows(codes: &[i8], rows: usize, cols: usize, bits: u8) -> Vec<u32> {
    let wpl = words_per_line(cols, bits);
    let mut out = vec![0u32; rows * wpl];
    for (r, line) in out.chunks_mut(wpl.max(1)).enumerate().take(rows) {
        pack_line(codes[r * cols..(r + 1) * cols].iter().map(|&q| i32::from(q)), bits, line);
    }
    out
}

/// Inverse of [`pack_rows`].
pub fn unpack_rows(words: &[u32], rows: usize, cols: usize, bits: u8) -> Vec<i8> {
    let wpl = words_per_line(cols, bits);
    (0..rows)
        .flat_map(|r| {
            let line = &words[r * wpl..(r + 1) * wpl];
            (0..cols).map(move |c| unpack_at(line, c, bits) as i8)
        })
        .collect()
}

/// Packs a row-major `[rows, cols]` matrix down each column (dim 0):
/// `[words_per_line(rows), cols]` words, row-major.
pub fn pack_cols(codes: &[i8], rows: usize, cols: usize, bits: u8) -> Vec<u32> {
    let wpl = words_per_line(rows, bits);
    let mut out = vec![0u32; wpl * cols];
    let mut line = vec![0u32; wpl];
    for c in 0..cols {
        line.fill(0);
        pack_line((0..rows).map(|r| i32::from(codes[r * cols + c])), bits, &mut line);
        for (w, &x) in line.iter().enumerate() {
            out[w * cols + c] = x;
        }
    }
    out
}

/// Inverse of [`pack_cols`].
pub fn unpack_cols(words: &[u32], rows: usize, cols: usize, bits: u8) -> Vec<i8> {
    let wpl = words_per_line(rows, bits);
    let mut out = vec![0i8; rows * cols];
    let mut line = vec![0u32; wpl];
    for c in 0..cols {
        for (w, x) in line.iter_mut().enumerate() {
            *x = words[w * cols + c];
        }
        for r in 0..rows {
            out[r * cols + c] = unpack_at(&line, r, bits) as i8;
        }
    }
    out
}

/// Little-endian bytes of I32 words.
pub fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Words from little-endian I32 bytes.
pub fn bytes_to_words(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// FP4 codes of `[rows, cols]` packed two per byte, the first of each pair in
/// the low nibble (FORMATS.md §4); an odd last column leaves a zero high nibble.
pub fn pack_nibbles(codes: &[u8], cols: usize) -> Vec<u8> {
    codes
        .chunks(cols.max(1))
        .flat_map(|row| row.chunks(2).map(|c| (c[0] & 0x0F) | (c.get(1).copied().unwrap_or(0) << 4)))
        .collect()
}

/// The inverse of [`pack_nibbles`]: one code byte per element, rows of `cols`.
pub fn unpack_nibbles(bytes: &[u8], cols: usize) -> Vec<u8> {
    bytes
        .chunks(cols.div_ceil(2).max(1))
        .flat_map(|row| row.iter().flat_map(|b| [b & 0x0F, b >> 4]).take(cols))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_of_formats_section_2() {
        let c4 = [-8i8, -7, 0, 1, 7, 3, -1, 2, 5];
        assert_eq!(pack_rows(&c4, 1, 9, 4), [0xA7BF_9810, 0x0000_000D]);
        let c8 = [-128i8, -1, 0, 127, 5];
        assert_eq!(pack_rows(&c8, 1, 5, 8), [0xFF80_7F00, 0x0000_0085]);
        let c3: Vec<i8> = (0..33).map(|i| (i % 8) as i8 - 4).collect();
        assert_eq!(pack_rows(&c3, 1, 33, 3), [0x88FA_C688, 0xC688_FAC6, 0xFAC6_88FA, 0]);
        let z = [-3i8, 0, 7, -8, 1, 2, 3, 4, 5];
        assert_eq!(pack_cols(&z, 9, 1, 4), [0xCBA9_0F85, 0x0000_000D]);
    }

    #[test]
    fn unpack_inverts_pack_for_every_width() {
        for bits in 1..=8u8 {
            let (rows, cols) = (7, 45);
            let lo = -(1i32 << (bits - 1));
            let n = 1i32 << bits;
            let codes: Vec<i8> = (0..rows * cols).map(|i| (lo + (i as i32 * 37 % n)) as i8).collect();
            let p = pack_rows(&codes, rows, cols, bits);
            assert_eq!(p.len(), rows * words_per_line(cols, bits));
            assert_eq!(unpack_rows(&p, rows, cols, bits), codes, "rows, {bits} bits");
            let p = pack_cols(&codes, rows, cols, bits);
            assert_eq!(unpack_cols(&p, rows, cols, bits), codes, "cols, {bits} bits");
        }
    }
}
