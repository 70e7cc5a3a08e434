//! Opening checkpoints: a single `.safetensors` file, a sharded
//! `model.safetensors.index.json`, a Hugging Face folder holding either, or a
//! GGUF file (llama.cpp's; its tensors keep their GGUF names, shapes are given
//! as Hugging Face writes them, and a tensor ggml stores quantized is decoded
//! by [`crate::gguf`]).
//!
//! Every shard is memory-mapped ([`crate::mmap`]) and only its header is parsed
//! (by the `safetensors` crate, which checks offsets, sizes and overflow), so
//! opening costs the same for 10 MB and 14 GB. Tensor bytes are touched only when
//! a tensor is decoded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::Serialize;

use crate::decode;
use crate::error::{Error, Result};
use crate::gguf::{self, GgmlType};
use crate::mmap::MappedFile;

pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// One tensor in the catalogue.
#[derive(Clone, Debug, Serialize)]
pub struct TensorInfo {
    pub name: String,
    #[serde(serialize_with = "dtype_name")]
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub size_bytes: usize,
    /// Index into [`Checkpoint::shards`].
    pub shard: usize,
    /// Why this tensor cannot be quantized, if it cannot.
    pub not_quantizable: Option<String>,
    /// The ggml type a GGUF file stores it as (`dtype` is then the plain
    /// dtype it decodes like, or U8 for a quantized block type).
    #[serde(rename = "ggml_type", skip_serializing_if = "Option::is_none", serialize_with = "ggml_name")]
    pub ggml: Option<GgmlType>,
    #[serde(skip)]
    byte_range: (usize, usize),
}

