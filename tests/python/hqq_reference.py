#!/usr/bin/env python3
"""HQQ reference test: quantscope's zero points against the hqq package.

    hqq_reference.py [--example BIN] [--quantscope BIN]

Writes seeded test tensors to a safetensors file, asks quantscope for its HQQ
zero points (the engine's `hqq_zero_points` example), and recomputes them with
the `hqq` package (mobiusml/hqq): the package's own
`optimize_weights_proximal_legacy_step` (quantize, dequantize, lp shrink, zero
update), driven by the loop of `optimize_weights_proximal_legacy` as of mobiusml/hqq
commit b21fe876dd71cad788471f3012efb70cf099072c: beta = 10 growing x1.01 per step,
20 steps, stop at the first step whose mean |W - W_r| does not fall. (The pip
release 0.2.8 dropped the beta growth from that loop, commit a566c78; its step is
unchanged.) Each slice (group or channel) is optimized on its own, as quantscope
does. Also checks the engine's rounding of its real zero point (round half to
even, as hqq's round_zero), and that `quantscope report --scheme ... --output json
--params` stores the parameters the example gives as saved (an integer zero point
near the real one, with its scale refit).

Passes when every real-valued zero point agrees to 1e-5 relative and every
rounded zero point exactly. Exits 1 otherwise. Iteration counts are printed, not
required: the stop test compares two mean errors that tie within rounding once z
has settled (torch sums in f32, quantscope in f64), and a step more or less then
moves z by ~1e-7 only.
"""
import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

import hqq
from hqq.core.optimize import optimize_weights_proximal_legacy_step

LP_NORM, BETA, KAPPA, ITERS = 0.7, 10.0, 1.01, 20
REL_TOL = 1e-5


def reference_zeros(w, bits):
    """Per-row HQQ on a [slices, n] float32 array: (zero, iterations) per row,
    zero in hqq's unsigned code space [0, 2^bits - 1]."""
    max_v = round(2**bits - 1)
    W = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
    _min = W.min(axis=1, keepdim=True)[0]
    _max = W.max(axis=1, keepdim=True)[0]
    scale = max_v / (_max - _min)  # hqq works with the inverse step
    zero = -_min * scale
    rows = W.shape[0]
    out_zero = torch.empty(rows)
    out_iters = [0] * rows
    for r in range(rows):
        Wr, s, z = W[r : r + 1], scale[r : r + 1], zero[r : r + 1]
        beta, best = BETA, torch.tensor(math.inf)
        for i in range(ITERS):
            W_r, _, z, s = optimize_weights_proximal_legacy_step(Wr, s, z, [0, max_v], beta, LP_NORM, 1)
            beta *= KAPPA
            err = torch.abs(Wr - W_r).mean().float()
            out_iters[r] = i + 1
            if err < best:
                best = err
            else:
                break
        out_zero[r] = z.reshape(())
    return out_zero.numpy().astype(np.float64), out_iters


def slices(w, scheme):
    """The rows of `w` ([out, in]) cut as quantscope slices them."""
    gran = scheme.split(":")[1]
    if gran == "channel":
        return w
    size = int(gran[len("group"):])
    assert w.shape[1] % size == 0
    return w.reshape(-1, size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default="target/debug/examples/hqq_zero_points")
    ap.add_argument("--quantscope", default="target/debug/quantscope")
    args = ap.parse_args()

    rng = np.random.default_rng(13)
    tensors = {
        "gauss": (rng.standard_normal((48, 256)) * 0.02).astype(np.float32),
        "heavy": (rng.standard_t(3, (32, 384)) * 0.01).astype(np.float32),
        "skewed": (rng.gamma(2.0, 0.01, (24, 512)) - 0.015).astype(np.float32),
    }
    tensors["gauss"][::7, ::31] *= 25.0  # a few outliers
    schemes = [
        "int4:group64:hqq:asym",
        "int4:group128:hqq:asym",
        "int3:group32:hqq:asym",
        "int2:group64:hqq:asym",
        "int8:group64:hqq:asym",
        "int4:channel:hqq:asym",
    ]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hqq_test.safetensors"
        save_file(tensors, str(path))
        for scheme in schemes:
            bits = int(scheme.split(":")[0][3:])
            qmin = -(2 ** (bits - 1))
            ours = json.loads(subprocess.run([args.example, str(path), scheme], check=True,
                                             capture_output=True, text=True).stdout)
            report = json.loads(subprocess.run(
                [args.quantscope, "report", str(path), "--scheme", scheme, "--output", "json", "--params"],
                check=True, capture_output=True, text=True).stdout)
            reported = {t["name"]: t for t in report["tensors"]}
            for name, w in tensors.items():
                rows = slices(w, scheme)
                # The reference's range is not widened to hold 0; quantscope's is.
                # Test slices hold both signs, so the two starts coincide.
                assert (rows.min(axis=1) < 0).all() and (rows.max(axis=1) > 0).all(), name
                ref_zero, ref_iters = reference_zeros(rows, bits)
                got = ours[name]
                assert len(got) == len(ref_zero), (name, len(got), len(ref_zero))
                got_zero = np.array([g["zero_real"] for g in got]) - qmin
                rel = np.abs(got_zero - ref_zero) / np.maximum(np.abs(ref_zero), 1e-30)
                same_iters = sum(g["iterations"] == i for g, i in zip(got, ref_iters))
                rounded = np.array([g["zero_rounded"] for g in got])
                rounded_ok = (rounded == np.round(ref_zero).astype(np.int64) + qmin).all()
                params = reported[name]["params"]
                # f32 values: the report prints them shortest-f32, the example as f64.
                stored_ok = [p["zero_point"] for p in params] == [g["zero_point"] for g in got] and all(
                    np.float32(p["scale"]) == np.float32(g["scale"]) for p, g in zip(params, got))
                ok = rel.max() <= REL_TOL and rounded_ok and stored_ok
                failed += not ok
                print(f"{'ok' if ok else 'FAIL'}: {scheme} {name}: {len(got)} slices, "
                      f"max rel. zero diff {rel.max():.2e}, same iteration count on {same_iters}/{len(got)} "
                      f"(mean {np.mean(ref_iters):.1f}), rounded Z {'equal' if rounded_ok else 'DIFFER'}, "
                      f"report params {'equal' if stored_ok else 'DIFFER'}")
    print(f"hqq {hqq.__version__ if hasattr(hqq, '__version__') else '?'}, torch {torch.__version__}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
