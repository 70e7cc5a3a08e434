//! The malformed-input corpus: every way a checkpoint can be broken that the
//! safetensors format promises to catch (and a few it leaves to us), each with
//! the words its error message must contain. Written fresh into a folder by
//! [`write_corpus`], so nothing binary is committed.
#![allow(dead_code)]

pub mod quantized;

use std::path::{Path, PathBuf};

/// One bad input: a file name (or folder) and the fault its message must name.
pub struct Case {
    pub name: &'static str,
    /// Substrings the one-line error must contain (besides the path).
    pub expect: &'static [&'static str],
}

/// A safetensors file from a header string and data bytes.
fn st(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn with_len(len: u64, rest: &[u8]) -> Vec<u8> {
    let mut v = len.to_le_bytes().to_vec();
    v.extend_from_slice(rest);
    v
}

const T4: &str = r#""dtype":"F32","shape":[1]"#;

/// Writes every case into `dir` and returns them with their paths.
pub fn write_corpus(dir: &Path) -> Vec<(Case, PathBuf)> {
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let mut out = Vec::new();
    for (name, bytes, expect) in header_cases(&nested).into_iter().chain(tensor_cases()) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {name}: {e}"));
        out.push((Case { name, expect }, path));
    }
    write_folders(dir, &mut out);
    out
}

