//! Saving a quantized model, as NUMERICS.md "Saved model" fixes it:
//!
//! - **packed** (compressed-tensors): `X.weight` as I8 / F8 codes, `X.weight_scale`
//!   in the weight's dtype (the scale is rounded to that dtype *before* quantizing,
//!   so the stored scale is the one used), `X.weight_zero_point` (I8) when
//!   asymmetric, and a `quantization_config` block in `config.json`. E5M2 and
//!   asymmetric FP8 have no compressed-tensors form: they are written with the
//!   scheme in `__metadata__` and no `quantization_config`.
//! - **fake-quant**: R′ in the original dtype and layout, loadable anywhere.
//!
//! Safety: everything is written into a hidden temp folder beside OUT, verified,
//! and only then renamed to OUT, so a failure (disk full, unwritable, killed) never
//! leaves a partial OUT, and OUT can never be (or contain, or sit in) the source.
//! Tensors are processed one at a time and written at precomputed offsets, so peak
//! memory follows the largest tensor, not the model.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use half::{bf16, f16};
use rayon::prelude::*;
use safetensors::Dtype;
use serde::Serialize;
use serde_json::{Value, json};

use crate::analyze::{Options, analyze, row_layout, slice_indexer};
use crate::checkpoint::{Checkpoint, INDEX_FILE, TensorInfo};
use crate::decode;
use crate::error::{Error, Result};
use crate::format::{Fp8Format, IntFormat, NumberFormat, SliceParams};
use crate::metrics::{ErrorSums, Metrics, SqnrSummary, error_sums, error_sums_scalar};
use crate::rank::Item;
use crate::recipe::{LayerChoice, Resolved};
use crate::scheme::{FormatKind, Granularity, Mapping, Scheme};

/// Elements per verification digest: R′ is compared chunk by chunk.
const DIGEST_CHUNK: usize = 1 << 16;
/// Bytes per write when copying a tensor unchanged.
const COPY_CHUNK: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportMode {
    /// compressed-tensors codes + scales (+ zero points).
    Packed,
    /// R′ in the original dtype.
    FakeQuant,
}

#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub mode: ExportMode,
    /// Re-open the output and compare every dequantized tensor with the engine's R′.
    pub verify: bool,
    /// Replace a non-empty OUT.
    pub force: bool,
    /// Test hook: fail as a full disk would after this many bytes.
    #[doc(hidden)]
    pub fail_after_bytes: Option<u64>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self { mode: ExportMode::Packed, verify: true, force: false, fail_after_bytes: None }
    }
}

/// What happens to one tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Quantize(Scheme),
    /// Copied unchanged, with the reason.
    Keep(String),
}

/// Why a tensor is not quantized by default, if it is not: only float `*.weight`
/// tensors of two or more dimensions are, except embeddings and `lm_head`.
pub fn default_exclusion(info: &TensorInfo) -> Option<String> {
    if let Some(r) = &info.not_quantizable {
        return Some(r.clone());
    }
    if info.shape.len() < 2 {
        return Some(format!("{}-D tensor", info.shape.len()));
    }
    if info.numel() == 0 {
        return Some("empty tensor".into());
    }
    let Some(module) = info.name.strip_suffix(".weight") else {
        return Some("not a .weight tensor".into());
    };
    let last = module.rsplit('.').next().unwrap_or(module);
    if last == "lm_head" {
        return Some("lm_head (excluded by default)".into());
    }
    if module.contains("embed") || matches!(last, "wte" | "wpe" | "shared") {
        return Some("embedding (excluded by default)".into());
    }
    None
}

/// Whether a save quantizes `info`, given the user's choice for it (`None` =
/// the default rule). Agrees with [`plan`] (tested on every tensor of the
/// teaching sample): a choice cannot quantize a 1-D, empty or non-float tensor.
pub fn quantized_on_save(info: &TensorInfo, choice: Option<bool>) -> bool {
    info.is_quantizable()
        && info.shape.len() >= 2
        && info.numel() > 0
        && choice.unwrap_or_else(|| default_exclusion(info).is_none())
}

