//! Codes + per-slice (S, Z) → R′, for every stored layout alike. The arithmetic
//! is the format's own `NumberFormat::dequantize` in the working dtype D
//! (docs/numerics.md), so a stored layer decodes exactly as quantscope's own
//! quantizer would have produced it; layouts differ only in where a row's
//! codes sit ([`Codes`]) and in the element → slice map.
//!
//! Speed (issue 14: ≥ 1 G params/s): rows are read straight from the stored
//! bytes (no whole-layer code buffer), each slice's 2^b values are
//! dequantized once into a table indexed by the raw stored value, and
//! [`dequantize_into`] / [`decode_into`] reuse the caller's output buffer.

use rayon::prelude::*;

mod codes;
pub mod ggml;

use crate::error::{Error, Result};
use crate::format::{NumberFormat, SliceParams, WithFormat, WorkDtype, dispatch_in};
use crate::scheme::{FormatKind, Granularity};
use codes::Scratch;
pub use codes::{AWQ_ORDER, Codes, words_per_line};

/// Which (S, Z) element (r, c) of a row-major `[rows, cols]` weight uses.
#[derive(Clone, Debug, PartialEq)]
pub enum SliceMap {
    Tensor,
    /// One slice per row (output channel).
    Rows,
    /// Runs of `size` columns per row: slice `r · ceil(cols/size) + c/size`.
    Groups(usize),
    /// `[bh, bw]` blocks, row-major over the block grid.
    Blocks {
        bh: usize,
        bw: usize,
    },
    /// GPTQ's `g_idx`: column c belongs to group `g_idx[c]`; slice `r · groups + g_idx[c]`.
    GIdx {
        g_idx: Vec<u32>,
        groups: usize,
    },
}

impl SliceMap {
    /// The map a quantscope granularity gives (axis 0 only: what a save writes).
    pub fn of(g: Granularity) -> Self {
        match g {
            Granularity::Tensor => Self::Tensor,
            Granularity::Channel { .. } => Self::Rows,
            Granularity::Group { size } => Self::Groups(size),
            Granularity::Block { size } => Self::Blocks { bh: size, bw: size },
        }
    }

    /// The slice of element (r, c) of a `[rows, cols]` weight.
    pub fn index(&self, r: usize, c: usize, cols: usize) -> usize {
        match self {
            Self::Tensor => 0,
            Self::Rows => r,
            Self::Groups(g) => r * cols.div_ceil(*g) + c / g,
            Self::Blocks { bh, bw } => (r / bh) * cols.div_ceil(*bw) + c / bw,
            Self::GIdx { g_idx, groups } => r * groups + g_idx[c] as usize,
        }
    }

    /// Number of slices for a `[rows, cols]` weight.
    pub fn slices(&self, rows: usize, cols: usize) -> usize {
        match self {
            Self::Tensor => 1,
            Self::Rows => rows,
            Self::Groups(g) => rows * cols.div_ceil(*g),
            Self::Blocks { bh, bw } => rows.div_ceil(*bh) * cols.div_ceil(*bw),
            Self::GIdx { groups, .. } => rows * groups,
        }
    }
}

/// A stored layer ready to decode: its codes where they are stored, row-major
/// `[rows, cols]`, and the slices' params.
pub struct Grid<'a> {
    pub format: FormatKind,
    pub work: WorkDtype,
    pub rows: usize,
    pub cols: usize,
    pub codes: Codes<'a>,
    pub params: Vec<SliceParams>,
    pub map: SliceMap,
    /// A two-level format's global scale (NVFP4's `weight_global_scale`).
    pub global: Option<f32>,
}

/// A decoded layer: R′ row-major, and each slice's parameters (lo/hi is the
/// slice's representable range).
pub struct Decoded {
    pub values: Vec<f32>,
    pub params: Vec<SliceParams>,
    pub map: SliceMap,
    pub cols: usize,
    /// The working dtype the layer was decoded in (its scales' dtype).
    pub work: WorkDtype,
    /// A two-level format's global scale.
    pub global: Option<f32>,
}

impl Decoded {
    /// The parameters element k uses.
    pub fn params_of(&self, k: usize) -> &SliceParams {
        let c = self.cols.max(1);
        &self.params[self.map.index(k / c, k % c, c)]
    }
}

