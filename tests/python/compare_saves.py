#!/usr/bin/env python3
"""Compare two compressed-tensors saves tensor for tensor, and their quantization_config.

Usage: compare_saves.py EXPECTED_DIR ACTUAL_DIR   (expected = llm-compressor's save)

Checks, over all *.safetensors in each folder:
- the same tensor names, and for each name the same dtype, shape and raw bytes;
- for the first tensor that differs: its name, how many bytes and decoded elements
  differ, and the largest absolute difference after decoding (packed INT codes are
  unpacked with the config's num_bits, FP4 nibbles become E2M1 values, E8M0 bytes
  become powers of two, FP8/BF16 become numbers);
- config.json's quantization_config, on the fields FORMATS.md section 7 says matter:
  quant_method, format, quantization_status, ignore, kv_cache_scheme, and per
  config group: targets, format, output_activations, and for weights and
  input_activations num_bits, type, symmetric, strategy, group_size, dynamic,
  block_structure, actorder, scale_dtype, zp_dtype. A field that is absent counts
  as null (compressed-tensors 0.20 drops nulls), except that an absent zp_dtype
  of an asymmetric INT group counts as "torch.int8" (what the loader infers).

The last line is `identical to llm-compressor: N tensors`; exit 1 on any difference.
"""

import json
import re
import struct
import sys
from pathlib import Path

import numpy as np

NP_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
             "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])
TOP_FIELDS = ["quant_method", "format", "quantization_status", "ignore", "kv_cache_scheme"]
GROUP_FIELDS = ["targets", "format", "output_activations"]
ARG_FIELDS = ["num_bits", "type", "symmetric", "strategy", "group_size", "dynamic", "block_structure",
              "actorder", "scale_dtype", "zp_dtype"]


def read_tensors(folder: Path):
    """name -> (dtype, shape, raw bytes), straight from the safetensors headers."""
    out = {}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"FAIL: no *.safetensors in {folder}")
    for path in files:
        data = path.read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        header.pop("__metadata__", None)
        for name, h in header.items():
            a, b = h["data_offsets"]
            out[name] = (h["dtype"], tuple(h["shape"]), data[8 + n + a:8 + n + b])
    return out


def read_qconfig(folder: Path):
    cfg = json.loads((folder / "config.json").read_text())
    return cfg.get("quantization_config")


def group_of(module, qcfg):
    """The config group whose targets cover a module (re: first, then class names)."""
    groups = list((qcfg or {}).get("config_groups", {}).values())
    for g in groups:
        if any(t.startswith("re:") and re.match(t[3:], module) for t in g.get("targets", [])):
            return g
    return next((g for g in groups if any(not t.startswith("re:") for t in g.get("targets", []))), None)


def unpack_bits(words: np.ndarray, bits: int) -> np.ndarray:
    """I32 [rows, W] little-endian bit streams -> signed codes [rows, W*32//bits]."""
    le = np.ascontiguousarray(words.astype("<i4")).view(np.uint8).reshape(words.shape[0], -1)
    stream = np.unpackbits(le, axis=1, bitorder="little")
    n = stream.shape[1] // bits
    u = (stream[:, :n * bits].reshape(words.shape[0], n, bits).astype(np.int64) << np.arange(bits)).sum(-1)
    return u - (1 << (bits - 1))


def decode(name, dtype, shape, raw, qcfg):
    """Numbers a stored tensor stands for, as float64 (see the docstring)."""
    module, _, param = name.rpartition(".")
    if dtype in ("BF16", "F8_E4M3", "F8_E5M2"):
        import torch
        tdt = {"BF16": torch.bfloat16, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}[dtype]
        t = torch.frombuffer(bytearray(raw), dtype=tdt) if raw else torch.empty(0, dtype=tdt)
        return t.float().numpy().astype(np.float64).reshape(shape)
    a = np.frombuffer(raw, dtype=NP_DTYPES[dtype]).reshape(shape)
    bits = ((group_of(module, qcfg) or {}).get("weights") or {}).get("num_bits")
    if dtype == "I32" and bits and param == "weight_packed":
        return unpack_bits(a, bits).astype(np.float64)
    if dtype == "I32" and bits and param == "weight_zero_point":
        return unpack_bits(a.T, bits).T.astype(np.float64)
    if dtype == "U8" and param == "weight_packed":
        return np.stack([E2M1[a & 0xF], E2M1[a >> 4]], axis=-1).reshape(a.shape[0], -1)
    if dtype == "U8" and param == "weight_scale":
        return np.exp2(a.astype(np.float64) - 127)
    return a.astype(np.float64)


