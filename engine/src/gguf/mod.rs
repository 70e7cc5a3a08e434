//! GGUF, llama.cpp's file format, as a storage wing beside `ct/`: reading v2 and
//! v3 files, memory-mapped. The header, every metadata value type (arrays
//! included), the alignment key, and each tensor's name, shape, ggml type and
//! place are parsed with every count, size and offset checked against the file,
//! so a malformed file is a one-line error naming the file (and the tensor).
//! Shapes are given as Hugging Face writes them, `[rows, cols]`: GGUF stores
//! `ne[0]`, the innermost dimension, first.
//!
//! Followed: gguf-py 0.19.0 (`gguf_reader.py`, `constants.py`) and ggml's
//! `gguf.cpp` for the layout; `types` for the ggml types, `legacy` and
//! `kquants` for the types decoded so far (ggml's ggml-quants.c as gguf-py's
//! `quants.py` restates it).

mod kquants;
mod legacy;
mod parse;
pub mod preset;
pub mod quant;
pub mod rope;
pub mod types;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mmap::MappedFile;
pub use types::GgmlType;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// An unsigned or non-negative integer value, widened.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// One tensor's entry.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensor {
    pub name: String,
    /// GGUF's dimensions, `ne[0]` (the row length) first.
    pub ne: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte range in the file.
    pub byte_range: (usize, usize),
}

impl GgufTensor {
    /// The shape as Hugging Face writes it (outermost first): `ne` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().map(|&n| n as usize).collect()
    }

    pub fn numel(&self) -> u64 {
        self.ne.iter().product()
    }
}

/// An opened GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    /// `general.alignment`, 32 when absent.
    pub alignment: u64,
    pub tensors: Vec<GgufTensor>,
    map: MappedFile,
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_map(path, MappedFile::open(path)?)
    }

    /// A file already in memory; `name` stands in for the path in messages.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        Self::from_map(name.as_ref(), MappedFile::from_vec(bytes))
    }

    fn from_map(path: &Path, map: MappedFile) -> Result<Self> {
        let h = parse::header(map.bytes()).map_err(|e| e.at(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            version: h.version,
            metadata: h.metadata,
            alignment: h.alignment,
            tensors: h.tensors,
            map,
        })
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Result<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// A tensor's stored bytes (a view into the mapping).
    pub fn bytes(&self, t: &GgufTensor) -> &[u8] {
        &self.map.bytes()[t.byte_range.0..t.byte_range.1]
    }

    /// A tensor's values as ggml dequantizes them, in file order (row-major
    /// in the Hugging Face shape).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        let mut out = Vec::new();
        let bytes = self.bytes(t);
        let decoded = legacy::dequantize(t.ggml_type, bytes, &mut out)
            .or_else(|| kquants::dequantize(t.ggml_type, bytes, &mut out));
        decoded.ok_or_else(|| Error::Tensor {
            path: self.path.clone(),
            tensor: name.escape_debug().to_string(),
            reason: format!("ggml type {} is listed but not decoded yet", t.ggml_type.name),
        })?;
        Ok(out)
    }
}
