//! Untrusted bytes → GGUF header, metadata, tensor infos, dequantization.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quantscope_engine::untrusted::exercise_untrusted_gguf(data);
});