#[allow(clippy::ref_option)] // serde passes fields by reference
fn ggml_name<S: serde::Serializer>(t: &Option<GgmlType>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(t.map_or("", |t| t.name))
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes fields by reference
fn dtype_name<S: serde::Serializer>(d: &Dtype, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{d:?}"))
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_quantizable(&self) -> bool {
        self.not_quantizable.is_none()
    }

    pub fn dtype_name(&self) -> String {
        format!("{:?}", self.dtype)
    }
}

/// One mapped `.safetensors` file.
pub struct Shard {
    pub path: PathBuf,
    /// The header's `__metadata__` strings.
    pub metadata: HashMap<String, String>,
    /// A GGUF file's header (metadata of every type, tensor entries).
    pub gguf: Option<gguf::Header>,
    map: MappedFile,
}

/// An opened model: its shards and the catalogue of every tensor in file order.
pub struct Checkpoint {
    /// What the user opened.
    pub path: PathBuf,
    /// The folder holding the model (config.json, tokenizer… live here).
    pub dir: PathBuf,
    pub shards: Vec<Shard>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Opens a file, an index or a folder (see the module docs).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            let index = path.join(INDEX_FILE);
            if index.is_file() {
                return Self::open_index(&index, path);
            }
            let mut files = safetensors_in(path)?;
            if files.is_empty() {
                return Err(Error::format(
                    path,
                    format!("folder holds no .safetensors file and no {INDEX_FILE}"),
                ));
            }
            files.sort();
            return Self::from_shards(path, path, &files, None);
        }
        let dir = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        if gguf::is_gguf(path) {
            let mut ckpt = Self::empty(path, &dir);
            ckpt.add_gguf(path, MappedFile::open(path)?)?;
            Ok(ckpt)
        } else if path.to_string_lossy().ends_with(".index.json") {
            Self::open_index(path, &dir)
        } else {
            Self::from_shards(path, &dir, &[path.to_path_buf()], None)
        }
    }

    /// A checkpoint from bytes already in memory (e.g. embedded in the binary);
    /// `name` stands in for the path in messages.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        let path = name.as_ref();
        let mut ckpt = Self::empty(path, Path::new("."));
        if bytes.starts_with(gguf::MAGIC) {
            ckpt.add_gguf(path, MappedFile::from_vec(bytes))?;
        } else {
            ckpt.add_shard(path, MappedFile::from_vec(bytes))?;
        }
        Ok(ckpt)
    }

    fn empty(path: &Path, dir: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            shards: Vec::new(),
            tensors: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    /// A GGUF file's tensors, in file order, into the catalogue.
    fn add_gguf(&mut self, file: &Path, map: MappedFile) -> Result<()> {
        let header = gguf::Header::read(file, map.bytes())?;
        for t in &header.tensors {
            if self.by_name.contains_key(&t.name) {
                return Err(Error::format(
                    file,
                    format!("GGUF: tensor '{}' appears twice", t.name.escape_debug()),
                ));
            }
            let (dtype, not_quantizable) = gguf::catalogue_dtype(t.ggml_type);
            self.by_name.insert(t.name.clone(), self.tensors.len());
            self.tensors.push(TensorInfo {
                name: t.name.clone(),
                dtype,
                shape: t.shape(),
                size_bytes: t.byte_range.1 - t.byte_range.0,
                shard: self.shards.len(),
                not_quantizable,
                ggml: Some(t.ggml_type),
                byte_range: t.byte_range,
            });
        }
        self.shards.push(Shard {
            path: file.to_path_buf(),
            metadata: HashMap::new(),
            gguf: Some(header),
            map,
        });
        Ok(())
    }

    fn open_index(index: &Path, dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(index, format!("index is not valid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::format(index, "index has no \"weight_map\" object"))?;
        let base = index.parent().unwrap_or(dir);
        let mut wanted: HashMap<String, String> = HashMap::new();
        let mut files: Vec<PathBuf> = Vec::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| {
                Error::format(index, format!("weight_map entry '{name}' is not a file name"))
            })?;
            // A shard is a file in the model's folder: no absolute path, no "..".
            if !Path::new(file).components().all(|c| matches!(c, std::path::Component::Normal(_))) {
                return Err(Error::format(
                    index,
                    format!("names shard '{file}' (for '{name}') outside the model folder"),
                ));
            }
            let shard = base.join(file);
            if !shard.is_file() {
                return Err(Error::format(
                    index,
                    format!("names shard '{file}' (for '{name}'), which is missing"),
                ));
            }
            if !files.contains(&shard) {
                files.push(shard);
            }
            wanted.insert(name.clone(), file.to_string());
        }
        files.sort();
        Self::from_shards(index, dir, &files, Some((index, &wanted)))
    }

    fn from_shards(
        path: &Path,
        dir: &Path,
        files: &[PathBuf],
        index: Option<(&Path, &HashMap<String, String>)>,
    ) -> Result<Self> {
        let mut ckpt = Self::empty(path, dir);
        for file in files {
            ckpt.add_shard(file, MappedFile::open(file)?)?;
        }
        if let Some((index_path, wanted)) = index {
            for (name, file) in wanted {
                let found = ckpt.by_name.get(name).map(|&i| &ckpt.tensors[i]);
                let in_right_shard =
                    found.is_some_and(|t: &TensorInfo| ckpt.shards[t.shard].path.ends_with(file));
                if !in_right_shard {
                    return Err(Error::format(
                        index_path,
                        format!("names tensor '{name}' in shard '{file}', which does not contain it"),
                    ));
                }
            }
        }
        Ok(ckpt)
    }

    /// Parses one shard's header and appends its tensors to the catalogue.
    fn add_shard(&mut self, file: &Path, map: MappedFile) -> Result<()> {
        let shard_idx = self.shards.len();
        let (header_len, metadata) = read_header(file, map.bytes())?;
        let data_start = 8 + header_len;
        // offset_keys is in offset order: the catalogue keeps file order.
        for name in metadata.offset_keys() {
            let Some(info) = metadata.info(&name) else { continue };
            let (s, e) = info.data_offsets;
            if self.by_name.contains_key(&name) {
                return Err(Error::format(file, format!("tensor '{name}' also appears in another shard")));
            }
            self.by_name.insert(name.clone(), self.tensors.len());
            self.tensors.push(TensorInfo {
                not_quantizable: decode::quantizable(info.dtype).err(),
                name,
                dtype: info.dtype,
                shape: info.shape.clone(),
                size_bytes: e - s,
                shard: shard_idx,
                ggml: None,
                byte_range: (data_start + s, data_start + e),
            });
        }
        self.shards.push(Shard {
            path: file.to_path_buf(),
            metadata: metadata.metadata().clone().unwrap_or_default(),
            gguf: None,
            map,
        });
        Ok(())
    }

    /// Who this model is, for settings kept between runs: the path opened and a
    /// CRC-32 over every shard's header bytes (names, dtypes, shapes, offsets,
    /// metadata), so another file at the same path, or a rewritten one, is
    /// another model.
    pub fn identity(&self) -> String {
        let mut h = crc32fast::Hasher::new();
        for shard in &self.shards {
            let bytes = shard.map.bytes();
            // A GGUF header ends where the first tensor's data starts; a
            // safetensors header's length (validated at open) comes first.
            let end = if let Some(g) = &shard.gguf {
                g.tensors.iter().map(|t| t.byte_range.0).min().unwrap_or(bytes.len())
            } else {
                let len = bytes.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                usize::try_from(len).unwrap_or(0).saturating_add(8)
            };
            h.update(&bytes[..end.min(bytes.len())]);
        }
        format!("{}#{:08x}", self.path.display(), h.finalize())
    }

    /// Every tensor, in file order (shard by shard).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i]).ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// The raw little-endian bytes of a tensor (a view into the mapping).
    pub fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.shards[info.shard].map.bytes()[info.byte_range.0..info.byte_range.1]
    }

    /// Maps a tensor's pages in one call before it is read (see `MappedFile::prefetch`).
    pub fn prefetch(&self, info: &TensorInfo) {
        // Below a few MB the system call costs more than the faults it saves.
        if info.size_bytes >= 4 << 20 {
            self.shards[info.shard].map.prefetch(info.byte_range.0..info.byte_range.1);
        }
    }

    /// Drops a processed tensor's resident pages (the mapping stays valid).
    pub fn release(&self, info: &TensorInfo) {
        self.shards[info.shard].map.release(info.byte_range.0..info.byte_range.1);
    }

    pub fn shard_path(&self, info: &TensorInfo) -> &Path {
        &self.shards[info.shard].path
    }

    /// Decodes a tensor to f32 (in parallel chunks).
    pub fn load_f32(&self, name: &str) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.load_f32_into(self.tensor(name)?, &mut out)?;
        Ok(out)
    }

    /// An F32 tensor's values read in place from the map, with no copy (little-
    /// endian hosts, 4-byte aligned data, which safetensors writers give).
    /// `None` for other dtypes or an unaligned tensor: decode it instead.
    pub fn f32_view(&self, info: &TensorInfo) -> Option<&[f32]> {
        if info.dtype != Dtype::F32 || cfg!(target_endian = "big") {
            return None;
        }
        bytemuck::try_cast_slice(self.bytes(info)).ok()
    }

    /// The tensor as f32: in place when [`Self::f32_view`] allows, else decoded
    /// into `buf` (reusing its memory).
    pub fn values<'a>(&'a self, info: &TensorInfo, buf: &'a mut Vec<f32>) -> Result<&'a [f32]> {
        self.prefetch(info);
        if let Some(v) = self.f32_view(info) {
            return Ok(v);
        }
        self.load_f32_into(info, buf)?;
        Ok(buf.as_slice())
    }

    /// Decodes a tensor into `buf`, reusing its memory (see [`decode::decode_into`]).
    pub fn load_f32_into(&self, info: &TensorInfo, buf: &mut Vec<f32>) -> Result<()> {
        self.prefetch(info);
        let decoded = match info.ggml {
            Some(t) if !crate::ggml::is_plain(t) => crate::ggml::dequantize_into(t, self.bytes(info), buf),
            _ => decode::decode_into(info.dtype, self.bytes(info), buf),
        };
        decoded.map_err(|reason| Error::Decode {
            file: Some(self.shard_path(info).to_path_buf()),
            tensor: Some(info.name.clone()),
            reason,
        })
    }

    /// The GGUF header, when the model is a GGUF file.
    pub fn gguf(&self) -> Option<&gguf::Header> {
        self.shards.first().and_then(|s| s.gguf.as_ref())
    }

    /// Total bytes of tensor data.
    pub fn size_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.size_bytes).sum()
    }
}

