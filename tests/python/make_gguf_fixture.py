"""Writes the GGUF fixtures of engine/tests/gguf_reference.rs with the gguf package
(PyPI 0.19.0), the reference for GGUF files and for ggml's dequantization.

legacy.gguf: 4x64 tensors (seeded normal values) under F32, F16, BF16, Q8_0, Q4_0,
Q4_1, Q5_0 and Q5_1 (quantized by gguf.quants.quantize, which matches ggml for these
types), metadata of every value type, alignment 64.
legacy.expected.gguf: each of those tensors as gguf.quants.dequantize gives it, F32.
kquants.gguf / kquants.expected.gguf: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS and MXFP4
tensors of seeded random block bytes (the package cannot quantize these types; a
decoder is defined on any bytes) with their F16 scales set to moderate values, and
gguf.quants.dequantize's values of them.

Usage: PYTHONPATH=<gguf 0.19.0> python tests/python/make_gguf_fixture.py OUT_DIR
"""
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2312)
    values = (rng.standard_normal((4, 64)) * 0.05).astype(np.float32)
    values[1, 3] = 0.9  # an outlier in one block
    w = gguf.GGUFWriter(out / "legacy.gguf", "llama")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_int32("test.i32", -2_000_000_000)
    w.add_float32("test.f32", 0.15625)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "grüße")
    w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", -1.0e300)
    w.add_array("test.strings", ["a", "", "ccc"])
    w.add_array("test.ints", [1, -2, 3])
    expected = gguf.GGUFWriter(out / "legacy.expected.gguf", "llama")
    for t in TYPES:
        name = f"w.{t.name.lower()}"
        q = gguf.quants.quantize(values, t)
        w.add_tensor(name, q, raw_dtype=t)
        back = gguf.quants.dequantize(q, t).astype(np.float32).reshape(values.shape)
        expected.add_tensor(name, back)
    for writer in (w, expected):
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    print(f"wrote {out}/legacy.gguf and legacy.expected.gguf ({len(TYPES)} tensors)")
    kquants(out, rng)


# Byte offsets of each type's F16 fields within a block.
HALVES = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
          T.IQ4_NL: [0], T.IQ4_XS: [0], T.MXFP4: []}


def kquants(out, rng):
    w = gguf.GGUFWriter(out / "kquants.gguf", "llama")
    expected = gguf.GGUFWriter(out / "kquants.expected.gguf", "llama")
    for t, halves in HALVES.items():
        block, size = gguf.GGML_QUANT_SIZES[t]
        rows, cols = 2, 2 * block
        raw = rng.integers(0, 256, size=(rows * 2, size), dtype=np.uint8)
        for at in halves:
            scale = (rng.uniform(0.001, 0.01, size=rows * 2)).astype(np.float16)
            raw[:, at:at + 2] = scale.view(np.uint8).reshape(-1, 2)
        if t == T.MXFP4:
            raw[:, 0] = [0, 1, 118, 130]  # E8M0: the two subnormal codes and two normal ones
        q = raw.reshape(rows, 2 * size)
        name = f"w.{t.name.lower()}"
        w.add_tensor(name, q, raw_dtype=t)
        expected.add_tensor(name, gguf.quants.dequantize(q, t).astype(np.float32).reshape(rows, cols))
    for writer in (w, expected):
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    print(f"wrote {out}/kquants.gguf and kquants.expected.gguf ({len(HALVES)} tensors)")


if __name__ == "__main__":
    main()