/// [`dequantize`], keeping the parameters.
pub fn decode(g: Grid<'_>) -> Result<Decoded> {
    decode_into(g, Vec::new())
}

/// [`decode`] into `values`' memory: a buffer kept from the previous layer
/// costs no allocation and no first-touch page faults (which take most of
/// the time on a fresh 64 MiB one).
pub fn decode_into(g: Grid<'_>, mut values: Vec<f32>) -> Result<Decoded> {
    dequantize_into(&g, &mut values)?;
    Ok(Decoded { values, params: g.params, map: g.map, cols: g.cols, work: g.work, global: g.global })
}

/// R′ of every element, row-major, computed in parallel by rows.
pub fn dequantize(g: &Grid<'_>) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    dequantize_into(g, &mut out)?;
    Ok(out)
}

/// [`dequantize`] into `out`, reusing its memory. Every element is written, so
/// a buffer that already has the length is not cleared first.
pub fn dequantize_into(g: &Grid<'_>, out: &mut Vec<f32>) -> Result<()> {
    struct Run<'g, 'a, 'o>(&'g Grid<'a>, &'o mut [f32]);
    impl WithFormat for Run<'_, '_, '_> {
        type Out = ();
        fn run<F: NumberFormat>(self, f: F) {
            let f = self.0.global.map_or(f, |gs| f.with_global(gs));
            dequantize_with(f, self.0, self.1);
        }
    }
    check(g).map_err(|reason| Error::Decode { file: None, tensor: None, reason })?;
    let n = g.rows * g.cols;
    if out.capacity() < n {
        // Zeroed pages from the allocator, touched first by the parallel decode
        // (a `resize` would fault them all in on this thread first).
        *out = vec![0.0; n];
    } else {
        out.truncate(n);
        out.resize(n, 0.0);
    }
    dispatch_in(g.format, g.work, Run(g, out))
}

/// Why the grid's codes, params or map do not fit its shape, if they do not.
pub fn check(g: &Grid<'_>) -> std::result::Result<(), String> {
    g.codes.check(g.rows, g.cols)?;
    let need = g.map.slices(g.rows, g.cols);
    if g.params.len() < need {
        return Err(format!("{} scales for {need} slices", g.params.len()));
    }
    if let SliceMap::GIdx { g_idx, groups } = &g.map
        && (g_idx.len() != g.cols || g_idx.iter().any(|&x| x as usize >= *groups))
    {
        return Err(format!("g_idx has {} entries for {} columns, or one out of range", g_idx.len(), g.cols));
    }
    Ok(())
}

/// R′ of every raw value under one slice's params: decoding a run of elements
/// is then one table lookup each (the same `dequantize`, evaluated once per value).
fn table<F: NumberFormat>(f: &F, codes: &Codes<'_>, p: &SliceParams, lut: &mut [f32; 256]) {
    for (u, x) in lut.iter_mut().enumerate().take(1 << codes.raw_bits()) {
        *x = f.dequantize(f.code_from_byte(codes.code_byte(u as u8)), p);
    }
}

fn dequantize_with<F: NumberFormat>(f: F, g: &Grid<'_>, out: &mut [f32]) {
    let cols = g.cols;
    if cols == 0 {
        return;
    }
    // Bands of rows in parallel: rows that share their slices (blocks), or
    // that the codes gather together.
    let band = match g.map {
        SliceMap::Blocks { bh, .. } => bh.max(1),
        _ => g.codes.band_rows(),
    };
    out.par_chunks_mut(cols * band).enumerate().for_each_init(
        || (Scratch::default(), Vec::new()),
        |(s, luts), (k, o)| {
            let r0 = k * band;
            let raw = g.codes.band(r0, o.len() / cols, g.rows, cols, s);
            match &g.map {
                SliceMap::GIdx { g_idx, groups } => gidx_band(&f, g, r0, (g_idx, *groups), raw, o, luts),
                _ => runs_band(&f, g, r0, raw, o, luts),
            }
        },
    );
}

