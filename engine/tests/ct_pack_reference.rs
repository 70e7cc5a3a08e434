//! The pack-quantized layout against what llm-compressor wrote
//! (shared/reference/formats, copied into tests/data/formats): the library's
//! codes, unpacked with our unpacker, re-pack to the same bytes; zero points
//! packed along dim 0 likewise; `weight_shape` is `[out, in]`.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use quantscope_engine::checkpoint::Checkpoint;
use quantscope_engine::export::bitpack::{
    bytes_to_words, pack_cols, pack_rows, unpack_cols, unpack_rows, words_per_line, words_to_bytes,
};
use safetensors::Dtype;

fn open(file: &str) -> Checkpoint {
    Checkpoint::open(format!("{}/tests/data/formats/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// (file stem, bits, groups per row, asymmetric)
const PACKED: [(&str, u8, usize, bool); 6] = [
    ("w8a16", 8, 2, false),
    ("w8a16_asym", 8, 2, true),
    ("w4a16", 4, 2, false),
    ("w4a16_asym", 4, 2, true),
    ("w4a16_channel", 4, 1, false),
    ("w4a16_asym_channel", 4, 1, true),
];

#[test]
fn reference_packed_codes_and_zero_points_repack_byte_for_byte() {
    let (out, inp) = (64usize, 256usize);
    let mut repacked = 0;
    for (stem, bits, groups, asym) in PACKED {
        for d in ["f32", "bf16"] {
            let file = format!("{stem}_{d}.safetensors");
            let ck = open(&file);
            let p = ck.tensor("weight_packed").unwrap();
            assert_eq!(p.dtype, Dtype::I32, "{file}");
            assert_eq!(p.shape, [out, words_per_line(inp, bits)], "{file}");
            let codes = unpack_rows(&bytes_to_words(ck.bytes(p)), out, inp, bits);
            let lo = -(1i32 << (bits - 1));
            assert!(codes.iter().all(|&q| (lo..-lo).contains(&i32::from(q))), "{file}");
            assert_eq!(words_to_bytes(&pack_rows(&codes, out, inp, bits)), ck.bytes(p), "{file}");
            repacked += 1;
            let s = ck.tensor("weight_shape").unwrap();
            assert_eq!((s.dtype, s.shape.as_slice()), (Dtype::I64, &[2usize][..]), "{file}");
            let shape: Vec<i64> =
                ck.bytes(s).chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
            assert_eq!(shape, [64, 256], "{file}");
            assert_eq!(ck.tensor("weight_scale").unwrap().shape, [out, groups], "{file}");
            match ck.tensor("weight_zero_point") {
                Ok(z) if asym => {
                    assert_eq!(
                        (z.dtype, z.shape.clone()),
                        (Dtype::I32, vec![words_per_line(out, bits), groups])
                    );
                    let zs = unpack_cols(&bytes_to_words(ck.bytes(z)), out, groups, bits);
                    assert_eq!(words_to_bytes(&pack_cols(&zs, out, groups, bits)), ck.bytes(z), "{file}");
                    repacked += 1;
                }
                Ok(_) => panic!("{file}: a symmetric scheme has a zero point"),
                Err(_) => assert!(!asym, "{file}: no zero point"),
            }
        }
    }
    assert_eq!(repacked, 18);
}