/// One decision per tensor (same order, e.g. `Checkpoint::tensors()`): `ignore`
/// first, then the recipe's entry, then the default rule.
pub fn plan(tensors: &[TensorInfo], recipe: &Resolved, ignore: &dyn Fn(&str) -> bool) -> Vec<Decision> {
    tensors
        .iter()
        .map(|t| {
            if ignore(&t.name) {
                return Decision::Keep("ignored (--ignore)".into());
            }
            match recipe.layers.get(&t.name) {
                Some(LayerChoice::Exclude) => Decision::Keep("excluded by the recipe".into()),
                // A recipe may ask for a tensor the default rule skips (lm_head,
                // an embedding), but never for one that cannot be quantized.
                Some(LayerChoice::Quantize(s)) => match (&t.not_quantizable, t.shape.len()) {
                    (Some(r), _) => Decision::Keep(r.clone()),
                    (None, 0 | 1) => Decision::Keep(format!("{}-D tensor", t.shape.len())),
                    _ if t.numel() == 0 => Decision::Keep("empty tensor".into()),
                    _ => Decision::Quantize(*s),
                },
                None => match default_exclusion(t) {
                    Some(r) => Decision::Keep(r),
                    None => Decision::Quantize(recipe.scheme),
                },
            }
        })
        .collect()
}

/// One quantized layer in the summary.
#[derive(Clone, Debug, Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub scheme: String,
    pub params: u64,
    pub metrics: Metrics,
}

/// What a finished export reports.
#[derive(Clone, Debug, Serialize)]
pub struct ExportSummary {
    pub out: PathBuf,
    pub mode: ExportMode,
    /// Tensor data bytes of the source and of the output.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub tensors_quantized: usize,
    pub tensors_copied: usize,
    pub params_total: u64,
    pub params_quantized: u64,
    /// Params-weighted mean SQNR over the quantized layers with finite SQNR.
    pub mean_sqnr_db: Option<f64>,
    pub worst_sqnr_db: Option<f64>,
    pub worst_layer: Option<String>,
    /// Tensors checked bit for bit after writing; None when skipped.
    pub verified_tensors: Option<usize>,
    /// Whether `config.json` has a `quantization_config` a runtime loads.
    pub runtime_loadable: bool,
    /// Things the user should know (non-standard formats, NaN codes, …).
    pub notes: Vec<String>,
    pub layers: Vec<LayerSummary>,
}

