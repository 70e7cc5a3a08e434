//! Whole-model sensitivity: the metrics of every chosen tensor under N schemes.
//!
//! The model is streamed through its memory map one tensor at a time: each tensor
//! is decoded once and shared by all N schemes (`multi`: statistics, ranges and
//! cache-resident rows shared across schemes), then its pages are released, so memory follows the largest tensor, never the model.
//! Progress is reported per tensor and the sweep stops between tensors when
//! cancelled.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::analyze::analyze_stored;
use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::error::{Error, Result};
use crate::format::WorkDtype;
use crate::metrics::Metrics;
use crate::rank::SqnrSummary;
use crate::rank::{self, Item, RankKey};
use crate::scheme::Scheme;

/// One tensor under one scheme.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub metrics: Metrics,
    /// Bytes this tensor takes stored under the scheme: codes (bit-packed) plus
    /// scales, zero points or FP8 offsets.
    pub stored_bytes: u64,
    /// Number of (S, Z) slices.
    pub slices: usize,
    pub fallback: Option<String>,
}

/// One tensor's line of the matrix: a cell per scheme (an error if that scheme
/// cannot apply, e.g. a channel axis the tensor lacks).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub params: u64,
    /// The tensor's bytes in the source file.
    pub source_bytes: u64,
    /// In JSON a failed cell is `{"error": "…"}`.
    #[serde(serialize_with = "cells_json")]
    pub cells: Vec<Result<Cell, String>>,
}

fn cells_json<S: serde::Serializer>(
    cells: &[Result<Cell, String>],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(Serialize)]
    struct Failed<'a> {
        error: &'a str,
    }
    let mut seq = s.serialize_seq(Some(cells.len()))?;
    for c in cells {
        match c {
            Ok(cell) => seq.serialize_element(cell)?,
            Err(e) => seq.serialize_element(&Failed { error: e })?,
        }
    }
    seq.end()
}

/// The whole model under one scheme.
#[derive(Clone, Debug, Serialize)]
pub struct SchemeTotals {
    pub scheme: String,
    /// The swept tensors stored under the scheme, plus every other tensor as is.
    pub model_bytes: u64,
    /// The swept tensors' stored bytes alone.
    pub quantized_bytes: u64,
    pub params_quantized: u64,
    pub params_total: u64,
    pub quantized_share: f64,
    /// The model SQNR over the swept tensors (a tensor the scheme could not
    /// take is kept as stored: no noise). See [`SqnrSummary`].
    pub model_sqnr_db: Option<f64>,
    /// Params-weighted mean of the finite SQNRs in dB.
    pub mean_layer_sqnr_db: Option<f64>,
    pub worst_sqnr_db: Option<f64>,
    pub worst_layer: Option<String>,
}

/// The layers × schemes matrix and its per-scheme totals.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    pub schemes: Vec<String>,
    pub rows: Vec<Row>,
    pub totals: Vec<SchemeTotals>,
}

impl Sweep {
    /// The metrics of row `row` under scheme column `col`, if that cell succeeded.
    pub fn cell_metrics(&self, row: usize, col: usize) -> Option<&Metrics> {
        self.rows.get(row)?.cells.get(col)?.as_ref().ok().map(|c| &c.metrics)
    }

    /// Row order under scheme column `col` (the GUI's table and matrix, the
    /// CLI's tables): worst first under `key`, or the reverse.
    pub fn ranked(&self, col: usize, key: RankKey, reversed: bool) -> Vec<usize> {
        let items = self.rows.iter().enumerate().map(|(i, r)| Item {
            name: &r.name,
            params: r.params,
            metrics: self.cell_metrics(i, col),
        });
        rank::worst_first(items, key, reversed)
    }
}

/// Bytes of one tensor stored under `scheme`, exactly as the save writes them:
/// the weight-only packed save ([`crate::ct::stored_bytes`]), or for a
/// llama.cpp type its blocks as llama.cpp counts them (`ggml_nbytes`: rows of
/// whole blocks; 0 where the rows do not divide into blocks).
pub fn stored_bytes(info: &TensorInfo, scheme: &Scheme) -> u64 {
    match scheme.format.ggml() {
        Some(ty) => {
            let cols = info.shape.last().copied().unwrap_or(1) as u64;
            let rows = info.numel() as u64 / cols.max(1);
            ty.row_bytes(cols).map_or(0, |b| b * rows)
        }
        None => crate::ct::stored_bytes(info, scheme),
    }
}

