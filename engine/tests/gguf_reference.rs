//! GGUF reading against files the gguf package (PyPI 0.19.0) wrote
//! (`tests/python/make_gguf_fixture.py`): metadata of every value type, shapes
//! in Hugging Face order, and every legacy type dequantized bit for bit as
//! gguf-py's numpy (itself bit-exact with ggml) gives it, and the K-quants,
//! IQ4_NL, IQ4_XS and MXFP4 on random blocks. Then malformed files:
//! each a one-line error naming the file, and the tensor where one is at fault.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;

use quantscope_engine::gguf::{GgufFile, Value};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf").join(name)
}

#[test]
fn metadata_of_every_value_type_reads_as_written() {
    let f = GgufFile::open(data("legacy.gguf")).unwrap();
    assert_eq!((f.version, f.alignment), (3, 64));
    let get = |k: &str| f.get(k).cloned().unwrap();
    assert_eq!(get("general.architecture"), Value::String("llama".into()));
    assert_eq!(get("test.u8"), Value::U8(200));
    assert_eq!(get("test.i8"), Value::I8(-100));
    assert_eq!(get("test.u16"), Value::U16(60000));
    assert_eq!(get("test.i16"), Value::I16(-30000));
    assert_eq!(get("test.i32"), Value::I32(-2_000_000_000));
    assert_eq!(get("test.f32"), Value::F32(0.15625));
    assert_eq!(get("test.bool"), Value::Bool(true));
    assert_eq!(get("test.string"), Value::String("grüße".into()));
    assert_eq!(get("test.u64"), Value::U64((1 << 63) + 5));
    assert_eq!(get("test.i64"), Value::I64(-(1 << 62)));
    assert_eq!(get("test.f64"), Value::F64(-1.0e300));
    let strings = ["a", "", "ccc"].map(|s| Value::String(s.into())).to_vec();
    assert_eq!(get("test.strings"), Value::Array(strings));
    assert_eq!(get("test.ints"), Value::Array(vec![Value::I32(1), Value::I32(-2), Value::I32(3)]));
}

/// How many of tensor `name`'s values `f` decodes bit-identical to the F32 copy
/// in `want`, asserting that every one does.
fn bit_identical(f: &GgufFile, want: &GgufFile, name: &str) -> usize {
    let got = f.dequantize(name).unwrap();
    let expected = want.dequantize(name).unwrap();
    assert_eq!(got.len(), expected.len(), "{name}");
    let same = got.iter().zip(&expected).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    assert_eq!(
        same,
        got.len(),
        "{name} ({}): {same} of {} bit-identical",
        f.tensor(name).unwrap().ggml_type.name,
        got.len()
    );
    same
}

#[test]
fn every_legacy_type_dequantizes_bit_for_bit_as_gguf_py() {
    let f = GgufFile::open(data("legacy.gguf")).unwrap();
    let want = GgufFile::open(data("legacy.expected.gguf")).unwrap();
    let types: Vec<&str> = f.tensors.iter().map(|t| t.ggml_type.name).collect();
    assert_eq!(types, ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]);
    for t in &f.tensors {
        assert_eq!(t.shape(), [4, 64], "{}: Hugging Face order, ne reversed", t.name);
        assert_eq!(t.byte_range.0 % 64, 0, "{}: aligned", t.name);
        assert_eq!(bit_identical(&f, &want, &t.name), 256);
    }
}

#[test]
fn every_k_quant_iq4_and_mxfp4_dequantizes_bit_for_bit_as_gguf_py() {
    let f = GgufFile::open(data("kquants.gguf")).unwrap();
    let want = GgufFile::open(data("kquants.expected.gguf")).unwrap();
    let types: Vec<&str> = f.tensors.iter().map(|t| t.ggml_type.name).collect();
    assert_eq!(types, ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "MXFP4"]);
    for t in &f.tensors {
        assert_eq!(bit_identical(&f, &want, &t.name) as u64, t.numel());
    }
}

