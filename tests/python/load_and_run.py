#!/usr/bin/env python3
"""Load a quantized save the way a user would and check its embeddings.

Usage: load_and_run.py ORIGINAL_DIR SAVED_DIR [SAVED_DIR ...] [--dtype auto|bf16|f32] [--threshold 0.95]

- Loads SAVED_DIR with transformers `AutoModel.from_pretrained` (compressed-tensors
  decompresses it), in --dtype: "auto" (default) is BF16 when the save holds NVFP4
  or MX formats (they decompress to BF16, FORMATS.md section 9) and otherwise the
  dtype its config.json names.
- Runs 16 fixed sentences, tokenized with the (first) SAVED_DIR's tokenizer
  (ORIGINAL_DIR's if the save has none), and mean-pools the last hidden state with the attention mask.
- Runs ORIGINAL_DIR the same way in F32 (its own weights, upcast if BF16) and
  prints the mean and min cosine between the two sets of pooled embeddings.

Several SAVED_DIRs may be given (one import of torch for all); each is checked.
Exit 1 (one line per save, FAIL: ...) if loading fails or reports missing, unexpected
or mismatched keys (transformers would fill missing ones with uninitialized memory),
the forward pass fails, the output is not finite, or the mean cosine is below
--threshold.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization maps real numbers onto a small grid of codes.",
    "A group of 128 weights shares one scale.",
    "She sold the house by the sea last spring.",
    "How many bits does a floating-point exponent need?",
    "The train to Lyon leaves at seven in the morning.",
    "Neural networks tolerate a surprising amount of rounding noise.",
    "Please close the window; it is getting cold.",
    "Stock markets fell sharply after the announcement.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Photosynthesis converts light into chemical energy.",
    "He forgot his umbrella and got soaked on the way home.",
    "Block scales are stored in eight bits with no mantissa.",
    "Which museum has the largest collection of Roman coins?",
    "The committee will publish its report next week.",
    "Cats sleep for most of the day.",
]


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def pooled(model, batch):
    import torch
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.float()
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


def auto_dtype(saved: Path):
    cfg = json.loads((saved / "config.json").read_text())
    groups = (cfg.get("quantization_config") or {}).get("config_groups", {}).values()
    formats = {g.get("format") or "" for g in groups} | {(cfg.get("quantization_config") or {}).get("format") or ""}
    if any(f.startswith(("nvfp4", "mxfp")) for f in formats):
        return "bf16"
    return "bf16" if (cfg.get("dtype") or cfg.get("torch_dtype")) == "bfloat16" else "f32"


def check(saved: Path, dtype_arg, threshold, batch, ref):
    """Load, run and compare one save; returns None or a one-line failure."""
    import torch
    from transformers import AutoModel

    t0 = time.monotonic()
    dtype_name = auto_dtype(saved) if dtype_arg == "auto" else dtype_arg
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[dtype_name]
    try:
        model, info = AutoModel.from_pretrained(saved, dtype=dtype, output_loading_info=True)
    except Exception as e:  # noqa: BLE001
        return f"load {saved} ({dtype_name}): {one_line(e)}"
    # transformers fills missing parameters with uninitialized memory and goes on: refuse that.
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or [])
        if keys:
            return f"load {saved} ({dtype_name}): {len(keys)} {kind.replace('_', ' ')}, e.g. {', '.join(keys[:3])}"
    model.eval()
    try:
        out = pooled(model, batch)
    except Exception as e:  # noqa: BLE001
        return f"forward {saved} ({dtype_name}): {one_line(e)}"
    if not torch.isfinite(out).all():
        return f"forward {saved} ({dtype_name}): non-finite embeddings"
    cos = torch.nn.functional.cosine_similarity(out.double(), ref.double(), dim=-1)
    mean, low = cos.mean().item(), cos.min().item()
    line = (f"{saved}: dtype {dtype_name}, cosine vs original over {len(SENTENCES)} sentences: "
            f"mean {mean:.6f}, min {low:.6f} ({time.monotonic() - t0:.1f}s)")
    if mean < threshold:
        return f"{line}; mean below {threshold}"
    print(f"ok: {line}", flush=True)
    return None


def one_line(e):
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("original", type=Path)
    ap.add_argument("saved", type=Path, nargs="+", help="one or more saves of ORIGINAL_DIR")
    ap.add_argument("--dtype", choices=["auto", "bf16", "f32"], default="auto")
    ap.add_argument("--threshold", type=float, default=0.95, help="minimum mean cosine")
    a = ap.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tok_dir = a.saved[0] if (a.saved[0] / "tokenizer_config.json").exists() else a.original
    try:
        tok = AutoTokenizer.from_pretrained(tok_dir)
        batch = tok(SENTENCES, padding=True, return_tensors="pt")
        ref = pooled(AutoModel.from_pretrained(a.original, dtype=torch.float32).eval(), batch)
    except Exception as e:  # noqa: BLE001
        fail(f"original {a.original}: {one_line(e)}")
    failures = [f for f in (check(s, a.dtype, a.threshold, batch, ref) for s in a.saved) if f]
    for f in failures:
        print(f"FAIL: {f}", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
