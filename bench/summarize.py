#!/usr/bin/env python3
"""Prints criterion's median times as a Markdown table, each as a ratio to the
floor measured in the same run (one plain single-thread read of the BF16 bytes).

    cargo bench -p quantscope-engine --bench quantize && python3 bench/summarize.py
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = {}
for est in root.glob("*/*/new/estimates.json"):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    rows[bench["full_id"]] = json.loads(est.read_text())["median"]["point_estimate"] / 1e6

floor = rows.get("floor/read_bf16_1thread")
minmax = {}
print("| benchmark | median ms | × floor (1-thread BF16 read) | × min-max, same granularity |")
print("|---|---:|---:|---:|")
for name in sorted(rows):
    ms = rows[name]
    gran = name.split(":")[1] if ":" in name else None
    if name.startswith("calibration/") and name.endswith(":minmax"):
        minmax[gran] = ms
    base = minmax.get(gran) if name.startswith("calibration/") else None
    ratio_mm = f"{ms / base:.1f}" if base else ""
    ratio = f"{ms / floor:.1f}" if floor else "?"
    print(f"| {name} | {ms:.2f} | {ratio} | {ratio_mm} |")
