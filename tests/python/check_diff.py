#!/usr/bin/env python3
"""`quantscope diff` against numpy on compressed-tensors' own decompression (issue 14).

Usage: check_diff.py --quantscope BIN ORIGINAL SAVED [SAVED ...]

For each SAVED (a compressed-tensors folder: llm-compressor's save or quantscope's):
1. decompress.py (compressed-tensors' registry compressor, `decompress()`) writes R'
   for every quantized Linear under the original weight name;
2. `quantscope diff ORIGINAL SAVED` gives per-layer metrics of the published R';
3. numpy recomputes count, mse, rmse, sqnr_db, max_abs_err and cosine from the
   original R and the decompressed R' (float64, NaN/Inf excluded) and every value
   must agree with quantscope's within 1e-9 relative. The layers diff paired must
   be exactly the ones compressed-tensors decompressed.

Prints `ok: ...` per SAVED, `FAIL: ...` for every mismatch; exit 1 on any failure.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REL = 1e-9


def load(path):
    """Every tensor of a file or folder as float64 numpy (via torch: BF16 safe)."""
    from safetensors.torch import load_file
    p = Path(path)
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else [p]
    out = {}
    for f in files:
        for k, v in load_file(f).items():
            if v.is_floating_point():
                out[k] = v.float().numpy().astype("float64")
    return out


def numpy_metrics(r, y):
    import numpy as np
    r, y = r.reshape(-1), y.reshape(-1)
    ok = np.isfinite(r) & np.isfinite(y)
    r, y = r[ok], y[ok]
    e = r - y
    se2, sr2 = float(np.sum(e * e)), float(np.sum(r * r))
    n = r.size
    mse = se2 / n if n else 0.0
    sq = float(np.sum(y * y))
    cos = 1.0 if sr2 == 0 and sq == 0 else (0.0 if sr2 == 0 or sq == 0 else float(np.dot(r, y)) / (sr2 ** 0.5 * sq ** 0.5))
    return {"count": n, "mse": mse, "rmse": mse ** 0.5,
            "sqnr_db": None if se2 == 0 else 10 * np.log10(sr2 / se2),
            "max_abs_err": float(np.max(np.abs(e))) if n else 0.0, "cosine": min(max(cos, -1.0), 1.0)}


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= REL * max(abs(a), abs(b)) or a == b


def check(bin_, original, saved, orig_values, work):
    deq_path = work / "deq.safetensors"
    r = subprocess.run([sys.executable, str(HERE / "decompress.py"), str(saved), str(deq_path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return [f"decompress.py {saved}: {(r.stdout + r.stderr).strip().splitlines()[-1:]}"]
    deq = load(deq_path)
    deq_path.unlink()
    r = subprocess.run([bin_, "diff", str(original), str(saved)], capture_output=True, text=True)
    if r.returncode != 0:
        return [f"quantscope diff {saved}: {r.stderr.strip()}"]
    diff = json.loads(r.stdout)
    got = {t["name"]: t for t in diff["tensors"]}
    fails = []
    if set(got) != set(deq):
        fails.append(f"{saved}: paired {sorted(set(got) ^ set(deq))[:4]} differ from the decompressed set")
    for name in sorted(set(got) & set(deq)):
        want = numpy_metrics(orig_values[name], deq[name])
        for k, v in want.items():
            if not close(got[name]["metrics"][k], v):
                fails.append(f"{saved}: {name}: {k} = {got[name]['metrics'][k]}, numpy {v}")
    if not fails:
        model = diff["totals"]["published"]["model_sqnr_db"]
        mean = diff["totals"]["published"]["mean_layer_sqnr_db"]
        print(f"ok: {saved}: {len(got)} layers equal numpy on decompressed weights "
              f"(model SQNR {model:.3f} dB, mean layer SQNR {mean:.3f} dB, {len(diff['unpaired'])} unpaired)")
    return fails


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantscope", required=True)
    ap.add_argument("original")
    ap.add_argument("saved", nargs="+")
    a = ap.parse_args()
    orig = load(a.original)
    fails = []
    with tempfile.TemporaryDirectory() as t:
        for s in a.saved:
            fails += check(a.quantscope, a.original, s, orig, Path(t))
    for f in fails:
        print(f"FAIL: {f}")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
