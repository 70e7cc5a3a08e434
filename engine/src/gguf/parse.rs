//! The GGUF header, read from untrusted bytes: every count is bounded by the
//! bytes left (a count no file of this size can hold is refused before any
//! allocation), every offset is checked for overflow, alignment and the end of
//! the file.

use std::path::Path;

use super::{GgmlType, GgufTensor, Header, Value};
use crate::error::Error;

use super::MAGIC;
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Nested arrays deeper than this are refused (files use one level).
const MAX_DEPTH: u32 = 4;

/// What went wrong, and in which tensor if one is known.
#[derive(Debug)]
pub struct ParseError {
    tensor: Option<String>,
    reason: String,
}

impl ParseError {
    fn new(reason: impl Into<String>) -> Self {
        Self { tensor: None, reason: reason.into() }
    }

    /// The error for the file at `path`, one line: a name from the file is
    /// escaped, so a newline in it cannot break the line.
    pub fn at(self, path: &Path) -> Error {
        match self.tensor {
            Some(tensor) => {
                let tensor = tensor.escape_debug().to_string();
                Error::Tensor { path: path.to_path_buf(), tensor, reason: self.reason }
            }
            None => Error::format(path, format!("GGUF: {}", self.reason)),
        }
    }
}

type Parsed<T> = Result<T, ParseError>;

/// A little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Parsed<&'a [u8]> {
        let end =
            usize::try_from(n).ok().and_then(|n| self.at.checked_add(n)).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(ParseError::new(format!("truncated: {what} runs past the end of the file")));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Parsed<[u8; N]> {
        let s = self.take(N as u64, what)?;
        Ok(std::array::from_fn(|i| s[i]))
    }

    fn u32(&mut self, what: &str) -> Parsed<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Parsed<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn left(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }

    /// A count of items each at least `min_bytes` long, refused when the rest
    /// of the file cannot hold that many.
    fn count(&mut self, what: &str, min_bytes: u64) -> Parsed<u64> {
        let n = self.u64(what)?;
        if n.checked_mul(min_bytes).is_none_or(|b| b > self.left()) {
            return Err(ParseError::new(format!("{what} {n} cannot fit in the {} bytes left", self.left())));
        }
        Ok(n)
    }

    fn string(&mut self, what: &str) -> Parsed<String> {
        let n = self.count(what, 1)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| ParseError::new(format!("{what} is not UTF-8")))
    }
}

/// Parses magic, version, metadata and tensor infos, and places every tensor.
pub fn header(bytes: &[u8]) -> Parsed<Header> {
    let mut c = Cursor { bytes, at: 0 };
    if c.take(4, "the magic").map_err(|_| ParseError::new("file too short for a GGUF header"))? != MAGIC {
        return Err(ParseError::new("bad magic: not a GGUF file"));
    }
    let version = c.u32("the version")?;
    if !matches!(version, 2 | 3) {
        let why = if version.swap_bytes() <= 3 { " (a big-endian file?)" } else { "" };
        return Err(ParseError::new(format!("version {version} is not supported (2 and 3 are){why}")));
    }
    // A tensor info is at least 8 + 4 + 8 + 4 + 8 bytes, a key-value at least 8 + 4 + 1.
    let n_tensors = c.count("tensor count", 32)?;
    let n_kv = c.count("metadata count", 13)?;
    let (mut metadata, mut kv_spans) = (Vec::new(), Vec::new());
    for _ in 0..n_kv {
        let start = c.at;
        let key = c.string("a metadata key")?;
        let ty = c.u32("a metadata type")?;
        let v =
            value(&mut c, ty, 0).map_err(|e| ParseError::new(format!("metadata {key:?}: {}", e.reason)))?;
        metadata.push((key, v));
        kv_spans.push((start, c.at));
    }
    let alignment = alignment_of(&metadata)?;
    let infos = (0..n_tensors).map(|_| tensor_info(&mut c)).collect::<Parsed<Vec<_>>>()?;
    let data_start = c.at.next_multiple_of(alignment as usize) as u64;
    let tensors =
        infos.into_iter().map(|i| place(i, data_start, alignment, bytes.len())).collect::<Parsed<_>>()?;
    Ok(Header { version, metadata, kv_spans, alignment, tensors })
}

