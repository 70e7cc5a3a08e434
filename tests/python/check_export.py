#!/usr/bin/env python3
"""Independent check of a quantscope export, in Python with safetensors + numpy.

    check_export.py PACKED_DIR FAKE_QUANT_DIR

For every quantized weight in PACKED_DIR it reads the codes (unpacking
`weight_packed` of pack-quantized layers: I32 words holding a little-endian bit
stream of q + 2^(b-1) per row, shape from `weight_shape`), `weight_scale` and
`weight_zero_point` (packed down the columns for pack-quantized; or the FP8
offset), recomputes R' = D(D(q - zp) * scale) (+ offset, then D again) on its
own, where D rounds half-to-even to the weight's working dtype after each
operation (FORMATS.md §1: BF16 and F16 weights compute in their own dtype,
everything else in F32; numpy has no bf16, so BF16 is emulated on the f32 bits).
FP8 codes go through a table built here from the bit layout. R' is compared bit
for bit with the same tensor in FAKE_QUANT_DIR.
The group size comes from config.json's quantization_config, as a runtime reads
it, or from the files' __metadata__ for layouts without one. Exits 1 on any
difference.
"""
import json
import math
import re
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open

# dtypes numpy has no type for: read from the raw bytes.
RAW = {"BF16", "F8_E4M3", "F8_E5M2"}


def fp8_table(exp_bits, man_bits, bias, e4m3fn):
    vals = []
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        e = (code >> man_bits) & ((1 << exp_bits) - 1)
        m = code & ((1 << man_bits) - 1)
        top = (1 << exp_bits) - 1
        if e4m3fn and e == top and m == (1 << man_bits) - 1:
            v = math.nan
        elif not e4m3fn and e == top:
            v = sign * math.inf if m == 0 else math.nan
        elif e == 0:
            v = sign * m * 2.0 ** (1 - bias - man_bits)
        else:
            v = sign * (1 + m / 2**man_bits) * 2.0 ** (e - bias)
        vals.append(v)
    return np.array(vals, dtype=np.float32)


FP8 = {"F8_E4M3": fp8_table(4, 3, 7, True), "F8_E5M2": fp8_table(5, 2, 15, False)}


class File:
    def __init__(self, path):
        self.path = path
        raw = path.read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        self.header = json.loads(raw[8 : 8 + n])
        self.metadata = self.header.pop("__metadata__", {}) or {}
        self.data = raw[8 + n :]
        self.st = safe_open(str(path), framework="numpy")

    def dtype(self, name):
        return self.header[name]["dtype"]

    def get(self, name):
        """The tensor as numpy: I8 stays int8, floats become float32 exactly."""
        info = self.header[name]
        dtype, shape = info["dtype"], info["shape"]
        if dtype not in RAW:
            t = self.st.get_tensor(name)
            return t if dtype == "I8" else t.astype(np.float32)
        s, e = info["data_offsets"]
        b = np.frombuffer(self.data[s:e], dtype=np.uint8)
        if dtype == "BF16":
            u = b.view("<u2").astype(np.uint32) << 16
            return u.view(np.float32).reshape(shape)
        return b.reshape(shape)  # FP8 codes; decoded by the caller


def open_model(folder):
    files = {}
    for p in sorted(folder.glob("*.safetensors")):
        f = File(p)
        for name in f.header:
            files[name] = f
    return files


def to_dtype_bits(r, dtype):
    """R' (float32) as the bits of `dtype`, rounded to nearest even."""
    if dtype == "F32":
        return r.view(np.uint32)
    if dtype == "F16":
        return r.astype(np.float16).view(np.uint16)
    if dtype == "BF16":
        u = r.view(np.uint32).astype(np.uint64)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    raise ValueError(f"unexpected dtype {dtype}")


def round_to(r, work):
    """f32 values rounded half-to-even to the working dtype, back as f32."""
    r = np.asarray(r, dtype=np.float32)
    if work == "F16":
        return r.astype(np.float16).astype(np.float32)
    if work == "BF16":
        u = r.view(np.uint32).astype(np.uint64)
        b = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32)
        return np.where(np.isnan(r), r, b.view(np.float32))
    return r


def work_dtype(dtype):
    """The working dtype D of a weight stored as `dtype`."""
    return dtype if dtype in ("BF16", "F16") else "F32"


def fake_bits(f, name):
    info = f.header[name]
    s, e = info["data_offsets"]
    width = {"F32": "<u4", "F16": "<u2", "BF16": "<u2"}[info["dtype"]]
    return np.frombuffer(f.data[s:e], dtype=width).reshape(info["shape"])


