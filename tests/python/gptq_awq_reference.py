#!/usr/bin/env python3
"""GPTQ and AWQ files packed by the reference libraries, read by `quantscope diff` (issue 14).

Usage: gptq_awq_reference.py --quantscope BIN [--only awq|gptq]

Needs AutoAWQ (`awq`, pure Python; `pip install --no-deps autoawq`) and/or GPTQModel
(`gptqmodel`) importable next to torch; tests/python/gptq_awq.sh makes a throwaway venv
for them. For each library present:
- builds an F16 Linear (seeded, with outlier columns), per-group min-max scales and zero
  points, and packs it with the library's own code: AutoAWQ `WQLinear_GEMM.from_linear`
  (4-bit, GEMM); GPTQModel `TorchQuantLinear.pack_original` (2, 3, 4, 8 bits, asym and sym,
  with and without act-order g_idx), saved in GPTQ v1 (`checkpoint_format: gptq`, zero - 1)
  as GPTQModel does;
- takes R' from the library's own dequantization (AutoAWQ `dequantize_gemm`, GPTQModel
  `dequantize_weight`);
- checks that `quantscope diff ORIGINAL QUANTIZED` pairs the layer, reads its scheme, and
  gives count, mse, rmse, sqnr_db, max_abs_err, cosine equal to numpy's on that R' within
  1e-9 relative, and max_abs_err equal exactly.
Prints ok:/FAIL: lines; exit 1 on any failure, 2 when neither library imports.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_diff import close, numpy_metrics  # noqa: E402


def write(folder, tensors, qcfg=None):
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "model.safetensors")
    cfg = {"model_type": "test"}
    if qcfg:
        cfg["quantization_config"] = qcfg
    (folder / "config.json").write_text(json.dumps(cfg))


def minmax_params(w, group, bits, sym, g_idx=None, min_zero=0):
    """Per (group, out) scale and integer zero point, GPTQ/AWQ style, [groups, out]:
    min-max over the columns g_idx puts in each group (contiguous runs by default)."""
    import torch
    out, inp = w.shape
    if g_idx is None:
        g_idx = torch.arange(inp) // group
    cols = [w.float()[:, g_idx == k] for k in range(inp // group)]
    lo = torch.stack([c.amin(-1) for c in cols], -1).clamp(max=0)
    hi = torch.stack([c.amax(-1) for c in cols], -1).clamp(min=0)
    maxq = 2 ** bits - 1
    if sym:
        amax = torch.maximum(-lo, hi)
        scale = (2 * amax / maxq).clamp(min=1e-5)
        zero = torch.full_like(scale, (maxq + 1) // 2)
    else:
        scale = ((hi - lo) / maxq).clamp(min=1e-5)
        # v1 files store zero - 1: a zero of 0 would borrow from its neighbour.
        zero = torch.round(-lo / scale).clamp(min_zero, maxq)
    return scale.T.contiguous().half(), zero.T.contiguous()


def weight(out, inp, seed):
    import torch
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=gen) * 0.02
    w[:, 5] *= 20  # an outlier input column
    return w.half()


def run_diff(bin_, orig, quant):
    r = subprocess.run([bin_, "diff", str(orig), str(quant)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return json.loads(r.stdout)


def compare(label, bin_, work, w, deq, qtensors, qcfg, want_stored):
    """Writes ORIGINAL (m.weight) and QUANTIZED (m.*), runs diff, compares with numpy."""
    import torch
    write(work / "orig", {"m.weight": w, "m.bias": torch.zeros(w.shape[0], dtype=torch.float16)})
    write(work / "quant", {**{f"m.{k}": v for k, v in qtensors.items()},
                           "m.bias": torch.zeros(w.shape[0], dtype=torch.float16)}, qcfg)
    d = run_diff(bin_, work / "orig", work / "quant")
    fails = []
    if [t["name"] for t in d["tensors"]] != ["m.weight"] or d["unpaired"]:
        return [f"{label}: paired {[t['name'] for t in d['tensors']]}, unpaired {d['unpaired']}"]
    t = d["tensors"][0]
    for k, v in want_stored.items():
        if t["stored"][k] != v:
            fails.append(f"{label}: stored {k} = {t['stored'][k]}, expected {v}")
    want = numpy_metrics(w.float().numpy().astype("float64"), deq.float().numpy().astype("float64"))
    for k, v in want.items():
        if not close(t["metrics"][k], v) or (k == "max_abs_err" and t["metrics"][k] != v):
            fails.append(f"{label}: {k} = {t['metrics'][k]}, numpy on the library's R' {v}")
    if not fails:
        print(f"ok: {label}: quantscope diff equals numpy on the library's dequantized weights "
              f"(SQNR {t['metrics']['sqnr_db']:.3f} dB, RTN {t['schemes'][t['stored']['short']]['sqnr_db']:.3f} dB)")
    return fails


def awq_cases(bin_, root):
    import torch
    from awq.modules.linear.gemm import WQLinear_GEMM
    from awq.utils.packing_utils import dequantize_gemm
    fails = []
    for out, inp, group in [(64, 256, 128), (96, 512, 64)]:
        w = weight(out, inp, out + inp)
        scales, zeros = minmax_params(w, group, 4, sym=False)
        lin = torch.nn.Linear(inp, out, bias=False, dtype=torch.float16)
        lin.weight.data = w.clone()
        q = WQLinear_GEMM.from_linear(lin, 4, group, scales=scales, zeros=zeros)
        deq = dequantize_gemm(q.qweight, q.qzeros, q.scales, 4, group).T
        qcfg = {"quant_method": "awq", "bits": 4, "group_size": group, "version": "gemm", "zero_point": True}
        tensors = {"qweight": q.qweight, "qzeros": q.qzeros, "scales": q.scales}
        label = f"AutoAWQ GEMM [{out}, {inp}] group {group}"
        fails += compare(label, bin_, root / f"awq{out}", w, deq, tensors, qcfg,
                         {"format": "awq", "bits": 4, "group_size": group, "symmetric": False})
    return fails


def gptq_cases(bin_, root):
    import torch
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear as TorchQuantLinear
    fails = []
    out, inp, group = 64, 256, 64
    for bits in [2, 3, 4, 8]:
        for sym, act_order, v1 in [(False, False, False), (True, False, False), (False, True, False),
                                   (True, False, True), (False, True, True)]:
            w = weight(out, inp, bits * 10 + act_order)
            g_idx = torch.arange(inp, dtype=torch.int32) // group
            if act_order:
                g_idx = g_idx[torch.randperm(inp, generator=torch.Generator().manual_seed(bits))]
            scales, zeros = minmax_params(w, group, bits, sym, g_idx, min_zero=int(v1))
            lin = torch.nn.Linear(inp, out, bias=False, dtype=torch.float16)
            lin.weight.data = w.clone()
            ql = TorchQuantLinear(bits=bits, group_size=group, sym=sym, desc_act=act_order, in_features=inp,
                                  out_features=out, bias=False, pack_dtype=torch.int32, register_buffers=True,
                                  enable_wf_unsqueeze=True)
            ql.pack_original(lin, scales.T.float(), zeros.T.float(), g_idx=g_idx)
            ql.post_init() if hasattr(ql, "post_init") else None
            deq = ql.dequantize_weight().T.to(torch.float16)
            # GPTQModel packs v2 (true zeros) in memory; its default save converts to v1
            # (zero - 1) with its own convert_gptq_v2_to_v1_format_module.
            if v1:
                from types import SimpleNamespace
                from gptqmodel.utils.model import convert_gptq_v2_to_v1_format_module
                convert_gptq_v2_to_v1_format_module(ql, SimpleNamespace(bits=bits, pack_dtype=torch.int32))
            tensors = {"qweight": ql.qweight, "qzeros": ql.qzeros, "scales": ql.scales, "g_idx": ql.g_idx.int()}
            fmt = "gptq" if v1 else "gptq_v2"
            qcfg = {"quant_method": "gptq", "bits": bits, "group_size": group, "sym": sym, "desc_act": act_order,
                    "checkpoint_format": fmt}
            label = f"GPTQModel {bits}-bit {'sym' if sym else 'asym'}{' act-order' if act_order else ''} ({fmt})"
            fails += compare(label, bin_, root / f"gptq{bits}{sym}{act_order}{v1}", w, deq, tensors, qcfg,
                             {"format": "gptq", "bits": bits, "group_size": group, "symmetric": sym,
                              "act_order": act_order})
    return fails


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantscope", required=True)
    ap.add_argument("--only", choices=["awq", "gptq"])
    a = ap.parse_args()
    fails, ran = [], 0
    with tempfile.TemporaryDirectory() as t:
        for name, fn in [("awq", awq_cases), ("gptq", gptq_cases)]:
            if a.only and a.only != name:
                continue
            try:
                __import__({"awq": "awq", "gptq": "gptqmodel"}[name])
            except ImportError as e:
                print(f"FAIL: {name}: the reference library does not import ({e})")
                fails.append(name)
                continue
            ran += 1
            fails += fn(a.quantscope, Path(t))
    for f in fails:
        if f not in ("awq", "gptq"):
            print(f"FAIL: {f}")
    sys.exit(2 if ran == 0 else (1 if fails else 0))


if __name__ == "__main__":
    main()
