//! Writing: each shard's header first, then one tensor at a time at its
//! precomputed offset (source pages released after), then the index, the
//! companion files and config.json, all into a hidden temp folder that is
//! renamed to OUT only when complete.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::config::config_json;
use super::layout::{Entry, shard_layout};
use super::pack::{Source, chunk_digests, pack, part_bytes};
use super::plan::Decision;
use super::{ExportMode, ExportOptions, ExportSummary, LayerSummary, ProgressFn};
use crate::checkpoint::{Checkpoint, INDEX_FILE, TensorInfo};
use crate::ct::format::weight_type;
use crate::error::{Error, Result};
use crate::format::spec;
use crate::rank::Item;
use crate::rank::SqnrSummary;
use crate::scheme::{Calibration, Scheme};
use serde_json::Value;

/// Bytes per write when copying a tensor unchanged.
const COPY_CHUNK: usize = 8 << 20;

/// Counts bytes and turns writes past `limit` into a full-disk error (test hook).
pub(super) struct Budget {
    written: u64,
    limit: Option<u64>,
}

impl Budget {
    pub(super) fn take(&mut self, n: usize, path: &Path) -> Result<()> {
        self.written += n as u64;
        match self.limit {
            Some(l) if self.written > l => Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device (simulated)"),
            )),
            _ => Ok(()),
        }
    }
}

