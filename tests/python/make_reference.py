#!/usr/bin/env python3
"""Build llm-compressor's own saves of MiniLM, the reference quantscope must match.

Usage: make_reference.py OUT_DIR [--model DIR] [--dtypes f32 bf16] [--presets P ...] [--ignore M ...]

1. OUT_DIR/minilm-bf16/ is a BF16 copy of the model folder: every floating-point
   tensor cast to bfloat16 (round-half-even), config.json's torch_dtype set to
   "bfloat16", all other files copied unchanged.
2. For each dtype (the F32 original, the BF16 copy) and each preset, runs
   llm-compressor's data-free one-shot quantization exactly as issue 12 says:
       oneshot(model=m, recipe=QuantizationModifier(targets="Linear", scheme=PRESET, ignore=IGNORE))
       m.save_pretrained(OUT_DIR/<f32|bf16>/<PRESET>/, save_compressed=True)
   IGNORE defaults to [] (llm-compressor's own default). The tokenizer files are
   copied next to the save so the folder loads on its own.
3. A folder with a marker file (.reference-complete, recording the library
   versions) is reused; anything else is rebuilt.

Prints per preset: elapsed seconds, the quantization_config format, and the
stored tensors (name, dtype, shape) of the first Linear layer. Exits 1 with a
one-line message if a preset is unknown, needs calibration data, or fails.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PRESETS = ["W8A16", "W4A16", "W4A16_ASYM", "W8A8", "FP8_DYNAMIC", "FP8_BLOCK",
           "NVFP4A16", "MXFP4A16", "MXFP8A16"]
MARKER = ".reference-complete"
REPO = Path(__file__).resolve().parents[2]


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def versions():
    import compressed_tensors
    import llmcompressor
    import torch
    import transformers
    return {"llmcompressor": llmcompressor.__version__,
            "compressed_tensors": compressed_tensors.__version__,
            "transformers": transformers.__version__, "torch": torch.__version__}


def copy_side_files(src: Path, dst: Path):
    """Copy everything but the weights and config.json (tokenizer, pooling, ...)."""
    for p in src.iterdir():
        if p.suffix == ".safetensors" or p.name in ("config.json", MARKER) or (dst / p.name).exists():
            continue
        if p.is_dir():
            shutil.copytree(p, dst / p.name)
        else:
            shutil.copy2(p, dst / p.name)


def make_bf16_copy(src: Path, dst: Path):
    import torch
    from safetensors.torch import load_file, save_file
    if (dst / MARKER).exists():
        return
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for st in sorted(src.glob("*.safetensors")):
        tensors = load_file(st)
        cast = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in tensors.items()}
        save_file(cast, tmp / st.name, metadata={"format": "pt"})
    cfg = json.loads((src / "config.json").read_text())
    cfg["torch_dtype"] = "bfloat16"
    if "dtype" in cfg:
        cfg["dtype"] = "bfloat16"
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    copy_side_files(src, tmp)
    (tmp / MARKER).write_text("{}\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


def check_presets(presets):
    """Every preset must exist here and be data-free, by llm-compressor's own verdict
    (static or "local" activation scales, a KV-cache scheme or an imatrix observer need data)."""
    from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES
    from llmcompressor.modifiers.quantization import QuantizationModifier
    for p in presets:
        if p not in PRESET_SCHEMES:
            fail(f"preset {p} does not exist in this compressed-tensors (have: {', '.join(PRESET_SCHEMES)})")
        if QuantizationModifier(targets="Linear", scheme=p).requires_calibration_data:
            fail(f"preset {p} needs calibration data: it cannot be run data-free")


def first_linear(model):
    import torch
    return next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))


def describe(folder: Path, layer: str):
    from safetensors import safe_open
    cfg = json.loads((folder / "config.json").read_text())
    fmt = cfg.get("quantization_config", {}).get("format")
    rows = []
    for st in sorted(folder.glob("*.safetensors")):
        with safe_open(st, "np") as f:
            for k in sorted(f.keys()):
                if k.startswith(layer + "."):
                    s = f.get_slice(k)
                    rows.append(f"{k} {s.get_dtype()}{list(s.get_shape())}")
    return fmt, rows


def quantize_one(src: Path, dst: Path, dtype, preset, ignore, vers):
    """Run the data-free oneshot and save compressed; returns elapsed seconds."""
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModel

    t0 = time.monotonic()
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModel.from_pretrained(src, dtype=dtype)
    layer = first_linear(model)
    oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme=preset, ignore=ignore))
    model.save_pretrained(tmp, save_compressed=True)
    copy_side_files(src, tmp)
    elapsed = time.monotonic() - t0
    (tmp / MARKER).write_text(json.dumps({"preset": preset, "ignore": ignore, "elapsed_s": round(elapsed, 2),
                                          "first_linear": layer, **vers}, indent=1) + "\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--model", type=Path, default=REPO / "sample-models" / "minilm", help="F32 model folder")
    ap.add_argument("--dtypes", nargs="+", default=["f32", "bf16"], choices=["f32", "bf16"])
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--ignore", nargs="*", default=[], help="module names/re: patterns (default: none)")
    a = ap.parse_args()

    if not (a.model / "config.json").exists():
        fail(f"no model at {a.model}")
    t_start = time.monotonic()
    import torch
    check_presets(a.presets)
    vers = versions()
    print(f"libraries: {json.dumps(vers)}; import {time.monotonic() - t_start:.1f}s", flush=True)

    a.out_dir.mkdir(parents=True, exist_ok=True)
    sources = {"f32": (a.model, torch.float32)}
    if "bf16" in a.dtypes:
        t0 = time.monotonic()
        make_bf16_copy(a.model, a.out_dir / "minilm-bf16")
        print(f"bf16 copy: {a.out_dir / 'minilm-bf16'} ({time.monotonic() - t0:.1f}s)", flush=True)
        sources["bf16"] = (a.out_dir / "minilm-bf16", torch.bfloat16)

    for d in a.dtypes:
        src, dtype = sources[d]
        for preset in a.presets:
            dst = a.out_dir / d / preset
            marker = dst / MARKER
            cached = marker.exists() and all(json.loads(marker.read_text()).get(k) == v for k, v in vers.items()) \
                and json.loads(marker.read_text()).get("ignore") == a.ignore
            if cached:
                info = json.loads(marker.read_text())
                note = f"cached (built in {info['elapsed_s']:.1f}s)"
            else:
                try:
                    elapsed = quantize_one(src, dst, dtype, preset, a.ignore, vers)
                except Exception as e:  # noqa: BLE001 - one line per failure is the point
                    fail(f"{d}/{preset}: llm-compressor failed: {type(e).__name__}: {str(e).splitlines()[0]}")
                info = json.loads(marker.read_text())
                note = f"{elapsed:.1f}s"
            fmt, rows = describe(dst, info["first_linear"])
            print(f"{d}/{preset}: {note}, format {fmt}; {info['first_linear']}: {', '.join(rows)}", flush=True)
    print(f"make_reference: done in {time.monotonic() - t_start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
