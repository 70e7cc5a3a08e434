//! Codes + per-slice (S, Z) → R′, for every stored layout alike. The arithmetic
//! is the format's own `NumberFormat::dequantize` in the working dtype D
//! (docs/numerics.md), so a stored layer decodes exactly as quantscope's own
//! quantizer would have produced it; only the element → slice map differs
//! between layouts.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::error::Result;
use crate::format::{NumberFormat, SliceParams, WithFormat, WorkDtype, dispatch_in};
use crate::scheme::{FormatKind, Granularity};

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

/// A stored layer ready to decode: one code byte per element (INT: the signed
/// code as i8; FP8: its bits), row-major `[rows, cols]`, and the slices' params.
pub struct Grid<'a> {
    pub format: FormatKind,
    pub work: WorkDtype,
    pub rows: usize,
    pub cols: usize,
    pub codes: Cow<'a, [u8]>,
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
    let values = dequantize(&g)?;
    Ok(Decoded { values, params: g.params, map: g.map, cols: g.cols, work: g.work, global: g.global })
}

/// R′ of every element, row-major, computed in parallel by rows.
pub fn dequantize(g: &Grid<'_>) -> Result<Vec<f32>> {
    struct Run<'g, 'a>(&'g Grid<'a>);
    impl WithFormat for Run<'_, '_> {
        type Out = Vec<f32>;
        fn run<F: NumberFormat>(self, f: F) -> Vec<f32> {
            let f = self.0.global.map_or(f, |gs| f.with_global(gs));
            dequantize_with(f, self.0)
        }
    }
    dispatch_in(g.format, g.work, Run(g))
}

/// The code bytes a format can store: the 2^b signed INT codes, or all 256 FP8 bytes.
fn code_bytes<F: NumberFormat>(f: &F) -> Vec<u8> {
    if f.is_float() {
        (0..=255).collect()
    } else {
        let half = 1i32 << (f.bits() - 1);
        (-half..half).map(|q| (q as i8).to_le_bytes()[0]).collect()
    }
}

/// R′ of every code byte under one slice's params: decoding a run of elements
/// is then one table lookup each (the same `dequantize`, evaluated once per code).
fn table<F: NumberFormat>(f: &F, codes: &[u8], p: &SliceParams, lut: &mut [f32; 256]) {
    for &b in codes {
        lut[usize::from(b)] = f.dequantize(f.code_from_byte(b), p);
    }
}

fn dequantize_with<F: NumberFormat>(f: F, g: &Grid<'_>) -> Vec<f32> {
    let cols = g.cols;
    let mut out = vec![0.0f32; g.rows * cols];
    if cols == 0 {
        return out;
    }
    let codes = code_bytes(&f);
    let p = &g.params;
    // Rows (or bands of `bh` rows for blocks) in parallel; within them, each
    // run of elements sharing a slice goes through that slice's table.
    let band = match g.map {
        SliceMap::Blocks { bh, .. } => bh.max(1),
        _ => 1,
    };
    out.par_chunks_mut(cols * band).zip(g.codes.par_chunks(cols * band)).enumerate().for_each(
        |(k, (o, c))| {
            let mut lut = [0.0f32; 256];
            let r0 = k * band;
            match &g.map {
                SliceMap::Tensor | SliceMap::Rows | SliceMap::Groups(_) => {
                    let (run, first) = match g.map {
                        SliceMap::Tensor => (cols, 0),
                        SliceMap::Rows => (cols, r0),
                        SliceMap::Groups(size) => (size.max(1), r0 * cols.div_ceil(size.max(1))),
                        _ => unreachable!(),
                    };
                    for (j, (oc, cc)) in o.chunks_mut(run).zip(c.chunks(run)).enumerate() {
                        if cc.len() < 2 * codes.len() {
                            for (x, &b) in oc.iter_mut().zip(cc) {
                                *x = f.dequantize(f.code_from_byte(b), &p[first + j]);
                            }
                        } else {
                            table(&f, &codes, &p[first + j], &mut lut);
                            for (x, &b) in oc.iter_mut().zip(cc) {
                                *x = lut[usize::from(b)];
                            }
                        }
                    }
                }
                SliceMap::Blocks { bw, .. } => {
                    let (bw, nb) = ((*bw).max(1), cols.div_ceil((*bw).max(1)));
                    for b in 0..nb {
                        table(&f, &codes, &p[k * nb + b], &mut lut);
                        for (oc, cc) in o.chunks_mut(cols).zip(c.chunks(cols)) {
                            let span = b * bw..((b + 1) * bw).min(cols);
                            for (x, &q) in oc[span.clone()].iter_mut().zip(&cc[span]) {
                                *x = lut[usize::from(q)];
                            }
                        }
                    }
                }
                SliceMap::GIdx { g_idx, groups } => {
                    let n = codes.len();
                    let mut luts = vec![0.0f32; groups * 256];
                    for (gi, t) in luts.chunks_exact_mut(256).enumerate() {
                        table(&f, &codes[..n], &p[r0 * groups + gi], &mut lut);
                        t.copy_from_slice(&lut);
                    }
                    for ((x, &q), &gi) in o.iter_mut().zip(c).zip(g_idx) {
                        *x = luts[gi as usize * 256 + usize::from(q)];
                    }
                }
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
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
            codes: Cow::Borrowed(&codes),
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
}