/// Rows `r0..` (one band, raw values `raw`) of a map whose slices are runs
/// of columns: one table per run, built when a row's slices change (once for
/// a band of block rows), then one lookup per element. Runs too short to pay
/// for a table are computed directly.
fn runs_band<F: NumberFormat>(
    f: &F,
    g: &Grid<'_>,
    r0: usize,
    raw: &[u8],
    o: &mut [f32],
    luts: &mut Vec<[f32; 256]>,
) {
    let cols = g.cols;
    // Row r's first slice is (r / per) · step.
    let (width, per, step) = match g.map {
        SliceMap::Tensor => (cols, 1, 0),
        SliceMap::Rows => (cols, 1, 1),
        SliceMap::Groups(size) => (size.max(1), 1, cols.div_ceil(size.max(1))),
        SliceMap::Blocks { bh, bw } => (bw.max(1), bh.max(1), cols.div_ceil(bw.max(1))),
        SliceMap::GIdx { .. } => unreachable!("g_idx maps go through gidx_band"),
    };
    let (runs, direct) = (cols.div_ceil(width), width < 2 << g.codes.raw_bits());
    let mut built = None;
    for (i, (row, raw)) in o.chunks_mut(cols).zip(raw.chunks(cols)).enumerate() {
        let s0 = (r0 + i) / per * step;
        let params = &g.params[s0..s0 + runs];
        if !direct && built != Some(s0) {
            luts.resize(runs, [0.0; 256]);
            for (p, lut) in params.iter().zip(luts.iter_mut()) {
                table(f, &g.codes, p, lut);
            }
            built = Some(s0);
        }
        for (j, (x, u)) in row.chunks_mut(width).zip(raw.chunks(width)).enumerate() {
            if direct {
                let p = &params[j];
                for (x, &u) in x.iter_mut().zip(u) {
                    *x = f.dequantize(f.code_from_byte(g.codes.code_byte(u)), p);
                }
            } else {
                let lut = &luts[j];
                for (x, &u) in x.iter_mut().zip(u) {
                    *x = lut[usize::from(u)];
                }
            }
        }
    }
}

