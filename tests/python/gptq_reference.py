"""GPTQ against llm-compressor's own `quantize_weight` (0.14), with the same Hessian.

For MiniLM layers, the Hessian is made as llm-compressor makes it: each calibration line
alone (at most 128 tokens, no padding) through the model in f32, the Linear's input fed
to llm-compressor's `accumulate_hessian`, divided by the sample count as `prepare_batch`
divides it. The reference runs `quantize_weight` with the W4A16 preset's arguments and
GPTQModifier's default "static" activation order, and scales from min-max on the original
weights (its `memoryless_minmax` observer, through compressed-tensors' `calculate_qparams`).
quantscope runs `engine/examples/gptq_layer` on the same H. Per layer: the scales must be
identical, at least 99.9 % of the codes identical, and the loss within 1e-4 relative.

Usage: gptq_reference.py --example target/debug/examples/gptq_layer --model sample-models/minilm
       --calibration sample-models/calibration.txt
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from compressed_tensors.quantization import ActivationOrdering, preset_name_to_scheme
from compressed_tensors.quantization.utils import calculate_qparams
from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight
from llmcompressor.modifiers.gptq.helpers import accumulate_hessian, make_empty_hessian
from transformers import AutoModel, AutoTokenizer

LAYERS = [
    "encoder.layer.0.attention.self.query",
    "encoder.layer.0.attention.output.dense",
    "encoder.layer.0.intermediate.dense",
    "encoder.layer.0.output.dense",
    "encoder.layer.5.attention.self.value",
    "encoder.layer.5.output.dense",
]
SCHEME = "int4:group128:minmax"  # quantscope's name for W4A16's weights


def hessians(model, tok, lines):
    modules = dict(model.named_modules())
    sums = {n: make_empty_hessian(modules[n]) for n in LAYERS}
    counts = {n: torch.zeros(()) for n in LAYERS}

    def hook(name):
        def run(module, args, _out):
            sums[name], counts[name] = accumulate_hessian(args[0], module, sums[name], counts[name])

        return run

    handles = [modules[n].register_forward_hook(hook(n)) for n in LAYERS]
    with torch.no_grad():
        for line in lines:
            enc = tok(line, truncation=True, max_length=128, return_tensors="pt")
            model(**enc)
    for h in handles:
        h.remove()
    return {n: sums[n] / counts[n] for n in LAYERS}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--calibration", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = AutoModel.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    lines = [l.strip() for l in open(args.calibration, encoding="utf-8") if l.strip()]
    quant_args = preset_name_to_scheme("W4A16", ["Linear"]).weights.model_copy(
        update={"actorder": ActivationOrdering.STATIC}
    )
    group = quant_args.group_size
    modules = dict(model.named_modules())
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for name, h in hessians(model, tok, lines).items():
            w = modules[name].weight.detach().clone()
            rows, cols = w.shape
            grouped = w.reshape(rows, cols // group, group)
            scale, zp = calculate_qparams(grouped.amin(dim=-1), grouped.amax(dim=-1), quant_args)
            q, loss, fallback = quantize_weight(
                w[None].clone(), h[None].clone(), scale[None], zp[None], None, quant_args
            )
            q = q[0]
            h_path, out_path = os.path.join(tmp, "h.f32"), os.path.join(tmp, "q.f32")
            h.numpy().astype("<f4").tofile(h_path)
            res = subprocess.run(
                [args.example, args.model, f"{name}.weight", h_path, SCHEME, out_path],
                check=True, capture_output=True, text=True,
            )
            mine = json.loads(res.stdout)
            q_mine = torch.from_numpy(np.fromfile(out_path, dtype="<f4").reshape(rows, cols))
            s = scale.repeat_interleave(group, dim=1)
            codes_ref, codes_mine = torch.round(q / s), torch.round(q_mine / s)
            same = int((codes_ref == codes_mine).sum())
            share = same / codes_ref.numel()
            scales_same = np.array_equal(np.array(mine["scales"], dtype=np.float32), scale.numpy().reshape(-1))
            ref_loss = float(loss[0])
            rel = abs(mine["loss"] - ref_loss) / max(abs(ref_loss), 1e-30)
            ok = scales_same and share >= 0.999 and rel <= 1e-4 and bool(fallback[0]) == mine["fallback"]
            failed |= not ok
            print(
                f"{'ok' if ok else 'FAIL'}: {name} [{rows}x{cols}]: codes {same}/{codes_ref.numel()} identical "
                f"({100 * share:.3f} %), scales {'identical' if scales_same else 'DIFFER'}, "
                f"loss {mine['loss']:.6g} vs llm-compressor {ref_loss:.6g} (rel {rel:.2e}), {len(lines)} samples"
            )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
