#!/usr/bin/env python3
"""quantscope's forward passes (engine/src/run) against transformers.

    check_forward.py --dump BIN [--minilm DIR]

BIN is the engine's `run_dump` example: it writes, per sample, the token ids,
the model's output and every Linear layer's input as quantscope computes them.
This script computes the same with transformers (forward pre-hooks on every
nn.Linear) and checks:

- MiniLM (when DIR holds it): token ids equal the Hugging Face tokenizer's
  (special tokens added, truncated to 128, no padding), and every captured input
  and the last hidden state agree within 1e-4 relative (max |diff| / max |ref|).
- Tiny decoders made here with random weights, saved by transformers 5 (θ and
  rotary scaling under `rope_parameters`): a Llama (grouped KV heads, Llama-3
  θ = 500000 and frequency scaling) and a Qwen2 (q/k/v biases, tied embeddings,
  θ = 1e6). Every Linear input and the logits agree within 1e-4 relative.

Prints one `ok:` line per check; exits 1 on the first failure.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.numpy import load_file

REL_TOL = 1e-4
SENTENCES = [
    "The kettle clicked off just as the phone began to ring.",
    "How many prime numbers are there below one hundred?",
    "Quantization maps a weight to an integer code, e.g. int8 or FP8 (E4M3)!",
    "Cafe au lait costs 3.50 EUR; the naive resume says otherwise.",
    "short",
    " ".join(["a very long sentence that keeps going"] * 30),
]


def rel(a, b):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(b.abs().max().item(), 1e-12)
    return (a - b).abs().max().item() / scale


def linear_inputs(model):
    """Registers a pre-hook on every nn.Linear; returns the dict it fills."""
    seen = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            def hook(_m, args, name=name):
                seen[name] = args[0].detach().reshape(-1, args[0].shape[-1]).clone()
            mod.register_forward_pre_hook(hook)
    return seen


def compare(label, dump, model, output_of, weight_name):
    seen = linear_inputs(model)
    worst, checked = 0.0, 0
    i = 0
    while f"ids.{i}" in dump:
        ids = torch.tensor(dump[f"ids.{i}"]).unsqueeze(0)
        seen.clear()
        with torch.no_grad():
            out = output_of(model, ids)[0]
        d = rel(dump[f"output.{i}"], out)
        if d > REL_TOL:
            sys.exit(f"FAIL: {label} sample {i}: output differs by {d:.2e} relative")
        worst = max(worst, d)
        for mod, x in seen.items():
            if mod.startswith("pooler"):
                continue  # BertModel's pooler is not part of the encoder quantscope runs
            key = f"input.{i}.{weight_name(mod)}"
            if key not in dump:
                sys.exit(f"FAIL: {label}: quantscope did not capture {key}")
            d = rel(dump[key], x)
            if d > REL_TOL:
                sys.exit(f"FAIL: {label} sample {i}: input of {mod} differs by {d:.2e} relative")
            worst = max(worst, d)
            checked += 1
        i += 1
    print(f"ok: {label}: {i} samples, outputs and {checked} Linear inputs within {worst:.1e} relative")


def run_dump(binary, model_dir, out, kind, lines, tmp):
    src = Path(tmp) / f"{Path(model_dir).name}.txt"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run([binary, str(model_dir), str(out), kind, str(src)], check=True, stdout=subprocess.DEVNULL)
    return load_file(str(out))


def check_minilm(binary, folder, tmp):
    from transformers import AutoModel, AutoTokenizer
    dump = run_dump(binary, folder, Path(tmp) / "minilm.safetensors", "--text", SENTENCES, tmp)
    tok = AutoTokenizer.from_pretrained(folder)
    for i, s in enumerate(SENTENCES):
        want = tok(s, add_special_tokens=True, truncation=True, max_length=128)["input_ids"]
        got = dump[f"ids.{i}"].tolist()
        if got != want:
            sys.exit(f"FAIL: MiniLM token ids of sample {i} differ: {got[:12]}... vs {want[:12]}...")
    print(f"ok: MiniLM token ids equal the Hugging Face tokenizer's on {len(SENTENCES)} samples")
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    compare("MiniLM", dump, model, lambda m, ids: m(input_ids=ids).last_hidden_state, lambda n: f"{n}.weight")


def check_decoder(binary, tmp, kind):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    common = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    if kind == "llama":
        # Llama-3's θ and frequency scaling, so that a θ or scaling read wrongly cannot pass.
        rope = dict(rope_theta=500000.0, rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                    high_freq_factor=4.0, original_max_position_embeddings=128)
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False, rope_parameters=rope))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True, rope_theta=1000000.0))
    model = model.eval()
    with torch.no_grad():  # norms away from 1 and biases away from 0, so that they are tested too
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.rand_like(p) * 0.2)
            elif name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    folder = Path(tmp) / kind
    model.save_pretrained(folder, safe_serialization=True)
    gen = torch.Generator().manual_seed(1)
    lines = [" ".join(str(t) for t in torch.randint(0, 64, (n,), generator=gen).tolist()) for n in (1, 5, 17, 128)]
    dump = run_dump(binary, folder, Path(tmp) / f"{kind}.safetensors", "--ids", lines, tmp)
    tied = kind == "qwen2"
    name = lambda n: "model.embed_tokens.weight" if (tied and n == "lm_head") else f"{n}.weight"
    compare(f"tiny {kind}", dump, model, lambda m, ids: m(input_ids=ids).logits, name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    ap.add_argument("--minilm")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.minilm and (Path(a.minilm) / "model.safetensors").is_file():
            check_minilm(a.dump, a.minilm, tmp)
        else:
            print("note: MiniLM not present, its check is left out")
        check_decoder(a.dump, tmp, "llama")
        check_decoder(a.dump, tmp, "qwen2")


if __name__ == "__main__":
    main()