def tensor_diff(name, exp, act, qe, qa):
    """One line describing how two stored tensors differ."""
    (de, se, re_), (da, sa, ra) = exp, act
    if de != da or se != sa:
        return f"{name}: expected {de}{list(se)}, actual {da}{list(sa)}"
    nbytes = int(np.count_nonzero(np.frombuffer(re_, np.uint8) != np.frombuffer(ra, np.uint8)))
    ve, va = decode(name, de, se, re_, qe), decode(name, da, sa, ra, qa)
    if ve.shape != va.shape:
        return f"{name}: {nbytes} of {len(re_)} bytes differ; decoded shapes {ve.shape} vs {va.shape}"
    ne = int(np.count_nonzero(~((ve == va) | (np.isnan(ve) & np.isnan(va)))))
    with np.errstate(invalid="ignore"):
        mad = np.nanmax(np.abs(ve - va)) if ve.size else 0.0
    return (f"{name} ({de}{list(se)}): {nbytes} of {len(re_)} bytes differ, {ne} of {ve.size} decoded "
            f"elements differ, max abs difference {mad:.6g}")


def norm_args(args):
    """The compared fields of a QuantizationArgs dict, with absent = null."""
    if args is None:
        return None
    out = {k: args.get(k) for k in ARG_FIELDS}
    if out["zp_dtype"] is None and args.get("type") == "int" and args.get("symmetric") is False:
        out["zp_dtype"] = "torch.int8"
    return out


def config_diffs(qe, qa):
    if qe is None or qa is None:
        return [] if qe == qa else [f"quantization_config: expected {'present' if qe else 'absent'}, "
                                    f"actual {'present' if qa else 'absent'}"]
    diffs = []

    def cmp(path, e, a):
        if e != a:
            diffs.append(f"{path}: expected {json.dumps(e)}, actual {json.dumps(a)}")

    for k in TOP_FIELDS:
        e, a = qe.get(k), qa.get(k)
        if k == "ignore":
            e, a = sorted(e or []), sorted(a or [])
        cmp(k, e, a)
    ge, ga = qe.get("config_groups", {}), qa.get("config_groups", {})
    cmp("config_groups (names)", sorted(ge), sorted(ga))
    for g in sorted(set(ge) & set(ga)):
        for k in GROUP_FIELDS:
            cmp(f"{g}.{k}", ge[g].get(k), ga[g].get(k))
        for kind in ("weights", "input_activations"):
            e, a = norm_args(ge[g].get(kind)), norm_args(ga[g].get(kind))
            if e is None or a is None:
                cmp(f"{g}.{kind}", e, a)
            else:
                for f in ARG_FIELDS:
                    cmp(f"{g}.{kind}.{f}", e[f], a[f])
    return diffs


def main():
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {sys.argv[0]} EXPECTED_DIR ACTUAL_DIR")
    exp_dir, act_dir = Path(sys.argv[1]), Path(sys.argv[2])
    te, ta = read_tensors(exp_dir), read_tensors(act_dir)
    qe, qa = read_qconfig(exp_dir), read_qconfig(act_dir)
    problems = []

    missing, extra = sorted(set(te) - set(ta)), sorted(set(ta) - set(te))
    # transformers does not save non-persistent buffers (BERT's position_ids), so
    # llm-compressor's save lacks them; quantscope copies every source tensor.
    buffers = [n for n in extra if n == "position_ids" or n.endswith(".position_ids")]
    if buffers:
        print(f"note: {len(buffers)} source buffer(s) copied that transformers does not save: {', '.join(buffers)}")
    extra = [n for n in extra if n not in buffers]
    if missing:
        problems.append(f"{len(missing)} tensors missing from actual, e.g. {', '.join(missing[:5])}")
    if extra:
        problems.append(f"{len(extra)} tensors not in expected, e.g. {', '.join(extra[:5])}")
    common = sorted(set(te) & set(ta))
    differing = [n for n in common if te[n] != ta[n]]
    identical = len(common) - len(differing)
    if differing:
        problems.append(f"{len(differing)} of {len(common)} common tensors differ; first: "
                        + tensor_diff(differing[0], te[differing[0]], ta[differing[0]], qe, qa))
        qparam = next((n for n in differing if n.rpartition(".")[2].startswith("weight_")), None)
        if qparam and qparam != differing[0]:
            problems.append("first quantization tensor: " + tensor_diff(qparam, te[qparam], ta[qparam], qe, qa))
        if len(differing) > 1:
            problems.append(f"also differ: {', '.join(differing[1:6])}{' ...' if len(differing) > 6 else ''}")
    problems += [f"config: {d}" for d in config_diffs(qe, qa)]

    for p in problems:
        print(f"FAIL: {p}")
    if not problems:
        print(f"ok: {len(common)} tensors and quantization_config match ({exp_dir} vs {act_dir})")
    print(f"identical to llm-compressor: {identical} tensors")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
