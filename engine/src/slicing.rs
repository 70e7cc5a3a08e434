//! Slicing: which elements share one (S, Z) under a granularity. Resolves the
//! granularity for a shape (with the 1-D fallback), lays the slices out as row
//! runs or strided channels, and maps an element to its slice. Used by
//! analysis, calibration, saving and the sweep alike, so all of them cut a
//! tensor the same way (docs/numerics.md, "Granularity and slicing").

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::metrics::TensorStats;
use crate::scheme::Granularity;
use safetensors::Dtype;

/// Slices longer than this are calibrated and measured in parallel chunks.
pub(crate) const PAR_CHUNK: usize = 1 << 16;

/// How elements are grouped into slices.
#[derive(Clone, Copy)]
pub(crate) enum Layout {
    /// Rows of `row_len` elements, each cut into groups of `group` (the last may be short).
    Rows { row_len: usize, group: usize },
    /// Per-channel along an inner axis: `[outer, dim, inner]`, slice c takes index c.
    Strided { outer: usize, dim: usize, inner: usize },
    /// `size`×`size` tiles of the `[rows, cols]` view, numbered row-major.
    Blocks { rows: usize, cols: usize, size: usize },
}

impl Layout {
    /// The element indices of tile `b` in reading order (Blocks only).
    pub(crate) fn tile(&self, b: usize) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        let (rows, cols, size) = match *self {
            Layout::Blocks { rows, cols, size } => (rows, cols, size),
            _ => (0, 0, 1),
        };
        let per_row = cols.div_ceil(size.max(1)).max(1);
        let (r0, c0) = ((b / per_row) * size, (b % per_row) * size);
        let c1 = (c0 + size).min(cols);
        (r0..(r0 + size).min(rows)).map(move |r| r * cols + c0..r * cols + c1)
    }

    /// The number of slices.
    pub(crate) fn slices(&self) -> usize {
        match *self {
            Layout::Rows { row_len, group } => row_len.div_ceil(group.max(1)),
            Layout::Strided { dim, .. } => dim,
            Layout::Blocks { rows, cols, size } => rows.div_ceil(size) * cols.div_ceil(size),
        }
    }
}

/// Resolves the granularity for this shape, with a note when it falls back.
pub(crate) fn resolve(shape: &[usize], g: Granularity) -> Result<(Granularity, Option<String>)> {
    if shape.len() <= 1 && g != Granularity::Tensor {
        let note = format!(
            "{}-D tensor: per-{} falls back to per-tensor",
            shape.len(),
            match g {
                Granularity::Channel { .. } => "channel",
                Granularity::Block { .. } => "block",
                _ => "group",
            }
        );
        return Ok((Granularity::Tensor, Some(note)));
    }
    if let Granularity::Channel { axis } = g
        && axis >= shape.len()
    {
        return Err(Error::Scheme(format!(
            "channel axis {axis} does not exist in a {}-D tensor",
            shape.len()
        )));
    }
    Ok((g, None))
}

pub(crate) fn layout(shape: &[usize], g: Granularity, numel: usize) -> Layout {
    match g {
        Granularity::Tensor => Layout::Rows { row_len: numel.max(1), group: numel.max(1) },
        Granularity::Channel { axis: 0 } => {
            let row = numel / shape[0].max(1);
            Layout::Rows { row_len: row.max(1), group: row.max(1) }
        }
        Granularity::Channel { axis } => Layout::Strided {
            outer: shape[..axis].iter().product(),
            dim: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        },
        Granularity::Group { size } => {
            let row = numel / shape[0].max(1);
            Layout::Rows { row_len: row.max(1), group: size }
        }
        Granularity::Block { size } => {
            let rows = shape[0].max(1);
            Layout::Blocks { rows, cols: numel / rows, size: size.max(1) }
        }
    }
}

/// Maps a flat element index to the index of its slice (the order of
/// [`QuantResult::params`]) under a resolved granularity.
pub(crate) fn slice_indexer(shape: &[usize], g: Granularity) -> impl Fn(usize) -> usize + Sync {
    let l = layout(shape, g, shape.iter().product());
    move |k| match l {
        Layout::Rows { row_len, group } => (k / row_len) * row_len.div_ceil(group) + (k % row_len) / group,
        Layout::Strided { dim, inner, .. } => (k / inner.max(1)) % dim.max(1),
        Layout::Blocks { cols, size, .. } => {
            let (r, c) = (k / cols.max(1), k % cols.max(1));
            (r / size) * cols.div_ceil(size) + c / size
        }
    }
}

/// `(row_len, group)` when slices are runs of a row-major `[dim0, rest]` view
/// (per-tensor, per-channel on axis 0, per-group); `None` for an inner axis.
pub(crate) fn row_layout(shape: &[usize], g: Granularity) -> Option<(usize, usize)> {
    match layout(shape, g, shape.iter().product()) {
        Layout::Rows { row_len, group } => Some((row_len, group)),
        Layout::Strided { .. } | Layout::Blocks { .. } => None,
    }
}

/// Finite statistics of a whole tensor, in parallel.
pub(crate) fn parallel_stats(xs: &[f32]) -> TensorStats {
    if xs.len() <= PAR_CHUNK {
        return TensorStats::of(xs);
    }
    let parts: Vec<TensorStats> = xs.par_chunks(PAR_CHUNK).map(TensorStats::of).collect();
    parts.iter().fold(TensorStats::default(), TensorStats::merge)
}

/// [`parallel_stats`] of a tensor still in its stored bytes: each `PAR_CHUNK`
/// decoded into a per-thread buffer (the same chunks merged in the same order,
/// so the same bits), never into a tensor-sized one.
pub(crate) fn parallel_stats_encoded(dtype: Dtype, bytes: &[u8]) -> TensorStats {
    let size = dtype.bitsize() / 8;
    let parts: Vec<TensorStats> = bytes
        .par_chunks(PAR_CHUNK * size)
        .map_init(Vec::new, |buf: &mut Vec<f32>, b| {
            crate::decode::decode_chunk_into(dtype, b, buf);
            TensorStats::of(buf)
        })
        .collect();
    parts.iter().fold(TensorStats::default(), TensorStats::merge)
}
