//! Where a stored layer's codes sit, read one output row at a time straight
//! from the stored bytes. Decoding never builds a whole-layer code buffer: each
//! row's raw values land in a small per-thread scratch (or are borrowed in
//! place), and [`super::dequant`] turns them into R′ through per-slice tables
//! indexed by the raw value. Every layout's bit order is here, in one place.

use std::borrow::Cow;

/// I32 words per packed line of `n` b-bit elements (one bit stream per line,
/// as every packed layout here stores it).
pub fn words_per_line(n: usize, bits: u8) -> usize {
    (n * usize::from(bits)).div_ceil(32)
}

/// AutoAWQ's pack order: nibble i of a word holds column `8·j + AWQ_ORDER[i]`.
pub const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// The stored codes of a row-major `[rows, cols]` layer.
#[derive(Clone, Debug)]
pub enum Codes<'a> {
    /// One code byte per element, row-major: the signed INT code as i8, or
    /// the FP8 / FP4 bits.
    Bytes(Cow<'a, [u8]>),
    /// Rows of `stride` bytes, each one little-endian bit stream of `bits`-bit
    /// unsigned values u = Q + 2^(b−1) (compressed-tensors `pack-quantized`,
    /// FORMATS.md §2).
    Biased { bytes: &'a [u8], stride: usize, bits: u8 },
    /// FP4 codes two per byte, low nibble first, rows of ceil(cols/2) bytes.
    Nibbles(&'a [u8]),
    /// GPTQ `qweight` I32 `[ceil(cols·b/32), rows]`: row r's biased bit stream
    /// runs down column r.
    GptqColumns { bytes: &'a [u8], bits: u8 },
    /// AWQ GEMM `qweight` I32 `[cols, ceil(rows/8)]`: biased 4-bit codes
    /// along the rows, in AutoAWQ's interleaved order.
    Awq(&'a [u8]),
}

/// Per-thread buffers for one row's raw values (and GPTQ's gathered stream).
#[derive(Default)]
pub(super) struct Scratch {
    raw: Vec<u8>,
    line: Vec<u8>,
    band: Vec<u8>,
}

impl Codes<'_> {
    /// Bits per raw value: a slice's table has 2^bits entries.
    pub(super) fn raw_bits(&self) -> u8 {
        match self {
            Self::Bytes(_) => 8,
            Self::Nibbles(_) | Self::Awq(_) => 4,
            Self::Biased { bits, .. } | Self::GptqColumns { bits, .. } => *bits,
        }
    }

    /// The code byte (i8 for INT, the bits for floats) of raw value `u`.
    pub(super) fn code_byte(&self, u: u8) -> u8 {
        match self {
            Self::Bytes(_) | Self::Nibbles(_) => u,
            // u − 2^(b−1) in two's complement: the signed code.
            _ => u.wrapping_sub(1 << (self.raw_bits() - 1)),
        }
    }

    /// Why these codes cannot be a `[rows, cols]` layer, if they cannot (a
    /// short buffer would otherwise panic mid-decode).
    pub(crate) fn check(&self, rows: usize, cols: usize) -> Result<(), String> {
        let (have, need) = match self {
            Self::Bytes(b) => (b.len(), rows * cols),
            Self::Biased { bytes, stride, bits } => {
                if *stride < (cols * usize::from(*bits)).div_ceil(8) {
                    return Err(format!("{stride} bytes per row hold fewer than {cols} {bits}-bit codes"));
                }
                (bytes.len(), rows * stride)
            }
            Self::Nibbles(b) => (b.len(), rows * cols.div_ceil(2)),
            Self::GptqColumns { bytes, bits } => (bytes.len(), 4 * rows * words_per_line(cols, *bits)),
            Self::Awq(b) => (b.len(), 4 * cols * rows.div_ceil(8)),
        };
        if !(1..=8).contains(&self.raw_bits()) {
            return Err(format!("{}-bit codes are not read", self.raw_bits()));
        }
        if have == need || (matches!(self, Self::Biased { .. }) && have >= need) {
            Ok(())
        } else {
            Err(format!("{have} code bytes, [{rows}, {cols}] needs {need}"))
        }
    }

    /// Row r's raw values (`cols` of them) of a row-major layout, borrowed in
    /// place where the stored bytes already are one value each, else unpacked
    /// into `s`.
    fn row<'s>(&'s self, r: usize, cols: usize, s: &'s mut Scratch) -> &'s [u8] {
        s.raw.resize(cols, 0);
        match self {
            Self::Bytes(b) => return &b[r * cols..(r + 1) * cols],
            Self::Biased { bytes, stride, bits } => {
                let line = &bytes[r * stride..(r + 1) * stride];
                if *bits == 8 {
                    return &line[..cols];
                }
                unpack_stream(line, *bits, &mut s.raw);
            }
            Self::Nibbles(b) => {
                let n = cols.div_ceil(2);
                unpack_stream(&b[r * n..(r + 1) * n], 4, &mut s.raw);
            }
            // Gathered a band at a time (`band`), never alone.
            Self::GptqColumns { .. } | Self::Awq(_) => unreachable!("band() gathers these"),
        }
        &s.raw
    }

    /// Rows a band decodes together. AWQ's neighbouring rows share each word
    /// and GPTQ's each cache line: gathering a band at once reads every stored
    /// line (and page) once, not once per row, which a row at a time did.
    pub(super) fn band_rows(&self) -> usize {
        match self {
            Self::Awq(_) => 64,
            Self::GptqColumns { .. } => 16,
            _ => 1,
        }
    }

    /// Raw values of rows `r0 .. r0 + n`, row-major.
    pub(super) fn band<'s>(
        &'s self,
        r0: usize,
        n: usize,
        rows: usize,
        cols: usize,
        s: &'s mut Scratch,
    ) -> &'s [u8] {
        match self {
            Self::Bytes(b) => &b[r0 * cols..(r0 + n) * cols],
            Self::Awq(b) => {
                let words = rows.div_ceil(8);
                s.band.resize(n * cols, 0);
                // r0 is a multiple of 8: word j of the band holds rows r0 + 8j + AWQ_ORDER[p].
                for (i, line) in b.chunks_exact(4 * words).enumerate().take(cols) {
                    let band = &line[4 * (r0 / 8)..4 * (r0 + n).div_ceil(8)];
                    for (j, w) in band.chunks_exact(4).enumerate() {
                        let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                        for (p, &o) in AWQ_ORDER.iter().enumerate() {
                            if 8 * j + o < n {
                                s.band[(8 * j + o) * cols + i] = ((w >> (4 * p)) & 0xF) as u8;
                            }
                        }
                    }
                }
                &s.band
            }
            Self::GptqColumns { bytes, bits } => {
                // Word w of rows r0.. is one contiguous run of qweight's row w.
                let words = words_per_line(cols, *bits);
                s.line.resize(4 * n * words, 0);
                for w in 0..words {
                    let run = &bytes[4 * (w * rows + r0)..4 * (w * rows + r0 + n)];
                    for (k, word) in run.chunks_exact(4).enumerate() {
                        s.line[4 * (k * words + w)..4 * (k * words + w + 1)].copy_from_slice(word);
                    }
                }
                s.band.resize(n * cols, 0);
                for (line, out) in s.line.chunks_exact(4 * words).zip(s.band.chunks_exact_mut(cols)) {
                    if *bits == 8 {
                        out.copy_from_slice(&line[..cols]);
                    } else {
                        unpack_stream(line, *bits, out);
                    }
                }
                &s.band
            }
            _ if n == 1 => self.row(r0, cols, s),
            _ => {
                let mut band = std::mem::take(&mut s.band);
                band.resize(n * cols, 0);
                for (k, out) in band.chunks_exact_mut(cols).enumerate() {
                    out.copy_from_slice(self.row(r0 + k, cols, s));
                }
                s.band = band;
                &s.band
            }
        }
    }

    /// Every element's code byte, row-major (the save's read-back compares codes).
    pub fn to_code_bytes(&self, rows: usize, cols: usize) -> Result<Vec<u8>, String> {
        self.check(rows, cols)?;
        let mut out = vec![0u8; rows * cols];
        let (mut s, band) = (Scratch::default(), self.band_rows());
        for (k, o) in out.chunks_mut(band * cols.max(1)).enumerate() {
            let n = o.len() / cols.max(1);
            for (x, &u) in o.iter_mut().zip(self.band(k * band, n, rows, cols, &mut s)) {
                *x = self.code_byte(u);
            }
        }
        Ok(out)
    }
}

/// The `out.len()` values of a little-endian bit stream of `bits`-bit fields
/// (element i at bits `i·b ..`; b ≤ 8, so a field spans at most two bytes).
fn unpack_stream(line: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        4 => {
            let half = out.len() / 2;
            let mut pairs = out.chunks_exact_mut(2);
            for (o, &b) in (&mut pairs).zip(line) {
                o[0] = b & 0xF;
                o[1] = b >> 4;
            }
            if let [last] = pairs.into_remainder() {
                *last = line[half] & 0xF;
            }
        }
        b => {
            let (b, mask) = (usize::from(b), (1u16 << b) - 1);
            for (i, o) in out.iter_mut().enumerate() {
                let (at, shift) = (i * b / 8, i * b % 8);
                let pair = u16::from(line[at]) | u16::from(line.get(at + 1).copied().unwrap_or(0)) << 8;
                *o = ((pair >> shift) & mask) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ct::bitpack::{pack_nibbles, pack_rows, words_to_bytes};

    fn codes(n: usize, bits: u8, seed: usize) -> Vec<i8> {
        let half = 1i32 << (bits - 1);
        (0..n).map(|i| ((i * 37 + seed * 11 + i / 7) as i32 % (2 * half) - half) as i8).collect()
    }

    #[test]
    fn pack_quantized_rows_unpack_as_the_saves_packing_wrote_them() {
        for bits in 2..=8u8 {
            for (rows, cols) in [(3, 32), (2, 33), (4, 7), (1, 1), (5, 64)] {
                let want = codes(rows * cols, bits, usize::from(bits));
                let bytes = words_to_bytes(&pack_rows(&want, rows, cols, bits));
                let stride = 4 * words_per_line(cols, bits);
                let c = Codes::Biased { bytes: &bytes, stride, bits };
                let got = c.to_code_bytes(rows, cols).unwrap();
                assert_eq!(got.iter().map(|&b| b as i8).collect::<Vec<_>>(), want, "{bits} bits {cols}");
            }
        }
    }

    #[test]
    fn gptq_columns_are_the_same_streams_transposed() {
        for bits in [2u8, 3, 4, 8] {
            let (rows, cols) = (5, 45);
            let want = codes(rows * cols, bits, 3);
            // Row r's stream, word by word, into column r of [words, rows].
            let w = words_per_line(cols, bits);
            let by_row = pack_rows(&want, rows, cols, bits);
            let t: Vec<u32> = (0..w * rows).map(|k| by_row[(k % rows) * w + k / rows]).collect();
            let bytes = words_to_bytes(&t);
            let got = Codes::GptqColumns { bytes: &bytes, bits }.to_code_bytes(rows, cols).unwrap();
            assert_eq!(got.iter().map(|&b| b as i8).collect::<Vec<_>>(), want, "{bits} bits");
        }
    }

    #[test]
    fn nibbles_and_awq_words_unpack_in_their_orders() {
        let (rows, cols) = (3, 7);
        let fp4: Vec<u8> = (0..rows * cols).map(|i| (i * 5 % 16) as u8).collect();
        let bytes = pack_nibbles(&fp4, cols);
        assert_eq!(Codes::Nibbles(&bytes).to_code_bytes(rows, cols).unwrap(), fp4);
        // AWQ: [cols = in, rows/8] words; column 8j + AWQ_ORDER[i] in nibble i.
        let (rows, cols) = (16, 3);
        let u: Vec<u32> = (0..rows * cols).map(|k| (k * 7 % 16) as u32).collect(); // u[r·cols + c]
        let mut words = vec![0u32; cols * rows / 8];
        for c in 0..cols {
            for j in 0..rows / 8 {
                for (i, &o) in AWQ_ORDER.iter().enumerate() {
                    words[c * rows / 8 + j] |= u[(8 * j + o) * cols + c] << (4 * i);
                }
            }
        }
        let got = Codes::Awq(&words_to_bytes(&words)).to_code_bytes(rows, cols).unwrap();
        let want: Vec<u8> = u.iter().map(|&x| (x as u8).wrapping_sub(8)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn short_buffers_are_an_error_not_a_panic() {
        let b = [0u8; 10];
        assert!(Codes::Bytes(Cow::Borrowed(&b)).check(3, 4).is_err());
        assert!(Codes::Nibbles(&b).check(3, 8).is_err());
        assert!(Codes::Biased { bytes: &b, stride: 2, bits: 4 }.check(2, 8).is_err());
        assert!(Codes::GptqColumns { bytes: &b, bits: 4 }.check(2, 8).is_err());
        assert!(Codes::Awq(&b).check(8, 3).is_err());
        assert!(Codes::Nibbles(&b).check(2, 10).is_ok());
    }
}
