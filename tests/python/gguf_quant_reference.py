#!/usr/bin/env python3
"""ggml's quantizers as the reference for engine/src/gguf/quant (byte identity).

Calls `ggml_quantize_chunk` of the real library through ctypes: libggml-base.so of
llama-cpp-python 0.3.36 (the CI venv's `llama_cpp` package, built non-native by
tests/python/gguf_venv.sh), or the file named by $GGML_BASE_LIB.

Usage:
  gguf_quant_reference.py --write-fixtures DIR
      writes the fixtures of engine/tests/gguf_quantize.rs into DIR
      (engine/tests/data/gguf/quant): input.f32 (ROWS x COLS little-endian f32, one
      edge case per row), imatrix.f32 (COLS weights, some zero), TYPE.bin and
      TYPE.imatrix.bin (ggml's bytes without and with the imatrix) for every type,
      and manifest.json (shape, types, library).
  gguf_quant_reference.py --check --example PATH [--quick]
      runs PATH (the gguf_quantize example binary) on random and edge-case inputs
      (several shapes including 4096-wide rows, several seeds, three kinds of
      imatrix) for every type and compares its bytes with ggml's. Prints one
      `ok: TYPE imatrix=... rows=... identical` line per case, and on a mismatch the
      first differing block of both; exits 1 on any mismatch.
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# name: (ggml type id, values per block, bytes per block)
TYPES = {
    "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24),
    "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110),
    "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210),
    "IQ4_NL": (20, 32, 18), "IQ4_XS": (23, 256, 136), "MXFP4": (39, 32, 17),
}

FIXTURE_ROWS, FIXTURE_COLS = 8, 512


def library_path():
    if os.environ.get("GGML_BASE_LIB"):
        return Path(os.environ["GGML_BASE_LIB"])
    import llama_cpp
    return Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"


class Ggml:
    def __init__(self, path):
        self.path = path
        lib = ctypes.CDLL(str(path))
        f = lib.ggml_quantize_chunk
        f.restype = ctypes.c_size_t
        f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                      ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        self.lib = lib

    def quantize(self, name, x, imatrix=None):
        tid, block, block_bytes = TYPES[name]
        assert not self.lib.ggml_quantize_requires_imatrix(tid)
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, cols = x.shape
        out = np.zeros(rows * cols // block * block_bytes, dtype=np.uint8)
        w = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
        if rows:
            n = self.lib.ggml_quantize_chunk(tid, x.ctypes.data, out.ctypes.data, 0, rows, cols,
                                             None if w is None else w.ctypes.data)
            assert n == out.size, (name, n, out.size)
        return out.tobytes()


def edge_rows(cols, rng):
    """One edge case per row, `cols` wide."""
    n = rng.standard_normal(cols).astype(np.float32)
    rows = {
        "normal": n * 0.02,
        "zeros": np.zeros(cols),
        "constant": np.full(cols, 0.37),
        "negative-constant": np.full(cols, -1.5),
        "one-outlier": np.where(np.arange(cols) == cols // 3, 25.0, n * 0.01),
        "tiny": n * 1e-12,
        "subnormal": n * 1e-40,
        "negative-only": -np.abs(n) * 0.05,
        "positive-only": np.abs(n) * 0.05 + 1e-3,
        "large": n * 3e4,
        "block-scales": n * np.repeat(10.0 ** rng.uniform(-8, 3, cols // 32 + 1), 32)[:cols],
        "grid": (rng.integers(-16, 17, cols) * 0.25),
        "alternating": np.where(np.arange(cols) % 2 == 0, 1.0, -1.0),
        "zero-blocks": np.where((np.arange(cols) // 32) % 3 == 0, 0.0, n * 0.1),
        "heavy-tail": rng.standard_t(2, cols) * 0.01,
    }
    return list(rows), np.stack([np.asarray(r, dtype=np.float32) for r in rows.values()])


def imatrices(cols, rng):
    """The kinds of importance matrix each case runs with."""
    act = np.exp(rng.standard_normal(cols) * 1.5).astype(np.float32)
    zeros = act.copy()
    zeros[rng.random(cols) < 0.3] = 0.0
    zeros[: min(cols, 40)] = 0.0  # whole blocks with no weight
    return {"none": None, "random": act, "with-zeros": zeros}


def random_inputs(rng, rows, cols):
    scale = 10.0 ** rng.uniform(-3, 1)
    x = rng.standard_normal((rows, cols)) * scale
    x[rng.random((rows, cols)) < 0.002] *= 30.0  # outliers
    return x.astype(np.float32)


def first_difference(name, want, got, cols):
    _, block, block_bytes = TYPES[name]
    if len(want) != len(got):
        return f"length {len(got)} != ggml's {len(want)}"
    a, b = np.frombuffer(want, np.uint8), np.frombuffer(got, np.uint8)
    i = int(np.flatnonzero(a != b)[0])
    k = i // block_bytes
    per_row = cols // block
    blk = slice(k * block_bytes, (k + 1) * block_bytes)
    return (f"first difference at byte {i}: block {k} (row {k // per_row}, block {k % per_row} "
            f"of the row)\n  ggml: {a[blk].tobytes().hex()}\n  ours: {b[blk].tobytes().hex()}")


def run_ours(example, tmp, name, x, imatrix):
    rows, cols = x.shape
    inp, out, wpath = tmp / "in.f32", tmp / "out.bin", tmp / "imatrix.f32"
    np.ascontiguousarray(x, dtype="<f4").tofile(inp)
    cmd = [str(example), name, str(cols), str(inp), str(out)]
    if imatrix is not None:
        np.ascontiguousarray(imatrix, dtype="<f4").tofile(wpath)
        cmd.append(str(wpath))
    subprocess.run(cmd, check=True)
    return out.read_bytes()


def cases(quick):
    """(label, rows, cols, seed) of the random inputs; edge rows come separately."""
    shapes = [(0, 256), (1, 256), (3, 512), (2, 4096), (5, 768)]
    if not quick:
        shapes += [(16, 4096), (7, 1280), (1, 11008)]
    seeds = [1, 2] if quick else [1, 2, 3, 4]
    for rows, cols in shapes:
        for seed in seeds:
            yield f"random seed={seed}", rows, cols, seed
    # Rows of 32-value blocks that are not whole super-blocks (legacy and IQ4_NL only).
    for rows, cols in [(4, 96), (1, 32), (3, 288)]:
        yield "random seed=9", rows, cols, 9


def check(ggml, example, quick):
    failures = count = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, (_, block, _) in TYPES.items():
            inputs = []
            for label, rows, cols, seed in cases(quick):
                if cols % block == 0:
                    inputs.append((label, random_inputs(np.random.default_rng(seed), rows, cols), seed))
            for cols in (256, 4096):
                labels, x = edge_rows(cols, np.random.default_rng(cols))
                inputs.append((f"edge rows={'/'.join(labels)}", x, cols))
            for label, x, seed in inputs:
                rows, cols = x.shape
                for kind, w in imatrices(cols, np.random.default_rng(seed + 100)).items():
                    want = ggml.quantize(name, x, w)
                    got = run_ours(example, tmp, name, x, w)
                    count += 1
                    case = f"{name} imatrix={kind} rows={rows} cols={cols} {label}"
                    if want == got:
                        print(f"ok: {case} identical")
                    else:
                        failures += 1
                        print(f"FAIL: {case}: {first_difference(name, want, got, cols)}")
    print(f"{count - failures} of {count} cases identical ({ggml.path})")
    return failures == 0


def write_fixtures(ggml, out):
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    labels, edges = edge_rows(FIXTURE_COLS, rng)
    pick = ["normal", "one-outlier", "zero-blocks", "negative-only", "block-scales", "constant",
            "tiny", "heavy-tail"]
    x = np.stack([edges[labels.index(p)] for p in pick]).astype("<f4")
    assert x.shape == (FIXTURE_ROWS, FIXTURE_COLS)
    w = imatrices(FIXTURE_COLS, rng)["with-zeros"].astype("<f4")
    x.tofile(out / "input.f32")
    w.tofile(out / "imatrix.f32")
    total = x.nbytes + w.nbytes
    for name in TYPES:
        for suffix, imatrix in ((".bin", None), (".imatrix.bin", w)):
            data = ggml.quantize(name, x, imatrix)
            (out / f"{name}{suffix}").write_bytes(data)
            total += len(data)
    manifest = {
        "rows": FIXTURE_ROWS, "n_per_row": FIXTURE_COLS, "row_kinds": pick,
        "types": {k: {"id": v[0], "block": v[1], "block_bytes": v[2]} for k, v in TYPES.items()},
        "reference": "ggml_quantize_chunk of llama-cpp-python 0.3.36's libggml-base.so",
        "written_by": "tests/python/gguf_quant_reference.py --write-fixtures",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(TYPES) * 2} expected files, {total} bytes, into {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write-fixtures", type=Path, metavar="DIR")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--example", type=Path, help="the gguf_quantize example binary")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and seeds")
    args = ap.parse_args()
    if not args.write_fixtures and not args.check:
        ap.error("give --write-fixtures DIR and/or --check --example PATH")
    if args.check and not args.example:
        ap.error("--check needs --example PATH")
    ggml = Ggml(library_path())
    if args.write_fixtures:
        write_fixtures(ggml, args.write_fixtures)
    if args.check and not check(ggml, args.example, args.quick):
        sys.exit(1)


if __name__ == "__main__":
    main()
