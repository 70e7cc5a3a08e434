//! The fuzz entry: untrusted bytes through everything a user's file reaches
//! (header parsing, the catalogue, decoding, a small analysis). It sits above
//! both the checkpoint and the analysis, so neither imports the other for it;
//! GGUF files go through their own entry.

use crate::analyze::{Options, analyze};
use crate::checkpoint::Checkpoint;

/// Runs untrusted bytes through everything a user's file reaches: header
/// parsing, the catalogue, decoding, and a small analysis. Shared by the fuzz
/// target (`fuzz/`) and its regression test, so both exercise the same path.
/// Returns how many tensors decoded.
#[doc(hidden)]
pub fn exercise_untrusted(bytes: &[u8]) -> usize {
    let Ok(ckpt) = Checkpoint::from_bytes("fuzz-input", bytes.to_vec()) else { return 0 };
    let mut decoded = 0;
    for t in ckpt.tensors() {
        let Ok(values) = ckpt.load_f32(&t.name) else { continue };
        decoded += 1;
        if values.len() <= 4096 {
            debug_assert!(
                ckpt.f32_view(t)
                    .is_none_or(|v| v.iter().zip(&values).all(|(a, b)| a.to_bits() == b.to_bits()))
            );
            for scheme in ["int8:channel:minmax", "e4m3:group16:mse:asym", "int4:tensor:entropy"] {
                if let Ok(s) = scheme.parse() {
                    let _ = analyze(&values, &t.shape, &s, &Options::default());
                }
            }
        }
    }
    decoded
}

/// [`exercise_untrusted`] for GGUF: header, metadata, tensor infos, and every
/// tensor of up to a million values dequantized. Returns how many decoded.
#[doc(hidden)]
pub fn exercise_untrusted_gguf(bytes: &[u8]) -> usize {
    let Ok(f) = crate::gguf::GgufFile::from_bytes("fuzz-input.gguf", bytes.to_vec()) else { return 0 };
    f.tensors.iter().filter(|t| t.numel() <= 1 << 20 && f.dequantize(&t.name).is_ok()).count()
}