/// Sweeps `tensors` (indices into `ckpt.tensors()`) under every scheme.
/// `progress(done, total)` is called after each tensor.
pub fn sweep(
    ckpt: &Checkpoint,
    tensors: &[usize],
    schemes: &[Scheme],
    progress: &(dyn Fn(usize, usize) + Sync),
    cancel: &AtomicBool,
) -> Result<Sweep> {
    let all = ckpt.tensors();
    let mut rows = Vec::with_capacity(tensors.len());
    let mut buf = Vec::new();
    for (done, &i) in tensors.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let info = all.get(i).ok_or_else(|| Error::NotFound(format!("tensor #{i}")))?;
        rows.push(sweep_tensor(ckpt, info, schemes, &mut buf));
        ckpt.release(info);
        progress(done + 1, tensors.len());
    }
    Ok(finish(ckpt, tensors, schemes, rows))
}

/// Assembles the matrix and its totals from rows swept one by one (the GUI's
/// worker sweeps a tensor per turn so that other requests interleave).
pub fn finish(ckpt: &Checkpoint, tensors: &[usize], schemes: &[Scheme], rows: Vec<Row>) -> Sweep {
    let labels: Vec<String> = schemes.iter().map(ToString::to_string).collect();
    finish_labelled(ckpt, tensors, &labels, rows)
}

/// [`finish`] for columns named by `labels`, one per cell of every row (the
/// GUI adds a compared checkpoint's published quantization as a column).
pub fn finish_labelled(ckpt: &Checkpoint, tensors: &[usize], labels: &[String], rows: Vec<Row>) -> Sweep {
    let all = ckpt.tensors();
    let swept: Vec<bool> = (0..all.len()).map(|i| tensors.contains(&i)).collect();
    let other_bytes: u64 =
        all.iter().zip(&swept).filter(|(_, s)| !**s).map(|(t, _)| t.size_bytes as u64).sum();
    let params_total: u64 = all.iter().map(|t| t.numel() as u64).sum();
    let totals =
        labels.iter().enumerate().map(|(k, s)| totals_for(s, k, &rows, other_bytes, params_total)).collect();
    Sweep { schemes: labels.to_vec(), rows, totals }
}

/// One tensor, decoded once (into `buf`, reused across calls), under every
/// scheme in parallel.
pub fn sweep_tensor(ckpt: &Checkpoint, info: &TensorInfo, schemes: &[Scheme], buf: &mut Vec<f32>) -> Row {
    // One scheme: decode row by row inside the analysis (nothing to share, and
    // the decoded tensor never leaves the cache); aligned F32 is read in place.
    if let [s] = schemes
        && !(crate::format::spec(s.format).is_ok_and(|f| f.two_level)
            && crate::fused::siblings(ckpt, &info.name).is_some())
    {
        let cell = analyze_stored(ckpt, info, s)
            .map(|r| Cell {
                stored_bytes: stored_bytes(info, s),
                slices: r.params.len(),
                metrics: r.metrics,
                fallback: r.fallback,
            })
            .map_err(|e| e.to_string());
        return Row {
            name: info.name.clone(),
            params: info.numel() as u64,
            source_bytes: info.size_bytes as u64,
            cells: vec![cell],
        };
    }
    // Fused siblings share a two-level format's global scale, as in the save.
    let amax: Vec<Result<Option<f32>, String>> = schemes
        .iter()
        .map(|s| {
            crate::fused::shared_global_amax(ckpt, &info.name, s, &|_| Some(*s)).map_err(|e| e.to_string())
        })
        .collect();
    let cells = match ckpt.values(info, buf) {
        Err(e) => amax.into_iter().map(|a| a.and(Err(e.to_string()))).collect(),
        Ok(values) => {
            // Every scheme at once, sharing statistics, ranges and cache-resident rows.
            let set: Vec<(Scheme, Option<f32>)> =
                schemes.iter().zip(&amax).map(|(s, a)| (*s, a.clone().ok().flatten())).collect();
            let totals = crate::multi::analyze_many(values, &info.shape, WorkDtype::of(info.dtype), &set);
            schemes
                .iter()
                .zip(amax)
                .zip(totals)
                .map(|((s, a), t)| {
                    a?;
                    let t = t.map_err(|e| e.to_string())?;
                    Ok(Cell {
                        stored_bytes: stored_bytes(info, s),
                        slices: t.slices,
                        metrics: t.metrics,
                        fallback: t.fallback,
                    })
                })
                .collect()
        }
    };
    Row { name: info.name.clone(), params: info.numel() as u64, source_bytes: info.size_bytes as u64, cells }
}

