//! Captured activations as a safetensors file (`quantscope activations`), read
//! back bit for bit, so that `report --activations` and the app reuse a run of
//! the model without running it again (docs/numerics.md, "Saved activations").
//!
//! Per Linear input ("site", named by its first layer `S`): `S/absmax` F32,
//! `S/sum_sq` F64 (Σx_j²), `S/sum_abs` F64 (Σ|x_j|, AWQ's scale), `S/gram` F64 (Σxxᵀ, when kept), `S/histogram` U64 with
//! `S/histogram_range` F64 [−r, r], `S/min_max` F32, `S/tokens` U64 and the token
//! sample `S/sample` F32. Moments are stored as sums: E[·] = sum / tokens, and
//! sums round-trip exactly. The samples' token ids (`ids`, `lengths`) and the
//! model's and inputs' identity (`__metadata__`) make the file self-contained.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use safetensors::Dtype;

use super::capture::{Activations, BINS, GrowingHistogram, SiteParts, SiteStats};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::write::{OwnedTensor, write_safetensors};

/// `__metadata__["format"]` of a saved capture.
pub const FORMAT: &str = "quantscope-activations/1";

/// Which model a capture was run on: its path and a digest of its tensor layout
/// (names, dtypes, shapes), enough to tell a different model from the same one.
pub fn model_identity(ckpt: &Checkpoint) -> (String, String) {
    let mut h = Fnv::default();
    for t in ckpt.tensors() {
        h.write(t.name.as_bytes());
        h.write(t.dtype_name().as_bytes());
        for d in &t.shape {
            h.write(&(*d as u64).to_le_bytes());
        }
    }
    (ckpt.path.display().to_string(), format!("{:016x}", h.0))
}

/// FNV-1a, 64 bit: a stable digest (std's hasher may change between releases).
struct Fnv(u64);
impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}
impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn owned(dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) -> OwnedTensor {
    OwnedTensor { dtype, shape, data }
}

fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

fn site_tensors(s: &SiteStats, out: &mut Vec<(String, OwnedTensor)>) -> candle_core::Result<()> {
    let (p, n) = (&s.layers[0], s.in_features);
    let mut put = |k: &str, t: OwnedTensor| out.push((format!("{p}/{k}"), t));
    put("absmax", owned(Dtype::F32, vec![n], le(&s.absmax, f32::to_le_bytes)));
    put("sum_sq", owned(Dtype::F64, vec![n], le(&s.sum_sq, f64::to_le_bytes)));
    if let Some(a) = &s.sum_abs {
        put("sum_abs", owned(Dtype::F64, vec![n], le(a, f64::to_le_bytes)));
    }
    if let Some(g) = &s.gram {
        let g: Vec<f64> = g.flatten_all()?.to_vec1()?;
        put("gram", owned(Dtype::F64, vec![n, n], le(&g, f64::to_le_bytes)));
    }
    let r = s.histogram.half_range();
    put("histogram", owned(Dtype::U64, vec![BINS], le(s.histogram.counts(), u64::to_le_bytes)));
    put("histogram_range", owned(Dtype::F64, vec![2], le(&[-r, r], f64::to_le_bytes)));
    put("min_max", owned(Dtype::F32, vec![2], le(&[s.min, s.max], f32::to_le_bytes)));
    put("tokens", owned(Dtype::U64, vec![1], s.tokens.to_le_bytes().to_vec()));
    put("sample", owned(Dtype::F32, vec![s.sample_rows(), n], le(&s.sample, f32::to_le_bytes)));
    Ok(())
}

/// Writes `acts`, captured on `ckpt`'s model, to `path` (temp file + rename).
pub fn save(acts: &Activations, ckpt: &Checkpoint, path: &Path) -> Result<()> {
    let mut tensors = Vec::new();
    for s in &acts.sites {
        site_tensors(s, &mut tensors).map_err(|e| Error::Tensor {
            path: path.to_path_buf(),
            tensor: s.layers[0].clone(),
            reason: e.to_string(),
        })?;
    }
    let flat: Vec<u32> = acts.ids.iter().flatten().copied().collect();
    let lengths: Vec<u32> = acts.ids.iter().map(|s| s.len() as u32).collect();
    tensors.push(("ids".into(), owned(Dtype::U32, vec![flat.len()], le(&flat, u32::to_le_bytes))));
    tensors.push(("lengths".into(), owned(Dtype::U32, vec![lengths.len()], le(&lengths, u32::to_le_bytes))));
    let (model, layout) = model_identity(ckpt);
    let mut meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("model".into(), model),
        ("model_layout_fnv1a64".into(), layout),
        ("inputs".into(), acts.source.clone()),
        ("samples".into(), acts.samples.to_string()),
        ("tokens".into(), acts.tokens.to_string()),
        ("moments".into(), "sums over tokens: E[.] = sum / tokens".into()),
    ]);
    // Safetensors sorts tensors; the sites' forward order and sharing live here.
    let order: Vec<&str> = acts.sites.iter().map(|s| s.layers[0].as_str()).collect();
    meta.insert("sites".into(), order.join(","));
    for s in &acts.sites {
        meta.insert(format!("{}/layers", s.layers[0]), s.layers.join(","));
    }
    write_safetensors(path, &tensors, Some(meta))
}