/// A minimal GGUF v3: `kv` as (key, type, value bytes), tensors as (name, ne,
/// type id, offset), then `data_len` bytes of data after 32-byte alignment.
fn file(kv: &[(&str, u32, Vec<u8>)], tensors: &[(&str, &[u64], u32, u64)], data_len: usize) -> Vec<u8> {
    let s = |v: &mut Vec<u8>, x: &str| {
        v.extend((x.len() as u64).to_le_bytes());
        v.extend(x.as_bytes());
    };
    let mut v = b"GGUF".to_vec();
    v.extend(3u32.to_le_bytes());
    v.extend((tensors.len() as u64).to_le_bytes());
    v.extend((kv.len() as u64).to_le_bytes());
    for (k, ty, bytes) in kv {
        s(&mut v, k);
        v.extend(ty.to_le_bytes());
        v.extend(bytes);
    }
    for (name, ne, ty, offset) in tensors {
        s(&mut v, name);
        v.extend((ne.len() as u32).to_le_bytes());
        ne.iter().for_each(|n| v.extend(n.to_le_bytes()));
        v.extend(ty.to_le_bytes());
        v.extend(offset.to_le_bytes());
    }
    v.resize(v.len().next_multiple_of(32) + data_len, 0);
    v
}

/// The one-line message of opening `bytes` as "bad.gguf".
fn error(bytes: Vec<u8>) -> String {
    let e = GgufFile::from_bytes("bad.gguf", bytes).err().expect("refused").to_string();
    assert!(e.starts_with("bad.gguf: ") && !e.contains('\n'), "{e}");
    e
}

#[test]
fn a_hand_made_file_reads_and_malformed_ones_are_one_line_errors() {
    let q8 = |offset| ("w", &[32u64, 2][..], 8u32, offset);
    let good = file(&[], &[q8(0)], 68);
    assert_eq!(GgufFile::from_bytes("ok.gguf", good.clone()).unwrap().tensors[0].shape(), [2, 32]);
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(error(bad_magic).contains("bad magic"));
    let mut v1 = good.clone();
    v1[4] = 1;
    assert!(error(v1).contains("version 1"));
    let mut huge = good.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(error(huge).contains("tensor count"));
    assert!(error(file(&[], &[("w", &[32, 2], 99, 0)], 68)).contains("tensor 'w': unknown ggml type 99"));
    assert!(error(file(&[], &[("w", &[30, 2], 8, 0)], 68)).contains("tensor 'w'"), "not whole blocks");
    assert!(error(file(&[], &[q8(u64::MAX - 8)], 68)).contains("tensor 'w'"), "offset overflows");
    assert!(error(file(&[], &[q8(32)], 68)).contains("past the end"));
    assert!(error(file(&[], &[q8(4)], 68)).contains("alignment"));
    let bad_align = file(&[("general.alignment", 4, 24u32.to_le_bytes().to_vec())], &[q8(0)], 68);
    assert!(error(bad_align).contains("power of two"));
    let huge_dims = file(&[], &[("w", &[1u64 << 40, 1 << 40, 1 << 40], 0, 0)], 8);
    assert!(error(huge_dims).contains("tensor 'w'"));
    let unknown_value = file(&[("k", 77, Vec::new())], &[], 0);
    assert!(error(unknown_value).contains("unknown value type 77"));
    // Names from the file are escaped: a newline in one cannot break the line.
    assert!(error(file(&[("a\nb", 77, Vec::new())], &[], 0)).contains(r#""a\nb""#));
    assert!(error(file(&[], &[("w\n", &[32, 2], 99, 0)], 68)).contains(r"tensor 'w\n'"));
}

#[test]
fn every_truncation_of_a_real_file_is_an_error_never_a_panic() {
    let bytes = std::fs::read(data("legacy.gguf")).unwrap();
    let data_start = GgufFile::open(data("legacy.gguf")).unwrap().tensors[0].byte_range.0;
    for n in (0..data_start).chain([bytes.len() - 1]) {
        error(bytes[..n].to_vec());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
    /// Any bytes of a real file's header and first tensors changed: an error or
    /// a file, never a panic, and an error is one line naming the file.
    #[test]
    fn a_corrupted_header_never_panics(flips in proptest::collection::vec((0usize..1200, 0u8..=255), 1..6)) {
        let mut bytes = std::fs::read(data("kquants.gguf")).unwrap();
        for (at, b) in flips {
            let at = at % bytes.len();
            bytes[at] = b;
        }
        if let Err(e) = GgufFile::from_bytes("bad.gguf", bytes.clone()) {
            let e = e.to_string();
            proptest::prop_assert!(e.starts_with("bad.gguf: ") && !e.contains('\n'), "{}", e);
        }
        quantscope_engine::untrusted::exercise_untrusted_gguf(&bytes);
    }
}