/// One metadata value of type `ty`.
fn value(c: &mut Cursor<'_>, ty: u32, depth: u32) -> Parsed<Value> {
    Ok(match ty {
        0 => Value::U8(u8::from_le_bytes(c.array("a value")?)),
        1 => Value::I8(i8::from_le_bytes(c.array("a value")?)),
        2 => Value::U16(u16::from_le_bytes(c.array("a value")?)),
        3 => Value::I16(i16::from_le_bytes(c.array("a value")?)),
        4 => Value::U32(c.u32("a value")?),
        5 => Value::I32(i32::from_le_bytes(c.array("a value")?)),
        6 => Value::F32(f32::from_le_bytes(c.array("a value")?)),
        7 => match c.array::<1>("a value")?[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return Err(ParseError::new(format!("bool byte {b} is neither 0 nor 1"))),
        },
        8 => Value::String(c.string("a string")?),
        9 if depth < MAX_DEPTH => {
            let item = c.u32("an array's item type")?;
            // Each item takes at least one byte (strings at least eight).
            let n = c.count("array length", if item == 8 { 8 } else { 1 })?;
            Value::Array((0..n).map(|_| value(c, item, depth + 1)).collect::<Parsed<_>>()?)
        }
        10 => Value::U64(c.u64("a value")?),
        11 => Value::I64(i64::from_le_bytes(c.array("a value")?)),
        12 => Value::F64(f64::from_le_bytes(c.array("a value")?)),
        9 => return Err(ParseError::new("arrays nested too deep")),
        t => return Err(ParseError::new(format!("unknown value type {t}"))),
    })
}

/// `general.alignment`: a power of two, 32 when absent.
fn alignment_of(metadata: &[(String, Value)]) -> Parsed<u64> {
    let Some((_, v)) = metadata.iter().find(|(k, _)| k == "general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match v.as_u64() {
        Some(a) if a.is_power_of_two() && a <= 1 << 20 => Ok(a),
        _ => Err(ParseError::new(format!("general.alignment {v:?} is not a power of two up to 1 MiB"))),
    }
}

/// A tensor info as stored: name, dimensions, type id, offset.
struct Info {
    name: String,
    ne: Vec<u64>,
    ty: u32,
    offset: u64,
}

fn tensor_info(c: &mut Cursor<'_>) -> Parsed<Info> {
    let name = c.string("a tensor name")?;
    let named = |e: ParseError| ParseError { tensor: Some(name.clone()), reason: e.reason };
    let n_dims = c.u32("dimension count").map_err(named)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(named(ParseError::new(format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"))));
    }
    let ne = (0..n_dims).map(|_| c.u64("a dimension")).collect::<Parsed<Vec<_>>>().map_err(named)?;
    let ty = c.u32("the type").map_err(named)?;
    let offset = c.u64("the offset").map_err(named)?;
    Ok(Info { name, ne, ty, offset })
}

/// Checks a tensor's type, size and offset against the file.
fn place(i: Info, data_start: u64, alignment: u64, file_len: usize) -> Parsed<GgufTensor> {
    let fail = |reason: String| ParseError { tensor: Some(i.name.clone()), reason };
    let ty = GgmlType::from_id(i.ty).ok_or_else(|| fail(format!("unknown ggml type {}", i.ty)))?;
    let rows = i.ne[1..].iter().try_fold(1u64, |a, &n| a.checked_mul(n));
    let size = rows.zip(ty.row_bytes(i.ne[0])).and_then(|(r, b)| r.checked_mul(b));
    let Some(size) = size else {
        return Err(fail(format!(
            "shape {:?} is not whole {} blocks of {} or overflows",
            i.ne, ty.name, ty.block
        )));
    };
    if !i.offset.is_multiple_of(alignment) {
        return Err(fail(format!("offset {} is not a multiple of the alignment {alignment}", i.offset)));
    }
    let start = data_start.checked_add(i.offset);
    let end = start.and_then(|s| s.checked_add(size)).filter(|&e| e <= file_len as u64);
    let (Some(start), Some(end)) = (start, end) else {
        return Err(fail(format!(
            "data at offset {} ({size} bytes) runs past the end of the file",
            i.offset
        )));
    };
    Ok(GgufTensor { name: i.name, ne: i.ne, ggml_type: ty, byte_range: (start as usize, end as usize) })
}
