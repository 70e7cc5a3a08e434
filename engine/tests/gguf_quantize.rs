//! ggml's quantizers (`ggml::quant`) against bytes ggml itself wrote:
//! `engine/tests/data/gguf/quant/` holds an 8 × 512 input (one edge case per
//! row: normal, an outlier, zero blocks, negative-only, block scales from 1e-8
//! to 1e3, constant, tiny, heavy-tailed), an importance matrix with zeros, and
//! `ggml_quantize_chunk`'s output for every type with and without it
//! (`tests/python/gguf_quant_reference.py --write-fixtures`, llama-cpp-python
//! 0.3.36's libggml-base). Then the refusals, and round trips through the
//! decoders.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::PathBuf;

use quantscope_engine::ggml::quant::{quantize, quantizes};
use quantscope_engine::ggml::types::TYPES;
use quantscope_engine::ggml::{GgmlType, dequantize_into};

const TYPE_NAMES: [&str; 13] = [
    "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS",
    "MXFP4",
];

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf/quant").join(name)
}

fn ty(name: &str) -> GgmlType {
    TYPES.iter().copied().find(|t| t.name == name).unwrap()
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(data(name)).unwrap();
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// The fixture's input, imatrix and row length (from its manifest).
fn fixture() -> (Vec<f32>, Vec<f32>, usize) {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).unwrap()).unwrap();
    let n = manifest["n_per_row"].as_u64().unwrap() as usize;
    let rows = manifest["rows"].as_u64().unwrap() as usize;
    let (x, w) = (read_f32("input.f32"), read_f32("imatrix.f32"));
    assert_eq!((x.len(), w.len()), (rows * n, n));
    let listed: Vec<&str> = manifest["types"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(listed.len(), TYPE_NAMES.len(), "the fixture covers every quantized type");
    (x, w, n)
}

/// The first block where `got` differs from `want`, as a message.
fn first_difference(t: GgmlType, got: &[u8], want: &[u8]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} bytes, ggml wrote {}", got.len(), want.len()));
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b)?;
    let b = at / t.block_bytes as usize;
    let block = |v: &[u8]| v[b * t.block_bytes as usize..][..t.block_bytes as usize].to_vec();
    Some(format!("byte {at} (block {b}): ours {:02x?}, ggml {:02x?}", block(got), block(want)))
}

fn matches_fixture(with_imatrix: bool) -> usize {
    let (x, w, n) = fixture();
    let mut checked = 0;
    for name in TYPE_NAMES {
        let t = ty(name);
        let suffix = if with_imatrix { ".imatrix.bin" } else { ".bin" };
        let want = std::fs::read(data(&format!("{name}{suffix}"))).unwrap();
        let got = quantize(t, &x, n, with_imatrix.then_some(&w[..])).unwrap();
        assert_eq!(first_difference(t, &got, &want), None, "{name}{suffix}");
        checked += 1;
    }
    checked
}

#[test]
fn every_type_is_byte_identical_to_ggml_without_an_imatrix() {
    assert_eq!(matches_fixture(false), 13);
}

#[test]
fn every_type_is_byte_identical_to_ggml_with_an_imatrix() {
    assert_eq!(matches_fixture(true), 13);
}

#[test]
fn the_imatrix_changes_the_searched_types_and_not_q8_0_or_mxfp4() {
    let (x, w, n) = fixture();
    for name in TYPE_NAMES {
        let plain = std::fs::read(data(&format!("{name}.bin"))).unwrap();
        let weighted = std::fs::read(data(&format!("{name}.imatrix.bin"))).unwrap();
        let ignores = matches!(name, "Q8_0" | "MXFP4");
        assert_eq!(plain == weighted, ignores, "{name}: ggml ignores the imatrix only for Q8_0 and MXFP4");
        assert_eq!(quantize(ty(name), &x, n, Some(&w)).unwrap() == plain, ignores, "{name}");
    }
}

#[test]
fn exactly_the_listed_types_are_quantized() {
    let quantized: Vec<&str> = TYPES.iter().filter(|t| quantizes(**t)).map(|t| t.name).collect();
    let mut expected = TYPE_NAMES.to_vec();
    expected.sort_by_key(|n| ty(n).id);
    assert_eq!(quantized, expected);
    let err = quantize(ty("IQ2_XXS"), &[0.0; 256], 256, None).unwrap_err().to_string();
    assert!(err.contains("IQ2_XXS") && !err.contains('\n'), "{err}");
}