def unpack_rows(words, cols, bits):
    """Signed b-bit codes from I32 words [rows, ceil(cols*b/32)] (FORMATS.md §2)."""
    words = np.ascontiguousarray(words.astype("<i4")).view("<u4")
    rows = words.shape[0]
    stream = np.unpackbits(words.view(np.uint8).reshape(rows, -1), axis=1, bitorder="little")
    b = stream[:, : cols * bits].reshape(rows, cols, bits).astype(np.int64)
    u = (b << np.arange(bits)).sum(axis=2)
    return u - (1 << (bits - 1))


def layout_of(config, metadata_schemes, module, name):
    """(strategy, group_size, num_bits) for a module, from config.json or __metadata__."""
    q = config.get("quantization_config")
    if q is not None:
        for g in q["config_groups"].values():
            for t in g["targets"]:
                hit = t == "Linear" or (t.startswith("re:") and re.match(t[3:], module))
                if hit and module not in q["ignore"]:
                    w = g["weights"]
                    return w["strategy"], w["group_size"], w["num_bits"]
        raise SystemExit(f"{module}: no config group targets it")
    scheme = metadata_schemes[name].split(":")
    gran = scheme[1]
    bits = int(scheme[0][3:]) if scheme[0].startswith("int") else 8
    if gran.startswith("group"):
        return "group", int(gran[5:] or 128), bits
    return ("channel" if gran.startswith("channel") else "tensor"), None, bits


def dequantize(q, scale, zp, offset, strategy, group_size, shape, work):
    """R' = D(D(q - zp) * scale), then D(R' + offset) where an offset is stored."""
    d = lambda x: round_to(x, work)
    out = shape[0]
    q2 = q.reshape(out, -1)
    rest = q2.shape[1]
    if strategy == "group":
        ng = scale.shape[1]
        pad = ng * group_size - rest
        qg = np.pad(q2, ((0, 0), (0, pad))).reshape(out, ng, group_size)
        r = d(d(qg - zp[:, :, None]) * scale[:, :, None])
        if offset is not None:
            r = d(r + offset[:, :, None])
        r = r.reshape(out, ng * group_size)[:, :rest]
    else:
        s = scale.reshape(-1, 1) if strategy == "channel" else scale.reshape(1, 1)
        r = d(d(q2 - zp.reshape(s.shape)) * s)
        if offset is not None:
            # Added only when stored: -0.0 + 0.0 would turn a -0 into +0.
            r = d(r + offset.reshape(s.shape))
    return np.ascontiguousarray(r, dtype=np.float32).reshape(shape)


def main(packed_dir, fake_dir):
    packed, fake = open_model(Path(packed_dir)), open_model(Path(fake_dir))
    config_path = Path(packed_dir) / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    compared, failures = 0, []
    for name, f in sorted(packed.items()):
        if not name.endswith("_scale"):
            continue
        base = name[: -len("_scale")]
        module = base[: -len(".weight")] if base.endswith(".weight") else base
        schemes = json.loads(f.metadata.get("quantscope_schemes", "{}"))
        strategy, gs, bits = layout_of(config, schemes, module, base)
        scale = f.get(name)
        zp_name, off_name = base + "_zero_point", base + "_offset"
        if base + "_packed" in f.header:
            shape = [int(d) for d in f.st.get_tensor(base + "_shape")]
            cols = int(np.prod(shape[1:]))
            q = unpack_rows(f.st.get_tensor(base + "_packed"), cols, bits).astype(np.float32)
            zp = np.zeros_like(scale)
            if zp_name in f.header:
                z = unpack_rows(f.st.get_tensor(zp_name).reshape(-1, zp.size // zp.shape[0]).T, zp.shape[0], bits)
                zp = z.T.reshape(scale.shape).astype(np.float32)
        else:
            shape = f.header[base]["shape"]
            codes_dtype = f.dtype(base)
            q = f.get(base)
            q = FP8[codes_dtype][q] if codes_dtype in FP8 else q.astype(np.float32)
            zp = f.get(zp_name).astype(np.float32) if zp_name in f.header else np.zeros_like(scale)
        offset = f.get(off_name) if off_name in f.header else None
        fk = fake[base]
        work = work_dtype(fk.dtype(base))
        with np.errstate(invalid="ignore", over="ignore"):
            r = dequantize(q, scale, zp, offset, strategy, gs, shape, work)
        want = fake_bits(fk, base)
        got = to_dtype_bits(r, fk.dtype(base))
        same = (got == want) | (np.isnan(r) & np.isnan(fk.get(base)))
        if not same.all():
            failures.append(f"{base}: {int((~same).sum())} of {same.size} values differ")
        compared += 1
    for line in failures:
        print("MISMATCH", line)
    if compared == 0:
        print("no quantized tensor found")
        return 1
    status = "FAILED" if failures else "ok"
    print(f"{status}: {packed_dir}: {compared} tensors, D(D(q - zp) * scale) == fake-quant bit for bit")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
