#!/usr/bin/env python3
"""`quantscope report` gives the error of what a save holds.

Usage: report_matches_save.py QUANTSCOPE ORIGINAL_DIR SCHEME SAVED_DIR [SCHEME SAVED_DIR ...]

For each (SCHEME, SAVED_DIR) pair: decompresses SAVED_DIR with compressed-tensors'
own code (decompress.py), computes each layer's MSE against ORIGINAL_DIR's weights
in numpy (float64), and compares it with the `metrics.mse` that
`quantscope report ORIGINAL_DIR --scheme SCHEME` prints for that layer.
SAVED_DIR may be written by llm-compressor or by quantscope. Exit 1 (FAIL: lines)
if a layer is missing from either side or the two MSEs differ by more than a
relative 1e-9.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def weights(path):
    import torch
    from safetensors.torch import load_file

    out = {}
    for st in sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else [Path(path)]:
        for k, v in load_file(st).items():
            out[k] = v.to(torch.float64).numpy()
    return out


def check(quantscope, original, scheme, saved, orig_weights):
    report = json.loads(subprocess.run([quantscope, "report", str(original), "--scheme", scheme],
                                       check=True, capture_output=True, text=True).stdout)
    shown = {t["name"]: t["metrics"]["mse"] for t in report["tensors"] if t["metrics"]}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "deq.safetensors"
        r = subprocess.run([sys.executable, str(HERE / "decompress.py"), str(saved), str(out)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: {saved}: decompress: {r.stdout.strip()} {r.stderr.strip()[-300:]}")
            return False
        deq = weights(out)
    ok, worst = True, 0.0
    for name, r_prime in sorted(deq.items()):
        if name not in shown:
            print(f"FAIL: {saved}: {name} is quantized in the save but report shows no metrics for it")
            ok = False
            continue
        mse = float(((orig_weights[name] - r_prime) ** 2).mean())
        rel = abs(mse - shown[name]) / max(abs(mse), 1e-300)
        worst = max(worst, rel)
        if rel > 1e-9:
            print(f"FAIL: {saved}: {name}: report MSE {shown[name]:.12e}, decompressed save {mse:.12e}")
            ok = False
    if ok:
        print(f"ok: {saved} ({scheme}): report MSE = MSE of the decompressed save for {len(deq)} layers "
              f"(max relative difference {worst:.1e})")
    return ok


def main():
    if len(sys.argv) < 5 or len(sys.argv) % 2 == 0:
        raise SystemExit(__doc__)
    quantscope, original = sys.argv[1], Path(sys.argv[2])
    orig_weights = weights(original)
    pairs = list(zip(sys.argv[3::2], sys.argv[4::2]))
    results = [check(quantscope, original, s, Path(d), orig_weights) for s, d in pairs]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
