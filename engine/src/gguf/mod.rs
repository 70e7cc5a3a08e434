//! GGUF, llama.cpp's file format, as a storage wing beside `ct/`: reading v2 and
//! v3 files, memory-mapped. The header, every metadata value type (arrays
//! included), the alignment key, and each tensor's name, shape, ggml type and
//! place are parsed with every count, size and offset checked against the file,
//! so a malformed file is a one-line error naming the file (and the tensor).
//! Shapes are given as Hugging Face writes them, `[rows, cols]`: GGUF stores
//! `ne[0]`, the innermost dimension, first.
//!
//! Followed: gguf-py 0.19.0 (`gguf_reader.py`, `constants.py`) and ggml's
//! `gguf.cpp` for the layout. The block types' arithmetic is [`crate::ggml`]'s.

pub mod imatrix;
pub mod names;
mod parse;
pub mod preset;
pub mod quantize;
pub mod rope;
pub mod write;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
pub use crate::ggml::GgmlType;
use crate::ggml::{decodes, dequantize_into, is_plain};
use crate::mmap::MappedFile;

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

/// A parsed header: version, metadata, alignment and tensor entries.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    /// Where each metadata entry (key, type, value) lies in the file, so a
    /// writer copies it byte for byte.
    pub kv_spans: Vec<(usize, usize)>,
    /// `general.alignment`, 32 when absent.
    pub alignment: u64,
    pub tensors: Vec<GgufTensor>,
}

impl Header {
    /// Parses the header of the file at `path` whose bytes are `bytes`.
    pub fn read(path: &Path, bytes: &[u8]) -> Result<Self> {
        parse::header(bytes).map_err(|e| e.at(path))
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `general.architecture` (`llama`, `qwen2`, `bert`, …).
    pub fn arch(&self) -> Option<&str> {
        match self.get("general.architecture") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The integer under `{arch}.{key}` (e.g. `attention.head_count`).
    pub fn arch_u64(&self, key: &str) -> Option<u64> {
        self.get(&format!("{}.{key}", self.arch()?)).and_then(Value::as_u64)
    }
}

/// An opened GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub header: Header,
    map: MappedFile,
}

impl std::ops::Deref for GgufFile {
    type Target = Header;
    fn deref(&self) -> &Header {
        &self.header
    }
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
        let header = Header::read(path, map.bytes())?;
        Ok(Self { path: path.to_path_buf(), header, map })
    }

    pub fn tensor(&self, name: &str) -> Result<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// The whole file's bytes (the mapping).
    pub fn raw_bytes(&self) -> &[u8] {
        self.map.bytes()
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
        dequantize_into(t.ggml_type, self.bytes(t), &mut out).map_err(|reason| Error::Tensor {
            path: self.path.clone(),
            tensor: name.escape_debug().to_string(),
            reason,
        })?;
        Ok(out)
    }
}

/// The file magic.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// Whether the file at `path` starts with the GGUF magic (a file that cannot be
/// read is left to its opener to report).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == MAGIC
}

/// How the tensor catalogue lists a tensor of type `ty`: the safetensors dtype
/// it decodes like (U8 for a block type), and why it cannot be quantized.
pub fn catalogue_dtype(ty: GgmlType) -> (safetensors::Dtype, Option<String>) {
    use safetensors::Dtype;
    let dtype = match ty.name {
        "F32" => Dtype::F32,
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "F64" => Dtype::F64,
        "I8" => Dtype::I8,
        "I16" => Dtype::I16,
        "I32" => Dtype::I32,
        "I64" => Dtype::I64,
        _ => Dtype::U8,
    };
    let why = if is_plain(ty) {
        crate::decode::quantizable(dtype).err()
    } else if decodes(ty) {
        Some(format!("stored as {} by llama.cpp: compare it with its original (diff)", ty.name))
    } else {
        Some(format!("stored as {}, which quantscope lists but does not decode", ty.name))
    };
    (dtype, why)
}