/// Rows `r0..` of a GPTQ act-order map: per row, a table per group, then
/// each column looks up its group's (`g_idx[c]`).
fn gidx_band<F: NumberFormat>(
    f: &F,
    g: &Grid<'_>,
    r0: usize,
    (g_idx, groups): (&[u32], usize),
    raw: &[u8],
    o: &mut [f32],
    luts: &mut Vec<[f32; 256]>,
) {
    luts.resize(groups, [0.0; 256]);
    for (i, (row, raw)) in o.chunks_mut(g.cols).zip(raw.chunks(g.cols)).enumerate() {
        let r = r0 + i;
        for (p, lut) in g.params[r * groups..(r + 1) * groups].iter().zip(luts.iter_mut()) {
            table(f, &g.codes, p, lut);
        }
        for ((x, &u), &gi) in row.iter_mut().zip(raw).zip(g_idx) {
            *x = luts[gi as usize][usize::from(u)];
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn p(scale: f32, zero_point: i32) -> SliceParams {
        SliceParams { scale, zero_point, offset: 0.0, lo: 0.0, hi: 0.0 }
    }

    #[test]
    fn each_map_picks_the_right_slice() {
        // [2, 4] INT8 codes 1..8 as bytes.
        let codes: Vec<u8> = (1..=8i8).map(|q| q.to_le_bytes()[0]).collect();
        let grid = |params, map| Grid {
            format: FormatKind::Int(8),
            work: WorkDtype::F32,
            rows: 2,
            cols: 4,
            codes: Codes::Bytes(Cow::Borrowed(&codes)),
            params,
            map,
            global: None,
        };
        let run = |params, map| dequantize(&grid(params, map)).unwrap();
        assert_eq!(run(vec![p(0.5, 0)], SliceMap::Tensor), [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]);
        assert_eq!(
            run(vec![p(1.0, 0), p(2.0, 1)], SliceMap::Rows),
            [1.0, 2.0, 3.0, 4.0, 8.0, 10.0, 12.0, 14.0]
        );
        let four = vec![p(1.0, 0), p(2.0, 0), p(3.0, 0), p(4.0, 0)];
        assert_eq!(run(four.clone(), SliceMap::Groups(2)), [1.0, 2.0, 6.0, 8.0, 15.0, 18.0, 28.0, 32.0]);
        // 3 columns per group: the second group of each row is short.
        assert_eq!(run(four.clone(), SliceMap::Groups(3)), [1.0, 2.0, 3.0, 8.0, 15.0, 18.0, 21.0, 32.0]);
        assert_eq!(
            run(vec![p(1.0, 0), p(2.0, 0)], SliceMap::Blocks { bh: 2, bw: 3 }),
            [1.0, 2.0, 3.0, 8.0, 5.0, 6.0, 7.0, 16.0]
        );
        let g_idx = SliceMap::GIdx { g_idx: vec![1, 0, 1, 0], groups: 2 };
        assert_eq!(run(four.clone(), g_idx.clone()), [2.0, 2.0, 6.0, 4.0, 20.0, 18.0, 28.0, 24.0]);
        // `index` agrees with the decoding loop for every map.
        for map in
            [SliceMap::Tensor, SliceMap::Rows, SliceMap::Groups(3), SliceMap::Blocks { bh: 2, bw: 3 }, g_idx]
        {
            let d = decode(grid(four.clone(), map.clone())).unwrap();
            for (k, &v) in d.values.iter().enumerate() {
                assert_eq!(v, f32::from(codes[k] as i8) * d.params_of(k).scale, "{map:?} {k}");
            }
        }
    }

    /// Every packed layout and map, against R′ computed element by element
    /// from the code bytes: tables indexed by the raw stored value, the
    /// direct path for short runs, bands of block rows and g_idx all agree.
    #[test]
    fn packed_layouts_decode_as_their_code_bytes_under_every_map() {
        use crate::ct::bitpack::{pack_rows, words_to_bytes};
        use crate::format::IntFormat;
        // 520 columns: a whole row pays for even a 256-entry table.
        let (rows, cols) = (16, 520);
        for bits in [3u8, 4, 8] {
            let half = 1i32 << (bits - 1);
            let q: Vec<i8> =
                (0..rows * cols).map(|i| ((i * 29 + i / 5) as i32 % (2 * half) - half) as i8).collect();
            let bytes = words_to_bytes(&pack_rows(&q, rows, cols, bits));
            let stride = bytes.len() / rows;
            let g_idx: Vec<u32> = (0..cols).map(|c| (c * 5 % cols / 200) as u32).collect();
            let maps = [
                SliceMap::Tensor,
                SliceMap::Rows,
                SliceMap::Groups(8),
                SliceMap::Groups(40),
                SliceMap::Blocks { bh: 3, bw: 40 },
                SliceMap::GIdx { g_idx, groups: 3 },
            ];
            for map in maps {
                let n = map.slices(rows, cols);
                let params: Vec<SliceParams> =
                    (0..n).map(|k| p(0.001 * (k % 13 + 1) as f32, (k % 5) as i32 - 2)).collect();
                let grid = Grid {
                    format: FormatKind::Int(bits),
                    work: WorkDtype::F16,
                    rows,
                    cols,
                    codes: Codes::Biased { bytes: &bytes, stride, bits },
                    params: params.clone(),
                    map: map.clone(),
                    global: None,
                };
                let f = IntFormat::new(bits).unwrap().in_work(WorkDtype::F16);
                let want: Vec<u32> = (0..rows * cols)
                    .map(|k| {
                        f.dequantize(i32::from(q[k]), &params[map.index(k / cols, k % cols, cols)]).to_bits()
                    })
                    .collect();
                let got: Vec<u32> = dequantize(&grid).unwrap().iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "{bits} bits, {map:?}");
            }
        }
    }

    #[test]
    fn a_reused_buffer_of_any_length_gives_the_fresh_result() {
        let codes: Vec<u8> = (0..60u8).collect();
        let grid = Grid {
            format: FormatKind::E4M3,
            work: WorkDtype::BF16,
            rows: 6,
            cols: 10,
            codes: Codes::Bytes(Cow::Borrowed(&codes)),
            params: vec![p(0.5, 0), p(0.25, 0)],
            map: SliceMap::Blocks { bh: 3, bw: 10 },
            global: None,
        };
        let fresh = dequantize(&grid).unwrap();
        for len in [0, 7, 60, 500] {
            let mut buf = vec![f32::NAN; len];
            dequantize_into(&grid, &mut buf).unwrap();
            assert_eq!(buf.len(), 60);
            assert!(buf.iter().zip(&fresh).all(|(a, b)| a.to_bits() == b.to_bits()), "from length {len}");
        }
        // Too few scales for the map: an error, not a panic.
        let short = Grid { params: vec![p(0.5, 0)], ..grid };
        assert!(dequantize(&short).unwrap_err().to_string().contains("1 scales for 2 slices"));
    }
}