/// Reads a file written by [`save`]. Any fault is one line naming the file and
/// the tensor.
pub fn load(path: &Path) -> Result<Activations> {
    let ckpt = Checkpoint::open(path)?;
    let meta = ckpt.shards.first().map(|s| &s.metadata).cloned().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(Error::format(path, format!("not a quantscope activations file (no format {FORMAT})")));
    }
    let r = Reader { ckpt: &ckpt, path };
    let lengths: Vec<u32> = r.read("lengths", Dtype::U32, None, u32::from_le_bytes)?;
    let flat: Vec<u32> = r.read("ids", Dtype::U32, None, u32::from_le_bytes)?;
    if lengths.iter().map(|&l| l as usize).sum::<usize>() != flat.len() {
        return Err(r.fault("ids", "the lengths do not add up to the ids"));
    }
    let mut ids = Vec::with_capacity(lengths.len());
    let mut at = 0;
    for &l in &lengths {
        ids.push(flat[at..at + l as usize].to_vec());
        at += l as usize;
    }
    let sites = meta.get("sites").map(String::as_str).unwrap_or_default();
    let sites = sites
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|first| {
            let layers = meta.get(&format!("{first}/layers")).map_or(first, String::as_str);
            r.site(first, layers.split(',').map(str::to_string).collect())
        })
        .collect::<Result<Vec<_>>>()?;
    let source = meta.get("inputs").cloned().unwrap_or_default();
    Ok(Activations::from_sites(sites, source, ids))
}

/// Checks that every captured layer is a Linear weight of `ckpt` whose input
/// width matches: activations of another model are refused, naming the layer.
pub fn check_model(acts: &Activations, ckpt: &Checkpoint, file: &Path) -> Result<()> {
    for s in &acts.sites {
        for layer in &s.layers {
            let reason = match ckpt.tensor(layer) {
                Err(_) => "is not in the open model (captured on another model?)".to_string(),
                Ok(t) if t.shape.len() != 2 || t.shape[1] != s.in_features => {
                    format!("takes inputs of width {} but the model's weight is {:?}", s.in_features, t.shape)
                }
                Ok(_) => continue,
            };
            return Err(Error::Tensor { path: file.to_path_buf(), tensor: layer.clone(), reason });
        }
    }
    Ok(())
}

struct Reader<'a> {
    ckpt: &'a Checkpoint,
    path: &'a Path,
}

