//! Untrusted bytes → header parsing, catalogue, decoding, a small analysis.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quantscope_engine::untrusted::exercise_untrusted(data);
});