pub(super) fn write_at(
    f: &mut File,
    path: &Path,
    offset: u64,
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<()> {
    for (i, chunk) in bytes.chunks(COPY_CHUNK).enumerate() {
        budget.take(chunk.len(), path)?;
        f.seek(SeekFrom::Start(offset + (i * COPY_CHUNK) as u64)).map_err(|e| Error::io(path, e))?;
        f.write_all(chunk).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

pub(super) fn write_json(path: &Path, v: &Value, budget: &mut Budget) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(v).map_err(|e| Error::format(path, e.to_string()))?;
    text.push(b'\n');
    let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
    write_at(&mut f, path, 0, &text, budget)?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Copies the model folder's other files (tokenizer, …) into `to`; the weights,
/// the index and config.json are written by the export itself. Hidden entries
/// (`.git`, temp folders) are skipped.
fn copy_companions(from: &Path, to: &Path, budget: &mut Budget) -> Result<()> {
    let entries = std::fs::read_dir(from).map_err(|e| Error::io(from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if name_s.starts_with('.')
            || name_s.ends_with(".safetensors")
            || name_s == INDEX_FILE
            || name_s == "config.json"
        {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        let kind = entry.file_type().map_err(|e| Error::io(&src, e))?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
            copy_companions(&src, &dst, budget)?;
        } else if kind.is_file() || kind.is_symlink() {
            let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            let mut f = File::create(&dst).map_err(|e| Error::io(&dst, e))?;
            write_at(&mut f, &dst, 0, &bytes, budget)?;
            f.sync_all().map_err(|e| Error::io(&dst, e))?;
        }
    }
    // config.json is copied here only when the export does not rewrite it.
    let config = from.join("config.json");
    if config.is_file() && !to.join("config.json").exists() {
        let bytes = std::fs::read(&config).map_err(|e| Error::io(&config, e))?;
        let dst = to.join("config.json");
        let mut f = File::create(&dst).map_err(|e| Error::io(&dst, e))?;
        write_at(&mut f, &dst, 0, &bytes, budget)?;
    }
    Ok(())
}

/// What was computed per quantized tensor, for the summary and the verify pass.
pub(super) type Digests = HashMap<String, Vec<u64>>;

struct Written {
    digests: Digests,
    layers: Vec<LayerSummary>,
    nan_notes: Vec<String>,
}

pub(super) fn is_folder_input(ckpt: &Checkpoint) -> bool {
    ckpt.path.is_dir() || ckpt.path.to_string_lossy().ends_with(".index.json")
}

/// The hidden folder the export is written into before the final rename.
pub fn temp_dir_for(out: &Path) -> PathBuf {
    let name = out.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{name}.quantscope-tmp-{}", std::process::id()))
}

/// `path` made absolute without requiring it to exist (its parent must).
fn absolute(path: &Path) -> Result<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Ok(p);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().map_err(|e| Error::io(parent, e))?;
    Ok(parent.join(path.file_name().unwrap_or_default()))
}

pub(super) fn check_paths(ckpt: &Checkpoint, out: &Path, force: bool, folder_input: bool) -> Result<()> {
    if out.file_name().is_none() {
        return Err(Error::format(out, "output must name a folder"));
    }
    let abs_out = absolute(out)?;
    let mut sources: Vec<PathBuf> = ckpt.shards.iter().filter_map(|s| s.path.canonicalize().ok()).collect();
    if let Ok(p) = ckpt.path.canonicalize() {
        sources.push(p);
    }
    let src_dir = ckpt.dir.canonicalize().ok().filter(|_| folder_input);
    for src in &sources {
        if *src == abs_out || src.starts_with(&abs_out) {
            return Err(Error::format(
                out,
                "is the model being read (or holds it); refusing to overwrite the source",
            ));
        }
    }
    if let Some(dir) = &src_dir
        && (abs_out.starts_with(dir) || dir.starts_with(&abs_out))
    {
        return Err(Error::format(
            out,
            format!("lies inside (or holds) the source folder {}; choose a folder outside it", dir.display()),
        ));
    }
    match std::fs::metadata(out) {
        Ok(m) if !m.is_dir() => Err(Error::format(out, "exists and is not a folder")),
        Ok(_) => {
            let non_empty = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_some();
            if non_empty && !force {
                Err(Error::format(out, "folder is not empty; use --force to replace it"))
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(out, e)),
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Renames the finished temp folder to `out`, replacing an existing `out` only
/// after the new one is complete; the old one is restored if the rename fails.
pub(super) fn swap_into_place(tmp: &Path, out: &Path) -> Result<()> {
    if !out.exists() {
        return std::fs::rename(tmp, out).map_err(|e| Error::io(out, e));
    }
    let name = out.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let old = out.with_file_name(format!(".{name}.quantscope-old-{}", std::process::id()));
    std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
    if let Err(e) = std::fs::rename(tmp, out) {
        let _ = std::fs::rename(&old, out);
        return Err(Error::io(out, e));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The state of one export pass.
struct Writer<'a> {
    ckpt: &'a Checkpoint,
    decisions: &'a [Decision],
    opts: &'a ExportOptions,
    progress: ProgressFn<'a>,
    cancel: &'a AtomicBool,
    total: u64,
    done: u64,
    budget: Budget,
    written: Written,
    /// Decode buffer, reused across tensors.
    values: Vec<f32>,
}

/// Writes every shard, the index, companions and config.json into `tmp`.
pub(super) fn write_model(
    ckpt: &Checkpoint,
    decisions: &[Decision],
    tmp: &Path,
    opts: &ExportOptions,
    progress: ProgressFn<'_>,
    cancel: &AtomicBool,
    folder_input: bool,
) -> Result<(ExportSummary, Digests)> {
    let tensors = ckpt.tensors();
    let mut w = Writer {
        ckpt,
        decisions,
        opts,
        progress,
        cancel,
        total: tensors.iter().map(|t| t.size_bytes as u64).sum(),
        done: 0,
        budget: Budget { written: 0, limit: opts.fail_after_bytes },
        written: Written { digests: HashMap::new(), layers: Vec::new(), nan_notes: Vec::new() },
        values: Vec::new(),
    };
    let mut weight_map: BTreeMap<String, String> = BTreeMap::new();
    let mut bytes_after = 0u64;
    for (shard_idx, shard) in ckpt.shards.iter().enumerate() {
        let file_name = if folder_input {
            shard
                .path
                .file_name()
                .map_or_else(|| "model.safetensors".into(), |n| n.to_string_lossy().into_owned())
        } else {
            "model.safetensors".to_string()
        };
        let names = w.write_shard(shard_idx, &tmp.join(&file_name), &mut bytes_after)?;
        weight_map.extend(names.into_iter().map(|n| (n, file_name.clone())));
    }
    let had_index =
        ckpt.path.to_string_lossy().ends_with(".index.json") || ckpt.path.join(INDEX_FILE).is_file();
    if had_index {
        let index = json_index(bytes_after, &weight_map);
        write_json(&tmp.join(INDEX_FILE), &index, &mut w.budget)?;
    }
    if folder_input {
        copy_companions(&ckpt.dir, tmp, &mut w.budget)?;
    }
    let quantized: Vec<&Scheme> =
        decisions.iter().filter_map(|d| if let Decision::Quantize(s) = d { Some(s) } else { None }).collect();
    let loadable = opts.mode == ExportMode::Packed && quantized.iter().all(|s| weight_type(s).is_some());
    let mut notes = std::mem::take(&mut w.written.nan_notes);
    if opts.mode == ExportMode::Packed && !quantized.is_empty() {
        let (config, note) = config_json(ckpt, decisions, folder_input, loadable, opts.activations);
        if let Some(config) = config {
            write_json(&tmp.join("config.json"), &config, &mut w.budget)?;
        }
        notes.extend(note);
    }
    if opts.mode == ExportMode::FakeQuant {
        notes.push("fake-quant: R' stored in each tensor's original dtype; any framework loads it".into());
    }
    let summary = summarize(
        tensors,
        opts,
        w.total,
        bytes_after,
        std::mem::take(&mut w.written.layers),
        loadable,
        notes,
    );
    Ok((summary, w.written.digests))
}

fn json_index(total_size: u64, weight_map: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::json!({"metadata": {"total_size": total_size}, "weight_map": weight_map})
}

/// The summary of a finished write (not yet verified).
fn summarize(
    tensors: &[TensorInfo],
    opts: &ExportOptions,
    total: u64,
    bytes_after: u64,
    mut layers: Vec<LayerSummary>,
    loadable: bool,
    notes: Vec<String>,
) -> ExportSummary {
    let params_quantized: u64 = layers.iter().map(|l| l.params).sum();
    // Layers the default rule would quantize but this save kept count as
    // covered at no noise, as `diff` counts them.
    let quantized: std::collections::HashSet<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    let kept = tensors
        .iter()
        .filter(|t| super::quantized_on_save(t, None) && !quantized.contains(t.name.as_str()))
        .map(|t| Item { name: &t.name, params: t.numel() as u64, metrics: None });
    let SqnrSummary { model_sqnr_db, mean_layer_sqnr_db, worst_sqnr_db, worst_layer } = SqnrSummary::of(
        layers
            .iter()
            .map(|l| Item { name: &l.name, params: l.params, metrics: Some(&l.metrics) })
            .chain(kept),
    );
    layers.sort_by(|a, b| a.name.cmp(&b.name));
    ExportSummary {
        out: PathBuf::new(),
        mode: opts.mode,
        bytes_before: total,
        bytes_after,
        tensors_quantized: layers.len(),
        tensors_copied: tensors.len() - layers.len(),
        params_total: tensors.iter().map(|t| t.numel() as u64).sum(),
        params_quantized,
        model_sqnr_db,
        mean_layer_sqnr_db,
        worst_sqnr_db,
        worst_layer,
        verified_tensors: None,
        runtime_loadable: loadable,
        notes,
        layers,
    }
}

impl Writer<'_> {
    /// Writes one shard file; returns the names of the tensors in it and adds
    /// its data bytes to `bytes_after`.
    fn write_shard(&mut self, shard: usize, path: &Path, bytes_after: &mut u64) -> Result<Vec<String>> {
        let tensors = self.ckpt.tensors();
        let (entries, prefix, data_len) =
            shard_layout(tensors, self.decisions, shard, self.opts.mode, self.opts.activations, path)?;
        *bytes_after += data_len;
        let data_start = prefix.len() as u64;
        let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
        write_at(&mut f, path, 0, &prefix, &mut self.budget)?;
        let by_source: BTreeMap<usize, Vec<&Entry>> = entries.iter().fold(BTreeMap::new(), |mut m, e| {
            m.entry(e.source).or_insert_with(Vec::new).push(e);
            m
        });
        for (&src, parts) in &by_source {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let t = &tensors[src];
            match &self.decisions[src] {
                Decision::Keep(_) => {
                    let bytes = match self.opts.replaced.get(&t.name) {
                        Some(v) => Cow::Owned(replaced_bytes(self.ckpt, t, v)?),
                        None => Cow::Borrowed(self.ckpt.bytes(t)),
                    };
                    write_at(&mut f, path, data_start + parts[0].offset, &bytes, &mut self.budget)?;
                }
                Decision::Quantize(s) => self.write_quantized(t, s, parts, &mut f, path, data_start)?,
            }
            self.ckpt.release(t);
            self.done += t.size_bytes as u64;
            (self.progress)(self.done, self.total);
        }
        f.sync_all().map_err(|e| Error::io(path, e))?;
        Ok(entries.into_iter().map(|e| e.name).collect())
    }

    /// Quantizes one tensor and writes its parts; records its digests and summary.
    fn write_quantized(
        &mut self,
        t: &TensorInfo,
        s: &Scheme,
        parts: &[&Entry],
        f: &mut File,
        path: &Path,
        data_start: u64,
    ) -> Result<()> {
        let scheme_of = |n: &str| {
            let i = self.ckpt.tensors().iter().position(|x| x.name == n)?;
            if let Decision::Quantize(s) = &self.decisions[i] { Some(*s) } else { None }
        };
        let shared = crate::fused::shared_global_amax(self.ckpt, &t.name, s, &scheme_of)?;
        let replaced = self.opts.replaced.get(&t.name);
        if s.calibration == Calibration::Awq && !self.opts.smoothed {
            return Err(Error::Tensor {
                path: self.ckpt.shard_path(t).to_path_buf(),
                tensor: t.name.clone(),
                reason: format!("{s} needs the model's AWQ run first (the model run on inputs)"),
            });
        }
        let values = match replaced {
            Some(v) if v.len() == t.numel() => v.as_slice(),
            Some(_) => return Err(size_mismatch(self.ckpt, t)),
            None => self.ckpt.values(t, &mut self.values)?,
        };
        let solved = self.opts.solved.get(&t.name).map(Vec::as_slice);
        if s.calibration == Calibration::Gptq && solved.is_none() {
            return Err(Error::Tensor {
                path: self.ckpt.shard_path(t).to_path_buf(),
                tensor: t.name.clone(),
                reason: format!("{s} needs the layer's GPTQ run first (the model run on inputs)"),
            });
        }
        let mut packed =
            pack(Source { values, solved }, &t.shape, s, t.dtype, shared).map_err(|e| match e {
                Error::Plan { tensor: None, reason } => Error::Plan { tensor: Some(t.name.clone()), reason },
                e => Error::Tensor {
                    path: self.ckpt.shard_path(t).to_path_buf(),
                    tensor: t.name.clone(),
                    reason: e.to_string(),
                },
            })?;
        for e in parts {
            let bytes = part_bytes(e, &t.shape, &mut packed)?;
            write_at(f, path, data_start + e.offset, &bytes, &mut self.budget)?;
        }
        if packed.metrics.nonfinite > 0 {
            let nan = if spec(s.format).is_ok_and(|f| f.is_float) { "the NaN code" } else { "code 0" };
            self.written.nan_notes.push(format!(
                "{}: {} NaN/Inf value(s): ±Inf saturate to the range ends, NaN is stored as {nan}",
                t.name, packed.metrics.nonfinite
            ));
        }
        self.written.digests.insert(t.name.clone(), chunk_digests(&packed.dequantized));
        self.written.layers.push(LayerSummary {
            name: t.name.clone(),
            scheme: s.to_string(),
            params: t.numel() as u64,
            metrics: packed.metrics,
        });
        Ok(())
    }
}

/// A kept tensor's bytes from values a transform changed, in its own dtype.
fn replaced_bytes(ckpt: &Checkpoint, t: &TensorInfo, v: &[f32]) -> Result<Vec<u8>> {
    if v.len() != t.numel() {
        return Err(size_mismatch(ckpt, t));
    }
    super::pack::encode_floats(t.dtype, v, &t.name)
}

fn size_mismatch(ckpt: &Checkpoint, t: &TensorInfo) -> Error {
    Error::Tensor {
        path: ckpt.shard_path(t).to_path_buf(),
        tensor: t.name.clone(),
        reason: "the smoothed values do not match the tensor's size".into(),
    }
}