impl Reader<'_> {
    fn fault(&self, tensor: &str, reason: impl Into<String>) -> Error {
        Error::Tensor { path: self.path.to_path_buf(), tensor: tensor.to_string(), reason: reason.into() }
    }

    /// The values of `name`, which must have `dtype` (and `shape` when given).
    fn read<T, const N: usize>(
        &self,
        name: &str,
        dtype: Dtype,
        shape: Option<&[usize]>,
        f: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>> {
        let info = self.ckpt.tensor(name).map_err(|_| self.fault(name, "missing"))?;
        if info.dtype != dtype {
            return Err(self.fault(name, format!("dtype {:?}, expected {dtype:?}", info.dtype)));
        }
        if let Some(s) = shape.filter(|s| *s != info.shape.as_slice()) {
            return Err(self.fault(name, format!("shape {:?}, expected {s:?}", info.shape)));
        }
        let bytes = self.ckpt.bytes(info);
        Ok(bytes.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect())
    }

    fn site(&self, first: &str, layers: Vec<String>) -> Result<SiteStats> {
        let name = |k: &str| format!("{first}/{k}");
        let absmax = self.read(&name("absmax"), Dtype::F32, None, f32::from_le_bytes)?;
        let n = absmax.len();
        let sum_sq = self.read(&name("sum_sq"), Dtype::F64, Some(&[n]), f64::from_le_bytes)?;
        // Absent from captures saved before AWQ's view needed it.
        let sum_abs = if self.ckpt.tensor(&name("sum_abs")).is_ok() {
            Some(self.read(&name("sum_abs"), Dtype::F64, Some(&[n]), f64::from_le_bytes)?)
        } else {
            None
        };
        let gram = if self.ckpt.tensor(&name("gram")).is_ok() {
            let g = self.read(&name("gram"), Dtype::F64, Some(&[n, n]), f64::from_le_bytes)?;
            Some(
                Tensor::from_vec(g, (n, n), &Device::Cpu)
                    .map_err(|e| self.fault(&name("gram"), e.to_string()))?,
            )
        } else {
            None
        };
        let counts = self.read(&name("histogram"), Dtype::U64, Some(&[BINS]), u64::from_le_bytes)?;
        let range = self.read(&name("histogram_range"), Dtype::F64, Some(&[2]), f64::from_le_bytes)?;
        let histogram =
            GrowingHistogram::from_parts(range[1], counts).map_err(|e| self.fault(&name("histogram"), e))?;
        let min_max = self.read(&name("min_max"), Dtype::F32, Some(&[2]), f32::from_le_bytes)?;
        let tokens = self.read(&name("tokens"), Dtype::U64, Some(&[1]), u64::from_le_bytes)?[0];
        let sample = self.read(&name("sample"), Dtype::F32, None, f32::from_le_bytes)?;
        let info = self.ckpt.tensor(&name("sample"))?;
        if info.shape.len() != 2 || info.shape[1] != n {
            return Err(self.fault(&name("sample"), format!("shape {:?}, expected [rows, {n}]", info.shape)));
        }
        Ok(SiteStats::from_parts(SiteParts {
            layers,
            in_features: n,
            tokens,
            min: min_max[0],
            max: min_max[1],
            absmax,
            sum_sq,
            sum_abs,
            gram,
            histogram,
            sample,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::capture::tests_support::{add, site};

    fn teaching() -> Checkpoint {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-models/teaching.safetensors");
        Checkpoint::open(p).expect("teaching sample")
    }

    fn bits32(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn bits64(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Two sites (one with Σxxᵀ, one without, as wide inputs have), odd values included.
    fn captured() -> Activations {
        let mut a = site(8);
        let x: Vec<f32> = (0..8 * 40).map(|i| ((i * 29 % 97) as f32 - 48.0) / 7.0).collect();
        add(&mut a, &x, 8);
        add(&mut a, &[f32::NAN, 1e-30, -3e7, 0.0, -0.0, 2.5, 1.0, -1.0], 8);
        let mut b = site(3);
        add(&mut b, &[0.5, -0.25, 4.0, 1.0, 2.0, 3.0], 3);
        b.gram = None;
        b.layers = vec!["b.q.weight".into(), "b.k.weight".into()];
        Activations::from_sites(vec![a, b], "inputs.txt".into(), vec![vec![101, 7, 102], vec![101, 102]])
    }

    #[test]
    fn a_saved_capture_reads_back_bit_for_bit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("acts.safetensors");
        let acts = captured();
        save(&acts, &teaching(), &path).expect("save");
        let back = load(&path).expect("load");
        assert_eq!((back.source.as_str(), back.samples, back.tokens), ("inputs.txt", 2, 5));
        assert_eq!(back.ids, acts.ids);
        assert_eq!(back.sites.len(), 2);
        for (a, b) in acts.sites.iter().zip(&back.sites) {
            assert_eq!((&a.layers, a.in_features, a.tokens), (&b.layers, b.in_features, b.tokens));
            assert_eq!((a.min.to_bits(), a.max.to_bits()), (b.min.to_bits(), b.max.to_bits()));
            assert_eq!(bits32(&a.absmax), bits32(&b.absmax));
            assert_eq!(bits64(&a.sum_sq), bits64(&b.sum_sq));
            assert_eq!(a.sum_abs.as_deref().map(bits64), b.sum_abs.as_deref().map(bits64));
            assert!(a.sum_abs.is_some());
            assert_eq!(bits32(&a.sample), bits32(&b.sample));
            assert_eq!(a.histogram, b.histogram);
            let g = |s: &SiteStats| {
                s.gram.as_ref().map(|g| bits64(&g.flatten_all().expect("flat").to_vec1().expect("values")))
            };
            assert_eq!(g(a), g(b));
        }
        assert!(back.sites[0].gram.is_some() && back.sites[1].gram.is_none());
        assert_eq!(back.site("b.k.weight").map(|s| s.in_features), Some(3));
        let meta = &Checkpoint::open(&path).expect("open").shards[0].metadata;
        assert_eq!(meta["model_layout_fnv1a64"], model_identity(&teaching()).1);
        assert_eq!(meta["inputs"], "inputs.txt");
    }

    #[test]
    fn bad_files_are_one_line_errors_naming_file_and_tensor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.safetensors");
        let t = owned(Dtype::F32, vec![2], le(&[1.0f32, 2.0], f32::to_le_bytes));
        write_safetensors(&path, &[("a.weight/absmax".into(), t.clone())], None).expect("write");
        let e = load(&path).expect_err("no format").to_string();
        assert!(e.contains("bad.safetensors") && e.contains("not a quantscope activations file"), "{e}");
        let meta =
            HashMap::from([("format".to_string(), FORMAT.to_string()), ("sites".into(), "a.weight".into())]);
        let ids = owned(Dtype::U32, vec![0], Vec::new());
        let tensors = [("a.weight/absmax".into(), t), ("ids".into(), ids.clone()), ("lengths".into(), ids)];
        write_safetensors(&path, &tensors, Some(meta)).expect("write");
        let e = load(&path).expect_err("no moments").to_string();
        assert!(e.contains("bad.safetensors") && e.contains("a.weight/sum_sq") && !e.contains('\n'), "{e}");
        // A capture of another model is refused naming the layer.
        let acts = captured();
        let e = check_model(&acts, &teaching(), &path).expect_err("other model").to_string();
        assert!(e.contains("layer.weight") && e.contains("not in the open model"), "{e}");
    }
}