fn totals_for(label: &str, k: usize, rows: &[Row], other_bytes: u64, params_total: u64) -> SchemeTotals {
    let ok: Vec<(&Row, &Cell)> =
        rows.iter().filter_map(|r| r.cells[k].as_ref().ok().map(|c| (r, c))).collect();
    let quantized_bytes: u64 = ok.iter().map(|(_, c)| c.stored_bytes).sum();
    let params_quantized: u64 = ok.iter().map(|(r, _)| r.params).sum();
    let SqnrSummary { model_sqnr_db, mean_layer_sqnr_db, worst_sqnr_db, worst_layer } =
        SqnrSummary::of(rows.iter().map(|r| Item {
            name: &r.name,
            params: r.params,
            metrics: r.cells[k].as_ref().ok().map(|c| &c.metrics),
        }));
    // Tensors a scheme could not take stay in the model unquantized.
    let failed_bytes: u64 = rows.iter().filter(|r| r.cells[k].is_err()).map(|r| r.source_bytes).sum();
    SchemeTotals {
        scheme: label.to_string(),
        model_bytes: other_bytes + quantized_bytes + failed_bytes,
        quantized_bytes,
        params_quantized,
        params_total,
        quantized_share: if params_total == 0 { 0.0 } else { params_quantized as f64 / params_total as f64 },
        model_sqnr_db,
        mean_layer_sqnr_db,
        worst_sqnr_db,
        worst_layer,
    }
}

/// The default scheme set of the sensitivity view: INT8 per-tensor / per-channel /
/// per-group-128 × min-max / MSE, E4M3 and E5M2 per-tensor, and the 4-bit
/// layouts runtimes ship: INT4 group-128 (W4A16), NVFP4 and MXFP4.
pub fn default_schemes() -> Vec<Scheme> {
    [
        "int8:tensor:minmax",
        "int8:tensor:mse",
        "int8:channel:minmax",
        "int8:channel:mse",
        "int8:group128:minmax",
        "int8:group128:mse",
        "e4m3:tensor:minmax",
        "e5m2:tensor:minmax",
        "int4:group128:minmax",
        "nvfp4",
        "mxfp4",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, params: u64, sqnr_db: Option<f64>) -> Row {
        let cell = sqnr_db.map_or_else(
            || Err("no channel axis 1".to_string()),
            |db| {
                let metrics = Metrics { sqnr_db: db, mse: 1.0 / (1.0 + db.abs()), ..Metrics::default() };
                Ok(Cell { metrics, stored_bytes: 0, slices: 1, fallback: None })
            },
        );
        Row { name: name.into(), params, source_bytes: 0, cells: vec![cell] }
    }

    fn sweep() -> Sweep {
        Sweep {
            schemes: vec!["int8:tensor:minmax".into()],
            rows: vec![
                row("c", 10, Some(30.0)),
                row("a", 30, None),
                row("b", 20, Some(f64::INFINITY)),
                row("d", 20, Some(12.0)),
                row("e", 5, Some(30.0)),
            ],
            totals: Vec::new(),
        }
    }

    #[test]
    fn natural_order_is_worst_first_with_failures_last() {
        let s = sweep();
        let names = |o: Vec<usize>| o.iter().map(|&i| s.rows[i].name.as_str()).collect::<String>();
        assert_eq!(names(s.ranked(0, RankKey::Sqnr, false)), "dceba");
        assert_eq!(names(s.ranked(0, RankKey::Sqnr, true)), "abecd");
        assert_eq!(names(s.ranked(0, RankKey::Name, false)), "abcde");
        assert_eq!(names(s.ranked(0, RankKey::Params, false)), "abdce");
        // Highest MSE first (lowest SQNR here), failed last.
        assert_eq!(names(s.ranked(0, RankKey::Mse, false)), "dceba");
    }
}