fn safetensors_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
        .collect())
}

/// Parses and validates a header, turning the crate's errors into sentences.
fn read_header(path: &Path, bytes: &[u8]) -> Result<(usize, safetensors::tensor::Metadata)> {
    let file_len = bytes.len();
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(Error::format(
            path,
            format!("file is {file_len} bytes, too short for the 8-byte safetensors header length"),
        ));
    };
    let mut arr = [0u8; 8];
    arr.copy_from_slice(len_bytes);
    let declared = u64::from_le_bytes(arr);
    SafeTensors::read_metadata(bytes).map_err(|e| {
        // For faults the crate reports without a name, look again to name the
        // tensor and the numbers.
        let detail = || usize::try_from(declared).ok().and_then(|n| diagnose(bytes, n));
        let reason = match e {
            SafeTensorError::HeaderTooSmall => "file too short for a safetensors header".to_string(),
            SafeTensorError::HeaderTooLarge => {
                format!(
                    "header length {declared} exceeds the 100 MB safetensors limit (not a safetensors file?)"
                )
            }
            SafeTensorError::InvalidHeaderLength => {
                format!(
                    "header length {declared} exceeds the file size {file_len} (truncated or not safetensors)"
                )
            }
            SafeTensorError::InvalidHeader(_) => "header is not valid UTF-8".to_string(),
            SafeTensorError::InvalidHeaderDeserialization(e) => {
                format!("header is not a valid safetensors JSON object: {e}")
            }
            SafeTensorError::InvalidOffset(name) => detail().unwrap_or_else(|| {
                format!("tensor '{name}': data_offsets overlap, leave a gap or are reversed")
            }),
            SafeTensorError::TensorInvalidInfo => detail()
                .unwrap_or_else(|| "a tensor's data length does not match its dtype and shape".to_string()),
            SafeTensorError::ValidationOverflow => {
                detail().unwrap_or_else(|| "a tensor's shape or byte size overflows".to_string())
            }
            SafeTensorError::MisalignedSlice => {
                "a tensor's bit size is not a whole number of bytes".to_string()
            }
            SafeTensorError::MetadataIncompleteBuffer => detail().unwrap_or_else(|| {
                "data section does not match the header: file truncated or has trailing bytes".to_string()
            }),
            other => other.to_string(),
        };
        Error::format(path, reason)
    })
}

