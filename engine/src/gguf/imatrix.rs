//! Importance matrices as llama-imatrix writes them, read as llama-quantize
//! reads them (`common/imatrix-loader.cpp` and `tools/quantize/quantize.cpp`
//! of llama-cpp-python 0.3.36's llama.cpp): the GGUF format (`NAME.in_sum2`
//! and `NAME.counts` F32 tensors; each expert's sums divided by its count,
//! 1 where the count is 0) and the legacy `.dat` (sums already scaled by the
//! call count, divided by it). Each entry is one weight per column of the
//! tensor it names (GGUF names), the quantizers' `imatrix`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{GgufFile, MAGIC};
use crate::error::{Error, Result};

/// A loaded importance matrix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    /// Per tensor (GGUF name), one weight per column (per expert, then column).
    pub entries: BTreeMap<String, Vec<f32>>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    /// Read from the legacy `.dat` format.
    pub legacy: bool,
}

impl Imatrix {
    /// Reads either format (GGUF by its magic).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if bytes.starts_with(MAGIC) {
            Self::from_gguf(&GgufFile::from_bytes(path, bytes)?)
        } else {
            legacy(&bytes).map_err(|reason| Error::format(path, format!("imatrix (.dat): {reason}")))
        }
    }

    fn from_gguf(g: &GgufFile) -> Result<Self> {
        let fail = |reason: String| Error::format(&g.path, format!("imatrix: {reason}"));
        let key_u32 = |k: &str| g.get(k).and_then(super::Value::as_u64).and_then(|v| u32::try_from(v).ok());
        let (Some(chunk_count), Some(_), Some(super::Value::Array(sets))) =
            (key_u32("imatrix.chunk_count"), key_u32("imatrix.chunk_size"), g.get("imatrix.datasets"))
        else {
            return Err(fail("missing imatrix metadata (imatrix.datasets, chunk_count, chunk_size)".into()));
        };
        let datasets =
            sets.iter().filter_map(|v| if let super::Value::String(s) = v { Some(s.clone()) } else { None });
        let mut entries = BTreeMap::new();
        for t in g.tensors.iter().filter(|t| t.name.ends_with(".in_sum2")) {
            let name = t.name.trim_end_matches(".in_sum2");
            let counts =
                g.tensor(&format!("{name}.counts")).map_err(|_| fail(format!("no counts for '{name}'")))?;
            if t.ggml_type.name != "F32" || counts.ggml_type.name != "F32" {
                return Err(fail(format!("sums and counts for '{name}' must be F32")));
            }
            let (sums, counts) = (g.dequantize(&t.name)?, g.dequantize(&counts.name)?);
            entries.insert(
                name.to_string(),
                normalise(&sums, &counts).map_err(|r| fail(format!("'{name}': {r}")))?,
            );
        }
        if entries.is_empty() {
            return Err(fail("no entries".into()));
        }
        Ok(Self { entries, datasets: datasets.collect(), chunk_count, legacy: false })
    }

    /// The weights for tensor `name` with rows of `cols` values, when the
    /// matrix has an entry of that length (one expert).
    pub fn weights(&self, name: &str, cols: usize) -> Option<&[f32]> {
        self.entries.get(name).map(Vec::as_slice).filter(|w| w.len() == cols)
    }
}

/// Each expert's sums divided by its count, as llama-quantize does.
fn normalise(sums: &[f32], counts: &[f32]) -> std::result::Result<Vec<f32>, String> {
    if counts.is_empty() || !sums.len().is_multiple_of(counts.len()) {
        return Err(format!("{} sums do not split into {} counts", sums.len(), counts.len()));
    }
    let per = sums.len() / counts.len();
    let mut out = Vec::with_capacity(sums.len());
    for (chunk, &c) in sums.chunks(per.max(1)).zip(counts) {
        // llama.cpp rounds the count to an integer first.
        let count = c.round() as i64 as f32;
        out.extend(chunk.iter().map(|&s| if count > 0.0 { s / count } else { 1.0 }));
    }
    Ok(out)
}

/// A little-endian reader that fails rather than reading past the end.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        if n > self.0.len() {
            return Err("file ends early".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn i32(&mut self) -> std::result::Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn legacy(bytes: &[u8]) -> std::result::Result<Imatrix, String> {
    let mut r = Bytes(bytes);
    let n = r.i32()?;
    if n < 1 {
        return Err("no data".into());
    }
    let mut m = Imatrix { legacy: true, ..Imatrix::default() };
    for i in 0..n {
        let len =
            usize::try_from(r.i32()?).map_err(|_| format!("entry {} has a negative name length", i + 1))?;
        let name = String::from_utf8_lossy(r.take(len)?).into_owned();
        let (ncall, nval) = (r.i32()?, r.i32()?);
        let nval =
            usize::try_from(nval).ok().filter(|&v| v >= 1).ok_or(format!("entry '{name}' has no values"))?;
        let raw = r.take(nval.checked_mul(4).ok_or("value count overflows")?)?;
        let sums = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        // The sums were scaled by the call count when saved.
        let values = sums.map(|s| if ncall > 0 { s / ncall as f32 } else { s }).collect();
        m.entries.insert(name, values);
    }
    if let Ok(calls) = r.i32() {
        m.chunk_count = u32::try_from(calls).unwrap_or(0);
        if let Ok(len) = r.i32()
            && let Ok(len) = usize::try_from(len)
            && let Ok(set) = r.take(len)
            && len > 0
        {
            m.datasets.push(String::from_utf8_lossy(set).into_owned());
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dat(entries: &[(&str, i32, &[f32])], tail: Option<(i32, &str)>) -> Vec<u8> {
        let mut v = (entries.len() as i32).to_le_bytes().to_vec();
        for (name, ncall, vals) in entries {
            v.extend((name.len() as i32).to_le_bytes());
            v.extend(name.as_bytes());
            v.extend(ncall.to_le_bytes());
            v.extend((vals.len() as i32).to_le_bytes());
            vals.iter().for_each(|x| v.extend(x.to_le_bytes()));
        }
        if let Some((calls, set)) = tail {
            v.extend(calls.to_le_bytes());
            v.extend((set.len() as i32).to_le_bytes());
            v.extend(set.as_bytes());
        }
        v
    }

    #[test]
    fn legacy_sums_are_divided_by_the_call_count() {
        let m = legacy(&dat(&[("blk.0.ffn_up.weight", 4, &[8.0, 2.0]), ("x", 0, &[3.0])], Some((7, "wiki"))))
            .unwrap();
        assert_eq!(m.entries["blk.0.ffn_up.weight"], [2.0, 0.5]);
        assert_eq!(m.entries["x"], [3.0], "no calls: the sums as they are");
        assert_eq!((m.chunk_count, m.datasets.as_slice()), (7, &["wiki".to_string()][..]));
        assert_eq!(m.weights("x", 1), Some(&[3.0f32][..]));
        assert_eq!(m.weights("x", 2), None);
    }

    #[test]
    fn a_truncated_or_empty_dat_is_an_error() {
        let full = dat(&[("a", 1, &[1.0, 2.0])], None);
        for cut in [0, 3, 6, full.len() - 1] {
            assert!(legacy(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(legacy(&dat(&[], None)).is_err());
    }

    #[test]
    fn gguf_counts_normalise_each_expert() {
        assert_eq!(normalise(&[4.0, 8.0, 3.0, 6.0], &[2.0, 0.0]).unwrap(), [2.0, 4.0, 1.0, 1.0]);
        assert!(normalise(&[1.0, 2.0, 3.0], &[1.0, 1.0]).is_err());
    }
}
