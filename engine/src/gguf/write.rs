//! Writing GGUF v3 files as llama-quantize writes them: every metadata entry of
//! the source copied byte for byte in its order (less the split keys and the
//! ones set anew), then the entries set anew appended, as `gguf_set_val_*`
//! does; tensors in the order given, each at an offset aligned to the file's
//! alignment (32 unless the source says otherwise) and zero-padded to it.
//! Followed: llama.cpp's `src/llama-quant.cpp` and `ggml/src/gguf.cpp` as
//! vendored in llama-cpp-python 0.3.36. The file is written through a temp
//! file and renamed (see `crate::write`).

use std::borrow::Cow;
use std::path::Path;

use super::{GgmlType, Header, Value};
use crate::error::{Error, Result};

/// llama-quantize drops these: a quantized file is one file.
const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];

/// One tensor of the output file.
#[derive(Clone, Debug)]
pub struct OutTensor {
    pub name: String,
    /// GGUF dimensions, `ne[0]` (the row) first.
    pub ne: Vec<u64>,
    pub ty: GgmlType,
}

impl OutTensor {
    fn size(&self) -> Option<u64> {
        let rows = self.ne[1..].iter().try_fold(1u64, |a, &n| a.checked_mul(n))?;
        self.ty.row_bytes(*self.ne.first()?)?.checked_mul(rows)
    }
}

/// Writes `out` at `path`: `src`'s metadata (from `src_bytes`, the source
/// file) with `set` appended in its place, then each tensor's bytes as `data(i)`
/// gives them, one at a time (so a model is never held whole).
pub fn write<'d>(
    path: &Path,
    src: &Header,
    src_bytes: &[u8],
    set: &[(String, Value)],
    out: &[OutTensor],
    mut data: impl FnMut(usize) -> Result<Cow<'d, [u8]>>,
) -> Result<()> {
    let align = src.alignment;
    let mut head = Vec::new();
    head.extend_from_slice(super::MAGIC);
    head.extend_from_slice(&3u32.to_le_bytes());
    let kept: Vec<usize> = (0..src.metadata.len())
        .filter(|&i| {
            let k = &src.metadata[i].0;
            !SPLIT_KEYS.contains(&k.as_str()) && !set.iter().any(|(s, _)| s == k)
        })
        .collect();
    head.extend_from_slice(&(out.len() as u64).to_le_bytes());
    head.extend_from_slice(&((kept.len() + set.len()) as u64).to_le_bytes());
    for &i in &kept {
        let (a, b) = src.kv_spans[i];
        head.extend_from_slice(&src_bytes[a..b]);
    }
    for (k, v) in set {
        put_string(&mut head, k);
        head.extend_from_slice(&type_id(v).to_le_bytes());
        put_value(&mut head, v);
    }
    let mut sizes = Vec::with_capacity(out.len());
    let mut offset = 0u64;
    for t in out {
        let size = t.size().ok_or_else(|| Error::Tensor {
            path: path.to_path_buf(),
            tensor: t.name.clone(),
            reason: format!("shape {:?} is not whole {} blocks", t.ne, t.ty.name),
        })?;
        put_string(&mut head, &t.name);
        head.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
        t.ne.iter().for_each(|n| head.extend_from_slice(&n.to_le_bytes()));
        head.extend_from_slice(&t.ty.id.to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        sizes.push(size);
        offset += size.next_multiple_of(align);
    }
    pad(&mut head, align);
    crate::write::write_atomic_with(path, |w| {
        let io = |e| Error::io(path, e);
        w.write_all(&head).map_err(io)?;
        for (i, (t, &size)) in out.iter().zip(&sizes).enumerate() {
            let bytes = data(i)?;
            if bytes.len() as u64 != size {
                return Err(Error::Tensor {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    reason: format!("{} bytes given for a {} tensor of {size}", bytes.len(), t.ty.name),
                });
            }
            w.write_all(&bytes).map_err(io)?;
            w.write_all(&vec![0u8; (size.next_multiple_of(align) - size) as usize]).map_err(io)?;
        }
        Ok(())
    })
}

fn pad(v: &mut Vec<u8>, align: u64) {
    let to = (v.len() as u64).next_multiple_of(align) as usize;
    v.resize(to, 0);
}

fn put_string(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(&(s.len() as u64).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
}

/// GGUF's value type ids.
fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_string(out, s),
        Value::Array(items) => {
            // An empty array's item type is not known here: U8 reads back the same.
            out.extend_from_slice(&items.first().map_or(0, type_id).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    #[test]
    fn a_written_file_reads_back_with_its_metadata_and_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let f32t = GgmlType::from_name("F32").unwrap();
        let q80 = GgmlType::from_name("Q8_0").unwrap();
        let out = [
            OutTensor { name: "a".into(), ne: vec![3], ty: f32t },
            OutTensor { name: "b.weight".into(), ne: vec![32, 2], ty: q80 },
        ];
        let blocks: Vec<u8> = (0..68u8).collect();
        let floats: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let set = [
            ("general.architecture".to_string(), Value::String("llama".into())),
            ("general.file_type".to_string(), Value::U32(7)),
        ];
        let empty = Header { version: 3, metadata: vec![], kv_spans: vec![], alignment: 32, tensors: vec![] };
        let first = dir.path().join("first.gguf");
        write(&first, &empty, &[], &set, &out, |i| {
            Ok(Cow::Owned(if i == 0 { floats.clone() } else { blocks.clone() }))
        })
        .unwrap();
        let g = GgufFile::open(&first).unwrap();
        assert_eq!(g.arch(), Some("llama"));
        assert_eq!(g.bytes(g.tensor("b.weight").unwrap()), &blocks[..]);
        assert_eq!(g.dequantize("a").unwrap(), [1.0, 2.0, 3.0]);
        // Copying: the entry set anew moves to the end, the rest keep their bytes.
        let bytes = std::fs::read(&first).unwrap();
        let second = dir.path().join("second.gguf");
        let again = [("general.architecture".to_string(), Value::String("qwen2".into()))];
        write(&second, &g.header, &bytes, &again, &out, |i| Ok(Cow::Borrowed(g.bytes(&g.tensors[i]))))
            .unwrap();
        let h = GgufFile::open(&second).unwrap();
        let keys: Vec<&str> = h.metadata.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["general.file_type", "general.architecture"]);
        assert_eq!(h.arch(), Some("qwen2"));
        assert_eq!(h.bytes(h.tensor("b.weight").unwrap()), &blocks[..]);
        // A wrong length is refused and leaves nothing behind.
        let third = dir.path().join("third.gguf");
        let e = write(&third, &empty, &[], &[], &out, |_| Ok(Cow::Owned(vec![0; 5]))).unwrap_err();
        assert!(e.to_string().contains("tensor 'a'"), "{e}");
        assert!(!third.exists());
    }
}