/// A legal safetensors file holding tensor `w` (`dtype`, `shape`, bytes `data`)
/// whose data starts `pad` bytes into the data section, after a U8 tensor `p`:
/// nothing in the format requires alignment, so pad 1..3 leaves F32 unaligned.
/// Shared by the tests and benchmarks of the unaligned paths.
#[doc(hidden)]
#[must_use]
pub fn padded_file(dtype: &str, shape: &[usize], data: &[u8], pad: usize) -> Vec<u8> {
    let mut header = format!(
        r#"{{"p":{{"dtype":"U8","shape":[{pad}],"data_offsets":[0,{pad}]}},"w":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{pad},{}]}}}}"#,
        pad + data.len()
    );
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend(std::iter::repeat_n(0u8, pad));
    v.extend_from_slice(data);
    v
}

/// A header's entries in file order, duplicates kept (a map would drop them).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry()? {
                    v.push(e);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Names the tensor behind a size, offset or duplicate fault the crate reported
/// without one. `None` when this look finds nothing more specific.
fn diagnose(bytes: &[u8], header_len: usize) -> Option<String> {
    let text = std::str::from_utf8(bytes.get(8..8usize.checked_add(header_len)?)?).ok()?;
    let Entries(entries) = serde_json::from_str(text).ok()?;
    let data_len = bytes.len() - 8 - header_len;
    let mut seen = std::collections::HashSet::new();
    let mut last_end = 0usize;
    for (name, v) in entries.iter().filter(|(n, _)| n != "__metadata__") {
        if !seen.insert(name) {
            return Some(format!("tensor '{name}' appears more than once in the header"));
        }
        let dtype: Dtype = serde_json::from_value(v.get("dtype")?.clone()).ok()?;
        let shape: Vec<usize> = serde_json::from_value(v.get("shape")?.clone()).ok()?;
        let [start, end]: [usize; 2] = serde_json::from_value(v.get("data_offsets")?.clone()).ok()?;
        let need = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.bitsize()))
            .map(|bits| bits.div_ceil(8));
        let Some(need) = need else {
            return Some(format!("tensor '{name}': shape {shape:?} overflows"));
        };
        if end > data_len {
            return Some(format!(
                "tensor '{name}': data_offsets end at byte {end}, past the {data_len} bytes of data (truncated file?)"
            ));
        }
        if end < start {
            return Some(format!("tensor '{name}': data_offsets [{start}, {end}] are reversed"));
        }
        if end - start != need {
            return Some(format!(
                "tensor '{name}': shape {shape:?} {dtype:?} needs {need} bytes but data_offsets [{start}, {end}] hold {}",
                end - start
            ));
        }
        last_end = last_end.max(end);
    }
    (last_end < data_len)
        .then(|| format!("{} bytes of data after the last tensor (trailing bytes)", data_len - last_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-tensor 1-D file whose data starts `pad` bytes into the data section.
    fn file_with(dtype: &str, data: &[u8], pad: usize) -> Vec<u8> {
        padded_file(dtype, &[data.len() / 4], data, pad)
    }

    #[test]
    fn f32_is_read_in_place_when_aligned_and_decoded_otherwise() {
        let vals = [1.5f32, -2.0, f32::NAN, 3.25];
        let data: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut buf = Vec::new();
        for (pad, in_place) in [(4, true), (1, false), (2, false)] {
            let ckpt = Checkpoint::from_bytes("t", file_with("F32", &data, pad)).unwrap();
            let info = ckpt.tensor("w").unwrap().clone();
            assert_eq!(ckpt.f32_view(&info).is_some(), in_place, "pad {pad}");
            let got = ckpt.values(&info, &mut buf).unwrap();
            assert!(got.iter().zip(&vals).all(|(a, b)| a.to_bits() == b.to_bits()), "pad {pad}");
        }
        let ckpt = Checkpoint::from_bytes("t", file_with("I32", &data, 4)).unwrap();
        assert!(ckpt.f32_view(ckpt.tensor("w").unwrap()).is_none());
    }

    #[test]
    fn identity_follows_path_and_header_not_data() {
        let one = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let two = [3.0f32, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let id = |name: &str, dtype: &str, data: &[u8]| {
            Checkpoint::from_bytes(name, file_with(dtype, data, 0)).unwrap().identity()
        };
        assert_eq!(id("a", "F32", &one), id("a", "F32", &two), "same header, other values");
        assert_ne!(id("a", "F32", &one), id("b", "F32", &one), "another path");
        assert_ne!(id("a", "F32", &one), id("a", "I32", &one), "another header");
        assert!(id("a", "F32", &one).starts_with("a#"));
    }
}