type FileCase = (&'static str, Vec<u8>, &'static [&'static str]);

/// Files whose length prefix or header is broken.
fn header_cases(nested: &str) -> Vec<FileCase> {
    vec![
        ("empty.safetensors", vec![], &["file is 0 bytes", "too short"]),
        ("three-bytes.safetensors", b"abc".to_vec(), &["file is 3 bytes", "8-byte"]),
        ("seven-bytes.safetensors", vec![1; 7], &["file is 7 bytes", "8-byte"]),
        (
            "header-len-past-end.safetensors",
            with_len(1000, b"{}"),
            &["header length 1000", "exceeds the file size"],
        ),
        ("header-len-2-63.safetensors", with_len(1 << 63, b"{}"), &["header", "100 MB"]),
        ("header-len-max.safetensors", with_len(u64::MAX, b"{}"), &["header", "100 MB"]),
        ("header-len-100mb.safetensors", with_len(100_000_001, b"{}"), &["header", "100 MB"]),
        ("header-len-zero.safetensors", with_len(0, b""), &["header is not a valid safetensors JSON object"]),
        ("not-utf8.safetensors", with_len(4, &[0xff, 0xfe, 0xfd, 0xfc]), &["header is not valid UTF-8"]),
        ("not-json.safetensors", st("{abc", b""), &["header is not a valid safetensors JSON object"]),
        ("json-array.safetensors", st("[1, 2]", b""), &["header is not a valid safetensors JSON object"]),
        (
            "json-string.safetensors",
            st(r#""weights""#, b""),
            &["header is not a valid safetensors JSON object"],
        ),
        ("deeply-nested.safetensors", st(nested, b""), &["header is not a valid safetensors JSON object"]),
        ("spaces-only.safetensors", st("        ", b""), &["header is not a valid safetensors JSON object"]),
        (
            "missing-dtype.safetensors",
            st(r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]),
            &["missing field `dtype`"],
        ),
        (
            "missing-shape.safetensors",
            st(r#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#, &[0; 4]),
            &["missing field `shape`"],
        ),
    ]
}

/// Files whose header parses but whose tensors do not fit.
fn tensor_cases() -> Vec<FileCase> {
    vec![
        (
            "missing-offsets.safetensors",
            st(r#"{"w":{"dtype":"F32","shape":[1]}}"#, &[0; 4]),
            &["missing field `data_offsets`"],
        ),
        (
            "unknown-dtype.safetensors",
            st(r#"{"w":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]),
            &["unknown variant `F7`"],
        ),
        (
            "negative-shape.safetensors",
            st(r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, &[0; 4]),
            &["header is not a valid safetensors JSON object"],
        ),
        (
            "fractional-shape.safetensors",
            st(r#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, &[0; 4]),
            &["header is not a valid safetensors JSON object"],
        ),
        (
            "string-offsets.safetensors",
            st(r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}}"#, &[0; 4]),
            &["header is not a valid safetensors JSON object"],
        ),
        (
            "shape-overflow.safetensors",
            st(
                r#"{"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            &["'w'", "overflow"],
        ),
        (
            "offsets-past-end.safetensors",
            st(&format!(r#"{{"w":{{{T4},"data_offsets":[0,400]}}}}"#), &[0; 4]),
            &["'w'", "data_offsets end at byte 400, past the 4 bytes"],
        ),
        (
            "offsets-overlap.safetensors",
            st(
                &format!(
                    r#"{{"a":{{{T4},"data_offsets":[0,4]}},"b":{{"dtype":"F32","shape":[2],"data_offsets":[2,10]}}}}"#
                ),
                &[0; 10],
            ),
            &["'b'", "data_offsets overlap, leave a gap"],
        ),
        (
            "offsets-gap.safetensors",
            st(
                &format!(r#"{{"a":{{{T4},"data_offsets":[0,4]}},"b":{{{T4},"data_offsets":[8,12]}}}}"#),
                &[0; 12],
            ),
            &["'b'", "data_offsets overlap, leave a gap"],
        ),
        (
            "offsets-reversed.safetensors",
            st(&format!(r#"{{"w":{{{T4},"data_offsets":[4,0]}}}}"#), &[0; 4]),
            &["'w'", "data_offsets [4, 0] are reversed"],
        ),
        (
            "data-len-mismatch.safetensors",
            st(r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, &[0; 4]),
            &["'w'", "needs 8 bytes but data_offsets [0, 4] hold 4"],
        ),
        (
            "duplicate-names.safetensors",
            st(
                &format!(r#"{{"w":{{{T4},"data_offsets":[0,4]}},"w":{{{T4},"data_offsets":[4,8]}}}}"#),
                &[0; 8],
            ),
            &["'w'", "more than once"],
        ),
        (
            "trailing-bytes.safetensors",
            st(&format!(r#"{{"w":{{{T4},"data_offsets":[0,4]}}}}"#), &[0; 9]),
            &["5 bytes of data after the last tensor"],
        ),
        (
            "truncated-data.safetensors",
            st(r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, &[0; 8]),
            &["'w'", "end at byte 16, past the 8 bytes"],
        ),
        (
            "metadata-not-strings.safetensors",
            st(r#"{"__metadata__":{"a":1}}"#, b""),
            &["header is not a valid safetensors JSON object"],
        ),
        (
            "tensor-not-object.safetensors",
            st(r#"{"w":[1,2,3]}"#, b""),
            &["header is not a valid safetensors JSON object"],
        ),
    ]
}

/// Sharded models and folders.
fn write_folders(dir: &Path, out: &mut Vec<(Case, PathBuf)>) {
    let good = st(&format!(r#"{{"w":{{{T4},"data_offsets":[0,4]}}}}"#), &[0; 4]);
    let mk = |sub: &str| {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let d = mk("index-missing-shard");
    std::fs::write(
        d.join("model.safetensors.index.json"),
        r#"{"weight_map":{"w":"model-00001.safetensors"}}"#,
    )
    .unwrap();
    out.push((Case { name: "index-missing-shard", expect: &["model-00001.safetensors", "missing"] }, d));
    let d = mk("index-names-absent-tensor");
    std::fs::write(d.join("model-00001.safetensors"), &good).unwrap();
    std::fs::write(
        d.join("model.safetensors.index.json"),
        r#"{"weight_map":{"v":"model-00001.safetensors"}}"#,
    )
    .unwrap();
    out.push((Case { name: "index-names-absent-tensor", expect: &["'v'", "does not contain it"] }, d));
    let d = mk("index-not-json");
    std::fs::write(d.join("model.safetensors.index.json"), "{weight_map").unwrap();
    out.push((Case { name: "index-not-json", expect: &["index is not valid JSON"] }, d));
    let d = mk("index-no-weight-map");
    std::fs::write(d.join("model.safetensors.index.json"), r#"{"metadata":{}}"#).unwrap();
    out.push((Case { name: "index-no-weight-map", expect: &["weight_map"] }, d));
    let d = mk("index-shard-outside");
    std::fs::write(d.join("model.safetensors.index.json"), r#"{"weight_map":{"w":"../../etc/passwd"}}"#)
        .unwrap();
    out.push((Case { name: "index-shard-outside", expect: &["outside the model folder"] }, d));
    let d = mk("duplicate-across-shards");
    std::fs::write(d.join("a.safetensors"), &good).unwrap();
    std::fs::write(d.join("b.safetensors"), &good).unwrap();
    out.push((Case { name: "duplicate-across-shards", expect: &["'w'", "another shard"] }, d));
    let d = mk("no-model");
    std::fs::write(d.join("README.md"), "nothing here").unwrap();
    out.push((Case { name: "no-model", expect: &["no .safetensors file"] }, d));
    out.push((
        Case { name: "does-not-exist", expect: &["No such file"] },
        dir.join("does-not-exist.safetensors"),
    ));
    let d = mk("dir-named-safetensors.safetensors");
    out.push((Case { name: "dir-named-safetensors", expect: &["no .safetensors file"] }, d));
}