/// Progress: (source bytes done, source bytes in all).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Writes the model to `out` (a folder). See the module docs.
pub fn export(
    ckpt: &Checkpoint,
    decisions: &[Decision],
    out: &Path,
    opts: &ExportOptions,
    progress: ProgressFn<'_>,
    cancel: &AtomicBool,
) -> Result<ExportSummary> {
    if decisions.len() != ckpt.tensors().len() {
        return Err(Error::Scheme("export plan does not match the model".into()));
    }
    let folder_input = is_folder_input(ckpt);
    // Missing parent folders are created, like `mkdir -p`; OUT itself only
    // appears at the final rename.
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    check_paths(ckpt, out, opts.force, folder_input)?;
    if opts.mode == ExportMode::Packed {
        check_packable(ckpt, decisions)?;
    }
    let tmp = temp_dir_for(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = (|| {
        let (mut summary, digests) =
            write_model(ckpt, decisions, &tmp, opts, progress, cancel, folder_input)?;
        if opts.verify {
            summary.verified_tensors = Some(verify(ckpt, decisions, &tmp, opts.mode, &digests)?);
        }
        sync_dir(&tmp)?;
        swap_into_place(&tmp, out)?;
        summary.out = out.to_path_buf();
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn is_folder_input(ckpt: &Checkpoint) -> bool {
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

fn check_paths(ckpt: &Checkpoint, out: &Path, force: bool, folder_input: bool) -> Result<()> {
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

/// Refuses, before anything is written, what the packed layout cannot hold.
fn check_packable(ckpt: &Checkpoint, decisions: &[Decision]) -> Result<()> {
    for (t, d) in ckpt.tensors().iter().zip(decisions) {
        let Decision::Quantize(s) = d else { continue };
        if let Granularity::Channel { axis } = s.granularity
            && axis != 0
        {
            return Err(Error::Tensor {
                path: ckpt.shard_path(t).to_path_buf(),
                tensor: t.name.clone(),
                reason: format!(
                    "per-channel on axis {axis} has no compressed-tensors layout (scales are [out, 1]); \
                     use axis 0 or --fake-quant"
                ),
            });
        }
    }
    Ok(())
}

/// The compressed-tensors weight type, or None for layouts no runtime loads.
fn ct_type(s: &Scheme) -> Option<&'static str> {
    match (s.format, s.mapping) {
        (FormatKind::Int(_), _) => Some("int"),
        (FormatKind::E4M3, Mapping::Symmetric) => Some("float"),
        _ => None,
    }
}

/// The dtype scales are stored in: the weight's own float dtype.
pub(crate) fn scale_dtype(dtype: Dtype) -> Dtype {
    match dtype {
        Dtype::BF16 | Dtype::F16 | Dtype::F64 => dtype,
        _ => Dtype::F32,
    }
}

/// f32 → the nearest value of `dtype` (what the file will hold).
fn round_to(dtype: Dtype, x: f32) -> f32 {
    match dtype {
        Dtype::BF16 => bf16::from_f32(x).to_f32(),
        Dtype::F16 => f16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// The output dtype of a fake-quant tensor.
fn fake_dtype(dtype: Dtype) -> Dtype {
    match dtype {
        Dtype::BF16 | Dtype::F16 | Dtype::F64 | Dtype::F32 => dtype,
        _ => Dtype::F32,
    }
}

fn scale_shape(shape: &[usize], g: Granularity) -> Vec<usize> {
    let rows = shape[0];
    let rest: usize = shape[1..].iter().product();
    match g {
        Granularity::Tensor => vec![1],
        Granularity::Channel { .. } => vec![rows, 1],
        Granularity::Group { size } => vec![rows, rest.div_ceil(size)],
    }
}

/// What fills one output tensor.
#[derive(Clone, Copy, Debug)]
enum Part {
    Copy,
    Fake,
    Codes,
    Scale,
    ZeroPoint,
    Offset,
}

struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    source: usize,
    part: Part,
    offset: u64,
}

impl Entry {
    fn len(&self) -> u64 {
        (self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8) as u64
    }
}

/// The output tensors of one source tensor.
fn entries_for(t: &TensorInfo, idx: usize, d: &Decision, mode: ExportMode) -> Vec<Entry> {
    let e = |name: String, dtype, shape: Vec<usize>, part| Entry {
        name,
        dtype,
        shape,
        source: idx,
        part,
        offset: 0,
    };
    match (d, mode) {
        (Decision::Keep(_), _) => vec![e(t.name.clone(), t.dtype, t.shape.clone(), Part::Copy)],
        (Decision::Quantize(_), ExportMode::FakeQuant) => {
            vec![e(t.name.clone(), fake_dtype(t.dtype), t.shape.clone(), Part::Fake)]
        }
        (Decision::Quantize(s), ExportMode::Packed) => {
            let code_dtype = match s.format {
                FormatKind::Int(_) => Dtype::I8,
                FormatKind::E4M3 => Dtype::F8_E4M3,
                FormatKind::E5M2 => Dtype::F8_E5M2,
            };
            let ss = scale_shape(&t.shape, s.granularity);
            let sd = scale_dtype(t.dtype);
            let mut v = vec![
                e(t.name.clone(), code_dtype, t.shape.clone(), Part::Codes),
                e(format!("{}_scale", t.name), sd, ss.clone(), Part::Scale),
            ];
            match (s.format, s.mapping) {
                (_, Mapping::Symmetric) => {}
                (FormatKind::Int(_), Mapping::Asymmetric) => {
                    v.push(e(format!("{}_zero_point", t.name), Dtype::I8, ss, Part::ZeroPoint));
                }
                (_, Mapping::Asymmetric) => v.push(e(format!("{}_offset", t.name), sd, ss, Part::Offset)),
            }
            v
        }
    }
}

/// A quantized tensor, ready to write.
struct Packed {
    params: Vec<SliceParams>,
    codes: Vec<u8>,
    /// R′ as a reader of the output sees it (fake-quant: after rounding to the dtype).
    dequantized: Vec<f32>,
    metrics: Metrics,
}

fn pack(values: &[f32], shape: &[usize], scheme: &Scheme, dtype: Dtype) -> Result<Packed> {
    match scheme.format {
        FormatKind::Int(b) => pack_with(IntFormat::new(b)?, values, shape, scheme, dtype),
        FormatKind::E4M3 => pack_with(Fp8Format::E4M3, values, shape, scheme, dtype),
        FormatKind::E5M2 => pack_with(Fp8Format::E5M2, values, shape, scheme, dtype),
    }
}

fn pack_with<F: NumberFormat>(
    fmt: F,
    values: &[f32],
    shape: &[usize],
    scheme: &Scheme,
    dtype: Dtype,
) -> Result<Packed> {
    let r = analyze(values, shape, scheme, &Options::default())?;
    let sd = scale_dtype(dtype);
    let params: Vec<SliceParams> =
        r.params.iter().map(|p| fmt.stored_params(p, scheme.mapping, |x| round_to(sd, x))).collect();
    if let Some(p) = params.iter().find(|p| !p.scale.is_finite() || !p.offset.is_finite()) {
        return Err(Error::Scheme(format!("scale {} does not fit in {sd:?}", p.scale)));
    }
    let slice = slice_indexer(shape, r.granularity);
    let mut codes = vec![0u8; values.len()];
    let mut deq = vec![0f32; values.len()];
    values
        .par_chunks(DIGEST_CHUNK)
        .zip(codes.par_chunks_mut(DIGEST_CHUNK))
        .zip(deq.par_chunks_mut(DIGEST_CHUNK))
        .enumerate()
        .for_each(|(ci, ((xs, cs), ds))| {
            for (k, ((&x, c), d)) in xs.iter().zip(cs.iter_mut()).zip(ds.iter_mut()).enumerate() {
                let p = &params[slice(ci * DIGEST_CHUNK + k)];
                let q = fmt.quantize(x, p);
                *c = fmt.code_to_byte(q);
                *d = fmt.dequantize(q, p);
            }
        });
    // Metrics of the stored parameters: slice by slice through the same fused
    // pass as `analyze` where slices are row runs; element by element for a
    // channel axis other than 0 (fake-quant only).
    let parts: Vec<ErrorSums> = match row_layout(shape, r.granularity) {
        Some((row_len, group)) => values
            .par_chunks(row_len)
            .enumerate()
            .map(|(row, xs)| {
                xs.chunks(group).enumerate().fold(ErrorSums::default(), |acc, (g, gx)| {
                    let p = &params[row * row_len.div_ceil(group) + g];
                    acc.merge(&error_sums::<F, false>(fmt, gx, p, &mut []))
                })
            })
            .collect(),
        None => values
            .par_chunks(DIGEST_CHUNK)
            .enumerate()
            .map(|(ci, xs)| {
                xs.iter().enumerate().fold(ErrorSums::default(), |acc, (k, x)| {
                    let p = &params[slice(ci * DIGEST_CHUNK + k)];
                    acc.merge(&error_sums_scalar::<F, false>(fmt, std::slice::from_ref(x), p, &mut []))
                })
            })
            .collect(),
    };
    let sums = parts.iter().fold(ErrorSums::default(), ErrorSums::merge).with_signal(r.stats.sum_sq);
    Ok(Packed { params, codes, dequantized: deq, metrics: sums.metrics() })
}

/// FNV-1a over the f32 bit patterns, one digest per chunk.
fn chunk_digests(xs: &[f32]) -> Vec<u64> {
    xs.par_chunks(DIGEST_CHUNK)
        .map(|c| {
            c.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
                x.to_bits()
                    .to_le_bytes()
                    .iter()
                    .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
            })
        })
        .collect()
}

/// Counts bytes and turns writes past `limit` into a full-disk error (test hook).
struct Budget {
    written: u64,
    limit: Option<u64>,
}

impl Budget {
    fn take(&mut self, n: usize, path: &Path) -> Result<()> {
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

fn write_at(f: &mut File, path: &Path, offset: u64, bytes: &[u8], budget: &mut Budget) -> Result<()> {
    for (i, chunk) in bytes.chunks(COPY_CHUNK).enumerate() {
        budget.take(chunk.len(), path)?;
        f.seek(SeekFrom::Start(offset + (i * COPY_CHUNK) as u64)).map_err(|e| Error::io(path, e))?;
        f.write_all(chunk).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

fn encode_floats(dtype: Dtype, xs: &[f32]) -> Result<Vec<u8>> {
    decode::encode(dtype, xs).map_err(Error::Scheme)
}

/// What was computed per quantized tensor, for the summary and the verify pass.
type Digests = HashMap<String, Vec<u64>>;

struct Written {
    digests: Digests,
    layers: Vec<LayerSummary>,
    nan_notes: Vec<String>,
}

#[allow(clippy::too_many_lines)] // one linear pass: plan, header, data, index, config
fn write_model(
    ckpt: &Checkpoint,
    decisions: &[Decision],
    tmp: &Path,
    opts: &ExportOptions,
    progress: ProgressFn<'_>,
    cancel: &AtomicBool,
    folder_input: bool,
) -> Result<(ExportSummary, Digests)> {
    let tensors = ckpt.tensors();
    let total: u64 = tensors.iter().map(|t| t.size_bytes as u64).sum();
    let mut done = 0u64;
    let mut budget = Budget { written: 0, limit: opts.fail_after_bytes };
    let mut written = Written { digests: HashMap::new(), layers: Vec::new(), nan_notes: Vec::new() };
    let mut weight_map: BTreeMap<String, String> = BTreeMap::new();
    let mut bytes_after = 0u64;
    let quantized: Vec<(usize, Scheme)> = decisions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| if let Decision::Quantize(s) = d { Some((i, *s)) } else { None })
        .collect();
    let loadable = opts.mode == ExportMode::Packed && quantized.iter().all(|(_, s)| ct_type(s).is_some());
    let mut values = Vec::new();

    for (shard_idx, shard) in ckpt.shards.iter().enumerate() {
        let file_name = if folder_input {
            shard
                .path
                .file_name()
                .map_or_else(|| "model.safetensors".into(), |n| n.to_string_lossy().into_owned())
        } else {
            "model.safetensors".to_string()
        };
        let path = tmp.join(&file_name);
        let mut entries: Vec<Entry> = tensors
            .iter()
            .enumerate()
            .filter(|(_, t)| t.shard == shard_idx)
            .flat_map(|(i, t)| entries_for(t, i, &decisions[i], opts.mode))
            .collect();
        // Largest alignment first (as the safetensors crate orders them), so
        // every tensor starts at a multiple of its element size.
        entries.sort_by(|a, b| b.dtype.bitsize().cmp(&a.dtype.bitsize()).then_with(|| a.name.cmp(&b.name)));
        let mut header = serde_json::Map::new();
        let mut offset = 0u64;
        let mut schemes = BTreeMap::new();
        for e in &mut entries {
            e.offset = offset;
            let end = offset + e.len();
            header.insert(
                e.name.clone(),
                json!({"dtype": format!("{:?}", e.dtype), "shape": e.shape, "data_offsets": [offset, end]}),
            );
            offset = end;
            if let Decision::Quantize(s) = &decisions[e.source] {
                schemes.insert(tensors[e.source].name.clone(), s.to_string());
            }
            weight_map.insert(e.name.clone(), file_name.clone());
        }
        bytes_after += offset;
        let mut meta = serde_json::Map::new();
        meta.insert("format".into(), json!("pt"));
        meta.insert("quantscope_version".into(), json!(env!("CARGO_PKG_VERSION")));
        if !schemes.is_empty() {
            let mode = match opts.mode {
                ExportMode::Packed => "packed",
                ExportMode::FakeQuant => "fake-quant",
            };
            meta.insert("quantscope_mode".into(), json!(mode));
            meta.insert(
                "quantscope_schemes".into(),
                json!(serde_json::to_string(&schemes).unwrap_or_default()),
            );
        }
        header.insert("__metadata__".into(), Value::Object(meta));
        let mut head = serde_json::to_vec(&Value::Object(header))
            .map_err(|e| Error::format(&path, format!("cannot encode header: {e}")))?;
        head.resize(head.len().next_multiple_of(8), b' ');
        let data_start = 8 + head.len() as u64;

        let mut f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut prefix = (head.len() as u64).to_le_bytes().to_vec();
        prefix.extend_from_slice(&head);
        write_at(&mut f, &path, 0, &prefix, &mut budget)?;

        let by_source: BTreeMap<usize, Vec<&Entry>> = entries.iter().fold(BTreeMap::new(), |mut m, e| {
            m.entry(e.source).or_insert_with(Vec::new).push(e);
            m
        });
        for (&src, parts) in &by_source {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let t = &tensors[src];
            match &decisions[src] {
                Decision::Keep(_) => {
                    write_at(&mut f, &path, data_start + parts[0].offset, ckpt.bytes(t), &mut budget)?;
                }
                Decision::Quantize(s) => {
                    let vals = ckpt.values(t, &mut values)?;
                    let mut packed = pack(vals, &t.shape, s, t.dtype).map_err(|e| Error::Tensor {
                        path: ckpt.shard_path(t).to_path_buf(),
                        tensor: t.name.clone(),
                        reason: e.to_string(),
                    })?;
                    for e in parts {
                        let bytes = match e.part {
                            Part::Codes => std::mem::take(&mut packed.codes),
                            Part::Fake => {
                                let b = encode_floats(e.dtype, &packed.dequantized)?;
                                // What a reader gets back is R′ rounded to the dtype.
                                packed.dequantized = decode::decode(e.dtype, &b).map_err(Error::Scheme)?;
                                b
                            }
                            Part::Scale => encode_floats(
                                e.dtype,
                                &packed.params.iter().map(|p| p.scale).collect::<Vec<_>>(),
                            )?,
                            Part::Offset => encode_floats(
                                e.dtype,
                                &packed.params.iter().map(|p| p.offset).collect::<Vec<_>>(),
                            )?,
                            Part::ZeroPoint => {
                                packed.params.iter().map(|p| (p.zero_point as i8).to_le_bytes()[0]).collect()
                            }
                            Part::Copy => unreachable!("copies are handled above"),
                        };
                        write_at(&mut f, &path, data_start + e.offset, &bytes, &mut budget)?;
                    }
                    if packed.metrics.nonfinite > 0 {
                        let nan = if s.format.is_fp8() { "the NaN code" } else { "code 0" };
                        written.nan_notes.push(format!(
                            "{}: {} NaN/Inf value(s): ±Inf saturate to the range ends, NaN is stored as {nan}",
                            t.name, packed.metrics.nonfinite
                        ));
                    }
                    written.digests.insert(t.name.clone(), chunk_digests(&packed.dequantized));
                    written.layers.push(LayerSummary {
                        name: t.name.clone(),
                        scheme: s.to_string(),
                        params: t.numel() as u64,
                        metrics: packed.metrics,
                    });
                }
            }
            ckpt.release(t);
            done += t.size_bytes as u64;
            progress(done, total);
        }
        f.sync_all().map_err(|e| Error::io(&path, e))?;
    }

    let had_index =
        ckpt.path.to_string_lossy().ends_with(".index.json") || ckpt.path.join(INDEX_FILE).is_file();
    if had_index {
        let index = json!({"metadata": {"total_size": bytes_after}, "weight_map": weight_map});
        write_json(&tmp.join(INDEX_FILE), &index, &mut budget)?;
    }
    if folder_input {
        copy_companions(&ckpt.dir, tmp, &mut budget)?;
    }
    let mut notes = written.nan_notes;
    if opts.mode == ExportMode::Packed && !quantized.is_empty() {
        let config_path = tmp.join("config.json");
        let mut config = if folder_input {
            std::fs::read_to_string(ckpt.dir.join("config.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}))
        } else {
            json!({})
        };
        if loadable {
            config["quantization_config"] = quantization_config(ckpt, decisions);
            write_json(&config_path, &config, &mut budget)?;
        } else {
            notes.push(
                "E5M2 / asymmetric FP8 have no compressed-tensors form: the scheme is in each file's \
                 __metadata__ and config.json has no quantization_config; vLLM and llm-compressor do not \
                 load this model"
                    .into(),
            );
            if folder_input {
                if let Some(obj) = config.as_object_mut() {
                    obj.remove("quantization_config");
                }
                write_json(&config_path, &config, &mut budget)?;
            }
        }
    }
    if opts.mode == ExportMode::FakeQuant {
        notes.push("fake-quant: R' stored in each tensor's original dtype; any framework loads it".into());
    }

    let layers = written.layers;
    let params_quantized: u64 = layers.iter().map(|l| l.params).sum();
    let SqnrSummary { mean_sqnr_db, worst_sqnr_db, worst_layer } =
        SqnrSummary::of(layers.iter().map(|l| Item {
            name: &l.name,
            params: l.params,
            metrics: Some(&l.metrics),
        }));
    let mut layers = layers;
    layers.sort_by(|a, b| a.name.cmp(&b.name));
    let summary = ExportSummary {
        out: tmp.to_path_buf(),
        mode: opts.mode,
        bytes_before: total,
        bytes_after,
        tensors_quantized: layers.len(),
        tensors_copied: tensors.len() - layers.len(),
        params_total: tensors.iter().map(|t| t.numel() as u64).sum(),
        params_quantized,
        mean_sqnr_db,
        worst_sqnr_db,
        worst_layer,
        verified_tensors: None,
        runtime_loadable: loadable,
        notes,
        layers,
    };
    Ok((summary, written.digests))
}

fn write_json(path: &Path, v: &Value, budget: &mut Budget) -> Result<()> {
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

/// The compressed-tensors `quantization_config` block (NUMERICS.md).
fn quantization_config(ckpt: &Checkpoint, decisions: &[Decision]) -> Value {
    let mut groups: Vec<(Scheme, Vec<String>)> = Vec::new();
    let mut ignore = Vec::new();
    let mut all_2d = true;
    for (t, d) in ckpt.tensors().iter().zip(decisions) {
        let module = t.name.strip_suffix(".weight").unwrap_or(&t.name).to_string();
        match d {
            Decision::Quantize(s) => {
                all_2d &= t.shape.len() == 2;
                let key = ct_key(s);
                match groups.iter_mut().find(|(g, _)| ct_key(g) == key) {
                    Some((_, names)) => names.push(module),
                    None => groups.push((*s, vec![module])),
                }
            }
            Decision::Keep(_) => {
                if t.is_quantizable() && t.shape.len() >= 2 && t.name.ends_with(".weight") {
                    ignore.push(module);
                }
            }
        }
    }
    // One group of plain Linear weights is written as llm-compressor does;
    // otherwise each group names its layers exactly, so no two groups overlap.
    let exact = groups.len() > 1 || !all_2d;
    let types: Vec<&str> = groups.iter().filter_map(|(s, _)| ct_type(s)).collect();
    let format_of = |t: &str| if t == "int" { "int-quantized" } else { "float-quantized" };
    let mixed = types.windows(2).any(|w| w[0] != w[1]);
    let mut config_groups = serde_json::Map::new();
    for (i, (s, names)) in groups.iter().enumerate() {
        let targets: Vec<String> = if exact {
            names.iter().map(|n| format!("re:^{}$", regex_escape(n))).collect()
        } else {
            vec!["Linear".into()]
        };
        let (strategy, group_size) = match s.granularity {
            Granularity::Tensor => ("tensor", Value::Null),
            Granularity::Channel { .. } => ("channel", Value::Null),
            Granularity::Group { size } => ("group", json!(size)),
        };
        let ty = ct_type(s).unwrap_or("int");
        let mut g = json!({
            "targets": targets,
            "weights": {
                "num_bits": match s.format { FormatKind::Int(b) => b, _ => 8 },
                "type": ty,
                "symmetric": s.mapping == Mapping::Symmetric,
                "strategy": strategy,
                "group_size": group_size,
                "dynamic": false,
                "actorder": null,
            },
            "input_activations": null,
        });
        if mixed {
            g["format"] = json!(format_of(ty));
        }
        config_groups.insert(format!("group_{i}"), g);
    }
    let format = if mixed { "mixed-precision" } else { format_of(types.first().copied().unwrap_or("int")) };
    json!({
        "quant_method": "compressed-tensors",
        "format": format,
        "quantization_status": "compressed",
        "ignore": ignore,
        "config_groups": config_groups,
    })
}

/// Schemes that share a config group: the same stored layout (calibration and
/// manual ranges differ per layer but leave no trace in the layout).
fn ct_key(s: &Scheme) -> (FormatKind, Mapping, Granularity) {
    (s.format, s.mapping, s.granularity)
}

fn regex_escape(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// Re-opens the output and checks each quantized tensor's R′ against the digests
/// taken while writing. Returns the number of tensors checked.
fn verify(
    ckpt: &Checkpoint,
    decisions: &[Decision],
    tmp: &Path,
    mode: ExportMode,
    digests: &Digests,
) -> Result<usize> {
    let out = Checkpoint::open(tmp)?;
    let mut checked = 0;
    for (t, d) in ckpt.tensors().iter().zip(decisions) {
        let fail = |reason: String| Error::Tensor { path: tmp.to_path_buf(), tensor: t.name.clone(), reason };
        let Decision::Quantize(s) = d else {
            let o = out.tensor(&t.name)?;
            if out.bytes(o) != ckpt.bytes(t) {
                return Err(fail("copied bytes differ from the source".into()));
            }
            continue;
        };
        let deq = match mode {
            ExportMode::FakeQuant => out.load_f32(&t.name)?,
            ExportMode::Packed => read_packed(&out, t, s).map_err(|e| fail(e.to_string()))?,
        };
        if digests.get(&t.name) != Some(&chunk_digests(&deq)) {
            return Err(fail("verify: the dequantized tensor read back differs from the engine's R'".into()));
        }
        checked += 1;
        ckpt.release(t);
        for suffix in ["", "_scale", "_zero_point", "_offset"] {
            if let Ok(o) = out.tensor(&format!("{}{suffix}", t.name)) {
                out.release(o);
            }
        }
    }
    Ok(checked)
}

/// R′ from a saved packed tensor: codes, scale, zero point or offset, read back.
pub fn read_packed(out: &Checkpoint, t: &TensorInfo, s: &Scheme) -> Result<Vec<f32>> {
    match s.format {
        FormatKind::Int(b) => read_packed_with(IntFormat::new(b)?, out, t, s),
        FormatKind::E4M3 => read_packed_with(Fp8Format::E4M3, out, t, s),
        FormatKind::E5M2 => read_packed_with(Fp8Format::E5M2, out, t, s),
    }
}

fn read_packed_with<F: NumberFormat>(
    fmt: F,
    out: &Checkpoint,
    t: &TensorInfo,
    s: &Scheme,
) -> Result<Vec<f32>> {
    let w = out.tensor(&t.name)?;
    if w.shape != t.shape || w.dtype != fmt.code_dtype() {
        return Err(Error::Scheme(format!(
            "stored as {:?} {:?}, expected {:?} {:?}",
            w.dtype,
            w.shape,
            fmt.code_dtype(),
            t.shape
        )));
    }
    let floats = |suffix: &str| -> Result<Vec<f32>> {
        let i = out.tensor(&format!("{}{suffix}", t.name))?;
        if i.shape != scale_shape(&t.shape, s.granularity) {
            return Err(Error::Scheme(format!("{suffix} has shape {:?}", i.shape)));
        }
        decode::decode(i.dtype, out.bytes(i)).map_err(Error::Scheme)
    };
    let scales = floats("_scale")?;
    let n = scales.len();
    let zps: Vec<i32> = match (s.format, s.mapping) {
        (FormatKind::Int(_), Mapping::Asymmetric) => {
            let z = out.tensor(&format!("{}_zero_point", t.name))?;
            out.bytes(z).iter().map(|&b| i32::from(i8::from_le_bytes([b]))).collect()
        }
        _ => vec![0; n],
    };
    let offsets = match (s.format, s.mapping) {
        (FormatKind::E4M3 | FormatKind::E5M2, Mapping::Asymmetric) => floats("_offset")?,
        _ => vec![0.0; n],
    };
    if zps.len() != n || offsets.len() != n {
        return Err(Error::Scheme("scale, zero point and offset counts differ".into()));
    }
    let params: Vec<SliceParams> = (0..n)
        .map(|i| SliceParams { scale: scales[i], zero_point: zps[i], offset: offsets[i], lo: 0.0, hi: 0.0 })
        .collect();
    let slice = slice_indexer(&t.shape, s.granularity);
    let codes = out.bytes(w);
    Ok(codes
        .par_iter()
        .enumerate()
        .map(|(k, &b)| fmt.dequantize(fmt.code_from_byte(b), &params[slice(k)]))
        .collect())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Renames the finished temp folder to `out`, replacing an existing `out` only
/// after the new one is complete; the old one is restored if the rename fails.
fn swap_into_place(tmp: &Path, out: &Path) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::LayerChoice;
    use std::collections::BTreeMap;

    #[test]
    fn quantized_on_save_agrees_with_plan_on_the_teaching_sample() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../sample-models/teaching.safetensors");
        let ckpt = Checkpoint::open(path).unwrap();
        let scheme = Scheme::default();
        for t in ckpt.tensors() {
            for choice in [None, Some(true), Some(false)] {
                let mut layers = BTreeMap::new();
                if let Some(on) = choice {
                    layers.insert(
                        t.name.clone(),
                        if on { LayerChoice::Quantize(scheme) } else { LayerChoice::Exclude },
                    );
                }
                let decisions = plan(std::slice::from_ref(t), &Resolved { scheme, layers }, &|_| false);
                let planned = matches!(decisions[0], Decision::Quantize(_));
                assert_eq!(quantized_on_save(t, choice), planned, "{} with choice {choice:?}", t.name);
            }
        }
    }
}
