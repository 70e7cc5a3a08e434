#!/usr/bin/env python3
"""Prints criterion's median times as Markdown tables, each as a ratio to the
floor measured in the same run (one plain single-thread read of the same bytes:
BF16 or F32), calibrations also as a ratio to min-max of the same dtype, format
and granularity, and sweeps in params per second.

    cargo bench -p quantscope-engine --bench quantize && python3 bench/summarize.py
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = {}
elements = {}
for est in root.glob("**/new/estimates.json"):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    rows[bench["full_id"]] = json.loads(est.read_text())["median"]["point_estimate"] / 1e6
    tp = bench.get("throughput") or {}
    if "Elements" in tp:
        elements[bench["full_id"]] = tp["Elements"]

floors = {"bf16": rows.get("floor/read_bf16_1thread"), "f32": rows.get("floor/read_f32_1thread")}


def floor_of(name):
    f32 = "/f32/" in name or name.startswith("io/f32") or name.endswith("f32_1thread")
    return floors["f32"] if f32 else floors["bf16"]


def minmax_of(name):
    if not name.startswith("recompute/"):
        return None
    suffix = ":asym" if name.endswith(":asym") else ""
    head, _, _ = name[: len(name) - len(suffix)].rpartition(":")
    return rows.get(head + ":minmax" + suffix)


print("| benchmark | median ms | × floor (1-thread read of the same bytes) | × min-max (same dtype, format, granularity) |")
print("|---|---:|---:|---:|")
for name in sorted(rows):
    if name.startswith(("sweep/", "io/")):
        continue
    ms = rows[name]
    f = floor_of(name)
    mm = minmax_of(name)
    ratio_mm = f"{ms / mm:.1f}" if mm and ":minmax" not in name else ""
    print(f"| {name} | {ms:.2f} | {ms / f:.1f} | {ratio_mm} |" if f else f"| {name} | {ms:.2f} | ? | {ratio_mm} |")

sweeps = [n for n in sorted(rows) if n.startswith("sweep/")]
if sweeps:
    print()
    print("| sweep | median ms | params | G params/s |")
    print("|---|---:|---:|---:|")
    for name in sweeps:
        n = elements.get(name, 0)
        print(f"| {name} | {rows[name]:.1f} | {n} | {n / rows[name] / 1e6:.2f} |")

io = [n for n in sorted(rows) if n.startswith("io/f32-unaligned/")]
if io:
    print()
    print("| single-tensor path (analyze_stored) | F32 aligned ms | F32 unaligned ms | unaligned / aligned "
          "| BF16 streamed ms | BF16 via fresh buffer ms | fresh / streamed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in io:
        scheme = name.split("/", 2)[2]
        a, u = rows.get(f"io/f32-aligned/{scheme}"), rows[name]
        b, f = rows.get(f"io/bf16/{scheme}"), rows.get(f"io/bf16-fresh-buffer/{scheme}")
        if a and b and f:
            print(f"| `{scheme}` | {a:.2f} | {u:.2f} | {u / a:.2f} | {b:.2f} | {f:.2f} | {f / b:.2f} |")