#[test]
fn bad_shapes_and_values_are_one_line_errors() {
    let q4k = ty("Q4_K");
    let x = vec![0.5f32; 512];
    let cases: [(&str, Result<Vec<u8>, _>); 7] = [
        ("384", quantize(q4k, &x[..384], 384, None)),
        ("not whole rows", quantize(q4k, &x[..300], 256, None)),
        ("0 values", quantize(q4k, &x, 0, None)),
        ("imatrix has 255", quantize(q4k, &x, 256, Some(&[1.0; 255]))),
        ("row 1, column 3", quantize(q4k, &[&x[..259], &[f32::NAN], &x[260..]].concat(), 256, None)),
        ("inf", quantize(ty("Q8_0"), &[&x[..31], &[f32::INFINITY]].concat(), 32, None)),
        (
            "imatrix weight 7",
            quantize(q4k, &x, 256, Some(&[&[1.0f32; 7][..], &[f32::NAN]].concat().repeat(32))),
        ),
    ];
    for (needle, r) in cases {
        let e = r.unwrap_err().to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "expected '{needle}' in: {e}");
    }
}

#[test]
fn zero_rows_are_zero_bytes_and_rows_are_independent() {
    let (x, w, n) = fixture();
    for name in TYPE_NAMES {
        let t = ty(name);
        assert_eq!(quantize(t, &[], n, None).unwrap(), Vec::<u8>::new(), "{name}");
        let whole = quantize(t, &x, n, Some(&w)).unwrap();
        let by_row: Vec<u8> = x.chunks(n).flat_map(|r| quantize(t, r, n, Some(&w)).unwrap()).collect();
        assert_eq!(whole, by_row, "{name}: a row's bytes do not depend on the other rows");
    }
}

#[test]
fn the_bytes_do_not_depend_on_the_thread_count() {
    let x: Vec<f32> = (0..64 * 1024).map(|i| ((i * 7919 % 10007) as f32 - 5000.0) * 1e-4).collect();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for name in ["Q4_K", "IQ4_NL", "Q4_0"] {
        let many = quantize(ty(name), &x, 1024, Some(&[1.0; 1024])).unwrap();
        let single = one.install(|| quantize(ty(name), &x, 1024, Some(&[1.0; 1024])).unwrap());
        assert_eq!(many, single, "{name}");
    }
}

/// Signal-to-noise of `back` against `x`, in dB.
fn sqnr_db(x: &[f32], back: &[f32]) -> f64 {
    let signal: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    let noise: f64 = x.iter().zip(back).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
    10.0 * (signal / noise).log10()
}

#[test]
fn round_trips_through_the_decoders_at_each_types_precision() {
    // Weight-like values: a sum of uniforms, deterministic.
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let x: Vec<f32> = (0..16 * 1024).map(|_| (next() + next() + next()) * 0.05).collect();
    // ggml's own bytes of these values decode (gguf-py) to 46.1 (Q8_0), 35.5 (Q6_K),
    // 28.0 / 28.8 / 29.3 (Q5_0 / Q5_1 / Q5_K), 21.9 / 22.5 / 23.4 (Q4_0 / Q4_1 / Q4_K),
    // 22.7 / 22.6 (IQ4_NL / IQ4_XS), 18.6 (MXFP4), 16.8 (Q3_K) and 10.9 dB (Q2_K).
    let floors = [
        ("Q8_0", 45.0),
        ("Q6_K", 34.5),
        ("Q5_0", 27.0),
        ("Q5_1", 27.8),
        ("Q5_K", 28.3),
        ("Q4_0", 20.9),
        ("Q4_1", 21.5),
        ("Q4_K", 22.4),
        ("IQ4_NL", 21.7),
        ("IQ4_XS", 21.6),
        ("MXFP4", 17.6),
        ("Q3_K", 15.8),
        ("Q2_K", 9.9),
    ];
    let mut back = Vec::new();
    for (name, floor) in floors {
        let bytes = quantize(ty(name), &x, 1024, None).unwrap();
        dequantize_into(ty(name), &bytes, &mut back).unwrap();
        let db = sqnr_db(&x, &back);
        assert!(db > floor, "{name}: {db:.1} dB, expected above {floor}");
    }
}

#[test]
fn a_q8_0_round_trip_is_within_half_a_step_where_the_step_is_a_normal_fp16() {
    let (x, _, n) = fixture();
    let t = ty("Q8_0");
    let bytes = quantize(t, &x, n, None).unwrap();
    let mut back = Vec::new();
    dequantize_into(t, &bytes, &mut back).unwrap();
    let (mut normal, mut underflow) = (0, 0);
    for ((b, xs), ys) in bytes.chunks_exact(34).zip(x.chunks_exact(32)).zip(back.chunks_exact(32)) {
        let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        if d >= 2f32.powi(-14) {
            normal += 1;
            // Rounding costs d/2; the stored d's own rounding (2^-11 relative) up to 127 steps more.
            for (&v, &r) in xs.iter().zip(ys) {
                assert!((v - r).abs() <= d * (0.5 + 127.0 / 2048.0), "{v} → {r} (d = {d})");
            }
        } else if d == 0.0 {
            underflow += 1;
            assert!(ys.iter().all(|&r| r == 0.0), "a zero scale decodes to zeros");
        }
    }
    assert!(normal > 100 && underflow > 0, "{normal} normal blocks, {underflow} with d flushed to 0");
}
